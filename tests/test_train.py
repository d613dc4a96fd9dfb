"""The trainer: exact resumption, NaN guard, sampler, DDP with two CPU processes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnfkit import VectorFlow
from cnfkit.repro.profiles import ProfileError
from cnfkit.train import (
    CheckpointError,
    EpochSampler,
    NonFiniteError,
    TrainConfig,
    Trainer,
    TrainingError,
    TrainingInterrupted,
    read_checkpoint,
    train_steps,
)

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
    _model, trainer = _run(tmp_path, config(steps=40, checkpoint_every=0))
    losses = [h["loss"] for h in trainer.history if "loss" in h]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_interrupted_run_resumes_to_identical_parameters(tmp_path):
    reference, _ = _run(tmp_path / "a", config())

    def interrupt(trainer, step, metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", config(), callbacks=[interrupt])
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 5
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
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 6
    resumed, _ = _run(tmp_path / "b", config())
    _assert_same(_params(resumed), _params(reference))


def test_checkpoint_with_other_config_is_refused(tmp_path):
    _run(tmp_path, config(steps=3))
    with pytest.raises(CheckpointError, match="belongs to another run: its training configuration"):
        _run(tmp_path, config(steps=3, lr=0.5))


def test_train_steps_checkpoints_and_reuses_a_finished_run(tmp_path):
    model, x, y = make_problem()
    _, wall = train_steps(
        model, loss_fn, sampler(x, y), steps=20, lr=1e-2, seed=5, checkpoint_dir=tmp_path, progress=False, device="cpu"
    )
    ckpt = read_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 20 and ckpt["config"]["checkpoint_every"] == 1  # steps // 20 by default
    fresh, _, _ = make_problem(seed=1)  # other initial parameters: the checkpoint must replace them
    calls = []
    _history, wall2 = train_steps(
        fresh,
        lambda m, b: calls.append(1) or loss_fn(m, b),
        sampler(x, y),
        steps=20,
        lr=1e-2,
        seed=5,
        checkpoint_dir=tmp_path,
        progress=False,
        device="cpu",
    )
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

    trainer = Trainer(
        model, loss_fn, sampler(x, y), config(eval_every=4, checkpoint_every=0), eval_fn=eval_fn, progress=False
    )
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
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
    ]
    first = subprocess.run(cmd + ["interrupt"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert (tmp_path / "last.pt").exists(), first.stderr[-3000:]
    second = subprocess.run(cmd + ["resume"], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr[-3000:]
    p0 = torch.load(tmp_path / "params_rank0.pt")
    p1 = torch.load(tmp_path / "params_rank1.pt")
    _assert_same(p0, p1)
    ckpt = read_checkpoint(tmp_path / "last.pt")
    assert ckpt["step"] == 8 and len(ckpt["rng"]) == 2
    _assert_same(ckpt["model"], p0)


# --- faults: pre-emption, errors that name the step, full disk, stale temporaries, other runs ----


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_preemption_signal_checkpoints_and_resumes_exactly(tmp_path, signame):
    """What a scheduler sends before pre-empting a job: finish the step, checkpoint, stop; resume exactly.
    With checkpoint_every=0 nothing would be saved otherwise."""
    import os
    import signal

    reference, _ = _run(tmp_path / "a", config(checkpoint_every=0))

    def preempt(trainer, step, metrics):
        if step == 4:
            os.kill(os.getpid(), getattr(signal, signame))

    with pytest.raises(TrainingInterrupted, match=f"{signame} after step 4"):
        _run(tmp_path / "b", config(checkpoint_every=0), callbacks=[preempt])
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored after fit()
    resumed, trainer = _run(tmp_path / "b", config(checkpoint_every=0))
    assert trainer.step == 10
    _assert_same(_params(resumed), _params(reference))


def test_nan_in_a_batch_names_the_step(tmp_path):
    model, x, y = make_problem()
    s = sampler(x, y)

    def batches(step):
        xb, yb = s(step)
        return (xb, yb * float("nan")) if step == 2 else (xb, yb)

    with pytest.raises(TrainingError, match=r"step 3: ValueError: y contains NaN"):
        Trainer(model, loss_fn, batches, config(), progress=False).fit()


def test_overflowing_learning_rate_names_the_step(tmp_path):
    model, x, y = make_problem()
    with pytest.raises(TrainingError, match=r"step \d+"):
        Trainer(model, loss_fn, sampler(x, y), config(lr=1e12, steps=50), progress=False).fit()


def test_full_disk_names_the_checkpoint_and_the_cause(tmp_path, monkeypatch):
    from cnfkit.train import checkpoint as train_mod

    _run(tmp_path, config(steps=3, checkpoint_every=0))
    good = (tmp_path / "last.pt").read_bytes()
    # a real ENOSPC; atomic_save closes the file
    monkeypatch.setattr(train_mod, "_open_for_write", lambda p: open("/dev/full", "wb"))  # noqa: SIM115
    with pytest.raises(CheckpointError, match=r"last.pt: no space left on device"):
        train_mod.atomic_save({"x": torch.zeros(1000)}, tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == good  # the previous checkpoint is intact
    assert not list(tmp_path.glob(".last.pt.*.tmp"))


def _dead_pid() -> int:
    import os

    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path):
    import os

    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / f".last.pt.{_dead_pid()}.tmp", tmp_path / f".last.pt.{os.getpid()}.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    alive = tmp_path / f".last.pt.{os.getppid()}.tmp"  # a writer that still runs: left alone
    alive.write_bytes(b"in progress")
    _run(tmp_path, config(steps=2, checkpoint_every=0))
    assert not any(p.exists() for p in stale) and alive.exists()


def test_checkpoint_of_another_run_is_refused_saying_what_differs(tmp_path):
    _run(tmp_path, config(steps=3))
    # same parameter shapes, other coupling scale function
    model, x, y = make_problem()
    other = VectorFlow(2, context_dim=1, blocks=2, hidden=16, actnorm=True, scale="sigmoid")
    with pytest.raises(CheckpointError, match="another run: its model"):
        Trainer(other, loss_fn, sampler(x, y), config(steps=3), checkpoint_dir=tmp_path, progress=False).fit()
    # other parameter shapes: the same clear message, not load_state_dict's
    wider = VectorFlow(2, context_dim=1, blocks=2, hidden=32, actnorm=True)
    with pytest.raises(CheckpointError, match="another run: its model"):
        Trainer(wider, loss_fn, sampler(x, y), config(steps=3), checkpoint_dir=tmp_path, progress=False).fit()
    # other data, batch size, sampler seed
    for batches in (sampler(x, y + 1), sampler(x, y, batch_size=8), EpochSampler((x, y), batch_size=16, seed=4)):
        model, _, _ = make_problem()
        with pytest.raises(CheckpointError, match="another run: its data"):
            Trainer(model, loss_fn, batches, config(steps=3), checkpoint_dir=tmp_path, progress=False).fit()
    # a user fingerprint (e.g. the experiment's configuration)
    model, _, _ = make_problem()
    with pytest.raises(CheckpointError, match="run fingerprint"):
        Trainer(
            model,
            loss_fn,
            sampler(x, y),
            config(steps=3),
            checkpoint_dir=tmp_path,
            progress=False,
            fingerprint={"beta": 0.9},
        ).fit()


def test_corrupt_checkpoint_is_refused(tmp_path):
    _run(tmp_path, config(steps=3))
    data = bytearray((tmp_path / "last.pt").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    (tmp_path / "last.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        _run(tmp_path, config(steps=3))


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_carrying_pickled_code_is_refused_and_never_runs(tmp_path):
    import hashlib
    import io

    from cnfkit.train.checkpoint import _MAGIC

    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"model": {}, "evil": _Payload(marker)}, buf)
    payload = buf.getvalue()
    # a valid checksum header: only weights_only stands between the file and the payload
    (tmp_path / "last.pt").write_bytes(_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(CheckpointError, match="could run code"):
        read_checkpoint(tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        _run(tmp_path, config(steps=3))
    (tmp_path / "plain.pt").write_bytes(payload)  # a bare torch.save file: refused before unpickling
    with pytest.raises(CheckpointError, match="not a cnfkit checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    assert not marker.exists()


@pytest.mark.slow
def test_ddp_sigterm_on_one_rank_checkpoints_both_and_resumes(tmp_path):
    """torchrun, 2 gloo processes, checkpoint_every=0: SIGTERM reaches rank 0 at step 4; both ranks stop after the same
    step, the checkpoint is written, and a resubmitted job ends with the parameters of an uninterrupted run."""
    script = ROOT / "tests" / "ddp_script.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    ref = subprocess.run(
        cmd + [str(tmp_path / "ref"), "resume-sigterm"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ref.returncode == 0, ref.stderr[-3000:]
    first = subprocess.run(
        cmd + [str(tmp_path / "run"), "sigterm"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 4, first.stderr[-3000:]
    second = subprocess.run(
        cmd + [str(tmp_path / "run"), "resume-sigterm"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    for rank in (0, 1):
        _assert_same(
            torch.load(tmp_path / "run" / f"params_rank{rank}.pt"),
            torch.load(tmp_path / "ref" / f"params_rank{rank}.pt"),
        )


# --- optimiser and learning-rate schedule --------------------------------------------------------------------------


def test_fused_adam_takes_the_same_steps_as_the_reference_adam():
    """The fused kernel is the same update as torch's reference (for-loop) Adam, up to float64 rounding."""
    from cnfkit.train import adam

    runs = []
    for fused in (True, False):
        model, x, y = make_problem()
        model = model.double()
        opt = adam(model.parameters(), 1e-2, fused=fused)
        assert bool(opt.defaults["fused"]) is fused
        torch.manual_seed(1)
        for _ in range(20):
            opt.zero_grad()
            loss_fn(model, (x.double(), y.double())).backward()
            opt.step()
        runs.append(_params(model))
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=1e-10, atol=1e-12)


