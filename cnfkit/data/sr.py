"""Super-resolution data: HR images, MATLAB-bicubic LR inputs, training patches.

* Test sets Set5, Set14, BSD100 (``<name>/HR/*.png``); the 2x LR input of an image is
  ``imresize(hr, 0.5)`` of the HR image cropped to even size (MATLAB's antialiased bicubic, as in
  Wang et al. 2018 and Winkler et al.).
* Training: ImageNet32/64 (Chrabaszcz et al. 2017) in the paper.  It is not registered here; the
  stand-in is BSDS500 (``BSDS500_train_test``, 400 images disjoint from BSD100), first shrunk by a
  factor (:func:`downscale_images`) and then cut into random 32x32 or 64x64 HR patches, each with its
  own 16x16 / 32x32 LR patch, stated wherever it is used.

Why shrink first: the BSDS500 files are JPEGs with 4:2:0 chroma subsampling, so at their own
resolution the colour channels carry no detail beyond half resolution.  A CNF trained on such
patches learns that, given the LR image, HR colour detail is (almost) deterministic, and assigns
images whose colour does vary at full resolution (Set14's baboon, lenna, pepper; Set5's head) tens
of bits per dimension.  ImageNet32/64 are box-downsampled from full-size photos, which removes the
subsampling; shrinking BSDS500 with MATLAB's bicubic does the same here.
:func:`chroma_detail_ratio` measures the effect.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .imresize import imresize
from .store import REGISTRY, dataset_dir

__all__ = [
    "SR_TEST_SETS",
    "chroma_detail_ratio",
    "downscale_images",
    "hr_lr_pair",
    "load_sr_images",
    "patch_pairs",
    "random_patches",
]

SR_TEST_SETS = ("Set5", "Set14", "BSD100")


def load_sr_images(name: str, subset: str | None = None, **dataset_kwargs) -> tuple[list[Tensor], list[str]]:
    """RGB uint8 images ``[3, H, W]`` and their file names (grayscale images are replicated to RGB).

    ``name`` is Set5, Set14, BSD100 (their ``HR/`` PNGs) or BSDS500_train_test (``subset`` train/test/None).
    """
    from PIL import Image

    if name in SR_TEST_SETS:
        prefix = "HR/"
    elif name == "BSDS500_train_test":
        prefix = "" if subset is None else f"{subset}/"
        if subset not in (None, "train", "test"):
            raise ValueError(f"subset must be train, test or None, got {subset!r}")
    else:
        raise ValueError(f"unknown SR dataset {name!r}; choose from {SR_TEST_SETS + ('BSDS500_train_test',)}")
    root = dataset_dir(name, **dataset_kwargs)
    paths = sorted(
        f.path for f in REGISTRY[name].files if f.path.startswith(prefix) and f.path.lower().endswith((".png", ".jpg"))
    )
    images = []
    for p in paths:
        with Image.open(root / p) as im:
            images.append(torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous())
    return images, paths


def hr_lr_pair(hr: Tensor, scale: int = 2) -> tuple[Tensor, Tensor]:
    """Crop ``hr`` (uint8 ``[3, H, W]``) to a multiple of ``scale`` and make its LR input."""
    if hr.dtype != torch.uint8 or hr.dim() != 3 or hr.shape[0] != 3:
        raise ValueError(f"expected an RGB uint8 image [3, H, W], got {hr.dtype} {tuple(hr.shape)}")
    h, w = (hr.shape[1] // scale) * scale, (hr.shape[2] // scale) * scale
    hr = hr[:, :h, :w]
    return hr, imresize(hr, 1.0 / scale)


def downscale_images(images: list[Tensor], factor: float) -> list[Tensor]:
    """Shrink uint8 images ``[3, H, W]`` by ``factor`` >= 1 with MATLAB's antialiased bicubic
    (``factor`` 1 returns the list unchanged)."""
    if factor < 1:
        raise ValueError(f"downscale factor must be >= 1, got {factor}")
    return list(images) if factor == 1 else [imresize(im, 1.0 / factor) for im in images]


def chroma_detail_ratio(image: Tensor, border: int = 4) -> float:
    """How much of an RGB image's fine detail is colour: the energy of the chroma (Cb, Cr, BT.601)
    lost by a 2x MATLAB-bicubic down- and up-sampling over that of the luma (Y).

    0 for a grey image; about 0.002 for 4:2:0-subsampled JPEGs at their own resolution; 0.4-0.7 for
    images with full-resolution colour noise.  ``border`` pixels are ignored on every side.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an RGB image [3, H, W], got {tuple(image.shape)}")
    h, w = (image.shape[1] // 2) * 2, (image.shape[2] // 2) * 2
    if min(h, w) <= 2 * border + 2:
        raise ValueError(f"image {tuple(image.shape[1:])} is too small for a border of {border}")
    r, g, b = image[:, :h, :w].double()
    ycc = torch.stack(
        [
            0.299 * r + 0.587 * g + 0.114 * b,
            -0.168736 * r - 0.331264 * g + 0.5 * b,
            0.5 * r - 0.418688 * g - 0.081312 * b,
        ]
    )
    detail = ycc - imresize(imresize(ycc, 0.5), output_size=(h, w))
    energy = detail[:, border:-border, border:-border].pow(2).mean((1, 2))
    return float((energy[1] + energy[2]) / energy[0]) if energy[0] > 0 else 0.0


def random_patches(images: list[Tensor], size: int, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` random ``size x size`` crops (uint8 ``[n, 3, size, size]``) from images at least that large."""
    usable = [im for im in images if im.shape[1] >= size and im.shape[2] >= size]
    if not usable:
        raise ValueError(f"no image is at least {size}x{size}")
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    which = torch.randint(0, len(usable), (n,), generator=generator)
    for k, i in enumerate(which.tolist()):
        im = usable[i]
        y = int(torch.randint(0, im.shape[1] - size + 1, (1,), generator=generator))
        x = int(torch.randint(0, im.shape[2] - size + 1, (1,), generator=generator))
        out[k] = im[:, y : y + size, x : x + size]
    return out


def patch_pairs(
    images: list[Tensor], size: int, n: int, generator: torch.Generator | None = None, scale: int = 2
) -> tuple[Tensor, Tensor]:
    """``(hr [n, 3, size, size], lr [n, 3, size/scale, size/scale])`` uint8 training pairs."""
    if size % scale:
        raise ValueError(f"patch size {size} must be divisible by the scale {scale}")
    hr = random_patches(images, size, n, generator)
    return hr, imresize(hr, 1.0 / scale)
