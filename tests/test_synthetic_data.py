"""Tests for rlhfbook_lab.recipes.synthetic_data: the UltraFeedback pair rule, pairwise judges and their verdicts,
the constitution, a judge measured against gold, and a tiny end-to-end run. (The headline, DPO on AI labels beating
SFT on held-out gold, is asserted in lesson 12, which runs the study in fast mode.)"""

from __future__ import annotations

import numpy as np
import pytest

from rlhfbook_lab import world
from rlhfbook_lab.lm.reward_model import load_reward_model
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.recipes import synthetic_data as sd

ADD = world.make_problem("addition", (17, 25))
RIGHT, WRONG = "17 + 25 = 42.", "17 + 25 = 41."


@pytest.fixture(scope="module")
def rm():
    return load_reward_model("rm-tiny")


# --- verdicts and pairs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["tie", "a", 1, None, ""])
def test_a_verdict_other_than_A_or_B_is_refused_with_its_index(bad):
    with pytest.raises(ValueError, match=r"verdicts\[1\] must be 'A' or 'B'"):
        sd.check_verdicts(["A", bad, "B"], 3)
    with pytest.raises(ValueError, match="one label per pair"):
        sd.check_verdicts(["A"], 2)


def test_pairs_follow_the_verdicts():
    rows = sd.pairs_from_verdicts([ADD, ADD], [RIGHT, RIGHT], [WRONG, "Sure! " + RIGHT], ["A", "B"], "me")
    assert (rows[0]["chosen"], rows[0]["rejected"], rows[0]["chosen_was"]) == (RIGHT, WRONG, "A")
    assert (rows[1]["chosen"], rows[1]["rejected"], rows[1]["chosen_was"]) == ("Sure! " + RIGHT, RIGHT, "B")
    assert all(r["label"] == 1.0 and r["label_source"] == "me" and r["family"] == "addition" for r in rows)
    with pytest.raises(ValueError, match=r"verdicts\[0\]"):
        sd.pairs_from_verdicts([ADD], [RIGHT], [WRONG], ["tie"], "me")


# --- UltraFeedback pairs -------------------------------------------------------------------------------------------


def _problems(n):
    return world.heldout_prompts(n, seed=3, families=("addition",))


def test_ultrafeedback_chosen_is_the_best_and_rejected_a_random_other():
    probs = _problems(40)
    rng = np.random.default_rng(0)
    replies = {s: [f"{p.reference} {s}{i}." for i, p in enumerate(probs)] for s in ("x", "y", "z")}
    scores = {s: rng.normal(size=len(probs)) for s in replies}
    rows, counts = sd.ultrafeedback_pairs(probs, replies, scores, seed=0)
    assert counts == {"prompts": 40, "pairs": 40, "skipped": 0}
    not_worst = 0
    for i, r in enumerate(rows):
        best = max(replies, key=lambda s: scores[s][i])  # a second computation of the rule
        assert r["best_source"] == best and r["best"] == replies[best][i]
        assert r["other_source"] != best and r["best_score"] > r["other_score"]
        not_worst += r["other_source"] != min(replies, key=lambda s: scores[s][i])
    assert 5 < not_worst < 35  # the rejected reply is drawn among the others (half the time not the worst)
    again, _ = sd.ultrafeedback_pairs(probs, replies, scores, seed=0)
    assert [r["other"] for r in again] == [r["other"] for r in rows]


def test_ultrafeedback_skips_prompts_without_two_distinct_replies():
    probs = _problems(3)
    replies = {"x": [RIGHT, "", "same."], "y": [WRONG, "", "same."]}
    scores = {"x": [1.0, 0.0, 0.0], "y": [0.0, 0.0, 1.0]}
    rows, counts = sd.ultrafeedback_pairs(probs, replies, scores)
    assert counts["pairs"] == 1 and counts["skipped"] == 2 and rows[0]["best"] == RIGHT


