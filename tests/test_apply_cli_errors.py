"""The apply CLI as a new user meets it: bounded memory, one-line errors, atomic outputs, no collisions."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cnfkit.__main__ import main
from cnfkit.train import atomic_save, read_checkpoint

from .test_apply_cli import train_tiny_drive


def _png(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def sr_ckpt(tmp_path_factory):
    from cnfkit.experiments import superres as sr

    ck = tmp_path_factory.mktemp("sr") / "ck"
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 136, 140), generator=g, dtype=torch.uint8) for _ in range(2)]
    data = {"train": imgs, "test": imgs, "test_sets": {}}
    sr.run(sr.config("smoke"), progress=False, device="cpu", checkpoint_dir=ck, train_only=True, data=data)
    return ck


def _sr(ck, out, *images, extra=()):
    return main(["superres", *map(str, images), "--checkpoint", str(ck), "-o", str(out), "--device", "cpu", *extra])


def test_oversized_image_is_refused_from_its_header(sr_ckpt, tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.new("RGB", (5000, 4000)).save(big)  # 20 MP, a few KB on disk
    assert _sr(sr_ckpt, tmp_path / "out", big) == 1
    err = capsys.readouterr().err
    assert "big.png" in err and "megapixels" in err and "--max-pixels" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no empty output folder left behind


def test_corrupt_images_fail_alone_with_one_line_each(sr_ckpt, tmp_path, capsys):
    good = _png(tmp_path / "good.png", 12, 16)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_png(tmp_path / "whole.png", 40, 40).read_bytes()[:200])
    out = tmp_path / "out"
    assert _sr(sr_ckpt, out, empty, good, text, truncated, extra=["--samples", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for f in ("empty.png", "text.png", "cut.png"):
        assert f in err
    assert "3 of 4 image(s) failed" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "good_baseline_mode.png", "good_bicubic.png", "good_posterior_mean.png", "good_sample0.png",
    ]  # fmt: skip


def test_same_stems_keep_their_extensions_and_the_same_file_twice_is_refused(sr_ckpt, tmp_path, capsys):
    a = _png(tmp_path / "x.png", 10, 10)
    b = tmp_path / "x.jpg"
    Image.open(a).save(b)
    out = tmp_path / "out"
    assert _sr(sr_ckpt, out, a, b, extra=["--samples", "1"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 8 and {n.split("_")[1] for n in names} == {"png", "jpg"}
    assert _sr(sr_ckpt, tmp_path / "o2", a, a) == 2
    assert "given twice" in capsys.readouterr().err


def test_bad_output_folder_device_and_temperature_are_one_line_errors(sr_ckpt, tmp_path, capsys):
    img = _png(tmp_path / "x.png", 10, 10)
    afile = tmp_path / "afile"
    afile.write_text("")
    assert _sr(sr_ckpt, afile, img) == 2
    assert "is not a folder" in capsys.readouterr().err
    if not torch.cuda.is_available():
        args = ["superres", str(img), "--checkpoint", str(sr_ckpt), "-o", str(tmp_path / "o"), "--device", "cuda"]
        assert main(args) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    for t in ("nan", "-1", "inf"):
        with pytest.raises(SystemExit) as exc:
            _sr(sr_ckpt, tmp_path / "o", img, extra=["--temperature", t])
        assert exc.value.code == 2
        assert "finite number >= 0" in capsys.readouterr().err


def test_bad_checkpoints_are_refused_before_building_anything(sr_ckpt, tmp_path, capsys):
    img = _png(tmp_path / "x.png", 10, 10)
    ck = tmp_path / "ck"
    shutil.copytree(sr_ckpt, ck)
    (ck / "cnf_old").mkdir()  # a stray folder is ignored
    assert _sr(ck, tmp_path / "o1", img, extra=["--samples", "1"]) == 0
    last = next(ck.rglob("cnf_*/last.pt"))
    # a stored configuration that describes a huge model: refused from the shapes, nothing allocated
    state = read_checkpoint(last)
    state["fingerprints"]["user"]["config"]["hidden"] = 200000
    atomic_save(state, last)
    assert _sr(ck, tmp_path / "o2", img) == 2
    err = capsys.readouterr().err
    assert "do not match the model" in err and "Traceback" not in err
    last.write_bytes(b"garbage")
    assert _sr(ck, tmp_path / "o3", img) == 2
    err = capsys.readouterr().err
    assert str(last) in err and "Traceback" not in err


def test_tiles_give_the_whole_image_result(sr_ckpt, tmp_path):
    """At temperature 0 the CNF's output is a function of the image: small tiles and one whole tile agree."""
    img = _png(tmp_path / "x.png", 44, 52)
    for tile in (8, 1000):
        assert (
            _sr(
                sr_ckpt, tmp_path / f"t{tile}", img, extra=["--temperature", "0", "--samples", "1", "--tile", str(tile)]
            )
            == 0
        )
    for name in ("x_sample0.png", "x_baseline_mode.png", "x_bicubic.png"):
        a = np.asarray(Image.open(tmp_path / "t8" / name)).astype(int)
        b = np.asarray(Image.open(tmp_path / "t1000" / name)).astype(int)
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3, name  # float rounding across a .5 boundary


def test_segment_on_a_tiny_image_says_it_is_too_small(tmp_path, capsys):
    train_tiny_drive(tmp_path / "ck")
    tiny = _png(tmp_path / "tiny.png", 1, 1)
    args = ["segment", str(tiny), "--checkpoint", str(tmp_path / "ck"), "-o", str(tmp_path / "o"), "--device", "cpu"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "tiny.png" in err and "too small" in err and "Traceback" not in err
