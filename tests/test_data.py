"""Data access: mirror, checksummed atomic downloads, clear errors, padding helpers."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from cnfkit.data import REGISTRY, DatasetError, DatasetSpec, FileSpec, crop_to, dataset_dir, pad_to_multiple

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _spec(tmp_path: Path, payloads: dict[str, bytes], *, corrupt: str | None = None) -> DatasetSpec:
    """A fake dataset served from a local folder through file:// URLs."""
    served = tmp_path / "served"
    served.mkdir()
    files = []
    for name, data in payloads.items():
        (served / name).write_bytes(data if name != corrupt else data[::-1] + b"x")
        files.append(FileSpec(name, hashlib.sha256(data).hexdigest(), len(data)))
    return DatasetSpec("Fake", tuple(files), urls=(served.as_uri() + "/",), how="ask the test", terms="none")


def test_download_verifies_and_places_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CNFKIT_DATA_MIRROR", raising=False)
    monkeypatch.delenv("CNFKIT_OFFLINE", raising=False)
    spec = _spec(tmp_path, {"a.bin": b"hello", "b.bin": os.urandom(3000)})
    folder = dataset_dir(spec, root=tmp_path / "root", progress=False)
    assert folder == tmp_path / "root" / "Fake"
    assert (folder / "a.bin").read_bytes() == b"hello"
    # a second call finds the verified copy and downloads nothing
    (tmp_path / "served" / "a.bin").unlink()
    assert dataset_dir(spec, root=tmp_path / "root", progress=False) == folder


def test_corrupt_download_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.delenv("CNFKIT_DATA_MIRROR", raising=False)
    spec = _spec(tmp_path, {"a.bin": b"hello", "b.bin": b"world"}, corrupt="b.bin")
    with pytest.raises(DatasetError, match="does not match"):
        dataset_dir(spec, root=tmp_path / "root", download=True, progress=False)
    left = sorted(p.name for p in (tmp_path / "root" / "Fake").iterdir())
    assert left == ["a.bin"], left  # the good file stays, no partial or corrupt b.bin


def test_corrupt_local_file_is_replaced_by_download(tmp_path):
    spec = _spec(tmp_path, {"a.bin": b"hello"})
    (tmp_path / "root" / "Fake").mkdir(parents=True)
    (tmp_path / "root" / "Fake" / "a.bin").write_bytes(b"HELLO")
    folder = dataset_dir(spec, root=tmp_path / "root", mirror=None, download=True, progress=False)
    assert (folder / "a.bin").read_bytes() == b"hello"


def test_mirror_is_used_offline_and_errors_say_how_to_obtain(tmp_path):
    spec = _spec(tmp_path, {"a.bin": b"hello"})
    mirror = tmp_path / "mirror"
    (mirror / "Fake").mkdir(parents=True)
    (mirror / "Fake" / "a.bin").write_bytes(b"hello")
    assert dataset_dir(spec, root=tmp_path / "root", mirror=mirror) == mirror / "Fake"
    # a corrupt mirror copy is reported, not used, and (offline) nothing is downloaded
    (mirror / "Fake" / "a.bin").write_bytes(b"hellO")
    with pytest.raises(DatasetError, match=r"checksum mismatch[\s\S]*How to get Fake: ask the test"):
        dataset_dir(spec, root=tmp_path / "root", mirror=mirror)
    assert not (tmp_path / "root").exists()


def test_missing_dataset_without_urls(tmp_path):
    with pytest.raises(DatasetError, match="drive.grand-challenge.org"):
        dataset_dir("DRIVE", root=tmp_path, mirror=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="unknown dataset"):
        dataset_dir("ImageNet1k", root=tmp_path)


def test_registry_covers_the_papers_datasets():
    assert {"DRIVE", "Set5", "Set14", "BSD100", "BSDS500_train_test", "MNIST", "FashionMNIST"} <= set(REGISTRY)
    assert len(REGISTRY["DRIVE"].files) == 140
    assert all(len(f.sha256) == 64 for s in REGISTRY.values() for f in s.files)


@pytest.mark.skipif(not SHARED.is_dir(), reason="offline mirror ../shared/data not present")
def test_shared_mirror_verifies():
    for name in ("MNIST", "Set5"):
        assert dataset_dir(name, mirror=SHARED, root="/nonexistent").is_dir()


def test_pad_and_crop():
    img = torch.arange(15.0).reshape(1, 3, 5)
    padded, size = pad_to_multiple(img, 4, square=True)
    assert padded.shape == (1, 8, 8) and size == (3, 5)
    assert padded[..., 3:, :].abs().sum() == 0 and padded[..., :, 5:].abs().sum() == 0
    torch.testing.assert_close(crop_to(padded, size), img)
    with pytest.raises(ValueError):
        pad_to_multiple(img, 0)


def test_parts_of_killed_downloads_are_removed_on_the_next_start(tmp_path, monkeypatch):
    monkeypatch.delenv("CNFKIT_DATA_MIRROR", raising=False)
    spec = _spec(tmp_path, {"a.bin": b"hello"})
    folder = tmp_path / "root" / "Fake"
    folder.mkdir(parents=True)
    pid = 4_000_000
    while True:  # a pid that runs nothing: the downloader that left this was killed
        try:
            os.kill(pid, 0)
            pid += 1
        except ProcessLookupError:
            break
    stale = folder / f"a.bin.{pid}.k2j4_x.part"
    stale.write_bytes(b"hel")
    dataset_dir(spec, root=tmp_path / "root", download=True, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin"]


def test_missing_mirror_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"offline mirror folder .*nowhere does not exist"):
        dataset_dir("MNIST", root=tmp_path / "root", mirror=tmp_path / "nowhere")


def test_unknown_dataset_names_are_refused_by_the_command_line(capsys):
    """`python -m cnfkit.data list nosuch` crashed with an AttributeError (found by mypy): now a clear error, exit 2."""
    from cnfkit.data.__main__ import main

    assert main(["list", "NoSuchSet"]) == 2
    assert "unknown dataset(s): NoSuchSet" in capsys.readouterr().err


def test_truncated_local_file_offline_says_checksum_and_download_both_failed(tmp_path, monkeypatch):
    """A corrupt local copy with the download failing too: the error names both (it said only 'could not download')."""
    monkeypatch.delenv("CNFKIT_DATA_MIRROR", raising=False)
    spec = _spec(tmp_path, {"a.bin": b"hello world"})
    (tmp_path / "served" / "a.bin").unlink()  # the server is unreachable for this file
    (tmp_path / "root" / "Fake").mkdir(parents=True)
    (tmp_path / "root" / "Fake" / "a.bin").write_bytes(b"hello")  # truncated
    with pytest.raises(DatasetError) as exc:
        dataset_dir(spec, root=tmp_path / "root", download=True, progress=False)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and "a.bin" in msg and "download also failed" in msg and "How to get" in msg


def test_read_idx_on_a_corrupt_gzip_names_the_file(tmp_path):
    from cnfkit.data.mnist import read_idx

    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz"):
        read_idx(bad)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="not a readable"):
        read_idx(bad)
