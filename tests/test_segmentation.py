"""DRIVE models and data helpers on small synthetic inputs (no DRIVE file is needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cnfkit.data.drive import affine_matrices, check_segmentation_batch, load_drive, random_affine
from cnfkit.models.segmentation import (
    FactoredBernoulli,
    SegmentationCNF,
    VGGFeatures,
    weighted_bernoulli_log_likelihood,
    weighted_cross_entropy,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _batch(n=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = (x[:, :1] > 0.8).float()
    mask = torch.ones_like(y)
    return x, y, mask


def test_vgg_features_resolutions():
    feats = VGGFeatures(widths=(8, 16, 24))(torch.rand(2, 3, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 16), (2, 24, 8, 8)]


@pytest.mark.parametrize("deq", ["binary", "uniform"])
def test_cnf_elbo_gradients_and_samples(deq):
    torch.manual_seed(0)
    model = SegmentationCNF(dequantization=deq, hidden=8, widths=(8, 8, 8))
    x, y, _ = _batch()
    elbo = model(y, x)
    assert elbo.shape == (2,) and torch.isfinite(elbo).all()
    (-elbo.mean()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    s = model.sample(x, generator=torch.Generator().manual_seed(0))
    assert s.shape == y.shape and set(s.unique().tolist()) <= {0.0, 1.0}
    m = model.mean_map(x, 3, generator=torch.Generator().manual_seed(0))
    assert 0 <= m.min() and m.max() <= 1


def test_weighted_bernoulli_is_normalised_and_its_numerator_is_the_training_loss():
    logits = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    for beta in (0.1, 0.5, 0.9):
        total = weighted_bernoulli_log_likelihood(logits, torch.ones_like(logits), beta, None)
        # per pixel, L(y=0) + L(y=1) = 1
        per_pixel = [
            weighted_bernoulli_log_likelihood(
                logits[:, :, i : i + 1, j : j + 1], torch.full((3, 1, 1, 1), v, dtype=torch.float64), beta
            )
            for i in range(4)
            for j in range(4)
            for v in (0.0, 1.0)
        ]
        mass = torch.stack(per_pixel).reshape(16, 2, 3).exp().sum(1)
        torch.testing.assert_close(mass, torch.ones_like(mass))
        assert torch.isfinite(total).all()
    y = (torch.rand(3, 1, 4, 4) > 0.5).double()
    p = torch.sigmoid(logits)
    ref = -(0.9 * y * p.log() + 0.1 * (1 - y) * (1 - p).log()).sum((1, 2, 3))
    torch.testing.assert_close(weighted_cross_entropy(logits, y, 0.9), ref)


def test_factored_baseline_shapes_and_bad_beta():
    torch.manual_seed(0)
    model = FactoredBernoulli(hidden=8, widths=(8, 8, 8))
    x, y, _ = _batch()
    assert model.logits(x).shape == y.shape
    assert torch.isfinite(model(y, x)).all() and torch.isfinite(model.loss(y, x)).all()
    with pytest.raises(ValueError, match="beta"):
        FactoredBernoulli(beta=1.0)
    with pytest.raises(ValueError, match="divisible by 4"):
        model.logits(torch.rand(1, 3, 18, 16))


def test_affine_augmentation_is_shared_and_keeps_labels_binary():
    x, y, m = _batch(size=32)
    r = torch.linspace(-1, 1, 32)
    disc = ((r[:, None] - 0.3) ** 2 + r[None, :] ** 2 < 0.3).float()  # an off-centre disc
    x, y = disc.expand(2, 3, 32, 32).clone(), disc.expand(2, 1, 32, 32).clone()
    img, lab, msk = random_affine(x, y, m, torch.Generator().manual_seed(0))
    assert set(lab.unique().tolist()) <= {0.0, 1.0} and set(msk.unique().tolist()) <= {0.0, 1.0}
    ident = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]).expand(2, 2, 3)
    img2, lab2, _msk2 = random_affine(x, y, m, matrices=ident)
    torch.testing.assert_close(img2, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(lab2, y)
    # same map for image and label: a label derived from a channel stays (mostly) consistent
    consistent = ((img[:, :1] > 0.5).float() == lab).float()[msk.bool()].mean()
    assert consistent > 0.97
    a = affine_matrices(1000, torch.Generator().manual_seed(1))
    dets = torch.linalg.det(a[:, :, :2])
    assert (dets > 1 / 1.2**2 - 1e-4).all() and (dets < 1 / 0.8**2 + 1e-4).all()  # |det| = 1 / s^2


def test_segmentation_batches_are_validated():
    x, y, m = _batch()
    with pytest.raises(ValueError, match="labels must be binary"):
        check_segmentation_batch(x, y * 0.5 + 0.25, m)
    with pytest.raises(ValueError, match="mask is required"):
        check_segmentation_batch(x, y, None)
    with pytest.raises(ValueError, match="matching images"):
        check_segmentation_batch(x, y[:, :, :8], m)
    with pytest.raises(ValueError, match="binary"):
        SegmentationCNF(hidden=4, widths=(4, 4, 4))(y * 0.3, x)


@pytest.mark.skipif(not (SHARED / "DRIVE").is_dir(), reason="DRIVE not available in the offline mirror")
def test_real_drive_split():
    d = load_drive("test", mirror=SHARED)
    assert d.images.shape == (20, 3, 584, 565) and d.second is not None
    assert abs(d.labels.mean().item() - 0.0876) < 1e-3 and abs(d.masks.mean().item() - 0.688) < 1e-3
    with pytest.raises(ValueError, match="split"):
        load_drive("validation", mirror=SHARED)


def test_drive_batches_are_deterministic_augmented_crops():
    from cnfkit.data.drive import DriveSplit
    from cnfkit.experiments import drive

    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(4, 3, 60, 58, generator=g)
    labels = (imgs[:, :1] > 0.7).float()
    split = DriveSplit(imgs, labels, torch.ones_like(labels), ["a", "b", "c", "d"])
    cfg = drive.CONFIGS["smoke"].replace(pad_to=64, crop=16)
    batches = drive.make_batches(split, cfg, seed=0)
    x, y = batches(3)
    assert x.shape == (2, 3, 16, 16) and y.shape == (2, 1, 16, 16) and set(y.unique().tolist()) <= {0.0, 1.0}
    x2, y2 = batches(3)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # a pure function of the step (exact resumption)
    assert not torch.equal(batches(4)[0], x)


def test_drive_bpd_is_one_definition_for_every_model():
    """Every Table 3 model is scored on the whole padded label map, divided by its pixel count; the
    FOV mask (used for PR curves and F-scores) does not enter bits/dim."""
    import math

    from cnfkit.data.drive import DriveSplit
    from cnfkit.data.transforms import pad_to_multiple
    from cnfkit.experiments import drive

    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 30, 30, generator=g)
    labels = (imgs[:, :1] > 0.7).float()
    fov = torch.zeros_like(labels)
    fov[..., 5:25, 5:25] = 1
    cfg = drive.CONFIGS["smoke"].replace(test_images=2)
    split_fov = DriveSplit(imgs, labels, fov, ["a", "b"])
    split_all = DriveSplit(imgs, labels, torch.ones_like(labels), ["a", "b"])
    torch.manual_seed(0)
    factored = drive.build_model("factored", cfg).eval()
    x_pad, _ = pad_to_multiple(imgs, 4)
    y_pad, _ = pad_to_multiple(labels, 4)
    with torch.no_grad():
        ll = weighted_bernoulli_log_likelihood(factored.logits(x_pad), y_pad, cfg.beta)
    expected = float((-ll / math.log(2) / y_pad[0].numel()).mean())
    assert drive.evaluate("factored", factored, split_fov, cfg, seed=0)["bpd"] == pytest.approx(expected, rel=1e-6)
    cnf = drive.build_model("cnf_uniform", cfg).eval()
    with torch.no_grad():
        cnf(y_pad, x_pad)  # initialise
    bpd = []
    for split in (split_fov, split_all):
        torch.manual_seed(1)
        bpd.append(drive.evaluate("cnf_uniform", cnf, split, cfg, seed=0)["bpd"])
    assert bpd[0] == pytest.approx(bpd[1], rel=1e-6)
    assert "whole label map" in drive.BPD_DEFINITION


@pytest.mark.parametrize("name", ["factored", "cnf", "cnf_uniform"])
def test_drive_evaluation_does_not_depend_on_the_batch_size(name):
    """Batched evaluation (several samples / images per call) = the one-at-a-time loop: every draw has
    its own generator seeded by (seed, image, sample), so the noise is identical; only float32
    rounding inside batched convolutions differs (1e-7 relative), which may flip a rare pixel that
    sits exactly at a sample's 0.5 threshold."""
    from cnfkit.data.drive import DriveSplit
    from cnfkit.experiments import drive

    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(3, 3, 30, 26, generator=g)
    labels = (imgs[:, :1] > 0.7).float()
    split = DriveSplit(imgs, labels, torch.ones_like(labels), ["a", "b", "c"])
    cfg = drive.CONFIGS["smoke"].replace(test_images=3, n_samples=5, n_scatter=3)
    torch.manual_seed(0)
    model = drive.build_model(name, cfg).eval()
    with torch.no_grad():
        if name != "factored":
            model(torch.zeros(1, 1, 32, 28), torch.zeros(1, 3, 32, 28))  # initialise
    one = drive.evaluate(name, model, split, cfg.replace(eval_batch=1), seed=3)
    many = drive.evaluate(name, model, split, cfg.replace(eval_batch=4), seed=3)
    assert one["bpd"] == pytest.approx(many["bpd"], rel=1e-5)
    assert (one["soft_maps"] != many["soft_maps"]).float().mean() < 1e-3
    np.testing.assert_allclose(one["sample_precision_recall"], many["sample_precision_recall"], atol=5e-3)
    assert len(one["sample_precision_recall"]) == 3 * 3
    if name != "factored":
        counts = one["soft_maps"] * 5  # a mean of 5 binary samples
        assert torch.allclose(counts, counts.round(), atol=1e-5)


