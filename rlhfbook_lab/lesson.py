"""Small helpers every lesson uses: fast mode, seeding, showing the package's source, one plot style.

A lesson starts with::

    from rlhfbook_lab.lesson import FAST, seed_everything, show_source, use_style
    seed_everything(0); use_style()

and a knob that teaches is a slider (``knob``) that falls back to a static figure where no widget frontend runs.
"""

from __future__ import annotations

import inspect
import os
import random
import sys

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display


def fast_mode() -> bool:
    """True when ``RLHFBOOK_FAST`` is set to a true value (``1``, ``true``, ``yes``): the test run's setting.

    In fast mode every lesson finishes in ≤ 90 s on 2 CPU cores and still proves its claim; the default (full
    mode) runs longer for clearer curves.
    """
    return os.environ.get("RLHFBOOK_FAST", "0").strip().lower() in ("1", "true", "yes", "on")


FAST = fast_mode()


def pick(fast, full):
    """``fast`` in fast mode, else ``full``: ``steps = pick(40, 400)``."""
    return fast if FAST else full


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a lesson's numbers are reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def show_source(obj) -> None:
    """Display the source of a package function or class in the notebook (as text outside Jupyter).

    Lessons show the code they run this way, so the text cannot drift from the code.
    """
    display(Markdown(f"```python\n{inspect.getsource(obj)}\n```"))


def use_style() -> None:
    """The one plotting style of the course: readable sizes, light grid, no top/right spines."""
    plt.rcParams.update({
        "figure.figsize": (7.0, 4.0), "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 12, "axes.labelsize": 11,
        "legend.frameon": False, "font.size": 10,
    })


def smooth(values, window: int = 10) -> np.ndarray:
    """A trailing moving average for noisy curves (the first points average what exists so far)."""
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    n = np.minimum(np.arange(1, len(v) + 1), window)
    return (c[1:] - c[np.maximum(0, np.arange(1, len(v) + 1) - n)]) / n


def widgets_live() -> bool:
    """True when a notebook frontend that draws ``ipywidgets`` is attached: Jupyter (its server names the kernel's
    session in ``JPY_SESSION_NAME``), VS Code or Colab, and fast mode is off. ``RLHFBOOK_WIDGETS=1`` / ``0`` forces
    the answer. nbval, nbconvert and the static site have no frontend, so they get the static figure.
    """
    forced = os.environ.get("RLHFBOOK_WIDGETS", "").strip().lower()
    if forced:
        return forced in ("1", "true", "yes", "on")
    if FAST:
        return False
    try:
        import ipywidgets  # noqa: F401  # deferred: optional; only a live notebook needs it
    except ImportError:
        return False
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID") or "google.colab" in sys.modules)


def knob(draw, values, label: str, value=None, static: int = 4):
    """A slider over ``values`` that redraws ``draw(ax, v)`` live, or, with no widget frontend, one static figure
    of ``static`` panels at evenly spaced values (always the first and last). Returns the values drawn statically
    (``[]`` when the slider is live), so a cell can assert on what the reader sees.
    """
    values = list(values)
    if not values:
        raise ValueError("knob: values must not be empty")
    if widgets_live():
        import ipywidgets  # deferred: optional; only a live notebook needs it

        def redraw(v):
            fig, ax = plt.subplots()
            draw(ax, v)
            plt.show()

        start = values[len(values) // 2] if value is None else value
        ipywidgets.interact(redraw, v=ipywidgets.SelectionSlider(options=values, value=start, description=label,
                                                                  continuous_update=False))
        return []
    n = min(static, len(values))
    shown = [values[round(i * (len(values) - 1) / max(n - 1, 1))] for i in range(n)]
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), sharey=True, squeeze=False)
    for ax, v in zip(axes[0], shown):
        draw(ax, v)
        ax.set_title(f"{label} = {v:g}" if isinstance(v, (int, float)) else f"{label} = {v}")
    fig.tight_layout()
    plt.show()
    return shown
