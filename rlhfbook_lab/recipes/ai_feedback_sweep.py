"""AI feedback's DPO knobs swept (RLHF Book, ch. 12): β 0.1 against 0.01 and a learning-rate grid, on AI labels and on
gold labels of the **same pairs** (``synthetic_data``'s Zephyr-style study), every run judged by the gold judge.

Zephyr's DPO recipe used lr 5e-7 on a 7B model and was re-run at β 0.01 after labelling errors were found in
UltraFeedback. Neither number transfers to a 1.8M-parameter model; what transfers is the *shape*: the held-out gold
gain over SFT climbs with the learning rate, peaks, and past a **cliff** falls below SFT (lesson 12 §2 plots it).
:func:`dpo_sweep` samples and labels the pairs once (``synthetic_data.label_pairs``), then trains one DPO run per
(labels, β, lr) from ``sft-tiny`` with the same seed and steps, and measures each on the same held-out prompts:

    sweep = dpo_sweep(synthetic_config(), lrs=(1e-5, 1e-4, 1e-3))
    sweep["runs"][0]          # {"labels", "beta", "lr", "gold", "correct", "opener", "eos", "gain": {"diff", "se"},
                              #  "kl", "kl_se"}
    cliff_lr(sweep, "ai", 0.1)  # the first lr past the peak whose gain is below SFT by more than 2 s.e.

The shipped sweep (:data:`SWEEP`, written by :data:`SWEEP_COMMAND`) is what the lesson plots; it trains nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_choice, check_int, check_number
from rlhfbook_lab.equations.evaluation_stats import paired_difference
from rlhfbook_lab.lm.evaluation import sampled_kl
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import subsample_pairs
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.recipes.judge_model import model_judge
from rlhfbook_lab.recipes.synthetic_data import (
    SyntheticConfig,
    dpo_policy,
    evaluate_models,
    label_pairs,
    pairs_from_verdicts,
    synthetic_config,
)
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.reward import RMConfig, accuracy_by_kind, rm_from_sft, shipped_rm_config

__all__ = ["BETAS", "BUDGET", "BUDGETS", "BUDGET_COMMAND", "LABELS", "LRS", "SWEEP", "SWEEP_COMMAND",
           "budget_rm_config", "cliff_lr", "dpo_sweep", "judge_labelled_dpo", "label_budget_study", "load_budget",
           "load_sweep", "peak_run", "sweep_line"]

LABELS = ("ai", "gold")
"""Who labels the pairs of each sweep line: ``rm-tiny``'s ranking or the gold annotator (``synthetic_data.ARMS``)."""

BETAS = (0.1, 0.01)
"""DPO's β: the folk default and Zephyr's re-run."""

LRS = (1e-5, 3e-5, 1e-4, 2e-4, 5e-4, 1e-3)
"""The learning-rate grid, log-spaced around the study's 1e-4 and finer towards the cliff (measured once: at 1e-3
this model's correctness is gone, so the grid stops there)."""

SWEEP = DATA_DIR / "synthetic" / "sweep.json"
"""The shipped sweep (:data:`SWEEP_COMMAND`)."""

SWEEP_COMMAND = ("OMP_NUM_THREADS=1 python -m rlhfbook_lab.recipes.ai_feedback_sweep "
                 "--out data/synthetic/sweep.json")
"""The command that wrote :data:`SWEEP`: :func:`dpo_sweep` with ``synthetic_config()`` (the full recipe: 512
training prompts, 400 held-out) and the default grid."""

_RUN_KEYS = {"labels", "beta", "lr", "gold", "correct", "opener", "eos", "gain", "kl", "kl_se", "cpu_seconds"}


