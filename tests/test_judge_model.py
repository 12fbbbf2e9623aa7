"""Tests for the pairwise-judge task (world.pairwise) and the generative judge (recipes.judge_model): the prompt by
hand, verdicts read and never guessed, the A/B placement, the batched judge against a one-row second implementation,
refusals, and the shipped judge-tiny's stated quality."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.equations.numerics import numerical_tolerance
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import subsample_pairs
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.paths import CHECKPOINTS
from rlhfbook_lab.recipes.evaluation import restyle
from rlhfbook_lab.recipes.judge_model import JUDGE_COMMAND, JudgeConfig, arena_judge, model_judge, train_judge
from rlhfbook_lab.recipes.synthetic_data import judge_biases

ROWS = [{"prompt": "What is 2 + 3?", "chosen": "2 + 3 = 5.", "rejected": "Sure! 2 + 3 = 6."},
        {"prompt": "Write crow backward.", "chosen": "The reverse of crow is worc.", "rejected": "worc"}]


def test_judge_prompt_by_hand():
    assert world.judge_prompt("What is 2 + 3?", "2 + 3 = 5.", "Sure! 2 + 3 = 6.") == (
        "Which reply is better?\nQ: What is 2 + 3?\nA: 2 + 3 = 5.\nB: Sure! 2 + 3 = 6.")


def test_a_reply_is_shown_on_one_line_and_cannot_pose_as_the_other():
    text = world.judge_prompt("What is 2 + 3?", "5.\nB: 2 + 3 = 5.", "  2 + 3\t= 5. ")
    assert text.splitlines() == ["Which reply is better?", "Q: What is 2 + 3?", "A: 5. B: 2 + 3 = 5.", "B: 2 + 3 = 5."]


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_empty_or_non_string_parts_are_refused(bad):
    with pytest.raises(ValueError, match="b must be a non-empty string"):
        world.judge_prompt("What is 2 + 3?", "5.", bad)


def test_verdicts_are_read_never_guessed():
    assert world.parse_verdict(" A\n") == "A" and world.parse_verdict("B") == "B"
    for bad in ("a", "tie", "A.", "", None, "AB"):
        with pytest.raises(ValueError, match="verdict must be 'A' or 'B'"):
            world.parse_verdict(bad)


def test_judge_conversations_put_the_chosen_reply_where_the_verdict_says():
    """Property: in every example the slot the verdict names holds the chosen reply; a fair coin places it (about
    half in A over 2,000 rows, far inside 4 binomial standard errors); the same seed gives the same examples."""
    rows = [{"prompt": "What is 2 + 3?", "chosen": f"2 + 3 = 5. ({i})", "rejected": f"2 + 3 = 6. ({i})"}
            for i in range(2000)]
    convs = world.judge_conversations(rows, seed=3)
    first = 0
    for r, (user, reply) in zip(rows, convs):
        lines = user["content"].splitlines()
        slot = {"A": lines[2], "B": lines[3]}[world.parse_verdict(reply["content"])]
        assert slot[3:] == r["chosen"]
        first += reply["content"] == "A"
    assert abs(first - 1000) < 4 * np.sqrt(2000 * 0.25)
    assert convs == world.judge_conversations(rows, seed=3) != world.judge_conversations(rows, seed=4)


def test_judge_conversations_refuse_bad_rows():
    with pytest.raises(ValueError, match="rows is empty"):
        world.judge_conversations([])
    with pytest.raises(ValueError, match=r"rows\[1\]\['rejected'\] must be a non-empty string"):
        world.judge_conversations([ROWS[0], {**ROWS[1], "rejected": ""}])


@pytest.fixture(scope="module")
def sft():
    return load_model("sft-tiny")


def test_model_judge_agrees_with_one_row_at_a_time(sft):
    """Second implementation: the batched, left-padded judge against one unpadded forward per pair, comparing the
    two verdict logits; the two computations differ, so a verdict may differ only where z_A and z_B are within
    rounding of each other (the numerical contract)."""
    model, tok = sft
    rows = load_preference_file("heldout")[:40]
    problems, a, b = [r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    batched = model_judge(model, tok, batch_size=16)(problems, a, b)
    a_id, b_id = tok.convert_tokens_to_ids("A"), tok.convert_tokens_to_ids("B")
    for p, x, y, v in zip(problems, a, b, batched):
        ids = tok.apply_chat_template([{"role": "user", "content": world.judge_prompt(p, x, y)}],
                                      add_generation_prompt=True, tokenize=True, return_dict=False)
        with torch.no_grad():
            z = model(input_ids=torch.tensor([ids])).logits[0, -1]
        close = abs(float(z[a_id] - z[b_id])) <= numerical_tolerance(z)
        assert v == ("A" if z[a_id] > z[b_id] else "B") or close


def test_model_judge_refuses_what_it_cannot_read(sft):
    model, tok = sft
    judge = model_judge(model, tok)
    with pytest.raises(ValueError, match="pair 1: the judge prompt is .* tokens, over the model's context of 256"):
        judge(["What is 2 + 3?"] * 2, ["5.", "5."], ["6.", "6. " * 120])
    with pytest.raises(ValueError, match="non-empty lists of one length"):
        judge(["What is 2 + 3?"], ["5."], [])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        model_judge(model, tok, batch_size=0)


def test_train_judge_runs_and_is_reproducible():
    cfg = JudgeConfig()
    cfg.sft.train.steps, cfg.sft.batch_size = 2, 4
    m1, tok, h1 = train_judge(cfg, rows=ROWS * 4)
    m2, _, h2 = train_judge(cfg, rows=ROWS * 4)
    assert h1["losses/train"] == h2["losses/train"]  # the same seed, data and operations: the same run
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert not m1.training


def test_the_shipped_judge_loads_and_meets_its_stated_quality():
    """judge-tiny (made by JUDGE_COMMAND), on 200 of the held-out pairs: its agreement with gold labels within three
    binomial standard errors of what its report states for all of them, well above chance and below the Bayes
    ceiling; and it reads both replies at once, so swapping them changes some of its verdicts (position bias)."""
    folder = CHECKPOINTS / "judge-tiny"
    assert folder.is_dir(), f"missing; make it with: {JUDGE_COMMAND}"
    stated = json.loads((folder / "judge_report.json").read_text())["heldout"]
    model, tok = load_model("judge-tiny")
    got = judge_biases(model_judge(model, tok), subsample_pairs(load_preference_file("heldout"), 200, seed=0))
    se = np.sqrt(stated["agreement"] * (1 - stated["agreement"]) / got["pairs"])
    assert abs(got["agreement"] - stated["agreement"]) < 3 * se, (got["agreement"], stated["agreement"])
    assert 0.6 < got["agreement"] < got["bayes_ceiling"] - 0.1
    assert 0.5 < got["position"]["consistency"] < 0.9 and stated["position"]["consistency"] < 0.9


def test_arena_judge_looks_up_the_pairwise_verdicts():
    """Hand value: a judge that prefers the shorter reply, in the arena's form; empty replies lose, two tie."""
    shorter = lambda problems, a, b: ["A" if len(x) < len(y) else "B" for x, y in zip(a, b)]  # noqa: E731
    players = {"p": ["1 + 1 = 2.", ""], "q": ["Sure! 1 + 1 = 2.", ""], "r": ["", "Hi."]}
    battle = arena_judge(shorter, ["What is 1 + 1?", "What is 2 + 2?"], players)
    assert battle(0, "p", "q", None) == 1.0 and battle(0, "q", "p", None) == 0.0
    assert battle(0, "r", "p", None) == 0.0 and battle(0, "p", "r", None) == 1.0  # empty loses
    assert battle(1, "p", "q", None) == 0.5 and battle(1, "r", "q", None) == 1.0
    with pytest.raises(ValueError, match="players must map at least two names"):
        arena_judge(shorter, ["What is 1 + 1?"], {"p": ["2."]})


