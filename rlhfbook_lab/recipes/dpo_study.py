"""Lesson 08's heavy runs as one study, and its full-mode result as shipped (book chapter 8).

Lesson 08 trains DPO once from ``sft-tiny`` (section 4) and then compares it with more runs: the relatives (cDPO,
IPO, SimPO, ORPO, KTO; section 6), DPO at other β (the reward–KL frontier, section 7), PPO at three KL coefficients
(section 7) and online DPO on the same budget (section 8). :data:`PLANS` says which runs each mode makes. The lesson
loads their result, :func:`run_study` run once per mode (:func:`history_path`, made by :func:`history_command`),
unless ``RLHFBOOK_LIVE=1``: in fast mode they would double the lesson's CPU, in full mode they take about 30
CPU-minutes (1,824 CPU-s when ``data/dpo/study_full.json`` was made, measured once: variants 748, β sweep 516, PPO
241, online 318). Without a shipped file for its mode the lesson trains them (and prints the command that makes it).

Every part returns plain JSON-able dicts:

- :func:`variant_reports`: ``{loss: dpo_from_sft's report}``;
- :func:`beta_sweep`: ``{β: {"report", "curve"}}``, the curve being the evaluation points of the history
  (``eval/step``, ``eval/kl``, ``eval/gold_sampled``, ``eval/gold_score``);
- :func:`ppo_points`: ``{β: {"KL", "gold, sampled", "gold, greedy"}}``;
- :func:`online_arm`: what section 8 reports of an :func:`online_dpo.iterative_dpo` run, and, in the study, the
  ``"offline_scores"`` of section 4's run of the same budget (:func:`offline_scores`), so that the shipped file's
  paired difference is between two runs made together.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.lm.evaluation import evaluate_chat, sampled_kl
from rlhfbook_lab.lm.forward import make_reference_model
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.shipped_data import PREF_GENERATION, preference_prompts
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.recipes.online_dpo import iterative_dpo
from rlhfbook_lab.trainers.dpo import FAST_SIZES, DPOConfig, dpo_config, dpo_from_sft
from rlhfbook_lab.trainers.rl import RLConfig, train_rl

__all__ = ["CURVE_KEYS", "FULL_SIZES", "PARTS", "PLANS", "beta_sweep", "curve", "history_command", "history_path",
           "load_history", "offline_scores", "online_arm", "ppo_points", "run_study", "sizes", "variant_reports"]

FULL_SIZES = dict(num_pairs=None, eval_prompts=200, kl_prompts=64)
"""Full mode's judging sizes (every pair, 200 held-out prompts, 64 KL prompts); fast mode's are ``FAST_SIZES``."""
CURVE_KEYS = ("eval/step", "eval/kl", "eval/gold_sampled", "eval/gold_score")
"""The history keys a frontier curve keeps."""
PARTS = ("variants", "sweep", "ppo", "online")
"""The study's parts, each a key of its result."""
PLANS = {
    True: dict(variants=("simpo",), variant_overrides={"steps": 5}, betas=(), ppo_betas=(), online_prompts=200),
    False: dict(variants=("cdpo", "ipo", "simpo", "orpo", "kto"), variant_overrides={}, betas=(0.03, 0.3, 1.0),
                ppo_betas=(0.01, 0.04, 0.2), online_prompts=1800),
}
"""Lesson 08's runs beyond section 4's, by mode (``PLANS[fast]``): the relatives (fast mode: SimPO, 5 steps), the
other β of the frontier, PPO's KL coefficients, and the prompts the online arm samples from (a few more than its
steps × batch visit: pairs of two identical replies are dropped)."""


def history_path(fast: bool) -> Path:
    """Where the shipped study of a mode lives: ``data/dpo/study_fast.json`` or ``data/dpo/study_full.json``."""
    return DATA_DIR / "dpo" / f"study_{'fast' if fast else 'full'}.json"


