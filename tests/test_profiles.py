from dataclasses import dataclass

import pytest

from cnfkit.profiles import PROFILES, Config, ProfileError, check_profile, resolve_profile, select


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
