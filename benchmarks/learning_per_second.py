"""Held-out learning against CPU-seconds: what a training change buys per second of the 2-core machine.

For one experiment and several variants of its quick configuration, each variant trains in its own process with
one thread (the variants run side by side, one per core, as ``make reproduce``'s lanes do), through the
experiments' own :class:`~cnfkit.train.Trainer`, and evaluates its held-out headline metric every ``--every``
steps.  Each point is ``(training seconds, metric)``: the evaluation's own time is excluded.  With one thread a
training second is one CPU-second.

    python benchmarks/learning_per_second.py sr --variants paper residual --steps 300 --out results/benchmarks
    python benchmarks/learning_per_second.py mnist --variants constant cosine --every 1175 --out results/benchmarks

Experiments:

* ``sr``: held-out bits/dim of the CNF and the factorized baseline on the quick profile's BSDS500 32x32 test
  patches; variants ``paper``, ``residual`` (y - bicubic(x), ``SRConfig.residual``) and ``cosine`` (residual, with
  cosine decay after a warm-up of ``--steps // 20``).
* ``drive``: held-out bits/dim of the binary-dequantization CNF on the DRIVE test images (the first ``--n-eval``),
  ``--steps`` of the quick configuration, and its max F-score (the mean of the quick profile's samples) at the end;
  variants ``constant`` (the committed quick run's learning rate) and ``cosine`` (decay to 0 after 50 warm-up steps).
* ``mnist``: Fashion-MNIST test accuracy of Xiao et al.'s forward-pass classifier (``--n-eval`` test images) on the
  latent of the quick auto-encoder, each variant training its own auto-encoder and flow with the quick
  configuration (``--steps`` is ignored: the quick epochs are the budget); variants ``constant`` (the learning rate
  of the committed quick run), ``cosine`` (decay to 0 after 100 warm-up steps, for the auto-encoder and the flow) and
  ``ae4`` (4 auto-encoder epochs instead of 2).
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

SR_VARIANTS = {"paper": {"residual": False}, "residual": {"residual": True}, "cosine": {"residual": True}}
MNIST_VARIANTS = {
    "constant": {"schedule": "constant"},
    "cosine": {"schedule": "cosine", "warmup": 100},
    "ae4": {"ae_epochs": 4},
}
DRIVE_VARIANTS = {
    "constant": {"schedule": "constant"},
    "cosine": {"schedule": "cosine", "warmup": 50},
    "lr2": {"lr": 2e-3},
}
VARIANTS = {"sr": SR_VARIANTS, "mnist": MNIST_VARIANTS, "drive": DRIVE_VARIANTS}
METRIC = {"sr": "bpd", "mnist": "accuracy", "drive": "bpd"}


def sr_curves(variant: str, steps: int, every: int, n_eval: int) -> dict:
    """Train the quick SR CNF and baseline under ``variant``; held-out bits/dim every ``every`` steps."""
    import torch

    from cnfkit.experiments import superres as sr
    from cnfkit.train import TrainConfig, Trainer

    cfg = sr.config("quick").replace(steps=steps, **SR_VARIANTS[variant])
    if variant == "cosine":
        cfg = cfg.replace(schedule="cosine", warmup=steps // 20)
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
            schedule=cfg.schedule,
            warmup=cfg.warmup,
            eval_every=every,
            log_every=every,
            seed=cfg.seed,
            grad_clip=100.0,
            channels_last=cfg.channels_last,
        )
        trainer = Trainer(models[name], sr._nll_bits, sampler, tc, eval_fn=held_out, progress=False)
        out[name] = _curve(trainer.fit(), "bpd")
    return out


def _curve(history: list[dict], metric: str, offset_s: float = 0.0) -> list[dict]:
    """The evaluated points of a trainer's history as ``(step, training seconds, metric)``: each point's wall time was
    read before its own evaluation ran, so only the evaluations before it are subtracted; ``offset_s`` adds the
    training seconds of what came before (the MNIST auto-encoder)."""
    curve, evals_before = [], 0.0
    for h in history:
        if metric in h:
            seconds = round(offset_s + h["wall_time"] - evals_before, 2)
            curve.append({"step": int(h["step"]), "seconds": seconds, metric: h[metric]})
            evals_before = h["eval_s"]
    return curve


def drive_curves(variant: str, steps: int, every: int, n_eval: int) -> dict:
    """DRIVE: the quick CNF with held-out bits/dim every ``every`` steps and the max F-score of its soft maps at the
    end (its evaluation seconds are not counted)."""
    import torch

    from cnfkit.data.drive import load_drive
    from cnfkit.experiments import drive
    from cnfkit.train import TrainConfig, Trainer

    cfg = drive.config("quick").replace(steps=steps, test_images=n_eval, **DRIVE_VARIANTS[variant])
    train, test = load_drive("training"), load_drive("test")
    x, y, _, _ = drive._test_tensors(test, cfg)
    spent = {"eval": 0.0}

    def held_out(model) -> dict:
        t = time.perf_counter()
        bits = drive._test_bits(model, x, y, cfg, 0)
        spent["eval"] += time.perf_counter() - t
        return {"bpd": float(bits.mean()), "eval_s": spent["eval"]}

    torch.manual_seed(0)
    model = drive.build_model("cnf", cfg)
    tc = TrainConfig(
        steps=steps,
        lr=cfg.lr,
        schedule=cfg.schedule,
        warmup=min(cfg.warmup, steps),
        eval_every=every,
        log_every=every,
        seed=0,
    )
    history = Trainer(
        model, drive._loss("cnf"), drive.make_batches(train, cfg, 0), tc, eval_fn=held_out, progress=False
    ).fit()
    curve = _curve(history, "bpd")
    curve[-1]["max_f"] = drive.evaluate("cnf", model.eval(), test, cfg, 0)["max_f_score"]
    return {"cnf": curve}


def mnist_curves(variant: str, steps: int, every: int, n_eval: int) -> dict:
    """Fashion-MNIST: the quick auto-encoder, then Xiao et al.'s flow with held-out forward accuracy every ``every``
    steps (the seconds include the auto-encoder's training)."""
    import torch
    import torch.nn.functional as F

    from cnfkit.experiments import mnist
    from cnfkit.train import EpochSampler, TrainConfig, Trainer

    cfg = mnist.config("quick").replace(**MNIST_VARIANTS[variant])
    x_tr, y_tr, x_te, y_te = mnist._dataset("FashionMNIST", cfg, None)
    x_te, y_te = x_te[:n_eval], y_te[:n_eval]

    def fit(model, key, tensors, batch, epochs, lr, eval_fn=None):
        sampler = EpochSampler(tensors, batch, seed=cfg.seed)
        n = epochs * sampler.per_epoch
        tc = TrainConfig(steps=n, lr=lr, schedule=cfg.schedule, warmup=min(cfg.warmup, n), seed=cfg.seed)
        if eval_fn is not None:
            tc = tc.replace(eval_every=every, log_every=every)
        trainer = Trainer(model, mnist._loss(key, cfg), sampler, tc, eval_fn=eval_fn, progress=False)
        return trainer.fit(), trainer.wall_time

    torch.manual_seed(cfg.seed)
    ae = mnist.ConvAutoencoder(cfg.latent_dim)
    _, ae_s = fit(ae, "autoencoder", (x_tr,), cfg.ae_batch, cfg.ae_epochs, cfg.ae_lr)
    u_tr, u_te = mnist._encode_all(ae, x_tr), mnist._encode_all(ae, x_te)
    mean, std = u_tr.mean(0), u_tr.std(0) + 1e-6
    s_tr, s_te = (u_tr - mean) / std, (u_te - mean) / std
    spent = {"eval": 0.0}

    def held_out(flow) -> dict:
        t = time.perf_counter()
        pred = mnist.predict_forward(flow, s_te, cfg, torch.Generator().manual_seed(cfg.seed))
        spent["eval"] += time.perf_counter() - t
        return {"accuracy": float((pred == y_te).double().mean()), "eval_s": spent["eval"]}

    torch.manual_seed(cfg.seed)
    flow = mnist.build_xiao_flow(cfg)
    onehot = F.one_hot(y_tr, cfg.label_dim).float()
    history, _ = fit(flow, "xiao_flow", (s_tr, onehot), cfg.flow_batch, cfg.flow_epochs, cfg.flow_lr, held_out)
    return {"xiao_flow": _curve(history, "accuracy", ae_s)}


def _child(args: argparse.Namespace) -> int:
    import torch

    result = {
        "variant": args.variant,
        "threads": torch.get_num_threads(),
        "curves": {"sr": sr_curves, "mnist": mnist_curves, "drive": drive_curves}[args.experiment](
            args.variant, args.steps, args.every, args.n_eval
        ),
    }
    Path(args.child_out).write_text(json.dumps(result) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=list(VARIANTS))
    p.add_argument("--variants", nargs="+")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--n-eval", type=int, default=256, help="held-out items per evaluation")
    p.add_argument("--out", default=str(ROOT / "build" / "learning"))
    p.add_argument("--tag", default="", help="appended to the file names: learning_<experiment>[_<tag>]_cpu.*")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.variant:
        return _child(a)
    a.variants = a.variants or list(VARIANTS[a.experiment])
    unknown = set(a.variants) - set(VARIANTS[a.experiment])
    if unknown:
        p.error(f"unknown variant(s) {sorted(unknown)} of {a.experiment}: choose from {list(VARIANTS[a.experiment])}")
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
        "metric": METRIC[a.experiment],
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "steps": a.steps,
        "every": a.every,
        "n_eval": a.n_eval,
        "variants": results,
    }
    stem = f"learning_{a.experiment}{'_' + a.tag if a.tag else ''}_cpu"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / f"{stem}.md").write_text(markdown(doc))
    plot(doc, out / f"{stem}.png")
    print(markdown(doc))
    return 0