def test_drive_run_reports_the_probabilistic_metrics():
    from cnfkit.data.drive import DriveSplit
    from cnfkit.experiments import drive

    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 40, 36, generator=g)
    labels = torch.zeros(2, 1, 40, 36)
    labels[..., 10:13, 4:32] = 1  # a 3-pixel-wide vessel
    second = torch.zeros_like(labels)
    second[..., 10:12, 4:32] = 1  # a thinner second grader
    split = DriveSplit(imgs, labels, torch.ones_like(labels), ["a", "b"], second)
    cfg = drive.CONFIGS["smoke"].replace(pad_to=48, crop=16, steps=2, test_images=2, n_samples=3, n_scatter=2)
    out = drive.run(cfg, data=(split, split), progress=False, device="cpu")
    for name in drive.MODELS:
        s = out["summary"][name]
        assert 0 <= s["calibration"]["ece"] <= 1 and "bins" in s["calibration"]
        assert s["pr_distance_to_human"]["energy_distance"] >= -1e-9
        assert set(s["ged"]) == {"ged", "cross", "diversity", "annotator_diversity"}
        assert s["vessel_width"] > 0
        assert s["uncertainty_auroc"] is None or 0 <= s["uncertainty_auroc"] <= 1
    h = out["human"]
    assert h["vessel_width_annotation"] == pytest.approx(3, rel=0.15) and h[
        "vessel_width_second_observer"
    ] == pytest.approx(2, rel=0.2)
    assert h["ged_between_annotators"] == pytest.approx(1 / 3)
    payload = drive.json_payload(out)
    assert "samples" not in payload["runs"]["cnf"][0] and "soft_maps" not in payload["runs"]["cnf"][0]
    # the claims' noise: per-image bits/dim, and the pooled max F-scores compared by a paired bootstrap over images
    assert all(len(out["runs"][m][0]["bpd_per_image"]) == 2 for m in drive.MODELS)
    assert out["runs"]["cnf"][0]["bpd"] == pytest.approx(np.mean(out["runs"]["cnf"][0]["bpd_per_image"]))
    cmp = payload["comparisons"]["max_f_score"]
    assert set(cmp) == {f"{a}-{b}" for a, b in drive.COMPARED}
    assert cmp["cnf-factored"]["n"] == 2 and cmp["cnf-factored"]["se"] >= 0
    assert cmp["cnf-factored"]["mean_a"] == pytest.approx(out["summary"]["cnf"]["f_score"], abs=2e-3)
    # the factored model sampled two ways: from its soft image (the paper) and from the likelihood it is scored with
    assert "pr_distance_to_human_scored" in out["summary"]["factored"]
    assert "pr_distance_to_human_scored" not in out["summary"]["cnf"]
    assert len(out["runs"]["factored"][0]["sample_precision_recall_scored"]) == 2 * 2
    json.dumps(payload)  # all of it JSON (no tensors, no infinities)


