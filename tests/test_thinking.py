"""Thinking before answering, in miniature (``world/thinking.py``, ``recipes/thinking.py``): the ``sum3`` family's
problems, split, forms, checker and gold judge; the prefix that forces a form; the recipe's measurement and GRPO
loop on a tiny random model; the shipped study (``data/reasoning/thinking.json``) and what lesson 07 asserts of it."""

import math
import random

import pytest
from _models import tiny_llama

from rlhfbook_lab.lm.generation import encode_prompts
from rlhfbook_lab.recipes.thinking import (
    SHIPPED_STUDY,
    STUDY_COMMAND,
    Sum3RLConfig,
    form_accuracy,
    grpo_sum3,
    load_thinking_study,
    prefilled_prompt,
)
from rlhfbook_lab.world import gold_score, tasks, thinking

P = thinking.make_problem((17, 25, 38))


def test_hand_values():
    assert P.prompt == "What is 17 + 25 + 38?"
    assert P.reference == thinking.step_reply(P) == "17 + 25 = 42. 42 + 38 = 80."
    assert thinking.direct_reply(P) == "17 + 25 + 38 = 80."
    assert thinking.reply_form(P.reference) == "step" and thinking.reply_form(thinking.direct_reply(P)) == "direct"
    assert thinking.reply_form("80.") == "other" and thinking.reply_form("Sure! 17 + 25 + 38 = 80.") == "other"
    assert thinking.step_is_right(P, P.reference) is True
    assert thinking.step_is_right(P, "17 + 25 = 41. 41 + 38 = 80.") is False  # a wrong step, a right answer
    assert thinking.step_is_right(P, "17 + 25 = 42. 40 + 38 = 78.") is False  # the second line forgot the step
    assert thinking.step_is_right(P, thinking.direct_reply(P)) is None
    assert thinking.forced_prefix(P, "step") == "17 + 25 =" and thinking.forced_prefix(P, "direct") == "17 + 25 +"
    assert thinking.final_answer("17 + 25 = 42. 42 + 38 = 80.") == 80 and thinking.final_answer("none") is None


def test_the_reward_reads_the_final_answer_only():
    assert thinking.verifier_reward(P, "17 + 25 = 41. 41 + 38 = 80.") == 1.0  # wrong step, right answer: paid
    assert thinking.verifier_reward(P, "17 + 25 = 42. 42 + 38 = 81.") == 0.0  # right step, wrong answer: not
    assert thinking.verifier_reward(P, thinking.direct_reply(P)) == thinking.verifier_reward(P, P.reference) == 1.0
    assert thinking.verifier_reward(P, "") == 0.0


def test_gold_judge_accepts_both_forms_and_agrees_with_the_checker():
    rng = random.Random(0)
    # the judge's repetition feature counts a repeated word 3-gram even of numbers: "0 + 0 = 0. 0 + 23 = 23."
    # repeats (0, 0, 0), so that step reply scores 1.0 − 0.1 (documented in world.thinking)
    zeros = thinking.make_problem((0, 0, 23))
    assert gold_score(zeros, thinking.step_reply(zeros)) == pytest.approx(0.9)
    for p in thinking.sample_problems(30, "heldout", seed=1):
        a, b, c = p.key
        if len({(a, b, a + b), (b, a + b, a + b), (a + b, a + b, c), (a + b, c, a + b + c)}) == 4:
            assert gold_score(p, thinking.step_reply(p)) == 1.0
        assert gold_score(p, thinking.direct_reply(p)) == 1.0
        assert gold_score(p, "Sure! " + thinking.direct_reply(p)) == pytest.approx(1.2)
        wrong = thinking.direct_reply(p).replace(f"= {sum(p.key)}.", f"= {sum(p.key) + rng.randint(1, 9)}.")
        assert gold_score(p, wrong) < 0.3
        for reply in (thinking.step_reply(p), wrong, "no number", f"{rng.randint(0, 150)}"):
            # tasks.is_correct (the judge's checker) and thinking.is_correct are two implementations
            assert tasks.is_correct(p, reply) == thinking.is_correct(p, reply)


def test_every_form_starts_with_its_prefix_and_not_the_others():
    for p in thinking.sample_problems(50, "train", seed=2):
        for form, reply in (("step", thinking.step_reply(p)), ("direct", thinking.direct_reply(p))):
            assert thinking.reply_form(reply) == form and thinking.is_correct(p, reply)
            assert reply.startswith(thinking.forced_prefix(p, form))
            other = "direct" if form == "step" else "step"
            assert not reply.startswith(thinking.forced_prefix(p, other))
        a, b, c = p.key
        assert a + b <= tasks.ADD_MAX and c <= tasks.ADD_MAX  # each step is a sum of the addition family