def markdown(doc: dict) -> str:
    metric = doc.get("metric", "bpd")
    budget = "the quick epochs" if doc["experiment"] == "mnist" else f"{doc['steps']} steps"
    lines = [
        (
            f"Held-out {metric} against training CPU-seconds ({doc['experiment']}, quick configuration, "
            f"{budget}, {doc['n_eval']} held-out items, one thread per variant, variants side by side "
            f"on {doc['machine']})."
        ),
        "",
        f"| variant | model | step | CPU-seconds | held-out {metric} |",
        "|---|---|---|---|---|",
    ]
    for r in doc["variants"]:
        for model, curve in r["curves"].items():
            for p in curve:
                lines.append(f"| {r['variant']} | {model} | {p['step']} | {p['seconds']} | {p[metric]:.4f} |")
    ends = [
        (r["variant"], m, c[-1]["max_f"])
        for r in doc["variants"]
        for m, c in r["curves"].items()
        if c[-1:] and "max_f" in c[-1]
    ]
    if ends:
        lines += ["", "Max F-score of the soft maps at the end of each run:", ""]
        lines += [f"- {v}, {m}: {f:.4f}" for v, m, f in ends]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = doc.get("metric", "bpd")
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"cnf": "-", "baseline": "--"}
    for r in doc["variants"]:
        for model, curve in r["curves"].items():
            ax.plot(
                [p["seconds"] for p in curve],
                [p[metric] for p in curve],
                styles.get(model, ":"),
                marker="o",
                label=f"{r['variant']}: {model}",
            )
    ax.set_xlabel("training CPU-seconds (1 thread)")
    ax.set_ylabel({"bpd": "held-out bits/dim", "accuracy": "held-out forward accuracy"}[metric])
    ax.set_title(f"{doc['experiment']}: learning per CPU-second")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
