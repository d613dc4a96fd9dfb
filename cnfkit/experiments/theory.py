"""The theory notebook's experiments (``notebooks/00_theory.ipynb``).

Part 1, a 2-D conditional toy (:func:`run_rotating`): a CNF (conditioning in couplings and prior,
Winkler et al.) against a factorized Gaussian ``p(y | x)``, with held-out NLL next to the truth.

Part 2, Xiao, Yan & Amit (2019) sec. 5.1 (:func:`run_gmm`): on the 8-mode Gaussian-mixture inverse
problem, their single-loss flow against Ardizzone et al.'s 4-loss INN (three settings, Fig 5.2) and
a Winkler-style CNF ``p(x | label)``; each gets forward-pass label accuracy where it has one, and
posterior quality against the known true posterior of every label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..flows import VectorFlow
from ..models.toy import (
    EIGHT_MODE_CENTERS,
    EIGHT_MODE_STD,
    GaussianRegressor,
    INNWeights,
    eight_modes,
    eight_modes_log_prob,
    inn_loss,
    mmd_multiscale,
    pad,
    rotating_modes,
    rotating_modes_log_prob,
    xiao_flow,
)
from ..repro.profiles import Config, select
from ..repro.results import phase
from ..train import EpochSampler, train_steps

__all__ = ["CONFIGS", "INN_SETTINGS", "TheoryConfig", "config", "run_gmm", "run_rotating"]


@dataclass(frozen=True)
class TheoryConfig(Config):
    # part 1: rotating two-mode toy
    rot_steps: int
    rot_batch: int
    rot_blocks: int
    rot_hidden: int
    rot_train: int
    rot_test: int
    # part 2: 8-mode inverse problem (Xiao et al. sec. 5.1)
    gmm_steps: int
    gmm_batch: int
    gmm_blocks: int
    gmm_hidden: int
    gmm_layers: int
    gmm_train: int
    gmm_test: int
    n_posterior: int  # samples per label for the posterior metrics
    lr: float = 1e-3
    z_dim: int = 2
    label_dim: int = 8
    pad_noise: float = 0.05
    label_noise: float = 0.1
    seed: int = 0
    nonnegative = frozenset({"seed"})
    dry_run_caps: ClassVar[dict[str, int]] = {
        "rot_steps": 5,
        "gmm_steps": 5,
        "rot_train": 4096,
        "rot_test": 1024,
        "gmm_train": 8192,
        "gmm_test": 1024,
        "n_posterior": 200,
    }


CONFIGS = {
    "smoke": TheoryConfig(
        rot_steps=150,
        rot_batch=256,
        rot_blocks=3,
        rot_hidden=32,
        rot_train=4096,
        rot_test=1024,
        gmm_steps=60,
        gmm_batch=256,
        gmm_blocks=3,
        gmm_hidden=64,
        gmm_layers=3,
        gmm_train=8192,
        gmm_test=1024,
        n_posterior=256,
    ),
    # the paper's settings: 8 blocks of 3 x 512 fully connected layers, batch 1600, 400 iterations, Adam 1e-3
    "quick": TheoryConfig(
        rot_steps=1500,
        rot_batch=512,
        rot_blocks=6,
        rot_hidden=128,
        rot_train=2**16,
        rot_test=8192,
        gmm_steps=400,
        gmm_batch=1600,
        gmm_blocks=8,
        gmm_hidden=256,  # the paper (and full): 512; halved for the one-hour CPU budget
        gmm_layers=3,
        gmm_train=2**20,
        gmm_test=10000,
        n_posterior=1000,
    ),
    "full": TheoryConfig(
        rot_steps=3000,
        rot_batch=512,
        rot_blocks=8,
        rot_hidden=256,
        rot_train=2**17,
        rot_test=2**14,
        gmm_steps=400,
        gmm_batch=1600,
        gmm_blocks=8,
        gmm_hidden=512,
        gmm_layers=3,
        gmm_train=2**20,
        gmm_test=10000,
        n_posterior=2000,
    ),
}


def config(profile: str | None, dry_run: bool = False) -> TheoryConfig:
    return select(CONFIGS, profile, dry_run)


def _fit(
    model: nn.Module, loss_fn, batches, steps: int, cfg: TheoryConfig, desc: str, progress: bool, device, timer=None
) -> tuple[float, list]:
    """Train on ``device``; the model comes back on the CPU, where the (small) evaluation runs."""
    history, wall = train_steps(
        model,
        loss_fn,
        batches,
        steps=steps,
        lr=cfg.lr,
        seed=cfg.seed,
        desc=desc,
        progress=progress,
        device=device,
        timer=timer,
    )
    model.cpu()
    return wall, history


# --- part 1 ------------------------------------------------------------------------------------


def run_rotating(cfg: TheoryConfig, progress: bool = True, device: str | None = None, timer=None) -> dict[str, Any]:
    """Train a CNF and a factorized Gaussian on :func:`~cnfkit.models.toy.rotating_modes`."""
    g = torch.Generator().manual_seed(cfg.seed)
    x_tr, y_tr = rotating_modes(cfg.rot_train, g)
    x_te, y_te = rotating_modes(cfg.rot_test, g)
    torch.manual_seed(cfg.seed)
    models: dict[str, VectorFlow | GaussianRegressor] = {
        "cnf": VectorFlow(2, context_dim=1, blocks=cfg.rot_blocks, hidden=cfg.rot_hidden, layers=3),
        "gaussian": GaussianRegressor(2, 1, hidden=cfg.rot_hidden, layers=3),
    }
    out: dict[str, Any] = {"models": models, "metrics": {}}
    batches = EpochSampler((x_tr, y_tr), cfg.rot_batch, seed=cfg.seed)
    for name, model in models.items():
        wall, _ = _fit(
            model,
            lambda m, b: -m(b[1], b[0]).mean(),
            batches,
            cfg.rot_steps,
            cfg,
            f"rotating/{name}",
            progress,
            device,
            timer,
        )
        model.eval()
        with torch.no_grad(), phase(timer, "evaluation"):
            nll = -model.log_prob(y_te, x_te).mean().item()
        out["metrics"][name] = {
            "test_nll": nll,
            "train_time_s": wall,
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    out["metrics"]["true"] = {"test_nll": -rotating_modes_log_prob(y_te, x_te).mean().item()}
    return out


# --- part 2 ------------------------------------------------------------------------------------

INN_SETTINGS = {
    "inn_full": INNWeights(),  # all losses, tuned weights, the authors' ramp (Fig 5.2 left)
    "inn_forward_only": INNWeights(backward=False),  # forward losses only (Fig 5.2 middle)
    "inn_fast_ramp": INNWeights(ramp_speed=10.0),  # backward weights at full strength 10x sooner (Fig 5.2 right)
}


def _onehot(labels: Tensor, k: int) -> Tensor:
    return F.one_hot(labels, k).float()


def posterior_samples(
    name: str, model: VectorFlow, label: int, n: int, cfg: TheoryConfig, generator: torch.Generator
) -> Tensor:
    """``n`` samples of ``x`` from a trained model's posterior for one label."""
    onehot = _onehot(torch.full((n,), label), cfg.label_dim)
    with torch.no_grad():
        if name == "cnf":
            return model.sample(onehot, generator=generator)
        if name == "xiao":
            return model.sample(onehot, generator=generator)[:, :2]
        z = torch.randn(n, cfg.z_dim, generator=generator)
        y = onehot + cfg.label_noise * torch.randn(n, cfg.label_dim, generator=generator)
        return model.decode(torch.cat([z, y], dim=1))[:, :2]


