"""Run by tests/test_train.py under torchrun with 2 CPU processes (gloo)."""

import sys
from pathlib import Path

import torch

from cnfkit.train import Trainer, init_distributed
from tests.train_fixtures import config, loss_fn, make_problem, sampler


def main(out: str, mode: str) -> None:
    rank, world, device = init_distributed()
    assert world == 2, world
    model, x, y = make_problem()  # same seed on every rank: same data, same initial model

    def interrupt(trainer, step, metrics):
        if mode == "interrupt" and step == 4:
            raise KeyboardInterrupt
        if (
            mode == "sigterm" and step == 4 and rank == 0
        ):  # pre-emption seen by one rank: both must stop at the same step
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)

    cfg = config(steps=8, checkpoint_every=0) if mode in ("sigterm", "resume-sigterm") else config(steps=8)
    trainer = Trainer(
        model, loss_fn, sampler(x, y), cfg, checkpoint_dir=out, callbacks=[interrupt], progress=False, device=device
    )
    try:
        trainer.fit()
    except KeyboardInterrupt:
        return
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, Path(out) / f"params_rank{rank}.pt")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
