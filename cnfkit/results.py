"""Writing results: every JSON file records how it was produced.

``save_json(path, payload, profile=..., seeds=..., wall_time_s=..., datasets=...)`` adds a
``provenance`` block: profile, seeds, git commit (and whether the tree was dirty), dataset sha256
digests, device, torch version and wall time.  Numbers in results are produced by code that ran;
numbers quoted from the papers live only in :mod:`cnfkit.paper_numbers`.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from .data.store import REGISTRY

__all__ = ["git_commit", "provenance", "save_json", "load_json"]

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The current commit (suffixed ``-dirty`` when tracked files changed), or ``unknown``."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dataset_digest(name: str) -> str:
    """One sha256 over the registered checksums of a dataset's files (identifies its exact version)."""
    spec = REGISTRY[name]
    h = hashlib.sha256()
    for f in sorted(spec.files, key=lambda f: f.path):
        h.update(f"{f.path}:{f.sha256}\n".encode())
    return h.hexdigest()


def provenance(profile: str, seeds: list[int] | tuple[int, ...], wall_time_s: float, datasets: dict[str, str] | None = None) -> dict[str, Any]:
    """``datasets`` maps a dataset name to a digest; registered names may map to ``"registry"``."""
    ds = {k: (dataset_digest(k) if v == "registry" else v) for k, v in (datasets or {}).items()}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    return dict(
        profile=profile, seeds=list(seeds), git_commit=git_commit(), datasets=ds, device=device,
        torch=torch.__version__, python=platform.python_version(), wall_time_s=round(float(wall_time_s), 2),
    )


def save_json(path: str | Path, payload: dict[str, Any], *, profile: str, seeds, wall_time_s: float, datasets=None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"provenance": provenance(profile, seeds, wall_time_s, datasets), **payload}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=float) + "\n")
    tmp.replace(path)
    return path


def load_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
