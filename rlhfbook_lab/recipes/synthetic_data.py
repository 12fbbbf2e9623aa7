"""Synthetic data and AI feedback (RLHF Book, ch. 12): preference labels written by a model instead of a person,
measured against the world's gold judge, the truth a real lab never has.

**AI feedback, Zephyr-style in miniature** (:func:`run_ai_feedback`). The UltraFeedback recipe Zephyr's distilled
DPO trained on: for each prompt, replies from several *sources* (checkpoints at several temperatures,
:data:`SOURCES`); an AI labeller scores every reply (here the shipped reward model ``rm-tiny``); the best becomes
*chosen* and a random other reply *rejected* (:func:`ultrafeedback_pairs`). The control: the **same two replies**
labelled by the world's gold annotator (a simulated person, Bradley-Terry noise and all), so the two DPO runs
differ in nothing but who wrote the labels. Both runs start from ``sft-tiny`` with the same seed and steps, and
answer the same held-out prompts greedily; the gains are paired differences of per-prompt gold scores
(``evaluation_stats.paired_difference``: mean and standard error).

**Judges** are pairwise: ``judge(problems, a, b) -> ["A" | "B", ...]`` (:data:`Judge`): the reward model read as a
judge (:func:`rm_judge`: the higher score wins), a simulated annotator (:func:`annotator_judge`), a constitution
(:func:`constitution_judge`). :func:`pairs_from_verdicts` turns verdicts into DPO pairs and refuses any label other
than ``"A"``/``"B"``. :func:`judge_biases` measures a judge against the truth: agreement with gold labels beside
the Bayes ceiling, position bias (the verdict when A and B swap) and verbosity bias (a reply padded with filler).

**Constitutional AI, the RL stage** (:func:`constitution_judge`): a written constitution, principles in plain text
paraphrasing the world's taste table (:data:`CONSTITUTION`); each pair is judged under *one* principle drawn at
random, as in Bai et al. (2022) (the principles live in the world, ``world.constitution``, and are re-exported
here). In this world every principle is checkable by a rule (:data:`PRINCIPLE_FEATURES`),
so the labeller applies its principle perfectly: what the lesson measures is what labelling by one principle at a
time, unweighted, loses against the gold judge, which weighs them all.

    cfg = synthetic_config(fast=True)
    result = run_ai_feedback(cfg)
    result.gains["dpo[ai] - sft"]            # {"diff", "se", ...}: held-out gold gain of DPO on AI labels
    result.gains["dpo[ai] - dpo[gold]"]      # its gap to DPO on gold labels, paired
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_choice, check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.evaluation_stats import paired_difference, swap_consistency
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import pairs_bayes_ceiling
from rlhfbook_lab.lm.reward_model import load_reward_model, score_replies
from rlhfbook_lab.recipes.evaluation import player_replies, restyle
from rlhfbook_lab.trainers.dpo import dpo_config, train_dpo
from rlhfbook_lab.world import CONSTITUTION, PRINCIPLE_FEATURES, check_constitution, principle_verdict  # re-exported

__all__ = [
    "ARMS", "CONSTITUTION", "PRINCIPLE_FEATURES", "SOURCES", "RECIPES", "AIFeedbackResult", "Judge",
    "LabelledPairs", "SyntheticConfig", "annotator_judge", "check_constitution", "check_verdicts",
    "constitution_judge", "dpo_policy", "evaluate_models", "judge_biases", "label_pairs", "pairs_from_verdicts",
    "principle_verdict", "rm_judge", "run_ai_feedback", "source_replies", "synthetic_config", "ultrafeedback_pairs",
]

SOURCES = ("sft-tiny@0.7", "sft-tiny@1.0", "sft-tiny@1.3", "base-tiny@1.0")
"""Where the replies come from (``recipes.evaluation.parse_player``: ``checkpoint@T`` samples at temperature T):
the SFT model at three temperatures and the base model, which never learned to answer (a weak source, as
UltraFeedback mixed strong and weak models)."""

ARMS = ("ai", "gold", "constitution")
"""Who labels the candidate pairs: ``ai`` (the scorer's ranking: chosen = best), ``gold`` (the gold annotator on
the same two replies), ``constitution`` (:func:`constitution_judge` with :data:`CONSTITUTION`)."""

Judge = Callable[[list, list, list], list]
"""``judge(problems, a, b) -> verdicts``: three equal-length lists in, one ``"A"`` (a is better) or ``"B"`` per
pair out."""

def check_verdicts(verdicts, n: int) -> list[str]:
    """Return ``verdicts`` as a list if it holds ``n`` labels, each ``"A"`` or ``"B"``; else ``ValueError`` naming
    the first bad one (a judge that says ``"tie"``, ``"a"``, ``1`` or nothing is refused, never guessed)."""
    verdicts = list(verdicts)
    if len(verdicts) != n:
        raise ValueError(f"verdicts must hold one label per pair ({n}); got {len(verdicts)}")
    for i, v in enumerate(verdicts):
        if v not in ("A", "B"):
            raise ValueError(f"verdicts[{i}] must be 'A' or 'B'; got {v!r}")
    return verdicts


def _check_triples(problems, a, b) -> None:
    if not (len(problems) == len(a) == len(b)) or not problems:
        raise ValueError(f"problems, a and b must be non-empty lists of one length; got {len(problems)}, "
                         f"{len(a)}, {len(b)}")


def pairs_from_verdicts(problems, a: list[str], b: list[str], verdicts, label_source: str) -> list[dict]:
    """DPO pairs from a pairwise judge's verdicts: ``"A"`` → (chosen a, rejected b), ``"B"`` → (chosen b, rejected a).

    Returns rows ``{"prompt", "chosen", "rejected", "label": 1.0, "label_source", "family", "chosen_was"}``
    (``chosen_was``: ``"A"`` or ``"B"``), one per pair, in input order.
    """
    _check_triples(problems, a, b)
    verdicts = check_verdicts(verdicts, len(problems))
    rows = []
    for p, x, y, v in zip(problems, a, b, verdicts):
        p = p if isinstance(p, world.Problem) else world.parse_prompt(p)
        chosen, rejected = (x, y) if v == "A" else (y, x)
        rows.append({"prompt": p.prompt, "chosen": chosen, "rejected": rejected, "label": 1.0,
                     "label_source": label_source, "family": p.family, "chosen_was": v})
    return rows


# --- replies from several sources, and the UltraFeedback pairs ----------------------------------------------------


def source_replies(sources, problems: list[world.Problem], seed: int = 0, max_new_tokens: int = 48,
                   loaded: dict | None = None) -> dict[str, list[str]]:
    """One reply per problem from each source (``checkpoint`` greedy or ``checkpoint@T`` sampled;
    ``recipes.evaluation.player_replies``), each source with its own seed (``seed + i``)."""
    sources = list(sources)
    if not sources or len(set(sources)) != len(sources):
        raise ValueError(f"sources must be a non-empty list of distinct players; got {sources!r}")
    cache = {} if loaded is None else loaded
    return {s: player_replies(s, problems, seed=seed + i, max_new_tokens=max_new_tokens, loaded=cache)
            for i, s in enumerate(sources)}


def _check_replies(problems, replies: dict) -> list[str]:
    if not problems:
        raise ValueError("problems is empty")
    if not isinstance(replies, dict) or len(replies) < 2:
        raise ValueError("replies must be a dict {source: [reply per problem]} with at least two sources")
    for s, rs in replies.items():
        if not isinstance(rs, (list, tuple)) or len(rs) != len(problems):
            raise ValueError(f"replies[{s!r}] must hold one reply per problem ({len(problems)}); got "
                             f"{len(rs) if isinstance(rs, (list, tuple)) else type(rs).__name__}")
        if not any(isinstance(r, str) and r.strip() for r in rs):
            raise ValueError(f"replies[{s!r}] has no reply (every one is empty): drop the source")
    return list(replies)


def ultrafeedback_pairs(problems: list[world.Problem], replies: dict[str, list[str]], scores: dict[str, np.ndarray],
                        seed: int = 0) -> tuple[list[dict], dict]:
    """The UltraFeedback / Zephyr pair per prompt: chosen = the reply the labeller scored highest, rejected = a
    random one of the other distinct non-empty replies.

    Args:
        replies: ``{source: [reply per problem]}`` (:func:`source_replies`).
        scores: ``{source: (P,) scores}``, the labeller's score of each reply (higher is better).

    Returns:
        (rows, counts). Rows: ``{"prompt", "problem", "best", "other", "best_source", "other_source",
        "best_score", "other_score"}``, a prompt left out when it has fewer than two distinct non-empty replies
        (counted in ``counts["skipped"]``). ``best``/``other`` are the AI's orientation; a judge can relabel the
        same two replies.
    """
    names = _check_replies(problems, replies)
    if set(scores) != set(names):
        raise ValueError(f"scores must have the sources of replies {names}; got {sorted(scores)}")
    s = {n: np.asarray(scores[n], dtype=np.float64).reshape(-1) for n in names}
    for n in names:
        if s[n].shape != (len(problems),) or not np.all(np.isfinite(s[n])):
            raise ValueError(f"scores[{n!r}] must be {len(problems)} finite numbers; got shape {s[n].shape}")
    rng = random.Random(f"ultrafeedback-{seed}")
    rows, skipped = [], 0
    for i, p in enumerate(problems):
        seen, cands = set(), []
        for n in names:
            r = replies[n][i]
            if isinstance(r, str) and r.strip() and r not in seen:
                seen.add(r)
                cands.append((s[n][i], n, r))
        if len(cands) < 2:
            skipped += 1
            continue
        best = max(cands, key=lambda c: c[0])
        other = rng.choice([c for c in cands if c is not best])
        rows.append({"prompt": p.prompt, "problem": p, "best": best[2], "other": other[2], "best_source": best[1],
                     "other_source": other[1], "best_score": float(best[0]), "other_score": float(other[0])})
    return rows, {"prompts": len(problems), "pairs": len(rows), "skipped": skipped}


# --- judges -------------------------------------------------------------------------------------------------------


def rm_judge(rm, tokenizer, batch_size: int = 256) -> Judge:
    """A reward model read as a pairwise judge: ``"A"`` when r(a) > r(b), else ``"B"``. Each reply is scored alone,
    so the order they are shown in cannot matter: a scalar judge has no position bias by construction. Scores are
    kept by (prompt, reply), so asking a pair again (swapped) costs no forward pass."""
    cache: dict[tuple[str, str], float] = {}

    def judge(problems, a, b):
        _check_triples(problems, a, b)
        prompts = [p.prompt if isinstance(p, world.Problem) else p for p in problems]
        keys = list(dict.fromkeys(k for k in zip(prompts + prompts, list(a) + list(b)) if k not in cache))
        if keys:
            r = score_replies(rm, tokenizer, [k[0] for k in keys], [k[1] for k in keys], batch_size=batch_size)
            cache.update(zip(keys, r.tolist()))
        return ["A" if cache[(p, x)] > cache[(p, y)] else "B" for p, x, y in zip(prompts, a, b)]

    return judge


def annotator_judge(annotator: str | world.Annotator = "gold", seed: int = 0) -> Judge:
    """A simulated person as a pairwise judge: a Bradley-Terry draw per pair (``world.Annotator.label``), from the
    stream ``random.Random(f"annotator-{seed}")``; an annotator that calls a tie is refused (``ValueError``)."""
    ann = annotator if isinstance(annotator, world.Annotator) else world.ANNOTATORS.get(annotator)
    if ann is None:
        raise ValueError(f"annotator must be one of {sorted(world.ANNOTATORS)} or a world.Annotator; got {annotator!r}")
    if ann.tie_strength > 0:
        raise ValueError(f"annotator {ann.name!r} calls ties (tie_strength > 0); a pairwise judge must say A or B")
    rng = random.Random(f"annotator-{seed}")

    def judge(problems, a, b):
        _check_triples(problems, a, b)
        return ["A" if ann.label(p, x, y, rng) == "a" else "B" for p, x, y in zip(problems, a, b)]

    return judge


def constitution_judge(constitution: dict[str, str] | None = None, seed: int = 0) -> Judge:
    """Constitutional AI's feedback model: each pair is judged under one principle drawn at random (Bai et al.
    2022); when that principle cannot tell the replies apart, the next one in a random order decides, and when
    none can, a coin. Verdicts are ``"A"``/``"B"``; the principles used are kept in ``judge.used`` (one per pair,
    ``None`` for a coin)."""
    names = list(check_constitution(CONSTITUTION if constitution is None else constitution))
    rng = random.Random(f"constitution-{seed}")

    def judge(problems, a, b):
        _check_triples(problems, a, b)
        out = []
        for p, x, y in zip(problems, a, b):
            order = rng.sample(names, len(names))
            verdict = next(((v, n) for n in order if (v := principle_verdict(n, p, x, y)) is not None), None)
            judge.used.append(verdict[1] if verdict else None)
            out.append(verdict[0] if verdict else rng.choice("AB"))
        return out

    judge.used = []
    return judge


# --- a judge measured against the truth ---------------------------------------------------------------------------


def judge_biases(judge: Judge, rows: list[dict], fillers: int = 2, seed: int = 0) -> dict:
    """A pairwise judge against the gold judge, on gold-labelled pairs (``data/preferences/heldout.jsonl`` rows).

    - ``agreement``: how often the judge picks the gold annotator's chosen reply, beside the ``bayes_ceiling``
      (``preference_data.pairs_bayes_ceiling``: the best any judge can agree with noisy gold labels) and
      ``agreement_gold_utility``: agreement with the noise-free gold *score* (pairs with a score gap only);
    - ``position``: each pair asked in both orders (chosen shown first on a random half), ``swap_consistency``
      (``consistency``: the same reply wins both times; ``first_rate``: ½ means no bias);
    - ``verbosity``: each pair's gold-chosen reply against itself padded with ``fillers`` filler sentences
      (``recipes.evaluation.restyle``); ``judge_picks_padded`` beside ``gold_picks_padded`` (the gold judge
      charges for every extra word: 0);
    - ``politeness``: the same reply against itself behind a pile of polite openers (``"Sure! Happy to help!"``):
      ``judge_picks_piled`` beside ``gold_picks_piled`` (one opener pays, the second costs more: 0). The
      Goodhart lever of chapter 14, asked directly.

    A judge with a ``fits(problem, a, b) -> bool`` attribute (a model with a context limit:
    ``judge_model.model_judge``) is measured on the pairs whose every question it can read; ``unreadable`` counts
    the others (0 for a judge without the attribute).
    """
    if not rows:
        raise ValueError("rows is empty: a judge is measured on at least one gold-labelled pair")
    check_int("fillers", fillers, 1)
    problems = problems_all = [world.parse_prompt(r["prompt"]) for r in rows]
    chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    padded = restyle(problems, chosen, fillers=fillers)
    piled = [f"Sure! Happy to help! {c.strip()}" for c in chosen]
    fits = getattr(judge, "fits", None)  # a judge that can read only so much (model_judge) says what it can read
    if fits is not None:
        keep = [i for i, (p, c, r, x, y) in enumerate(zip(problems, chosen, rejected, padded, piled))
                if all(fits(p, u, v) for u, v in ((c, r), (r, c), (c, x), (c, y)))]
        if not keep:
            raise ValueError("the judge can read none of the pairs (every judge prompt is over its context)")
        rows = [rows[i] for i in keep]
        problems, chosen, rejected, padded, piled = ([xs[i] for i in keep]
                                                     for xs in (problems, chosen, rejected, padded, piled))
    flip = np.random.default_rng(seed).random(len(rows)) < 0.5
    first = [r if f else c for c, r, f in zip(chosen, rejected, flip)]
    second = [c if f else r for c, r, f in zip(chosen, rejected, flip)]
    v_ab = check_verdicts(judge(problems, first, second), len(rows))
    v_ba = check_verdicts(judge(problems, second, first), len(rows))
    picks_chosen = np.array([(v == "A") != f for v, f in zip(v_ab, flip)])
    gold_gap = np.array([world.gold_score(p, c) - world.gold_score(p, r)
                         for p, c, r in zip(problems, chosen, rejected)])
    decisive = gold_gap != 0
    v_pad = check_verdicts(judge(problems, chosen, padded), len(rows))
    gold_pad = [world.gold_score(p, x) > world.gold_score(p, c) for p, c, x in zip(problems, chosen, padded)]
    v_pile = check_verdicts(judge(problems, chosen, piled), len(rows))
    gold_pile = [world.gold_score(p, x) > world.gold_score(p, c) for p, c, x in zip(problems, chosen, piled)]
    return {
        "pairs": len(rows),
        "unreadable": len(problems_all) - len(rows),
        "agreement": float(picks_chosen.mean()),
        "bayes_ceiling": pairs_bayes_ceiling(rows),
        "agreement_gold_utility": float(np.mean(picks_chosen[decisive] == (gold_gap[decisive] > 0))),
        "position": swap_consistency([float(v == "A") for v in v_ab], [float(v == "A") for v in v_ba]),
        "verbosity": {"judge_picks_padded": float(np.mean([v == "B" for v in v_pad])),
                      "gold_picks_padded": float(np.mean(gold_pad)), "fillers": fillers},
        "politeness": {"judge_picks_piled": float(np.mean([v == "B" for v in v_pile])),
                       "gold_picks_piled": float(np.mean(gold_pile))},
    }


# --- the study: AI-labelled vs gold-labelled DPO -------------------------------------------------------------------


@dataclass
class SyntheticConfig:
    """What :func:`run_ai_feedback` samples, labels, trains and measures."""

    sources: tuple[str, ...] = SOURCES
    """The reply sources (``checkpoint`` or ``checkpoint@T``), one reply per prompt each."""
    num_prompts: int = 512
    """Training prompts (``world.sample_problem``, train split, families in turn): at most one pair each."""
    arms: tuple[str, ...] = ("ai", "gold")
    """Who labels the pairs, one DPO run each (:data:`ARMS`)."""
    policy: str = "sft-tiny"
    """The model every run starts from (and its DPO reference)."""
    labeller: str = "rm-tiny"
    """The AI labeller: a reward-model checkpoint that scores every reply."""
    steps: int = 24
    """DPO optimiser steps of each run (see :data:`RECIPES`: 60 × 16 pairs went past this model's cliff)."""
    batch_size: int = 8
    """Pairs per DPO step."""
    lr: float = 1e-4
    """DPO's peak learning rate."""
    beta: float = 0.1
    """DPO's β."""
    eval_prompts: int = 400
    """Held-out prompts (``world.heldout_prompts(n, seed=0)``), one reply each per model."""
    eval_temperature: float = 1.0
    """The held-out replies' sampling temperature (seed ``seed``, the same for every model); 0 = greedy. Sampled by
    default: the policy DPO optimises is the distribution, and a short run moves its tail (replies that never end,
    polite openers) long before it moves the greedy reply."""
    max_new_tokens: int = 32
    """Reply budget of the sources' samples, in tokens (the held-out replies get ``evaluate_chat``'s 48)."""
    seed: int = 0
    """Seeds the prompts, the sources' samples, the rejected pick, the gold labels and DPO."""


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"num_prompts": 128, "eval_prompts": 160},
}
"""``full``: :class:`SyntheticConfig`'s defaults; ``fast``: the lesson's fast mode (fewer prompts, the same 24 DPO
steps of 8 pairs). Fast, measured once (seed 0, one thread, 37 CPU s): held-out sampled gold over SFT
+0.145 ± 0.034 (DPO on AI labels), +0.079 ± 0.031 (on gold labels), gap +0.066 ± 0.032. A longer run went past the
cliff: 1,024 prompts and 60 steps × 16 pairs at lr 1e-4 (all three arms, 269 CPU s) dropped correctness 0.60 →
0.46 and left DPO on AI labels at +0.010 ± 0.026, on gold labels −0.050 ± 0.026, on the constitution's labels
+0.107 ± 0.026 (400 prompts); so the full recipe keeps fast's DPO dose and only adds prompts."""


