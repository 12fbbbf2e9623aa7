"""Tests for equations.overoptimization: Gao et al. 2022's best-of-n and RL forms, their least-squares fits
(vs the 2×2 normal equations), their peaks (hand values, finite differences) and the early-fit peak prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfbook_lab.equations.overoptimization import (
    ENSEMBLE_RULES,
    ensemble_reward,
    fit_overoptimization,
    fit_predicts_peak,
    frontier_gap,
    overoptimization_curve,
)


def test_curve_hand_values_and_zero_at_the_start():
    # best-of-n: 2·(2 − 0.5·2) = 2; RL: e·(1 − 0.5·log e) = e/2
    assert overoptimization_curve(2.0, 2.0, 0.5, "bon") == pytest.approx(2.0)
    assert overoptimization_curve(math.e, 1.0, 0.5, "rl") == pytest.approx(math.e / 2)
    for form in ("bon", "rl"):
        assert overoptimization_curve(0.0, 3.0, 1.0, form) == 0.0  # R(0) = 0, also for d log d → 0
        assert overoptimization_curve(np.array([0.0, 1e-300]), 3.0, 1.0, form)[0] == 0.0
    with pytest.raises(ValueError, match="d must be finite and >= 0"):
        overoptimization_curve([-1.0], 1.0, 1.0, "bon")
    with pytest.raises(ValueError, match="form must be"):
        overoptimization_curve([1.0], 1.0, 1.0, "ppo")


def test_peak_hand_values():
    d = np.linspace(0.0, 6.0, 13)
    bon = fit_overoptimization(d, overoptimization_curve(d, 2.0, 0.5, "bon"), form="bon")
    assert (bon.alpha, bon.beta) == pytest.approx((2.0, 0.5), abs=1e-12)
    assert (bon.peak_d, bon.peak_value) == pytest.approx((2.0, 2.0), abs=1e-12)  # α/(2β), α²/(4β)
    assert bon.peak_kl == pytest.approx(4.0)
    rl = fit_overoptimization(d, overoptimization_curve(d, 1.0, 0.5, "rl"), form="rl")
    assert (rl.peak_d, rl.peak_value) == pytest.approx((math.e, math.e / 2), abs=1e-12)  # exp(α/β − 1), β d*
    assert bon.r2 == pytest.approx(1.0) and rl.r2 == pytest.approx(1.0)


@pytest.mark.parametrize("form, alpha, beta", [("bon", 1.3, 0.4), ("rl", 0.8, 0.35)])
def test_peak_is_where_the_derivative_vanishes(form, alpha, beta):
    d = np.linspace(0.0, 8.0, 30)
    fit = fit_overoptimization(d, overoptimization_curve(d, alpha, beta, form), form=form)
    h = 1e-5
    slope = (fit.predict(fit.peak_d + h) - fit.predict(fit.peak_d - h)) / (2 * h)
    assert abs(slope) < 1e-8
    assert fit.predict(fit.peak_d) == pytest.approx(fit.peak_value, abs=1e-12)
    assert fit.predict(fit.peak_d * 0.9) < fit.peak_value and fit.predict(fit.peak_d * 1.1) < fit.peak_value


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_fit_matches_the_normal_equations_on_noisy_data(form):
    rng = np.random.default_rng(0)
    d = np.sort(rng.uniform(0.0, 6.0, size=40))
    r = overoptimization_curve(d, 1.0, 0.3, form) + 0.05 * rng.normal(size=40)
    fit = fit_overoptimization(d, r, form=form)
    # second implementation: solve the 2×2 normal equations of r ≈ α x1 − β x2 by Cramer's rule
    x1 = d
    x2 = d * d if form == "bon" else np.where(d > 0, d * np.log(np.maximum(d, 1e-300)), 0.0)
    a11, a12, a22 = x1 @ x1, -(x1 @ x2), x2 @ x2
    b1, b2 = x1 @ r, -(x2 @ r)
    det = a11 * a22 - a12 * a12
    assert fit.alpha == pytest.approx((b1 * a22 - a12 * b2) / det, rel=1e-9)
    assert fit.beta == pytest.approx((a11 * b2 - a12 * b1) / det, rel=1e-9)
    # and it recovers the generating parameters
    assert fit.alpha == pytest.approx(1.0, abs=0.1) and fit.beta == pytest.approx(0.3, abs=0.05)
    assert 0.8 < fit.r2 < 1.0


def test_the_two_forms_tell_their_curves_apart():
    d = np.linspace(0.0, 5.0, 25)
    for true_form, other in (("bon", "rl"), ("rl", "bon")):
        r = overoptimization_curve(d, 1.0, 0.4 if true_form == "bon" else 0.5, true_form)
        assert fit_overoptimization(d, r, true_form).r2 > fit_overoptimization(d, r, other).r2


def test_subtract_start():
    d = np.array([0.0, 1.0, 2.0, 3.0])
    raw = 0.7 + overoptimization_curve(d, 2.0, 0.5, "bon")
    fit = fit_overoptimization(d, raw, subtract_start=True)
    assert (fit.alpha, fit.beta, fit.start_value) == pytest.approx((2.0, 0.5, 0.7), abs=1e-12)
    # without it the pinned intercept makes the fit wrong: the start's score is not zero
    assert fit_overoptimization(d, raw).alpha != pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError, match="first point at d = 0"):
        fit_overoptimization(d[1:], raw[1:], subtract_start=True)


@pytest.mark.parametrize(
    "d, r, match",
    [([1.0], [0.5], "at least 2 points"), ([0.0, 0.0, 1.0], [0.0, 0.1, 0.2], "at least 2 points"),
     ([0.0, -1.0, 2.0], [0.0, 0.1, 0.2], "d must be >= 0"), ([0.0, 1.0, 2.0], [0.0, np.nan, 0.2], "finite"),
     ([0.0, 1.0, 2.0], [0.0, 0.1], "same length")],
)
def test_fit_refuses_bad_runs(d, r, match):
    with pytest.raises(ValueError, match=match):
        fit_overoptimization(d, r, form="bon")


def test_no_turn_over_means_no_peak():
    d = np.linspace(0.0, 3.0, 10)
    fit = fit_overoptimization(d, 0.5 * d + 0.01 * d * d, form="bon")  # still accelerating: β < 0
    assert fit.beta < 0 and fit.peak_d == math.inf and fit.peak_value == math.inf


def test_early_fit_predicts_the_peak_of_a_noiseless_run():
    d = np.linspace(0.0, 8.0, 41)
    for form, alpha, beta in (("bon", 2.0, 0.5), ("rl", 1.0, 0.5)):
        r = 0.3 + overoptimization_curve(d, alpha, beta, form)  # a raw gold score that started at 0.3
        out = fit_predicts_peak(d, r, form=form, fraction=0.5, subtract_start=True)
        assert out.n_fit_points == 21  # d ≤ 4
        true_peak = 2.0 if form == "bon" else math.e
        assert out.predicted_peak_d == pytest.approx(true_peak, rel=1e-9)
        assert out.observed_peak_d == pytest.approx(true_peak, abs=0.2)  # the grid point nearest the peak
        assert out.predicted_peak_value >= out.observed_peak_value - 1e-12
        assert out.fit.start_value == pytest.approx(0.3)


def test_early_fit_of_the_wrong_form_misplaces_the_peak():
    # RL-shaped data (a log turn-over) fitted with the best-of-n parabola on its first 40 %: the prediction is off
    d = np.linspace(0.0, 10.0, 51)
    r = overoptimization_curve(d, 1.0, 0.4, "rl")  # peak at exp(1.5) ≈ 4.48
    right = fit_predicts_peak(d, r, form="rl", fraction=0.4)
    wrong = fit_predicts_peak(d, r, form="bon", fraction=0.4)
    assert right.predicted_peak_d == pytest.approx(math.exp(1.5), rel=1e-9)
    assert abs(wrong.predicted_peak_d - math.exp(1.5)) > 0.3
    with pytest.raises(ValueError, match="fraction"):
        fit_predicts_peak(d, r, fraction=0.0)


# --- mitigations: ensembles (Coste et al. 2024) and the KL penalty at matched KL --------------------------------


def test_ensemble_reward_hand_values():
    s = [[1.0, 4.0], [3.0, 0.0]]  # two members, two replies
    np.testing.assert_allclose(ensemble_reward(s, "single"), [1.0, 4.0])
    np.testing.assert_allclose(ensemble_reward(s, "mean"), [2.0, 2.0])
    np.testing.assert_allclose(ensemble_reward(s, "min"), [1.0, 0.0])
    # population variance: reply 0 ((1−2)² + (3−2)²)/2 = 1, reply 1 ((4−2)² + (0−2)²)/2 = 4
    np.testing.assert_allclose(ensemble_reward(s, "mean-var", lam=0.5), [2.0 - 0.5, 2.0 - 2.0])


def test_ensemble_reward_matches_a_loop_over_replies():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 3, 7))
    for rule in ENSEMBLE_RULES:
        got = ensemble_reward(s, rule, lam=0.7)
        for i in range(3):
            for j in range(7):
                col = [float(s[k, i, j]) for k in range(5)]
                mean = sum(col) / 5
                want = {"single": col[0], "mean": mean, "min": min(col),
                        "mean-var": mean - 0.7 * sum((c - mean) ** 2 for c in col) / 5}[rule]
                assert got[i, j] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_ensemble_reward_properties():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 50))
    mean, low, unc = (ensemble_reward(s, r, lam=2.0) for r in ("mean", "min", "mean-var"))
    assert np.all(low <= mean) and np.all(unc <= mean)  # both pessimistic rules never pay more than the mean
    np.testing.assert_allclose(ensemble_reward(s, "mean-var", lam=0.0), mean)
    np.testing.assert_allclose(ensemble_reward(s[::-1], "min"), low)  # the order of members does not matter
    same = np.repeat(s[:1], 3, axis=0)  # members that agree: every rule is the member itself
    for rule in ENSEMBLE_RULES:
        np.testing.assert_allclose(ensemble_reward(same, rule), s[0])
    # a reply one member overrates (disagreement) is ranked down by min and mean-var but not always by mean
    s2 = np.array([[0.0, 3.0], [0.0, -1.0], [0.0, -1.0]])  # reply 1: one member loves it, two dislike it
    assert ensemble_reward(s2, "mean")[1] > 0 > ensemble_reward(s2, "min")[1]
    assert ensemble_reward(s2, "mean-var")[1] < ensemble_reward(s2, "mean-var")[0]


@pytest.mark.parametrize("args, match", [
    (([[1.0]], "max"), "rule must be one of"),
    (([[1.0, float("nan")]], "mean"), "must be finite"),
    ((np.zeros((0, 3)), "mean"), "K >= 1"),
    (([[1.0]], "mean-var", -1.0), "lam must be"),
])
def test_ensemble_reward_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        ensemble_reward(*args)


def test_frontier_gap_hand_value():
    # reference: gold 0, 1, 0 at d = 0, 1, 2; compared run at d = 0.5 (ref 0.5) and 1.5 (ref 0.5), gold 1 and 0:
    # gaps +0.5 and −0.5 → mean 0; a point at d = 3 lies outside the reference and is not matched
    out = frontier_gap([0.0, 1.0, 2.0], [0.0, 1.0, 0.0], [0.5, 1.5, 3.0], [1.0, 0.0, 9.0])
    assert out["gap"] == pytest.approx(0.0) and out["matched"] == 2
    assert out["final_d"] == 3.0 and out["final_d_ref"] == 2.0


def test_frontier_gap_matches_a_hand_interpolation_and_is_order_free():
    rng = np.random.default_rng(2)
    d_ref = np.sort(rng.uniform(0, 3, size=12))
    r_ref = np.sin(d_ref)
    d = rng.uniform(0, 3.5, size=9)
    r = np.cos(d)
    gaps = []
    for di, ri in zip(d, r):
        if d_ref[0] <= di <= d_ref[-1]:
            k = int(np.searchsorted(d_ref, di, side="right")) - 1
            k = min(k, len(d_ref) - 2)
            t = (di - d_ref[k]) / (d_ref[k + 1] - d_ref[k])
            gaps.append(ri - ((1 - t) * r_ref[k] + t * r_ref[k + 1]))
    out = frontier_gap(d_ref, r_ref, d, r)
    assert out["gap"] == pytest.approx(np.mean(gaps)) and out["matched"] == len(gaps)
    perm = rng.permutation(len(d_ref))  # the reference's points need not be sorted
    assert frontier_gap(d_ref[perm], r_ref[perm], d, r)["gap"] == pytest.approx(out["gap"])


def test_frontier_gap_properties():
    d, r = np.linspace(0, 2, 9), np.linspace(0, 2, 9) * (1 - np.linspace(0, 2, 9))
    assert frontier_gap(d, r, d, r)["gap"] == pytest.approx(0.0)  # a run on its own curve
    assert frontier_gap(d, r, d[:4], r[:4] + 0.3)["gap"] == pytest.approx(0.3)  # lifted by 0.3: gap 0.3


@pytest.mark.parametrize("args, match", [
    (([0.0], [0.0], [0.0], [0.0]), "at least 2 points"),
    (([0.0, 1.0], [0.0, 1.0], [5.0], [0.0]), "no point of d"),
    (([0.0, 1.0], [0.0], [0.5], [0.0]), "same length"),
    (([0.0, 1.0], [0.0, float("nan")], [0.5], [0.0]), "finite"),
])
def test_frontier_gap_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        frontier_gap(*args)
