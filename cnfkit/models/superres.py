"""Super-resolution models (Winkler et al. 2019 sec. 5.1; Tables 5, 6, 8).

* :class:`RRDBNet`: the conditioner ``h = g(x_lr)``: ESRGAN's residual-in-residual dense blocks
  (Wang et al. 2018): a 3x3 conv to ``nf`` channels, ``blocks`` RRDBs (each 3 dense blocks of 5 convs
  with growth ``gc``, LeakyReLU 0.2, residual scaling 0.2), a trunk conv with a global skip, and a
  3x3 conv to ``context`` channels.  Table 8: 16 blocks, growth 32 (CNF) or 55 (baseline), 128
  context channels.
* :class:`SRFlow`: the CNF ``p(x_hr | x_lr)``: a :class:`~cnfkit.flows.ConditionalFlow` (L=2, K=8,
  affine couplings with the Table 6 network) conditioned on the RRDB features, on 8-bit images
  uniformly dequantized to ``[0, 1)``.  The coupling scale defaults to the soft-clamped exponential
  (``|log s| < 2``): with Glow's ``sigmoid(a + 2) + 1e-4`` an inverse step can amplify by up to 1e4,
  and the quick-profile model's samples overflowed (1.4% of 32x32 samples at temperature 0.8, half
  the Set14 images; the "exploding inverse" of Behrmann et al., AISTATS 2021).  The paper leaves
  ``s(.)`` open; ``scale="sigmoid"`` restores Glow's.
* :class:`FactorizedLogisticSR`: the baseline: per-subpixel discretized logistics whose means and
  scales a head predicts from the RRDB features; its mode is its prediction.

Both ``forward(y_levels, x_lr)`` return ``log P(y | x)`` in nats per image for integer levels
(the CNF's is a variational lower bound through the dequantization), so bits/dim compare directly.

**Residual over bicubic** (``residual=True``, both models; not the paper's parameterization).  The CNF models
``r = v - b(x)``, the dequantized HR image minus :func:`bicubic_base` of the LR image, and the baseline predicts its
means as offsets from ``b(x)``.  Given ``x`` the shift ``v -> v - b(x)`` has unit Jacobian, so ``log p(v | x)``,
and with it bits/dim, is exactly the flow's density of ``r``: the two parameterizations are scored on the same
scale (``tests/test_superres.py`` proves it on a fixed shift).  It starts training from bicubic upsampling instead
of from nothing, which buys the quick profile's short runs their bits/dim (``make bench-learning``,
``results/benchmarks/learning_sr_cpu.md``); the ``full`` profile keeps the paper's parameterization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dequantization import UniformDequantizer
from ..flows import ConditionalFlow
from ..likelihoods import discretized_logistic_log_prob, discretized_logistic_mode

__all__ = [
    "RRDB",
    "FactorizedLogisticSR",
    "RRDBNet",
    "ResidualDenseBlock",
    "SRFlow",
    "bicubic_base",
    "check_sr_pair",
]


class ResidualDenseBlock(nn.Module):
    """Five 3x3 convs, each seeing all previous outputs; ``x + 0.2 * out``."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(nf + i * gc, gc, 3, padding=1) for i in range(4))
        self.last = nn.Conv2d(nf + 4 * gc, nf, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(self.act(conv(torch.cat(feats, 1))))
        return x + 0.2 * self.last(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and an outer residual (scale 0.2)."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ResidualDenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.blocks(x)


class RRDBNet(nn.Module):
    """``x_lr [B, 3, h, w] -> features [B, context_channels, h, w]`` (at the low resolution)."""

    def __init__(
        self, in_channels: int = 3, nf: int = 64, blocks: int = 16, gc: int = 32, context_channels: int = 128
    ) -> None:
        super().__init__()
        if min(nf, blocks, gc, context_channels) < 1:
            raise ValueError(
                f"nf, blocks, gc and context_channels must be positive, got {nf}, {blocks}, {gc}, {context_channels}"
            )
        self.context_channels = context_channels
        self.first = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(nf, gc) for _ in range(blocks)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.out = nn.Conv2d(nf, context_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        f = self.first(x)
        f = f + self.trunk_conv(self.trunk(f))
        return self.out(F.leaky_relu(f, 0.2))


def check_sr_pair(y: Tensor, x_lr: Tensor) -> None:
    """``y`` [B, 3, 2h, 2w] (8-bit levels) and ``x_lr`` [B, 3, h, w]: the same batch, exactly 2x the size."""
    if x_lr.dim() != 4 or x_lr.shape[1] != 3 or x_lr.shape[0] == 0:
        raise ValueError(f"x_lr must be a non-empty batch of RGB images [B, 3, h, w], got {tuple(x_lr.shape)}")
    want = (x_lr.shape[0], 3, 2 * x_lr.shape[2], 2 * x_lr.shape[3])
    if tuple(y.shape) != want:
        raise ValueError(f"y must have shape {want} (the HR images of x_lr {tuple(x_lr.shape)}), got {tuple(y.shape)}")


def _lr_input(x_lr: Tensor) -> Tensor:
    """8-bit low-resolution levels (or floats in [0, 255]) to ``[-0.5, 0.5]``."""
    return x_lr.float() / 255.0 - 0.5 if not x_lr.is_floating_point() else x_lr / 255.0 - 0.5


def bicubic_base(x_lr: Tensor) -> Tensor:
    """The 2x bicubic upsampling of 8-bit LR levels (or floats in [0, 255]), clamped to [0, 255]: a fixed function of
    the condition that the ``residual`` models predict offsets from."""
    up = F.interpolate(x_lr.float(), scale_factor=2, mode="bicubic", align_corners=False)
    return up.clamp(0.0, 255.0)


class SRFlow(nn.Module):
    """Conditional flow on 2x super-resolution; ``forward(y, context)`` is the per-image ELBO (nats) of the HR
    image ``y`` given the LR image ``context``."""

    def __init__(
        self,
        levels: int = 2,
        steps: int = 8,
        hidden: int = 512,
        rrdb_blocks: int = 16,
        growth: int = 32,
        nf: int = 64,
        context_channels: int = 128,
        scale: str = "soft_exp",
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.conditioner = RRDBNet(3, nf, rrdb_blocks, growth, context_channels)
        self.flow = ConditionalFlow(
            3, levels, steps, hidden, context_channels=context_channels, conditioner=self.conditioner, scale=scale
        )
        self.dequantizer = UniformDequantizer(n_bins=256)

    def forward(self, y: Tensor, context: Tensor, generator=None) -> Tensor:
        """``log p(v | x) - log q(v | y)`` with ``v = (y + u) / 256`` (a bound on ``log P(y | x)``), ``x = context``
        (the low-resolution image); ``u`` from ``generator`` (a list: one per row; ``None``: torch's global RNG)."""
        check_sr_pair(y, context)
        v, log_q = self.dequantizer(y if y.is_floating_point() else y.float(), generator=generator)
        return self.flow.log_prob(v - self._origin(context), _lr_input(context)) - log_q

    def _origin(self, context: Tensor) -> Tensor | float:
        """What the flow's input is measured from: 0.5 (the paper: ``v - 0.5`` in [-0.5, 0.5)), or, residual, the
        bicubic upsampling on the same scale (level ``k`` at ``(k + 0.5) / 256``, the centre of its bin)."""
        if not self.residual:
            return 0.5
        return (bicubic_base(context) + 0.5) / 256.0

    @torch.no_grad()
    def conditioning(self, context: Tensor) -> tuple[list[Tensor] | None, Tensor | float]:
        """What sampling needs of the LR images, computed once and reused across temperatures and samples: the RRDB
        features and the origin the flow's output is added to (see :meth:`sample`'s ``features``)."""
        return self.flow.conditioning(_lr_input(context)), self._origin(context)

    @torch.no_grad()
    def sample(
        self,
        context: Tensor | None = None,
        *,
        num_samples: int | None = None,
        temperature: float = 0.8,
        generator=None,
        features=None,
    ) -> Tensor:
        """8-bit HR samples (levels 0..255) at the given temperature (the paper uses 0.8): one per row
        of the LR images ``context`` (or ``num_samples`` per row); ``features`` from :meth:`conditioning`
        replace the context."""
        if features is None and context is None:
            raise ValueError("give the context (LR images), or features from conditioning()")
        if features is None:
            assert context is not None
            features = self.conditioning(context)
        feats, origin = features
        r = self.flow.sample(
            None, num_samples=num_samples, temperature=temperature, generator=generator, features=feats
        )
        if isinstance(origin, Tensor) and num_samples is not None:
            origin = origin.repeat_interleave(num_samples, dim=0)
        return torch.floor((r + origin) * 256).clamp(0, 255)


class FactorizedLogisticSR(nn.Module):
    """Per-subpixel discretized logistic ``P(y | x)`` on RRDB features (conditionally independent)."""

    def __init__(
        self,
        rrdb_blocks: int = 16,
        growth: int = 55,
        nf: int = 64,
        context_channels: int = 128,
        hidden: int = 128,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.conditioner = RRDBNet(3, nf, rrdb_blocks, growth, context_channels)
        # 2x upsampling by depth-to-space: 4 HR positions x 3 channels x (mean, log-scale)
        self.head = nn.Sequential(
            nn.Conv2d(context_channels, hidden, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 4 * 6, 3, padding=1)
        )

    def params(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Per-subpixel means and log-scales of the HR image of the LR images ``context`` [B, 3, h, w], on the levels'
        [-1, 1] scale: means in [-1.05, 1.05], or, residual, the bicubic upsampling plus an offset in (-1, 1)."""
        x_lr = context
        if x_lr.dim() != 4 or x_lr.shape[1] != 3 or x_lr.shape[0] == 0:
            raise ValueError(f"x_lr must be a non-empty batch of RGB images [B, 3, h, w], got {tuple(x_lr.shape)}")
        if x_lr.is_floating_point() and not torch.isfinite(x_lr).all():
            raise ValueError("x_lr contains NaN or Inf values")
        p = F.pixel_shuffle(self.head(self.conditioner(_lr_input(x_lr))), 2)
        mean, log_scale = p.to(next(self.head.parameters()).dtype).chunk(
            2, dim=1
        )  # full-precision likelihoods even under autocast
        # means may sit slightly beyond the outermost bin centres (+-1); scales are floored for stability
        if self.residual:
            return bicubic_base(x_lr).to(mean.dtype) / 127.5 - 1.0 + torch.tanh(mean), log_scale.clamp(min=-7.0)
        return torch.tanh(mean) * 1.05, log_scale.clamp(min=-7.0)

    def forward(self, y: Tensor, context: Tensor) -> Tensor:
        """``log P(y | x)`` in nats per image, ``x = context``: the sum of the subpixels' discretized-logistic
        log-masses."""
        check_sr_pair(y, context)
        mean, log_scale = self.params(context)
        lp = discretized_logistic_log_prob(y.to(mean.dtype), mean, log_scale)
        return lp.reshape(lp.shape[0], -1).sum(1)

    @torch.no_grad()
    def mode(self, context: Tensor) -> Tensor:
        """The baseline's prediction: the most probable level of every subpixel (exact argmax)."""
        return discretized_logistic_mode(*self.params(context))
