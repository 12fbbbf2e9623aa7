"""Tests for recipes.constitutional (Constitutional AI, learned): the config's checks, a tiny run end to end, the
principled verdicts against a one-pair-at-a-time second reading, and the shipped study (data/synthetic/cai.json)
against the claims lesson 12 §3 asserts."""

from __future__ import annotations

import pytest

from rlhfbook_lab import world
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.recipes import constitutional as cai
from rlhfbook_lab.recipes.judge_model import model_judge


@pytest.mark.parametrize(("override", "match"), [
    ({"sl_prompts": 0}, "sl_prompts"),
    ({"dpo_lr": 0.0}, "dpo_lr"),
    ({"temperature": -1.0}, "temperature"),
    ({"revise_tokens": 1.5}, "revise_tokens"),
])
def test_bad_config_is_refused(override, match):
    with pytest.raises(ValueError, match=match):
        cai.cai_config(fast=True, **override)


def test_model_revise_refuses_unequal_lists():
    with pytest.raises(ValueError, match="one length"):
        cai.model_revise(None, None, [world.make_problem("addition", (1, 2))], ["3"], [])


def test_principled_verdicts_read_each_pair_under_its_own_principle():
    """Second implementation: the batched, grouped verdicts equal a one-pair judge built for that pair's
    principle."""
    model, tok = load_model("sft-tiny")
    problems = [world.make_problem("addition", (a, 3)) for a in range(6)]
    a = [p.reference for p in problems]
    b = [f"Sure! {p.reference} I hope this helps." for p in problems]
    names = ["correct", "polite", "concise", "clean_end", "no_repetition", "polite"]
    got = cai.principled_verdicts(model, tok, problems, a, b, names)
    for p, x, y, n, v in zip(problems, a, b, names, got):
        one = model_judge(model, tok, prompt=lambda q, u, w, n=n: world.principle_judge_prompt(q, u, w, n))
        assert v == one([p], [x], [y])[0]


def test_a_tiny_run_end_to_end():
    cfg = cai.cai_config(fast=True, reviser_prompts=16, sl_prompts=8, judge_prompts=16, rl_prompts=8,
                         report_prompts=4, eval_prompts=8, dpo_steps=1, dpo_batch_size=2)
    r = cai.run_cai(cfg)
    names = [row["model"] for row in r["table"]]
    assert names[0] == "sft" and {"sl-rule", "rl-cai", "rl-gold"} <= set(names)
    assert set(r["reviser"]["by_principle"]) == set(world.PRINCIPLE_FEATURES)
    assert r["sl"]["replies"] <= 8 and r["sl"]["parsed"] <= r["sl"]["replies"]
    assert "sl-cai" in names or r["sl"]["skipped_arms"] == ["sl-cai"]  # 4 steps rarely teach the format
    assert {"rl-cai - sft", "rl-gold - sft", "rl-cai - rl-gold"} <= set(r["gains"])
    assert 0 < r["rl"]["pairs"] <= 8 and 0 <= r["rl"]["agreement_with_gold"] <= 1


def test_the_shipped_study_meets_the_lessons_claims():
    """data/synthetic/cai.json (CAI_COMMAND's output) holds every claim lesson 12 §3 asserts on it."""
    r = cai.load_cai_result()
    assert r["config"]["reviser_prompts"] == cai.CAIConfig().reviser_prompts and r["config"]["rl_stage"]
    by = r["reviser"]["by_principle"]
    assert set(by) == set(world.PRINCIPLE_FEATURES)
    assert all(v["parsed"] >= 0.95 for v in by.values())
    assert all(by[n]["follows"] >= 0.8 for n in ("polite", "concise", "clean_end", "no_repetition"))
    assert all(v["matches_rule"] < 0.5 and v["gold_after"] < v["rule_gold_after"] for v in by.values())
    assert by["polite"]["gold_after"] > by["polite"]["gold_before"]
    assert all(v["gold_after"] < v["gold_before"] for n, v in by.items() if n != "polite")
    assert r["sl"]["gold_revisions"] > r["sl"]["gold_replies"]
    table = {row["model"]: row for row in r["table"]}
    assert set(table) == {"sft", "sl-cai", "sl-rule", "rl-cai", "rl-gold"}
    sl, sft = table["sl-cai"], table["sft"]
    assert sl["eos"] > sft["eos"] and sl["opener"] > sft["opener"] and sl["correct"] < sft["correct"]
    g = r["gains"]
    assert abs(g["sl-cai - sft"]["diff"]) < 2 * g["sl-cai - sft"]["se"]
    assert g["rl-cai - sft"]["diff"] - 2 * g["rl-cai - sft"]["se"] > 0
    assert abs(g["rl-cai - rl-gold"]["diff"]) < 2 * g["rl-cai - rl-gold"]["se"]
    assert r["rl"]["pairs"] > 100 and 0.6 < r["rl"]["agreement_with_rule"] < 1
    for ex in r["sl"]["examples"]:  # the examples are what they say: the reply, the model's revision, the rule's
        p = world.parse_prompt(ex["prompt"])
        assert ex["rule_revision"] == world.revise(p, ex["reply"], ex["principle"])
        assert ex["gold_revision"] == pytest.approx(world.gold_score(p, ex["revision"]))
    assert r["cpu_seconds"]["total"] < 15 * 60
