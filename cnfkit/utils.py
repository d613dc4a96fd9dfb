"""Small shared helpers: seeding, devices, parameter counts."""

from __future__ import annotations

import hashlib
import os
import random
import re
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "PhaseTimer",
    "default_device",
    "module_device",
    "num_parameters",
    "phase",
    "rand",
    "randn",
    "remove_stale_temporaries",
    "resolve_device",
    "row_generators",
    "seed_everything",
    "set_threads",
]


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
    """The current CUDA device (one per process under DDP) when CUDA is available, else CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None`` or ``"auto"``: :func:`default_device`; otherwise ``torch.device(device)``, checked to exist."""
    if device is None or device == "auto":
        return default_device()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def row_generators(seed: int, rows, stream: str = "") -> list[torch.Generator]:
    """One CPU generator per row, seeded from ``(seed, stream, row)`` alone.

    Passed as ``generator=`` to sampling and dequantization, row ``r`` gets the same noise whatever
    batch it is drawn in (alone, with other samples of its image, or with other images), so batched
    evaluation gives exactly the numbers of a one-at-a-time loop.  ``rows``: an int (rows ``0..n-1``)
    or an iterable of hashable row ids (e.g. ``(image, sample)`` pairs)."""
    ids = range(rows) if isinstance(rows, int) else rows
    out = []
    for r in ids:
        digest = hashlib.sha256(f"{seed}|{stream}|{r}".encode()).digest()
        out.append(torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1))
    return out


def _draw(fn, shape, generator, device, dtype) -> torch.Tensor:
    # draw where the generator lives, then move: a seeded CPU generator gives the same numbers
    # whichever device the model runs on
    if isinstance(generator, (list, tuple)):  # one generator per row (see row_generators)
        shape = tuple(shape)
        if not shape or len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} per-row generators for a draw of shape {shape}")
        rows = [fn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generator]
        return (torch.stack(rows) if rows else torch.empty(shape, dtype=dtype)).to(device)
    where = generator.device if generator is not None else device
    return fn(shape, generator=generator, device=where, dtype=dtype).to(device)


def randn(shape, *, generator=None, device=None, dtype=None) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn on ``generator``'s device (a list:
    one generator per row)."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape, *, generator=None, device=None, dtype=None) -> torch.Tensor:
    """Uniform [0, 1) noise of ``shape`` on ``device``, drawn on ``generator``'s device (a list:
    one generator per row)."""
    return _draw(torch.rand, shape, generator, device, dtype)


def num_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def remove_stale_temporaries(folder: Path, pattern: str) -> list[Path]:
    """Delete temporaries in ``folder`` left by killed writers: files matching the regex ``pattern``
    whose group 1 is the writer's pid, when that process no longer runs (or is this one).  Returns them."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    rx = re.compile(pattern)
    for p in folder.iterdir():
        m = rx.fullmatch(p.name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # that writer is still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # alive, owned by someone else
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


class PhaseTimer:
    """Wall time per phase of a run: ``with timer("training"): ...``; the drivers fill it, the results JSON shows it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0

    def summary(self, wall_time_s: float) -> dict[str, float]:
        """Each phase, and the rest of the wall time (tables, figures, data loading) as ``other``."""
        out = {k: round(v, 2) for k, v in self.seconds.items()}
        out["other"] = round(max(0.0, wall_time_s - sum(self.seconds.values())), 2)
        return out


def phase(timer: PhaseTimer | None, name: str):
    """``timer(name)``, or a no-op context when there is no timer."""
    return timer(name) if timer is not None else nullcontext()
