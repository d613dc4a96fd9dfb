"""Train steps alone and beside a competing load, under each thread / wait setting: ``make bench-load``.

A reader's machine is rarely idle.  For each setting (torch's defaults; one thread; a short OpenMP spin;
``OMP_WAIT_POLICY=PASSIVE``, cnfkit's default, see ``cnfkit/_runtime.py``) a fresh process times one
``benchmarks/phases.py`` row (median of ``--repeats`` calls):

1. under load: the quick binary-dequantization train step on the quiet machine, then ``--trials`` times
   with ``--load`` busy processes (pure-Python loops, one core each) beside it (the slowdown under load is
   erratic from one trial to the next, so each trial is kept and the median and worst reported);
2. the cost on a quiet machine: every quick train and evaluation row of ``--idle-rows`` under each setting.

The machine's FLOP limit is measured in the same run, quiet.

    python benchmarks/under_load.py --out results/benchmarks    # writes under_load_cpu.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = Path(__file__).resolve().parent / "phases.py"

SETTINGS: dict[str, dict[str, str | None]] = {
    "torch defaults (all cores, OpenMP threads spin)": {},
    "1 thread": {"CNFKIT_THREADS": "1"},
    "all cores, short spin (GOMP_SPINCOUNT=10000)": {"GOMP_SPINCOUNT": "10000"},
    "all cores, OMP_WAIT_POLICY=PASSIVE (cnfkit default)": {"OMP_WAIT_POLICY": "PASSIVE"},
}
CONTROLLED = ("OMP_WAIT_POLICY", "CNFKIT_THREADS", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")
LOAD = "while True: pass"  # one core, no OpenMP
IDLE_ROWS = (
    "theory_gmm:train",
    "theory_rotating:train",
    "mnist:train",
    "binary_dequantization:train",
    "drive:train",
    "drive:evaluate",
    "sr:train",
    "sr:evaluate",
)


def _env(setting: dict[str, str | None]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update({k: v for k, v in setting.items() if v is not None})
    env["PYTHONPATH"] = str(ROOT)
    return env


def row_seconds(row: str, setting: dict[str, str | None], repeats: int) -> dict:
    """One phases.py row (``experiment:phase:quick:fp32:peak``) in a fresh process under ``setting``: its JSON row.
    phases.py imports torch before cnfkit, so the OpenMP runtime sees exactly the setting's variables."""
    cmd = [sys.executable, str(PHASES), "--row", row, "--device", "cpu", "--repeats", str(repeats)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(setting), cwd=ROOT, check=False, timeout=1800)
    if res.returncode:
        raise RuntimeError(f"{row} under {setting} failed: {res.stderr.strip()[-500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def loaded_seconds(row: str, setting: dict[str, str | None], repeats: int, load: int) -> float:
    spinners = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(load)]
    try:
        time.sleep(1.0)
        return row_seconds(row, setting, repeats)["seconds"]
    finally:
        for s in spinners:
            s.kill()
            s.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "build" / "bench-load"))
    p.add_argument("--load", type=int, default=2, help="busy processes beside the step (default 2: one per core here)")
    p.add_argument("--trials", type=int, default=3, help="loaded measurements per setting")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--idle-rows", nargs="*", default=list(IDLE_ROWS), help="experiment:phase rows for the idle cost")
    a = p.parse_args(argv)
    import torch

    sys.path.insert(0, str(PHASES.parent))
    from phases import measure_peak  # type: ignore[import-not-found]

    peak = measure_peak(torch.device("cpu"), torch.float32)["peak_gflops"]
    print(f"peak: {peak} GFLOP/s", flush=True)
    row = f"binary_dequantization:train:quick:fp32:{peak}"
    loaded = []
    for name, setting in SETTINGS.items():
        alone = row_seconds(row, setting, a.repeats)["seconds"]
        trials = [loaded_seconds(row, setting, a.repeats, a.load) for _ in range(a.trials)]
        loaded.append({"setting": name, "alone_s": alone, "loaded_s": trials})
        print(f"{name:55s} alone {alone:.4f} s, beside {a.load} busy: {trials}", flush=True)
    idle = []
    for r in a.idle_rows:
        times = {}
        for name, setting in SETTINGS.items():
            got = row_seconds(f"{r}:quick:fp32:{peak}", setting, 5 if r.startswith("sr") else a.repeats)
            times[name] = got["seconds"]
        idle.append({"row": r, "seconds": times})
        print(r, times, flush=True)
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "torch": torch.__version__,
        "peak_gflops": peak,
        "load": f"{a.load} processes running {LOAD!r}",
        "repeats": a.repeats,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "under_load_cpu.json").write_text(json.dumps({**meta, "loaded": loaded, "idle": idle}, indent=1) + "\n")
    (out / "under_load_cpu.md").write_text(markdown(meta, loaded, idle, a))
    print(markdown(meta, loaded, idle, a))
    return 0


def markdown(meta: dict, loaded: list[dict], idle: list[dict], a) -> str:
    names = list(SETTINGS)
    lines = [
        (
            f"Quick binary-dequantization train step alone and beside {a.load} busy processes ({meta['machine']}; "
            f"median of {a.repeats} steps per measurement, {a.trials} loaded trials; "
            f"peak {meta['peak_gflops']} GFLOP/s measured quiet in the same run)."
        ),
        "",
        "| setting | alone [s/step] | beside the load, median [s/step] | worst trial | median slowdown | worst |",
        "|---|---|---|---|---|---|",
    ]
    for r in loaded:
        med, worst = statistics.median(r["loaded_s"]), max(r["loaded_s"])
        lines.append(
            f"| {r['setting']} | {r['alone_s']:.4f} | {med:.4f} | {worst:.4f} | {med / r['alone_s']:.1f}x | "
            f"{worst / r['alone_s']:.1f}x |"
        )
    lines += [
        "",
        "Cost on a quiet machine: seconds per call of each quick row, relative to torch's defaults.",
        "",
        "| row | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for r in idle:
        base = r["seconds"][names[0]]
        cells = [f"{r['seconds'][n]:.4f} ({r['seconds'][n] / base:.2f}x)" for n in names]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
