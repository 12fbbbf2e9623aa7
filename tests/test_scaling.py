"""Tests for equations.scaling: pass@k (unbiased and plug-in), the pass@k curve, exact maj@k and best-of-k from
one pool, the power-law and beta-binomial fits (Brown et al. 2024; Schaeffer et al. 2025) and the sigmoid
compute fit (Khatri et al. 2025). Each gets a hand value, a second implementation and a property."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from rlhfbook_lab.equations.scaling import (
    BetaBinomialFit,
    best_of_k,
    fit_beta_binomial,
    fit_pass_at_k_power_law,
    fit_sigmoid_compute_curve,
    majority_at_k,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_from_rates,
    pass_at_k_plugin,
    tie_group_bounds,
)

# --------------------------------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------------------------------


def test_pass_at_k_hand_values():
    # 1 − C(7, 5)/C(10, 5) = 1 − 21/252 = 11/12.
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12, abs=1e-15)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # n − c = 4 < k: every 5-subset holds a correct sample
    # C(9999, 5000)/C(10000, 5000) = 5000/10000: a case the huge binomials (or lgamma) would make hard.
    assert pass_at_k(10000, 1, 5000) == pytest.approx(0.5, abs=1e-13)


def test_pass_at_k_matches_brute_force_over_subsets():
    for n in range(1, 8):
        for c in range(n + 1):
            correct = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(correct, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-14)


def test_pass_at_k_matches_exact_fractions_for_large_n():
    for n, c, k in [(200, 17, 50), (1000, 3, 999), (5000, 2500, 7), (300, 1, 1)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12)


def test_pass_at_k_vectorised_equals_scalar_loop():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 40, size=60)
    c = rng.integers(0, n + 1)
    k = rng.integers(1, n + 1)
    vec = pass_at_k(n, c, k)
    assert vec.shape == (60,)
    np.testing.assert_allclose(vec, [pass_at_k(int(a), int(b), int(d)) for a, b, d in zip(n, c, k)], atol=1e-15)
    # broadcasting: problems (P, 1) against budgets (1, K)
    grid = pass_at_k(n[:, None], c[:, None], np.array([[1]]))
    np.testing.assert_allclose(grid[:, 0], c / n, atol=1e-15)  # pass@1 = c/n


def test_pass_at_k_is_monotone_in_k_and_c():
    n = 30
    table = np.array([[pass_at_k(n, c, k) for k in range(1, n + 1)] for c in range(n + 1)])
    assert np.all(np.diff(table, axis=1) >= -1e-15)  # more budget never hurts
    assert np.all(np.diff(table, axis=0) >= -1e-15)  # more correct samples never hurt
    assert np.all((table >= 0) & (table <= 1))


@pytest.mark.parametrize(
    "n, c, k, match",
    [(5, 6, 1, "c must be <= n"), (5, 2, 6, "k must be <= n"), (5, 2, 0, "k must be >= 1"), (5, -1, 1, "c must"),
     (5, 2.5, 1, "c must hold whole numbers"), (5, True, 1, "c must be an integer"), (0, 0, 1, "n must be >= 1"),
     ([5, 5], [1, 2, 3], 1, "broadcast")],
)
def test_pass_at_k_rejects_bad_counts(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


def test_pass_at_k_accepts_whole_floats():
    assert pass_at_k(10.0, 3.0, 5) == pytest.approx(11 / 12)


def test_plugin_hand_value_and_downward_bias():
    assert pass_at_k_plugin(10, 3, 5) == pytest.approx(1 - 0.7**5, abs=1e-15)
    assert pass_at_k_plugin(10, 3, 50) == pytest.approx(1 - 0.7**50)  # extrapolates past n
    # Pointwise: never above the unbiased estimator; equal at k = 1 and at c ∈ {0, n}; below otherwise.
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                plug, unb = pass_at_k_plugin(n, c, k), pass_at_k(n, c, k)
                if k == 1 or c in (0, n):
                    assert plug == pytest.approx(unb, abs=1e-15)
                else:
                    assert plug < unb
    # In expectation over c ~ Binomial(n, p): the unbiased one hits the truth, the plug-in falls short.
    n, k = 10, 4
    for p in (0.05, 0.3, 0.7):
        weights = np.array([math.comb(n, c) * p**c * (1 - p) ** (n - c) for c in range(n + 1)])
        truth = 1 - (1 - p) ** k
        assert weights @ pass_at_k(n, np.arange(n + 1), k) == pytest.approx(truth, abs=1e-12)
        assert weights @ pass_at_k_plugin(n, np.arange(n + 1), k) < truth - 1e-3


def test_pass_at_k_curve_hand_value_and_loop():
    counts, n = [3, 0, 10], 10
    curve = pass_at_k_curve(counts, n)
    assert curve.shape == (10,)
    assert curve[0] == pytest.approx((0.3 + 0 + 1) / 3)
    assert curve[4] == pytest.approx((11 / 12 + 0 + 1) / 3)
    loop = [np.mean([pass_at_k(n, c, k) for c in counts]) for k in range(1, n + 1)]
    np.testing.assert_allclose(curve, loop, atol=1e-15)
    assert np.all(np.diff(curve) >= 0)


def test_pass_at_k_curve_per_problem_pool_sizes_and_refusals():
    curve = pass_at_k_curve([1, 4], n=[4, 8], ks=[1, 2, 4])
    np.testing.assert_allclose(curve, [(pass_at_k(4, 1, k) + pass_at_k(8, 4, k)) / 2 for k in (1, 2, 4)])
    ragged = [[True, False, True], [False, True]]
    with pytest.raises(ValueError, match="sum them|per-problem correct counts"):
        pass_at_k_curve(ragged, n=3)
    with pytest.raises(ValueError, match="per-problem correct counts"):
        pass_at_k_curve(np.array([[True, False], [False, False]]), n=2)
    with pytest.raises(ValueError, match="per-problem correct counts"):
        pass_at_k_curve([True, False], n=1)
    with pytest.raises(ValueError, match="ks must be <= 4"):
        pass_at_k_curve([1, 4], n=[4, 8], ks=[5])
    with pytest.raises(ValueError, match="n must be an int or one per problem"):
        pass_at_k_curve([1, 4], n=[4, 8, 8])
    with pytest.raises(ValueError, match="correct_counts must be <= n"):
        pass_at_k_curve([5], n=4)


# --------------------------------------------------------------------------------------------------
# maj@k
# --------------------------------------------------------------------------------------------------


def brute_majority(pool, correct, k):
    """maj@k by enumerating every k-subset and splitting each tie uniformly; None abstains."""
    total = Fraction(0)
    subsets = list(itertools.combinations(pool, k))
    for s in subsets:
        votes = Counter(a for a in s if a is not None)
        if votes:
            top = max(votes.values())
            tied = [a for a, v in votes.items() if v == top]
            if correct in tied:
                total += Fraction(1, len(tied))
    return float(total / len(subsets))


def test_majority_hand_values():
    # Pool {1, 1, 2, None, 3}, right answer 1 (counted by hand over the C(5, k) subsets):
    # k=2: 5/10 (e.g. {1, 2} is a coin flip); k=3: (3 + 2·(1/2 + 1/3 + 1/2))/10 = 17/30; k=4: 11/15.
    got = majority_at_k([[1, 1, 2, None, 3]], [1])
    np.testing.assert_allclose(got, [2 / 5, 1 / 2, 17 / 30, 11 / 15, 1.0], atol=1e-14)
    # None abstains: {None, None, right} elects the right answer; a pool of only None never does.
    np.testing.assert_allclose(majority_at_k([[None, None, "7"]], ["7"], ks=[3]), [1.0])
    np.testing.assert_allclose(majority_at_k([[None, None]], ["7"]), [0.0, 0.0])


def test_majority_matches_brute_force_over_subsets():
    rng = np.random.default_rng(1)
    labels = [0, 1, 2, None]
    for _ in range(25):
        n = int(rng.integers(1, 9))
        pool = [labels[i] for i in rng.choice(4, size=n, p=[0.35, 0.3, 0.15, 0.2])]
        got = majority_at_k([pool], [0], reduction="none")[0]
        np.testing.assert_allclose(got, [brute_majority(pool, 0, k) for k in range(1, n + 1)], atol=1e-13)


def test_majority_agrees_with_monte_carlo_resampling():
    rng = np.random.default_rng(2)
    pool = list(rng.choice([0, 1, 2, 3, -1], size=30, p=[0.3, 0.25, 0.2, 0.15, 0.1]))
    pool = [None if a == -1 else int(a) for a in pool]
    k, draws = 7, 20000
    wins = np.empty(draws)
    for t in range(draws):
        votes = Counter(pool[i] for i in rng.choice(30, size=k, replace=False) if pool[i] is not None)
        top = max(votes.values()) if votes else 0
        tied = [a for a, v in votes.items() if v == top]
        wins[t] = bool(tied) and tied[rng.integers(len(tied))] == 0
    exact = majority_at_k([pool], [0], ks=[k])[0]
    assert abs(wins.mean() - exact) < 4 * wins.std() / math.sqrt(draws)


def test_majority_limits_and_properties():
    rng = np.random.default_rng(3)
    pools = [list(rng.choice(6, size=12, p=[0.3, 0.3, 0.1, 0.1, 0.1, 0.1])) for _ in range(20)]
    per = majority_at_k(pools, [0] * 20, reduction="none")
    c = np.array([p.count(0) for p in pools])
    np.testing.assert_allclose(per[:, 0], c / 12, atol=1e-14)  # maj@1 = pass@1 = c/n
    for row, pool in zip(per, pools):  # maj@n = the pool's own (tie-split) majority
        votes = Counter(pool)
        tied = [a for a, v in votes.items() if v == max(votes.values())]
        assert row[-1] == pytest.approx(1 / len(tied) if 0 in tied else 0.0, abs=1e-14)
    np.testing.assert_allclose(majority_at_k(pools, [0] * 20), per.mean(axis=0))
    # With no wrong answers (only right ones and abstentions) maj@k is pass@k.
    only_right = [[1] * 3 + [None] * 7, [1] + [None] * 9]
    np.testing.assert_allclose(majority_at_k(only_right, [1, 1]), pass_at_k_curve([3, 1], 10), atol=1e-14)


def test_majority_refuses_bad_input():
    with pytest.raises(ValueError, match="one pool per problem"):
        majority_at_k(["1", "2", "1"], ["1"])  # a flat pool, not a list of pools
    with pytest.raises(ValueError, match="is None"):
        majority_at_k([[1, 2]], [None])
    with pytest.raises(ValueError, match="one answer per pool"):
        majority_at_k([[1, 2], [1]], [1])
    with pytest.raises(ValueError, match="ks must be <= 1"):
        majority_at_k([[1, 2], [1]], [1, 1], ks=[2])
    with pytest.raises(ValueError, match="hashable"):
        majority_at_k([[[1], [2]]], [1])
    with pytest.raises(ValueError, match="at most 1000"):
        majority_at_k([[1] * 1001], [1])
    with pytest.raises(ValueError, match="reduction"):
        majority_at_k([[1]], [1], reduction="sum")
    with pytest.raises(ValueError, match="one answer per pool"):
        majority_at_k([[1, 2]], 1)  # a bare answer, not one per pool


# --------------------------------------------------------------------------------------------------
# best-of-k
# --------------------------------------------------------------------------------------------------


def brute_best_of_k(select, value, k):
    """Enumerate every k-subset; the kept sample is uniform over the subset's tied maxima."""
    total = 0.0
    subsets = list(itertools.combinations(range(len(select)), k))
    for s in subsets:
        top = max(select[i] for i in s)
        winners = [i for i in s if select[i] == top]
        total += sum(value[i] for i in winners) / len(winners)
    return total / len(subsets)


