"""Distillation (RLHF Book ch. 12): a stronger *teacher* writes the supervised data, a *student* is fine-tuned on it.

Labs distil because a strong model's samples are cheaper than people's writing, and often better. Here the teacher
is a **best-of-n policy**: ``sft-tiny`` samples ``n`` replies to a prompt and a *selector* keeps the best one, either
the reward model ``rm-tiny`` (a teacher a lab could build) or the world's gold judge (an oracle teacher: the best a
perfect labeller could pick from the same samples). Best-of-n is stronger than its sampler by construction (lesson
09), but it costs ``n`` samples and a judge call per reply at inference; distillation asks how much of that strength
one ordinary sample of a fine-tuned student keeps.

The study (:func:`distillation_study`):

1. **Teacher data**: for each prompt of the shipped SFT training file (``data/sft/sft_train.jsonl``, the data
   ``sft-tiny`` learned from), ``n`` samples of ``sft-tiny`` (``sample_pool``, one pool shared by every selector)
   and each selector's best reply (an empty reply is never chosen).
2. **Students**: ``base-tiny`` fine-tuned with ``sft-tiny``'s own recipe (``trainers.sft.SFTConfig()``: steps,
   lr, batch, seed) on the teacher's replies to the *same prompts*. The control is ``sft-tiny`` itself, the same
   recipe on the original replies, so the students differ from it in nothing but who wrote the replies.
3. **Measured on held-out prompts** (greedy; every model answers the same prompts): gold, correct rate, the taste
   features (``world.taste_features``), by family; the teachers themselves at inference (best-of-n on the
   held-out prompts); paired gold differences with standard errors (``evaluation_stats.paired_difference``).

    result = distillation_study(distillation_config(fast=True))
    result["gains"]["student[gold] - sft-tiny"]       # {"diff", "se", ...}
    result["models"]["teacher[rm-tiny]"]["gold"]      # the teacher at inference, best-of-n

The shipped full-size result is :data:`RESULT` (``data/synthetic/distillation.json``), written by
:data:`DISTILL_COMMAND`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.evaluation_stats import paired_difference
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.pool_scoring import gold_scorer, reward_model_scorer
from rlhfbook_lab.lm.reward_model import load_reward_model
from rlhfbook_lab.lm.sample_pool import sample_pool
from rlhfbook_lab.lm.shipped_data import load_instruction_file
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.trainers.sft import SFTConfig, sft

__all__ = ["DISTILL_COMMAND", "RECIPES", "RESULT", "DistillConfig", "best_of_n", "distillation_config",
           "distillation_study", "load_result", "main"]

RESULT = DATA_DIR / "synthetic" / "distillation.json"
"""The shipped full-size result of :func:`distillation_study`."""

DISTILL_COMMAND = "OMP_NUM_THREADS=1 python -m rlhfbook_lab.recipes.distillation --out data/synthetic/distillation.json"
"""The command that writes :data:`RESULT` (the defaults of :class:`DistillConfig`)."""

TASTE = ("polite_opener", "polite_excess", "extra_words", "unclean_end", "repetition")
"""The taste features reported per model (``world.taste_features``; ``correct`` is reported as the correct rate)."""


@dataclass
class DistillConfig:
    """What :func:`distillation_study` samples, selects, trains and measures."""

    teacher: str = "sft-tiny"
    """The model whose samples the teachers choose from."""
    n: int = 8
    """Samples per prompt: the teacher is best-of-``n``."""
    selectors: tuple[str, ...] = ("rm-tiny", "gold")
    """Who picks the best of ``n``: a reward-model checkpoint or ``"gold"`` (the world's gold judge); one teacher
    and one student each."""
    temperature: float = 1.0
    """The teacher's sampling temperature."""
    max_new_tokens: int = 48
    """The teacher's reply budget in tokens (``evaluate_chat``'s, so a reply the students copy fits their own)."""
    num_prompts: int = 4000
    """Prompts of ``data/sft/sft_train.jsonl`` used (its first ``num_prompts``; the file has 4,000)."""
    student: str = "base-tiny"
    """The model fine-tuned on the teacher's replies (``sft-tiny``'s own starting point)."""
    steps: int | None = None
    """The students' SFT steps; ``None``: ``SFTConfig()``'s (the recipe ``sft-tiny`` was made with)."""
    eval_prompts: int = 400
    """Held-out prompts (``world.heldout_prompts(n, seed=0)``), one greedy reply each per model."""
    shown: int = 8
    """Teacher replies kept in the result for each selector, beside the original reply, to show in the lesson."""
    seed: int = 0
    """Seeds the teacher's samples and the students' training."""


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"num_prompts": 256, "n": 4, "steps": 40, "eval_prompts": 64},
}
"""``full``: :class:`DistillConfig`'s defaults; ``fast``: a smoke-sized run (tests and exercises), far too short
for a student to learn the task."""


