"""Small shared helpers: seeding, devices, parameter counts."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

__all__ = ["seed_everything", "default_device", "num_parameters", "set_threads"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA).  Call it explicitly; nothing seeds at import."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> int:
    """Fix torch's intra-op thread count (deterministic CPU results need a fixed count).

    ``None`` reads ``CNFKIT_THREADS`` or keeps torch's default.  Returns the count in use.
    """
    if n is None and "CNFKIT_THREADS" in os.environ:
        n = int(os.environ["CNFKIT_THREADS"])
    if n is not None:
        if n < 1:
            raise ValueError(f"thread count must be >= 1, got {n}")
        torch.set_num_threads(n)
    return torch.get_num_threads()


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def num_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
