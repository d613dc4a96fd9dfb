"""Networks used inside couplings and priors (not bijections themselves).

Each builder has the ``net_fn(in_channels, out_channels) -> nn.Module`` shape expected by the
couplings and priors, after its own hyper-parameters are bound with :func:`functools.partial`
or the ``*_factory`` helpers below.  The last layer is zero-initialised so that a fresh coupling
is close to the identity and a fresh prior is a standard normal (Glow).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Concat",
    "Context",
    "NetFactory",
    "PriorContext",
    "Shared",
    "ZeroConv2d",
    "glow_net",
    "instance_net",
    "mlp",
    "net_factory",
    "run_with_context",
    "zero_linear",
]


class Shared(NamedTuple):
    """Conditioning shared by groups of consecutive rows: row ``i`` of the input uses ``features[i // repeats]``.

    :meth:`cnfkit.flows.ConditionalFlow.sample` passes it when drawing ``repeats`` samples per input, so
    the networks compute each image's share of their first layer once instead of once per sample."""

    features: Tensor
    repeats: int

    @property
    def rows(self) -> int:
        return self.features.shape[0] * self.repeats

    def materialize(self) -> Tensor:
        return self.features.repeat_interleave(self.repeats, dim=0)


class Concat(NamedTuple):
    """``[x, context]`` on the channel axis, concatenated inside the network that receives it (so a
    :class:`Shared` context still has its share of the first layer computed once per group).
    The split prior's input: the kept half of the latent and the flow's context features."""

    x: Tensor
    context: Tensor | Shared


Context: TypeAlias = Tensor | Shared | None
"""What a layer accepts as its ``context``: a feature map (``[B, C_h, ...]``), a :class:`Shared` map (one
per group of rows), or ``None`` (unconditional)."""

PriorContext: TypeAlias = Tensor | Shared | Concat | None
"""What a prior's network accepts: a :data:`Context`, or a :class:`Concat` of a tensor and one."""

NetFactory = Callable[[int, int], nn.Module]
"""``net_fn(in_channels, out_channels) -> nn.Module``: builds a coupling or prior network."""


def _first_layer_split(layer: nn.Conv2d | nn.Linear, x: Tensor | None, ctx: Tensor) -> tuple[Tensor | None, Tensor]:
    """``layer(cat([x, ctx]))`` as ``(part from x incl. bias, part from ctx)``: exact for a linear layer."""
    n_x = 0 if x is None else x.shape[1]
    w = layer.weight
    if isinstance(layer, nn.Conv2d):
        conv = partial(F.conv2d, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
        from_ctx = conv(ctx, w[:, n_x:], None if n_x else layer.bias)
        from_x = conv(x, w[:, :n_x], layer.bias) if x is not None and n_x else None
    else:
        from_ctx = F.linear(ctx, w[:, n_x:], None if n_x else layer.bias)
        from_x = F.linear(x, w[:, :n_x], layer.bias) if x is not None and n_x else None
    return from_x, from_ctx


def _splittable(net: nn.Module) -> bool:
    if not isinstance(net, nn.Sequential) or len(net) == 0:
        return False
    first = net[0]
    if isinstance(first, nn.Conv2d):
        return first.groups == 1 and first.padding_mode == "zeros" and not isinstance(first.padding, str)
    return isinstance(first, nn.Linear)


def run_with_context(net: nn.Module, x: Tensor | None, context: Tensor | Shared | None) -> Tensor:
    """``net(cat([x, context], dim=1))`` (``x`` or ``context`` may be ``None``).

    With a :class:`Shared` context and a network whose first layer is a convolution or linear map,
    the context's contribution to that layer is computed once per group and repeated (the layer is
    linear, so this is the same function, up to float rounding); other networks see the repeated context."""
    if context is None:
        return net(x)
    if not isinstance(context, Shared):
        return net(context if x is None else torch.cat([x, context], dim=1))
    if x is not None and x.shape[0] != context.rows:
        raise ValueError(f"shared conditioning for {context.rows} rows, got an input with {x.shape[0]}")
    if x is None and not _splittable(net):
        return net(context.features).repeat_interleave(context.repeats, dim=0)  # the output depends on the context only
    if x is not None and not _splittable(net):
        return net(torch.cat([x, context.materialize()], dim=1))
    assert isinstance(net, nn.Sequential) and isinstance(net[0], (nn.Conv2d, nn.Linear))  # what _splittable checked
    from_x, from_ctx = _first_layer_split(net[0], x, context.features)
    if from_x is None:
        h = from_ctx.repeat_interleave(context.repeats, dim=0)
    else:  # broadcast each group's share over its rows: no repeated copy
        groups = from_ctx.shape[0]
        h = (from_x.view(groups, context.repeats, *from_x.shape[1:]) + from_ctx.unsqueeze(1)).view(from_x.shape)
    return net[1:](h)


class ZeroConv2d(nn.Conv2d):
    """A convolution whose weights and bias start at zero."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.weight)
        assert self.bias is not None  # built with bias=True
        nn.init.zeros_(self.bias)


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer whose weights and bias start at zero."""
    layer = nn.Linear(in_features, out_features)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def glow_net(in_channels: int, out_channels: int, hidden: int = 512) -> nn.Sequential:
    """Winkler et al. Table 6 (super-resolution): conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(inplace=True),
        ZeroConv2d(hidden, out_channels, 3),
    )


def instance_net(in_channels: int, out_channels: int, hidden: int = 32) -> nn.Sequential:
    """Winkler et al. Table 7 (DRIVE): conv3x3 -> InstanceNorm -> ReLU -> conv3x3."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.InstanceNorm2d(hidden, affine=True),
        nn.ReLU(inplace=True),
        ZeroConv2d(hidden, out_channels, 3),
    )


def mlp(in_features: int, out_features: int, hidden: int = 512, layers: int = 3) -> nn.Sequential:
    """``layers`` fully connected layers with ReLU between them (Xiao et al.: 3 x 512)."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got layers={layers}")
    mods: list[nn.Module] = []
    width = in_features
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    mods.append(zero_linear(width, out_features))
    return nn.Sequential(*mods)


_NETS: dict[str, Callable[..., nn.Sequential]] = {"glow": glow_net, "instance": instance_net, "mlp": mlp}


def net_factory(kind: str, **kwargs: int):
    """``net_factory("glow", hidden=512)`` -> ``net_fn(in, out)`` for couplings and priors."""
    if kind not in _NETS:
        raise ValueError(f"unknown network kind {kind!r}; choose from {sorted(_NETS)}")
    return partial(_NETS[kind], **kwargs)
