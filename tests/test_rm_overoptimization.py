"""Tests for recipes.rm_overoptimization: Gao's curves read from a training log (by hand on a toy log), bad logs
refused, and the shipped run against rm-tiny still showing what lesson 14 says it shows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlhfbook_lab.recipes.rm_overoptimization import RM_RUN_COMMAND, load_rm_run, rm_run_curves


def _toy_log(T=8):
    d = np.linspace(0.0, 3.0, T)
    gold = 0.5 + d * (0.3 - 0.2 * np.log(np.maximum(d, 1e-9)))  # an exact RL-form curve, α = 0.3, β = 0.2
    return {"step": list(range(T)), "rewards/score": list(d), "charts/gold_score": list(gold),
            "charts/correct_rate": [0.5] * T, "kl/seq": list(d ** 2 + np.r_[0.3, np.zeros(T - 1)]),
            "eval/step": [0, 4, T], "eval/gold_score": [0.1, 0.2, 0.3], "eval/correct_rate": [0.7, 0.6, 0.5]}


def test_curves_by_hand_on_a_toy_log():
    c = rm_run_curves(_toy_log())
    assert c["d"][0] == 0.0  # the first rollout samples the start policy: d = 0 whatever its KL estimate says
    np.testing.assert_allclose(c["d"][1:], np.linspace(0.0, 3.0, 8)[1:])
    assert c["eval_step"].tolist() == [0, 4] and c["eval_gold"].tolist() == [0.1, 0.2]  # step 8 has no rollout
    assert c["eval_d"].tolist() == [0.0, c["d"][4]]
    assert c["fit_gold"].alpha == pytest.approx(0.3, abs=1e-6) and c["fit_gold"].beta == pytest.approx(0.2, abs=1e-6)


def test_bad_logs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="no training log at"):
        load_rm_run(tmp_path / "missing.json")
    bad = _toy_log()
    del bad["eval/gold_score"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"missing \['eval/gold_score'\]"):
        load_rm_run(tmp_path / "bad.json")


def test_the_shipped_run_rises_then_falls_while_the_proxy_climbs():
    """The claims lesson 14 asserts on the shipped run (made by RM_RUN_COMMAND): held-out gold peaks after the start
    and ends far below it; the proxy's score keeps rising; correctness collapses; Gao's RL form fits the gold curve,
    and the proxy's fitted peak lies far beyond the gold's."""
    c = rm_run_curves(load_rm_run())
    g = c["eval_gold"]
    peak = int(np.argmax(g))
    assert peak > 0 and g[peak] > g[0] + 0.05, (RM_RUN_COMMAND, g)
    assert g[-1] < g[peak] - 0.5 and g[-1] < g[0] - 0.5
    assert c["proxy"][-10:].mean() > c["proxy"][len(c["proxy"]) // 2 - 5:len(c["proxy"]) // 2 + 5].mean() > \
        c["proxy"][:10].mean()
    assert c["eval_correct"][-1] < 0.1 < 0.6 < c["eval_correct"][0]
    fit = c["fit_gold"]
    assert fit.alpha > 0 and fit.beta > 0 and fit.r2 > 0.9
    assert c["fit_proxy"].peak_d > 3 * fit.peak_d
