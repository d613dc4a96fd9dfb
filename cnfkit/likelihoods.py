"""Factorized likelihoods for the baselines.

:func:`discretized_logistic_log_prob` is the per-subpixel likelihood of Winkler et al.'s factorized
super-resolution baseline (Kingma et al. 2016; Salimans et al. 2017): ``P(x = k)`` is the mass a
logistic ``(mean, scale)`` puts on the bin of level ``k``, with the first and last bins extended to
infinity so that the probabilities of the ``n_bins`` levels sum to one.  Levels are mapped to
``[-1, 1]``: level ``k`` sits at ``2k / (n_bins - 1) - 1`` and its bin has half-width ``1 / (n_bins - 1)``.

The middle bins use the exact and stable identity
``log(sigmoid(a) - sigmoid(b)) = a - softplus(a) - softplus(b) + log(-expm1(b - a))`` for ``a > b``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["discretized_logistic_log_prob", "discretized_logistic_mode", "levels_to_unit"]


def levels_to_unit(x: Tensor, n_bins: int = 256) -> Tensor:
    """Integer levels ``0 .. n_bins - 1`` to bin centres in ``[-1, 1]``."""
    return 2.0 * x.double() / (n_bins - 1) - 1.0 if x.dtype == torch.float64 else 2.0 * x.float() / (n_bins - 1) - 1.0


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor, n_bins: int = 256) -> Tensor:
    """Elementwise ``log P(x | mean, scale)`` for integer levels ``x`` (any shape; broadcasts)."""
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    if ((x < 0) | (x > n_bins - 1) | (x != torch.round(x))).any():
        raise ValueError(f"x must hold integer levels in [0, {n_bins - 1}]")
    centre = levels_to_unit(x.to(mean.dtype), n_bins)
    half = 1.0 / (n_bins - 1)
    inv_s = torch.exp(-log_scale)
    a = (centre + half - mean) * inv_s  # upper edge
    b = (centre - half - mean) * inv_s  # lower edge
    log_cdf_a = -F.softplus(-a)  # log sigmoid(a): mass below the upper edge (first bin)
    log_sf_b = -F.softplus(b)  # log(1 - sigmoid(b)): mass above the lower edge (last bin)
    mid = a - F.softplus(a) - F.softplus(b) + torch.log(-torch.expm1(b - a))
    first, last = x == 0, x == n_bins - 1
    return torch.where(first, log_cdf_a, torch.where(last, log_sf_b, mid))


def discretized_logistic_mode(mean: Tensor, log_scale: Tensor, n_bins: int = 256) -> Tensor:
    """The most probable level of every element: the exact argmax of :func:`discretized_logistic_log_prob`.

    A logistic density is unimodal and symmetric, so among the interior bins (all of one width)
    the bin containing the mean has the most mass; the two edge bins extend to infinity and can
    hold more (e.g. a mean on level 1 with a small scale puts more mass on level 0).  The argmax is
    therefore one of three candidates, the bin of the mean, level 0 and level ``n_bins - 1``: they
    are scored exactly and the most probable wins (the lowest level on ties, as ``argmax``).
    """
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    mean, log_scale = torch.broadcast_tensors(mean, log_scale)
    nearest = torch.round((mean.clamp(-1, 1) + 1) * (n_bins - 1) / 2)
    candidates = torch.stack([torch.zeros_like(nearest), nearest, torch.full_like(nearest, n_bins - 1)])
    lp = discretized_logistic_log_prob(candidates, mean[None], log_scale[None], n_bins)
    best = torch.argmax(lp, dim=0, keepdim=True)  # first maximum: candidates are in increasing level order
    return torch.gather(candidates, 0, best)[0]
