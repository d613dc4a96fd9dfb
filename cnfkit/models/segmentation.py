"""Models for binary segmentation with conditional flows (Winkler et al. 2019, sec. 5.2; Tables 4, 5, 7).

* :class:`VGGFeatures`: Table 4's feature extractor, blocks ``[InstanceNorm, ReLU, conv3x3]`` and
  2x2 max-pools, returning the outputs of layers 4 and 7 (at 1/2 and 1/4 of the input resolution),
  which condition the two levels of the flow.
* :class:`SegmentationCNF`: the conditional flow ``p(v | x)`` (L=2, K=2, additive couplings with the
  Table 7 network, conditional split and top priors) with a dequantizer ``q(v | y, x)``: the binary
  half-infinite one (the paper's CNF) or uniform noise ("CNF Uniform").  ``model(y, x)`` is the
  per-image variational lower bound on ``log P(y | x)``.
* :class:`FactoredBernoulli`: the "likelihood baseline": the same conditioner and coupling-style
  network run feed-forward to per-pixel probabilities, trained with the weighted cross-entropy
  (the numerator of eq. 9) and evaluated with the normalised weighted-Bernoulli likelihood.

ActNorm: the paper replaces activation normalisation by instance normalisation for DRIVE.  An
instance-normalisation *layer* is not a per-sample bijection with a tractable inverse, so here the
flow steps have no normalisation layer and InstanceNorm lives in every coupling network (Table 7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..dequantization import BinaryDequantizer, SqueezeContext, UniformDequantizer, check_binary
from ..flows import ConditionalFlow
from ..utils import rand

__all__ = [
    "FactoredBernoulli",
    "SegmentationCNF",
    "VGGFeatures",
    "bernoulli_log_likelihood",
    "scored_probability",
    "weighted_bernoulli_log_likelihood",
    "weighted_cross_entropy",
]


def _check_pair(y: Tensor, x: Tensor) -> None:
    """``y`` a [B, 1, H, W] label map for the images ``x`` [B, C, H, W]."""
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of images [B, C, H, W], got {tuple(x.shape)}")
    want = (x.shape[0], 1, *x.shape[2:])
    if tuple(y.shape) != want:
        raise ValueError(f"y must be the label maps of x {tuple(x.shape)}: shape {want}, got {tuple(y.shape)}")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.InstanceNorm2d(cin, affine=True), nn.ReLU(), nn.Conv2d(cin, cout, 3, padding=1))


class VGGFeatures(nn.Module):
    """Table 4: 1 block -> pool -> 2 blocks (output, 1/2 res) -> pool -> 2 blocks (output, 1/4 res)."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.out_channels = (w2, w3)
        self.layer1 = _block(in_channels, w1)
        self.layers34 = nn.Sequential(_block(w1, w2), _block(w2, w2))
        self.layers67 = nn.Sequential(_block(w2, w3), _block(w3, w3))

    def forward(self, x: Tensor) -> list[Tensor]:
        h1 = self.layer1(x)
        h4 = self.layers34(F.max_pool2d(h1, 2))
        h7 = self.layers67(F.max_pool2d(h4, 2))
        return [h4, h7]


