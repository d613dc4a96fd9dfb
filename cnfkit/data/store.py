"""Where datasets live and how they get there.

A dataset ``NAME`` is a folder ``<dir>/NAME/`` whose files match the sha256 sums in
``registry.json``.  :func:`dataset_dir` looks for a complete, verified copy in

1. the **offline mirror** (``mirror=`` or ``$CNFKIT_DATA_MIRROR``), read-only, e.g. a shared folder
   on a cluster without internet (CI points it at ``../shared/data``);
2. the **data root** (``root=`` or ``$CNFKIT_DATA_ROOT``, default ``~/.cache/cnfkit/data``).

If neither holds a complete copy and no mirror is configured, files with official download URLs
are downloaded into the data root: each one streams into a temporary ``*.part`` file, is checked
against its sha256 and only then renamed into place, so an interrupted or corrupt download never
looks complete.  Otherwise a :class:`DatasetError` says what is missing and how to obtain it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from ..utils import remove_stale_temporaries

__all__ = [
    "REGISTRY",
    "DatasetError",
    "DatasetSpec",
    "FileSpec",
    "data_root",
    "dataset_dir",
    "dataset_file",
    "mirror_root",
    "sha256sum",
    "use_data_dirs",
]


class DatasetError(RuntimeError):
    """A dataset is missing or corrupt; the message says how to obtain it."""


@dataclass(frozen=True)
class FileSpec:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    files: tuple[FileSpec, ...]
    urls: tuple[str, ...] = ()  # base URLs, tried in order; a file's URL is base + basename
    how: str = ""
    terms: str = ""
    meta: dict = field(default_factory=dict, compare=False)

    def file(self, path: str) -> FileSpec:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(f"{self.name} has no file {path!r}")


def _load_registry() -> dict[str, DatasetSpec]:
    raw = json.loads((Path(__file__).parent / "registry.json").read_text())
    return {
        name: DatasetSpec(
            name=name,
            files=tuple(FileSpec(p, v["sha256"], v["size"]) for p, v in d["files"].items()),
            urls=tuple(d.get("urls", ())),
            how=d.get("how", ""),
            terms=d.get("terms", ""),
        )
        for name, d in raw.items()
    }


REGISTRY: dict[str, DatasetSpec] = _load_registry()


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The writable data root: ``root``, ``$CNFKIT_DATA_ROOT`` or ``~/.cache/cnfkit/data``."""
    if root is None:
        root = os.environ.get("CNFKIT_DATA_ROOT") or Path.home() / ".cache" / "cnfkit" / "data"
    return Path(root).expanduser()


def mirror_root(mirror: str | os.PathLike | None = None) -> Path | None:
    """The read-only offline mirror: ``mirror`` or ``$CNFKIT_DATA_MIRROR`` (None if unset)."""
    if mirror is None:
        mirror = os.environ.get("CNFKIT_DATA_MIRROR") or None
    return None if mirror is None else Path(mirror).expanduser()


def use_data_dirs(data_root: str | os.PathLike = "", data_mirror: str | os.PathLike = "") -> None:
    """Point this process at a data root and/or offline mirror (empty: leave the setting alone).

    Notebooks call it with their papermill parameters, so ``make reproduce`` decides where data
    comes from.
    """
    if data_root:
        os.environ["CNFKIT_DATA_ROOT"] = str(data_root)
    if data_mirror:
        os.environ["CNFKIT_DATA_MIRROR"] = str(data_mirror)


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@cache
def _verified(path: str, size: int, mtime_ns: int, sha256: str) -> bool:
    return sha256sum(Path(path)) == sha256


def _file_problem(p: Path, f: FileSpec) -> str | None:
    """None if ``p`` is a verified copy of ``f``, else what is wrong with it."""
    if not p.is_file():
        return f"missing {p}"
    st = p.stat()
    if st.st_size != f.size or not _verified(str(p), st.st_size, st.st_mtime_ns, f.sha256):
        return f"checksum mismatch for {p} (expected sha256 {f.sha256[:12]}..., size {f.size})"
    return None


def _problems(folder: Path, spec: DatasetSpec) -> list[str]:
    """What is wrong with ``folder`` as a copy of ``spec`` (empty list: complete and verified)."""
    return [msg for f in spec.files if (msg := _file_problem(folder / f.path, f))]