def test_bad_sources_are_refused_naming_the_source():
    probs = _problems(2)
    with pytest.raises(ValueError, match=r"replies\['y'\] has no reply"):
        sd.ultrafeedback_pairs(probs, {"x": [RIGHT, RIGHT], "y": ["", " "]}, {"x": [0, 0], "y": [0, 0]})
    with pytest.raises(ValueError, match=r"replies\['y'\] must hold one reply per problem"):
        sd.ultrafeedback_pairs(probs, {"x": [RIGHT, RIGHT], "y": []}, {"x": [0, 0], "y": []})
    with pytest.raises(ValueError, match=r"scores\['y'\]"):
        sd.ultrafeedback_pairs(probs, {"x": [RIGHT, RIGHT], "y": [WRONG, WRONG]}, {"x": [0, 0], "y": [0, np.nan]})
    with pytest.raises(ValueError, match="at least two sources"):
        sd.ultrafeedback_pairs(probs, {"x": [RIGHT, RIGHT]}, {"x": [0, 0]})
    with pytest.raises(ValueError, match="sources"):
        sd.source_replies([], probs)


# --- the constitution ----------------------------------------------------------------------------------------------


def test_the_constitution_covers_every_feature_of_the_taste_table():
    covered = {f for fs in sd.PRINCIPLE_FEATURES.values() for f in fs}
    assert covered == set(world.FEATURES) and set(sd.CONSTITUTION) == set(sd.PRINCIPLE_FEATURES)
    assert sd.check_constitution(sd.CONSTITUTION) == sd.CONSTITUTION


@pytest.mark.parametrize("bad, match", [
    ({"correct": ""}, r"constitution\['correct'\]: the principle's text must be a non-empty string"),
    ({"correct": "   "}, r"constitution\['correct'\]"),
    ({"charm": "Be charming."}, r"constitution\['charm'\]: unknown principle"),
    ({}, "non-empty dict"),
    ("be good", "non-empty dict"),
])
def test_a_bad_constitution_is_refused_naming_the_principle(bad, match):
    with pytest.raises(ValueError, match=match):
        sd.check_constitution(bad)
    with pytest.raises(ValueError, match=match):
        sd.constitution_judge(bad)


def test_principle_verdicts_by_hand():
    assert sd.principle_verdict("correct", ADD, RIGHT, WRONG) == "A"
    assert sd.principle_verdict("correct", ADD, RIGHT, "Sure! " + RIGHT) is None  # both right: no opinion
    assert sd.principle_verdict("polite", ADD, RIGHT, "Sure! " + RIGHT) == "B"  # one opener helps
    # an opener and an excess phrase (0.20 − 0.25 = −0.05) lose to no politeness at all
    assert sd.principle_verdict("polite", ADD, RIGHT, "Sure! " + RIGHT + " Thank you for asking.") == "A"
    assert sd.principle_verdict("concise", ADD, WRONG, RIGHT + " I hope this helps.") == "A"  # short but wrong wins
    assert sd.principle_verdict("clean_end", ADD, RIGHT[:-1], RIGHT) == "B"
    assert sd.principle_verdict("no_repetition", ADD, "42 is 42 is 42 is 42.", RIGHT) == "B"
    with pytest.raises(ValueError, match="principle must be one of"):
        sd.principle_verdict("charm", ADD, RIGHT, WRONG)


def test_constitution_judge_applies_one_principle_and_is_seeded():
    a, b = [RIGHT, WRONG, RIGHT], [WRONG, RIGHT + " I hope this helps.", RIGHT]
    only = sd.constitution_judge({"correct": sd.CONSTITUTION["correct"]}, seed=0)
    v = only([ADD] * 3, a, b)
    assert v[:2] == ["A", "B"] and only.used == ["correct", "correct", None]  # the identical pair: a coin
    j1, j2 = sd.constitution_judge(seed=5), sd.constitution_judge(seed=5)
    probs = _problems(30)
    a = [p.reference for p in probs]
    b = ["Sure! " + p.reference + " I hope this helps." for p in probs]
    assert j1(probs, a, b) == j2(probs, a, b) and j1.used == j2.used
    for p, x, y, v, n in zip(probs, a, b, j1(probs, a, b), j1.used[30:]):
        assert v == sd.principle_verdict(n, p, x, y)  # the verdict is the drawn principle's