def test_fig5_shows_every_series_and_no_point_is_clipped():
    """Fig 5's single-sample scatter: factored samples at precision ~0.3 were outside a fixed 0.4-1 view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnfkit.experiments import drive

    curve = {"recall": [0.2, 0.6, 0.9], "precision": [0.95, 0.8, 0.5]}
    runs = {
        "factored": [{"pr_curve": curve, "max_f_score": 0.7, "sample_precision_recall": [[0.31, 0.9], [0.33, 0.88]]}],
        "cnf": [{"pr_curve": curve, "max_f_score": 0.75, "sample_precision_recall": [[0.8, 0.7], [0.78, 0.72]]}],
    }
    human = {"recall": 0.77, "precision": 0.81, "f_score": 0.79, "sample_precision_recall": [[0.81, 0.77]]}
    fig = drive.plot_pr({"runs": runs, "human": human})
    scatter_ax = fig.axes[1]
    (x0, x1), (y0, y1) = scatter_ax.get_xlim(), scatter_ax.get_ylim()
    for coll in scatter_ax.collections:
        pts = coll.get_offsets()
        inside = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
        assert inside.all(), coll.get_label()
    plt.close(fig)


def test_plain_bernoulli_factored_model_is_bernoulli_p():
    """beta=None: trained by the Bernoulli NLL and scored as Bernoulli(p) (the beta = 0.5 weighted model is a
    tempered distribution p^0.5 / (p^0.5 + (1 - p)^0.5), not Bernoulli(p))."""

    torch.manual_seed(0)
    m = FactoredBernoulli(3, hidden=4, widths=(4, 4, 4), beta=None).double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    y = (torch.rand(2, 1, 8, 8) > 0.6).double()
    ref = torch.distributions.Bernoulli(logits=m.logits(x)).log_prob(y).flatten(1).sum(1)
    torch.testing.assert_close(m(y, x), ref)
    torch.testing.assert_close(m.loss(y, x), -ref)
    torch.testing.assert_close(m.scored_map(x), m.soft_map(x))
    tempered = FactoredBernoulli(3, hidden=4, widths=(4, 4, 4), beta=0.5).double()
    tempered.load_state_dict(m.state_dict())
    assert not torch.allclose(tempered(y, x), ref)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9, None])
def test_scored_probability_is_the_scored_likelihood_of_a_vessel(beta):
    """P(y = 1) that the factored model's scored samples use is exp(log-likelihood of y = 1) of its scoring rule."""
    from cnfkit.models.segmentation import bernoulli_log_likelihood, scored_probability

    logits = torch.linspace(-6, 6, 13, dtype=torch.float64).reshape(13, 1, 1, 1)
    ones = torch.ones_like(logits)
    ll = (
        bernoulli_log_likelihood(logits, ones)
        if beta is None
        else weighted_bernoulli_log_likelihood(logits, ones, beta)
    )
    torch.testing.assert_close(scored_probability(logits, beta).flatten(), ll.exp())
    if beta == 0.9:  # the audit's numbers: P(vessel) 0.534 at p = 0.9 and 0.666 at p = 0.999
        p = torch.tensor([0.9, 0.999], dtype=torch.float64)
        got = scored_probability(torch.log(p / (1 - p)), 0.9)
        torch.testing.assert_close(got, torch.tensor([0.534, 0.666], dtype=torch.float64), atol=1e-3, rtol=0)
