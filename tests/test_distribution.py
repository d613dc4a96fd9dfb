"""flow.given(x) behaves as a torch.distributions.Distribution (shapes, sample_shape, validate_args, gradients)."""

from __future__ import annotations

import pytest
import torch

from cnfkit import ConditionalFlow, VectorFlow

from .helpers import randomize


def _image_flow():
    torch.manual_seed(0)
    return randomize(ConditionalFlow(1, levels=2, steps=1, hidden=8, context_channels=3).double(), std=0.1)


def test_shapes_follow_torch_distributions_conventions():
    flow = _image_flow()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    d = flow.given(x)
    assert isinstance(d, torch.distributions.Distribution)
    assert d.batch_shape == (2,) and d.event_shape == (1, 8, 8)
    s = d.sample((3,))
    assert s.shape == (3, 2, 1, 8, 8) and d.sample().shape == (2, 1, 8, 8)
    lp = d.log_prob(s)
    assert lp.shape == (3, 2)
    # the same numbers as the flow itself, row by row of x
    torch.testing.assert_close(lp[1], flow.log_prob(s[1], x))
    assert d.rsample((2, 2)).shape == (2, 2, 2, 1, 8, 8)


def test_rsample_carries_gradients_and_validate_args_checks_shapes():
    flow = _image_flow()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    d = flow.given(x, validate_args=True)
    y = d.rsample((2,))
    (y.sum() + d.log_prob(y.detach()).sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError):
        d.log_prob(torch.zeros(2, 1, 8, 8, 3, dtype=torch.float64))


def test_vector_flow_and_independent_composition():
    torch.manual_seed(0)
    v = VectorFlow(2, context_dim=1, blocks=1, hidden=8).double()
    x = torch.randn(5, 1, dtype=torch.float64)
    d = v.given(x)
    assert d.batch_shape == (5,) and d.event_shape == (2,)
    s = d.sample((4,))
    assert s.shape == (4, 5, 2) and d.log_prob(s).shape == (4, 5)
    joint = torch.distributions.Independent(d, 1)  # one event of 5 rows
    assert joint.log_prob(s).shape == (4,)
    torch.testing.assert_close(joint.log_prob(s), d.log_prob(s).sum(-1))
    u = VectorFlow(3, blocks=1, hidden=4).double().given(batch=2)
    assert u.sample((7,)).shape == (7, 2, 3)
