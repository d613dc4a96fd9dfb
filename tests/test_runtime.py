"""CPU runtime settings applied before torch loads: idle OpenMP threads sleep, CNFKIT_THREADS is honoured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnfkit import _runtime

ROOT = Path(__file__).resolve().parent.parent


def test_configure_sets_defaults_and_respects_the_user():
    env: dict[str, str] = {}
    assert _runtime.configure(env) == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE", "CNFKIT_THREADS": "3"}
    assert _runtime.configure(env) == {"OMP_NUM_THREADS": "3"}
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
    with pytest.raises(ValueError, match="CNFKIT_THREADS"):
        _runtime.configure({"CNFKIT_THREADS": "two"})


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "CNFKIT_THREADS", "OMP_NUM_THREADS")}
    res = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return res.stdout.strip()


def test_importing_cnfkit_first_sets_the_wait_policy_for_openmp():
    assert _python("import os, cnfkit; print(os.environ['OMP_WAIT_POLICY'])") == "PASSIVE"


def test_cnfkit_threads_holds_in_a_process_that_imported_torch_first():
    """A notebook kernel often imports torch before cnfkit: CNFKIT_THREADS still sets torch's thread count
    (before, only the experiments' command line read it, and notebooks ran with torch's default)."""
    assert _python("import torch, cnfkit; print(torch.get_num_threads())", CNFKIT_THREADS="1") == "1"
