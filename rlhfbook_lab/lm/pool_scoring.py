"""Best-of-n on a model's replies (RLHF Book ch. 9 and 14): score one pool (``sample_pool.sample_pool``) with any
scorer, pick the best of n, and read the best-of-n curve and its KL for every n ≤ N from that one pool.

    pool = sample_pool(model, tok, problems, n=32)              # sampled once
    gold = score_pool(pool, gold_scorer)                        # (P, N)
    rm = score_pool(pool, reward_model_scorer(rm_model, tok))   # the same replies, another scorer
    best_of_k(rm, gold, ks)                                     # gold of best-of-k by the RM, every k, no resampling
    picks = best_of_n_indices(rm, n=8)                          # one concrete best-of-8 draw per problem
    kl = pool_bon_kl(pool.replies, rm, ns=[1, 2, 4, 8])         # exact KL on the pool vs log n − (n − 1)/n

A *scorer* is any callable ``scorer(problems, replies) -> sequence of floats`` taking two equal-length lists
(one problem per reply) and returning one finite score per reply: the gold judge, the verifier, a reward model,
an ensemble. :func:`score_pool` checks what it returns (the count, NaN) where the scores enter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.equations.best_of_n import bon_kl_analytic, bon_kl_exact, empirical_policy
from rlhfbook_lab.lm.reward_model import score_replies

__all__ = [
    "Scorer",
    "best_of_n_indices",
    "gold_scorer",
    "pool_bon_kl",
    "reward_model_scorer",
    "score_groups",
    "score_pool",
    "select_replies",
    "verifier_scorer",
]

Scorer = Callable[[list, list], Sequence[float]]
"""``scorer(problems, replies) -> one float per reply`` (equal-length lists)."""


def gold_scorer(problems: list, replies: list[str]) -> np.ndarray:
    """The gold judge (``world.gold_score``): the true quality, which real life never gives you. Shape: (M,)."""
    return np.array([world.gold_score(p, r, allow_empty=True) for p, r in zip(problems, replies)])


def verifier_scorer(problems: list, replies: list[str]) -> np.ndarray:
    """The verifier (``world.correctness_reward``): 1.0 for a right answer, else 0.0. Shape: (M,)."""
    return np.array([world.correctness_reward(p, r, allow_empty=True) for p, r in zip(problems, replies)])


def reward_model_scorer(rm, tokenizer, batch_size: int = 256) -> Scorer:
    """A scorer that asks a reward model (``reward_model.score_replies``, normalised if the RM is). An empty
    reply gets ``world.EMPTY_RESPONSE_SCORE`` (the RM never saw one), as in the RL loop."""

    def scorer(problems: list, replies: list[str]) -> np.ndarray:
        out = np.full(len(replies), world.EMPTY_RESPONSE_SCORE, dtype=np.float64)
        keep = [i for i, r in enumerate(replies) if r.strip()]
        if keep:
            prompts = [problems[i].prompt if isinstance(problems[i], world.Problem) else problems[i] for i in keep]
            out[keep] = score_replies(rm, tokenizer, prompts, [replies[i] for i in keep],
                                      batch_size=batch_size).double().numpy()
        return out

    return scorer


def _check_groups(problems: list, replies) -> int:
    """The group size n of ``replies`` (P lists of n replies, one list per problem); ValueError otherwise."""
    if not isinstance(problems, (list, tuple)) or len(problems) == 0:
        raise ValueError("problems must be a non-empty list (one per group of replies)")
    if not isinstance(replies, (list, tuple)) or len(replies) != len(problems):
        raise ValueError(f"replies must hold one list of replies per problem ({len(problems)}); got "
                         f"{len(replies) if isinstance(replies, (list, tuple)) else type(replies).__name__}")
    sizes = sorted({len(r) for r in replies})
    if len(sizes) != 1 or sizes[0] == 0:
        raise ValueError(f"replies must be groups of equal size >= 1 (a ragged pool cannot be scored as (P, n)); "
                         f"got group sizes {sizes}")
    return sizes[0]


def score_groups(problems: list, replies: list[list[str]], scorer: Scorer) -> np.ndarray:
    """Score P groups of n replies (``replies[i]`` answers ``problems[i]``) in one call of ``scorer``.

    Returns: float64. Shape: (P, n). Raises ValueError for ragged groups, or when ``scorer`` returns a wrong
    count or a non-finite score (NaN, inf): a best-of-n would silently skip or always pick such a reply.
    """
    n = _check_groups(problems, replies)
    flat_problems = [p for p, group in zip(problems, replies) for _ in group]
    flat_replies = [r for group in replies for r in group]
    raw = scorer(flat_problems, flat_replies)
    try:
        scores = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scorer must return real numbers, one per reply ({e})") from None
    if scores.size != len(flat_replies):
        raise ValueError(f"scorer returned {scores.size} scores for {len(flat_replies)} replies; expected one "
                         f"per reply")
    if not np.all(np.isfinite(scores)):
        bad = int((~np.isfinite(scores)).sum())
        raise ValueError(f"scorer returned {bad} non-finite score(s) (NaN or inf); every reply needs a finite score")
    return scores.reshape(len(problems), n)


def score_pool(pool, scorer: Scorer) -> np.ndarray:
    """Score every reply of a ``sample_pool.Pool`` with ``scorer``. Shape: (P, n), float64."""
    return score_groups(pool.problems, pool.replies, scorer)


def _scores_2d(scores, name: str = "scores") -> np.ndarray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a (P, N) array of real numbers ({e})") from None
    if s.ndim != 2 or s.shape[1] == 0:
        raise ValueError(f"{name} must have shape (P, N) with N >= 1; got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return s


def best_of_n_indices(scores, n: int, seed: int | None = 0) -> np.ndarray:
    """One best-of-n draw per problem from a pool: take a uniformly random n-subset of the N pooled replies
    keep the highest-scoring one, ties broken uniformly at random (``seed=None``: the first n replies and the
    first of tied maxima, deterministic).

    A random n-subset of N i.i.d. samples is n i.i.d. samples, so the kept reply is a draw from π_bon;
    its expected value over subsets is ``scaling.best_of_k`` exactly (``tests/test_pool_scoring.py``).

    Args:
        scores: the selector's scores of the pool. Shape: (P, N).
        n: 1 ≤ n ≤ N.
        seed: the subset and tie-breaking RNG's seed.

    Returns: the kept reply's index into the pool, per problem. Shape: (P,), int64.
    """
    s = _scores_2d(scores)
    P, N = s.shape
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= N:
        raise ValueError(f"n must be an integer in 1..{N} (the pool size); got {n!r}")
    rng = np.random.default_rng(seed)
    if seed is None:
        subset = np.broadcast_to(np.arange(n), (P, n))
    else:
        subset = np.argsort(rng.random((P, N)), axis=1)[:, :n]
    sub = np.take_along_axis(s, subset, axis=1)
    top = sub == sub.max(axis=1, keepdims=True)
    noise = rng.random((P, n)) if seed is not None else np.zeros((P, n))
    pick = np.argmax(np.where(top, 1.0 + noise, 0.0), axis=1)  # uniform among the tied maxima
    return np.take_along_axis(subset, pick[:, None], axis=1)[:, 0]


def select_replies(replies: list[list[str]], index) -> list[str]:
    """``replies[i][index[i]]`` for each problem i (the replies :func:`best_of_n_indices` kept)."""
    idx = np.asarray(index)
    if idx.shape != (len(replies),):
        raise ValueError(f"index must hold one position per problem ({len(replies)}); got shape {idx.shape}")
    return [group[int(j)] for group, j in zip(replies, idx)]


def pool_bon_kl(replies: list[list[str]], scores, ns) -> dict[str, np.ndarray]:
    """The KL of best-of-n from the sampling policy, estimated on a model's replies: each problem's pool is read
    as a discrete policy π̂ (``best_of_n.empirical_policy``: identical replies merge, so a reply the model
    repeats is one outcome with its frequency), and KL(π̂_bon ‖ π̂) is computed exactly with ties
    (``bon_kl_exact``), then averaged over problems; beside it the analytic log n − (n − 1)/n.

    Repeated replies and tied scores (a 0/1 verifier, a judge with few levels) make the exact KL far below the
    analytic one; the estimate is biased low once n nears the pool size (see ``empirical_policy``).

    Args:
        replies: P groups of N replies. scores: their scores, shape (P, N). ns: the n values, each 1..N.

    Returns: ``{"n": (K,), "exact": (K,) mean over problems, "exact_per_problem": (P, K), "analytic": (K,)}``.
    """
    s = _scores_2d(scores)
    if len(replies) != s.shape[0] or any(len(group) != s.shape[1] for group in replies):
        raise ValueError(f"replies must be {s.shape[0]} groups of {s.shape[1]} replies, matching scores")
    n = np.asarray(ns).reshape(-1)
    if n.size == 0 or n.dtype == bool or not np.issubdtype(n.dtype, np.integer) or n.min() < 1 or n.max() > s.shape[1]:
        raise ValueError(f"ns must be integers in 1..{s.shape[1]} (the pool size); got {ns!r}"[:200])
    per = np.zeros((s.shape[0], n.size))
    for i, (group, row) in enumerate(zip(replies, s)):
        pol = empirical_policy(list(group), row)
        per[i] = [bon_kl_exact(pol.probs, pol.scores, int(k)) for k in n]
    return {"n": n, "exact": per.mean(axis=0), "exact_per_problem": per, "analytic": bon_kl_analytic(n)}
