"""Training the long experiments from the command line, on one or many GPUs, pre-emptible.

    torchrun --nproc_per_node=8 -m cnfkit.experiments.superres --profile full --checkpoint-dir results/full/checkpoints
    python -m cnfkit.experiments.drive --profile quick --checkpoint-dir results/quick/checkpoints      # one process

Each process trains under DistributedDataParallel (``cnfkit.train.init_distributed``: nccl with one
GPU per local rank, gloo on CPU); every global batch is split across the processes, so the result
does not depend on their number.  Checkpoints go to ``<checkpoint-dir>/<experiment>-<config
digest>/...``, the folder ``make reproduce`` gives the notebooks: run the notebook afterwards (or
``make reproduce``) and it finds the finished models, trains nothing and only evaluates and plots.

SIGTERM / SIGUSR1 (what SLURM sends before a time limit or pre-emption) and Ctrl-C finish the step,
write a checkpoint and exit with status 75 (EX_TEMPFAIL: "try again"); resubmitting the same command
resumes where it stopped.  See ``scripts/slurm_superres.sh``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_PREEMPTED = 75


def main(experiment: str, train: Callable[..., object], argv: list[str] | None = None) -> int:
    """Parse the common options and call ``train(profile, checkpoint_dir, device, progress)`` under torchrun or
    alone."""
    from ..data import use_data_dirs
    from ..repro.profiles import check_profile
    from ..train import TrainingInterrupted, init_distributed
    from ..utils import set_threads

    p = argparse.ArgumentParser(
        prog=f"python -m cnfkit.experiments.{experiment}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--profile", required=True, help="smoke, quick or full")
    p.add_argument(
        "--checkpoint-dir",
        required=True,
        help="where checkpoints go (make reproduce uses results/<profile>/checkpoints)",
    )
    p.add_argument("--device", default="auto", help="auto (one CUDA device per process when available), cpu, cuda:N")
    p.add_argument("--data-root", default="", help="the data root (default: $CNFKIT_DATA_ROOT or ~/.cache/cnfkit/data)")
    p.add_argument("--data-mirror", default="", help="an offline mirror of the datasets ($CNFKIT_DATA_MIRROR)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    check_profile(a.profile)
    use_data_dirs(a.data_root, a.data_mirror)
    set_threads()
    rank, world, device = init_distributed()
    if a.device != "auto":
        device = a.device
    try:
        train(a.profile, a.checkpoint_dir, device, progress=not a.no_progress and rank == 0)
    except TrainingInterrupted as exc:
        print(f"[rank {rank}/{world}] {exc}; run the same command again to resume", file=sys.stderr)
        return EXIT_PREEMPTED
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        print(f"{experiment} ({a.profile}): training complete; checkpoints in {os.path.abspath(a.checkpoint_dir)}")
    return 0


def command_line(experiment: str, config: Callable[[str], Any], run: Callable[..., Any]) -> int:
    """A driver's ``__main__`` tail: :func:`main` with ``train`` = every model of the experiment,
    ``run(config(profile), progress=..., device=..., checkpoint_dir=..., train_only=True)``."""

    def train(profile: str, checkpoint_dir: str, device, progress: bool) -> None:
        run(config(profile), progress=progress, device=device, checkpoint_dir=checkpoint_dir, train_only=True)

    return main(experiment, train)
