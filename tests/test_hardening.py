"""Bad input gets a clear error (or the correct answer), never a silent wrong one.

Each test here failed on the code before the hardening pass (issue 12): silent broadcasting, NaN
temperatures, integer data scored as densities, ActNorm initialised by a call that then failed or
from a degenerate batch, PSNR borders that score a corner.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from cnfkit import ConditionalFlow, VectorFlow
from cnfkit.bijections import ActNorm
from cnfkit.metrics import psnr, sr_psnr_ssim, ssim
from cnfkit.models.segmentation import (
    FactoredBernoulli,
    SegmentationCNF,
    weighted_bernoulli_log_likelihood,
    weighted_cross_entropy,
)
from cnfkit.models.superres import FactorizedLogisticSR, SRFlow
from cnfkit.priors import standard_normal_log_prob


def _cflow(**kw):
    torch.manual_seed(0)
    return ConditionalFlow(1, levels=2, steps=1, hidden=4, context_channels=3, **kw)


# --- sampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5])
def test_non_finite_or_negative_temperature_is_refused(bad):
    flow = _cflow()
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="temperature"):
        flow.sample(x, temperature=bad)
    v = VectorFlow(2, context_dim=1, blocks=1, hidden=4)
    with pytest.raises(ValueError, match="temperature"):
        v.sample(torch.randn(3, 1), temperature=bad)


def test_num_samples_with_x_draws_n_samples_per_row():
    flow = _cflow()
    x = torch.randn(2, 3, 4, 4)
    out = flow.sample(x, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 1, 8, 8)
    # rows i*n .. i*n+n-1 belong to x[i]: the same as sampling from x repeated row by row
    ref = flow.sample(x.repeat_interleave(3, 0), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, ref)
    v = VectorFlow(2, context_dim=1, blocks=1, hidden=4)
    xv = torch.randn(4, 1)
    out = v.sample(xv, num_samples=5, generator=torch.Generator().manual_seed(1))
    ref = v.sample(xv.repeat_interleave(5, 0), generator=torch.Generator().manual_seed(1))
    assert out.shape == (20, 2)
    torch.testing.assert_close(out, ref)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_samples"):
            flow.sample(x, num_samples=bad)


def test_sample_size_must_be_positive():
    flow = ConditionalFlow(1, levels=2, steps=1, hidden=4)
    with pytest.raises(ValueError, match="positive"):
        flow.sample(num_samples=2, size=(0, 0))
    with pytest.raises(ValueError, match="positive"):
        flow.sample(num_samples=2, size=(4.0, 4))


# --- what a flow scores ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_data_is_refused_with_a_dequantization_hint(dtype):
    flow = _cflow()
    y = torch.randint(0, 255, (2, 1, 8, 8)).to(dtype)
    with pytest.raises(TypeError, match="Dequantize"):
        flow.log_prob(y, torch.randn(2, 3, 4, 4))
    v = VectorFlow(2, blocks=1, hidden=4)
    with pytest.raises(TypeError, match="Dequantize"):
        v.log_prob(torch.randint(0, 3, (4, 2)).to(dtype))


def test_dtype_mismatch_and_empty_batch_have_readable_errors():
    flow = _cflow()
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(TypeError, match=r"float64 but the model's parameters are torch.float32"):
        flow.log_prob(torch.randn(2, 1, 8, 8, dtype=torch.float64), x)
    with pytest.raises(TypeError, match=r"context \(conditioning input\) is torch.float64"):
        flow.log_prob(torch.randn(2, 1, 8, 8), x.double())
    with pytest.raises(ValueError, match="empty batch"):
        flow.log_prob(torch.randn(0, 1, 8, 8), torch.randn(0, 3, 4, 4))
    v = VectorFlow(2, blocks=1, hidden=4)
    with pytest.raises(ValueError, match="empty batch"):
        v.log_prob(torch.randn(0, 2))


# --- ActNorm's data-dependent initialisation ------------------------------------------------


def _actnorms(m):
    return [a for a in m.modules() if isinstance(a, ActNorm)]


@pytest.mark.parametrize(
    "bad",
    [
        lambda: (torch.randn(0, 1, 8, 8), torch.randn(0, 3, 4, 4)),  # empty
        lambda: (torch.full((2, 1, 8, 8), float("nan")), torch.randn(2, 3, 4, 4)),  # NaN
        lambda: (torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.randn(2, 3, 4, 4)),  # wrong dtype
        lambda: (torch.randn(2, 1, 8, 8), torch.randn(2, 5, 4, 4)),  # wrong conditioning, fails later
    ],
)
def test_a_call_that_raises_does_not_initialise_actnorm(bad):
    flow = _cflow()
    y, x = bad()
    with pytest.raises((ValueError, TypeError)):
        flow.log_prob(y, x)
    assert not any(a._is_initialized or bool(a.initialized) for a in _actnorms(flow))


def test_a_failure_inside_the_flow_rolls_back_initialisation():
    """A layer after the first ActNorm rejects the input: the ActNorms that ran are reset."""
    flow = _cflow()

    def boom(z, ctx):
        raise RuntimeError("injected failure in the top prior")

    flow.top_prior.log_prob = boom
    with pytest.raises(RuntimeError, match="injected"):
        flow.log_prob(torch.randn(2, 1, 8, 8), torch.randn(2, 3, 4, 4))
    assert not any(a._is_initialized for a in _actnorms(flow))
    assert all(float(a.log_scale.detach().abs().sum()) == 0 for a in _actnorms(flow))


def test_actnorm_direct_initialisation_validates():
    a = ActNorm(3)
    for bad, err in (
        (torch.randn(0, 3, 4, 4), ValueError),
        (torch.full((2, 3, 4, 4), float("inf")), ValueError),
        (torch.randn(2, 3, 4, 4, dtype=torch.float64), ValueError),
    ):
        with pytest.raises(err):
            a(bad)
        assert not a._is_initialized and not bool(a.initialized)


def test_degenerate_first_batch_keeps_unit_scale_with_a_warning():
    # a constant first batch
    a = ActNorm(2)
    with pytest.warns(RuntimeWarning, match="constant"):
        a(torch.full((4, 2, 3, 3), 0.7))
    assert torch.equal(a.log_scale.detach(), torch.zeros(2))
    torch.testing.assert_close(a.loc.detach(), torch.full((2,), -0.7))
    # one vector per channel (a single image whose deepest level is 1x1)
    torch.manual_seed(0)
    flow = VectorFlow(16, blocks=2, hidden=8, actnorm=True)
    with pytest.warns(RuntimeWarning, match="constant"):
        flow.log_prob(torch.randn(1, 16))
    z = torch.randn(1000, 16, generator=torch.Generator().manual_seed(1))
    lp = flow.log_prob(z).mean().item()
    # the audit saw +94 nats for a 16-d normal draw after such an initialisation; a sane model is near -22.7
    assert math.isfinite(lp) and lp < 0
    assert all(a.log_scale.abs().max() < 5 for a in _actnorms(flow))


def test_varied_batch_initialises_without_warning():
    a = ActNorm(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a(torch.randn(8, 2, 4, 4) * 3 + 1)
    assert a._is_initialized


# --- the baselines never broadcast ----------------------------------------------------------


def test_factorized_logistic_refuses_misshapen_y():
    torch.manual_seed(0)
    m = FactorizedLogisticSR(rrdb_blocks=1, growth=4, nf=4, context_channels=4, hidden=4)
    x = torch.randint(0, 256, (3, 3, 4, 4)).float()
    y = torch.randint(0, 256, (3, 3, 8, 8)).float()
    assert m(y, x).shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        m(y[:1], x)  # a batch of 1 against a batch of 3
    with pytest.raises(ValueError, match="shape"):
        m(y[:, :, :4, :4], x)
    with pytest.raises(ValueError, match="integer levels"):
        m(torch.full_like(y, float("nan")), x)
    with pytest.raises(ValueError, match="NaN"):
        m.mode(torch.full_like(x, float("nan")))  # the CNF refuses a NaN input too
    flow = SRFlow(levels=2, steps=1, hidden=4, rrdb_blocks=1, growth=4, nf=4, context_channels=4)
    with pytest.raises(ValueError, match="shape"):
        flow(y[:1], x)
    with pytest.raises(ValueError, match="shape"):
        flow(torch.zeros(3, 3, 16, 16), x)


def test_factored_bernoulli_refuses_misshapen_non_binary_or_nan_y():
    torch.manual_seed(0)
    m = FactoredBernoulli(3, hidden=4, widths=(4, 4, 4))
    x = torch.randn(3, 3, 8, 8)
    y = (torch.rand(3, 1, 8, 8) > 0.5).float()
    assert m(y, x).shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        m(y[:1], x)
    with pytest.raises(ValueError, match="shape"):
        m.loss(y[:1], x)
    with pytest.raises(ValueError, match="binary"):
        m(y * 0.5, x)
    with pytest.raises(ValueError, match="NaN"):
        m(torch.full_like(y, float("nan")), x)
    with pytest.raises(ValueError, match="NaN"):
        m.soft_map(torch.full_like(x, float("nan")))
    logits = torch.randn(3, 1, 8, 8)
    for fn in (weighted_bernoulli_log_likelihood, weighted_cross_entropy):
        with pytest.raises(ValueError, match="shape"):
            fn(logits, y[:1], 0.9)
        with pytest.raises(ValueError, match="binary"):
            fn(logits, y + 0.1, 0.9)
        with pytest.raises(ValueError, match="mask"):
            fn(logits, y, 0.9, torch.ones(1, 1, 8, 8))
    cnf = SegmentationCNF(3, "uniform", hidden=4, widths=(4, 4, 4))
    with pytest.raises(ValueError, match="label maps"):
        cnf(y[:1], x)


# --- PSNR / SSIM borders ----------------------------------------------------------------------


def test_psnr_border_must_be_sane():
    a = torch.rand(1, 16, 16) * 255
    b = (a + torch.randn(1, 16, 16)).clamp(0, 255)
    with pytest.raises(ValueError, match="non-negative"):
        psnr(a, b, border=-1)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(a, b, border=8)
    with pytest.raises(ValueError, match="leaves nothing"):
        ssim(a, b, border=8)
    assert torch.isfinite(psnr(a, b, border=7)).all()
    with pytest.raises(ValueError, match="NaN"):
        psnr(a, torch.full_like(b, float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        sr_psnr_ssim(torch.full((1, 3, 16, 16), float("nan")), torch.zeros(1, 3, 16, 16))


def test_log_prob_of_untrained_vector_flow_is_still_exact_after_hardening():
    flow = VectorFlow(4, blocks=2, hidden=8)
    y = torch.randn(5, 4, dtype=torch.float64)
    flow = flow.double()
    torch.testing.assert_close(flow.log_prob(y), standard_normal_log_prob(y))


def test_no_file_the_project_reads_can_run_code():
    """Static guard: no pickle-capable loading anywhere in the package (checkpoints: read_checkpoint)."""
    from pathlib import Path

    import cnfkit

    bad = ("weights_only=False", "allow_pickle=True", "pickle.load(", "pickle.loads(", "torch.load(")
    hits = []
    for p in Path(cnfkit.__file__).parent.rglob("*.py"):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if any(b in line for b in bad) and "weights_only=True" not in line:
                hits.append(f"{p.name}:{i}: {line.strip()}")
    assert not hits, hits
