"""The book as a reader sees it: ``make book`` builds, and every page opens in headless Chromium without
console errors, with its figures decoded and its math typeset (MathJax served locally).

Skipped, with the reason, when Sphinx / MyST-NB / MathJax (``pip install -e '.[book]'``), Playwright or
Chromium (Debian: ``apt-get install chromium``) is absent.  One screenshot per page type is kept in
``build/book-screenshots/`` (git-ignored).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

for module, how in (
    ("sphinx", "pip install -e '.[book]'"),
    ("myst_nb", "pip install -e '.[book]'"),
    ("mathjax", "pip install -e '.[book]'"),
    ("playwright", "pip install -e '.[book]'"),
):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed ({how})", allow_module_level=True)
if CHROMIUM is None:
    pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)", allow_module_level=True)
if not list((ROOT / "results" / "quick" / "notebooks").glob("[0-9][0-9]_*.ipynb")):
    pytest.skip("no executed quick notebooks (make reproduce PROFILE=quick)", allow_module_level=True)

import sys

sys.path.insert(0, str(ROOT / "docs"))
import build_book

# page -> (kind for the screenshot, must show figures, must show typeset math)
PAGES = {
    "index.html": ("front", False, False),
    "readme.html": ("readme", True, False),
    "guide.html": ("guide", False, False),
    "api.html": ("api", False, False),
    "notebooks/00_theory.html": ("notebook", True, True),
    "notebooks/01_mnist.html": ("notebook", True, True),
    "notebooks/02_binary_dequantization.html": (None, True, False),
    "notebooks/03_drive.html": (None, True, False),
    "notebooks/04_super_resolution.html": (None, True, True),
    "notebooks/90_tables_and_figures.html": (None, False, False),  # tables and the claims
}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = build_book.build("quick", tmp_path_factory.mktemp("book") / "html")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", out
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


def test_every_page_loads_without_errors_and_renders_figures_and_math(site, browser):
    base, out = site
    shots = ROOT / "build" / "book-screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    taken = set()
    for page_path, (kind, figures, math) in PAGES.items():
        assert (out / page_path).is_file(), f"{page_path} was not built"
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        failed: list[str] = []
        page.on("requestfailed", lambda r, failed=failed: failed.append(r.url))
        page.goto(f"{base}/{page_path}", wait_until="networkidle")
        assert not errors, f"{page_path}: console errors {errors}"
        assert not failed, f"{page_path}: requests failed {failed}"
        offsite = [
            u for u in page.evaluate("Array.from(document.scripts).map(s => s.src)") if u and not u.startswith(base)
        ]
        assert not offsite, f"{page_path}: scripts from elsewhere {offsite}"
        if figures:
            sizes = page.evaluate("Array.from(document.images).map(i => [i.currentSrc, i.complete, i.naturalWidth])")
            pictures = [s for s in sizes if "_images" in s[0] or s[0].startswith("data:")]
            assert pictures, f"{page_path}: no figures"
            broken = [s[0][:80] for s in pictures if not s[1] or s[2] == 0]
            assert not broken, f"{page_path}: figures that did not decode: {broken}"
        if math:
            page.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=20000)
            assert page.evaluate("document.querySelectorAll('mjx-merror').length") == 0, f"{page_path}: MathJax errors"
        if kind and kind not in taken:
            page.screenshot(path=str(shots / f"{kind}.png"), full_page=False)
            taken.add(kind)
        page.close()
    assert taken == {"front", "readme", "guide", "api", "notebook"}
