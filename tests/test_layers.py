"""Every bijection, in float64: exact inverse and log-determinant against autograd's Jacobian."""

from __future__ import annotations

import io
from functools import partial

import pytest
import torch

from cnfkit import nets
from cnfkit.bijections import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    FlowSequential,
    InvConv1x1,
    InvConv1x1LU,
    Permutation,
    Squeeze,
    flow_step,
)

from .helpers import brute_logdet, randomize

TOL = 1e-10
IMG = (1, 4, 4, 4)  # [B, C, H, W]: 64 dims, small enough for a dense Jacobian
VEC = (1, 5)
CTX_IMG = 3
CTX_VEC = 2


def _img_net(i, o):
    return nets.glow_net(i, o, hidden=6)


def _vec_net(i, o):
    return nets.mlp(i, o, hidden=7, layers=3)


# (name, constructor, input shape, conditioning shape or None)
CASES = [
    ("actnorm-img", lambda: ActNorm(4), IMG, None),
    ("actnorm-vec", lambda: ActNorm(5), VEC, None),
    ("conv1x1-img", lambda: InvConv1x1(4), IMG, None),
    ("conv1x1-vec", lambda: InvConv1x1(5), VEC, None),
    ("conv1x1lu-img", lambda: InvConv1x1LU(4), IMG, None),
    ("conv1x1lu-vec", lambda: InvConv1x1LU(5), VEC, None),
    ("squeeze", lambda: Squeeze(), IMG, None),
    ("permutation", lambda: Permutation(5), VEC, None),
    ("affine-img", lambda: AffineCoupling(4, _img_net), IMG, None),
    ("affine-img-context", lambda: AffineCoupling(4, _img_net, CTX_IMG), IMG, (1, CTX_IMG, 4, 4)),
    (
        "affine-img-instancenet-context",
        lambda: AffineCoupling(4, partial(nets.instance_net, hidden=5), CTX_IMG, parity=1),
        IMG,
        (1, CTX_IMG, 4, 4),
    ),
    ("affine-vec-sigmoid", lambda: AffineCoupling(5, _vec_net, parity=1), VEC, None),
    ("affine-vec-softexp-context", lambda: AffineCoupling(5, _vec_net, CTX_VEC, scale="soft_exp"), VEC, (1, CTX_VEC)),
    ("additive-img", lambda: AdditiveCoupling(4, _img_net), IMG, None),
    ("additive-img-context", lambda: AdditiveCoupling(4, _img_net, CTX_IMG, parity=1), IMG, (1, CTX_IMG, 4, 4)),
    ("additive-vec-context", lambda: AdditiveCoupling(5, _vec_net, CTX_VEC), VEC, (1, CTX_VEC)),
    ("flow-step-affine-context", lambda: flow_step(4, _img_net, CTX_IMG), IMG, (1, CTX_IMG, 4, 4)),
    ("flow-step-additive", lambda: flow_step(4, _img_net, coupling="additive", lu=False), IMG, None),
]


