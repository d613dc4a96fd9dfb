"""Two one-thread lanes against one two-thread run: what ``make reproduce``'s side-by-side notebooks buy.

For each quick-profile row (``benchmarks/phases.py``: one train step or one evaluation unit) a fresh process
times it (median of ``--repeats`` calls) three ways, all with ``OMP_WAIT_POLICY=PASSIVE``:

1. ``2 threads``: alone on the machine, as one notebook at a time runs it;
2. ``1 thread``: alone;
3. ``1 thread, twin``: beside a second process running the same row in a loop with one thread (two lanes).

Work per second of two lanes over one two-thread run is ``2 * t(2 threads) / t(1 thread, twin)``: above 1 the
lanes finish the same notebooks sooner.  The machine's FLOP limit is measured in the same run, quiet, at 1 and 2
threads; ``ratio to limit`` counts each lane's step against the per-core limit (the one-thread peak).

    python benchmarks/lanes.py --out results/benchmarks    # writes lanes_cpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = Path(__file__).resolve().parent / "phases.py"
sys.path.insert(0, str(PHASES.parent))

from under_load import IDLE_ROWS, row_seconds  # type: ignore[import-not-found]

ROWS = IDLE_ROWS  # every quick train and evaluation row that make bench-load times
SETTINGS = {
    "2 threads": {"CNFKIT_THREADS": "2", "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"CNFKIT_THREADS": "1", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
}


def _peak(threads: int) -> float:
    code = (
        f"import sys, json, torch; sys.path.insert(0, {str(PHASES.parent)!r}); from phases import measure_peak; "
        "print(json.dumps(measure_peak(torch.device('cpu'), torch.float32)['peak_gflops']))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "CNFKIT_THREADS": str(threads)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def twin_seconds(row: str, repeats: int) -> dict:
    """The row with one thread while a twin process runs the same row (one thread) in a loop."""
    from under_load import _env  # type: ignore[import-not-found]

    cmd = [sys.executable, str(PHASES), "--row", row, "--device", "cpu", "--repeats", "1000000"]
    twin = subprocess.Popen(cmd, env=_env(SETTINGS["1 thread"]), cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        time.sleep(15.0)  # the twin builds its workload and is stepping before the measured process starts
        return row_seconds(row, SETTINGS["1 thread"], repeats)
    finally:
        twin.kill()
        twin.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "build" / "bench-lanes"))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rows", nargs="*", default=list(ROWS), help="experiment:phase rows (quick profile)")
    a = p.parse_args(argv)
    peaks = {t: _peak(t) for t in (1, 2)}
    print(f"peak GFLOP/s: 1 thread {peaks[1]}, 2 threads {peaks[2]}", flush=True)
    rows = []
    for r in a.rows:
        spec = f"{r}:quick:fp32:{peaks[1]}"
        reps = max(3, a.repeats // 3) if r.startswith(("sr", "drive:evaluate")) else a.repeats
        two = row_seconds(spec, SETTINGS["2 threads"], reps)
        one = row_seconds(spec, SETTINGS["1 thread"], reps)
        twin = twin_seconds(spec, reps)
        gflop = one["gflop"]
        row = {
            "row": r,
            "workload": one["workload"],
            "gflop": gflop,
            "two_threads_s": two["seconds"],
            "one_thread_s": one["seconds"],
            "one_thread_twin_s": twin["seconds"],
            "lanes_speedup": round(2 * two["seconds"] / twin["seconds"], 2),
            "ratio_to_limit_two_threads": round(two["seconds"] / (gflop / peaks[2]), 2),
            "ratio_to_limit_lane": round(twin["seconds"] / (gflop / peaks[1]), 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "peak_gflops": {"1 thread": peaks[1], "2 threads": peaks[2]},
        "repeats": a.repeats,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lanes_cpu.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    (out / "lanes_cpu.md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))
    return 0


def markdown(meta: dict, rows: list[dict]) -> str:
    pk = meta["peak_gflops"]
    lines = [
        (
            f"Quick-profile steps as one 2-thread process against two 1-thread lanes ({meta['machine']}; FLOP limit "
            f"measured in the same run: {pk['1 thread']} GFLOP/s on 1 thread, {pk['2 threads']} on 2).  "
            "`lanes speedup` = 2 x (2-thread step) / (1-thread step beside its twin): the work per second of "
            "`make reproduce`'s two lanes over one notebook at a time."
        ),
        "",
        (
            "| row | workload | 2 threads [s] | 1 thread [s] | 1 thread beside twin [s] | lanes speedup "
            "| ratio to limit, 2 threads | ratio to limit, per lane |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['row']} | {r['workload']} | {r['two_threads_s']:.4f} | {r['one_thread_s']:.4f} | "
            f"{r['one_thread_twin_s']:.4f} | {r['lanes_speedup']:.2f}x | {r['ratio_to_limit_two_threads']} | "
            f"{r['ratio_to_limit_lane']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
