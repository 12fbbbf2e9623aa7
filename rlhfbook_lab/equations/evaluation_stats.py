"""Evaluation statistics (RLHF Book, ch. 16): how sure a score is, and what a judge's verdicts mean.

Plain NumPy, float64. Randomness only where named (bootstrap resampling), from a seeded generator.

- :func:`bootstrap_ci` / :func:`paired_difference`: percentile bootstrap 95 % intervals over prompts, for one
  model's mean score and for the difference of two models scored on the *same* prompts (pairing removes the
  prompt-difficulty variance both share).
- :func:`centred_accuracy`: (acc − chance)/(1 − chance), 0 at chance and 1 at perfect (nanochat's ChatCORE).
- :func:`prompts_needed` / :func:`detection_power`: the power analysis of a two-sided z-test on paired
  differences: how many prompts detect a 2-point gain.
- :func:`arena_elo`: Chatbot Arena's ratings: a Bradley-Terry fit of battles on the Elo scale
  (``preferences.fit_bradley_terry`` and ``strengths_to_elo``, not a copy), with percentile intervals from
  1,000 bootstrap resamples of the battles; a tie is half a win each way.
- :func:`length_controlled_win_rate`: AlpacaEval's length control: a logistic model of the judge's preference
  with a per-model term and a per-model length-difference term, read at zero length difference
  (``preferences.fit_linear_bradley_terry`` is that logistic regression).
- :func:`swap_consistency`: a pairwise judge's position bias: asked twice with A and B swapped, does it give the
  same verdict, and how often does the first-shown reply win?
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.equations.preferences import fit_bradley_terry, fit_linear_bradley_terry, strengths_to_elo

__all__ = [
    "arena_elo",
    "bootstrap_ci",
    "centred_accuracy",
    "detection_power",
    "length_controlled_win_rate",
    "paired_difference",
    "prompts_needed",
    "swap_consistency",
]


def _check_values(name: str, values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N,) with N >= 1 (one score per prompt); got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf")
    return v


def _check_level(level: float) -> None:
    check_number("level", level, minimum=0, maximum=1, strict=True)
    if level >= 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")


def bootstrap_ci(values, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-prompt scores with a percentile bootstrap interval over prompts (Efron 1979).

    .. math::  \\bar x = \\frac1N \\sum_i x_i, \\qquad
               [\\,q_{(1-\\ell)/2},\\; q_{(1+\\ell)/2}\\,] \\text{ of } \\{\\bar x^{*b}\\}_{b=1}^{B},
               \\quad \\bar x^{*b} = \\frac1N \\sum_i x_{I_{b,i}},\\ I_{b,i} \\sim \\mathcal U\\{1..N\\}

    Args:
        values: Shape (N,), one score per prompt (gold score, 0/1 correctness).
        n_resamples: B, bootstrap resamples (1,000 as Chatbot Arena).
        level: ℓ, the interval's coverage (0.95).
        seed: the resampling generator's seed (same seed, same interval).

    Returns:
        ``(mean, lo, hi)``.
    """
    v = _check_values("values", values)
    check_int("n_resamples", n_resamples, minimum=1)
    _check_level(level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.shape[0], size=(n_resamples, v.shape[0]))  # (B, N)
    means = v[idx].mean(axis=1)  # (B,)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(v.mean()), float(lo), float(hi)


