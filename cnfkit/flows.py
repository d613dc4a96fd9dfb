"""Conditional normalizing flows: the multi-scale image flow and the vector flow.

Both are *distributions* over ``y`` given ``x`` (nflows' split of responsibilities):
``conditioner`` maps ``x`` to features ``h = g(x)`` that feed every coupling, split prior and the
top prior.  Calling the model, ``flow(y, x)``, returns ``log p(y | x)`` in nats per sample; that is
what a training loop (and DistributedDataParallel) wraps.  ``flow.encode`` / ``flow.decode`` expose
the underlying bijection ``y <-> z`` for tests and analysis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import ClassVar, Protocol, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import nets
from .layers import (
    ActNorm,
    AffineCoupling,
    Bijection,
    FlowSequential,
    NetFactory,
    Permutation,
    Squeeze,
    actnorm_init_guard,
    flow_step,
)
from .metrics import bits_per_dim
from .nets import Shared
from .priors import DiagonalGaussian, SplitPrior

__all__ = ["ConditionalFlow", "VectorFlow", "check_data", "check_temperature", "resize_features"]


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
            f"{name} has integer dtype {y.dtype}: a flow models continuous values. Dequantize discrete data first, "
            "e.g. cnfkit.dequantization.UniformDequantizer(n_bins=256)(y) for 8-bit images (v = (y + u) / 256), "
            "or use a model that dequantizes itself (SRFlow, SegmentationCNF)"
        )
    dtype = _param_dtype(module)
    if dtype is not None and y.dtype != dtype and not torch.is_autocast_enabled(y.device.type):
        raise TypeError(
            f"{name} is {y.dtype} but the model's parameters are {dtype}: convert one of them (e.g. {name}.to({dtype}) or model.to({y.dtype}))"
        )
    if y.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(y.shape)}): nothing to score")
    _check_finite(y, name)


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


def _check_x(x: Tensor, module: nn.Module) -> None:
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"the conditioning input x is an empty batch (shape {tuple(x.shape)})")
    dtype = _param_dtype(module)
    if x.is_floating_point() and dtype is not None and x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"the conditioning input x is {x.dtype} but the model's parameters are {dtype}: convert one of them "
            f"(e.g. x.to({dtype}) or model.to({x.dtype}))"
        )
    _check_finite(x, "conditioning input x")


def resize_features(h: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a feature map to ``size``: average pooling down (anti-aliased), bilinear up."""
    if tuple(h.shape[-2:]) == tuple(size):
        return h
    if h.shape[-2] >= size[0] and h.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(h, size)
    return F.interpolate(h, size=size, mode="bilinear", align_corners=False)


