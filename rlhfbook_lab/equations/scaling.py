"""Inference-time scaling (RLHF Book ch. 7 and 9): pass@k, majority voting and best-of-k from one pool of samples,
and the curves people fit to them (power laws in k, sigmoids in RL compute).

Plain NumPy, float64, deterministic: no randomness anywhere in this module.

Why one module (~680 lines): every statistic below is computed from the same pool by the same subset-counting
identity, and the fits read those statistics; each function is short, and one file keeps the identity in one place.

One pool, every k
-----------------
Sample a pool of n replies per problem **once**. Every ``*_at_k`` statistic here is then the *exact* expectation
over a uniformly random k-subset of that pool (drawn without replacement), for every k ≤ n at once, computed by
counting rather than by resampling. It is an unbiased estimate of the statistic for k fresh samples (a random
k-subset of n i.i.d. samples is k i.i.d. samples), with far less variance than drawing k new ones per k.
The subset weights are ratios of binomial coefficients, C(a, k) / C(n, k) = ∏_{i=a+1}^{n} (i − k)/i, always
evaluated as that product of factors in [0, 1] (stable; it underflows gracefully to 0 and never overflows).

Contents
--------
- :func:`pass_at_k` (Chen et al. 2021, unbiased), :func:`pass_at_k_plugin` (biased low), :func:`pass_at_k_curve`.
- :func:`majority_at_k`: exact expected majority vote (self-consistency, Wang et al. 2022).
- :func:`best_of_k`: exact expected value of the reply a selector (reward model, verifier, gold) picks.
- :func:`fit_pass_at_k_power_law`: −log pass@k ≈ a·k^(−b) (Brown et al. 2024, "Large Language Monkeys").
- :func:`pass_at_k_from_rates` and :func:`fit_beta_binomial`: where the power law comes from (Schaeffer et al.
  2025, "How Do Large Language Monkeys Get Their Power (Laws)?").
- :func:`fit_sigmoid_compute_curve`: reward vs RL compute (Khatri et al. 2025, "The Art of Scaling RL Compute").
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from rlhfbook_lab.checks import check_number

__all__ = [
    "BetaBinomialFit",
    "PowerLawFit",
    "SigmoidFit",
    "best_of_k",
    "fit_beta_binomial",
    "fit_pass_at_k_power_law",
    "fit_sigmoid_compute_curve",
    "majority_at_k",
    "pass_at_k",
    "pass_at_k_curve",
    "pass_at_k_from_rates",
    "pass_at_k_plugin",
    "tie_group_bounds",
]

MAX_MAJORITY_POOL = 1000
"""Largest pool :func:`majority_at_k` accepts: it counts subsets in float64, and 2^1000 ≈ 1e301 still fits."""


# --- input checks ------------------------------------------------------------------------------------------


def _int_array(x, name: str, minimum: int) -> np.ndarray:
    """``x`` as an int64 array of whole numbers ≥ ``minimum``; booleans and fractions are refused."""
    try:
        a = np.asarray(x)
    except ValueError as e:  # a ragged nested list
        raise ValueError(f"{name} must be an integer or an array of integers; got a ragged sequence ({e})") from None
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must be an integer or an array of integers; got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{name} must hold whole numbers; got {a if a.size <= 8 else 'non-integer values'}")
    a = a.astype(np.int64)
    if np.any(a < minimum):
        raise ValueError(f"{name} must be >= {minimum}; got min {a.min()}")
    return a


def _float_array(x, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} must be an array of real numbers ({e})") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return a


def _ks(ks, n_max: int, name: str = "ks") -> np.ndarray:
    """The k values (default 1..n_max) as a 1-D int array, each in 1..n_max."""
    if ks is None:
        return np.arange(1, n_max + 1)
    k = _int_array(ks, name, 1).reshape(-1)
    if k.size == 0:
        raise ValueError(f"{name} is empty")
    if np.any(k > n_max):
        raise ValueError(f"{name} must be <= {n_max} (the pool size); got max {k.max()}")
    return k


def _reduce(per_problem: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "mean":
        return per_problem.mean(axis=0)
    if reduction == "none":
        return per_problem
    raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")


# --- binomial ratios and tie groups ---------------------------------------------------------------------------


def _comb_ratio_table(n: int, ks: np.ndarray, a_min: int = 0) -> np.ndarray:
    """T[j, a − a_min] = C(a, ks[j]) / C(n, ks[j]) for a = a_min..n. Shape: (len(ks), n − a_min + 1).

    The product form ∏_{i=a+1}^{n} (i − k)/i, a reverse cumulative product of factors in [0, 1].
    """
    i = np.arange(n, a_min, -1)  # n, n−1, ..., a_min + 1: the factor that takes a = i to a = i − 1
    factors = np.clip(i[None, :] - ks[:, None], 0, None) / i[None, :]
    table = np.ones((len(ks), n - a_min + 1))
    table[:, :n - a_min] = np.cumprod(factors, axis=1)[:, ::-1]
    return table


def _comb_ratio(a: np.ndarray, k: np.ndarray, n: int) -> np.ndarray:
    """C(a, k) / C(n, k) elementwise for int arrays ``a`` (0..n) and ``k`` (0..n), broadcast together."""
    a, k = np.broadcast_arrays(a, k)
    out = np.empty(a.shape)
    if a.size == 0:
        return out
    a_min = int(a.min())
    uk, inv = np.unique(k, return_inverse=True)
    inv = inv.reshape(k.shape)
    rows = max(1, 2**22 // (n - a_min + 1))  # keep each table under ~32 MB
    for start in range(0, len(uk), rows):
        table = _comb_ratio_table(n, uk[start:start + rows], a_min)
        sel = (inv >= start) & (inv < start + rows)
        out[sel] = table[inv[sel] - start, a[sel] - a_min]
    return out


def tie_group_bounds(sorted_values) -> tuple[np.ndarray, np.ndarray]:
    """For values sorted ascending along the last axis, each element's tie group as ``[lo, hi)``: ``lo`` is the
    index of the group's first element (= the number of strictly smaller values), ``hi`` one past its last (= the
    number of values ≤ it). Ties are exact equality.

    Shape: ``sorted_values`` (..., n) → two int arrays (..., n).
    """
    x = np.asarray(sorted_values)
    n = x.shape[-1]
    idx = np.broadcast_to(np.arange(n), x.shape)
    starts = np.ones(x.shape, dtype=bool)
    starts[..., 1:] = x[..., 1:] != x[..., :-1]
    ends = np.ones(x.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    lo = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    hi = np.minimum.accumulate(np.where(ends, idx + 1, n)[..., ::-1], axis=-1)[..., ::-1]
    return lo, hi


# --- pass@k -------------------------------------------------------------------------------------------------


def pass_at_k(n, c, k):
    """Unbiased pass@k from ``c`` correct among ``n`` samples (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", eq. 1):

        pass@k = 1 − C(n − c, k) / C(n, k) = 1 − ∏_{i=n−c+1}^{n} (1 − k/i)

    the probability that a uniformly random k-subset of the n samples holds at least one correct one. Computed in
    the stable product form (never the huge binomials); exactly 1.0 when n − c < k.

    Args:
        n: samples per problem (≥ 1). An int or an integer array.
        c: correct samples per problem, 0 ≤ c ≤ n.
        k: the budget, 1 ≤ k ≤ n (use :func:`pass_at_k_plugin` to extrapolate past n).

    Shape: ``n``, ``c`` and ``k`` broadcast together (e.g. ``n`` (P,), ``c`` (P,), ``k`` () for P problems);
    returns a float when all three are scalars, else an array of the broadcast shape.
    """
    n_, c_, k_ = _int_array(n, "n", 1), _int_array(c, "c", 0), _int_array(k, "k", 1)
    try:
        n_, c_, k_ = np.broadcast_arrays(n_, c_, k_)
    except ValueError:
        raise ValueError(f"n, c and k must broadcast together; got shapes {n_.shape}, {c_.shape}, {k_.shape}") from None
    if np.any(c_ > n_):
        raise ValueError("c must be <= n (correct samples among n); got c > n")
    if np.any(k_ > n_):
        raise ValueError("k must be <= n: the unbiased estimator needs at least k samples "
                         "(pass_at_k_plugin extrapolates past n)")
    out = np.empty(n_.shape)
    for nv in np.unique(n_):
        m = n_ == nv
        out[m] = 1.0 - _comb_ratio(nv - c_[m], k_[m], int(nv))
    return float(out) if out.ndim == 0 else out


def pass_at_k_plugin(n, c, k):
    """Plug-in pass@k: put p̂ = c/n into the formula for k independent tries,

        pass@k ≈ 1 − (1 − c/n)^k.

    **Biased low** for k > 1: C(n−c, k)/C(n, k) = ∏_{j<k} (n−c−j)/(n−j) ≤ (1 − c/n)^k term by term, so the plug-in
    is never above :func:`pass_at_k` on the same counts, and since that one is unbiased, E[plug-in] ≤ the true
    pass@k (also Jensen: 1 − (1−p)^k is concave in p). Equal at k = 1 and when c ∈ {0, n}. Unlike the unbiased
    estimator it accepts k > n (an extrapolation that assumes p̂ is the true rate).

    Args:
        n: samples per problem (≥ 1); c: correct ones (0 ≤ c ≤ n); k: budget (≥ 1, may exceed n).

    Shape: broadcast together, like :func:`pass_at_k`.
    """
    n_, c_, k_ = _int_array(n, "n", 1), _int_array(c, "c", 0), _int_array(k, "k", 1)
    try:
        n_, c_, k_ = np.broadcast_arrays(n_, c_, k_)
    except ValueError:
        raise ValueError(f"n, c and k must broadcast together; got shapes {n_.shape}, {c_.shape}, {k_.shape}") from None
    if np.any(c_ > n_):
        raise ValueError("c must be <= n (correct samples among n); got c > n")
    with np.errstate(divide="ignore"):
        out = -np.expm1(k_ * np.log1p(-c_ / n_))
    return float(out) if out.ndim == 0 else out


def _counts_1d(correct_counts, name: str = "correct_counts") -> np.ndarray:
    try:
        a = np.asarray(correct_counts)
    except ValueError:
        a = None
    if a is None or a.dtype == object or a.ndim != 1 or a.dtype == bool:
        raise ValueError(f"{name} must be a 1-D array of per-problem correct counts (integers); got a nested, "
                         "ragged or boolean sequence. From per-sample booleans pass "
                         "counts=[sum(x) for x in pool] and n=[len(x) for x in pool].")
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    return _int_array(a, name, 0)


def pass_at_k_curve(correct_counts, n, ks=None) -> np.ndarray:
    """Mean unbiased pass@k over problems, for every k, from one pool of samples per problem:

        pass@k = (1/P) Σ_i [1 − C(n_i − c_i, k) / C(n_i, k)]        (:func:`pass_at_k`)

    Args:
        correct_counts: correct samples per problem. Shape: (P,). Per-sample booleans (a ragged list of lists
            or a 2-D array) are refused: sum them first.
        n: pool size, one int for all problems or one per problem. Shape: () or (P,).
        ks: the budgets (default 1..min n). Each ≤ every problem's n.

    Returns: mean pass@k. Shape: (len(ks),).
    """
    counts = _counts_1d(correct_counts)
    n_ = _int_array(n, "n", 1)
    if n_.ndim > 1 or (n_.ndim == 1 and n_.shape != counts.shape):
        raise ValueError(f"n must be an int or one per problem, shape {counts.shape}; got shape {n_.shape}")
    if np.any(counts > n_):
        raise ValueError("correct_counts must be <= n for every problem")
    k = _ks(ks, int(n_.min()))
    return pass_at_k(np.broadcast_to(n_, counts.shape)[:, None], counts[:, None], k[None, :]).mean(axis=0)


def pass_at_k_from_rates(rates, ks) -> np.ndarray:
    """Population pass@k from per-problem single-attempt success rates p_i (Schaeffer et al. 2025, "How Do Large
    Language Monkeys Get Their Power (Laws)?", eq. 1–2):

        pass@k = (1/P) Σ_i [1 − (1 − p_i)^k]

    Each problem's failure (1 − p_i)^k decays exponentially in k; the *average* decays as a power law when
    the density of p near 0 behaves like p^(b−1), because E[(1 − p)^k] ∝ k^(−b) then (compare with
    :func:`fit_beta_binomial`'s ``alpha``). With p_i = c_i/n this is the mean of :func:`pass_at_k_plugin`.

    Args:
        rates: p_i in [0, 1]. Shape: (P,).
        ks: budgets ≥ 1 (any size: this extrapolates). Shape: (K,).

    Returns: Shape (K,).
    """
    p = _float_array(rates, "rates").reshape(-1)
    if p.size == 0 or np.any((p < 0) | (p > 1)):
        raise ValueError("rates must be a non-empty array of probabilities in [0, 1]")
    k = _int_array(ks, "ks", 1).reshape(-1)
    with np.errstate(divide="ignore"):
        fail = np.exp(k[:, None] * np.log1p(-p[None, :]))  # (K, P)
    return 1.0 - fail.mean(axis=1)


# --- majority voting ----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _binom_row(m: int) -> np.ndarray:
    """[C(m, 0), ..., C(m, m)] as float64 (exact integers converted once)."""
    row = np.array([float(math.comb(m, i)) for i in range(m + 1)])
    row.flags.writeable = False
    return row


def _majority_one(pool, correct, ks: np.ndarray) -> np.ndarray:
    """Exact expected maj@k of one pool for each k in ``ks`` (see :func:`majority_at_k`)."""
    counts = Counter(a for a in pool if a is not None)
    n = len(pool)
    c0 = counts.pop(correct, 0)
    z = n - c0 - sum(counts.values())  # abstentions (None)
    others = list(counts.values())
    kmax = int(ks.max())
    total = np.zeros(kmax + 1)  # total[k] = Σ over k-subsets of P(correct answer wins the vote)
    for x0 in range(1, min(c0, kmax) + 1):  # x0 = correct answers in the subset
        rivals = [m for m in others if m >= x0]  # only classes that can reach x0 votes can tie or beat it
        free = z + sum(m for m in others if m < x0)  # the rest never reach x0: draw from them freely
        smax = kmax - x0
        poly = np.zeros((smax + 1, len(rivals) + 1))  # poly[s, t]: ways to draw s rival answers, t of them tied
        poly[0, 0] = 1.0
        for m in rivals:
            row, new = _binom_row(m), np.zeros_like(poly)
            for x in range(min(x0 - 1, smax) + 1):  # this rival gets x < x0 votes
                new[x:] += row[x] * poly[:smax + 1 - x]
            if x0 <= smax:  # or exactly x0: a tie, broken uniformly
                new[x0:, 1:] += row[x0] * poly[:smax + 1 - x0, :-1]
            poly = new
        v = poly @ (1.0 / (1.0 + np.arange(len(rivals) + 1)))  # a t-way tie is won with probability 1/(1+t)
        w = np.convolve(v, _binom_row(free)[:smax + 1])[:smax + 1]
        total[x0:] += math.comb(c0, x0) * w
    return np.clip(total[ks] / np.array([float(math.comb(n, int(k))) for k in ks]), 0.0, 1.0)


def majority_at_k(answers, correct_answers, ks=None, reduction: str = "mean") -> np.ndarray:
    """Exact expected majority-vote accuracy maj@k (self-consistency: Wang et al. 2022, "Self-Consistency
    Improves Chain of Thought Reasoning in Language Models"), for every k, from one pool per problem:

        maj@k = E_{S ⊂ pool, |S| = k} [ 1{correct ∈ argmax_a #a(S)} / |argmax_a #a(S)| ]

    over uniformly random k-subsets S drawn without replacement, ties between the most-voted answers broken
    uniformly at random. Computed exactly by counting: the vote counts of a subset are multivariate
    hypergeometric, and a dynamic program over the answer classes (a generating function in the number of
    rival votes and of rivals tied with the correct answer) sums every configuration.

    Abstentions: ``None`` means "no answer" and **does not vote**. It never wins and is not a class of its own;
    a subset of only ``None`` scores 0. (A subset {None, None, right} therefore elects the right answer.)

    Args:
        answers: one pool per problem, each a list of n hashable, already *normalised* answers (e.g. the
            parsed integer); pools may differ in size. Shape: (P, n).
        correct_answers: the right answer per problem (not None). Shape: (P,).
        ks: the budgets (default 1..smallest pool); each ≤ every pool's size.
        reduction: ``"mean"`` over problems → (len(ks),), or ``"none"`` → (P, len(ks)).

    maj@1 equals pass@1 = c/n; maj@n is 1 if the right answer is the pool's strict plurality, 1/(1+t) if it
    ties with t others, else 0. Cost grows like n² per problem; pools are limited to 1000 answers.
    """
    if isinstance(answers, (str, bytes)) or not hasattr(answers, "__len__") or len(answers) == 0:
        raise ValueError("answers must be a non-empty list of pools (one list of answers per problem)")
    pools = []
    for i, pool in enumerate(answers):
        if isinstance(pool, (str, bytes)) or not hasattr(pool, "__len__") or len(pool) == 0:
            raise ValueError(f"answers[{i}] must be a non-empty list of answers (one pool per problem); "
                             f"got {type(pool).__name__}. For a single problem pass [pool].")
        if len(pool) > MAX_MAJORITY_POOL:
            raise ValueError(f"answers[{i}] holds {len(pool)} answers; at most {MAX_MAJORITY_POOL} are supported")
        pools.append(list(pool))
    if isinstance(correct_answers, (str, bytes)) or not hasattr(correct_answers, "__len__") \
            or len(correct_answers) != len(pools):
        raise ValueError(f"correct_answers must hold one answer per pool ({len(pools)}); got "
                         f"{correct_answers!r}"[:200])
    k = _ks(ks, min(len(p) for p in pools))
    rows = []
    for i, (pool, correct) in enumerate(zip(pools, correct_answers)):
        if correct is None:
            raise ValueError(f"correct_answers[{i}] is None; the right answer must be a real answer")
        try:
            rows.append(_majority_one(pool, correct, k))
        except TypeError as e:
            raise ValueError(f"answers[{i}] and correct_answers[{i}] must be hashable ({e})") from None
    return _reduce(np.stack(rows), reduction)


# --- best-of-k ----------------------------------------------------------------------------------------------


def _scores_2d(x, name: str) -> np.ndarray:
    a = _float_array(x, name)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must have shape (P, n) or (n,) with n >= 1; got {a.shape}")
    return a


def best_of_k(select_scores, value_scores, ks=None, reduction: str = "mean") -> np.ndarray:
    """Exact expected value of best-of-k selection, for every k, from one pool of n samples per problem:
    draw a uniformly random k-subset of the pool, keep the sample with the highest ``select`` score (ties
    broken uniformly at random), and report its ``value``. With ``select`` a reward model and ``value`` the gold
    score this is rejection sampling's curve (Nakano et al. 2021, WebGPT; Gao et al. 2022); with ``select =
    value`` it is the expected maximum.

    By order statistics: sort by ``select`` and group exact ties; group g (m_g samples, L_g samples strictly
    below it) holds the subset's maximum with probability [C(L_g + m_g, k) − C(L_g, k)] / C(n, k), and then the
    kept sample is uniform over the group, so

        best@k = Σ_g  mean_value(g) · [C(L_g + m_g, k) − C(L_g, k)] / C(n, k),

    which without ties is Σ_i v_(i) C(i − 1, k − 1) / C(n, k) (i the rank by ``select``, 1 = lowest).

    Args:
        select_scores: the score a selector sees. Shape: (P, n) or (n,) for one problem.
        value_scores: the value of each sample (gold score, correctness 0/1, ...). Same shape.
        ks: the budgets (default 1..n).
        reduction: ``"mean"`` over problems → (len(ks),), or ``"none"`` → (P, len(ks)).
    """
    sel, val = _scores_2d(select_scores, "select_scores"), _scores_2d(value_scores, "value_scores")
    if sel.shape != val.shape:
        raise ValueError(f"select_scores and value_scores must have the same shape; got {sel.shape}, {val.shape}")
    P, n = sel.shape
    k = _ks(ks, n)
    order = np.argsort(sel, axis=1, kind="stable")
    lo, hi = tie_group_bounds(np.take_along_axis(sel, order, axis=1))
    share = np.take_along_axis(val, order, axis=1) / (hi - lo)  # each member's share of its group's mean
    coef = np.zeros((P, n + 1))  # best@k = Σ_a coef[a] · C(a, k)/C(n, k)
    rows = np.arange(P)[:, None]
    np.add.at(coef, (rows, hi), share)
    np.add.at(coef, (rows, lo), -share)
    return _reduce(coef @ _comb_ratio_table(n, k).T, reduction)


# --- fits ---------------------------------------------------------------------------------------------------


def _r2(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Coefficient of determination 1 − SS_res / SS_tot (SS_tot about the mean of y)."""
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - y_hat) ** 2).sum()) / ss_tot


def _zoom_minimize(loss, lo, hi, points: int = 41, zoom_points: int = 11, max_iter: int = 300):
    """Minimise ``loss(x, y)`` (vectorised over equal-shape arrays) over the box [lo, hi] ⊂ R²: a ``points``²
    grid, then a ``zoom_points``² window spanning ±1 grid step around the best point, which moves when the best
    lies on its edge and otherwise shrinks (five-fold by default): a deterministic pattern search.
    Returns (x, y, loss, on_box_edge)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)

    def best(xs, ys):
        X, Y = np.meshgrid(xs, ys, indexing="ij")
        L = np.where(np.isfinite(v := loss(X, Y)), v, np.inf)
        i, j = np.unravel_index(np.argmin(L), L.shape)
        return X[i, j], Y[i, j], L[i, j], (i, j)

    x, y, f, _ = best(np.linspace(lo[0], hi[0], points), np.linspace(lo[1], hi[1], points))
    step = (hi - lo) / (points - 1)
    offsets = np.linspace(-1.0, 1.0, zoom_points)  # odd count: the window's centre is the current best
    last = zoom_points - 1
    for _ in range(max_iter):
        xs = np.clip(x + step[0] * offsets, lo[0], hi[0])
        ys = np.clip(y + step[1] * offsets, lo[1], hi[1])
        x2, y2, f2, (i, j) = best(xs, ys)
        recentre = False
        if f2 < f:
            x, y, f = x2, y2, f2
            # the best lies on the window's edge (but not the box's): the minimum may be further out
            recentre = (i in (0, last) and xs[i] not in (lo[0], hi[0])) or \
                (j in (0, last) and ys[j] not in (lo[1], hi[1]))
        if not recentre:
            step = step * 2.0 / last
        if np.all(step <= 1e-12 * np.maximum(1.0, np.abs([x, y]))):
            break
    edge = bool(np.isclose(x, lo[0]) or np.isclose(x, hi[0]) or np.isclose(y, lo[1]) or np.isclose(y, hi[1]))
    return float(x), float(y), float(f), edge


@dataclass(frozen=True)
class PowerLawFit:
    """The result of :func:`fit_pass_at_k_power_law`: −log pass@k ≈ a · k^(−b)."""

    a: float
    """Scale: the fitted −log pass@1."""
    b: float
    """Exponent (> 0 when pass@k rises with k). Brown et al.'s coverage ≈ exp(a'·k^b') has a' = −a, b' = −b."""
    r2: float
    """R² of the straight line log(−log pass@k) = log a − b log k (on the log scale)."""

    def predict(self, ks) -> np.ndarray:
        """pass@k = exp(−a · k^(−b)). Shape: like ``ks``."""
        return np.exp(-self.a * np.asarray(ks, dtype=np.float64) ** (-self.b))


def fit_pass_at_k_power_law(ks, pass_at_k_values) -> PowerLawFit:
    """Fit coverage ≈ exp(−a·k^(−b)), i.e. the power law −log pass@k ≈ a·k^(−b) (Brown et al. 2024, "Large
    Language Monkeys: Scaling Inference Compute with Repeated Sampling", who write it exp(a·k^b) with a, b < 0),
    by least squares on the log–log line

        log(−log pass@k) = log a − b · log k.

    Args:
        ks: budgets (> 0; at least 2 distinct). Shape: (K,).
        pass_at_k_values: pass@k at those budgets, each strictly between 0 and 1 (drop the k where every
            problem is solved: −log 1 = 0 has no logarithm). Shape: (K,).
    """
    k = _float_array(ks, "ks").reshape(-1)
    p = _float_array(pass_at_k_values, "pass_at_k_values").reshape(-1)
    if k.shape != p.shape:
        raise ValueError(f"ks and pass_at_k_values must have the same length; got {k.size} and {p.size}")
    if k.size < 2 or np.unique(k).size < 2:
        raise ValueError(f"need at least 2 distinct ks to fit 2 parameters; got {k.size} points")
    if np.any(k <= 0):
        raise ValueError("ks must be positive")
    if np.any((p <= 0) | (p >= 1)):
        raise ValueError("pass_at_k_values must lie strictly between 0 and 1 (−log pass@k must be positive)")
    x, y = np.log(k), np.log(-np.log(p))
    X = np.stack([np.ones_like(x), -x], axis=1)
    (log_a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
    r2 = _r2(y, X @ np.array([log_a, b])) if np.ptp(y) > 0 else 1.0
    return PowerLawFit(a=float(np.exp(log_a)), b=float(b), r2=r2)


@dataclass(frozen=True)
class BetaBinomialFit:
    """The result of :func:`fit_beta_binomial`: per-problem success rates p ~ Beta(alpha, beta)."""

    alpha: float
    """Beta's first shape: the density behaves like p^(alpha − 1) near 0, so this is the left-tail exponent."""
    beta: float
    """Beta's second shape."""
    nll: float
    """Negative log-likelihood of the counts at the fit (nats, summed over problems)."""

    @property
    def tail_exponent(self) -> float:
        """The predicted power-law exponent b of −log pass@k ≈ a·k^(−b) at large k (= alpha)."""
        return self.alpha

    def pass_at_k(self, ks) -> np.ndarray:
        """Population pass@k under the fit: 1 − E[(1 − p)^k] = 1 − B(α, β + k) / B(α, β). Shape: like ``ks``."""
        k = _int_array(ks, "ks", 1)
        a, b = self.alpha, self.beta
        lg = np.vectorize(lambda kk: math.lgamma(b + kk) - math.lgamma(a + b + kk), otypes=[float])
        return -np.expm1(lg(k) + math.lgamma(a + b) - math.lgamma(b))


def _beta_binomial_nll(alpha: np.ndarray, beta: np.ndarray, counts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """−Σ_i log BetaBin(c_i | n_i, α, β), vectorised over a grid of (α, β). Shape: α, β (G...) → (G...).

    log BetaBin(c | n, α, β) = log C(n, c) + Σ_{j<c} log(α+j) + Σ_{j<n−c} log(β+j) − Σ_{j<n} log(α+β+j).
    """
    shape = alpha.shape
    a, b = alpha.reshape(-1, 1), beta.reshape(-1, 1)
    N = int(n.max())
    j = np.arange(N)[None, :]
    out = np.empty(a.shape[0])
    const = sum(math.lgamma(ni + 1) - math.lgamma(ci + 1) - math.lgamma(ni - ci + 1) for ci, ni in zip(counts, n))
    chunk = max(1, 2**21 // (N + 1))
    for s in range(0, a.shape[0], chunk):
        def cum(x):
            return np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(np.log(x + j), axis=1)], axis=1)
        A, B, AB = cum(a[s:s + chunk]), cum(b[s:s + chunk]), cum(a[s:s + chunk] + b[s:s + chunk])
        out[s:s + chunk] = -(A[:, counts] + B[:, n - counts] - AB[:, n]).sum(axis=1)
    return (out - const).reshape(shape)


def fit_beta_binomial(correct_counts, n) -> BetaBinomialFit:
    """Fit the distribution of per-problem success rates, p_i ~ Beta(α, β), by maximum likelihood on the
    observed counts c_i ~ Binomial(n_i, p_i) (so c_i ~ BetaBinomial(n_i, α, β)):

        (α̂, β̂) = argmax Σ_i log [ C(n_i, c_i) B(c_i + α, n_i − c_i + β) / B(α, β) ]

    Why this estimator (Schaeffer et al. 2025 fit a beta-like left tail too): it uses the counts' discreteness
    exactly, so a problem never solved in n tries (c = 0) is evidence of a *small* rate, not of p = 0, and the
    fitted α is the left-tail exponent of the rates (density ∝ p^(α−1) near 0). Since E[(1−p)^k] ∝ k^(−α)
    at large k, α predicts the exponent b of :func:`fit_pass_at_k_power_law`. At the k a pool reaches
    (k ≤ n) the decay is not yet asymptotic and the curve's exponent sits a little above α (≈ +0.05 for
    α = 0.5, k ∈ [8, 256]); compare it with the exponent of ``fit.pass_at_k(ks)`` fitted over the same ks.
    A point mass of truly
    unsolvable problems is not a beta: it drags α down (and past 1e-3 the fit refuses, see below).

    Maximised by a grid-and-zoom search over (log α, log β) ∈ [log 1e-3, log 1e3]² (deterministic; no SciPy).

    Args:
        correct_counts: correct samples per problem. Shape: (P,).
        n: samples per problem, one int or one per problem. Shape: () or (P,).
    """
    counts = _counts_1d(correct_counts)
    n_ = np.broadcast_to(_int_array(n, "n", 1), counts.shape) if np.ndim(n) == 0 else _int_array(n, "n", 1)
    if n_.shape != counts.shape:
        raise ValueError(f"n must be an int or one per problem, shape {counts.shape}; got shape {n_.shape}")
    if np.any(counts > n_):
        raise ValueError("correct_counts must be <= n for every problem")
    if np.all(counts == 0) or np.all(counts == n_):
        raise ValueError("correct_counts are all 0 (or all n): the rates' distribution is not identifiable")
    bound = math.log(1e3)
    la, lb, nll, edge = _zoom_minimize(
        lambda x, y: _beta_binomial_nll(np.exp(x), np.exp(y), counts, n_), (-bound, -bound), (bound, bound)
    )
    if edge:
        raise ValueError("the beta-binomial MLE runs to the edge of its search box (α or β outside [1e-3, 1e3]): "
                         "the counts do not look beta-distributed (e.g. many problems never or always solved)")
    return BetaBinomialFit(alpha=math.exp(la), beta=math.exp(lb), nll=nll)


@dataclass(frozen=True)
class SigmoidFit:
    """The result of :func:`fit_sigmoid_compute_curve`: R(C) = R0 + (A − R0) / (1 + (C_mid / C)^B)."""

    A: float
    """The asymptote: the reward this recipe reaches with unlimited compute."""
    B: float
    """The scaling exponent (> 0): how sharply reward rises around C_mid (compute efficiency)."""
    C_mid: float
    """The compute at which half of the gain A − R0 is reached."""
    R0: float
    """The reward at zero compute (the start)."""
    r2: float
    """R² of the fit on the given points."""
    at_bound: bool = False
    """True when C_mid or B ended on the edge of the search box: the data do not pin that parameter down
    (e.g. a run that has not yet bent over, or a step too sharp to resolve)."""

    def predict(self, compute) -> np.ndarray:
        """R(C) for compute C > 0. Shape: like ``compute``."""
        c = np.asarray(compute, dtype=np.float64)
        s = 0.5 * (1.0 + np.tanh(0.5 * self.B * (np.log(c) - math.log(self.C_mid))))
        return self.R0 + (self.A - self.R0) * s


def fit_sigmoid_compute_curve(compute, rewards, R0: float | None = None) -> SigmoidFit:
    """Fit the sigmoid of reward against RL compute (Khatri et al. 2025, "The Art of Scaling Reinforcement
    Learning Compute for LLMs", eq. 1):

        R(C) = R0 + (A − R0) / (1 + (C_mid / C)^B)  =  R0 + (A − R0) · σ(B (log C − log C_mid)).

    Given (C_mid, B) the model is linear in (R0, A), so those two come in closed form (least squares); the
    remaining two are found by a grid over (log C_mid, log B) then a zooming pattern search
    (C_mid within e^{±(span of log C)} of the data, B in [0.02, 50]; ``at_bound`` says when a parameter
    ends on that box's edge). Deterministic; no SciPy.

    Args:
        compute: compute per point (> 0: FLOPs, GPU-hours, steps). Shape: (N,), N ≥ 4.
        rewards: the mean reward there. Shape: (N,); not constant.
        R0: the reward at zero compute when known (the start model's, measured before training), so that only
            (A, B, C_mid) are fitted and A − R0 comes in closed form; ``None``: fitted too. A run that has not yet
            bent over pins down a free R0 poorly (it slides to −∞ with A to +∞: a log-linear stretch); fixing it
            is what makes A, the ceiling, readable.
    """
    c = _float_array(compute, "compute").reshape(-1)
    r = _float_array(rewards, "rewards").reshape(-1)
    if c.shape != r.shape:
        raise ValueError(f"compute and rewards must have the same length; got {c.size} and {r.size}")
    if c.size < 4:
        raise ValueError(f"need at least 4 points to fit 4 parameters (A, B, C_mid, R0); got {c.size}")
    if np.any(c <= 0):
        raise ValueError("compute must be positive")
    if np.ptp(r) == 0:
        raise ValueError("rewards are constant: there is no rise to fit")
    x = np.log(c)
    r_c = r - r.mean()
    ss_tot = float((r_c ** 2).sum())

    def sigma(log_mid, log_b):
        return 0.5 * (1.0 + np.tanh(0.5 * np.exp(log_b)[..., None] * (x - log_mid[..., None])))

    y = None if R0 is None else r - float(R0)

    def sse(log_mid, log_b):  # residual after the best (R0, A − R0), or A − R0 alone, for these (C_mid, B)
        s = sigma(log_mid, log_b)
        if y is not None:
            ss, sy = (s ** 2).sum(axis=-1), (s * y).sum(axis=-1)
            return float((y ** 2).sum()) - np.where(ss > 1e-300, sy ** 2 / np.maximum(ss, 1e-300), 0.0)
        s_c = s - s.mean(axis=-1, keepdims=True)
        var = (s_c ** 2).sum(axis=-1)
        cov = (s_c * r_c).sum(axis=-1)
        return ss_tot - np.where(var > 1e-300, cov ** 2 / np.maximum(var, 1e-300), 0.0)

    span = max(float(np.ptp(x)), math.log(10.0))
    box_lo, box_hi = (x.min() - span, math.log(0.02)), (x.max() + span, math.log(50.0))
    log_mid, log_b, _, at_bound = _zoom_minimize(sse, box_lo, box_hi)
    s = sigma(np.array(log_mid), np.array(log_b))
    if y is not None:
        check_number("R0", R0)
        gain, R0 = float((s * y).sum() / (s ** 2).sum()), float(R0)
    else:
        s_c = s - s.mean()
        gain = float((s_c * r_c).sum() / (s_c ** 2).sum())
        R0 = float(r.mean() - gain * s.mean())
    fit = SigmoidFit(A=R0 + gain, B=math.exp(log_b), C_mid=math.exp(log_mid), R0=R0, r2=0.0, at_bound=at_bound)
    return replace(fit, r2=_r2(r, fit.predict(c)))
