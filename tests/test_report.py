"""Tables are rebuilt from results JSON and the paper-numbers file, never typed."""

from __future__ import annotations

import json

import pytest

from cnfkit.repro import report
from cnfkit.repro.paper import paper_numbers


def _fake_results(root):
    folder = root / "results" / "quick"
    folder.mkdir(parents=True)
    prov = {"provenance": {"wall_time_s": 60.0, "device": "cpu"}}
    (folder / "mnist.json").write_text(
        json.dumps(
            {
                **prov,
                "datasets": {
                    "MNIST": {"accuracy_forward_pass": 0.97, "accuracy_cnf_bayes": 0.96},
                    "FashionMNIST": {"accuracy_forward_pass": 0.88, "accuracy_cnf_bayes": 0.87},
                },
            }
        )
    )
    s = {"bpd": 0.03, "bpd_std": 0.001, "f_score": 0.8, "f_score_std": 0.0}
    (folder / "drive.json").write_text(
        json.dumps({**prov, "summary": {"cnf": s, "factored": s, "cnf_uniform": s}, "human": {"f_score": 0.79}})
    )
    return folder


def test_paper_tables_put_paper_next_to_ours(tmp_path):
    _fake_results(tmp_path)
    t = report.paper_tables("quick", tmp_path)
    x = t["xiao_table1"]
    assert x.loc["MNIST", "paper (forward pass)"] == paper_numbers("xiao_table1_accuracy")["MNIST"]
    assert x.loc["MNIST", "ours (quick) forward pass"] == 0.97
    assert t["winkler_table3"].loc["CNF", "ours (quick) F"] == "0.800 (1 seed)"  # no spread of one value
    assert t["winkler_table3"].loc["Human (2nd observer)", "ours (quick) F"] == 0.79
    assert t["winkler_table1"]["ours (quick) CNF"].isna().all()  # super-resolution not run: shown as missing
    files = report.write_tables("quick", tmp_path)
    assert {p.suffix for p in files} == {".md", ".tex"} and len(files) == 8
    assert "Reduced-scale" in (tmp_path / "results" / "quick" / "tables" / "xiao_table1.md").read_text()


def test_render_and_readme_section(tmp_path):
    _fake_results(tmp_path)
    text = report.render("quick", tmp_path)
    assert "0.9700" in text and "0.984" in text
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:quick:start -->\nold\n<!-- results:quick:end -->\nrest\n")
    assert report.update_readme("quick", readme)
    body = readme.read_text()
    assert "old" not in body and "0.9700" in body and body.endswith("rest\n")
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="no <!-- results:quick:start -->"):
        report.update_readme("quick", readme)


def test_markdown_cells_escape_pipes():
    assert "p(x\\|y)" in report.markdown_table(["p(x|y)"], [["a|b"]])


def test_phase_timer_goes_into_the_provenance(tmp_path):
    import json
    import time

    from cnfkit.repro.results import PhaseTimer, phase, save_json

    timer = PhaseTimer()
    with timer("training"):
        time.sleep(0.02)
    with phase(timer, "evaluation"):
        time.sleep(0.01)
    with phase(None, "evaluation"):  # no timer: a no-op
        pass
    path = save_json(tmp_path / "r.json", {"x": 1}, profile="smoke", seeds=[0], wall_time_s=0.5, phases=timer)
    times = json.loads(path.read_text())["provenance"]["phase_times_s"]
    assert set(times) == {"training", "evaluation", "other"}
    assert times["training"] >= 0.02 and times["evaluation"] >= 0.01
    assert abs(sum(times.values()) - 0.5) < 0.02


def test_beyond_the_paper_tables_are_rendered_from_the_json(tmp_path):
    folder = _fake_results(tmp_path)
    doc = json.loads((folder / "drive.json").read_text())
    extra = {
        "calibration": {"ece": 0.0123, "bins": {}},
        "pr_distance_to_human": {"energy_distance": 0.04},
        "ged": {"ged": 0.5},
        "sample_diversity": 0.2,
        "vessel_width": 3.1,
        "uncertainty_auroc": 0.81,
    }
    for s in doc["summary"].values():
        s.update(extra)
    doc["human"].update(
        {"vessel_width_annotation": 3.4, "vessel_width_second_observer": 3.0, "ged_between_annotators": 0.3}
    )
    (folder / "drive.json").write_text(json.dumps(doc))
    text = report.render("quick", tmp_path)
    assert "Beyond the paper, DRIVE" in text and "0.012" in text and "0.810" in text and "3.400" in text


def test_notebook_times_total_is_the_elapsed_time_when_notebooks_ran_side_by_side(tmp_path):
    import json

    from cnfkit.repro.report import render_notebook_times

    times = {
        "00_a": {"wall_time_s": 600.0, "git_commit": "abc", "threads": "1"},
        "01_b": {"wall_time_s": 1200.0, "git_commit": "abc", "threads": "1"},
    }
    (tmp_path / "notebook_times.json").write_text(json.dumps(times))
    alone = render_notebook_times(tmp_path, "quick")
    assert "**30.0**" in alone  # no record of a side-by-side run: the sum
    times["90_report"] = {"wall_time_s": 60.0, "git_commit": "abc", "threads": "2"}
    (tmp_path / "notebook_times.json").write_text(json.dumps(times))
    order = ["01_b", "00_a"]
    run = {"wall_time_s": 1200.0, "side_by_side": 2, "threads_each": 1, "started_in_order": order, "git_commit": "abc"}
    (tmp_path / "reproduce_run.json").write_text(json.dumps(run))
    both = render_notebook_times(tmp_path, "quick")  # 20 min side by side, then the report alone
    assert "**21.0**" in both and "2 notebooks at a time" in both and "| 31.0 |" in both
    (tmp_path / "reproduce_run.json").write_text(json.dumps({**run, "git_commit": "older"}))
    assert "**31.0**" in render_notebook_times(tmp_path, "quick")  # a record of another run is not used
