"""python -m cnfkit superres / segment: apply a trained model (tiny, trained here) to image files."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cnfkit.__main__ import main


def _png(path, h, w, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def test_superres_on_a_photo(tmp_path):
    from cnfkit.experiments import superres as sr

    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 136, 140), generator=g, dtype=torch.uint8) for _ in range(2)]
    sr.run(
        sr.config("smoke"),
        progress=False,
        device="cpu",
        checkpoint_dir=tmp_path / "ck",
        train_only=True,
        data={"train": imgs, "test": imgs, "test_sets": {}},
    )
    photo = _png(tmp_path / "photo.png", 21, 30)
    assert (
        main(
            [
                "superres",
                str(photo),
                "--checkpoint",
                str(tmp_path / "ck"),
                "--samples",
                "2",
                "--temperature",
                "0.7",
                "-o",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "photo_baseline_mode.png",
        "photo_bicubic.png",
        "photo_posterior_mean.png",
        "photo_sample0.png",
        "photo_sample1.png",
    ]
    for n in names:
        with Image.open(tmp_path / "out" / n) as im:
            assert im.size == (60, 42) and im.mode == "RGB"  # 2x the input


def train_tiny_drive(checkpoint_dir):
    """A DRIVE checkpoint trained in seconds on random images (for the segment command's tests)."""
    from cnfkit.data.drive import DriveSplit
    from cnfkit.experiments import drive

    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 40, 36, generator=g)
    labels = (imgs[:, :1] > 0.8).float()
    split = DriveSplit(imgs, labels, torch.ones_like(labels), ["a", "b"])
    cfg = drive.CONFIGS["smoke"].replace(pad_to=48, crop=16, steps=2)
    drive.run(cfg, data=(split, split), progress=False, device="cpu", checkpoint_dir=checkpoint_dir, train_only=True)


def test_segment_on_a_fundus_image(tmp_path):
    train_tiny_drive(tmp_path / "ck")
    img = _png(tmp_path / "fundus.png", 30, 27)
    assert (
        main(
            [
                "segment",
                str(img),
                "--checkpoint",
                str(tmp_path / "ck"),
                "--samples",
                "3",
                "-o",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "fundus_factored.png",
        "fundus_mean.png",
        "fundus_sample0.png",
        "fundus_sample1.png",
        "fundus_sample2.png",
    ]
    with Image.open(tmp_path / "out" / "fundus_sample0.png") as im:
        a = np.asarray(im)
        assert a.shape == (30, 27) and set(np.unique(a)) <= {0, 255}


def test_missing_checkpoint_and_image_are_clear(tmp_path, capsys):
    img = _png(tmp_path / "x.png", 8, 8)
    assert main(["superres", str(img), "--checkpoint", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no super-resolution checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    assert (
        main(["segment", str(tmp_path / "missing.png"), "--checkpoint", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    )
    assert "no such image file" in capsys.readouterr().err