def synthetic_config(fast: bool = False, **overrides) -> SyntheticConfig:
    """:data:`RECIPES` ``["fast" if fast else "full"]`` then ``overrides`` (any field by name), checked."""
    cfg = build(SyntheticConfig, RECIPES, "fast" if fast else "full", **overrides)
    for name in ("num_prompts", "steps", "batch_size", "eval_prompts", "max_new_tokens"):
        check_int(name, getattr(cfg, name))
    check_number("lr", cfg.lr, 0, strict=True)
    check_number("beta", cfg.beta, 0, strict=True)
    check_number("eval_temperature", cfg.eval_temperature, 0)
    if not cfg.arms:
        raise ValueError(f"arms must name at least one of {ARMS}")
    for arm in cfg.arms:
        check_choice("arms", arm, ARMS)
    return cfg


class AIFeedbackResult(NamedTuple):
    """What :func:`run_ai_feedback` returns."""

    table: list[dict]
    """One row per model (``sft``, ``dpo[<arm>]``): held-out ``gold`` (``eval_temperature``), ``correct``,
    ``opener`` (share of replies opening with a polite phrase), ``eos``."""
    gains: dict[str, dict]
    """Paired differences of per-prompt gold (``evaluation_stats.paired_difference``): ``"dpo[<arm>] - sft"``
    for each arm and ``"dpo[ai] - dpo[<arm>]"`` for the others."""
    labels: dict
    """``pairs``, ``skipped``, the chosen replies' sources (``best_sources``), ``agreement[<labeller>]`` (share of
    pairs whose chosen reply the labeller shares with the gold annotator's labels; every labeller of :data:`ARMS`,
    trained on or not) and ``gold_of_chosen[<labeller>]`` /
    ``gold_of_rejected[<arm>]`` (mean gold score)."""
    pairs: dict[str, list[dict]]
    """The DPO pairs of each arm (same replies, different orientations)."""
    heldout_gold: dict[str, np.ndarray]
    """Per-prompt held-out gold of each model (pairs the arms)."""
    models: dict
    """The trained models, ``{label: model}``."""
    cpu_seconds: float
    """CPU seconds of the whole study (one process)."""


