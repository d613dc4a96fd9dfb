"""The opt-in fast path: bf16 autocast (log-determinants, priors and losses stay float32),
torch.compile (with a fallback to eager), channels-last memory format."""

from __future__ import annotations

import warnings

import pytest
import torch

from cnfkit import ConditionalFlow
from cnfkit.models.superres import FactorizedLogisticSR, SRFlow
from cnfkit.repro.profiles import ProfileError
from cnfkit.train import TrainConfig, Trainer

from .helpers import randomize
from .train_fixtures import loss_fn, make_problem, sampler


def _flow():
    torch.manual_seed(0)
    flow = ConditionalFlow(3, levels=2, steps=2, hidden=32, context_channels=8)
    return randomize(flow, std=0.05)


def test_bf16_autocast_log_prob_is_float32_and_close_to_fp32():
    flow = _flow()
    g = torch.Generator().manual_seed(1)
    y, x = torch.randn(4, 3, 16, 16, generator=g), torch.randn(4, 8, 8, 8, generator=g)
    ref = flow.log_prob(y, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = flow.log_prob(y, x)
        zs, logdet = flow.encode(y, x)
    assert lp.dtype == torch.float32 and logdet.dtype == torch.float32 and all(z.dtype == torch.float32 for z in zs)
    # bf16 networks (8 bits of mantissa) move log p by well under 1% of its size
    assert ((lp - ref).abs() / ref.abs()).max() < 1e-2
    # one coupling is exactly invertible under autocast: its network sees the same passive half both ways
    from cnfkit.bijections import AffineCoupling

    layer = next(m for m in flow.modules() if isinstance(m, AffineCoupling))
    t, h = torch.randn(2, 12, 8, 8, generator=g), torch.randn(2, 8, 8, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, ld = layer(t, h)
        back, ld_inv = layer.inverse(z, h)
    torch.testing.assert_close(back, t, rtol=0, atol=1e-6)
    torch.testing.assert_close(ld_inv, -ld)
    # the whole flow: float32 rounding upstream can move a network input across a bf16 rounding
    # boundary (one bf16 ulp, 2**-8 relative), so the round trip holds to ~1e-2, not 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        back = flow.decode(zs, x)
    torch.testing.assert_close(back, y, rtol=0, atol=1e-2)


def test_bf16_autocast_models_keep_float32_likelihoods():
    torch.manual_seed(0)
    cnf = SRFlow(levels=2, steps=1, hidden=8, rrdb_blocks=1, growth=4, nf=8, context_channels=8)
    base = FactorizedLogisticSR(rrdb_blocks=1, growth=4, nf=8, context_channels=8, hidden=8)
    y = torch.randint(0, 256, (2, 3, 16, 16)).float()
    x = torch.randint(0, 256, (2, 3, 8, 8)).float()
    ref = base(y, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cnf(y, x).dtype == torch.float32
        out = base(y, x)
    assert out.dtype == torch.float32 and ((out - ref).abs() / ref.abs()).max() < 1e-2


def test_compiled_and_eager_give_the_same_log_likelihood():
    flow = _flow().eval()
    g = torch.Generator().manual_seed(2)
    y, x = torch.randn(2, 3, 16, 16, generator=g), torch.randn(2, 8, 8, 8, generator=g)
    flow.log_prob(y, x)  # ActNorm initialised (already) / warm
    compiled = torch.compile(flow, backend="aot_eager")  # dynamo + AOTAutograd, no C++ build needed
    torch.testing.assert_close(compiled(y, x), flow(y, x), rtol=1e-5, atol=1e-4)


def test_trainer_options_train_and_match_eager(tmp_path):
    """channels_last and torch.compile change how, not what: the same parameters after training."""

    def fit(**opts):
        model, x, y = make_problem()
        Trainer(model, loss_fn, sampler(x, y), TrainConfig(steps=4, lr=1e-2, seed=5, **opts), progress=False).fit()
        return [p.detach().clone() for p in model.parameters()]

    eager = fit()
    for got in (fit(compile=True, compile_backend="aot_eager"), fit(channels_last=True)):
        for a, b in zip(got, eager):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    bf16 = fit(autocast="bf16")  # trains; parameters stay float32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in bf16)


def test_failed_compilation_falls_back_to_eager_with_a_warning():
    from torch._dynamo import register_backend

    @register_backend
    def cnfkit_broken_backend(gm, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    model, x, y = make_problem()
    trainer = Trainer(
        model,
        loss_fn,
        sampler(x, y),
        TrainConfig(steps=3, lr=1e-2, compile=True, compile_backend="cnfkit_broken_backend"),
        progress=False,
    )
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        trainer.fit()
    assert trainer.step == 3 and not trainer.compile


def test_bad_autocast_value_is_refused():
    with pytest.raises(ProfileError, match="autocast"):
        TrainConfig(steps=3, autocast="fp8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainConfig(steps=3, autocast="bf16")