def predict_labels(name: str, model: VectorFlow, x: Tensor, cfg: TheoryConfig, generator: torch.Generator) -> Tensor:
    """Forward pass (Xiao, INN): argmax of the label part; CNF: Bayes' rule, argmax_c log p(x | c)."""
    with torch.no_grad():
        if name == "cnf":
            scores = torch.stack(
                [model.log_prob(x, _onehot(torch.full((x.shape[0],), c), cfg.label_dim)) for c in range(cfg.label_dim)],
                dim=1,
            )
            return scores.argmax(dim=1)
        dim = cfg.z_dim + cfg.label_dim
        out, _ = model.encode(pad(x, dim, cfg.pad_noise, generator))
        return out[:, cfg.z_dim :].argmax(dim=1)


def posterior_metrics(name: str, model: VectorFlow, cfg: TheoryConfig, generator: torch.Generator) -> dict[str, Any]:
    """Per-label MMD to true posterior samples and mean true log-density of model samples."""
    from ..probabilistic import mode_mass_error

    mmds, logp, tv = [], [], []
    for c in range(cfg.label_dim):
        s = posterior_samples(name, model, c, cfg.n_posterior, cfg, generator)
        true = EIGHT_MODE_CENTERS[c] + EIGHT_MODE_STD * torch.randn(cfg.n_posterior, 2, generator=generator)
        mmds.append(mmd_multiscale(s, true).item())
        logp.append(eight_modes_log_prob(s, torch.full((s.shape[0],), c)).clamp_min(-1e4).mean().item())
        finite = torch.isfinite(s).all(1)
        tv.append(
            mode_mass_error(s[finite], EIGHT_MODE_CENTERS, F.one_hot(torch.tensor(c), 8).double())["total_variation"]
            if finite.any()
            else 1.0
        )
    # per-mode mass error: the posterior of label c is all on mode c; total variation 0.5 * sum_k |mass_k - truth_k|
    return {
        "posterior_mmd": sum(mmds) / len(mmds),
        "posterior_true_logp": sum(logp) / len(logp),
        "posterior_mmd_per_label": mmds,
        "mode_mass_error": sum(tv) / len(tv),
        "mode_mass_error_per_label": tv,
    }


