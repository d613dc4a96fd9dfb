"""Invertible layers (bijections) for conditional normalizing flows.

The contract
------------
Every layer in this module is a :class:`Bijection` between a data-side tensor ``y`` and a
latent-side tensor ``z`` of the same shape, optionally conditioned on features ``context``:

* ``forward(y, context=None) -> (z, logdet)``  with ``logdet = log|det dz/dy|``, one value per sample
  (shape ``[B]``).  This is the *normalizing* direction used for likelihoods.
* ``inverse(z, context=None) -> (y, logdet)`` with ``logdet = log|det dy/dz|``, the log-determinant
  of the inverse map at ``z``; it equals ``-forward(y)[1]`` at ``y = inverse(z)[0]``.  This is the
  *generative* direction used for sampling.

Tensors are laid out ``[B, C, *spatial]``: images are ``[B, C, H, W]`` and vectors are ``[B, D]``
(``D`` plays the role of the channel dimension).  ``context`` for an image layer is a feature map
``[B, C_h, H, W]`` at the layer's resolution; for a vector layer it is ``[B, D_h]``.  Layers that
do not use conditioning accept ``context`` and ignore it, so a flow simply passes ``context`` to every
layer (no ``isinstance`` routing, no ``reverse=`` flags).

The change-of-variables formula for a flow ``f = f_K o ... o f_1`` then reads::

    log p(y | x) = log p_Z(f(y; h) | h) + sum_k forward_k(...)[1],   h = g(x)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nets import Context, NetFactory, Shared, run_with_context

__all__ = [
    "SCALE_FUNCTIONS",
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Bijection",
    "FlowSequential",
    "InvConv1x1",
    "InvConv1x1LU",
    "Permutation",
    "Squeeze",
    "actnorm_init_guard",
    "flow_step",
]


def _sum_per_sample(t: Tensor) -> Tensor:
    """Sum all dimensions except the batch dimension."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def _spatial_size(t: Tensor) -> int:
    """Number of positions per channel (1 for vectors, H*W for images)."""
    return math.prod(t.shape[2:])


def _check_channels(t: Tensor, channels: int, name: str, layer: nn.Module) -> None:
    if t.dim() < 2 or t.shape[1] != channels:
        raise ValueError(f"{type(layer).__name__} expects {name} of shape [B, {channels}, ...], got {tuple(t.shape)}")


class Bijection(nn.Module):
    """Base class: an invertible map y <-> z with a tractable log-Jacobian determinant.

    Subclasses implement :meth:`forward` (y -> z) and :meth:`inverse` (z -> y), each returning the
    transformed tensor and the per-sample ``log|det J|`` of *that* direction.  See the module
    docstring for the full contract.
    """

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class FlowSequential(Bijection):
    """Composition of bijections; ``context`` is handed to every layer."""

    def __init__(self, *layers: Bijection) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def bijections(self) -> list[Bijection]:
        """The layers, in order (typed: ``nn.ModuleList`` items are plain modules to a type checker)."""
        return [cast(Bijection, layer) for layer in self.layers]

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        logdet = y.new_zeros(y.shape[0])
        for layer in self.layers:
            y, ld = layer(y, context)
            logdet = logdet + ld
        return y, logdet

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[0])
        for layer in reversed(self.bijections()):
            z, ld = layer.inverse(z, context)
            logdet = logdet + ld
        return z, logdet


