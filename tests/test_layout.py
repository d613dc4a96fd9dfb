"""The layout by role: the library never imports the layers built on it, and the old module paths still import."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

from cnfkit._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "cnfkit"
# the reproduction layer, under its names of every release (0.1 kept these modules at the top level)
REPRODUCTION = (
    "cnfkit.repro",
    "cnfkit.experiments",
    *(old for old, new in MOVED.items() if new.startswith("cnfkit.repro")),
)
MODELS = ("cnfkit.models", *(old for old, new in MOVED.items() if new.startswith("cnfkit.models")))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from . import profiles` imports a module
    return found


def _inside(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _library_files() -> list[Path]:
    skip = {"__main__.py", "_moved.py"}
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name not in skip and not _inside(_module_name(p), ("cnfkit.repro", "cnfkit.experiments"))
    ]


def test_the_library_and_the_models_never_import_the_reproduction():
    offenders = {_module_name(p): sorted(m for m in _imports(p) if _inside(m, REPRODUCTION)) for p in _library_files()}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"library modules that import the reproduction layer: {offenders}"


def test_the_library_never_imports_the_papers_models():
    core = [p for p in _library_files() if not _inside(_module_name(p), MODELS)]
    offenders = {_module_name(p): sorted(m for m in _imports(p) if _inside(m, MODELS)) for p in core}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"library modules that import the papers' models: {offenders}"


def test_the_check_sees_imports():
    """The parser finds relative, aliased and function-level imports (a check that finds nothing proves nothing)."""
    found = _imports(PACKAGE / "repro" / "results.py")
    assert "cnfkit.data.store" in found and "cnfkit.utils" in found
    assert "cnfkit.repro.profiles" in found  # imported inside save_json
    assert len(_library_files()) > 20


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_import_with_a_deprecation_warning(old):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])  # the same module: classes and isinstance agree
    assert any(issubclass(w.category, DeprecationWarning) and MOVED[old] in str(w.message) for w in caught)


def test_one_name_for_the_condition():
    """``context`` everywhere: no ``cond``, ``cond_dim`` or ``cond_channels`` left in the package."""
    words = ("cond", "cond_dim", "cond_channels", "coupling_cond")
    hits = []
    for p in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.arg) and node.arg in words or isinstance(node, ast.Name) and node.id in words:
                hits.append(f"{p.relative_to(PACKAGE)}:{node.lineno}")
    assert not hits, hits


def test_one_keyword_order_for_every_sample():
    """``sample(context, *, num_samples, temperature, generator, ...)``: the context first, the rest by keyword only."""
    import inspect

    from cnfkit import ConditionalFlow, VectorFlow
    from cnfkit.models.segmentation import FactoredBernoulli, SegmentationCNF
    from cnfkit.models.superres import SRFlow
    from cnfkit.models.toy import GaussianRegressor

    for cls in (ConditionalFlow, VectorFlow, SegmentationCNF, SRFlow, FactoredBernoulli, GaussianRegressor):
        params = list(inspect.signature(cls.sample).parameters.values())[1:]  # after self
        assert params[0].name == "context", cls
        assert all(p.kind is p.KEYWORD_ONLY for p in params[1:]), f"{cls.__name__}.sample: {params}"
        names = [p.name for p in params[1:]]
        assert names[: len({"num_samples", "temperature", "generator"} & set(names))] == [
            n for n in ("num_samples", "temperature", "generator") if n in names
        ], f"{cls.__name__}.sample keyword order: {names}"
        assert "num_samples" in names and "generator" in names, cls


def test_results_name_the_configs_seeds():
    from dataclasses import dataclass

    from cnfkit.config import Config
    from cnfkit.experiments.common import checkpoint_path, config_seeds

    @dataclass(frozen=True)
    class One(Config):
        seed: int = 3

    @dataclass(frozen=True)
    class Many(Config):
        seeds: tuple[int, ...] = (0, 1, 2)
        nonnegative = frozenset({"seeds"})

    @dataclass(frozen=True)
    class NoSeed(Config):
        steps: int = 1

    assert config_seeds(One()) == [3] and config_seeds(Many()) == [0, 1, 2]
    with pytest.raises(TypeError, match="names no seed"):
        config_seeds(NoSeed())  # never an invented seed 0
    assert checkpoint_path(None, "drive", One()) is None
    assert checkpoint_path("ck", "drive", One(), "cnf", "seed0") == Path(
        "ck", f"drive-{One().digest()}", "cnf", "seed0"
    )


def test_orchestration_stays_short():
    """No function over 60 lines and no class over 250 in the package: length belongs to the maths, not plumbing."""
    long = []
    for p in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            limit = 250 if isinstance(node, ast.ClassDef) else 60
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if n > limit:
                    long.append(f"{p.relative_to(PACKAGE)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
