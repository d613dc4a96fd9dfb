"""The claims are tested as the papers state them, against their measured noise: known inputs give known verdicts.

Each compared number carries per-item values (images, crops) so the difference is tested against its paired
bootstrap standard error; a mean difference in the claimed direction that is within the noise does not hold,
and results without the per-item values are "not measured", never a silent pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnfkit.repro import claims


def _items(mean: float, n: int, spread: float, seed: int) -> list[float]:
    """``n`` per-item values with the given mean (exactly) and spread."""
    v = np.random.default_rng(seed).normal(0.0, spread, n)
    return (v - v.mean() + mean).tolist()


def _pair(a: float, b: float, n: int = 20, spread: float = 0.01) -> tuple[list[float], list[float]]:
    return _items(a, n, spread, 1), _items(b, n, spread, 2)


def _drive_run(bpd: list[float]) -> dict:
    return {"bpd_per_image": bpd, "sample_precision_recall": [], "learning_curve": None}


def _results(cnf_bpd: float, factored_bpd: float, spread: float = 0.01) -> dict:
    s = lambda bpd, f, e: {
        "bpd": bpd,
        "bpd_std": 0.0,
        "f_score": f,
        "f_score_std": 0.0,
        "seeds": [0],
        "pr_distance_to_human": {"energy_distance": e},
    }
    cnf, fac = _pair(cnf_bpd, factored_bpd, spread=spread)
    psnr_cnf, psnr_base = _pair(33.0, 34.4, n=5, spread=0.3)
    sr_cnf, sr_base = _pair(4.0, 4.7, n=5, spread=0.05)
    held_cnf, held_base = _pair(3.9, 5.3, n=50, spread=0.2)
    return {
        "drive": {
            "summary": {
                "cnf": s(cnf_bpd, 0.80, 0.01),
                "factored": s(factored_bpd, 0.805, 0.05),
                "cnf_uniform": s(0.3, 0.76, 0.04),
            },
            "runs": {
                "cnf": [_drive_run(cnf)],
                "factored": [_drive_run(fac)],
                "cnf_uniform": [_drive_run(_items(0.3, 20, 0.01, 3))],
            },
            "comparisons": {
                "max_f_score": {
                    "cnf-factored": {
                        "mean_a": 0.80,
                        "mean_b": 0.805,
                        "difference": -0.005,
                        "se": 0.004,
                        "z": -1.25,
                        "n": 20,
                        "statistic": "paired bootstrap over 20 test items",
                    }
                }
            },
        },
        "mnist": {
            "datasets": {"MNIST": {"accuracy_forward_pass": 0.9836}, "FashionMNIST": {"accuracy_forward_pass": 0.85}}
        },
        "super_resolution": {
            "config": {"tau": 0.8},
            "table1": {"BSDS500 32x32 (ImageNet32 stand-in)": {"CNF": 3.9, "Factorized LL": 5.3}},
            "table1_per_item": {"BSDS500 32x32 (ImageNet32 stand-in)": {"CNF": held_cnf, "Factorized LL": held_base}},
            "table2": {
                "Set5": {
                    "CNF": {"bpd": 4.0, "psnr": 33.0, "psnr_per_image": psnr_cnf},
                    "LL Baseline": {"bpd": 4.7, "psnr": 34.4, "psnr_per_image": psnr_base},
                    "per_image": {
                        f"im{i}": {"CNF": a, "LL Baseline": b} for i, (a, b) in enumerate(zip(sr_cnf, sr_base))
                    },
                }
            },
            "posterior_mean": {
                "CNF mean of 8 samples, tau=1.0": {"psnr": 33.0, "psnr_per_image": psnr_cnf},
                "LL Baseline (mode)": {"psnr": 34.4, "psnr_per_image": psnr_base},
            },
        },
        "theory": {
            "gmm": {
                "xiao": {"posterior_mmd": 0.020},
                "inn_full": {"posterior_mmd": 0.024},
                "inn_forward_only": {"posterior_mmd": 0.99},
                "true_posterior": {"posterior_mmd": 0.003},
            }
        },
    }


def test_verdicts_follow_the_numbers_and_their_noise():
    rows = {r["id"]: r for r in claims.evaluate_claims(_results(0.16, 0.29))}
    bpd = rows["drive_bpd_vs_factored"]
    assert bpd["holds"] is True and "0.16" in bpd["measured"] and "SE" in bpd["measured"]
    st = bpd["statistics"]
    assert st["n"] == 20 and st["z"] < -2 and "paired bootstrap" in st["statistic"]
    assert {"mean_a", "mean_b", "difference", "se", "ci95"} <= set(st)
    assert rows["drive_max_f"]["holds"] is True  # -0.005 is -1.25 SE: on par within the noise
    assert rows["xiao_mnist_forward"]["holds"] is True and rows["xiao_fashion_forward"]["holds"] is False
    assert rows["sr_bpd_heldout"]["holds"] is True and rows["sr_bpd_set5"]["holds"] is True
    assert rows["sr_bpd_set14"]["holds"] is None  # not measured: never a silent pass
    assert rows["sr_sample_psnr_set5"]["holds"] is False and "tau=0.8" in rows["sr_sample_psnr_set5"]["measured"]
    assert rows["sr_posterior_mean_psnr"]["holds"] is False
    assert rows["xiao_single_loss_vs_inn"]["holds"] is True
    assert rows["binary_deq_beats_uniform"]["holds"] is None
    assert rows["drive_bpd_vs_factored_bernoulli"]["holds"] is None  # that model is not in these results
    rows = {r["id"]: r for r in claims.evaluate_claims(_results(0.40, 0.29))}
    assert rows["drive_bpd_vs_factored"]["holds"] is False


def test_a_difference_within_its_noise_does_not_hold():
    """The old check (a plain ``cnf < factored``) passed this: the mean is lower, but by far less than its noise."""
    r = _results(0.280, 0.290, spread=0.2)
    row = {x["id"]: x for x in claims.evaluate_claims(r)}["drive_bpd_vs_factored"]
    assert row["holds"] is False and -2 < row["statistics"]["z"] < 0
    assert "standard errors" in row["why_not"]


def test_without_per_item_values_a_comparison_is_not_measured():
    r = _results(0.16, 0.29)
    for run in r["drive"]["runs"].values():
        del run[0]["bpd_per_image"]
    row = {x["id"]: x for x in claims.evaluate_claims(r)}["drive_bpd_vs_factored"]
    assert row["holds"] is None and "noise not measured" in row["measured"]


def test_every_claim_states_the_paper_the_test_and_its_tolerance():
    ids = [c.id for c in claims.CLAIMS]
    assert len(ids) == len(set(ids))
    for c in claims.CLAIMS:
        assert c.quote and c.test and c.tolerance and c.paper
        if not c.paper.startswith("beyond the paper"):
            assert '"' in c.quote, f"{c.id}: the paper's own words, quoted"
    assert {f"sr_sample_psnr_{s}" for s in ("set5", "set14", "bsd100")} <= set(ids)  # the paper's literal claim
    beyond = {c.id for c in claims.CLAIMS if c.paper.startswith("beyond the paper")}
    assert beyond == {"sr_posterior_mean_psnr", "drive_bpd_vs_factored_bernoulli"}


def test_write_claims_reads_the_folder(tmp_path):
    for name, doc in _results(0.16, 0.29).items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    rows = claims.write_claims("quick", tmp_path)
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert saved["claims"] == rows and len(rows) == len(claims.CLAIMS)
    md = (tmp_path / "claims.md").read_text()
    assert "reduced scale" in md and "| drive_bpd_vs_factored |" in md and "not measured" in md
    assert "± 0.000" not in md and "standard errors" in md


def test_a_claim_that_fails_says_why_in_measured_terms(tmp_path):
    from cnfkit.repro.results import curve_summary

    falling = [{"step": s, "loss": 2.0 - s / 1000} for s in range(10, 1010, 10)]
    flat = [{"step": s, "loss": 1.0} for s in range(10, 1010, 10)]
    r = _results(0.16, 0.29)
    r["mnist"]["datasets"]["FashionMNIST"]["learning_curves"] = {
        "autoencoder": curve_summary(falling),
        "xiao_flow": curve_summary(flat),
    }
    rows = {row["id"]: row for row in claims.evaluate_claims(r)}
    why = rows["xiao_fashion_forward"]["why_not"]
    assert why.startswith("the difference is -0.051") and "standard errors (binomial" in why
    assert "FashionMNIST auto-encoder: training loss still falling at step 1000" in why
    assert "FashionMNIST Xiao flow: training loss flat" in why
    assert rows["xiao_mnist_forward"]["why_not"] is None  # it holds: nothing to explain
    r["theory"]["gmm"]["xiao"]["posterior_mmd"] = 0.2  # the single loss no longer matches the INN
    why = {row["id"]: row for row in claims.evaluate_claims(r)}["xiao_single_loss_vs_inn"]["why_not"]
    assert why.startswith("not met: single loss 0.200 <= max(1.5 x INN 0.024")
    for name, doc in r.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    claims.write_claims("quick", tmp_path)
    md = (tmp_path / "claims.md").read_text()
    assert "Why a claim does not hold here" in md and "still falling" in md


def test_curve_summary_reads_the_end_of_training():
    from cnfkit.repro.results import curve_summary

    assert curve_summary([{"step": 1, "loss": 1.0}] * 5) is None  # too short to say
    c = curve_summary([{"step": s, "loss": 10.0 - s} for s in range(1, 11)] + [{"step": 10, "final": 1.0}])
    assert c == {"steps": 10, "loss_last_fifth": 0.5, "loss_fifth_before": 2.5, "relative_drop": 0.8}


def test_one_seed_never_prints_a_spread_of_zero():
    from cnfkit.repro.results import with_spread

    assert with_spread(0.13591, 0.0, 1, 4) == "0.1359 (1 seed)"
    assert with_spread(0.13591, 0.0021, 3, 4) == "0.1359 ± 0.0021 (3 seeds)"


@pytest.mark.parametrize("acc,holds", [(0.995, True), (0.984, True), (0.981, True), (0.975, False)])
def test_reaching_the_papers_accuracy_is_one_sided_with_binomial_noise(acc, holds):
    """Better than the paper holds ("reaches"); below it by more than 2 SE of the difference does not."""
    from cnfkit.repro.claims import _forward_accuracy

    got = _forward_accuracy("MNIST")(
        {"mnist": {"datasets": {"MNIST": {"accuracy_forward_pass": acc, "n_test": 10000}}}}
    )
    assert got is not None and got.holds is holds and "SE" in got.text and got.stats["n"] == 10000


def test_drive_samples_near_human_is_resampled_by_image():
    """Points are grouped by image (n_scatter per image, one human point per image); the bootstrap resamples images."""
    rng = np.random.default_rng(0)
    human = rng.uniform(0.7, 0.8, (20, 2))
    near = np.repeat(human, 3, axis=0) + rng.normal(0, 0.01, (60, 2))
    far = np.repeat(human, 3, axis=0) * [1.2, 0.6]
    r = {
        "drive": {
            "summary": {
                "cnf": {"pr_distance_to_human": {"energy_distance": 0.01}},
                "factored": {"pr_distance_to_human": {"energy_distance": 0.3}},
            },
            "runs": {
                "cnf": [{"sample_precision_recall": near.tolist()}],
                "factored": [{"sample_precision_recall": far.tolist()}],
            },
            "human": {"sample_precision_recall": human.tolist()},
        }
    }
    row = {x["id"]: x for x in claims.evaluate_claims(r)}["drive_samples_near_human"]
    assert row["holds"] is True and row["statistics"]["n"] == 20 and row["statistics"]["z"] < -2


def test_the_claims_command_reads_a_results_folder_without_writing_it(tmp_path, capsys):
    for name, doc in _results(0.16, 0.29).items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    assert claims.main(["--profile", "quick", "--folder", str(tmp_path)]) == 0
    assert "| drive_bpd_vs_factored |" in capsys.readouterr().out
    assert not (tmp_path / "claims.json").exists()
    with pytest.raises(SystemExit, match="make reproduce"):
        claims.main(["--folder", str(tmp_path / "absent")])


def test_too_few_items_for_a_bootstrap_is_not_measured():
    """Two test images (a smoke run) cannot estimate a standard error: the claim is not decided either way."""
    r = _results(0.16, 0.29)
    for run in r["drive"]["runs"].values():
        run[0]["bpd_per_image"] = run[0]["bpd_per_image"][:2]
    row = {x["id"]: x for x in claims.evaluate_claims(r)}["drive_bpd_vs_factored"]
    assert row["holds"] is None and "too few" in row["measured"]
