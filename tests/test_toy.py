"""The theory notebook's problems, models and losses."""

from __future__ import annotations

import math

import pytest
import torch

from cnfkit import VectorFlow
from cnfkit.experiments import theory
from cnfkit.models.toy import (
    EIGHT_MODE_CENTERS,
    INNWeights,
    LabelGaussianPrior,
    eight_modes,
    eight_modes_log_prob,
    inn_loss,
    mmd_multiscale,
    pad,
    rotating_modes,
    rotating_modes_log_prob,
    xiao_flow,
)
from cnfkit.priors import gaussian_log_prob, standard_normal_log_prob
from cnfkit.repro.profiles import ProfileError

from .helpers import randomize


def test_eight_modes_statistics():
    x, labels = eight_modes(80_000, torch.Generator().manual_seed(0))
    for c in range(8):
        pts = x[labels == c]
        torch.testing.assert_close(pts.mean(0), EIGHT_MODE_CENTERS[c], atol=0.02, rtol=0)
        torch.testing.assert_close(pts.std(0), torch.full((2,), 0.2), atol=0.01, rtol=0)
    assert torch.bincount(labels).min() > 9000


@pytest.mark.parametrize("density,value", [("rotating", 0.3), ("eight", 5)])
def test_true_densities_integrate_to_one(density, value):
    t = torch.linspace(-5, 5, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    cell = (t[1] - t[0]) ** 2
    if density == "rotating":
        lp = rotating_modes_log_prob(grid, torch.full((grid.shape[0], 1), value, dtype=torch.float64))
    else:
        lp = eight_modes_log_prob(grid, torch.full((grid.shape[0],), value))
    assert (lp.exp() * cell).sum().item() == pytest.approx(1.0, abs=1e-3)


def test_rotating_modes_samples_match_the_density():
    x, y = rotating_modes(50_000, torch.Generator().manual_seed(1))
    # the NLL of the true model on its own samples is its entropy: 2 * (0.5 log(2 pi e s^2)) + log 2
    entropy = math.log(2 * math.pi * math.e * 0.25**2) + math.log(2)
    assert -rotating_modes_log_prob(y, x).mean().item() == pytest.approx(entropy, abs=0.03)


def test_xiao_flow_log_prob_is_equation_9():
    torch.manual_seed(0)
    flow = randomize(xiao_flow(2, 8, 2, blocks=2, hidden=16).double(), std=0.2)
    g = torch.Generator().manual_seed(0)
    x, labels = eight_modes(5, g)
    onehot = torch.nn.functional.one_hot(labels, 8).double()
    xp = pad(x.double(), 10, 0.05, g)
    out, logdet = flow.encode(xp)  # the couplings need no label
    expected = (
        standard_normal_log_prob(out[:, :2])
        + gaussian_log_prob(out[:, 2:], onehot, torch.full_like(out[:, 2:], math.log(0.1)))
        + logdet
    )
    torch.testing.assert_close(flow(xp, onehot), expected)
    # inverse pass: a sample for a label decodes to a padded point whose forward pass recovers it
    s = flow.sample(onehot, generator=torch.Generator().manual_seed(1))
    assert s.shape == (5, 10)


def test_label_prior_and_pad_validation():
    with pytest.raises(ValueError, match="positive"):
        LabelGaussianPrior(2, 8, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        pad(torch.zeros(3, 2), 10, -0.1)
    with pytest.raises(ValueError, match="cannot pad"):
        pad(torch.zeros(3, 12), 10, 0.1)
    with pytest.raises(ValueError, match="one-hot"):
        LabelGaussianPrior(2, 8, 0.1).log_prob(torch.zeros(3, 10), None)


def test_mmd():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 2, generator=g)
    b = torch.randn(500, 2, generator=g)
    assert mmd_multiscale(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert mmd_multiscale(a, b).item() < 0.05
    assert mmd_multiscale(a, b + 3).item() > 0.5
    torch.testing.assert_close(mmd_multiscale(a, b), mmd_multiscale(b, a))


def test_inn_ramp_and_loss_terms():
    w = INNWeights()
    assert w.ramp(0.0) == pytest.approx(0.004)
    assert w.ramp(1.0) == 1.0
    assert INNWeights(ramp_speed=10).ramp(0.1) == 1.0
    torch.manual_seed(0)
    flow = VectorFlow(10, blocks=2, hidden=16)
    x, labels = eight_modes(64, torch.Generator().manual_seed(0))
    onehot = torch.nn.functional.one_hot(labels, 8).float()
    loss, parts = inn_loss(flow, x, onehot, 0.5, w, 2, 0.05, 0.1)
    assert torch.isfinite(loss) and {"l_y", "l_z", "l_x_mmd", "l_x_rec", "ramp"} <= set(parts)
    loss.backward()
    _, parts_fwd = inn_loss(flow, x, onehot, 0.5, INNWeights(backward=False), 2, 0.05, 0.1)
    assert set(parts_fwd) == {"l_y", "l_z"}


def test_theory_config_validation():
    assert theory.config("quick").gmm_batch == 1600  # the paper's settings
    with pytest.raises(ProfileError):
        theory.config("huge")
    with pytest.raises(ProfileError, match="pad_noise must be positive"):
        theory.CONFIGS["smoke"].replace(pad_noise=0.0)
    with pytest.raises(ValueError, match="unknown method"):
        theory.build_gmm_model("gan", theory.config("smoke"))


def test_single_loss_flow_and_cnf_learn_the_8_modes_in_a_few_steps():
    cfg = theory.config("smoke")
    out = theory.run_gmm(cfg, methods=("xiao", "cnf"), progress=False)
    m = out["metrics"]
    assert m["xiao"]["accuracy"] > 0.6  # chance is 0.125
    assert m["cnf"]["accuracy"] > 0.9
    assert m["cnf"]["posterior_mmd"] < 1.0
