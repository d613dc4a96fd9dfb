"""The base of every cnfkit flow: a conditional distribution ``p(y | context)`` built on a bijection.

A :class:`Flow` is an ``nn.Module`` whose ``conditioner`` maps the ``context`` (the conditioning
input, e.g. a low-resolution image) to features that feed its bijection and priors (nflows' split of
responsibilities).  Calling the model, ``flow(y, context)``, returns ``log p(y | context)`` in nats
per sample; that is what a training loop (and DistributedDataParallel) wraps.  The surface is the
same for every flow:

* ``log_prob(y, context)``, ``bits_per_dim(y, context, n_bins)``;
* ``sample(context, *, num_samples, temperature, generator)`` and
  ``rsample(context, *, num_samples, generator) -> (y, log_prob)``;
* ``given(context) -> FlowDistribution`` (a :class:`torch.distributions.Distribution`);
* ``encode`` / ``decode``: the underlying bijection ``y <-> z``, for tests and analysis.

A subclass implements the checks of ``y`` (:meth:`Flow._check_y`), the density
(:meth:`Flow._log_prob`), one sampler (:meth:`Flow._sample`) and the event shape
(:meth:`Flow.event_shape`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..bijections import actnorm_init_guard
from ..metrics import bits_per_dim

if TYPE_CHECKING:
    from .distribution import FlowDistribution

__all__ = ["Flow", "check_context", "check_data", "check_num_samples", "check_temperature"]


def _check_finite(t: Tensor, name: str) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf values")


def _param_dtype(module: nn.Module) -> torch.dtype | None:
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def check_data(y: Tensor, module: nn.Module, name: str = "y") -> None:
    """The checks every flow applies to the data it scores: floating point (not forgotten
    dequantization), the model's dtype, a non-empty batch, finite values."""
    if not y.is_floating_point():
        raise TypeError(
            f"{name} has integer dtype {y.dtype}: a flow models continuous values. Dequantize discrete data "
            "first, e.g. cnfkit.dequantization.UniformDequantizer(n_bins=256)(y) for 8-bit images "
            "(v = (y + u) / 256), or use a model that dequantizes itself (SRFlow, SegmentationCNF)"
        )
    dtype = _param_dtype(module)
    if dtype is not None and y.dtype != dtype and not torch.is_autocast_enabled(y.device.type):
        raise TypeError(
            f"{name} is {y.dtype} but the model's parameters are {dtype}: convert one of them "
            f"(e.g. {name}.to({dtype}) or model.to({y.dtype}))"
        )
    if y.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(y.shape)}): nothing to score")
    _check_finite(y, name)


def check_context(context: Tensor, module: nn.Module) -> None:
    """The checks of a conditioning input: a non-empty batch, the model's dtype, finite values."""
    if context.dim() == 0 or context.shape[0] == 0:
        raise ValueError(f"the context (conditioning input) is an empty batch (shape {tuple(context.shape)})")
    dtype = _param_dtype(module)
    autocast = torch.is_autocast_enabled(context.device.type)
    if context.is_floating_point() and dtype is not None and context.dtype != dtype and not autocast:
        raise TypeError(
            f"the context (conditioning input) is {context.dtype} but the model's parameters are {dtype}: "
            f"convert one of them (e.g. context.to({dtype}) or model.to({context.dtype}))"
        )
    _check_finite(context, "context (conditioning input)")


