"""Reward-model over-optimization curves (RLHF Book ch. 14): the functional forms of Gao, Schulman & Hilton 2022,
"Scaling Laws for Reward Model Overoptimization", fitted to gold score against distance from the start.

Plain NumPy, float64, deterministic.

With d = √KL(π ‖ π_init) and the gold score R measured *relative to the start* (R(0) = 0), the paper finds

    best-of-n:  R_bon(d) = d (α_bon − β_bon · d)
    RL:         R_RL(d)  = d (α_RL − β_RL · log d)

The proxy (reward-model) score keeps rising while the gold score peaks and falls: that is over-optimization.
Several online summaries write the RL form as α√KL − β·KL; that is the *best-of-n* form again, not the paper's
RL form, which has the logarithm. Both forms are linear in (α, β) for given d, so they are fitted by ordinary
least squares with no intercept (the intercept is pinned by R(0) = 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["ENSEMBLE_RULES", "FORMS", "OveroptimizationFit", "PeakPrediction", "ensemble_reward",
           "fit_overoptimization", "fit_predicts_peak", "frontier_gap", "overoptimization_curve"]

FORMS = ("bon", "rl")
"""The two functional forms: ``"bon"`` d(α − βd), ``"rl"`` d(α − β log d)."""


def _check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}; got {form!r}")
    return form


def _features(d: np.ndarray, form: str) -> np.ndarray:
    """Design matrix [d, −d²] (best-of-n) or [d, −d log d] (RL, with 0·log 0 = 0). Shape: (N,) → (N, 2)."""
    if form == "bon":
        second = d * d
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            second = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    return np.stack([d, -second], axis=-1)


def overoptimization_curve(d, alpha: float, beta: float, form: str) -> np.ndarray:
    """Gao et al. 2022's gold-score curves, R(0) = 0:

        ``form="bon"``:  R(d) = d (α − β d)        ``form="rl"``:  R(d) = d (α − β log d)

    Args:
        d: √KL from the start, ≥ 0. Shape: any.
        alpha, beta: the coefficients.

    Returns: R(d). Shape: like ``d``.
    """
    _check_form(form)
    dd = np.asarray(d, dtype=np.float64)
    if not np.all(np.isfinite(dd)) or np.any(dd < 0):
        raise ValueError("d must be finite and >= 0 (d = sqrt(KL))")
    return _features(dd, form) @ np.array([alpha, beta], dtype=np.float64)


@dataclass(frozen=True)
class OveroptimizationFit:
    """The result of :func:`fit_overoptimization`."""

    form: str
    """``"bon"`` or ``"rl"``."""
    alpha: float
    """α: the initial slope dR/dd at d → 0 (for ``"rl"`` the slope there is infinite unless β = 0)."""
    beta: float
    """β: how fast the gold score turns over (> 0 for a peak)."""
    r2: float
    """R² = 1 − SS_res / SS_tot (SS_tot about the mean of the fitted r; can be negative for a poor fit)."""
    peak_d: float
    """d* where R peaks: α/(2β) (best-of-n) or exp(α/β − 1) (RL); ``inf`` when β ≤ 0 (no turn-over)."""
    peak_value: float
    """R(d*): α²/(4β) (best-of-n) or β·d* (RL); ``inf`` when β ≤ 0."""
    start_value: float
    """The gold score subtracted from every point (``subtract_start=True``), else 0."""

    @property
    def peak_kl(self) -> float:
        """The KL at the peak, d*²."""
        return self.peak_d ** 2

    def predict(self, d) -> np.ndarray:
        """R(d) relative to the start (add ``start_value`` for the raw gold score). Shape: like ``d``."""
        return overoptimization_curve(d, self.alpha, self.beta, self.form)


def _peak(alpha: float, beta: float, form: str) -> tuple[float, float]:
    if beta <= 0:
        return math.inf, math.inf
    if form == "bon":
        return alpha / (2 * beta), alpha * alpha / (4 * beta)
    exponent = alpha / beta - 1.0
    if exponent > 700:  # exp overflows: the peak is beyond any reachable d
        return math.inf, math.inf
    d_star = math.exp(exponent)
    return d_star, beta * d_star


def _check_run(d, r) -> tuple[np.ndarray, np.ndarray]:
    try:
        dd = np.asarray(d, dtype=np.float64).reshape(-1)
        rr = np.asarray(r, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"d and r must be 1-D arrays of numbers ({e})") from None
    if dd.shape != rr.shape:
        raise ValueError(f"d and r must have the same length; got {dd.size} and {rr.size}")
    if not (np.all(np.isfinite(dd)) and np.all(np.isfinite(rr))):
        raise ValueError("d and r must be finite (no NaN or inf)")
    if np.any(dd < 0):
        raise ValueError("d must be >= 0 (d = sqrt(KL); clip negative KL estimates before the square root)")
    return dd, rr


def fit_overoptimization(d, r, form: str = "bon", subtract_start: bool = False) -> OveroptimizationFit:
    """Fit Gao et al. 2022's over-optimization curve to gold scores by least squares without intercept:

        minimise Σ_i (r_i − R(d_i; α, β))²,   R(d) = d(α − βd) (``"bon"``) or d(α − β log d) (``"rl"``)

    and report the predicted peak: dR/dd = α − 2βd = 0 → d* = α/(2β), R* = α²/(4β) (best-of-n);
    α − β(log d + 1) = 0 → d* = exp(α/β − 1), R* = β d* (RL).

    Args:
        d: √KL(π ‖ π_init) per point, ≥ 0. Shape: (N,).
        r: the gold score per point, **relative to the start** (R(0) = 0). Shape: (N,).
        form: ``"bon"`` or ``"rl"``.
        subtract_start: if True, ``d[0]`` must be 0 and ``r[0]`` (the start's gold score) is subtracted from
            every r first; the fit then describes the gain over the start.
    """
    _check_form(form)
    dd, rr = _check_run(d, r)
    start = 0.0
    if subtract_start:
        if dd.size == 0 or dd[0] != 0:
            raise ValueError("subtract_start=True needs the first point at d = 0 (the start of the run)")
        start = float(rr[0])
        rr = rr - start
    X = _features(dd, form)
    if np.count_nonzero(dd) < 2 or np.linalg.matrix_rank(X) < 2:
        raise ValueError(f"need at least 2 points with distinct d > 0 to fit 2 parameters; got {dd.size} points")
    (alpha, beta), *_ = np.linalg.lstsq(X, rr, rcond=None)
    ss_tot = float(((rr - rr.mean()) ** 2).sum())
    ss_res = float(((rr - X @ np.array([alpha, beta])) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else -math.inf)
    peak_d, peak_value = _peak(float(alpha), float(beta), form)
    return OveroptimizationFit(form=form, alpha=float(alpha), beta=float(beta), r2=r2, peak_d=peak_d,
                               peak_value=peak_value, start_value=start)


@dataclass(frozen=True)
class PeakPrediction:
    """The result of :func:`fit_predicts_peak`: does a fit on the early part of a run predict its peak?"""

    fit: OveroptimizationFit
    """The fit on the early points only."""
    n_fit_points: int
    """How many points it used."""
    predicted_peak_d: float
    """The fit's d* (``inf`` if the early points show no turn-over)."""
    predicted_peak_value: float
    """The fit's R(d*), relative to the start like the fit."""
    observed_peak_d: float
    """d at the highest r of the whole run."""
    observed_peak_value: float
    """That highest r (relative to the start when ``subtract_start``)."""


def fit_predicts_peak(d, r, form: str = "bon", fraction: float = 0.5, subtract_start: bool = False) -> PeakPrediction:
    """Fit :func:`fit_overoptimization` on the first ``fraction`` of a run, measured in d (the points with
    d ≤ fraction · max d), and set its predicted peak beside the observed one (the argmax of r over the whole
    run). Lesson 14 asks: does the first half of a run predict where and how high gold peaks?

    Args:
        d, r: the whole run, as for :func:`fit_overoptimization`. Shape: (N,).
        form: ``"bon"`` or ``"rl"``.
        fraction: in (0, 1]; the share of the d range to fit on.
        subtract_start: as for :func:`fit_overoptimization` (applies to the observed peak too).
    """
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}")
    dd, rr = _check_run(d, r)
    if dd.size == 0:
        raise ValueError("d and r are empty")
    start = 0.0
    if subtract_start:
        if dd[0] != 0:
            raise ValueError("subtract_start=True needs the first point at d = 0 (the start of the run)")
        start = float(rr[0])
        rr = rr - start
    early = dd <= fraction * dd.max()
    fit = replace(fit_overoptimization(dd[early], rr[early], form=form), start_value=start)
    best = int(np.argmax(rr))
    return PeakPrediction(fit=fit, n_fit_points=int(early.sum()), predicted_peak_d=fit.peak_d,
                          predicted_peak_value=fit.peak_value, observed_peak_d=float(dd[best]),
                          observed_peak_value=float(rr[best]))


