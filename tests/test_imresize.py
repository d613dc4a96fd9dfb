"""MATLAB-style bicubic imresize: worked examples, a second (loop) implementation, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnfkit.data.imresize import contributions, cubic, imresize


def _matlab_loop(vec: np.ndarray, scale: float) -> np.ndarray:
    """Independent, literal transcription of MATLAB's 1-D bicubic resampling (1-based indices)."""
    n = len(vec)
    out_len = math.ceil(n * scale)
    width = 4.0 / scale if scale < 1 else 4.0

    def k(x):
        x = abs(x)
        if x <= 1:
            return 1.5 * x**3 - 2.5 * x**2 + 1
        if x <= 2:
            return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
        return 0.0

    out = np.zeros(out_len)
    for j in range(1, out_len + 1):
        u = j / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        idx = [left + p for p in range(math.ceil(width) + 2)]
        ws = [(scale * k(scale * (u - i)) if scale < 1 else k(u - i)) for i in idx]
        total = sum(ws)
        acc = 0.0
        for i, wgt in zip(idx, ws):
            m = (i - 1) % (2 * n)  # mirror: 1..n, n..1
            src = m if m < n else 2 * n - 1 - m
            acc += wgt / total * vec[src]
        out[j - 1] = acc
    return out


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 0.7])
@pytest.mark.parametrize("n", [7, 16, 33])
def test_matches_a_literal_transcription(scale, n):
    rng = np.random.default_rng(n)
    vec = rng.uniform(0, 255, n)
    # a single row: along H (one pixel, mirrored onto itself) any scale is the identity
    ours = imresize(torch.tensor(vec)[None, :], scale)[0].numpy()
    np.testing.assert_allclose(ours, _matlab_loop(vec, scale), rtol=0, atol=1e-9)


def test_worked_example_linear_ramp_halved():
    """Bicubic weights reproduce linear functions, so away from the borders the 2x-downscaled ramp
    f(i) = i (1-based) is f(u) at u = 2j - 0.5."""
    ramp = torch.arange(1, 41, dtype=torch.float64).repeat(40, 1)  # f varies along W
    small = imresize(ramp, 0.5)
    assert small.shape == (20, 20)
    expected = 2 * torch.arange(1, 21, dtype=torch.float64) - 0.5
    torch.testing.assert_close(small[:, 3:-3], expected[3:-3].expand(20, 14), rtol=0, atol=1e-12)


def test_output_size_uses_the_size_ratio_like_matlab():
    vec = np.random.default_rng(0).uniform(0, 1, 7)
    ours = imresize(torch.tensor(vec)[None, :], output_size=(1, 4))[0].numpy()
    np.testing.assert_allclose(ours, _matlab_loop(vec, 4 / 7), rtol=0, atol=1e-9)


def test_properties():
    for scale in (0.5, 0.3, 1.7):
        w, ind = contributions(25, math.ceil(25 * scale), scale)
        torch.testing.assert_close(w.sum(1), torch.ones(w.shape[0], dtype=torch.float64))
        assert ind.min() >= 0 and ind.max() < 25
    const = torch.full((3, 17, 23), 0.37, dtype=torch.float64)
    torch.testing.assert_close(imresize(const, 0.5), torch.full((3, 9, 12), 0.37, dtype=torch.float64))
    assert cubic(torch.tensor([0.0, 1.0, 2.0, 1.5])).tolist() == [1.0, 0.0, 0.0, -0.0625]
    img = torch.randint(0, 256, (2, 3, 32, 30), dtype=torch.uint8)
    out = imresize(img, 0.5)
    assert out.dtype == torch.uint8 and out.shape == (2, 3, 16, 15)
    # batched = per image, and separable order does not matter for equal scales up to rounding
    torch.testing.assert_close(imresize(img.double(), 0.5)[1], imresize(img[1].double(), 0.5))


def test_antialiasing_differs_from_torch_bicubic():
    img = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    ours = imresize(img, 0.5)
    torchs = torch.nn.functional.interpolate(img, scale_factor=0.5, mode="bicubic", align_corners=False)
    assert (ours - torchs).abs().max() > 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        imresize(torch.rand(4, 4))
    with pytest.raises(ValueError, match="positive"):
        imresize(torch.rand(4, 4), -0.5)
    with pytest.raises(ValueError, match="uint8"):
        imresize(torch.zeros(4, 4, dtype=torch.int32), 0.5)


def test_uint8_rounds_after_each_dimension_like_matlab():
    """MATLAB keeps a uint8 image uint8 after each 1-D pass: round (half away from zero) and clip twice."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (48, 64)).astype(np.float64)  # rows 48, cols 64
    for scale in (0.5, 2.0, 0.37):
        rows = np.stack(
            [_matlab_loop(img[:, j], scale) for j in range(img.shape[1])], axis=1
        )  # rows first (equal scales)
        rows = np.clip(np.floor(rows + 0.5), 0, 255)
        both = np.stack([_matlab_loop(rows[i], scale) for i in range(rows.shape[0])], axis=0)
        expected = np.clip(np.floor(both + 0.5), 0, 255)
        ours = imresize(torch.tensor(img).to(torch.uint8), scale).numpy()
        np.testing.assert_array_equal(ours, expected.astype(np.uint8))


def test_bad_sizes_and_scales_are_refused():
    img = torch.rand(8, 8)
    with pytest.raises(ValueError, match="two positive ints"):
        imresize(img, output_size=(4.5, 4))
    with pytest.raises(ValueError, match="two positive ints"):
        imresize(img, output_size=(4,))
    for bad in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ValueError, match="finite positive"):
            imresize(img, bad)
    with pytest.raises(ValueError, match="NaN"):
        imresize(torch.full((8, 8), float("nan")), 0.5)
