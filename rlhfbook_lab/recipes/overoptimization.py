"""Reward-model over-optimization in miniature (RLHF Book ch. 14; Gao, Schulman & Hilton 2022), with an exact gold.

Gao et al. trained proxy reward models on labels from a 6B "gold" reward model and watched the gold score as a
policy optimised the proxy. Here the gold is the world's judge itself (``world.gold_score``), so every number is
the truth. The study (``rlhfbook-lab overopt --out DIR [--fast]``, lesson 14):

1. **Proxies.** On-policy pairs of the SFT policy (4 samples per training prompt, every two paired), labelled by the
   ``gold`` annotator (Bradley-Terry, τ = 0.1), and one proxy reward model per data size: a linear Bradley-Terry head
   on the SFT model's frozen features (lesson 11's cheap reward model, fitted exactly), normalised to mean 0 / std 1
   on the SFT policy's own replies. A nested subsample per size (``preference_data.subsample_pairs``), so the
   proxies differ only by the data added.
2. **Best-of-n** against each proxy from *one* pool of N replies per held-out prompt: for every n ≤ N the expected
   proxy and gold score of the reply the proxy picks (:func:`bon_curve`, order statistics without replacement, no
   resampling), against d = √KL_bon with KL_bon = log n − (n − 1)/n; Gao's form R(d) = d(α − βd) fitted per proxy.
3. **RL** (GRPO, ``trainers.rl``) against the smallest proxy, long enough to pass the gold peak: the proxy and gold
   scores of each rollout's own samples against d = √KL(π ‖ π_SFT) measured on those samples (``kl/seq``); Gao's
   RL form R(d) = d(α − β log d) fitted, and a fit on the first half of the run asked to predict the peak. The gold
   score is split along the run into the judge's features (w_f · feature_f): which taste the proxy exploits.
4. **Mitigations**: the same RL with a KL penalty β > 0 (``rl_betas``): where does its gold land against KL? And
   RL against an ensemble of proxies (``rl_ensemble_rules``, Coste et al. 2024: the worst case over members, or
   mean − λ·variance; :class:`EnsembleProxy`).

The result is one JSON-serialisable dict (:func:`run_overoptimization`); :func:`write_report` turns it into the
curves (PNG), the fits (JSON and a markdown table) and sample replies.

Why one module (~720 lines): the study and its report read one result dict; splitting the steps from the report
would put one schema in two files.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.best_of_n import bon_kl_analytic
from rlhfbook_lab.equations.overoptimization import (
    ENSEMBLE_RULES,
    ensemble_reward,
    fit_overoptimization,
    fit_predicts_peak,
    frontier_gap,
)
from rlhfbook_lab.equations.preferences import fit_linear_bradley_terry
from rlhfbook_lab.equations.scaling import best_of_k
from rlhfbook_lab.lm.models import check_output_folder, check_writable, load_model
from rlhfbook_lab.lm.preference_data import on_policy_pairs, subsample_pairs
from rlhfbook_lab.lm.reward_model import RewardModel, reply_features
from rlhfbook_lab.lm.sample_pool import Pool, sample_pool
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.trainers.rl import RLConfig, train_rl
from rlhfbook_lab.trainers.rl.loop import training_prompts
from rlhfbook_lab.trainers.rl.rollout import Scorer, rm_scores

__all__ = ["HISTORY", "HISTORY_COMMAND", "HISTORY_FULL", "HISTORY_FULL_COMMAND", "RECIPES", "EnsembleProxy",
           "FeatureProxy", "OveroptConfig", "bon_curve", "ensemble_bon", "ensemble_members", "fast_config",
           "fit_proxies", "fits_table", "gold_breakdown", "kl_penalty_frontier", "load_history", "peak_then_fall",
           "plot_curves", "proxy_pairs", "rank_agreement", "rl_against_proxy", "rl_baseline", "run_overoptimization",
           "samples_text", "write_report"]


@dataclass
class OveroptConfig:
    """The sizes of the over-optimization study. ``config.build(OveroptConfig, RECIPES, "fast")`` is the lesson's
    fast mode."""

    proxy_prompts: int = 800
    """Training prompts (the world's train split, families in turn) whose 4 SFT samples are paired and labelled."""
    proxy_sizes: tuple[int, ...] = (250, 500, 1000, 2000, 4000)
    """Labelled pairs per proxy reward model (nested subsets; a size above the pairs available is an error)."""
    head_alpha: float = 1.0
    """L2 penalty α of each proxy's Bradley-Terry head (``preferences.fit_linear_bradley_terry``)."""
    pool_prompts: int = 64
    """Held-out prompts of the best-of-n pool."""
    pool_size: int = 256
    """N: replies sampled per pool prompt (best-of-n for every n ≤ N)."""
    max_new_tokens: int = 48
    """Reply budget in tokens for every sample (pairs, pool, RL)."""
    rl_steps: int = 30
    """GRPO rollouts against the smallest proxy."""
    rl_prompts_per_step: int = 16
    """Prompts per rollout."""
    rl_group_size: int = 8
    """Samples per prompt (GRPO's group)."""
    rl_lr: float = 4e-4
    """GRPO's learning rate (large on purpose: the run must pass the gold peak within the budget)."""
    rl_betas: tuple[float, ...] = (0.0, 0.2)
    """KL coefficients β of the RL runs (GRPO's k3 loss); 0 is plain over-optimization, more values are the KL
    penalty as a mitigation."""
    rl_proxy_sizes: tuple[int, ...] = ()
    """Further proxies (by their pairs, each one of ``proxy_sizes``) that get an unpenalised RL run too, for Gao's
    RL fit per proxy size; the ``rl_betas`` runs are all against the smallest proxy."""
    ensemble_lambda: float = 1.0
    """λ of the ``mean-var`` ensemble rule (mean − λ·variance of the members' normalised scores)."""
    rl_baseline: bool = False
    """Also sample the SFT policy on every rollout's prompts (the same seeded stream the RL runs draw, a group
    each): the result's ``rl_baseline``, per rollout the SFT gold on those prompts, a paired baseline for the runs'
    gold (each rollout draws new prompts, so a run's own start is one rollout's prompts only)."""
    ensemble_members: int = 4
    """K: proxies in an ensemble, each fitted on its own disjoint slice of ``proxy_sizes[0]`` pairs."""
    rl_ensemble_rules: tuple[str, ...] = ()
    """Ensemble rules (of ``equations.overoptimization.ENSEMBLE_RULES``, e.g. ``"min"``, ``"mean-var"``) that each
    get an unpenalised RL run against the ensemble's reward (Coste et al. 2024); the result's ``rl_ensembles``."""
    samples_kept: int = 4
    """Sample replies kept per rollout (for start / peak / end)."""
    seed: int = 0
    """Seeds the prompts, the pairs and labels, the pool and the RL runs."""

    def __post_init__(self):
        self.proxy_sizes = tuple(self.proxy_sizes)
        self.rl_betas = tuple(self.rl_betas)
        self.rl_proxy_sizes = tuple(self.rl_proxy_sizes)
        for name in ("proxy_prompts", "pool_prompts", "pool_size", "max_new_tokens", "rl_steps", "rl_prompts_per_step",
                     "samples_kept"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("rl_group_size", self.rl_group_size, minimum=2)
        check_int("ensemble_members", self.ensemble_members, minimum=1)
        self.rl_ensemble_rules = tuple(self.rl_ensemble_rules)
        for rule in self.rl_ensemble_rules:
            if rule not in ENSEMBLE_RULES:
                raise ValueError(f"rl_ensemble_rules: {rule!r} is not one of {ENSEMBLE_RULES}")
        check_int("seed", self.seed, minimum=0)
        check_number("head_alpha", self.head_alpha, minimum=0, strict=True)
        check_number("rl_lr", self.rl_lr, minimum=0, strict=True)
        if not self.proxy_sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 2
                                       for n in self.proxy_sizes):
            raise ValueError(f"proxy_sizes must be a non-empty tuple of ints >= 2; got {self.proxy_sizes!r}")
        if max(self.proxy_sizes) > 6 * self.proxy_prompts:
            raise ValueError(f"proxy_sizes: {max(self.proxy_sizes)} pairs asked, but proxy_prompts = "
                             f"{self.proxy_prompts} give at most 6 per proxy prompt ({6 * self.proxy_prompts})")
        if not self.rl_betas:
            raise ValueError("rl_betas must hold at least one KL coefficient (0 for none)")
        for b in self.rl_betas:
            check_number("rl_betas", b, minimum=0)
        for n in self.rl_proxy_sizes:
            if n not in self.proxy_sizes:
                raise ValueError(f"rl_proxy_sizes: {n} is not one of proxy_sizes {self.proxy_sizes}")
        check_number("ensemble_lambda", self.ensemble_lambda, minimum=0)


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"proxy_prompts": 120, "proxy_sizes": (60, 120, 240, 480), "pool_prompts": 16, "pool_size": 64,
             "rl_steps": 16, "rl_prompts_per_step": 8, "rl_lr": 4e-4, "rl_betas": (0.0,)},
}
"""``"full"`` (the defaults) and ``"fast"`` (the lesson's fast mode and ``overopt --fast``)."""