class ActNorm(Bijection):
    """Activation normalisation (Kingma & Dhariwal 2018): ``z = (y + loc) * exp(log_scale)``.

    Per-channel affine map whose parameters are initialised from the first batch it sees so that
    the output has zero mean and unit variance per channel.  Whether that has happened is stored in
    the buffer ``initialized``, which is part of the ``state_dict``: a model loaded from a checkpoint
    is never re-initialised.  A Python-side copy of the flag avoids a device sync on every call.
    """

    initialized: Tensor
    min_std = 1e-5  # a channel whose batch std is below min_std * (1 + |mean|) counts as constant

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self._is_initialized = False
        self.register_load_state_dict_post_hook(ActNorm._sync_flag_after_load)

    @staticmethod
    def _sync_flag_after_load(module: ActNorm, incompatible_keys: object) -> None:
        module._is_initialized = bool(module.initialized)

    def _view(self, p: Tensor, like: Tensor) -> Tensor:
        return p.view((1, -1) + (1,) * (like.dim() - 2))

    @torch.no_grad()
    def initialize(self, y: Tensor) -> None:
        """Set loc/scale so that ``forward(y)`` has zero mean, unit variance per channel.

        The batch is validated first: an empty batch, non-finite values or a dtype other than the
        parameters' raise ``ValueError`` and leave the layer uninitialised.  A channel whose values
        in the batch are (nearly) constant, or that holds a single value (one image whose deepest
        level is 1x1), carries no scale information: it keeps scale 1 (only its mean is removed),
        with a warning, instead of storing ``-log(eps)``.
        """
        _check_channels(y, self.channels, "input", self)
        if y.shape[0] == 0 or y.numel() == 0:
            raise ValueError("ActNorm cannot initialise from an empty batch; its first call needs data")
        if y.dtype != self.loc.dtype:
            raise ValueError(
                f"ActNorm: input dtype {y.dtype} does not match the parameters' {self.loc.dtype}; "
                f"convert the input (e.g. y.to({self.loc.dtype})) or the model (e.g. model.to({y.dtype}))"
            )
        if not torch.isfinite(y).all():
            raise ValueError("ActNorm cannot initialise from a batch with NaN or Inf values")
        dims = [0] + list(range(2, y.dim()))
        mean = y.mean(dim=dims)
        std = y.std(dim=dims, unbiased=False)
        n_per_channel = y.numel() // self.channels
        degenerate = (
            std <= self.min_std * (1.0 + mean.abs()) if n_per_channel > 1 else torch.ones_like(std, dtype=torch.bool)
        )
        if degenerate.any():
            warnings.warn(
                f"ActNorm({self.channels}): {int(degenerate.sum())} channel(s) are constant in the initialisation "
                f"batch ({n_per_channel} value(s) per channel); they keep scale 1. Initialise from a larger, varied "
                "batch (e.g. the first training batch) for data-dependent scales.",
                RuntimeWarning,
                stacklevel=3,
            )
        log_scale = torch.where(degenerate, torch.zeros_like(std), -torch.log(std + self.eps))
        self.loc.copy_(-mean)
        self.log_scale.copy_(log_scale)
        self.initialized.fill_(True)
        self._is_initialized = True

    @torch.no_grad()
    def reset_initialization(self) -> None:
        """Forget the data-dependent initialisation (identity map; the next forward call initialises)."""
        self.loc.zero_()
        self.log_scale.zero_()
        self.initialized.fill_(False)
        self._is_initialized = False

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(y, self.channels, "input", self)
        if not self._is_initialized:
            self.initialize(y)
        z = (y + self._view(self.loc, y)) * self._view(self.log_scale.exp(), y)
        logdet = self.log_scale.sum() * _spatial_size(y)
        return z, logdet.expand(y.shape[0])

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.channels, "input", self)
        y = z * self._view((-self.log_scale).exp(), z) - self._view(self.loc, z)
        logdet = -self.log_scale.sum() * _spatial_size(z)
        return y, logdet.expand(z.shape[0])


def _channel_mix(t: Tensor, weight: Tensor) -> Tensor:
    """Apply a [C, C] matrix along dim 1 (a 1x1 convolution for images, a matmul for vectors).

    Part of the bijection itself: always in the parameters' precision, never under autocast."""
    with torch.autocast(t.device.type, enabled=False):
        t = t.to(weight.dtype)
        if t.dim() == 2:
            return F.linear(t, weight)
        if t.dim() == 4:
            return F.conv2d(t, weight[:, :, None, None])
        return torch.einsum("ij,bj...->bi...", weight, t)


