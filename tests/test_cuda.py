"""What must hold on a GPU (``pytest -m cuda``; ``make gpu-check`` runs these on the lent GPU).

The device under test is ``$CNFKIT_TEST_DEVICE`` (default ``cuda``).  Without CUDA these tests skip, unless
``CNFKIT_TEST_DEVICE=cpu`` (the GPU check's dry run in ``make test``), which runs the same code paths on the CPU so
they cannot rot.  Every comparison is against the float64 CPU reference on the same weights.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from cnfkit import ConditionalFlow, VectorFlow
from cnfkit.train import Trainer, read_checkpoint

from .helpers import randomize
from .test_layers import CASES, _build
from .train_fixtures import config, loss_fn, make_problem, sampler

pytestmark = pytest.mark.cuda

# float32 on the device against float64 on the CPU: rounding of O(1) values through a few layers (TF32 is off)
FP32_ATOL = 1e-4
# bf16 networks (8-bit mantissa) move log p by well under 1% of its size: the fast path's stated tolerance
BF16_RTOL = 1e-2


@pytest.fixture(scope="module")
def device():
    name = os.environ.get("CNFKIT_TEST_DEVICE", "cuda")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device: `make gpu-check` runs these on a GPU (CNFKIT_TEST_DEVICE=cpu runs them here)")
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield dev
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@pytest.mark.parametrize("name,ctor,shape,context_shape", CASES, ids=[c[0] for c in CASES])
def test_bijection_on_device_matches_the_float64_cpu_reference(device, name, ctor, shape, context_shape):
    ref, y, context = _build(ctor, shape, context_shape)
    z_ref, ld_ref = ref(y, context)
    layer = copy.deepcopy(ref).float().to(device)
    y_d = y.float().to(device)
    c_d = None if context is None else context.float().to(device)
    with torch.no_grad():
        z, ld = layer(y_d, c_d)
        back, ld_inv = layer.inverse(z, c_d)
    torch.testing.assert_close(z.double().cpu(), z_ref.detach(), rtol=0, atol=FP32_ATOL)
    torch.testing.assert_close(ld.double().cpu(), ld_ref.detach(), rtol=0, atol=10 * FP32_ATOL)
    torch.testing.assert_close(back.double().cpu(), y, rtol=0, atol=FP32_ATOL)
    torch.testing.assert_close(ld_inv, -ld, rtol=0, atol=10 * FP32_ATOL)


def _flow(seed=0):
    torch.manual_seed(seed)
    return randomize(ConditionalFlow(3, levels=2, steps=2, hidden=32, context_channels=8), std=0.05)


def test_flow_log_prob_on_device_matches_float64_cpu_and_bf16_within_its_tolerance(device):
    flow = _flow()
    g = torch.Generator().manual_seed(1)
    y, x = torch.randn(4, 3, 16, 16, generator=g), torch.randn(4, 8, 8, 8, generator=g)
    flow(y, x)  # ActNorm's data initialisation, once, on the CPU
    ref = flow.double().log_prob(y.double(), x.double()).detach()
    flow = flow.float().to(device)
    with torch.no_grad():
        lp = flow.log_prob(y.to(device), x.to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16):
            lp_bf16 = flow.log_prob(y.to(device), x.to(device))
    assert lp_bf16.dtype == torch.float32
    assert ((lp.double().cpu() - ref).abs() / ref.abs()).max() < 1e-5
    assert ((lp_bf16.double().cpu() - ref).abs() / ref.abs()).max() < BF16_RTOL


@pytest.mark.parametrize("direction", ["device_to_cpu", "cpu_to_device"])
def test_checkpoint_resumes_across_devices(device, tmp_path, direction):
    first, second = (device, torch.device("cpu")) if direction == "device_to_cpu" else (torch.device("cpu"), device)

    def run(dev, callbacks=()):
        model, x, y = make_problem()
        trainer = Trainer(
            model, loss_fn, sampler(x, y), config(), checkpoint_dir=tmp_path, device=dev, callbacks=callbacks,
            progress=False,
        )  # fmt: skip
        trainer.fit()
        return trainer

    def interrupt(trainer, step, metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(first, [interrupt])
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 5
    trainer = run(second)
    assert trainer.step == 10
    params = list(trainer.model.parameters())
    assert all(p.device.type == second.type and torch.isfinite(p).all() for p in params)


def test_seeded_sampling_on_device_is_reproducible(device):
    torch.manual_seed(0)
    flow = VectorFlow(3, context_dim=2, blocks=2, hidden=16).to(device).eval()
    context = torch.randn(5, 2).to(device)

    def draw():
        with torch.no_grad():
            return flow.sample(context, num_samples=4, generator=torch.Generator(device).manual_seed(7)).cpu()

    a, b = draw(), draw()
    assert torch.equal(a, b)
    assert not torch.equal(
        a, flow.sample(context, num_samples=4, generator=torch.Generator(device).manual_seed(8)).cpu()
    )
