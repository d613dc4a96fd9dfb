"""Build the cnfkit book: ``make book [PROFILE=quick]`` or ``python docs/build_book.py --profile quick``.

Stages the README, the guide, the API reference and the executed notebooks of ``results/<profile>/notebooks/``
(with the figures the README shows) into ``build/book-src/``, then runs Sphinx (MyST-NB, Furo) into
``build/book/<profile>/``.  Pages use the notebooks' stored outputs: nothing is re-executed.  MathJax is
copied from its Python distribution, so the site needs no network.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class BookError(RuntimeError):
    pass


def mathjax_dir() -> Path:
    spec = importlib.util.find_spec("mathjax")  # the django-static-mathjax distribution: MathJax 3 files, nothing else
    if spec is None or not spec.submodule_search_locations:
        raise BookError("MathJax is not installed: pip install -e '.[book]'")
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise BookError(f"no tex-chtml.js under {es5}: reinstall django-static-mathjax")
    return es5


def stage(profile: str, staging: Path, root: Path = ROOT) -> Path:
    """Copy what the book shows into ``staging`` (emptied first); returns the Sphinx source folder."""
    executed = root / "results" / profile / "notebooks"
    notebooks = sorted(executed.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise BookError(f"no executed notebooks in {executed}: run `make reproduce PROFILE={profile}` first")
    if staging.exists():
        shutil.rmtree(staging)
    src = staging / "docs"
    src.mkdir(parents=True)
    for f in (root / "docs").iterdir():
        if f.suffix in (".md", ".py", ".svg") and f.name != "build_book.py":
            shutil.copy2(f, src / f.name)
    shutil.copy2(root / "README.md", staging / "README.md")
    shutil.copytree(root / "examples", staging / "examples")
    (src / "notebooks").mkdir()
    for nb in notebooks:
        shutil.copy2(nb, src / "notebooks" / nb.name)
    for folder in ("figures", "tables"):
        if (root / "results" / profile / folder).is_dir():
            shutil.copytree(root / "results" / profile / folder, staging / "results" / profile / folder)
    bench = root / "results" / "benchmarks"  # the README's learning-per-second figures
    if bench.is_dir():
        shutil.copytree(
            bench,
            staging / "results" / "benchmarks",
            ignore=lambda d, names: [n for n in names if not n.endswith(".png")],
        )
    shutil.copytree(mathjax_dir(), src / "_static" / "mathjax")
    return src


def build(profile: str = "quick", out: Path | None = None, root: Path = ROOT) -> Path:
    """Stage and build; returns the HTML folder (its ``index.html`` is the front page)."""
    out = out or root / "build" / "book" / profile
    src = stage(profile, root / "build" / "book-src" / profile, root)
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-q",
        "-W",
        "--keep-going",
        str(src),
        str(out),
    ]  # a warning fails the build
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=None)
    if done.returncode != 0:
        raise BookError(f"sphinx-build failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="quick", help="whose executed notebooks to show (default: quick)")
    parser.add_argument("--out", type=Path, default=None, help="HTML folder (default: build/book/<profile>)")
    args = parser.parse_args(argv)
    try:
        out = build(args.profile, args.out)
    except BookError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"book: {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