class InvConv1x1(Bijection):
    """Invertible 1x1 convolution ``z = W y`` (Glow), plain parameterisation.

    ``log|det| = H*W*log|det W|`` needs a ``slogdet`` per call; :class:`InvConv1x1LU` avoids it.
    ``W`` starts as a random rotation.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        self.weight = nn.Parameter(w)

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(y, self.channels, "input", self)
        logdet = torch.linalg.slogdet(self.weight)[1] * _spatial_size(y)
        return _channel_mix(y, self.weight), logdet.expand(y.shape[0])

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.channels, "input", self)
        logdet = -torch.linalg.slogdet(self.weight)[1] * _spatial_size(z)
        return _channel_mix(z, torch.linalg.inv(self.weight)), logdet.expand(z.shape[0])


class InvConv1x1LU(Bijection):
    """Invertible 1x1 convolution with ``W = P L (U + diag(sign * exp(log_s)))`` (Glow's LU form).

    ``P`` is a fixed permutation, ``L`` unit lower-triangular, ``U`` strictly upper-triangular.
    ``log|det W| = sum(log_s)``: no determinant is ever computed.
    """

    perm: Tensor
    sign_s: Tensor
    lower_mask: Tensor
    eye: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> Tensor:
        """The assembled ``[C, C]`` matrix ``W`` (in the parameters' precision, also under autocast)."""
        with torch.autocast(self.lower.device.type, enabled=False):
            lower = self.lower * self.lower_mask + self.eye
            upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
            return self.perm @ lower @ upper

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(y, self.channels, "input", self)
        logdet = self.log_s.sum() * _spatial_size(y)
        return _channel_mix(y, self.weight()), logdet.expand(y.shape[0])

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.channels, "input", self)
        logdet = -self.log_s.sum() * _spatial_size(z)
        return _channel_mix(z, torch.linalg.inv(self.weight())), logdet.expand(z.shape[0])


class Squeeze(Bijection):
    """Space-to-depth: ``[B, C, H, W] -> [B, 4C, H/2, W/2]`` (volume preserving, logdet 0).

    Each output channel group ``c*4 + (2*i + j)`` holds the pixels at offset ``(i, j)`` of every
    2x2 block of input channel ``c``.
    """

    factor = 2

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        if y.dim() != 4:
            raise ValueError(f"Squeeze expects an image batch [B, C, H, W], got shape {tuple(y.shape)}")
        b, c, h, w = y.shape
        f = self.factor
        if h % f or w % f:
            raise ValueError(
                f"Squeeze needs a spatial size divisible by {f}, got {h}x{w}; pad or crop the input "
                f"(a flow with L levels needs H and W divisible by 2**L)"
            )
        z = y.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4)
        return z.reshape(b, c * f * f, h // f, w // f), y.new_zeros(b)

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        f = self.factor
        if z.dim() != 4 or z.shape[1] % (f * f):
            raise ValueError(f"Squeeze.inverse expects [B, C, H, W] with C divisible by {f * f}, got {tuple(z.shape)}")
        b, c, h, w = z.shape
        y = z.reshape(b, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c // (f * f), h * f, w * f), z.new_zeros(b)


class Permutation(Bijection):
    """A fixed random permutation of the channel (feature) dimension; logdet 0."""

    perm: Tensor
    inv_perm: Tensor

    def __init__(self, channels: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.channels = channels
        perm = torch.randperm(channels, generator=generator)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(y, self.channels, "input", self)
        return y[:, self.perm], y.new_zeros(y.shape[0])

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.channels, "input", self)
        return z[:, self.inv_perm], z.new_zeros(z.shape[0])


# --- scale parameterisations for affine couplings --------------------------------------------
# Each maps the raw network output a to (scale, log_scale) with scale > 0 and bounded away from 0.


def _sigmoid_scale(a: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """Glow / Winkler et al.: ``s = sigmoid(a + 2) + eps`` in (eps, 1 + eps); s(0) ~ 0.88."""
    s = torch.sigmoid(a + 2.0) + eps
    return s, torch.log(s)


def _soft_clamped_exp_scale(a: Tensor, clamp: float = 2.0) -> tuple[Tensor, Tensor]:
    """Ardizzone et al. (FrEIA): ``s = exp(clamp * 2/pi * atan(a / clamp))``, |log s| < clamp."""
    log_s = clamp * (2.0 / math.pi) * torch.atan(a / clamp)
    return log_s.exp(), log_s


SCALE_FUNCTIONS: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "sigmoid": _sigmoid_scale,
    "soft_exp": _soft_clamped_exp_scale,
}


class _Coupling(Bijection):
    """Shared machinery: split channels, run the network on [passive half, context]."""

    def __init__(
        self, channels: int, net_fn: NetFactory, out_per_channel: int, context_channels: int = 0, parity: int = 0
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels, got {channels}")
        if parity not in (0, 1):
            raise ValueError(f"parity must be 0 or 1, got {parity}")
        self.channels = channels
        self.context_channels = context_channels
        self.parity = parity
        first = channels // 2
        # parity 0 transforms the first `first` channels given the rest; parity 1 the reverse.
        self.split_sizes = (first, channels - first)
        self.n_active = self.split_sizes[parity]
        n_passive = channels - self.n_active
        self.net = net_fn(n_passive + context_channels, out_per_channel * self.n_active)

    def _split(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, b = torch.split(t, list(self.split_sizes), dim=1)
        return (a, b) if self.parity == 0 else (b, a)

    def _merge(self, active: Tensor, passive: Tensor) -> Tensor:
        return torch.cat((active, passive) if self.parity == 0 else (passive, active), dim=1)

    def _run_net(self, passive: Tensor, context: Context) -> Tensor:
        """``net([passive, context])``; ``context`` may be a :class:`~cnfkit.nets.Shared` (one map per group of
        rows)."""
        if self.context_channels == 0:
            return self.net(passive)
        if context is None:
            raise ValueError(
                f"{type(self).__name__} was built with context_channels={self.context_channels} but got context=None"
            )
        feats = context.features if isinstance(context, Shared) else context
        rows = context.rows if isinstance(context, Shared) else context.shape[0]
        if rows != passive.shape[0] or feats.shape[1] != self.context_channels or feats.shape[2:] != passive.shape[2:]:
            raise ValueError(
                f"{type(self).__name__}: conditioning must have shape "
                f"[{passive.shape[0]}, {self.context_channels}, {', '.join(map(str, passive.shape[2:]))}]"
                f" to match the input, got {tuple(feats.shape)}"
                + (f" shared by {context.repeats} rows each" if isinstance(context, Shared) else "")
            )
        return run_with_context(self.net, passive, context)


class AffineCoupling(_Coupling):
    """Conditional affine coupling (Dinh et al. 2016; Winkler et al. 2019, sec. 3.1).

    Split ``y = [y_a, y_b]``; ``(t, a) = NN([y_b, h])``; ``z_a = y_a * s(a) + t``, ``z_b = y_b``.
    ``log|det| = sum log s(a)``.  The scale function is ``"sigmoid"`` (Glow:
    ``sigmoid(a + 2) + 1e-4``) or ``"soft_exp"`` (Ardizzone et al.'s soft-clamped exponential).
    Zero-initialising the network's last layer makes the layer start close to the identity.
    """

    def __init__(
        self,
        channels: int,
        net_fn: NetFactory,
        context_channels: int = 0,
        parity: int = 0,
        scale: str = "sigmoid",
    ) -> None:
        if scale not in SCALE_FUNCTIONS:
            raise ValueError(f"unknown scale {scale!r}; choose from {sorted(SCALE_FUNCTIONS)}")
        super().__init__(channels, net_fn, 2, context_channels, parity)
        self.scale = scale
        self.scale_fn = SCALE_FUNCTIONS[scale]

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, context_channels={self.context_channels}, parity={self.parity}, "
            f"scale={self.scale!r}"
        )

    def _params(self, passive: Tensor, context: Context) -> tuple[Tensor, Tensor, Tensor]:
        # the network may run in reduced precision (autocast); the bijection and its log-determinant do not
        shift, raw = self._run_net(passive, context).to(passive.dtype).chunk(2, dim=1)
        s, log_s = self.scale_fn(raw)
        return shift, s, log_s

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(y, self.channels, "input", self)
        active, passive = self._split(y)
        shift, s, log_s = self._params(passive, context)
        return self._merge(active * s + shift, passive), _sum_per_sample(log_s)

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.channels, "input", self)
        active, passive = self._split(z)
        shift, s, log_s = self._params(passive, context)
        return self._merge((active - shift) / s, passive), -_sum_per_sample(log_s)


class AdditiveCoupling(_Coupling):
    """Volume-preserving (translation-only) coupling: ``z_a = y_a + NN([y_b, h])``; logdet 0.

    Used by Winkler et al. for DRIVE (no scale component ``s``).
    """

    def __init__(self, channels: int, net_fn: NetFactory, context_channels: int = 0, parity: int = 0) -> None:
        super().__init__(channels, net_fn, 1, context_channels, parity)

    def forward(self, y: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(y, self.channels, "input", self)
        active, passive = self._split(y)
        shift = self._run_net(passive, context).to(passive.dtype)
        return self._merge(active + shift, passive), y.new_zeros(y.shape[0])

    def inverse(self, z: Tensor, context: Context = None) -> tuple[Tensor, Tensor]:
        _check_channels(z, self.channels, "input", self)
        active, passive = self._split(z)
        shift = self._run_net(passive, context).to(passive.dtype)
        return self._merge(active - shift, passive), z.new_zeros(z.shape[0])


def flow_step(
    channels: int,
    net_fn: NetFactory,
    context_channels: int = 0,
    *,
    coupling: str = "affine",
    lu: bool = True,
    actnorm: bool = True,
    scale: str = "sigmoid",
) -> FlowSequential:
    """One Glow step of flow: [ActNorm] -> invertible 1x1 conv -> (conditional) coupling."""
    layers: list[Bijection] = []
    if actnorm:
        layers.append(ActNorm(channels))
    layers.append(InvConv1x1LU(channels) if lu else InvConv1x1(channels))
    if coupling == "affine":
        layers.append(AffineCoupling(channels, net_fn, context_channels, scale=scale))
    elif coupling == "additive":
        layers.append(AdditiveCoupling(channels, net_fn, context_channels))
    else:
        raise ValueError(f"unknown coupling {coupling!r}; choose 'affine' or 'additive'")
    return FlowSequential(*layers)


def _actnorms(module: nn.Module) -> list[ActNorm]:
    """The ActNorm layers of ``module``, listed once (the guard runs on every forward call)."""
    cached = module.__dict__.get("_cnfkit_actnorms")
    if cached is None:
        cached = [m for m in module.modules() if isinstance(m, ActNorm)]
        module.__dict__["_cnfkit_actnorms"] = cached
    return cached


@contextmanager
def actnorm_init_guard(module: nn.Module) -> Iterator[None]:
    """Make ActNorm's data-dependent initialisation part of a *valid* call only.

    ActNorm layers of ``module`` that are uninitialised on entry and got initialised inside the
    block are reset if the block raises (e.g. a later layer rejects the input), so a failed call
    never leaves a half-initialised model behind.
    """
    fresh = [m for m in _actnorms(module) if not m._is_initialized]
    try:
        yield
    except BaseException:
        for m in fresh:
            if m._is_initialized:
                m.reset_initialization()
        raise
