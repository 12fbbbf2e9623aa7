"""The long RLVR run's recipe and its shipped log (``recipes/rlvr_study.py``, ``data/reasoning/rlvr_grpo.json``):
binning by hand, the FLOPs count against ``rl_rollout_flops``, and the shipped log loads, is small, is ten times
lesson 07's fast-mode run and fits the compute sigmoid."""

import numpy as np
import pytest
from _models import tiny_llama

from rlhfbook_lab.equations.flops import rl_rollout_flops
from rlhfbook_lab.equations.scaling import fit_sigmoid_compute_curve
from rlhfbook_lab.recipes.rlvr_study import (
    KEPT,
    SHIPPED,
    SHIPPED_RUNS,
    binned,
    cumulative_flops,
    load_rlvr_log,
    matmul_params,
    rlvr_study_config,
)


def test_binned_hand_computed():
    h = {"flops/cumulative": np.arange(1.0, 8.0), "x": np.array([1.0, 3.0, np.nan, 5.0, 7.0, 9.0, 100.0]),
         "step": np.arange(1, 8)}
    C, v = binned(h, "x", window=3)
    np.testing.assert_array_equal(C, [3.0, 6.0])  # a window's end; the partial last window is dropped
    np.testing.assert_allclose(v, [2.0, 7.0])  # NaN ignored
    np.testing.assert_array_equal(binned(h, "x", window=3, x="step")[0], [3, 6])
    with pytest.raises(ValueError, match="window"):
        binned(h, "x", window=8)


def test_cumulative_flops_sums_rl_rollout_flops(tokenizer):
    model = tiny_llama(tokenizer, seed=0, layers=2)
    cfg = rlvr_study_config(steps=2)
    c = model.config
    width = c.num_attention_heads * (c.hidden_size // c.num_attention_heads)
    flops = cumulative_flops({"charts/rollout_tokens": [1280.0, 2560.0]}, model, cfg)
    first = rl_rollout_flops(1280, matmul_params(model), c.num_hidden_layers, 10, width)  # 1280 tokens / 128 rows
    assert flops[0] == first and flops[1] == first + rl_rollout_flops(2560, matmul_params(model),
                                                                       c.num_hidden_layers, 20, width)
    with pytest.raises(ValueError, match="algo"):
        rlvr_study_config("trpo")


def test_beta_reaches_the_config_and_bad_names_are_refused():
    assert rlvr_study_config().beta == 0.0 and rlvr_study_config(beta=0.1).beta == 0.1
    assert rlvr_study_config("dr_grpo", beta=0.1).kl_estimator == "k2"  # the preset's own estimator
    with pytest.raises(ValueError, match="beta"):
        rlvr_study_config(beta=-0.1)
    with pytest.raises(ValueError, match="run"):
        load_rlvr_log("ppo")


@pytest.mark.parametrize("run", ["grpo", "dr_grpo", "grpo_kl"])
def test_the_shipped_log_loads_and_holds_what_lesson_07_reads(run):
    path = SHIPPED / f"rlvr_{run}.json"
    assert path.stat().st_size < 200_000
    log = load_rlvr_log(run)
    assert log["algo"] == run.removesuffix("_kl") and run in SHIPPED_RUNS
    assert f"--algo {log['algo']}" in SHIPPED_RUNS[run] and f"rlvr_{run}.json" in SHIPPED_RUNS[run]
    h = log["history"]
    assert set(KEPT) | {"flops/cumulative"} == set(h)
    assert log["steps"] >= 10 * 20 and len(h["step"]) == log["steps"]  # ten times lesson 07's fast-mode run
    assert np.all(np.diff(h["flops/cumulative"]) > 0)
    assert h["eval/step"][0] == 0 and h["eval/step"][-1] == log["steps"]
    fit = fit_sigmoid_compute_curve(*binned(h, "charts/correct_rate"), R0=h["charts/correct_rate"][0])
    assert fit.R0 < fit.A < 1.0 and fit.r2 > 0.7  # lesson 07 asserts the same


def test_the_kl_run_differs_from_grpo_by_beta_alone():
    base, kl = load_rlvr_log("grpo"), load_rlvr_log("grpo_kl")
    assert kl["beta"] == 0.1 and "--beta 0.1" in SHIPPED_RUNS["grpo_kl"]
    assert {k: v for k, v in kl["config"].items() if k != "beta"} == {k: v for k, v in base["config"].items()
                                                                      if k != "beta"}
    assert kl["history"]["charts/correct_rate"][0] == base["history"]["charts/correct_rate"][0]  # same first rollout
    assert np.mean(kl["history"]["kl/seq"][-50:]) < 0.6 * np.mean(base["history"]["kl/seq"][-50:])  # lesson 07's claim