# --------------------------------------------------------------------------------------------------
# Proxies: a linear Bradley-Terry head on frozen SFT features, one per data size
# --------------------------------------------------------------------------------------------------


def proxy_pairs(policy, tokenizer, cfg: OveroptConfig):
    """The proxies' training data: ``cfg.proxy_prompts`` training prompts, 4 samples of ``policy`` each, every two
    paired and labelled by the ``gold`` annotator (``preference_data.on_policy_pairs``)."""
    rng = random.Random(f"overopt-{cfg.seed}")
    problems = [world.sample_problem(world.FAMILIES[i % len(world.FAMILIES)], rng, "train")
                for i in range(cfg.proxy_prompts)]
    return on_policy_pairs(policy, tokenizer, problems, num_samples=4, seed=cfg.seed, temperature=1.0,
                           max_new_tokens=cfg.max_new_tokens, batch_size=256)


@dataclass
class FeatureProxy:
    """A proxy reward model r(x, y) = (w·φ(x, y) − μ) / s on frozen features φ (``reward_model.reply_features``)."""

    pairs: int
    """How many labelled pairs trained it."""
    weight: np.ndarray
    """w. Shape: (H,)."""
    mean: float = 0.0
    """μ: the raw mean on the reference replies it was normalised on."""
    std: float = 1.0
    """s: their raw standard deviation."""

    def score(self, features) -> np.ndarray:
        """Normalised rewards of replies from their features. Shape: (..., H) → (...)."""
        return (np.asarray(features, dtype=np.float64) @ self.weight - self.mean) / self.std

    def reward_model(self, backbone) -> RewardModel:
        """The same proxy as a :class:`RewardModel` on ``backbone`` (shared, not copied: keep it frozen), in eval
        mode: what RL scores its samples with, tokens in and reward out."""
        rm = RewardModel.from_causal_lm(backbone, copy=False).eval()
        with torch.no_grad():
            rm.head.weight.copy_(torch.as_tensor(self.weight, dtype=torch.float32)[None])
        rm.set_normalization(self.mean, self.std)
        return rm


