"""make reproduce: papermill runs, skips current notebooks, stops with the failing cell's name."""

from __future__ import annotations

import json

import nbformat
import pytest

from cnfkit.repro import reproduce


def _notebook(path, body: str, extra_params: str = "") -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(
        'profile = "smoke"\nresults_dir = ""\ndata_root = ""\ndata_mirror = ""\nprogress = False' + extra_params
    )
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.mark.slow
def test_reproduce_runs_skips_and_reports_failures(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    nb = tmp_path / "notebooks" / "00_demo.ipynb"
    _notebook(nb, "from pathlib import Path\n(Path(results_dir) / 'out.txt').write_text(profile)")
    assert reproduce.run("smoke", root=tmp_path) == 0
    assert (tmp_path / "results" / "smoke" / "out.txt").read_text() == "smoke"
    executed = (tmp_path / "results" / "smoke" / "notebooks" / "00_demo.ipynb").read_text()
    assert str(tmp_path) not in executed and "<repo>" in executed  # absolute paths are sanitised
    capsys.readouterr()
    assert reproduce.run("smoke", root=tmp_path) == 0
    assert "[skip] 00_demo.ipynb" in capsys.readouterr().out
    _notebook(tmp_path / "notebooks" / "01_broken.ipynb", "raise RuntimeError('boom')")
    assert reproduce.run("smoke", root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "01_broken.ipynb" in err and "RuntimeError: boom" in err and "cell" in err


@pytest.mark.slow
def test_only_declared_parameters_are_injected(tmp_path):
    (tmp_path / "notebooks").mkdir()
    body = "from pathlib import Path\n(Path(results_dir) / 'seen.txt').write_text(f'{checkpoint_dir}|{device}')"
    _notebook(tmp_path / "notebooks" / "00_ckpt.ipynb", body, '\ndevice = "auto"\ncheckpoint_dir = ""')
    assert reproduce.run("smoke", root=tmp_path, device="cpu") == 0
    ckpt, device = (tmp_path / "results" / "smoke" / "seen.txt").read_text().split("|")
    assert ckpt == str(tmp_path / "results" / "smoke" / "checkpoints") and device == "cpu"
    _notebook(
        tmp_path / "notebooks" / "01_plain.ipynb", "assert 'checkpoint_dir' not in dir() and 'device' not in dir()"
    )
    assert reproduce.run("smoke", root=tmp_path) == 0  # a notebook without them does not get them


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        reproduce.run("medium", root=tmp_path)


def test_only_refuses_unknown_or_missing_names(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "00_demo.ipynb", "pass")
    assert reproduce.run("smoke", only=["07"], root=tmp_path) == 2
    err = capsys.readouterr().err
    assert "'07'" in err and "00_demo" in err
    assert reproduce.run("smoke", only=[], root=tmp_path) == 2
    assert "at least one" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # the command line: exit non-zero, never 0
        raise SystemExit(reproduce.main(["--profile", "smoke", "--only", "nonexistent_notebook"]))
    assert exc.value.code != 0


@pytest.mark.slow
def test_failed_rerun_invalidates_the_stamp(tmp_path, capsys):
    """A --force rerun that fails (or is killed) must not leave the old 'complete' stamp behind."""
    (tmp_path / "notebooks").mkdir()
    body = "from pathlib import Path\nif (Path(results_dir) / 'fail').exists(): raise RuntimeError('injected')"
    _notebook(tmp_path / "notebooks" / "00_demo.ipynb", body)
    assert reproduce.run("smoke", root=tmp_path) == 0
    (tmp_path / "results" / "smoke" / "fail").write_text("")
    assert reproduce.run("smoke", root=tmp_path, force=True) == 1
    (tmp_path / "results" / "smoke" / "fail").unlink()
    capsys.readouterr()
    assert reproduce.run("smoke", root=tmp_path) == 0
    out = capsys.readouterr().out
    assert "[run ] 00_demo.ipynb" in out and "[skip]" not in out


@pytest.mark.slow
def test_dead_kernel_is_reported_like_a_failing_cell(tmp_path, capsys):
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "00_oom.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert reproduce.run("smoke", root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "FAILED: 00_oom.ipynb, cell" in err and "DeadKernelError" in err and "kernel died" in err
    assert not (tmp_path / "results" / "smoke" / ".stamps" / "00_oom.json").exists()


def test_every_parameter_of_the_committed_notebooks_is_injectable():
    """papermill must parse every line of each parameters cell (a comment it cannot parse silently drops the
    parameter, and make reproduce would then run, e.g., a full profile without its dry-run caps)."""
    import papermill as pm

    for nb in reproduce.notebooks():
        source = nbformat.read(nb, as_version=4)
        cell = next(c for c in source.cells if "parameters" in c.metadata.get("tags", []))
        assigned = {
            line.split("=")[0].strip()
            for line in cell.source.splitlines()
            if "=" in line and not line.lstrip().startswith("#")
        }
        assert assigned == set(pm.inspect_notebook(str(nb))), nb.name


def test_longest_recorded_notebooks_start_first(tmp_path):
    nbs = [tmp_path / f"{n}.ipynb" for n in ("00_a", "01_b", "02_c", "03_d")]
    recorded = {"00_a": 700.0, "01_b": 800.0, "02_c": 100.0}
    # 03_d has no record: it counts as 600 s
    assert reproduce.longest_first(nbs, recorded) == ["01_b", "00_a", "03_d", "02_c"]
    assert reproduce.longest_first(nbs, {}) == ["00_a", "01_b", "02_c", "03_d"]  # ties: numbered order


def test_side_by_side_threads_share_the_cores(monkeypatch):
    monkeypatch.delenv("CNFKIT_THREADS", raising=False)
    monkeypatch.setattr(reproduce, "usable_cores", lambda: 2)
    assert reproduce.slot_threads(2) == 1 and reproduce.slot_threads(1) == 2 and reproduce.slot_threads(4) == 1
    monkeypatch.setenv("CNFKIT_THREADS", "3")
    assert reproduce.slot_threads(2) == 3
    monkeypatch.setenv("CNFKIT_THREADS", "two")
    with pytest.raises(ValueError, match="CNFKIT_THREADS"):
        reproduce.slot_threads(2)
    with pytest.raises(ValueError, match="jobs"):
        reproduce.run("smoke", root=reproduce.ROOT, only=["00"], jobs=0)


@pytest.mark.slow
def test_notebooks_run_side_by_side_then_the_report(tmp_path, capsys, monkeypatch):
    """Two experiment notebooks side by side with one thread each, the report notebook after both; a failing
    notebook fails the run and leaves the other's results complete."""
    monkeypatch.delenv("CNFKIT_THREADS", raising=False)
    monkeypatch.setattr(reproduce, "usable_cores", lambda: 2)
    (tmp_path / "notebooks").mkdir()
    body = (
        "import os, time\nfrom pathlib import Path\nimport torch\n"
        "(Path(results_dir) / '{n}.txt').write_text(f\"{{time.time()}} {{os.environ['CNFKIT_THREADS']}} "
        '{{torch.get_num_threads()}}")\ntime.sleep(3)'
    )
    for n in ("00_a", "01_b"):
        _notebook(tmp_path / "notebooks" / f"{n}.ipynb", body.format(n=n))
    report = "from pathlib import Path\nassert all((Path(results_dir) / f'{n}.txt').exists() for n in ('00_a', '01_b'))"
    _notebook(tmp_path / "notebooks" / "90_report.ipynb", report)
    assert reproduce.run("smoke", root=tmp_path, jobs=2) == 0
    out = tmp_path / "results" / "smoke"
    (ta, ea, na), (tb, eb, nb) = [(out / f"{n}.txt").read_text().split() for n in ("00_a", "01_b")]
    assert ea == eb == "1" and na == nb == "1"  # one thread each
    assert abs(float(ta) - float(tb)) < 3  # side by side, not one after the other
    run = json.loads((out / "reproduce_run.json").read_text())
    assert sorted(run["started_in_order"]) == ["00_a", "01_b"] and run["threads_each"] == 1
    times = json.loads((out / "notebook_times.json").read_text())
    assert set(times) == {"00_a", "01_b", "90_report"} and times["00_a"]["threads"] == "1"
    capsys.readouterr()
    _notebook(tmp_path / "notebooks" / "02_broken.ipynb", "raise RuntimeError('boom')")
    _notebook(
        tmp_path / "notebooks" / "03_fine.ipynb",
        "from pathlib import Path\n(Path(results_dir) / 'fine').write_text('')",
    )
    assert reproduce.run("smoke", root=tmp_path, jobs=2) == 1
    assert (out / "fine").exists() and (out / ".stamps" / "03_fine.json").exists()
    assert "02_broken" in capsys.readouterr().err
