"""Sliders in JupyterLab, one static figure everywhere else.

``slider(render, value, ...)`` shows ``render(value)`` under an ipywidgets slider when the notebook
runs in a Jupyter server with a live front end (JupyterLab, Notebook 7), and the single figure
``render(value)`` otherwise: under papermill (``make reproduce``), nbval (``make test``) and
nbconvert there is no one to move a slider, and widget outputs would carry random model ids into
the committed notebooks.  ``CNFKIT_WIDGETS=1`` / ``0`` forces either behaviour.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository (cnfkit/repro/ is two levels down)

__all__ = ["checkpoint_dir", "live_widgets", "slider"]


def live_widgets() -> bool:
    """True in a Jupyter server's kernel with ipywidgets installed (or when ``CNFKIT_WIDGETS=1``)."""
    forced = os.environ.get("CNFKIT_WIDGETS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ValueError(f"CNFKIT_WIDGETS must be 0 or 1, got {forced!r}")
    if "JPY_SESSION_NAME" not in os.environ:  # set by jupyter_server for its kernels; papermill and nbval do not
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def checkpoint_dir(value: str, profile: str) -> Path | None:
    """The notebooks' ``checkpoint_dir`` parameter: ``""`` none, a path that path, and ``"auto"``
    ``results/<profile>/checkpoints`` in a live Jupyter front end (so that a reader who opens a
    notebook after ``make reproduce`` reuses its finished models instead of training again) and none
    elsewhere (nbval and papermill runs train from scratch unless given a folder)."""
    if value == "auto":
        from .profiles import PROFILES

        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        return ROOT / "results" / profile / "checkpoints" if "JPY_SESSION_NAME" in os.environ else None
    return Path(value) if value else None


def _show(obj: Any) -> None:
    from IPython.display import display

    display(obj)
    if type(obj).__module__.startswith("matplotlib"):
        import matplotlib.pyplot as plt

        plt.close(obj)


def slider(
    render: Callable[[float], Any],
    value: float,
    minimum: float,
    maximum: float,
    step: float,
    description: str,
    live: bool | None = None,
):
    """Display ``render(value)`` (a matplotlib figure or anything IPython displays) under a slider.

    ``live``: ``None`` decides with :func:`live_widgets`.  Returns the widget box when live, else
    ``None`` (after displaying the static figure)."""
    if not minimum <= value <= maximum or step <= 0:
        raise ValueError(
            f"slider needs minimum <= value <= maximum and step > 0, got {minimum}, {value}, {maximum}, {step}"
        )
    if not (live_widgets() if live is None else live):
        _show(render(value))
        return None
    import ipywidgets as w

    control = w.FloatSlider(
        value=value,
        min=minimum,
        max=maximum,
        step=step,
        description=description,
        continuous_update=False,
        style={"description_width": "initial"},
        layout=w.Layout(width="480px"),
    )
    out = w.Output()

    def update(change=None) -> None:
        with out:
            out.clear_output(wait=True)
            _show(render(control.value))

    control.observe(update, names="value")
    update()
    box = w.VBox([control, out])
    from IPython.display import display

    display(box)
    return box