def reference_metrics(cfg: TheoryConfig, generator: torch.Generator) -> dict[str, float]:
    """The same metrics for exact posterior samples: the floor a perfect model reaches."""
    from ..probabilistic import mode_mass_error

    mmds, logp, tv = [], [], []
    for c in range(cfg.label_dim):
        a = EIGHT_MODE_CENTERS[c] + EIGHT_MODE_STD * torch.randn(cfg.n_posterior, 2, generator=generator)
        b = EIGHT_MODE_CENTERS[c] + EIGHT_MODE_STD * torch.randn(cfg.n_posterior, 2, generator=generator)
        mmds.append(mmd_multiscale(a, b).item())
        logp.append(eight_modes_log_prob(a, torch.full((a.shape[0],), c)).mean().item())
        tv.append(mode_mass_error(a, EIGHT_MODE_CENTERS, F.one_hot(torch.tensor(c), 8).double())["total_variation"])
    return {
        "posterior_mmd": sum(mmds) / len(mmds),
        "posterior_true_logp": sum(logp) / len(logp),
        "mode_mass_error": sum(tv) / len(tv),
    }


def build_gmm_model(name: str, cfg: TheoryConfig) -> VectorFlow:
    blocks, hidden, layers = cfg.gmm_blocks, cfg.gmm_hidden, cfg.gmm_layers
    if name == "xiao":
        return xiao_flow(
            2, cfg.label_dim, cfg.z_dim, label_noise=cfg.label_noise, blocks=blocks, hidden=hidden, layers=layers
        )
    if name == "cnf":
        return VectorFlow(2, context_dim=cfg.label_dim, blocks=blocks, hidden=hidden, layers=layers)
    if name in INN_SETTINGS:
        return VectorFlow(cfg.z_dim + cfg.label_dim, blocks=blocks, hidden=hidden, layers=layers)
    raise ValueError(f"unknown method {name!r}; choose from xiao, cnf, {', '.join(INN_SETTINGS)}")


GMM_METHODS = ("xiao", *INN_SETTINGS, "cnf")


def gmm_loss(name: str, cfg: TheoryConfig):
    """The training loss of each method as ``loss_fn(model, (x, onehot, t))``."""
    dim = cfg.z_dim + cfg.label_dim
    if name == "xiao":
        return lambda m, b: -m(pad(b[0], dim, cfg.pad_noise), b[1]).mean()
    if name == "cnf":
        return lambda m, b: -m(b[0], b[1]).mean()
    weights = INN_SETTINGS[name]
    return lambda m, b: inn_loss(m, b[0], b[1], float(b[2]), weights, cfg.z_dim, cfg.pad_noise, cfg.label_noise)[0]


