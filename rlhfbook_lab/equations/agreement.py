"""Agreement between judges (RLHF Book, ch. 10): majority preferences and their cycles, percent agreement, Fleiss'
κ, and Kendall's rank correlation τ_K between two rankings.

Plain NumPy, float64, deterministic. ``wins`` matrices follow ``preferences.win_matrix``: ``wins[i, j]`` counts
the comparisons i won against j. The strengths these are compared with (Bradley-Terry, Elo) are in
``preferences``. (τ_K is Kendall's; the annotators' Bradley-Terry temperature τ lives in ``world.annotators``.)
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

__all__ = [
    "find_preference_cycles",
    "fleiss_kappa",
    "kendall_tau",
    "majority_preferences",
    "percent_agreement",
]


def _check_wins(wins) -> np.ndarray:
    W = np.asarray(wins, dtype=np.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"wins must be a square (n, n) matrix of win counts; got shape {W.shape}")
    if np.isnan(W).any() or (W < 0).any():
        raise ValueError("wins must hold non-negative counts (no NaN)")
    return W


def majority_preferences(wins) -> np.ndarray:
    """Majority relation M[i, j] = (W[i, j] > W[j, i]): i is preferred to j by a strict majority.

    Args:
        wins: Shape (n, n), W[i, j] = times i beat j (see :func:`win_matrix`).

    Returns:
        Shape (n, n), bool; pairs with equal counts (or never compared) are False both ways.
    """
    W = _check_wins(wins)
    return W > W.T


def find_preference_cycles(wins) -> list[tuple[int, int, int]]:
    """All intransitive 3-cycles a ≻ b ≻ c ≻ a of the majority relation (Condorcet's paradox).

    Each individual annotator may be perfectly transitive and their majority still cyclic; a cycle means no
    reward function r can order those items as the majority does, which is why a Bradley-Terry model cannot
    fit aggregated preferences exactly.

    Args:
        wins: Shape (n, n), W[i, j] = times i beat j.

    Returns:
        List of (a, b, c) with M[a, b], M[b, c], M[c, a]; each cycle once, rotated so that a is its smallest
        item, sorted.
    """
    M = majority_preferences(wins)
    cycles = []
    for a, b, c in combinations(range(len(M)), 3):  # a < b < c: a cycle runs one of two ways
        if M[a, b] and M[b, c] and M[c, a]:
            cycles.append((a, b, c))
        if M[a, c] and M[c, b] and M[b, a]:
            cycles.append((a, c, b))
    return sorted(cycles)


def _category_counts(labels, n_categories: int | None) -> np.ndarray:
    """(n_items, n_categories) counts from labels (n_annotators, n_items) of small non-negative integers."""
    y = np.asarray(labels)
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] == 0:
        raise ValueError(f"labels must have shape (n_annotators >= 2, n_items >= 1); got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"labels must be non-negative integer categories; got dtype {y.dtype}")
    k = int(y.max()) + 1 if n_categories is None else n_categories
    if y.max() >= k:
        raise ValueError(f"labels hold category {int(y.max())} but n_categories is {k}")
    counts = np.zeros((y.shape[1], k))
    np.add.at(counts, (np.arange(y.shape[1])[None, :].repeat(y.shape[0], 0), y), 1.0)
    return counts


def percent_agreement(labels) -> float:
    """Pairwise percent agreement: over items and all pairs of annotators, the fraction giving the same label.

    .. math::  \\bar P = \\frac{1}{N} \\sum_i \\frac{\\sum_k n_{ik}(n_{ik} - 1)}{n (n - 1)}

    with n annotators and n_ik of them choosing category k on item i. This is Fleiss' observed agreement P̄.

    Args:
        labels: Shape (n_annotators, n_items), int categories (e.g. 0 = A better, 1 = B better, 2 = tie).

    Returns:
        A float in [0, 1].
    """
    counts = _category_counts(labels, None)  # (N, k)
    n = counts.sum(axis=1)[0]
    return float(np.mean((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))))


def fleiss_kappa(labels, n_categories: int | None = None) -> float:
    """Fleiss' kappa: agreement between n >= 2 annotators beyond what chance would give (Fleiss 1971).

    .. math::  \\kappa = \\frac{\\bar P - \\bar P_e}{1 - \\bar P_e}, \\qquad
               \\bar P_e = \\sum_k p_k^2, \\quad p_k = \\frac{1}{N n} \\sum_i n_{ik}

    P̄ is :func:`percent_agreement`; P̄_e is the agreement expected if every annotator drew labels at random
    from the pooled label frequencies p_k. κ = 1 is perfect agreement, 0 chance level, < 0 worse than chance.
    We chose Fleiss' κ because it handles any number of annotators; with two it equals Scott's π (not Cohen's
    κ, which gives each annotator their own label frequencies).

    Args:
        labels: Shape (n_annotators, n_items), int categories; every annotator labels every item.
        n_categories: number of categories (default: max label + 1). Unused categories do not change κ.

    Returns:
        A float in [−1, 1].
    """
    counts = _category_counts(labels, n_categories)  # (N, k)
    p_bar = percent_agreement(labels)
    p_k = counts.sum(axis=0) / counts.sum()  # (k,)
    p_e = float(np.sum(p_k**2))
    if p_e == 1.0:
        raise ValueError("labels use one category throughout: chance agreement is 1 and kappa is undefined")
    return (p_bar - p_e) / (1.0 - p_e)


def kendall_tau(x, y) -> float:
    """Kendall's rank correlation τ_b between two scorings of the same n items (e.g. fitted vs gold strengths).

    .. math::  \\tau_b = \\frac{n_c - n_d}{\\sqrt{(n_0 - n_x)(n_0 - n_y)}}

    over the n_0 = n(n − 1)/2 pairs i < j: n_c pairs are *concordant* (x and y order them the same way), n_d
    *discordant* (opposite ways), n_x tied in x, n_y tied in y (a pair tied in either is neither). Without
    ties τ = 1 − 2·n_d/n_0: 1 for the same order, −1 for the reverse, and each swapped pair costs 2/n_0. Only
    the orders matter, so any increasing transform of x or y (Elo vs strengths) leaves τ unchanged. This is
    ``scipy.stats.kendalltau``'s default variant.

    Args:
        x: Shape (n,), one scoring (higher = better).
        y: Shape (n,), the other.

    Returns:
        A float in [−1, 1].
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] < 2:
        raise ValueError(f"x must have shape (n,) with n >= 2; got {a.shape}")
    if b.shape != a.shape:
        raise ValueError(f"y shape {b.shape} does not match x shape {a.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("x / y contain NaN")
    upper = np.triu_indices(a.shape[0], k=1)
    sx = np.sign(a[:, None] - a[None, :])[upper]  # (n0,)
    sy = np.sign(b[:, None] - b[None, :])[upper]
    n0 = sx.shape[0]
    denom = math.sqrt((n0 - np.sum(sx == 0)) * (n0 - np.sum(sy == 0)))
    if denom == 0:
        raise ValueError("x or y gives every item the same score: a rank correlation is undefined")
    return float(np.sum(sx * sy) / denom)