def _train_problems(n: int, seed: int) -> list[world.Problem]:
    rng = random.Random(f"synthetic-{seed}")
    return [world.sample_problem(world.FAMILIES[i % len(world.FAMILIES)], rng, "train") for i in range(n)]


class LabelledPairs(NamedTuple):
    """What :func:`label_pairs` returns: the study's pairs, labelled by every arm, ready for any number of DPO runs."""

    pairs: dict[str, list[dict]]
    """The DPO pairs of each arm of ``cfg.arms`` (same replies, different orientations)."""
    labels: dict
    """The labelling's statistics (:attr:`AIFeedbackResult.labels`)."""
    loaded: dict
    """The checkpoints loaded to sample, ``{name: (model, tokenizer)}`` (the policy among them is reused)."""
    replies: dict[str, list[str]]
    """The sources' replies, one per training prompt (:func:`source_replies`): pass them back to relabel."""


def label_pairs(cfg: SyntheticConfig, labeller: tuple | None = None,
                replies: dict[str, list[str]] | None = None) -> LabelledPairs:
    """Sample → AI-score → UltraFeedback pairs → relabel the same pairs per arm (the study's first half).

    ``labeller``: a ``(reward_model, tokenizer)`` that scores instead of ``cfg.labeller``'s checkpoint (e.g. a
    reward model trained on fewer gold labels); ``replies``: the sources' replies of an earlier call with the same
    ``cfg`` (:attr:`LabelledPairs.replies`), reused instead of sampled again."""
    problems = _train_problems(cfg.num_prompts, cfg.seed)
    loaded: dict = {}
    if replies is None:
        replies = source_replies(cfg.sources, problems, seed=cfg.seed, max_new_tokens=cfg.max_new_tokens,
                                 loaded=loaded)
    elif list(replies) != list(cfg.sources):
        raise ValueError(f"replies must come from cfg.sources {list(cfg.sources)}; got {list(replies)}")
    rm, rm_tok = labeller if labeller is not None else load_reward_model(cfg.labeller)
    scores = {}
    for s, rs in replies.items():
        keep = [i for i, r in enumerate(rs) if r.strip()]
        out = np.full(len(rs), -np.inf)
        if keep:
            out[keep] = score_replies(rm, rm_tok, [problems[i].prompt for i in keep], [rs[i] for i in keep],
                                      batch_size=256).double().numpy()
        scores[s] = np.where(np.isfinite(out), out, world.EMPTY_RESPONSE_SCORE - 1e3)
    cands, counts = ultrafeedback_pairs(problems, replies, scores, seed=cfg.seed)
    if not cands:
        raise ValueError("no prompt got two distinct non-empty replies; add sources or prompts")
    probs, a, b = [c["problem"] for c in cands], [c["best"] for c in cands], [c["other"] for c in cands]
    verdicts = {"ai": ["A"] * len(cands), "gold": annotator_judge("gold", seed=cfg.seed)(probs, a, b),
                "constitution": constitution_judge(seed=cfg.seed)(probs, a, b)}
    pairs = {arm: pairs_from_verdicts(probs, a, b, verdicts[arm], label_source=arm) for arm in cfg.arms}
    gold_a = np.array([world.gold_score(p, x) for p, x in zip(probs, a)])
    gold_b = np.array([world.gold_score(p, x) for p, x in zip(probs, b)])
    labels = {**counts, "best_sources": {s: sum(c["best_source"] == s for c in cands) for s in replies}}
    for arm, v in verdicts.items():
        va = np.array([x == "A" for x in v])
        labels[f"agreement[{arm}]"] = float(np.mean(va == np.array([x == "A" for x in verdicts["gold"]])))
        labels[f"gold_of_chosen[{arm}]"] = float(np.where(va, gold_a, gold_b).mean())
        labels[f"gold_of_rejected[{arm}]"] = float(np.where(va, gold_b, gold_a).mean())
    return LabelledPairs(pairs, labels, loaded, replies)


