"""Super-resolution models on tiny configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnfkit.models.superres import FactorizedLogisticSR, RRDBNet, SRFlow


def _tiny():
    torch.manual_seed(0)
    cnf = SRFlow(steps=2, hidden=16, rrdb_blocks=1, growth=8, nf=8, context_channels=8)
    base = FactorizedLogisticSR(rrdb_blocks=1, growth=8, nf=8, context_channels=8, hidden=8)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 256, (2, 3, 16, 16), generator=g).float()
    x = torch.randint(0, 256, (2, 3, 8, 8), generator=g).float()
    return cnf, base, y, x


def test_rrdb_shapes_and_growth_changes_the_budget():
    h = RRDBNet(nf=8, blocks=2, gc=4, context_channels=6)(torch.rand(1, 3, 10, 12))
    assert h.shape == (1, 6, 10, 12)
    small, big = RRDBNet(nf=8, blocks=1, gc=4), RRDBNet(nf=8, blocks=1, gc=8)
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    with pytest.raises(ValueError):
        RRDBNet(blocks=0)


def test_log_likelihoods_gradients_and_predictions():
    cnf, base, y, x = _tiny()
    for model in (cnf, base):
        ll = model(y, x)
        assert ll.shape == (2,) and torch.isfinite(ll).all()
        (-ll.mean()).backward()
        assert all(p.grad is not None for p in model.parameters())
    s = cnf.sample(x, temperature=0.5, generator=torch.Generator().manual_seed(0))
    m = base.mode(x)
    for out in (s, m):
        assert out.shape == y.shape and out.min() >= 0 and out.max() <= 255 and torch.equal(out, out.round())
    # an untrained CNF is close to uniform over 8-bit levels: about 8 bits/dim
    bpd = (-cnf(y, x) / (y[0].numel() * torch.log(torch.tensor(2.0)))).mean().item()
    assert 6 < bpd < 11


def test_inputs_are_validated():
    cnf, base, y, x = _tiny()
    with pytest.raises(ValueError, match="integers"):
        cnf(y + 0.5, x)
    with pytest.raises(ValueError, match="integer levels"):
        base(y + 0.5, x)


@pytest.mark.parametrize("residual", [False, True])
def test_experiment_driver_on_synthetic_images(residual):
    from cnfkit.experiments import superres as sr

    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 136, 140), generator=g, dtype=torch.uint8) for _ in range(3)]
    cfg = sr.config("smoke").replace(residual=residual)
    out = sr.run(cfg, progress=False, data={"train": imgs, "test": imgs, "test_sets": {"Set5": imgs[:2]}})
    t1 = out["table1"]["BSDS500 32x32 (ImageNet32 stand-in)"]
    assert set(t1) == {"CNF", "Factorized LL"} and all(4 < v < 12 for v in t1.values())
    t2 = out["table2"]["Set5"]
    assert {"Bicubic", "LL Baseline", "CNF"} <= set(t2) and t2["_n_crops"] == 2
    assert "bpd" in t2["CNF"] and "bpd" not in t2["Bicubic"]
    # per-item values, paired for the claims' bootstrap: held-out crops, and each test image's PSNR
    per = out["table1_per_item"]["BSDS500 32x32 (ImageNet32 stand-in)"]
    assert t1["CNF"] == pytest.approx(np.mean(per["CNF"]), rel=1e-6) and len(per["CNF"]) == len(per["Factorized LL"])
    assert len(t2["CNF"]["psnr_per_image"]) == 2 and t2["CNF"]["psnr"] == pytest.approx(
        np.mean(t2["CNF"]["psnr_per_image"])
    )
    assert (
        abs(out["parameters"]["cnf"] - out["parameters"]["baseline"]) / out["parameters"]["cnf"] < 0.05
    )  # equal budgets
    assert all(m.residual is residual for m in out["models"][32].values())


def test_driver_checkpoints_are_reused(tmp_path):
    from cnfkit.experiments import superres as sr

    g = torch.Generator().manual_seed(1)
    imgs = [torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8) for _ in range(2)]
    data = {"train": imgs, "test": imgs, "test_sets": {}}
    cfg = sr.config("smoke").replace(steps=4)
    first = sr.run(cfg, progress=False, data=data, device="cpu", checkpoint_dir=tmp_path)
    folder = tmp_path / f"superres-{cfg.digest()}"
    assert sorted(p.name for p in folder.iterdir()) == ["baseline_32", "cnf_32"]
    again = sr.run(cfg, progress=False, data=data, device="cpu", checkpoint_dir=tmp_path)
    assert again["train_time_s"] == first["train_time_s"]  # loaded, not retrained
    for name, model in first["models"][32].items():
        for (k, v), w in zip(model.state_dict().items(), again["models"][32][name].state_dict().values()):
            assert torch.equal(v, w), (name, k)


def test_test_images_are_padded_to_a_square_and_cropped_back():
    from cnfkit.experiments import superres as sr

    seen = []

    class Stub(torch.nn.Module):
        def mode(self, x):
            seen.append(tuple(x.shape[-2:]))
            return torch.zeros(x.shape[0], 3, 2 * x.shape[2], 2 * x.shape[3])

    out = sr.predict_full(Stub(), torch.zeros(3, 33, 21, dtype=torch.uint8), (66, 42), 4, None)
    assert seen == [(34, 34)] and out.shape == (3, 66, 42)


def test_coupling_scale_is_configurable():
    from cnfkit.bijections import AffineCoupling
    from cnfkit.experiments import superres as sr

    cfg = sr.config("smoke")
    scales = {m.scale_fn.__name__ for m in sr.build_models(cfg)["cnf"].modules() if isinstance(m, AffineCoupling)}
    assert scales == {"_soft_clamped_exp_scale"}
    with pytest.raises(ValueError, match="unknown scale"):
        sr.build_models(cfg.replace(coupling_scale="tanh"))


def test_train_downscale_needs_one_factor_per_size(monkeypatch):
    from cnfkit.experiments import superres as sr
    from cnfkit.repro.profiles import ProfileError

    for bad in ((2.0, 2.0), (0.5,)):
        monkeypatch.setitem(sr.CONFIGS, "smoke", sr.CONFIGS["smoke"].replace(train_downscale=bad))
        with pytest.raises(ProfileError, match="one factor >= 1 per size"):
            sr.config("smoke")


def test_temperature_sweep():
    from cnfkit.experiments import superres as sr

    torch.manual_seed(0)
    cfg = sr.config("smoke")
    models = sr.build_models(cfg)
    imgs = [torch.randint(0, 256, (3, 20, 26), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)]
    out = sr.temperature_sweep(models, cfg, images=imgs)
    assert list(out) == [f"CNF tau={t}" for t in cfg.temperatures] + ["LL Baseline (mode)"]
    assert all(v["non_finite_predictions"] == 0 and 0 < v["psnr"] < 100 for v in out.values())


def test_non_finite_predictions_are_counted_not_averaged():
    from cnfkit.experiments import superres as sr

    class Broken(torch.nn.Module):
        def forward(self, y, x):
            return torch.zeros(y.shape[0])

        def conditioning(self, x):
            return [x]

        def sample(self, x, temperature=None, generator=None, features=None):
            f = features[0]
            return torch.full((f.shape[0], 3, 2 * f.shape[2], 2 * f.shape[3]), float("nan"))

        def mode(self, x):
            return torch.full((x.shape[0], 3, 2 * x.shape[2], 2 * x.shape[3]), 128.0)

    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 132, 132), generator=g, dtype=torch.uint8)]
    cfg = sr.config("smoke")
    out = sr.evaluate_test_set("Set5", {"cnf": Broken(), "baseline": Broken()}, cfg, imgs)
    assert out["CNF"]["non_finite_predictions"] == 1 and out["CNF"]["psnr"] is None
    assert out["CNF"]["psnr_per_image"] == [None]  # kept in place: pairs with the baseline's image
    assert out["LL Baseline"]["non_finite_predictions"] == 0 and out["LL Baseline"]["psnr"] is not None
    assert "bpd_median" in out["CNF"]


def test_sr_evaluation_does_not_depend_on_the_batch_size():
    """Grouped, batched predictions and crop bits = one image at a time (per-image generators)."""
    from cnfkit.experiments import superres as sr

    torch.manual_seed(0)
    cfg = sr.config("smoke").replace(crop=16, crops_per_image=2, temperatures=(0.0, 0.7))
    models = sr.build_models(cfg)
    for m in models.values():
        m.eval()
    g = torch.Generator().manual_seed(5)
    imgs = [
        torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
        for h, w in ((20, 26), (26, 20), (24, 24), (18, 30))
    ]
    with torch.no_grad():
        models["cnf"](torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 8, 8))  # initialise ActNorm
    a = sr.evaluate_test_set("Set5", models, cfg.replace(eval_batch=1), imgs)
    b = sr.evaluate_test_set("Set5", models, cfg.replace(eval_batch=3), imgs)
    for key in ("CNF", "LL Baseline", "Bicubic"):
        for stat in ("psnr", "ssim", "bpd"):
            if stat in a[key]:
                assert a[key][stat] == pytest.approx(b[key][stat], rel=1e-5), (key, stat)
    sa = sr.temperature_sweep(models, cfg.replace(eval_batch=1), images=imgs)
    sb = sr.temperature_sweep(models, cfg.replace(eval_batch=4), images=imgs)
    for k in sa:
        assert sa[k]["psnr"] == pytest.approx(sb[k]["psnr"], rel=1e-5), k
    lrs = [sr.hr_lr_pair(im)[1] for im in imgs]
    groups = sr._groups(lrs, 4, 3)
    assert sorted(i for grp in groups for i in grp) == [0, 1, 2, 3] and all(len(grp) <= 3 for grp in groups)


def test_probabilistic_evaluation_keys_and_sanity():
    from cnfkit.experiments import superres as sr

    torch.manual_seed(0)
    cfg = sr.config("smoke").replace(n_posterior=3)
    models = sr.build_models(cfg)
    for m in models.values():
        m.eval()
    with torch.no_grad():
        models["cnf"](torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 8, 8))
    g = torch.Generator().manual_seed(4)
    imgs = [
        torch.randint(0, 256, (3, 20, 26), generator=g, dtype=torch.uint8),
        torch.randint(0, 256, (3, 24, 24), generator=g, dtype=torch.uint8),
    ]
    out = sr.probabilistic_evaluation(models, cfg, images=imgs)
    assert set(out) >= {"lr_psnr", "diversity", "posterior_mean"}
    assert out["diversity"]["CNF tau=0.0"] == 0  # temperature 0: every sample is the same
    assert out["diversity"]["CNF tau=1.0"] > 0
    assert all(v is None or 0 < v <= 100 for k, v in out["lr_psnr"].items() if not k.startswith("_"))
    pm = out["posterior_mean"]
    assert pm["CNF mean of 3 samples, tau=1.0"]["psnr"] is not None and "LL Baseline (mode)" in pm


@pytest.mark.parametrize("release", ["png", "npz"])
def test_driver_trains_on_an_imagenet_release(tmp_path, monkeypatch, release):
    """The full profile's path: ImageNet32 in either release (tiny files in the official formats)."""
    from cnfkit.data import DatasetError
    from cnfkit.experiments import superres as sr

    from .test_imagenet import _write_npz_release, _write_png_release

    monkeypatch.setenv("CNFKIT_DATA_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("CNFKIT_DATA_MIRROR", str(tmp_path / "mirror"))
    (tmp_path / "mirror").mkdir()
    cfg = sr.config("smoke").replace(train_data=f"imagenet_{release}", n_test=4)
    g = torch.Generator().manual_seed(0)
    set5 = [torch.randint(0, 256, (3, 136, 140), generator=g, dtype=torch.uint8)]
    with pytest.raises(DatasetError, match=f"ImageNet32 \\({release} release, train\\) is not available"):
        sr.run(cfg, progress=False, data={"test_sets": {"Set5": set5}})
    if release == "png":
        _write_png_release(tmp_path / "mirror", 32, 20)
        _write_png_release(tmp_path / "mirror", 32, 6, split="valid")
    else:
        _write_npz_release(tmp_path / "mirror", 32, [2] * 10)
        _write_npz_release(tmp_path / "mirror", 32, [6], split="valid")
    out = sr.run(cfg, progress=False, data={"test_sets": {"Set5": set5}})
    (key,) = out["table1"]
    assert key == f"ImageNet32 ({release} release, 4 validation images)" and out["train_data"]["release"] == release
    assert all(np.isfinite(v) for v in out["table1"][key].values())


def _bsds_available() -> bool:
    from cnfkit.data import DatasetError, dataset_dir

    try:
        dataset_dir("BSDS500_train_test", download=False)
        return True
    except DatasetError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(
    not _bsds_available(), reason="BSDS500_train_test not available (set CNFKIT_DATA_MIRROR; see data/README.md)"
)
def test_torchrun_cli_trains_and_the_driver_reuses_its_checkpoints(tmp_path):
    """`torchrun --nproc_per_node=2 -m cnfkit.experiments.superres` (gloo, CPU) trains; the notebook's driver then
    finds the finished checkpoints and trains nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from cnfkit.experiments import superres as sr
    from cnfkit.train import read_checkpoint

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "cnfkit.experiments.superres",
        "--profile",
        "smoke",
        "--checkpoint-dir",
        str(tmp_path),
        "--no-progress",
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=root, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = sr.config("smoke")
    folder = tmp_path / f"superres-{cfg.digest()}"
    ckpts = {name: read_checkpoint(folder / f"{name}_32" / "last.pt") for name in ("cnf", "baseline")}
    assert all(c["step"] == cfg.steps and len(c["rng"]) == 2 for c in ckpts.values())  # written by 2 processes
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 136, 140), generator=g, dtype=torch.uint8)]
    out = sr.run(
        cfg,
        progress=False,
        device="cpu",
        checkpoint_dir=tmp_path,
        data={
            "train": sr.load_sr_images("BSDS500_train_test", "train")[0],
            "test": sr.load_sr_images("BSDS500_train_test", "test")[0],
            "test_sets": {"Set5": imgs},
        },
    )
    for name in ("cnf", "baseline"):
        assert out["train_time_s"][f"{name}_32"] == ckpts[name]["wall_time"]  # loaded, not retrained
        for k, v in out["models"][32][name].state_dict().items():
            assert torch.equal(v, ckpts[name]["model"][k].to(v.device)), (name, k)


def _residual_pair():
    """A residual CNF and a paper-parameterized one with the same weights."""
    torch.manual_seed(0)
    plain = SRFlow(steps=2, hidden=16, rrdb_blocks=1, growth=8, nf=8, context_channels=8)
    res = SRFlow(steps=2, hidden=16, rrdb_blocks=1, growth=8, nf=8, context_channels=8, residual=True)
    res.load_state_dict(plain.state_dict())
    return plain.double(), res.double()


def test_residual_shift_has_unit_jacobian_and_keeps_bits_per_dim_comparable():
    """log p(v | x) of the residual CNF is the flow's density of r = v - b(x) with nothing added: the shift's
    Jacobian (brute force, float64) is the identity.  On a fixed shift (a constant LR image of level 127.5, whose
    bicubic upsampling is 127.5 everywhere: origin (127.5 + 0.5) / 256 = 0.5, the paper's) the two
    parameterizations give the same log-likelihood to the last bit."""
    from cnfkit.models.superres import bicubic_base

    plain, res = _residual_pair()
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 256, (2, 3, 8, 8), generator=g).double()
    x = torch.randint(0, 256, (2, 3, 4, 4), generator=g).double()
    origin = (bicubic_base(x).double() + 0.5) / 256
    v = (y[:1] + torch.rand(y[:1].shape, generator=g, dtype=torch.float64)) / 256
    jac = torch.autograd.functional.jacobian(lambda t: t - origin[:1], v).reshape(v.numel(), v.numel())
    assert torch.equal(jac, torch.eye(v.numel(), dtype=torch.float64))  # log|det| = 0 exactly
    with torch.no_grad():
        flat = torch.full_like(x, 127.5)
        assert torch.equal(bicubic_base(flat), torch.full_like(y, 127.5))
        ga = [torch.Generator().manual_seed(3 + i) for i in range(2)]
        gb = [torch.Generator().manual_seed(3 + i) for i in range(2)]
        # (first: ActNorm initialises on the first batch each model sees, so both see the same one)
        assert torch.equal(res(y, flat, generator=ga), plain(y, flat, generator=gb))
        # the residual model's ELBO is the flow's log-density of v - b(x) minus log q, nothing added (same noise u)
        gens = [torch.Generator().manual_seed(7 + i) for i in range(2)]
        v2, log_q = res.dequantizer(y, generator=[torch.Generator().manual_seed(7 + i) for i in range(2)])
        by_hand = res.flow.log_prob(v2 - origin, x / 255.0 - 0.5) - log_q
        assert torch.allclose(res(y, x, generator=gens), by_hand, rtol=0, atol=1e-9)
        # elsewhere the residual model scores the residual: a different number, on the same (nats per image) scale
        assert not torch.allclose(res(y, x), plain(y, x))


def test_residual_sampling_and_baseline_start_from_bicubic():
    from cnfkit.models.superres import bicubic_base

    _, res = _residual_pair()
    res = res.float()
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (2, 3, 4, 4), generator=g).float()
    feats = res.conditioning(x)
    a = res.sample(x, temperature=0.7, generator=[torch.Generator().manual_seed(i) for i in range(2)])
    b = res.sample(
        None, temperature=0.7, generator=[torch.Generator().manual_seed(i) for i in range(2)], features=feats
    )
    assert torch.equal(a, b) and a.shape == (2, 3, 8, 8)
    many = res.sample(x, num_samples=3, temperature=0.0)
    assert many.shape == (6, 3, 8, 8)
    assert torch.equal(many[3], many[5]) and torch.equal(many[0], res.sample(x[:1], temperature=0.0)[0])
    # the residual baseline with a silent head predicts bicubic upsampling (its mode is the nearest level)
    base = FactorizedLogisticSR(rrdb_blocks=1, growth=8, nf=8, context_channels=8, hidden=8, residual=True)
    last = base.head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[12:].fill_(-6.0)  # pixel-shuffled channels 12..23 are the log-scales: sharp
    assert torch.equal(base.mode(x), bicubic_base(x).round())
