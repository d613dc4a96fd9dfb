"""Base densities: the (conditional) diagonal Gaussian prior and the (conditional) split prior.

Winkler et al. (2019), sec. 3.1::

    conditional prior        p(z | x)       = N(z; mu(h), sigma(h)^2)
    conditional split prior  p(z1 | z0, x)  = N(z1; mu(z0, h), sigma(z0, h)^2),   h = g(x)

An unconditional prior is the same code with no context: its mean and log-scale are then learned
constants (initialised to a standard normal).  All log-densities are in nats, summed over every
non-batch dimension (shape ``[B]``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .nets import Concat, Context, NetFactory, PriorContext, Shared, run_with_context
from .utils import randn

__all__ = ["DiagonalGaussian", "SplitPrior", "gaussian_log_prob", "standard_normal_log_prob"]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Sum over non-batch dims of ``log N(z; mean, exp(log_std)^2)``."""
    e = (z - mean) * torch.exp(-log_std)
    lp = -0.5 * (e * e + _LOG_2PI) - log_std
    return lp.reshape(z.shape[0], -1).sum(dim=1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """Sum over non-batch dims of ``log N(z; 0, I)``."""
    return (-0.5 * (z * z + _LOG_2PI)).reshape(z.shape[0], -1).sum(dim=1)


class DiagonalGaussian(nn.Module):
    """``p(z | context) = N(z; mu, diag(sigma^2))`` with ``(mu, log sigma) = net(context)``.

    Args:
        channels: channels (or features) of ``z``.
        context_channels: channels of the context; 0 makes the prior unconditional.
        net_fn: builds the network ``context -> [mu, log sigma]`` (zero-initialised last layer,
            so the prior starts as N(0, I)).  Required when ``context_channels > 0``.
    """

    def __init__(self, channels: int, context_channels: int = 0, net_fn: NetFactory | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.context_channels = context_channels
        self.net: nn.Module | None
        if context_channels > 0:
            if net_fn is None:
                raise ValueError("a conditional DiagonalGaussian needs net_fn")
            self.net = net_fn(context_channels, 2 * channels)
        else:
            self.net = None
            self.bias = nn.Parameter(torch.zeros(2 * channels))

    def params(self, context: PriorContext, like_shape: torch.Size | tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Mean and log-std, broadcastable to a tensor of shape ``like_shape``.

        ``context``: a tensor, a :class:`~cnfkit.nets.Shared` context (one map per group of rows), or
        a :class:`~cnfkit.nets.Concat` that stands for a concatenation on the channel axis."""
        if self.net is None:
            p = self.bias.view((1, -1) + (1,) * (len(like_shape) - 2))
        else:
            if context is None:
                raise ValueError(
                    f"this prior is conditional (context_channels={self.context_channels}) but got no context"
                )
            x, ctx = (context.x, context.context) if isinstance(context, Concat) else (None, context)
            feats = ctx.features if isinstance(ctx, Shared) else ctx
            channels = feats.shape[1] + (0 if x is None else x.shape[1])
            if channels != self.context_channels:
                raise ValueError(
                    f"prior context must have {self.context_channels} channels, got {channels} (shape "
                    f"{tuple(feats.shape)})"
                )
            p = run_with_context(self.net, x, ctx).to(self._dtype())  # float32 log-densities even under autocast
        mean, log_std = p.chunk(2, dim=1)
        return mean, log_std

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def log_prob(self, z: Tensor, context: PriorContext = None) -> Tensor:
        mean, log_std = self.params(context, z.shape)
        return gaussian_log_prob(z, mean, log_std)

    def sample(
        self,
        shape: tuple[int, ...],
        context: PriorContext = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``z = mu + temperature * sigma * eps`` of the given full shape ``[B, C, ...]``."""
        mean, log_std = self.params(context, shape)
        ref = mean if self.net is not None else self.bias
        if self.net is not None and mean.shape[0] != shape[0]:
            raise ValueError(f"prior context for {mean.shape[0]} rows, asked for a sample of shape {tuple(shape)}")
        eps = randn(shape, device=ref.device, dtype=ref.dtype, generator=generator)
        return mean + temperature * torch.exp(log_std) * eps


class SplitPrior(nn.Module):
    """Factor out half of the channels and model them as ``p(z_out | z_keep, h)``.

    ``forward(z, context) -> (z_keep, z_out, log p(z_out | z_keep, h))``; the inverse,
    :meth:`join`, re-attaches a given ``z_out`` or samples one (with a temperature).
    Channel order: ``z = [z_keep, z_out]`` with ``z_out`` the last ``channels // 2`` channels.
    """

    def __init__(self, channels: int, context_channels: int, net_fn: NetFactory) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a split needs at least 2 channels, got {channels}")
        self.channels = channels
        self.out_channels = channels // 2
        self.keep_channels = channels - self.out_channels
        self.context_channels = context_channels
        self.prior = DiagonalGaussian(self.out_channels, self.keep_channels + context_channels, net_fn)

    def _prior_context(self, z_keep: Tensor, context: Context) -> PriorContext:
        if self.context_channels == 0:
            return z_keep
        if context is None:
            raise ValueError(f"SplitPrior was built with context_channels={self.context_channels} but got context=None")
        if isinstance(context, Shared):
            return Concat(z_keep, context)  # concatenated inside the prior network, the shared part once per group
        return torch.cat((z_keep, context), dim=1)

    def forward(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor, Tensor]:
        if z.shape[1] != self.channels:
            raise ValueError(f"SplitPrior expects {self.channels} channels, got shape {tuple(z.shape)}")
        z_keep, z_out = torch.split(z, [self.keep_channels, self.out_channels], dim=1)
        return z_keep, z_out, self.prior.log_prob(z_out, self._prior_context(z_keep, context))

    def join(
        self,
        z_keep: Tensor,
        context: Context = None,
        z_out: Tensor | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if z_out is None:
            shape = (z_keep.shape[0], self.out_channels) + tuple(z_keep.shape[2:])
            z_out = self.prior.sample(shape, self._prior_context(z_keep, context), temperature, generator)
        return torch.cat((z_keep, z_out), dim=1)
