"""Metrics: bits per dimension; precision, recall, PR curves and F-scores for binary segmentation.

For continuous data, ``bpd = -log p(y) / (D ln 2)``.  For 8-bit (or any ``n_bins``-level) data
that was dequantized and scaled to the unit interval, ``v = (y + u) / n_bins``, the density of the
scaled variable relates to the unscaled one by ``log p(y + u) = log p(v) - D log n_bins``; by
Jensen this is a lower bound on the discrete ``log P(y)`` (Theis et al. 2016), so

    bpd = -(log p(v) - D log n_bins) / (D ln 2)

is an upper bound on the discrete model's code length.  A uniform density on ``[0, 1)^D`` gives
``log2(n_bins)`` bits per dimension (8 for 8-bit data).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "binned_counts",
    "binned_max_f_score",
    "bits_per_dim",
    "f_score",
    "max_f_score",
    "pr_curve",
    "precision_recall",
    "psnr",
    "rgb_to_y",
    "sr_psnr_ssim",
    "ssim",
]


def bits_per_dim(log_prob: Tensor, num_dims: int, n_bins: int | None = None) -> Tensor:
    """Convert a log-likelihood in nats (per sample) to bits per dimension.

    Args:
        log_prob: ``log p`` in nats, any shape (e.g. ``[B]``).
        num_dims: dimensions ``D`` per sample.
        n_bins: if given, ``log_prob`` is the density of data scaled to the unit interval by
            ``1 / n_bins``, and the change-of-scale term ``D log n_bins`` is included.
    """
    if num_dims <= 0:
        raise ValueError(f"num_dims must be positive, got {num_dims}")
    if n_bins is not None and n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    log_prob = torch.as_tensor(log_prob)
    if n_bins is not None:
        log_prob = log_prob - num_dims * math.log(n_bins)
    return -log_prob / (num_dims * math.log(2.0))


# --- binary segmentation (DRIVE) -----------------------------------------------------------
# Evaluated inside a field-of-view mask and pooled over all pixels of all test images (the
# dataset-level PR curve and maximal F-score of Maninis et al. 2016, which Winkler et al. follow).


def _flatten_masked(scores: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if scores.shape != target.shape or (mask is not None and mask.shape != target.shape):
        raise ValueError(
            f"scores {tuple(scores.shape)}, target {tuple(target.shape)}"
            + (f" and mask {tuple(mask.shape)}" if mask is not None else "")
            + " must have the same shape"
        )
    if ((target != 0) & (target != 1)).any():
        raise ValueError("target must be binary (0 or 1)")
    if mask is not None:
        if ((mask != 0) & (mask != 1)).any():
            raise ValueError("mask must be binary (0 or 1)")
        keep = mask.bool()
        scores, target = scores[keep], target[keep]
    if not torch.isfinite(scores.float()).all():
        raise ValueError("scores contain NaN or Inf values")
    return scores.reshape(-1), target.reshape(-1).bool()


def precision_recall(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[float, float]:
    """Precision and recall of a binary prediction (inside ``mask``); 0/0 counts as 0."""
    p, t = _flatten_masked(pred, target, mask)
    if ((p != 0) & (p != 1)).any():
        raise ValueError("pred must be binary (0 or 1); threshold soft maps first or use pr_curve")
    p = p.bool()
    tp = (p & t).sum().item()
    n_pred, n_true = p.sum().item(), t.sum().item()
    return (tp / n_pred if n_pred else 0.0), (tp / n_true if n_true else 0.0)


def f_score(precision: float | Tensor, recall: float | Tensor):
    """Harmonic mean ``2PR / (P + R)`` (0 where both are 0)."""
    p, r = torch.as_tensor(precision, dtype=torch.float64), torch.as_tensor(recall, dtype=torch.float64)
    out = torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-300), torch.zeros_like(p))
    return out.item() if out.dim() == 0 else out


def pr_curve(scores: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Precision and recall of ``scores >= threshold`` for every distinct score, highest first.

    Returns ``(precision, recall, thresholds)`` as float64 tensors.  Exact: one point per distinct
    value, computed from cumulative true/false positives after a single sort.
    """
    s, t = _flatten_masked(scores, target, mask)
    if t.sum() == 0:
        raise ValueError("target has no positive pixels inside the mask: recall is undefined")
    order = torch.argsort(s.double(), descending=True, stable=True)
    s, t = s[order].double(), t[order].double()
    tp = torch.cumsum(t, 0)
    fp = torch.cumsum(1 - t, 0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last index of each run of equal scores
    tp, fp, thr = tp[last], fp[last], s[last]
    return tp / (tp + fp), tp / t.sum(), thr


def max_f_score(scores: Tensor, target: Tensor, mask: Tensor | None = None) -> tuple[float, float]:
    """The maximal F-score along the PR curve and the threshold where it is reached."""
    precision, recall, thr = pr_curve(scores, target, mask)
    f = f_score(precision, recall)
    i = int(torch.argmax(f))
    return float(f[i]), float(thr[i])


def binned_counts(scores: Tensor, target: Tensor, mask: Tensor | None = None, bins: int = 1000) -> np.ndarray:
    """Positives and negatives per score bin, ``[2, bins]``, for scores in [0, 1] (bin ``k`` holds
    ``k/bins <= s < (k+1)/bins``, 1 in the last): what :func:`binned_max_f_score` pools over images."""
    s, t = _flatten_masked(scores, target, mask)
    s = s.double()
    if ((s < 0) | (s > 1)).any():
        raise ValueError("binned counts need scores in [0, 1]")
    k = torch.clamp(torch.floor(s * bins + 1e-9).long(), max=bins - 1)  # 1e-9: k/bins lands in bin k
    pos = torch.bincount(k, weights=t.double(), minlength=bins)
    neg = torch.bincount(k, weights=1 - t.double(), minlength=bins)
    return torch.stack([pos, neg]).numpy()


def binned_max_f_score(counts: np.ndarray) -> np.ndarray:
    """Maximal F-score of ``scores >= k/bins`` over the thresholds ``k``, from :func:`binned_counts`
    ``[..., 2, bins]`` (summed over images first: the pooled F-score).  Equals :func:`max_f_score` when the
    scores lie on the bin grid (e.g. the mean of ``n`` binary samples with ``bins`` a multiple of ``n``)."""
    c = np.asarray(counts, dtype=np.float64)
    tp = np.cumsum(c[..., 0, ::-1], axis=-1)  # threshold at the top bin first
    fp = np.cumsum(c[..., 1, ::-1], axis=-1)
    total = tp[..., -1:]
    if (total <= 0).any():
        raise ValueError("no positive pixels: recall is undefined")
    with np.errstate(invalid="ignore", divide="ignore"):
        p, r = tp / (tp + fp), tp / total
        f = np.where(tp > 0, 2 * p * r / (p + r), 0.0)
    return f.max(axis=-1)


# --- super-resolution: PSNR and SSIM --------------------------------------------------------
# The convention of the SR literature (and of the numbers Winkler et al. cite): images in [0, 255],
# the luma channel Y of ITU-R BT.601 YCbCr (MATLAB's rgb2ycbcr), a border of `scale` pixels cropped,
# SSIM with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over the valid region
# (Wang et al. 2004).


def rgb_to_y(img: Tensor) -> Tensor:
    """Luma of ``[..., 3, H, W]`` RGB in [0, 255]: ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``."""
    if img.shape[-3] != 3:
        raise ValueError(f"expected RGB images [..., 3, H, W], got {tuple(img.shape)}")
    r, g, b = img.double().unbind(-3)
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _crop(t: Tensor, border: int) -> Tensor:
    """Remove ``border`` pixels on every side; the border must leave at least one pixel."""
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be a non-negative int, got {border!r}")
    h, w = t.shape[-2:]
    if 2 * border >= min(h, w):
        raise ValueError(f"border {border} leaves nothing of a {h}x{w} image (it must be < half the smaller side)")
    return t[..., border : h - border, border : w - border] if border else t


def psnr(a: Tensor, b: Tensor, data_range: float = 255.0, border: int = 0) -> Tensor:
    """Peak signal-to-noise ratio per image (all dims but the first two from the end are batch)."""
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"psnr needs images [..., H, W], got shape {tuple(a.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("psnr: the images contain NaN or Inf values")
    a, b = _crop(a.double(), border), _crop(b.double(), border)
    mse = ((a - b) ** 2).reshape(*a.shape[:-2], -1).mean(-1)
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: Tensor, b: Tensor, data_range: float = 255.0, border: int = 0) -> Tensor:
    """Mean SSIM per single-channel image ``[..., H, W]`` (Gaussian window, valid region)."""
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"ssim needs images [..., H, W], got shape {tuple(a.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("ssim: the images contain NaN or Inf values")
    import torch.nn.functional as F

    a, b = _crop(a.double(), border), _crop(b.double(), border)
    lead = a.shape[:-2]
    a, b = a.reshape(-1, 1, *a.shape[-2:]), b.reshape(-1, 1, *b.shape[-2:])
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {tuple(a.shape[-2:])}")
    w = _gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    saa = F.conv2d(a * a, w) - mu_a**2
    sbb = F.conv2d(b * b, w) - mu_b**2
    sab = F.conv2d(a * b, w) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))
    return s.mean(dim=(1, 2, 3)).reshape(lead)


def sr_psnr_ssim(sr: Tensor, hr: Tensor, scale: int = 2) -> tuple[Tensor, Tensor]:
    """PSNR and SSIM of RGB ``[B, 3, H, W]`` images in [0, 255] on Y, cropping ``scale`` pixels."""
    y_sr, y_hr = rgb_to_y(sr), rgb_to_y(hr)
    return psnr(y_sr, y_hr, 255.0, scale), ssim(y_sr, y_hr, 255.0, scale)
