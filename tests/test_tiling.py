"""Tiled inference equals whole-image inference (the apply CLI's bounded-memory path)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnfkit.experiments import drive
from cnfkit.experiments import superres as sr
from cnfkit.models.superres import _lr_input
from cnfkit.tiling import apply_tiled, receptive_radius, tile_grid

from .helpers import randomize


def test_tile_cores_partition_the_image_and_crops_stay_inside():
    tiles = tile_grid(40, 24, tile=12, margin=5, multiple=4)  # rounded up: tile 12, margin 8
    seen = torch.zeros(40, 24, dtype=torch.int64)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        seen[y0:y1, x0:x1] += 1
        cy0, cy1, cx0, cx1 = t.crop
        assert 0 <= cy0 <= y0 and y1 <= cy1 <= 40 and 0 <= cx0 <= x0 and x1 <= cx1 <= 24
        assert all(v % 4 == 0 for v in t.crop)
        assert y0 - cy0 in (0, 8) or cy0 == 0
    assert torch.equal(seen, torch.ones_like(seen))
    with pytest.raises(ValueError, match="multiple of 4"):
        tile_grid(41, 24, tile=12, margin=5, multiple=4)


def test_receptive_radius_of_stacked_convolutions():
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(2, 2, 3, padding=1) for _ in range(3)])
    assert receptive_radius(net, 2) == 3
    assert receptive_radius(nn.Sequential(nn.Conv2d(2, 2, 5, padding=2), nn.Conv2d(2, 2, 3, padding=1)), 2) == 3


def _check_tiled_equals_whole(fn, x, radius, multiple, scale):
    whole = fn(x, 0)["out"]
    tiled = apply_tiled(fn, x, tile=16, margin=radius, multiple=multiple, scale=scale)["out"]
    assert len(tile_grid(x.shape[-2], x.shape[-1], 16, radius, multiple)) > 1
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-4)
    # a margin that is too small shows seams: the test can fail
    short = apply_tiled(fn, x, tile=16, margin=0, multiple=multiple, scale=scale)["out"]
    assert (short - whole).abs().max() > 1e-3


def test_tiled_super_resolution_equals_the_whole_image():
    torch.manual_seed(0)
    cfg = sr.config("smoke")
    cnf = randomize(sr.build_models(cfg)["cnf"], std=0.05).eval()
    multiple = 2**cfg.levels // 2

    def zero_noise(x):  # the flow's sample at temperature 0: a deterministic function of the LR image
        return cnf.flow._sample(_lr_input(x), num_samples=None, temperature=0.0, generator=None)[0]

    radius = receptive_radius(zero_noise, 3, scale=2, multiple=multiple)
    assert radius > 0
    x = 255 * torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _check_tiled_equals_whole(lambda c, i: {"out": zero_noise(c)}, x, radius, multiple, 2)


def test_the_segmentation_model_cannot_be_tiled_and_the_measurement_says_so():
    """DRIVE's couplings and conditioner use InstanceNorm (the paper's Tables 4 and 7): every output pixel depends on
    the whole image, so `segment` runs whole images (bounded by --max-pixels) instead of tiles."""
    torch.manual_seed(0)
    model = randomize(drive.build_model("cnf", drive.config("smoke")), std=0.05).eval()

    def zero_noise(x):
        return model.flow._sample(x, num_samples=None, temperature=0.0, generator=None)[0]

    with pytest.raises(ValueError, match="tiling is not safe"):
        receptive_radius(zero_noise, 3, multiple=4, largest=64)