# --------------------------------------------------------------------------------------------------
# Mitigations: reward-model ensembles, and the KL penalty measured at matched KL
# --------------------------------------------------------------------------------------------------

ENSEMBLE_RULES = ("single", "mean", "min", "mean-var")
"""How an ensemble of K reward models scores a reply (Coste et al. 2024, "Reward Model Ensembles Help Mitigate
Overoptimization"): the first member alone, the members' mean, their minimum (worst-case optimisation, WCO), or
mean − λ·variance (uncertainty-weighted optimisation, UWO)."""


def ensemble_reward(member_scores, rule: str, lam: float = 1.0) -> np.ndarray:
    """Combine K reward models' scores of the same replies (Coste et al. 2024):

        single:   R = r_1
        mean:     R = (1/K) Σ_k r_k
        min:      R = min_k r_k                                  (worst case, WCO)
        mean-var: R = (1/K) Σ_k r_k − λ · (1/K) Σ_k (r_k − r̄)²   (uncertainty-weighted, UWO; population variance)

    A reply the members disagree on is one at least one of them misjudges; ``min`` and ``mean-var`` refuse to pay
    for it, so an optimiser cannot climb one member's error alone.

    Args:
        member_scores: r_k. Shape: (K, ...), K ≥ 1.
        rule: one of :data:`ENSEMBLE_RULES`.
        lam: λ ≥ 0 of ``mean-var``.

    Returns: R. Shape: (...).
    """
    if rule not in ENSEMBLE_RULES:
        raise ValueError(f"rule must be one of {ENSEMBLE_RULES}; got {rule!r}")
    try:
        s = np.asarray(member_scores, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"member_scores must be an array of numbers of shape (K, ...) ({e})") from None
    if s.ndim < 1 or s.shape[0] < 1:
        raise ValueError(f"member_scores must have shape (K, ...) with K >= 1 members; got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("member_scores must be finite (no NaN or inf)")
    if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0; got {lam!r}")
    if rule == "single":
        return s[0]
    if rule == "mean":
        return s.mean(axis=0)
    if rule == "min":
        return s.min(axis=0)
    return s.mean(axis=0) - lam * s.var(axis=0)


def frontier_gap(d_ref, r_ref, d, r) -> dict:
    """How far a run's gold lies above a reference run's gold–KL curve *at the same distance* (Gao et al. 2022 ask
    this of the KL penalty: does it move the frontier, or only where the run stops?):

        gap = (1/|M|) Σ_{i ∈ M} (r_i − R̂_ref(d_i)),     M = {i : min d_ref ≤ d_i ≤ max d_ref}

    with R̂_ref the reference's gold linearly interpolated in d (its points sorted by d). A gap near 0 (within the
    noise) with a smaller final d is early stopping; a clearly positive gap is a better frontier.

    Args:
        d_ref, r_ref: the reference run's distances and gold scores. Shape: (N,), N ≥ 2.
        d, r: the compared run's. Shape: (M,).

    Returns: ``{"gap", "matched" (|M|), "final_d", "final_d_ref"}``; ``gap`` is NaN-free: |M| = 0 is an error.
    """
    dr, rr = _check_run(d_ref, r_ref)
    dc, rc = _check_run(d, r)
    if dr.size < 2:
        raise ValueError(f"d_ref must hold at least 2 points to interpolate; got {dr.size}")
    order = np.argsort(dr, kind="stable")
    inside = (dc >= dr.min()) & (dc <= dr.max())
    if not inside.any():
        raise ValueError(f"no point of d lies within the reference's range [{dr.min():.3g}, {dr.max():.3g}]")
    gaps = rc[inside] - np.interp(dc[inside], dr[order], rr[order])
    return {"gap": float(gaps.mean()), "matched": int(inside.sum()), "final_d": float(dc[-1]),
            "final_d_ref": float(dr[-1])}