def run_gmm(
    cfg: TheoryConfig,
    methods: tuple[str, ...] = GMM_METHODS,
    progress: bool = True,
    device: str | None = None,
    timer=None,
) -> dict[str, Any]:
    """Train every method on the 8-mode problem and measure it."""
    g = torch.Generator().manual_seed(cfg.seed)
    x_tr, l_tr = eight_modes(cfg.gmm_train, g)
    x_te, l_te = eight_modes(cfg.gmm_test, g)
    sampler = EpochSampler((x_tr, _onehot(l_tr, cfg.label_dim)), cfg.gmm_batch, seed=cfg.seed)

    def batches(step: int):
        x, y = sampler(step)
        return x, y, torch.tensor(step / cfg.gmm_steps)

    out: dict[str, Any] = {"models": {}, "metrics": {}, "histories": {}}
    for name in methods:
        torch.manual_seed(cfg.seed)
        model = build_gmm_model(name, cfg)
        wall, history = _fit(
            model, gmm_loss(name, cfg), batches, cfg.gmm_steps, cfg, f"gmm/{name}", progress, device, timer
        )
        model.eval()
        eval_g = torch.Generator().manual_seed(cfg.seed + 1)
        with phase(timer, "evaluation"):
            acc = (predict_labels(name, model, x_te, cfg, eval_g) == l_te).float().mean().item()
            m = {
                "accuracy": acc,
                "accuracy_kind": "Bayes rule" if name == "cnf" else "forward pass",
                "train_time_s": wall,
            }
            m.update(posterior_metrics(name, model, cfg, eval_g))
            if name == "cnf":
                with torch.no_grad():
                    m["test_nll"] = -model.log_prob(x_te, _onehot(l_te, cfg.label_dim)).mean().item()
                m["true_test_nll"] = -eight_modes_log_prob(x_te, l_te).mean().item()
        out["models"][name], out["metrics"][name], out["histories"][name] = model, m, history
    out["metrics"]["true_posterior"] = reference_metrics(cfg, torch.Generator().manual_seed(cfg.seed + 2))
    return out


# --- tables and figures -------------------------------------------------------------------------

LABELS = {
    "xiao": "Xiao et al. (single loss)",
    "inn_full": "INN, all 4 losses (Fig 5.2a)",
    "inn_forward_only": "INN, forward losses only (Fig 5.2b)",
    "inn_fast_ramp": "INN, faster weight ramp (Fig 5.2c)",
    "cnf": "CNF p(x | label) (Winkler et al.)",
    "true_posterior": "exact posterior samples (floor)",
}


def results_payload(rotating: dict[str, Any], gmm: dict[str, Any]) -> dict[str, Any]:
    """What ``theory.json`` holds besides the configuration: both problems' metrics, each 8-mode model's
    final training loss and learning-curve summary (:func:`cnfkit.repro.results.curve_summary`)."""
    from ..repro.results import curve_summary

    metrics = {"rotating": rotating["metrics"], "gmm": gmm["metrics"]}
    for name, h in gmm["histories"].items():
        metrics["gmm"][name]["final_train_loss"] = h[-1].get("loss")
        metrics["gmm"][name]["learning_curve"] = curve_summary(h)
    return metrics


def gmm_table(metrics: dict[str, dict]):
    """One row per method: accuracy, posterior MMD, true log-density of samples, training time."""
    import pandas as pd

    rows = []
    for name, m in metrics.items():
        rows.append(
            {
                "method": LABELS.get(name, name),
                "label accuracy": m.get("accuracy"),
                "accuracy by": m.get("accuracy_kind", ""),
                "posterior MMD (lower is better)": m["posterior_mmd"],
                "mean true log p(x|label) of samples": m["posterior_true_logp"],
                "mode mass error (TV, lower is better)": m.get("mode_mass_error"),
                "train time [s]": m.get("train_time_s"),
            }
        )
    return pd.DataFrame(rows).set_index("method")


