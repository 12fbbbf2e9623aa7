"""RL with tools (ch 13): the reward with a price per call, and GRPO over rollouts in which the sampler runs the
calculator (result tokens out of the log-probs and the KL)."""

import json
import math
import random

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.equations.numerics import assert_numerically_equal
from rlhfbook_lab.lm.tools import continuation_loss
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.recipes.tool_use import (
    RL_STUDY_COMMAND,
    TOOLFORMER_STUDY_COMMAND,
    ToolRLConfig,
    grpo_with_tools,
    tool_problems,
    toolformer_conversations,
    toolformer_scores,
    train_tool_caller,
)
from rlhfbook_lab.world import tool_use


def test_count_calls_and_tool_reward_hand_values():
    p = tool_use.make_problem((123, 456))
    one = "[calculator(123+456) -> 579] The answer is 579."
    two = "[calculator(123+4) -> 127] [calculator(123+456) -> 579] The answer is 579."
    assert [tool_use.count_calls(r) for r in (one, two, "579", "[calculator(1+2) ->")] == [1, 2, 0, 0]
    assert tool_use.tool_reward(p, one) == 1.0
    assert tool_use.tool_reward(p, one, 0.1) == pytest.approx(0.9)
    assert tool_use.tool_reward(p, two, 0.1) == pytest.approx(0.8)
    assert tool_use.tool_reward(p, "123 + 456 = 579.", 0.1) == 1.0  # right without a call: the most
    assert tool_use.tool_reward(p, "[calculator(1+2) -> 3] The answer is 3.", 0.1) == pytest.approx(-0.1)


def test_tool_reward_property_and_refusals():
    """Property: the reward falls linearly in the cost, by the number of calls; bad costs are refused."""
    p = tool_use.make_problem((100, 200))
    for reply in ("[calculator(100+200) -> 300] The answer is 300.", "300", "[calculator(1) -> 1] 7"):
        r = [tool_use.tool_reward(p, reply, c) for c in (0.0, 0.25, 0.5)]
        assert r[0] - r[1] == pytest.approx(0.25 * tool_use.count_calls(reply))
        assert r[1] - r[2] == pytest.approx(r[0] - r[1])
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="call_cost"):
            tool_use.tool_reward(p, "300", bad)


def test_config_refuses_bad_fields_and_problem_mix():
    with pytest.raises(ValueError, match="group_size"):
        ToolRLConfig(group_size=1)
    with pytest.raises(ValueError, match="two_digit_share"):
        ToolRLConfig(two_digit_share=1.5)
    with pytest.raises(ValueError, match="call_cost"):
        ToolRLConfig(call_cost=-1)
    probs = tool_problems(400, 0.25, "train", random.Random(0))
    share = sum(p.family == "addition" for p in probs) / len(probs)
    assert 0.18 < share < 0.32 and {p.family for p in probs} == {"addition", "addition3"}
    assert all(tool_use.split_of(p.key) == "train" for p in probs if p.family == "addition3")


@pytest.fixture(scope="module")
def caller():
    """``sft-tiny`` after a very short tool SFT: it writes calls (most of its samples do), not all of them right."""
    model, tokenizer, _ = train_tool_caller(steps=40, batch_size=8, lr=2e-3)
    return model, tokenizer


def test_grpo_with_tools_masks_results_and_trains(caller):
    """One GRPO step over rollouts with tool calls: the first rollout's KL to the reference (a copy of the policy)
    is 0 on the model's tokens (it would not be if tool tokens, whose sampler log-prob is 0, were counted), and
    the step moves the policy."""
    model, tokenizer = caller
    before = [p.detach().clone() for p in model.parameters()]
    cfg = ToolRLConfig(steps=1, prompts_per_step=3, group_size=6, two_digit_share=0.0, max_new_tokens=40,
                       call_cost=0.5)  # replies with and without a call differ in reward: a non-zero advantage
    _, history = grpo_with_tools(model, tokenizer, cfg, eval_problems=0)
    assert history["tool_tokens"][0] > 1 and history["calls"][0] > 0.5  # the rollout did call the tool
    assert abs(history["kl"][0]) < 1e-3, history["kl"]
    assert math.isnan(history["calls_two_digit"][0])  # no two-digit prompt in it
    assert set(history) == {"reward", "correct", "calls", "calls_two_digit", "kl", "tool_tokens"}
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="ToolRLConfig"):
        grpo_with_tools(model, tokenizer, {"steps": 1})


