"""Likelihood metrics: bits per dimension.

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

import torch
from torch import Tensor

__all__ = ["bits_per_dim"]


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
