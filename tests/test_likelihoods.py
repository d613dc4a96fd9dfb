"""The discretized logistic: a proper distribution over levels, stable, exact."""

from __future__ import annotations

import pytest
import torch

from cnfkit.likelihoods import discretized_logistic_log_prob, discretized_logistic_mode, levels_to_unit


@pytest.mark.parametrize("mean,log_scale", [(0.0, -3.0), (0.93, -6.0), (-1.2, -1.0), (0.1, 2.0), (0.5, -12.0)])
def test_probabilities_sum_to_one(mean, log_scale):
    levels = torch.arange(256, dtype=torch.float64)
    lp = discretized_logistic_log_prob(levels, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64))
    assert torch.isfinite(lp).all()
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-12)


def test_matches_naive_cdf_differences():
    mean, s = torch.tensor(0.2, dtype=torch.float64), 0.05
    levels = torch.arange(1, 255, dtype=torch.float64)
    c = levels_to_unit(levels)
    naive = torch.sigmoid((c + 1 / 255 - mean) / s) - torch.sigmoid((c - 1 / 255 - mean) / s)
    lp = discretized_logistic_log_prob(levels, mean, torch.tensor(s, dtype=torch.float64).log())
    torch.testing.assert_close(lp.exp(), naive, rtol=1e-10, atol=1e-14)  # the naive form cancels in the tails


def test_stable_gradients_far_in_the_tails_and_mode():
    mean = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
    log_scale = torch.tensor([-9.0, -9.0], dtype=torch.float64, requires_grad=True)
    lp = discretized_logistic_log_prob(torch.tensor([10.0, 200.0], dtype=torch.float64), mean, log_scale)
    lp.sum().backward()
    assert torch.isfinite(lp).all() and torch.isfinite(mean.grad).all() and torch.isfinite(log_scale.grad).all()
    assert discretized_logistic_mode(torch.tensor([-1.0, 0.0, 1.0, 0.001])).tolist() == [0.0, 128.0, 255.0, 128.0]


def test_rejects_non_levels():
    with pytest.raises(ValueError, match="integer levels"):
        discretized_logistic_log_prob(torch.tensor([0.5]), torch.tensor(0.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match="integer levels"):
        discretized_logistic_log_prob(torch.tensor([256.0]), torch.tensor(0.0), torch.tensor(0.0))
