"""``python -m cnfkit.repro.reproduce --profile quick``: run every numbered notebook with papermill.

Each ``notebooks/NN_*.ipynb`` runs in order with the parameters ``profile``, ``data_root``,
``data_mirror``, ``results_dir``, ``device`` and ``checkpoint_dir`` injected; its executed copy goes to
``results/<profile>/notebooks/`` and everything it writes to ``results/<profile>/``.  A notebook
whose source, the ``cnfkit`` sources and the parameters are unchanged since its last successful run
is skipped, so an interrupted ``make reproduce`` resumes where it stopped.  A failure names the
notebook and the cell and stops.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from ..data import data_root, mirror_root
from .profiles import resolve_profile
from .results import git_commit

ROOT = Path(__file__).resolve().parents[2]  # the repository (cnfkit/repro/ is two levels down)


def _sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((ROOT / "cnfkit").rglob("*")):
        if p.is_file() and p.suffix in {".py", ".json"}:
            h.update(p.relative_to(ROOT).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def sanitize_notebook(path: Path, root: Path = ROOT) -> None:
    """Remove machine details from an executed notebook: absolute paths (repo -> ``<repo>``, home ->
    ``~``), progress-bar output on stderr and papermill's timing metadata."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [
                o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    text = nbformat.writes(nb)
    text = text.replace(str(root), "<repo>").replace(str(root.parent), "<repo>/..").replace(str(Path.home()), "~")
    path.write_text(text)


def _running_cell(executed: Path) -> str:
    """The cell that was running when execution stopped (from papermill's per-cell status), or '?'."""
    try:
        import nbformat

        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):  # no notebook was written, or it is cut short: the cell is unknown
        return "?"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, c in enumerate(code, 1):
        if c.metadata.get("papermill", {}).get("status") == "running":
            return str(c.get("execution_count") or f"#{i} (code cell)")
    return "?"


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def write_tiny_imagenet(data_dir: Path, n_train: int = 64, n_valid: int = 16) -> list[Path]:
    """Tiny ImageNet32/64 PNG releases in the official layout (random images), for a dry run where ImageNet is
    absent."""
    import numpy as np
    from PIL import Image

    from ..data import DatasetError
    from ..data.imagenet import find_release_dir

    written = []
    rng = np.random.default_rng(0)
    for size in (32, 64):
        try:
            find_release_dir(size, "train", "png")
            find_release_dir(size, "valid", "png")
            continue  # a real release is there: the dry run uses it
        except DatasetError:
            pass
        for split, n in (("train", n_train), ("valid", n_valid)):
            folder = data_dir / f"ImageNet{size}" / f"{split}_{size}x{size}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
            written.append(folder)
    return written


def run(
    profile: str | None = None,
    only: list[str] | None = None,
    force: bool = False,
    root: Path = ROOT,
    device: str = "auto",
    dry_run: bool = False,
    out: Path | None = None,
) -> int:
    """Run the numbered notebooks of ``root/notebooks`` into ``root/results/<profile>`` (or ``out``: ``make verify``
    reruns into a scratch folder); 0 on success.

    ``dry_run``: the profile's architecture and data sizes with step counts and evaluation sets capped
    (each config's ``dry_run_caps``), into the git-ignored ``results/<profile>-dry-run/``; ImageNet, when
    absent, is replaced by tiny files in the official PNG layout written there."""
    import papermill as pm

    explicit = profile is not None
    profile = resolve_profile(profile)
    if not explicit:
        print(f"PROFILE not given: using {profile!r} ({'CUDA available' if profile == 'full' else 'no CUDA'})")
    out = Path(out) if out is not None else root / "results" / (f"{profile}-dry-run" if dry_run else profile)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    if dry_run:
        import os

        os.environ["CNFKIT_DATA_ROOT"] = str(out / "data")  # tiny ImageNet files go here; the mirror is read first
        for folder in write_tiny_imagenet(out / "data"):
            print(f"[dry-run] ImageNet absent: tiny files in the official PNG layout in {folder}")
    stamps = out / ".stamps"
    stamps.mkdir(exist_ok=True)
    params = _parameters(profile, out, device, dry_run)
    digest = _sources_digest()
    todo = _selected(notebooks(root / "notebooks"), only, root)
    if not todo:
        return 2
    for nb in todo:
        declared = pm.inspect_notebook(str(nb))  # inject only what the notebook's parameters cell declares
        nb_params = {k: v for k, v in params.items() if k in declared}
        key = hashlib.sha256(
            nb.read_bytes() + digest.encode() + json.dumps(nb_params, sort_keys=True).encode()
        ).hexdigest()
        stamp = stamps / (nb.stem + ".json")
        executed = out / "notebooks" / nb.name
        if not force and stamp.exists() and executed.exists() and json.loads(stamp.read_text()).get("key") == key:
            print(f"[skip] {nb.name}: outputs complete and current")
            continue
        print(f"[run ] {nb.name} (profile={profile})", flush=True)
        # invalidate first: a run that is killed or fails must never leave an old "complete" stamp behind
        stamp.unlink(missing_ok=True)
        t0 = time.perf_counter()
        if not _execute(nb, executed, nb_params):
            return 1
        sanitize_notebook(executed, root)
        wall = round(time.perf_counter() - t0, 1)
        stamp.write_text(json.dumps({"key": key, "wall_time_s": wall}) + "\n")
        _record_time(out, nb.stem, wall)
        print(f"[done] {nb.name} in {time.perf_counter() - t0:.0f} s")
    return 0


