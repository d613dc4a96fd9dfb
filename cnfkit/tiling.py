"""Tiled inference: any image size in bounded memory, without seams.

An image-to-image model whose output pixel depends only on inputs within ``radius`` pixels of it (its receptive
field: convolutions, squeezes, 1x1 maps; no global pooling) gives the same output on an image as on overlapping
tiles of it, when every tile carries at least ``radius`` pixels of real context around the core it contributes
(``margin``), and tile offsets are multiples of the model's downsampling factor (``multiple``: squeezes and pooling
then see the same pixel groups).  :func:`apply_tiled` runs such a model tile by tile and stitches the cores;
:func:`receptive_radius` measures the radius of a model by autograd on a random probe, so the margin is measured,
not guessed.  Peak memory is that of one tile of side ``tile + 2 * margin`` plus the outputs.

The image border is treated as the model's own zero padding of the tile (the image is padded to ``multiple`` at
the right and bottom, not to a square): within ``radius`` of the border, outputs can differ from a whole-image run
that padded differently; everywhere else a tiled run equals the whole-image run to float rounding
(``tests/test_tiling.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Tile", "apply_tiled", "receptive_radius", "tile_grid"]


@dataclass(frozen=True)
class Tile:
    """``core``: the output rows/columns this tile contributes, ``crop``: the input it reads (core + margin), both
    ``(y0, y1, x0, x1)`` in input pixels."""

    core: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def tile_grid(height: int, width: int, tile: int, margin: int, multiple: int = 1) -> list[Tile]:
    """Tiles covering a ``height x width`` image (both multiples of ``multiple``); ``tile`` and ``margin`` are
    rounded up to multiples of ``multiple``."""
    if min(height, width) < 1 or tile < 1 or margin < 0 or multiple < 1:
        raise ValueError(f"bad tiling: image {height}x{width}, tile {tile}, margin {margin}, multiple {multiple}")
    if height % multiple or width % multiple:
        raise ValueError(f"the image ({height}x{width}) must be padded to a multiple of {multiple} first")
    tile, margin = _round_up(tile, multiple), _round_up(margin, multiple)
    out = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(height, y0 + tile), min(width, x0 + tile)
            crop = (max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin))
            out.append(Tile((y0, y1, x0, x1), crop))
    return out


def apply_tiled(
    fn: Callable[[Tensor, int], dict[str, Tensor]],
    x: Tensor,
    *,
    tile: int,
    margin: int,
    multiple: int = 1,
    scale: int = 1,
    progress: Callable[[Iterator[Tile], int], Iterator[Tile]] | None = None,
) -> dict[str, Tensor]:
    """``fn(crop, index)`` on every tile of ``x`` (``[1, C, H, W]``, H and W multiples of ``multiple``) and the
    cores stitched: ``fn`` returns named outputs ``[N, C', h * scale, w * scale]`` for a crop of ``h x w`` (in the
    dtype they are to be kept in, e.g. uint8); ``index`` numbers the tiles (to seed each tile's noise)."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image [1, C, H, W], got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    tiles = tile_grid(h, w, tile, margin, multiple)
    it: Iterator[Tile] = iter(tiles)
    if progress is not None:
        it = progress(it, len(tiles))
    out: dict[str, Tensor] = {}
    for i, t in enumerate(it):
        (cy0, cy1, cx0, cx1), (y0, y1, x0, x1) = t.core, t.crop
        got = fn(x[..., y0:y1, x0:x1], i)
        for name, v in got.items():
            if v.shape[-2:] != ((y1 - y0) * scale, (x1 - x0) * scale):
                raise ValueError(f"output {name!r} of a {y1 - y0}x{x1 - x0} crop has shape {tuple(v.shape)}")
            if name not in out:
                out[name] = torch.empty((*v.shape[:-2], h * scale, w * scale), dtype=v.dtype)
            core = v[..., (cy0 - y0) * scale : (cy1 - y0) * scale, (cx0 - x0) * scale : (cx1 - x0) * scale]
            out[name][..., cy0 * scale : cy1 * scale, cx0 * scale : cx1 * scale] = core.cpu()
    return out


def receptive_radius(
    fn: Callable[[Tensor], Tensor], channels: int, *, scale: int = 1, multiple: int = 1, probe: int = 32,
    largest: int = 256, seed: int = 0,
) -> int:  # fmt: skip
    """How far (in input pixels, Chebyshev distance) the inputs that the output of one input pixel's position
    (``scale x scale`` output pixels) depends on reach: the nonzero gradient of the centre outputs with respect to a
    random probe image.  The probe grows (up to
    ``largest``) until the dependence no longer reaches its border.  ``fn`` must be differentiable and
    deterministic (e.g. a flow's sample at temperature 0)."""
    g = torch.Generator().manual_seed(seed)
    side = _round_up(probe, 2 * multiple)
    while True:
        x = torch.rand(1, channels, side, side, generator=g).requires_grad_(True)
        c = side // 2  # the centre input pixel, and the scale x scale output pixels it maps to
        with torch.enable_grad():
            y = fn(x)
            y[..., c * scale : (c + 1) * scale, c * scale : (c + 1) * scale].sum().backward()
        assert x.grad is not None
        hit = (x.grad.abs().sum((0, 1)) > 0).nonzero()
        radius = int((hit - c).abs().max().item()) if len(hit) else 0
        if radius < side // 2 - multiple or side >= largest:
            if radius >= side // 2 - multiple:
                raise ValueError(f"the receptive field reaches beyond a {largest}-pixel probe: tiling is not safe")
            return radius
        side *= 2