def paired_difference(a, b, n_resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """The mean difference of two models scored on the same prompts, with its bootstrap interval and s.e.

    .. math::  d_i = a_i - b_i, \\qquad \\bar d \\pm \\text{percentile bootstrap of } \\bar d,
               \\qquad \\mathrm{se} = \\mathrm{sd}(d) / \\sqrt N

    Resampling prompts (not each model's scores separately) keeps the pairing: a hard prompt is hard for both,
    so sd(d) is much smaller than sd(a) and sd(b) and small gains become visible.

    Args:
        a: Shape (N,), model A's score per prompt.
        b: Shape (N,), model B's score on the same prompts, in the same order.

    Returns:
        ``{"diff", "lo", "hi", "se", "sd"}``: sd is the per-prompt sd of d (what :func:`prompts_needed` takes).
    """
    x, y = _check_values("a", a), _check_values("b", b)
    if x.shape != y.shape:
        raise ValueError(f"b has shape {y.shape}; expected a's shape {x.shape} (the same prompts, paired)")
    d = x - y
    diff, lo, hi = bootstrap_ci(d, n_resamples, level, seed)
    sd = float(d.std(ddof=1)) if d.shape[0] > 1 else 0.0
    return {"diff": diff, "lo": lo, "hi": hi, "se": sd / math.sqrt(d.shape[0]), "sd": sd}


def centred_accuracy(accuracy, chance: float):
    """Accuracy rescaled so that chance is 0 and perfect is 1 (nanochat's ChatCORE centring).

    .. math::  \\mathrm{centred} = \\frac{\\mathrm{acc} - c}{1 - c}

    Averaging raw accuracies over tasks of different chance levels (a 4-way choice: 0.25; free-form: 0) mixes
    luck with skill; centred, every task reads "share of the way from guessing to perfect". Negative means
    worse than guessing.

    Args:
        accuracy: a float or an array of accuracies in [0, 1].
        chance: c in [0, 1), the accuracy of guessing.

    Returns:
        The same shape as ``accuracy``.
    """
    check_number("chance", chance, minimum=0)
    if chance >= 1:
        raise ValueError(f"chance must be in [0, 1); got {chance!r}")
    acc = np.asarray(accuracy, dtype=np.float64)
    if not (np.isfinite(acc).all() and (acc >= 0).all() and (acc <= 1).all()):
        raise ValueError(f"accuracy must lie in [0, 1]; got {accuracy!r}")
    out = (acc - chance) / (1 - chance)
    return float(out) if out.ndim == 0 else out


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def prompts_needed(sd: float, effect: float = 0.02, alpha: float = 0.05, power: float = 0.8) -> int:
    """Prompts a two-sided paired z-test needs to detect a true mean gain ``effect`` with probability ``power``.

    .. math::  n = \\Big\\lceil \\Big(\\frac{(z_{1-\\alpha/2} + z_{\\mathrm{power}})\\,\\sigma_d}{\\delta}\\Big)^2
               \\Big\\rceil

    with σ_d the sd of per-prompt paired differences (:func:`paired_difference`'s ``sd``) and δ the gain
    (0.02: "2 points" on a 0–100 scale). Halving δ quadruples n.

    Args:
        sd: σ_d > 0.
        effect: δ > 0, in the score's units.
        alpha: the test's false-positive rate, in (0, 1).
        power: the wanted detection probability, in (0, 1).

    Returns:
        n, an int >= 1.
    """
    check_number("sd", sd, minimum=0, strict=True)
    check_number("effect", effect, minimum=0, strict=True)
    for name, p in (("alpha", alpha), ("power", power)):
        check_number(name, p, minimum=0, maximum=1, strict=True)
        if p >= 1:
            raise ValueError(f"{name} must be in (0, 1); got {p!r}")
    return max(1, math.ceil(((_z(1 - alpha / 2) + _z(power)) * sd / effect) ** 2))


def detection_power(n: int, sd: float, effect: float = 0.02, alpha: float = 0.05) -> float:
    """Probability that a two-sided paired z-test on ``n`` prompts detects a true gain ``effect``.

    .. math::  \\mathrm{power}(n) = \\Phi\\big(\\delta\\sqrt n/\\sigma_d - z_{1-\\alpha/2}\\big)
               + \\Phi\\big(-\\delta\\sqrt n/\\sigma_d - z_{1-\\alpha/2}\\big)

    (the second term: significant in the wrong direction; tiny). The inverse of :func:`prompts_needed`.
    """
    check_int("n", n, minimum=1)
    check_number("sd", sd, minimum=0, strict=True)
    check_number("effect", effect, minimum=0)
    check_number("alpha", alpha, minimum=0, maximum=1, strict=True)
    shift, z = effect * math.sqrt(n) / sd, _z(1 - alpha / 2)
    return NormalDist().cdf(shift - z) + NormalDist().cdf(-shift - z)


def arena_elo(comparisons, n_items: int, ties=None, n_resamples: int = 1000, level: float = 0.95,
              alpha: float = 1e-4, seed: int = 0) -> dict[str, np.ndarray]:
    """Chatbot Arena ratings: Bradley-Terry on the Elo scale with percentile intervals over resampled battles.

    .. math::  \\hat\\theta = \\arg\\min_\\theta \\sum_{(w,l)} c_{wl}\\log(1 + e^{-(\\theta_w - \\theta_l)})
               + \\alpha\\lVert\\theta\\rVert^2, \\qquad R = 1500 + \\hat\\theta \\cdot 400/\\ln 10

    (``preferences.fit_bradley_terry`` and ``preferences.strengths_to_elo``), refitted on ``n_resamples``
    bootstrap resamples of the battles (rows drawn with replacement); the interval is the resampled ratings'
    (1 − ℓ)/2 and (1 + ℓ)/2 quantiles (Chiang et al. 2024). A tie is half a win each way. The small α keeps a
    resample in which some player happens never to lose finite.

    Args:
        comparisons: Shape (N, 2), int, battles as rows (winner, loser).
        n_items: players n.
        ties: None or Shape (N,), bool.
        n_resamples: B (1,000).
        level: ℓ (0.95).
        alpha: the Bradley-Terry fit's L2 penalty.
        seed: the resampling generator's seed.

    Returns:
        ``{"elo", "lo", "hi"}``, each Shape (n,), float64; mean rating 1500.
    """
    c = np.asarray(comparisons)
    check_int("n_resamples", n_resamples, minimum=1)
    _check_level(level)
    elo = strengths_to_elo(fit_bradley_terry(c, n_items, ties, alpha=alpha))  # also checks the input
    t = np.zeros(c.shape[0], dtype=bool) if ties is None else np.asarray(ties)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_resamples, n_items))
    for b in range(n_resamples):
        idx = rng.integers(0, c.shape[0], c.shape[0])
        boot[b] = strengths_to_elo(fit_bradley_terry(c[idx], n_items, t[idx], alpha=alpha))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"elo": elo, "lo": lo, "hi": hi}


