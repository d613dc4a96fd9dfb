"""A conditional image flow on your own data, in about 20 lines (run: python examples/own_data.py).

Replace the synthetic (x, y) pairs with yours: y the images to model, x what they are conditioned on.
"""

import torch
from torch import nn

from cnfkit import ConditionalFlow
from cnfkit.train import EpochSampler, train_steps

torch.manual_seed(0)
x = torch.rand(256, 1, 16, 16)  # conditioning inputs (e.g. a blurred image)
y = x.repeat(1, 3, 1, 1) + 0.05 * torch.randn(256, 3, 16, 16)  # targets: 3-channel images that depend on x
conditioner = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, stride=2))
flow = ConditionalFlow(in_channels=3, levels=2, steps=2, hidden=32, context_channels=16, conditioner=conditioner)


def nats_per_dim(model, batch):
    return -model(batch[1], batch[0]).mean() / (3 * 16 * 16)


history, seconds = train_steps(
    flow, nats_per_dim, EpochSampler((x, y), batch_size=32), steps=60, lr=1e-3, device="cpu", progress=False
)
flow.eval()
p = flow.given(x[:4])  # p(y | x) as a torch.distributions.Distribution
samples = p.sample((2,))  # [2, 4, 3, 16, 16]: 2 samples for each of 4 inputs
print(
    f"loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f} nats/dim in {seconds:.1f} s; samples "
    f"{tuple(samples.shape)};"
    f" log p {p.log_prob(samples).mean().item():.1f} nats"
)