def rotating_table(metrics: dict[str, dict]):
    import pandas as pd

    names = {
        "cnf": "CNF (conditional couplings + prior)",
        "gaussian": "factorized Gaussian N(mu(x), sigma(x)^2)",
        "true": "true density",
    }
    return pd.DataFrame(
        [
            {"model": names[k], "held-out NLL [nats]": v["test_nll"], "train time [s]": v.get("train_time_s")}
            for k, v in metrics.items()
        ]
    ).set_index("model")


def plot_rotating(
    result: dict[str, Any],
    xs: tuple[float, ...] = (-0.8, 0.0, 0.8),
    lim: float = 3.0,
    n: int = 150,
    n_samples: int = 300,
    seed: int = 0,
):
    """Densities p(y | x) (colour) and samples (white dots) of the truth, the CNF and the factorized Gaussian."""
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(-lim, lim, n)
    grid = torch.cartesian_prod(t, t)
    rows = [("true", None), ("CNF", result["models"]["cnf"]), ("factorized Gaussian", result["models"]["gaussian"])]
    fig, axes = plt.subplots(len(rows), len(xs), figsize=(3 * len(xs), 3 * len(rows)), squeeze=False)
    for j, xv in enumerate(xs):
        x = torch.full((grid.shape[0], 1), xv)
        for i, (name, model) in enumerate(rows):
            with torch.no_grad():
                lp = rotating_modes_log_prob(grid, x) if model is None else model.log_prob(grid, x)
            ax = axes[i][j]
            ax.imshow(lp.exp().reshape(n, n).T.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
            xs_ = torch.full((n_samples, 1), xv)
            if model is None:
                sign = torch.randint(0, 2, (n_samples, 1), generator=g) * 2 - 1
                ang = torch.full((n_samples, 1), math.pi * xv / 2)
                ys = sign * 1.5 * torch.cat([torch.cos(ang), torch.sin(ang)], dim=1) + 0.25 * torch.randn(
                    n_samples, 2, generator=g
                )
            else:
                ys = model.sample(xs_, generator=g)
            ax.scatter(ys[:, 0], ys[:, 1], s=1.5, c="white", alpha=0.6)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"x = {xv:+.1f}")
            if j == 0:
                ax.set_ylabel(name)
    fig.suptitle("p(y | x) (colour) and samples (dots): a bimodal target whose axis turns with x")
    fig.tight_layout()
    return fig


def plot_forward_and_inverse(result: dict[str, Any], cfg: TheoryConfig, name: str = "xiao", n_test: int = 2000):
    """Fig 5.1: predicted labels of test points (forward pass) and posterior samples (inverse pass)."""
    import matplotlib.pyplot as plt

    model = result["models"][name]
    g = torch.Generator().manual_seed(cfg.seed + 3)
    x, _ = eight_modes(n_test, g)
    pred = predict_labels(name, model, x, cfg, g)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4.5))
    a.scatter(x[:, 0], x[:, 1], c=pred.numpy(), cmap="tab10", vmin=0, vmax=9, s=3)
    a.set_title("forward pass: predicted labels of test points")
    for c in range(cfg.label_dim):
        s = posterior_samples(name, model, c, 300, cfg, g)
        b.scatter(s[:, 0], s[:, 1], color=plt.cm.tab10(c), s=3)
    b.set_title("inverse pass: samples of p(x | label)")
    for ax in (a, b):
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
    fig.suptitle(LABELS.get(name, name))
    fig.tight_layout()
    return fig


def plot_posteriors(result: dict[str, Any], cfg: TheoryConfig, methods: tuple[str, ...] | None = None, n: int = 300):
    """Fig 5.2 style: posterior samples of every label, one panel per method."""
    import matplotlib.pyplot as plt

    methods = methods or tuple(result["models"])
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.8), squeeze=False)
    g = torch.Generator().manual_seed(cfg.seed + 4)
    for ax, name in zip(axes[0], methods):
        for c in range(cfg.label_dim):
            s = posterior_samples(name, result["models"][name], c, n, cfg, g)
            ax.scatter(s[:, 0], s[:, 1], color=plt.cm.tab10(c), s=2)
        ax.set_xlim(-4, 4)
        ax.set_ylim(-4, 4)
        ax.set_aspect("equal")
        ax.set_title(LABELS.get(name, name), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
