"""One trainer for every experiment.

``Trainer(model, loss_fn, batches, ...).fit()`` runs Adam for a fixed number of steps with tqdm
progress, periodic evaluation, optional gradient clipping and atomic checkpoints, and resumes from
its last checkpoint exactly (same parameters as an uninterrupted run).

Design decisions that make exact resumption possible:

* ``batches`` is a function of the step number, ``batches(step) -> batch`` (e.g.
  :class:`EpochSampler`): which examples a step sees depends on nothing but the step.
* Randomness inside ``loss_fn`` (dequantization noise, ...) comes from torch's global RNG, whose
  state (with NumPy's, Python's and CUDA's) is saved in every checkpoint.
* Checkpoints hold model, optimiser, RNG states, step and history: tensors and plain Python types
  only, loaded with ``torch.load(weights_only=True)`` (a file that carries pickled code is refused,
  never run).  Each file starts with a header holding the sha256 of its payload (a corrupt file is
  refused), is written to a temporary file and renamed (a crash mid-write never corrupts the last
  good checkpoint; stale temporaries of killed writers are removed on the next start), and records
  fingerprints of the model (its structure and parameter shapes), the data (the batches) and the
  training configuration: resuming into a different run is refused with a message that says what
  differs.

Failures name the step: a non-finite loss or gradient norm raises :class:`NonFiniteError`, any other
error inside a step :class:`TrainingError` (the original exception chained).  SIGINT (Ctrl-C, a
Jupyter interrupt), SIGTERM and SIGUSR1 (what schedulers send before pre-empting a job) finish the
current step, write a checkpoint and raise :class:`TrainingInterrupted`; ``fit()`` again resumes.
Under ``torchrun`` (``init_distributed``) the model is wrapped in DistributedDataParallel (gloo on
CPU, nccl on CUDA); rank 0 writes checkpoints and shows progress.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import pickle
import random
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .profiles import Config, ProfileError
from .results import phase
from .utils import remove_stale_temporaries, resolve_device

__all__ = [
    "CheckpointError",
    "EpochSampler",
    "NonFiniteError",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "atomic_save",
    "init_distributed",
    "model_fingerprint",
    "rank_and_world",
    "read_checkpoint",
    "remove_stale_temporaries",
    "train_steps",
]


class TrainingError(RuntimeError):
    """Training failed at a named step (the original error is chained as ``__cause__``)."""


class NonFiniteError(TrainingError, FloatingPointError):
    """The loss or a gradient became NaN/Inf."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal (SIGINT, SIGTERM, SIGUSR1) after checkpointing; ``fit()`` resumes."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or is refused on reading (corrupt, unsafe, another run's)."""


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation settings shared by every experiment (numbers differ per profile)."""

    steps: int
    lr: float = 1e-3
    eval_every: int = 0  # 0: evaluate only at the end
    checkpoint_every: int = 0  # 0: checkpoint only at the end (and on interruption)
    grad_clip: float | None = None
    log_every: int = 10
    seed: int = 0
    # the fast path, opt-in (measured per experiment; see the README's Speed section)
    channels_last: bool = False  # model and 4-D batches in channels-last memory format
    compile: bool = False  # torch.compile the model; falls back to eager (with a warning) if compilation fails
    compile_backend: str = "inductor"
    autocast: str = "none"  # "bf16": networks in bfloat16 autocast; bijections, log-determinants, priors, losses stay float32
    nonnegative = frozenset({"eval_every", "checkpoint_every", "seed"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.autocast not in ("none", "bf16"):
            raise ProfileError(f"TrainConfig.autocast must be 'none' or 'bf16', got {self.autocast!r}")


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int, torch.device]:
    """Initialise the process group from torchrun's environment (no-op without it).

    Returns ``(rank, world_size, device)``; uses nccl with one GPU per local rank when CUDA is
    available, gloo on CPU otherwise.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return dist.get_rank(), dist.get_world_size(), device


class EpochSampler:
    """Mini-batches from in-memory tensors, as a pure function of the step number.

    Epoch ``e`` visits the examples in the order ``randperm(n)`` drawn from a generator seeded with
    ``(seed, e)``; step ``s`` takes the ``s``-th slice of the concatenated epochs.  Under DDP each
    rank keeps every ``world``-th example of the global batch, so the global batch is the same
    whatever the number of processes.  Incomplete trailing batches are dropped.
    """

    def __init__(self, tensors: Sequence[Tensor], batch_size: int, seed: int = 0, rank: int | None = None, world: int | None = None) -> None:
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
            _tensor_digest(h, self.tensors)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def _to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    if isinstance(batch, Tensor):
        batch = batch.to(device, non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if channels_last and batch.dim() == 4 else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, channels_last) for k, v in batch.items()}
    return batch


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- checkpoint files ---------------------------------------------------------------------------

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
        raise CheckpointError(f"could not write checkpoint {path}: {cause}{need}; the previous checkpoint, if any, is intact") from exc
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