def test_tie_group_bounds_hand_value():
    lo, hi = tie_group_bounds(np.array([[1, 1, 2, 3, 3, 3], [0, 1, 2, 3, 4, 5]]))
    np.testing.assert_array_equal(lo, [[0, 0, 2, 3, 3, 3], [0, 1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(hi, [[2, 2, 3, 6, 6, 6], [1, 2, 3, 4, 5, 6]])


def test_best_of_k_hand_values():
    # No ties: pairs of {1, 2, 3} keep 20, 30, 30 → 80/3.
    np.testing.assert_allclose(best_of_k([1, 2, 3], [10, 20, 30]), [20, 80 / 3, 30], atol=1e-12)
    # Ties: select (2, 2, 1), value (0, 6, 9). k=2: {a,b} → (0 + 6)/2, {a,c} → 0, {b,c} → 6: mean 3.
    np.testing.assert_allclose(best_of_k([2, 2, 1], [0, 6, 9]), [5, 3, 3], atol=1e-12)


def test_best_of_k_matches_brute_force_over_subsets():
    rng = np.random.default_rng(4)
    for _ in range(20):
        n = int(rng.integers(1, 8))
        select = rng.integers(0, 3, size=n).astype(float)  # many ties
        value = rng.normal(size=n)
        got = best_of_k(select, value)
        np.testing.assert_allclose(got, [brute_best_of_k(select, value, k) for k in range(1, n + 1)], atol=1e-12)


def test_best_of_k_agrees_with_monte_carlo():
    rng = np.random.default_rng(5)
    n, k, draws = 40, 6, 20000
    select = np.round(rng.normal(size=n), 1)  # some ties
    value = select + rng.normal(size=n)
    est = np.empty(draws)
    for t in range(draws):
        s = rng.choice(n, size=k, replace=False)
        winners = s[select[s] == select[s].max()]
        est[t] = value[winners[rng.integers(len(winners))]]
    exact = best_of_k(select, value, ks=[k])[0]
    assert abs(est.mean() - exact) < 4 * est.std() / math.sqrt(draws)


def test_best_of_k_properties():
    rng = np.random.default_rng(6)
    select = rng.integers(0, 5, size=(8, 15)).astype(float)
    value = rng.normal(size=(8, 15))
    per = best_of_k(select, value, reduction="none")
    assert per.shape == (8, 15)
    np.testing.assert_allclose(per[:, 0], value.mean(axis=1), atol=1e-12)  # k = 1: the mean
    at_max = [value[i][select[i] == select[i].max()].mean() for i in range(8)]
    np.testing.assert_allclose(per[:, -1], at_max, atol=1e-12)  # k = n: the (tie-averaged) value at the max
    np.testing.assert_allclose(best_of_k(select, value), per.mean(axis=0))
    # invariant to the pool's order and to a strictly increasing transform of the selector
    perm = rng.permutation(15)
    np.testing.assert_allclose(best_of_k(select[:, perm], value[:, perm], reduction="none"), per, atol=1e-12)
    np.testing.assert_allclose(best_of_k(np.exp(select), value, reduction="none"), per, atol=1e-12)
    # selecting on the value itself: the expected maximum rises with k
    gold = rng.normal(size=(8, 15))
    assert np.all(np.diff(best_of_k(gold, gold, reduction="none"), axis=1) >= -1e-12)


def test_best_of_k_refuses_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        best_of_k([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        best_of_k([1, np.nan], [1, 2])
    with pytest.raises(ValueError, match="ks must be <= 2"):
        best_of_k([1, 2], [1, 2], ks=[3])
    with pytest.raises(ValueError, match=r"shape \(P, n\)"):
        best_of_k(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


# --------------------------------------------------------------------------------------------------
# power laws: the curve (Brown et al. 2024) and the rates behind it (Schaeffer et al. 2025)
# --------------------------------------------------------------------------------------------------


def test_power_law_fit_hand_value_and_polyfit():
    # −log pass@1 = 2, −log pass@4 = 1 → a = 2, b = 1/2 (two points fix the line).
    fit = fit_pass_at_k_power_law([1, 4], [math.exp(-2), math.exp(-1)])
    assert (fit.a, fit.b) == pytest.approx((2.0, 0.5), abs=1e-12)
    # noisy points: the same line as numpy's polyfit on log(−log p) vs log k
    rng = np.random.default_rng(7)
    ks = np.arange(1, 40)
    p = np.exp(-1.5 * ks**-0.7 * np.exp(0.05 * rng.normal(size=ks.size)))
    fit = fit_pass_at_k_power_law(ks, p)
    slope, intercept = np.polyfit(np.log(ks), np.log(-np.log(p)), 1)
    assert (fit.b, fit.a) == pytest.approx((-slope, math.exp(intercept)), rel=1e-10)
    assert 0.9 < fit.r2 < 1.0
    np.testing.assert_allclose(fit_pass_at_k_power_law(ks, fit.predict(ks)).predict(ks), fit.predict(ks))


def test_power_law_fit_refuses_bad_input():
    with pytest.raises(ValueError, match="at least 2 distinct"):
        fit_pass_at_k_power_law([3], [0.5])
    with pytest.raises(ValueError, match="at least 2 distinct"):
        fit_pass_at_k_power_law([3, 3], [0.5, 0.6])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        fit_pass_at_k_power_law([1, 2], [0.5, 1.0])
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        fit_pass_at_k_power_law([1, 2], [0.0, 0.5])
    with pytest.raises(ValueError, match="positive"):
        fit_pass_at_k_power_law([0, 2], [0.3, 0.5])
    with pytest.raises(ValueError, match="same length"):
        fit_pass_at_k_power_law([1, 2, 3], [0.3, 0.5])


def test_pass_at_k_from_rates_hand_value_and_plugin():
    np.testing.assert_allclose(pass_at_k_from_rates([0.5, 0.0], [1, 2]), [0.25, 0.375], atol=1e-15)
    counts, n, ks = np.array([0, 3, 7, 10]), 10, np.array([1, 5, 40])
    plug = np.mean([pass_at_k_plugin(n, c, ks) for c in counts], axis=0)
    np.testing.assert_allclose(pass_at_k_from_rates(counts / n, ks), plug, atol=1e-14)
    with pytest.raises(ValueError, match="probabilities"):
        pass_at_k_from_rates([0.5, 1.2], [1])


@pytest.mark.parametrize("b, beta", [(0.5, 2.0), (1.0, 5.0)])
def test_power_law_exponent_is_the_left_tail_exponent_of_the_rates(b, beta):
    # Rates p_i ~ Beta(b, β): density ∝ p^(b−1) near 0, so −log pass@k ∝ k^(−b) at large k.
    p = np.random.default_rng(8).beta(b, beta, size=20000)
    ks = np.unique(np.logspace(2, 4, 20).astype(int))
    assert fit_pass_at_k_power_law(ks, pass_at_k_from_rates(p, ks)).b == pytest.approx(b, abs=0.04)
    # the same from the beta itself (no sampling): the fit's exponent approaches alpha
    exact = BetaBinomialFit(alpha=b, beta=beta, nll=0.0)
    assert fit_pass_at_k_power_law(ks, exact.pass_at_k(ks)).b == pytest.approx(b, abs=0.02)


def test_beta_pass_at_k_hand_value_product_and_monte_carlo():
    fit = BetaBinomialFit(alpha=0.5, beta=2.0, nll=0.0)
    # k = 1: 1 − β/(α + β) = α/(α + β) = 0.2; k = 2: 1 − β(β+1)/((α+β)(α+β+1)) = 1 − 6/8.75.
    np.testing.assert_allclose(fit.pass_at_k([1, 2]), [0.2, 1 - 6 / 8.75], atol=1e-13)
    product = [1 - np.prod([(2.0 + j) / (2.5 + j) for j in range(k)]) for k in (10, 300)]
    np.testing.assert_allclose(fit.pass_at_k([10, 300]), product, rtol=1e-11)
    p = np.random.default_rng(9).beta(0.5, 2.0, size=200000)
    mc = pass_at_k_from_rates(p, [10])[0]
    assert abs(mc - fit.pass_at_k([10])[0]) < 4 * np.std(1 - (1 - p) ** 10) / math.sqrt(p.size)


def test_fit_beta_binomial_recovers_a_known_tail_and_is_the_mle():
    rng = np.random.default_rng(10)
    alpha, beta, n = 0.5, 4.0, 100
    counts = rng.binomial(n, rng.beta(alpha, beta, size=2000))
    fit = fit_beta_binomial(counts, n)
    assert fit.alpha == pytest.approx(alpha, rel=0.1)
    assert fit.beta == pytest.approx(beta, rel=0.15)
    assert fit.tail_exponent == fit.alpha

    def nll(a, b):  # the likelihood written out with log-gamma, one problem at a time
        return -sum(math.lgamma(n + 1) - math.lgamma(c + 1) - math.lgamma(n - c + 1)
                    + math.lgamma(c + a) + math.lgamma(n - c + b) - math.lgamma(n + a + b)
                    - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b) for c in counts)

    assert fit.nll == pytest.approx(nll(fit.alpha, fit.beta), rel=1e-10)
    for da, db in [(1.01, 1), (0.99, 1), (1, 1.01), (1, 0.99)]:  # a local maximum of the likelihood
        assert nll(fit.alpha * da, fit.beta * db) > fit.nll


def test_curve_exponent_matches_the_one_predicted_from_the_counts():
    # What lesson 07 does: from one pool per problem, fit the pass@k curve's power law, and compare its
    # exponent with the one predicted by the fitted distribution of the rates (over the same ks) and with α.
    rng = np.random.default_rng(12)
    n = 256
    counts = rng.binomial(n, rng.beta(0.5, 4.0, size=500))
    ks = np.unique(np.logspace(np.log10(8), np.log10(n), 15).astype(int))
    observed = fit_pass_at_k_power_law(ks, pass_at_k_curve(counts, n, ks))
    dist = fit_beta_binomial(counts, n)
    predicted = fit_pass_at_k_power_law(ks, dist.pass_at_k(ks))
    assert observed.r2 > 0.99
    assert observed.b == pytest.approx(predicted.b, abs=0.05)
    assert observed.b == pytest.approx(dist.alpha, abs=0.1)  # pre-asymptotic: a little above α


def test_fit_beta_binomial_refuses_unidentifiable_counts():
    with pytest.raises(ValueError, match="all 0"):
        fit_beta_binomial([0, 0, 0], 10)
    with pytest.raises(ValueError, match="<= n"):
        fit_beta_binomial([11, 0], 10)
    with pytest.raises(ValueError, match="edge of its search box"):  # half never solved, half always
        fit_beta_binomial([0] * 50 + [100] * 50, 100)


# --------------------------------------------------------------------------------------------------
# sigmoid compute curve (Khatri et al. 2025)
# --------------------------------------------------------------------------------------------------


def sigmoid(C, A, B, C_mid, R0):
    return R0 + (A - R0) / (1 + (C_mid / C) ** B)


def test_sigmoid_fit_recovers_noiseless_parameters():
    C = np.logspace(0, 4, 20)
    fit = fit_sigmoid_compute_curve(C, sigmoid(C, A=0.8, B=1.5, C_mid=300.0, R0=0.1))
    assert (fit.A, fit.B, fit.C_mid, fit.R0) == pytest.approx((0.8, 1.5, 300.0, 0.1), rel=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert not fit.at_bound
    # predict is the formula (hand value: at C_mid the reward is halfway, (A + R0)/2)
    assert fit.predict(fit.C_mid) == pytest.approx((fit.A + fit.R0) / 2, abs=1e-12)
    np.testing.assert_allclose(fit.predict(C), sigmoid(C, fit.A, fit.B, fit.C_mid, fit.R0), atol=1e-12)


def test_sigmoid_fit_with_a_known_start():
    """R0 given: the noiseless parameters come back; the fit equals the free fit when R0 is the free fit's own;
    on a run that has not bent over, a free R0 runs off while a fixed one reads the ceiling; bad R0 refused."""
    C = np.logspace(0, 4, 20)
    fit = fit_sigmoid_compute_curve(C, sigmoid(C, A=0.8, B=1.5, C_mid=300.0, R0=0.1), R0=0.1)
    assert (fit.A, fit.B, fit.C_mid, fit.R0) == pytest.approx((0.8, 1.5, 300.0, 0.1), rel=1e-6)
    rng = np.random.default_rng(3)
    r = sigmoid(C, A=0.7, B=0.8, C_mid=500.0, R0=0.2) + 0.01 * rng.normal(size=C.size)
    free = fit_sigmoid_compute_curve(C, r)
    fixed = fit_sigmoid_compute_curve(C, r, R0=free.R0)
    assert (fixed.A, fixed.B, fixed.C_mid) == pytest.approx((free.A, free.B, free.C_mid), rel=1e-4)
    early = C[:9]  # only the lower half of the rise
    assert fit_sigmoid_compute_curve(early, sigmoid(early, 0.8, 1.5, 300.0, 0.1), R0=0.1).A == pytest.approx(0.8,
                                                                                                          rel=1e-4)
    with pytest.raises(ValueError, match="R0"):
        fit_sigmoid_compute_curve(C, r, R0=float("nan"))


def test_sigmoid_fit_with_noise_beats_the_true_parameters():
    rng = np.random.default_rng(11)
    C = np.logspace(1, 5, 30)
    truth = dict(A=0.62, B=0.9, C_mid=2000.0, R0=0.05)
    r = sigmoid(C, **truth) + 0.01 * rng.normal(size=C.size)
    fit = fit_sigmoid_compute_curve(C, r)
    assert fit.A == pytest.approx(0.62, abs=0.03)
    assert fit.B == pytest.approx(0.9, rel=0.15)
    assert fit.C_mid == pytest.approx(2000.0, rel=0.3)
    assert fit.R0 == pytest.approx(0.05, abs=0.03)
    # it is a least-squares minimum: no worse than the generating parameters
    assert ((fit.predict(C) - r) ** 2).sum() <= ((sigmoid(C, **truth) - r) ** 2).sum()
    assert 0.9 < fit.r2 <= 1.0


def test_sigmoid_fit_flags_an_unidentified_midpoint():
    # Only the first, nearly straight part of a rise: C_mid is not pinned down by the data.
    C = np.logspace(0, 1, 8)
    fit = fit_sigmoid_compute_curve(C, 0.01 * np.log(C))
    assert fit.at_bound
    assert fit.r2 == pytest.approx(1.0, abs=1e-6)


def test_sigmoid_fit_refuses_bad_input():
    with pytest.raises(ValueError, match="at least 4 points"):
        fit_sigmoid_compute_curve([1, 2, 3], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="positive"):
        fit_sigmoid_compute_curve([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="constant"):
        fit_sigmoid_compute_curve([1, 2, 3, 4], [0.3] * 4)
    with pytest.raises(ValueError, match="same length"):
        fit_sigmoid_compute_curve([1, 2, 3, 4], [0.3] * 5)
    with pytest.raises(ValueError, match="finite"):
        fit_sigmoid_compute_curve([1, 2, 3, 4], [0.3, np.nan, 0.1, 0.2])
