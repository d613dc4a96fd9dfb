"""The discretized logistic: a proper distribution over levels, stable, exact."""

from __future__ import annotations

import pytest
import torch

from cnfkit.likelihoods import discretized_logistic_log_prob, discretized_logistic_mode, levels_to_unit


@pytest.mark.parametrize("mean,log_scale", [(0.0, -3.0), (0.93, -6.0), (-1.2, -1.0), (0.1, 2.0), (0.5, -12.0)])
def test_probabilities_sum_to_one(mean, log_scale):
    levels = torch.arange(256, dtype=torch.float64)
    lp = discretized_logistic_log_prob(
        levels, torch.tensor(mean, dtype=torch.float64), torch.tensor(log_scale, dtype=torch.float64)
    )
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
    assert discretized_logistic_mode(torch.tensor([-1.0, 0.0, 1.0, 0.001]), torch.full((4,), -5.0)).tolist() == [
        0.0,
        128.0,
        255.0,
        128.0,
    ]


def test_rejects_non_levels():
    with pytest.raises(ValueError, match="integer levels"):
        discretized_logistic_log_prob(torch.tensor([0.5]), torch.tensor(0.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match="integer levels"):
        discretized_logistic_log_prob(torch.tensor([256.0]), torch.tensor(0.0), torch.tensor(0.0))


def test_mode_is_the_exact_argmax_over_levels():
    """Near the edges the open-ended first/last bins can beat the bin holding the mean."""
    # the audit's case: mean on level 1, scale 0.0101 -> level 0 (P = 0.40) beats level 1 (P = 0.19)
    mean = levels_to_unit(torch.tensor([1.0], dtype=torch.float64))
    log_scale = torch.log(torch.tensor([0.0101], dtype=torch.float64))
    lp = discretized_logistic_log_prob(torch.arange(256, dtype=torch.float64)[:, None], mean, log_scale)
    assert int(torch.argmax(lp[:, 0])) == 0 and lp[0, 0].exp() > 0.39 and lp[1, 0].exp() < 0.2
    assert discretized_logistic_mode(mean, log_scale).item() == 0.0
    # brute force on many random (mean, scale), dense near both edges and with tiny scales
    g = torch.Generator().manual_seed(0)
    n = 4000
    mean = torch.cat(
        [
            torch.rand(n, generator=g, dtype=torch.float64) * 2.2 - 1.1,
            -1 + torch.rand(n, generator=g, dtype=torch.float64) * 0.05,
            1 - torch.rand(n, generator=g, dtype=torch.float64) * 0.05,
        ]
    )
    log_scale = torch.rand(3 * n, generator=g, dtype=torch.float64) * 7 - 7.5
    levels = torch.arange(256, dtype=torch.float64)[:, None]
    brute = torch.argmax(discretized_logistic_log_prob(levels, mean[None], log_scale[None]), dim=0).double()
    fast = discretized_logistic_mode(mean, log_scale)
    assert torch.equal(fast, brute)
