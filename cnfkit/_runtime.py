"""CPU runtime settings that must be in place before torch is first imported.

OpenMP threads that finish a parallel region spin on their core, waiting for the next one.  On an idle
machine that saves a wake-up; on a busy one (a browser, JupyterLab, another job) the spinning threads
fight the other processes for the cores, and measured here a binary-dequantization train step took
30-40x longer with torch's defaults (``benchmarks/under_load.py``; numbers in the README).
``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep, so a run slows in proportion to the load.

:func:`configure` sets it (and ``OMP_NUM_THREADS`` from ``CNFKIT_THREADS``) unless the user has set
them.  It runs first thing in ``cnfkit/__init__.py`` (so ``python -m cnfkit...`` and torchrun workers
get it) and in :mod:`cnfkit.repro.reproduce` before papermill starts its kernels; the Makefile exports
the same.  The OpenMP runtime reads these variables once, when torch loads it: in a process that
imported torch before cnfkit they take effect only in the processes it starts.  None of it changes a
number: the wait policy only decides what an idle thread does, and the thread count is torch's default
unless ``CNFKIT_THREADS`` names one.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["DEFAULTS", "apply_threads", "configure"]

DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the defaults in ``environ`` (``os.environ``) where the user has not; returns what was set."""
    env = os.environ if environ is None else environ
    wanted = dict(DEFAULTS)
    threads = env.get("CNFKIT_THREADS")
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"CNFKIT_THREADS must be a positive integer, got {threads!r}")
        wanted["OMP_NUM_THREADS"] = threads
    set_now = {k: v for k, v in wanted.items() if k not in env}
    env.update(set_now)
    return set_now


def apply_threads() -> None:
    """``torch.set_num_threads(CNFKIT_THREADS)`` when it is set: the thread count holds even in a process
    (a notebook kernel) that imported torch before cnfkit."""
    if os.environ.get("CNFKIT_THREADS"):
        from .utils import set_threads

        set_threads()
