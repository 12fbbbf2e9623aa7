"""Change the model spec, and watch behaviour follow (RLHF Book, ch. 17).

The world's spec (``world.spec``, ``data/spec/*.json``) is what its annotators prefer. Change one row of it, and
every label drawn from then on changes with it; train on those labels, and the model's behaviour changes too.
This recipe makes that causal chain measurable, with a control that differs in nothing but the spec:

1. **Relabel** the shipped on-policy pairs (``sft-tiny``'s own samples, ``data/preferences/train.jsonl``) twice
   with the same random draws: once by the baseline spec's gold annotator, once by the changed spec's
   (:func:`relabel_pairs`). Only pairs whose two replies differ in the changed feature can change their label.
2. **Train** DPO from ``sft-tiny`` on each labelling, same seed, same pairs, same steps
   (``trainers.dpo.train_dpo``).
3. **Measure** the three models (start, baseline-trained, changed-trained) on the same held-out prompts, one
   sampled reply each at temperature 1 (:func:`behaviour_table`): how often each taste feature fires, and the gold
   score under both specs. Sampling, not greedy decoding: ``sft-tiny`` opens about a third of its sampled replies
   with a polite phrase but none of its greedy ones, so only the policy's distribution can show a move both ways.

The shipped changed spec, ``no_openers`` (``polite_opener`` +0.20 → −0.20: the world turns against polite
openers), should push the opener rate *down* while the baseline labels push it *up*. Measured once (one thread,
``run_spec_change(spec_change_config())``, 178 CPU s): sampled opener rate 0.35 (``sft-tiny``) → 0.80 under the
default spec's labels and → 0.00 under ``no_openers``; correctness 0.60 → 0.47 and 0.50 (both runs also learn to stop
and stop rambling). Fast mode (``fast=True``, 37 CPU s): 0.31 → 0.77 and → 0.11.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import NamedTuple

import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int
from rlhfbook_lab.config import build
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import PreferencePairs, label_pairs, subsample_pairs
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.trainers.dpo import dpo_config, train_dpo

__all__ = ["RECIPES", "SpecChangeConfig", "SpecChangeResult", "behaviour_table", "relabel_pairs", "run_spec_change",
           "spec_change_config"]

BEHAVIOURS = ("polite_opener", "polite_excess", "extra_words", "unclean_end", "repetition", "correct")


@dataclass
class SpecChangeConfig:
    """What :func:`run_spec_change` relabels, trains and measures."""

    spec: str = "no_openers"
    """The changed spec: a shipped name (``world.spec_names()``) or a path to a spec JSON file."""
    baseline: str = "default"
    """The control's spec (the world as built)."""
    policy: str = "sft-tiny"
    """The model both runs start from (and their DPO reference)."""
    num_pairs: int = 2048
    """How many of the shipped on-policy pairs to relabel and train on (a seeded subset)."""
    steps: int = 60
    """DPO optimiser steps of each run."""
    batch_size: int = 16
    """Pairs per DPO step."""
    lr: float = 1e-4
    """DPO's peak learning rate."""
    beta: float = 0.1
    """DPO's β."""
    eval_prompts: int = 256
    """Held-out prompts (``world.heldout_prompts(n, seed=0)``), one sampled reply each per model."""
    seed: int = 0
    """Seeds the pair subset, the label draws, DPO's visiting order and the evaluation's sampler."""


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"num_pairs": 512, "steps": 24, "batch_size": 8, "eval_prompts": 128},
}
"""``full``: :class:`SpecChangeConfig`'s defaults; ``fast``: the lessons' fast mode (24 steps of 8 pairs)."""


def spec_change_config(fast: bool = False, **overrides) -> SpecChangeConfig:
    """:data:`RECIPES` ``["fast" if fast else "full"]`` then ``overrides`` (any field by name)."""
    cfg = build(SpecChangeConfig, RECIPES, "fast" if fast else "full", **overrides)
    for name in ("num_pairs", "steps", "batch_size", "eval_prompts"):
        check_int(name, getattr(cfg, name))
    return cfg


def relabel_pairs(rows: list[dict], spec: world.Spec | str, seed: int = 0) -> PreferencePairs:
    """Draw a fresh label for every pair by the gold annotator of ``spec`` (``world.spec_annotators``).

    Each pair's two replies become a candidate ``(prompt, chosen, rejected)`` in their old order and are labelled
    with the random stream ``random.Random(f"relabel-{seed}")``: two specs relabelled with one seed use the same
    draws, so a pair's label differs between them only where the specs' probabilities straddle its draw. Rows keep
    their other fields (``family``, ...) and record ``relabelled_by`` (the spec's name).
    """
    spec = world.load_spec(spec)
    judge = world.spec_annotators(spec)["gold"]
    keep = ("prompt", "chosen", "rejected", "label_source", "p_chosen", "label", "chosen_source", "rejected_source")
    candidates = [(r["prompt"], r["chosen"], r["rejected"],
                   {**{k: v for k, v in r.items() if k not in keep}, "relabelled_by": spec.name}) for r in rows]
    return label_pairs(candidates, judge, random.Random(f"relabel-{seed}"))


