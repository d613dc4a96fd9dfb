"""Low-dimensional problems and models of the theory notebook.

* :func:`rotating_modes`: a 2-D conditional toy, ``p(y | x)`` bimodal with an x-dependent
  orientation (a factorized Gaussian cannot fit it; a CNF can).
* :func:`eight_modes`: the 8-component Gaussian mixture inverse problem of Ardizzone et al. (2019)
  used by Xiao, Yan & Amit (2019), sec. 5.1: octagon vertices, std 0.2, one label per component.
* :class:`LabelGaussianPrior` and :func:`xiao_flow`: Xiao et al.'s flow ``[x, 0 + noise] ->
  [z, y~]`` whose exact negative log-likelihood (their eq. 9) is the single training loss.
* :func:`inn_loss`: Ardizzone et al.'s 4-loss INN objective (forward L2 on y, MMD on [y, z],
  backward MMD on x, backward reconstruction from a perturbed z) with its ramp of backward weights.
* :class:`GaussianRegressor`: the factorized Gaussian baseline ``N(y; mu(x), diag sigma(x)^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import nets
from ..flows import VectorFlow
from ..priors import DiagonalGaussian, gaussian_log_prob, standard_normal_log_prob
from ..utils import randn

__all__ = [
    "EIGHT_MODE_CENTERS",
    "EIGHT_MODE_STD",
    "GaussianRegressor",
    "INNWeights",
    "LabelGaussianPrior",
    "eight_modes",
    "eight_modes_log_prob",
    "inn_loss",
    "mmd_multiscale",
    "pad",
    "rotating_modes",
    "rotating_modes_log_prob",
    "xiao_flow",
]

EIGHT_MODE_CENTERS = torch.tensor(
    [
        (-2.4142, 1.0),
        (-1.0, 2.4142),
        (1.0, 2.4142),
        (2.4142, 1.0),
        (2.4142, -1.0),
        (1.0, -2.4142),
        (-1.0, -2.4142),
        (-2.4142, -1.0),
    ]
)
EIGHT_MODE_STD = 0.2
_LOG_2PI = math.log(2 * math.pi)


def eight_modes(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``n`` points of the 8-mode mixture: coordinates ``[n, 2]`` and integer labels ``[n]``."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    labels = torch.randint(0, 8, (n,), generator=generator)
    x = EIGHT_MODE_CENTERS[labels] + EIGHT_MODE_STD * torch.randn(n, 2, generator=generator)
    return x, labels


def eight_modes_log_prob(x: Tensor, labels: Tensor) -> Tensor:
    """The true posterior ``log p(x | label) = log N(x; center_label, 0.2^2 I)``."""
    centers = EIGHT_MODE_CENTERS.to(x)[labels]
    return gaussian_log_prob(x, centers, torch.full_like(x, math.log(EIGHT_MODE_STD)))


def rotating_modes(
    n: int, generator: torch.Generator | None = None, radius: float = 1.5, std: float = 0.25
) -> tuple[Tensor, Tensor]:
    """``x ~ U(-1, 1)``; ``y = +-radius * (cos(pi x / 2), sin(pi x / 2)) + std * noise``.

    Two modes whose axis turns by 90 degrees as x goes from -1 to 1.  Returns ``(x [n, 1], y [n, 2])``.
    """
    x = 2 * torch.rand(n, 1, generator=generator) - 1
    sign = torch.randint(0, 2, (n, 1), generator=generator) * 2 - 1
    angle = math.pi * x / 2
    centre = sign * radius * torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)
    return x, centre + std * torch.randn(n, 2, generator=generator)


def rotating_modes_log_prob(y: Tensor, x: Tensor, radius: float = 1.5, std: float = 0.25) -> Tensor:
    """Exact ``log p(y | x)`` of :func:`rotating_modes` (an equal mixture of two Gaussians)."""
    angle = math.pi * x / 2
    c = radius * torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)
    log_std = torch.full_like(y, math.log(std))
    both = torch.stack([gaussian_log_prob(y, c, log_std), gaussian_log_prob(y, -c, log_std)])
    return torch.logsumexp(both, dim=0) - math.log(2)


class LabelGaussianPrior(nn.Module):
    """Xiao et al.'s output density: ``N(z; 0, I_K) * N(y~; onehot, noise^2 I_M)`` on ``[z, y~]``.

    ``context`` is the one-hot label ``[B, M]``.  Nothing is learned.
    """

    def __init__(self, z_dim: int, label_dim: int, noise: float) -> None:
        super().__init__()
        if noise <= 0:
            raise ValueError(f"the label noise must be positive, got {noise}")
        self.z_dim, self.label_dim, self.noise = z_dim, label_dim, noise

    def log_prob(self, out: Tensor, context: Tensor | None) -> Tensor:
        if context is None or context.shape[1] != self.label_dim:
            raise ValueError(f"LabelGaussianPrior needs a one-hot label context [B, {self.label_dim}]")
        z, y = out[:, : self.z_dim], out[:, self.z_dim :]
        log_std = torch.full_like(y, math.log(self.noise))
        return standard_normal_log_prob(z) + gaussian_log_prob(y, context, log_std)

    def sample(
        self, shape, context: Tensor | None, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> Tensor:
        if context is None:
            raise ValueError("LabelGaussianPrior needs a one-hot label context to sample")
        z = temperature * randn((shape[0], self.z_dim), generator=generator, dtype=context.dtype, device=context.device)
        v = self.noise * randn(
            (shape[0], self.label_dim), generator=generator, dtype=context.dtype, device=context.device
        )
        return torch.cat([z, context + temperature * v], dim=1)


def pad(x: Tensor, total_dim: int, noise: float, generator: torch.Generator | None = None) -> Tensor:
    """``[x, 0 + noise * eps]`` of width ``total_dim`` (Xiao et al.'s zero padding with small noise)."""
    if noise < 0:
        raise ValueError(f"pad noise must be >= 0, got {noise}")
    extra = total_dim - x.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad {x.shape[1]} dims to {total_dim}")
    eps = randn((x.shape[0], extra), generator=generator, dtype=x.dtype, device=x.device)
    return torch.cat([x, noise * eps], dim=1)


def xiao_flow(
    x_dim: int,
    label_dim: int,
    z_dim: int,
    *,
    blocks: int = 8,
    hidden: int = 512,
    layers: int = 3,
    label_noise: float = 0.1,
) -> VectorFlow:
    """Xiao et al.'s flow on ``D = z_dim + label_dim`` dims (x is zero-padded up to D).

    ``flow(pad(x), onehot)`` is their eq. 9: ``log N(z; 0, I) + log N(v; 0, eps^2 I) + log|det|``.
    The couplings do not see the label; the forward pass ``flow.encode(pad(x))`` predicts it.
    """
    dim = z_dim + label_dim
    if x_dim > dim:
        raise ValueError(f"x ({x_dim} dims) must fit in z + label ({dim} dims)")
    return VectorFlow(
        dim,
        context_dim=label_dim,
        blocks=blocks,
        hidden=hidden,
        layers=layers,
        condition_couplings=False,
        prior=LabelGaussianPrior(z_dim, label_dim, label_noise),
    )


class GaussianRegressor(nn.Module):
    """Factorized baseline ``p(y | x) = N(y; mu(x), diag sigma(x)^2)`` with an MLP for mu and log sigma."""

    def __init__(self, dim: int, context_dim: int, hidden: int = 128, layers: int = 3) -> None:
        super().__init__()
        self.dim, self.context_dim = dim, context_dim
        self.density = DiagonalGaussian(dim, context_dim, nets.net_factory("mlp", hidden=hidden, layers=layers))

    def log_prob(self, y: Tensor, context: Tensor) -> Tensor:
        return self.density.log_prob(y, context)

    def forward(self, y: Tensor, context: Tensor) -> Tensor:
        return self.log_prob(y, context)

    @torch.no_grad()
    def sample(
        self,
        context: Tensor,
        *,
        num_samples: int | None = None,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One sample per row of ``context`` (``num_samples`` per row: rows ``i*n ... i*n+n-1`` for row ``i``)."""
        if num_samples is not None:
            context = context.repeat_interleave(num_samples, dim=0)
        return self.density.sample((context.shape[0], self.dim), context, temperature, generator)


def mmd_multiscale(a: Tensor, b: Tensor, widths: tuple[float, ...] = (0.05, 0.2, 0.9)) -> Tensor:
    """Biased MMD^2 with a sum of inverse multiquadratic kernels ``w^2 / (w^2 + |u - v|^2)``.

    The kernel of Ardizzone et al.'s INN experiments.
    """
    aa, bb, ab = torch.cdist(a, a) ** 2, torch.cdist(b, b) ** 2, torch.cdist(a, b) ** 2
    out = a.new_zeros(())
    for w in widths:
        w2 = w * w
        out = out + (w2 / (w2 + aa)).mean() + (w2 / (w2 + bb)).mean() - 2 * (w2 / (w2 + ab)).mean()
    return out


@dataclass(frozen=True)
class INNWeights:
    """Ardizzone et al.'s loss weights; ``backward=False`` drops the two backward losses.

    The backward weight is ramped: ``min(1, 2 * 0.002 ** (1 - ramp_speed * t))`` at training
    progress ``t`` in [0, 1] (``ramp_speed=1`` is their schedule; larger is faster).
    """

    predict: float = 3.0
    latent: float = 300.0
    reverse: float = 400.0
    backward: bool = True
    ramp_speed: float = 1.0
    z_perturb: float = 0.05

    def ramp(self, t: float) -> float:
        return min(1.0, 2.0 * 0.002 ** max(0.0, 1.0 - self.ramp_speed * t))


def inn_loss(
    flow: VectorFlow,
    x: Tensor,
    onehot: Tensor,
    t: float,
    w: INNWeights,
    z_dim: int,
    pad_noise: float,
    label_noise: float,
) -> tuple[Tensor, dict[str, float]]:
    """The 4-term INN objective at training progress ``t``; returns the loss and its parts.

    ``flow`` is an unconditional :class:`VectorFlow` on ``[x, pad] <-> [z, y]`` (the same flow as
    Xiao et al.'s, trained differently).
    """
    dim = flow.dim
    xp = pad(x, dim, pad_noise)
    y = onehot + label_noise * torch.randn_like(onehot)
    out, _ = flow.encode(xp)
    out_z, out_y = out[:, :z_dim], out[:, z_dim:]
    l_y = ((out_y - y) ** 2).sum(dim=1).mean()
    z = torch.randn_like(out_z)
    l_z = mmd_multiscale(torch.cat([out_z, out_y.detach()], dim=1), torch.cat([z, y], dim=1))
    loss = w.predict * l_y + w.latent * l_z
    parts = {"l_y": l_y.item(), "l_z": l_z.item()}
    if w.backward:
        factor = w.ramp(t)
        rev = flow.decode(torch.cat([out_z.detach() + w.z_perturb * torch.randn_like(out_z), y], dim=1))
        rev_rand = flow.decode(torch.cat([torch.randn_like(out_z), y], dim=1))
        l_x_mmd = mmd_multiscale(rev_rand[:, : x.shape[1]], x)
        l_x_rec = ((rev - xp) ** 2).sum(dim=1).mean()
        loss = loss + factor * w.reverse * l_x_mmd + w.predict * l_x_rec
        parts.update(l_x_mmd=l_x_mmd.item(), l_x_rec=l_x_rec.item(), ramp=factor)
    return loss, parts
