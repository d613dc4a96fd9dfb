"""Profiles: one code path, three sizes.

Every experiment declares a frozen :class:`Config` dataclass and one instance per profile::

    CONFIGS = {"smoke": ToyConfig(steps=50, ...), "quick": ToyConfig(...), "full": ToyConfig(...)}
    cfg = select(CONFIGS, profile)

Profiles differ only in these numbers, never in code.  ``smoke`` runs in seconds to minutes on a
CPU (CI and nbval), ``quick`` at reduced scale on a 2-core CPU (its results are committed under
``results/quick/``), ``full`` uses the papers' settings on a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

__all__ = ["PROFILES", "Config", "ProfileError", "check_profile", "resolve_profile", "select"]

PROFILES = ("smoke", "quick", "full")


class ProfileError(ValueError):
    """An unknown profile name or an invalid configuration value."""


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


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class for experiment configurations.

    On construction every numeric field is checked: it must be finite and positive, except the
    fields named in ``nonnegative`` (which may be 0).  ``None`` means "off" and is always allowed.
    """

    nonnegative: ClassVar[frozenset[str]] = frozenset()
    dry_run_caps: ClassVar[dict[str, int]] = {}  # field -> cap: what a dry run (select(..., dry_run=True)) shrinks

    def dry_run(self):
        """The same architecture and data sizes with step counts and evaluation sets capped
        (``dry_run_caps``): proves a profile's whole path in minutes.  Tuples keep their first element."""
        changes = {}
        for name, cap in self.dry_run_caps.items():
            v = getattr(self, name)
            changes[name] = v[:1] if isinstance(v, tuple) else min(v, cap)
        return self.replace(**changes)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            values = v if isinstance(v, tuple) else (v,)
            for item in values:
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    continue
                if not math.isfinite(item):
                    raise ProfileError(f"{type(self).__name__}.{f.name} must be finite, got {v!r}")
                if f.name in self.nonnegative:
                    if item < 0:
                        raise ProfileError(f"{type(self).__name__}.{f.name} must be >= 0, got {v!r}")
                elif item <= 0:
                    raise ProfileError(f"{type(self).__name__}.{f.name} must be positive, got {v!r}")

    def replace(self, **changes: Any):
        """A copy with some fields changed (validated again); unknown names are an error."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ProfileError(f"{type(self).__name__} has no field(s) {unknown}; fields: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The inverse of :meth:`to_dict` after a JSON round trip (lists back to tuples); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ProfileError(f"{cls.__name__} has no field(s) {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def digest(self) -> str:
        """A short hash of the class name and every field: names checkpoint folders, so a changed
        configuration never resumes from (or reuses) another configuration's checkpoints."""
        text = json.dumps([type(self).__name__, self.to_dict()], sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


C = TypeVar("C", bound=Config)


def select(configs: Mapping[str, C], profile: str | None, dry_run: bool = False) -> C:
    """The configuration for ``profile`` (see :func:`resolve_profile` for ``None``); ``dry_run``: its
    :meth:`Config.dry_run` (same architecture, capped steps and evaluation sets)."""
    profile = resolve_profile(profile)
    missing = [p for p in PROFILES if p not in configs]
    if missing:
        raise ProfileError(f"configuration table lacks profile(s) {missing}")
    return configs[profile].dry_run() if dry_run else configs[profile]
