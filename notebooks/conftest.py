"""nbval: skip a notebook (with the reason) when a dataset it needs is not available locally.

With ``CNFKIT_REQUIRE_DATA=1`` (CI, which has the offline mirror) a missing dataset is an error instead: a green
run must not hide that notebooks were skipped."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

REQUIRES = {
    "01_mnist.ipynb": ("MNIST", "FashionMNIST"),
    "03_drive.ipynb": ("DRIVE",),
    "04_super_resolution.ipynb": ("BSDS500_train_test", "Set5", "Set14", "BSD100"),
}


@cache
def _available(name: str) -> bool:
    from cnfkit.data import DatasetError, dataset_dir

    try:
        dataset_dir(name, download=False)
        return True
    except DatasetError:
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        needs = REQUIRES.get(Path(str(item.fspath)).name, ())
        missing = [n for n in needs if not _available(n)]
        if missing and os.environ.get("CNFKIT_REQUIRE_DATA") == "1":
            raise pytest.UsageError(
                f"{Path(str(item.fspath)).name} needs dataset(s) {', '.join(missing)}, which are not available, and "
                "CNFKIT_REQUIRE_DATA=1 forbids skipping it: point CNFKIT_DATA_MIRROR at the datasets (data/README.md)"
            )
        if missing:
            item.add_marker(
                pytest.mark.skip(reason=f"dataset(s) {', '.join(missing)} not available (see data/README.md)")
            )
