"""Probabilistic evaluation beyond the papers' point estimates.

The papers argue that a conditional flow learns a calibrated distribution ``p(y | x)``; these
functions measure that the way later work does:

* calibration: :func:`binary_calibration` (per-pixel probability maps: reliability diagram and
  expected calibration error, ECE) and :func:`classification_calibration` (a classifier's
  confidence; plus the negative log-likelihood of the true label);
* :func:`generalized_energy_distance` between a model's samples and a set of annotations, with
  ``1 - IoU`` as the distance (Kohl et al. 2018, the Probabilistic U-Net), and
  :func:`sample_diversity`;
* :func:`point_cloud_distance`: how far a cloud of (precision, recall) points is from another
  (Winkler et al.'s Fig 5 claim that CNF samples overlap the human grader);
* :func:`vessel_width`: area over skeleton length of a binary vessel map (the over-dilation claim);
* :func:`auroc`: area under the ROC curve of a score for a binary event (e.g. per-pixel uncertainty
  for predicting a misclassified pixel), exact with ties (Mann-Whitney);
* super-resolution: :func:`lr_psnr` (NTIRE's LR-consistency of a sample) and :func:`pixel_diversity`.

Every function is checked against a case with a known answer in ``tests/test_probabilistic.py``.

Conventions (each a choice among equally common ones, stated so that numbers can be compared):

* reliability bins are left-closed, ``[k/n, (k+1)/n)``, the last one closed at 1; ECE weights a bin by its
  share of the pixels;
* :func:`pixel_diversity` is the per-pixel standard deviation with ``ddof = 1`` (unbiased variance over
  the ``n`` samples), averaged over pixels;
* :func:`lr_psnr` compares the downscaled prediction with the LR input in floating point, without
  rounding either to uint8 first, and caps an exact match at 100 dB;
* :func:`generalized_energy_distance` is the V-statistic (every ordered pair, self-pairs included, as in
  Kohl et al.'s implementation): with ``n = 5`` samples its diversity term is ``(n - 1)/n = 0.8`` of
  :func:`sample_diversity`'s mean over distinct pairs;
* :func:`vessel_width` measures length along the skeleton with diagonal steps of sqrt(2); DRIVE maps are
  evaluated inside the field of view (FOV) mask everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .data.imresize import imresize
from .dequantization import check_binary
from .metrics import psnr

__all__ = [
    "auroc",
    "binary_calibration",
    "classification_calibration",
    "decision_uncertainty",
    "generalized_energy_distance",
    "iou_distance",
    "lr_psnr",
    "mode_mass_error",
    "pixel_diversity",
    "plot_reliability",
    "point_cloud_distance",
    "sample_diversity",
    "skeleton_length",
    "vessel_width",
]


def _reliability(conf: Tensor, correct: Tensor, n_bins: int) -> dict:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if conf.numel() == 0:
        raise ValueError("nothing to calibrate: no predictions")
    conf, correct = conf.double().reshape(-1), correct.double().reshape(-1)
    idx = torch.clamp((conf * n_bins).long(), max=n_bins - 1)  # bins [k/n, (k+1)/n), the last one closed
    count = torch.bincount(idx, minlength=n_bins).double()
    mean_conf = torch.bincount(idx, weights=conf, minlength=n_bins) / count.clamp_min(1)
    freq = torch.bincount(idx, weights=correct, minlength=n_bins) / count.clamp_min(1)
    ece = float(((count / conf.numel()) * (freq - mean_conf).abs()).sum())
    keep = count > 0
    return {
        "ece": ece,
        "bins": {
            "confidence": mean_conf[keep].tolist(),
            "frequency": freq[keep].tolist(),
            "count": count[keep].long().tolist(),
        },
    }


def binary_calibration(probs: Tensor, target: Tensor, mask: Tensor | None = None, n_bins: int = 15) -> dict:
    """Reliability of per-pixel probabilities ``P(y = 1)``: pixels binned by predicted probability; per
    bin the mean prediction against the observed frequency of 1s; ECE = ``sum_b (n_b / N) * abs(freq_b - conf_b)``.

    A perfectly calibrated predictor has ECE ~ 0 (up to sampling noise); predicting 0.5 everywhere for
    a 10% foreground has ECE 0.4."""
    if probs.shape != target.shape or (mask is not None and mask.shape != target.shape):
        raise ValueError(f"probs {tuple(probs.shape)}, target {tuple(target.shape)} and mask must have the same shape")
    if not torch.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("probs must be finite probabilities in [0, 1]")
    check_binary(target, "target")
    if mask is not None:
        check_binary(mask, "mask")
        keep = mask.bool()
        probs, target = probs[keep], target[keep]
    return _reliability(probs, target, n_bins)


def classification_calibration(probs: Tensor, labels: Tensor, n_bins: int = 15) -> dict:
    """Calibration of a classifier's class probabilities ``[N, K]``: ECE of the top-class confidence
    against accuracy (Guo et al. 2017), the reliability bins, accuracy and the mean negative
    log-likelihood of the true label (nats)."""
    if probs.dim() != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"probs must be [N, K] and labels [N], got {tuple(probs.shape)} and {tuple(labels.shape)}")
    if not torch.isfinite(probs).all() or (probs < 0).any() or ((probs.sum(1) - 1).abs() > 1e-4).any():
        raise ValueError("each row of probs must be a probability vector (non-negative, summing to 1)")
    if labels.dtype.is_floating_point or (labels < 0).any() or (labels >= probs.shape[1]).any():
        raise ValueError(f"labels must be integers in [0, {probs.shape[1] - 1}]")
    conf, pred = probs.max(dim=1)
    out = _reliability(conf, (pred == labels), n_bins)
    p_true = probs.double().gather(1, labels[:, None].long())[:, 0]
    out["accuracy"] = float((pred == labels).double().mean())
    out["nll"] = float(-torch.log(p_true.clamp_min(1e-300)).mean())
    return out


def iou_distance(a: Tensor, b: Tensor) -> Tensor:
    """``1 - IoU`` of binary maps ``a`` and ``b`` of the same shape ``[n, *S]`` (one distance per row);
    two empty maps have distance 0 (as in Kohl et al. 2018)."""
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(
            f"iou_distance needs two batches of maps [n, *S] of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.bool().flatten(1), b.bool().flatten(1)
    inter, union = (a & b).sum(1).double(), (a | b).sum(1).double()
    return torch.where(union > 0, 1 - inter / union.clamp_min(1), torch.zeros_like(union))


def _pairwise(xs: Tensor, ys: Tensor) -> Tensor:
    """``[len(xs), len(ys)]`` matrix of 1 - IoU between maps ``xs [n, *S]`` and ``ys [m, *S]``."""
    xs, ys = xs.bool().flatten(1), ys.bool().flatten(1)
    inter = xs.double() @ ys.double().T
    union = xs.sum(1, dtype=torch.float64)[:, None] + ys.sum(1, dtype=torch.float64)[None, :] - inter
    return torch.where(union > 0, 1 - inter / union.clamp_min(1), torch.zeros_like(union))


def _mean_offdiag(d: Tensor) -> float:
    n = d.shape[0]
    if n < 2:
        raise ValueError("a diversity term needs at least 2 maps")
    return float((d.sum() - d.diagonal().sum()) / (n * (n - 1)))


def generalized_energy_distance(samples: Tensor, annotations: Tensor, mask: Tensor | None = None) -> dict:
    """Squared generalized energy distance ``2 E d(S, Y) - E d(S, S') - E d(Y, Y')`` with
    ``d = 1 - IoU`` between binary maps: ``samples [n, *S]`` of a model, ``annotations [m, *S]``
    (e.g. the two DRIVE graders); ``mask`` restricts the maps (e.g. the field of view).

    Returns ``ged``, ``cross`` (E d(S, Y)), ``diversity`` (E d(S, S')) and ``annotator_diversity``
    (E d(Y, Y')).  Every expectation is the mean over all ordered pairs, self-pairs included (the
    estimator of Kohl et al.'s implementation), so identical sample and annotation sets give ged = 0
    exactly; :func:`sample_diversity` is the mean over distinct pairs."""
    if samples.shape[1:] != annotations.shape[1:]:
        raise ValueError(
            f"samples {tuple(samples.shape)} and annotations {tuple(annotations.shape)} must have the same map shape"
        )
    check_binary(samples, "samples")
    check_binary(annotations, "annotations")
    if mask is not None:
        if mask.shape != samples.shape[1:]:
            raise ValueError(f"mask must have the map shape {tuple(samples.shape[1:])}, got {tuple(mask.shape)}")
        keep = mask.bool().reshape(-1)
        samples, annotations = (
            samples.reshape(samples.shape[0], -1)[:, keep],
            annotations.reshape(annotations.shape[0], -1)[:, keep],
        )
    cross = float(_pairwise(samples, annotations).mean())
    div_s, div_y = float(_pairwise(samples, samples).mean()), float(_pairwise(annotations, annotations).mean())
    return {"ged": 2 * cross - div_s - div_y, "cross": cross, "diversity": div_s, "annotator_diversity": div_y}


def sample_diversity(samples: Tensor, mask: Tensor | None = None) -> float:
    """Mean ``1 - IoU`` over distinct pairs of binary samples ``[n, *S]`` (the unbiased mean: self-pairs
    excluded), inside ``mask`` (``[*S]``, e.g. the field of view) when given."""
    check_binary(samples, "samples")
    if mask is not None:
        if mask.shape != samples.shape[1:]:
            raise ValueError(f"mask must have the map shape {tuple(samples.shape[1:])}, got {tuple(mask.shape)}")
        check_binary(mask, "mask")
        samples = samples.reshape(samples.shape[0], -1)[:, mask.bool().reshape(-1)]
    return _mean_offdiag(_pairwise(samples, samples))


def point_cloud_distance(a, b) -> dict:
    """Distances between two clouds of points ``[n, d]`` and ``[m, d]`` (e.g. (precision, recall) of
    single samples and of the second human grader): the energy distance
    ``2 E|A - B| - E|A - A'| - E|B - B'|`` (0 iff the distributions agree) and the mean distance of
    each point of ``a`` to its nearest point of ``b``."""
    a, b = torch.as_tensor(np.asarray(a, dtype=np.float64)), torch.as_tensor(np.asarray(b, dtype=np.float64))
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise ValueError(f"point clouds must be non-empty [n, d] and [m, d], got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("point clouds contain NaN or Inf values: a distance between them is undefined")
    ab, aa, bb = torch.cdist(a, b), torch.cdist(a, a), torch.cdist(b, b)
    energy = 2 * ab.mean() - aa.mean() - bb.mean()
    return {"energy_distance": float(energy), "mean_nearest": float(ab.min(dim=1).values.mean())}


def skeleton_length(skeleton: np.ndarray) -> float:
    """Length in pixels of a one-pixel-wide skeleton: its 8-connected links, 1 along a row or column and
    sqrt(2) diagonally (a diagonal link is dropped where the two pixels also meet through a shared 4-neighbour,
    so a corner is not counted twice), plus 1 per connected piece (a single pixel has length 1, a straight
    run of ``L`` pixels along a row length ``L``)."""
    from skimage.measure import label

    s = np.asarray(skeleton, dtype=bool)
    straight = (s[:, :-1] & s[:, 1:]).sum() + (s[:-1, :] & s[1:, :]).sum()
    down = s[:-1, :-1] & s[1:, 1:] & ~s[:-1, 1:] & ~s[1:, :-1]
    up = s[1:, :-1] & s[:-1, 1:] & ~s[:-1, :-1] & ~s[1:, 1:]
    pieces = int(label(s, connectivity=2).max())
    return float(straight + math.sqrt(2) * (down.sum() + up.sum()) + pieces)


def vessel_width(mask: Tensor) -> float:
    """Mean width of the structures in a binary map ``[H, W]``: area / skeleton length (pixels), the
    length measured along the skeleton (:func:`skeleton_length`: diagonal steps count sqrt(2)).

    A bar ``w`` pixels wide and ``L >> w`` long has width ~ ``w`` at any angle."""
    from skimage.morphology import skeletonize

    if mask.dim() != 2:
        raise ValueError(f"vessel_width needs one map [H, W], got {tuple(mask.shape)}")
    check_binary(mask, "mask")
    m = mask.bool().cpu().numpy()
    skeleton = skeletonize(m)
    if not skeleton.any():
        raise ValueError("the map has no structures (empty skeleton): width undefined")
    return float(m.sum() / skeleton_length(skeleton))


def decision_uncertainty(probs: Tensor, threshold: float) -> Tensor:
    """Per-pixel uncertainty of the decision ``probs >= threshold``: ``1 - |p - t| / max(t, 1 - t)``, 1 at the
    threshold and 0 at the far end of [0, 1].  The variance ``p(1 - p)`` peaks at 0.5 whatever the threshold, so
    for a model whose decision threshold is not 0.5 it ranks the wrong pixels as uncertain."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not torch.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise ValueError("probs must be finite probabilities in [0, 1]")
    return 1 - (probs - threshold).abs() / max(threshold, 1 - threshold)


def auroc(scores: Tensor, events: Tensor, mask: Tensor | None = None) -> float:
    """Area under the ROC curve of ``scores`` for the binary ``events`` (inside ``mask``): the
    probability that a random event scores higher than a random non-event, ties counting 1/2."""
    if scores.shape != events.shape or (mask is not None and mask.shape != events.shape):
        raise ValueError("scores, events and mask must have the same shape")
    check_binary(events, "events")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or Inf values")
    if mask is not None:
        check_binary(mask, "mask")
        keep = mask.bool()
        scores, events = scores[keep], events[keep]
    s, e = scores.reshape(-1).double(), events.reshape(-1).bool()
    n_pos, n_neg = int(e.sum()), int((~e).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both events and non-events")
    # average ranks (ties share their mean rank): Mann-Whitney U
    order = torch.argsort(s, stable=True)
    sorted_s = s[order]
    ranks = torch.empty_like(s)
    _uniq, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each run of ties
    ranks[order] = mean_rank[inverse]
    u = ranks[e].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def lr_psnr(hr: Tensor, lr: Tensor, scale: int = 2, max_db: float = 100.0) -> Tensor:
    """LR-consistency (NTIRE 2021 "Learning the SR space"): PSNR between ``imresize(hr, 1/scale)`` (the
    same MATLAB bicubic that made the LR input) and ``lr``, RGB in [0, 255], per image ``[B]``.
    A perfect match (the true HR image against its own LR) has infinite PSNR: capped at ``max_db``."""
    if hr.dim() != 4 or lr.dim() != 4 or hr.shape[:2] != lr.shape[:2]:
        raise ValueError(
            f"hr [B, C, H, W] and lr [B, C, h, w] must match in batch and channels, got {tuple(hr.shape)} and "
            f"{tuple(lr.shape)}"
        )
    if hr.shape[-2] != scale * lr.shape[-2] or hr.shape[-1] != scale * lr.shape[-1]:
        raise ValueError(f"hr {tuple(hr.shape[-2:])} must be {scale}x lr {tuple(lr.shape[-2:])}")
    down = imresize(hr.double(), 1.0 / scale)
    b = hr.shape[0]
    return psnr(down.reshape(b, -1, down.shape[-1]), lr.double().reshape(b, -1, lr.shape[-1])).clamp(
        max=max_db
    )  # over C, H, W


def pixel_diversity(samples: Tensor) -> float:
    """Mean over pixels of the standard deviation across ``samples [n, ...]`` of one input (n >= 2)."""
    if samples.shape[0] < 2:
        raise ValueError("diversity needs at least 2 samples")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or Inf values: their diversity is undefined")
    return float(samples.double().std(dim=0, unbiased=True).mean())


def mode_mass_error(samples: Tensor, centers: Tensor, true_mass: Tensor) -> dict:
    """How a method's posterior samples ``[n, d]`` spread over the modes ``centers [K, d]`` (each sample
    counted for its nearest centre) against the true posterior mass per mode ``true_mass [K]``:
    the mass per mode, the total variation ``0.5 * (sum |mass - true| + lost)`` and the largest error, where ``lost``
    is the fraction of non-finite samples (``non_finite``: they belong to no mode)."""
    if (
        samples.dim() != 2
        or centers.dim() != 2
        or samples.shape[1] != centers.shape[1]
        or true_mass.shape != (centers.shape[0],)
    ):
        raise ValueError("samples [n, d], centers [K, d] and true_mass [K] needed")
    if abs(float(true_mass.sum()) - 1) > 1e-6:
        raise ValueError("true_mass must sum to 1")
    finite = torch.isfinite(samples).all(dim=1)  # a NaN / Inf sample lands in no mode (it was counted for mode 0)
    nearest = torch.cdist(samples[finite].double(), centers.double()).argmin(dim=1)
    mass = torch.bincount(nearest, minlength=centers.shape[0]).double() / max(1, samples.shape[0])
    err = (mass - true_mass.double()).abs()
    lost = float(1 - finite.double().mean()) if samples.shape[0] else 0.0
    return {
        "mass": mass.tolist(),
        "total_variation": float(0.5 * (err.sum() + lost)),  # the lost mass counts as misplaced
        "max_error": float(err.max()),
        "non_finite": lost,
    }


def plot_reliability(calibrations: dict[str, dict], title: str = "reliability diagram"):
    """Reliability diagrams (observed frequency against mean predicted probability per bin, marker size
    ~ bin count) for several models' :func:`binary_calibration` / :func:`classification_calibration`
    results, ECE in the legend.  A statistic of the predictions: no input data is shown."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    for name, cal in calibrations.items():
        b = cal["bins"]
        sizes = 10 + 60 * np.sqrt(np.asarray(b["count"]) / max(1, max(b["count"])))
        ax.plot(b["confidence"], b["frequency"], marker="o", ms=3, lw=1, label=f"{name} (ECE {cal['ece']:.3f})")
        ax.scatter(b["confidence"], b["frequency"], s=sizes, alpha=0.3)
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
