"""Tests for equations.best_of_n: the exact best-of-n distribution of a discrete policy (vs enumeration of every
n-tuple), its KL (≤ log n − (n−1)/n, Beirami et al. 2024, with equality only in the untied limit), its expected
score (vs best-of-k resampling), and the empirical policy of a pool of replies with its bias."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rlhfbook_lab.equations.best_of_n import (
    bon_distribution,
    bon_expected_score,
    bon_kl_analytic,
    bon_kl_exact,
    empirical_policy,
)
from rlhfbook_lab.equations.scaling import best_of_k


def brute_bon(probs, scores, n):
    """π_bon by enumerating all K^n tuples; the kept sample is uniform over the tuple's tied maxima."""
    out = np.zeros(len(probs))
    for tup in itertools.product(range(len(probs)), repeat=n):
        weight = np.prod([probs[i] for i in tup])
        top = max(scores[i] for i in tup)
        winners = [i for i in tup if scores[i] == top]
        for i in winners:
            out[i] += weight / len(winners)
    return out


def kl(q, p):
    m = q > 0
    return float((q[m] * np.log(q[m] / p[m])).sum())


def test_bon_kl_analytic_hand_values():
    assert bon_kl_analytic(1) == 0.0
    assert bon_kl_analytic(2) == pytest.approx(math.log(2) - 0.5, abs=1e-15)
    np.testing.assert_allclose(bon_kl_analytic(np.array([4, 16])), [math.log(4) - 0.75, math.log(16) - 15 / 16])
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n must be an integer"):
            bon_kl_analytic(bad)


def test_bon_distribution_hand_value():
    # Two equally likely replies scored 0 and 1, best of 2: the better one unless both draws are the worse.
    np.testing.assert_allclose(bon_distribution([0.5, 0.5], [0.0, 1.0], 2), [0.25, 0.75], atol=1e-15)
    # A tie between the two top replies (masses 0.2, 0.3): they share 1 − 0.5² = 0.75 in proportion 2 : 3.
    np.testing.assert_allclose(bon_distribution([0.5, 0.2, 0.3], [0.0, 1.0, 1.0], 2), [0.25, 0.3, 0.45],
                               atol=1e-15)


def test_bon_distribution_matches_enumeration_of_every_tuple():
    rng = np.random.default_rng(0)
    for _ in range(12):
        K = int(rng.integers(1, 5))
        probs = rng.dirichlet(np.ones(K))
        scores = rng.integers(0, 3, size=K).astype(float)  # ties are common
        for n in range(1, 5):
            np.testing.assert_allclose(bon_distribution(probs, scores, n), brute_bon(probs, scores, n), atol=1e-13)
            assert bon_kl_exact(probs, scores, n) == pytest.approx(kl(brute_bon(probs, scores, n), probs), abs=1e-12)


def test_bon_distribution_properties():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(6), size=(2, 3))  # a batch of policies, shape (2, 3, 6)
    scores = rng.normal(size=(2, 3, 6))
    np.testing.assert_allclose(bon_distribution(probs, scores, 1), probs, atol=1e-15)  # n = 1: π itself
    for n in (2, 7, 1000):
        bon = bon_distribution(probs, scores, n)
        assert bon.shape == (2, 3, 6)
        np.testing.assert_allclose(bon.sum(axis=-1), 1.0, atol=1e-12)
        # distinct scores: the best outcome wins unless all n draws miss it
        top = np.argmax(scores, axis=-1)[..., None]
        p_top = np.take_along_axis(probs, top, axis=-1)[..., 0]
        np.testing.assert_allclose(np.take_along_axis(bon, top, axis=-1)[..., 0], 1 - (1 - p_top) ** n, atol=1e-12)
        for i, j in itertools.product(range(2), range(3)):  # the batch equals a loop over policies
            np.testing.assert_allclose(bon[i, j], bon_distribution(probs[i, j], scores[i, j], n), atol=1e-15)
    # an outcome π never produces is never kept
    assert bon_distribution([0.5, 0.0, 0.5], [0.0, 5.0, 1.0], 3)[1] == 0.0


