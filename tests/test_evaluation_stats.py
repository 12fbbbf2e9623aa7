"""Tests for equations/evaluation_stats: bootstrap intervals, paired differences, centred accuracy, power analysis,
arena Elo with bootstrap intervals, length-controlled win rate, swap consistency. Each: a hand-computed value, a
second implementation, a property."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import norm

from rlhfbook_lab.equations.evaluation_stats import (
    arena_elo,
    bootstrap_ci,
    centred_accuracy,
    detection_power,
    length_controlled_win_rate,
    paired_difference,
    prompts_needed,
    swap_consistency,
)
from rlhfbook_lab.equations.preferences import ELO_SCALE, fit_bradley_terry

# --- bootstrap intervals and paired differences -------------------------------------------------------------


def test_bootstrap_hand_values():
    mean, lo, hi = bootstrap_ci([2.0, 2.0, 2.0])  # no spread: every resample has mean 2
    assert (mean, lo, hi) == (2.0, 2.0, 2.0)
    mean, lo, hi = bootstrap_ci([0.0, 1.0], n_resamples=4000, seed=1)  # resample means are 0, 1/2, 1
    assert mean == 0.5 and lo == 0.0 and hi == 1.0


def test_bootstrap_matches_a_loop_and_the_normal_interval():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, 400)
    mean, lo, hi = bootstrap_ci(x, n_resamples=500, seed=3)
    gen = np.random.default_rng(3)  # the same draws, one resample at a time
    idx = gen.integers(0, 400, size=(500, 400))
    loop = [float(np.mean([x[j] for j in row])) for row in idx]
    assert math.isclose(lo, float(np.quantile(loop, 0.025)), rel_tol=1e-9)
    assert math.isclose(hi, float(np.quantile(loop, 0.975)), rel_tol=1e-9)
    se = x.std(ddof=1) / 20  # the normal-theory interval is close for a mean of 400 values
    assert abs(lo - (mean - 1.96 * se)) < 0.35 * se and abs(hi - (mean + 1.96 * se)) < 0.35 * se


def test_bootstrap_properties():
    x = np.random.default_rng(1).normal(size=200)
    a = bootstrap_ci(x, seed=5)
    assert a == bootstrap_ci(x, seed=5)  # the same seed, the same interval
    shifted = bootstrap_ci(x + 3.0, seed=5)  # shift-equivariant
    assert all(math.isclose(s, v + 3.0, abs_tol=1e-9) for s, v in zip(shifted, a))
    assert a[1] < a[0] < a[2]
    narrow = bootstrap_ci(np.tile(x, 4), seed=5)  # 4× the prompts: about half the width
    assert 0.35 < (narrow[2] - narrow[1]) / (a[2] - a[1]) < 0.65


def test_paired_difference_hand_value_and_pairing():
    out = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert out["diff"] == 0.5 and out["lo"] == 0.5 and out["hi"] == 0.5 and out["sd"] == 0.0
    rng = np.random.default_rng(2)
    difficulty = rng.normal(0, 1.0, 300)  # shared by both models: pairing removes it
    a, b = difficulty + 0.1 + rng.normal(0, 0.1, 300), difficulty + rng.normal(0, 0.1, 300)
    p = paired_difference(a, b)
    assert p["lo"] > 0  # paired: the gain is visible
    _, lo_a, hi_a = bootstrap_ci(a)
    assert (p["hi"] - p["lo"]) < 0.3 * (hi_a - lo_a)  # far narrower than one model's own interval
    assert math.isclose(p["se"], float(np.std(a - b, ddof=1) / math.sqrt(300)), rel_tol=1e-12)


@pytest.mark.parametrize("bad", [[], [[1.0]], [1.0, float("nan")]])
def test_bootstrap_bad_input(bad):
    with pytest.raises(ValueError, match="values"):
        bootstrap_ci(bad)


def test_paired_difference_bad_input():
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.0)


# --- centred accuracy ---------------------------------------------------------------------------------------


def test_centred_accuracy():
    assert centred_accuracy(0.25, 0.25) == 0.0 and centred_accuracy(1.0, 0.25) == 1.0
    assert math.isclose(centred_accuracy(0.625, 0.25), 0.5)  # hand: (0.625 − 0.25)/0.75
    acc = np.array([0.0, 0.3, 0.9])
    assert np.allclose(centred_accuracy(acc, 0.5), [(a - 0.5) / 0.5 for a in acc])  # a loop agrees
    assert np.array_equal(centred_accuracy(acc, 0.0), acc)  # free-form tasks: unchanged
    assert centred_accuracy(0.1, 0.5) < 0  # worse than guessing
    with pytest.raises(ValueError, match="chance"):
        centred_accuracy(0.5, 1.0)
    with pytest.raises(ValueError, match="accuracy"):
        centred_accuracy(1.5, 0.0)


# --- power analysis -----------------------------------------------------------------------------------------


def test_prompts_needed_hand_value():
    # (1.959964 + 0.841621)² × (1 / 0.02)² = 7.848879 × 2500 = 19622.2 → 19623
    assert prompts_needed(1.0, 0.02) == 19623
    assert prompts_needed(0.1, 0.02) == 197  # 7.848879 × 25 = 196.2


def test_prompts_needed_against_scipy_and_power():
    for sd, eff in [(0.3, 0.02), (1.0, 0.1), (0.05, 0.01)]:
        n = prompts_needed(sd, eff)
        ref = ((norm.ppf(0.975) + norm.ppf(0.8)) * sd / eff) ** 2  # a second implementation
        assert n == math.ceil(ref)
        assert detection_power(n, sd, eff) >= 0.8 > detection_power(max(1, n - 2), sd, eff) - 1e-3


def test_power_properties():
    assert prompts_needed(0.3, 0.01) in range(4 * prompts_needed(0.3, 0.02) - 4, 4 * prompts_needed(0.3, 0.02) + 1)
    assert math.isclose(detection_power(100, 1.0, 0.0), 0.05, rel_tol=1e-9)  # no effect: the false-positive rate
    assert detection_power(1000, 1.0, 0.1) > detection_power(100, 1.0, 0.1)
    # simulate the test: detection rate of a 0.1 gain with sd 0.5 on n prompts
    n = prompts_needed(0.5, 0.1)
    rng = np.random.default_rng(0)
    d = rng.normal(0.1, 0.5, (4000, n))
    rate = np.mean(np.abs(d.mean(1) / (0.5 / math.sqrt(n))) > norm.ppf(0.975))
    assert abs(rate - 0.8) < 0.03
    with pytest.raises(ValueError, match="sd"):
        prompts_needed(0.0)
    with pytest.raises(ValueError, match="power"):
        prompts_needed(1.0, power=1.0)


# --- arena Elo ----------------------------------------------------------------------------------------------


def test_arena_elo_hand_value():
    # 3 wins to 1 between two players: θ_0 − θ_1 = ln 3, Elo gap 400·log10(3) = 190.85
    c = np.array([[0, 1]] * 3 + [[1, 0]])
    out = arena_elo(c, 2, n_resamples=50, alpha=0.0 + 1e-12)
    assert math.isclose(out["elo"][0] - out["elo"][1], 400 * math.log10(3), rel_tol=1e-6)
    assert math.isclose(out["elo"].mean(), 1500.0)
    # a tie is half a win each way: 2 wins + 2 ties to 0 → 3 : 1 again
    ties = np.array([False, False, True, True])
    out2 = arena_elo(np.array([[0, 1]] * 4), 2, ties=ties, n_resamples=20, alpha=1e-12)
    assert math.isclose(out2["elo"][0] - out2["elo"][1], 400 * math.log10(3), rel_tol=1e-6)


def test_arena_elo_matches_direct_fit_and_covers_truth():
    rng = np.random.default_rng(0)
    theta = np.array([1.0, 0.5, 0.0, -1.5])
    a = rng.integers(0, 4, 3000)
    b = (a + rng.integers(1, 4, 3000)) % 4
    a_wins = rng.random(3000) < 1 / (1 + np.exp(-(theta[a] - theta[b])))
    c = np.where(a_wins[:, None], np.stack([a, b], 1), np.stack([b, a], 1))
    out = arena_elo(c, 4, n_resamples=200)
    direct = 1500 + ELO_SCALE * fit_bradley_terry(c, 4, alpha=1e-4)
    assert np.allclose(out["elo"], direct, atol=1e-6)
    truth = 1500 + ELO_SCALE * (theta - theta.mean())
    assert ((out["lo"] <= truth) & (truth <= out["hi"])).all()
    assert ((out["lo"] < out["elo"]) & (out["elo"] < out["hi"])).all()


def test_arena_elo_properties_and_bad_input():
    c = np.array([[0, 1], [1, 2], [2, 0], [0, 2], [0, 1]])
    a = arena_elo(c, 3, n_resamples=100, seed=4)
    b = arena_elo(c, 3, n_resamples=100, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same seed, same intervals
    relabel = arena_elo(2 - c, 3, n_resamples=100, seed=4)  # players renamed: ratings follow them
    assert np.allclose(relabel["elo"][::-1], a["elo"], atol=1e-6)
    with pytest.raises(ValueError, match="comparisons"):
        arena_elo(np.array([[0, 3]]), 3)


# --- length-controlled win rate -----------------------------------------------------------------------------


def test_lc_hand_value():
    # labels 0.75 at Δℓ = +5 and at Δℓ = −5: length explains nothing, LC = raw = 0.75
    out = length_controlled_win_rate([0.75, 0.75], np.array([0, 0]), [5.0, -5.0], 1, alpha=1e-9)
    assert math.isclose(out["lc_win_rate"][0], 0.75, abs_tol=1e-6) and abs(out["length_slope"][0]) < 1e-6
    assert out["raw_win_rate"][0] == 0.75


def _lc_data(seed=0, n=600, bias=1.5):
    rng = np.random.default_rng(seed)
    theta = np.array([0.8, 0.0, -0.6])
    m = rng.integers(0, 3, n)
    dl = rng.normal(np.array([-4.0, 0.0, 8.0])[m], 3.0)  # model 2 is the long-winded one
    p = 1 / (1 + np.exp(-(theta[m] + bias * np.tanh(dl / dl.std()))))
    return theta, m, dl, p


def test_lc_matches_scipy_logistic_regression():
    theta, m, dl, p = _lc_data()
    out = length_controlled_win_rate(p, m, dl, 3, alpha=1e-3)

    def loss(w):  # a second implementation: the logistic NLL written per model, minimised by BFGS
        d = w[m] + w[3 + m] * np.tanh(dl / dl.std())
        return np.sum(p * np.logaddexp(0, -d) + (1 - p) * np.logaddexp(0, d)) + 1e-3 * w @ w

    w = minimize(loss, np.zeros(6), method="BFGS", options={"gtol": 1e-10}).x
    assert np.allclose(out["lc_win_rate"], 1 / (1 + np.exp(-w[:3])), atol=1e-5)
    assert np.allclose(out["length_slope"], w[3:], atol=1e-4)


def test_lc_removes_a_verbosity_bias():
    theta, m, dl, p = _lc_data()  # expected labels of a judge with a length bias
    out = length_controlled_win_rate(p, m, dl, 3, alpha=1e-9)
    assert np.allclose(out["lc_win_rate"], 1 / (1 + np.exp(-theta)), atol=1e-4)  # the taste at equal length
    assert np.allclose(out["length_slope"], 1.5, atol=1e-4)
    assert np.argmax(out["raw_win_rate"]) == 2 and np.argmax(out["lc_win_rate"]) == 0  # raw: the verbose one
    _, _, _, p0 = _lc_data(bias=0.0)
    unbiased = length_controlled_win_rate(p0, m, dl, 3, alpha=1e-9)
    assert np.allclose(unbiased["lc_win_rate"], out["lc_win_rate"], atol=1e-4)  # the bias moves only raw


def test_lc_bad_input():
    with pytest.raises(ValueError, match="preferences"):
        length_controlled_win_rate([1.2], np.array([0]), [0.0], 1)
    with pytest.raises(ValueError, match="no battles"):
        length_controlled_win_rate([1.0], np.array([0]), [0.0], 2)
    with pytest.raises(ValueError, match="length_diff"):
        length_controlled_win_rate([1.0, 0.0], np.array([0, 0]), [0.0], 1)


# --- swap consistency ---------------------------------------------------------------------------------------


def test_swap_consistency():
    # pair 0: picks A both times (consistent); pair 1: picks the first slot both times (inconsistent)
    out = swap_consistency([1, 1], [0, 1])
    assert out == {"consistency": 0.5, "first_rate": 0.75}
    rng = np.random.default_rng(0)  # a loop over pairs agrees
    ab, ba = rng.integers(0, 2, 50).astype(float), rng.integers(0, 2, 50).astype(float)
    out = swap_consistency(ab, ba)
    assert out["consistency"] == sum(1 for x, y in zip(ab, ba) if x != y) / 50
    # property: an order-blind judge (verdict depends on the replies only) is fully consistent, first_rate 1/2
    pref = rng.integers(0, 2, 50).astype(float)
    assert swap_consistency(pref, 1 - pref) == {"consistency": 1.0, "first_rate": 0.5}
    with pytest.raises(ValueError, match="verdicts"):
        swap_consistency([0.3], [0.7])
