"""A tiny, noisy conditional-flow problem shared by the trainer tests and the DDP script."""

from __future__ import annotations

import torch

from cnfkit import VectorFlow
from cnfkit.train import EpochSampler, TrainConfig


def make_problem(seed: int = 0, n: int = 64):
    torch.manual_seed(seed)
    x = torch.randn(n, 1)
    y = torch.cat([x + 0.3 * torch.randn(n, 1), x.sign() * torch.randn(n, 1).abs()], dim=1)
    model = VectorFlow(2, context_dim=1, blocks=2, hidden=16, actnorm=True)
    return model, x, y


def loss_fn(model, batch):
    x, y = batch
    noise = 0.01 * torch.randn_like(y)  # uses the global RNG: resumption must restore it
    return -model(y + noise, x).mean()


def sampler(x, y, batch_size=16, **kw):
    return EpochSampler((x, y), batch_size=batch_size, seed=3, **kw)


def config(**kw):
    base = {"steps": 10, "lr": 1e-2, "checkpoint_every": 3, "log_every": 1, "seed": 5}
    base.update(kw)
    return TrainConfig(**base)
