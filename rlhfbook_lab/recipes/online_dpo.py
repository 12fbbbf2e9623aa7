"""Online (iterative) DPO against offline DPO on the same budget (book chapter 8, lesson 08).

Offline DPO trains on pairs sampled once, from the starting policy. Online (iterative) DPO splits the same budget into
``rounds``: each round samples fresh pairs from the *current* policy (``preference_data.on_policy_pairs``), has them
labelled (the gold annotator, or any ``world.Annotator``), and trains on them for its share of the steps
(``trainers.dpo.train_dpo``). The reference π_ref stays the starting model throughout (the KL leash of the objective
does not move), and each round starts a fresh optimizer with the round's share of the warmup.

Same budget, by construction: both runs see the same prompts, in the same order, split into contiguous chunks, one
per round (:func:`split_budget`), and the same total number of optimizer steps of the same batch size. Offline is
``rounds=1`` of the same function, so the two differ only in *whose* samples each chunk's pairs are made of. Pairs of
two identical replies are dropped (``label_pairs``), so the kept pair counts may differ a little; both are reported.

:func:`online_vs_offline` runs both from a shipped checkpoint and scores one sampled reply per held-out prompt with the
gold judge (T = 1, the same seed for both models), giving the paired difference and its s.e.
(``evaluation_stats.paired_difference``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int
from rlhfbook_lab.equations.evaluation_stats import paired_difference
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.forward import make_reference_model
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import on_policy_pairs
from rlhfbook_lab.lm.shipped_data import PREF_GENERATION, preference_prompts
from rlhfbook_lab.trainers.dpo import DPOConfig, check_dpo_config, train_dpo

__all__ = ["IterativeDPORun", "iterative_dpo", "online_vs_offline", "split_budget"]


def split_budget(total: int, rounds: int) -> list[int]:
    """``total`` items cut into ``rounds`` shares that differ by at most one, larger shares first.

    .. math::  n_r = \\lfloor T / R \\rfloor + [\\, r < T \\bmod R \\,], \\qquad r = 0, \\dots, R-1, \\qquad
               \\textstyle\\sum_r n_r = T

    (``split_budget(10, 3) == [4, 3, 3]``). Every share is ≥ 1, so ``total >= rounds`` is required.
    """
    check_int("rounds", rounds, minimum=1)
    check_int("total", total, minimum=rounds)
    base, extra = divmod(total, rounds)
    return [base + (r < extra) for r in range(rounds)]


class IterativeDPORun(NamedTuple):
    """What :func:`iterative_dpo` returns."""

    model: object
    """The trained policy (the object passed in, trained in place)."""
    pairs: list[list[dict]]
    """The labelled pairs of each round, as ``on_policy_pairs`` returned them."""
    histories: list[dict]
    """``train_dpo``'s history of each round."""


