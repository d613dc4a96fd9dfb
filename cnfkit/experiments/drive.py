"""Winkler et al. (2019) sec. 5.2: DRIVE retinal-vessel segmentation (Table 3, Figs 4 and 5).

Three models share the Table 4 conditioner: the CNF with binary variational dequantization, the
CNF with uniform dequantization ("CNF Uniform") and the factored weighted-Bernoulli baseline.
Evaluation is inside the field-of-view (FOV) mask, pooled over the 20 test images:

* bits/dim, the same for every model of Table 3: ``-log2 P(y | x)`` of the *whole* label map that
  the models score (the test image zero-padded right and bottom to a multiple of 4, 584x568), divided
  by its number of pixels.  A flow models the map jointly and cannot score a subset of its pixels,
  so the factored model's code length covers the same pixels (inside and outside the FOV); for the
  CNFs it is the variational bound (an upper bound on the code length).  See :data:`BPD_DEFINITION`.
* PR curve and maximal F-score by thresholding the mean of ``n_samples`` CNF samples, or the
  baseline's probability map;
* per-sample precision/recall of individual samples (Fig 5 right): CNF samples, Bernoulli samples of
  the baseline's map, and the second human observer against the first.

DRIVE's terms forbid redistribution: pictures derived from DRIVE images (Fig 4) go to
``results/<profile>/private/``, which git ignores; only aggregate numbers and curves are committed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ..data.drive import DriveSplit, load_drive, random_affine
from ..data.transforms import crop_to, pad_to_multiple
from ..metrics import binned_counts, binned_max_f_score, f_score, max_f_score, pr_curve, precision_recall
from ..models.segmentation import FactoredBernoulli, SegmentationCNF, scored_probability
from ..repro.paper import paper_numbers
from ..repro.profiles import Config, ConfigError, select
from ..repro.results import curve_summary, phase, with_spread
from ..repro.stats import json_safe, paired_bootstrap_statistic
from ..train import EpochSampler, check_schedule, train_steps
from ..utils import module_device, row_generators
from .cli import command_line
from .common import RunOptions, checkpoint_path

__all__ = [
    "BPD_DEFINITION",
    "CONFIGS",
    "MODELS",
    "DriveConfig",
    "build_model",
    "config",
    "evaluate",
    "make_batches",
    "threshold_statistics",
    "threshold_view",
    "train_model",
]

MODELS = ("factored", "cnf_uniform", "cnf", "factored_bernoulli")
BPD_DEFINITION = (
    "bits/dim = -log2 P(y | x) of the whole label map (zero-padded to a multiple of 4: 584x568) divided by its "
    "number of pixels, for every model; for the CNFs -log2 P is the variational bound with one dequantization sample"
)
COLOURS = {"factored": "tab:blue", "cnf_uniform": "tab:orange", "cnf": "tab:red", "factored_bernoulli": "tab:purple"}
LABELS = {
    "factored": "Factored (ours)",
    "cnf_uniform": "CNF Uniform (ours)",
    "cnf": "CNF (ours)",
    "factored_bernoulli": "Factored, plain Bernoulli (ours, beyond the paper)",
}


@dataclass(frozen=True)
class DriveConfig(Config):
    pad_to: int  # training images are zero-padded to pad_to x pad_to (the paper: 1024)
    crop: int  # random training crops of crop x crop (= pad_to: whole images)
    batch: int
    steps: int
    n_samples: int  # samples averaged into the CNF's soft map (the paper: 100)
    n_scatter: int  # samples per test image for the precision/recall scatter
    test_images: int  # test images evaluated (20 = all)
    eval_batch: int = (
        20  # maps per forward call in evaluation (images for bpd, samples for soft maps); results do not depend on it
    )
    # the fast path (TrainConfig): channels-last measured 1.06x slower for DRIVE sampling on the 2-core CPU; compile and
    # bf16 autocast not yet measured on a GPU, so off
    channels_last: bool = False
    compile: bool = False
    autocast: str = "none"
    hidden: int = 32
    widths: tuple[int, int, int] = (32, 64, 128)
    lr: float = 1e-3
    # the learning rate over each model's run (cnfkit.train.learning_rate): "constant" or "cosine" decay to 0 after
    # ``warmup`` steps of linear warm-up
    schedule: str = "constant"
    warmup: int = 0
    beta: float = 0.9  # weight of the vessel term in eq. 9 (vessels are ~10% of the pixels)
    seeds: tuple[int, ...] = (0,)
    nonnegative = frozenset({"seeds", "warmup"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_schedule(self.schedule, self.warmup, None, "DriveConfig")  # train_steps caps the warm-up at a (dry) run

    dry_run_caps: ClassVar[dict[str, int]] = {
        "steps": 2,
        "test_images": 2,
        "n_samples": 4,
        "n_scatter": 2,
        "seeds": 1,
        "eval_batch": 4,
    }


CONFIGS = {
    "smoke": DriveConfig(
        pad_to=592, crop=32, batch=2, steps=30, n_samples=2, n_scatter=1, test_images=2, hidden=8, widths=(8, 16, 16)
    ),
    # about 6 minutes per model on a 2-core CPU: random 96x96 crops, 5000 steps, 20 samples, 1 seed
    "quick": DriveConfig(pad_to=592, crop=96, batch=4, steps=1600, n_samples=20, n_scatter=5, test_images=20),
    # the paper: 1024x1024 padding, batch 2, 2000 epochs of 20 images, 100 samples, 5 runs
    "full": DriveConfig(
        pad_to=1024, crop=1024, batch=2, steps=20000, n_samples=100, n_scatter=10, test_images=20, seeds=(0, 1, 2, 3, 4)
    ),
}


def config(profile: str | None, dry_run: bool = False) -> DriveConfig:
    cfg = select(CONFIGS, profile, dry_run)
    if cfg.crop > cfg.pad_to or cfg.crop % 4 or cfg.pad_to % 4:
        raise ConfigError(f"crop ({cfg.crop}) must be <= pad_to ({cfg.pad_to}) and both divisible by 4")
    return cfg


def build_model(name: str, cfg: DriveConfig) -> SegmentationCNF | FactoredBernoulli:
    if name == "factored":
        return FactoredBernoulli(3, cfg.hidden, cfg.widths, cfg.beta)
    if name == "factored_bernoulli":  # beyond the paper: the strongest honest factored likelihood
        return FactoredBernoulli(3, cfg.hidden, cfg.widths, beta=None)
    if name in ("cnf", "cnf_uniform"):
        return SegmentationCNF(3, "binary" if name == "cnf" else "uniform", hidden=cfg.hidden, widths=cfg.widths)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


class DriveBatches:
    """``batches(step) -> (x, y)``: augmented random crops of the training images, a pure function of the step."""

    def __init__(self, train: DriveSplit, cfg: DriveConfig, seed: int) -> None:
        self.train, self.cfg, self.seed = train, cfg, seed
        self.x_all, _ = pad_to_multiple(train.images, cfg.pad_to, square=True)
        self.y_all, _ = pad_to_multiple(train.labels, cfg.pad_to, square=True)
        self.m_all, _ = pad_to_multiple(train.masks, cfg.pad_to, square=True)
        self.sampler = EpochSampler((torch.arange(len(train)),), cfg.batch, seed=seed)
        # Augmenting only a window around the crop is ~6x cheaper than the whole padded image: the window
        # (2.4 x the crop) holds the crop's pre-image under scalings >= 0.8 and shears up to ~3 sigma.
        self.window = min(cfg.pad_to, 2 * math.ceil(1.2 * cfg.crop))

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        cfg, window = self.cfg, self.window
        (idx,) = self.sampler(step)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        i, j = torch.randint(0, cfg.pad_to - window + 1, (2,), generator=g).tolist()
        win = (idx, slice(None), slice(i, i + window), slice(j, j + window))  # copies only the window
        x, y, _ = random_affine(self.x_all[win], self.y_all[win], self.m_all[win], g)
        o = (window - cfg.crop) // 2
        return x[..., o : o + cfg.crop, o : o + cfg.crop], y[..., o : o + cfg.crop, o : o + cfg.crop]

    def fingerprint(self) -> str:
        """The same on every rank, so a checkpoint written under torchrun is reused by one process."""
        from ..train import tensor_digest

        cfg = self.cfg
        h = hashlib.sha256(f"drive batch={cfg.batch} crop={cfg.crop} pad={cfg.pad_to} seed={self.seed}".encode())
        tensor_digest(h, (self.train.images, self.train.labels, self.train.masks))
        return h.hexdigest()[:16]


def make_batches(train: DriveSplit, cfg: DriveConfig, seed: int) -> DriveBatches:
    """``batches(step) -> (x, y)``: augmented random crops, a pure function of the step."""
    return DriveBatches(train, cfg, seed)


def _loss(name: str):
    if name.startswith("factored"):
        return lambda m, b: m.loss(b[1], b[0]).mean() / b[1][0].numel()
    return lambda m, b: -m(b[1], b[0]).mean() / b[1][0].numel()


def train_model(
    name: str, train: DriveSplit, cfg: DriveConfig, seed: int, opts: RunOptions | None = None
) -> tuple[SegmentationCNF | FactoredBernoulli, float, dict[str, float] | None]:
    """Train one model on ``opts.device`` (``None``: CUDA when available); it stays there, in eval mode.
    Returns ``(model, training wall time, where its learning curve ended)``
    (:func:`cnfkit.repro.results.curve_summary`).

    With ``opts.checkpoint_dir`` (checkpoints in ``<dir>/drive-<config digest>/<model>/seed<k>/``) an
    interrupted run resumes and a finished one is reloaded."""
    opts = opts or RunOptions()
    torch.manual_seed(seed)
    model = build_model(name, cfg)
    history, wall = train_steps(
        model,
        _loss(name),
        make_batches(train, cfg, seed),
        steps=cfg.steps,
        lr=cfg.lr,
        schedule=cfg.schedule,
        warmup=cfg.warmup,
        seed=seed,
        checkpoint_dir=checkpoint_path(opts.checkpoint_dir, "drive", cfg, name, f"seed{seed}"),
        progress=opts.progress,
        desc=f"drive/{name}/seed{seed}",
        device=opts.device,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        autocast=cfg.autocast,
        timer=opts.timer,
        fingerprint={"experiment": "drive", "model": name, "seed": seed, "config": cfg.to_dict()},
    )
    return model.eval(), wall, curve_summary(history)


def _test_tensors(test: DriveSplit, cfg: DriveConfig):
    n = min(cfg.test_images, len(test))
    x, size = pad_to_multiple(test.images[:n], 4)
    return x, test.labels[:n], test.masks[:n], size


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield range(i, min(n, i + size))


@torch.no_grad()
def _test_bits(model: SegmentationCNF | FactoredBernoulli, x: Tensor, y: Tensor, cfg: DriveConfig, seed: int) -> Tensor:
    """Bits/dim of each test image's whole padded label map (:data:`BPD_DEFINITION`), ``cfg.eval_batch`` at a time."""
    dev = module_device(model)
    y_pad, _ = pad_to_multiple(y, 4)
    n, n_pixels = x.shape[0], y_pad[0].numel()  # every model scores the same padded map
    bits = torch.empty(n, dtype=torch.float64)
    for rows in _chunks(n, cfg.eval_batch):
        xb, yb = x[rows.start : rows.stop].to(dev), y_pad[rows.start : rows.stop].to(dev)
        if isinstance(model, FactoredBernoulli):
            ll = model(yb, xb)  # as the model is scored (eq. 9, or plain Bernoulli)
        else:
            ll = model(yb, xb, generator=row_generators(seed, [(i, "dequantization") for i in rows], "drive-eval"))
        bits[rows.start : rows.stop] = (-ll.double() / math.log(2) / n_pixels).cpu()
    return bits


