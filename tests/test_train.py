"""The trainer: exact resumption, NaN guard, sampler, DDP with two CPU processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnfkit.profiles import ProfileError
from cnfkit.train import EpochSampler, NonFiniteError, Trainer, TrainConfig, train_steps

from .train_fixtures import config, loss_fn, make_problem, sampler

ROOT = Path(__file__).resolve().parents[1]


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _run(tmp, cfg, callbacks=()):
    model, x, y = make_problem()
    trainer = Trainer(model, loss_fn, sampler(x, y), cfg, checkpoint_dir=tmp, callbacks=callbacks, progress=False)
    trainer.fit()
    return model, trainer


def test_training_reduces_the_loss(tmp_path):
    model, trainer = _run(tmp_path, config(steps=40, checkpoint_every=0))
    losses = [h["loss"] for h in trainer.history if "loss" in h]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_interrupted_run_resumes_to_identical_parameters(tmp_path):
    reference, _ = _run(tmp_path / "a", config())

    def interrupt(trainer, step, metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", config(), callbacks=[interrupt])
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 5
    resumed, trainer = _run(tmp_path / "b", config())
    assert trainer.step == 10
    _assert_same(_params(resumed), _params(reference))


def test_crash_resumes_from_the_last_periodic_checkpoint(tmp_path):
    reference, _ = _run(tmp_path / "a", config())

    def crash(trainer, step, metrics):
        if step == 7:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        _run(tmp_path / "b", config(), callbacks=[crash])
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 6
    resumed, _ = _run(tmp_path / "b", config())
    _assert_same(_params(resumed), _params(reference))


def test_checkpoint_with_other_config_is_refused(tmp_path):
    _run(tmp_path, config(steps=3))
    with pytest.raises(ValueError, match="different configuration"):
        _run(tmp_path, config(steps=3, lr=0.5))


def test_train_steps_checkpoints_and_reuses_a_finished_run(tmp_path):
    model, x, y = make_problem()
    _, wall = train_steps(model, loss_fn, sampler(x, y), steps=20, lr=1e-2, seed=5, checkpoint_dir=tmp_path, progress=False, device="cpu")
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["step"] == 20 and ckpt["config"]["checkpoint_every"] == 1  # steps // 20 by default
    fresh, _, _ = make_problem(seed=1)  # other initial parameters: the checkpoint must replace them
    calls = []
    history, wall2 = train_steps(fresh, lambda m, b: calls.append(1) or loss_fn(m, b), sampler(x, y), steps=20, lr=1e-2, seed=5,
                                 checkpoint_dir=tmp_path, progress=False, device="cpu")
    assert not calls and wall2 == wall  # nothing trained again; the recorded wall time is the first run's
    _assert_same(_params(fresh), _params(model))


def test_nan_loss_stops_training_naming_the_step(tmp_path):
    model, x, y = make_problem()

    def bad_loss(m, batch):
        loss = loss_fn(m, batch)
        return loss * float("nan") if trainer.step == 2 else loss

    trainer = Trainer(model, bad_loss, sampler(x, y), config(), progress=False)
    with pytest.raises(NonFiniteError, match="loss .* at step 3"):
        trainer.fit()


def test_nan_gradient_stops_training(tmp_path):
    model, x, y = make_problem()

    def bad_grad(m, batch):
        p = next(m.parameters())
        return loss_fn(m, batch) + torch.sqrt(((p - p.detach()) ** 2).sum())  # finite value, NaN gradient

    with pytest.raises(NonFiniteError, match="gradient .* at step 1"):
        Trainer(model, bad_grad, sampler(x, y), config(), progress=False).fit()


def test_eval_fn_and_history(tmp_path):
    model, x, y = make_problem()
    calls = []

    def eval_fn(m):
        calls.append(m.training)
        return {"val_nll": -m(y, x).mean()}

    trainer = Trainer(model, loss_fn, sampler(x, y), config(eval_every=4, checkpoint_every=0), eval_fn=eval_fn, progress=False)
    history = trainer.fit()
    assert calls == [False, False, False]  # steps 4, 8 and the end, always in eval mode
    assert history[-1]["final"] == 1.0 and "val_nll" in history[-1] and history[-1]["step"] == 10


def test_train_config_validation():
    with pytest.raises(ProfileError):
        TrainConfig(steps=0)
    with pytest.raises(ProfileError):
        TrainConfig(steps=5, lr=-1.0)


def test_epoch_sampler_is_a_pure_function_of_the_step():
    data = torch.arange(10)
    s = EpochSampler((data,), batch_size=4, seed=1)
    first = [s(i)[0].tolist() for i in range(6)]
    assert [s(i)[0].tolist() for i in reversed(range(6))] == list(reversed(first))
    assert sorted(first[0] + first[1]) == sorted(set(first[0] + first[1]))  # no repeats within an epoch
    # two ranks split each global batch between them
    r0, r1 = EpochSampler((data,), 4, seed=1, rank=0, world=2), EpochSampler((data,), 4, seed=1, rank=1, world=2)
    for i in range(4):
        assert sorted(r0(i)[0].tolist() + r1(i)[0].tolist()) == sorted(s(i)[0].tolist())
    with pytest.raises(ValueError, match="divisible"):
        EpochSampler((data,), 3, rank=0, world=2)


def test_ddp_two_cpu_processes_with_interrupt_and_resume(tmp_path):
    """torchrun, 2 processes, gloo: both ranks end with identical parameters after a resume."""
    script = ROOT / "tests" / "ddp_script.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(tmp_path)]
    first = subprocess.run(cmd + ["interrupt"], env=env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "last.pt").exists(), first.stderr[-3000:]
    second = subprocess.run(cmd + ["resume"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    p0 = torch.load(tmp_path / "params_rank0.pt")
    p1 = torch.load(tmp_path / "params_rank1.pt")
    _assert_same(p0, p1)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ckpt["step"] == 8 and len(ckpt["rng"]) == 2
    _assert_same(ckpt["model"], p0)
