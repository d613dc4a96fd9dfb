"""MATLAB's ``imresize(img, scale, 'bicubic')``, antialiased, in torch.

Super-resolution benchmarks make their low-resolution inputs with MATLAB's bicubic ``imresize``
(Keys' cubic kernel with ``a = -0.5``; when shrinking, the kernel is stretched by ``1/scale`` to
antialias), which differs from ``torch.nn.functional.interpolate(mode="bicubic")`` (no antialiasing,
other boundary handling).  The algorithm, per dimension, as in MATLAB's ``contributions``:

* output pixel ``j`` (1-based) sits at input coordinate ``u = j / scale + (1 - 1 / scale) / 2``;
* it takes the ``ceil(width) + 2`` input pixels from ``floor(u - width / 2)`` on, with weights
  ``h(u - i)`` normalised to sum 1, where ``h(x) = scale * cubic(scale * x)`` and ``width = 4 / scale``
  when shrinking (``h = cubic``, ``width = 4`` otherwise);
* indices outside the image are mirrored (``1 2 ... n n ... 2 1``);
* dimensions are processed in order of increasing scale (rows first when equal).

Computation is in float64.  uint8 input follows MATLAB, whose output class is the input's after
*each* dimension: the intermediate image is rounded (half away from zero) and clipped to [0, 255]
after the first dimension as well as at the end.  Float input is never rounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["contributions", "cubic", "imresize"]


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with ``a = -0.5`` (support [-2, 2])."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return inner + outer


def contributions(in_len: int, out_len: int, scale: float, antialias: bool = True) -> tuple[Tensor, Tensor]:
    """``(weights [out_len, P], indices [out_len, P])`` (0-based) of the 1-D resampling."""
    width = 4.0
    stretch = scale < 1 and antialias
    if stretch:
        width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    p = math.ceil(width) + 2
    ind = left[:, None] + torch.arange(p, dtype=torch.float64)[None, :]
    d = u[:, None] - ind
    w = scale * cubic(scale * d) if stretch else cubic(d)
    w = w / w.sum(dim=1, keepdim=True)
    aux = torch.cat([torch.arange(in_len), torch.arange(in_len - 1, -1, -1)])
    ind = aux[torch.remainder(ind.long() - 1, 2 * in_len)]
    keep = (w != 0).any(dim=0)
    return w[:, keep], ind[:, keep]


def _resize_dim(img: Tensor, dim: int, out_len: int, scale: float, antialias: bool) -> Tensor:
    w, ind = contributions(img.shape[dim], out_len, scale, antialias)
    moved = img.movedim(dim, -1)  # [..., in_len]
    gathered = moved[..., ind]  # [..., out_len, P]
    return (gathered * w).sum(dim=-1).movedim(-1, dim)


def imresize(
    img: Tensor, scale: float | None = None, output_size: Sequence[int] | None = None, antialias: bool = True
) -> Tensor:
    """Resize the last two dimensions of ``img`` like MATLAB's ``imresize(img, scale, 'bicubic')``.

    ``img`` is ``[..., H, W]`` (e.g. ``[C, H, W]`` or ``[B, C, H, W]``), float or uint8.  Give either
    ``scale`` (output size ``ceil(scale * size)``, as MATLAB) or ``output_size``.
    """
    if img.dim() < 2:
        raise ValueError(f"imresize needs an image [..., H, W], got shape {tuple(img.shape)}")
    if (scale is None) == (output_size is None):
        raise ValueError("give exactly one of scale or output_size")
    h, w = img.shape[-2:]
    if min(h, w) < 1:
        raise ValueError(f"imresize needs a non-empty image, got shape {tuple(img.shape)}")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"scale must be a finite positive number, got {scale!r}")
        scales = (float(scale), float(scale))
        sizes: tuple[int, ...] = (math.ceil(scale * h), math.ceil(scale * w))
    else:
        assert output_size is not None  # exactly one of scale and output_size, checked above
        sizes = tuple(output_size)
        if len(sizes) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"output_size must be two positive ints (H, W), got {output_size!r}")
        scales = (sizes[0] / h, sizes[1] / w)
    integer = not img.is_floating_point()
    if integer and img.dtype != torch.uint8:
        raise ValueError(f"integer images must be uint8, got {img.dtype}")
    if not integer and not torch.isfinite(img).all():
        raise ValueError("imresize: the image contains NaN or Inf values")
    out = img.to(torch.float64)
    for d in sorted((0, 1), key=lambda i: scales[i]):
        out = _resize_dim(out, img.dim() - 2 + d, sizes[d], scales[d], antialias)
        if integer:  # MATLAB: a uint8 image stays uint8 after every dimension
            out = _round_uint8(out)
    return out.to(torch.uint8) if integer else out.to(img.dtype)


def _round_uint8(t: Tensor) -> Tensor:
    """MATLAB's conversion to uint8: round half away from zero, saturate to [0, 255] (values stay float64)."""
    return torch.floor(t + 0.5).clamp(0, 255)