def test_shipped_rl_study_loads_and_says_what_lesson_13_states():
    """``data/tool_use/rl_study.json`` (``RL_STUDY_COMMAND``): two costs, the fields the lesson reads, and its
    stated outcome (a price of 0.1 removes the needless calls on two-digit sums)."""
    study = json.loads((DATA_DIR / "tool_use" / "rl_study.json").read_text())
    assert study["command"] == RL_STUDY_COMMAND
    free, priced = study["runs"]
    assert (free["call_cost"], priced["call_cost"]) == (0.0, 0.1)
    for run in (free, priced):
        assert len(run["history"]["kl"]) == run["config"]["steps"]
        assert 0 <= run["addition3_accuracy_after"] <= 1 and 0 <= run["two_digit_calls_after"] <= 1
    assert priced["two_digit_calls_after"] < 0.2 < free["two_digit_calls_after"]


def test_toolformer_conversations_keep_calls_by_the_filter():
    """Hand values: L⁻ − L⁺ = 1.0 and 0.2 for the two problems; τ = 0.5 keeps the first call only, −inf both."""
    probs = [tool_use.make_problem((123, 456)), tool_use.make_problem((12, 30))]
    losses = torch.tensor([[0.5, 1.5, 2.0], [1.0, 1.2, 3.0]])  # L⁺, L(no call), L(call, no result)
    conv, keep = toolformer_conversations(probs, losses, 0.5)
    assert keep.tolist() == [True, False]
    assert conv[0]["messages"][1]["content"] == "[calculator(123+456) -> 579] The answer is 579."
    assert conv[1]["messages"][1]["content"] == "12 + 30 = 42."  # the judge's own format, no call
    assert conv[0]["messages"][0]["content"] == probs[0].prompt
    assert toolformer_conversations(probs, losses, float("-inf"))[1].all()
    assert not toolformer_conversations(probs, losses, float("inf"))[1].any()
    with pytest.raises(ValueError, match="shape"):
        toolformer_conversations(probs, losses[:1], 0.5)


def test_toolformer_scores_are_the_losses_of_the_answer(micro_model, tokenizer):
    """Second implementation: each column is `continuation_loss` of the answer `s.` after its own prefix."""
    probs = [tool_use.make_problem((123, 456)), world.make_problem("addition", (12, 30))]
    L = toolformer_scores(micro_model, tokenizer, probs)
    assert L.shape == (2, 3) and torch.isfinite(L).all() and (L > 0).all()
    p = probs[1]
    again = [continuation_loss(micro_model, tokenizer, p.prompt, prefix, "42.") for prefix in
             ("[calculator(12+30) -> 42] The answer is ", "12 + 30 = ", "[calculator(12+30) ->] The answer is ")]
    assert_numerically_equal(L[1], torch.tensor(again))
    with pytest.raises(ValueError, match="empty"):
        toolformer_scores(micro_model, tokenizer, [])


def test_shipped_toolformer_study_holds_what_lesson_13_asserts():
    study = json.loads((DATA_DIR / "tool_use" / "toolformer_study.json").read_text())
    assert study["command"] == TOOLFORMER_STUDY_COMMAND
    arms = study["arms"]
    assert list(arms) == ["every call", f"filtered (τ = {study['tau']})", "no call"]
    every, filtered, none = arms.values()
    assert every["train_calls"] == 1 and none["train_calls"] == 0 < filtered["train_calls"] < 1
    assert filtered["addition_calls"] <= 0.05 and every["addition_calls"] >= 0.95
    assert every["addition3_accuracy"] > filtered["addition3_accuracy"] + 0.3
    assert filtered["addition3_accuracy"] > none["addition3_accuracy"]
    kept = study["kept"]  # monotone in τ, and more three-digit calls kept than two-digit ones
    taus = sorted(kept, key=float)
    for family in ("addition3", "addition"):
        assert all(kept[a][family] >= kept[b][family] for a, b in zip(taus, taus[1:]))
    assert all(kept[t]["addition3"] > kept[t]["addition"] for t in taus)


