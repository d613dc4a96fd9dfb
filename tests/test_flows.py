"""Whole flows: multi-scale ConditionalFlow and VectorFlow, in float64."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from cnfkit import ConditionalFlow, VectorFlow, bits_per_dim
from cnfkit.priors import standard_normal_log_prob

from .helpers import brute_logdet, randomize


def _small_flow(context_channels=3, conditioner=None, **kw):
    torch.manual_seed(0)
    flow = ConditionalFlow(
        1, levels=2, steps=2, hidden=8, context_channels=context_channels, conditioner=conditioner, **kw
    )
    return randomize(flow.double(), std=0.2)


def _encode_flat(flow, x):
    def fn(t):
        zs, _ = flow.encode(t, x)
        return torch.cat([z.reshape(t.shape[0], -1) for z in zs], dim=1)

    return fn


FLOW_CASES = {
    "conditional-affine": {"context_channels": 3},
    "conditional-additive-instancenet": {"context_channels": 3, "coupling": "additive", "coupling_net": "instance"},
    "unconditional": {"context_channels": 0},
    "conditional-plain-1x1": {"context_channels": 3, "lu": False},
}


@pytest.mark.parametrize("case", FLOW_CASES)
def test_multiscale_flow_is_an_exact_bijection(case):
    kw = FLOW_CASES[case]
    flow = _small_flow(**kw)
    g = torch.Generator().manual_seed(1)
    y = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    x = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) if kw["context_channels"] else None
    zs, _ = flow.encode(y, x)
    assert [z.shape[1] for z in zs] == flow.latent_channels == [2, 8]
    torch.testing.assert_close(flow.decode(zs, x), y, rtol=0, atol=1e-10)


@pytest.mark.parametrize("case", FLOW_CASES)
def test_multiscale_flow_logdet_matches_jacobian(case):
    kw = FLOW_CASES[case]
    flow = _small_flow(**kw)
    g = torch.Generator().manual_seed(2)
    y = torch.randn(1, 1, 8, 8, generator=g, dtype=torch.float64)
    x = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64) if kw["context_channels"] else None
    zs_y, logdet = flow.encode(y, x)
    torch.testing.assert_close(logdet[0], brute_logdet(_encode_flat(flow, x), y), rtol=0, atol=1e-9)

    # inverse direction: the decoder's Jacobian at a random latent
    shapes = [z.shape for z in zs_y]
    zs = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    n0 = zs[0].numel()

    def decode_flat(t):
        return flow.decode([t[:, :n0].reshape(shapes[0]), t[:, n0:].reshape(shapes[1])], x).reshape(1, -1)

    flat = torch.cat([z.reshape(1, -1) for z in zs], dim=1)
    y2 = flow.decode(zs, x)
    _, ld_at_y2 = flow.encode(y2, x)
    torch.testing.assert_close(-ld_at_y2[0], brute_logdet(decode_flat, flat), rtol=0, atol=1e-9)


def test_log_prob_is_prior_plus_logdet():
    flow = _small_flow()
    g = torch.Generator().manual_seed(3)
    y = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    x = torch.randn(3, 3, 2, 2, generator=g, dtype=torch.float64)
    zs, logdet = flow.encode(y, x)
    hs = flow.features(x, (4, 4))
    # recompute the prior terms by hand from the levels' intermediate states
    z = y
    log_prior = 0
    for lvl, level in enumerate(flow.levels):
        z, _ = level(z, hs[lvl])
        if lvl == 0:
            z, z_out, lp = flow.splits[0](z, hs[0])
            torch.testing.assert_close(z_out, zs[0])
            log_prior = log_prior + lp
    log_prior = log_prior + flow.top_prior.log_prob(z, hs[1])
    torch.testing.assert_close(flow.log_prob(y, x), log_prior + logdet)
    torch.testing.assert_close(flow(y, x), flow.log_prob(y, x))


def test_conditioner_module_and_per_level_features():
    class TwoLevel(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 3, 3, padding=1)
            self.b = nn.Conv2d(2, 5, 3, padding=1)

        def forward(self, x):
            return [self.a(x), nn.functional.avg_pool2d(self.b(x), 2)]

    torch.manual_seed(0)
    flow = randomize(ConditionalFlow(1, 2, 2, 8, context_channels=[3, 5], conditioner=TwoLevel()).double(), std=0.2)
    x = torch.randn(1, 2, 2, 2, dtype=torch.float64)
    y = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    zs, logdet = flow.encode(y, x)
    torch.testing.assert_close(flow.decode(zs, x), y, rtol=0, atol=1e-10)
    torch.testing.assert_close(logdet[0], brute_logdet(_encode_flat(flow, x), y), rtol=0, atol=1e-9)
    # gradients reach every parameter, the conditioner's included
    flow.log_prob(y, x).sum().backward()
    for name, p in flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sample_shapes_temperature_and_determinism():
    flow = _small_flow()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    s1 = flow.sample(x, temperature=0.7, generator=torch.Generator().manual_seed(0))
    s2 = flow.sample(x, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert s1.shape == (4, 1, 8, 8)
    torch.testing.assert_close(s1, s2)
    # temperature 0 gives the deterministic "mode path" regardless of the noise
    m1 = flow.sample(x, temperature=0.0, generator=torch.Generator().manual_seed(0))
    m2 = flow.sample(x, temperature=0.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m1, m2)
    u = _small_flow(context_channels=0).sample(num_samples=2, size=(4, 8))
    assert u.shape == (2, 1, 4, 8)


def test_train_and_eval_modes_agree():
    flow = _small_flow()
    y = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    a = flow.train()(y, x)
    b = flow.eval()(y, x)
    torch.testing.assert_close(a, b)


def test_state_dict_roundtrip_gives_identical_log_prob():
    flow = _small_flow()
    y = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    buf = io.BytesIO()
    torch.save(flow.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(123)  # a different random init for the fresh copy
    fresh = ConditionalFlow(1, levels=2, steps=2, hidden=8, context_channels=3).double()
    fresh.load_state_dict(torch.load(buf))
    torch.testing.assert_close(fresh(y, x), flow(y, x), rtol=0, atol=0)


# --- vector flows ---------------------------------------------------------------------------


def test_vector_flow_bijection_and_logdet():
    torch.manual_seed(0)
    flow = randomize(VectorFlow(3, context_dim=2, blocks=3, hidden=16, actnorm=True).double(), std=0.3)
    y = torch.randn(1, 3, dtype=torch.float64)
    x = torch.randn(1, 2, dtype=torch.float64)
    z, ld = flow.encode(y, x)
    torch.testing.assert_close(flow.decode(z, x), y, rtol=0, atol=1e-10)
    torch.testing.assert_close(ld[0], brute_logdet(lambda t: flow.encode(t, x)[0], y), rtol=0, atol=1e-9)
    torch.testing.assert_close(
        -flow.encode(flow.decode(z, x), x)[1][0], brute_logdet(lambda t: flow.decode(t, x), z), rtol=0, atol=1e-9
    )


def test_2d_conditional_density_integrates_to_one():
    """Riemann sum of p(y|x) over a grid that holds (numerically) all the mass."""
    torch.manual_seed(0)
    flow = randomize(VectorFlow(2, context_dim=1, blocks=3, hidden=32).double(), std=0.15, seed=1)
    n, lim = 601, 10.0
    ticks = torch.linspace(-lim, lim, n, dtype=torch.float64)
    grid = torch.cartesian_prod(ticks, ticks)
    cell = (ticks[1] - ticks[0]) ** 2
    for x_value in (-1.0, 0.5, 2.0):
        x = torch.full((grid.shape[0], 1), x_value, dtype=torch.float64)
        with torch.no_grad():
            mass = (flow.log_prob(grid, x).exp() * cell).sum().item()
        assert abs(mass - 1.0) < 0.01, (x_value, mass)
    # and the density does depend on x
    with torch.no_grad():
        a = flow.log_prob(grid[:5], torch.full((5, 1), -1.0, dtype=torch.float64))
        b = flow.log_prob(grid[:5], torch.full((5, 1), 2.0, dtype=torch.float64))
    assert not torch.allclose(a, b)


# --- bits per dimension: known answers ------------------------------------------------------


def test_bits_per_dim_uniform_8bit_is_8():
    # a uniform density on [0, 1)^D has log p = 0 for every dequantized, scaled 8-bit image
    assert bits_per_dim(torch.zeros(3), num_dims=3 * 32 * 32, n_bins=256).tolist() == [8.0] * 3
    assert bits_per_dim(torch.zeros(1), num_dims=10, n_bins=2).item() == pytest.approx(1.0)


def test_fresh_volume_preserving_flow_is_standard_normal_and_bpd_is_analytic():
    """Additive couplings start as the identity, LU 1x1 convs as rotations, priors as N(0, I):
    the untrained flow is exactly a standard normal, whose bits/dim we know in closed form."""
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)  # build the rotations in float64 so they are exactly orthogonal
    try:
        flow = ConditionalFlow(3, levels=2, steps=3, hidden=8, coupling="additive", actnorm=False)
    finally:
        torch.set_default_dtype(torch.float32)
    y = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    d = 3 * 8 * 8
    expected_lp = -0.5 * (y**2).reshape(4, -1).sum(1) - 0.5 * d * math.log(2 * math.pi)
    torch.testing.assert_close(flow.log_prob(y), expected_lp, rtol=0, atol=1e-9)
    expected_bpd = -expected_lp.numpy() / (d * np.log(2))
    np.testing.assert_allclose(flow.bits_per_dim(y).detach().numpy(), expected_bpd, rtol=1e-12)
    # ... and with the change-of-scale term for 8-bit data scaled by 1/256
    np.testing.assert_allclose(flow.bits_per_dim(y, n_bins=256).detach().numpy(), expected_bpd + 8, rtol=1e-12)


def test_fresh_vector_flow_is_standard_normal():
    torch.manual_seed(0)
    flow = VectorFlow(4, blocks=2, hidden=8).double()  # soft-exp couplings start as the identity
    y = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(flow.log_prob(y), standard_normal_log_prob(y))


# --- bad input ------------------------------------------------------------------------------


def test_flow_input_validation():
    flow = ConditionalFlow(1, levels=2, steps=1, hidden=4, context_channels=3)
    y = torch.randn(2, 1, 8, 8)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="divisible by 4"):
        flow.log_prob(torch.randn(2, 1, 6, 8), x)
    with pytest.raises(ValueError, match=r"shape \[B, 1, H, W\]"):
        flow.log_prob(torch.randn(2, 2, 8, 8), x)
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(torch.full_like(y, float("nan")), x)
    with pytest.raises(ValueError, match="NaN"):
        flow.log_prob(y, torch.full_like(x, float("inf")))
    with pytest.raises(ValueError, match="pass the context"):
        flow.log_prob(y)
    with pytest.raises(ValueError, match=r"must have shape \[2, 3"):
        flow.log_prob(y, torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match=r"must have shape \[2, 3"):
        flow.log_prob(y, torch.randn(3, 3, 4, 4))
    with pytest.raises(ValueError, match="temperature"):
        flow.sample(x, temperature=-1.0)
    with pytest.raises(ValueError, match="positive"):
        ConditionalFlow(1, levels=0)
    v = VectorFlow(2, context_dim=1, blocks=1, hidden=4)
    with pytest.raises(ValueError, match=r"shape \[B, 2\]"):
        v.log_prob(torch.randn(3, 3), torch.randn(3, 1))
    with pytest.raises(ValueError, match=r"\[3, 1\]"):
        v.log_prob(torch.randn(3, 2), torch.randn(3, 2))


def test_rsample_log_prob_equals_log_prob_and_carries_gradients():
    torch.manual_seed(0)
    flow = randomize(ConditionalFlow(1, levels=2, steps=2, hidden=8, context_channels=3).double(), std=0.05)
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    y, lp = flow.rsample(x, generator=torch.Generator().manual_seed(0))
    assert y.abs().max() < 100  # well-conditioned weights: an exact comparison is meaningful
    torch.testing.assert_close(lp, flow.log_prob(y, x), rtol=0, atol=1e-9)
    (lp.sum() + y.sum()).backward()  # reparameterised: gradients reach every parameter through y and log q
    assert all(p.grad is not None for p in flow.parameters())
    torch.manual_seed(0)
    v = randomize(VectorFlow(3, context_dim=2, blocks=2, hidden=8).double(), std=0.3)
    c = torch.randn(4, 2, dtype=torch.float64)
    yv, lpv = v.rsample(c)
    torch.testing.assert_close(lpv, v.log_prob(yv, c), rtol=0, atol=1e-9)


def test_sampling_from_precomputed_features_matches():
    flow = _small_flow()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    a = flow.sample(x, generator=torch.Generator().manual_seed(5))
    b = flow.sample(features=flow.conditioning(x), size=(8, 8), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


def test_vector_flow_samples_from_precomputed_features_and_refuses_a_size():
    """The one sampler serves both flows: a vector flow's conditioner output replaces its context too."""
    conditioner = torch.nn.Linear(3, 2).double()
    flow = VectorFlow(4, context_dim=2, conditioner=conditioner, blocks=2, hidden=8).double()
    c = torch.randn(3, 3, dtype=torch.float64)
    a = flow.sample(c, num_samples=2, generator=torch.Generator().manual_seed(5))
    b = flow.sample(features=flow.conditioning(c), num_samples=2, generator=torch.Generator().manual_seed(5))
    assert a.shape == (6, 4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="context features must have shape"):
        flow.sample(features=torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="no spatial size"):
        flow.sample(c, size=(4, 4))