class SegmentationCNF(nn.Module):
    """Conditional flow on dequantized binary maps; ``forward(y, context)`` is the per-image ELBO in nats.

    Args:
        dequantization: ``"binary"`` (Winkler et al. sec. 3.2) or ``"uniform"`` (``v = y + u``).
        hidden: width of the coupling networks (Table 7: 32).
        deq_steps: steps of the single-scale noise flow of the binary dequantizer.
    """

    def __init__(
        self,
        in_channels: int = 3,
        dequantization: str = "binary",
        levels: int = 2,
        steps: int = 2,
        hidden: int = 32,
        widths: tuple[int, int, int] = (32, 64, 128),
        deq_steps: int = 2,
    ) -> None:
        super().__init__()
        if dequantization not in ("binary", "uniform"):
            raise ValueError(f"dequantization must be 'binary' or 'uniform', got {dequantization!r}")
        if levels != 2:
            raise ValueError("the Table 4 conditioner provides features for exactly 2 levels")
        self.kind = dequantization
        vgg = VGGFeatures(in_channels, widths)
        self.flow = ConditionalFlow(
            1,
            levels,
            steps,
            hidden,
            context_channels=list(vgg.out_channels),
            conditioner=vgg,
            coupling="additive",
            coupling_net="instance",
            actnorm=False,
        )
        if dequantization == "binary":
            noise = ConditionalFlow(
                1,
                1,
                deq_steps,
                hidden,
                context_channels=4 * (1 + in_channels),
                conditioner=SqueezeContext(),
                coupling="affine",
                coupling_net="instance",
                actnorm=False,
            )
            self.dequantizer: nn.Module = BinaryDequantizer(noise)
        else:
            self.dequantizer = UniformDequantizer(n_bins=2, scale=False)

    def forward(self, y: Tensor, context: Tensor, generator=None) -> Tensor:
        """``log p(v | x) - log q(v | y, x)`` with ``v ~ q(v | y, x)``, ``x = context`` (the image): a lower
        bound on ``log P(y | x)``.

        The dequantization noise comes from ``generator`` (a list: one per row, see
        :func:`cnfkit.utils.row_generators`; ``None``: torch's global RNG)."""
        _check_pair(y, context)
        v, log_q = self.dequantizer(y, context, generator)
        return self.flow.log_prob(v, context) - log_q

    elbo = forward

    @torch.no_grad()
    def sample(
        self,
        context: Tensor | None = None,
        *,
        num_samples: int | None = None,
        temperature: float = 1.0,
        generator=None,
        features=None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        """Binary segmentations ``y ~ P(y | x)`` of the images ``x = context``: sample ``v`` and quantize it.

        One per row of the context (or ``num_samples`` per row, rows ``i*n ... i*n+n-1`` for row ``i``);
        ``features`` (from :meth:`conditioning`) replace the context, with ``size`` the output size."""
        if size is None:
            if context is None:
                raise ValueError("give the context (images), or features with size=(H, W)")
            size = (context.shape[-2], context.shape[-1])
        flow_context = None if features is not None else context
        v = self.flow.sample(
            flow_context,
            num_samples=num_samples,
            temperature=temperature,
            generator=generator,
            size=size,
            features=features,
        )
        return (v > 0.5).float() if self.kind == "binary" else (v >= 1).float()

    @torch.no_grad()
    def conditioning(self, context: Tensor) -> list[Tensor] | None:
        """The conditioner's features for the images, to draw many samples without recomputing them."""
        return self.flow.conditioning(context)

    @torch.no_grad()
    def mean_map(self, context: Tensor, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """The average of ``n_samples`` binary samples: the soft map thresholded for PR curves.

        The conditioner runs once; only the flow is run per sample."""
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        feats = self.flow.conditioning(context)
        total = self.sample(context, generator=generator, features=feats)
        for _ in range(n_samples - 1):
            total += self.sample(context, generator=generator, features=feats)
        return total / n_samples


def _check_label_maps(logits: Tensor, y: Tensor, mask: Tensor | None) -> None:
    """``y`` (and ``mask``) binary, finite and exactly the shape of ``logits``: never broadcast."""
    if y.shape != logits.shape:
        raise ValueError(f"y must have the shape of the predictions {tuple(logits.shape)}, got {tuple(y.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("empty batch: nothing to score")
    check_binary(y, "y")
    if mask is not None:
        if mask.shape != logits.shape:
            raise ValueError(
                f"mask must have the shape of the predictions {tuple(logits.shape)}, got {tuple(mask.shape)}"
            )
        check_binary(mask, "mask")


def _per_image_sum(term: Tensor, mask: Tensor | None) -> Tensor:
    """Per-pixel terms summed over each image, inside ``mask`` when given."""
    if mask is not None:
        term = term * mask
    return term.reshape(term.shape[0], -1).sum(1)


def weighted_cross_entropy(logits: Tensor, y: Tensor, beta: float, mask: Tensor | None = None) -> Tensor:
    """Per-image ``-sum [beta y log p + (1 - beta)(1 - y) log(1 - p)]``: the numerator of eq. 9."""
    _check_label_maps(logits, y, mask)
    return _per_image_sum(-(beta * y * F.logsigmoid(logits) + (1 - beta) * (1 - y) * F.logsigmoid(-logits)), mask)


def weighted_bernoulli_log_likelihood(logits: Tensor, y: Tensor, beta: float, mask: Tensor | None = None) -> Tensor:
    """Per-image ``sum log L_j`` of eq. 9 *with* its normaliser ``p^beta + (1 - p)^(1 - beta)``,
    so that it is a proper distribution over ``y in {0, 1}`` and comparable in bits/dim."""
    _check_label_maps(logits, y, mask)
    log_p, log_1mp = F.logsigmoid(logits), F.logsigmoid(-logits)
    num = beta * y * log_p + (1 - beta) * (1 - y) * log_1mp
    norm = torch.logaddexp(beta * log_p, (1 - beta) * log_1mp)
    return _per_image_sum(num - norm, mask)


def bernoulli_log_likelihood(logits: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-image ``sum [y log p + (1 - y) log(1 - p)]``, ``p = sigmoid(logits)``: the plain Bernoulli."""
    _check_label_maps(logits, y, mask)
    return _per_image_sum(y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits), mask)


def scored_probability(logits: Tensor, beta: float | None) -> Tensor:
    """``P(y = 1)`` under the distribution a factored model is scored with: ``p = sigmoid(logits)`` for the plain
    Bernoulli (``beta`` None); for eq. 9's normalised weighted Bernoulli ``p^beta / (p^beta + (1 - p)^(1 - beta))``
    (not ``p``: at beta = 0.9 and p = 0.999 it is 0.666)."""
    if beta is None:
        return torch.sigmoid(logits)
    return torch.sigmoid(beta * F.logsigmoid(logits) - (1 - beta) * F.logsigmoid(-logits))


class FactoredBernoulli(nn.Module):
    """Per-pixel (conditionally independent) Bernoulli on the same conditioner.

    ``beta``: eq. 9's class-balancing weight of the vessel term.  The model trains on the weighted
    cross-entropy (eq. 9's numerator, "as in the literature") and is scored with the normalised
    weighted Bernoulli (:func:`weighted_bernoulli_log_likelihood`), as the paper does.  ``beta=None``:
    the plain Bernoulli, trained by its negative log-likelihood and scored as Bernoulli(p).

    The head mirrors the flow's first level: features at 1/2 and 1/4 resolution are merged at 1/2
    resolution, a Table 7 network predicts 4 logits per position, and depth-to-space brings them to
    full resolution (the inverse of the flow's squeeze).
    """

    def __init__(
        self,
        in_channels: int = 3,
        hidden: int = 32,
        widths: tuple[int, int, int] = (32, 64, 128),
        beta: float | None = 0.9,
    ) -> None:
        super().__init__()
        if beta is not None and not 0 < beta < 1:
            raise ValueError(f"beta must be in (0, 1), or None for the plain Bernoulli; got {beta}")
        self.beta = beta
        self.conditioner = VGGFeatures(in_channels, widths)
        c = sum(self.conditioner.out_channels)
        self.head = nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1),
            nn.InstanceNorm2d(hidden, affine=True),
            nn.ReLU(),
            nn.Conv2d(hidden, 4, 3, padding=1),
        )

    @property
    def head_dtype(self) -> torch.dtype:
        """The parameters' dtype: logits come out in it even under autocast."""
        return next(self.head.parameters()).dtype

    def logits(self, context: Tensor) -> Tensor:
        """Per-pixel logits of P(vessel) for the images ``context`` ``[B, C, H, W]``."""
        x = context
        if x.dim() != 4 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty batch of images [B, C, H, W], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or Inf values")
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"image size must be divisible by 4, got {tuple(x.shape[-2:])}")
        h4, h7 = self.conditioner(x)
        h = torch.cat([h4, F.interpolate(h7, size=h4.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
        return F.pixel_shuffle(self.head(h), 2).to(self.head_dtype)  # full-precision likelihoods even under autocast

    def forward(self, y: Tensor, context: Tensor) -> Tensor:
        """Log-likelihood per image (nats) given the images ``context``: the normalised weighted Bernoulli, or the
        plain Bernoulli when ``beta`` is None."""
        _check_pair(y, context)
        return self.log_likelihood(self.logits(context), y)

    def log_likelihood(self, logits: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """The likelihood this model is scored with, from its ``logits``."""
        if self.beta is None:
            return bernoulli_log_likelihood(logits, y, mask)
        return weighted_bernoulli_log_likelihood(logits, y, self.beta, mask)

    def loss(self, y: Tensor, context: Tensor) -> Tensor:
        """The training loss: the weighted cross-entropy of the literature (normaliser ignored), or the plain
        Bernoulli negative log-likelihood when ``beta`` is None."""
        _check_pair(y, context)
        if self.beta is None:
            return -bernoulli_log_likelihood(self.logits(context), y)
        return weighted_cross_entropy(self.logits(context), y, self.beta)

    @torch.no_grad()
    def soft_map(self, context: Tensor) -> Tensor:
        """``p = sigmoid(logits)``: the "soft image" whose mean the paper samples factored models from."""
        return torch.sigmoid(self.logits(context))

    @torch.no_grad()
    def scored_map(self, context: Tensor) -> Tensor:
        """``P(y = 1)`` under the likelihood the model is scored with (:func:`scored_probability`)."""
        return scored_probability(self.logits(context), self.beta)

    @torch.no_grad()
    def sample(
        self,
        context: Tensor | None = None,
        *,
        num_samples: int | None = None,
        generator=None,
        probs: Tensor | None = None,
    ) -> Tensor:
        """Bernoulli maps from the soft map of the images ``context`` (or the given ``probs``, then the
        context may be ``None``); ``num_samples`` per row (rows ``i*n ... i*n+n-1`` for row ``i``);
        ``generator`` may be one per output row."""
        if probs is None:
            if context is None:
                raise ValueError("give the context (images), or probs from soft_map()")
            p = self.soft_map(context)
        else:
            p = probs
        if num_samples is not None:
            p = p.repeat_interleave(num_samples, dim=0)
        return (rand(p.shape, generator=generator, device=p.device, dtype=p.dtype) < p).float()
