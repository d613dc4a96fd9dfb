"""The papers' published numbers (``paper_numbers.json``), for "paper" next to "ours" tables."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["paper_numbers"]


@cache
def _load() -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "paper_numbers.json").read_text())


def paper_numbers(table: str) -> dict[str, Any]:
    """One table, e.g. ``paper_numbers("xiao_table1_accuracy")["MNIST"] == 0.984``."""
    data = _load()
    if table not in data or table.startswith("_"):
        raise KeyError(f"unknown table {table!r}; known: {', '.join(k for k in data if not k.startswith('_'))}")
    return data[table]
