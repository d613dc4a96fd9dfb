"""Segmentation metrics against scikit-learn, an independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score

from cnfkit.metrics import f_score, max_f_score, pr_curve, precision_recall


def _problem(seed=0, n=(3, 20, 24), ties=False):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(n, generator=g) < 0.15).double()
    scores = (0.6 * target + torch.rand(n, generator=g)).clamp(0, 1)
    if ties:
        scores = torch.round(scores * 10) / 10  # many equal scores, like an average of 10 samples
    mask = (torch.rand(n, generator=g) < 0.7).double()
    return scores, target, mask


@pytest.mark.parametrize("ties", [False, True])
def test_pr_curve_matches_sklearn(ties):
    scores, target, mask = _problem(1, ties=ties)
    keep = mask.bool()
    p_ref, r_ref, t_ref = precision_recall_curve(target[keep].numpy(), scores[keep].numpy())
    p, r, t = pr_curve(scores, target, mask)
    # sklearn orders thresholds ascending and appends the (precision 1, recall 0) end point
    order = np.argsort(t.numpy())
    np.testing.assert_allclose(t.numpy()[order], t_ref)
    np.testing.assert_allclose(p.numpy()[order], p_ref[:-1], rtol=1e-12)
    np.testing.assert_allclose(r.numpy()[order], r_ref[:-1], rtol=1e-12)


def test_precision_recall_and_f_score_match_sklearn():
    scores, target, mask = _problem(2)
    pred = (scores > 0.55).double()
    keep = mask.bool()
    p, r = precision_recall(pred, target, mask)
    assert p == pytest.approx(precision_score(target[keep], pred[keep]))
    assert r == pytest.approx(recall_score(target[keep], pred[keep]))
    assert f_score(p, r) == pytest.approx(f1_score(target[keep], pred[keep]))


def test_max_f_score_is_the_best_threshold():
    scores, target, mask = _problem(3)
    best, thr = max_f_score(scores, target, mask)
    keep = mask.bool()
    brute = max(f1_score(target[keep], (scores[keep] >= t).double()) for t in torch.unique(scores[keep]).tolist())
    assert best == pytest.approx(brute)
    assert f1_score(target[keep], (scores[keep] >= thr).double()) == pytest.approx(best)


def test_perfect_and_degenerate_cases():
    target = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert max_f_score(target.clone(), target)[0] == 1.0
    assert precision_recall(torch.zeros(2, 2), target) == (0.0, 0.0)
    assert f_score(0.0, 0.0) == 0.0


def test_bad_inputs():
    t = torch.tensor([[0.0, 1.0]])
    with pytest.raises(ValueError, match="same shape"):
        pr_curve(torch.rand(1, 3), t)
    with pytest.raises(ValueError, match="target must be binary"):
        pr_curve(torch.rand(1, 2), torch.tensor([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="mask must be binary"):
        pr_curve(torch.rand(1, 2), t, torch.tensor([[2.0, 1.0]]))
    with pytest.raises(ValueError, match="pred must be binary"):
        precision_recall(torch.tensor([[0.2, 0.9]]), t)
    with pytest.raises(ValueError, match="NaN"):
        pr_curve(torch.tensor([[float("nan"), 0.1]]), t)
    with pytest.raises(ValueError, match="no positive"):
        pr_curve(torch.rand(1, 2), torch.zeros(1, 2))


# --- PSNR / SSIM against scikit-image ---------------------------------------------------------

from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cnfkit.metrics import psnr, rgb_to_y, sr_psnr_ssim, ssim


def _pair(seed=0, shape=(40, 36)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, *shape, generator=g, dtype=torch.float64) * 255
    b = (a + 20 * torch.randn(3, *shape, generator=g, dtype=torch.float64)).clamp(0, 255)
    return a, b


def test_luma_matches_skimage_rgb2ycbcr():
    a, _ = _pair()
    ref = rgb2ycbcr(a.permute(1, 2, 0).numpy() / 255.0)[..., 0]
    np.testing.assert_allclose(rgb_to_y(a).numpy(), ref, rtol=1e-12)


def test_psnr_and_ssim_match_skimage():
    a, b = _pair(1)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    assert psnr(ya, yb).item() == pytest.approx(
        peak_signal_noise_ratio(ya.numpy(), yb.numpy(), data_range=255), rel=1e-12
    )
    ref = structural_similarity(
        ya.numpy(), yb.numpy(), data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(ya, yb).item() == pytest.approx(ref, rel=1e-9)
    # the SR convention crops `scale` pixels before both metrics
    p, s = sr_psnr_ssim(a[None], b[None], scale=2)
    ca, cb = ya[2:-2, 2:-2].numpy(), yb[2:-2, 2:-2].numpy()
    assert p.item() == pytest.approx(peak_signal_noise_ratio(ca, cb, data_range=255), rel=1e-12)
    assert s.item() == pytest.approx(
        structural_similarity(ca, cb, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False),
        rel=1e-9,
    )
    assert ssim(ya, ya).item() == pytest.approx(1.0)


def test_sr_metric_errors():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(4, 4), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_y(torch.zeros(1, 4, 4))


def test_binned_max_f_equals_the_exact_one_on_the_bin_grid():
    """Soft maps that are means of 20 binary samples lie on the grid k/20; with 1000 bins the pooled binned max F
    equals the exact sort-based one, and summing per-image counts is pooling the images."""
    from cnfkit.metrics import binned_counts, binned_max_f_score, max_f_score

    g = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 1, 16, 16, generator=g) > 0.8).float()
    soft = ((torch.rand(3, 1, 16, 16, generator=g) * 0.6 + target * 0.4) * 20).floor() / 20
    mask = (torch.rand(3, 1, 16, 16, generator=g) > 0.1).float()
    exact, _ = max_f_score(soft, target, mask)
    counts = sum(binned_counts(soft[i], target[i], mask[i]) for i in range(3))
    assert float(binned_max_f_score(counts)) == pytest.approx(exact, abs=1e-12)
    batch = np.stack([counts, counts])  # [..., 2, bins]: several pooled resamples at once
    assert binned_max_f_score(batch).shape == (2,)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binned_counts(soft * 2, target)
