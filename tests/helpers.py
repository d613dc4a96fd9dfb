"""Shared test utilities: parameter randomisation and brute-force Jacobian log-determinants."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.functional import jacobian

from cnfkit.bijections import ActNorm


@torch.no_grad()
def randomize(module: nn.Module, std: float = 0.3, seed: int = 0) -> nn.Module:
    """Perturb every parameter so zero-initialised layers are not trivially the identity."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.initialized.fill_(True)
            m._is_initialized = True
    return module


def brute_logdet(fn, inp: torch.Tensor) -> torch.Tensor:
    """log|det d fn(inp) / d inp| for a single sample (batch size 1), via autograd's jacobian."""
    assert inp.shape[0] == 1
    n = inp.numel()
    jac = jacobian(lambda t: fn(t.reshape(inp.shape)).reshape(-1), inp.reshape(-1))
    return torch.linalg.slogdet(jac.reshape(n, n))[1]
