"""Best-of-n as a policy (RLHF Book ch. 9 and 14): its exact distribution, its KL from the base policy, its
expected score, and how to estimate them from one prompt's pool of sampled replies.

Plain NumPy, float64, deterministic.

Best-of-n sampling draws n replies from π, scores them, and keeps the best. It is itself a policy, π_bon, so
one can ask how far it moved from π. The usual answer, KL(π_bon ‖ π) = log n − (n − 1)/n (Stiennon et al. 2020,
appendix; used by Gao et al. 2022 to put best-of-n on the same KL axis as RL), is exact only when no two replies
tie; Beirami et al. 2024 ("Theoretical guarantees on the best-of-n alignment policy") show it is an upper bound.
For a discrete policy (finitely many replies, possibly tied scores) this module computes π_bon, and so its KL,
exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhfbook_lab.equations.scaling import tie_group_bounds

__all__ = [
    "EmpiricalPolicy",
    "bon_distribution",
    "bon_expected_score",
    "bon_kl_analytic",
    "bon_kl_exact",
    "empirical_policy",
]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (the number of samples best-of-n draws); got {n!r}")
    return int(n)


def bon_kl_analytic(n):
    """The closed-form KL of best-of-n from its base policy,

        KL(π_bon ‖ π) = log n − (n − 1) / n,

    exact for a continuous score distribution (no ties), an upper bound otherwise (Beirami et al. 2024);
    Stiennon et al. 2020 and Gao et al. 2022 use it as the best-of-n KL. 0 at n = 1, ≈ log n − 1 for large n.

    Args:
        n: samples per best-of-n draw (≥ 1). An int or an integer array.

    Shape: like ``n``; a float for an int.
    """
    a = np.asarray(n)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer) or np.any(a < 1):
        raise ValueError(f"n must be an integer (or integer array) >= 1; got {n!r}"[:200])
    out = np.log(a.astype(np.float64)) - (a - 1) / a
    return float(out) if out.ndim == 0 else out


def _check_policy(probs, scores) -> tuple[np.ndarray, np.ndarray]:
    try:
        p = np.asarray(probs, dtype=np.float64)
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"probs and scores must be real arrays of shape (..., K) ({e})") from None
    if p.ndim == 0 or p.shape[-1] == 0:
        raise ValueError(f"probs must have shape (..., K) with K >= 1; got {p.shape}")
    if s.shape != p.shape:
        raise ValueError(f"scores must have the same shape as probs {p.shape}; got {s.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probs must be finite and non-negative")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite (no NaN or inf)")
    total = p.sum(axis=-1, keepdims=True)
    if np.any(np.abs(total - 1.0) > 1e-6):
        raise ValueError(f"probs must sum to 1 over the last axis; got sums in [{total.min()}, {total.max()}]")
    return p / total, s


def _bon_parts(probs, scores, n) -> tuple[np.ndarray, np.ndarray]:
    """π_bon and log(π_bon / π) (0 where π_bon = 0), both (..., K). See :func:`bon_distribution`."""
    p, s = _check_policy(probs, scores)
    n = _check_n(n)
    order = np.argsort(s, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    lo, hi = tie_group_bounds(np.take_along_axis(s, order, axis=-1))
    cum = np.concatenate([np.zeros(ps.shape[:-1] + (1,)), np.cumsum(ps, axis=-1)], axis=-1)
    f_lt = np.take_along_axis(cum, lo, axis=-1)  # F(r⁻): mass strictly below the group
    p_group = np.take_along_axis(cum, hi, axis=-1) - f_lt  # the group's mass
    f_le = f_lt + p_group  # F(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        # F^n − F⁻^n = F^n (1 − (1 − p_G/F)^n), without cancellation when F⁻ ≈ F
        log_f = np.log(f_le)
        tail = -np.expm1(n * np.log1p(-np.clip(p_group / f_le, 0.0, 1.0)))
        delta = np.where(f_le > 0, np.exp(n * log_f) * tail, 0.0)  # P(the best has this group's score)
        bon_sorted = np.where(p_group > 0, ps * delta / p_group, 0.0)
        log_ratio = np.where(bon_sorted > 0, n * log_f + np.log(tail) - np.log(p_group), 0.0)
    bon, lr = np.empty_like(p), np.empty_like(p)
    np.put_along_axis(bon, order, bon_sorted, axis=-1)
    np.put_along_axis(lr, order, log_ratio, axis=-1)
    return bon, lr


def bon_distribution(probs, scores, n: int) -> np.ndarray:
    """The exact best-of-n policy of a discrete policy: draw n i.i.d. replies y ∼ π, keep the highest-scoring
    one, ties broken uniformly at random among the tied samples. With F(r) = P_π(score ≤ r) and G(y) the
    outcomes tied with y,

        π_bon(y) = [F(r(y))^n − F(r(y)⁻)^n] · π(y) / π(G(y)),

    the probability that the maximum score is r(y), split among the tied outcomes in proportion to their
    probabilities (which is what uniform tie-breaking gives). Ties are exact equality of scores.

    Args:
        probs: π over K outcomes (non-negative, summing to 1). Shape: (..., K).
        scores: the score of each outcome (reward model, gold, ...). Shape: (..., K).
        n: samples per draw (≥ 1).

    Returns: π_bon. Shape: (..., K).
    """
    return _bon_parts(probs, scores, n)[0]


def bon_kl_exact(probs, scores, n: int):
    """The exact KL of best-of-n from its base policy, for a discrete policy:

        KL(π_bon ‖ π) = Σ_y π_bon(y) log(π_bon(y) / π(y))        (π_bon from :func:`bon_distribution`)

    It never exceeds :func:`bon_kl_analytic` (Beirami et al. 2024), reaches it only in the limit of many
    tiny untied outcomes, and is strictly smaller when mass is concentrated or scores tie. Shape: (..., K) →
    (...); a float for a single policy.
    """
    bon, log_ratio = _bon_parts(probs, scores, n)
    out = (bon * log_ratio).sum(axis=-1)
    return float(out) if out.ndim == 0 else out


def bon_expected_score(probs, scores, n: int):
    """Exact expected score of the best of n samples: E_{π_bon}[r] = Σ_y π_bon(y) r(y).

    Shape: (..., K) → (...); a float for a single policy.
    """
    bon, _ = _bon_parts(probs, scores, n)
    out = (bon * np.asarray(scores, dtype=np.float64)).sum(axis=-1)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class EmpiricalPolicy:
    """One prompt's pool of sampled replies seen as a discrete policy (the result of :func:`empirical_policy`)."""

    replies: list
    """The distinct replies, in order of first appearance. Length: K."""
    probs: np.ndarray
    """Their empirical probabilities count / N. Shape: (K,)."""
    scores: np.ndarray
    """Their scores (the mean over a reply's copies, which agree up to ``score_atol``). Shape: (K,)."""
    n_samples: int
    """N, the pool size."""