def history_command(fast: bool) -> str:
    """The command that regenerates :func:`history_path` ``(fast)`` (each part's ``seconds`` record its CPU)."""
    return (f"OMP_NUM_THREADS=1 python -c 'from rlhfbook_lab.recipes import dpo_study; "
            f"dpo_study.run_study(fast={fast}, out=\"data/dpo/study_{'fast' if fast else 'full'}.json\")'")


def sizes(fast: bool) -> dict:
    """``dpo_from_sft``'s data and judging sizes: ``FAST_SIZES`` or :data:`FULL_SIZES`."""
    return dict(FAST_SIZES if fast else FULL_SIZES)


def curve(history: dict) -> dict:
    """The evaluation points of a ``dpo_from_sft(..., eval_every=...)`` history (:data:`CURVE_KEYS`)."""
    return {k: list(history.get(k, [])) for k in CURVE_KEYS}


def variant_reports(losses=("cdpo", "ipo", "simpo", "orpo", "kto"), fast: bool = False,
                    **config_overrides) -> dict:
    """Each loss of ``losses`` trained from ``sft-tiny`` on the shipped on-policy pairs with its recipe
    (``dpo_config(loss, fast=fast, **config_overrides)``), judged after training: ``{loss: report}``."""
    return {loss: dpo_from_sft(dpo_config(loss, fast=fast, **config_overrides), judge_before=False,
                               progress=False, **sizes(fast)).report for loss in losses}


def beta_sweep(betas=(0.03, 0.3, 1.0), fast: bool = False, eval_every: int = 20) -> dict:
    """DPO at each β of ``betas`` (the lesson's own run is β = 0.1), judged every ``eval_every`` steps:
    ``{β: {"report", "curve"}}``."""
    out = {}
    for beta in betas:
        run = dpo_from_sft(dpo_config("dpo", fast=fast, beta=beta), eval_every=eval_every, judge_before=False,
                           progress=False, **sizes(fast))
        out[beta] = {"report": run.report, "curve": curve(run.history)}
    return out


def ppo_points(betas=(0.01, 0.04, 0.2), rollouts: int = 12, eval_prompts: int = 200, kl_prompts: int = 64) -> dict:
    """PPO from ``sft-tiny`` on the gold score, KL penalty ``beta`` in the reward, ``rollouts`` steps of the PPO
    preset each; judged like the DPO runs: ``{β: {"KL", "gold, sampled", "gold, greedy"}}``."""
    sft, tok = load_model("sft-tiny")
    held = world.heldout_prompts(eval_prompts, seed=0)
    kl_problems = world.heldout_prompts(kl_prompts, seed=1)
    points = {}
    for beta in betas:
        policy, _ = load_model("sft-tiny")
        policy, _ = train_rl(policy, tok, RLConfig.preset("ppo", steps=rollouts, beta=beta, eval_prompts=0),
                             progress=False)
        points[beta] = {"KL": sampled_kl(policy, sft, tok, kl_problems).kl,
                        "gold, sampled": evaluate_chat(policy, tok, held, greedy=False, seed=0).overall["gold_score"],
                        "gold, greedy": evaluate_chat(policy, tok, held).overall["gold_score"]}
    return points