def length_controlled_win_rate(preferences, model_index, length_diff, n_models: int,
                               alpha: float = 1e-3) -> dict[str, np.ndarray]:
    """AlpacaEval's length-controlled win rate: the judge's preference with the length difference regressed out.

    Each battle b pits model m_b against one fixed baseline; the judge prefers the model with probability
    y_b ∈ [0, 1] (a verdict 0/1, ½ a tie). Fit, for every model m, an intercept θ_m and a length slope φ_m:

    .. math::  P(m_b \\succ \\text{baseline}) = \\sigma\\big(\\theta_{m_b} + \\phi_{m_b}\\,
               \\tanh(\\Delta\\ell_b / \\mathrm{sd}(\\Delta\\ell))\\big), \\qquad
               \\mathrm{LC}_m = \\sigma(\\theta_m)

    by (lightly penalised) maximum likelihood, i.e. ``preferences.fit_linear_bradley_terry`` on the features
    [one-hot(m_b), one-hot(m_b) · tanh(Δℓ_b/sd)] (Dubois et al. 2024, without their instruction-difficulty term).
    Δℓ_b = len(model reply) − len(baseline reply). LC_m is the win rate the judge would give at *equal* length:
    a judge's verbosity bias moves the raw win rate but not LC. The slope is read from each model's own spread
    of lengths, so a model whose replies never vary in length relative to the baseline leaves it unidentified
    (the penalty α then keeps it near 0).

    Args:
        preferences: Shape (N,), in [0, 1].
        model_index: Shape (N,), int in 0 .. n_models − 1.
        length_diff: Shape (N,), Δℓ (words or tokens).
        n_models: number of models M.
        alpha: the fit's L2 penalty.

    Returns:
        ``{"lc_win_rate", "raw_win_rate", "length_slope"}``, each Shape (M,).
    """
    y = _check_values("preferences", preferences)
    if (y < 0).any() or (y > 1).any():
        raise ValueError("preferences must lie in [0, 1] (1: the model's reply preferred, 0.5: a tie)")
    m = np.asarray(model_index)
    if m.shape != y.shape or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"model_index must be an int array of shape {y.shape}; got {m.dtype} {m.shape}")
    check_int("n_models", n_models, minimum=1)
    if m.min() < 0 or m.max() >= n_models:
        raise ValueError(f"model_index must lie in 0..{n_models - 1}; got {m.min()}..{m.max()}")
    missing = sorted(set(range(n_models)) - set(m.tolist()))
    if missing:
        raise ValueError(f"model_index: model(s) {missing} have no battles")
    dl = _check_values("length_diff", length_diff)
    if dl.shape != y.shape:
        raise ValueError(f"length_diff must have shape {y.shape}; got {dl.shape}")
    sd = dl.std()
    rows = np.arange(y.shape[0])
    x = np.zeros((y.shape[0], 2 * n_models))  # (N, 2M): [one-hot(m), one-hot(m)·tanh(Δℓ/sd)]
    x[rows, m] = 1.0
    x[rows, n_models + m] = np.tanh(dl / sd) if sd > 0 else 0.0
    w = fit_linear_bradley_terry(x, np.zeros_like(x), labels=y, alpha=alpha)
    raw = np.array([y[m == k].mean() for k in range(n_models)])
    return {"lc_win_rate": 1.0 / (1.0 + np.exp(-w[:n_models])), "raw_win_rate": raw, "length_slope": w[n_models:]}


