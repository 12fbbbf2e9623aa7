"""Tests for rlhfbook_lab.recipes.dpo_study: lesson 08's heavy runs, and the shipped full-mode result of them.

The shipped fast-mode file (data/dpo/study_fast.json) loads, is the fast plan, and meets the claims lesson 08
asserts from it; bad files and unknown parts are ValueErrors; ``curve`` keeps the evaluation points;
a tiny online arm judges the prompts ``dpo_from_sft`` judges, in the same order, and spends the whole budget.
"""

import json
import math

import numpy as np
import pytest

from rlhfbook_lab import world
from rlhfbook_lab.equations.evaluation_stats import paired_difference
from rlhfbook_lab.recipes import dpo_study
from rlhfbook_lab.trainers.dpo import FAST_SIZES, dpo_config


@pytest.fixture(scope="module")
def shipped_fast():
    return dpo_study.load_history(fast=True)


def test_shipped_fast_study_is_the_fast_plan(shipped_fast):
    plan = dpo_study.PLANS[True]
    assert set(dpo_study.PARTS) <= set(shipped_fast) and shipped_fast["fast"] is True
    assert tuple(shipped_fast["variants"]) == plan["variants"]
    for loss, rep in shipped_fast["variants"].items():
        assert rep["loss"] == loss and rep["steps"] == plan["variant_overrides"]["steps"]
        assert (rep["eval_prompts"], rep["kl_prompts"]) == (FAST_SIZES["eval_prompts"], FAST_SIZES["kl_prompts"])
    assert shipped_fast["sweep"] == {} and shipped_fast["ppo"] == {}


def test_shipped_fast_online_arm_meets_the_lessons_claims(shipped_fast):
    online, n = shipped_fast["online"], FAST_SIZES["eval_prompts"]
    assert online["rounds"] == 2 and online["steps"] == dpo_config("dpo", fast=True).train.steps
    assert online["prompts"] == [p.prompt for p in world.heldout_prompts(n, seed=0)]
    assert len(online["scores"]) == len(online["offline_scores"]) == n
    assert online["round_gold"][1] > online["round_gold"][0]  # lesson 08 asserts it: round 2 samples a better policy
    diff = paired_difference(online["scores"], online["offline_scores"])
    unpaired = math.sqrt((np.var(online["scores"], ddof=1) + np.var(online["offline_scores"], ddof=1)) / n)
    assert diff["se"] < unpaired  # lesson 08 asserts it: pairing the prompts shrinks the standard error
    # each round labels about the pairs its steps visit (100 prompts a round; pairs of identical replies dropped)
    assert all(60 <= k <= 100 for k in online["pairs_per_round"])


def test_load_history_rejects_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ValueError, match="path: no DPO study"):
        dpo_study.load_history(True, tmp_path / "nope.json")
    (tmp_path / "x.json").write_text(json.dumps({"variants": {}}))
    with pytest.raises(ValueError, match="missing"):
        dpo_study.load_history(True, tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"fast": True, **{part: {} for part in dpo_study.PARTS}}))
    with pytest.raises(ValueError, match="fast-mode study; expected the other"):
        dpo_study.load_history(False, tmp_path / "y.json")


def test_run_study_rejects_an_unknown_part():
    with pytest.raises(ValueError, match="parts: unknown part 'everything'"):
        dpo_study.run_study(parts=("everything",))


def test_curve_keeps_the_evaluation_points():
    history = {"step": [0, 1, 2, 3], "losses/train": [0.7, 0.6, 0.5, 0.4], "eval/step": [2, 4],
               "eval/kl": [0.1, 0.3], "eval/gold_sampled": [0.5, 0.6], "eval/gold_score": [0.7, 0.7]}
    assert dpo_study.curve(history) == {"eval/step": [2, 4], "eval/kl": [0.1, 0.3], "eval/gold_sampled": [0.5, 0.6],
                                        "eval/gold_score": [0.7, 0.7]}
    assert dpo_study.curve({"step": [0]}) == {k: [] for k in dpo_study.CURVE_KEYS}


def test_a_tiny_online_arm_spends_its_budget_and_judges_the_held_out_prompts():
    cfg = dpo_config("dpo", fast=True, steps=2, batch_size=2)
    result, run = dpo_study.online_arm(cfg, rounds=2, num_prompts=4, eval_prompts=3, return_run=True)
    assert result["steps"] == 2 and len(run.histories) == 2
    assert result["prompts"] == [p.prompt for p in world.heldout_prompts(3, seed=0)]
    assert len(result["scores"]) == 3 and len(result["round_gold"]) == 2
    json.dumps(result)  # what run_study writes


@pytest.fixture(scope="module")
def shipped_full():
    return dpo_study.load_history(fast=False)


def test_shipped_full_study_is_the_full_plan_and_meets_the_lessons_claims(shipped_full):
    """data/dpo/study_full.json: what lesson 08 loads in full mode, made by `dpo_study.history_command(False)`."""
    plan = dpo_study.PLANS[False]
    assert set(dpo_study.PARTS) <= set(shipped_full) and shipped_full["fast"] is False
    assert tuple(shipped_full["variants"]) == plan["variants"]
    for loss, rep in shipped_full["variants"].items():
        assert rep["loss"] == loss and rep["eval_prompts"] == dpo_study.FULL_SIZES["eval_prompts"]
    assert sorted(shipped_full["sweep"]) == sorted(plan["betas"])
    assert sorted(shipped_full["ppo"]) == sorted(plan["ppo_betas"])
    online, n = shipped_full["online"], dpo_study.FULL_SIZES["eval_prompts"]
    assert online["rounds"] == 2 and online["steps"] == dpo_config("dpo", fast=False).train.steps
    assert online["prompts"] == [p.prompt for p in world.heldout_prompts(n, seed=0)]
    assert len(online["scores"]) == len(online["offline_scores"]) == n
    assert online["round_gold"][1] > online["round_gold"][0]  # lesson 08 asserts it in both modes
    diff = paired_difference(online["scores"], online["offline_scores"])
    unpaired = math.sqrt((np.var(online["scores"], ddof=1) + np.var(online["offline_scores"], ddof=1)) / n)
    assert diff["se"] < unpaired