def _grid(labels, betas, lrs) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]]:
    labels, betas, lrs = tuple(labels), tuple(betas), tuple(lrs)
    for name, xs in (("labels", labels), ("betas", betas), ("lrs", lrs)):
        if not xs or len(set(xs)) != len(xs):
            raise ValueError(f"{name} must be a non-empty sequence of distinct values; got {xs!r}")
    for x in labels:
        check_choice("labels", x, ("ai", "gold", "constitution"))
    for x in betas:
        check_number("betas", x, 0, strict=True)
    for x in lrs:
        check_number("lrs", x, 0, strict=True)
    return labels, tuple(float(b) for b in betas), tuple(sorted(float(x) for x in lrs))


def dpo_sweep(cfg: SyntheticConfig | None = None, labels=LABELS, betas=BETAS, lrs=LRS, kl_prompts: int = 128,
              out: str | Path | None = None, progress: bool = False) -> dict:
    """One DPO run per (labels, β, lr) on the same labelled pairs, each measured on the same held-out prompts.

    Args:
        cfg: the study's config (``synthetic_config()``); its ``lr``, ``beta`` and ``arms`` are replaced per run.
        labels, betas, lrs: the grid (:data:`LABELS`, :data:`BETAS`, :data:`LRS`).
        kl_prompts: held-out prompts on which KL(π ‖ π_SFT) is estimated (``lm.evaluation.sampled_kl``, the policy's
            own samples at temperature 1; 0 skips it).
        out: a ``.json`` path to write the result to (optional).

    Returns:
        A JSON-able dict: ``config`` (the study's, ``asdict``), ``grid`` ``{"labels", "betas", "lrs"}``,
        ``labels`` (the labelling's statistics, ``synthetic_data.AIFeedbackResult.labels``), ``sft`` (the start's
        row: ``gold``, ``correct``, ``opener``, ``eos``), ``runs`` (one dict per run: ``labels``, ``beta``, ``lr``,
        the same four measures, ``gain``: ``{"diff", "se"}`` of held-out gold over SFT, paired per prompt, ``kl``
        and ``kl_se``, nats per reply, ``None`` when ``kl_prompts`` is 0, ``cpu_seconds``) and ``cpu_seconds``.
    """
    t0 = time.process_time()
    cfg = cfg or synthetic_config()
    labels, betas, lrs = _grid(labels, betas, lrs)
    check_int("kl_prompts", kl_prompts, 0)
    if out is not None and Path(out).suffix != ".json":
        raise ValueError(f"out must be a .json file path; got {out}")
    cfg = replace(cfg, arms=labels)
    lab = label_pairs(cfg)
    sft, tok = lab.loaded.get(cfg.policy) or load_model(cfg.policy)
    (sft_row,), sft_gold = evaluate_models({"sft": sft}, tok, cfg)
    kl_problems = world.heldout_prompts(cfg.eval_prompts, seed=0)[:kl_prompts]
    runs = []
    for arm in labels:
        for beta in betas:
            for lr in lrs:
                t1 = time.process_time()
                run_cfg = replace(cfg, beta=beta, lr=lr)
                policy = dpo_policy(run_cfg, lab.pairs[arm], progress=progress)
                (row,), gold = evaluate_models({"dpo": policy}, tok, run_cfg)
                kl = sampled_kl(policy, sft, tok, kl_problems, seed=cfg.seed) if kl_prompts else None
                gain = paired_difference(gold["dpo"], sft_gold["sft"])
                runs.append({"labels": arm, "beta": beta, "lr": lr,
                             **{k: float(row[k]) for k in ("gold", "correct", "opener", "eos")},
                             "gain": {"diff": float(gain["diff"]), "se": float(gain["se"])},
                             "kl": None if kl is None else kl.kl, "kl_se": None if kl is None else kl.stderr,
                             "cpu_seconds": round(time.process_time() - t1, 1)})
                if progress:
                    r = runs[-1]
                    print(f"{arm:5s} beta {beta:<5g} lr {lr:<7.0e} gold {r['gold']:+.3f} gain "
                          f"{r['gain']['diff']:+.3f} ± {r['gain']['se']:.3f} kl {r['kl']} ({r['cpu_seconds']} s)",
                          flush=True)
    result = {"config": asdict(cfg), "grid": {"labels": list(labels), "betas": list(betas), "lrs": list(lrs)},
              "labels": lab.labels, "sft": {k: float(sft_row[k]) for k in ("gold", "correct", "opener", "eos")},
              "runs": runs, "cpu_seconds": round(time.process_time() - t0, 1)}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def load_sweep(path: str | Path | None = None) -> dict:
    """The shipped result of :func:`dpo_sweep` (:data:`SWEEP`, made by :data:`SWEEP_COMMAND`), or the one at
    ``path``; ``ValueError`` naming ``path`` when it is missing or not a sweep."""
    path = Path(path) if path is not None else SWEEP
    if not path.is_file():
        raise ValueError(f"path: no DPO sweep at {path}; make it with: {SWEEP_COMMAND}")
    sweep = json.loads(path.read_text())
    if not {"config", "grid", "labels", "sft", "runs"} <= set(sweep):
        raise ValueError(f"path: {path} is not a result of dpo_sweep (config, grid, labels, sft, runs expected)")
    g = sweep["grid"]
    if len(sweep["runs"]) != len(g["labels"]) * len(g["betas"]) * len(g["lrs"]):
        raise ValueError(f"path: {path} has {len(sweep['runs'])} runs; its grid needs "
                         f"{len(g['labels']) * len(g['betas']) * len(g['lrs'])}")
    for i, run in enumerate(sweep["runs"]):
        if set(run) != _RUN_KEYS:
            raise ValueError(f"path: run {i} of {path} has keys {sorted(run)}; expected {sorted(_RUN_KEYS)}")
    return sweep


