"""``rm-check-tiny``: a reward model that checks answers and keeps taste (issue 18; ``rlhfbook-lab rm --recipe check``).

The shipped ``rm-tiny`` learned taste from preference pairs and is at chance on pairs where exactly one reply is
right. Fine-tuning one 1.8 M-parameter backbone on preference and counterfactual pairs together traded the two
against each other (``trainers.reward.mix_rm_config`` records those pilots). This recipe keeps ``rm-tiny`` as the
taste model, frozen, and adds a checker (:class:`~rlhfbook_lab.lm.reward_model.CheckingRewardModel`) that reads
``sft-tiny``'s surprise at each reply token, trained on the shipped preference pairs and their counterfactual twins
(``preference_data.counterfactual_pairs``: each reply written once right and once wrong, RRM, Liu et al. 2024) by
``trainers.checker.train_checker``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from rlhfbook_lab.lm.models import check_output_folder, load_model
from rlhfbook_lab.lm.preference_data import counterfactual_pairs
from rlhfbook_lab.lm.reward_model import CheckingRewardModel, load_reward_model, save_reward_model
from rlhfbook_lab.trainers.checker import CheckerConfig, checker_inputs, train_checker
from rlhfbook_lab.trainers.reward import (
    NORMALIZE_SETTINGS,
    evaluate_reward_model,
    heldout_summary,
    normalize_rm,
    recipe_pairs,
)

__all__ = ["CHECK_QUALITY", "checking_rm", "fit_checking_rm"]

CHECK_QUALITY = {"min_accuracy": 0.79, "min_correctness": 0.73, "max_taste_drop": 0.035}
"""``rm-check-tiny``'s stated quality on the shipped held-out pairs (``tests/test_rm_shipped.py``): accuracy at
least ``min_accuracy``, at least ``min_correctness`` on pairs where exactly one reply is right, and on taste pairs
at most ``max_taste_drop`` under ``rm-tiny``.

