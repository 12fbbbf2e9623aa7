"""A long RLVR run, logged for two plots of lesson 07: reply length over training (GRPO's per-sequence
normalisation against Dr. GRPO's constant one, Liu et al. 2025) and accuracy against training compute (the sigmoid
of "The Art of Scaling RL Compute", Khatri et al. 2025).

The R1-Zero recipe of lesson 07 §4, run ten times longer: the verifier's 0/1 reward on the train split of
addition, no KL (β = 0), from ``sft-tiny``, one algorithm per run and the same seed for every algorithm (so they
share the first rollout). Every rollout logs the lengths of its right and wrong replies and the gold judge's
rambling and repetition features (``trainers.rl.train_rl``'s history); :func:`rlvr_study` adds the cumulative
training FLOPs (``equations.flops.rl_rollout_flops``) and keeps only what the plots read, rounded, so that the
result is a small JSON file the lesson can ship and plot in fast mode
(``rlhfbook-lab rlvr-study --algo grpo --out data/reasoning/rlvr_grpo.json``).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
from torch import nn

from rlhfbook_lab.checks import check_choice, check_int, check_number
from rlhfbook_lab.equations.flops import rl_rollout_flops
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.trainers.rl import ALGORITHMS, RLConfig, train_rl

KEPT = ("step", "rewards/score", "charts/correct_rate", "charts/response_length", "charts/length_correct",
        "charts/length_wrong", "charts/extra_words", "charts/repetition", "charts/rollout_tokens", "charts/entropy",
        "kl/seq", "eval/step", "eval/correct_rate", "eval/gold_score")
"""The history keys the shipped log keeps (``train_rl``'s docstring says what each is)."""


def rlvr_study_config(algo: str = "grpo", steps: int = 200, seed: int = 0, beta: float = 0.0) -> RLConfig:
    """Lesson 07 §4's run (the ``algo`` preset, verifier reward on addition, β = 0, lr 1e-4, 16 prompts × 8
    replies) for ``steps`` rollouts, with room for replies to grow (48 tokens) and held-out greedy accuracy on
    100 addition prompts every 10 rollouts. ``beta`` > 0 adds the preset's KL penalty to ``sft-tiny`` (R1-Zero
    has none; DeepSeekMath's GRPO used β = 0.04 as a k3 loss term)."""
    check_choice("algo", algo, ALGORITHMS)
    check_int("steps", steps, minimum=1)
    check_int("seed", seed, minimum=0)
    check_number("beta", beta, minimum=0)
    return RLConfig.preset(algo, reward="verifier", families=("addition",), beta=float(beta), max_new_tokens=48,
                           eval_prompts=100, eval_every=10, eval_families=("addition",),
                           **{"train.steps": steps, "train.lr": 1e-4, "train.seed": seed})


def matmul_params(model: nn.Module) -> int:
    """N of the FLOPs formula: the weights of every matrix product (``nn.Linear``; a tied output head once)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def cumulative_flops(history: dict, model: nn.Module, cfg: RLConfig) -> list[float]:
    """Training FLOPs spent up to and including each rollout (``rl_rollout_flops`` of its tokens, the attention
    term at the rollout's mean row length)."""
    c = model.config
    n, width = matmul_params(model), c.num_attention_heads * (c.hidden_size // c.num_attention_heads)
    rows = cfg.prompts_per_step * cfg.group_size
    total, out = 0, []
    for tokens in history["charts/rollout_tokens"]:
        tokens = int(round(tokens))
        total += rl_rollout_flops(tokens, n, c.num_hidden_layers, max(1, math.ceil(tokens / rows)), width,
                                  train_passes=cfg.ppo_epochs)
        out.append(float(total))
    return out


def _rounded(x):
    """4 significant digits; NaN (a rollout with no right or no wrong reply) as None, JSON's null."""
    return x if isinstance(x, int) else (float(f"{x:.4g}") if math.isfinite(x) else None)


def rlvr_study(algo: str = "grpo", steps: int = 200, seed: int = 0, policy: str = "sft-tiny",
               progress: bool = True, beta: float = 0.0) -> dict:
    """Run :func:`rlvr_study_config` from ``policy`` and return the JSON-ready log: ``{"algo", "beta", "config"
    (the fields that differ from the GRPO preset), "policy", "matmul_params", "cpu_seconds", "history"}`` with
    ``history`` the :data:`KEPT` keys (4 significant digits; None where a rollout had no right or no wrong reply)
    plus ``flops/cumulative``."""
    cfg = rlvr_study_config(algo, steps, seed, beta)
    model, tok = load_model(policy)
    t0 = time.process_time()
    model, history = train_rl(model, tok, cfg, progress=progress)
    kept = {k: [_rounded(v) for v in history[k]] for k in KEPT}
    kept["flops/cumulative"] = [float(f"{f:.4g}") for f in cumulative_flops(history, model, cfg)]
    return {"algo": algo, "beta": cfg.beta, "policy": str(policy), "seed": seed, "steps": steps,
            "config": {k: v[0] for k, v in cfg.differs_from(RLConfig.preset("grpo")).items()},
            "matmul_params": matmul_params(model), "cpu_seconds": round(time.process_time() - t0, 1),
            "history": kept}


SHIPPED = DATA_DIR / "reasoning"
"""Where the shipped logs live: ``rlvr_<run>.json``, each written by ``rlhfbook-lab rlvr-study --algo <algo>``
(:data:`SHIPPED_RUNS` gives each run's command)."""

SHIPPED_RUNS = {
    "grpo": "rlhfbook-lab rlvr-study --algo grpo --out data/reasoning/rlvr_grpo.json",
    "dr_grpo": "rlhfbook-lab rlvr-study --algo dr_grpo --out data/reasoning/rlvr_dr_grpo.json",
    "grpo_kl": "rlhfbook-lab rlvr-study --algo grpo --beta 0.1 --out data/reasoning/rlvr_grpo_kl.json",
}
"""The shipped runs (the file stem after ``rlvr_``) and the command that wrote each: GRPO and Dr. GRPO with β = 0
(R1-Zero), and GRPO with a KL penalty."""


def load_rlvr_log(run: str = "grpo", path=None) -> dict:
    """A log :func:`rlvr_study` wrote (default: the shipped ``data/reasoning/rlvr_<run>.json``, ``run`` one of
    :data:`SHIPPED_RUNS`), with every history series as a float NumPy array (null → NaN)."""
    if path is None:
        check_choice("run", run, tuple(SHIPPED_RUNS))
        path = SHIPPED / f"rlvr_{run}.json"
    log = json.loads(open(path).read())
    log["history"] = {k: np.array([np.nan if v is None else v for v in vals], dtype=float)
                      for k, vals in log["history"].items()}
    return log


def binned(history: dict, key: str, window: int = 10, x: str = "flops/cumulative") -> tuple[np.ndarray, np.ndarray]:
    """(``x`` — by default the cumulative FLOPs — at the end of each window of ``window`` rollouts, the mean of
    ``key`` over it, NaN ignored): the points a compute-scaling fit reads (a rollout's 128 samples alone are
    noisy). A last partial window is dropped."""
    check_int("window", window, minimum=1)
    n = len(history[key]) // window * window
    if n == 0:
        raise ValueError(f"window must be at most the number of rollouts ({len(history[key])}); got {window}")
    return (np.asarray(history[x], dtype=float)[window - 1:n:window],
            np.nanmean(history[key][:n].reshape(-1, window), axis=1))
