"""DRIVE retinal-vessel segmentation (Staal et al. 2004): loading and augmentation.

The original ``DRIVE.zip`` layout: 20 training images (21-40) and 20 test images (01-20), RGB TIFF
of 565x584, first-observer vessel annotations for both splits, second-observer annotations for the
test split (the "Human" row of Winkler et al.'s Table 3) and field-of-view (FOV) masks.  DRIVE's
terms forbid redistribution: nothing loaded here may be written into the repository.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .store import dataset_dir

__all__ = ["DriveSplit", "affine_matrices", "check_segmentation_batch", "load_drive", "random_affine"]


@dataclass
class DriveSplit:
    """Images ``[N, 3, H, W]`` float in [0, 1]; labels, masks (and ``second``) ``[N, 1, H, W]`` in {0, 1}."""

    images: Tensor
    labels: Tensor
    masks: Tensor
    ids: list[str]
    second: Tensor | None = None  # second observer (test split only)

    def __len__(self) -> int:
        return self.images.shape[0]


def _read(path: Path, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert(mode))


def _binary(a: np.ndarray) -> np.ndarray:
    """Annotations are 0/255 (1st manual, masks) or 3/253 palette values (2nd manual): threshold at 127."""
    return (a > 127).astype(np.float32)


def check_segmentation_batch(images: Tensor, labels: Tensor, masks: Tensor | None = None) -> None:
    """Clear errors for the mistakes that would otherwise give silently wrong results."""
    if images.dim() != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    if (
        labels.dim() != 4
        or labels.shape[1] != 1
        or labels.shape[0] != images.shape[0]
        or labels.shape[2:] != images.shape[2:]
    ):
        raise ValueError(
            f"labels must be [N, 1, H, W] matching images {tuple(images.shape)}, got {tuple(labels.shape)}"
        )
    if ((labels != 0) & (labels != 1)).any():
        raise ValueError("labels must be binary (0 or 1)")
    if masks is None:
        raise ValueError("a field-of-view mask is required for every image")
    if masks.shape != labels.shape:
        raise ValueError(f"masks must have the labels' shape {tuple(labels.shape)}, got {tuple(masks.shape)}")
    if ((masks != 0) & (masks != 1)).any():
        raise ValueError("masks must be binary (0 or 1)")


def load_drive(split: str = "training", **dataset_kwargs) -> DriveSplit:
    """Load DRIVE's ``training`` or ``test`` split (see :func:`cnfkit.data.dataset_dir` for where from)."""
    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test', got {split!r}")
    root = dataset_dir("DRIVE", **dataset_kwargs) / split
    numbers = range(21, 41) if split == "training" else range(1, 21)
    images, labels, masks, second, ids = [], [], [], [], []
    for n in numbers:
        nn_ = f"{n:02d}"
        images.append(_read(root / "images" / f"{nn_}_{split}.tif", "RGB"))
        labels.append(_binary(_read(root / "1st_manual" / f"{nn_}_manual1.gif", "L")))
        masks.append(_binary(_read(root / "mask" / f"{nn_}_{split}_mask.gif", "L")))
        if split == "test":
            second.append(_binary(_read(root / "2nd_manual" / f"{nn_}_manual2.gif", "L")))
        ids.append(nn_)
    out = DriveSplit(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0,
        labels=torch.from_numpy(np.stack(labels))[:, None],
        masks=torch.from_numpy(np.stack(masks))[:, None],
        ids=ids,
        second=torch.from_numpy(np.stack(second))[:, None] if second else None,
    )
    check_segmentation_batch(out.images, out.labels, out.masks)
    return out


def affine_matrices(
    n: int,
    generator: torch.Generator | None = None,
    rotation_deg: float = 360.0,
    scale: tuple[float, float] = (0.8, 1.2),
    shear_std_deg: float = 10.0,
) -> Tensor:
    """``[n, 2, 3]`` random affine maps (normalised coordinates): rotation uniform in
    ``[0, rotation_deg)``, isotropic scale uniform in ``scale``, shear ~ N(0, shear_std_deg)."""
    theta = torch.rand(n, generator=generator) * math.radians(rotation_deg)
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    shear = torch.randn(n, generator=generator) * math.radians(shear_std_deg)
    cos, sin, tan = torch.cos(theta), torch.sin(theta), torch.tan(shear)
    # A = R(theta) @ Shear_x(shear) / s  (grid_sample maps output coordinates to input coordinates)
    a = (
        torch.stack([torch.stack([cos, cos * tan - sin], -1), torch.stack([sin, sin * tan + cos], -1)], -2)
        / s[:, None, None]
    )
    return torch.cat([a, torch.zeros(n, 2, 1)], dim=2)


def random_affine(
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    generator: torch.Generator | None = None,
    matrices: Tensor | None = None,
    **kwargs,
) -> tuple[Tensor, Tensor, Tensor]:
    """Apply the *same* random affine map to each image, its label and its mask (Winkler et al.'s
    augmentation: 360-degree rotation, scaling in [0.8, 1.2], shear ~ N(0, 10 degrees)).

    Images are resampled bilinearly; labels and masks by nearest neighbour, so they stay binary.
    Pixels mapped from outside the image become 0 (background, outside the FOV).
    """
    check_segmentation_batch(images, labels, masks)
    a = affine_matrices(images.shape[0], generator, **kwargs) if matrices is None else matrices
    grid = F.affine_grid(a.to(images), list(images.shape), align_corners=False)
    img = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    lab = F.grid_sample(labels.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    msk = F.grid_sample(masks.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return img, lab, msk