def test_learning_rate_schedules():
    from cnfkit.train import learning_rate

    constant = TrainConfig(steps=10, lr=0.5)
    assert [learning_rate(s, constant) for s in range(10)] == [0.5] * 10
    warm = TrainConfig(steps=10, lr=1.0, warmup=4)
    assert [learning_rate(s, warm) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = TrainConfig(steps=12, lr=2.0, schedule="cosine", warmup=2)
    lrs = [learning_rate(s, cosine) for s in range(12)]
    assert lrs[:3] == [1.0, 2.0, 2.0]  # warm-up, then the cosine starts at lr
    assert lrs[7] == pytest.approx(1.0)  # half-way through the 10 decay steps: lr / 2
    assert all(a > b for a, b in itertools.pairwise(lrs[2:])) and 0 < lrs[-1] < 0.05


def test_the_trainer_applies_the_schedule_and_resumes_on_it(tmp_path):
    """Each step runs at learning_rate(step); an interrupted cosine run resumes to the uninterrupted parameters."""
    from cnfkit.train import learning_rate

    cfg = config(schedule="cosine", warmup=3)
    seen = []
    reference, _ = _run(tmp_path / "a", cfg, callbacks=[lambda t, s, m: seen.append(t.optimizer.param_groups[0]["lr"])])
    assert seen == [learning_rate(s, cfg) for s in range(cfg.steps)]

    def interrupt(trainer, step, metrics):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "b", cfg, callbacks=[interrupt])
    resumed, _ = _run(tmp_path / "b", cfg)
    _assert_same(_params(resumed), _params(reference))
    constant, _ = _run(tmp_path / "c", config())
    assert any(not torch.equal(a, b) for a, b in zip(_params(constant).values(), _params(reference).values()))


@pytest.mark.parametrize("bad", [{"schedule": "linear"}, {"warmup": -1}, {"warmup": 11}])
def test_bad_schedules_are_refused(bad):
    from cnfkit.config import ConfigError
    from cnfkit.experiments import mnist, superres

    with pytest.raises(ConfigError):
        config(**bad)
    if "warmup" not in bad or bad["warmup"] < 0:  # the experiments cap a warm-up at their run's length
        with pytest.raises(ConfigError):
            superres.config("smoke").replace(**bad)
        with pytest.raises(ConfigError):
            mnist.config("smoke").replace(**bad)


def test_train_steps_caps_a_warmup_longer_than_the_run():
    """An experiment's warm-up outlives a dry run's 2 steps: train_steps caps it instead of refusing the run."""
    model, x, y = make_problem()
    history, _ = train_steps(model, loss_fn, sampler(x, y), steps=3, lr=1e-2, warmup=50, progress=False)
    assert history[-1]["step"] == 3
