"""Run by tests/test_determinism.py in a fresh process: smoke experiments on code-generated data, metrics to stdout."""

import json
import sys

import torch

from cnfkit.utils import set_threads


def main(which: str) -> None:
    set_threads(2)
    out = {}
    if which in ("all", "theory"):
        from cnfkit.experiments import theory

        cfg = theory.config("smoke")
        out["rotating"] = {
            k: v["test_nll"] for k, v in theory.run_rotating(cfg, progress=False, device="cpu")["metrics"].items()
        }
        gmm = theory.run_gmm(cfg, methods=("xiao", "cnf"), progress=False, device="cpu")["metrics"]
        out["gmm"] = {k: [v.get("accuracy"), v["posterior_mmd"], v["mode_mass_error"]] for k, v in gmm.items()}
    if which in ("all", "binary"):
        from cnfkit.experiments import binary_dequantization as bd

        out["binary"] = {
            k: v["test_bpd"]
            for k, v in bd.run_images(bd.config("smoke"), progress=False, device="cpu")["metrics"].items()
        }
    if which in ("all", "drive"):
        from cnfkit.data.drive import DriveSplit
        from cnfkit.experiments import drive

        g = torch.Generator().manual_seed(0)
        imgs = torch.rand(3, 3, 40, 36, generator=g)
        labels = (imgs[:, :1] > 0.8).float()
        split = DriveSplit(imgs, labels, torch.ones_like(labels), ["a", "b", "c"], (imgs[:, 1:2] > 0.8).float())
        cfg = drive.CONFIGS["smoke"].replace(pad_to=48, crop=16, steps=5, test_images=3, n_samples=3, n_scatter=2)
        res = drive.run(cfg, data=(split, split), progress=False, device="cpu")
        out["drive"] = {k: [s["bpd"], s["f_score"], s["calibration"]["ece"]] for k, s in res["summary"].items()}
    if which in ("all", "sr"):
        from cnfkit.experiments import superres as sr

        g = torch.Generator().manual_seed(0)
        imgs = [torch.randint(0, 256, (3, 136, 140), generator=g, dtype=torch.uint8) for _ in range(3)]
        res = sr.run(
            sr.config("smoke"),
            progress=False,
            device="cpu",
            data={"train": imgs, "test": imgs, "test_sets": {"Set5": imgs[:2]}},
        )
        t2 = res["table2"]["Set5"]
        out["sr"] = {
            "table1": res["table1"],
            "table2": {k: [t2[k].get("bpd"), t2[k]["psnr"], t2[k]["ssim"]] for k in ("CNF", "LL Baseline")},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
