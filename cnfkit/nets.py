"""Networks used inside couplings and priors (not bijections themselves).

Each builder has the ``net_fn(in_channels, out_channels) -> nn.Module`` shape expected by the
couplings and priors, after its own hyper-parameters are bound with :func:`functools.partial`
or the ``*_factory`` helpers below.  The last layer is zero-initialised so that a fresh coupling
is close to the identity and a fresh prior is a standard normal (Glow).
"""

from __future__ import annotations

from functools import partial

from torch import nn

__all__ = ["ZeroConv2d", "zero_linear", "glow_net", "instance_net", "mlp", "net_factory"]


class ZeroConv2d(nn.Conv2d):
    """A convolution whose weights and bias start at zero."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.weight)
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


_NETS = {"glow": glow_net, "instance": instance_net, "mlp": mlp}


def net_factory(kind: str, **kwargs: int):
    """``net_factory("glow", hidden=512)`` -> ``net_fn(in, out)`` for couplings and priors."""
    if kind not in _NETS:
        raise ValueError(f"unknown network kind {kind!r}; choose from {sorted(_NETS)}")
    return partial(_NETS[kind], **kwargs)
