"""Contamination (RLHF Book, ch. 16): leak the benchmark into training on purpose, see the inflated score, catch
the leak by n-gram overlap; and RL with a *random* reward, the smoke test for contamination.

1. **The leak** (:func:`run_contamination`). A benchmark is ``eval_prompts`` held-out problems. Two short SFT
   runs from ``sft-tiny``, same seed, steps and size: the *contaminated* one trains on the benchmark's own
   prompts with their reference replies; the *clean* control on as many training-split problems of the same
   families. Both are scored greedily on the benchmark and on ``fresh_prompts`` other held-out problems that
   neither saw (different keys, not only different words). The benchmark score of the contaminated model is
   inflated; on the fresh set it is no better than the control: the gain was memory, not skill.
2. **The detector**: ``evaluation.ngram_overlap`` between each run's training texts (prompt + reply) and the
   benchmark's: the contaminated data flags every item, the clean data none.
3. **The smoke test** (:func:`random_reward_rl`). Shao et al. (2025, "Spurious rewards") found that RL with a
   *random* reward raised Qwen2.5-Math's benchmark scores, a gain that points at what pretraining had already seen
   (and at the clipping's bias toward the model's habits); on models without that history it did nothing. So a
   gain under a random reward is a warning sign. Here nothing is contaminated: GRPO from ``sft-tiny`` with
   scores drawn from U(0, 1) should not raise held-out gold beyond noise (the paired bootstrap interval).

Measured once (one thread, ``run_contamination(contamination_config())`` 43 CPU s, ``random_reward_rl`` 30 CPU s):
benchmark gold start 0.68, clean 0.69, contaminated 0.98: inflation +0.30 [+0.21, +0.38] (paired 95 % interval);
on the fresh set +0.07 [+0.01, +0.13] (training on held-out-split keys teaches a little about their neighbours);
8-gram overlap 1.0 (leak) vs 0.0 (clean, and the shipped SFT data). GRPO with the random reward: gold 0.68 → 0.45,
−0.23 [−0.32, −0.13], KL 3.3 nats: the random walk only costs. Fast mode (lesson 16): see the lesson's printout.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.evaluation_stats import paired_difference
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.shipped_data import load_instruction_file
from rlhfbook_lab.recipes.evaluation import ngram_overlap
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.rl import RLConfig, train_rl
from rlhfbook_lab.trainers.sft import SFTConfig, sft

__all__ = ["RECIPES", "ContaminationConfig", "ContaminationResult", "benchmark_split", "contamination_config",
           "random_reward", "random_reward_rl", "run_contamination"]


@dataclass
class ContaminationConfig:
    """What :func:`run_contamination` and :func:`random_reward_rl` train and measure."""

    policy: str = "sft-tiny"
    """The model every run starts from."""
    eval_prompts: int = 128
    """The benchmark: this many held-out problems (:func:`benchmark_split`)."""
    fresh_prompts: int = 128
    """Other held-out problems, with keys the benchmark does not hold, that no run trains on."""
    steps: int = 60
    """SFT optimiser steps of the contaminated and the clean run (each)."""
    batch_size: int = 16
    """Conversations per SFT step."""
    lr: float = 1e-4
    """SFT's peak learning rate (at 5e-4 the clean run lost 0.17 gold: too much for a clean control)."""
    ngram: int = 8
    """n of the n-gram overlap detector (``evaluation.ngram_overlap``)."""
    rl_steps: int = 8
    """Rollouts of the random-reward GRPO run."""
    rl_prompts_per_step: int = 16
    """Training prompts per rollout of the random-reward run."""
    rl_group_size: int = 8
    """Samples per prompt of the random-reward run."""
    rl_lr: float = 3e-4
    """The random-reward run's lr (``RLConfig.fast``'s: large enough to move the model in a few rollouts)."""
    seed: int = 0
    """Seeds the clean problems, both SFT runs, the random rewards and the RL run."""


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"eval_prompts": 32, "fresh_prompts": 32, "steps": 16, "batch_size": 8, "lr": 3e-4, "rl_steps": 3,
             "rl_prompts_per_step": 8, "rl_group_size": 4},
}
"""``full``: :class:`ContaminationConfig`'s defaults; ``fast``: the lessons' fast mode."""


def contamination_config(fast: bool = False, **overrides) -> ContaminationConfig:
    """:data:`RECIPES` ``["fast" if fast else "full"]`` then ``overrides`` (any field by name)."""
    cfg = build(ContaminationConfig, RECIPES, "fast" if fast else "full", **overrides)
    for name in ("eval_prompts", "fresh_prompts", "steps", "batch_size", "ngram", "rl_steps", "rl_prompts_per_step"):
        check_int(name, getattr(cfg, name), minimum=1)
    check_int("rl_group_size", cfg.rl_group_size, minimum=2)
    check_number("lr", cfg.lr, minimum=0, strict=True)
    check_number("rl_lr", cfg.rl_lr, minimum=0, strict=True)
    return cfg


def benchmark_split(n_bench: int, n_fresh: int, seed: int = 0) -> tuple[list[world.Problem], list[world.Problem]]:
    """A benchmark of ``n_bench`` held-out problems (``world.heldout_prompts(n_bench, seed)``, the usual eval set)
    and ``n_fresh`` further held-out problems whose (family, key) the benchmark does not hold, families in turn
    (a family whose few held-out keys the benchmark already holds, like ``review``'s 7, drops out)."""
    bench = world.heldout_prompts(n_bench, seed=seed)
    seen = {(p.family, p.key) for p in bench}
    rng = random.Random(f"fresh-prompts-{seed}")
    fresh: list[world.Problem] = []
    families = list(world.FAMILIES)  # a family whose held-out keys run out (review has 7) drops out
    while len(fresh) < n_fresh:
        if not families:
            raise ValueError(f"the held-out split has too few distinct problems for {n_bench} + {n_fresh}")
        family = families[len(fresh) % len(families)]
        for _ in range(200):
            p = world.sample_problem(family, rng, "heldout")
            if (p.family, p.key) not in seen:
                seen.add((p.family, p.key))
                fresh.append(p)
                break
        else:
            families.remove(family)
    return bench, fresh