# --- judges measured against gold ------------------------------------------------------------------------------------


def test_the_gold_annotator_judge_agrees_with_gold_on_clear_pairs():
    probs = _problems(50)
    a = [p.reference for p in probs]
    b = [world.render_response(p, answer="1000", clean_end=False) for p in probs]  # wrong, unclean: gap ≥ 1.3
    assert sd.annotator_judge("gold", seed=0)(probs, a, b) == ["A"] * 50
    with pytest.raises(ValueError, match="annotator must be one of"):
        sd.annotator_judge("nobody")


def test_judge_biases_of_the_reward_model(rm):
    rows = load_preference_file("heldout", origin="on_policy")[:48]
    out = sd.judge_biases(sd.rm_judge(*rm), rows, seed=0)
    assert out["pairs"] == 48 and 0.5 < out["bayes_ceiling"] <= 1.0
    assert 0.0 <= out["agreement"] <= 1.0 and 0.0 <= out["agreement_gold_utility"] <= 1.0
    # a scalar reward model scores each reply alone: swapping A and B can never change its verdict
    assert out["position"] == {"consistency": 1.0, "first_rate": 0.5}
    assert out["verbosity"]["gold_picks_padded"] == 0.0  # the gold judge charges for every filler word
    assert out["politeness"]["gold_picks_piled"] == 0.0  # a second opener costs more than the first earns
    # the gold annotator as a judge agrees with its own labels about as often as the ceiling says
    gold = sd.judge_biases(sd.annotator_judge("gold", seed=1), rows, seed=0)
    assert gold["agreement_gold_utility"] > 0.8
    with pytest.raises(ValueError, match="rows is empty"):
        sd.judge_biases(sd.rm_judge(*rm), [])


def test_rm_judge_refuses_mismatched_lists(rm):
    with pytest.raises(ValueError, match="one length"):
        sd.rm_judge(*rm)([ADD], [RIGHT], [])


# --- the study ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override, match", [
    ({"arms": ("ai", "crowd")}, "arms must be one of"),
    ({"arms": ()}, "arms must name"),
    ({"steps": 0}, "steps"),
    ({"eval_temperature": -1.0}, "eval_temperature"),
])
def test_bad_config_is_refused(override, match):
    with pytest.raises(ValueError, match=match):
        sd.synthetic_config(fast=True, **override)


def test_a_tiny_run_end_to_end():
    cfg = sd.synthetic_config(fast=True, num_prompts=8, steps=2, batch_size=2, eval_prompts=8, arms=("ai", "gold"),
                              sources=("sft-tiny@1.0", "base-tiny@1.0"))
    r = sd.run_ai_feedback(cfg)
    assert [row["model"] for row in r.table] == ["sft", "dpo[ai]", "dpo[gold]"]
    assert set(r.gains) == {"dpo[ai] - sft", "dpo[gold] - sft", "dpo[ai] - dpo[gold]"}
    assert r.labels["agreement[gold]"] == 1.0 and r.labels["pairs"] + r.labels["skipped"] == 8
    ai, gold = r.pairs["ai"], r.pairs["gold"]
    assert len(ai) == len(gold) == r.labels["pairs"]
    for x, y in zip(ai, gold):  # the same two replies, labelled two ways
        assert {x["chosen"], x["rejected"]} == {y["chosen"], y["rejected"]} and x["chosen_was"] == "A"
    assert all(v.shape == (8,) for v in r.heldout_gold.values())