def fit_proxies(pair_rows: list[dict], features_of, sizes, reference_features, alpha: float = 1.0,
                seed: int = 0) -> list[FeatureProxy]:
    """One :class:`FeatureProxy` per size in ``sizes``: the head fitted on the first ``size`` pairs of one fixed
    permutation (nested subsets), normalised to mean 0 / std 1 on ``reference_features``.

    Args:
        pair_rows: labelled pairs (``prompt``, ``chosen``, ``rejected``).
        features_of: ``(prompt, reply) -> φ`` (Shape (H,)), e.g. a dict's ``__getitem__``.
        sizes: pairs per proxy, each ≤ ``len(pair_rows)``.
        reference_features: φ of the reference policy's replies. Shape: (M, H).
    """
    ref = np.asarray(reference_features, dtype=np.float64)
    out = []
    for n in sizes:
        if not 2 <= n <= len(pair_rows):
            raise ValueError(f"proxy_sizes: {n} pairs asked, but there are {len(pair_rows)} labelled pairs "
                             "(raise proxy_prompts or lower the size)")
        rows = subsample_pairs(pair_rows, n, seed)
        chosen = np.stack([features_of(r["prompt"], r["chosen"]) for r in rows])
        rejected = np.stack([features_of(r["prompt"], r["rejected"]) for r in rows])
        w = fit_linear_bradley_terry(chosen, rejected, alpha=alpha)
        raw = ref @ w
        out.append(FeatureProxy(pairs=n, weight=w, mean=float(raw.mean()), std=float(raw.std()) or 1.0))
    return out


# --------------------------------------------------------------------------------------------------
# Best-of-n from one pool
# --------------------------------------------------------------------------------------------------


def bon_curve(selector, *others, n_values) -> dict[str, np.ndarray]:
    """Expected scores of best-of-n (selected by ``selector``) for every n in ``n_values``, from one pool, by order
    statistics (``equations.scaling.best_of_k``): with the pool's N replies of a prompt sorted by the selector's
    score, the best of n drawn without replacement is the i-th with probability C(i−1, n−1)/C(N, n), so

        E[s(best of n)] = Σ_i C(i−1, n−1)/C(N, n) · s_(i),     averaged over prompts,

    for the selector's own score and for every other score s of the same replies (the gold score). Exact for
    n ≤ N; no resampling. Ties in the selector are broken uniformly at random.

    Args:
        selector: the scores best-of-n maximises. Shape: (P, N).
        others: further scores of the same replies. Shape: (P, N) each.
        n_values: the n's, each in 1..N.

    Returns: ``{"n", "kl" (log n − (n − 1)/n), "d" (√kl), "selector", "others" (one row per other)}``; each
    Shape (len(n_values),) (``others``: (len(others), len(n_values))).
    """
    sel = np.asarray(selector, dtype=np.float64)
    if sel.ndim != 2 or sel.shape[1] == 0:
        raise ValueError(f"selector must have shape (P, N) (a pool of N replies per prompt); got {sel.shape}")
    rest = [np.asarray(o, dtype=np.float64) for o in others]
    for k, o in enumerate(rest):
        if o.shape != sel.shape:
            raise ValueError(f"others[{k}] must have the selector's shape {sel.shape}; got {o.shape}")
    if not all(np.all(np.isfinite(a)) for a in [sel, *rest]):
        raise ValueError("scores must be finite (no NaN or inf)")
    N = sel.shape[1]
    ns = [check_int("n", int(n) if isinstance(n, np.integer) else n, minimum=1, maximum=N) for n in n_values]
    means = [best_of_k(sel, a, ns) for a in [sel, *rest]]  # each (len(ns),)
    kl = np.asarray(bon_kl_analytic(np.array(ns)), dtype=np.float64).reshape(-1)
    return {"n": np.array(ns), "kl": kl, "d": np.sqrt(kl), "selector": means[0],
            "others": np.stack(means[1:]) if rest else np.zeros((0, len(ns)))}


def rank_agreement(scores, gold) -> float:
    """How often a scorer orders two replies to the same prompt as the gold judge does: over every pair (i, j)
    of a prompt's pool with different gold scores, the share with sign(s_i − s_j) = sign(g_i − g_j) (a tie in s
    counts ½), pooled over prompts. 0.5 is chance, 1 the gold ranking.

    Args:
        scores, gold: Shape (P, N).
    """
    s, g = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if s.shape != g.shape or s.ndim != 2:
        raise ValueError(f"scores and gold must both have shape (P, N); got {s.shape} and {g.shape}")
    agree = total = 0.0
    for sp, gp in zip(s, g):
        ds, dg = np.sign(sp[:, None] - sp[None, :]), np.sign(gp[:, None] - gp[None, :])
        counted = dg != 0
        agree += float(((ds == dg) + 0.5 * (ds == 0))[counted].sum())
        total += float(counted.sum())
    if total == 0:
        raise ValueError("gold gives every reply of every prompt the same score: nothing to rank")
    return agree / total


def ensemble_members(pair_rows, features_of, reference_features, cfg: OveroptConfig) -> list[FeatureProxy]:
    """The ensemble's ``cfg.ensemble_members`` proxies of ``cfg.proxy_sizes[0]`` pairs each, fitted on disjoint
    slices of one fixed shuffle of the labelled pairs (the smallest proxy's data budget, ×K); ``[]`` when there are
    too few pairs for them. Arguments as in :func:`fit_proxies`."""
    size, k_members = cfg.proxy_sizes[0], cfg.ensemble_members
    if k_members * size > len(pair_rows):
        return []
    shuffled = subsample_pairs(pair_rows, len(pair_rows), cfg.seed + 1)
    return [fit_proxies(shuffled[k * size:(k + 1) * size], features_of, [size], reference_features,
                        alpha=cfg.head_alpha, seed=cfg.seed)[0] for k in range(k_members)]


