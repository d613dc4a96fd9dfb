"""Why binary data needs half-infinite dequantization (Winkler et al. sec. 3.2), shown two ways.

1. :func:`support_demo`, exact and 1-D: a flow's density ``p(v)`` is positive on all of R.  With
   uniform dequantization the bins of ``y in {0, 1}`` are ``[0, 1)`` and ``[1, 2)``: whatever mass
   ``p`` puts outside ``[0, 2)`` belongs to no ``y`` (``P(0) + P(1) < 1``), and the uniform ``q``
   cannot follow ``p``'s shape inside a bin, so the bound is loose.  The half-lines ``v < 0.5`` and
   ``v > 0.5`` cover R, ``P(0) + P(1) = 1``, and a flexible ``q(v | y)`` can make the bound tight.
2. :func:`run_images`: a conditional binary-image task (shapes from noisy, blurred observations)
   where the same CNF is trained with binary and with uniform dequantization, next to the factored
   weighted-Bernoulli baseline, all compared in bits/dim (the paper's "CNF Uniform" row).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.segmentation import FactoredBernoulli, SegmentationCNF
from ..repro.profiles import Config, select
from ..repro.results import curve_summary, phase
from ..train import EpochSampler, train_steps

__all__ = ["CONFIGS", "BinaryDeqConfig", "binary_shapes", "config", "run_images", "support_demo"]


def support_demo(mean: float = 0.7, std: float = 0.6) -> dict[str, float]:
    """Exact quantities for ``p(v) = N(mean, std^2)`` and ``y in {0, 1}`` under both quantizers.

    Returns the probability of each ``y``, the mass lost by uniform bins, and the uniform bound
    ``E_u[log p(y + u)]`` (closed form: ``E(y + u - m)^2 = (y + 1/2 - m)^2 + 1/12``).
    """
    phi = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))
    out: dict[str, float] = {}
    for y in (0, 1):
        out[f"uniform_P{y}"] = phi((y + 1 - mean) / std) - phi((y - mean) / std)
        second_moment = (y + 0.5 - mean) ** 2 + 1 / 12
        out[f"uniform_bound{y}"] = -0.5 * math.log(2 * math.pi * std**2) - second_moment / (2 * std**2)
    out["binary_P1"] = 1 - phi((0.5 - mean) / std)
    out["binary_P0"] = phi((0.5 - mean) / std)
    out["uniform_mass_lost"] = 1 - out["uniform_P0"] - out["uniform_P1"]
    return out


def plot_support_demo(mean: float = 0.7, std: float = 0.6):
    import matplotlib.pyplot as plt

    d = support_demo(mean, std)
    v = torch.linspace(-2, 3, 500)
    p = torch.exp(-0.5 * ((v - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, kind in zip(axes, ("uniform", "binary")):
        ax.plot(v, p, color="black", lw=1.5, label="flow density p(v)")
        if kind == "uniform":
            ax.fill_between(
                v, p, where=(v >= 0) & (v < 1), color="tab:blue", alpha=0.3, label=f"bin y=0: P={d['uniform_P0']:.3f}"
            )
            ax.fill_between(
                v, p, where=(v >= 1) & (v < 2), color="tab:red", alpha=0.3, label=f"bin y=1: P={d['uniform_P1']:.3f}"
            )
            ax.fill_between(
                v,
                p,
                where=(v < 0) | (v >= 2),
                color="grey",
                alpha=0.3,
                label=f"no y: {d['uniform_mass_lost']:.3f} lost",
            )
            ax.set_title("uniform dequantization: bins [0,1) and [1,2)")
        else:
            ax.fill_between(
                v, p, where=v < 0.5, color="tab:blue", alpha=0.3, label=f"y=0 (v<0.5): P={d['binary_P0']:.3f}"
            )
            ax.fill_between(
                v, p, where=v >= 0.5, color="tab:red", alpha=0.3, label=f"y=1 (v>0.5): P={d['binary_P1']:.3f}"
            )
            ax.set_title("binary dequantization: half-lines, nothing lost")
        ax.axvline(0.5 if kind == "binary" else 1.0, color="grey", lw=0.8, ls="--")
        ax.legend(fontsize=8)
        ax.set_xlabel("v")
    fig.tight_layout()
    return fig


def binary_shapes(
    n: int, size: int = 16, generator: torch.Generator | None = None, noise: float = 0.3
) -> tuple[Tensor, Tensor]:
    """``(x [n, 1, size, size], y [n, 1, size, size])``: y holds 1-3 random discs and bars; x is y
    blurred (3x3 box) plus Gaussian noise, so ``p(y | x)`` is uncertain near edges."""
    r = torch.arange(size).float()
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    y = torch.zeros(n, 1, size, size)
    for i in range(n):
        for _ in range(int(torch.randint(1, 4, (1,), generator=generator))):
            cy, cx = (torch.rand(2, generator=generator) * size).tolist()
            if torch.rand(1, generator=generator).item() < 0.5:
                rad = 1.5 + 2.5 * torch.rand(1, generator=generator).item()
                y[i, 0] = torch.maximum(y[i, 0], (((yy - cy) ** 2 + (xx - cx) ** 2) < rad**2).float())
            else:
                h, w = (1 + 4 * torch.rand(2, generator=generator)).tolist()
                y[i, 0] = torch.maximum(
                    y[i, 0], ((yy - cy).abs() < h / 2 + 0.5).float() * ((xx - cx).abs() < w + 0.5).float()
                )
    blur = F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    x = blur + noise * torch.randn(y.shape, generator=generator)
    return x, y


@dataclass(frozen=True)
class BinaryDeqConfig(Config):
    n_train: int
    n_test: int
    size: int
    steps: int
    batch: int
    hidden: int
    widths: tuple[int, int, int]
    lr: float = 1e-3
    # eq. 9's weight for the "factored" row.  0.5 weighs both classes alike, but eq. 9's normaliser makes the scored
    # distribution p^0.5 / (p^0.5 + (1 - p)^0.5), a tempered Bernoulli, not Bernoulli(p): "factored_bernoulli" is that
    beta: float = 0.5
    seed: int = 0
    nonnegative = frozenset({"seed"})
    dry_run_caps: ClassVar[dict[str, int]] = {"steps": 5, "n_train": 256, "n_test": 64}


CONFIGS = {
    "smoke": BinaryDeqConfig(n_train=256, n_test=64, size=16, steps=40, batch=16, hidden=8, widths=(8, 8, 8)),
    "quick": BinaryDeqConfig(n_train=4096, n_test=512, size=16, steps=1500, batch=32, hidden=32, widths=(16, 32, 32)),
    "full": BinaryDeqConfig(n_train=16384, n_test=2048, size=32, steps=6000, batch=64, hidden=32, widths=(32, 64, 64)),
}


def config(profile: str | None, dry_run: bool = False) -> BinaryDeqConfig:
    return select(CONFIGS, profile, dry_run)


def run_images(cfg: BinaryDeqConfig, progress: bool = True, device: str | None = None, timer=None) -> dict[str, Any]:
    """Train the three models on :func:`binary_shapes` (on ``device``; ``None``: CUDA when available);
    test bits/dim on the CPU (and training curves)."""
    g = torch.Generator().manual_seed(cfg.seed)
    x_tr, y_tr = binary_shapes(cfg.n_train, cfg.size, g)
    x_te, y_te = binary_shapes(cfg.n_test, cfg.size, g)
    d = y_te[0].numel()
    builders: dict[str, Callable[[], SegmentationCNF | FactoredBernoulli]] = {
        "cnf": lambda: SegmentationCNF(1, "binary", hidden=cfg.hidden, widths=cfg.widths),
        "cnf_uniform": lambda: SegmentationCNF(1, "uniform", hidden=cfg.hidden, widths=cfg.widths),
        "factored": lambda: FactoredBernoulli(1, cfg.hidden, cfg.widths, beta=cfg.beta),
        "factored_bernoulli": lambda: FactoredBernoulli(1, cfg.hidden, cfg.widths, beta=None),
    }
    out: dict[str, Any] = {"metrics": {}, "histories": {}, "models": {}}
    for name, build in builders.items():
        torch.manual_seed(cfg.seed)  # before building: the initial parameters come from the seeded generator too
        model = out["models"][name] = build()
        loss = (
            (lambda m, b: m.loss(b[1], b[0]).mean() / d)
            if name.startswith("factored")
            else (lambda m, b: -m(b[1], b[0]).mean() / d)
        )
        history, wall = train_steps(
            model,
            loss,
            EpochSampler((x_tr, y_tr), cfg.batch, seed=cfg.seed),
            steps=cfg.steps,
            lr=cfg.lr,
            seed=cfg.seed,
            progress=progress,
            desc=f"binary-deq/{name}",
            device=device,
            timer=timer,
        )
        model.cpu().eval()
        with torch.no_grad(), phase(timer, "evaluation"):
            if isinstance(model, FactoredBernoulli):
                ll = model(y_te, x_te)  # as the model is scored (eq. 9, or plain Bernoulli)
            else:
                ll = torch.cat([model(y_te[i : i + 256], x_te[i : i + 256]) for i in range(0, cfg.n_test, 256)])
        out["metrics"][name] = {
            "test_bpd": (-ll.mean() / (d * math.log(2))).item(),
            "test_bpd_per_image": (-ll.double() / (d * math.log(2))).tolist(),  # the paired items of the bootstrap
            "train_time_s": wall,
        }
        out["histories"][name] = [(h["step"], h["loss"] / math.log(2)) for h in history if "loss" in h]
        out["metrics"][name]["learning_curve"] = curve_summary(history)
    out["data"] = (x_te[:8], y_te[:8])
    return out


ROW_LABELS = {
    "cnf": "CNF, binary dequantization",
    "cnf_uniform": "CNF, uniform dequantization",
    "factored": "factored, eq. 9 weighted Bernoulli (beta = 0.5, tempered)",
    "factored_bernoulli": "factored Bernoulli(p)",
}


def metrics_table(result: dict[str, Any]):
    """Held-out bits/dim (and the other metrics) of each model, one row per model."""
    import pandas as pd

    rows = {k: {m: v for m, v in d.items() if not m.endswith("_per_image")} for k, d in result["metrics"].items()}
    return pd.DataFrame(rows).T.rename(index=ROW_LABELS)


def results_payload(result: dict[str, Any], demo: dict[str, float]) -> dict[str, Any]:
    """What ``binary_dequantization.json`` holds besides the configuration."""
    return {"support_demo": demo, "images": result["metrics"]}


def plot_training_curves(result: dict[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, h in result["histories"].items():
        steps, bits = zip(*h)
        ax.plot(steps, bits, label=ROW_LABELS[name])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss [bits/dim]")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_samples(result: dict[str, Any], n: int = 6, seed: int = 0):
    """Observation, ground truth and one sample per model for a few test images."""
    import matplotlib.pyplot as plt

    x, y = result["data"]
    x, y = x[:n], y[:n]
    g = torch.Generator().manual_seed(seed)
    rows = [("observation x", x), ("ground truth y", y)]
    for name in ("cnf", "cnf_uniform", "factored"):
        m = result["models"][name]
        rows.append((name + " sample", m.sample(x, generator=g)))
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.35 * len(rows)))
    for i, (label, imgs) in enumerate(rows):
        for j in range(n):
            axes[i][j].imshow(imgs[j, 0], cmap="gray")
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
        axes[i][0].set_ylabel(label, fontsize=7)
    fig.tight_layout()
    return fig
