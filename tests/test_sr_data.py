"""Super-resolution data helpers (real test sets only when the mirror is present)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnfkit.data import chroma_detail_ratio, downscale_images, hr_lr_pair, load_sr_images, patch_pairs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_pairs_and_patches_on_synthetic_images():
    g = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, 41, 50), generator=g, dtype=torch.uint8),
        torch.randint(0, 256, (3, 20, 20), generator=g, dtype=torch.uint8),
    ]
    hr, lr = hr_lr_pair(images[0])
    assert hr.shape == (3, 40, 50) and lr.shape == (3, 20, 25) and lr.dtype == torch.uint8
    hr, lr = patch_pairs(images, 32, 5, g)  # only the first image is large enough
    assert hr.shape == (5, 3, 32, 32) and lr.shape == (5, 3, 16, 16)
    with pytest.raises(ValueError, match="at least"):
        patch_pairs(images[1:], 32, 1, g)
    with pytest.raises(ValueError, match="divisible"):
        patch_pairs(images, 33, 1, g)
    with pytest.raises(ValueError, match="uint8"):
        hr_lr_pair(images[0].float())


def test_downscale_images():
    im = torch.randint(0, 256, (3, 40, 61), dtype=torch.uint8)
    assert downscale_images([im], 1)[0] is im
    (small,) = downscale_images([im], 4)
    assert small.shape == (3, 10, 16) and small.dtype == torch.uint8
    with pytest.raises(ValueError, match=">= 1"):
        downscale_images([im], 0.5)


def test_chroma_detail_ratio_known_answers():
    g = torch.Generator().manual_seed(0)
    # i.i.d. RGB noise: every channel's detail has the same spectrum, so the ratio is the ratio of the
    # BT.601 variances, (|Cb|^2 + |Cr|^2) / |Y|^2 of the coefficient rows = 1.8347
    noise = torch.randint(64, 192, (3, 256, 256), generator=g, dtype=torch.uint8)
    assert chroma_detail_ratio(noise) == pytest.approx(1.8347, rel=0.03)
    grey = noise[:1].expand(3, -1, -1).contiguous()
    assert chroma_detail_ratio(grey) == pytest.approx(0.0, abs=1e-12)
    # JPEG's 4:2:0 chroma subsampling removes most colour detail
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(noise.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=100, subsampling=2)
    jpeg = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1)
    assert chroma_detail_ratio(jpeg) < 0.05 * chroma_detail_ratio(noise)
    with pytest.raises(ValueError, match="RGB"):
        chroma_detail_ratio(noise[:2])


@pytest.mark.skipif(not SHARED.is_dir(), reason="offline mirror ../shared/data not present")
def test_real_test_sets():
    images, names = load_sr_images("Set5", mirror=SHARED)
    assert len(images) == 5 and names[0] == "HR/baby.png" and images[0].shape == (3, 512, 512)
    images, _ = load_sr_images("Set14", mirror=SHARED)
    assert len(images) == 14 and all(im.shape[0] == 3 for im in images)  # the grayscale one is RGB too
    with pytest.raises(ValueError, match="unknown SR dataset"):
        load_sr_images("DIV2K")
