"""Devices, device-independent noise and configuration digests."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cnfkit.repro.profiles import Config
from cnfkit.utils import module_device, rand, randn, resolve_device


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_trainer_accepts_auto(tmp_path):
    from cnfkit.train import train_steps

    from .train_fixtures import loss_fn, make_problem, sampler

    model, x, y = make_problem()
    train_steps(model, loss_fn, sampler(x, y), steps=2, lr=1e-2, progress=False, device="auto")
    assert module_device(model) == resolve_device("auto")


def test_module_device():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")


def test_noise_is_drawn_on_the_generator_and_placed_on_the_device():
    a = randn((3, 4), generator=torch.Generator().manual_seed(1), device="cpu", dtype=torch.float64)
    b = torch.randn((3, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(a, b) and a.dtype == torch.float64
    u = rand((5,), generator=torch.Generator().manual_seed(2), device=torch.device("cpu"))
    assert torch.equal(u, torch.rand(5, generator=torch.Generator().manual_seed(2)))
    if torch.cuda.is_available():  # same numbers whichever device the model runs on
        c = randn((3, 4), generator=torch.Generator().manual_seed(1), device="cuda", dtype=torch.float64)
        assert c.is_cuda and torch.equal(c.cpu(), b)


def test_config_digest_changes_with_every_field_and_class():
    @dataclasses.dataclass(frozen=True)
    class A(Config):
        steps: int
        lr: float = 1e-3

    @dataclasses.dataclass(frozen=True)
    class B(Config):
        steps: int
        lr: float = 1e-3

    a = A(steps=10)
    assert a.digest() == A(steps=10).digest() and len(a.digest()) == 12
    assert len({a.digest(), a.replace(steps=11).digest(), a.replace(lr=1e-4).digest(), B(steps=10).digest()}) == 4
