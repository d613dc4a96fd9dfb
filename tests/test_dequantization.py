"""Dequantization bounds against exact discrete likelihoods on tiny problems (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from cnfkit import ConditionalFlow, VectorFlow
from cnfkit.dequantization import BinaryDequantizer, SqueezeContext, UniformDequantizer, VariationalDequantizer
from cnfkit.priors import gaussian_log_prob

from .helpers import randomize

M = torch.tensor([0.3, 0.9], dtype=torch.float64)  # p(v) = N(M, diag S^2)
S = torch.tensor([0.6, 0.4], dtype=torch.float64)
Y_ALL = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float64)


def log_p(v):
    return gaussian_log_prob(v, M.expand_as(v), S.log().expand_as(v))


def exact_binary_log_P(y):
    """P(y) = prod_d P(v_d > 0.5) or P(v_d < 0.5) under p(v)."""
    above = torch.special.ndtr((M - 0.5) / S)
    return torch.where(y == 1, above, 1 - above).log().sum(-1)


def exact_uniform_log_P(y):
    """P(y) = prod_d P(y_d <= v_d < y_d + 1) under p(v)."""
    return (torch.special.ndtr((y + 1 - M) / S) - torch.special.ndtr((y - M) / S)).log().sum(-1)


def noise_flow(seed=0, std=0.2):
    torch.manual_seed(seed)
    return randomize(VectorFlow(2, context_dim=2, blocks=2, hidden=16).double(), std=std, seed=seed)


def _bound(deq, y, n=20000):
    ys = y.expand(n, 2)
    with torch.no_grad():
        v, log_q = deq(ys)
        terms = log_p(v) - log_q
    return terms.mean().item(), terms.std().item() / math.sqrt(n)


@pytest.mark.parametrize("y", Y_ALL.tolist())
def test_binary_bound_is_below_the_exact_log_likelihood(y):
    y = torch.tensor([y], dtype=torch.float64)
    bound, se = _bound(BinaryDequantizer(noise_flow()), y)
    assert bound <= exact_binary_log_P(y).item() + 3 * se


@pytest.mark.parametrize("y", Y_ALL.tolist())
def test_uniform_bound_is_below_its_exact_log_likelihood(y):
    y = torch.tensor([y], dtype=torch.float64)
    bound, se = _bound(UniformDequantizer(n_bins=2, scale=False), y)
    assert bound <= exact_uniform_log_P(y).item() + 3 * se
    assert bound < exact_uniform_log_P(y).item() - 0.01  # and it is not tight for a Gaussian p(v)


def test_binary_bound_is_tight_when_p_matches_the_dequantizer():
    """p(v) = sum_y pi_y q(v | y): the half-lines of different y are disjoint, so on y's bin
    p(v) = pi_y q(v | y) and log p(v) - log q(v | y) = log pi_y = log P(y) for every sample."""
    deq = BinaryDequantizer(noise_flow(1))
    pi = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)

    def log_p_mix(v):
        comps = [pi[k].log() + deq.log_prob(v, Y_ALL[k].expand_as(v)) for k in range(4)]
        return torch.logsumexp(torch.stack(comps), dim=0)

    for k in range(4):
        with torch.no_grad():
            v, log_q = deq(Y_ALL[k].expand(500, 2))
            torch.testing.assert_close(log_p_mix(v) - log_q, pi[k].log().expand(500), rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", ["binary", "variational"])
def test_log_q_is_a_normalised_density_on_the_bin(kind):
    """Integrate exp(log q(v | y)) on a grid: 1 on the bin, 0 mass elsewhere; and the sampled log q
    agrees with log_prob at the samples."""
    nf = noise_flow(2, std=0.1)
    deq = BinaryDequantizer(nf) if kind == "binary" else VariationalDequantizer(nf, n_bins=2)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    lo, hi, n = (-12.0, 13.0, 1501) if kind == "binary" else (0.0, 1.0, 1201)
    t = torch.linspace(lo, hi, n, dtype=torch.float64)
    grid = torch.cartesian_prod(t, t)
    with torch.no_grad():
        dens = deq.log_prob(grid, y.expand_as(grid)).exp()
    mass = (dens * (t[1] - t[0]) ** 2).sum().item()
    assert mass == pytest.approx(1.0, abs=0.01)
    with torch.no_grad():
        v, log_q = deq(y.expand(64, 2))
        torch.testing.assert_close(deq.log_prob(v, y.expand(64, 2)), log_q, rtol=0, atol=1e-8)


def test_binary_samples_lie_on_the_correct_side():
    deq = BinaryDequantizer(noise_flow(3, std=0.5))
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (5000, 2), generator=g).double()
    with torch.no_grad():
        v, _ = deq(y)
    assert ((v - 0.5) * (2 * y - 1) > 0).all()


def test_binary_dequantizer_on_images_with_a_single_scale_cnf():
    torch.manual_seed(0)
    flow = ConditionalFlow(
        1,
        levels=1,
        steps=2,
        hidden=8,
        context_channels=4 * 3,
        conditioner=SqueezeContext(),
        coupling="additive",
        coupling_net="instance",
        actnorm=False,
    )
    deq = BinaryDequantizer(flow.double())
    y = (torch.rand(2, 1, 8, 8) > 0.7).double()
    h = torch.randn(2, 2, 8, 8, dtype=torch.float64)  # features of x at full resolution
    v, log_q = deq(y, h)
    assert v.shape == y.shape and ((v - 0.5) * (2 * y - 1) > 0).all()
    torch.testing.assert_close(deq.log_prob(v, y, h), log_q, rtol=0, atol=1e-8)
    log_q.sum().backward()
    assert all(p.grad is not None for p in flow.parameters())


def test_bad_inputs_raise_clear_errors():
    deq = BinaryDequantizer(noise_flow())
    with pytest.raises(ValueError, match="binary"):
        deq(torch.tensor([[0.0, 0.5]], dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        deq(torch.tensor([[0.0, float("nan")]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"integers in \[0, 255\]"):
        UniformDequantizer(256)(torch.tensor([[0.0, 256.0]]))
    with pytest.raises(ValueError, match="n_bins"):
        UniformDequantizer(1)


def test_support_demo_closed_forms():
    from cnfkit.experiments.binary_dequantization import binary_shapes, support_demo

    d = support_demo(0.7, 0.6)
    assert d["binary_P0"] + d["binary_P1"] == pytest.approx(1.0)
    assert d["uniform_mass_lost"] > 0.1  # mass outside [0, 2) belongs to no label
    u = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000  # midpoint rule on [0, 1)
    for y in (0, 1):
        assert d[f"uniform_bound{y}"] < math.log(d[f"uniform_P{y}"])
        integral = (-0.5 * math.log(2 * math.pi * 0.36) - (y + u - 0.7) ** 2 / (2 * 0.36)).mean().item()
        assert integral == pytest.approx(d[f"uniform_bound{y}"], abs=1e-8)
    x, yb = binary_shapes(4, 16, torch.Generator().manual_seed(0))
    assert x.shape == yb.shape == (4, 1, 16, 16) and set(yb.unique().tolist()) <= {0.0, 1.0} and yb.sum() > 0
