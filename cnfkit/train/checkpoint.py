"""The checkpoint format: atomic, checksummed, loadable without running code.

A checkpoint file is ``CNFKIT-CHECKPOINT 1 sha256=<hex>\n`` followed by a ``torch.save`` payload of
tensors and plain Python types only.  :func:`atomic_save` writes it to a temporary file in the same
folder and renames it over the target when complete (a crash mid-write never corrupts the last good
checkpoint); :func:`read_checkpoint` verifies the checksum and unpickles with ``weights_only=True``
(a file that carries pickled code is refused, never run).  Fingerprints (:func:`model_fingerprint`,
:func:`data_fingerprint`) identify the run a checkpoint belongs to; :func:`rng_state` /
:func:`set_rng_state` carry every random generator across a resumption.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .distributed import rank_and_world

__all__ = [
    "CheckpointError",
    "atomic_save",
    "check_fingerprints",
    "data_fingerprint",
    "load_run",
    "model_fingerprint",
    "read_checkpoint",
    "rng_state",
    "run_fingerprints",
    "set_rng_state",
    "tensor_digest",
]


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or is refused on reading (corrupt, unsafe, another run's)."""


def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain types (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_MAGIC = b"CNFKIT-CHECKPOINT 1 sha256="


def _open_for_write(path: Path):
    return open(path, "wb")


def atomic_save(obj: Any, path: Path) -> None:
    """Write a checkpoint: ``torch.save`` of ``obj`` behind a sha256 header, to a temporary file in the
    same folder that is renamed over ``path`` only when complete.  Failures raise :class:`CheckpointError`
    naming the path and the cause (e.g. no space left on device); the temporary never survives."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    header = _MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _open_for_write(tmp) as fh:
            fh.write(header)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        cause = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        need = f" (it needs {len(payload) / 2**20:.1f} MiB)" if exc.errno == errno.ENOSPC else ""
        raise CheckpointError(
            f"could not write checkpoint {path}: {cause}{need}; the previous checkpoint, if any, is intact"
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def read_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`atomic_save`: its sha256 is verified and it is unpickled with
    ``weights_only=True``, so only tensors and plain types load and no code in the file can run."""
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"\n")
    if not data.startswith(_MAGIC) or end < 0:
        raise CheckpointError(
            f"{path} is not a cnfkit checkpoint (no checksum header; older cnfkit versions wrote none): "
            "refusing to load it. Delete it (or choose another checkpoint directory) and train again"
        )
    expected, payload = data[len(_MAGIC) : end].decode(errors="replace"), data[end + 1 :]
    if hashlib.sha256(payload).hexdigest() != expected:
        raise CheckpointError(f"checkpoint {path} is corrupt (sha256 mismatch): delete it and resume from scratch")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain Python types; it was refused "
            f"unopened because loading it could run code ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from exc


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def model_fingerprint(model: nn.Module) -> str:
    """A digest of the model's structure (its ``repr``, which names layer types, sizes and options such
    as the coupling scale) and of every parameter and buffer's name, shape and dtype."""
    shapes = [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]
    return _digest([repr(model), shapes])


def tensor_digest(h, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"{tuple(obj.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            tensor_digest(h, o)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            h.update(str(k).encode())
            tensor_digest(h, obj[k])
    else:
        h.update(repr(obj).encode())


def data_fingerprint(batches: Callable[[int], Any]) -> str:
    """``batches.fingerprint()`` when it has one (e.g. :class:`EpochSampler`), else a digest of the first two
    batches."""
    if hasattr(batches, "fingerprint"):
        return batches.fingerprint()
    h = hashlib.sha256()
    for step in (0, 1):
        tensor_digest(h, batches(step))
    return h.hexdigest()[:16]


_FINGERPRINT_PARTS = ("config", "model", "data", "user")


def check_fingerprints(path: Path, stored: dict[str, Any], now: dict[str, Any]) -> None:
    """Refuse (:class:`CheckpointError`) a checkpoint at ``path`` whose fingerprints differ from this run's,
    saying which differ: training config, model, data or the caller's run fingerprint."""
    differs = [k for k in _FINGERPRINT_PARTS if stored.get(k) != now[k]]
    if not differs:
        return
    detail = {
        "config": f"training configuration (checkpoint: {stored.get('config')}; now: {now['config']})",
        "model": "model (its structure, options or parameter shapes)",
        "data": "data (the training examples, batch size or sampler seed)",
        "user": f"run fingerprint (checkpoint: {stored.get('user')}; now: {now['user']})",
    }
    raise CheckpointError(
        f"checkpoint {path} belongs to another run: its "
        + "; ".join(detail[k] for k in differs)
        + " differ(s) from this one. Delete it or choose another checkpoint_dir"
    )


def run_fingerprints(
    config: dict[str, Any], model: nn.Module, batches: Callable[[int], Any], user: Any
) -> dict[str, Any]:
    """What identifies a training run: its configuration, the model's structure, the data (gathered from every
    rank under DDP, one entry when all ranks agree) and the caller's fingerprint, as JSON-comparable values."""
    data: list[Any] = [data_fingerprint(batches)]
    _, world = rank_and_world()
    if world > 1:
        data = [None] * world
        dist.all_gather_object(data, data_fingerprint(batches))
    if len(set(data)) == 1:  # the same data on every rank (e.g. an EpochSampler): independent of the world size
        data = data[:1]
    return {
        "config": json.loads(json.dumps(config, default=repr)),
        "model": model_fingerprint(model),
        "data": data,
        "user": json.loads(json.dumps(user, sort_keys=True, default=repr)),
    }


def load_run(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, fingerprints: dict[str, Any]
) -> dict[str, Any]:
    """Read the checkpoint at ``path``, refuse another run's (:func:`check_fingerprints`), and load the model's
    and optimizer's state from it; returns the checkpoint (step, history, wall time, RNG states)."""
    # read onto the CPU whatever the run's device: RNG states must stay CPU tensors, and load_state_dict copies
    # parameters and optimizer state onto the model's device (a checkpoint written on a GPU resumes on a CPU and back)
    ckpt = read_checkpoint(path, map_location="cpu")
    check_fingerprints(path, ckpt.get("fingerprints", {}), fingerprints)
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"checkpoint {path} belongs to another run: its parameters do not fit this model "
            f"({str(exc).splitlines()[0][:300]}). Delete it or choose another checkpoint_dir"
        ) from exc
    return ckpt