def _parameters(profile: str, out: Path, device: str, dry_run: bool) -> dict:
    """What ``make reproduce`` injects into every notebook that declares it."""
    return {
        "profile": profile,
        "data_root": str(data_root()),
        "data_mirror": str(mirror_root() or ""),
        "results_dir": str(out),
        "progress": True,
        "device": device,
        "checkpoint_dir": str(out / "checkpoints"),  # used by the notebooks that train for long (DRIVE, SR, MNIST)
        "dry_run": dry_run,
    }


def _selected(available: list[Path], only: list[str] | None, root: Path) -> list[Path]:
    """The notebooks ``--only`` names (number or name prefixes), all without it; an empty list, with the reason
    printed, when ``--only`` is empty or names none, or when there are no numbered notebooks."""
    if only is not None:
        valid = ", ".join(nb.stem for nb in available) or "(none)"
        unknown = [o for o in only if not any(nb.name.startswith(o) for nb in available)]
        if not only:
            print(
                f"--only needs at least one notebook name or number prefix (e.g. --only 03 04); valid: {valid}",
                file=sys.stderr,
            )
            return []
        if unknown:
            print(
                f"--only: no numbered notebook starts with {', '.join(map(repr, unknown))}; valid: {valid}",
                file=sys.stderr,
            )
            return []
    todo = [nb for nb in available if only is None or any(nb.name.startswith(o) for o in only)]
    if not todo:
        print(f"no numbered notebooks (NN_*.ipynb) found in {root / 'notebooks'}", file=sys.stderr)
    return todo


def _execute(nb: Path, executed: Path, params: dict) -> bool:
    """Run one notebook with papermill into ``executed``; a failure prints the notebook, the cell and the reason
    (never a traceback) and returns False."""
    import papermill as pm

    try:
        pm.execute_notebook(str(nb), str(executed), parameters=params, cwd=str(nb.parent), progress_bar=True)
        return True
    except pm.PapermillExecutionError as exc:
        print(
            f"\nFAILED: {nb.name}, cell {exc.exec_count} ({exc.ename}: {exc.evalue})\nthe executed notebook with "
            f"the error is {executed}",
            file=sys.stderr,
        )
    # the kernel died (OOM killer, kill -9), timed out or could not start: report, never a traceback
    except Exception as exc:  # noqa: BLE001
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no message'}"
        if type(exc).__name__ == "DeadKernelError":
            reason += " (the kernel died: out of memory, killed, or crashed)"
        cell = _running_cell(executed)
        print(
            f"\nFAILED: {nb.name}, cell {cell} ({reason})\nthe partially executed notebook is {executed}",
            file=sys.stderr,
        )
    return False


def _record_time(out: Path, stem: str, wall: float) -> None:
    """``notebook_times.json``: the wall time and commit of each notebook's last complete run (the device each
    experiment ran on is in its JSON provenance)."""
    path = out / "notebook_times.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stem] = {"wall_time_s": wall, "git_commit": git_commit()}
    path.write_text(json.dumps(dict(sorted(timings.items())), indent=1) + "\n")


def refresh_committed(root: Path = ROOT, only: list[str] | None = None) -> int:
    """Re-execute the committed notebooks in place with their default parameters (the smoke profile),
    as nbval will re-run them, and sanitise them; a notebook is replaced only when it ran through."""
    import shutil
    import tempfile

    import papermill as pm

    for nb in notebooks(root / "notebooks"):
        if only and not any(nb.name.startswith(o) for o in only):
            continue
        print(f"[refresh] {nb.name}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / nb.name
            try:
                pm.execute_notebook(str(nb), str(out), cwd=str(nb.parent), progress_bar=False)
            # a failing cell or a dead kernel: report it, keep the committed notebook
            except Exception as exc:  # noqa: BLE001
                print(
                    f"FAILED: {nb.name} ({type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''})",
                    file=sys.stderr,
                )
                return 1
            sanitize_notebook(out, root)
            shutil.copyfile(out, nb)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnfkit.repro.reproduce", description=__doc__)
    p.add_argument("--profile", default=None, help="smoke, quick or full (default: full with CUDA, else quick)")
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only notebooks whose names start with these prefixes (at least one)",
    )
    p.add_argument("--force", action="store_true", help="re-run notebooks even if their outputs are current")
    p.add_argument(
        "--device", default="auto", help="where models train and run: auto (CUDA when available), cpu, cuda, cuda:N"
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="the profile's architecture with capped steps and evaluation sets, into results/<profile>-dry-run/",
    )
    p.add_argument(
        "--refresh-committed",
        action="store_true",
        help="re-execute notebooks/*.ipynb in place with their defaults (smoke) and sanitise them: "
        "the outputs nbval checks",
    )
    a = p.parse_args(argv)
    if a.refresh_committed:
        return refresh_committed(only=a.only)
    from ..utils import resolve_device

    resolve_device(a.device)  # an unavailable device fails here, not in the middle of a notebook
    return run(a.profile, a.only, a.force, device=a.device, dry_run=a.dry_run)


if __name__ == "__main__":
    raise SystemExit(main())
