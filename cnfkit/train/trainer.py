"""The training loop: :class:`Trainer` and :func:`train_steps`, the drivers' one way to train."""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..config import Config, ConfigError
from ..utils import PhaseTimer, phase, remove_stale_temporaries, resolve_device
from .checkpoint import (
    CheckpointError,
    atomic_save,
    load_run,
    rng_state,
    run_fingerprints,
    set_rng_state,
)
from .distributed import rank_and_world
from .sampler import to_device

__all__ = [
    "LossFn",
    "NonFiniteError",
    "StopSignals",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "adam",
    "check_schedule",
    "learning_rate",
    "train_steps",
]


class TrainingError(RuntimeError):
    """Training failed at a named step (the original error is chained as ``__cause__``)."""


class NonFiniteError(TrainingError, FloatingPointError):
    """The loss or a gradient became NaN/Inf."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal (SIGINT, SIGTERM, SIGUSR1) after checkpointing; ``fit()`` resumes."""


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
    # "bf16": networks in bfloat16 autocast; bijections, log-determinants, priors and losses stay float32
    autocast: str = "none"
    # Adam's fused kernel: one pass per parameter instead of about ten elementwise passes (the same update up to
    # float rounding); the quick MNIST auto-encoder's optimiser step fell from 0.137 s to 0.016 s on one CPU thread
    fused: bool = True
    # the learning rate at each step (see learning_rate): "constant", or "cosine" decay to 0 after a linear warm-up
    schedule: str = "constant"
    warmup: int = 0  # steps of linear warm-up from lr / warmup to lr (0: none)
    nonnegative = frozenset({"eval_every", "checkpoint_every", "seed", "warmup"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.autocast not in ("none", "bf16"):
            raise ConfigError(f"TrainConfig.autocast must be 'none' or 'bf16', got {self.autocast!r}")
        check_schedule(self.schedule, self.warmup, self.steps, "TrainConfig")


SCHEDULES = ("constant", "cosine")


def check_schedule(schedule: str, warmup: int, steps: int | None, where: str) -> None:
    """Refuse (:class:`~cnfkit.config.ConfigError`) an unknown schedule or a warm-up longer than the run."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"{where}.schedule must be one of {SCHEDULES}, got {schedule!r}")
    if steps is not None and warmup > steps:
        raise ConfigError(f"{where}.warmup ({warmup}) is longer than the run ({steps} steps)")


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of step ``step`` (0-based) of a run under ``config``: a pure function of the step, so a
    resumed run follows the same schedule.  ``warmup`` steps rise linearly to ``lr`` (step ``k`` uses
    ``lr * (k + 1) / warmup``); then ``"constant"`` stays at ``lr`` and ``"cosine"`` follows
    ``lr * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 at the first step after the warm-up to 1 past the last."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.schedule == "constant":
        return config.lr
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * t))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group of ``optimizer`` steps at ``lr`` from now on."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def adam(params, lr: float, fused: bool = True) -> torch.optim.Adam:
    """The optimiser every experiment and benchmark uses: Adam, fused where torch has the kernel (CPU and CUDA)."""
    params = list(params)
    has_kernel = {p.device.type for p in params} <= {"cpu", "cuda"}
    return torch.optim.Adam(params, lr=lr, fused=True if fused and has_kernel else None)


class StopSignals:
    """SIGINT / SIGTERM / SIGUSR1 while training: the first asks to stop after the current step, a
    second stops at once.  A context manager that installs the handlers (main thread only) and
    restores the previous ones; :meth:`agreed` is the stop decision, the same on every DDP rank."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, n))

    def __init__(self) -> None:
        self.requested: str | bool = False
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise TrainingInterrupted(f"{signal.Signals(signum).name} received twice: stopped at once")
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, h in self._previous.items():
            signal.signal(sig, h)
        self._previous = {}

    def agreed(self, world: int, device: torch.device) -> bool:
        """Whether to stop after this step; under DDP every rank stops at the same step."""
        if world == 1:
            return bool(self.requested)
        flag = torch.tensor([1.0 if self.requested else 0.0], device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = flag.item() > 0
        if stop and not self.requested:
            self.requested = "a signal on another rank"
        return stop


@contextlib.contextmanager
def step_errors(where: str):
    """Any error inside a step becomes a :class:`TrainingError` naming the step (the cause chained)."""
    try:
        yield
    except (TrainingError, CheckpointError):
        raise
    except Exception as exc:
        raise TrainingError(f"training failed at {where}: {type(exc).__name__}: {exc}") from exc


def wrap_model(model: nn.Module, world: int, device: torch.device, compile: bool, backend: str) -> Any:
    """The model as a step runs it: wrapped in DistributedDataParallel under torchrun, compiled when asked."""
    runner: Any = model
    if world > 1:
        runner = nn.parallel.DistributedDataParallel(
            runner, device_ids=[device.index] if device.type == "cuda" else None
        )
    if compile:
        runner = torch.compile(runner, backend=backend)
    return runner


LossFn = Callable[[nn.Module, Any], Tensor]


class Trainer:
    """Train ``model`` by minimising ``loss_fn(model, batch)`` with Adam.

    Args:
        model: the module; ``loss_fn`` receives it (wrapped in DDP / ``torch.compile`` when asked),
            so the loss should go through ``model(...)`` (for cnfkit flows: ``-model(y, context).mean()``).
        loss_fn: returns a scalar tensor.
        batches: ``batches(step) -> batch`` (see :class:`~cnfkit.train.EpochSampler`); moved to ``device``.
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
        if config.channels_last:  # documented, missing from the stubs:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.loss_fn, self.batches, self.config, self.eval_fn = loss_fn, batches, config, eval_fn
        self.checkpoint_path = None if checkpoint_dir is None else Path(checkpoint_dir) / "last.pt"
        self.callbacks, self.compile = tuple(callbacks), compile or config.compile
        self.progress, self.desc = progress, desc
        self._compiled_ok = False
        self.optimizer = adam(self.model.parameters(), config.lr, config.fused)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.wall_time = 0.0
        self._runner: Any = None  # built by fit(): the model, wrapped by DDP and / or torch.compile
        self._signals = StopSignals()
        self._between_steps = True
        self._fingerprints: dict[str, Any] | None = None

    # --- checkpoints -------------------------------------------------------------------------
    def fingerprints(self) -> dict[str, Any]:
        """What identifies this run: training config, model structure, data (per rank), user fingerprint."""
        if self._fingerprints is None:
            self._fingerprints = run_fingerprints(
                self.config.to_dict(), self.model, self.batches, self.user_fingerprint
            )
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
        rngs: list[Any] = [rng_state()]
        if self.world > 1:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, rng_state())
        if self.rank == 0:
            atomic_save({**self.state_dict(), "rng": rngs}, self.checkpoint_path)
        if self.world > 1:
            dist.barrier()

    def load_checkpoint(self) -> bool:
        """Restore from ``last.pt`` if it exists; returns whether it did.

        Refuses (:class:`~cnfkit.train.CheckpointError`) a corrupt or unsafe file and a checkpoint of
        another run (other training config, model, data or user fingerprint), saying what differs."""
        path = self.checkpoint_path
        if path is None:
            return False
        if self.rank == 0:
            remove_stale_temporaries(path.parent, r"\." + re.escape(path.name) + r"\.(\d+)\.tmp")
        if not path.exists():
            return False
        ckpt = load_run(path, self.model, self.optimizer, self.fingerprints())
        self.step, self.history, self.wall_time = ckpt["step"], ckpt["history"], ckpt["wall_time"]
        rngs = ckpt["rng"]
        if self.step >= self.config.steps:
            return (
                True  # a finished run: its model is reused as it is, whatever the number of processes that trained it
            )
        if len(rngs) != self.world:
            raise CheckpointError(
                f"checkpoint {path} of an unfinished run was written by {len(rngs)} process(es), "
                f"now running {self.world}: resume it with the same number of processes"
            )
        set_rng_state(rngs[self.rank])
        return True

    # --- one step ----------------------------------------------------------------------------
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
                # any compiler failure (dynamo, inductor, a C++ toolchain): train eagerly
                except Exception as exc:  # noqa: BLE001
                    first = str(exc).splitlines()[0][:200] if str(exc) else ""
                    msg = (
                        f"torch.compile failed ({type(exc).__name__}: {first}); training continues without compilation"
                    )
                    warnings.warn(msg, RuntimeWarning, stacklevel=2)
                    self.compile = False
                    self._runner = wrap_model(
                        self.model, self.world, self.device, self.compile, self.config.compile_backend
                    )
            return self.loss_fn(self._runner, batch)

    def _train_step(self, params: list[nn.Parameter], max_norm: float) -> tuple[float, float]:
        """One optimiser step on batch ``self.step``; returns ``(loss, gradient norm)``, both checked finite."""
        batch = to_device(self.batches(self.step), self.device, self.config.channels_last)
        loss = self._loss(batch)
        loss_value = loss.item()  # one device sync per value, checked on the host
        if not math.isfinite(loss_value):
            raise NonFiniteError(f"non-finite loss ({loss_value}) at step {self.step + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(params, max_norm).item()
        if not math.isfinite(grad_norm):
            raise NonFiniteError(f"non-finite gradient norm ({grad_norm}) at step {self.step + 1}")
        set_learning_rate(self.optimizer, learning_rate(self.step, self.config))
        self.optimizer.step()
        return loss_value, grad_norm

    def _evaluate(self) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in self.eval_fn(self.model).items()}
        self.model.train()
        return metrics

    # --- the loop ----------------------------------------------------------------------------
    def fit(self) -> list[dict[str, float]]:
        """Train to ``config.steps`` (resuming from the checkpoint if there is one); returns history.

        Interrupting (Ctrl-C, a Jupyter kernel interrupt, SIGTERM or SIGUSR1 from a scheduler)
        finishes the current step, writes a checkpoint and raises :class:`TrainingInterrupted` (a
        ``KeyboardInterrupt``); calling ``fit()`` again resumes exactly.
        """
        with self._signals:
            return self._fit()

    def _start(self) -> None:
        """Resume from the checkpoint, or seed and run the gradient-free initialisation pass."""
        self.fingerprints()  # collective under DDP: every rank computes it here, before rank 0 needs it to save
        if not self.load_checkpoint():
            torch.manual_seed(self.config.seed + self.rank)
            # one gradient-free pass so data-dependent initialisation (ActNorm) happens before DDP
            # broadcasts rank 0's parameters to every process
            with (
                torch.no_grad(),
                step_errors("initialisation (the gradient-free pass on batch 0)"),
                self._autocast(),
            ):
                self.loss_fn(self.model, to_device(self.batches(0), self.device, self.config.channels_last))
        self.model.train()
        self._runner = wrap_model(self.model, self.world, self.device, self.compile, self.config.compile_backend)

    def _after_step(self, metrics: dict[str, float]) -> None:
        """Evaluate, log, call back and checkpoint as configured after a completed step; stop if asked."""
        cfg = self.config
        if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
            with step_errors(f"the evaluation after step {self.step}"):
                metrics.update(self._evaluate())
        if self.step % cfg.log_every == 0 or len(metrics) > 3:
            self.history.append({**metrics, "wall_time": self.wall_time})
        for cb in self.callbacks:
            cb(self, self.step, metrics)
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save_checkpoint()
        if self._signals.agreed(self.world, self.device):
            done = "; checkpointed" if self.checkpoint_path else ""
            raise TrainingInterrupted(f"interrupted by {self._signals.requested} after step {self.step}{done}")

    def _fit(self) -> list[dict[str, float]]:
        from tqdm.auto import tqdm

        self._start()
        steps = self.config.steps
        bar = tqdm(
            total=steps,
            initial=self.step,
            desc=self.desc,
            disable=not self.progress or self.rank != 0,
            dynamic_ncols=True,
        )
        params = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        t0 = time.perf_counter() - self.wall_time
        try:
            while self.step < steps:
                self._between_steps = False
                with step_errors(f"step {self.step + 1}"):
                    loss, grad_norm = self._train_step(params, max_norm)
                self.step += 1
                self._between_steps = True
                self.wall_time = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                self._after_step({"step": self.step, "loss": loss, "grad_norm": grad_norm})
        except KeyboardInterrupt:
            bar.close()
            self._signals.requested = False
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
    schedule: str = "constant",
    warmup: int = 0,
    timer: PhaseTimer | None = None,
    fingerprint: Any = None,
) -> tuple[list[dict[str, float]], float]:
    """The experiment drivers' one way to train: build the config and :class:`Trainer`, fit.

    ``device`` ``None`` or ``"auto"``: CUDA when available, else CPU; the model stays there afterwards.  With a
    ``checkpoint_dir`` (and ``checkpoint_every`` 0) a checkpoint is written every ``steps // 20``
    steps and at the end, so a rerun resumes an interrupted run or reloads a finished one.
    A ``warmup`` longer than ``steps`` is capped at ``steps``.
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
        schedule=schedule,
        warmup=min(warmup, steps),  # an experiment's warm-up is capped at its run (dry runs cap the steps)
    )
    trainer = Trainer(
        model,
        loss_fn,
        batches,
        cfg,
        checkpoint_dir=checkpoint_dir,
        device=device,
        progress=progress,
        desc=desc,
        fingerprint=fingerprint,
    )
    with phase(timer, "training"):
        history = trainer.fit()
    return history, trainer.wall_time
