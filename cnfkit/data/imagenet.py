"""Downsampled ImageNet (32x32 and 64x64) in both of its releases, memory-efficiently.

Two releases exist, resized differently, so bits/dim are **not comparable across them**:

* ``"png"``: van den Oord et al. 2016 (the PixelRNN release; what Winkler et al.'s code reads):
  folders of PNG files ``train_32x32/`` + ``valid_32x32/`` and ``train_64x64/`` + ``valid_64x64/``;
  the PNGs sit in the folder or one level below (as the tar files extract).
* ``"npz"``: Chrabaszcz, Loshchilov & Hutter 2017: ``Imagenet32_train_npz/train_data_batch_1.npz``
  ... ``_10.npz`` and ``Imagenet32_val_npz/val_data.npz`` (likewise ``Imagenet64_*``); each holds
  ``data``, uint8 ``N x 3*S*S`` channel-planar (all R, then G, then B, each row-major), and
  ``labels`` 1..1000.

Both are found under ``<dir>/ImageNet{S}/`` in the offline mirror or the data root (as the other
datasets).  Their terms do not allow automatic download (see :data:`HOW`).  On first use a split is
packed once into one uint8 array ``[N, 3, S, S]`` in ``<data root>/ImageNet{S}/packed/`` (written to a
temporary file and renamed; a manifest records the source files' names and sizes and the array's
sha256), and afterwards memory-mapped: ImageNet64's 12 GB are never held as float copies, and a
batch reads only its rows.  Verification checks the expected files, image counts, shapes and dtype,
and names the file that is wrong.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .store import DatasetError, data_root, mirror_root, sha256sum

__all__ = ["HOW", "RELEASES", "ImageNetArray", "find_release_dir", "load_imagenet"]

RELEASES = ("png", "npz")
SIZES = (32, 64)  # the releases' sizes (any size >= 2 is accepted, for small test files in the same format)
SPLITS = ("train", "valid")
EXPECTED_COUNTS = {"train": 1_281_149, "valid": 49_999}  # the PNG release; the npz release has 1,281,167 / 50,000
HOW = (
    "ImageNet{S} is not downloaded automatically (its terms require an ImageNet account). Obtain a release and put it "
    "under <DATA>/ImageNet{S}/ (or the offline mirror):\n"
    "  png release (van den Oord et al. 2016, the paper's): extract train_{S}x{S}.tar and valid_{S}x{S}.tar so that "
    "<DATA>/ImageNet{S}/train_{S}x{S}/ and valid_{S}x{S}/ hold the PNGs (directly or one folder below);\n"
    "  npz release (Chrabaszcz et al. 2017, image-net.org 'downsampled'): unzip Imagenet{S}_train_npz.zip and "
    "Imagenet{S}_val_npz.zip into <DATA>/ImageNet{S}/ (folders Imagenet{S}_train_npz/ with train_data_batch_1..10.npz "
    "and Imagenet{S}_val_npz/ with val_data.npz).\n"
    "Bits/dim on the two releases are not comparable (they were resized differently)."
)


def _how(size: int, root: Path) -> str:
    return HOW.replace("{S}", str(size)).replace("<DATA>", str(root))


def _check(size: int, split: str, release: str) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"ImageNet size must be an int >= 2 (the releases: {SIZES}), got {size!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}")


def _png_files(folder: Path) -> list[Path]:
    """The PNGs of a split folder, directly inside it or one level below, in a fixed (sorted) order."""
    files = sorted(folder.glob("*.png")) + sorted(folder.glob("*/*.png"))
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _npz_files(base: Path, size: int, split: str) -> list[Path]:
    if split == "train":
        folder = base / f"Imagenet{size}_train_npz"
        return [folder / f"train_data_batch_{i}.npz" for i in range(1, 11)]
    return [base / f"Imagenet{size}_val_npz" / "val_data.npz"]


def find_release_dir(size: int, split: str, release: str, *, root=None, mirror=None) -> tuple[Path, list[Path]]:
    """The folder and source files of one split of a release, from the mirror or the data root.

    Raises :class:`~cnfkit.data.DatasetError` saying what is missing and how to obtain it."""
    _check(size, split, release)
    root_p, mirror_p = data_root(root), mirror_root(mirror)
    if mirror_p is not None and not mirror_p.is_dir():
        raise DatasetError(f"the offline mirror folder {mirror_p} does not exist.\n{_how(size, root_p)}")
    problems = []
    for base in ([mirror_p] if mirror_p else []) + [root_p]:
        d = base / f"ImageNet{size}"
        if release == "png":
            folder = d / f"{split}_{size}x{size}"
            files = _png_files(folder) if folder.is_dir() else []
            if files:
                return folder, files
            problems.append(f"no PNG files in {folder}")
        else:
            files = _npz_files(d, size, split)
            missing = [str(f) for f in files if not f.is_file()]
            if not missing:
                return d, files
            problems.append(
                "missing " + ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            )
    raise DatasetError(
        f"ImageNet{size} ({release} release, {split}) is not available: "
        + "; ".join(problems)
        + "\n"
        + _how(size, root_p)
    )


def _read_png(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.size != (size, size):
                raise DatasetError(
                    f"{path} is {im.size[0]}x{im.size[1]}, expected {size}x{size}: not a file of the ImageNet{size} "
                    "release"
                )
            return np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    except DatasetError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # PIL: UnidentifiedImageError, "image file is truncated", ...
        raise DatasetError(
            f"{path} is not a readable PNG ({type(exc).__name__}: {exc}): replace it from the ImageNet{size} release"
        ) from exc


def _read_npz(path: Path, size: int) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:  # never pickle: a file that needs it is refused
            if not hasattr(z, "files"):
                raise ValueError("a single array, not an npz archive")
            data = z["data"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(
            f"{path} is not a valid ImageNet{size} npz batch, corrupt or truncated ({type(exc).__name__}: {exc}): "
            "replace it from the release"
        ) from exc
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * size * size:
        raise DatasetError(
            f"{path}: 'data' must be uint8 [N, {3 * size * size}] (channel-planar RGB), got {data.dtype} {data.shape}"
        )
    return data.reshape(-1, 3, size, size)  # channel-planar: R plane, G plane, B plane, each row-major


def _manifest(files: list[Path], base: Path) -> list[list]:
    """Each source file's path, size and modification time: a file replaced by another of the same size is seen."""
    return [[f.relative_to(base).as_posix(), (st := f.stat()).st_size, st.st_mtime_ns] for f in files]