def online_arm(cfg: DPOConfig, rounds: int = 2, num_prompts: int = 1800, eval_prompts: int = 200,
               prompt_seed: int = 1, policy: str = "sft-tiny", return_run: bool = False):
    """Online DPO from ``policy``: :func:`iterative_dpo` over ``rounds`` on ``preference_prompts(num_prompts,
    "train", seed=prompt_seed)`` (seed 1: prompts the shipped pairs, seed 0, did not draw), replies at the shipped
    data's temperature cut at 48 tokens, the gold annotator; then one sampled reply (T = 1, seed 0) to each of
    ``world.heldout_prompts(eval_prompts, seed=0)``, scored by the gold judge — the replies ``dpo_from_sft``'s
    ``sampled_after`` judges, prompt for prompt.

    Returns ``{"rounds", "steps", "pairs_per_round", "round_gold" (mean gold of each round's sampled replies),
    "prompts", "scores"}`` (and the :class:`IterativeDPORun` too with ``return_run``).
    """
    model, tok = load_model(policy)
    run = iterative_dpo(model, tok, preference_prompts(num_prompts, "train", seed=prompt_seed), cfg, rounds,
                        ref_model=make_reference_model(model), seed=0,
                        temperature=PREF_GENERATION["temperature"], max_new_tokens=48)
    judged = evaluate_chat(model, tok, world.heldout_prompts(eval_prompts, seed=0), greedy=False, seed=0)
    result = {"rounds": rounds, "steps": sum(len(h["step"]) for h in run.histories),
              "pairs_per_round": [len(p) for p in run.pairs],
              "round_gold": [float(np.mean([world.gold_score(r["prompt"], r[side]) for r in rows
                                            for side in ("chosen", "rejected")])) for rows in run.pairs],
              "prompts": [p for p, *_ in judged.rows], "scores": [s for *_, s in judged.rows]}
    return (result, run) if return_run else result


def offline_scores(cfg: DPOConfig, fast: bool = False) -> list[float]:
    """Section 4's run (``dpo_from_sft(cfg)`` at :func:`sizes` ``(fast)``): the gold of its sampled reply to each
    held-out prompt, the offline arm of section 8's paired difference."""
    run = dpo_from_sft(cfg, judge_before=False, progress=False, **sizes(fast))
    return [s for *_, s in run.evals["sampled_after"].rows]


def run_study(parts=PARTS, fast: bool = False, out: str | Path | None = None) -> dict:
    """Every part of ``parts`` as lesson 08 runs it in that mode (:data:`PLANS`), as JSON-able dicts, with
    ``"seconds"`` (CPU per part); written to ``out`` as JSON when given (β keys become strings there;
    :func:`load_history` turns them back)."""
    plan, cfg, result, seconds = PLANS[bool(fast)], dpo_config("dpo", fast=fast), {"fast": fast}, {}
    runs = {"variants": lambda: variant_reports(plan["variants"], fast=fast, **plan["variant_overrides"]),
            "sweep": lambda: beta_sweep(plan["betas"], fast=fast),
            "ppo": lambda: ppo_points(plan["ppo_betas"]),
            "online": lambda: {**online_arm(cfg, num_prompts=plan["online_prompts"],
                                            eval_prompts=sizes(fast)["eval_prompts"]),
                               "offline_scores": offline_scores(cfg, fast)}}
    for part in parts:
        if part not in runs:
            raise ValueError(f"parts: unknown part {part!r}; expected some of {PARTS}")
        random.seed(0), np.random.seed(0), torch.manual_seed(0)  # each part as if run alone
        t0 = time.process_time()
        result[part] = runs[part]()
        seconds[part] = time.process_time() - t0
    result["seconds"] = seconds
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1, default=float))
    return result


def _float_keys(d: dict) -> dict:
    return {float(k): v for k, v in d.items()}


def load_history(fast: bool, path: str | Path | None = None) -> dict:
    """The shipped study of a mode (:func:`history_path`, made by :func:`history_command`), β keys back to
    floats."""
    path = Path(path) if path is not None else history_path(fast)
    if not path.is_file():
        raise ValueError(f"path: no DPO study at {path}; make it with: {history_command(fast)}")
    result = json.loads(path.read_text())
    missing = set(PARTS) - set(result)
    if missing:
        raise ValueError(f"path: {path} is not a result of run_study (missing {sorted(missing)})")
    if result["fast"] != fast:
        raise ValueError(f"path: {path} is the {'fast' if result['fast'] else 'full'}-mode study; expected the other")
    result["sweep"], result["ppo"] = _float_keys(result["sweep"]), _float_keys(result["ppo"])
    return result