Shipped (``rlhfbook-lab rm --recipe check --normalize --overwrite``, 506 CPU-s at one thread, 372 of them the
frozen models' pass; measured 2026-12-04): 0.809 overall (``rm-tiny`` 0.727; Bayes ceiling 0.921, knowledge reach
0.880), 0.755 on correctness pairs (``rm-tiny`` 0.498: addition 0.900, reverse 0.877, creatures 0.637, review
0.559), 0.842 on taste pairs (``rm-tiny`` 0.866). **Issue 18's goal — 0.85, 0.80, and taste within 0.02 — is not
met.** Same-cache pilots (one thread, 2026-12-04; ±1.5 points between settings is noise of the batches' draw):
λ = 0.5: 0.798 / 0.835 / 0.736; λ = 0.7 (this recipe): 0.809 / 0.842 / 0.755; λ = 0.8: 0.793 / 0.824 / 0.743;
λ = 0.7 for 1,000 steps: 0.794 / 0.818 / 0.755; λ = 0.5 at lr 1e-3 for 1,200 steps: 0.800 / 0.841 / 0.732 (overall /
taste / correctness). Earlier scratch variants (a linear gate, a per-token MLP value, no saturating σ, an argmax
indicator feature) all landed at 0.79-0.81 overall. What limits it: review (the reference's surprise at the wrong
sentiment word is about 0.2 nats, as small as its surprise at a style choice) and creatures (``sft-tiny`` knows
about two in three); both need a reference that knows more, or a checker that reads more than surprise.

Second round of pilots (2026-12-04, one thread, on one feature cache; overall / taste / correctness). A second
reading of each reply after a prompt that asks for nothing ("Hello.") gives the *prompt gain* f_t − f⁰_t, whose first
column is the pointwise mutual information of prompt and token. Alone, summed over the reply, it orders held-out
review correctness pairs 0.958 of the time (``sft-tiny``'s raw log-probability: 0.593): at the first letter of the
wrong sentiment word it is about −5 nats, at the right one about 0. A checker with a second gated channel on it:
0.807 / 0.839 / 0.755 (review 0.636); ungated, or on its negative part only: 0.79-0.80; tanh-bounded: 0.806 / 0.841 /
0.747; a second gate network: 0.806 / 0.828 / 0.770; the counterfactual term as a per-reply classification (BCE):
0.774-0.788; the check fitted on counterfactual pairs first, then α, β, b and a temperature on the preferences:
0.794-0.808. The check logit *alone* orders the correctness pairs well (addition 0.92-0.96, reverse 0.90-0.94, review
up to 0.958, creatures 0.70-0.76), but on those pairs the taste model prefers the *wrong* reply more often than not
(review 0.424), and every combination α·r_taste + β·σ(z) that lets the check win there costs taste pairs more than 2
points (β doubled after training: 0.811 / 0.824 / 0.792). What would help next: a check calibrated per family
(right replies above 0, wrong below), or a taste model trained not to prefer wrong answers."""


def fit_checking_rm(taste_rm, reference, tokenizer, train_rows: list[dict], cfg: CheckerConfig | None = None,
                    names: dict | None = None, progress: bool = True) -> tuple[CheckingRewardModel, dict]:
    """A :class:`CheckingRewardModel` on two frozen models already in memory (``rlhfbook-lab pipeline`` builds one
    on its own SFT and reward models), its checker fitted on ``train_rows`` and their counterfactual twins.

    Returns ``(crm, history)``: ``trainers.checker.train_checker``'s history plus ``charts/feature_cpu_seconds``
    (the frozen models' pass), ``charts/cpu_seconds`` and ``charts/wall_time`` (features + fit), and the pair
    counts ``data/num_pairs`` and ``data/num_counterfactual_pairs``."""
    cfg = cfg or CheckerConfig()
    crm = CheckingRewardModel(taste_rm, reference, tokenizer.convert_tokens_to_ids("<|assistant|>"), names,
                              cfg.gate_hidden, cfg.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    cf_rows = counterfactual_pairs(train_rows).rows
    pref_in = checker_inputs(crm, tokenizer, train_rows, cfg.feature_batch_size)
    cf_in = checker_inputs(crm, tokenizer, cf_rows, cfg.feature_batch_size)
    feature_cpu = time.process_time() - c0
    history = train_checker(crm, pref_in, cf_in, cfg, progress=progress)
    history["charts/feature_cpu_seconds"] = [feature_cpu]
    history["charts/cpu_seconds"] = [time.process_time() - c0]
    history["charts/wall_time"] = [time.perf_counter() - t0]
    history["data/num_pairs"] = [len(train_rows)]
    history["data/num_counterfactual_pairs"] = [len(cf_rows)]
    return crm, history


def checking_rm(cfg: CheckerConfig | None = None, taste: str | Path = "rm-tiny", reference: str | Path = "sft-tiny",
                out: str | Path | None = None, overwrite: bool = False, normalize: bool = True,
                data_dir: str | Path | None = None, num_train_pairs: int | None = None,
                num_eval_pairs: int | None = None, progress: bool = True):
    """Build, train, evaluate and (with ``out``) save a checking reward model.

    Args:
        cfg: :class:`~rlhfbook_lab.trainers.checker.CheckerConfig` (default: its defaults, the shipped recipe).
        taste: the frozen taste reward model (a shipped name or a folder); ``reference``: the frozen language
            model whose surprise the checker reads, and the policy it is normalised on.
        out, overwrite: where to save (a small folder naming ``taste`` and ``reference``).
        normalize: normalise on ``reference``'s samples as ``rm-tiny`` is (``trainers.reward.normalize_rm``).
        data_dir: ``train.jsonl`` / ``heldout.jsonl`` (default ``data/preferences``).
        num_train_pairs, num_eval_pairs: use the first this many training pairs / a fixed subset of held-out
            pairs (fast runs).

    Returns:
        ``(crm, tokenizer, history, evaluation)`` as ``trainers.reward.rm_from_sft``'s; ``history`` adds
        ``charts/feature_cpu_seconds`` (the frozen models' pass) and ``charts/cpu_seconds`` (features + fit).
    """
    cfg = cfg or CheckerConfig()
    if out is not None:  # fail before training, not after
        out = check_output_folder(out, overwrite)
    train_rows, heldout = recipe_pairs(data_dir, num_train_pairs, num_eval_pairs)
    taste_rm, _ = load_reward_model(taste, "cpu")
    ref, tokenizer = load_model(reference, "cpu")
    crm, history = fit_checking_rm(taste_rm, ref, tokenizer, train_rows, cfg,
                                   {"taste": str(taste), "reference": str(reference)}, progress)
    cf_count, feature_cpu = history["data/num_counterfactual_pairs"][0], history["charts/feature_cpu_seconds"][0]
    evaluation = evaluate_reward_model(crm, tokenizer, heldout)
    if normalize:
        mean, std = normalize_rm(crm, tokenizer, ref)
        history["normalize/mean"], history["normalize/std"] = [mean], [std]
    if out is not None:
        meta = {"taste": str(taste), "reference": str(reference), "config": asdict(cfg),
                "num_train_pairs": len(train_rows), "num_counterfactual_pairs": cf_count,
                "train_cpu_seconds": history["charts/cpu_seconds"][0],
                "feature_cpu_seconds": feature_cpu, "train_wall_seconds": history["charts/wall_time"][0],
                "heldout": heldout_summary(evaluation, heldout),
                "normalization": ({**NORMALIZE_SETTINGS, "mean": history["normalize/mean"][0],
                                   "std": history["normalize/std"][0]} if normalize else None),
                "checker": {"alpha": crm.alpha.item(), "beta": crm.beta.item(), "bias": crm.bias.item(),
                            "value_weight": crm.value.weight.flatten().tolist()}}
        curves = {k: history[k] for k in ("step", "losses/train", "losses/preferences", "losses/counterfactual")}
        save_reward_model(crm, tokenizer, out, overwrite=overwrite,
                          extra_files={"training_meta.json": json.dumps(meta, indent=2, default=str),
                                       "training_log.json": json.dumps(curves)})
    return crm, tokenizer, history, evaluation
