"""Downsampled ImageNet loaders on tiny files written in exactly each release's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnfkit.data import DatasetError
from cnfkit.data.imagenet import find_release_dir, load_imagenet


def _pattern(i: int, size: int) -> np.ndarray:
    """Image i: R, G, B planes that differ, with a known value at every pixel: [3, S, S] uint8."""
    y, x = np.mgrid[0:size, 0:size]
    r = (x + i) % 256
    g = (y * 2 + i) % 256
    b = np.full((size, size), (100 + 7 * i) % 256)
    return np.stack([r, g, b]).astype(np.uint8)


def _write_png_release(base, size, n, split="train", nested=False):
    folder = base / f"ImageNet{size}" / f"{split}_{size}x{size}"
    if nested:
        folder = folder / f"{split}_{size}x{size}"  # the tar extracts one level below
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(_pattern(i, size).transpose(1, 2, 0)).save(folder / f"{i:05d}.png")


def _write_npz_release(base, size, counts, split="train"):
    if split == "train":
        folder = base / f"ImageNet{size}" / f"Imagenet{size}_train_npz"
        names = [f"train_data_batch_{i}.npz" for i in range(1, 11)]
    else:
        folder = base / f"ImageNet{size}" / f"Imagenet{size}_val_npz"
        names = ["val_data.npz"]
    folder.mkdir(parents=True)
    k = 0
    for name, c in zip(names, counts):
        data = np.stack([_pattern(k + j, size).reshape(-1) for j in range(c)])  # channel-planar R, G, B, row-major
        np.savez(folder / name, data=data, labels=np.arange(1, c + 1))
        k += c


@pytest.mark.parametrize("nested", [False, True])
def test_png_release_pixels_and_channels(tmp_path, nested):
    _write_png_release(tmp_path / "mirror", 8, 5, nested=nested)
    a = load_imagenet(8, "train", "png", root=tmp_path / "root", mirror=tmp_path / "mirror", progress=False)
    assert len(a) == 5 and a.release == "png"
    batch = a[torch.tensor([3, 0])]
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 8, 8)
    assert torch.equal(batch[0], torch.from_numpy(_pattern(3, 8)))  # right channel at the right pixel, asked order
    assert torch.equal(batch[1], torch.from_numpy(_pattern(0, 8)))
    packed = tmp_path / "root" / "ImageNet8" / "packed"  # packed once into the writable data root, never the mirror
    assert (packed / "png_train_8.uint8.npy").is_file() and (packed / "png_train_8.uint8.json").is_file()
    assert not (tmp_path / "mirror" / "ImageNet8" / "packed").exists()


def test_npz_release_pixels_channels_and_batches(tmp_path):
    _write_npz_release(tmp_path / "mirror", 4, [2, 3, 1, 1, 1, 1, 1, 1, 1, 2])
    _write_npz_release(tmp_path / "mirror", 4, [3], split="valid")
    a = load_imagenet(
        4, "train", "npz", root=tmp_path / "root", mirror=tmp_path / "mirror", progress=False, expect_count=14
    )
    assert len(a) == 14
    for i in (0, 2, 13):
        assert torch.equal(a[np.array([i])][0], torch.from_numpy(_pattern(i, 4)))
    v = load_imagenet(4, "valid", "npz", root=tmp_path / "root", mirror=tmp_path / "mirror", progress=False)
    assert len(v) == 3 and torch.equal(v[np.array([2])][0], torch.from_numpy(_pattern(2, 4)))
    again = load_imagenet(4, "train", "npz", root=tmp_path / "root", mirror=tmp_path / "mirror", progress=False)
    assert again.digest == a.digest  # packed once, then memory-mapped


def test_missing_wrong_or_corrupt_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match=r"not available[\s\S]*train_32x32"):
        load_imagenet(32, "train", "png", root=tmp_path / "root", mirror=None)
    _write_npz_release(tmp_path / "m", 4, [1] * 9 + [1])
    (tmp_path / "m" / "ImageNet4" / "Imagenet4_train_npz" / "train_data_batch_7.npz").unlink()
    with pytest.raises(DatasetError, match="train_data_batch_7.npz"):
        find_release_dir(4, "train", "npz", root=tmp_path / "root", mirror=tmp_path / "m")
    # a file of the wrong size for this release
    folder = tmp_path / "m2" / "ImageNet8" / "train_8x8"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "00000.png")
    with pytest.raises(DatasetError, match=r"00000.png is 16x16, expected 8x8"):
        load_imagenet(8, "train", "png", root=tmp_path / "root2", mirror=tmp_path / "m2", progress=False)
    # an npz whose data is not uint8 channel-planar
    bad = tmp_path / "m3" / "ImageNet4" / "Imagenet4_val_npz"
    bad.mkdir(parents=True)
    np.savez(bad / "val_data.npz", data=np.zeros((2, 10), np.float32), labels=np.ones(2))
    with pytest.raises(DatasetError, match="val_data.npz"):
        load_imagenet(4, "valid", "npz", root=tmp_path / "root3", mirror=tmp_path / "m3", progress=False)
    with pytest.raises(DatasetError, match="expected 99"):
        _write_png_release(tmp_path / "m4", 8, 2)
        load_imagenet(
            8, "train", "png", root=tmp_path / "root4", mirror=tmp_path / "m4", progress=False, expect_count=99
        )


def test_a_changed_source_is_packed_again_and_a_killed_pack_leaves_nothing(tmp_path, monkeypatch):
    from cnfkit.data import imagenet

    _write_png_release(tmp_path / "m", 8, 3)
    a = load_imagenet(8, "train", "png", root=tmp_path / "root", mirror=tmp_path / "m", progress=False)
    Image.fromarray(_pattern(9, 8).transpose(1, 2, 0)).save(tmp_path / "m" / "ImageNet8" / "train_8x8" / "00003.png")
    b = load_imagenet(8, "train", "png", root=tmp_path / "root", mirror=tmp_path / "m", progress=False)
    assert len(b) == 4 and b.digest != a.digest
    Image.fromarray(_pattern(10, 8).transpose(1, 2, 0)).save(tmp_path / "m" / "ImageNet8" / "train_8x8" / "00004.png")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(imagenet, "_read_png", boom)
    with pytest.raises(KeyboardInterrupt):
        load_imagenet(8, "train", "png", root=tmp_path / "root", mirror=tmp_path / "m", progress=False)
    packed = tmp_path / "root" / "ImageNet8" / "packed"
    assert not list(packed.glob(".*tmp")) and not list(packed.glob("*.npy"))  # nothing half-written looks complete


def _load(tmp_path, release="png"):
    return load_imagenet(8, "train", release, root=tmp_path / "root", mirror=tmp_path / "mirror", progress=False)


@pytest.mark.parametrize("content", [b"", b"not a png", "truncated"])
def test_every_corrupt_png_is_a_dataset_error_naming_it(tmp_path, content):
    _write_png_release(tmp_path / "mirror", 8, 3)
    bad = tmp_path / "mirror" / "ImageNet8" / "train_8x8" / "00001.png"
    bad.write_bytes(bad.read_bytes()[:40] if content == "truncated" else content)
    with pytest.raises(DatasetError, match="00001.png"):
        _load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04broken zip", "truncated", "no data key"])
def test_every_corrupt_npz_batch_is_a_dataset_error_naming_it(tmp_path, content):
    _write_npz_release(tmp_path / "mirror", 8, [2, 2])
    bad = tmp_path / "mirror" / "ImageNet8" / "Imagenet8_train_npz" / "train_data_batch_2.npz"
    if content == "truncated":
        bad.write_bytes(bad.read_bytes()[:100])
    elif content == "no data key":
        np.savez(bad, other=np.zeros(3))
    else:
        bad.write_bytes(content)
    with pytest.raises(DatasetError, match="train_data_batch_2.npz"):
        _load(tmp_path, "npz")


def test_packed_cache_is_verified_and_rebuilt_when_stale(tmp_path):
    _write_png_release(tmp_path / "mirror", 8, 4)
    first = _load(tmp_path)[:]
    packed = tmp_path / "root" / "ImageNet8" / "packed" / "png_train_8.uint8.npy"
    manifest = packed.with_suffix(".json")
    raw = bytearray(packed.read_bytes())
    raw[-1] ^= 0xFF  # a flipped byte in the cache
    packed.write_bytes(bytes(raw))
    assert torch.equal(_load(tmp_path)[:], first)  # detected by its sha256 and packed again
    manifest.write_text("{ corrupt")  # a corrupt manifest: packed again, no JSONDecodeError
    assert torch.equal(_load(tmp_path)[:], first)
    # a source replaced by another of the same size (a new modification time): packed again, with the new pixels
    src = tmp_path / "mirror" / "ImageNet8" / "train_8x8" / "00002.png"
    Image.fromarray(_pattern(9, 8).transpose(1, 2, 0)).save(src)
    st = src.stat()
    import os

    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert torch.equal(_load(tmp_path)[2], torch.from_numpy(_pattern(9, 8)))


def test_indexing_returns_tensors_safe_to_modify(tmp_path):
    _write_png_release(tmp_path / "mirror", 8, 3)
    a = _load(tmp_path)
    for t in (a[0], a[1:3], a[torch.tensor([2, 0])]):
        t.add_(1)  # crashed (segfault) on a view of the read-only memory map
    assert torch.equal(a[0], torch.from_numpy(_pattern(0, 8)))  # the cache is untouched