class ConditionalFlow(nn.Module):
    """Multi-scale conditional Glow (Winkler et al. 2019, sec. 3.1 and 5; Kingma & Dhariwal 2018).

    ``levels`` (L) levels, each ``Squeeze -> steps (K) x [ActNorm -> 1x1 conv -> coupling]``;
    after every level but the last, a conditional split prior factors out half the channels; the
    remaining latent gets the conditional top prior.  Conditioning features ``h = conditioner(x)``
    (or ``x`` itself when there is no conditioner) are resized to each level's resolution.  A
    conditioner may instead return one feature map per level (a list of L tensors).

    Args:
        in_channels: channels of ``y``.
        levels, steps: L and K.
        hidden: width of the coupling networks.
        cond_channels: channels of the conditioning features (0: unconditional flow); an int, or
            one int per level when the conditioner returns per-level features.
        conditioner: module ``x -> h``; ``None`` uses ``x`` as the features.
        coupling: ``"affine"`` or ``"additive"``.
        coupling_net: ``"glow"`` (Table 6) or ``"instance"`` (Table 7).
        lu: LU-parameterised 1x1 convolutions.
        actnorm: include ActNorm in each step.
        prior_net: ``net_fn`` for the (split) prior networks; default a zero-initialised 3x3 conv.
    """

    def __init__(
        self,
        in_channels: int,
        levels: int = 2,
        steps: int = 8,
        hidden: int = 512,
        cond_channels: int | Sequence[int] = 0,
        conditioner: nn.Module | None = None,
        *,
        coupling: str = "affine",
        coupling_net: str = "glow",
        lu: bool = True,
        actnorm: bool = True,
        scale: str = "sigmoid",
        prior_net: NetFactory | None = None,
    ) -> None:
        super().__init__()
        if levels < 1 or steps < 1 or hidden < 1 or in_channels < 1:
            raise ValueError(f"levels, steps, hidden and in_channels must be positive, got {levels}, {steps}, {hidden}, {in_channels}")
        cond = [cond_channels] * levels if isinstance(cond_channels, int) else list(cond_channels)
        if len(cond) != levels or any(c < 0 for c in cond):
            raise ValueError(f"cond_channels must be a non-negative int or {levels} of them, got {cond_channels}")
        self.in_channels = in_channels
        self.num_levels = levels
        self.cond_channels = cond
        self.conditioner = conditioner
        net_fn = nets.net_factory(coupling_net, hidden=hidden)
        prior_net = prior_net or partial(nets.ZeroConv2d, kernel_size=3)

        self.levels = nn.ModuleList()
        self.splits = nn.ModuleList()
        self.latent_channels: list[int] = []
        c = in_channels
        for lvl in range(levels):
            c *= 4
            steps_ = [flow_step(c, net_fn, cond[lvl], coupling=coupling, lu=lu, actnorm=actnorm, scale=scale) for _ in range(steps)]
            self.levels.append(FlowSequential(Squeeze(), *steps_))
            if lvl < levels - 1:
                split = SplitPrior(c, cond[lvl], prior_net)
                self.splits.append(split)
                self.latent_channels.append(split.out_channels)
                c = split.keep_channels
        self.latent_channels.append(c)
        self.top_prior = DiagonalGaussian(c, cond[-1], prior_net)

    # --- conditioning ------------------------------------------------------------------------
    def _raw_features(self, x: Tensor | None) -> list[Tensor] | None:
        """The conditioner's output as one feature map per level (None for an unconditional flow)."""
        if not any(self.cond_channels):
            return None
        if x is None:
            raise ValueError("this flow is conditional: pass the conditioning input x")
        _check_x(x, self)
        h = self.conditioner(x) if self.conditioner is not None else x
        hs = list(h) if isinstance(h, (list, tuple)) else [h] * self.num_levels
        if len(hs) != self.num_levels:
            raise ValueError(f"the conditioner returned {len(hs)} feature maps for {self.num_levels} levels")
        return hs

    def _resize_features(self, hs: list[Tensor] | None, size: tuple[int, int], batch: int | None, repeats: int = 1) -> list:
        """Features at each level's resolution; with ``repeats > 1`` each row serves ``repeats``
        consecutive rows of the latent, wrapped in :class:`~cnfkit.nets.Shared`."""
        if hs is None:
            return [None] * self.num_levels
        out: list = []
        for lvl, (f, c) in enumerate(zip(hs, self.cond_channels)):
            if f.dim() != 4 or f.shape[1] != c or (batch is not None and f.shape[0] != batch):
                raise ValueError(
                    f"conditioning features for level {lvl + 1} must have shape [{batch if batch else 'B'}, {c}, h, w], got {tuple(f.shape)}"
                )
            s = 2 ** (lvl + 1)
            h = resize_features(f, (size[0] // s, size[1] // s))
            out.append(Shared(h, repeats) if repeats > 1 else h)
        return out

    def features(self, x: Tensor | None, size: tuple[int, int], batch: int | None = None) -> list[Tensor | None]:
        """Conditioning features for each level of an output of spatial ``size``."""
        return self._resize_features(self._raw_features(x), size, batch)

    def _check_y(self, y: Tensor) -> None:
        if y.dim() != 4 or y.shape[1] != self.in_channels:
            raise ValueError(f"y must have shape [B, {self.in_channels}, H, W], got {tuple(y.shape)}")
        m = 2**self.num_levels
        if y.shape[2] % m or y.shape[3] % m:
            raise ValueError(
                f"a flow with {self.num_levels} levels needs H and W divisible by {m}, got {y.shape[2]}x{y.shape[3]};"
                " pad the input (e.g. cnfkit.data.pad_to_multiple)"
            )
        check_data(y, self)

    # --- the bijection -----------------------------------------------------------------------
    def _run(self, y: Tensor, hs: list[Tensor | None]) -> tuple[list[Tensor], Tensor, Tensor]:
        zs: list[Tensor] = []
        logdet = y.new_zeros(y.shape[0])
        log_prior = y.new_zeros(y.shape[0])
        z = y
        for lvl, level in enumerate(self.levels):
            z, ld = level(z, hs[lvl])
            logdet = logdet + ld
            if lvl < self.num_levels - 1:
                z, z_out, lp = self.splits[lvl](z, hs[lvl])
                zs.append(z_out)
                log_prior = log_prior + lp
        zs.append(z)
        log_prior = log_prior + self.top_prior.log_prob(z, hs[-1])
        return zs, logdet, log_prior

    def encode(self, y: Tensor, x: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """The bijection ``y -> (z_1, ..., z_L)`` and its ``log|det dz/dy|`` per sample."""
        self._check_y(y)
        with actnorm_init_guard(self):
            zs, logdet, _ = self._run(y, self.features(x, (y.shape[-2], y.shape[-1]), y.shape[0]))
        return zs, logdet

    def decode(
        self,
        zs: Sequence[Tensor | None],
        x: Tensor | None = None,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Inverse of :meth:`encode`. ``None`` entries of ``zs`` are sampled from the priors."""
        if len(zs) != self.num_levels:
            raise ValueError(f"decode needs {self.num_levels} latents (None to sample), got {len(zs)}")
        top = zs[-1]
        if top is None:
            raise ValueError("decode needs the top latent; use sample() to draw it")
        size = (top.shape[-2] * 2**self.num_levels, top.shape[-1] * 2**self.num_levels)
        return self._decode(top, list(zs[:-1]), self.features(x, size, top.shape[0]), temperature, generator)

    def _decode(self, z, z_outs, hs, temperature, generator, with_log_prob: bool = False):
        log_prob = self.top_prior.log_prob(z, hs[-1]) if with_log_prob else z.new_zeros(z.shape[0])
        for lvl in reversed(range(self.num_levels)):
            if lvl < self.num_levels - 1:
                split = cast(SplitPrior, self.splits[lvl])
                z = split.join(z, hs[lvl], z_outs[lvl], temperature, generator)
                if with_log_prob:
                    log_prob = log_prob + split(z, hs[lvl])[2]
            z, ld = cast(FlowSequential, self.levels[lvl]).inverse(z, hs[lvl])
            if with_log_prob:
                log_prob = log_prob - ld  # log q(y) = log p(z) - log|det dy/dz|
        return (z, log_prob) if with_log_prob else z

    # --- the distribution --------------------------------------------------------------------
    def log_prob(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        """``log p(y | x)`` in nats, one value per sample."""
        self._check_y(y)
        with actnorm_init_guard(self):
            _, logdet, log_prior = self._run(y, self.features(x, (y.shape[-2], y.shape[-1]), y.shape[0]))
        return log_prior + logdet

    forward = log_prob

    def given(
        self, x: Tensor | None = None, *, size: tuple[int, int] | None = None, batch: int | None = None, validate_args: bool | None = None
    ) -> FlowDistribution:
        """``p(y | x)`` as a :class:`torch.distributions.Distribution` (:class:`FlowDistribution`): batch shape = rows
        of ``x``, event shape = one image.  ``size``: the output ``(H, W)``; by default twice the spatial size of the
        first conditioning feature map (computed once here).  Unconditional flows: ``size`` and ``batch`` rows."""
        return _given_conditional(self, x, size=size, batch=batch, validate_args=validate_args)

    def bits_per_dim(self, y: Tensor, x: Tensor | None = None, n_bins: int | None = None) -> Tensor:
        """Bits per dimension of ``y``; see :func:`cnfkit.metrics.bits_per_dim` for ``n_bins``."""
        return bits_per_dim(self.log_prob(y, x), y[0].numel(), n_bins)

    @torch.no_grad()
    def sample(
        self,
        x: Tensor | None = None,
        *,
        num_samples: int | None = None,
        size: tuple[int, int] | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        features: list[Tensor] | None = None,
    ) -> Tensor:
        """Draw ``y ~ p(y | x)`` with the priors' standard deviations scaled by ``temperature``.

        Conditional: one sample per row of ``x``, or with ``num_samples=n`` ``n`` samples per row:
        the output has ``B * n`` rows, rows ``i*n ... i*n + n - 1`` drawn for ``x[i]`` (the
        conditioner runs once per row of ``x``).  Unconditional: ``num_samples`` samples of ``size``.
        The output size is ``size`` or, by default, twice the spatial size of the first conditioning
        feature map (features at the resolution of the first level, as for super-resolution and
        DRIVE).  ``features``, the output of :meth:`conditioning`, replaces ``x``.
        ``temperature`` must be finite and >= 0.
        """
        return self._sample(x, num_samples=num_samples, size=size, temperature=temperature, generator=generator, features=features)

    @torch.no_grad()
    def conditioning(self, x: Tensor) -> list[Tensor] | None:
        """The conditioner's output for ``x`` (one map per level), to reuse across samples."""
        return self._raw_features(x)

    def _sample(self, x, *, num_samples, size, temperature, generator, with_log_prob: bool = False, features=None):
        temperature = check_temperature(temperature)
        num_samples = check_num_samples(num_samples)
        if x is None and num_samples is None and features is None:
            raise ValueError("pass x (conditional) or num_samples (unconditional)")
        raw = self._raw_features(x) if features is None else list(features)  # the conditioner runs once
        repeats = 1
        if raw is not None:
            if not raw or raw[0].dim() < 1 or raw[0].shape[0] == 0:
                raise ValueError("the conditioning features are empty: nothing to sample for")
            repeats = num_samples or 1  # n samples per row: the features (and their share of each network) once per row
            batch = raw[0].shape[0] * repeats
        elif x is not None:
            batch = x.shape[0] * (num_samples or 1)
        else:
            batch = num_samples
        if size is None:
            if raw is None:
                raise ValueError("an unconditional sample needs size=(H, W)")
            size = (2 * raw[0].shape[-2], 2 * raw[0].shape[-1])
        size = tuple(size)
        m = 2**self.num_levels
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"sample size must be two positive ints (H, W), got {size}")
        if size[0] % m or size[1] % m:
            raise ValueError(f"sample size must be divisible by {m}, got {size}")
        hs = self._resize_features(raw, size, None if raw is None else raw[0].shape[0], repeats)
        top_shape = (batch, self.latent_channels[-1], size[0] // m, size[1] // m)
        top = self.top_prior.sample(top_shape, hs[-1], temperature, generator)
        return self._decode(top, [None] * (self.num_levels - 1), hs, temperature, generator, with_log_prob)

    def rsample(
        self,
        x: Tensor | None = None,
        *,
        num_samples: int | None = None,
        size: tuple[int, int] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Reparameterised samples and their exact ``log p(y | x)`` (gradients flow through both).

        Used where the flow is itself a variational distribution (e.g. a dequantizer ``q(v | y)``).
        """
        return self._sample(x, num_samples=num_samples, size=size, temperature=1.0, generator=generator, with_log_prob=True)


class VectorPrior(Protocol):
    """What :class:`VectorFlow` needs of its base distribution (an ``nn.Module``, e.g. :class:`~cnfkit.priors.DiagonalGaussian`)."""

    def log_prob(self, z: Tensor, context: Tensor | None, /) -> Tensor: ...

    def sample(self, shape: tuple[int, ...], context: Tensor | None, temperature: float, generator: torch.Generator | None, /) -> Tensor: ...


class VectorFlow(nn.Module):
    """A (conditional) flow on vectors ``y in R^D`` for low-dimensional problems.

    ``blocks`` blocks of ``[coupling(first half | second half, h), coupling(second | first, h),
    fixed random permutation]`` (Ardizzone et al.'s GLOW coupling block; each coupling network is an
    MLP with ``layers`` fully connected layers of ``hidden`` units).  The prior is a diagonal
    Gaussian, conditioned on ``h`` when ``cond_dim > 0`` and ``conditional_prior`` is set; any module
    with ``log_prob(z, context)`` and ``sample(shape, context, temperature, generator)`` can replace it.
    With ``condition_couplings=False`` only the prior sees ``h`` (Xiao et al.'s construction, where
    the label enters through the prior over the flow's output).
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int = 0,
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
        if dim < 2 or blocks < 1 or cond_dim < 0:
            raise ValueError(f"need dim >= 2, blocks >= 1, cond_dim >= 0; got {dim}, {blocks}, {cond_dim}")
        self.dim = dim
        self.cond_dim = cond_dim
        self.conditioner = conditioner
        net_fn = nets.net_factory("mlp", hidden=hidden, layers=layers)
        g = torch.Generator().manual_seed(permutation_seed)
        self._couplings_use_context = cond_dim > 0 and condition_couplings
        coupling_cond = cond_dim if self._couplings_use_context else 0
        mods: list[Bijection] = []
        for _ in range(blocks):
            if actnorm:
                mods.append(ActNorm(dim))
            mods.append(AffineCoupling(dim, net_fn, coupling_cond, parity=0, scale=scale))
            mods.append(AffineCoupling(dim, net_fn, coupling_cond, parity=1, scale=scale))
            mods.append(Permutation(dim, generator=g))
        self.transform = FlowSequential(*mods)
        self.prior: VectorPrior
        if prior is not None:
            self.prior = prior
        elif cond_dim > 0 and conditional_prior:
            self.prior = DiagonalGaussian(dim, cond_dim, net_fn)
        else:
            self.prior = DiagonalGaussian(dim)
        self._prior_uses_context = cond_dim > 0 and (prior is not None or conditional_prior)

    def features(self, x: Tensor | None, batch: int | None = None) -> Tensor | None:
        if self.cond_dim == 0:
            return None
        if x is None:
            raise ValueError("this flow is conditional: pass the conditioning input x")
        _check_x(x, self)
        h = self.conditioner(x) if self.conditioner is not None else x
        if h.dim() != 2 or h.shape[1] != self.cond_dim or (batch is not None and h.shape[0] != batch):
            raise ValueError(f"conditioning features must have shape [{batch or 'B'}, {self.cond_dim}], got {tuple(h.shape)}")
        return h

    def _check_y(self, y: Tensor) -> None:
        if y.dim() != 2 or y.shape[1] != self.dim:
            raise ValueError(f"y must have shape [B, {self.dim}], got {tuple(y.shape)}")
        check_data(y, self)

    def encode(self, y: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The bijection ``y -> z`` and its ``log|det dz/dy|`` per sample."""
        self._check_y(y)
        with actnorm_init_guard(self):
            return self.transform(y, self._coupling_features(x, y.shape[0]))

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Inverse of :meth:`encode` (``x`` is needed only when the couplings are conditional)."""
        return self.transform.inverse(z, self._coupling_features(x, z.shape[0]))[0]

    def _coupling_features(self, x: Tensor | None, batch: int) -> Tensor | None:
        return self.features(x, batch) if self._couplings_use_context else None

    def _coupling_context(self, h: Tensor | None) -> Tensor | None:
        return h if self._couplings_use_context else None

    def log_prob(self, y: Tensor, x: Tensor | None = None) -> Tensor:
        """``log p(y | x)`` in nats, one value per sample."""
        self._check_y(y)
        with actnorm_init_guard(self):
            h = self.features(x, y.shape[0])
            z, logdet = self.transform(y, self._coupling_context(h))
            return self.prior.log_prob(z, h if self._prior_uses_context else None) + logdet

    forward = log_prob

    def given(self, x: Tensor | None = None, *, batch: int | None = None, validate_args: bool | None = None) -> FlowDistribution:
        """``p(y | x)`` as a :class:`torch.distributions.Distribution` (:class:`FlowDistribution`): batch shape = rows
        of ``x``, event shape = ``(dim,)``.  Unconditional flows: ``batch`` rows."""
        return _given_vector(self, x, batch=batch, validate_args=validate_args)

    @torch.no_grad()
    def sample(
        self,
        x: Tensor | None = None,
        *,
        num_samples: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One sample per row of ``x``; with ``num_samples=n`` and ``x``, ``n`` samples per row
        (``B * n`` rows, rows ``i*n ... i*n + n - 1`` for ``x[i]``); without ``x``, ``num_samples``
        unconditional samples.  ``temperature`` must be finite and >= 0."""
        return self._sample(x, num_samples, check_temperature(temperature), generator)[0]

    def rsample(self, x: Tensor | None = None, *, num_samples: int | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Reparameterised samples and their exact ``log p(y | x)`` (gradients flow through both)."""
        return self._sample(x, num_samples, 1.0, generator)

    def _sample(self, x, num_samples, temperature, generator) -> tuple[Tensor, Tensor]:
        num_samples = check_num_samples(num_samples)
        if x is None and num_samples is None:
            raise ValueError("pass x (conditional) or num_samples (unconditional)")
        h = self.features(x, None if x is None else x.shape[0])
        if x is None:
            batch = num_samples
        else:  # one sample per row of x, or num_samples per row (the conditioner runs once per row)
            batch = x.shape[0] * (num_samples or 1)
            if h is not None and num_samples is not None:
                h = h.repeat_interleave(num_samples, dim=0)
        prior_h = h if self._prior_uses_context else None
        z = self.prior.sample((batch, self.dim), prior_h, temperature, generator)
        y, ld = self.transform.inverse(z, self._coupling_context(h))
        return y, self.prior.log_prob(z, prior_h) - ld


class FlowDistribution(torch.distributions.Distribution):
    """``flow.given(x)``: a conditional flow at fixed conditioning input, as a :class:`torch.distributions.Distribution`.

    ``batch_shape`` is ``(rows of x,)`` and ``event_shape`` the shape of one ``y`` (``(C, H, W)`` for an image flow,
    ``(D,)`` for a vector flow), so cnfkit plugs into code written for torch.distributions (Pyro, sbi-style pipelines):
    ``log_prob(value)`` takes ``sample_shape + batch_shape + event_shape`` and returns ``sample_shape + batch_shape``;
    ``sample`` / ``rsample(sample_shape)`` draw ``sample_shape + batch_shape + event_shape`` (the conditioner runs once
    per row of ``x``; ``rsample`` keeps gradients to the parameters and to ``x``).
    """

    arg_constraints: ClassVar[dict] = {}
    support = torch.distributions.constraints.independent(torch.distributions.constraints.real, 1)
    has_rsample = True

    def __init__(
        self, flow: ConditionalFlow | VectorFlow, x: Tensor | None, event_shape: tuple[int, ...], batch: int, validate_args: bool | None = None
    ) -> None:
        self.flow, self.x = flow, x
        self.support = torch.distributions.constraints.independent(torch.distributions.constraints.real, len(event_shape))
        super().__init__(torch.Size([batch]), torch.Size(event_shape), validate_args=validate_args)

    def _flat_x(self, n: int) -> Tensor | None:
        if self.x is None:
            return None
        return self.x.unsqueeze(0).expand(n, *self.x.shape).reshape(n * self.x.shape[0], *self.x.shape[1:])

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        sample_shape = value.shape[: value.dim() - len(self.event_shape) - 1]
        if value.shape[len(sample_shape) :] != self.batch_shape + self.event_shape:
            raise ValueError(f"value must have shape sample_shape + {tuple(self.batch_shape + self.event_shape)}, got {tuple(value.shape)}")
        n = math.prod(sample_shape)
        flat = value.reshape(n * self.batch_shape[0], *self.event_shape)
        return self.flow.log_prob(flat, self._flat_x(n)).reshape(*sample_shape, *self.batch_shape)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        n = max(1, math.prod(sample_shape))
        b = self.batch_shape[0]
        if isinstance(self.flow, ConditionalFlow):
            size = tuple(self.event_shape[-2:])
            y = (
                self.flow._sample(self.x, num_samples=n, size=size, temperature=1.0, generator=None, with_log_prob=True)[0]
                if self.x is not None
                else self.flow._sample(None, num_samples=n * b, size=size, temperature=1.0, generator=None, with_log_prob=True)[0]
            )
        else:
            y = self.flow._sample(self.x, n if self.x is not None else n * b, 1.0, None)[0]
        # rows come out grouped per row of x (i*n + j): bring the sample dimension first
        y = y.reshape(b, n, *self.event_shape).transpose(0, 1)
        return y.reshape(*sample_shape, b, *self.event_shape)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)


def _given_conditional(
    self: ConditionalFlow,
    x: Tensor | None = None,
    *,
    size: tuple[int, int] | None = None,
    batch: int | None = None,
    validate_args: bool | None = None,
) -> FlowDistribution:
    """``p(y | x)`` as a :class:`FlowDistribution` (see there).  ``size``: the output ``(H, W)``; by default twice the
    spatial size of the first conditioning feature map (computed once here).  Unconditional flows: ``batch`` rows."""
    if x is None:
        if size is None or batch is None:
            raise ValueError("an unconditional flow needs size=(H, W) and batch=n for given()")
    else:
        _check_x(x, self)
        batch = x.shape[0]
        if size is None:
            hs = self.conditioning(x)
            if hs is None:
                raise ValueError("this flow has no conditioner: give size=(H, W)")
            size = (2 * hs[0].shape[-2], 2 * hs[0].shape[-1])
    return FlowDistribution(self, x, (self.in_channels, *size), batch, validate_args)


def _given_vector(self: VectorFlow, x: Tensor | None = None, *, batch: int | None = None, validate_args: bool | None = None) -> FlowDistribution:
    """``p(y | x)`` as a :class:`FlowDistribution` (see there); unconditional flows: ``batch`` rows."""
    if x is not None:
        batch = x.shape[0]
    elif batch is None:
        raise ValueError("an unconditional flow needs batch=n for given()")
    return FlowDistribution(self, x, (self.dim,), batch, validate_args)


__all__ += ["FlowDistribution"]