@dataclass
class EnsembleProxy:
    """Coste et al. 2024's ensemble reward over :class:`FeatureProxy` members that read the same frozen features:
    R(x, y) = ``ensemble_reward``([r_1(φ), …, r_K(φ)], rule, λ) (e.g. ``min``: the worst case over members)."""

    members: list[FeatureProxy]
    """The K members (each normalised to mean 0 / std 1 on the reference replies)."""
    rule: str
    """One of ``equations.overoptimization.ENSEMBLE_RULES``."""
    lam: float = 1.0
    """λ of the ``mean-var`` rule."""

    def score(self, features) -> np.ndarray:
        """The ensemble's rewards of replies from their features. Shape: (..., H) → (...)."""
        if not self.members:
            raise ValueError("members: an ensemble needs at least one proxy")
        return ensemble_reward(np.stack([m.score(features) for m in self.members]), self.rule, lam=self.lam)

    def scorer(self, feature_rm: RewardModel):
        """``(input_ids, attention_mask, texts) -> (B,)`` rewards in the RL sampler's layout: one forward pass of
        ``feature_rm``'s frozen backbone, its head's input φ captured (as ``reward_model.reply_features`` does) and
        read by every member; an empty reply gets ``EMPTY_RESPONSE_SCORE``."""
        def score(input_ids, attention_mask, texts) -> torch.Tensor:
            captured: list[torch.Tensor] = []
            handle = feature_rm.head.register_forward_hook(lambda m, args, out: captured.append(args[0].float().cpu()))
            try:
                rm_scores(feature_rm, input_ids, attention_mask, texts)
            finally:
                handle.remove()
            r = self.score(torch.cat(captured).double().numpy())
            empty = np.array([not t.strip() for t in texts])
            return torch.as_tensor(np.where(empty, world.EMPTY_RESPONSE_SCORE, r), dtype=torch.float32)
        return score


def ensemble_bon(pair_rows, features_of, pool_feats, empty, gold, cfg: OveroptConfig, n_values) -> dict:
    """Best-of-n gold under each ensemble rule (``equations.overoptimization.ensemble_reward``, λ =
    ``cfg.ensemble_lambda``), the members those of :func:`ensemble_members`.
    Returns ``{rule: {"n", "d", "gold"}}``; ``{}`` when there are too few pairs for the members."""
    members = ensemble_members(pair_rows, features_of, pool_feats[~empty], cfg)
    if not members:
        return {}
    scores = [np.where(empty, world.EMPTY_RESPONSE_SCORE, m.score(pool_feats)) for m in members]
    out = {}
    for rule in ENSEMBLE_RULES:
        curve = bon_curve(ensemble_reward(scores, rule, lam=cfg.ensemble_lambda), gold, n_values=n_values)
        out[rule] = {"n": curve["n"].tolist(), "d": curve["d"].tolist(), "gold": curve["others"][0].tolist()}
    return out


# --------------------------------------------------------------------------------------------------
# RL against a proxy
# --------------------------------------------------------------------------------------------------


def gold_breakdown(prompts: list[str], replies: list[str]) -> dict[str, float]:
    """The mean gold score of the replies split into the judge's features: ``{feature: mean of w_f ·
    feature_f}`` (their sum is the mean gold score); an empty reply counts as ``EMPTY_RESPONSE_SCORE`` under
    ``"empty"``."""
    sums = {f: 0.0 for f in world.FEATURES}
    sums["empty"] = 0.0
    for p, r in zip(prompts, replies):
        if not r.strip():
            sums["empty"] += world.EMPTY_RESPONSE_SCORE
            continue
        for f, v in world.taste_features(p, r).items():
            sums[f] += world.GOLD_WEIGHTS[f] * v
    return {f: v / max(1, len(replies)) for f, v in sums.items()}


def _rl_config(cfg: OveroptConfig, beta: float) -> RLConfig:
    return RLConfig.preset("grpo", beta=beta, eval_prompts=0, prompts_per_step=cfg.rl_prompts_per_step,
                           group_size=cfg.rl_group_size, max_new_tokens=cfg.max_new_tokens,
                           **{"train.steps": cfg.rl_steps, "train.lr": cfg.rl_lr, "train.seed": cfg.seed})