def _conversations(problems) -> list[list[dict]]:
    return [[{"role": "user", "content": p.prompt}, {"role": "assistant", "content": world.render_response(p)}]
            for p in problems]


def _gold(model, tokenizer, problems) -> np.ndarray:
    return np.array([s for _, _, s in evaluate_chat(model, tokenizer, problems).rows])


class ContaminationResult(NamedTuple):
    """What :func:`run_contamination` returns."""

    table: list[dict]
    """One row per model (``start``, ``clean``, ``contaminated``): ``gold[benchmark]``, ``gold[fresh]``,
    ``correct[benchmark]``, ``correct[fresh]`` (greedy), ``overlap`` (share of benchmark items its training data
    flags; ``start``: the shipped SFT data's)."""
    inflation: dict
    """Paired gold difference contaminated − clean (``evaluation_stats.paired_difference``) on the benchmark and
    on the fresh set: ``{"benchmark": {...}, "fresh": {...}}``."""
    cpu_seconds: float
    """CPU seconds of the whole recipe (one process)."""


def run_contamination(cfg: ContaminationConfig | None = None, progress: bool = False) -> ContaminationResult:
    """Contaminated vs clean SFT from ``cfg.policy``, scored on the benchmark and a fresh held-out set, and the
    n-gram detector on each run's training data (module docstring)."""
    t0 = time.process_time()
    cfg = cfg or contamination_config()
    bench, fresh = benchmark_split(cfg.eval_prompts, cfg.fresh_prompts)
    rng = random.Random(f"clean-problems-{cfg.seed}")
    clean = [world.sample_problem(p.family, rng, "train") for p in bench]  # same families, same size
    bench_texts = [f"{p.prompt} {p.reference}" for p in bench]
    data = {"clean": _conversations(clean), "contaminated": _conversations(bench)}
    start, tokenizer = load_model(cfg.policy)
    models = {"start": start}
    for name, convs in data.items():
        model, _ = load_model(cfg.policy)
        scfg = SFTConfig(train=TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=min(5, cfg.steps // 5),
                                           seed=cfg.seed, bf16=False), batch_size=cfg.batch_size)
        sft(model, tokenizer, convs, scfg, progress=progress)
        models[name] = model
    shipped = [f"{r['prompt']} {r['messages'][-1]['content']}" for r in load_instruction_file("train")]
    table, gold = [], {}
    for name, model in models.items():
        gold[name] = {"benchmark": _gold(model, tokenizer, bench), "fresh": _gold(model, tokenizer, fresh)}
        train_texts = shipped if name == "start" else [f"{c[0]['content']} {c[1]['content']}" for c in data[name]]
        table.append({"model": name, "gold[benchmark]": float(gold[name]["benchmark"].mean()),
                      "gold[fresh]": float(gold[name]["fresh"].mean()),
                      "overlap": ngram_overlap(train_texts, bench_texts, cfg.ngram)["share"]})
    inflation = {split: paired_difference(gold["contaminated"][split], gold["clean"][split], seed=cfg.seed)
                 for split in ("benchmark", "fresh")}
    return ContaminationResult(table, inflation, time.process_time() - t0)


def random_reward(seed: int = 0):
    """A reward function ``(prompts, replies) -> (B,)`` of i.i.d. U(0, 1) scores from its own seeded generator:
    no information about the replies at all."""
    gen = torch.Generator().manual_seed(seed)

    def reward(prompts, replies) -> torch.Tensor:
        return torch.rand(len(replies), generator=gen)

    return reward


def random_reward_rl(cfg: ContaminationConfig | None = None, progress: bool = False) -> dict:
    """GRPO from ``cfg.policy`` with :func:`random_reward`, scored greedily on the benchmark before and after.

    Returns ``{"before", "after"}`` (mean gold), ``"diff"`` (``paired_difference`` after − before: its ``lo`` /
    ``hi`` are the noise band), ``"kl"`` (the last rollout's KL to the start, nats per sequence) and
    ``"cpu_seconds"``."""
    t0 = time.process_time()
    cfg = cfg or contamination_config()
    bench, _ = benchmark_split(cfg.eval_prompts, 0)
    policy, tokenizer = load_model(cfg.policy)
    before = _gold(policy, tokenizer, bench)
    rcfg = RLConfig.fast("grpo", eval_prompts=0, prompts_per_step=cfg.rl_prompts_per_step,
                         group_size=cfg.rl_group_size, **{"train.steps": cfg.rl_steps, "train.lr": cfg.rl_lr,
                                                          "train.seed": cfg.seed})
    torch.manual_seed(cfg.seed)
    _, history = train_rl(policy, tokenizer, rcfg, reward_fn=random_reward(cfg.seed), progress=progress)
    after = _gold(policy, tokenizer, bench)
    return {"before": float(before.mean()), "after": float(after.mean()),
            "diff": paired_difference(after, before, seed=cfg.seed), "kl": float(history["kl/seq"][-1]),
            "cpu_seconds": time.process_time() - t0}