def sweep_line(sweep: dict, labels: str, beta: float) -> list[dict]:
    """The runs of one line of the sweep (one labeller, one β), in increasing lr; ``ValueError`` if it has none."""
    line = sorted((r for r in sweep["runs"] if r["labels"] == labels and r["beta"] == beta), key=lambda r: r["lr"])
    if not line:
        raise ValueError(f"labels, beta: the sweep has no run with labels {labels!r} and beta {beta!r}; its grid is "
                         f"{sweep['grid']}")
    return line


def peak_run(sweep: dict, labels: str, beta: float) -> dict:
    """The run of the line (:func:`sweep_line`) with the highest held-out gold gain over SFT."""
    return max(sweep_line(sweep, labels, beta), key=lambda r: r["gain"]["diff"])


def cliff_lr(sweep: dict, labels: str, beta: float, z: float = 2.0) -> float | None:
    """The **cliff** of one line: the smallest lr above the peak's (:func:`peak_run`) whose held-out gold is below
    SFT's by more than ``z`` paired standard errors (``gain.diff + z·gain.se < 0``); ``None`` if no lr of the grid
    gets there."""
    check_number("z", z, 0)
    peak = peak_run(sweep, labels, beta)["lr"]
    return next((r["lr"] for r in sweep_line(sweep, labels, beta)
                 if r["lr"] > peak and r["gain"]["diff"] + z * r["gain"]["se"] < 0), None)


# --- the labeller's own label budget ------------------------------------------------------------------------------

BUDGETS = (100, 400, 1500, 5371)
"""Gold labels spent, nested: the first this many of the shipped train pairs (``data/preferences/train.jsonl``,
5,371 in all: what ``rm-tiny`` was trained on)."""

BUDGET = DATA_DIR / "synthetic" / "budget.json"
"""The shipped label-budget study (:data:`BUDGET_COMMAND`)."""

BUDGET_COMMAND = ("OMP_NUM_THREADS=1 python -m rlhfbook_lab.recipes.ai_feedback_sweep --budget "
                  "--out data/synthetic/budget.json")
"""The command that wrote :data:`BUDGET`: :func:`label_budget_study` with ``synthetic_config()``, :data:`BUDGETS`
and ``judge="judge-tiny"``."""