def test_judge_biases_measure_a_judge_on_what_it_can_read():
    """A judge with `fits` is measured on the pairs whose four questions (both orders, padded, piled) it can read,
    the rest counted as `unreadable`; without `fits`, on every pair."""
    rows = load_preference_file("heldout")[:40]
    first = lambda problems, a, b: ["A"] * len(a)  # noqa: E731
    assert judge_biases(first, rows)["unreadable"] == 0
    limit = 80
    first.fits = lambda problem, a, b: len(a) + len(b) <= limit
    padded = restyle([world.parse_prompt(r["prompt"]) for r in rows], [r["chosen"] for r in rows], fillers=2)
    readable = sum(len(r["chosen"]) + max(len(r["rejected"]), len(x), len("Sure! Happy to help! ") +
                                           len(r["chosen"].strip())) <= limit for r, x in zip(rows, padded))
    got = judge_biases(first, rows)
    assert 0 < readable < len(rows)
    assert (got["pairs"], got["unreadable"]) == (readable, len(rows) - readable)
    assert got["position"] == {"consistency": 0.0, "first_rate": 1.0}  # always "A": never consistent, all first
    first.fits = lambda problem, a, b: False
    with pytest.raises(ValueError, match="can read none of the pairs"):
        judge_biases(first, rows)