def rl_baseline(policy, tokenizer, cfg: OveroptConfig) -> dict[str, list]:
    """The start policy's gold on every rollout's prompts: the RL runs' seeded prompt stream
    (``trainers.rl.loop.training_prompts``), ``cfg.rl_group_size`` samples of ``policy`` per prompt
    (``lm.sample_pool``); per rollout the mean gold and its standard error. A run's gold minus this, rollout by
    rollout, is its gain with the prompts' difficulty paired out."""
    draw = training_prompts(_rl_config(cfg, 0.0))
    prompts = [p for _ in range(cfg.rl_steps) for p in draw()]
    pool = sample_pool(policy, tokenizer, [world.parse_prompt(p) for p in prompts], n=cfg.rl_group_size,
                       max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    g = np.asarray(pool.gold, dtype=np.float64).reshape(cfg.rl_steps, -1)  # (steps, prompts × group)
    return {"gold": g.mean(axis=1).tolist(), "gold_se": (g.std(axis=1, ddof=1) / math.sqrt(g.shape[1])).tolist()}


def rl_against_proxy(policy, tokenizer, proxy_rm, cfg: OveroptConfig, beta: float = 0.0,
                     progress: bool = False) -> dict[str, list]:
    """GRPO from ``policy`` (trained in place) against ``proxy_rm`` (a :class:`RewardModel`, or a function
    ``(input_ids, attention_mask, texts) -> (B,)`` such as :meth:`EnsembleProxy.scorer`); per rollout, on the
    rollout's own samples: the proxy's mean score, the gold score's mean and standard error, KL(π ‖ π_start) in
    nats per reply (k1, ``kl/seq``) and d = √max(KL, 0), the gold split by feature (:func:`gold_breakdown`), and
    ``cfg.samples_kept`` sample (prompt, reply) pairs. Lists of one value per rollout."""
    trace: dict[str, list] = {"proxy": [], "gold": [], "gold_se": [], "samples": [], "features": []}

    def score(prompts, texts, input_ids, attention_mask):
        s = (rm_scores(proxy_rm, input_ids, attention_mask, texts) if isinstance(proxy_rm, RewardModel)
             else proxy_rm(input_ids, attention_mask, texts))
        g = np.array([world.gold_score(p, t, allow_empty=True) for p, t in zip(prompts, texts)])
        trace["proxy"].append(float(s.mean()))
        trace["gold"].append(float(g.mean()))
        trace["gold_se"].append(float(g.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else 0.0)
        trace["features"].append(gold_breakdown(prompts, texts))
        step = max(1, len(texts) // cfg.samples_kept)
        trace["samples"].append([[prompts[i], texts[i]] for i in range(0, len(texts), step)][:cfg.samples_kept])
        return s

    _, history = train_rl(policy, tokenizer, _rl_config(cfg, beta), reward_fn=Scorer(score), progress=progress)
    trace["kl"] = [float(k) for k in history["kl/seq"]]
    trace["d"] = [math.sqrt(max(k, 0.0)) for k in trace["kl"]]
    trace["beta"] = beta
    return trace


# --------------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------------


def _fit_dict(fit) -> dict:
    return {"alpha": fit.alpha, "beta": fit.beta, "r2": fit.r2, "peak_d": fit.peak_d, "peak_kl": fit.peak_kl,
            "peak_value": fit.peak_value, "start_value": fit.start_value}


def peak_then_fall(gold, gold_se, smooth: int = 1) -> dict:
    """Where a run's gold score peaked and how far it fell: the peak is the highest (``smooth``-point running mean)
    rollout, the final value the last ``smooth`` rollouts' mean; ``fall_in_se`` is (peak − final) / the final
    value's standard error (that of a mean of ``smooth`` rollouts)."""
    g, se = np.asarray(gold, dtype=np.float64), np.asarray(gold_se, dtype=np.float64)
    k = check_int("smooth", smooth, minimum=1, maximum=len(g))
    run = np.convolve(g, np.ones(k) / k, mode="valid")
    peak_i = int(np.argmax(run))
    final = float(run[-1])
    final_se = float(np.sqrt((se[-k:] ** 2).sum()) / k)
    return {"peak_index": peak_i + k // 2, "peak": float(run[peak_i]), "final": final, "final_se": final_se,
            "start": float(g[0]), "fall": float(run[peak_i]) - final,
            "fall_in_se": (float(run[peak_i]) - final) / final_se if final_se > 0 else math.inf}


def _finish_run(trace: dict, proxy_pairs: int, t0: float) -> dict:
    """Add to an RL trace its proxy's pairs, its seconds, d[0] = 0, Gao's RL fit, the first-half prediction and
    :func:`peak_then_fall`."""
    trace["proxy_pairs"] = proxy_pairs
    trace["seconds"] = time.perf_counter() - t0
    d, g = np.array(trace["d"]), np.array(trace["gold"])
    d[0] = 0.0  # the first rollout samples the start policy itself: KL is 0 (k1's estimate is exactly 0 there)
    trace["d"] = d.tolist()
    try:
        trace["fit"] = _fit_dict(fit_overoptimization(d, g, form="rl", subtract_start=True))
        pred = fit_predicts_peak(d, g, form="rl", fraction=0.5, subtract_start=True)
        trace["first_half"] = {"n_points": pred.n_fit_points, "predicted_peak_d": pred.predicted_peak_d,
                               "predicted_peak_value": pred.predicted_peak_value,
                               "observed_peak_d": pred.observed_peak_d, "observed_peak_value": pred.observed_peak_value}
    except ValueError as e:  # a run that never moved (β large): no fit
        trace["fit"] = trace["first_half"] = {"error": str(e)}
    trace["peak"] = peak_then_fall(g, trace["gold_se"])
    return trace


def _run_line(trace: dict, what: str) -> str:
    p = trace["peak"]
    return (f"{what}: gold {p['start']:+.3f} → peak {p['peak']:+.3f} → {p['final']:+.3f} ± {p['final_se']:.3f}; "
            f"proxy {trace['proxy'][0]:+.2f} → {trace['proxy'][-1]:+.2f} ({trace['seconds']:.0f} s)")


def run_overoptimization(cfg: OveroptConfig | None = None, policy: str = "sft-tiny", pool=None,
                         progress: bool = False, log=print) -> dict:
    """Run the study (module docstring) and return its result as a JSON-serialisable dict.

    Why one function (~100 lines): the study's steps in the module docstring's order (proxies, best-of-n, RL, the
    KL-penalty mitigation), each a call of a function here followed by the entries it adds to the result.

    Args:
        cfg: sizes (:class:`OveroptConfig`; default the full recipe).
        policy: the SFT model RL starts from and whose replies everything is about (a shipped name or folder).
        pool: an ``lm.sample_pool.Pool`` of ``policy``'s replies to reuse; default ``sample_pool`` on
            ``cfg.pool_prompts`` held-out prompts, ``cfg.pool_size`` replies each.
        log: where progress lines go (``print``; ``None`` for silence).
    """
    cfg = cfg or OveroptConfig()
    say = log or (lambda *a, **k: None)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    sft, tok = load_model(policy)
    sft.eval()
    feature_rm = RewardModel.from_causal_lm(sft, copy=True).eval()  # frozen SFT backbone: the proxies' features

    t0 = time.perf_counter()
    pairs = proxy_pairs(sft, tok, cfg)
    if pool is None:
        pool = sample_pool(sft, tok, world.heldout_prompts(cfg.pool_prompts, seed=cfg.seed), n=cfg.pool_size,
                           max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)
    elif not isinstance(pool, Pool):
        raise ValueError(f"pool must be an lm.sample_pool.Pool of {policy}'s replies; got {type(pool).__name__}")
    problems, replies = pool.problems, pool.replies
    seconds["sampling"] = time.perf_counter() - t0
    say(f"pairs: {pairs.counts}; pool: {len(problems)} prompts × {len(replies[0])} replies")

    t0 = time.perf_counter()
    texts = sorted({(r["prompt"], r[s]) for r in pairs.rows for s in ("chosen", "rejected")}
                   | {(p.prompt, y) for p, ys in zip(problems, replies) for y in ys if y.strip()})
    feats = reply_features(feature_rm, tok, [p for p, _ in texts], [y for _, y in texts], batch_size=256)
    feats = feats.double().numpy()
    index = {t: i for i, t in enumerate(texts)}
    seconds["features"] = time.perf_counter() - t0

    P, N = len(problems), len(replies[0])
    pool_feats = np.zeros((P, N, feats.shape[1]))
    gold = pool.gold
    empty = np.zeros((P, N), dtype=bool)
    for a, (p, ys) in enumerate(zip(problems, replies)):
        for b, y in enumerate(ys):
            empty[a, b] = not y.strip()
            if not empty[a, b]:
                pool_feats[a, b] = feats[index[p.prompt, y]]
    proxies = fit_proxies(pairs.rows, lambda p, y: feats[index[p, y]], cfg.proxy_sizes, pool_feats[~empty],
                          alpha=cfg.head_alpha, seed=cfg.seed)

    n_values = sorted({int(round(x)) for x in np.geomspace(1, N, num=min(N, 24))})
    bon = {}
    for proxy in proxies:
        proxy_scores = np.where(empty, world.EMPTY_RESPONSE_SCORE, proxy.score(pool_feats))
        curve = bon_curve(proxy_scores, gold, n_values=n_values)
        fit = fit_overoptimization(curve["d"], curve["others"][0], form="bon", subtract_start=True)
        bon[str(proxy.pairs)] = {"pairs": proxy.pairs, "rank_agreement": rank_agreement(proxy_scores, gold),
                                 "n": curve["n"].tolist(), "kl": curve["kl"].tolist(),
                                 "d": curve["d"].tolist(), "proxy": curve["selector"].tolist(),
                                 "gold": curve["others"][0].tolist(), "fit": _fit_dict(fit)}
    gold_curve = bon_curve(gold, n_values=n_values)  # best-of-n by the gold judge itself: the ceiling
    ensembles = ensemble_bon(pairs.rows, lambda p, y: feats[index[p, y]], pool_feats, empty, gold, cfg, n_values)
    say("best-of-n: " + ", ".join(f"{k} pairs α={v['fit']['alpha']:.3f} β={v['fit']['beta']:.3f} "
                                  f"R²={v['fit']['r2']:.2f}" for k, v in bon.items()))

    baseline = rl_baseline(sft, tok, cfg) if cfg.rl_baseline else None
    runs = []
    by_pairs = {p.pairs: p for p in proxies}
    plan = [(proxies[0], beta) for beta in cfg.rl_betas]
    plan += [(by_pairs[n], 0.0) for n in cfg.rl_proxy_sizes if (n, 0.0) != (proxies[0].pairs, cfg.rl_betas[0])]
    for proxy, beta in plan:
        t0 = time.perf_counter()
        trace = rl_against_proxy(load_model(policy)[0], tok, proxy.reward_model(feature_rm.backbone), cfg,
                                 beta=beta, progress=progress)
        runs.append(_finish_run(trace, proxy.pairs, t0))
        say(_run_line(trace, f"RL {proxy.pairs} pairs β={beta}"))
    ens_runs = []
    members = ensemble_members(pairs.rows, lambda p, y: feats[index[p, y]], pool_feats[~empty], cfg)
    if cfg.rl_ensemble_rules and not members:
        raise ValueError(f"rl_ensemble_rules: {cfg.ensemble_members} members × {cfg.proxy_sizes[0]} pairs need more "
                         f"than the {len(pairs.rows)} labelled pairs (raise proxy_prompts)")
    for rule in cfg.rl_ensemble_rules:
        t0 = time.perf_counter()
        ensemble = EnsembleProxy(members, rule, lam=cfg.ensemble_lambda)
        trace = rl_against_proxy(load_model(policy)[0], tok, ensemble.scorer(feature_rm), cfg, progress=progress)
        trace.update(rule=rule, members=len(members))
        ens_runs.append(_finish_run(trace, cfg.proxy_sizes[0], t0))
        say(_run_line(trace, f"RL ensemble {rule} of {len(members)}×{cfg.proxy_sizes[0]} pairs"))
    seconds["total"] = time.perf_counter() - t_start
    return {"config": asdict(cfg), "policy": policy, "pairs": pairs.counts,
            "pool": {"prompts": P, "size": N, "gold_bon": {"n": gold_curve["n"].tolist(),
                                                           "gold": gold_curve["selector"].tolist()}},
            "bon": bon, "ensembles": ensembles, "rl": runs, "seconds": seconds,
            **({"rl_ensembles": ens_runs} if ens_runs else {}), **({"rl_baseline": baseline} if baseline else {})}


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def fits_table(result: dict) -> str:
    """The fitted α, β and R² per proxy (best-of-n) and per RL run, as a markdown table."""
    lines = ["| method | proxy pairs | β_KL | α | β | R² | peak d (KL) | gold peak gain |",
             "|---|---|---|---|---|---|---|---|"]
    for v in result["bon"].values():
        f = v["fit"]
        lines.append(f"| best-of-n | {v['pairs']} | – | {f['alpha']:.3f} | {f['beta']:.3f} | {f['r2']:.3f} | "
                     f"{f['peak_d']:.2f} ({f['peak_kl']:.2f}) | {f['peak_value']:+.3f} |")
    small = result["bon"][next(iter(result["bon"]))]["pairs"]
    for run in result["rl"]:
        f, pairs = run["fit"], run.get("proxy_pairs", small)
        if "error" in f:
            lines.append(f"| RL (GRPO) | {pairs} | {run['beta']} | – | – | – | – | – |")
            continue
        lines.append(f"| RL (GRPO) | {pairs} | {run['beta']} | {f['alpha']:.3f} | {f['beta']:.3f} | {f['r2']:.3f} | "
                     f"{f['peak_d']:.2f} ({f['peak_kl']:.2f}) | {f['peak_value']:+.3f} |")
    for run in result.get("rl_ensembles", []):
        f, what = run["fit"], f"RL, ensemble {run['rule']}"
        pairs = f"{run['members']}×{run['proxy_pairs']}"
        lines.append(f"| {what} | {pairs} | 0.0 | – | – | – | – | – |" if "error" in f else
                     f"| {what} | {pairs} | 0.0 | {f['alpha']:.3f} | {f['beta']:.3f} | {f['r2']:.3f} | "
                     f"{f['peak_d']:.2f} ({f['peak_kl']:.2f}) | {f['peak_value']:+.3f} |")
    return "\n".join(lines) + "\n"


def samples_text(result: dict) -> str:
    """Sample replies of each RL run at the start, the gold peak and the end."""
    out = []
    for run in result["rl"]:
        i_peak = run["peak"]["peak_index"]
        for label, i in (("start", 0), ("peak", i_peak), ("end", len(run["gold"]) - 1)):
            out.append(f"## proxy of {run.get('proxy_pairs', '?')} pairs, β = {run['beta']} · "
                       f"{label} (rollout {i + 1}): gold {run['gold'][i]:+.3f}, proxy "
                       f"{run['proxy'][i]:+.2f}, KL {run['kl'][i]:.2f} nats\n")
            out += [f"- {p!r} → {y!r}" for p, y in run["samples"][i]]
            out.append("")
    return "\n".join(out)


def plot_curves(result: dict, path=None):
    """Three panels: best-of-n proxy and gold vs d per proxy size (with the fits), RL proxy and gold vs d (with the
    RL-form fit), and the gold split by feature along the RL run. Returns the figure."""
    import matplotlib  # deferred: plotting only where a figure is asked for
    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # deferred: as above

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    ax = axes[0]
    for k, (key, v) in enumerate(result["bon"].items()):
        c = f"C{k}"
        d = np.array(v["d"])
        ax.plot(d, np.array(v["gold"]) - v["gold"][0], "o-", color=c, ms=3, label=f"gold, proxy of {key} pairs")
        ax.plot(d, np.array(v["proxy"]) - v["proxy"][0], ":", color=c, lw=1)
        dd = np.linspace(0, d.max(), 100)
        ax.plot(dd, v["fit"]["alpha"] * dd - v["fit"]["beta"] * dd ** 2, "--", color=c, lw=1)
    ax.set_xlabel("d = √KL(best-of-n ‖ SFT)")
    ax.set_ylabel("score gain over n = 1")
    ax.set_title("Best-of-n: gold (solid) vs proxy (dotted), fits dashed")
    ax.legend(fontsize=7)
    run = result["rl"][0]
    ax = axes[1]
    d = np.array(run["d"])
    ax.plot(d, np.array(run["proxy"]) - run["proxy"][0], "s:", color="C1", ms=3, label="proxy (normalised)")
    ax.errorbar(d, np.array(run["gold"]) - run["gold"][0], yerr=run["gold_se"], fmt="o-", color="C0", ms=3,
                label="gold")
    if "alpha" in run["fit"]:
        dd = np.linspace(1e-3, d.max(), 200)
        ax.plot(dd, dd * (run["fit"]["alpha"] - run["fit"]["beta"] * np.log(dd)), "--", color="C0", lw=1,
                label=f"fit d(α − β log d), R² {run['fit']['r2']:.2f}")
    for k, extra in enumerate(result["rl"][1:]):
        what = (f"KL penalty β = {extra['beta']}" if extra.get("proxy_pairs", run.get("proxy_pairs")) ==
                run.get("proxy_pairs") else f"proxy of {extra['proxy_pairs']} pairs")
        ax.plot(extra["d"], np.array(extra["gold"]) - extra["gold"][0], "^-", ms=3, color=f"C{k + 2}",
                label=f"gold, {what}")
    ax.set_xlabel("d = √KL(π ‖ SFT), on the policy's own samples")
    ax.set_ylabel("score gain over the start")
    ax.set_title(f"RL against the {result['bon'][next(iter(result['bon']))]['pairs']}-pair proxy")
    ax.legend(fontsize=7)
    ax = axes[2]
    feats = [f for f in run["features"][0] if any(abs(step[f]) > 1e-9 for step in run["features"])]
    for f in feats:
        ax.plot(range(1, len(run["features"]) + 1), [step[f] for step in run["features"]], label=f)
    ax.plot(range(1, len(run["gold"]) + 1), run["gold"], "k-", lw=2, label="gold (sum)")
    ax.set_xlabel("rollout")
    ax.set_ylabel("mean w_f · feature_f")
    ax.set_title("Which taste the proxy exploits")
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def write_report(result: dict, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``result.json``, ``fits.json``, ``fits.md``, ``samples.md`` and ``curves.png`` into ``out``."""
    out = check_output_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    fits = {"bon": {k: v["fit"] for k, v in result["bon"].items()},
            "rl": [{"beta": r["beta"], "fit": r["fit"], "first_half": r["first_half"], "peak": r["peak"]}
                   for r in result["rl"]]}
    (out / "fits.json").write_text(json.dumps(fits, indent=2))
    (out / "fits.md").write_text(fits_table(result))
    (out / "samples.md").write_text(samples_text(result))
    plot_curves(result, out / "curves.png")
    return out


def kl_penalty_frontier(result: dict) -> list[dict]:
    """The KL penalty against gold, per penalised RL run (β > 0): where it stopped (final d) against the
    unpenalised run on the same proxy, and its gold at matched d (``equations.overoptimization.frontier_gap``,
    the unpenalised run as the reference curve, both runs' rollout means). Gao et al. 2022 found the penalty acts
    like early stopping: a smaller final d, a gap within the noise. Returns one dict per penalised run."""
    runs = result["rl"]
    out = []
    for run in runs:
        if run["beta"] == 0:
            continue
        pairs = run.get("proxy_pairs")
        ref = next((r for r in runs if r["beta"] == 0 and r.get("proxy_pairs") == pairs), None)
        if ref is None:
            continue
        gap = frontier_gap(ref["d"], ref["gold"], run["d"], run["gold"])
        se = float(np.sqrt(np.mean(np.square(run["gold_se"])) / max(1, gap["matched"])))
        out.append({"beta": run["beta"], "proxy_pairs": pairs, **gap, "gap_se": se,
                    "final_gold": run["peak"]["final"], "final_gold_ref": ref["peak"]["final"],
                    "peak_gold": run["peak"]["peak"], "peak_gold_ref": ref["peak"]["peak"]})
    return out


HISTORY = DATA_DIR / "overopt" / "history.json"
"""The study's result as shipped (lesson 14 plots and asserts from it; ``RLHFBOOK_LIVE=1`` reruns it live)."""

HISTORY_COMMAND = ("OMP_NUM_THREADS=1 rlhfbook-lab overopt --out /tmp/overopt --fast --rl-betas 0,0.3 "
                   "&& cp /tmp/overopt/result.json data/overopt/history.json")
"""The command that regenerates :data:`HISTORY` (its ``seconds`` record how long it took): 125 CPU-s, measured once
on 2026-12-03 (1,120 s wall on a heavily shared 2-core machine)."""


HISTORY_FULL = DATA_DIR / "overopt" / "history_full.json"
"""The study at larger sizes as shipped (lesson 14's full mode): a 256-reply pool, proxies of 100 … 1,500 pairs, an
unpenalised RL run against every proxy (Gao's RL fit per proxy size), a KL-penalised one, RL against the
``min`` and ``mean-var`` ensembles of four 100-pair proxies, and ``rl_baseline`` (the SFT gold per rollout)."""

HISTORY_FULL_COMMAND = ("OMP_NUM_THREADS=1 rlhfbook-lab overopt --out /tmp/overopt_full --proxy-prompts 400 "
                        "--proxy-sizes 100,250,600,1500 --pool-prompts 32 --pool-size 256 --rl-steps 24 "
                        "--rl-prompts-per-step 12 --rl-lr 2e-4 --rl-betas 0,0.3 --rl-proxy-sizes 250,600,1500 "
                        "--rl-ensemble-rules min,mean-var --rl-baseline true "
                        "&& cp /tmp/overopt_full/result.json data/overopt/history_full.json")
"""The command that regenerates :data:`HISTORY_FULL` (its ``seconds`` record how long it took): 634 CPU-s, measured
once on 2026-12-03 (789 s wall on the shared 2-core machine)."""


def load_history(path: str | Path | None = None, full: bool = False) -> dict:
    """The shipped result of :func:`run_overoptimization`: :data:`HISTORY` (made by :data:`HISTORY_COMMAND`), or
    with ``full`` :data:`HISTORY_FULL` (made by :data:`HISTORY_FULL_COMMAND`), or the one at ``path``."""
    path = Path(path) if path is not None else (HISTORY_FULL if full else HISTORY)
    if not path.is_file():
        raise ValueError(f"path: no over-optimization history at {path}; make it with: "
                         f"{HISTORY_FULL_COMMAND if full else HISTORY_COMMAND}")
    result = json.loads(path.read_text())
    missing = {"config", "bon", "ensembles", "rl", "pool"} - set(result)
    if missing:
        raise ValueError(f"path: {path} is not a result of run_overoptimization (missing {sorted(missing)})")
    return result


def fast_config(**overrides) -> OveroptConfig:
    """The fast recipe (``RECIPES["fast"]``) with overrides."""
    return build(OveroptConfig, RECIPES, "fast", **overrides)
