"""Tests for preferences: Bradley-Terry fit (vs choix), Elo, cycles, annotator agreement, Bayes ceiling, rank
correlation, arena comparisons from labelled pairs, and the linear (frozen-backbone) Bradley-Terry reward model."""

from __future__ import annotations

import itertools
import math

import choix
import numpy as np
import pytest

from rlhfbook_lab.equations.agreement import (
    find_preference_cycles,
    fleiss_kappa,
    kendall_tau,
    majority_preferences,
    percent_agreement,
)
from rlhfbook_lab.equations.preferences import (
    ELO_SCALE,
    bayes_ceiling,
    bradley_terry_nll,
    comparisons_from_pairs,
    elo_ratings,
    fit_bradley_terry,
    fit_linear_bradley_terry,
    linear_bradley_terry_nll,
    strengths_to_elo,
    win_matrix,
)


def simulate_comparisons(seed: int, n_items: int = 8, n: int = 400, tie_rate: float = 0.0):
    """Random pairs labelled by a Bradley-Terry annotator with true strengths θ; some rows marked as ties."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n_items)
    a = rng.integers(0, n_items, n)
    b = (a + rng.integers(1, n_items, n)) % n_items  # b != a
    a_wins = rng.random(n) < 1 / (1 + np.exp(-(theta[a] - theta[b])))
    comparisons = np.stack([np.where(a_wins, a, b), np.where(a_wins, b, a)], axis=1)
    ties = rng.random(n) < tie_rate
    return theta, comparisons, ties


# --------------------------------------------------------------------------------------------------
# Bradley-Terry fit
# --------------------------------------------------------------------------------------------------


def test_fit_two_items_hand_value():
    # Item 0 beats item 1 three times and loses once: the MLE sets σ(θ0 − θ1) = 3/4, so θ0 − θ1 = ln 3,
    # and the gauge Σθ = 0 gives θ = (ln 3 / 2, −ln 3 / 2) = (0.549306, −0.549306).
    comparisons = [(0, 1), (0, 1), (0, 1), (1, 0)]
    np.testing.assert_allclose(
        fit_bradley_terry(comparisons, 2), [math.log(3) / 2, -math.log(3) / 2], atol=1e-10
    )
    # Add a tie: half a win each way → 3.5 vs 1.5 wins, θ0 − θ1 = ln(3.5 / 1.5) = ln(7/3) = 0.847298.
    with_tie = comparisons + [(1, 0)]
    theta = fit_bradley_terry(with_tie, 2, ties=np.array([False, False, False, False, True]))
    assert theta[0] - theta[1] == pytest.approx(math.log(7 / 3), abs=1e-10)


def test_fit_two_items_with_l2_penalty_hand_value():
    # One win for item 0, α = 1/2. By symmetry θ = (x, −x): NLL = log(1 + e^{−2x}) + (1/2)·2x².
    # d/dx: −2σ(−2x) + 2x = 0  ⇒  x = σ(−2x), whose root (a few Newton steps by hand) is x = 0.337416:
    # check σ(−0.674832) = 1/(1 + e^0.674832) = 1/(1 + 1.963707) = 0.337416. Without α, x would be +∞.
    theta = fit_bradley_terry([(0, 1)], 2, alpha=0.5)
    np.testing.assert_allclose(theta, [0.3374158, -0.3374158], atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_matches_choix_ilsr_without_regularisation(seed):
    _, comparisons, _ = simulate_comparisons(seed)
    ours = fit_bradley_terry(comparisons, 8)
    theirs = choix.ilsr_pairwise(8, comparisons.tolist(), alpha=0.0, tol=1e-12, max_iter=1000)
    assert np.max(np.abs(ours - theirs)) < 1e-4
    assert abs(ours.sum()) < 1e-9


@pytest.mark.parametrize("alpha", [0.01, 1.0])
def test_fit_matches_choix_opt_pairwise_with_the_same_alpha(alpha):
    _, comparisons, _ = simulate_comparisons(3, n=60)
    ours = fit_bradley_terry(comparisons, 8, alpha=alpha)
    theirs = choix.opt_pairwise(8, comparisons.tolist(), alpha=alpha, tol=1e-12)
    assert np.max(np.abs(ours - theirs)) < 1e-4
    assert abs(ours.sum()) < 1e-9  # the L2 penalty fixes the gauge by itself


def test_fit_with_ties_matches_choix_on_doubled_data():
    # choix has no ties. Count every decisive comparison twice and every tie as one win each way: the
    # log-likelihood is exactly twice ours, so the fits agree when choix's alpha is twice ours.
    _, comparisons, ties = simulate_comparisons(4, n=200, tie_rate=0.3)
    doubled = []
    for (w, l), tie in zip(comparisons.tolist(), ties.tolist()):
        doubled += [(w, l), (l, w)] if tie else [(w, l), (w, l)]
    ours = fit_bradley_terry(comparisons, 8, ties=ties, alpha=0.05)
    theirs = choix.opt_pairwise(8, doubled, alpha=0.1, tol=1e-12)
    assert np.max(np.abs(ours - theirs)) < 1e-4
    np.testing.assert_allclose(
        fit_bradley_terry(comparisons, 8, ties=ties),
        choix.ilsr_pairwise(8, doubled, tol=1e-12, max_iter=1000),
        atol=1e-4,
    )


def test_fit_is_invariant_to_the_order_of_comparisons():
    _, comparisons, ties = simulate_comparisons(5, tie_rate=0.2)
    perm = np.random.default_rng(0).permutation(len(comparisons))
    shuffled = fit_bradley_terry(comparisons[perm], 8, ties=ties[perm])
    np.testing.assert_allclose(shuffled, fit_bradley_terry(comparisons, 8, ties=ties), atol=1e-10)
    # Within a tie the order of the two items does not matter either.
    flipped = np.where(ties[:, None], comparisons[:, ::-1], comparisons)
    np.testing.assert_allclose(fit_bradley_terry(flipped, 8, ties=ties), shuffled, atol=1e-10)


def test_fit_is_a_minimum_of_the_nll_and_recovers_the_true_strengths():
    theta_true, comparisons, _ = simulate_comparisons(6, n=4000)
    fit = fit_bradley_terry(comparisons, 8)
    best = bradley_terry_nll(fit, comparisons)
    rng = np.random.default_rng(1)
    for _ in range(20):  # every small move costs likelihood
        assert bradley_terry_nll(fit + 1e-3 * rng.normal(size=8), comparisons) > best
    assert bradley_terry_nll(fit + 5.0, comparisons) == pytest.approx(best)  # but a shift of all is free
    assert np.corrcoef(fit, theta_true)[0, 1] > 0.98


def test_bradley_terry_nll_hand_value():
    # θ = (1, 0, −1); comparisons 0≻1 (d=1), 2≻1 (d=−1), tie 0~2 (d=2, half each way); α = 0.1
    # log(1+e^−1) + log(1+e^1) + ½[log(1+e^−2) + log(1+e^2)] + 0.1·(1+0+1)
    # = 0.313262 + 1.313262 + ½(0.126928 + 2.126928) + 0.2 = 2.953452
    nll = bradley_terry_nll(
        [1.0, 0.0, -1.0], [(0, 1), (2, 1), (0, 2)], ties=np.array([False, False, True]), alpha=0.1
    )
    assert nll == pytest.approx(2.953452, abs=1e-6)


def test_fit_refuses_an_undefeated_group_without_regularisation():
    comparisons = [(0, 1), (1, 2), (0, 2), (2, 1)]  # item 0 never loses: its MLE strength is +∞
    with pytest.raises(ValueError, match="comparisons.*alpha > 0"):
        fit_bradley_terry(comparisons, 3)
    theta = fit_bradley_terry(comparisons, 3, alpha=0.01)
    assert np.all(np.isfinite(theta)) and theta[0] == theta.max()


def test_newton_converges_in_a_handful_of_iterations():
    # Newton's method converges quadratically on this smooth convex problem: 10 iterations reach 1e-12
    # (a wrong Hessian still converges thanks to the line search, but only linearly, and fails this).
    for n, alpha in ((400, 0.0), (30, 1.0)):  # (with few comparisons the penalty's curvature matters)
        _, comparisons, ties = simulate_comparisons(7, n=n, tie_rate=0.2)
        fit_bradley_terry(comparisons, 8, ties=ties, alpha=alpha, max_iter=10)


def test_newton_converges_with_a_small_penalty_on_lopsided_data():
    # A small α gives the Hessian a curvature of only 2α along (1, …, 1); without the gauge fix, rounding noise in
    # the gradient, amplified by 1/(2α), kept the steps above tol = 1e-12 for hundreds of iterations on data
    # like an arena's (strengths from −3.5 to 3.5; one of these 20 data sets did not converge in 30 iterations).
    theta_true = np.array([3.5, 2.0, 0.5, 0.3, 0.0, -0.3, -1.0, -1.4, -3.5])
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a = rng.integers(0, 9, 1500)
        b = (a + rng.integers(1, 9, 1500)) % 9
        a_wins = rng.random(1500) < 1 / (1 + np.exp(-(theta_true[a] - theta_true[b])))
        comparisons = np.stack([np.where(a_wins, a, b), np.where(a_wins, b, a)], axis=1)
        theta = fit_bradley_terry(comparisons, 9, alpha=1e-3, max_iter=30)
        assert abs(theta.sum()) < 1e-9


def test_fit_reports_non_convergence():
    _, comparisons, _ = simulate_comparisons(7)
    with pytest.raises(RuntimeError, match="converge"):
        fit_bradley_terry(comparisons, 8, max_iter=1)


def test_win_matrix_counts_wins_and_half_ties():
    W = win_matrix([(0, 1), (0, 1), (2, 0), (1, 2)], 3, ties=np.array([False, False, False, True]))
    expected = np.array([[0, 2, 0], [0, 0, 0.5], [1, 0.5, 0]])
    np.testing.assert_array_equal(W, expected)


# --------------------------------------------------------------------------------------------------
# Elo
# --------------------------------------------------------------------------------------------------


def test_elo_hand_values():
    # Both at 1500; 0 beats 1: E = 1/2, Δ = 32·(1 − 1/2) = 16 → (1516, 1484).
    # Then 1 beats 0: E_1 = 1/(1 + 10^((1516 − 1484)/400)) = 1/(1 + 10^0.08) = 1/2.202264 = 0.454078,
    # Δ = 32·(1 − 0.454078) = 17.469504 → (1498.530496, 1501.469504).
    history = elo_ratings([(0, 1), (1, 0)], 2, return_history=True)
    np.testing.assert_allclose(history, [[1500, 1500], [1516, 1484], [1498.530496, 1501.469504]], atol=1e-6)
    # A tie between equals changes nothing; a tie with a stronger item moves points toward the weaker one.
    np.testing.assert_array_equal(elo_ratings([(0, 1)], 2, ties=np.array([True])), [1500, 1500])


def test_elo_matches_a_bradley_terry_form_loop():
    # E_a = 1/(1 + 10^((R_b − R_a)/400)) is σ((R_a − R_b)/ELO_SCALE), the Bradley-Terry form.
    _, comparisons, ties = simulate_comparisons(8, n=300, tie_rate=0.1)
    ratings = np.full(8, 1200.0)
    for (a, b), tie in zip(comparisons.tolist(), ties.tolist()):
        expected = 1 / (1 + math.exp(-(ratings[a] - ratings[b]) / ELO_SCALE))
        step = 16 * ((0.5 if tie else 1.0) - expected)
        ratings[a], ratings[b] = ratings[a] + step, ratings[b] - step
    ours = elo_ratings(comparisons, 8, ties=ties, k_factor=16, initial_rating=1200)
    np.testing.assert_allclose(ours, ratings, atol=1e-9)


def test_elo_preserves_the_rating_sum_but_not_order_invariance():
    _, comparisons, ties = simulate_comparisons(9, n=500, tie_rate=0.1)
    history = elo_ratings(comparisons, 8, ties=ties, return_history=True)
    np.testing.assert_allclose(history.sum(axis=1), 8 * 1500.0, atol=1e-8)  # every row, every step
    np.testing.assert_array_equal(history[-1], elo_ratings(comparisons, 8, ties=ties))
    # Unlike the Bradley-Terry fit, Elo depends on the order in which games arrive.
    reversed_order = elo_ratings(comparisons[::-1], 8, ties=ties[::-1])
    assert np.max(np.abs(reversed_order - history[-1])) > 1.0


def test_elo_scale_convention():
    # A 400-point gap is 10:1 odds, i.e. a Bradley-Terry strength gap of ln 10.
    assert ELO_SCALE == pytest.approx(173.717793, abs=1e-6)
    np.testing.assert_allclose(strengths_to_elo([math.log(10), 0.0]), [1900.0, 1500.0])


def test_elo_approaches_the_bradley_terry_fit_on_the_elo_scale():
    # With a small K and many games Elo hovers near the ML fit (both are the same model).
    _, comparisons, _ = simulate_comparisons(10, n_items=5, n=20000)
    elo = elo_ratings(comparisons, 5, k_factor=2)
    bt = strengths_to_elo(fit_bradley_terry(comparisons, 5))
    assert np.max(np.abs(elo - bt)) < 25  # rating points; the BT range here is ~500


# --------------------------------------------------------------------------------------------------
# Cycles
# --------------------------------------------------------------------------------------------------


def three_annotators_with_different_tastes():
    """Responses A, B, C scored on three features (say correctness, brevity, politeness).

    Each annotator cares about one feature only, so each is perfectly transitive:
      annotator 0 (feature 0): A > B > C;  annotator 1 (feature 1): B > C > A;  annotator 2: C > A > B.
    """
    features = np.array([[3, 1, 2], [2, 3, 1], [1, 2, 3]])  # (item, feature) for A, B, C
    per_annotator = []
    for k in range(3):
        utility = features[:, k]
        per_annotator.append(
            [(i, j) if utility[i] > utility[j] else (j, i) for i, j in itertools.combinations(range(3), 2)]
        )
    return per_annotator


def test_three_transitive_annotators_make_a_majority_cycle():
    per_annotator = three_annotators_with_different_tastes()
    for comparisons in per_annotator:
        assert find_preference_cycles(win_matrix(comparisons, 3)) == []  # each one alone is transitive
    pooled = win_matrix([c for comps in per_annotator for c in comps], 3)
    # A≻B 2–1 (annotators 0, 2), B≻C 2–1 (0, 1), C≻A 2–1 (1, 2): Condorcet's cycle A ≻ B ≻ C ≻ A.
    assert find_preference_cycles(pooled) == [(0, 1, 2)]
    # Bradley-Terry can only answer with a tie: the ML strengths are all equal.
    np.testing.assert_allclose(
        fit_bradley_terry([c for comps in per_annotator for c in comps], 3), 0, atol=1e-10
    )


def test_find_cycles_hand_example_and_direction():
    # 4 items: 0≻1, 1≻2, 2≻0 (a cycle) and 3 beats everyone (no cycle through 3).
    W = np.zeros((4, 4))
    W[0, 1] = W[1, 2] = W[2, 0] = 2
    W[1, 0] = W[2, 1] = W[0, 2] = 1
    W[3, :3] = 5
    assert find_preference_cycles(W) == [(0, 1, 2)]
    assert find_preference_cycles(W.T) == [(0, 2, 1)]  # reversed preferences: the cycle runs the other way


def test_majority_ignores_tied_and_missing_pairs():
    # 0 ≻ 1 and 1 ≻ 2 by majority; 0 vs 2 split 1–1 and 1 vs 3 never compared: neither way is a majority.
    W = np.zeros((4, 4))
    W[0, 1], W[1, 2], W[0, 2], W[2, 0] = 2, 3, 1, 1
    M = majority_preferences(W)
    assert M.sum() == 2 and M[0, 1] and M[1, 2]
    assert find_preference_cycles(W) == []  # a tie is not a "2 ≻ 0" that would close a cycle


def test_find_cycles_matches_brute_force_over_permutations():
    rng = np.random.default_rng(11)
    W = rng.integers(0, 6, size=(7, 7)).astype(float)
    np.fill_diagonal(W, 0)
    M = majority_preferences(W)
    brute = set()
    for a, b, c in itertools.permutations(range(7), 3):
        if M[a, b] and M[b, c] and M[c, a]:
            brute.add(min((a, b, c), (b, c, a), (c, a, b)))  # rotate so the smallest item comes first
    assert find_preference_cycles(W) == sorted(brute)
    assert len(brute) > 0  # the random tournament does contain cycles, so the comparison is not vacuous


def test_no_cycles_in_a_transitive_tournament():
    theta = np.arange(6.0)  # strict order
    W = 10 / (1 + np.exp(-(theta[:, None] - theta[None, :])))  # expected wins out of 10
    np.fill_diagonal(W, 0)
    assert find_preference_cycles(W) == []


# --------------------------------------------------------------------------------------------------
# Annotator agreement
# --------------------------------------------------------------------------------------------------

HAND_LABELS = np.array([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 2, 1]])  # 3 annotators × 4 items


def test_agreement_hand_values():
    # per item, agreeing annotator pairs out of 3: item 0 [0,0,0] → 3/3; item 1 [0,0,1] → 1/3;
    # item 2 [0,1,2] → 0/3; item 3 [1,1,1] → 3/3.   P̄ = (1 + 1/3 + 0 + 1)/4 = 7/12 = 0.583333
    # category shares over the 12 labels: 0 → 6/12, 1 → 5/12, 2 → 1/12
    # P̄e = (36 + 25 + 1)/144 = 62/144;   κ = (84/144 − 62/144)/(82/144) = 22/82 = 0.268293
    assert percent_agreement(HAND_LABELS) == pytest.approx(7 / 12)
    assert fleiss_kappa(HAND_LABELS) == pytest.approx(22 / 82)


def test_percent_agreement_matches_a_loop_over_annotator_pairs():
    labels = np.random.default_rng(12).integers(0, 3, size=(5, 40))
    pairs = list(itertools.combinations(range(5), 2))
    agree = np.mean([np.mean(labels[i] == labels[j]) for i, j in pairs])
    assert percent_agreement(labels) == pytest.approx(agree)


def test_kappa_properties():
    rng = np.random.default_rng(13)
    one = rng.integers(0, 3, size=40)
    assert fleiss_kappa(np.stack([one, one, one])) == pytest.approx(1.0)
    # Renaming the categories changes nothing; unused categories change nothing.
    assert fleiss_kappa(np.array([2, 0, 1])[HAND_LABELS]) == pytest.approx(22 / 82)
    assert fleiss_kappa(HAND_LABELS, n_categories=7) == pytest.approx(22 / 82)
    # Independent annotators agree by chance only: κ ≈ 0 although percent agreement is ≈ 1/3.
    independent = rng.integers(0, 3, size=(4, 20000))
    assert abs(fleiss_kappa(independent)) < 0.02
    assert percent_agreement(independent) == pytest.approx(1 / 3, abs=0.01)
    # Two annotators who always disagree on a binary label: κ = −1.
    assert fleiss_kappa(np.array([[0, 1, 0, 1], [1, 0, 1, 0]])) == pytest.approx(-1.0)


# --------------------------------------------------------------------------------------------------
# Bayes ceiling
# --------------------------------------------------------------------------------------------------


def test_bayes_ceiling_hand_value():
    # gaps 1 and 0 at τ = 1: σ(1) = 0.731059 and σ(0) = 0.5 → mean 0.615529
    assert bayes_ceiling([1.0, 0.0], [0.0, 0.0]) == pytest.approx(0.615529, abs=1e-6)
    # τ = 2 halves the gap: σ(0.5) = 0.622459 → mean (0.622459 + 0.5)/2 = 0.561230
    assert bayes_ceiling([1.0, 0.0], [0.0, 0.0], temperature=2.0) == pytest.approx(0.561230, abs=1e-6)


def test_bayes_ceiling_matches_monte_carlo():
    rng = np.random.default_rng(14)
    g_a, g_b, tau = rng.normal(size=500), rng.normal(size=500), 0.7
    p = 1 / (1 + np.exp(-(g_a - g_b) / tau))
    draws = rng.random((400, 500)) < p  # 400 annotations of each pair: True means a was preferred
    bayes_guess = g_a > g_b  # the best any model can do is pick the likelier side
    mc_accuracy = np.mean(draws == bayes_guess)
    se = math.sqrt(0.25 / draws.size)
    ceiling = bayes_ceiling(g_a, g_b, tau)
    assert abs(mc_accuracy - ceiling) < 4 * se
    # A per-pair loop gives the same number, and no other guess beats the Bayes guess on average.
    assert ceiling == pytest.approx(np.mean([max(q, 1 - q) for q in p]), abs=1e-12)
    noisy_guess = (g_a - g_b + rng.normal(scale=0.5, size=500)) > 0
    assert np.mean(draws == noisy_guess) < mc_accuracy


def test_bayes_ceiling_limits_and_symmetry():
    rng = np.random.default_rng(15)
    g_a, g_b = rng.normal(size=100), rng.normal(size=100)
    assert bayes_ceiling(g_a, g_b, 1.0) == pytest.approx(bayes_ceiling(g_b, g_a, 1.0))
    values = [bayes_ceiling(g_a, g_b, tau) for tau in (1e-6, 0.1, 1.0, 10.0, 1e6)]
    assert values[0] == pytest.approx(1.0) and values[-1] == pytest.approx(0.5, abs=1e-6)
    assert all(x > y for x, y in zip(values, values[1:]))  # noisier annotators, lower ceiling


# --------------------------------------------------------------------------------------------------
# Rank correlation
# --------------------------------------------------------------------------------------------------


def test_kendall_tau_hand_values():
    # One swapped pair of 6: τ = (5 − 1)/6 = 2/3.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # Ties (τ_b): x = (1, 1, 2, 3), y = (1, 2, 2, 3). Of 6 pairs, (0,1) is tied in x, (1,2) tied in y, the other
    # 4 concordant: τ_b = 4 / sqrt((6 − 1)(6 − 1)) = 0.8.
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)


def test_kendall_tau_matches_scipy_and_a_pair_loop():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(20)
    for n in (2, 5, 9, 30):
        x, y = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)  # many ties
        if len(set(x)) == 1 or len(set(y)) == 1:
            continue
        assert kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y)[0], abs=1e-12)
        x, y = rng.normal(size=n), rng.normal(size=n)  # no ties: (concordant − discordant) / C(n, 2)
        s = [np.sign(x[i] - x[j]) * np.sign(y[i] - y[j]) for i, j in itertools.combinations(range(n), 2)]
        assert kendall_tau(x, y) == pytest.approx(np.mean(s), abs=1e-12)


def test_kendall_tau_properties():
    rng = np.random.default_rng(21)
    x, y = rng.normal(size=12), rng.normal(size=12)
    assert kendall_tau(x, x) == pytest.approx(1.0) and kendall_tau(x, -x) == pytest.approx(-1.0)
    assert kendall_tau(x, y) == pytest.approx(kendall_tau(y, x))
    # Only orders matter: Elo ratings (an affine map) or exp of strengths give the same τ.
    assert kendall_tau(strengths_to_elo(x), np.exp(y)) == pytest.approx(kendall_tau(x, y))


# --------------------------------------------------------------------------------------------------
# Comparisons from labelled pairs (an arena)
# --------------------------------------------------------------------------------------------------

ARENA_ROWS = [
    {"chosen_source": "sft", "rejected_source": "base", "label": 1.0},
    {"chosen_source": "ref", "rejected_source": "sft"},
    {"chosen_source": "base", "rejected_source": "ref", "label": 0.5},
]


def test_comparisons_from_pairs_hand_example():
    comparisons, ties, items = comparisons_from_pairs(ARENA_ROWS)
    assert items == ["sft", "base", "ref"]  # order of first appearance
    np.testing.assert_array_equal(comparisons, [[0, 1], [2, 0], [1, 2]])
    np.testing.assert_array_equal(ties, [False, False, True])
    comparisons, ties, items = comparisons_from_pairs(ARENA_ROWS, items=["base", "sft", "ref"])
    np.testing.assert_array_equal(comparisons, [[1, 0], [2, 1], [0, 2]])


def test_arena_from_labelled_pairs_ranks_sources_by_their_gold_quality():
    # Replies of three qualities labelled by the gold annotator: the fit orders the sources as gold does.
    from rlhfbook_lab import world
    from rlhfbook_lab.lm.preference_data import off_policy_pairs

    rng = __import__("random").Random(0)
    problems = [world.sample_problem(world.FAMILIES[i % 4], rng) for i in range(40)]
    rows = off_policy_pairs(problems, styles=("opener", "reference", "fillers", "wrong_answer"),
                            pairs_per_prompt=None, annotator=world.Annotator("noisy", tau=0.5), seed=0).rows
    comparisons, ties, items = comparisons_from_pairs(rows)
    theta = fit_bradley_terry(comparisons, len(items), ties=ties)
    gold = {"opener": 1.2, "reference": 1.0, "fillers": 0.68, "wrong_answer": 0.0}  # mean gold scores (world.judge)
    assert kendall_tau(theta, [gold[name] for name in items]) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# Linear Bradley-Terry: a reward model with frozen features
# --------------------------------------------------------------------------------------------------


def test_linear_fit_hand_values():
    # One feature, x = φ_c − φ_r = 1 on four pairs, the chosen side winning 3 of them: σ(w) = 3/4, w = ln 3.
    chosen, rejected = np.array([[1.0], [1.0], [1.0], [0.0]]), np.array([[0.0], [0.0], [0.0], [1.0]])
    np.testing.assert_allclose(fit_linear_bradley_terry(chosen, rejected, alpha=0.0), [math.log(3)], atol=1e-9)
    # The same information as one pair with a soft label y = 3/4 (×4 pairs ⇒ same optimum): w = ln 3.
    w = fit_linear_bradley_terry([[1.0]], [[0.0]], labels=[0.75], alpha=0.0)
    np.testing.assert_allclose(w, [math.log(3)], atol=1e-9)
    # NLL at w = 0: four pairs × log 2 = 2.772589; with α = 0.5 and w = 2: 3·log(1+e^−2) + log(1+e^2) + 0.5·4
    # = 3·0.126928 + 2.126928 + 2 = 4.507713
    assert linear_bradley_terry_nll([0.0], chosen, rejected) == pytest.approx(4 * math.log(2))
    assert linear_bradley_terry_nll([2.0], chosen, rejected, alpha=0.5) == pytest.approx(4.507713, abs=1e-6)


@pytest.mark.parametrize("alpha", [0.01, 1.0])
def test_linear_fit_with_one_hot_features_is_the_item_fit(alpha):
    # φ(item i) = e_i turns w·(φ_w − φ_l) into θ_w − θ_l: the same objective as fit_bradley_terry, and as choix.
    _, comparisons, ties = simulate_comparisons(22, n=150, tie_rate=0.2)
    eye = np.eye(8)
    labels = np.where(ties, 0.5, 1.0)
    w = fit_linear_bradley_terry(eye[comparisons[:, 0]], eye[comparisons[:, 1]], labels, alpha=alpha)
    np.testing.assert_allclose(w, fit_bradley_terry(comparisons, 8, ties=ties, alpha=alpha), atol=1e-8)
    w = fit_linear_bradley_terry(eye[comparisons[:, 0]], eye[comparisons[:, 1]], alpha=alpha)
    assert np.max(np.abs(w - choix.opt_pairwise(8, comparisons.tolist(), alpha=alpha, tol=1e-12))) < 1e-4


def test_linear_fit_is_a_minimum_and_recovers_the_true_weights():
    rng = np.random.default_rng(23)
    w_true = rng.normal(size=5)
    a, b = rng.normal(size=(4000, 5)), rng.normal(size=(4000, 5))
    a_wins = rng.random(4000) < 1 / (1 + np.exp(-(a - b) @ w_true))
    chosen, rejected = np.where(a_wins[:, None], a, b), np.where(a_wins[:, None], b, a)
    w = fit_linear_bradley_terry(chosen, rejected, alpha=0.1)
    best = linear_bradley_terry_nll(w, chosen, rejected, alpha=0.1)
    for _ in range(20):
        assert linear_bradley_terry_nll(w + 1e-3 * rng.normal(size=5), chosen, rejected, alpha=0.1) > best
    assert np.max(np.abs(w - w_true)) < 0.15
    # Swapping the sides of a pair and its label (y → 1 − y) is the same data: the same fit.
    swap = rng.random(4000) < 0.5
    w_swapped = fit_linear_bradley_terry(np.where(swap[:, None], rejected, chosen),
                                         np.where(swap[:, None], chosen, rejected), np.where(swap, 0.0, 1.0),
                                         alpha=0.1)
    np.testing.assert_allclose(w_swapped, w, atol=1e-8)
    # Without a penalty, scaling the features by c scales the weights by 1/c (rewards are unchanged).
    w0 = fit_linear_bradley_terry(chosen[:300], rejected[:300], alpha=0.0)
    np.testing.assert_allclose(fit_linear_bradley_terry(3 * chosen[:300], 3 * rejected[:300], alpha=0.0), w0 / 3,
                               atol=1e-7)


def test_linear_fit_refuses_to_chase_separable_labels_without_a_penalty():
    # Chosen always has the larger feature: the likelihood keeps rising as w → ∞.
    chosen, rejected = np.array([[1.0], [2.0]]), np.array([[0.0], [0.5]])
    with pytest.raises(RuntimeError, match="alpha > 0"):
        fit_linear_bradley_terry(chosen, rejected, alpha=0.0)
    assert np.isfinite(fit_linear_bradley_terry(chosen, rejected, alpha=0.01)).all()


def test_frozen_backbone_reward_model_is_the_linear_fit(micro_model, tokenizer):
    # reward_trainer.reply_features gives what the head reads; a head fitted on them by fit_linear_bradley_terry
    # and copied into a RewardModel scores replies exactly as features @ w.
    import torch

    from rlhfbook_lab.lm.reward_model import RewardModel, reply_features, score_replies

    rm = RewardModel.from_causal_lm(micro_model, seed=3).eval()
    prompts = ["What is 2 + 3?", "What is 2 + 3?", "Spell mirt backward.", "Spell mirt backward."]
    replies = ["2 + 3 = 5.", "Sure! 2 + 3 = 5. I hope this helps.", "The reverse of mirt is trim.", "trim"]
    phi = reply_features(rm, tokenizer, prompts, replies, batch_size=3)  # two batches
    assert phi.shape == (4, micro_model.config.hidden_size) and phi.dtype == torch.float32
    raw = score_replies(rm, tokenizer, prompts, replies, raw=True)
    torch.testing.assert_close(rm.head(phi).squeeze(-1), raw, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reply_features(rm, tokenizer, prompts, replies, batch_size=64), phi, atol=1e-5,
                               rtol=1e-5)  # batch company does not change a reply's features
    assert not rm.head._forward_hooks  # the hook is removed
    # Prefer the short replies (rows 0 and 2), fit the head, and the model agrees.
    w = fit_linear_bradley_terry(phi[[0, 2]].numpy(), phi[[1, 3]].numpy(), alpha=1e-3)
    with torch.no_grad():
        rm.head.weight.copy_(torch.as_tensor(w, dtype=torch.float32)[None])
    rewards = score_replies(rm, tokenizer, prompts, replies)
    torch.testing.assert_close(rewards, (phi.double() @ torch.as_tensor(w)).float(), atol=1e-4, rtol=1e-4)
    assert rewards[0] > rewards[1] and rewards[2] > rewards[3]


# --------------------------------------------------------------------------------------------------
# Bad input: every ValueError, naming its field
# --------------------------------------------------------------------------------------------------

OK = [(0, 1), (1, 0)]

BAD_INPUTS = [
    ("n_items small", lambda: fit_bradley_terry(OK, 1), "n_items"),
    ("n_items float", lambda: win_matrix(OK, 2.0), "n_items"),
    ("comparisons shape", lambda: fit_bradley_terry([0, 1, 1], 2), "comparisons"),
    ("comparisons empty", lambda: fit_bradley_terry(np.zeros((0, 2), dtype=int), 2), "comparisons"),
    ("comparisons float", lambda: fit_bradley_terry([(0.0, 1.0)], 2), "comparisons"),
    ("comparisons range", lambda: fit_bradley_terry([(0, 2)], 2), "comparisons"),
    ("comparisons negative", lambda: elo_ratings([(0, -1)], 2), "comparisons"),
    ("self comparison", lambda: fit_bradley_terry([(0, 1), (1, 1)], 2), "comparisons"),
    ("ties length", lambda: fit_bradley_terry(OK, 2, ties=np.array([True])), "ties"),
    ("ties dtype", lambda: win_matrix(OK, 2, ties=np.array([0, 1])), "ties"),
    ("alpha negative", lambda: fit_bradley_terry(OK, 2, alpha=-1.0), "alpha"),
    ("alpha nan", lambda: fit_bradley_terry(OK, 2, alpha=float("nan")), "alpha"),
    ("strengths 2-D", lambda: bradley_terry_nll(np.zeros((2, 1)), OK), "strengths"),
    ("k_factor", lambda: elo_ratings(OK, 2, k_factor=0), "k_factor"),
    ("scale", lambda: elo_ratings(OK, 2, scale=-400), "scale"),
    ("wins not square", lambda: find_preference_cycles(np.zeros((3, 2))), "wins"),
    ("wins negative", lambda: majority_preferences(-np.ones((2, 2))), "wins"),
    ("wins NaN", lambda: find_preference_cycles(np.full((3, 3), np.nan)), "wins"),
    ("labels one annotator", lambda: percent_agreement(np.zeros((1, 5), dtype=int)), "labels"),
    ("labels float", lambda: fleiss_kappa(np.zeros((2, 5))), "labels"),
    ("labels negative", lambda: fleiss_kappa(-np.ones((2, 5), dtype=int)), "labels"),
    ("labels beyond n_categories", lambda: fleiss_kappa(HAND_LABELS, n_categories=2), "labels"),
    ("labels one category", lambda: fleiss_kappa(np.zeros((3, 5), dtype=int)), "labels"),
    ("gold_a empty", lambda: bayes_ceiling([], []), "gold_a"),
    ("gold_b shape", lambda: bayes_ceiling([1.0, 2.0], [1.0]), "gold_b"),
    ("gold NaN", lambda: bayes_ceiling([1.0, float("nan")], [0.0, 0.0]), "gold_a"),
    ("temperature", lambda: bayes_ceiling([1.0], [0.0], temperature=0.0), "temperature"),
    ("tau x short", lambda: kendall_tau([1.0], [1.0]), "x must"),
    ("tau y shape", lambda: kendall_tau([1.0, 2.0], [1.0, 2.0, 3.0]), "y shape"),
    ("tau NaN", lambda: kendall_tau([1.0, float("nan")], [1.0, 2.0]), "x / y"),
    ("tau constant", lambda: kendall_tau([1.0, 1.0], [1.0, 2.0]), "same score"),
    ("pairs empty", lambda: comparisons_from_pairs([]), "rows"),
    ("pairs missing source", lambda: comparisons_from_pairs([{"chosen_source": "a"}]), "rejected_source"),
    ("pairs unknown item", lambda: comparisons_from_pairs(ARENA_ROWS, items=["sft", "base"]), "items"),
    ("pairs repeated item", lambda: comparisons_from_pairs(ARENA_ROWS, items=["a", "a"]), "items"),
    ("pairs same source", lambda: comparisons_from_pairs([{"chosen_source": "a", "rejected_source": "a"}]),
     "same source"),
    ("pairs label", lambda: comparisons_from_pairs([{**ARENA_ROWS[0], "label": 0.3}]), "label"),
    ("pairs not a dict", lambda: comparisons_from_pairs(["a beats b"]), "rows\\[0\\]"),
    ("features 1-D", lambda: fit_linear_bradley_terry([1.0], [0.0]), "chosen_features"),
    ("features shapes", lambda: fit_linear_bradley_terry([[1.0]], [[0.0, 1.0]]), "rejected_features"),
    ("features NaN", lambda: fit_linear_bradley_terry([[float("nan")]], [[0.0]]), "chosen_features"),
    ("features labels", lambda: fit_linear_bradley_terry([[1.0]], [[0.0]], labels=[1.5]), "labels"),
    ("features alpha", lambda: fit_linear_bradley_terry([[1.0]], [[0.0]], alpha=-1.0), "alpha"),
    ("weights shape", lambda: linear_bradley_terry_nll([1.0, 2.0], [[1.0]], [[0.0]]), "weights"),
]


@pytest.mark.parametrize(
    "fn, field", [(fn, field) for _, fn, field in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_raises_value_error_naming_the_field(fn, field):
    with pytest.raises(ValueError, match=field):
        fn()
