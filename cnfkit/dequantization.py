"""Dequantization: continuous flows for discrete data (Theis et al. 2016; Ho et al. 2019; Winkler et al. 2019).

A discrete ``y`` is modelled through a continuous ``v`` and a quantizer ``P(y | v) = 1[v in B(y)]``,
so ``P(y) = integral over B(y) of p(v) dv``.  For any dequantizer ``q(v | y)`` supported inside the
bin ``B(y)``, Jensen's inequality gives the variational bound (Winkler et al. eq. 5)

    log P(y) >= E_{q(v|y)} [ log p(v) - log q(v | y) ].

Every dequantizer here returns a sample ``v`` with its exact ``log q(v | y)`` (``forward``) and
evaluates ``log q(v | y)`` at a given ``v`` (``log_prob``; ``-inf`` outside the bin):

* :class:`UniformDequantizer`: ``v = (y + u) / n_bins``, ``u ~ U[0, 1)^D``; bins are the cells of a
  grid, ``log q = D log n_bins``.
* :class:`VariationalDequantizer` (Flow++): ``u = sigmoid(s)``, ``s ~ q(s | y, context)`` a conditional flow.
* :class:`BinaryDequantizer` (Winkler et al. sec. 3.2, eq. 8): for ``y in {0, 1}^D``, half-infinite
  noise ``v = 0.5 + sign(y - 0.5) * (softplus(s) + eps)``, ``s ~ q(s | y, context)``.  The bins are the
  half-lines ``v > 0.5`` (y = 1) and ``v < 0.5`` (y = 0): like the flow's density ``p(v)``, they cover
  all of R^D, so the bound can be tight, which a bounded (uniform) dequantizer cannot achieve
  for a flow whose density is positive everywhere.

The noise flow ``q(s | y, context)`` is any module with ``rsample(context) -> (s, log q(s))`` and
``log_prob(s, context)`` whose context is ``[y, context]`` concatenated on the channel axis: a
:class:`~cnfkit.flows.VectorFlow` for vectors, or for images a single-level
:class:`~cnfkit.flows.ConditionalFlow` with :class:`SqueezeContext` as conditioner (lossless
space-to-depth of ``[y, context]`` to the flow's first level, the paper's "CNF at a single scale").
A noise flow is only ever run in the sampling direction, so it must not rely on ActNorm's
data-dependent initialisation (which happens on the first *forward* call): build it with
``actnorm=False``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .flows import Flow
from .utils import rand

__all__ = ["BinaryDequantizer", "SqueezeContext", "UniformDequantizer", "VariationalDequantizer", "check_binary"]


def _per_sample(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def check_binary(y: Tensor, name: str = "y") -> None:
    """Raise a clear error unless ``y`` holds only 0s and 1s."""
    if not torch.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    if ((y != 0) & (y != 1)).any():
        bad = y[(y != 0) & (y != 1)].flatten()[:5].tolist()
        raise ValueError(f"{name} must be binary (0 or 1), found values such as {bad}")


def _check_levels(y: Tensor, n_bins: int) -> None:
    if not torch.isfinite(y).all():
        raise ValueError("y contains NaN or Inf values")
    if (y != torch.round(y)).any() or y.min() < 0 or y.max() > n_bins - 1:
        raise ValueError(f"y must hold integers in [0, {n_bins - 1}], got range [{y.min().item()}, {y.max().item()}]")


class SqueezeContext(nn.Module):
    """Conditioner for an image noise flow: space-to-depth of its context ``[y, features]`` (no information is lost)."""

    def forward(self, context: Tensor) -> Tensor:
        b, c, h, w = context.shape
        if h % 2 or w % 2:
            raise ValueError(f"SqueezeContext needs even spatial sizes, got {h}x{w}")
        return context.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


class UniformDequantizer(nn.Module):
    """``v = (y + u) / n_bins`` with ``u ~ U[0, 1)^D`` (Theis et al. 2016); ``log q = D log n_bins``.

    With ``n_bins=256`` this is the super-resolution experiment's dequantization of 8-bit pixels;
    ``bits_per_dim(log p(v) - log q, D)`` is then the usual bpd.  For binary data use ``n_bins=2``
    (the paper's "CNF Uniform" uses the unscaled ``v = y + u``: the same up to the constant
    ``D log 2``, which :attr:`scale` = False gives).
    """

    def __init__(self, n_bins: int = 256, scale: bool = True) -> None:
        super().__init__()
        if n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {n_bins}")
        self.n_bins, self.scale = n_bins, scale
        self._log_jac = math.log(n_bins) if scale else 0.0

    def forward(self, y: Tensor, context: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        """``(v, log q(v | y))``; the noise from ``generator`` (a list: one per row; ``None``: torch's global RNG)."""
        _check_levels(y, self.n_bins)
        dtype = torch.get_default_dtype() if not y.is_floating_point() else y.dtype
        noise = (
            torch.rand_like(y, dtype=dtype)
            if generator is None
            else rand(y.shape, generator=generator, device=y.device, dtype=dtype)
        )
        v = y + noise
        if self.scale:
            v = v / self.n_bins
        return v, torch.full((y.shape[0],), y[0].numel() * self._log_jac, dtype=v.dtype, device=v.device)

    def log_prob(self, v: Tensor, y: Tensor, context: Tensor | None = None) -> Tensor:
        u = v * self.n_bins - y if self.scale else v - y
        inside = ((u >= 0) & (u < 1)).reshape(u.shape[0], -1).all(dim=1)
        lq = torch.full((v.shape[0],), v[0].numel() * self._log_jac, dtype=v.dtype, device=v.device)
        return torch.where(inside, lq, torch.full_like(lq, -math.inf))


class _FlowDequantizer(nn.Module):
    noise_flow: Flow

    def __init__(self, noise_flow: Flow) -> None:
        super().__init__()
        self.noise_flow = noise_flow

    @staticmethod
    def _noise_context(y: Tensor, context: Tensor | None) -> Tensor:
        """The noise flow's context: ``[y, context]`` on the channel axis."""
        y = y.to(torch.get_default_dtype()) if not y.is_floating_point() else y
        return y if context is None else torch.cat([y, context.to(y.dtype)], dim=1)

    def _rsample(self, y: Tensor, context: Tensor | None, generator=None) -> tuple[Tensor, Tensor]:
        # the noise has y's shape: its spatial size is y's (none for vectors)
        return self.noise_flow.rsample(self._noise_context(y, context), size=tuple(y.shape[2:]), generator=generator)


class VariationalDequantizer(_FlowDequantizer):
    """Flow++ (Ho et al. 2019): ``v = (y + sigmoid(s)) / n_bins``, ``s ~ q(s | y, context)``."""

    def __init__(self, noise_flow: Flow, n_bins: int = 256) -> None:
        super().__init__(noise_flow)
        self.n_bins = n_bins

    def forward(self, y: Tensor, context: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        _check_levels(y, self.n_bins)
        s, log_qs = self._rsample(y, context, generator)
        v = (y + torch.sigmoid(s)) / self.n_bins
        # log|dv/ds| = log sigmoid(s) + log(1 - sigmoid(s)) - log n_bins
        log_det = _per_sample(-F.softplus(-s) - F.softplus(s)) - y[0].numel() * math.log(self.n_bins)
        return v, log_qs - log_det

    def log_prob(self, v: Tensor, y: Tensor, context: Tensor | None = None) -> Tensor:
        u = v * self.n_bins - y
        inside = ((u > 0) & (u < 1)).reshape(u.shape[0], -1).all(dim=1)
        u = u.clamp(1e-12, 1 - 1e-12)
        s = torch.log(u) - torch.log1p(-u)
        log_det = _per_sample(-F.softplus(-s) - F.softplus(s)) - y[0].numel() * math.log(self.n_bins)
        lq = self.noise_flow.log_prob(s, self._noise_context(y, context)) - log_det
        return torch.where(inside, lq, torch.full_like(lq, -math.inf))


class BinaryDequantizer(_FlowDequantizer):
    """Winkler et al.'s binary variational dequantizer with half-infinite noise (eq. 8).

    ``v = 0.5 + sign(y - 0.5) * (softplus(s) + eps)``, ``s ~ q(s | y, context)``;
    ``log q(v | y) = log q(s | y, context) - sum log sigmoid(s)`` (the derivative of softplus is the
    sigmoid).  ``eps`` keeps ``v`` strictly on its side of 0.5 even when softplus underflows.
    """

    def __init__(self, noise_flow: Flow, eps: float = 1e-6) -> None:
        super().__init__(noise_flow)
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = eps

    def forward(self, y: Tensor, context: Tensor | None = None, generator=None) -> tuple[Tensor, Tensor]:
        check_binary(y)
        s, log_qs = self._rsample(y, context, generator)
        sign = 2 * y.to(s.dtype) - 1
        v = 0.5 + sign * (F.softplus(s) + self.eps)
        return v, log_qs + _per_sample(F.softplus(-s))  # - sum log sigmoid(s)

    def log_prob(self, v: Tensor, y: Tensor, context: Tensor | None = None) -> Tensor:
        check_binary(y)
        sign = 2 * y.to(v.dtype) - 1
        t = sign * (v - 0.5) - self.eps  # = softplus(s) > 0 inside the bin
        inside = (t > 0).reshape(t.shape[0], -1).all(dim=1)
        t = t.clamp_min(1e-30)
        s = t + torch.log(-torch.expm1(-t))  # softplus^{-1}(t) = log(exp(t) - 1), stably
        lq = self.noise_flow.log_prob(s, self._noise_context(y, context)) + _per_sample(F.softplus(-s))
        return torch.where(inside, lq, torch.full_like(lq, -math.inf))