def _soft_map_and_samples(
    model: SegmentationCNF | FactoredBernoulli, xi: Tensor, i: int, cfg: DriveConfig, seed: int
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Image ``i``'s soft map (the mean of ``cfg.n_samples`` CNF samples, or the factored model's p), its first
    ``cfg.n_scatter`` binary samples and, for a factored model, ``cfg.n_scatter`` samples from the likelihood it
    is scored with (:func:`~cnfkit.models.segmentation.scored_probability`; empty for a CNF), all on the CPU,
    ``cfg.eval_batch`` draws per call.  A factored model's samples are Bernoulli with the soft image as mean, as
    the paper draws them."""
    dev, hw = xi.device, (xi.shape[-2], xi.shape[-1])
    if isinstance(model, FactoredBernoulli):
        with torch.no_grad():
            logits = model.logits(xi)  # one conditioner pass for both maps
        p, q = torch.sigmoid(logits), scored_probability(logits, model.beta)
        kept, scored = list[Tensor](), list[Tensor]()
        for js in _chunks(cfg.n_scatter, cfg.eval_batch):
            gens = row_generators(seed, [(i, j) for j in js], "drive-eval")
            kept.extend(model.sample(None, num_samples=len(js), generator=gens, probs=p).cpu())
            gens = row_generators(seed, [(i, j) for j in js], "drive-eval-scored")
            scored.extend(model.sample(None, num_samples=len(js), generator=gens, probs=q).cpu())
        return p, kept, scored
    n_draws = max(cfg.n_samples, cfg.n_scatter)
    feats = model.conditioning(xi)
    total, kept = torch.zeros((1, 1, *hw), device=dev), list[Tensor]()
    for js in _chunks(n_draws, cfg.eval_batch):
        gens = row_generators(seed, [(i, j) for j in js], "drive-eval")
        d = model.sample(None, num_samples=len(js), generator=gens, features=feats, size=hw)
        total += d[: max(0, min(cfg.n_samples, js.stop) - js.start)].sum(0, keepdim=True)
        kept.extend(d[: max(0, min(cfg.n_scatter, js.stop) - js.start)].cpu())
    return total / cfg.n_samples, kept, []


def evaluate(
    name: str, model: SegmentationCNF | FactoredBernoulli, test: DriveSplit, cfg: DriveConfig, seed: int
) -> dict[str, Any]:
    """bpd, PR curve, max F-score, per-sample precision/recall and the soft maps of one model
    (``name`` is its label in MODELS; what is computed follows the model's type).

    Batched: ``cfg.eval_batch`` maps (images for bits/dim, samples for the soft maps) per forward
    call, the conditioner once per image.  Every random draw has its own generator, seeded by
    ``(seed, image, sample)`` (:func:`cnfkit.utils.row_generators`), so the numbers do not depend on
    ``eval_batch`` or on the device.  The first ``n_scatter`` of an image's samples are its points in
    the precision/recall scatter.  The model runs where its parameters are; soft maps come back to the CPU."""
    dev = module_device(model)
    x, y, mask, size = _test_tensors(test, cfg)
    bits = _test_bits(model, x, y, cfg, seed)
    soft: list[Tensor] = []
    scatter: list[tuple[float, float]] = []
    scatter_scored: list[tuple[float, float]] = []
    samples: list[Tensor] = []
    for i in range(x.shape[0]):
        s, kept, scored = _soft_map_and_samples(model, x[i : i + 1].to(dev), i, cfg, seed)
        soft.append(crop_to(s, size).cpu())
        kept = [crop_to(d[None], size)[0] for d in kept]
        samples.append(torch.stack(kept))
        for d in kept:
            scatter.append(precision_recall(d[None], y[i : i + 1], mask[i : i + 1]))
        for d in scored:
            scatter_scored.append(precision_recall(crop_to(d[None], size), y[i : i + 1], mask[i : i + 1]))
    soft_t = torch.cat(soft)
    precision, recall, _ = pr_curve(soft_t, y, mask)
    best_f, best_t = max_f_score(soft_t, y, mask)
    keep = np.unique(np.linspace(0, len(precision) - 1, min(400, len(precision))).astype(int))
    return {
        "bpd": float(bits.mean()),
        "bpd_per_image": bits.tolist(),  # the paired items of the claims' bootstrap
        "max_f_score": best_f,
        "threshold": best_t,
        "pr_curve": {"precision": precision[keep].tolist(), "recall": recall[keep].tolist()},
        "sample_precision_recall": scatter,
        **({"sample_precision_recall_scored": scatter_scored} if scatter_scored else {}),
        "soft_maps": soft_t,  # DRIVE-derived: never written into the repository
        "samples": samples,  # per image [n_scatter, 1, H, W] binary samples; DRIVE-derived, never written
    }


def probabilistic_evaluation(
    name: str, ev: dict[str, Any], test: DriveSplit, cfg: DriveConfig, human_points=None
) -> dict[str, Any]:
    """Beyond Table 3 (tested metric functions in :mod:`cnfkit.probabilistic`), inside the FOV:

    * ``calibration``: reliability diagram and ECE of the per-pixel probability map (the CNFs' mean
      of samples, the factored model's p);
    * ``pr_distance_to_human``: energy distance and mean nearest-point distance between the cloud of
      single-sample (precision, recall) points and the second grader's points (Fig 5's claim);
      ``pr_distance_to_human_scored`` the same for a factored model's samples drawn from the likelihood it
      is scored with (eq. 9's normalised distribution) instead of its soft image;
    * ``ged``: generalized energy distance (d = 1 - IoU) between the model's samples of an image and
      its two annotations, with the sample diversity, averaged over images;
    * ``vessel_width``: mean width (area / skeleton length) of the map thresholded at the max-F threshold;
    * ``sample_diversity``: mean 1 - IoU over distinct pairs of an image's samples, inside the FOV;
    * ``uncertainty_auroc``: AUROC of the per-pixel uncertainty for predicting the pixels that the max-F
      prediction gets wrong, the uncertainty measured against the model's own decision threshold
      (:func:`cnfkit.probabilistic.decision_uncertainty` of its soft map)."""
    from ..probabilistic import (
        auroc,
        binary_calibration,
        decision_uncertainty,
        generalized_energy_distance,
        point_cloud_distance,
        sample_diversity,
        vessel_width,
    )

    n = ev["soft_maps"].shape[0]
    y, mask = test.labels[:n], test.masks[:n]
    soft = ev["soft_maps"].to(torch.float64)
    out: dict[str, Any] = {"calibration": binary_calibration(soft.clamp(0, 1), y, mask)}
    if human_points is not None:
        out["pr_distance_to_human"] = point_cloud_distance(ev["sample_precision_recall"], human_points)
        if ev.get("sample_precision_recall_scored"):
            out["pr_distance_to_human_scored"] = point_cloud_distance(
                ev["sample_precision_recall_scored"], human_points
            )
    if test.second is not None and ev["samples"][0].shape[0] >= 1:
        geds = [
            generalized_energy_distance(ev["samples"][i][:, 0], torch.stack([y[i, 0], test.second[i, 0]]), mask[i, 0])
            for i in range(n)
        ]
        out["ged"] = {k: float(np.mean([g[k] for g in geds])) for k in geds[0]}
    if ev["samples"][0].shape[0] >= 2:  # mean 1 - IoU over distinct pairs of an image's samples, inside the FOV
        out["sample_diversity"] = float(
            np.mean([sample_diversity(ev["samples"][i][:, 0], mask[i, 0]) for i in range(n)])
        )
    pred = (soft >= ev["threshold"]).float()
    out["vessel_width"] = float(
        np.mean([vessel_width(pred[i, 0] * mask[i, 0]) for i in range(n) if (pred[i, 0] * mask[i, 0]).any()])
    )
    errors = (pred != y).float()
    uncertain = decision_uncertainty(soft.clamp(0, 1), float(ev["threshold"]))
    out["uncertainty_auroc"] = (
        auroc(uncertain, errors, mask) if 0 < float((errors * mask).sum()) < float(mask.sum()) else None
    )
    return out


def human_observer(test: DriveSplit, cfg: DriveConfig) -> dict[str, Any]:
    """The second observer against the first: per-image precision/recall and pooled F-score."""
    if test.second is None:
        raise ValueError("the test split has no second annotation (DRIVE's 2nd_manual): no human observer to compare")
    n = min(cfg.test_images, len(test))
    pr = [precision_recall(test.second[i : i + 1], test.labels[i : i + 1], test.masks[i : i + 1]) for i in range(n)]
    p, r = precision_recall(test.second[:n], test.labels[:n], test.masks[:n])
    return {"f_score": f_score(p, r), "precision": p, "recall": r, "sample_precision_recall": pr}


def run(
    cfg: DriveConfig,
    models: tuple[str, ...] = MODELS,
    progress: bool = True,
    data=None,
    device: str | None = None,
    checkpoint_dir=None,
    timer=None,
    train_only: bool = False,
) -> dict[str, Any]:
    """Train and evaluate every model for every seed; mean and std over seeds.

    ``device``: where models train and run (``None``: CUDA when available).  ``checkpoint_dir``:
    checkpoints in ``<dir>/drive-<config digest>/<model>/seed<k>/`` (resume an interrupted run, reuse a finished
    one)."""
    opts = RunOptions(progress, device, timer, checkpoint_dir)
    train, test = data if data is not None else (load_drive("training"), load_drive("test"))
    human = None if train_only or test.second is None else human_observer(test, cfg)
    out: dict[str, Any] = {"runs": {m: [] for m in models}, "summary": {}}
    for name in models:
        for seed in cfg.seeds:
            model, wall, curve = train_model(name, train, cfg, seed, opts)
            if train_only:  # training only (the command line under torchrun)
                continue
            with phase(timer, "evaluation"):
                ev = evaluate(name, model, test, cfg, seed)
                points = None if human is None else human["sample_precision_recall"]
                ev["probabilistic"] = probabilistic_evaluation(name, ev, test, cfg, points)
            out["runs"][name].append({**ev, "train_time_s": wall, "learning_curve": curve})
        if out["runs"][name]:
            out["summary"][name] = _summary(out["runs"][name], cfg)
    if train_only:
        return out
    if human is not None:
        out["human"] = {**human, **_annotator_agreement(test, cfg)}
    out["comparisons"] = {"max_f_score": max_f_comparisons(out["runs"], test)}
    return out


COMPARED = (("cnf", "factored"), ("cnf", "factored_bernoulli"), ("cnf", "cnf_uniform"))
"""The model pairs whose pooled max F-scores are compared by a paired bootstrap over the test images."""


def max_f_comparisons(
    runs: dict[str, list[dict[str, Any]]], test: DriveSplit, bins: int = 1000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """For each pair of :data:`COMPARED` (first seed of each): the paired bootstrap over test images of the pooled
    max F-score (:func:`cnfkit.repro.stats.paired_bootstrap_statistic`).  Each image's positives and negatives per
    soft-map bin inside the FOV are counted once (:func:`cnfkit.metrics.binned_counts`; a CNF's mean of ``n``
    samples lies on the grid of ``bins = 1000`` when ``n`` divides it); a resample pools its images' counts.
    Only these statistics leave the function: the counts are DRIVE-derived and are not kept."""
    counts = {}
    for name, rs in runs.items():
        if rs and "soft_maps" in rs[0]:
            soft = rs[0]["soft_maps"].double().clamp(0, 1)
            n = soft.shape[0]
            counts[name] = np.stack(
                [binned_counts(soft[i], test.labels[i], test.masks[i], bins) for i in range(n)]
            ).reshape(n, -1)

    def stat(c: np.ndarray):
        def f(idx: np.ndarray) -> np.ndarray:
            rows = idx[None] if idx.ndim == 1 else idx
            weights = np.stack([np.bincount(r, minlength=c.shape[0]) for r in rows]).astype(np.float64)
            f_ = binned_max_f_score((weights @ c).reshape(len(rows), 2, bins))
            return f_[0] if idx.ndim == 1 else f_

        return f

    return {
        f"{a}-{b}": json_safe(paired_bootstrap_statistic(stat(counts[a]), stat(counts[b]), counts[a].shape[0], seed))
        for a, b in COMPARED
        if a in counts and b in counts
    }


BEYOND_PAPER = (
    "calibration",
    "pr_distance_to_human",
    "pr_distance_to_human_scored",
    "ged",
    "sample_diversity",
    "vessel_width",
    "uncertainty_auroc",
)
"""The beyond-paper metrics each model's summary carries (those of its first seed)."""


def _summary(runs: list[dict[str, Any]], cfg: DriveConfig) -> dict[str, Any]:
    """One model over its seeds: mean and std of bits/dim and max F-score, and its first seed's beyond-paper metrics."""
    first = runs[0]["probabilistic"]
    return {
        "bpd": float(np.mean([r["bpd"] for r in runs])),
        "bpd_std": float(np.std([r["bpd"] for r in runs])),
        "f_score": float(np.mean([r["max_f_score"] for r in runs])),
        "f_score_std": float(np.std([r["max_f_score"] for r in runs])),
        "train_time_s": float(np.mean([r["train_time_s"] for r in runs])),
        "seeds": list(cfg.seeds),
        **{k: first[k] for k in BEYOND_PAPER if k in first},
    }


def _annotator_agreement(test: DriveSplit, cfg: DriveConfig) -> dict[str, float]:
    """How the two graders differ: mean 1 - IoU of their maps and the mean vessel width of each (inside the FOV)."""
    from ..probabilistic import iou_distance, vessel_width

    assert test.second is not None  # human_observer checked it
    n = min(cfg.test_images, len(test))
    labels, second = test.labels[:n] * test.masks[:n], test.second[:n] * test.masks[:n]
    return {
        "ged_between_annotators": float(iou_distance(labels, second).mean()),
        "vessel_width_annotation": float(np.mean([vessel_width(labels[i, 0]) for i in range(n)])),
        "vessel_width_second_observer": float(np.mean([vessel_width(second[i, 0]) for i in range(n)])),
    }


def json_payload(result: dict[str, Any]) -> dict[str, Any]:
    """Everything but the soft maps (DRIVE-derived arrays stay out of files that may be committed)."""
    runs = {
        m: [{k: v for k, v in r.items() if k not in ("soft_maps", "samples")} for r in rs]
        for m, rs in result["runs"].items()
    }
    return {
        "summary": result["summary"],
        "runs": runs,
        "human": result.get("human"),
        "comparisons": result.get("comparisons", {}),
    }


PAPER_KEYS = {"factored": "Factored", "cnf_uniform": "CNF Uniform", "cnf": "CNF"}


def _over_seeds(s: dict[str, Any] | None, metric: str, digits: int) -> str | None:
    """A summary's ``metric`` with its spread over seeds (:func:`~cnfkit.repro.results.with_spread`); None: no run."""
    return with_spread(s[metric], s.get(f"{metric}_std"), len(s.get("seeds", [0])), digits) if s else None


def paper_table(payload: dict[str, Any] | None, profile: str):
    """Winkler et al. Table 3, bits/dim and max F-score: "paper" next to "ours" (mean +- std over seeds; the
    cited methods' F-scores as the paper gives them, the second observer's computed from DRIVE), from a results
    payload (:func:`results_payload`) or :func:`run`'s result."""
    import pandas as pd

    p3, ours = paper_numbers("winkler_table3_drive"), f"ours ({profile})"
    rows = []
    for name in p3["_cited"]:
        ours_f = payload["human"]["f_score"] if (payload and name == "Human" and payload.get("human")) else None
        rows.append(
            {
                "model": name + (" (cited)" if name != "Human" else " (2nd observer)"),
                "paper bpd": None,
                f"{ours} bpd": None,
                "paper F": p3[name]["f_score"],
                f"{ours} F": ours_f,
            }
        )
    summary = (payload or {}).get("summary", {})
    for key in (*PAPER_KEYS, "factored_bernoulli"):  # the paper's three models, then ours beyond the paper
        s, name = summary.get(key), PAPER_KEYS.get(key)
        if name is None and not s:
            continue
        rows.append(
            {
                "model": name or "Factored, plain Bernoulli (beyond the paper)",
                "paper bpd": f"{p3[name]['bpd']} ± {p3[name]['bpd_std']}" if name else None,
                f"{ours} bpd": _over_seeds(s, "bpd", 4),
                "paper F": f"{p3[name]['f_score']} ± {p3[name]['f_score_std']}" if name else None,
                f"{ours} F": _over_seeds(s, "f_score", 3),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def results_payload(result: dict[str, Any]) -> dict[str, Any]:
    """What ``drive.json`` holds besides the configuration: the paper's numbers and :func:`json_payload`."""
    return {"paper": paper_numbers("winkler_table3_drive"), **json_payload(result)}


def probabilistic_table(result: dict[str, Any]):
    """Beyond Table 3, one row per model (and the graders): ECE, distance of the single-sample PR
    cloud to the second grader's, GED to the two annotations and sample diversity, vessel width at
    the max-F threshold, AUROC of the uncertainty for the errors."""
    import pandas as pd

    rows = []
    for name in result["summary"]:
        s = result["summary"][name]
        rows.append(
            {
                "model": LABELS[name],
                "ECE": s["calibration"]["ece"],
                "PR energy distance to 2nd grader": (s.get("pr_distance_to_human") or {}).get("energy_distance"),
                "same, samples from the scored likelihood": (s.get("pr_distance_to_human_scored") or {}).get(
                    "energy_distance"
                ),
                "GED to the 2 graders": (s.get("ged") or {}).get("ged"),
                "sample diversity (1 - IoU)": s.get("sample_diversity"),
                "vessel width [px]": s["vessel_width"],
                "uncertainty AUROC for errors": s["uncertainty_auroc"],
            }
        )
    h = result.get("human")
    if h and "vessel_width_annotation" in h:
        rows.append({"model": "1st grader (annotation)", "vessel width [px]": h["vessel_width_annotation"]})
        rows.append(
            {
                "model": "2nd grader",
                "vessel width [px]": h["vessel_width_second_observer"],
                "sample diversity (1 - IoU)": h["ged_between_annotators"],
            }
        )
    return pd.DataFrame(rows).set_index("model")


# --- figures ------------------------------------------------------------------------------------


def plot_pr(result: dict[str, Any], paper: dict[str, Any] | None = None):
    """Fig 5: PR curves with their maximal F-score (left), per-sample precision/recall (right)."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5))
    for f in np.arange(0.1, 1.0, 0.1):  # iso-F lines
        r = np.linspace(f / (2 - f) + 1e-9, 1, 100)
        a.plot(r, f * r / (2 * r - f), color="green", alpha=0.15, lw=0.8)
    for name, runs in result["runs"].items():
        r0 = runs[0]
        a.plot(
            r0["pr_curve"]["recall"],
            r0["pr_curve"]["precision"],
            color=COLOURS[name],
            label=f"{LABELS[name]} (F={r0['max_f_score']:.3f})",
        )
        pts = np.array(r0["sample_precision_recall"])
        b.scatter(pts[:, 1], pts[:, 0], s=8, alpha=0.5, color=COLOURS[name], label=LABELS[name])
        if r0.get("sample_precision_recall_scored"):  # a factored model sampled from the likelihood it is scored with
            pts = np.array(r0["sample_precision_recall_scored"])
            label = f"{LABELS[name]}, sampled from its scored likelihood"
            b.scatter(pts[:, 1], pts[:, 0], s=10, alpha=0.5, facecolors="none", edgecolors=COLOURS[name], label=label)
    if result.get("human"):
        h = result["human"]
        a.scatter(
            [h["recall"]], [h["precision"]], color="black", marker="*", s=80, label=f"Human (F={h['f_score']:.3f})"
        )
        pts = np.array(h["sample_precision_recall"])
        b.scatter(pts[:, 1], pts[:, 0], s=14, color="black", marker="x", label="Human")
    scattered = [
        np.asarray(r[0][k])
        for r in result["runs"].values()
        for k in ("sample_precision_recall", "sample_precision_recall_scored")
        if r[0].get(k)
    ]
    if result.get("human"):
        scattered.append(np.asarray(result["human"]["sample_precision_recall"]))
    for ax, title, low in (
        (a, "PR curves (soft maps), max F-score", 0.4),  # the paper's view of the curves
        (b, "precision/recall of single samples", _axis_floor(scattered, 0.4)),  # every sample's point in view
    ):
        ax.set_xlim(low, 1)
        ax.set_ylim(low, 1)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def _axis_floor(points: list[np.ndarray], default: float) -> float:
    """The lower limit of a [low, 1] precision/recall axis that shows every point: ``default`` unless a point lies
    below it, then a 0.05 step under the lowest point."""
    finite = [v for p in points for v in np.asarray(p, dtype=float).ravel() if np.isfinite(v)]
    lowest = min(finite, default=default)
    return default if lowest >= default else max(0.0, math.floor(lowest / 0.05) * 0.05 - 0.05)


def threshold_statistics(result: dict[str, Any], test: DriveSplit, threshold: float) -> dict[str, dict[str, float]]:
    """Per model, the soft map (mean of samples; the factored model's p) thresholded at ``threshold``
    over the first run's test images, inside the field of view: precision, recall, F-score, the
    fraction of FOV pixels called vessel, and the mean soft value.  Aggregates only: no pixels."""
    if not math.isfinite(threshold) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    out = {}
    for name, runs in result["runs"].items():
        soft = runs[0]["soft_maps"]
        n = soft.shape[0]
        y, mask = test.labels[:n], test.masks[:n]
        p, r = precision_recall((soft >= threshold).float(), y, mask)
        inside = mask > 0.5
        out[name] = {
            "precision": p,
            "recall": r,
            "f_score": f_score(p, r),
            "vessel_fraction": float((soft >= threshold)[inside].float().mean()),
            "mean_soft_value": float(soft[inside].mean()),
        }
    return out


def threshold_view(result: dict[str, Any], test: DriveSplit, threshold: float):
    """The threshold slider's figure: every model's PR curve with its operating point at
    ``threshold`` (left) and that point's precision, recall, F-score and vessel fraction (right)."""
    import matplotlib.pyplot as plt

    stats = threshold_statistics(result, test, threshold)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    for name, runs in result["runs"].items():
        pr = runs[0]["pr_curve"]
        a.plot(pr["recall"], pr["precision"], color=COLOURS[name], label=LABELS[name])
        a.scatter(
            [stats[name]["recall"]], [stats[name]["precision"]], color=COLOURS[name], s=60, edgecolor="black", zorder=3
        )
    low = _axis_floor([np.array([[v["precision"], v["recall"]] for v in stats.values()])], 0.3)
    a.set_xlim(low, 1)
    a.set_ylim(low, 1)
    a.set_xlabel("recall")
    a.set_ylabel("precision")
    a.set_title(f"operating point at threshold {threshold:.2f}")
    a.legend(fontsize=8, loc="lower left")
    keys = ("precision", "recall", "f_score", "vessel_fraction")
    width = 0.8 / len(stats)
    for k, (name, st) in enumerate(stats.items()):
        xs = np.arange(len(keys)) + k * width
        b.bar(xs, [st[q] for q in keys], width, color=COLOURS[name], label=LABELS[name])
        for x_, q in zip(xs, keys):
            b.text(x_, st[q] + 0.01, f"{st[q]:.2f}", ha="center", fontsize=7)
    b.set_xticks(
        np.arange(len(keys)) + 0.4 - width / 2, ["precision", "recall", "F-score", "vessel fraction\n(of the FOV)"]
    )
    b.set_ylim(0, 1.1)
    b.set_title("soft map thresholded (test images, inside the FOV)")
    fig.tight_layout()
    return fig


def plot_soft_map_crops(result: dict[str, Any], test: DriveSplit, image: int = 0, box=(200, 200, 160)):
    """Fig 4: a crop of the image, ground truth and each model's soft map. DRIVE-derived: keep private."""
    import matplotlib.pyplot as plt

    i, j, s = box
    names = list(result["runs"])
    fig, axes = plt.subplots(1, 2 + len(names), figsize=(3 * (2 + len(names)), 3.2))
    axes[0].imshow(test.images[image, :, i : i + s, j : j + s].permute(1, 2, 0))
    axes[0].set_title("image")
    axes[1].imshow(test.labels[image, 0, i : i + s, j : j + s], cmap="gray")
    axes[1].set_title("1st observer")
    for ax, name in zip(axes[2:], names):
        ax.imshow(result["runs"][name][0]["soft_maps"][image, 0, i : i + s, j : j + s], cmap="gray", vmin=0, vmax=1)
        ax.set_title(LABELS[name] + (" (mean of samples)" if name != "factored" else " (p)"), fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(command_line("drive", config, run))
