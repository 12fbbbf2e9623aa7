"""The nature of preferences (RLHF Book, ch. 10): strengths from comparisons, Elo, cycles, agreement, ceiling.

Plain NumPy, float64, deterministic: no randomness anywhere in this module.

Data convention (choix's)
-------------------------
``comparisons`` is an integer array of shape (N, 2); row ``(w, l)`` says item ``w`` beat item ``l``. An
optional boolean ``ties`` of shape (N,) marks rows that were ties (the order within the row then does not
matter): a tie counts as half a win each way.

The model behind it all is Bradley-Terry: item i has a strength θ_i (a log-scale "reward") and

    P(i ≻ j) = σ(θ_i − θ_j) = 1 / (1 + exp(−(θ_i − θ_j))).

Only differences are identified, so fitted strengths are reported with the gauge Σ_i θ_i = 0. Elo ratings
are the same model on another scale: P(i ≻ j) = 1 / (1 + 10^(−(R_i − R_j)/400)), i.e. R = 1500 + θ · 400/ln 10
(:data:`ELO_SCALE` ≈ 173.7 rating points per unit of θ).

Labelled pairs of replies from several sources (``preference_data``'s rows, with ``chosen_source`` and
``rejected_source``) become comparisons with :func:`comparisons_from_pairs`: that is how models are ranked
from an arena of pairwise battles. :func:`kendall_tau` scores a ranking against another (e.g. the gold one).

When the items are replies described by a feature vector φ (e.g. a frozen network's last hidden state), the
strength becomes a linear reward θ = w·φ: :func:`fit_linear_bradley_terry` fits w, a reward model's head on a
frozen backbone, and with one-hot features it is exactly :func:`fit_bradley_terry`.
"""

from __future__ import annotations

import math

import numpy as np

from rlhfbook_lab.checks import check_number

__all__ = [
    "ELO_SCALE",
    "bayes_ceiling",
    "bradley_terry_nll",
    "comparisons_from_pairs",
    "elo_ratings",
    "fit_bradley_terry",
    "fit_linear_bradley_terry",
    "linear_bradley_terry_nll",
    "strengths_to_elo",
    "win_matrix",
]

ELO_SCALE = 400.0 / math.log(10.0)
"""Elo points per unit of Bradley-Terry strength: 10^(ΔR/400) = exp(ΔR / ELO_SCALE)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = (1 + tanh(x/2)) / 2: never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _check_comparisons(comparisons, n_items: int, ties=None) -> tuple[np.ndarray, np.ndarray]:
    """Return comparisons as int64 (N, 2) and ties as bool (N,), or raise ValueError naming the field."""
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items < 2:
        raise ValueError(f"n_items must be an integer >= 2; got {n_items!r}")
    c = np.asarray(comparisons)
    if c.ndim != 2 or c.shape[1] != 2 or c.shape[0] == 0:
        raise ValueError(f"comparisons must have shape (N, 2) of (winner, loser) rows, N >= 1; got {c.shape}")
    if not np.issubdtype(c.dtype, np.integer):
        raise ValueError(f"comparisons must hold integer item indices; got dtype {c.dtype}")
    c = c.astype(np.int64)
    if c.min() < 0 or c.max() >= n_items:
        raise ValueError(f"comparisons must index items 0..{n_items - 1}; got values {c.min()}..{c.max()}")
    self_rows = np.nonzero(c[:, 0] == c[:, 1])[0]
    if self_rows.size:
        raise ValueError(f"comparisons row(s) {self_rows[:10].tolist()} compare an item with itself")
    if ties is None:
        t = np.zeros(c.shape[0], dtype=bool)
    else:
        t = np.asarray(ties)
        if t.shape != (c.shape[0],) or t.dtype != bool:
            raise ValueError(f"ties must be a bool array of shape ({c.shape[0]},); got {t.dtype} {t.shape}")
    return c, t


def _weighted_pairs(c: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(winner, loser, weight) rows: a decisive comparison is one row of weight 1; a tie, two rows of 0.5."""
    w = np.concatenate([c[:, 0], c[t, 1]])
    l = np.concatenate([c[:, 1], c[t, 0]])
    weight = np.concatenate([np.where(t, 0.5, 1.0), np.full(int(t.sum()), 0.5)])
    return w, l, weight