def empirical_policy(replies, scores, score_atol: float = 1e-6) -> EmpiricalPolicy:
    """Treat one prompt's pool of N sampled replies as a discrete policy: π̂(y) = count(y) / N over the distinct
    replies, each with its score, so that :func:`bon_kl_exact` and :func:`bon_distribution` can be applied to a
    model's real replies.

    **The estimate is biased unless N ≫ n, and not always in the same direction:**

    - *Downward, and badly, when the pool misses replies best-of-n would find.* π̂ has at most N atoms, each of
      mass ≥ 1/N, so KL(π̂_bon ‖ π̂) ≤ log(1/min π̂) ≤ log N whatever n is. A policy that rarely repeats a reply
      has true KL ≈ log n − (n − 1)/n, which passes log N once n ≳ e·N; the estimate cannot follow.
    - *Upward, slightly, when the pool reliably holds the top score group.* If best-of-n almost always lands on a
      group of mass p (coarse scores: a 0/1 verifier, a few score levels), the KL is ≈ log(1/p) and the
      estimate ≈ E[log(1/p̂)] ≥ log(1/p) (Jensen); by the delta method the excess is ≈ (1 − p)/(2Np).

    Both vanish as N grows with n fixed (``tests/test_best_of_n.py`` checks each claim on exact expectations
    over the pool). Use N ≫ n, and resample pools if the size of the bias matters.

    Args:
        replies: the N sampled replies (hashable, e.g. decoded strings). Shape: (N,).
        scores: the score of each sample. Shape: (N,). Copies of one reply must score alike (within
            ``score_atol``): a deterministic scorer can still differ by float noise across batches.
    """
    if isinstance(replies, (str, bytes)) or not hasattr(replies, "__len__") or len(replies) == 0:
        raise ValueError("replies must be a non-empty list of sampled replies")
    try:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scores must be real numbers, one per reply ({e})") from None
    if s.shape != (len(replies),) or not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be {len(replies)} finite numbers, one per reply; got {np.shape(scores)}")
    index: dict = {}
    try:
        for i, reply in enumerate(replies):
            index.setdefault(reply, []).append(i)
    except TypeError as e:
        raise ValueError(f"replies must be hashable ({e})") from None
    uniq = list(index)
    for reply in uniq:
        group = s[index[reply]]
        if np.ptp(group) > score_atol * max(1.0, float(np.abs(group).max())):
            raise ValueError(f"scores of identical replies differ by {np.ptp(group):.3g} > score_atol for "
                             f"{reply!r}"[:200])
    N = len(replies)
    return EmpiricalPolicy(
        replies=uniq,
        probs=np.array([len(index[y]) / N for y in uniq]),
        scores=np.array([s[index[y]].mean() for y in uniq]),
        n_samples=N,
    )
