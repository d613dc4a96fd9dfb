"""Winkler et al. (2019) sec. 5.1: 2x super-resolution, CNF vs factorized discretized logistic.

* Table 1: test bits/dim on held-out HR/LR pairs.  The paper trains and tests on ImageNet32/64; here
  the stand-in is BSDS500 patches of 32x32 (and 64x64 when ``sizes`` includes 64): training patches
  from BSDS500 train, test patches from BSDS500 test, both cut from images first shrunk by
  ``train_downscale`` (one factor per size).  Like ImageNet32/64, whose images are whole photos
  shrunk to 32 / 64 pixels, a patch then shows most of a scene (8x: 61x41 images for 32x32 patches;
  4x: 121x81 for 64x64), and shrinking removes the JPEG 4:2:0 chroma subsampling of the BSDS500
  files (see :mod:`cnfkit.data.sr`).  Always labelled as the stand-in.
* Table 2: Set5, Set14, BSD100: bits/dim averaged over random 128x128 HR crops (LR crops taken from
  the LR of the whole image), and PSNR / SSIM (Y channel, ``scale`` pixels of border cropped) of the
  full images for CNF samples at temperature ``tau``, the baseline's mode and bicubic upsampling
  (MATLAB ``imresize``).  Test images are zero-padded right and bottom to a square whose side the
  squeezes accept and cropped back before PSNR/SSIM.
* Figs 2, 3: LR / CNF sample / ground truth / baseline mode, and Set14's baboon at several
  temperatures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.imresize import imresize
from ..data.sr import SR_TEST_SETS, chroma_detail_ratio, downscale_images, hr_lr_pair, load_sr_images, patch_pairs
from ..flows import check_temperature
from ..metrics import sr_psnr_ssim
from ..models.superres import FactorizedLogisticSR, SRFlow
from ..repro.paper import paper_numbers
from ..repro.profiles import Config, ConfigError, select
from ..repro.report import sr_set_label
from ..repro.results import curve_summary, phase
from ..train import EpochSampler, check_schedule, train_steps
from ..utils import module_device, row_generators
from .cli import command_line
from .common import RunOptions, checkpoint_path

__all__ = [
    "CONFIGS",
    "SRConfig",
    "build_models",
    "config",
    "evaluate_test_set",
    "predict_full",
    "predict_images",
    "probabilistic_evaluation",
    "run",
    "temperature_sweep",
    "temperature_view",
]

LN2 = math.log(2.0)


@dataclass(frozen=True)
class SRConfig(Config):
    sizes: tuple[int, ...]  # HR training sizes (32: ImageNet32 stand-in, 64: ImageNet64 stand-in)
    n_train: int  # training patches per size
    n_test: int  # held-out test patches per size (Table 1)
    steps: int
    batch: int
    levels: int
    flow_steps: int  # K
    hidden: int
    rrdb_blocks: int
    nf: int
    growth_cnf: int
    growth_baseline: int
    context: int
    crops_per_image: int  # random 128x128 crops per test image for the Table 2 bpd
    train_downscale: tuple[
        float, ...
    ]  # per size: BSDS500 images are shrunk by this factor (>= 1) before patches are cut
    coupling_scale: str = "soft_exp"  # the CNF's coupling scale s(.): "soft_exp" (bounded inverse) or Glow's "sigmoid"
    # both models predict the HR image as an offset from its bicubic upsampling (models/superres.py; not the paper's
    # parameterization; bits/dim stay exactly comparable: the shift has unit Jacobian)
    residual: bool = False
    temperatures: tuple[float, ...] = (0.0, 0.5, 0.8, 1.0)
    eval_batch: int = 8  # images (or crops) per forward call in evaluation; results do not depend on it
    n_posterior: int = 8  # CNF samples per LR image for the posterior mean, LR-consistency and diversity
    # training data: "bsds500" (the stand-in, shrunk by train_downscale), "imagenet_png" (van den Oord et al.'s PNG
    # release,
    # the paper's) or "imagenet_npz" (Chrabaszcz et al.'s npz release); bpd across the two ImageNet releases are not
    # comparable
    train_data: str = "bsds500"
    # the fast path (TrainConfig): channels-last measured on the 2-core CPU: RRDB features 1.65x, CNF sampling 1.33x,
    # CNF train step 1.07x faster (baseline train step 1.02x slower); compile and bf16 autocast not yet measured on a
    # GPU
    channels_last: bool = True
    compile: bool = False
    autocast: str = "none"
    tau: float = 0.8  # temperature of the samples scored by PSNR/SSIM (Table 2)
    lr: float = 1e-4
    # the learning rate over the run (cnfkit.train.learning_rate): "constant" (the paper's) or "cosine" decay to 0
    # after ``warmup`` steps of linear warm-up
    schedule: str = "constant"
    warmup: int = 0
    crop: int = 128
    max_test_images: int = 100  # per test set (BSD100 has 100)
    seed: int = 0
    nonnegative = frozenset({"seed", "temperatures", "tau", "warmup"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_schedule(self.schedule, self.warmup, None, "SRConfig")  # train_steps caps the warm-up at a (dry) run

    # a dry run keeps the architecture and sizes; the batch is capped too, so that a CPU can hold a full-size step
    dry_run_caps: ClassVar[dict[str, int]] = {
        "steps": 2,
        "batch": 4,
        "n_train": 256,
        "n_test": 16,
        "crops_per_image": 2,
        "max_test_images": 2,
        "n_posterior": 2,
        "eval_batch": 2,
    }


CONFIGS = {
    "smoke": SRConfig(
        sizes=(32,),
        n_train=64,
        n_test=16,
        steps=10,
        batch=8,
        levels=2,
        flow_steps=1,
        hidden=16,
        rrdb_blocks=1,
        nf=8,
        growth_cnf=4,
        growth_baseline=8,
        context=8,
        crops_per_image=1,
        lr=1e-3,
        max_test_images=2,
        train_downscale=(2.0,),
        n_posterior=2,
    ),
    # reduced widths and blocks (K=4, 128 hidden, 4 RRDB blocks of 32 channels), 2000 steps of batch 32, CPU;
    # BSDS500 shrunk 8x (61x41 images: a 32x32 patch shows most of a scene, as in ImageNet32)
    "quick": SRConfig(
        sizes=(32,),
        n_train=20000,
        n_test=1000,
        steps=500,  # the committed quick run: 0.36 s (CNF) + 0.38 s (baseline) per step of 16 on the 2-core CPU
        # offsets from bicubic upsampling: at 300 steps held-out CNF 4.02 bpd (paper's parameterization 4.86),
        # baseline 5.60 (5.91); make bench-learning, results/benchmarks/learning_sr_cpu.md
        residual=True,
        batch=16,
        levels=2,
        flow_steps=4,
        hidden=128,
        rrdb_blocks=4,
        nf=32,
        growth_cnf=16,
        growth_baseline=32,
        context=64,
        crops_per_image=4,
        lr=5e-4,
        train_downscale=(8.0,),
        max_test_images=20,  # BSD100: the first 20 of 100 images (labelled so); Set5 and Set14 whole
    ),
    # the paper: L=2, K=8, 512 hidden, 16 RRDB blocks (growth 32 / 55), 128 context, 200k steps of 64, lr 1e-4;
    # BSDS500 shrunk 8x for 32x32 and 4x for 64x64 patches unless ImageNet32/64 replace the stand-in
    "full": SRConfig(
        sizes=(32, 64),
        n_train=200000,
        n_test=10000,
        steps=200000,
        batch=64,
        levels=2,
        flow_steps=8,
        hidden=512,
        rrdb_blocks=16,
        nf=64,
        growth_cnf=32,
        growth_baseline=55,
        context=128,
        crops_per_image=200,
        train_downscale=(8.0, 4.0),
        n_posterior=16,
        train_data="imagenet_png",
    ),
}


def config(profile: str | None, dry_run: bool = False) -> SRConfig:
    cfg = select(CONFIGS, profile, dry_run)
    if cfg.train_data not in ("bsds500", "imagenet_png", "imagenet_npz"):
        raise ConfigError(f"SRConfig.train_data must be bsds500, imagenet_png or imagenet_npz, got {cfg.train_data!r}")
    if len(cfg.train_downscale) != len(cfg.sizes) or min(cfg.train_downscale) < 1:
        raise ConfigError(
            f"SRConfig.train_downscale needs one factor >= 1 per size {cfg.sizes}, got {cfg.train_downscale}"
        )
    return cfg


class SRModels(TypedDict):
    """The two models of one size: the CNF and the factorized baseline."""

    cnf: SRFlow
    baseline: FactorizedLogisticSR


def build_models(cfg: SRConfig) -> SRModels:
    return {
        "cnf": SRFlow(
            cfg.levels,
            cfg.flow_steps,
            cfg.hidden,
            cfg.rrdb_blocks,
            cfg.growth_cnf,
            cfg.nf,
            cfg.context,
            cfg.coupling_scale,
            residual=cfg.residual,
        ),
        "baseline": FactorizedLogisticSR(
            cfg.rrdb_blocks, cfg.growth_baseline, cfg.nf, cfg.context, hidden=cfg.context, residual=cfg.residual
        ),
    }


def _bits(model: nn.Module, hr: Tensor, lr: Tensor, batch: int = 64, seed: int = 0, stream: str = "bits") -> Tensor:
    """Bits/dim of every pair (for the CNF, the variational bound with one dequantization sample).

    Pair ``i``'s dequantization noise comes from its own generator (``seed``, ``stream``, ``i``), so
    the result does not depend on ``batch``."""
    dev = module_device(model)
    out = []
    with torch.no_grad():
        for i in range(0, hr.shape[0], batch):
            h, lo = hr[i : i + batch].to(dev).float(), lr[i : i + batch].to(dev).float()
            gens = row_generators(seed, range(i, i + h.shape[0]), stream)
            out.append((model(h, lo, generator=gens) if isinstance(model, SRFlow) else model(h, lo)).cpu())
    return -torch.cat(out) / (hr[0].numel() * LN2)


def _pad(t: Tensor, multiple: int) -> Tensor:
    """Zeros right and bottom up to a square whose side is a multiple of ``multiple`` (as the paper)."""
    h, w = t.shape[-2:]
    side = -(-max(h, w) // multiple) * multiple
    return F.pad(t, (0, side - w, 0, side - h))


def _groups(lrs: list[Tensor], multiple: int, batch: int) -> list[list[int]]:
    """Indices of images whose padded LR squares have the same size, in chunks of at most ``batch``."""
    by_side: dict[int, list[int]] = {}
    for i, lr in enumerate(lrs):
        by_side.setdefault(_pad(lr[None], multiple // 2).shape[-1], []).append(i)
    return [idx[k : k + batch] for idx in by_side.values() for k in range(0, len(idx), batch)]


def predict_images(
    model: Any,  # an SRFlow (sampled at each tau) or a FactorizedLogisticSR (its mode, tau None)
    lrs: list[Tensor],
    out_hws: list[tuple[int, int]],
    multiple: int,
    taus: tuple[float | None, ...],
    seed: int = 0,
    stream: str = "predict",
    batch: int = 8,
) -> dict:
    """HR predictions of whole images (on the CPU), ``{tau: [prediction per image]}``: CNF samples at
    each temperature ``tau``, or the baseline's mode for ``tau=None``.

    Each LR image is zero-padded right and bottom to a square the squeezes accept (Winkler et al.
    sec. 5.1) and its prediction cropped back to ``out_hws[i]``.  Images of equal padded size run
    together (at most ``batch`` per call); the RRDB features are computed once per image and reused at
    every temperature; image ``i``'s sample at ``tau`` uses its own generator (``seed``, ``stream``,
    ``tau``, ``i``), so batching changes nothing."""
    dev = module_device(model)
    out: dict = {tau: [None] * len(lrs) for tau in taus}
    with torch.no_grad():
        for idx in _groups(lrs, multiple, batch):
            x = torch.cat([_pad(lrs[i].float()[None], multiple // 2) for i in idx]).to(dev)
            feats = model.conditioning(x) if any(t is not None for t in taus) else None
            for tau in taus:
                if tau is None:
                    pred = model.mode(x)
                else:
                    pred = model.sample(
                        None,
                        temperature=tau,
                        generator=row_generators(seed, [(tau, i) for i in idx], stream),
                        features=feats,
                    )
                for k, i in enumerate(idx):
                    out[tau][i] = pred[k, :, : out_hws[i][0], : out_hws[i][1]].cpu()
    return out


def predict_full(
    model: Any,
    lr: Tensor,
    out_hw: tuple[int, int],
    multiple: int,
    tau: float | None,
    seed: int = 0,
    stream: str = "predict",
) -> Tensor:
    """One image's HR prediction (CNF sample at ``tau`` or baseline mode), cropped to ``out_hw``; see
    :func:`predict_images`."""
    return predict_images(model, [lr], [out_hw], multiple, (tau,), seed, stream, batch=1)[tau][0]


class _Scores:
    """PSNR / SSIM means over full-image predictions; a prediction with non-finite pixels is counted
    and reported, never averaged in as NaN.  ``psnr_per_image`` (in the order added, ``None`` for a
    non-finite prediction) pairs two predictions of the same images for the claims' bootstrap."""

    def __init__(self) -> None:
        self.per_image: list[tuple[float, float] | None] = []

    def add(self, pred: Tensor, hr: Tensor) -> None:
        if not torch.isfinite(pred).all():
            self.per_image.append(None)
            return
        p, s = sr_psnr_ssim(pred[None].double(), hr[None].double(), scale=2)
        self.per_image.append((p.item(), s.item()))

    def summary(self) -> dict[str, Any]:
        v = [x for x in self.per_image if x is not None]
        return {
            "psnr": float(np.mean([a for a, _ in v])) if v else None,
            "ssim": float(np.mean([b for _, b in v])) if v else None,
            "non_finite_predictions": len(self.per_image) - len(v),
            "psnr_per_image": [None if x is None else x[0] for x in self.per_image],
        }


