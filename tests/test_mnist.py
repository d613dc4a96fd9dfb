"""MNIST / Fashion-MNIST: idx parsing, the latent-flow pipeline on synthetic digits, real files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from cnfkit.data import DatasetError, load_mnist, read_idx
from cnfkit.experiments import mnist

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_read_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "raw").write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx_bytes(arr)[:-1])
    with pytest.raises(ValueError, match="expected"):
        read_idx(tmp_path / "short")


def test_load_mnist_rejects_unknown_names_and_splits(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_mnist("CIFAR10")
    with pytest.raises(ValueError, match="split"):
        load_mnist("MNIST", "validation")
    with pytest.raises(DatasetError, match="How to get MNIST"):
        load_mnist("MNIST", "test", root=tmp_path, mirror=tmp_path / "none")


@pytest.mark.skipif(not SHARED.is_dir(), reason="offline mirror ../shared/data not present")
@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_real_files(name):
    x, y = load_mnist(name, "test", mirror=SHARED)
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == (
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009] if name == "MNIST" else [1000] * 10
    )


def synthetic_digits(n: int, seed: int = 0):
    """Ten easy classes: a bright 6x6 square at a class-specific position, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (20 * torch.rand(n, 28, 28, generator=g)).to(torch.uint8)
    for c in range(10):
        r, col = 3 + 8 * (c // 4), 3 + 6 * (c % 4)
        x[y == c, r : r + 6, col : col + 6] = 230
    return x, y


def test_latent_flow_pipeline_on_synthetic_digits():
    cfg = mnist.CONFIGS["smoke"].replace(n_train=1024, n_test=256, ae_epochs=2, flow_epochs=6)
    x_tr, y_tr = synthetic_digits(1024, 0)
    x_te, y_te = synthetic_digits(256, 1)
    out = mnist.run_dataset("synthetic", cfg, progress=False, data=(x_tr, y_tr, x_te, y_te))
    m = out["metrics"]
    assert m["accuracy_forward_pass"] > 0.5 and m["accuracy_cnf_bayes"] > 0.5  # chance: 0.1
    grid = mnist.sample_grid(out, cfg, per_label=3)
    assert grid.shape == (10, 3, 28, 28) and 0 <= grid.min() and grid.max() <= 1
    assert mnist.style_grid(out, cfg, rows=2).shape == (2, 10, 28, 28)


def test_autoencoder_validates_input_and_config():
    ae = mnist.ConvAutoencoder(20)
    with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
        ae.encode(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="unknown profile"):
        mnist.config("tiny")
    with pytest.raises(ValueError, match="must be positive"):
        mnist.CONFIGS["smoke"].replace(label_noise=0.0)
