"""Probabilistic evaluation metrics: cases with known answers and independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from cnfkit.data.imresize import imresize
from cnfkit.probabilistic import (
    auroc,
    binary_calibration,
    classification_calibration,
    generalized_energy_distance,
    iou_distance,
    lr_psnr,
    mode_mass_error,
    pixel_diversity,
    point_cloud_distance,
    sample_diversity,
    vessel_width,
)


def test_perfectly_calibrated_binary_predictor_has_ece_near_zero():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(200_000, generator=g, dtype=torch.float64)
    y = (torch.rand(200_000, generator=g, dtype=torch.float64) < p).double()  # y ~ Bernoulli(p): calibrated
    out = binary_calibration(p, y)
    assert out["ece"] < 0.01
    # always 0.5 for a 10% foreground: every pixel in one bin, |0.1 - 0.5| = 0.4
    y = (torch.rand(100_000, generator=g) < 0.1).float()
    out = binary_calibration(torch.full_like(y, 0.5), y)
    assert out["ece"] == pytest.approx(0.5 - float(y.double().mean()), abs=1e-9)
    assert out["bins"]["count"] == [100_000]
    # the mask restricts the pixels
    mask = torch.zeros_like(y)
    mask[:10] = 1
    assert sum(binary_calibration(torch.full_like(y, 0.5), y, mask)["bins"]["count"]) == 10
    with pytest.raises(ValueError, match="probabilities"):
        binary_calibration(torch.full_like(y, 1.5), y)


def test_classification_calibration_known_answers():
    labels = torch.tensor([0, 1, 2, 0])
    onehot = torch.nn.functional.one_hot(labels, 3).double()
    out = classification_calibration(onehot, labels)
    assert out["ece"] == 0 and out["accuracy"] == 1 and out["nll"] == pytest.approx(0.0)
    uniform = torch.full((4, 3), 1 / 3, dtype=torch.float64)
    out = classification_calibration(uniform, labels)
    assert out["nll"] == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match="probability vector"):
        classification_calibration(torch.ones(4, 3), labels)


def test_ged_of_identical_sets_is_zero_and_terms_match_hand_arithmetic():
    a = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0]], dtype=torch.float32)
    out = generalized_energy_distance(a, a.clone())
    assert out["ged"] == pytest.approx(0.0)
    # by hand: d(a0, a1) = 1 - |{1}| / |{0,1,2}| = 2/3; every term averages all 4 ordered pairs: (0 + 2/3 + 2/3 + 0) / 4
    assert out["cross"] == pytest.approx(1 / 3)
    assert out["diversity"] == pytest.approx(1 / 3) and out["annotator_diversity"] == pytest.approx(1 / 3)
    b = torch.tensor([[0, 0, 0, 1]], dtype=torch.float32)
    b2 = torch.cat([b, b])
    out = generalized_energy_distance(a, b2)
    assert out["cross"] == pytest.approx(1.0) and out["ged"] == pytest.approx(2 - 1 / 3 - 0)
    assert sample_diversity(a) == pytest.approx(2 / 3)
    empty = torch.zeros(2, 4)
    assert iou_distance(empty, empty).tolist() == [0.0, 0.0]  # two empty maps agree
    with pytest.raises(ValueError, match="binary"):
        generalized_energy_distance(a * 0.5, a)


def test_point_cloud_distance():
    a = [[0.8, 0.7], [0.75, 0.72]]
    out = point_cloud_distance(a, a)
    assert out["energy_distance"] == pytest.approx(0.0, abs=1e-12) and out["mean_nearest"] == 0
    out = point_cloud_distance([[0.0, 0.0]], [[3.0, 4.0]])
    assert out["energy_distance"] == pytest.approx(10.0) and out["mean_nearest"] == pytest.approx(5.0)


def test_vessel_width_of_bars():
    for w in (1, 3, 5):
        m = torch.zeros(64, 200)
        m[30 : 30 + w, 20:180] = 1
        assert vessel_width(m) == pytest.approx(w, rel=0.1)
    with pytest.raises(ValueError, match="empty skeleton"):
        vessel_width(torch.zeros(8, 8))


def test_auroc_matches_sklearn_with_ties():
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (2000,), generator=g).double()  # many ties
    events = (torch.rand(2000, generator=g) < 0.3).double()
    assert auroc(scores, events) == pytest.approx(roc_auc_score(events.numpy(), scores.numpy()), abs=1e-12)
    assert auroc(torch.tensor([0.1, 0.9]), torch.tensor([0.0, 1.0])) == 1.0
    assert auroc(torch.ones(4), torch.tensor([0.0, 1.0, 0.0, 1.0])) == 0.5
    with pytest.raises(ValueError, match="both"):
        auroc(torch.ones(3), torch.ones(3))


def test_lr_psnr_of_the_true_image_is_capped_and_a_wrong_one_is_finite():
    g = torch.Generator().manual_seed(2)
    hr = torch.randint(0, 256, (2, 3, 32, 32), generator=g).double()
    lr = imresize(hr, 0.5)
    assert torch.equal(lr_psnr(hr, lr), torch.full((2,), 100.0, dtype=torch.float64))  # infinite, capped and said so
    noisy = (hr + 20 * torch.randn(hr.shape, generator=g, dtype=torch.float64)).clamp(0, 255)
    v = lr_psnr(noisy, lr)
    assert torch.isfinite(v).all() and (v < 100).all() and (v > 20).all()
    with pytest.raises(ValueError, match="2x"):
        lr_psnr(hr, hr)


def test_pixel_diversity_and_mode_mass():
    s = torch.stack([torch.zeros(3, 4, 4), torch.full((3, 4, 4), 2.0)])
    assert pixel_diversity(s) == pytest.approx(math.sqrt(2.0))  # std of {0, 2} with n - 1 = 1
    assert pixel_diversity(torch.ones(5, 2, 2)) == 0
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    samples = torch.tensor([[0.1, 0.0], [9.0, 1.0], [0.0, -0.2], [-0.3, 0.1]])
    out = mode_mass_error(samples, centers, torch.tensor([0.5, 0.5]))
    assert (
        out["mass"] == [0.75, 0.25]
        and out["total_variation"] == pytest.approx(0.25)
        and out["max_error"] == pytest.approx(0.25)
    )
    np.testing.assert_allclose(mode_mass_error(samples, centers, torch.tensor([0.75, 0.25]))["total_variation"], 0.0)


def test_non_finite_samples_are_never_silently_counted():
    """A NaN sample was counted for mode 0, and NaNs passed through the diversity and point-cloud distances."""
    import math

    from cnfkit.probabilistic import mode_mass_error, pixel_diversity, point_cloud_distance

    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    samples = torch.tensor([[0.1, 0.0], [math.nan, 0.0], [9.9, 0.0], [10.1, 0.0]])
    r = mode_mass_error(samples, centers, torch.tensor([0.5, 0.5]))
    assert r["mass"] == [0.25, 0.5] and r["non_finite"] == 0.25
    assert r["total_variation"] == pytest.approx(0.5 * (0.25 + 0.0 + 0.25))
    with pytest.raises(ValueError, match="NaN"):
        pixel_diversity(torch.tensor([[1.0, math.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="NaN"):
        point_cloud_distance([[0.5, math.nan]], [[0.5, 0.5]])


@pytest.mark.parametrize("w", [3, 5])
def test_vessel_width_is_the_same_at_any_angle(w):
    """Area over the length of the centre line: a bar along a row and one at 45 degrees read the width that their
    digitised area gives (counting skeleton pixels as length read 45-degree widths sqrt(2) too large)."""
    import math

    n = 240
    r, c = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    length = 200.0
    bar = ((r - 120).abs() <= (w - 1) / 2) & (c >= 20) & (c < 20 + length)
    along = (r + c - 240).abs().double() / math.sqrt(2) < length / 2
    diagonal = ((r - c).abs().double() / math.sqrt(2) < w / 2) & along
    for band in (bar, diagonal):
        expected = float(band.sum()) / length  # digitised area per unit of centre-line length
        assert vessel_width(band.float()) == pytest.approx(expected, rel=0.03)


def test_skeleton_length_counts_diagonal_steps_as_sqrt2():
    import math

    from cnfkit.probabilistic import skeleton_length

    assert skeleton_length(np.eye(10, dtype=bool)) == pytest.approx(9 * math.sqrt(2) + 1)
    row = np.zeros((3, 10), dtype=bool)
    row[1] = True
    assert skeleton_length(row) == 10
    corner = np.zeros((4, 4), dtype=bool)
    corner[0, :3] = True
    corner[:3, 2] = True  # an L: the diagonal shortcut at the corner is not counted twice
    assert skeleton_length(corner) == 5


def test_sample_diversity_inside_a_mask():
    """Samples that differ only outside the field of view are identical inside it."""
    a = torch.zeros(8, 8)
    a[2:6, 2:6] = 1
    b = a.clone()
    b[0, 0] = 1  # outside the mask
    fov = torch.zeros(8, 8)
    fov[1:7, 1:7] = 1
    assert sample_diversity(torch.stack([a, b]), fov) == 0.0
    assert sample_diversity(torch.stack([a, b])) > 0
    with pytest.raises(ValueError, match="mask"):
        sample_diversity(torch.stack([a, b]), fov[:4])


def test_decision_uncertainty_follows_the_models_threshold():
    """A model that decides at t = 0.2: its wrong pixels are those near 0.2.  Uncertainty measured against t
    ranks them first (AUROC 1); the variance p(1 - p), peaking at 0.5, ranks them below confident-looking ones."""
    from cnfkit.probabilistic import decision_uncertainty

    p = torch.tensor([0.05, 0.18, 0.22, 0.5, 0.6, 0.95], dtype=torch.float64)
    wrong = torch.tensor([0, 1, 1, 0, 0, 0], dtype=torch.float64)
    assert auroc(decision_uncertainty(p, 0.2), wrong) == 1.0
    assert auroc(p * (1 - p), wrong) < 1.0
    assert decision_uncertainty(torch.tensor([0.2, 1.0]), 0.2).tolist() == pytest.approx([1.0, 0.0])
    with pytest.raises(ValueError, match="threshold"):
        decision_uncertainty(p, 1.5)