def _random_crops(hr: Tensor, lr: Tensor, crop: int, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    hs, ls = [], []
    for _ in range(n):
        y = 2 * int(torch.randint(0, (hr.shape[1] - crop) // 2 + 1, (1,), generator=g))
        x = 2 * int(torch.randint(0, (hr.shape[2] - crop) // 2 + 1, (1,), generator=g))
        hs.append(hr[:, y : y + crop, x : x + crop])
        ls.append(lr[:, y // 2 : (y + crop) // 2, x // 2 : (x + crop) // 2])
    return torch.stack(hs), torch.stack(ls)


def evaluate_test_set(
    name: str, models: SRModels, cfg: SRConfig, images: list[Tensor] | None = None, names: list[str] | None = None
) -> dict[str, Any]:
    """Table 2 for one test set: bpd over random crops; PSNR/SSIM of full images.

    ``per_image`` lists, for every image with crops, its mean crop bpd for both models and its
    :func:`~cnfkit.data.sr.chroma_detail_ratio` (what makes an image hard for a CNF, see there)."""
    if images is None:
        images, names = load_sr_images(name)
    available = len(images)
    images = images[: cfg.max_test_images]
    names = [n.rsplit("/", 1)[-1] for n in names] if names is not None else [f"image {i}" for i in range(len(images))]
    g = torch.Generator().manual_seed(cfg.seed + 7)
    multiple = 2**cfg.levels
    crops_hr, crops_lr, scores = [], [], {"Bicubic": _Scores(), "LL Baseline": _Scores(), "CNF": _Scores()}
    cropped = []  # names of the images that gave crops, in order
    pairs = [hr_lr_pair(hr_full) for hr_full in images]
    for img_name, (hr, lr) in zip(names, pairs):
        if min(hr.shape[1:]) >= cfg.crop:
            h, l_ = _random_crops(hr, lr, cfg.crop, cfg.crops_per_image, g)
            crops_hr.append(h)
            crops_lr.append(l_)
            cropped.append((img_name, chroma_detail_ratio(hr)))
    lrs, hws = [lr for _, lr in pairs], [(hr.shape[1], hr.shape[2]) for hr, _ in pairs]
    preds = {
        "LL Baseline": predict_images(models["baseline"], lrs, hws, multiple, (None,), batch=cfg.eval_batch)[None],
        "CNF": predict_images(
            models["cnf"], lrs, hws, multiple, (cfg.tau,), cfg.seed, f"{name}/table2", cfg.eval_batch
        )[cfg.tau],
    }
    for i, (hr, lr) in enumerate(pairs):
        scores["Bicubic"].add(imresize(lr, output_size=tuple(hr.shape[1:])).float(), hr)
        for key in ("LL Baseline", "CNF"):
            scores[key].add(preds[key][i], hr)
    out: dict[str, Any] = {k: v.summary() for k, v in scores.items()}
    hr_c, lr_c = torch.cat(crops_hr), torch.cat(crops_lr)
    out["per_image"] = {n: {"chroma_detail_ratio": r} for n, r in cropped}
    for key, model in (("CNF", models["cnf"]), ("LL Baseline", models["baseline"])):
        bits = _bits(model, hr_c, lr_c, cfg.eval_batch, cfg.seed, f"{name}/crops")
        out[key]["bpd"] = float(bits.mean())  # the paper's statistic
        out[key]["bpd_median"] = float(bits.median())  # robust to a few out-of-distribution crops
        for (n, _), b in zip(cropped, bits.reshape(len(cropped), cfg.crops_per_image).mean(1).tolist()):
            out["per_image"][n][key] = b
    out["_n_images"], out["_n_available"], out["_n_crops"] = len(images), available, int(hr_c.shape[0])
    return out


def temperature_sweep(
    models: SRModels, cfg: SRConfig, name: str = "Set5", images: list[Tensor] | None = None
) -> dict[str, Any]:
    """PSNR / SSIM of one CNF sample per image at every temperature of ``cfg.temperatures`` (and the
    baseline's mode for reference): lower temperatures trade texture for fidelity.  The sweep of
    :func:`probabilistic_evaluation` with one sample per image (which returns it as ``temperature_sweep``)."""
    return probabilistic_evaluation(models, cfg.replace(n_posterior=1), name, images)["temperature_sweep"]


def probabilistic_evaluation(
    models: SRModels, cfg: SRConfig, name: str = "Set5", images: list[Tensor] | None = None
) -> dict[str, Any]:
    """Beyond Table 2 (NTIRE 2021 "Learning the SR space" style), on one test set:

    * ``lr_psnr``: PSNR between ``imresize(prediction, 0.5)`` and the LR input (LR-consistency; NTIRE's
      bar is 45 dB), for CNF samples at every temperature and for the baseline's mode;
    * ``diversity``: mean per-pixel standard deviation across ``cfg.n_posterior`` samples of one LR
      input, at every temperature;
    * ``posterior_mean``: PSNR / SSIM of the average of ``cfg.n_posterior`` samples at temperature 1
      (it approximates the minimum-MSE estimate: the fair test of "the CNF beats the baseline on PSNR"),
      beside one sample at temperature 1 and at ``cfg.tau`` and the baseline's mode;
    * ``temperature_sweep``: PSNR / SSIM of the first sample of each image at every temperature of
      ``cfg.temperatures`` and of the baseline's mode (the same samples: no second sampling pass).

    The RRDB features of an image are computed once; sample ``j`` of image ``i`` at ``tau`` has its own
    generator, so the numbers do not depend on batching."""
    from ..probabilistic import lr_psnr, pixel_diversity

    if images is None:
        images, _ = load_sr_images(name)
    images = images[: cfg.max_test_images]
    multiple, n = 2**cfg.levels, cfg.n_posterior
    cnf, base = models["cnf"], models["baseline"]
    dev = module_device(cnf)
    taus = tuple(sorted(set(cfg.temperatures) | {1.0, cfg.tau}))
    lr_scores: dict[float, list[float]] = {t: [] for t in taus}
    div: dict[float, list[float]] = {t: [] for t in taus}
    mean_scores, single = _Scores(), {t: _Scores() for t in taus}  # single: the first sample of each image
    base_lr = []
    pairs = [hr_lr_pair(im) for im in images]
    hws = [(hr.shape[1], hr.shape[2]) for hr, _ in pairs]
    modes = predict_images(base, [lr for _, lr in pairs], hws, multiple, (None,), batch=cfg.eval_batch)[None]
    with torch.no_grad():
        for i, (hr, lr) in enumerate(pairs):
            feats = cnf.conditioning(_pad(lr.float()[None], multiple // 2).to(dev))
            base_lr.append(float(lr_psnr(modes[i][None].double(), lr[None].double())[0]))
            for tau in taus:
                gens = row_generators(cfg.seed, [(tau, i, j) for j in range(n)], f"{name}/posterior")
                smp = cnf.sample(None, num_samples=n, temperature=tau, generator=gens, features=feats)
                smp = smp[:, :, : hr.shape[1], : hr.shape[2]].cpu()
                finite = torch.isfinite(smp).flatten(1).all(1)
                if finite.any():
                    lr_rows = lr[None].expand(int(finite.sum()), -1, -1, -1).double()
                    lr_scores[tau].append(float(lr_psnr(smp[finite].double(), lr_rows).mean()))
                if int(finite.sum()) >= 2:
                    div[tau].append(pixel_diversity(smp[finite]))
                single[tau].add(smp[0], hr)
                if tau == 1.0:
                    mean_scores.add(smp[finite].mean(0) if finite.any() else smp[0], hr)
    base_scores = _Scores()
    for (hr, _), mode in zip(pairs, modes):
        base_scores.add(mode, hr)

    return _posterior_summary(lr_scores, div, mean_scores, single, base_scores, base_lr, cfg) | {
        "_set": name,
        "_n_images": len(images),
        "_n_samples": n,
    }


def _posterior_summary(lr_scores, div, mean_scores, single, base_scores, base_lr, cfg: SRConfig) -> dict[str, Any]:
    """The tables of :func:`probabilistic_evaluation` from its per-image scores (means over images)."""

    def key(t: float) -> str:
        return f"CNF tau={t}"

    baseline = "LL Baseline (mode)"
    return {
        "lr_psnr": {
            **{key(t): float(np.mean(v)) if v else None for t, v in lr_scores.items()},
            baseline: float(np.mean(base_lr)),
            "_note": "dB, capped at 100 (an exact match is infinite)",
        },
        "diversity": {key(t): float(np.mean(v)) if v else None for t, v in div.items()},
        "posterior_mean": {
            f"CNF mean of {cfg.n_posterior} samples, tau=1.0": mean_scores.summary(),
            **{f"CNF one sample, tau={t}": single[t].summary() for t in sorted({1.0, cfg.tau})},
            baseline: base_scores.summary(),
        },
        "temperature_sweep": {
            **{key(t): single[t].summary() for t in cfg.temperatures},
            baseline: base_scores.summary(),
        },
    }


class ImageNetPairs:
    """``batches(step) -> (hr, lr)`` from a packed ImageNet split: HR images as they are, LR their MATLAB-bicubic
    halves, computed per batch (only the batch's rows are read); a pure function of the step, like
    :class:`EpochSampler`."""

    def __init__(self, array, batch: int, seed: int = 0) -> None:
        self.array, self.batch, self.seed = array, batch, seed
        self.sampler = EpochSampler((torch.arange(len(array)),), batch, seed=seed)

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        (idx,) = self.sampler(step)
        hr = self.array[idx]
        return hr, imresize(hr, 0.5)

    def fingerprint(self) -> str:
        return f"{self.array.fingerprint()}-b{self.batch}-s{self.seed}"


def run(
    cfg: SRConfig,
    progress: bool = True,
    data: dict[str, Any] | None = None,
    device: str | None = None,
    checkpoint_dir=None,
    timer=None,
    train_only: bool = False,
) -> dict[str, Any]:
    """Train CNF and baseline per HR size; Table 1 on held-out patches; Table 2 with the largest size's models.

    ``device``: where models train and run (``None``: CUDA when available).  ``checkpoint_dir``:
    checkpoints in ``<dir>/superres-<config digest>/<model>_<size>/`` (resume an interrupted run,
    reuse a finished one).  ``train_only``: skip the evaluation (the command line under torchrun)."""
    opts = RunOptions(progress, device, timer, checkpoint_dir)
    release = cfg.train_data.removeprefix("imagenet_") if cfg.train_data.startswith("imagenet_") else None
    sources, test_sets = _sources(cfg, data, release, progress)
    if release:
        note = "bits/dim on the png and npz ImageNet releases are not comparable"
    else:
        note = "BSDS500 patches as a stand-in for ImageNet32/64"
    out: dict[str, Any] = {
        "table1": {},
        "table1_per_item": {},
        "table2": {},
        "train_time_s": {},
        "learning_curves": {},
        "parameters": {},
        "models": {},
        "train_data": {
            "source": cfg.train_data,
            "release": release,
            "note": note,
        },
    }
    for size, key, sampler, hr_te, lr_te in _size_data(cfg, sources, release):
        torch.manual_seed(cfg.seed)
        models = build_models(cfg)
        out["table1"][key], out["table1_per_item"][key] = {}, {}
        for name in ("cnf", "baseline"):
            model = models[name]
            _train_sr(model, name, size, sampler, cfg, opts, out)
            if not train_only:
                with phase(timer, "evaluation"):
                    bits = _bits(model, hr_te, lr_te, 64, cfg.seed, f"table1/{size}")
                label = "CNF" if name == "cnf" else "Factorized LL"
                out["table1"][key][label] = float(bits.mean())
                out["table1_per_item"][key][label] = bits.tolist()  # the held-out items, paired for the claims
        out["models"][size] = models
    if train_only:  # training only (the command line under torchrun): the notebook evaluates from the checkpoints
        return out
    best = out["models"][max(cfg.sizes)]
    for name, imgs in test_sets.items():
        with phase(timer, "evaluation"):
            out["table2"][name] = evaluate_test_set(name, best, cfg, imgs)
    return out


def _sources(cfg: SRConfig, data: dict[str, Any] | None, release: str | None, progress: bool):
    """The training source (ImageNet ``{size: (train, valid)}`` arrays, or BSDS500 ``(train, test)`` images) and
    the Table 2 test sets (``None``: loaded by name).  ImageNet fails at once, saying how to obtain it, when absent."""
    test_sets = {name: None for name in SR_TEST_SETS} if data is None else data["test_sets"]
    if release is not None:
        from ..data.imagenet import load_imagenet

        return {
            s: (
                load_imagenet(s, "train", release, progress=progress),
                load_imagenet(s, "valid", release, progress=progress),
            )
            for s in cfg.sizes
        }, test_sets
    if data is None:
        return (
            load_sr_images("BSDS500_train_test", "train")[0],
            load_sr_images("BSDS500_train_test", "test")[0],
        ), test_sets
    return (data["train"], data["test"]), test_sets


def _size_data(cfg: SRConfig, sources, release: str | None):
    """Per HR size, in order: ``(size, Table 1 row name, training batches, held-out HR, held-out LR)``; the
    held-out draws (and BSDS500's patches) come from one generator seeded with ``cfg.seed``."""
    g = torch.Generator().manual_seed(cfg.seed)
    for size, factor in zip(cfg.sizes, cfg.train_downscale):
        if release is not None:
            train_arr, valid_arr = sources[size]
            hr_te = valid_arr[torch.randperm(len(valid_arr), generator=g)[: cfg.n_test]]
            key = f"ImageNet{size} ({release} release, {len(hr_te)} validation images)"
            yield size, key, ImageNetPairs(train_arr, cfg.batch, cfg.seed), hr_te, imresize(hr_te, 0.5)
        else:
            train_imgs, test_imgs = sources
            hr_tr, lr_tr = patch_pairs(downscale_images(train_imgs, factor), size, cfg.n_train, g)
            hr_te, lr_te = patch_pairs(downscale_images(test_imgs, factor), size, cfg.n_test, g)
            key = f"BSDS500 {size}x{size} (ImageNet{size} stand-in)"
            yield size, key, EpochSampler((hr_tr, lr_tr), cfg.batch, seed=cfg.seed), hr_te, lr_te


def _nll_bits(m: nn.Module, b: tuple[Tensor, Tensor]) -> Tensor:
    """The SR training loss: negative log-likelihood of the HR batch given the LR batch, in bits per dimension."""
    return -m(b[0].float(), b[1].float()).mean() / (b[0][0].numel() * LN2)


def _train_sr(model: nn.Module, name: str, size: int, sampler, cfg: SRConfig, opts: RunOptions, out: dict) -> None:
    """Train one model of one size (left in eval mode); its time, learning curve and size go into ``out``."""
    history, wall = train_steps(
        model,
        _nll_bits,
        sampler,
        steps=cfg.steps,
        lr=cfg.lr,
        schedule=cfg.schedule,
        warmup=cfg.warmup,
        seed=cfg.seed,
        grad_clip=100.0,
        progress=opts.progress,
        desc=f"sr{size}/{name}",
        device=opts.device,
        checkpoint_dir=checkpoint_path(opts.checkpoint_dir, "superres", cfg, f"{name}_{size}"),
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        autocast=cfg.autocast,
        timer=opts.timer,
        fingerprint={"experiment": "superres", "model": name, "size": size, "config": cfg.to_dict()},
    )
    model.eval()
    out["train_time_s"][f"{name}_{size}"] = wall
    out["learning_curves"][f"{name}_{size}"] = curve_summary(history)
    out["parameters"][name] = sum(p.numel() for p in model.parameters())


def paper_table1(payload: dict[str, Any] | None, profile: str):
    """Winkler et al. Table 1, bits/dim: "paper" (ImageNet32/64) next to "ours" (the data ours names), from a
    results payload (:func:`results_payload`) or :func:`run`'s result; ``None``: ours empty."""
    import pandas as pd

    p1, ours = paper_numbers("winkler_table1_bpd"), f"ours ({profile})"
    rows = []
    for ds in ("ImageNet32", "ImageNet64"):
        size = ds.removeprefix("ImageNet")
        # ours may be on a stand-in (e.g. "BSDS500 32x32 (ImageNet32 stand-in)"): the row says which
        match = [(k, v) for k, v in (payload or {}).get("table1", {}).items() if k == ds or f"{size}x{size}" in k]
        label, got = match[0] if match else (ds, {})
        rows.append(
            {
                "dataset": ds,
                f"{ours} data": label,
                "paper CNF": p1[ds]["CNF"],
                f"{ours} CNF": got.get("CNF"),
                "paper factorized LL": p1[ds]["Factorized LL"],
                f"{ours} factorized LL": got.get("Factorized LL"),
            }
        )
    return pd.DataFrame(rows).set_index("dataset")


def paper_table2(payload: dict[str, Any] | None, profile: str):
    """Winkler et al. Table 2, bits/dim, PSNR and SSIM on Set5, Set14 and BSD100: "paper" next to "ours" (the
    cited methods' numbers as the paper gives them), from a results payload or :func:`run`'s result."""
    import pandas as pd

    p2, ours = paper_numbers("winkler_table2_sr"), f"ours ({profile})"
    rows = []
    for model in ("Bicubic", "SRCNN", "PSyCO", "ENet", "LL Baseline", "CNF"):
        row: dict[str, Any] = {"model": model + (" (cited)" if model in p2["_cited"][1:] else "")}
        for ds in ("Set5", "Set14", "BSD100"):
            res = (payload or {}).get("table2", {}).get(ds, {})
            got = res.get(model, {})
            for metric in ("bpd", "psnr", "ssim"):
                row[f"{ds} {metric} paper"] = p2[ds][model].get(metric)
                if model not in p2["_cited"][1:]:
                    row[f"{sr_set_label(ds, res)} {metric} {ours}"] = got.get(metric)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def results_payload(result: dict[str, Any], prob: dict[str, Any], cfg: SRConfig) -> dict[str, Any]:
    """What ``super_resolution.json`` holds besides the configuration: Tables 1 and 2, sizes and training
    times, learning curves, and the probabilistic evaluation (:func:`probabilistic_evaluation`)."""
    note = (
        f"Table 1 on BSDS500 patches (images shrunk by {cfg.train_downscale} for sizes {cfg.sizes}) "
        "as a stand-in for ImageNet32/64"
    )
    return {
        "table1": result["table1"],
        "table1_per_item": result.get("table1_per_item", {}),
        "table2": result["table2"],
        "parameters": result["parameters"],
        "train_time_s": result["train_time_s"],
        "learning_curves": result["learning_curves"],
        "temperature_sweep_Set5": prob["temperature_sweep"],
        "lr_psnr": prob["lr_psnr"],
        "diversity": prob["diversity"],
        "posterior_mean": prob["posterior_mean"],
        "probabilistic_set": prob["_set"],
        "note": note,
    }


def probabilistic_table(prob: dict[str, Any]):
    """LR-PSNR and diversity per temperature, and the posterior mean against single samples and the baseline."""
    import pandas as pd

    keys = [k for k in prob["lr_psnr"] if not k.startswith("_")]
    a = pd.DataFrame(
        {
            "LR-PSNR [dB] (NTIRE bar: 45)": {k: prob["lr_psnr"][k] for k in keys},
            "diversity (mean per-pixel std)": {k: prob["diversity"].get(k) for k in keys},
        }
    )
    b = pd.DataFrame(
        {
            k: {"PSNR": v["psnr"], "SSIM": v["ssim"], "non-finite": v["non_finite_predictions"]}
            for k, v in prob["posterior_mean"].items()
        }
    ).T
    return a, b


def plot_bpd_per_image(table2: dict[str, Any]):
    """Box plots of the per-image bits/dim (mean over its crops), CNF against the baseline, per test set."""
    import matplotlib.pyplot as plt

    sets = [s for s in table2 if table2[s].get("per_image")]
    fig, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.4), squeeze=False)
    for ax, name in zip(axes[0], sets):
        per = table2[name]["per_image"].values()
        data = [[v["CNF"] for v in per if "CNF" in v], [v["LL Baseline"] for v in per if "LL Baseline" in v]]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks([1, 2], ["CNF", "baseline"])
        ax.set_title(f"{name} ({len(data[0])} images)", fontsize=9)
        ax.set_ylabel("bits/dim per image")
    fig.tight_layout()
    return fig


# --- figures -------------------------------------------------------------------------------------


def _show(ax, img: Tensor, title: str) -> None:
    ax.imshow(img.clamp(0, 255).permute(1, 2, 0).numpy().astype(np.uint8), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_fig2(models: SRModels, hr: Tensor, lr: Tensor, cfg: SRConfig, n: int = 4):
    """Fig 2: rows of LR (bicubic-upsampled for display) / CNF sample / ground truth / baseline mode."""
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(cfg.seed + 11)
    dev = module_device(models["cnf"])
    with torch.no_grad():
        sample = models["cnf"].sample(lr[:n].to(dev).float(), temperature=cfg.tau, generator=g).cpu()
        mode = models["baseline"].mode(lr[:n].to(dev).float()).cpu()
    fig, axes = plt.subplots(n, 4, figsize=(6, 1.6 * n), squeeze=False)
    for i in range(n):
        _show(axes[i][0], imresize(lr[i], output_size=tuple(hr.shape[-2:])).float(), "low resolution" if i == 0 else "")
        _show(axes[i][1], sample[i], f"CNF sample, tau={cfg.tau}" if i == 0 else "")
        _show(axes[i][2], hr[i].float(), "ground truth" if i == 0 else "")
        _show(axes[i][3], mode[i], "baseline mode" if i == 0 else "")
    fig.tight_layout()
    return fig


def plot_fig3(models: SRModels, hr: Tensor, lr: Tensor, cfg: SRConfig, box: tuple[int, int, int] = (0, 0, 128)):
    """Fig 3: a crop of one image: CNF samples at several temperatures and the baseline."""
    import matplotlib.pyplot as plt

    y, x, s = box
    multiple = 2**cfg.levels
    taus = (0.0, 0.5, 1.0)
    preds = predict_images(models["cnf"], [lr], [(hr.shape[1], hr.shape[2])], multiple, taus, cfg.seed, "fig3")
    panels = [(f"CNF tau={t}", preds[t][0]) for t in taus]
    panels.append(
        ("factorized baseline (mode)", predict_full(models["baseline"], lr, (hr.shape[1], hr.shape[2]), multiple, None))
    )
    panels.append(("ground truth", hr.float()))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.4 * len(panels), 2.6))
    for ax, (title, img) in zip(axes, panels):
        _show(ax, img[:, y : y + s, x : x + s], title)
    fig.tight_layout()
    return fig


def temperature_view(
    models: SRModels,
    hr: Tensor,
    lr: Tensor,
    cfg: SRConfig,
    tau: float,
    n: int = 4,
    box: tuple[int, int, int] | None = None,
):
    """The temperature slider's figure: ``n`` CNF samples of one image at temperature ``tau``, their
    mean (the posterior mean estimate at that temperature), the baseline's mode and the ground truth,
    with each panel's PSNR.  ``box = (y, x, side)`` crops every panel alike."""
    import matplotlib.pyplot as plt

    tau = check_temperature(tau)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    multiple, hw = 2**cfg.levels, (hr.shape[1], hr.shape[2])
    samples = predict_images(
        models["cnf"], [lr] * n, [hw] * n, multiple, (tau,), cfg.seed, "temperature-view", cfg.eval_batch
    )[tau]
    mean = torch.stack(samples).mean(0)
    base = predict_full(models["baseline"], lr, hw, multiple, None)
    panels = [
        *((f"sample {i + 1}", s) for i, s in enumerate(samples)),
        (f"mean of {n}", mean),
        ("baseline (mode)", base),
        ("ground truth", hr.float()),
    ]
    y, x, side = box if box is not None else (0, 0, max(hw))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for ax, (title, img) in zip(axes, panels):
        if title != "ground truth" and torch.isfinite(img).all():
            title += f"\n{sr_psnr_ssim(img[None].double(), hr[None].double(), scale=2)[0].item():.2f} dB"
        _show(ax, img[:, y : y + side, x : x + side], title)
    fig.suptitle(f"CNF at temperature {tau:.2f}")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(command_line("superres", config, run))