def comparisons_from_pairs(rows, items=None, source_keys=("chosen_source", "rejected_source")):
    """Turn labelled pairs of replies from named sources into comparisons between the sources (an arena).

    Each row (a ``preference_data`` pair) says which source's reply won: ``(index of chosen_source, index of
    rejected_source)``; a row with ``label == 0.5`` is a tie. This is how systems (checkpoints, samplers,
    styles) are ranked by pairwise battles, as in Chatbot Arena.

    Args:
        rows: pairs (dicts) carrying the two ``source_keys`` (``preference_data.off_policy_pairs`` writes
            them) and optionally ``label`` (1.0 decisive, 0.5 a tie).
        items: the sources in the order of the returned indices; default: in order of first appearance.
        source_keys: the fields naming the winner's and the loser's source.

    Returns:
        ``(comparisons, ties, items)``: Shape (N, 2) int64 rows (winner, loser); Shape (N,) bool; list of n names.
    """
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError("rows must be a non-empty list of labelled pairs (dicts)")
    win_key, lose_key = source_keys
    names = list(items) if items is not None else []
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise ValueError(f"items must not repeat a name; got {names}")
    comparisons, ties = [], []
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or win_key not in row or lose_key not in row:
            raise ValueError(f"rows[{k}] must be a dict with {win_key!r} and {lose_key!r} (the sources of the "
                             "chosen and the rejected reply)")
        pair = []
        for key in source_keys:
            name = row[key]
            if name not in index:
                if items is not None:
                    raise ValueError(f"rows[{k}][{key!r}] = {name!r} is not one of items {names}")
                index[name] = len(names)
                names.append(name)
            pair.append(index[name])
        if pair[0] == pair[1]:
            raise ValueError(f"rows[{k}]: {win_key!r} and {lose_key!r} are the same source {row[win_key]!r}; "
                             "a comparison needs two different items")
        label = row.get("label", 1.0)
        if label not in (1.0, 0.5):
            raise ValueError(f"rows[{k}]['label'] must be 1.0 (decisive) or 0.5 (a tie); got {label!r}")
        comparisons.append(pair)
        ties.append(label == 0.5)
    return np.array(comparisons, dtype=np.int64), np.array(ties, dtype=bool), names


# --------------------------------------------------------------------------------------------------
# Bradley-Terry maximum likelihood
# --------------------------------------------------------------------------------------------------


def win_matrix(comparisons, n_items: int, ties=None) -> np.ndarray:
    """Count matrix W with W[i, j] = number of times i beat j (a tie adds 0.5 to both W[i, j] and W[j, i]).

    Args:
        comparisons: Shape (N, 2), int, rows (winner, loser).
        n_items: number of items n.
        ties: None or Shape (N,), bool.

    Returns:
        Shape (n, n), float64, zero diagonal.
    """
    c, t = _check_comparisons(comparisons, n_items, ties)
    w, l, weight = _weighted_pairs(c, t)
    wins = np.zeros((n_items, n_items))
    np.add.at(wins, (w, l), weight)
    return wins


def bradley_terry_nll(strengths, comparisons, ties=None, alpha: float = 0.0) -> float:
    """Penalised Bradley-Terry negative log-likelihood of comparisons under ``strengths`` θ.

    .. math::  \\mathrm{NLL}(\\theta) = \\sum_{(w, l)} c_{wl} \\log\\big(1 + e^{-(\\theta_w -
                 \\theta_l)}\\big) + \\alpha \\lVert \\theta \\rVert^2

    with c = 1 per decisive comparison and 1/2 each way per tie. The penalty α‖θ‖² is choix's (``alpha`` in
    ``choix.opt_pairwise``): the MAP estimate under a Gaussian prior N(0, 1/(2α)).

    Args:
        strengths: Shape (n,), θ.
        comparisons: Shape (N, 2), rows (winner, loser).
        ties: None or Shape (N,), bool.
        alpha: L2 penalty, >= 0.

    Returns:
        The NLL, a float (nats).
    """
    theta = np.asarray(strengths, dtype=np.float64)
    if theta.ndim != 1:
        raise ValueError(f"strengths must have shape (n,); got {theta.shape}")
    c, t = _check_comparisons(comparisons, theta.shape[0], ties)
    w, l, weight = _weighted_pairs(c, t)
    return float(np.sum(weight * np.logaddexp(0.0, -(theta[w] - theta[l]))) + alpha * np.sum(theta**2))


