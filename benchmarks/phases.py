"""Every experiment's phases against the machine's FLOP limit: ``make bench``.

For each experiment (theory GMM / rotating, MNIST, binary dequantization, DRIVE, SR), phase
(``train``: one optimiser step; ``sample``: one sampling call; ``evaluate``: one evaluation unit,
e.g. one DRIVE test image with its samples or one Set5-sized image) and profile architecture
(``quick``, ``full``), a fresh process builds the workload from the experiment's own configuration,
warms up, and times ``--repeats`` calls (median).  FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode``; the machine's peak is measured in the same run (a
large matmul and a 3x3 convolution; on CUDA in fp32/TF32 and bf16).  Each row::

    experiment, phase, profile, device, dtype, seconds, gflop, gflops (achieved), peak_gflops,
    ratio_to_limit = seconds / (gflop / peak_gflops), peak_mem_mb, workload, mode

Rows go to ``results/benchmarks/phases_<device>.json`` and a Markdown table beside it.  Inputs are
synthetic tensors of the experiments' sizes: no dataset is needed.

    python benchmarks/phases.py --out results/benchmarks            # everything, CPU
    python benchmarks/phases.py --only drive sr --profiles quick    # a subset
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

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXPERIMENTS = ("theory_gmm", "theory_rotating", "mnist", "binary_dequantization", "drive", "sr")
PHASES = ("train", "sample", "evaluate")


# --- the machine's limit ------------------------------------------------------------------------


def _time(fn, repeats: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak(device: torch.device, dtype: torch.dtype) -> dict[str, float]:
    """Achieved GFLOP/s of a large matmul and of a 3x3 convolution (128 -> 128 channels)."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    t_mm = _time(lambda: a @ b, 10, 3, device)
    batch, side = (64, 64) if device.type == "cuda" else (8, 64)
    x = torch.randn(batch, 128, side, side, device=device, dtype=dtype)
    w = torch.randn(128, 128, 3, 3, device=device, dtype=dtype)
    with torch.no_grad():
        t_conv = _time(lambda: F.conv2d(x, w, padding=1), 5, 2, device)
    mm = 2 * n**3 / t_mm / 1e9
    conv = 2 * batch * 128 * 128 * 9 * side * side / t_conv / 1e9
    return {"matmul_gflops": round(mm, 1), "conv_gflops": round(conv, 1), "peak_gflops": round(max(mm, conv), 1)}


# --- workloads ----------------------------------------------------------------------------------


def _onehot(n: int, k: int) -> torch.Tensor:
    return F.one_hot(torch.arange(n) % k, k).float()


def _step(model, loss_fn, batch, opt):
    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        opt.step()

    return run


