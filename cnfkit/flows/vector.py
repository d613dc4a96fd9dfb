"""A (conditional) flow on vectors for low-dimensional problems: :class:`VectorFlow`."""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import Tensor, nn

from .. import nets
from ..bijections import ActNorm, AffineCoupling, Bijection, FlowSequential, Permutation, actnorm_init_guard
from ..priors import DiagonalGaussian
from .base import Flow, check_context, check_data, check_num_samples

__all__ = ["VectorFlow", "VectorPrior"]


class VectorPrior(Protocol):
    """What :class:`VectorFlow` needs of its base distribution (an ``nn.Module``, e.g.
    :class:`~cnfkit.priors.DiagonalGaussian`)."""

    def log_prob(self, z: Tensor, context: Tensor | None, /) -> Tensor: ...

    def sample(
        self, shape: tuple[int, ...], context: Tensor | None, temperature: float, generator: torch.Generator | None, /
    ) -> Tensor: ...


class VectorFlow(Flow):
    """A (conditional) flow on vectors ``y in R^D`` for low-dimensional problems.

    ``blocks`` blocks of ``[coupling(first half | second half, h), coupling(second | first, h),
    fixed random permutation]`` (Ardizzone et al.'s GLOW coupling block; each coupling network is an
    MLP with ``layers`` fully connected layers of ``hidden`` units), ``h = conditioner(context)``.  The
    prior is a diagonal Gaussian, conditioned on ``h`` when ``context_dim > 0`` and ``conditional_prior``
    is set; any module with ``log_prob(z, context)`` and ``sample(shape, context, temperature, generator)``
    can replace it.  With ``condition_couplings=False`` only the prior sees ``h`` (Xiao et al.'s
    construction, where the label enters through the prior over the flow's output).
    """

    def __init__(
        self,
        dim: int,
        context_dim: int = 0,
        conditioner: nn.Module | None = None,
        *,
        blocks: int = 8,
        hidden: int = 512,
        layers: int = 3,
        scale: str = "soft_exp",
        actnorm: bool = False,
        conditional_prior: bool = True,
        prior: VectorPrior | None = None,
        condition_couplings: bool = True,
        permutation_seed: int = 0,
    ) -> None:
        super().__init__()
        if dim < 2 or blocks < 1 or context_dim < 0:
            raise ValueError(f"need dim >= 2, blocks >= 1, context_dim >= 0; got {dim}, {blocks}, {context_dim}")
        self.dim = dim
        self.context_dim = context_dim
        self.conditioner = conditioner
        net_fn = nets.net_factory("mlp", hidden=hidden, layers=layers)
        g = torch.Generator().manual_seed(permutation_seed)
        self._couplings_use_context = context_dim > 0 and condition_couplings
        coupling_context_dim = context_dim if self._couplings_use_context else 0
        mods: list[Bijection] = []
        for _ in range(blocks):
            if actnorm:
                mods.append(ActNorm(dim))
            mods.append(AffineCoupling(dim, net_fn, coupling_context_dim, parity=0, scale=scale))
            mods.append(AffineCoupling(dim, net_fn, coupling_context_dim, parity=1, scale=scale))
            mods.append(Permutation(dim, generator=g))
        self.transform = FlowSequential(*mods)
        self.prior: VectorPrior
        if prior is not None:
            self.prior = prior
        elif context_dim > 0 and conditional_prior:
            self.prior = DiagonalGaussian(dim, context_dim, net_fn)
        else:
            self.prior = DiagonalGaussian(dim)
        self._prior_uses_context = context_dim > 0 and (prior is not None or conditional_prior)

    def features(self, context: Tensor | None, batch: int | None = None) -> Tensor | None:
        """``conditioner(context)`` (or the context itself), checked: ``[B, context_dim]``; ``None`` when
        unconditional."""
        if self.context_dim == 0:
            return None
        if context is None:
            raise ValueError("this flow is conditional: pass the context (conditioning input)")
        check_context(context, self)
        h = self.conditioner(context) if self.conditioner is not None else context
        return self._check_features(h, batch)

    def _check_features(self, h: Tensor, batch: int | None) -> Tensor:
        if h.dim() != 2 or h.shape[1] != self.context_dim or (batch is not None and h.shape[0] != batch):
            raise ValueError(
                f"context features must have shape [{batch or 'B'}, {self.context_dim}], got {tuple(h.shape)}"
            )
        return h

    @torch.no_grad()
    def conditioning(self, context: Tensor) -> Tensor | None:
        """The conditioner's output for ``context``, to reuse across samples (``features=``)."""
        return self.features(context)

    def event_shape(self, context: Tensor | None = None, size: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """``(dim,)``."""
        if size not in (None, ()):
            raise ValueError(f"a vector flow's samples have no spatial size, got size={size}")
        return (self.dim,)

    def _check_y(self, y: Tensor) -> None:
        if y.dim() != 2 or y.shape[1] != self.dim:
            raise ValueError(f"y must have shape [B, {self.dim}], got {tuple(y.shape)}")
        check_data(y, self)

    def encode(self, y: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The bijection ``y -> z`` and its ``log|det dz/dy|`` per sample."""
        self._check_y(y)
        with actnorm_init_guard(self):
            return self.transform(y, self._coupling_features(context, y.shape[0]))

    def decode(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Inverse of :meth:`encode` (the context is needed only when the couplings are conditional)."""
        return self.transform.inverse(z, self._coupling_features(context, z.shape[0]))[0]

    def _coupling_features(self, context: Tensor | None, batch: int) -> Tensor | None:
        return self.features(context, batch) if self._couplings_use_context else None

    def _coupling_context(self, h: Tensor | None) -> Tensor | None:
        return h if self._couplings_use_context else None

    def _log_prob(self, y: Tensor, context: Tensor | None) -> Tensor:
        h = self.features(context, y.shape[0])
        z, logdet = self.transform(y, self._coupling_context(h))
        return self.prior.log_prob(z, h if self._prior_uses_context else None) + logdet

    def _sample(
        self,
        context: Tensor | None,
        *,
        num_samples: int | None,
        temperature: float,
        generator: torch.Generator | None,
        size: tuple[int, ...] | None = None,
        features: Tensor | None = None,
        with_log_prob: bool = False,
    ) -> tuple[Tensor, Tensor]:
        self.event_shape(None, size)
        num_samples = check_num_samples(num_samples)
        if context is None and num_samples is None and features is None:
            raise ValueError("pass a context (conditional) or num_samples (unconditional)")
        if features is not None:
            h: Tensor | None = self._check_features(features, None)
        else:
            h = self.features(context, None if context is None else context.shape[0])
        rows = h.shape[0] if h is not None else None if context is None else context.shape[0]
        if rows is None:
            batch = cast(int, num_samples)
        else:  # one sample per row of the context, or num_samples per row (the conditioner runs once per row)
            batch = rows * (num_samples or 1)
            if h is not None and num_samples is not None:
                h = h.repeat_interleave(num_samples, dim=0)
        prior_h = h if self._prior_uses_context else None
        z = self.prior.sample((batch, self.dim), prior_h, temperature, generator)
        y, ld = self.transform.inverse(z, self._coupling_context(h))
        return y, (self.prior.log_prob(z, prior_h) - ld if with_log_prob else y.new_zeros(batch))
