"""Held-out learning against CPU-seconds: what a training change buys per second of the 2-core machine.

For one experiment and several variants of its quick configuration, each variant trains in its own process with
one thread (the variants run side by side, one per core, as ``make reproduce``'s lanes do), through the
experiments' own :class:`~cnfkit.train.Trainer`, and evaluates its held-out headline metric every ``--every``
steps.  Each point is ``(training seconds, metric)``: the evaluation's own time is excluded.  With one thread a
training second is one CPU-second.

    python benchmarks/learning_per_second.py sr --variants paper residual --steps 300 --out results/benchmarks

Experiments: ``sr`` (held-out bits/dim of the CNF and the factorized baseline on the quick profile's BSDS500 32x32
test patches; variants ``paper`` and ``residual`` (y - bicubic(x), ``SRConfig.residual``)).
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
sys.path.insert(0, str(ROOT))

SR_VARIANTS = {"paper": {"residual": False}, "residual": {"residual": True}}


def sr_curves(variant: str, steps: int, every: int, n_eval: int) -> dict:
    """Train the quick SR CNF and baseline under ``variant``; held-out bits/dim every ``every`` steps."""
    import torch

    from cnfkit.experiments import superres as sr
    from cnfkit.train import TrainConfig, Trainer

    cfg = sr.config("quick").replace(steps=steps, **SR_VARIANTS[variant])
    sources, _ = sr._sources(cfg, None, None, progress=False)
    size, _, sampler, hr_te, lr_te = next(iter(sr._size_data(cfg, sources, None)))
    hr_te, lr_te = hr_te[:n_eval], lr_te[:n_eval]
    torch.manual_seed(cfg.seed)
    models = sr.build_models(cfg)
    out = {}
    for name in ("cnf", "baseline"):
        spent = {"eval": 0.0}

        def held_out(model, name=name, spent=spent) -> dict:
            t = time.perf_counter()
            bits = sr._bits(model, hr_te, lr_te, 64, cfg.seed, f"table1/{size}")
            spent["eval"] += time.perf_counter() - t
            return {"bpd": float(bits.mean()), "eval_s": spent["eval"]}

        tc = TrainConfig(
            steps=steps,
            lr=cfg.lr,
            eval_every=every,
            log_every=every,
            seed=cfg.seed,
            grad_clip=100.0,
            channels_last=cfg.channels_last,
        )
        trainer = Trainer(models[name], sr._nll_bits, sampler, tc, eval_fn=held_out, progress=False)
        history = trainer.fit()
        # each point's wall time was read before its own evaluation ran: subtract only the evaluations before it
        curve, evals_before = [], 0.0
        for h in history:
            if "bpd" in h:
                curve.append(
                    {"step": int(h["step"]), "seconds": round(h["wall_time"] - evals_before, 2), "bpd": h["bpd"]}
                )
                evals_before = h["eval_s"]
        out[name] = curve
    return out


def _child(args: argparse.Namespace) -> int:
    import torch

    result = {
        "variant": args.variant,
        "threads": torch.get_num_threads(),
        "curves": sr_curves(args.variant, args.steps, args.every, args.n_eval),
    }
    Path(args.child_out).write_text(json.dumps(result) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=["sr"])
    p.add_argument("--variants", nargs="+", default=list(SR_VARIANTS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--n-eval", type=int, default=256, help="held-out items per evaluation")
    p.add_argument("--out", default=str(ROOT / "build" / "learning"))
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.variant:
        return _child(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CNFKIT_THREADS": "1", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    procs = []
    for v in a.variants:
        part = out / f".learning_{a.experiment}_{v}.json"
        cmd = [sys.executable, __file__, a.experiment, "--variant", v, "--child-out", str(part)]
        cmd += ["--steps", str(a.steps), "--every", str(a.every), "--n-eval", str(a.n_eval)]
        procs.append((v, part, subprocess.Popen(cmd, env=env, cwd=ROOT)))
    results = []
    for v, part, proc in procs:
        if proc.wait():
            print(f"variant {v} failed", file=sys.stderr)
            return 1
        results.append(json.loads(part.read_text()))
        part.unlink()
    doc = {
        "experiment": a.experiment,
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "steps": a.steps,
        "every": a.every,
        "n_eval": a.n_eval,
        "variants": results,
    }
    stem = f"learning_{a.experiment}_cpu"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(doc))
    plot(doc, out / f"{stem}.png")
    print(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    lines = [
        (
            f"Held-out bits/dim against training CPU-seconds ({doc['experiment']}, quick configuration, "
            f"{doc['steps']} steps, {doc['n_eval']} held-out items, one thread per variant, variants side by side "
            f"on {doc['machine']})."
        ),
        "",
        "| variant | model | step | CPU-seconds | held-out bpd |",
        "|---|---|---|---|---|",
    ]
    for r in doc["variants"]:
        for model, curve in r["curves"].items():
            for p in curve:
                lines.append(f"| {r['variant']} | {model} | {p['step']} | {p['seconds']} | {p['bpd']:.4f} |")
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"cnf": "-", "baseline": "--"}
    for r in doc["variants"]:
        for model, curve in r["curves"].items():
            ax.plot(
                [p["seconds"] for p in curve],
                [p["bpd"] for p in curve],
                styles.get(model, ":"),
                marker="o",
                label=f"{r['variant']}: {model}",
            )
    ax.set_xlabel("training CPU-seconds (1 thread)")
    ax.set_ylabel("held-out bits/dim")
    ax.set_title(f"{doc['experiment']}: learning per CPU-second")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
