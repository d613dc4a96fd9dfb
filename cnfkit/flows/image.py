"""The multi-scale conditional Glow of Winkler et al. (2019): :class:`ConditionalFlow`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import nets
from ..bijections import FlowSequential, Squeeze, actnorm_init_guard, flow_step
from ..nets import NetFactory, Shared
from ..priors import DiagonalGaussian, SplitPrior
from .base import Flow, check_context, check_data, check_num_samples

__all__ = ["ConditionalFlow", "resize_features"]


def resize_features(h: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize a feature map to ``size``: average pooling down (anti-aliased), bilinear up."""
    if tuple(h.shape[-2:]) == tuple(size):
        return h
    if h.shape[-2] >= size[0] and h.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(h, size)
    return F.interpolate(h, size=size, mode="bilinear", align_corners=False)


class ConditionalFlow(Flow):
    """Multi-scale conditional Glow (Winkler et al. 2019, sec. 3.1 and 5; Kingma & Dhariwal 2018).

    ``levels`` (L) levels, each ``Squeeze -> steps (K) x [ActNorm -> 1x1 conv -> coupling]``;
    after every level but the last, a conditional split prior factors out half the channels; the
    remaining latent gets the conditional top prior.  Context features ``conditioner(context)``
    (or the context itself when there is no conditioner) are resized to each level's resolution.  A
    conditioner may instead return one feature map per level (a list of L tensors).

    Args:
        in_channels: channels of ``y``.
        levels, steps: L and K.
        hidden: width of the coupling networks.
        context_channels: channels of the context features (0: unconditional flow); an int, or
            one int per level when the conditioner returns per-level features.
        conditioner: module ``context -> features``; ``None`` uses the context as the features.
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
        context_channels: int | Sequence[int] = 0,
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
            raise ValueError(
                f"levels, steps, hidden and in_channels must be positive, got {levels}, {steps}, {hidden}, "
                f"{in_channels}"
            )
        ctx = [context_channels] * levels if isinstance(context_channels, int) else list(context_channels)
        if len(ctx) != levels or any(c < 0 for c in ctx):
            raise ValueError(f"context_channels must be a non-negative int or {levels} of them, got {context_channels}")
        self.in_channels = in_channels
        self.num_levels = levels
        self.context_channels = ctx
        self.conditioner = conditioner
        net_fn = nets.net_factory(coupling_net, hidden=hidden)
        prior_net = prior_net or partial(nets.ZeroConv2d, kernel_size=3)

        self.levels = nn.ModuleList()
        self.splits = nn.ModuleList()
        self.latent_channels: list[int] = []
        c = in_channels
        for lvl in range(levels):
            c *= 4
            steps_ = [
                flow_step(c, net_fn, ctx[lvl], coupling=coupling, lu=lu, actnorm=actnorm, scale=scale)
                for _ in range(steps)
            ]
            self.levels.append(FlowSequential(Squeeze(), *steps_))
            if lvl < levels - 1:
                split = SplitPrior(c, ctx[lvl], prior_net)
                self.splits.append(split)
                self.latent_channels.append(split.out_channels)
                c = split.keep_channels
        self.latent_channels.append(c)
        self.top_prior = DiagonalGaussian(c, ctx[-1], prior_net)

    # --- context features --------------------------------------------------------------------
    def _raw_features(self, context: Tensor | None) -> list[Tensor] | None:
        """The conditioner's output as one feature map per level (None for an unconditional flow)."""
        if not any(self.context_channels):
            return None
        if context is None:
            raise ValueError("this flow is conditional: pass the context (conditioning input)")
        check_context(context, self)
        h = self.conditioner(context) if self.conditioner is not None else context
        hs = list(h) if isinstance(h, (list, tuple)) else [h] * self.num_levels
        if len(hs) != self.num_levels:
            raise ValueError(f"the conditioner returned {len(hs)} feature maps for {self.num_levels} levels")
        return hs

    def _resize_features(
        self, hs: list[Tensor] | None, size: tuple[int, int], batch: int | None, repeats: int = 1
    ) -> list:
        """Features at each level's resolution; with ``repeats > 1`` each row serves ``repeats``
        consecutive rows of the latent, wrapped in :class:`~cnfkit.nets.Shared`."""
        if hs is None:
            return [None] * self.num_levels
        out: list = []
        for lvl, (f, c) in enumerate(zip(hs, self.context_channels)):
            if f.dim() != 4 or f.shape[1] != c or (batch is not None and f.shape[0] != batch):
                raise ValueError(
                    f"context features for level {lvl + 1} must have shape [{batch if batch else 'B'}, {c}, h, w], "
                    f"got {tuple(f.shape)}"
                )
            s = 2 ** (lvl + 1)
            h = resize_features(f, (size[0] // s, size[1] // s))
            out.append(Shared(h, repeats) if repeats > 1 else h)
        return out

    def features(self, context: Tensor | None, size: tuple[int, int], batch: int | None = None) -> list[Tensor | None]:
        """Context features for each level of an output of spatial ``size``."""
        return self._resize_features(self._raw_features(context), size, batch)

    @torch.no_grad()
    def conditioning(self, context: Tensor) -> list[Tensor] | None:
        """The conditioner's output for ``context`` (one map per level), to reuse across samples."""
        return self._raw_features(context)

    def event_shape(self, context: Tensor | None = None, size: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """``(C, H, W)``: ``size`` or, by default, twice the spatial size of the first context feature map."""
        if size is None:
            if context is None:
                raise ValueError("an unconditional flow needs size=(H, W)")
            hs = self.conditioning(context)
            if hs is None:
                raise ValueError("this flow has no conditioner: give size=(H, W)")
            size = (2 * hs[0].shape[-2], 2 * hs[0].shape[-1])
        return (self.in_channels, *size)

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

    def encode(self, y: Tensor, context: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """The bijection ``y -> (z_1, ..., z_L)`` and its ``log|det dz/dy|`` per sample."""
        self._check_y(y)
        with actnorm_init_guard(self):
            zs, logdet, _ = self._run(y, self.features(context, (y.shape[-2], y.shape[-1]), y.shape[0]))
        return zs, logdet

    def decode(
        self,
        zs: Sequence[Tensor | None],
        context: Tensor | None = None,
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
        hs = self.features(context, size, top.shape[0])
        return self._decode(top, list(zs[:-1]), hs, temperature, generator)[0]

    def _decode(self, z, z_outs, hs, temperature, generator, with_log_prob: bool = False) -> tuple[Tensor, Tensor]:
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
        return z, log_prob

    # --- the distribution --------------------------------------------------------------------
    def _log_prob(self, y: Tensor, context: Tensor | None) -> Tensor:
        _, logdet, log_prior = self._run(y, self.features(context, (y.shape[-2], y.shape[-1]), y.shape[0]))
        return log_prior + logdet

    def _sample(
        self,
        context: Tensor | None,
        *,
        num_samples: int | None,
        temperature: float,
        generator: torch.Generator | None,
        size: tuple[int, ...] | None = None,
        features: list[Tensor] | None = None,
        with_log_prob: bool = False,
    ) -> tuple[Tensor, Tensor]:
        num_samples = check_num_samples(num_samples)
        if context is None and num_samples is None and features is None:
            raise ValueError("pass a context (conditional) or num_samples (unconditional)")
        raw = self._raw_features(context) if features is None else list(features)  # the conditioner runs once
        repeats = 1
        if raw is not None:
            if not raw or raw[0].dim() < 1 or raw[0].shape[0] == 0:
                raise ValueError("the context features are empty: nothing to sample for")
            repeats = num_samples or 1  # n samples per row: the features (and their share of each network) once per row
            batch = raw[0].shape[0] * repeats
        elif context is not None:
            batch = context.shape[0] * (num_samples or 1)
        else:
            batch = cast(int, num_samples)
        hw = self._sample_size(size, raw)
        hs = self._resize_features(raw, hw, None if raw is None else raw[0].shape[0], repeats)
        m = 2**self.num_levels
        top_shape = (batch, self.latent_channels[-1], hw[0] // m, hw[1] // m)
        top = self.top_prior.sample(top_shape, hs[-1], temperature, generator)
        return self._decode(top, [None] * (self.num_levels - 1), hs, temperature, generator, with_log_prob)

    def _sample_size(self, size: tuple[int, ...] | None, raw: list[Tensor] | None) -> tuple[int, int]:
        """``size`` checked, or twice the spatial size of the first context feature map."""
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
        return (size[0], size[1])
