"""Over-optimization against a *fine-tuned* proxy (RLHF Book ch. 14): GRPO from ``sft-tiny`` with the shipped reward
model ``rm-tiny`` as its only reward (no KL penalty), long enough to pass the gold peak.

The study in ``recipes.overoptimization`` uses cheap proxies (linear heads on frozen features). ``rm-tiny`` is a
whole fine-tuned reward model: it agrees with gold labels on 73 % of held-out pairs, but on pairs where exactly one
reply is correct it is at chance, and it likes a pile of polite openers (lesson 12). RL against it first gains gold
(the opener it rewards is worth +0.20 to the gold judge too), then loses far more than it gained: the proxy keeps
climbing while correctness collapses. The run is one ``rlhfbook-lab rl`` call whose training log is shipped
(:data:`RM_RUN`, made by :data:`RM_RUN_COMMAND`); :func:`rm_run_curves` reads it as Gao et al.'s curves: the proxy
and the gold score against d = √KL(π ‖ π_SFT), KL measured on each rollout's own samples (``kl/seq``), with the RL
form R(d) = d(α − β log d) fitted to each (``equations.overoptimization.fit_overoptimization``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlhfbook_lab.equations.overoptimization import fit_overoptimization
from rlhfbook_lab.paths import DATA_DIR

__all__ = ["RM_RUN", "RM_RUN_COMMAND", "load_rm_run", "rm_run_curves"]

RM_RUN = DATA_DIR / "overopt" / "rl_rm_tiny.json"
"""The shipped training log of the run (``training_log.json`` of :data:`RM_RUN_COMMAND`'s output folder)."""

RM_RUN_COMMAND = ("OMP_NUM_THREADS=1 rlhfbook-lab rl --algo grpo --reward rm --beta 0 --steps 120 --eval-every 10 "
                  "--eval-prompts 200 --out /tmp/rl_rm && cp /tmp/rl_rm/training_log.json data/overopt/rl_rm_tiny.json")
"""The command that makes :data:`RM_RUN`: 512 CPU-s, measured once on 2026-12-03."""

_KEYS = ("rewards/score", "charts/gold_score", "kl/seq", "eval/step", "eval/gold_score", "eval/correct_rate")


def load_rm_run(path: str | Path | None = None) -> dict:
    """The shipped training log (:data:`RM_RUN`), checked for the keys :func:`rm_run_curves` reads."""
    path = Path(path) if path is not None else RM_RUN
    if not path.is_file():
        raise ValueError(f"path: no training log at {path}; make it with: {RM_RUN_COMMAND}")
    log = json.loads(path.read_text())
    missing = [k for k in _KEYS if k not in log]
    if missing:
        raise ValueError(f"path: {path} is not an `rlhfbook-lab rl` training log (missing {missing})")
    return log


def rm_run_curves(log: dict) -> dict:
    """Gao's curves from a training log (:func:`load_rm_run`).

    Per rollout t (arrays of length T): ``d`` = √max(KL_t, 0) with d_0 = 0 (the first rollout samples the start
    policy), ``proxy`` (the reward model's mean score) and ``gold`` of the rollout's own samples.
    At each held-out evaluation e (every 10 rollouts, greedy replies to 200 held-out prompts): ``eval_step``,
    ``eval_gold``, ``eval_correct``, and ``eval_d``: d of the rollout at that step (the evaluation after the last
    rollout has none and is left out). ``fit_gold`` / ``fit_proxy``: R(d) = d(α − β log d) fitted to the per-rollout
    gold and proxy scores with R(0) = 0 (their start subtracted)."""
    d = np.sqrt(np.maximum(np.asarray(log["kl/seq"], dtype=float), 0.0))
    d[0] = 0.0
    T = len(d)
    steps = np.asarray(log["eval/step"])
    keep = steps < T
    out = {"d": d, "proxy": np.asarray(log["rewards/score"], dtype=float),
           "gold": np.asarray(log["charts/gold_score"], dtype=float),
           "eval_step": steps[keep], "eval_d": d[steps[keep]],
           "eval_gold": np.asarray(log["eval/gold_score"], dtype=float)[keep],
           "eval_correct": np.asarray(log["eval/correct_rate"], dtype=float)[keep]}
    out["fit_gold"] = fit_overoptimization(d, out["gold"], form="rl", subtract_start=True)
    out["fit_proxy"] = fit_overoptimization(d, out["proxy"], form="rl", subtract_start=True)
    return out