@pytest.mark.parametrize("kind", ["glow", "instance", "mlp", "other"])
def test_shared_context_is_the_concatenated_context(kind):
    """run_with_context with a Shared context = the network on [x, repeated context] (float64)."""
    from cnfkit import nets

    torch.manual_seed(0)
    if kind == "mlp":
        net = nets.mlp(3 + 5, 4, hidden=8).double()
        x, ctx = torch.randn(6, 3, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    else:
        net = (nets.glow_net(3 + 5, 4, hidden=8) if kind == "glow" else nets.instance_net(3 + 5, 4, hidden=8)).double()
        if kind == "other":
            net = nn.Sequential(nn.ReLU(), net)  # not splittable: falls back to the repeated context
        x, ctx = torch.randn(6, 3, 4, 4, dtype=torch.float64), torch.randn(2, 5, 4, 4, dtype=torch.float64)
    randomize(net)
    shared = nets.Shared(ctx, 3)
    expected = net(torch.cat([x, ctx.repeat_interleave(3, 0)], 1))
    torch.testing.assert_close(nets.run_with_context(net, x, shared), expected, rtol=1e-12, atol=1e-12)
    # context only (a top prior): computed once per group
    net_c = (nets.mlp(5, 4, hidden=8) if kind == "mlp" else nets.glow_net(5, 4, hidden=8)).double()
    randomize(net_c)
    torch.testing.assert_close(
        nets.run_with_context(net_c, None, shared), net_c(shared.materialize()), rtol=1e-12, atol=1e-12
    )
    with pytest.raises(ValueError, match="rows"):
        nets.run_with_context(net, x[:5], shared)


def test_samples_with_shared_features_match_repeated_features_in_float64():
    flow = _small_flow(coupling="additive", coupling_net="instance")
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(6)]
    a = flow.sample(x, num_samples=3, generator=gens())
    b = flow.sample(x.repeat_interleave(3, 0), generator=gens())
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    y, lp = flow._sample(x, num_samples=3, size=None, temperature=1.0, generator=gens(), with_log_prob=True)
    torch.testing.assert_close(lp, flow.log_prob(y, x.repeat_interleave(3, 0)), rtol=1e-9, atol=1e-9)