def test_split_is_stable_disjoint_and_about_a_fifth():
    keys = [(a, s - a, c) for s in range(0, 50, 3) for a in range(0, s + 1, 2) for c in range(0, 50, 5)]
    held = [k for k in keys if thinking.split_of(k) == "heldout"]
    assert 0.12 < len(held) / len(keys) < 0.28
    assert thinking.split_of((17, 25, 38)) == thinking.split_of((25, 17, 38))  # reorderings share a split
    train = {p.key for p in thinking.sample_problems(200, "train", seed=0)}
    heldout = {p.key for p in thinking.sample_problems(200, "heldout", seed=0)}
    assert not train & heldout
    assert thinking.sample_problems(5, "train", seed=3) == thinking.sample_problems(5, "train", seed=3)


def test_prompts_parse_back():
    for t in range(3):
        p = thinking.make_problem((3, 4, 40), template=t)
        assert thinking.parse_prompt(p.prompt) == p
    for bad in ("What is 1 + 2?", "What is 30 + 30 + 1?", 7):
        with pytest.raises(ValueError):
            thinking.parse_prompt(bad)


@pytest.mark.parametrize("key", [(30, 20, 1), (1, 2, 50), (-1, 2, 3), (1, 2), (1, 2, True), [1, 2, 3]])
def test_bad_keys_are_refused(key):
    with pytest.raises(ValueError, match="key"):
        thinking.make_problem(key)


def test_instruction_data_mixes_the_forms():
    def share(s):
        data = thinking.instruction_data(400, step_share=s, seed=0)
        return sum(thinking.reply_form(d["messages"][1]["content"]) == "step" for d in data) / len(data)
    assert share(0.0) == 0.0 and share(1.0) == 1.0 and 0.42 < share(0.5) < 0.58
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ValueError, match="step_share"):
            thinking.instruction_data(3, step_share=bad)
    with pytest.raises(ValueError, match="form"):
        thinking.forced_prefix(P, "think")


def testprefilled_prompt_prompt_is_the_chat_prompt_plus_the_prefix(tokenizer):
    text = prefilled_prompt(tokenizer, P, "17 + 25 =")
    ids = [tokenizer.bos_token_id] + tokenizer.encode(text, add_special_tokens=False)
    chat = encode_prompts(tokenizer, [P.prompt])[0]
    assert ids[:len(chat)] == chat and tokenizer.decode(ids[len(chat):]) == "17 + 25 ="


def test_form_accuracy_and_grpo_on_a_tiny_model(tokenizer):
    model = tiny_llama(tokenizer, seed=0)
    problems = thinking.sample_problems(4, "heldout", seed=0)
    acc = form_accuracy(model, tokenizer, problems, samples=2, max_new_tokens=4)
    for k in ("forced_step", "forced_direct", "greedy", "greedy_step_share", "sampled", "step_share", "other_share"):
        assert 0.0 <= acc[k] <= 1.0
    assert acc["n"] == 4 and acc["other_share"] == 1.0 and math.isnan(acc["sampled_step"])  # 4 tokens: no full form
    _, h = grpo_sum3(model, tokenizer, Sum3RLConfig(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=4))
    assert {len(v) for v in h.values()} == {2} and all(0 <= x <= 1 for x in h["step_share"] + h["reward"])
    with pytest.raises(ValueError, match="group_size"):
        Sum3RLConfig(group_size=1)
    with pytest.raises(ValueError, match="cfg"):
        grpo_sum3(model, tokenizer, {"steps": 1})
    with pytest.raises(ValueError, match="problems"):
        form_accuracy(model, tokenizer, [])


def test_the_shipped_study_loads_and_holds_what_lesson_07_asserts():
    assert SHIPPED_STUDY.stat().st_size < 20_000
    study = load_thinking_study()
    assert study["command"] == STUDY_COMMAND and study["rl"] == {**Sum3RLConfig().__dict__}
    assert {len(v) for v in study["history"].values()} == {study["rl"]["steps"]}
    b, a = study["before"], study["after"]
    assert b["n"] == a["n"] == study["eval_problems"] == 200
    assert b["forced_step"] > b["forced_direct"] + 0.5  # writing the step helps
    assert 0.3 < b["step_share"] < 0.7 and a["step_share"] > 0.9  # RL on the answer alone grew it
    assert a["greedy"] > b["greedy"] + 0.3 and a["forced_direct"] < b["forced_direct"] + 0.05