def swap_consistency(first_wins_ab, first_wins_ba) -> dict[str, float]:
    """Position bias of a pairwise judge, from verdicts on each pair shown both ways (A, B) and (B, A).

    ``first_wins_ab[i]`` is 1 if the judge picked the first-shown reply when shown (A_i, B_i), 0 the second,
    ½ a tie; ``first_wins_ba[i]`` the same for the swapped order (B_i, A_i). An order-blind judge picks the same
    *reply* both times, i.e. v_ab + v_ba = 1.

    .. math::  \\mathrm{consistency} = \\frac1N\\sum_i [v^{ab}_i + v^{ba}_i = 1], \\qquad
               \\mathrm{first\\_rate} = \\frac1{2N}\\sum_i (v^{ab}_i + v^{ba}_i)

    first_rate is ½ for a judge without position bias (whatever its taste); above ½ it favours the first slot.

    Args:
        first_wins_ab: Shape (N,), values in {0, ½, 1}.
        first_wins_ba: Shape (N,), the same pairs swapped.

    Returns:
        ``{"consistency", "first_rate"}``.
    """
    ab, ba = _check_values("first_wins_ab", first_wins_ab), _check_values("first_wins_ba", first_wins_ba)
    if ab.shape != ba.shape:
        raise ValueError(f"first_wins_ba has shape {ba.shape}; expected {ab.shape} (the same pairs, swapped)")
    for name, v in (("first_wins_ab", ab), ("first_wins_ba", ba)):
        if not np.isin(v, (0.0, 0.5, 1.0)).all():
            raise ValueError(f"{name} must hold verdicts 0, 0.5 or 1")
    s = ab + ba
    return {"consistency": float(np.mean(s == 1.0)), "first_rate": float(s.mean() / 2)}
