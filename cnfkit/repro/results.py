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

from ..data.store import REGISTRY
from ..utils import PhaseTimer, phase

__all__ = [
    "PhaseTimer",
    "curve_summary",
    "git_commit",
    "load_json",
    "phase",
    "provenance",
    "save_json",
    "shown",
    "with_spread",
]

ROOT = Path(__file__).resolve().parents[2]  # the repository (cnfkit/repro/ is two levels down)


def shown(path: str | Path) -> str:
    """A path as the notebooks print it: relative to the repository when inside it (no machine's absolute path in
    committed outputs), else as given (results written elsewhere, e.g. by ``make verify`` or a reader's folder)."""
    p = Path(path)
    try:
        return p.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def with_spread(mean: float, std: float | None, n: int, digits: int) -> str:
    """``mean ± std`` over ``n > 1`` seeds; one seed has no spread to print: ``mean (1 seed)`` (never ``± 0.000``)."""
    if n > 1 and std is not None:
        return f"{mean:.{digits}f} ± {std:.{digits}f} ({n} seeds)"
    return f"{mean:.{digits}f} (1 seed)"


def git_commit(root: Path = ROOT) -> str:
    """The current commit, suffixed ``-dirty`` when a tracked file outside ``results/`` changed, or ``unknown``.

    ``results/`` is what ``make reproduce`` writes: a run that rewrites the committed results (as every
    rerun does) is still a run of a clean commit, whereas a changed source file is not."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
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


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (MB), where the platform reports it."""
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except (ImportError, OSError):
        return None


def provenance(
    profile: str,
    seeds: list[int] | tuple[int, ...],
    wall_time_s: float,
    datasets: dict[str, str] | None = None,
    phases: PhaseTimer | None = None,
) -> dict[str, Any]:
    """``datasets`` maps a dataset name to a digest; registered names may map to ``"registry"``.
    ``phases``: the run's per-phase wall times (training, evaluation, other)."""
    ds = {k: (dataset_digest(k) if v == "registry" else v) for k, v in (datasets or {}).items()}
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    return dict(
        profile=profile,
        seeds=list(seeds),
        git_commit=git_commit(),
        datasets=ds,
        device=device,
        torch=torch.__version__,
        python=platform.python_version(),
        wall_time_s=round(float(wall_time_s), 2),
        **({"phase_times_s": phases.summary(float(wall_time_s))} if phases is not None else {}),
        peak_rss_mb=_peak_rss_mb(),
    )


def save_json(
    path: str | Path,
    payload: dict[str, Any],
    *,
    profile: str,
    seeds,
    wall_time_s: float,
    datasets=None,
    phases: PhaseTimer | None = None,
) -> Path:
    """Write ``payload`` with a ``provenance`` block.  A :class:`~cnfkit.repro.profiles.Config` under
    ``payload["config"]`` is stored as its fields, and its digest as ``provenance.config_digest``:
    the stale-results test compares it with the current profile's configuration."""
    from .profiles import Config

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance(profile, seeds, wall_time_s, datasets, phases)
    cfg = payload.get("config")
    if isinstance(cfg, Config):
        payload = {**payload, "config": cfg.to_dict()}
        prov["config_digest"] = cfg.digest()
    doc = {"provenance": prov, **payload}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False, default=float) + "\n")
    tmp.replace(path)
    return path


def curve_summary(history: list[dict[str, Any]], key: str = "loss") -> dict[str, float] | None:
    """Where a learning curve ended: the mean training loss over the last fifth of the logged steps,
    over the fifth before it, and the relative drop between them (> 0: still falling).  Used to say
    why a claim does not hold at reduced scale ("the CNF's loss was still falling 2% per fifth")."""
    points = [(h["step"], float(h[key])) for h in history if key in h and h.get("step") is not None]
    if len(points) < 10:
        return None
    last_step = points[-1][0]
    fifth = len(points) // 5
    last = [v for _, v in points[-fifth:]]
    before = [v for _, v in points[-2 * fifth : -fifth]]
    a, b = sum(last) / len(last), sum(before) / len(before)
    return {
        "steps": int(last_step),
        "loss_last_fifth": a,
        "loss_fifth_before": b,
        "relative_drop": (b - a) / max(abs(b), 1e-12),
    }


def load_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
