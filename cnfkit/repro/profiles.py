"""Profiles: one code path, three sizes.

Every experiment declares a frozen :class:`Config` dataclass and one instance per profile::

    CONFIGS = {"smoke": ToyConfig(steps=50, ...), "quick": ToyConfig(...), "full": ToyConfig(...)}
    cfg = select(CONFIGS, profile)

Profiles differ only in these numbers, never in code.  ``smoke`` runs in seconds to minutes on a
CPU (CI and nbval), ``quick`` at reduced scale on a 2-core CPU (its results are committed under
``results/quick/``), ``full`` uses the papers' settings on a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from ..config import Config, ConfigError

__all__ = ["PROFILES", "Config", "ConfigError", "ProfileError", "check_profile", "resolve_profile", "select"]

PROFILES = ("smoke", "quick", "full")


# One exception for every configuration error: the library's ConfigError, under the name the profiles used.
ProfileError = ConfigError


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is one of :data:`PROFILES`, else raise :class:`ProfileError`."""
    if profile not in PROFILES:
        raise ProfileError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile


def resolve_profile(profile: str | None = None) -> str:
    """``profile``, else ``$CNFKIT_PROFILE``, else ``full`` with CUDA and ``quick`` without."""
    if profile is None:
        profile = os.environ.get("CNFKIT_PROFILE")
    if profile is None:
        import torch

        profile = "full" if torch.cuda.is_available() else "quick"
    return check_profile(profile)


C = TypeVar("C", bound=Config)


def select(configs: Mapping[str, C], profile: str | None, dry_run: bool = False) -> C:
    """The configuration for ``profile`` (see :func:`resolve_profile` for ``None``); ``dry_run``: its
    :meth:`Config.dry_run` (same architecture, capped steps and evaluation sets)."""
    profile = resolve_profile(profile)
    missing = [p for p in PROFILES if p not in configs]
    if missing:
        raise ProfileError(f"configuration table lacks profile(s) {missing}")
    return configs[profile].dry_run() if dry_run else configs[profile]
