"""Tests for recipes/contamination: the benchmark/fresh split, the random reward, the config, and a tiny seeded
leak whose inflated score and n-gram flags must show."""

from __future__ import annotations

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.recipes.contamination import (
    RECIPES,
    benchmark_split,
    contamination_config,
    random_reward,
    run_contamination,
)


def test_benchmark_split_is_the_eval_set_plus_unseen_keys():
    bench, fresh = benchmark_split(40, 40)
    assert [p.prompt for p in bench] == [p.prompt for p in world.heldout_prompts(40, seed=0)]
    assert len(fresh) == 40
    keys = {(p.family, p.key) for p in bench}
    assert not keys & {(p.family, p.key) for p in fresh}
    assert len({(p.family, p.key) for p in fresh}) == 40
    assert all(world.split_of(p.family, p.key) == "heldout" for p in fresh)
    assert [p.prompt for p in benchmark_split(40, 40)[1]] == [p.prompt for p in fresh]  # deterministic
    big, more = benchmark_split(200, 40)  # the benchmark holds all 7 held-out review keys: review drops out
    assert {p.family for p in big} == set(world.FAMILIES) and "review" not in {p.family for p in more}


def test_random_reward_is_uniform_seeded_and_blind():
    a, b = random_reward(3), random_reward(3)
    x = a(["p"] * 1000, ["r"] * 1000)
    assert x.shape == (1000,) and 0 <= x.min() and x.max() < 1 and abs(x.mean().item() - 0.5) < 0.05
    assert torch.equal(x, b(["q"] * 1000, ["something else"] * 1000))  # the same draws whatever the replies
    assert not torch.equal(random_reward(4)(["p"] * 10, ["r"] * 10), random_reward(3)(["p"] * 10, ["r"] * 10))


def test_config():
    assert contamination_config(fast=True).steps == RECIPES["fast"]["steps"]
    assert contamination_config(steps=5).steps == 5
    for bad in ({"steps": 0}, {"rl_group_size": 1}, {"lr": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            contamination_config(**bad)


def test_a_planted_leak_inflates_the_benchmark_and_is_flagged():
    cfg = contamination_config(eval_prompts=16, fresh_prompts=16, steps=12, batch_size=8, lr=5e-4)
    result = run_contamination(cfg)
    rows = {r["model"]: r for r in result.table}
    assert rows["contaminated"]["overlap"] == 1.0 and rows["clean"]["overlap"] == 0.0 == rows["start"]["overlap"]
    assert rows["contaminated"]["gold[benchmark]"] > rows["clean"]["gold[benchmark]"] + 0.1, rows
    assert result.inflation["benchmark"]["diff"] > result.inflation["fresh"]["diff"], result.inflation