def budget_rm_config(n: int, min_steps: int = 20) -> RMConfig:
    """The reward model trained on ``n`` gold labels: ``rm-tiny``'s recipe (``trainers.reward.shipped_rm_config``:
    batch 32, lr 3e-4) for ⌈2n/32⌉ steps (two epochs), at least ``min_steps`` and at most the recipe's 150 (so all
    5,371 pairs get exactly ``rm-tiny``'s 150 steps, 0.9 of an epoch)."""
    check_int("n", n, 2)
    check_int("min_steps", min_steps, 1)
    base = shipped_rm_config()
    steps = min(base.train.steps, max(min_steps, math.ceil(2 * n / base.batch_size)))
    return RMConfig(train=TrainConfig(steps=steps, lr=base.train.lr, warmup_steps=min(base.train.warmup_steps,
                                                                                       steps // 5), bf16=False),
                    batch_size=base.batch_size)


def label_budget_study(cfg: SyntheticConfig | None = None, budgets=BUDGETS, heldout_pairs: int | None = None,
                       min_rm_steps: int = 20, judge: str | None = None, out: str | Path | None = None,
                       progress: bool = False) -> dict:
    """The AI labeller's own label budget: the same ``n`` gold labels spent two ways.

    For each ``n`` of ``budgets``: (1) a reward model trained on the first ``n`` shipped train pairs
    (:func:`budget_rm_config`, not normalised: labelling reads only its ranking), its held-out pair accuracy (all
    of ``data/preferences/heldout.jsonl``, by kind), then the study's UltraFeedback pairs labelled by it (its own
    best-vs-random-other on the **same sampled replies** for every ``n``) and DPO on them; (2) DPO directly on
    the same ``n`` gold-labelled pairs. Both DPO runs use ``cfg``'s recipe (steps, batch, lr, β, seed) and are
    measured on the same held-out prompts, paired with SFT. ``heldout_pairs``: score the reward models on this
    many held-out pairs (``preference_data.subsample_pairs``, seed 0; ``None``: all 1,368); ``min_rm_steps``:
    :func:`budget_rm_config`'s floor (tests shrink both). ``judge``: also a generative judge's checkpoint as
    the labeller of the study's pairs (:func:`judge_labelled_dpo`, under the key ``"judge"``).

    Returns:
        A JSON-able dict: ``config``, ``budgets``, ``sft`` (row), ``points`` (one per budget: ``n``, ``rm``
        ``{"steps", "heldout_accuracy", "bayes_ceiling", "by_kind", "label_agreement", "gold_of_chosen",
        "cpu_seconds"}``: ``label_agreement`` is the share of its study pairs on which its label matches the gold
        annotator's, ``ai`` and ``direct``: each ``{"gold", "correct", "opener", "eos", "gain": {"diff", "se"},
        "pairs"}``) and ``cpu_seconds``.
    """
    t0 = time.process_time()
    cfg = cfg or synthetic_config()
    train_rows = load_preference_file("train")
    budgets = tuple(budgets)
    if not budgets or len(set(budgets)) != len(budgets):
        raise ValueError(f"budgets must be a non-empty sequence of distinct ints; got {budgets!r}")
    for n in budgets:
        check_int("budgets", n, 2, len(train_rows))
    heldout = load_preference_file("heldout")
    if heldout_pairs is not None:
        check_int("heldout_pairs", heldout_pairs, 1)
        heldout = subsample_pairs(heldout, heldout_pairs, seed=0) if heldout_pairs < len(heldout) else heldout
    check_int("min_rm_steps", min_rm_steps, 1)
    if out is not None and Path(out).suffix != ".json":
        raise ValueError(f"out must be a .json file path; got {out}")
    cfg = replace(cfg, arms=("ai", "gold"))
    first = label_pairs(cfg)  # samples the replies once (labelled here by cfg.labeller, unused but for its sampling)
    sft, tok = first.loaded.get(cfg.policy) or load_model(cfg.policy)
    (sft_row,), sft_gold = evaluate_models({"sft": sft}, tok, cfg)

    def measured(pairs):
        (row,), gold = evaluate_models({"dpo": dpo_policy(cfg, pairs)}, tok, cfg)
        gain = paired_difference(gold["dpo"], sft_gold["sft"])
        return {**{k: float(row[k]) for k in ("gold", "correct", "opener", "eos")},
                "gain": {"diff": float(gain["diff"]), "se": float(gain["se"])}, "pairs": len(pairs)}

    points = []
    for n in sorted(budgets):
        t1 = time.process_time()
        rm_cfg = budget_rm_config(n, min_rm_steps)
        rm, rm_tok, _, ev = rm_from_sft(rm_cfg, policy=cfg.policy, normalize=False, num_train_pairs=n,
                                        num_eval_pairs=heldout_pairs, progress=False)
        by_kind = accuracy_by_kind(ev, heldout) if ev.num_pairs == len(heldout) else {}
        lab = label_pairs(cfg, labeller=(rm, rm_tok), replies=first.replies)
        rm_info = {"steps": rm_cfg.train.steps, "heldout_accuracy": ev.accuracy,
                   "bayes_ceiling": ev.bayes_ceiling,
                   "by_kind": {k: by_kind[k] for k in ("taste", "correctness") if k in by_kind},
                   "label_agreement": lab.labels["agreement[ai]"], "gold_of_chosen": lab.labels["gold_of_chosen[ai]"],
                   "cpu_seconds": round(time.process_time() - t1, 1)}
        points.append({"n": n, "rm": rm_info, "ai": measured(lab.pairs["ai"]), "direct": measured(train_rows[:n])})
        if progress:
            p = points[-1]
            print(f"n {n:5d}: rm acc {ev.accuracy:.3f} (labels agree {rm_info['label_agreement']:.3f}); DPO on its "
                  f"labels {p['ai']['gain']['diff']:+.3f} ± {p['ai']['gain']['se']:.3f}, on the {n} gold labels "
                  f"{p['direct']['gain']['diff']:+.3f} ± {p['direct']['gain']['se']:.3f} "
                  f"({time.process_time() - t1:.0f} CPU-s)", flush=True)
    result = {"config": asdict(cfg), "budgets": sorted(budgets),
              "sft": {k: float(sft_row[k]) for k in ("gold", "correct", "opener", "eos")}, "points": points}
    if judge is not None:
        result["judge"] = judge_labelled_dpo(cfg, judge, progress=progress)
    result["cpu_seconds"] = round(time.process_time() - t0, 1)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def judge_labelled_dpo(cfg: SyntheticConfig | None = None, judge: str = "judge-tiny", progress: bool = False) -> dict:
    """The generative judge (``recipes.judge_model``, trained on the same 5,371 gold labels as ``rm-tiny``) as the
    labeller of the study's pairs: each pair (the AI study's best and random other) shown in a random order (a fair
    coin per pair, stream ``judge-slots-<seed>``: its position bias must not favour ``rm-tiny``'s pick), DPO on its
    verdicts with ``cfg``'s recipe, measured like :func:`label_budget_study`'s points.

    Returns ``{"judge", "pairs", "unreadable"`` (pairs over its context, left out), ``"label_agreement"`` (with the
    gold annotator's labels of the same pairs), ``"agrees_with_rm"``, ``"gold_of_chosen"``, ``"sft"`` (row),
    ``"dpo"`` ``{"gold", "correct", "opener", "eos", "gain": {"diff", "se"}, "pairs"}``, ``"cpu_seconds"}``."""
    t0 = time.process_time()
    cfg = replace(cfg or synthetic_config(), arms=("ai", "gold"))
    lab = label_pairs(cfg)
    jmodel, jtok = load_model(judge)
    j = model_judge(jmodel, jtok)
    rows = [(world.parse_prompt(x["prompt"]), x["chosen"], x["rejected"], g["chosen_was"])
            for x, g in zip(lab.pairs["ai"], lab.pairs["gold"])]  # ai: chosen = the best, shown as "A"
    keep = [r for r in rows if j.fits(*r[:3]) and j.fits(r[0], r[2], r[1])]
    if not keep:
        raise ValueError(f"judge: {judge} can read none of the study's pairs (every prompt is over its context)")
    rng = random.Random(f"judge-slots-{cfg.seed}")
    flip = [rng.random() < 0.5 for _ in keep]
    probs = [r[0] for r in keep]
    first = [r[2] if f else r[1] for r, f in zip(keep, flip)]
    second = [r[1] if f else r[2] for r, f in zip(keep, flip)]
    verdicts = j(probs, first, second)
    picks_best = [(v == "A") != f for v, f in zip(verdicts, flip)]  # the judge chose the AI study's best
    pairs = pairs_from_verdicts(probs, first, second, verdicts, label_source=judge)
    sft, tok = lab.loaded.get(cfg.policy) or load_model(cfg.policy)
    (sft_row,), sft_gold = evaluate_models({"sft": sft}, tok, cfg)
    (row,), gold = evaluate_models({"dpo": dpo_policy(cfg, pairs, progress=progress)}, tok, cfg)
    gain = paired_difference(gold["dpo"], sft_gold["sft"])
    return {"judge": judge, "pairs": len(pairs), "unreadable": len(rows) - len(keep),
            "label_agreement": sum(p == (r[3] == "A") for p, r in zip(picks_best, keep)) / len(keep),
            "agrees_with_rm": sum(picks_best) / len(keep),
            "gold_of_chosen": sum(world.gold_score(p, x["chosen"]) for p, x in zip(probs, pairs)) / len(pairs),
            "sft": {k: float(sft_row[k]) for k in ("gold", "correct", "opener", "eos")},
            "dpo": {**{k: float(row[k]) for k in ("gold", "correct", "opener", "eos")},
                    "gain": {"diff": float(gain["diff"]), "se": float(gain["se"])}, "pairs": len(pairs)},
            "cpu_seconds": round(time.process_time() - t0, 1)}


def load_budget(path: str | Path | None = None) -> dict:
    """The shipped result of :func:`label_budget_study` (:data:`BUDGET`, made by :data:`BUDGET_COMMAND`), or the one
    at ``path``; ``ValueError`` naming ``path`` when it is missing or not such a result."""
    path = Path(path) if path is not None else BUDGET
    if not path.is_file():
        raise ValueError(f"path: no label-budget study at {path}; make it with: {BUDGET_COMMAND}")
    study = json.loads(path.read_text())
    if not {"config", "budgets", "sft", "points"} <= set(study) or \
            [p.get("n") for p in study["points"]] != study["budgets"]:
        raise ValueError(f"path: {path} is not a result of label_budget_study (config, budgets, sft and one point "
                         "per budget expected)")
    return study


def main(argv: list[str] | None = None) -> None:
    """``python -m rlhfbook_lab.recipes.ai_feedback_sweep --out FILE [--fast] [--budget]``: run the sweep (or the
    label-budget study), write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m rlhfbook_lab.recipes.ai_feedback_sweep",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help=f"the .json file to write (shipped: {SWEEP})")
    parser.add_argument("--fast", action="store_true", help="synthetic_data's fast recipe (fewer prompts)")
    parser.add_argument("--budget", action="store_true", help="the label-budget study (label_budget_study) instead")
    args = parser.parse_args(argv)
    if Path(args.out).suffix != ".json":
        parser.error(f"--out: expected a .json file path; got {args.out}")
    if args.budget:
        result = label_budget_study(synthetic_config(fast=args.fast), judge="judge-tiny", out=args.out,
                                    progress=True)
        print(f"wrote {args.out}: {len(result['points'])} budgets, {result['cpu_seconds']} CPU-s")
        return
    result = dpo_sweep(synthetic_config(fast=args.fast), out=args.out, progress=True)
    print(f"wrote {args.out}: {len(result['runs'])} runs, {result['cpu_seconds']} CPU-s")


if __name__ == "__main__":
    main()
