"""Tests for rlhfbook_lab.recipes.online_dpo: online (iterative) DPO against offline DPO on one budget.

split_budget: hand-computed shares, a second implementation (numpy's array_split), properties (sum, spread ≤ 1).
iterative_dpo: rounds=1 *is* offline DPO (on_policy_pairs then train_dpo, the same operations: torch.equal); round 1
of an online run is offline DPO's first chunk when both sample the same starting policy; the steps add up to the
budget; bad budgets are ValueErrors.
"""

import copy

import numpy as np
import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.lm.forward import make_reference_model
from rlhfbook_lab.lm.preference_data import on_policy_pairs
from rlhfbook_lab.recipes.online_dpo import iterative_dpo, split_budget
from rlhfbook_lab.trainers.dpo import DPOConfig, train_dpo
from rlhfbook_lab.trainers.loop import TrainConfig

GEN = dict(max_new_tokens=6, temperature=1.0)


def config(steps=4, lr=1e-3, warmup=0):
    return DPOConfig(batch_size=4, train=TrainConfig(steps=steps, lr=lr, warmup_steps=warmup, weight_decay=0.0,
                                                     bf16=False, seed=0))


@pytest.fixture(scope="module")
def prompts():
    rng = np.random.default_rng(0)
    return [world.make_problem("addition", (int(a), int(b))) for a, b in rng.integers(1, 50, size=(8, 2))]


def test_split_budget_hand_computed():
    assert split_budget(10, 3) == [4, 3, 3]
    assert split_budget(6, 2) == [3, 3]
    assert split_budget(5, 1) == [5]
    assert split_budget(3, 3) == [1, 1, 1]


@pytest.mark.parametrize("total, rounds", [(t, r) for t in range(1, 30) for r in range(1, 7) if t >= r])
def test_split_budget_agrees_with_array_split_and_adds_up(total, rounds):
    shares = split_budget(total, rounds)
    assert shares == [len(c) for c in np.array_split(np.arange(total), rounds)]
    assert sum(shares) == total and max(shares) - min(shares) <= 1 and min(shares) >= 1


@pytest.mark.parametrize("total, rounds", [(2, 3), (5, 0), (4.0, 2)])
def test_split_budget_rejects_a_budget_it_cannot_share(total, rounds):
    with pytest.raises(ValueError, match="rounds|total"):
        split_budget(total, rounds)


def test_one_round_is_offline_dpo(micro_model, tokenizer, prompts):
    """rounds=1: every pair from the starting policy, then all the steps: exactly on_policy_pairs + train_dpo."""
    cfg = config()
    a, b = copy.deepcopy(micro_model), copy.deepcopy(micro_model)
    ref = make_reference_model(micro_model)
    run = iterative_dpo(a, tokenizer, prompts, cfg, rounds=1, ref_model=ref, seed=3, sample_batch_size=8, **GEN)
    rows = on_policy_pairs(b, tokenizer, prompts, num_samples=2, pairs_per_prompt=1, seed=3, batch_size=8,
                           **GEN).rows
    train_dpo(b, tokenizer, rows, cfg, ref_model=ref, progress=False)
    assert run.pairs == [rows]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_round_one_of_online_is_offline_on_its_chunk(micro_model, tokenizer, prompts):
    """Both runs sample the same starting policy first: online's round-1 pairs are offline's pairs of those prompts
    (the sampler's batches line up: 4 prompts × 2 samples per call)."""
    ref = make_reference_model(micro_model)
    offline = iterative_dpo(copy.deepcopy(micro_model), tokenizer, prompts, config(), rounds=1, ref_model=ref,
                            sample_batch_size=8, **GEN)
    online = iterative_dpo(copy.deepcopy(micro_model), tokenizer, prompts, config(), rounds=2, ref_model=ref,
                           sample_batch_size=8, **GEN)
    first = online.pairs[0]
    assert first and offline.pairs[0][:len(first)] == first
    assert {r["prompt"] for r in first} <= {p.prompt for p in prompts[:4]}


def test_online_rounds_share_the_step_budget_and_sample_the_moving_policy(micro_model, tokenizer, prompts):
    """The steps of the rounds add up to the budget; with lr = 0 the policy never moves, so round r's pairs are
    the starting policy's, and with lr > 0 the weights after the run differ from the start."""
    ref = make_reference_model(micro_model)
    run = iterative_dpo(copy.deepcopy(micro_model), tokenizer, prompts, config(steps=5, warmup=2), rounds=2,
                        ref_model=ref, sample_batch_size=8, **GEN)
    assert [len(h["step"]) for h in run.histories] == [3, 2]
    assert not all(torch.equal(p, q) for p, q in zip(run.model.parameters(), micro_model.parameters()))
    frozen = iterative_dpo(copy.deepcopy(micro_model), tokenizer, prompts, config(lr=0.0), rounds=2, ref_model=ref,
                           sample_batch_size=8, **GEN)
    second = on_policy_pairs(copy.deepcopy(micro_model), tokenizer, prompts[4:], num_samples=2, pairs_per_prompt=1,
                             seed=1, batch_size=8, **GEN).rows
    assert frozen.pairs[1] == second


@pytest.mark.parametrize("n_prompts, steps, rounds, field", [(2, 4, 3, "prompts"), (8, 2, 3, "steps"),
                                                             (8, 4, 0, "rounds")])
def test_iterative_dpo_rejects_a_budget_too_small_for_its_rounds(micro_model, tokenizer, prompts, n_prompts, steps,
                                                                rounds, field):
    with pytest.raises(ValueError, match=field):
        iterative_dpo(copy.deepcopy(micro_model), tokenizer, prompts[:n_prompts], config(steps=steps), rounds=rounds,
                      **GEN)