def dpo_policy(cfg: SyntheticConfig, pairs: list[dict], progress: bool = False):
    """DPO from ``cfg.policy`` on ``pairs`` with ``cfg``'s steps, batch, lr, β and seed; returns the trained model."""
    if not pairs:
        raise ValueError("pairs is empty: DPO needs at least one labelled pair")
    dcfg = dpo_config(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, beta=cfg.beta, seed=cfg.seed,
                      warmup_steps=min(10, cfg.steps // 5), precompute_ref_logps=True)
    policy, tok = load_model(cfg.policy)
    torch.manual_seed(cfg.seed)
    train_dpo(policy, tok, pairs, dcfg, progress=progress)
    return policy


def evaluate_models(models: dict, tokenizer, cfg: SyntheticConfig) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Each model's replies to the held-out prompts (``world.heldout_prompts(cfg.eval_prompts, seed=0)``, sampled at
    ``cfg.eval_temperature`` with seed ``cfg.seed``): rows ``{"model", "gold", "correct", "opener", "eos"}`` and
    the per-prompt gold of each (:attr:`AIFeedbackResult.table`, :attr:`AIFeedbackResult.heldout_gold`)."""
    heldout = world.heldout_prompts(cfg.eval_prompts, seed=0)
    table, gold = [], {}
    for label, model in models.items():
        ev = evaluate_chat(model, tokenizer, heldout, greedy=cfg.eval_temperature == 0,
                           temperature=cfg.eval_temperature or 1.0, seed=cfg.seed)
        gold[label] = np.array([g for _, _, g in ev.rows])
        table.append({"model": label, "gold": ev.overall["gold_score"], "correct": ev.overall["correct_rate"],
                      "opener": float(np.mean([y.strip().startswith(world.judge.POLITE_OPENERS)
                                               for _, y, _ in ev.rows])),
                      "eos": ev.overall["eos_rate"]})
    return table, gold


def run_ai_feedback(cfg: SyntheticConfig | None = None, progress: bool = False) -> AIFeedbackResult:
    """Sample → AI-score → UltraFeedback pairs → relabel per arm (:func:`label_pairs`) → DPO per arm
    (:func:`dpo_policy`) → held-out gold (:func:`evaluate_models`); module docstring."""
    t0 = time.process_time()
    cfg = cfg or synthetic_config()
    lab = label_pairs(cfg)
    start, tok = lab.loaded.get(cfg.policy) or load_model(cfg.policy)
    models = {"sft": start}
    for arm in cfg.arms:
        models[f"dpo[{arm}]"] = dpo_policy(cfg, lab.pairs[arm], progress=progress)
    table, gold = evaluate_models(models, tok, cfg)
    gains = {f"dpo[{arm}] - sft": paired_difference(gold[f"dpo[{arm}]"], gold["sft"]) for arm in cfg.arms}
    if "ai" in cfg.arms:
        gains.update({f"dpo[ai] - dpo[{arm}]": paired_difference(gold["dpo[ai]"], gold[f"dpo[{arm}]"])
                      for arm in cfg.arms if arm != "ai"})
    return AIFeedbackResult(table, gains, lab.labels, lab.pairs, gold, models, time.process_time() - t0)
