"""Shape helpers shared by the image experiments."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["crop_to", "pad_to_multiple"]


def pad_to_multiple(
    img: Tensor, multiple: int, *, square: bool = False, value: float = 0.0
) -> tuple[Tensor, tuple[int, int]]:
    """Zero-pad ``[..., H, W]`` at the right and bottom to a multiple of ``multiple`` (and square).

    Winkler et al. pad test images "with zeros at right and bottom so that they are square and
    compatible with squeeze layers".  Returns the padded tensor and the original ``(H, W)`` for
    :func:`crop_to`.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if img.dim() < 2:
        raise ValueError(f"expected an image [..., H, W], got shape {tuple(img.shape)}")
    h, w = img.shape[-2:]
    th, tw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if square:
        th = tw = max(th, tw)
    return F.pad(img, (0, tw - w, 0, th - h), value=value), (h, w)


def crop_to(img: Tensor, size: tuple[int, int]) -> Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``size``."""
    return img[..., : size[0], : size[1]]
