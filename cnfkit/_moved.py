"""Old module paths, importable for one release (0.2) with a :class:`DeprecationWarning`.

cnfkit 0.2 laid the package out by role (the README's changelog lists the moves).  Code written for
0.1 (``from cnfkit.layers import ActNorm``, ``import cnfkit.segmentation``) keeps working: a finder on
``sys.meta_path`` answers the old names with the modules at their new paths (the same module
objects, so classes and ``isinstance`` agree) and warns once per name.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED = {
    "cnfkit.layers": "cnfkit.bijections",
    "cnfkit.segmentation": "cnfkit.models.segmentation",
    "cnfkit.superres": "cnfkit.models.superres",
    "cnfkit.toy": "cnfkit.models.toy",
    "cnfkit.profiles": "cnfkit.repro.profiles",
    "cnfkit.results": "cnfkit.repro.results",
    "cnfkit.paper": "cnfkit.repro.paper",
    "cnfkit.claims": "cnfkit.repro.claims",
    "cnfkit.report": "cnfkit.repro.report",
    "cnfkit.reproduce": "cnfkit.repro.reproduce",
    "cnfkit.interactive": "cnfkit.repro.interactive",
}
"""Old module path -> new module path."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return ModuleType(spec.name)  # a placeholder: exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} moved to {new} in cnfkit 0.2; the old path goes away in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        # the import system returns whatever sys.modules holds after exec_module: the real module
        sys.modules[module.__name__] = importlib.import_module(new)


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