def iterative_dpo(policy, tokenizer, prompts, cfg: DPOConfig, rounds: int, ref_model=None, num_samples: int = 2,
                  pairs_per_prompt: int | None = 1, annotator: str | world.Annotator = "gold", seed: int = 0,
                  sample_batch_size: int = 64, **generate_kwargs) -> IterativeDPORun:
    """Train ``policy`` in place for ``cfg.train.steps`` DPO steps in ``rounds`` rounds of sample → label → train.

    Round r takes the r-th contiguous chunk of ``prompts`` (:func:`split_budget`), samples ``num_samples`` replies
    per prompt from the policy *as it is now* and labels ``pairs_per_prompt`` pairs of them
    (``on_policy_pairs(..., seed=seed + r)``), then runs ``train_dpo`` for the r-th share of the steps (the warmup
    shared the same way; the optimizer restarts each round). ``rounds=1`` is offline DPO: every pair sampled from
    the starting policy before the first step.

    Args:
        policy: the starting model, trained in place.
        prompts: world prompts (strings or ``world.Problem``), at least ``rounds`` of them.
        cfg: the DPO settings; ``cfg.train.steps`` (≥ ``rounds``) is the whole run's budget of steps.
        ref_model: the frozen reference for every round (default: a copy of ``policy`` taken now).
        num_samples, pairs_per_prompt, annotator, sample_batch_size, generate_kwargs: ``on_policy_pairs``'s
            ``num_samples``, ``pairs_per_prompt``, ``annotator``, ``batch_size`` and sampler settings.
        seed: round r samples and labels with ``seed + r``; ``cfg.train.seed`` orders the training batches.
    """
    check_dpo_config(cfg)
    check_int("rounds", rounds, minimum=1)
    prompts = list(prompts)
    if len(prompts) < rounds:
        raise ValueError(f"prompts has {len(prompts)} prompts; expected at least rounds={rounds} (one chunk a round)")
    if cfg.train.steps < rounds:
        raise ValueError(f"train.steps={cfg.train.steps} is less than rounds={rounds}; each round needs a step")
    ref_model = ref_model if ref_model is not None else make_reference_model(policy)
    chunks, steps = split_budget(len(prompts), rounds), split_budget(cfg.train.steps, rounds)
    warmups = split_budget(cfg.train.warmup_steps + rounds, rounds)  # +1 a round, taken off below: shares may be 0
    all_pairs, histories, start = [], [], 0
    for r in range(rounds):
        chunk = prompts[start:start + chunks[r]]
        start += chunks[r]
        labelled = on_policy_pairs(policy, tokenizer, chunk, num_samples=num_samples,
                                   pairs_per_prompt=pairs_per_prompt, annotator=annotator, seed=seed + r,
                                   batch_size=sample_batch_size, **generate_kwargs)
        round_cfg = dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, steps=steps[r], warmup_steps=warmups[r] - 1))
        histories.append(train_dpo(policy, tokenizer, labelled.rows, round_cfg, ref_model=ref_model,
                                   progress=False))
        all_pairs.append(labelled.rows)
    return IterativeDPORun(policy, all_pairs, histories)


def online_vs_offline(cfg: DPOConfig, rounds: int = 2, num_prompts: int = 256, eval_prompts: int = 200,
                      policy: str = "sft-tiny", num_samples: int = 2, pairs_per_prompt: int | None = 1,
                      annotator: str | world.Annotator = "gold", seed: int = 0) -> dict:
    """Offline DPO (``rounds=1``) and online DPO (``rounds``) from ``policy`` on the same prompts and steps, judged.

    The prompts are ``preference_prompts(num_prompts, "train", seed=seed)`` (the shipped training distribution),
    sampled at ``PREF_GENERATION``'s settings (T = 1). Each model then writes one sampled reply (T = 1, seed 0) to
    each of ``world.heldout_prompts(eval_prompts, seed=0)``, scored by the gold judge.

    Returns:
        ``{"offline": IterativeDPORun, "online": IterativeDPORun, "gold": {"start", "offline", "online"}`` (mean
        gold score of the sampled replies), ``"scores"`` (the per-prompt gold scores of each),
        ``"online_minus_offline"`` (``paired_difference``: ``diff``, ``se``, ``lo``, ``hi``, ``sd``),
        ``"pairs"`` (kept pairs per round, each run)``}``.
    """
    prompts = preference_prompts(num_prompts, "train", seed=seed)
    held = world.heldout_prompts(eval_prompts, seed=0)
    start, tokenizer = load_model(policy)
    ref = make_reference_model(start)  # π_ref of both runs, frozen
    scores = {"start": [s for _, _, s in evaluate_chat(start, tokenizer, held, greedy=False, seed=0).rows]}
    runs = {}
    for name, n_rounds in (("offline", 1), ("online", rounds)):
        model, _ = load_model(policy)
        runs[name] = iterative_dpo(model, tokenizer, prompts, cfg, n_rounds, ref_model=ref,
                                   num_samples=num_samples, pairs_per_prompt=pairs_per_prompt,
                                   annotator=annotator, seed=seed, **PREF_GENERATION)
        scores[name] = [s for _, _, s in evaluate_chat(model, tokenizer, held, greedy=False, seed=0).rows]
    return {**runs, "scores": scores, "gold": {k: sum(v) / len(v) for k, v in scores.items()},
            "online_minus_offline": paired_difference(scores["online"], scores["offline"]),
            "pairs": {name: [len(p) for p in run.pairs] for name, run in runs.items()}}