def build(experiment: str, phase: str, profile: str, device: torch.device, max_batch: int | None = None):
    """``(fn, description)``: one call of ``fn`` is one unit of the phase.  ``max_batch`` caps the
    batch of the image experiments' train / sample rows and the crops of the SR evaluation unit (a CPU
    cannot hold the full profile's SR batch of 64 at 64x64); the workload text says what ran."""
    cap = lambda n: n if max_batch is None else min(n, max_batch)
    from cnfkit.train import adam
    from cnfkit.utils import row_generators

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if experiment.startswith("theory"):
        from cnfkit.experiments import theory
        from cnfkit.flows import VectorFlow
        from cnfkit.models.toy import eight_modes, rotating_modes

        cfg = theory.config(profile)
        if experiment == "theory_gmm":
            model = theory.build_gmm_model("xiao", cfg).to(device)
            x, labels = eight_modes(cfg.gmm_batch, g)
            batch = (x.to(device), F.one_hot(labels, cfg.label_dim).float().to(device), torch.tensor(0.5))
            loss = theory.gmm_loss("xiao", cfg)
            desc = f"Xiao flow {cfg.gmm_blocks}x{cfg.gmm_layers}x{cfg.gmm_hidden}, batch {cfg.gmm_batch}"
            if phase == "train":
                return _step(model, loss, batch, adam(model.parameters(), 1e-4)), desc
            model.eval()
            if phase == "sample":
                onehot = _onehot(cfg.n_posterior, cfg.label_dim).to(device)
                return (lambda: model.sample(onehot, generator=g)), f"{desc}; {cfg.n_posterior} posterior samples"
            cpu_model = model.cpu()
            return (
                lambda: theory.posterior_metrics("xiao", cpu_model, cfg, torch.Generator().manual_seed(1))
            ), f"{desc}; posterior metrics (8 labels x {cfg.n_posterior} samples, MMD)"
        model = VectorFlow(2, context_dim=1, blocks=cfg.rot_blocks, hidden=cfg.rot_hidden, layers=3).to(device)
        x, y = rotating_modes(cfg.rot_batch, g)
        desc = f"CNF {cfg.rot_blocks}x3x{cfg.rot_hidden}, batch {cfg.rot_batch}"
        if phase == "train":
            return _step(
                model,
                lambda m, b: -m(b[1], b[0]).mean(),
                (x.to(device), y.to(device)),
                adam(model.parameters(), 1e-4),
            ), desc
        model.eval()
        xt, yt = rotating_modes(cfg.rot_test, g)
        xt, yt = xt.to(device), yt.to(device)
        if phase == "sample":
            return (lambda: model.sample(xt, generator=None)), f"{desc}; {cfg.rot_test} samples"
        return (lambda: model.log_prob(yt, xt)), f"{desc}; test NLL of {cfg.rot_test} points"

    if experiment == "mnist":
        from cnfkit.experiments import mnist
        from cnfkit.models.toy import pad

        cfg = mnist.config(profile)
        flow = mnist.build_xiao_flow(cfg).to(device)
        dim = cfg.latent_dim + cfg.label_dim
        desc = f"Xiao flow on the 20-d latent, {cfg.flow_blocks}x{cfg.flow_layers}x{cfg.flow_hidden}"
        if phase == "train":
            s = torch.randn(cfg.flow_batch, cfg.latent_dim, generator=g).to(device)
            batch = (s, _onehot(cfg.flow_batch, cfg.label_dim).to(device))
            return _step(
                flow,
                lambda m, b: -m(pad(b[0], dim, cfg.pad_noise), b[1]).mean(),
                batch,
                adam(flow.parameters(), 1e-4),
            ), f"{desc}, batch {cfg.flow_batch}"
        flow.eval()
        if phase == "sample":
            onehot = _onehot(200, cfg.label_dim).to(device)
            return (lambda: flow.sample(onehot, temperature=cfg.temperature)), f"{desc}; a 10x20 sample grid"
        s_te = torch.randn(cfg.n_test, cfg.latent_dim, generator=g)
        cpu_flow = flow.cpu()
        return (
            lambda: mnist.predict_forward(cpu_flow, s_te, cfg, torch.Generator().manual_seed(1))
        ), f"{desc}; forward-pass classification of {cfg.n_test} test latents"

    if experiment == "binary_dequantization":
        from cnfkit.experiments import binary_dequantization as bd

        cfg = bd.config(profile)
        x, y = bd.binary_shapes(cfg.batch, cfg.size, g)
        model = bd.SegmentationCNF(1, "binary", hidden=cfg.hidden, widths=cfg.widths).to(device)
        d = y[0].numel()
        desc = f"binary CNF on {cfg.size}x{cfg.size} shapes, hidden {cfg.hidden}"
        if phase == "train":
            return _step(
                model,
                lambda m, b: -m(b[1], b[0]).mean() / d,
                (x.to(device), y.to(device)),
                adam(model.parameters(), 1e-4),
            ), f"{desc}, batch {cfg.batch}"
        model.eval()
        xt, yt = bd.binary_shapes(256, cfg.size, g)
        xt, yt = xt.to(device), yt.to(device)
        if phase == "sample":
            return (lambda: model.sample(xt, generator=row_generators(0, 256))), f"{desc}; 256 samples"
        return (lambda: model(yt, xt, generator=row_generators(0, 256))), f"{desc}; test ELBO of 256 images"

    if experiment == "drive":
        from cnfkit.data.drive import DriveSplit
        from cnfkit.experiments import drive

        cfg = drive.config(profile)
        cfg = cfg.replace(batch=cap(cfg.batch))
        if phase == "train":
            model = drive.build_model("cnf", cfg).to(device)
            x = torch.rand(cfg.batch, 3, cfg.crop, cfg.crop, generator=g)
            y = (torch.rand(cfg.batch, 1, cfg.crop, cfg.crop, generator=g) > 0.9).float()
            d = y[0].numel()
            return _step(
                model,
                lambda m, b: -m(b[1], b[0]).mean() / d,
                (x.to(device), y.to(device)),
                adam(model.parameters(), 1e-4),
            ), f"CNF (binary deq.), batch {cfg.batch} of {cfg.crop}x{cfg.crop}"
        model = drive.build_model("cnf", cfg).to(device).eval()
        img = torch.rand(1, 3, 584, 565, generator=g)
        with torch.no_grad():
            model(torch.zeros(1, 1, 584, 568, device=device), F.pad(img, (0, 3)).to(device))  # initialise
        if phase == "sample":
            feats = model.conditioning(F.pad(img, (0, 3)).to(device))
            return (
                lambda: model.sample(
                    None,
                    features=feats,
                    num_samples=cfg.n_samples,
                    size=(584, 568),
                    generator=row_generators(0, cfg.n_samples),
                )
            ), f"CNF, {cfg.n_samples} samples of one 584x568 test image (conditioner shared)"
        split = DriveSplit(
            img, (torch.rand(1, 1, 584, 565, generator=g) > 0.9).float(), torch.ones(1, 1, 584, 565), ["synthetic"]
        )
        return (
            lambda: drive.evaluate("cnf", model, split, cfg.replace(test_images=1), seed=0)
        ), f"CNF evaluation of one test image: ELBO, {cfg.n_samples} samples, PR curve"

    if experiment == "sr":
        from cnfkit.experiments import superres as sr

        cfg = sr.config(profile)
        cfg = cfg.replace(batch=cap(cfg.batch), crops_per_image=cap(cfg.crops_per_image))
        models = sr.build_models(cfg)
        if cfg.channels_last:
            models = {k: m.to(memory_format=torch.channels_last) for k, m in models.items()}
        size = max(cfg.sizes)
        model = models["cnf"].to(device)
        arch = f"CNF K={cfg.flow_steps} {cfg.hidden} hidden, {cfg.rrdb_blocks} RRDB blocks of {cfg.nf}"
        if phase == "train":
            hr = torch.randint(0, 256, (cfg.batch, 3, size, size), generator=g).float()
            lr = torch.randint(0, 256, (cfg.batch, 3, size // 2, size // 2), generator=g).float()
            return _step(
                model,
                lambda m, b: -m(b[0], b[1]).mean(),
                (hr.to(device), lr.to(device)),
                adam(model.parameters(), 1e-4),
            ), f"{arch}, batch {cfg.batch} at {size}x{size}"
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, 3, 32, 32, device=device), torch.zeros(2, 3, 16, 16, device=device))
        if phase == "sample":
            lr = torch.randint(0, 256, (cfg.batch, 3, size // 2, size // 2), generator=g).float().to(device)
            return (lambda: model.sample(lr, temperature=cfg.tau)), f"{arch}, {cfg.batch} samples at {size}x{size}"
        img = torch.randint(0, 256, (3, 256, 256), generator=g, dtype=torch.uint8)  # a Set5-sized image
        models = {k: m.to(device).eval() for k, m in models.items()}
        return (
            lambda: sr.evaluate_test_set("bench", models, cfg.replace(max_test_images=1), [img], ["synthetic"])
        ), f"{arch}; Table 2 for one 256x256 image: CNF sample, baseline mode, {cfg.crops_per_image} crop bpd each"
    raise ValueError(f"unknown experiment {experiment!r}")


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row(
    experiment: str,
    phase: str,
    profile: str,
    device: str,
    dtype: str,
    repeats: int,
    warmup: int,
    peak: float,
    max_batch: int | None = None,
    compiled: bool = False,
) -> dict:
    """One row, in this process (the parent runs each row in a fresh one).  ``compiled``: the unit runs under
    ``torch.compile`` (FLOPs are counted on the eager unit, the same arithmetic, before compiling)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cnfkit.utils import set_threads

    set_threads()
    dev = torch.device(device)
    fn, workload = build(experiment, phase, profile, dev, max_batch)
    autocast = (
        torch.autocast(dev.type, dtype=torch.bfloat16) if dtype == "bf16" else torch.autocast(dev.type, enabled=False)
    )
    grad = torch.enable_grad() if phase == "train" else torch.no_grad()

    def call():
        with autocast, grad:
            fn()

    call()  # the first call also initialises ActNorm
    counter = FlopCounterMode(display=False)
    with counter:
        call()
    gflop = counter.get_total_flops() / 1e9
    if compiled:
        fn = torch.compile(fn)
        call()  # compilation, untimed
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    seconds = _time(call, repeats, warmup, dev)
    return {
        "experiment": experiment,
        "phase": phase,
        "profile": profile,
        "device": device,
        "dtype": dtype,
        "seconds": round(seconds, 5),
        "gflop": round(gflop, 3),
        "gflops": round(gflop / seconds, 1),
        "peak_gflops": peak,
        "ratio_to_limit": round(seconds / (gflop / peak), 2) if gflop > 0 else None,
        "peak_mem_mb": round(_peak_mem_mb(dev), 1),
        "workload": workload,
        "threads": torch.get_num_threads(),
        "mode": "compiled" if compiled else "eager",
    }


def markdown(rows: list[dict], peak: dict) -> str:
    head = (
        "| experiment | phase | profile | device | dtype | seconds | GFLOP | GFLOP/s | ratio to limit | peak MB "
        "| workload |"
    )
    lines = [
        f"Peak measured in the same run: matmul {peak['matmul_gflops']} GFLOP/s, "
        + f"conv3x3 {peak['conv_gflops']} GFLOP/s.",
        "",
        head,
        "|" + "---|" * 11,
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['experiment']} | {r['phase']} | {r['profile']} | {r['device']} | {r['dtype']} | failed: "
                f"{r['error']} |||||"
            )
            continue
        lines.append(
            f"| {r['experiment']} | {r['phase']} | {r['profile']} | {r['device']} | {r['dtype']} "
            f"| {r['seconds']:.4f} | {r['gflop']:.2f} | {r['gflops']:.1f} | {r['ratio_to_limit']} "
            f"| {r['peak_mem_mb']:.0f} | {r['workload']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "results" / "benchmarks"))
    p.add_argument("--only", nargs="+", choices=EXPERIMENTS, default=list(EXPERIMENTS))
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    p.add_argument("--profiles", nargs="+", default=["quick", "full"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument(
        "--repeats", type=int, default=3, help="timed calls per row (median); full-profile rows: --repeats-full"
    )
    p.add_argument("--repeats-full", type=int, default=1)
    p.add_argument(
        "--warmup", type=int, default=1, help="untimed calls after the first (which initialises) and the FLOP count"
    )
    p.add_argument(
        "--max-batch", type=int, default=None, help="cap image batches (default: 4 on CPU for the full profile)"
    )
    p.add_argument("--timeout", type=int, default=900, help="seconds per row")
    p.add_argument("--row", help=argparse.SUPPRESS)  # internal: experiment:phase:profile:dtype:peak
    a = p.parse_args(argv)
    if a.row:
        experiment, phase, profile, dtype, peak = a.row.split(":")
        print(
            json.dumps(
                run_row(experiment, phase, profile, a.device, dtype, a.repeats, a.warmup, float(peak), a.max_batch)
            )
        )
        return 0
    dev = torch.device(a.device)
    torch.set_num_threads(int(os.environ.get("CNFKIT_THREADS", torch.get_num_threads())))
    peak = {dt: measure_peak(dev, torch.bfloat16 if dt == "bf16" else torch.float32) for dt in a.dtypes}
    print(f"peak: {peak}", flush=True)
    rows = []
    for experiment in a.only:
        for profile in a.profiles:
            for phase in a.phases:
                for dt in a.dtypes:
                    full = profile == "full"
                    cmd = [
                        sys.executable,
                        __file__,
                        "--row",
                        f"{experiment}:{phase}:{profile}:{dt}:{peak[dt]['peak_gflops']}",
                        "--device",
                        a.device,
                        "--repeats",
                        str(a.repeats_full if full else a.repeats),
                        "--warmup",
                        str(0 if full else a.warmup),
                    ]
                    max_batch = a.max_batch if a.max_batch is not None else (4 if full and dev.type == "cpu" else None)
                    if max_batch is not None:
                        cmd += ["--max-batch", str(max_batch)]
                    try:
                        res = subprocess.run(
                            cmd, capture_output=True, text=True, timeout=a.timeout, cwd=ROOT, check=False
                        )
                        if res.returncode:
                            raise RuntimeError(
                                res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"
                            )
                        row = json.loads(res.stdout.strip().splitlines()[-1])
                    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                        row = {
                            "experiment": experiment,
                            "phase": phase,
                            "profile": profile,
                            "device": a.device,
                            "dtype": dt,
                            "error": str(exc)[:200],
                        }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "peak": peak,
        "repeats": a.repeats,
        "warmup": a.warmup,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
    }
    tag = dev.type
    (out / f"phases_{tag}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (out / f"phases_{tag}.md").write_text(markdown(rows, peak[a.dtypes[0]]))
    print(f"wrote {out / f'phases_{tag}.json'} and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
