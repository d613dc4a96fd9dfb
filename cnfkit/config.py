"""Validated, frozen configuration dataclasses: the one way cnfkit is configured.

A :class:`Config` checks its numbers on construction (finite; positive unless named in
``nonnegative``), refuses unknown field names in :meth:`Config.replace` and :meth:`Config.from_dict`,
and hashes to a short :meth:`Config.digest` that names checkpoint folders.  Every invalid value raises
:class:`ConfigError`.  The training loop (:class:`cnfkit.train.TrainConfig`) and the experiments'
profile tables (:mod:`cnfkit.repro.profiles`) build on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, ClassVar

__all__ = ["Config", "ConfigError"]


class ConfigError(ValueError):
    """An invalid configuration value or name (also: an unknown profile)."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class for configurations.

    On construction every numeric field is checked: it must be finite and positive, except the
    fields named in ``nonnegative`` (which may be 0).  ``None`` means "off" and is always allowed.
    """

    nonnegative: ClassVar[frozenset[str]] = frozenset()
    # field -> cap: what a dry run (cnfkit.repro.profiles.select(..., dry_run=True)) shrinks
    dry_run_caps: ClassVar[dict[str, int]] = {}

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
            for item in v if isinstance(v, tuple) else (v,):
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    continue
                where = f"{type(self).__name__}.{f.name}"
                if not math.isfinite(item):
                    raise ConfigError(f"{where} must be finite, got {v!r}")
                if f.name in self.nonnegative:
                    if item < 0:
                        raise ConfigError(f"{where} must be >= 0, got {v!r}")
                elif item <= 0:
                    raise ConfigError(f"{where} must be positive, got {v!r}")

    def replace(self, **changes: Any):
        """A copy with some fields changed (validated again); unknown names are an error."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no field(s) {unknown}; fields: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The inverse of :meth:`to_dict` after a JSON round trip (lists back to tuples); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def digest(self) -> str:
        """A short hash of the class name and every field: names checkpoint folders, so a changed
        configuration never resumes from (or reuses) another configuration's checkpoints."""
        text = json.dumps([type(self).__name__, self.to_dict()], sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()[:12]
