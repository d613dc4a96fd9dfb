"""MNIST and Fashion-MNIST from the original idx .gz files (LeCun et al.; Xiao, Rasul & Vollgraf)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from .store import DatasetError, dataset_dir

__all__ = ["MNIST_LIKE", "load_mnist", "read_idx"]

MNIST_LIKE = ("MNIST", "FashionMNIST")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_DTYPES: dict[int, npt.DTypeLike] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an idx file (optionally gzipped): magic ``0 0 dtype ndim``, big-endian dims, data."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(
            f"{path} is not a readable (gzipped) idx file ({exc}): delete it and fetch it again"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: {len(raw)} bytes, expected {expected} for an idx array of shape {dims}")
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)


def load_mnist(name: str = "MNIST", split: str = "train", **dataset_kwargs) -> tuple[Tensor, Tensor]:
    """``(images uint8 [N, 28, 28], labels int64 [N])`` of MNIST or FashionMNIST.

    The files come from :func:`cnfkit.data.dataset_dir` (offline mirror, data root or a
    checksummed download).
    """
    if name not in MNIST_LIKE:
        raise ValueError(f"unknown dataset {name!r}; choose from {MNIST_LIKE}")
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = dataset_dir(name, **dataset_kwargs)
    images = read_idx(folder / _FILES[split][0])
    labels = read_idx(folder / _FILES[split][1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{name}/{split}: images {images.shape} and labels {labels.shape} do not match")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
