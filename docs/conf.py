"""Sphinx configuration of the cnfkit book (``make book``; see ``docs/build_book.py``).

The pages are the README, the executed notebooks of one profile (their stored outputs: building never
re-executes), a guide and the API reference generated from the docstrings.  Everything the pages load
is local (MathJax included), so the site works offline.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the staged copy lives beside the repository's files
sys.path.insert(0, os.environ.get("CNFKIT_BOOK_SOURCE_ROOT", str(ROOT)))

project = "cnfkit"
author = "the cnfkit authors"
copyright = "the cnfkit authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "sphinx.ext.viewcode"]
nb_execution_mode = "off"  # pages use the stored outputs of make reproduce
nb_merge_streams = True
# progress bars in the stored outputs are ipywidgets: show their text, never fetch widget JavaScript from a CDN
nb_ipywidgets_js: dict = {}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**.ipynb_checkpoints", "results/*/private/**"]
suppress_warnings = ["myst.xref_missing", "myst.header"]  # README links to files of the repository, not to pages
html_theme = "furo"
html_title = "cnfkit: conditional normalizing flows, reproduced"
html_static_path = ["_static"]
html_favicon = "favicon.svg"
mathjax_path = "mathjax/tex-chtml.js"  # copied from the MathJax distribution by build_book.py: no CDN
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
