"""One short, unattended check of everything CUDA: ``make gpu-check`` (at most ~8 minutes on one GPU).

A GPU is lent for minutes, not hours, so this script brings back in one go everything we need from it:

1. **environment**: device, driver, torch, CUDA and cuDNN versions; the device's memory;
2. **peaks**: the machine's fp32, TF32 and bf16 matmul and 3x3-convolution throughput, measured in this run;
3. **tests**: ``pytest -m cuda`` on the device (every bijection against the float64 CPU reference on the same
   weights, the bf16 fast path within its tolerance, checkpoints across devices, seeded sampling);
4. **phases**: for every experiment at the ``full`` profile's sizes (synthetic inputs of the real shapes, so no
   dataset is needed), one timed train step, one sample and one evaluation unit, in fp32 and bf16 autocast, eager
   and compiled, with peak device memory and its ratio to the device's memory (``benchmarks/phases.py`` builds the
   workloads);
5. **projection**: the device-hours of ``make reproduce PROFILE=full`` from those step times and the profile's
   step counts.

Each part runs under its own time limit and the script keeps going past a failing part, reporting it.  It writes
``phases_<device>.json`` / ``.md`` (every row, the parts' status, the projection) and ``gpu_check_<device>.md`` (a
one-page summary) under ``--out``.  ``--dry-run`` (``make gpu-check DEVICE=cpu DRY_RUN=1``, part of ``make test``)
runs the same script at the smoke profile's sizes, with small peak kernels and one compiled group, so it cannot rot.

    python benchmarks/gpu_check.py                                # on the GPU: results/benchmarks/phases_cuda.*
    python benchmarks/gpu_check.py --device cpu --dry-run --out /tmp/check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import phases  # benchmarks/phases.py: the workloads and the row timer

DTYPES = ("fp32", "bf16")
MODES = ("eager", "compiled")
# seconds of the budget kept for each part before the phase rows share what is left
PART_LIMITS = {"tests": 150, "group_floor": 20}


# --- 1. environment and 2. peaks ----------------------------------------------------------------


def environment(device: torch.device) -> dict:
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env |= {
            "device_name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_mb": round(props.total_memory / 2**20),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "driver": _nvidia_smi("driver_version"),
        }
    else:
        env |= {"device_name": f"cpu ({os.cpu_count()} cores)", "memory_mb": _cpu_memory_mb(), "cuda": None}
    return env


def _nvidia_smi(field: str) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _cpu_memory_mb() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


def peaks(device: torch.device, dry_run: bool) -> dict:
    """Matmul and conv GFLOP/s in fp32 (TF32 off), TF32 (CUDA only) and bf16."""
    n, batch, side = (256, 2, 16) if dry_run else ((8192, 64, 64) if device.type == "cuda" else (2048, 8, 64))
    out = {}
    settings = [("fp32", torch.float32, False), ("bf16", torch.bfloat16, False)]
    if device.type == "cuda":
        settings.insert(1, ("tf32", torch.float32, True))
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for name, dtype, tf32 in settings:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            t_mm = phases._time(lambda a=a, b=b: a @ b, 10, 3, device)
            x = torch.randn(batch, 128, side, side, device=device, dtype=dtype)
            w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype)
            with torch.no_grad():
                t_conv = phases._time(lambda x=x, w=w: F.conv2d(x, w, padding=1), 5, 2, device)
            mm, conv = 2 * n**3 / t_mm / 1e9, 2 * batch * 128 * 128 * 9 * side * side / t_conv / 1e9
            out[name] = {
                "matmul_gflops": round(mm, 1),
                "conv_gflops": round(conv, 1),
                "peak_gflops": round(max(mm, conv), 1),
            }
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return out


# --- 3. tests -----------------------------------------------------------------------------------


def run_tests(device: torch.device, timeout: float) -> dict:
    env = {**os.environ, "CNFKIT_TEST_DEVICE": str(device)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    lines = res.stdout.strip().splitlines()
    summary = lines[-1] if lines else res.stderr.strip()[-300:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", summary)}
    failures = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    return {"returncode": res.returncode, "summary": summary, "counts": counts, "failures": failures[:20]}


# --- 4. phase rows, one subprocess per (experiment, mode) ---------------------------------------


def run_group(
    experiment: str, mode: str, profile: str, device: str, peak: dict, max_batch: int | None, repeats: int
) -> None:
    """Child process: every phase x dtype of one experiment in one mode, one JSON line per row (so a group that
    runs out of time still returns the rows it finished)."""
    dev = torch.device(device)
    limit = torch.cuda.get_device_properties(dev).total_memory / 2**20 if dev.type == "cuda" else _cpu_memory_mb()
    for phase in phases.PHASES:
        for dtype in DTYPES:
            row = {"experiment": experiment, "phase": phase, "profile": profile, "device": device, "dtype": dtype}
            try:
                row = phases.run_row(
                    experiment, phase, profile, device, dtype, repeats=repeats, warmup=min(1, repeats - 1),
                    peak=peak[dtype]["peak_gflops"], max_batch=max_batch, compiled=mode == "compiled",
                )  # fmt: skip
                row["memory_limit_mb"] = limit
                row["memory_ratio"] = round(row["peak_mem_mb"] / limit, 4) if limit else None
            except Exception as exc:  # noqa: BLE001  (keep going: the report names what failed)
                row |= {
                    "mode": mode,
                    "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                }
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            print("ROW " + json.dumps(row), flush=True)


def phase_rows(groups: list[tuple[str, str]], args, peak: dict, deadline: float) -> list[dict]:
    rows: list[dict] = []
    for i, (experiment, mode) in enumerate(groups):
        left = deadline - time.monotonic()
        timeout = max(PART_LIMITS["group_floor"], left / (len(groups) - i))
        if left < PART_LIMITS["group_floor"]:
            rows.append(_failed_group(experiment, mode, args, "skipped: the check's time budget is spent"))
            continue
        cmd = [sys.executable, __file__, "--group", f"{experiment}:{mode}", "--profile", args.profile]
        cmd += ["--device", args.device, "--peak-json", json.dumps(peak), "--repeats", str(args.repeats)]
        if args.max_batch:
            cmd += ["--max-batch", str(args.max_batch)]
        print(f"[phases] {experiment} {mode} (limit {timeout:.0f} s)", flush=True)
        try:
            res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
            out, err, note = res.stdout, res.stderr, f"exit {res.returncode}" if res.returncode else ""
        except subprocess.TimeoutExpired as exc:
            out, err, note = _text(exc.stdout), _text(exc.stderr), f"timed out after {timeout:.0f} s"
        got = [json.loads(ln[4:]) for ln in out.splitlines() if ln.startswith("ROW ")]
        rows.extend(got)
        for r in got:
            print("   ", _row_line(r), flush=True)
        if note and len(got) < len(phases.PHASES) * len(DTYPES):
            tail = err.strip().splitlines()[-1] if err.strip() else ""
            rows.append(_failed_group(experiment, mode, args, f"{note} after {len(got)} rows {tail}"[:300]))
    return rows


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def _failed_group(experiment: str, mode: str, args, error: str) -> dict:
    return {"experiment": experiment, "phase": "*", "profile": args.profile, "device": args.device, "dtype": "*",
            "mode": mode, "error": error}  # fmt: skip


def _row_line(r: dict) -> str:
    head = f"{r['experiment']:22s} {r['phase']:8s} {r['dtype']:4s} {r.get('mode', ''):8s}"
    if "error" in r:
        return f"{head} FAILED {r['error']}"
    return f"{head} {r['seconds']:.4f} s  x{r['ratio_to_limit']} of the limit  {r['peak_mem_mb']:.0f} MB"


# --- 5. projection ------------------------------------------------------------------------------


def workload_counts(profile: str) -> dict[str, dict]:
    """How many train steps and evaluation units ``make reproduce`` runs per experiment at ``profile`` (from the
    experiments' own configurations), and what the projection leaves out."""
    from cnfkit.experiments import binary_dequantization as bd
    from cnfkit.experiments import drive, mnist, superres, theory

    th, mn, b, dr, sr = (m.config(profile) for m in (theory, mnist, bd, drive, superres))
    flow_steps = mn.flow_epochs * math.ceil(mn.n_train / mn.flow_batch)
    sr_images = 5 + 14 + min(100, sr.max_test_images)
    return {
        "theory_rotating": {"train_steps": 2 * th.rot_steps, "eval_units": 0, "note": "CNF and Gaussian"},
        "theory_gmm": {
            "train_steps": len(theory.GMM_METHODS) * th.gmm_steps,
            "eval_units": 0,
            "note": f"{len(theory.GMM_METHODS)} methods",
        },
        "mnist": {
            "train_steps": 2 * flow_steps,
            "eval_units": 2,
            "note": "latent flow only; the auto-encoder's steps are not timed and not counted",
        },
        "binary_dequantization": {
            "train_steps": 3 * b.steps,
            "eval_units": math.ceil(b.n_test / 256),
            "note": "3 models",
        },
        "drive": {
            "train_steps": len(drive.MODELS) * dr.steps * len(dr.seeds),
            "eval_units": len(drive.MODELS) * dr.test_images * len(dr.seeds),
            "note": f"{len(drive.MODELS)} models x {len(dr.seeds)} seeds, every model timed as the CNF",
        },
        "sr": {
            "train_steps": 2 * sr.steps,
            "eval_units": sr_images,
            "note": "CNF and baseline, the baseline timed as the CNF; Set5 + Set14 + BSD100",
        },
    }


def projection(rows: list[dict], profile: str) -> dict:
    """Device-hours per experiment: fp32 eager as configured, and with each experiment's fastest mode / dtype."""
    counts = workload_counts(profile)
    out: dict[str, dict] = {}
    for exp, c in counts.items():
        ok = [r for r in rows if r["experiment"] == exp and "error" not in r]
        entry: dict = dict(c)
        for label, pick in (("fp32_eager", lambda r: r["dtype"] == "fp32" and r.get("mode") == "eager"),
                            ("fastest", lambda r: True)):  # fmt: skip
            t = {
                ph: min((r["seconds"] for r in ok if r["phase"] == ph and pick(r)), default=None)
                for ph in ("train", "evaluate")
            }
            if t["train"] is None or (c["eval_units"] and t["evaluate"] is None):
                entry[f"hours_{label}"] = None
                continue
            seconds = c["train_steps"] * t["train"] + c["eval_units"] * (t["evaluate"] or 0.0)
            entry[f"hours_{label}"] = float(f"{seconds / 3600:.3g}")
        out[exp] = entry
    total: dict = {}
    for label in ("fp32_eager", "fastest"):
        vals = [e[f"hours_{label}"] for e in out.values()]
        total[f"hours_{label}"] = None if None in vals else float(f"{sum(vals):.3g}")
    return out | {"total": total}


# --- the report ---------------------------------------------------------------------------------


def summary_markdown(report: dict) -> str:
    env, parts = report["environment"], report["parts"]
    dry = ", DRY RUN" if report["dry_run"] else ""
    lines = [
        f"# GPU check: {env.get('device_name')} ({report['profile']} profile{dry})",
        "",
        (
            f"torch {env['torch']}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, driver {env.get('driver')}, "
            f"memory {env.get('memory_mb')} MB; {report['seconds']:.0f} s in all."
        ),
        "",
        "| part | status | seconds | detail |",
        "|---|---|---|---|",
    ]
    for name, p in parts.items():
        lines.append(f"| {name} | {p['status']} | {p['seconds']:.1f} | {p.get('detail', '')} |")
    lines += ["", "Peaks measured in this run (GFLOP/s):", "", "| precision | matmul | conv 3x3 |", "|---|---|---|"]
    for name, p in report.get("peaks", {}).items():
        lines.append(f"| {name} | {p['matmul_gflops']} | {p['conv_gflops']} |")
    proj = report.get("projection", {})
    if proj:
        lines += ["", f"Projected device-hours of `make reproduce PROFILE={report['profile']}`:", "",
                  "| experiment | train steps | eval units | hours (fp32 eager) | hours (fastest) | note |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for exp, e in proj.items():
            lines.append(
                f"| {exp} | {e.get('train_steps', '')} | {e.get('eval_units', '')} | {e['hours_fp32_eager']} "
                f"| {e['hours_fastest']} | {e.get('note', '')} |"
            )
    failed = [r for r in report.get("rows", []) if "error" in r]
    lines += ["", f"Phase rows: {len(report.get('rows', [])) - len(failed)} measured, {len(failed)} failed."]
    lines += [f"- {r['experiment']} {r['phase']} {r['dtype']} {r.get('mode')}: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def rows_markdown(rows: list[dict], peak: dict) -> str:
    head = (
        "| experiment | phase | dtype | mode | seconds | GFLOP | ratio to limit | peak MB | memory ratio | workload |"
    )
    lines = [f"Peaks in the same run: {json.dumps(peak)}", "", head, "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['experiment']} | {r['phase']} | {r['dtype']} | {r.get('mode')} | failed: {r['error']} |||||"
            )
            continue
        lines.append(
            f"| {r['experiment']} | {r['phase']} | {r['dtype']} | {r['mode']} | {r['seconds']:.4f} | {r['gflop']:.2f} "
            f"| {r['ratio_to_limit']} | {r['peak_mem_mb']:.0f} | {r['memory_ratio']} | {r['workload']} |"
        )
    return "\n".join(lines) + "\n"


def _part(report: dict, name: str, fn, detail=lambda v: ""):
    t = time.monotonic()
    print(f"[{name}]", flush=True)
    try:
        value = fn()
        report["parts"][name] = {"status": "ok", "seconds": time.monotonic() - t, "detail": detail(value)}
        return value
    except Exception as exc:  # noqa: BLE001  (keep going past a failing part)
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        report["parts"][name] = {"status": "failed", "seconds": time.monotonic() - t, "detail": msg}
        print(f"[{name}] FAILED {msg}", flush=True)
        return None


def check(args) -> dict:
    start = time.monotonic()
    deadline = start + args.budget
    device = torch.device(args.device)
    report: dict = {"profile": args.profile, "dry_run": args.dry_run, "budget_s": args.budget, "parts": {}}
    report["environment"] = _part(report, "environment", lambda: environment(device)) or {"torch": torch.__version__}
    print(json.dumps(report["environment"]), flush=True)
    peak = _part(report, "peaks", lambda: peaks(device, args.dry_run), lambda v: json.dumps(v)) or {}
    report["peaks"] = peak
    tests = _part(
        report,
        "tests",
        lambda: run_tests(device, min(PART_LIMITS["tests"], max(30.0, deadline - time.monotonic()))),
        lambda v: v["summary"],
    )
    if tests is not None:
        report["tests"] = tests
        if tests["returncode"]:
            report["parts"]["tests"]["status"] = "failed"
    if set(DTYPES) <= set(peak):
        groups = [(e, m) for m in MODES for e in phases.EXPERIMENTS]
        if args.dry_run:  # one compiled group keeps the compiled path alive in CI without minutes of compilation
            groups = [(e, "eager") for e in phases.EXPERIMENTS] + [("theory_gmm", "compiled")]
        rows = _part(report, "phases", lambda: phase_rows(groups, args, peak, deadline), lambda v: f"{len(v)} rows")
        report["rows"] = rows or []
        if rows and any("error" in r for r in rows):
            report["parts"]["phases"]["status"] = "partly failed"
        report["projection"] = _part(report, "projection", lambda: projection(report["rows"], args.profile)) or {}
    report["seconds"] = time.monotonic() - start
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (the smoke profile), for CI")
    p.add_argument("--profile", default=None, help="default: full (smoke with --dry-run)")
    p.add_argument("--budget", type=float, default=None, help="seconds in all (default 450; 300 with --dry-run)")
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    p.add_argument("--max-batch", type=int, default=None)
    p.add_argument(
        "--repeats", type=int, default=None, help="timed calls per row, median (default 3; 1 with --dry-run)"
    )
    p.add_argument("--group", help=argparse.SUPPRESS)  # internal: experiment:mode
    p.add_argument("--peak-json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.profile = args.profile or ("smoke" if args.dry_run else "full")
    args.repeats = args.repeats or (1 if args.dry_run else 3)
    if args.group:
        experiment, mode = args.group.split(":")
        run_group(experiment, mode, args.profile, args.device, json.loads(args.peak_json), args.max_batch, args.repeats)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here. On a GPU machine run `make gpu-check`; on a CPU, "
              "`make gpu-check DEVICE=cpu DRY_RUN=1` checks the script itself.", file=sys.stderr)  # fmt: skip
        return 2
    args.budget = args.budget or (300.0 if args.dry_run else 450.0)
    report = check(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = device.type + ("_dry_run" if args.dry_run else "")
    (out / f"phases_{tag}.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / f"phases_{tag}.md").write_text(rows_markdown(report.get("rows", []), report.get("peaks", {})))
    (out / f"gpu_check_{tag}.md").write_text(summary_markdown(report))
    print(summary_markdown(report))
    print(f"wrote {out}/phases_{tag}.json, phases_{tag}.md and gpu_check_{tag}.md")
    failed = [n for n, part in report["parts"].items() if part["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