def distillation_config(fast: bool = False, **overrides) -> DistillConfig:
    """:data:`RECIPES` ``["fast" if fast else "full"]`` then ``overrides`` (any field by name), checked."""
    cfg = build(DistillConfig, RECIPES, "fast" if fast else "full", **overrides)
    for name in ("n", "max_new_tokens", "num_prompts", "eval_prompts"):
        check_int(name, getattr(cfg, name))
    check_int("shown", cfg.shown, minimum=0)
    check_int("seed", cfg.seed, minimum=0)
    if cfg.steps is not None:
        check_int("steps", cfg.steps)
    check_number("temperature", cfg.temperature, 0, strict=True)
    if not cfg.selectors or not all(isinstance(s, str) and s.strip() for s in cfg.selectors):
        raise ValueError(f"selectors must name at least one reward model or 'gold'; got {cfg.selectors!r}")
    if len(set(cfg.selectors)) != len(cfg.selectors):
        raise ValueError(f"selectors must be distinct; got {cfg.selectors!r}")
    return cfg


def best_of_n(scores: np.ndarray, replies: list[list[str]]) -> list[int]:
    """The index of each problem's best non-empty reply: ``argmax_j scores[i, j]`` over replies with text, the first
    on a tie. ``scores``: (P, n), one row per problem, aligned with ``replies`` (P lists of n). A problem whose
    replies are all empty is a ``ValueError`` naming it (a teacher must write something)."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (len(replies), len(replies[0]) if replies else 0):
        raise ValueError(f"scores must have shape (problems, n) = ({len(replies)}, n); got {scores.shape}")
    out = []
    for i, rs in enumerate(replies):
        ok = np.array([bool(r.strip()) for r in rs])
        if not ok.any():
            raise ValueError(f"replies[{i}]: every sample is empty; no best reply to distil")
        out.append(int(np.argmax(np.where(ok, scores[i], -np.inf))))
    return out


def _scorer(selector: str):
    if selector == "gold":
        return gold_scorer
    return reward_model_scorer(*load_reward_model(selector))


def _measure(model, tok, heldout) -> tuple[dict, np.ndarray]:
    ev = evaluate_chat(model, tok, heldout, greedy=True)
    return _summary(heldout, [r for _, r, _ in ev.rows], ev.overall["eos_rate"]), np.array([g for *_, g in ev.rows])


def _summary(problems, replies: list[str], eos_rate: float | None = None) -> dict:
    gold = np.array([world.gold_score(p, r, allow_empty=True) for p, r in zip(problems, replies)])
    feats = [world.taste_features(p, r) for p, r in zip(problems, replies) if r.strip()]
    out = {"gold": float(gold.mean()), "correct": float(np.mean([world.is_correct(p, r) if r.strip() else False
                                                                 for p, r in zip(problems, replies)]))}
    out.update({f: float(np.mean([x[f] for x in feats])) if feats else 0.0 for f in TASTE})
    by_family: dict[str, list] = {}
    for p, r in zip(problems, replies):
        by_family.setdefault(p.family, []).append(bool(r.strip()) and world.is_correct(p, r))
    out["correct_by_family"] = {f: float(np.mean(v)) for f, v in by_family.items()}
    if eos_rate is not None:
        out["eos"] = float(eos_rate)
    return out


def distillation_study(cfg: DistillConfig | None = None, progress: bool = False) -> dict:
    """Teacher data → students → held-out measurements (module docstring). Returns a JSON-ready dict: ``config``;
    ``data`` (per selector and for the original replies: the training replies' summary, and ``shown`` examples);
    ``models`` (held-out summary of ``sft-tiny``, each ``teacher[s]`` at inference and each ``student[s]``);
    ``gains`` (paired held-out gold differences); ``cpu_seconds`` (per stage)."""
    cfg = cfg or distillation_config()
    t0, cpu = time.process_time(), {}
    rows = load_instruction_file("train")
    if cfg.num_prompts > len(rows):
        raise ValueError(f"num_prompts must be at most {len(rows)} (the SFT training file); got {cfg.num_prompts}")
    rows = rows[:cfg.num_prompts]
    problems = [world.parse_prompt(r["prompt"]) for r in rows]
    heldout = world.heldout_prompts(cfg.eval_prompts, seed=0)
    teacher, tok = load_model(cfg.teacher)
    scorers = {s: _scorer(s) for s in cfg.selectors}

    def teach(probs: list, seed: int) -> dict[str, list[str]]:
        pool = sample_pool(teacher, tok, probs, n=cfg.n, temperature=cfg.temperature,
                           max_new_tokens=cfg.max_new_tokens, seed=seed)
        flat_p = [p for p in probs for _ in range(cfg.n)]
        flat_r = [r for rs in pool.replies for r in rs]
        out = {}
        for s, score in scorers.items():
            scores = np.asarray(score(flat_p, flat_r), dtype=float).reshape(len(probs), cfg.n)
            out[s] = [rs[j] for rs, j in zip(pool.replies, best_of_n(scores, pool.replies))]
        return out

    chosen = teach(problems, cfg.seed)
    cpu["teacher_data"] = time.process_time() - t0
    original = [r["messages"][-1]["content"] for r in rows]
    data = {"original": {**_summary(problems, original), "shown": [[p.prompt, r] for p, r in
                                                                    zip(problems[:cfg.shown], original)]}}
    for s, replies in chosen.items():
        data[s] = {**_summary(problems, replies), "shown": [[p.prompt, r] for p, r in
                                                            zip(problems[:cfg.shown], replies[:cfg.shown])]}
    models, gold = {}, {}
    models["sft-tiny"], gold["sft-tiny"] = _measure(teacher, tok, heldout)
    t1 = time.process_time()
    at_inference = teach(heldout, cfg.seed + 1)
    for s, replies in at_inference.items():
        models[f"teacher[{s}]"] = _summary(heldout, replies)
        gold[f"teacher[{s}]"] = np.array([world.gold_score(p, r, allow_empty=True) for p, r in zip(heldout, replies)])
    cpu["teacher_at_inference"] = time.process_time() - t1
    sft_cfg = SFTConfig()
    if cfg.steps is not None:
        sft_cfg.train.steps = cfg.steps
    sft_cfg.train.seed = cfg.seed
    for s, replies in chosen.items():
        t1 = time.process_time()
        student, stok = load_model(cfg.student)
        torch.manual_seed(cfg.seed)
        convs = [[{"role": "user", "content": p.prompt}, {"role": "assistant", "content": r}]
                 for p, r in zip(problems, replies)]
        sft(student, stok, convs, sft_cfg, progress=progress)
        models[f"student[{s}]"], gold[f"student[{s}]"] = _measure(student.eval(), stok, heldout)
        cpu[f"student[{s}]"] = time.process_time() - t1
    gains = {}
    for s in cfg.selectors:
        gains[f"student[{s}] - sft-tiny"] = paired_difference(gold[f"student[{s}]"], gold["sft-tiny"])
        gains[f"teacher[{s}] - sft-tiny"] = paired_difference(gold[f"teacher[{s}]"], gold["sft-tiny"])
        gains[f"student[{s}] - teacher[{s}]"] = paired_difference(gold[f"student[{s}]"], gold[f"teacher[{s}]"])
    cpu["total"] = time.process_time() - t0
    return {"config": asdict(cfg), "data": data, "models": models,
            "gains": {k: {kk: float(vv) for kk, vv in v.items()} for k, v in gains.items()},
            "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()}}


def load_result(path: str | Path | None = None) -> dict:
    """The shipped :func:`distillation_study` result (:data:`RESULT`, made by :data:`DISTILL_COMMAND`)."""
    path = Path(path) if path is not None else RESULT
    if not path.is_file():
        raise ValueError(f"path: no distillation result at {path}; make it with: {DISTILL_COMMAND}")
    result = json.loads(path.read_text())
    if set(result.get("config", {})) != {f.name for f in fields(DistillConfig)}:
        raise ValueError(f"path: {path} is not a result of distillation_study (its config fields differ)")
    missing = {"data", "models", "gains", "cpu_seconds"} - set(result)
    if missing:
        raise ValueError(f"path: {path} lacks {sorted(missing)}")
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m rlhfbook_lab.recipes.distillation --out FILE [--fast]``: run the study, write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m rlhfbook_lab.recipes.distillation",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help=f"the .json file to write (shipped: {RESULT})")
    parser.add_argument("--fast", action="store_true", help="the smoke-sized recipe")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir() or out.suffix != ".json":
        parser.error(f"--out: expected a .json file path; got {out}")
    result = distillation_study(distillation_config(fast=args.fast), progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}: {result['cpu_seconds']}")


if __name__ == "__main__":
    main()