def _strongly_connected(wins: np.ndarray) -> bool:
    """True when every item can reach every other along "beat" edges (i → j when W[i, j] > 0)."""
    adj = wins > 0
    for graph in (adj, adj.T):
        reached = np.zeros(len(adj), dtype=bool)
        reached[0] = True
        while True:
            grown = reached | graph[reached].any(axis=0)
            if (grown == reached).all():
                break
            reached = grown
        if not reached.all():
            return False
    return True


def fit_bradley_terry(
    comparisons, n_items: int, ties=None, alpha: float = 0.0, max_iter: int = 100, tol: float = 1e-12
) -> np.ndarray:
    """Bradley-Terry strengths θ by (penalised) maximum likelihood: argmin of :func:`bradley_terry_nll`.

    .. math::  \\hat\\theta = \\arg\\min_\\theta \\sum_{(w, l)} c_{wl} \\log\\big(1 + e^{-(\\theta_w -
                 \\theta_l)}\\big) + \\alpha \\lVert\\theta\\rVert^2, \\qquad \\sum_i \\hat\\theta_i = 0

    (Bradley & Terry 1952; Zermelo 1929.) Solved by Newton's method with a backtracking line search on the
    convex NLL; the gradient and Hessian are

        g_i = 2αθ_i − Σ_{(i, l)} c σ(θ_l − θ_i) + Σ_{(w, i)} c σ(θ_i − θ_w)
        H   = 2αI + Σ_{(w, l)} c σ(d)σ(−d) (e_w − e_l)(e_w − e_l)ᵀ,   d = θ_w − θ_l.

    Gauge: the likelihood only sees differences. With α > 0 the optimum has Σθ = 0 by itself (the data part
    of g sums to zero, so 2αΣθ = 0). With α = 0 the Hessian is singular along (1, …, 1). In both cases we solve
    with H + 11ᵀ/n, which leaves the Newton step inside the sum-zero plane where the optimum lies, and centre θ.
    (With a small α > 0 the plain H is nearly singular along (1, …, 1): its curvature there is only 2α, and
    rounding noise in g, amplified by 1/(2α), would keep the iterates from ever meeting ``tol``.)

    Existence: with α = 0 the maximum is finite only if the "beat" graph is strongly connected (no group of
    items that never loses to the rest; Ford 1957). Otherwise the winners' strengths run off to +∞; we raise
    and suggest α > 0.

    Args:
        comparisons: Shape (N, 2), int, rows (winner, loser).
        n_items: number of items n.
        ties: None or Shape (N,), bool; a tie counts as half a win each way.
        alpha: L2 penalty α >= 0, the same ``alpha`` as ``choix.opt_pairwise``.
        max_iter: Newton iterations allowed.
        tol: stop when the largest change of any θ_i falls below ``tol``.

    Returns:
        Shape (n,), float64, Σθ = 0. P(i ≻ j) = σ(θ_i − θ_j).
    """
    c, t = _check_comparisons(comparisons, n_items, ties)
    check_number("alpha", alpha, minimum=0)
    if alpha == 0 and not _strongly_connected(win_matrix(c, n_items, t)):
        raise ValueError(
            "comparisons: the maximum-likelihood strengths are infinite, because some group of items never "
            "loses to the others (the win graph is not strongly connected); pass alpha > 0 to regularise"
        )
    w, l, weight = _weighted_pairs(c, t)

    def nll(theta: np.ndarray) -> float:
        return float(np.sum(weight * np.logaddexp(0.0, -(theta[w] - theta[l]))) + alpha * np.sum(theta**2))

    theta = np.zeros(n_items)
    for _ in range(max_iter):
        d = theta[w] - theta[l]  # (M,)
        lose = weight * _sigmoid(-d)  # (M,): c σ(−d), the gradient's weight
        grad = 2 * alpha * theta
        np.add.at(grad, w, -lose)
        np.add.at(grad, l, lose)
        curv = weight * _sigmoid(d) * _sigmoid(-d)  # (M,)
        hess = 2 * alpha * np.eye(n_items)
        np.add.at(hess, (w, w), curv)
        np.add.at(hess, (l, l), curv)
        np.add.at(hess, (w, l), -curv)
        np.add.at(hess, (l, w), -curv)
        hess += 1.0 / n_items  # fix the gauge: H + 11ᵀ/n (curvature 2α + 1 along (1, …, 1))
        step = np.linalg.solve(hess, grad)
        # Backtracking (Armijo) line search: Newton from θ = 0 can overshoot on lopsided data.
        f0, slope, size = nll(theta), float(grad @ step), 1.0
        while nll(theta - size * step) > f0 - 1e-4 * size * slope and size > 1e-10:
            size *= 0.5
        theta = theta - size * step
        theta -= theta.mean()
        if np.max(np.abs(size * step)) < tol:
            return theta
    raise RuntimeError(f"fit_bradley_terry did not converge in {max_iter} Newton iterations")