def _build(ctor, shape, context_shape, seed=0):
    torch.manual_seed(seed)
    layer = randomize(ctor().double(), seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    context = None if context_shape is None else torch.randn(context_shape, generator=g, dtype=torch.float64)
    return layer, y, context


@pytest.mark.parametrize("name,ctor,shape,context_shape", CASES, ids=[c[0] for c in CASES])
def test_inverse_roundtrip(name, ctor, shape, context_shape):
    layer, y, context = _build(ctor, shape, context_shape)
    z, ld_f = layer(y, context)
    y_rec, ld_i = layer.inverse(z, context)
    torch.testing.assert_close(y_rec, y, rtol=0, atol=TOL)
    torch.testing.assert_close(ld_i, -ld_f, rtol=0, atol=TOL)
    # and the other way round, starting from the latent side
    z2 = torch.randn_like(z)
    y2, _ = layer.inverse(z2, context)
    torch.testing.assert_close(layer(y2, context)[0], z2, rtol=0, atol=TOL)


@pytest.mark.parametrize("name,ctor,shape,context_shape", CASES, ids=[c[0] for c in CASES])
def test_logdet_matches_autograd_jacobian(name, ctor, shape, context_shape):
    layer, y, context = _build(ctor, shape, context_shape)
    z, ld_f = layer(y, context)
    assert ld_f.shape == (1,)
    expected_f = brute_logdet(lambda t: layer(t, context)[0], y)
    torch.testing.assert_close(ld_f[0], expected_f, rtol=0, atol=1e-9)
    # inverse direction, at a point that is not the image of y
    z2 = torch.randn_like(z)
    _, ld_i = layer.inverse(z2, context)
    expected_i = brute_logdet(lambda t: layer.inverse(t, context)[0], z2)
    torch.testing.assert_close(ld_i[0], expected_i, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name,ctor,shape,context_shape", CASES, ids=[c[0] for c in CASES])
def test_batch_is_per_sample(name, ctor, shape, context_shape):
    """A batch of 3 gives the same per-sample outputs as the samples one at a time."""
    layer, _, _ = _build(ctor, shape, context_shape)
    g = torch.Generator().manual_seed(7)
    y = torch.randn((3,) + shape[1:], generator=g, dtype=torch.float64)
    context = None if context_shape is None else torch.randn((3,) + context_shape[1:], generator=g, dtype=torch.float64)
    z, ld = layer(y, context)
    for i in range(3):
        zi, ldi = layer(y[i : i + 1], None if context is None else context[i : i + 1])
        torch.testing.assert_close(z[i : i + 1], zi, rtol=0, atol=TOL)
        torch.testing.assert_close(ld[i : i + 1], ldi, rtol=0, atol=TOL)


def test_conditioning_changes_the_output():
    layer, y, context = _build(lambda: AffineCoupling(4, _img_net, CTX_IMG), IMG, (1, CTX_IMG, 4, 4))
    z1, ld1 = layer(y, context)
    z2, ld2 = layer(y, context + 1.0)
    assert not torch.allclose(z1, z2)
    assert not torch.allclose(ld1, ld2)


def test_fresh_coupling_is_near_identity_and_exact_identity_for_soft_exp():
    torch.manual_seed(0)
    y = torch.randn(2, 5, dtype=torch.float64)
    layer = AffineCoupling(5, _vec_net, scale="soft_exp").double()
    z, ld = layer(y)
    torch.testing.assert_close(z, y)
    torch.testing.assert_close(ld, torch.zeros(2, dtype=torch.float64))


def test_sequential_composes_logdets():
    torch.manual_seed(0)
    seq = randomize(FlowSequential(ActNorm(4), InvConv1x1LU(4), AffineCoupling(4, _img_net)).double())
    y = torch.randn(IMG, dtype=torch.float64)
    _, ld = seq(y)
    total = 0
    t = y
    for layer in seq.layers:
        t, l_ = layer(t)
        total = total + l_
    torch.testing.assert_close(ld, total)


# --- ActNorm ------------------------------------------------------------------------------------


def test_actnorm_data_init_normalises_per_channel():
    torch.manual_seed(0)
    layer = ActNorm(3)
    y = 5 + 3 * torch.randn(16, 3, 8, 8)
    z, _ = layer(y)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    assert bool(layer.initialized)


def test_actnorm_initialized_state_survives_save_and_load():
    torch.manual_seed(0)
    layer = ActNorm(3)
    layer(5 + 3 * torch.randn(16, 3, 4, 4))
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    assert "initialized" in layer.state_dict()
    fresh = ActNorm(3)
    fresh.load_state_dict(torch.load(buf))
    other = torch.randn(8, 3, 4, 4)  # different statistics: a re-initialisation would change the output
    torch.testing.assert_close(fresh(other)[0], layer(other)[0])
    torch.testing.assert_close(fresh.loc, layer.loc)


def test_uninitialized_actnorm_inverse_is_identity():
    layer = ActNorm(2)
    z = torch.randn(3, 2)
    torch.testing.assert_close(layer.inverse(z)[0], z)
    assert not bool(layer.initialized)


# --- bad input ----------------------------------------------------------------------------------


def test_squeeze_rejects_odd_sizes_with_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 2"):
        Squeeze()(torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        Squeeze()(torch.zeros(1, 4))


def test_squeeze_layout_is_space_to_depth():
    y = torch.arange(16.0).reshape(1, 1, 4, 4)
    z, _ = Squeeze()(y)
    assert z.shape == (1, 4, 2, 2)
    # channel 0 holds the top-left pixel of each 2x2 block, channel 3 the bottom-right
    torch.testing.assert_close(z[0, 0], torch.tensor([[0.0, 2.0], [8.0, 10.0]]))
    torch.testing.assert_close(z[0, 3], torch.tensor([[5.0, 7.0], [13.0, 15.0]]))


def test_coupling_rejects_missing_or_misshapen_conditioning():
    layer = AffineCoupling(4, _img_net, CTX_IMG)
    y = torch.randn(2, 4, 4, 4)
    with pytest.raises(ValueError, match="context=None"):
        layer(y)
    with pytest.raises(ValueError, match="conditioning must have shape"):
        layer(y, torch.randn(2, CTX_IMG + 1, 4, 4))
    with pytest.raises(ValueError, match="conditioning must have shape"):
        layer(y, torch.randn(2, CTX_IMG, 2, 2))


def test_layers_reject_wrong_channel_count():
    for layer in (ActNorm(4), InvConv1x1(4), InvConv1x1LU(4), AffineCoupling(4, _img_net)):
        with pytest.raises(ValueError, match=r"\[B, 4"):
            layer(torch.randn(1, 3, 4, 4))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="unknown scale"):
        AffineCoupling(4, _img_net, scale="tanh")
    with pytest.raises(ValueError, match="unknown coupling"):
        flow_step(4, _img_net, coupling="spline")
    with pytest.raises(ValueError, match="at least 2 channels"):
        AffineCoupling(1, _img_net)
    with pytest.raises(ValueError, match="unknown network"):
        nets.net_factory("resnet")
