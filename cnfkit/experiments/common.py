"""What the experiment drivers share: how they run (:class:`RunOptions`), where a run's checkpoints go
(:func:`checkpoint_path`) and how a notebook's results JSON is written (:class:`Run`).  The command-line
tail (``python -m cnfkit.experiments.<name>``) is :func:`cnfkit.experiments.cli.command_line`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..repro.results import save_json
from ..utils import PhaseTimer

__all__ = ["Run", "RunOptions", "checkpoint_path", "config_seeds"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class RunOptions:
    """How a driver runs, not what it computes (no number depends on these): a progress bar, the device
    (``None``: CUDA when available), a checkpoint folder (``None``: none) and a phase timer."""

    progress: bool = True
    device: str | None = None
    timer: PhaseTimer | None = None
    checkpoint_dir: PathLike | None = None


def checkpoint_path(checkpoint_dir: PathLike | None, experiment: str, cfg: Config, *parts: str) -> Path | None:
    """``<checkpoint_dir>/<experiment>-<config digest>/<parts...>``, or ``None`` without a checkpoint folder.

    The digest names the configuration, so a changed configuration never resumes from (or reuses)
    another one's checkpoints; ``make reproduce`` and the training command line agree on the folder."""
    if checkpoint_dir is None:
        return None
    return Path(checkpoint_dir, f"{experiment}-{cfg.digest()}", *parts)


def config_seeds(cfg: Config) -> list[int]:
    """The training seeds a configuration names: its ``seeds`` tuple, or its one ``seed``."""
    seeds = getattr(cfg, "seeds", None)
    if seeds is None:
        if not hasattr(cfg, "seed"):
            raise TypeError(
                f"{type(cfg).__name__} names no seed (neither 'seeds' nor 'seed'): a results file needs them"
            )
        seeds = (cfg.seed,)
    return list(seeds)


class Run:
    """One notebook's run of an experiment: its wall-clock start, its phase timer and its results file.

    ``run = Run(profile, out_dir)``; the driver trains with ``timer=run.timer``; ``run.save(name,
    payload, cfg)`` writes ``<out_dir>/<name>.json`` with the provenance (profile, seeds, commit,
    datasets, device, wall time per phase)."""

    def __init__(self, profile: str, out_dir: PathLike) -> None:
        self.profile, self.out_dir = profile, Path(out_dir)
        self.timer = PhaseTimer()
        self.t_start = time.perf_counter()

    def save(self, name: str, payload: dict[str, Any], cfg: Config, datasets: dict[str, str] | None = None) -> Path:
        return save_json(
            self.out_dir / f"{name}.json",
            {"config": cfg, **payload},
            profile=self.profile,
            seeds=config_seeds(cfg),
            wall_time_s=time.perf_counter() - self.t_start,
            phases=self.timer,
            datasets=datasets,
        )
