"""``make verify``: a rerun compared with committed results, number by number and claim by claim."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cnfkit.repro import verify
from cnfkit.repro.reproduce import run


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Smoke results of notebook 02 that the test itself made (the "committed" side)."""
    out = tmp_path_factory.mktemp("committed")
    assert run("smoke", ["02"], device="cpu", out=out) == 0
    return out


def _json(folder: Path) -> dict:
    return json.loads((folder / "binary_dequantization.json").read_text())


def test_a_rerun_of_the_same_results_reproduces_them(made, tmp_path, capsys):
    rc = verify.main(["--profile", "smoke", "--only", "02", "--committed", str(made), "--scratch", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "REPRODUCED" in out and "NOT REPRODUCED" not in out
    report = json.loads((tmp_path / "verify_report.json").read_text())
    assert report["files"] == ["binary_dequantization"] and report["passed"]
    headline = [n for n in report["numbers"] if n["headline"]]
    assert len(headline) == len(_json(made)["images"])  # test_bpd of every model
    assert all(n["status"] == "identical" for n in headline)  # same machine, same threads
    assert not any("_per_image" in n["path"] for n in report["numbers"])  # the claims' inputs, compared as verdicts
    assert not (made / "verify_report.json").exists()  # the committed side is never written


def _perturbed(made: Path, tmp_path: Path, edit) -> Path:
    scratch = tmp_path / "rerun"
    scratch.mkdir()
    doc = _json(made)
    edit(doc)
    (scratch / "binary_dequantization.json").write_text(json.dumps(doc))
    return scratch


def _compare(made, scratch, capsys):
    argv = ["--profile", "smoke", "--only", "02", "--committed", str(made), "--scratch", str(scratch)]
    rc = verify.main([*argv, "--compare-only"])
    return rc, capsys.readouterr()


def test_a_number_moved_beyond_its_band_fails_naming_it(made, tmp_path, capsys):
    def edit(doc):
        doc["images"]["cnf"]["test_bpd"] *= 1.05  # 5%: beyond the 1% default band

    rc, out = _compare(made, _perturbed(made, tmp_path, edit), capsys)
    assert rc == 1
    assert "binary_dequantization.json:/images/cnf/test_bpd" in out.out and "NOT REPRODUCED" in out.out


def test_a_number_moved_within_its_band_passes_as_within_noise(made, tmp_path, capsys):
    def edit(doc):
        doc["images"]["cnf"]["test_bpd"] *= 1.001

    rc, out = _compare(made, _perturbed(made, tmp_path, edit), capsys)
    assert rc == 0, out.out
    report = json.loads((tmp_path / "rerun" / "verify_report.json").read_text())
    moved = next(n for n in report["numbers"] if n["path"] == "/images/cnf/test_bpd")
    assert moved["status"] == "within noise" and moved["band_source"] == "default (1%)"


def test_a_flipped_claim_verdict_fails_naming_the_claim(made, tmp_path, capsys):
    def edit(doc):  # the binary CNF now worse than the uniform one: binary_deq_beats_uniform flips
        doc["images"]["cnf"]["test_bpd"] = doc["images"]["cnf_uniform"]["test_bpd"] * 2
        doc["images"]["cnf"]["test_bpd_per_image"] = [2 * v for v in doc["images"]["cnf_uniform"]["test_bpd_per_image"]]

    rc, out = _compare(made, _perturbed(made, tmp_path, edit), capsys)
    assert rc == 1
    assert "CLAIM VERDICT DIFFERS: binary_deq_beats_uniform" in out.out


def test_a_seed_spread_sets_the_band():
    flat = {"/summary/cnf/bpd": 0.5, "/summary/cnf/bpd_std": 0.01}
    width, source = verify.band("/summary/cnf/bpd", 0.5, flat, seeds=3)
    assert width == pytest.approx(2 * (2 / 3) ** 0.5 * 0.01, abs=1e-8) and "3 seeds" in source
    # one seed: its std is no spread, the default band applies
    assert verify.band("/summary/cnf/bpd", 0.5, flat, seeds=1)[1] == "default (1%)"


def test_missing_or_foreign_results_are_refused_clearly(made, tmp_path, capsys):
    rc, out = _compare(tmp_path / "nothing", made, capsys)
    assert rc == 2 and "no committed results" in out.err

    def other_profile(doc):
        doc["provenance"]["profile"] = "quick"

    rc, out = _compare(made, _perturbed(made, tmp_path, other_profile), capsys)
    assert rc == 2 and "profile 'quick'" in out.err

    shutil.rmtree(tmp_path / "rerun")

    def other_config(doc):
        doc["provenance"]["config_digest"] = "0123456789ab"

    rc, out = _compare(made, _perturbed(made, tmp_path, other_config), capsys)
    assert rc == 2 and "configuration" in out.err and "0123456789ab" in out.err
    rc = verify.main(["--profile", "nonsense", "--compare-only"])
    assert rc == 2 and "nonsense" in capsys.readouterr().err


def test_every_headline_pattern_matches_a_smoke_result():
    """The headline list must not rot as result layouts change: each pattern finds a number in the smoke results
    that the committed smoke notebooks' drivers write (checked where those results exist)."""
    folder = Path(__file__).resolve().parents[1] / "results" / "smoke"
    present = [n for n in verify.HEADLINES if (folder / f"{n}.json").exists()]
    if not present:
        pytest.skip("no results/smoke/ here: run `make smoke` to check the headline patterns")
    for name in present:
        flat = verify.flatten(json.loads((folder / f"{name}.json").read_text()))
        for pattern in verify.HEADLINES[name]:
            assert any(verify._matches(p, (pattern,)) for p in flat), (name, pattern)


def test_a_claim_the_committed_results_cannot_decide_is_new_not_a_difference(made, tmp_path, capsys):
    """Committed results made before the per-image values existed: the rerun decides the claim; that passes."""
    old = tmp_path / "old"
    old.mkdir()
    doc = _json(made)
    for m in doc["images"].values():
        m.pop("test_bpd_per_image")
    (old / "binary_dequantization.json").write_text(json.dumps(doc))
    rerun = tmp_path / "rerun"
    rerun.mkdir()
    shutil.copy(made / "binary_dequantization.json", rerun)
    argv = ["--profile", "smoke", "--only", "02", "--committed", str(old), "--scratch", str(rerun), "--compare-only"]
    rc = verify.main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "new claim verdict: binary_deq_beats_uniform" in out
