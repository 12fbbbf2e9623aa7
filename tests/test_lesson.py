"""The lessons' helpers: the knob that is a slider in a live notebook and a static figure everywhere else."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from rlhfbook_lab import lesson  # noqa: E402


def test_widgets_are_off_without_a_frontend_and_can_be_forced(monkeypatch):
    for var in ("JPY_SESSION_NAME", "VSCODE_PID", "RLHFBOOK_WIDGETS"):
        monkeypatch.delenv(var, raising=False)
    assert not lesson.widgets_live()  # a test run: no frontend (and fast mode)
    monkeypatch.setenv("RLHFBOOK_WIDGETS", "0")
    monkeypatch.setenv("JPY_SESSION_NAME", "x.ipynb")
    assert not lesson.widgets_live()
    monkeypatch.setenv("RLHFBOOK_WIDGETS", "1")
    assert lesson.widgets_live()


def test_knob_falls_back_to_evenly_spaced_static_panels(monkeypatch):
    monkeypatch.setenv("RLHFBOOK_WIDGETS", "0")
    drawn = []
    shown = lesson.knob(lambda ax, v: drawn.append(v), [0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0], "T")
    assert shown == drawn == [0.1, 0.5, 1.5, 3.0]  # first and last always, evenly spaced between
    assert lesson.knob(lambda ax, v: None, [1, 2], "n") == [1, 2]
    with pytest.raises(ValueError, match="values"):
        lesson.knob(lambda ax, v: None, [], "T")
