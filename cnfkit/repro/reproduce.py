"""``python -m cnfkit.repro.reproduce --profile quick``: run every numbered notebook with papermill.

Each ``notebooks/NN_*.ipynb`` runs in order with the parameters ``profile``, ``data_root``,
``data_mirror``, ``results_dir``, ``device`` and ``checkpoint_dir`` injected; its executed copy goes to
``results/<profile>/notebooks/`` and everything it writes to ``results/<profile>/``.  A notebook
whose source, the ``cnfkit`` sources and the parameters are unchanged since its last successful run
is skipped, so an interrupted ``make reproduce`` resumes where it stopped.  A failure names the
notebook and the cell and stops.

**Side by side.**  The experiment notebooks are independent (each trains its own models from its own seeds), so
``--jobs N`` (the profile's :data:`JOBS` by default) runs up to ``N`` of them at once, each in a child process
whose kernel gets ``CNFKIT_THREADS`` = the usable cores // N (or the user's ``CNFKIT_THREADS``).  The quick
profile's models are small: on the 2-core machine two one-thread notebooks do 1.5-2.4x the work per second of one
two-thread notebook (``make bench-lanes``, ``results/benchmarks/lanes_cpu.md``).  The longest notebooks (by
their last recorded wall times) start first, and each free slot takes the next, so the slots balance themselves.
The report notebooks (numbered 90 and above) read every experiment's results and run last, alone.  The thread count
of each notebook is recorded in its results' provenance and in ``notebook_times.json``; numbers depend on it
(float summation order), never on the slot or the order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..data import data_root, mirror_root
from .profiles import resolve_profile
from .results import git_commit

ROOT = Path(__file__).resolve().parents[2]  # the repository (cnfkit/repro/ is two levels down)

#: Notebooks run side by side per profile: the quick profile's 2 cores as two one-thread slots; the full profile
#: has one GPU, and smoke runs are seconds each.
JOBS = {"smoke": 1, "quick": 2, "full": 1}
REPORT_FROM = 90  # notebooks numbered from here on read every experiment's results: they run last, alone


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
    jobs: int | None = None,
    child: bool = False,
) -> int:
    """Run the numbered notebooks of ``root/notebooks`` into ``root/results/<profile>`` (or ``out``: ``make verify``
    reruns into a scratch folder); 0 on success.

    ``dry_run``: the profile's architecture and data sizes with step counts and evaluation sets capped
    (each config's ``dry_run_caps``), into the git-ignored ``results/<profile>-dry-run/``; ImageNet, when
    absent, is replaced by tiny files in the official PNG layout written there.  ``jobs``: notebooks side by side
    (default: the profile's :data:`JOBS`); ``child``: this process runs one notebook of a side-by-side run."""
    explicit = profile is not None
    profile = resolve_profile(profile)
    if not explicit:
        print(f"PROFILE not given: using {profile!r} ({'CUDA available' if profile == 'full' else 'no CUDA'})")
    out = Path(out) if out is not None else root / "results" / (f"{profile}-dry-run" if dry_run else profile)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    if dry_run:
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
    jobs = JOBS[profile] if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    t_run = time.perf_counter()
    due = [nb for nb in todo if force or not _current(nb, out, _key(nb, params, digest)[0])]
    experiments = [nb for nb in due if int(nb.name[:2]) < REPORT_FROM]
    order: list[str] = []
    if jobs > 1 and len(experiments) > 1:
        threads = slot_threads(min(jobs, len(experiments)))
        order = longest_first(experiments, _recorded_times(out))
        rc = _run_side_by_side(order, min(jobs, len(experiments)), threads, profile, root, out, device, force, dry_run)
        if rc:
            return rc
        _record_run(out, order, min(jobs, len(experiments)), threads, round(time.perf_counter() - t_run, 1))
        todo = [nb for nb in todo if nb not in experiments]
    for nb in todo:
        rc = _run_one(nb, out, params, digest, force, profile, root, child=child)
        if rc:
            return rc
    return 0


def _key(nb: Path, params: dict, digest: str) -> tuple[str, dict]:
    """The notebook's stamp key (its source, the cnfkit sources, the parameters it declares) and those parameters."""
    import papermill as pm

    declared = pm.inspect_notebook(str(nb))  # inject only what the notebook's parameters cell declares
    nb_params = {k: v for k, v in params.items() if k in declared}
    key = hashlib.sha256(nb.read_bytes() + digest.encode() + json.dumps(nb_params, sort_keys=True).encode()).hexdigest()
    return key, nb_params


def _current(nb: Path, out: Path, key: str) -> bool:
    """Whether ``nb``'s outputs in ``out`` are complete and stamped with ``key`` (see :func:`_key`)."""
    stamp = out / ".stamps" / (nb.stem + ".json")
    if not (stamp.exists() and (out / "notebooks" / nb.name).exists()):
        return False
    try:
        return json.loads(stamp.read_text()).get("key") == key
    except ValueError:  # a torn stamp is not a stamp
        return False


def _run_one(nb: Path, out: Path, params: dict, digest: str, force: bool, profile: str, root: Path, child: bool) -> int:
    """Run one notebook unless current; stamp it and record its time. 0 on success (or skip), 1 on failure."""
    tag = f"[{nb.stem}] " if child else ""
    key, nb_params = _key(nb, params, digest)
    stamp = out / ".stamps" / (nb.stem + ".json")
    executed = out / "notebooks" / nb.name
    if not force and _current(nb, out, key):
        print(f"{tag}[skip] {nb.name}: outputs complete and current")
        return 0
    print(f"{tag}[run ] {nb.name} (profile={profile})", flush=True)
    # invalidate first: a run that is killed or fails must never leave an old "complete" stamp behind
    stamp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    if not _execute(nb, executed, nb_params, progress=not child):
        return 1
    sanitize_notebook(executed, root)
    wall = round(time.perf_counter() - t0, 1)
    stamp.write_text(json.dumps({"key": key, "wall_time_s": wall}) + "\n")
    _record_time(out, nb.stem, wall)
    print(f"{tag}[done] {nb.name} in {wall:.0f} s", flush=True)
    return 0


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def slot_threads(n_slots: int) -> int:
    """Threads per notebook run side by side: ``CNFKIT_THREADS`` when the user set it, else the usable cores shared
    out (at least 1)."""
    user = os.environ.get("CNFKIT_THREADS")
    if user:
        if not user.isdigit() or int(user) < 1:
            raise ValueError(f"CNFKIT_THREADS must be a positive integer, got {user!r}")
        return int(user)
    return max(1, usable_cores() // n_slots)


def longest_first(notebooks_: list[Path], recorded: dict[str, float], default_s: float = 600.0) -> list[str]:
    """The notebooks' stems, longest recorded wall time first (``default_s`` where none is recorded; ties in
    numbered order): started in this order, each free slot taking the next, the slots end close together."""
    return [nb.stem for nb in sorted(notebooks_, key=lambda nb: (-recorded.get(nb.stem, default_s), nb.name))]


def _recorded_times(out: Path) -> dict[str, float]:
    path = out / "notebook_times.json"
    try:
        times = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        return {}
    return {k: float(v["wall_time_s"] if isinstance(v, dict) else v) for k, v in times.items()}


def _run_side_by_side(
    order: list[str],
    slots: int,
    threads: int,
    profile: str,
    root: Path,
    out: Path,
    device: str,
    force: bool,
    dry_run: bool,
) -> int:
    """Run the notebooks ``order`` names, up to ``slots`` at once, each in a child ``python -m
    cnfkit.repro.reproduce --only NB`` with ``threads`` threads; a free slot takes the next.  A failing notebook
    does not stop the others (their results are valid); 0 when all succeeded.  Children are sent SIGTERM if this
    process dies (Linux), so none outlives the run that started it."""
    env = {**os.environ, "CNFKIT_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    print(f"[side by side] {slots} at a time, {threads} thread(s) each, longest first: {', '.join(order)}", flush=True)
    queue, failed = list(order), []
    running: dict[str, subprocess.Popen] = {}
    try:
        while queue or running:
            while queue and len(running) < slots:
                stem = queue.pop(0)
                cmd = [sys.executable, "-m", "cnfkit.repro.reproduce", "--profile", profile, "--device", device]
                cmd += ["--jobs", "1", "--child", "--root", str(root), "--out", str(out), "--only", stem]
                cmd += ["--force"] * force + ["--dry-run"] * dry_run
                running[stem] = subprocess.Popen(cmd, env=env, cwd=str(ROOT), preexec_fn=_die_with_parent)  # noqa: PLW1509 (no threads here)
            time.sleep(0.2)
            for stem, proc in list(running.items()):
                if proc.poll() is not None:
                    del running[stem]
                    if proc.returncode:
                        failed.append(stem)
    # interrupted: terminate every child (its kernel exits with it; training resumes from the last periodic
    # checkpoint) and re-raise
    except BaseException:
        for proc in running.values():
            proc.terminate()
        for proc in running.values():
            proc.wait()
        raise
    if failed:
        print(f"FAILED: {', '.join(failed)}: see the message above", file=sys.stderr)
        return 1
    return 0


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the parent dies (no-op elsewhere)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _record_run(out: Path, order: list[str], slots: int, threads: int, wall: float) -> None:
    """``reproduce_run.json``: how the last side-by-side run was laid out and its elapsed time (the notebooks'
    times overlap, so their sum is not the run's); the report notebooks that run after it are timed on their own."""
    doc = {
        "wall_time_s": wall,
        "side_by_side": slots,
        "threads_each": threads,
        "started_in_order": order,
        "git_commit": git_commit(),
    }
    _atomic_write(out / "reproduce_run.json", json.dumps(doc, indent=1) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def _execute(nb: Path, executed: Path, params: dict, progress: bool = True) -> bool:
    """Run one notebook with papermill into ``executed``; a failure prints the notebook, the cell and the reason
    (never a traceback) and returns False."""
    import papermill as pm

    try:
        pm.execute_notebook(str(nb), str(executed), parameters=params, cwd=str(nb.parent), progress_bar=progress)
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
    """``notebook_times.json``: the wall time, commit and thread count of each notebook's last complete run (the
    device each experiment ran on is in its JSON provenance).  Lanes finish independently: the read-modify-write
    holds a lock, and the file is replaced atomically."""
    import fcntl

    path = out / "notebook_times.json"
    with open(out / ".notebook_times.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            timings = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:  # torn by a crash before atomic writes: start again rather than fail the run
            timings = {}
        threads = os.environ.get("CNFKIT_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
        timings[stem] = {"wall_time_s": wall, "git_commit": git_commit(), "threads": threads}
        _atomic_write(path, json.dumps(dict(sorted(timings.items())), indent=1) + "\n")


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
        "--jobs",
        type=int,
        default=None,
        help="experiment notebooks side by side, each with cores // jobs threads (default: 2 for quick, else 1)",
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # internal: one notebook of a run
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)  # internal: the repository of the parent
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)  # internal: the results folder of the parent
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
    return run(
        a.profile,
        a.only,
        a.force,
        root=Path(a.root) if a.root else ROOT,
        device=a.device,
        dry_run=a.dry_run,
        out=Path(a.out) if a.out else None,
        jobs=a.jobs,
        child=a.child,
    )


if __name__ == "__main__":
    raise SystemExit(main())