def _tensor_digest(h, obj: Any) -> None:
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"{tuple(obj.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _tensor_digest(h, o)
    elif isinstance(obj, dict):
        for k in sorted(obj):
            h.update(str(k).encode())
            _tensor_digest(h, obj[k])
    else:
        h.update(repr(obj).encode())


def data_fingerprint(batches: Callable[[int], Any]) -> str:
    """``batches.fingerprint()`` when it has one (e.g. :class:`EpochSampler`), else a digest of the first two batches."""
    if hasattr(batches, "fingerprint"):
        return batches.fingerprint()
    h = hashlib.sha256()
    for step in (0, 1):
        _tensor_digest(h, batches(step))
    return h.hexdigest()[:16]


LossFn = Callable[[nn.Module, Any], Tensor]


class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, batch)`` with Adam.

    Args:
        model: the module; ``loss_fn`` receives it (wrapped in DDP / ``torch.compile`` when asked),
            so the loss should go through ``model(...)`` (for cnfkit flows: ``-model(y, x).mean()``).
        loss_fn: returns a scalar tensor.
        batches: ``batches(step) -> batch`` (see :class:`EpochSampler`); moved to ``device``.
        config: :class:`TrainConfig`.
        eval_fn: ``eval_fn(model) -> dict of floats``, run without gradients in eval mode every
            ``config.eval_every`` steps and at the end.
        checkpoint_dir: where ``last.pt`` lives; ``None`` disables checkpoints and resumption.
        callbacks: ``cb(trainer, step, metrics)`` after every step (``step`` counts completed steps).
        compile: wrap the model in ``torch.compile``.
        progress: show a tqdm bar (rank 0 only).
        fingerprint: anything JSON-serialisable that identifies the run beyond the model, data and
            config (e.g. an experiment configuration); stored and checked on resume like them.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        batches: Callable[[int], Any],
        config: TrainConfig,
        *,
        eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        callbacks: Sequence[Callable[[Trainer, int, dict[str, float]], None]] = (),
        compile: bool = False,
        progress: bool = True,
        desc: str = "train",
        fingerprint: Any = None,
    ) -> None:
        self.rank, self.world = rank_and_world()
        self.user_fingerprint = fingerprint
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # documented, missing from the stubs
        self.loss_fn, self.batches, self.config, self.eval_fn = loss_fn, batches, config, eval_fn
        self.checkpoint_path = None if checkpoint_dir is None else Path(checkpoint_dir) / "last.pt"
        self.callbacks, self.compile, self.progress, self.desc = tuple(callbacks), compile or config.compile, progress, desc
        self._compiled_ok = False
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.wall_time = 0.0
        self._runner: Any = None  # built by fit(): the model, wrapped by DDP and / or torch.compile
        self._stop_requested: str | bool = False
        self._between_steps = True

    # --- checkpoints -------------------------------------------------------------------------
    def fingerprints(self) -> dict[str, Any]:
        """What identifies this run: training config, model structure, data (per rank), user fingerprint."""
        if getattr(self, "_fingerprints", None) is None:
            data: list[Any] = [data_fingerprint(self.batches)]
            if self.world > 1:
                data = [None] * self.world
                dist.all_gather_object(data, data_fingerprint(self.batches))
            if len(set(data)) == 1:  # the same data on every rank (e.g. an EpochSampler): independent of the world size
                data = data[:1]
            self._fingerprints = {
                "config": json.loads(json.dumps(self.config.to_dict(), default=repr)),
                "model": model_fingerprint(self.model),
                "data": data,
                "user": json.loads(json.dumps(self.user_fingerprint, sort_keys=True, default=repr)),
            }
        return self._fingerprints

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": self.history,
            "wall_time": self.wall_time,
            "config": self.config.to_dict(),
            "fingerprints": self.fingerprints(),
        }

    def save_checkpoint(self) -> None:
        if self.checkpoint_path is None:
            return
        rngs: list[Any] = [_rng_state()]
        if self.world > 1:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, _rng_state())
        if self.rank == 0:
            atomic_save({**self.state_dict(), "rng": rngs}, self.checkpoint_path)
        if self.world > 1:
            dist.barrier()

    def load_checkpoint(self) -> bool:
        """Restore from ``last.pt`` if it exists; returns whether it did.

        Refuses (:class:`CheckpointError`) a corrupt or unsafe file and a checkpoint of another run
        (other training config, model, data or user fingerprint), saying what differs."""
        if self.checkpoint_path is None:
            return False
        if self.rank == 0:
            remove_stale_temporaries(self.checkpoint_path.parent, r"\." + re.escape(self.checkpoint_path.name) + r"\.(\d+)\.tmp")
        if not self.checkpoint_path.exists():
            return False
        ckpt = read_checkpoint(self.checkpoint_path, map_location=self.device)
        now = self.fingerprints()
        stored = ckpt.get("fingerprints", {})
        differs = [k for k in ("config", "model", "data", "user") if stored.get(k) != now[k]]
        if differs:
            detail = {
                "config": f"training configuration (checkpoint: {stored.get('config')}; now: {now['config']})",
                "model": "model (its structure, options or parameter shapes)",
                "data": "data (the training examples, batch size or sampler seed)",
                "user": f"run fingerprint (checkpoint: {stored.get('user')}; now: {now['user']})",
            }
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} belongs to another run: its "
                + "; ".join(detail[k] for k in differs)
                + " differ(s) from this one. Delete it or choose another checkpoint_dir"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} belongs to another run: its parameters do not fit this model "
                f"({str(exc).splitlines()[0][:300]}). Delete it or choose another checkpoint_dir"
            ) from exc
        self.step, self.history, self.wall_time = ckpt["step"], ckpt["history"], ckpt["wall_time"]
        rngs = ckpt["rng"]
        if self.step >= self.config.steps:
            return True  # a finished run: its model is reused as it is, whatever the number of processes that trained it
        if len(rngs) != self.world:
            raise CheckpointError(
                f"checkpoint {self.checkpoint_path} of an unfinished run was written by {len(rngs)} process(es), "
                f"now running {self.world}: resume it with the same number of processes"
            )
        _set_rng_state(rngs[self.rank])
        return True

    # --- training ----------------------------------------------------------------------------
    def _build_runner(self) -> Any:
        runner: Any = self.model  # the model, wrapped by DDP and / or torch.compile
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            runner = nn.parallel.DistributedDataParallel(runner, device_ids=ids)
        if self.compile:
            runner = torch.compile(runner, backend=self.config.compile_backend)
        return runner

    def _autocast(self):
        if self.config.autocast == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _loss(self, batch: Any) -> Tensor:
        """The loss under the configured autocast; a compiled model that fails on its first step falls back to eager."""
        with self._autocast():
            if self.compile and not self._compiled_ok:
                try:
                    loss = self.loss_fn(self._runner, batch)
                    self._compiled_ok = True
                    return loss
                except Exception as exc:  # noqa: BLE001 - any compiler failure (dynamo, inductor, a C++ toolchain): train eagerly
                    warnings.warn(
                        f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); "
                        "training continues without compilation",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    self.compile = False
                    self._runner = self._build_runner()
            return self.loss_fn(self._runner, batch)

    def _evaluate(self) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.eval_fn(self.model).items()}
        self.model.train()
        return metrics

    @contextlib.contextmanager
    def _step_errors(self, where: str):
        """Any error inside a step becomes a :class:`TrainingError` naming the step (the cause chained)."""
        try:
            yield
        except (TrainingError, CheckpointError):
            raise
        except Exception as exc:
            raise TrainingError(f"training failed at {where}: {type(exc).__name__}: {exc}") from exc

    STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, n))

    def _install_signal_handlers(self) -> dict[int, Any]:
        """First SIGINT / SIGTERM / SIGUSR1: finish the current step, checkpoint, stop.  Second: stop at once."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._stop_requested:
                raise TrainingInterrupted(f"{signal.Signals(signum).name} received twice: stopped at once")
            self._stop_requested = signal.Signals(signum).name

        previous = {}
        for sig in self.STOP_SIGNALS:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
        return previous

    def fit(self) -> list[dict[str, float]]:
        """Train to ``config.steps`` (resuming from the checkpoint if there is one); returns history.

        Interrupting (Ctrl-C, a Jupyter kernel interrupt, SIGTERM or SIGUSR1 from a scheduler)
        finishes the current step, writes a checkpoint and raises :class:`TrainingInterrupted` (a
        ``KeyboardInterrupt``); calling ``fit()`` again resumes exactly.
        """
        previous = self._install_signal_handlers()
        try:
            return self._fit()
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)

    def _stop_agreed(self) -> bool:
        """Whether to stop after this step; under DDP every rank stops at the same step."""
        if self.world == 1:
            return bool(self._stop_requested)
        flag = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = flag.item() > 0
        if stop and not self._stop_requested:
            self._stop_requested = "a signal on another rank"
        return stop

    def _fit(self) -> list[dict[str, float]]:
        from tqdm.auto import tqdm

        cfg = self.config
        self.fingerprints()  # collective under DDP: every rank computes it here, before rank 0 needs it to save
        resumed = self.load_checkpoint()
        if not resumed:
            torch.manual_seed(cfg.seed + self.rank)
            # one gradient-free pass so data-dependent initialisation (ActNorm) happens before DDP
            # broadcasts rank 0's parameters to every process
            with torch.no_grad(), self._step_errors("initialisation (the gradient-free pass on batch 0)"), self._autocast():
                self.loss_fn(self.model, _to_device(self.batches(0), self.device, self.config.channels_last))
        self.model.train()
        self._runner = self._build_runner()
        bar = tqdm(total=cfg.steps, initial=self.step, desc=self.desc, disable=not self.progress or self.rank != 0, dynamic_ncols=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        t0 = time.perf_counter() - self.wall_time
        try:
            while self.step < cfg.steps:
                self._between_steps = False
                with self._step_errors(f"step {self.step + 1}"):
                    batch = _to_device(self.batches(self.step), self.device, self.config.channels_last)
                    loss = self._loss(batch)
                    loss_value = loss.item()  # one device sync per value, checked on the host
                    if not math.isfinite(loss_value):
                        raise NonFiniteError(f"non-finite loss ({loss_value}) at step {self.step + 1}")
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = nn.utils.clip_grad_norm_(params, max_norm).item()
                    if not math.isfinite(grad_norm):
                        raise NonFiniteError(f"non-finite gradient norm ({grad_norm}) at step {self.step + 1}")
                    self.optimizer.step()
                self.step += 1
                self._between_steps = True
                self.wall_time = time.perf_counter() - t0
                metrics = {"step": self.step, "loss": loss_value, "grad_norm": grad_norm}
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    with self._step_errors(f"the evaluation after step {self.step}"):
                        metrics.update(self._evaluate())
                if self.step % cfg.log_every == 0 or len(metrics) > 3:
                    self.history.append({**metrics, "wall_time": self.wall_time})
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                for cb in self.callbacks:
                    cb(self, self.step, metrics)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if self._stop_agreed():
                    raise TrainingInterrupted(
                        f"interrupted by {self._stop_requested} after step {self.step}; checkpointed"
                        if self.checkpoint_path
                        else f"interrupted by {self._stop_requested} after step {self.step}"
                    )
        except KeyboardInterrupt:
            bar.close()
            self._stop_requested = False
            if self._between_steps:
                self.save_checkpoint()  # the last completed step; fit() again resumes from here
            raise
        bar.close()
        if not self.history or self.history[-1].get("final") is None:
            final = {"step": self.step, "final": 1.0, "wall_time": self.wall_time, **self._evaluate()}
            if self.history and self.history[-1]["step"] == self.step:
                final = {**self.history.pop(), **final}
            self.history.append(final)
        self.save_checkpoint()
        return self.history


def train_steps(
    model: nn.Module,
    loss_fn: LossFn,
    batches: Callable[[int], Any],
    *,
    steps: int,
    lr: float,
    seed: int = 0,
    grad_clip: float | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
    channels_last: bool = False,
    compile: bool = False,
    autocast: str = "none",
    timer=None,
    fingerprint: Any = None,
) -> tuple[list[dict[str, float]], float]:
    """The experiment drivers' one way to train: build the config and :class:`Trainer`, fit.

    ``device`` ``None`` or ``"auto"``: CUDA when available, else CPU; the model stays there afterwards.  With a
    ``checkpoint_dir`` (and ``checkpoint_every`` 0) a checkpoint is written every ``steps // 20``
    steps and at the end, so a rerun resumes an interrupted run or reloads a finished one.
    Returns ``(history, wall_time_s)``: about 50 history points; the training time summed over resumptions.
    """
    if checkpoint_dir is not None and not checkpoint_every:
        checkpoint_every = max(1, steps // 20)
    cfg = TrainConfig(
        steps=steps,
        lr=lr,
        log_every=max(1, steps // 50),
        seed=seed,
        grad_clip=grad_clip,
        checkpoint_every=checkpoint_every,
        channels_last=channels_last,
        compile=compile,
        autocast=autocast,
    )
    trainer = Trainer(
        model, loss_fn, batches, cfg, checkpoint_dir=checkpoint_dir, device=device, progress=progress, desc=desc, fingerprint=fingerprint
    )
    with phase(timer, "training"):
        history = trainer.fit()
    return history, trainer.wall_time
