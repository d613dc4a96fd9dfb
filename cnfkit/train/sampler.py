"""Mini-batches as a pure function of the step number, which is what makes resumption exact."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .checkpoint import tensor_digest
from .distributed import rank_and_world

__all__ = ["EpochSampler", "to_device"]


class EpochSampler:
    """Mini-batches from in-memory tensors, as a pure function of the step number.

    Epoch ``e`` visits the examples in the order ``randperm(n)`` drawn from a generator seeded with
    ``(seed, e)``; step ``s`` takes the ``s``-th slice of the concatenated epochs.  Under DDP each
    rank keeps every ``world``-th example of the global batch, so the global batch is the same
    whatever the number of processes.  Incomplete trailing batches are dropped.
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        seed: int = 0,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        tensors = tuple(tensors)
        if not tensors:
            raise ValueError("EpochSampler needs at least one tensor")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise ValueError(f"all tensors need the same first dimension, got {[t.shape[0] for t in tensors]}")
        if not 0 < batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
        r, w = rank_and_world()
        self.rank = r if rank is None else rank
        self.world = w if world is None else world
        if batch_size % self.world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {self.world} processes")
        self.tensors, self.n, self.batch_size, self.seed = tensors, n, batch_size, seed
        self.per_epoch = n // batch_size
        self._perm_epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> Tensor:
        epoch, pos = divmod(step, self.per_epoch)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
        idx = self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        return idx[self.rank :: self.world]

    def __call__(self, step: int) -> tuple[Tensor, ...]:
        idx = self.indices(step)
        return tuple(t[idx] for t in self.tensors)

    def fingerprint(self) -> str:
        """A digest of the data (every tensor's contents), the batch size and the seed; the same on every rank."""
        if not hasattr(self, "_fingerprint"):
            h = hashlib.sha256(f"EpochSampler batch={self.batch_size} seed={self.seed}".encode())
            tensor_digest(h, self.tensors)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, Tensor):
        batch = batch.to(device, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.dim() == 4 else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    return batch
