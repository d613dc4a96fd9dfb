"""Sliders in JupyterLab, one static figure elsewhere; notebooks reuse checkpoints only in a live front end;
the figures and statistics behind the sliders."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import pytest
import torch

from cnfkit.experiments import drive
from cnfkit.metrics import f_score, precision_recall
from cnfkit.repro import interactive


@pytest.fixture
def no_frontend(monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("CNFKIT_WIDGETS", raising=False)


def test_static_under_papermill_and_nbval(no_frontend):
    seen = []

    def render(v):
        import matplotlib.pyplot as plt

        seen.append(v)
        return plt.figure()

    assert not interactive.live_widgets()
    assert interactive.slider(render, 0.3, 0.0, 1.0, 0.1, "t") is None
    assert seen == [0.3]  # drawn once, at the given value


def test_live_in_a_jupyter_server(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/04_super_resolution.ipynb")
    monkeypatch.delenv("CNFKIT_WIDGETS", raising=False)
    assert interactive.live_widgets()
    seen = []
    box = interactive.slider(lambda v: seen.append(v) or "text", 0.5, 0.0, 1.0, 0.25, "t")
    slider = box.children[0]
    slider.value = 0.75  # what moving the slider does
    assert seen == [0.5, 0.75]


def test_widgets_setting_is_validated(monkeypatch):
    monkeypatch.setenv("CNFKIT_WIDGETS", "yes")
    with pytest.raises(ValueError, match="CNFKIT_WIDGETS"):
        interactive.live_widgets()
    monkeypatch.setenv("CNFKIT_WIDGETS", "0")
    monkeypatch.setenv("JPY_SESSION_NAME", "x")
    assert not interactive.live_widgets()
    with pytest.raises(ValueError, match="minimum"):
        interactive.slider(lambda v: None, 2.0, 0.0, 1.0, 0.1, "t")


def test_checkpoints_are_reused_only_in_a_live_front_end(monkeypatch, no_frontend):
    assert interactive.checkpoint_dir("auto", "quick") is None  # nbval / papermill: train from scratch
    assert interactive.checkpoint_dir("", "quick") is None
    assert interactive.checkpoint_dir("/x/y", "quick") == Path("/x/y")
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/03_drive.ipynb")
    assert interactive.checkpoint_dir("auto", "quick") == interactive.ROOT / "results" / "quick" / "checkpoints"
    with pytest.raises(ValueError, match="unknown profile"):
        interactive.checkpoint_dir("auto", "quik")


def _fake_drive(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(2, 1, 12, 10, generator=g) < 0.3).float()
    mask = torch.ones(2, 1, 12, 10)
    mask[:, :, :2] = 0
    soft = (0.6 * y + 0.4 * torch.rand(2, 1, 12, 10, generator=g)).clamp(0, 1)
    result = {"runs": {"cnf": [{"soft_maps": soft, "pr_curve": {"precision": [1.0, 0.5], "recall": [0.0, 1.0]}}]}}
    return result, SimpleNamespace(labels=y, masks=mask), soft, y, mask


def test_threshold_statistics_match_the_metrics():
    result, test, soft, y, mask = _fake_drive()
    for t in (0.0, 0.35, 0.5, 1.0):
        st = drive.threshold_statistics(result, test, t)["cnf"]
        p, r = precision_recall((soft >= t).float(), y, mask)
        assert (st["precision"], st["recall"]) == (p, r)
        assert st["f_score"] == f_score(p, r)
        inside = mask > 0.5
        assert math.isclose(st["vessel_fraction"], float((soft[inside] >= t).float().mean()))
    with pytest.raises(ValueError, match="threshold"):
        drive.threshold_statistics(result, test, 1.5)
    fig = drive.threshold_view(result, test, 0.4)
    assert len(fig.axes) == 2


def test_temperature_view_refuses_bad_temperatures():
    from cnfkit.experiments import superres as sr

    cfg = sr.config("smoke")
    with pytest.raises(ValueError, match="temperature"):
        sr.temperature_view({}, torch.zeros(3, 8, 8), torch.zeros(3, 4, 4), cfg, float("nan"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must"):
        sr.temperature_view({}, torch.zeros(3, 8, 8), torch.zeros(3, 4, 4), cfg, 0.5, n=0)  # type: ignore[arg-type]
