"""Xiao, Yan & Amit (2019) sec. 5.2: class-conditional generation and classification with a latent flow.

Generative Latent Flow style (Xiao et al. 2019b): a deterministic convolutional auto-encoder maps a
28x28 image to a 20-dim latent ``u``; the conditional flow maps ``[u, 0 + noise (10 dims)]`` to
``[z (20 dims), y~ (10 dims)]`` with ``y~ = one-hot + noise`` and is trained by the single likelihood
loss (eq. 9/10).  Its forward pass classifies (argmax of ``y~``); its inverse pass generates images
of a chosen class (Fig 5.3) and, with ``z`` fixed and the label varied, shows that ``z`` carries
style (Fig 5.4).  Beyond the paper, a Winkler-style CNF ``p(u | label)`` on the same latents
classifies by Bayes' rule.

Differences from the paper, stated where results appear: the auto-encoder is trained first with a
pixel-wise binary cross-entropy and then frozen (GLF's "stopped gradients" variant also never lets
the flow shape the latents, but trains both at once, and uses a perceptual loss that needs a
pre-trained VGG, unavailable offline); latents are standardised per dimension before the flow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.mnist import load_mnist
from ..flows import VectorFlow
from ..models.toy import pad, xiao_flow
from ..repro.paper import paper_numbers
from ..repro.profiles import Config, select
from ..repro.results import curve_summary
from ..train import EpochSampler, check_schedule, train_steps
from ..utils import PhaseTimer, phase
from .cli import command_line
from .common import RunOptions, checkpoint_path

__all__ = [
    "CONFIGS",
    "ConvAutoencoder",
    "MNISTConfig",
    "build_xiao_flow",
    "config",
    "plot_grid",
    "run_dataset",
    "sample_grid",
    "style_grid",
]


class ConvAutoencoder(nn.Module):
    """InfoGAN-style convolutional auto-encoder for 1x28x28 images (as in GLF's MNIST code).

    Encoder: conv4x4/2 (64) -> conv4x4/2 (128) + BN -> FC 1024 + BN -> FC ``latent_dim``.
    Decoder: the mirror image, ending in a sigmoid.
    """

    def __init__(self, latent_dim: int = 20) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(64, 128, 4, 2, 1),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.1),
            nn.Flatten(),
            nn.Linear(128 * 7 * 7, 1024),
            nn.BatchNorm1d(1024),
            nn.LeakyReLU(0.1),
            nn.Linear(1024, latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 1024),
            nn.BatchNorm1d(1024),
            nn.ReLU(),
            nn.Linear(1024, 128 * 7 * 7),
            nn.BatchNorm1d(128 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 1, 4, 2, 1),
        )

    def encode(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected images [B, 1, 28, 28] in [0, 1], got {tuple(images.shape)}")
        return self.encoder(images)

    def decode_logits(self, u: Tensor) -> Tensor:
        return self.decoder(u)

    def decode(self, u: Tensor) -> Tensor:
        return torch.sigmoid(self.decoder(u))

    def forward(self, images: Tensor) -> Tensor:
        """Reconstruction logits (the training loss is a pixel-wise binary cross-entropy)."""
        return self.decode_logits(self.encode(images))


@dataclass(frozen=True)
class MNISTConfig(Config):
    n_train: int  # training images used (60000 = all)
    n_test: int  # test images classified (10000 = all)
    ae_epochs: int
    ae_batch: int
    flow_epochs: int
    flow_batch: int
    flow_blocks: int
    flow_hidden: int
    flow_layers: int = 3
    ae_lr: float = 1e-3
    flow_lr: float = 1e-3
    # the learning rate over each model's run (cnfkit.train.learning_rate): "constant" or "cosine" decay to 0 after
    # ``warmup`` steps of linear warm-up
    schedule: str = "constant"
    warmup: int = 0
    latent_dim: int = 20
    label_dim: int = 10
    pad_noise: float = 0.05
    label_noise: float = 0.1
    temperature: float = 0.8  # for the sample grids
    seed: int = 0
    nonnegative = frozenset({"seed", "warmup"})
    dry_run_caps: ClassVar[dict[str, int]] = {"n_train": 1024, "n_test": 500, "ae_epochs": 1, "flow_epochs": 1}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_schedule(self.schedule, self.warmup, None, "MNISTConfig")


CONFIGS = {
    "smoke": MNISTConfig(
        n_train=2048,
        n_test=1000,
        ae_epochs=1,
        ae_batch=128,
        flow_epochs=4,
        flow_batch=128,
        flow_blocks=2,
        flow_hidden=32,
    ),
    # full training sets on a 2-core CPU in minutes: fewer auto-encoder epochs than GLF
    "quick": MNISTConfig(
        n_train=60000,
        n_test=10000,
        ae_epochs=2,
        ae_batch=128,
        # the committed 15-epoch run's Fashion-MNIST flow loss still fell 38.6% over its last two fifths
        flow_epochs=25,
        flow_batch=256,
        flow_blocks=4,
        flow_hidden=128,
    ),
    # GLF's flow (4 blocks x 64 hidden) with many more epochs, and a longer auto-encoder schedule
    "full": MNISTConfig(
        n_train=60000,
        n_test=10000,
        ae_epochs=40,
        ae_batch=256,
        flow_epochs=200,
        flow_batch=256,
        flow_blocks=4,
        flow_hidden=64,
    ),
}


def config(profile: str | None, dry_run: bool = False) -> MNISTConfig:
    return select(CONFIGS, profile, dry_run)


def build_xiao_flow(cfg: MNISTConfig) -> VectorFlow:
    """Xiao et al.'s flow on the latent: ``[u, 0 + noise]`` (latent + label dims) <-> ``[z, label + noise]``."""
    return xiao_flow(
        cfg.latent_dim,
        cfg.label_dim,
        cfg.latent_dim,
        blocks=cfg.flow_blocks,
        hidden=cfg.flow_hidden,
        layers=cfg.flow_layers,
        label_noise=cfg.label_noise,
    )


def _images(x: Tensor) -> Tensor:
    return (x.float() / 255.0).unsqueeze(1)


def _train(model: nn.Module, key: str, tensors: tuple[Tensor, ...], cfg: MNISTConfig, dataset: str, opts: RunOptions):
    """Train ``model`` (``key``: ``"autoencoder"``, ``"xiao_flow"`` or ``"cnf"``, which picks its loss, batch size,
    epochs and learning rate) on ``opts.device``; the model comes back on the CPU, where the (small) evaluation runs.
    Returns ``(training wall time, learning-curve summary)``."""
    ae = key == "autoencoder"
    batch, epochs, lr = (
        (cfg.ae_batch, cfg.ae_epochs, cfg.ae_lr) if ae else (cfg.flow_batch, cfg.flow_epochs, cfg.flow_lr)
    )
    desc = f"{dataset}/{key.replace('_', ' ')}"  # the progress bar; the checkpoint folder is MNIST_xiao_flow etc.
    sampler = EpochSampler(tensors, batch, seed=cfg.seed)
    steps = max(1, epochs * sampler.per_epoch)
    history, wall = train_steps(
        model,
        _loss(key, cfg),
        sampler,
        steps=steps,
        lr=lr,
        schedule=cfg.schedule,
        warmup=cfg.warmup,
        seed=cfg.seed,
        desc=desc,
        progress=opts.progress,
        device=opts.device,
        timer=opts.timer,
        checkpoint_dir=checkpoint_path(opts.checkpoint_dir, "mnist", cfg, desc.replace("/", "_").replace(" ", "_")),
    )
    model.cpu()
    return wall, curve_summary(history)


@torch.no_grad()
def _encode_all(ae: ConvAutoencoder, images: Tensor, batch: int = 1000) -> Tensor:
    ae.eval()
    return torch.cat([ae.encode(images[i : i + batch]) for i in range(0, images.shape[0], batch)])


def predict_forward(
    flow: VectorFlow, u_std: Tensor, cfg: MNISTConfig, generator: torch.Generator | None = None
) -> Tensor:
    """Xiao et al.: run the flow forward on ``[u, 0 + noise]`` and take the argmax of ``y~``."""
    with torch.no_grad():
        out, _ = flow.encode(pad(u_std, cfg.latent_dim + cfg.label_dim, cfg.pad_noise, generator))
    return out[:, cfg.latent_dim :].argmax(dim=1)


def forward_probs(
    flow: VectorFlow, u_std: Tensor, cfg: MNISTConfig, generator: torch.Generator | None = None
) -> Tensor:
    """Class probabilities of the forward-pass classifier under the model's own label-noise model:
    ``y~ = e_c + N(0, s^2 I)`` gives ``p(c | y~) = softmax_c(y~_c / s^2)`` (uniform class prior)."""
    with torch.no_grad():
        out, _ = flow.encode(pad(u_std, cfg.latent_dim + cfg.label_dim, cfg.pad_noise, generator))
    return torch.softmax(out[:, cfg.latent_dim :].double() / cfg.label_noise**2, dim=1)


def bayes_probs(cnf: VectorFlow, u_std: Tensor, cfg: MNISTConfig) -> Tensor:
    """Class probabilities of the CNF by Bayes' rule with a uniform prior: ``softmax_c log p(u | c)``."""
    with torch.no_grad():
        scores = [
            cnf.log_prob(u_std, F.one_hot(torch.full((u_std.shape[0],), c), cfg.label_dim).float())
            for c in range(cfg.label_dim)
        ]
    return torch.softmax(torch.stack(scores, dim=1).double(), dim=1)


def predict_bayes(cnf: VectorFlow, u_std: Tensor, cfg: MNISTConfig) -> Tensor:
    """Bayes' rule with uniform class prior: ``argmax_c log p(u | c)``."""
    with torch.no_grad():
        scores = [
            cnf.log_prob(u_std, F.one_hot(torch.full((u_std.shape[0],), c), cfg.label_dim).float())
            for c in range(cfg.label_dim)
        ]
    return torch.stack(scores, dim=1).argmax(dim=1)


def run_dataset(
    name: str,
    cfg: MNISTConfig,
    progress: bool = True,
    data: tuple[Tensor, Tensor, Tensor, Tensor] | None = None,
    device: str | None = None,
    timer: PhaseTimer | None = None,
    checkpoint_dir=None,
    train_only: bool = False,
) -> dict[str, Any]:
    """Train the auto-encoder, Xiao et al.'s flow and the CNF on one dataset; measure accuracy.

    ``data`` (train images, train labels, test images, test labels; uint8 images) replaces loading
    ``name`` (tests use small synthetic data).  Training runs on ``device`` (``None``: CUDA when
    available), evaluation on the CPU.
    """
    opts = RunOptions(progress, device, timer, checkpoint_dir)
    x_tr, y_tr, x_te, y_te = _dataset(name, cfg, data)
    times: dict[str, float] = {}
    curves: dict[str, Any] = {}
    torch.manual_seed(cfg.seed)
    ae = ConvAutoencoder(cfg.latent_dim)
    times["autoencoder"], curves["autoencoder"] = _train(ae, "autoencoder", (x_tr,), cfg, name, opts)
    u_tr, u_te = _encode_all(ae, x_tr), _encode_all(ae, x_te)
    mean, std = u_tr.mean(0), u_tr.std(0) + 1e-6
    s_tr, s_te = (u_tr - mean) / std, (u_te - mean) / std
    onehot = F.one_hot(y_tr, cfg.label_dim).float()
    with torch.no_grad():
        recon_bce = F.binary_cross_entropy(ae.decode(u_te), x_te).item()
    flows = {}
    for key in ("xiao_flow", "cnf"):
        torch.manual_seed(cfg.seed)
        flows[key] = build_xiao_flow(cfg) if key == "xiao_flow" else build_cnf(cfg)
        times[key], curves[key] = _train(flows[key], key, (s_tr, onehot), cfg, name, opts)
    flow, cnf = flows["xiao_flow"], flows["cnf"]
    if train_only:  # training only (the command line under torchrun)
        return {"name": name, "ae": ae, "flow": flow, "cnf": cnf, "metrics": {"train_time_s": times}}
    with phase(timer, "evaluation"):
        metrics = evaluate(flow.eval(), cnf.eval(), s_te, y_te, cfg)
    metrics.update(
        test_reconstruction_bce=recon_bce,
        train_time_s=times,
        learning_curves=curves,
        n_train=int(x_tr.shape[0]),
        n_test=int(x_te.shape[0]),
    )
    return {
        "name": name,
        "ae": ae,
        "flow": flow,
        "cnf": cnf,
        "latent_mean": mean,
        "latent_std": std,
        "metrics": metrics,
    }


def _dataset(name: str, cfg: MNISTConfig, data: tuple[Tensor, Tensor, Tensor, Tensor] | None):
    """The training subset (``cfg.n_train`` images drawn with ``cfg.seed``) and the first ``cfg.n_test`` test images."""
    if data is None:
        x_tr, y_tr = load_mnist(name, "train")
        x_te, y_te = load_mnist(name, "test")
    else:
        x_tr, y_tr, x_te, y_te = data
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(x_tr.shape[0], generator=g)[: cfg.n_train]
    return _images(x_tr[idx]), y_tr[idx], _images(x_te[: cfg.n_test]), y_te[: cfg.n_test]


def build_cnf(cfg: MNISTConfig) -> VectorFlow:
    """The conditional flow ``p(u | label)`` classified by Bayes' rule."""
    return VectorFlow(
        cfg.latent_dim,
        context_dim=cfg.label_dim,
        blocks=cfg.flow_blocks,
        hidden=cfg.flow_hidden,
        layers=cfg.flow_layers,
    )


def _loss(model: str, cfg: MNISTConfig):
    """The training loss of ``model``: the auto-encoder's reconstruction (Bernoulli, nats per image), or a flow's
    negative log-likelihood (Xiao et al.'s flow maps ``[u, 0 + noise]`` to ``[z, label + noise]``)."""
    if model == "autoencoder":
        return lambda m, b: F.binary_cross_entropy_with_logits(m(b[0]), b[0], reduction="sum") / b[0].shape[0]
    if model == "xiao_flow":
        dim = cfg.latent_dim + cfg.label_dim
        return lambda m, b: -m(pad(b[0], dim, cfg.pad_noise), b[1]).mean()
    return lambda m, b: -m(b[0], b[1]).mean()


def evaluate(flow: VectorFlow, cnf: VectorFlow, s_te: Tensor, y_te: Tensor, cfg: MNISTConfig) -> dict[str, Any]:
    """Test accuracy and calibration of the forward-pass classifier (Xiao et al.) and the CNF by Bayes' rule."""
    from ..probabilistic import classification_calibration

    p_fwd = forward_probs(flow, s_te, cfg, torch.Generator().manual_seed(cfg.seed + 1))
    p_bayes = bayes_probs(cnf, s_te, cfg)
    return {
        "accuracy_forward_pass": (p_fwd.argmax(1) == y_te).float().mean().item(),
        "accuracy_cnf_bayes": (p_bayes.argmax(1) == y_te).float().mean().item(),
        "calibration": {
            "forward_pass": classification_calibration(p_fwd, y_te),
            "cnf_bayes": classification_calibration(p_bayes, y_te),
        },
    }


DATASETS = ("MNIST", "FashionMNIST")


def run(
    cfg: MNISTConfig,
    progress: bool = True,
    device: str | None = None,
    checkpoint_dir=None,
    timer: PhaseTimer | None = None,
    train_only: bool = False,
) -> dict[str, dict[str, Any]]:
    """:func:`run_dataset` on MNIST and Fashion-MNIST."""
    kw = {
        "progress": progress,
        "device": device,
        "timer": timer,
        "checkpoint_dir": checkpoint_dir,
        "train_only": train_only,
    }
    return {name: run_dataset(name, cfg, **kw) for name in DATASETS}


def paper_table(payload: dict[str, Any] | None, profile: str):
    """Xiao et al. Table 1, test accuracy: "paper" (the forward pass) next to "ours" (the forward pass and the
    CNF by Bayes' rule), from a results payload (:func:`results_payload`); ``None``: ours empty."""
    import pandas as pd

    px, ours = paper_numbers("xiao_table1_accuracy"), f"ours ({profile})"
    rows = []
    for ds in ("MNIST", "FashionMNIST"):
        got = (payload or {}).get("datasets", {}).get(ds, {})
        rows.append(
            {
                "dataset": ds,
                "paper (forward pass)": px[ds],
                f"{ours} forward pass": got.get("accuracy_forward_pass"),
                f"{ours} CNF + Bayes' rule": got.get("accuracy_cnf_bayes"),
            }
        )
    return pd.DataFrame(rows).set_index("dataset")


def calibration_table(results: dict[str, dict[str, Any]]):
    """Beyond the paper: accuracy, ECE and NLL of both classifiers on both datasets."""
    import pandas as pd

    rows = {
        (name, kind): {"accuracy": c["accuracy"], "ECE": c["ece"], "NLL [nats]": c["nll"]}
        for name, r in results.items()
        for kind, c in r["metrics"]["calibration"].items()
    }
    return pd.DataFrame(rows).T


def results_payload(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ``mnist.json`` holds besides the configuration: the paper's numbers and every dataset's metrics."""
    return {
        "paper": paper_numbers("xiao_table1_accuracy"),
        "datasets": {name: r["metrics"] for name, r in results.items()},
    }


@torch.no_grad()
def _decode_latents(result: dict[str, Any], s: Tensor) -> Tensor:
    ae = result["ae"].eval()
    return ae.decode(s * result["latent_std"] + result["latent_mean"])


@torch.no_grad()
def sample_grid(
    result: dict[str, Any], cfg: MNISTConfig, per_label: int = 20, model: str = "flow", seed: int = 0
) -> Tensor:
    """Fig 5.3: ``[labels, per_label, 28, 28]`` class-conditional samples at ``cfg.temperature``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(cfg.label_dim).repeat_interleave(per_label)
    onehot = F.one_hot(labels, cfg.label_dim).float()
    out = result[model].sample(onehot, temperature=cfg.temperature, generator=g)
    images = _decode_latents(result, out[:, : cfg.latent_dim])
    return images.reshape(cfg.label_dim, per_label, 28, 28)


@torch.no_grad()
def style_grid(result: dict[str, Any], cfg: MNISTConfig, rows: int = 8, seed: int = 0) -> Tensor:
    """Fig 5.4: each row one fixed ``z``, each column one label: ``[rows, labels, 28, 28]``."""
    g = torch.Generator().manual_seed(seed)
    z = cfg.temperature * torch.randn(rows, cfg.latent_dim, generator=g)
    z = z.repeat_interleave(cfg.label_dim, dim=0)
    onehot = F.one_hot(torch.arange(cfg.label_dim).repeat(rows), cfg.label_dim).float()
    x_pad = result["flow"].decode(torch.cat([z, onehot], dim=1))
    return _decode_latents(result, x_pad[:, : cfg.latent_dim]).reshape(rows, cfg.label_dim, 28, 28)


def plot_grid(grid: Tensor, title: str = "", row_labels: list[str] | None = None):
    """Show a ``[rows, cols, H, W]`` image grid as one picture."""
    import matplotlib.pyplot as plt

    rows, cols, h, w = grid.shape
    canvas = grid.permute(0, 2, 1, 3).reshape(rows * h, cols * w).numpy()
    fig, ax = plt.subplots(figsize=(cols * 0.45, rows * 0.45 + 0.4))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([h * (i + 0.5) for i in range(rows)] if row_labels else [])
    if row_labels:
        ax.set_yticklabels(row_labels, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(command_line("mnist", config, run))
