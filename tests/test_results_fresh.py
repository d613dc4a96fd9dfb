"""The committed results were made by the current code's configurations, at one clean commit.

A change to a profile's configuration without a rerun of ``make reproduce PROFILE=quick`` fails here:
each results JSON stores the digest of the configuration that produced it (``provenance.config_digest``,
written by :func:`cnfkit.repro.results.save_json`), and it must equal the digest of ``config("quick")`` now.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cnfkit.experiments import binary_dequantization, drive, mnist, superres, theory
from cnfkit.repro.results import save_json

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = {
    "theory.json": theory,
    "mnist.json": mnist,
    "binary_dequantization.json": binary_dequantization,
    "drive.json": drive,
    "super_resolution.json": superres,
}


def _committed(profile: str) -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", f"results/{profile}/*.json"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the committed results cannot be listed")
    return [ROOT / line for line in out.split() if Path(line).name in EXPERIMENTS]


def stale_reasons(path: Path, profile: str) -> list[str]:
    """Why the results file at ``path`` does not belong to the current ``profile`` configuration (empty: it does)."""
    doc = json.loads(path.read_text())
    prov, module = doc.get("provenance", {}), EXPERIMENTS[path.name]
    want = module.config(profile).digest()
    got = prov.get("config_digest")
    reasons = []
    if got != want:
        reasons.append(
            f"{path.name}: made by configuration {got or '(no digest: older code)'}, the current {profile!r} "
            "configuration is "
            f"{want}; rerun `make reproduce PROFILE={profile}` and commit results/{profile}/"
        )
    if str(prov.get("git_commit", "")).endswith("-dirty"):
        reasons.append(f"{path.name}: made from a working tree with uncommitted changes ({prov.get('git_commit')})")
    return reasons


def test_committed_quick_results_match_the_current_configuration():
    files = _committed("quick")
    assert files, "results/quick/ holds no committed results JSON"
    reasons = [r for f in files for r in stale_reasons(f, "quick")]
    assert not reasons, "stale results:\n" + "\n".join(reasons)
    commits = {json.loads(f.read_text())["provenance"]["git_commit"] for f in files}
    assert len(commits) == 1, f"results/quick/ mixes runs at several commits: {sorted(commits)}"
    assert {f.name for f in files} == set(EXPERIMENTS), (
        f"results/quick/ lacks {sorted(set(EXPERIMENTS) - {f.name for f in files})}"
    )


def test_a_changed_configuration_is_caught(tmp_path):
    """The check itself: a results file written with the current config passes, one with any field changed fails."""
    cfg = theory.config("quick")
    ok = save_json(tmp_path / "theory.json", {"config": cfg}, profile="quick", seeds=[0], wall_time_s=1.0)
    assert json.loads(ok.read_text())["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert not [r for r in stale_reasons(ok, "quick") if "made by configuration" in r]
    changed = save_json(
        tmp_path / "theory.json",
        {"config": cfg.replace(gmm_steps=cfg.gmm_steps + 1)},
        profile="quick",
        seeds=[0],
        wall_time_s=1.0,
    )
    (msg,) = [r for r in stale_reasons(changed, "quick") if "made by configuration" in r]
    assert "rerun `make reproduce PROFILE=quick`" in msg


def test_rewritten_results_do_not_make_a_clean_commit_dirty(tmp_path):
    """make reproduce rewrites the committed results/ while it runs: the provenance must still name the clean
    commit; a changed source file must not pass as clean."""
    from cnfkit.repro.results import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "theory.json").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "results" / "quick" / "theory.json").write_text('{"rerun": true}\n')
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path).endswith("-dirty")
