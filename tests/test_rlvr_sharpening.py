"""Tests for recipes.rlvr_sharpening: lesson 07's pools before and after RLVR, and the shipped history its full mode
loads — its format is what the recipe returns today, it is small, made by the full recipe, and it meets every claim
lesson 07 asserts on it (sections 3–5)."""

from __future__ import annotations

import numpy as np
import pytest

from rlhfbook_lab.config import build
from rlhfbook_lab.equations.scaling import fit_pass_at_k_power_law
from rlhfbook_lab.recipes.rlvr_sharpening import (
    HISTORY,
    HISTORY_COMMAND,
    RECIPES,
    SharpeningConfig,
    dumps,
    load_history,
    main,
    rl_config,
    sharpening_study,
)


@pytest.fixture(scope="module")
def tiny_result():
    return sharpening_study(build(SharpeningConfig, RECIPES, "fast", problems=3, samples=4, rl_steps=1,
                                  shown_replies=2))


def _shape(x):
    """The nested keys of a result, arrays and lists reduced to a marker (the format, not the values)."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    return "seq" if isinstance(x, list | np.ndarray) else ("number" if isinstance(x, int | float) else type(x).__name__)


def test_rl_config_is_section_4s_run():
    cfg = rl_config(build(SharpeningConfig, RECIPES, "fast"))
    assert (cfg.train.steps, cfg.train.lr, cfg.beta, cfg.reward, cfg.families) == (20, 1e-4, 0.0, "verifier",
                                                                                    ("addition",))
    with pytest.raises(ValueError, match="samples"):
        rl_config(build(SharpeningConfig, None, None, samples=0))


def test_tiny_study_end_to_end(tiny_result, tmp_path):
    r = tiny_result
    for name in ("sft", "rl"):
        pool = r[name]
        assert pool["n"] == 4 and pool["counts"].shape == (3,) and len(pool["examples"]) == 2
        assert pool["table"]["k"].tolist() == [1, 2, 3, 4]
        assert pool["table"]["pass@k"][0] == pytest.approx(pool["counts"].mean() / 4)  # pass@1 = mean c/n
    assert len(r["history"]["step"]) == 1 and set(r["cpu_seconds"]) == {"sft_pool", "rl", "rl_pool"}
    path = tmp_path / "h.json"
    path.write_text(dumps(r))
    back = load_history(path)
    assert back["config"] == r["config"] and _shape(back) == _shape(r)
    np.testing.assert_allclose(back["sft"]["table"]["maj@k"], r["sft"]["table"]["maj@k"], rtol=1e-5)
    np.testing.assert_array_equal(back["rl"]["counts"], r["rl"]["counts"])


def test_load_history_and_main_refuse_bad_input(tmp_path, capsys):
    with pytest.raises(ValueError, match="no sharpening history"):
        load_history(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"config": {}}')
    with pytest.raises(ValueError, match="not a result of sharpening_study"):
        load_history(bad)
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path)])
    assert e.value.code == 2 and "--out: expected a .json file path" in capsys.readouterr().err


def test_shipped_history_has_the_recipes_format(tiny_result):
    h = load_history()
    assert HISTORY.stat().st_size < 200_000
    assert h["config"] == vars(SharpeningConfig())  # the full recipe: HISTORY_COMMAND has no --fast
    assert "--fast" not in HISTORY_COMMAND and f"--out data/reasoning/{HISTORY.name}" in HISTORY_COMMAND
    assert _shape(h) == _shape(tiny_result)
    assert len(h["history"]["step"]) == 60 and all(len(h[p]["counts"]) == 200 for p in ("sft", "rl"))


def test_shipped_history_meets_lesson_07s_claims():
    """What lesson 07 asserts in full mode on the shipped pools and run (sections 3–5), the same thresholds."""
    h = load_history()
    n = h["sft"]["n"]
    sft, rl = h["sft"]["table"], h["rl"]["table"]
    assert sft["pass@k"][-1] > sft["pass@k"][0] + 0.2
    assert np.all(sft["maj@k"] <= sft["pass@k"] + 1e-9)  # rounding to 6 digits keeps the order
    assert np.all(sft["pass@k"] - sft["pass@k_plugin"] >= -1e-12)
    keep = sft["pass@k"] < 1 - 1e-9
    assert fit_pass_at_k_power_law(sft["k"][keep], sft["pass@k"][keep]).b > 0
    gain = (h["rl"]["counts"] - h["sft"]["counts"]) / n
    se = gain.std(ddof=1) / np.sqrt(len(gain))
    assert gain.mean() > 2 * se and gain.mean() > 0.10
    diff = rl["pass@k"] - sft["pass@k"]
    assert diff[0] > diff[-1]