def test_bon_kl_exact_never_exceeds_the_analytic_formula():
    rng = np.random.default_rng(2)
    for _ in range(20):
        K = int(rng.integers(2, 40))
        probs = rng.dirichlet(np.full(K, 0.5))
        scores = rng.integers(0, 5, size=K) if rng.random() < 0.5 else rng.normal(size=K)
        for n in (1, 2, 3, 8, 64, 512):
            assert bon_kl_exact(probs, scores, n) <= bon_kl_analytic(n) + 1e-12


def test_bon_kl_exact_reaches_the_formula_only_in_the_untied_limit():
    # K equally likely replies with distinct scores: the gap to log n − (n−1)/n closes as K grows.
    for n in (4, 64):
        gaps = [bon_kl_analytic(n) - bon_kl_exact(np.full(K, 1 / K), np.arange(K), n) for K in (10, 100, 1000, 10000)]
        assert all(g > 0 for g in gaps)
        assert all(a > b for a, b in zip(gaps, gaps[1:]))
        assert gaps[-1] < 1e-5
    # strictly smaller with concentrated mass, or with ties
    n = 16
    assert bon_kl_exact([0.9, 0.1], [1.0, 0.0], n) < 0.2 * bon_kl_analytic(n)  # the best reply is already likely
    tied = bon_kl_exact(np.full(100, 0.01), np.repeat(np.arange(10), 10), n)
    untied = bon_kl_exact(np.full(100, 0.01), np.arange(100), n)
    assert tied < untied - 0.1
    # a single reply (or all replies tied): best-of-n is π itself
    assert bon_kl_exact([1.0], [3.0], n) == 0.0
    assert bon_kl_exact([0.3, 0.7], [1.0, 1.0], n) == pytest.approx(0.0, abs=1e-15)


def test_bon_expected_score_hand_value_and_best_of_k_resampling():
    assert bon_expected_score([0.5, 0.5], [0.0, 1.0], 2) == pytest.approx(0.75, abs=1e-15)
    # A random k-subset of an i.i.d. pool is k i.i.d. draws, so best_of_k over fresh pools averages to the exact
    # best-of-n score.
    rng = np.random.default_rng(3)
    probs, scores, n = rng.dirichlet(np.ones(8)), np.round(rng.normal(size=8), 1), 4
    pools = scores[rng.choice(8, size=(3000, 20), p=probs)]
    per_pool = best_of_k(pools, pools, ks=[n], reduction="none")[:, 0]
    exact = bon_expected_score(probs, scores, n)
    assert abs(per_pool.mean() - exact) < 4 * per_pool.std() / math.sqrt(len(per_pool))
    # more samples, a better kept score
    assert np.all(np.diff([bon_expected_score(probs, scores, m) for m in range(1, 20)]) > 0)


def test_bon_refuses_bad_policies():
    with pytest.raises(ValueError, match="sum to 1"):
        bon_distribution([0.5, 0.4], [0, 1], 2)
    with pytest.raises(ValueError, match="non-negative"):
        bon_distribution([1.5, -0.5], [0, 1], 2)
    with pytest.raises(ValueError, match="same shape"):
        bon_distribution([0.5, 0.5], [0, 1, 2], 2)
    with pytest.raises(ValueError, match="scores must be finite"):
        bon_kl_exact([0.5, 0.5], [0, np.nan], 2)
    with pytest.raises(ValueError, match="n must be an integer"):
        bon_expected_score([0.5, 0.5], [0, 1], 0)


# --------------------------------------------------------------------------------------------------
# a pool of replies as a policy
# --------------------------------------------------------------------------------------------------


def test_empirical_policy_hand_value():
    pol = empirical_policy(["a", "b", "a", "c"], [1.0, 2.0, 1.0, 0.5])
    assert pol.replies == ["a", "b", "c"]
    np.testing.assert_allclose(pol.probs, [0.5, 0.25, 0.25])
    np.testing.assert_allclose(pol.scores, [1.0, 2.0, 0.5])
    assert pol.n_samples == 4
    # best of 2 on it: "b" is kept unless both draws miss it
    assert bon_distribution(pol.probs, pol.scores, 2)[1] == pytest.approx(1 - 0.75**2)
    with pytest.raises(ValueError, match="differ"):
        empirical_policy(["a", "a"], [1.0, 1.5])
    with pytest.raises(ValueError, match="one per reply"):
        empirical_policy(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="non-empty list"):
        empirical_policy("ab", [1.0, 2.0])


