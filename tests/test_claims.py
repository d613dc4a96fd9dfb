"""The claims table is evaluated from results JSONs by code: known inputs give known verdicts."""

from __future__ import annotations

import json

import pytest

from cnfkit.repro import claims


def _results(cnf_bpd: float, factored_bpd: float) -> dict:
    s = lambda bpd, f, e: {
        "bpd": bpd,
        "bpd_std": 0.0,
        "f_score": f,
        "f_score_std": 0.0,
        "pr_distance_to_human": {"energy_distance": e},
    }
    return {
        "drive": {
            "summary": {
                "cnf": s(cnf_bpd, 0.80, 0.01),
                "factored": s(factored_bpd, 0.805, 0.05),
                "cnf_uniform": s(0.3, 0.76, 0.04),
            }
        },
        "mnist": {
            "datasets": {"MNIST": {"accuracy_forward_pass": 0.9836}, "FashionMNIST": {"accuracy_forward_pass": 0.85}}
        },
        "super_resolution": {
            "table1": {"BSDS500 32x32 (ImageNet32 stand-in)": {"CNF": 3.9, "Factorized LL": 5.3}},
            "table2": {"Set5": {"CNF": {"bpd": 4.0}, "LL Baseline": {"bpd": 4.7}}},
            "posterior_mean": {"CNF mean of 8 samples, tau=1.0": {"psnr": 33.0}, "LL Baseline (mode)": {"psnr": 34.4}},
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


def test_verdicts_follow_the_numbers(tmp_path):
    rows = {r["id"]: r for r in claims.evaluate_claims(_results(0.16, 0.29))}
    assert rows["drive_bpd_vs_factored"]["holds"] is True and "0.1600" in rows["drive_bpd_vs_factored"]["measured"]
    assert rows["drive_max_f"]["holds"] is True  # 0.800 vs 0.805: within the 0.01 noise floor
    assert rows["drive_samples_near_human"]["holds"] is True
    assert (
        rows["xiao_mnist_forward"]["holds"] is True and rows["xiao_fashion_forward"]["holds"] is False
    )  # 0.85 vs 0.901
    assert rows["sr_bpd_heldout"]["holds"] is True and rows["sr_bpd_set5"]["holds"] is True
    assert rows["sr_bpd_set14"]["holds"] is None  # not measured: never a silent pass
    assert rows["sr_posterior_mean_psnr"]["holds"] is False
    assert rows["xiao_single_loss_vs_inn"]["holds"] is True
    assert rows["binary_deq_beats_uniform"]["holds"] is None
    rows = {r["id"]: r for r in claims.evaluate_claims(_results(0.40, 0.29))}
    assert rows["drive_bpd_vs_factored"]["holds"] is False


def test_write_claims_reads_the_folder(tmp_path):
    for name, doc in _results(0.16, 0.29).items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    rows = claims.write_claims("quick", tmp_path)
    saved = json.loads((tmp_path / "claims.json").read_text())
    assert saved["claims"] == rows and len(rows) == len(claims.CLAIMS)
    md = (tmp_path / "claims.md").read_text()
    assert "reduced scale" in md and "| drive_bpd_vs_factored |" in md and "not measured" in md


def test_a_claim_that_fails_says_why_from_its_learning_curves(tmp_path):
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
    assert "FashionMNIST auto-encoder: training loss still falling at step 1000" in why
    assert "FashionMNIST Xiao flow: training loss flat" in why
    assert rows["xiao_mnist_forward"]["why_not"] is None  # it holds: nothing to explain
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
    assert got is not None and got[1] is holds and "SE" in got[0]