def check_temperature(temperature: float) -> float:
    """A sampling temperature must be a finite number >= 0."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a number, got {temperature!r}") from None
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    return t


def check_num_samples(num_samples: int | None) -> int | None:
    """``None`` or a positive int."""
    if num_samples is None:
        return None
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    return num_samples


class Flow(nn.Module):
    """A conditional normalizing flow ``p(y | context)``: the shared surface (see the module docstring).

    Sampling convention, for every flow: one sample per row of ``context``; with ``num_samples=n``,
    ``n`` samples per row (``B * n`` rows, rows ``i*n ... i*n + n - 1`` drawn for ``context[i]``; the
    conditioner runs once per row); without a context (an unconditional flow), ``num_samples``
    samples.  ``features`` (the output of :meth:`conditioning`) may replace the context, so that the
    conditioner runs once for many calls.
    """

    conditioner: nn.Module | None

    # --- what a subclass implements ---------------------------------------------------------
    def _check_y(self, y: Tensor) -> None:
        raise NotImplementedError

    def _log_prob(self, y: Tensor, context: Tensor | None) -> Tensor:
        """``log p(y | context)`` of a checked ``y``, under the ActNorm guard."""
        raise NotImplementedError

    def _sample(
        self,
        context: Tensor | None,
        *,
        num_samples: int | None,
        temperature: float,
        generator: torch.Generator | None,
        size: tuple[int, ...] | None = None,
        features: Any = None,
        with_log_prob: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """``(y, log p(y | context))`` (log-prob zeros unless ``with_log_prob``): the one sampler.
        ``size``: the spatial dimensions of one ``y`` (its event shape without the channels: ``(H, W)``
        for an image flow, ``()`` for a vector flow); ``None``: decided by the context."""
        raise NotImplementedError

    def event_shape(self, context: Tensor | None = None, size: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The shape of one ``y`` (``size``, or the context, decides an image flow's spatial size)."""
        raise NotImplementedError

    def conditioning(self, context: Tensor) -> Any:
        """The conditioner's output for ``context``, to reuse across calls (``features=``)."""
        raise NotImplementedError

    # --- the distribution --------------------------------------------------------------------
    def log_prob(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(y | context)`` in nats, one value per sample."""
        self._check_y(y)
        with actnorm_init_guard(self):
            return self._log_prob(y, context)

    def forward(self, y: Tensor, context: Tensor | None = None) -> Tensor:
        """``log p(y | context)``: what a training loop (and DDP) calls."""
        return self.log_prob(y, context)

    def bits_per_dim(self, y: Tensor, context: Tensor | None = None, n_bins: int | None = None) -> Tensor:
        """Bits per dimension of ``y``; see :func:`cnfkit.metrics.bits_per_dim` for ``n_bins``."""
        return bits_per_dim(self.log_prob(y, context), y[0].numel(), n_bins)

    @torch.no_grad()
    def sample(
        self,
        context: Tensor | None = None,
        *,
        num_samples: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        size: tuple[int, ...] | None = None,
        features: Any = None,
    ) -> Tensor:
        """Draw ``y ~ p(y | context)`` with the priors' standard deviations scaled by ``temperature``
        (finite, >= 0); see the class docstring for ``num_samples`` and ``features``.  ``size``: the
        spatial size of an image flow's output (by default decided by the context)."""
        t = check_temperature(temperature)
        return self._sample(
            context, num_samples=num_samples, temperature=t, generator=generator, size=size, features=features
        )[0]

    def rsample(
        self,
        context: Tensor | None = None,
        *,
        num_samples: int | None = None,
        generator: torch.Generator | None = None,
        size: tuple[int, ...] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Reparameterised samples and their exact ``log p(y | context)`` (gradients flow through both).

        Used where the flow is itself a variational distribution (e.g. a dequantizer ``q(v | y)``)."""
        return self._sample(
            context, num_samples=num_samples, temperature=1.0, generator=generator, size=size, with_log_prob=True
        )

    def given(
        self,
        context: Tensor | None = None,
        *,
        batch: int | None = None,
        size: tuple[int, ...] | None = None,
        validate_args: bool | None = None,
    ) -> FlowDistribution:
        """``p(y | context)`` as a :class:`torch.distributions.Distribution` (:class:`FlowDistribution`):
        batch shape = rows of ``context``, event shape = one ``y`` (:meth:`event_shape`; ``size``: an image
        flow's ``(H, W)``).  Unconditional flows: ``batch`` rows."""
        from .distribution import FlowDistribution

        if context is None:
            if batch is None:
                raise ValueError("an unconditional flow needs batch=n for given()")
        else:
            check_context(context, self)
            batch = context.shape[0]
        return FlowDistribution(self, context, self.event_shape(context, size), batch, validate_args)