def strengths_to_elo(strengths, initial_rating: float = 1500.0) -> np.ndarray:
    """Bradley-Terry strengths on the Elo scale, R = initial_rating + θ · 400/ln 10 (as Chatbot Arena does).

    Args:
        strengths: Shape (n,), θ (e.g. from :func:`fit_bradley_terry`).
        initial_rating: the rating of an average item (θ = 0).

    Returns:
        Shape (n,), float64.
    """
    return initial_rating + ELO_SCALE * np.asarray(strengths, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Bradley-Terry with features: a linear reward model
# --------------------------------------------------------------------------------------------------


def _check_features(chosen_features, rejected_features, labels) -> tuple[np.ndarray, np.ndarray]:
    """Feature differences x = φ_c − φ_r, Shape (N, d), and labels y, Shape (N,); or ValueError naming the field."""
    c = np.asarray(chosen_features, dtype=np.float64)
    r = np.asarray(rejected_features, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        raise ValueError(f"chosen_features must have shape (N, d) with N, d >= 1; got {c.shape}")
    if r.shape != c.shape:
        raise ValueError(f"rejected_features shape {r.shape} does not match chosen_features shape {c.shape}")
    if not (np.isfinite(c).all() and np.isfinite(r).all()):
        raise ValueError("chosen_features / rejected_features contain NaN or inf")
    if labels is None:
        y = np.ones(c.shape[0])
    else:
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != (c.shape[0],) or np.isnan(y).any() or (y < 0).any() or (y > 1).any():
            raise ValueError(f"labels must have shape ({c.shape[0]},) with values in [0, 1] (1 = chosen preferred, "
                             f"0.5 = a tie); got shape {y.shape}")
    return c - r, y


def linear_bradley_terry_nll(weights, chosen_features, rejected_features, labels=None, alpha: float = 0.0) -> float:
    """Bradley-Terry negative log-likelihood of a linear reward r(y) = w·φ(y) on labelled pairs.

    .. math::  \\mathrm{NLL}(w) = \\sum_b \\Big[ y_b \\log\\big(1 + e^{-d_b}\\big)
                 + (1 - y_b) \\log\\big(1 + e^{d_b}\\big) \\Big] + \\alpha \\lVert w \\rVert^2,
               \\qquad d_b = w^\\top(\\varphi_{c,b} - \\varphi_{r,b})

    the reward-model loss of ``reward_trainer.rm_loss_sum`` (summed, ties y = 1/2) when the reward is linear
    in fixed features.

    Args:
        weights: Shape (d,), w.
        chosen_features: Shape (N, d), φ of each chosen reply.
        rejected_features: Shape (N, d), φ of each rejected reply.
        labels: None (all 1) or Shape (N,) in [0, 1].
        alpha: L2 penalty >= 0.

    Returns:
        The NLL, a float (nats).
    """
    x, y = _check_features(chosen_features, rejected_features, labels)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (x.shape[1],):
        raise ValueError(f"weights must have shape ({x.shape[1]},); got {w.shape}")
    d = x @ w
    return float(np.sum(y * np.logaddexp(0.0, -d) + (1 - y) * np.logaddexp(0.0, d)) + alpha * w @ w)


def fit_linear_bradley_terry(chosen_features, rejected_features, labels=None, alpha: float = 1e-3,
                             max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """The weights w of a linear reward r(y) = w·φ(y) by (penalised) maximum likelihood on labelled pairs.

    .. math::  \\hat w = \\arg\\min_w \\sum_b \\Big[ y_b \\log\\big(1 + e^{-d_b}\\big)
                 + (1 - y_b) \\log\\big(1 + e^{d_b}\\big) \\Big] + \\alpha \\lVert w \\rVert^2,
               \\qquad d_b = w^\\top x_b, \\quad x_b = \\varphi_{c,b} - \\varphi_{r,b}

    This is :func:`fit_bradley_terry` with a strength per *feature vector* instead of per item (with one-hot
    features φ(item i) = e_i it is exactly that fit), i.e. logistic regression without intercept on feature
    differences. It is a reward model whose backbone is frozen: φ is the backbone's last hidden state at the
    reply's last token (``reward_trainer.reply_features``) and w is the head. Unlike training the whole
    network, the objective is convex, so the fit is exact and takes milliseconds: what a lesson needs to train
    dozens of reward models.

    Solved by Newton's method with a backtracking line search; with x_b the rows of X,

        g = −Xᵀ(y − σ(Xw)) + 2αw,     H = Xᵀ diag(σ(d)σ(−d)) X + 2αI.

    With α = 0 the optimum may not exist (separable labels send ‖w‖ to ∞) or not be unique (features that
    never vary); the Newton step is then a least-squares solution, and a fit that does not settle, or settles
    only where σ saturates (some |d_b| > 50: separable labels), raises ``RuntimeError``: pass α > 0.

    Args:
        chosen_features: Shape (N, d), φ of each chosen reply.
        rejected_features: Shape (N, d), φ of each rejected reply.
        labels: None (every chosen preferred) or Shape (N,) in [0, 1] (0.5 = a tie).
        alpha: L2 penalty α >= 0 (the same convention as :func:`fit_bradley_terry` and choix).
        max_iter: Newton iterations allowed.
        tol: stop when the largest change of any w_k falls below ``tol``.

    Returns:
        Shape (d,), float64: w. Rewards are φ @ w; P(a ≻ b) = σ(r_a − r_b).
    """
    x, y = _check_features(chosen_features, rejected_features, labels)
    check_number("alpha", alpha, minimum=0)

    def nll(w: np.ndarray) -> float:
        d = x @ w
        return float(np.sum(y * np.logaddexp(0.0, -d) + (1 - y) * np.logaddexp(0.0, d)) + alpha * w @ w)

    w = np.zeros(x.shape[1])
    for _ in range(max_iter):
        d = x @ w  # (N,)
        grad = -x.T @ (y - _sigmoid(d)) + 2 * alpha * w  # (d,)
        hess = (x * (_sigmoid(d) * _sigmoid(-d))[:, None]).T @ x + 2 * alpha * np.eye(x.shape[1])  # (d, d)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        f0, slope, size = nll(w), float(grad @ step), 1.0
        while nll(w - size * step) > f0 - 1e-4 * size * slope and size > 1e-10:
            size *= 0.5
        w = w - size * step
        if np.max(np.abs(size * step)) < tol:
            if alpha == 0 and np.max(np.abs(x @ w)) > 50:  # σ saturated: the "optimum" is at infinity
                break
            return w
    raise RuntimeError(f"fit_linear_bradley_terry did not converge in {max_iter} Newton iterations "
                       "(separable labels with alpha = 0 have no finite optimum: pass alpha > 0)")


# --------------------------------------------------------------------------------------------------
# Online Elo
# --------------------------------------------------------------------------------------------------


def elo_ratings(
    comparisons,
    n_items: int,
    ties=None,
    k_factor: float = 32.0,
    initial_rating: float = 1500.0,
    scale: float = 400.0,
    return_history: bool = False,
) -> np.ndarray:
    """Online Elo ratings, processing the comparisons one at a time, in order (Elo 1978).

    For a comparison of a against b with score S_a (1 win, 0 loss, 1/2 tie):

    .. math::  E_a = \\frac{1}{1 + 10^{(R_b - R_a)/s}} = \\sigma\\big((R_a - R_b) \\ln 10 / s\\big), \\qquad
               R_a \\leftarrow R_a + K (S_a - E_a), \\quad R_b \\leftarrow R_b - K (S_a - E_a)

    with s = ``scale`` = 400 by convention: a 400-point gap means 10:1 odds, and R/(s/ln 10) is a
    Bradley-Terry strength. Each update is zero-sum, so Σ R stays n · ``initial_rating``. Unlike
    :func:`fit_bradley_terry` the result depends on the order of the comparisons and never settles (recent
    games weigh more): with K = 32 a rating keeps jittering by tens of points.

    Args:
        comparisons: Shape (N, 2), int, rows (winner, loser).
        n_items: number of items n.
        ties: None or Shape (N,), bool.
        k_factor: K, the largest change one comparison can make.
        initial_rating: every item's starting rating.
        scale: s, the logistic scale in rating points (400).
        return_history: if True, return every intermediate rating too.

    Returns:
        Shape (n,), float64, the final ratings; or Shape (N + 1, n), row k the ratings after k comparisons.
    """
    c, t = _check_comparisons(comparisons, n_items, ties)
    if not (k_factor > 0 and scale > 0):
        raise ValueError(f"k_factor and scale must be > 0; got k_factor={k_factor!r}, scale={scale!r}")
    ratings = np.full(n_items, float(initial_rating))
    history = [ratings.copy()] if return_history else None
    for (a, b), tie in zip(c.tolist(), t.tolist()):
        expected_a = 1.0 / (1.0 + 10.0 ** ((ratings[b] - ratings[a]) / scale))
        delta = k_factor * ((0.5 if tie else 1.0) - expected_a)
        ratings[a] += delta
        ratings[b] -= delta
        if history is not None:
            history.append(ratings.copy())
    return np.stack(history) if history is not None else ratings


# --------------------------------------------------------------------------------------------------
# Intransitivity
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Agreement between annotators
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# The Bayes ceiling of a Bradley-Terry labeller
# --------------------------------------------------------------------------------------------------


def bayes_ceiling(gold_a, gold_b, temperature: float = 1.0) -> float:
    """Best expected accuracy any model can reach on labels drawn from a Bradley-Terry annotator.

    If the annotator prefers a to b with probability p = σ((g_a − g_b)/τ), a label agrees with the better
    guess with probability max(p, 1 − p), and no predictor beats always guessing the likelier side:

    .. math::  \\mathrm{ceiling} = \\mathbb{E}\\big[\\max(p, 1 - p)\\big]
                 = \\frac{1}{N} \\sum_i \\sigma\\big(\\lvert g_{a,i} - g_{b,i} \\rvert / \\tau\\big)

    A reward model whose held-out accuracy approaches this number has nothing left to learn from these labels;
    one above it is reading noise (or the test set).

    Args:
        gold_a: Shape (N,), gold scores of the first responses.
        gold_b: Shape (N,), gold scores of the second responses.
        temperature: τ > 0, the annotator's noise (τ → 0: ceiling 1; τ → ∞: ceiling 1/2).

    Returns:
        A float in [0.5, 1].
    """
    a, b = np.asarray(gold_a, dtype=np.float64), np.asarray(gold_b, dtype=np.float64)
    if a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"gold_a must have shape (N,) with N >= 1; got {a.shape}")
    if b.shape != a.shape:
        raise ValueError(f"gold_b shape {b.shape} does not match gold_a shape {a.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("gold_a / gold_b contain NaN")
    if not (temperature > 0):
        raise ValueError(f"temperature must be > 0; got {temperature!r}")
    return float(np.mean(_sigmoid(np.abs(a - b) / temperature)))