def _read_manifest(path: Path) -> dict | None:
    """The stored manifest, or None when it is missing or unreadable (the packed file is then rebuilt)."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


@dataclass
class ImageNetArray:
    """A packed split: ``len(a)`` images, ``a[idx]`` -> uint8 tensor ``[k, 3, S, S]`` (reads only those rows)."""

    array: np.ndarray  # memory-mapped uint8 [N, 3, S, S]
    size: int
    split: str
    release: str
    source: str
    digest: str

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, idx) -> Tensor:
        if isinstance(idx, Tensor):
            idx = idx.cpu().numpy()
        rows = self.array[np.sort(idx) if isinstance(idx, np.ndarray) else idx]
        if isinstance(idx, np.ndarray):  # read in file order, return in the asked order
            order = np.argsort(np.argsort(idx, kind="stable"), kind="stable")
            rows = rows[order]
        # always a copy: a view of the read-only memory map would crash an in-place operation on the tensor
        return torch.from_numpy(np.array(rows, copy=True))

    def fingerprint(self) -> str:
        return self.digest[:16]


def _pack(files: list[Path], base: Path, size: int, release: str, out: Path, progress: bool) -> None:
    """Read every source file once into ``out`` (a uint8 .npy, via a temporary file renamed when complete)."""
    from tqdm.auto import tqdm

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if release == "png":
            n = len(files)
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
            for i, f in enumerate(tqdm(files, desc=f"packing ImageNet{size} PNGs", disable=not progress)):
                arr[i] = _read_png(f, size)
        else:
            counts = [int(_read_npz(f, size).shape[0]) for f in files]  # every error names its file
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(sum(counts), 3, size, size))
            pos = 0
            for f, c in zip(tqdm(files, desc=f"packing ImageNet{size} npz", disable=not progress), counts):
                arr[pos : pos + c] = _read_npz(f, size)
                pos += c
        arr.flush()
        del arr
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_imagenet(
    size: int,
    split: str = "train",
    release: str = "png",
    *,
    root=None,
    mirror=None,
    progress: bool = True,
    expect_count: int | None = None,
) -> ImageNetArray:
    """One split of downsampled ImageNet as a memory-mapped uint8 array (packed on first use).

    ``expect_count``: the number of images the split must have (``None``: no check; the real
    releases' counts are in :data:`EXPECTED_COUNTS` for the PNG release)."""
    base, files = find_release_dir(size, split, release, root=root, mirror=mirror)
    pack_dir = data_root(root) / f"ImageNet{size}" / "packed"
    out = pack_dir / f"{release}_{split}_{size}.uint8.npy"
    manifest_path = out.with_suffix(".json")
    manifest = {"source": str(base), "files": _manifest(files, base), "release": release, "size": size, "split": split}
    stored = _read_manifest(manifest_path) if out.is_file() else None
    stale = stored is None or {k: stored.get(k) for k in manifest} != manifest
    if (
        not stale
        and stored is not None
        and (out.stat().st_size != stored.get("bytes") or sha256sum(out) != stored.get("sha256"))
    ):
        # the packed file changed since it was written (a flipped byte, a partial copy): rebuild it. Measured cost
        # of the check here: sha256 at ~0.4 GB/s, ~10 s for ImageNet32's training split, ~40 s for ImageNet64's
        stale = True
    if stale:
        for p in (out, manifest_path):
            p.unlink(missing_ok=True)
        _pack(files, base, size, release, out, progress)
        manifest["sha256"], manifest["bytes"] = sha256sum(out), out.stat().st_size
        tmp = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(tmp, manifest_path)
    stored = _read_manifest(manifest_path)
    if stored is None:
        raise DatasetError(f"the manifest {manifest_path} could not be written or read back: check the data root")
    try:
        arr = np.load(out, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # e.g. a truncated file: the header promises more bytes than there are
        raise DatasetError(
            f"the packed file {out} is damaged ({exc}): delete it and {manifest_path.name} to pack again"
        ) from exc
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (3, size, size):
        raise DatasetError(
            f"the packed file {out} has {arr.dtype} {arr.shape}, expected uint8 [N, 3, {size}, {size}]: delete it to "
            "pack again"
        )
    if expect_count is not None and arr.shape[0] != expect_count:
        raise DatasetError(
            f"ImageNet{size} {split} ({release} release, {base}) has {arr.shape[0]} images, expected {expect_count}"
        )
    return ImageNetArray(arr, size, split, release, str(base), stored["sha256"])