def test_empirical_estimate_is_capped_at_log_pool_size():
    # KL(π̂_bon ‖ π̂) ≤ log N for any pool of N replies, whatever n.
    rng = np.random.default_rng(4)
    for N in (4, 16, 64):
        for _ in range(10):
            replies = list(rng.integers(0, 30, size=N))
            pol = empirical_policy(replies, [float(r % 7) for r in replies])
            for n in (2, 16, 256, 4096):
                assert bon_kl_exact(pol.probs, pol.scores, n) <= math.log(N) + 1e-12
    # A policy that never repeats a reply (continuous): the truth is log n − (n−1)/n, the pool's estimate
    # is that of N untied atoms, below the truth, and the gap closes as N grows.
    n = 32
    estimates = [bon_kl_exact(np.full(N, 1 / N), rng.normal(size=N), n) for N in (8, 64, 512, 4096)]
    assert estimates[0] < math.log(8) < bon_kl_analytic(n)
    assert all(a < b for a, b in zip(estimates, estimates[1:]))
    assert bon_kl_analytic(n) - estimates[-1] < 0.01


def expected_two_level_estimate(p_top: float, n: int, N: int) -> float:
    """E over pools of N draws from {worse: 1 − p_top, better: p_top} of the empirical best-of-n KL, exactly:
    a sum over the binomial count of "better" replies in the pool."""
    total = 0.0
    for c in range(N + 1):
        weight = math.exp(math.lgamma(N + 1) - math.lgamma(c + 1) - math.lgamma(N - c + 1)
                          + c * math.log(p_top) + (N - c) * math.log1p(-p_top))
        pol = empirical_policy(["worse"] * (N - c) + ["better"] * c, [0.0] * (N - c) + [1.0] * c)
        total += weight * bon_kl_exact(pol.probs, pol.scores, n)
    return total


def test_empirical_estimate_is_biased_low_when_the_pool_misses_the_top():
    # The better reply has mass 0.05; best of 64 nearly always finds it, a pool of 16 often does not.
    n, truth = 64, bon_kl_exact([0.95, 0.05], [0.0, 1.0], 64)
    biases = [expected_two_level_estimate(0.05, n, N) - truth for N in (16, 64, 256, 1024)]
    assert biases[0] < -1.0  # 1.35 nats short of 2.73
    assert all(b < 0 for b in biases)
    assert all(abs(a) > abs(b) for a, b in zip(biases, biases[1:]))  # consistent: the bias shrinks with N
    assert abs(biases[-1]) < 0.02


def test_empirical_estimate_is_biased_high_when_the_pool_always_holds_the_top():
    # Best of 64 picks a top group of mass p almost surely: KL ≈ log(1/p), and the estimate ≈ E[log(1/p̂)] is
    # above it by ≈ (1 − p)/(2Np) (the delta method).
    n = 64
    for p_top, N in [(0.5, 64), (0.2, 256), (0.5, 1024)]:
        bias = expected_two_level_estimate(p_top, n, N) - bon_kl_exact([1 - p_top, p_top], [0.0, 1.0], n)
        assert bias > 0
        assert bias == pytest.approx((1 - p_top) / (2 * N * p_top), rel=0.15)


def test_empirical_estimate_on_a_long_tailed_policy_by_resampling():
    # One common mediocre reply and a long tail of rare better ones: a pool of 8 < n = 16 falls short,
    # a pool of 2000 is within 1 %.
    K, n = 30, 16
    probs = np.r_[0.5, np.full(K - 1, 0.5 / (K - 1))]
    scores = np.r_[0.0, np.linspace(0.1, 1.0, K - 1)]
    truth = bon_kl_exact(probs, scores, n)
    rng = np.random.default_rng(5)

    def estimates(N, pools):
        out = []
        for _ in range(pools):
            draws = rng.choice(K, size=N, p=probs)
            pol = empirical_policy([f"reply {i}" for i in draws], scores[draws])
            out.append(bon_kl_exact(pol.probs, pol.scores, n))
        return np.array(out)

    small, large = estimates(8, 300), estimates(2000, 40)
    assert small.mean() + 4 * small.std() / math.sqrt(300) < truth - 0.1
    assert abs(large.mean() - truth) < 0.01 * truth
