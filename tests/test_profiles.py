from dataclasses import dataclass

import pytest

from cnfkit.repro.profiles import PROFILES, Config, ProfileError, check_profile, resolve_profile, select


@dataclass(frozen=True)
class Toy(Config):
    steps: int
    lr: float
    noise: float = 0.0
    grad_clip: float | None = None
    nonnegative = frozenset({"noise"})


TABLE = {"smoke": Toy(5, 1e-3), "quick": Toy(50, 1e-3), "full": Toy(500, 1e-3, noise=0.1)}


def test_select_and_unknown_profile():
    assert select(TABLE, "quick").steps == 50
    for p in PROFILES:
        assert check_profile(p) == p
    with pytest.raises(ProfileError, match="unknown profile 'medium'"):
        select(TABLE, "medium")


def test_resolve_profile_from_environment(monkeypatch):
    monkeypatch.setenv("CNFKIT_PROFILE", "smoke")
    assert resolve_profile() == "smoke"
    monkeypatch.setenv("CNFKIT_PROFILE", "tiny")
    with pytest.raises(ProfileError):
        resolve_profile()


def test_bad_values_are_rejected():
    with pytest.raises(ProfileError, match="steps must be positive"):
        Toy(0, 1e-3)
    with pytest.raises(ProfileError, match="noise must be >= 0"):
        Toy(1, 1e-3, noise=-0.1)
    with pytest.raises(ProfileError, match="finite"):
        Toy(1, float("nan"))
    with pytest.raises(ProfileError, match="no field"):
        TABLE["smoke"].replace(stepz=3)
    assert TABLE["smoke"].replace(steps=7).steps == 7
    with pytest.raises(ProfileError, match="lacks profile"):
        select({"smoke": Toy(1, 1.0)}, "smoke")


def test_dry_run_keeps_the_architecture_and_caps_steps_and_evaluation():
    from cnfkit.experiments import drive, superres

    full, dry = drive.config("full"), drive.config("full", dry_run=True)
    assert (
        (dry.pad_to, dry.crop, dry.hidden, dry.widths)
        == (full.pad_to, full.crop, full.hidden, full.widths)
        == (1024, 1024, 32, (32, 64, 128))
    )
    assert dry.steps == 2 and dry.test_images == 2 and dry.n_samples == 4 and dry.seeds == (0,)
    s = superres.config("full", dry_run=True)
    assert (s.sizes, s.flow_steps, s.hidden, s.rrdb_blocks, s.context) == ((32, 64), 8, 512, 16, 128)
    assert s.steps == 2 and s.max_test_images == 2 and s.train_data == "imagenet_png"
    assert drive.config("smoke", dry_run=True).steps <= drive.config("smoke").steps