def remove_stale_parts(dest: Path) -> list[Path]:
    """Delete ``<dest>.<pid>.<random>.part`` files of downloads whose process is gone (killed mid-download)."""
    return remove_stale_temporaries(dest.parent, re.escape(dest.name) + r"\.(\d+)\.[^.]+\.part")


def _download(spec: DatasetSpec, f: FileSpec, dest: Path, progress: bool = True) -> None:
    """Download one file into ``dest`` atomically (temp file, sha256 check, rename)."""
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(dest)
    errors = []
    for base in spec.urls:
        url = base + Path(f.path).name
        fd, tmp = tempfile.mkstemp(prefix=f"{dest.name}.{os.getpid()}.", suffix=".part", dir=dest.parent)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                bar = tqdm(total=f.size, unit="B", unit_scale=True, desc=f"{spec.name}/{f.path}", disable=not progress)
                while block := resp.read(1 << 20):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
                bar.close()
            if h.hexdigest() != f.sha256:
                raise DatasetError(f"{url}: sha256 {h.hexdigest()} does not match the expected {f.sha256}")
            os.replace(tmp, dest)
            return
        # any failure of one URL (network, HTTP, checksum): try the next, never leave a partial file
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DatasetError(f"could not download {spec.name}/{f.path}:\n  " + "\n  ".join(errors))


def _how(spec: DatasetSpec, root: Path, mirror: Path | None) -> str:
    where = f"data root {root}" + (f" or mirror {mirror}" if mirror else "")
    return (
        f"How to get {spec.name}: {spec.how.replace('<DATA>', str(root))}\n"
        f"cnfkit looks in the {where}; set CNFKIT_DATA_ROOT / CNFKIT_DATA_MIRROR to point elsewhere.\n"
        f"Terms: {spec.terms}"
    )


def dataset_dir(
    name: str | DatasetSpec,
    *,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    download: bool | None = None,
    progress: bool = True,
) -> Path:
    """The folder holding a complete, checksum-verified copy of dataset ``name``.

    ``download=None`` downloads when no mirror is configured and ``$CNFKIT_OFFLINE`` is unset.
    """
    if isinstance(name, DatasetSpec):
        spec = name
    elif name in REGISTRY:
        spec = REGISTRY[name]
    else:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(REGISTRY))}")
    root_p, mirror_p = data_root(root), mirror_root(mirror)
    if mirror_p is not None and not mirror_p.is_dir():
        raise DatasetError(
            f"the offline mirror folder {mirror_p} does not exist (set by "
            f"{'mirror=' if mirror is not None else 'CNFKIT_DATA_MIRROR'}); "
            "point CNFKIT_DATA_MIRROR at an existing folder that holds the datasets, or unset it to use the data root "
            f"{root_p}.\n{_how(spec, root_p, None)}"
        )
    found: list[str] = []
    for base in ([mirror_p] if mirror_p else []) + [root_p]:
        folder = base / spec.name
        if folder.is_dir():
            problems = _problems(folder, spec)
            if not problems:
                return folder
            found += problems[:5] + ([f"... and {len(problems) - 5} more"] if len(problems) > 5 else [])
    if download is None:
        download = mirror_p is None and not os.environ.get("CNFKIT_OFFLINE")
    if download and spec.urls:
        folder = root_p / spec.name
        try:
            for f in spec.files:
                p = folder / f.path
                if _file_problem(p, f):
                    _download(spec, f, p, progress)
        except DatasetError as exc:  # say both: what is wrong with the local copy, and that the download failed too
            found.append(f"the download also failed: {exc}")
        else:
            problems = _problems(folder, spec)
            if not problems:
                return folder
            found += [p for p in problems if p not in found]
    detail = ("\nFound:\n  " + "\n  ".join(found)) if found else ""
    raise DatasetError(f"dataset {spec.name} is not available.{detail}\n{_how(spec, root_p, mirror_p)}")


def dataset_file(name: str, path: str, **kwargs) -> Path:
    """Path of one verified file of a dataset, e.g. ``dataset_file("MNIST", "t10k-labels-idx1-ubyte.gz")``."""
    spec = REGISTRY.get(name)
    if spec is not None:
        spec.file(path)  # raises KeyError for a file the dataset does not have
    return dataset_dir(name, **kwargs) / path