def behaviour_table(models: dict, tokenizer, problems, specs=("default",), seed: int = 0) -> list[dict]:
    """One row per model: how often each taste feature fires on its replies, and its gold score under each spec.

    Args:
        models: ``{label: model}``, every model sharing ``tokenizer``.
        problems: world problems; one reply each, sampled at temperature 1 with ``seed`` (``evaluate_chat``).
        specs: specs (names, paths or ``world.Spec``) to score the replies by; a column ``gold[<name>]`` each.

    Returns:
        ``[{"model", "n", "eos", <feature means over non-empty replies>..., "gold[<spec>]"...}]``. The feature
        columns are :data:`BEHAVIOURS`: ``polite_opener`` is the share of replies that open with a polite phrase,
        ``polite_excess`` / ``extra_words`` / ``repetition`` the mean counts, ``correct`` the share right.
    """
    specs = [world.load_spec(s) for s in specs]
    table = []
    for label, model in models.items():
        ev = evaluate_chat(model, tokenizer, problems, greedy=False, seed=seed)
        replies = [(p, y) for p, y, _ in ev.rows if y.strip()]
        feats = [world.taste_features(p, y) for p, y in replies]
        row = {"model": label, "n": len(ev.rows), "eos": ev.overall["eos_rate"]}
        row.update({f: sum(x[f] for x in feats) / max(1, len(feats)) for f in BEHAVIOURS})
        for spec in specs:
            row[f"gold[{spec.name}]"] = sum(world.gold_score(p, y, spec=spec, allow_empty=True)
                                            for p, y, _ in ev.rows) / len(ev.rows)
        table.append(row)
    return table


class SpecChangeResult(NamedTuple):
    """What :func:`run_spec_change` returns."""

    table: list[dict]
    """:func:`behaviour_table` rows for ``start`` (the policy), ``dpo[<baseline>]`` and ``dpo[<spec>]``."""
    relabelled: dict
    """``pairs`` (trained on), ``flipped`` (pairs whose chosen side differs between the two labellings),
    ``opener_pairs`` (pairs whose two sides differ in ``polite_opener``), ``opener_chosen[<spec>]`` (the share
    of those where the reply with the opener is chosen)."""
    models: dict
    """``{label: model}`` of the table's rows (the trained models, for further probing)."""
    cpu_seconds: float
    """CPU seconds of the whole recipe (one process)."""


def run_spec_change(cfg: SpecChangeConfig | None = None, progress: bool = False) -> SpecChangeResult:
    """Relabel → train → measure under the baseline and the changed spec (module docstring)."""
    t0 = time.process_time()
    cfg = cfg or spec_change_config()
    base_spec, new_spec = world.load_spec(cfg.baseline), world.load_spec(cfg.spec)
    if base_spec.name == new_spec.name:
        raise ValueError(f"spec and baseline are the same spec ({new_spec.name!r}); change a row first")
    rows = load_preference_file("train", origin="on_policy")
    rows = subsample_pairs(rows, min(cfg.num_pairs, len(rows)), seed=cfg.seed)
    labelled = {s.name: relabel_pairs(rows, s, seed=cfg.seed).rows for s in (base_spec, new_spec)}
    a, b = labelled[base_spec.name], labelled[new_spec.name]
    opener = [tuple(x.startswith(world.judge.POLITE_OPENERS) for x in (r["chosen"], r["rejected"])) for r in a]
    relabelled = {"pairs": len(a), "flipped": sum(x["chosen"] != y["chosen"] for x, y in zip(a, b)),
                  "opener_pairs": sum(c != r for c, r in opener)}
    for name, pairs in labelled.items():
        split = [r for r in pairs if r["chosen"].startswith(world.judge.POLITE_OPENERS)
                 != r["rejected"].startswith(world.judge.POLITE_OPENERS)]
        relabelled[f"opener_chosen[{name}]"] = (sum(r["chosen"].startswith(world.judge.POLITE_OPENERS)
                                                    for r in split) / max(1, len(split)))
    start, tokenizer = load_model(cfg.policy)
    models = {"start": start}
    dcfg = dpo_config(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, beta=cfg.beta, seed=cfg.seed,
                      warmup_steps=min(10, cfg.steps // 5))
    for name, pairs in labelled.items():
        policy, _ = load_model(cfg.policy)
        torch.manual_seed(cfg.seed)
        train_dpo(policy, tokenizer, pairs, dcfg, progress=progress)
        models[f"dpo[{name}]"] = policy
    problems = world.heldout_prompts(cfg.eval_prompts, seed=0)
    table = behaviour_table(models, tokenizer, problems, specs=(base_spec, new_spec), seed=cfg.seed)
    return SpecChangeResult(table, relabelled, models, time.process_time() - t0)
