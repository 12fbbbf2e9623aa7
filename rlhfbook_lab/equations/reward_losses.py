"""Reward models (RLHF Book, ch. 5): the losses that turn preferences into a scalar reward, and their metrics.

Tensor math only: pure functions of reward tensors, no models, no I/O. The model (a causal LM with a scalar
head), its batch loss and its trainer are in ``reward_trainer``.

The one model behind every loss here is Bradley-Terry (1952): a reward model assigns a scalar r(x, y) to each
completion, and the probability that ``y_c`` is preferred to ``y_r`` is

    P(y_c ≻ y_r | x) = σ(r(x, y_c) − r(x, y_r))

so training maximises the log-likelihood of the observed preferences. Only *differences* of rewards are
identified: adding a constant to every reward of a prompt changes no loss below.

Conventions
-----------
* ``chosen_rewards`` / ``rejected_rewards`` have shape (B,): one scalar per completion (a reward head's (B, 1)
  output must be squeezed first; (B, 1) − (B,) silently broadcasts to (B, B), so we refuse it).
* TRL stacks chosen and rejected into one (2B,) batch for a single forward pass, chosen first;
  :func:`split_chosen_rejected` undoes that with ``.chunk(2)``.
* Rankings of K completions: ``scores`` (B, K) and an optional ``ranking`` (B, K) of indices into
  ``scores``, best first (``ranking[b, 0]`` is the index of prompt b's best completion). Without ``ranking``
  the columns of ``scores`` are already ordered best first.
* Losses upcast to float32 and use ``logsigmoid`` / ``logsumexp``, so they are finite at any margin in fp32
  and bf16. The naive ``-log(sigmoid(d))`` returns ``inf`` once σ(d) underflows, below d ≈ −87 on CPU in both
  fp32 and bf16 (they share an exponent range; bf16 differs in precision: near 100 it resolves only 0.5, so
  a bf16 reward head loses small gaps before any loss sees them).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from rlhfbook_lab.equations.logprobs import check_completion_mask, masked_mean

__all__ = [
    "ReliabilityBins",
    "bradley_terry_loss",
    "calibration_bins",
    "instructgpt_pairwise_loss",
    "normalization_stats",
    "orm_loss",
    "pairwise_accuracy",
    "plackett_luce_loss",
    "preference_calibration",
    "ranking_to_pairs",
    "split_chosen_rejected",
    "SURPRISE_FEATURES",
    "token_surprise_features",
]


# --------------------------------------------------------------------------------------------------
# Input checks (errors that teach: they name the field and say what was expected)
# --------------------------------------------------------------------------------------------------


def _check_finite(x: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        where = bad.nonzero()[0].tolist()
        raise ValueError(f"{name} must be finite (no NaN or inf); found {x[bad][0].item()} at index {where}")


def _check_pair(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> None:
    """chosen/rejected must both be (B,) with B ≥ 1 and be finite."""
    if chosen_rewards.dim() != 1:
        raise ValueError(
            f"chosen_rewards must have shape (B,); got {tuple(chosen_rewards.shape)} "
            "(squeeze a reward head's (B, 1) output with .squeeze(-1))"
        )
    if rejected_rewards.shape != chosen_rewards.shape:
        raise ValueError(
            f"rejected_rewards shape {tuple(rejected_rewards.shape)} does not match "
            f"chosen_rewards shape {tuple(chosen_rewards.shape)}; both must be (B,)"
        )
    if chosen_rewards.shape[0] == 0:
        raise ValueError("chosen_rewards is empty; need at least one preference pair")
    _check_finite(chosen_rewards, "chosen_rewards")
    _check_finite(rejected_rewards, "rejected_rewards")


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none'; got {reduction!r}")


def _check_ranking(ranking: torch.Tensor) -> None:
    """A ranking is (B, K), K >= 2, integer, each row a permutation of 0..K-1."""
    if ranking.dim() != 2:
        raise ValueError(f"ranking must have shape (B, K); got {tuple(ranking.shape)}")
    K = ranking.shape[1]
    if K < 2:
        raise ValueError(f"ranking must rank at least two responses per prompt (K >= 2); got K = {K}")
    if ranking.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"ranking must hold integer indices into scores; got dtype {ranking.dtype}")
    expected = torch.arange(K, device=ranking.device).expand_as(ranking)
    bad = (ranking.long().sort(dim=1).values != expected).any(dim=1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"ranking row(s) {bad} are not permutations of 0..{K - 1} (rank each response once)")


def _ordered_scores(scores: torch.Tensor, ranking: torch.Tensor | None) -> torch.Tensor:
    """Check a (B, K) ranking problem and return the scores reordered best first, float32, (B, K)."""
    if scores.dim() != 2:
        raise ValueError(f"scores must have shape (B, K); got {tuple(scores.shape)}")
    if scores.shape[1] < 2:
        raise ValueError(f"scores must hold at least two responses (K >= 2); got K={scores.shape[1]}")
    if scores.shape[0] == 0:
        raise ValueError("scores is empty; need at least one prompt")
    _check_finite(scores, "scores")
    if ranking is None:
        return scores.float()
    if ranking.shape != scores.shape:
        raise ValueError(f"ranking shape {tuple(ranking.shape)} does not match scores {tuple(scores.shape)}")
    _check_ranking(ranking)
    return scores.float().gather(1, ranking.long())


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------


def split_chosen_rejected(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a stacked batch into its chosen and rejected halves: ``rewards.chunk(2)``.

    Trainers run chosen and rejected completions through the model in one forward pass, stacked chosen first
    (rows 0..B−1 chosen, rows B..2B−1 rejected; TRL's convention).

    Args:
        rewards: Shape (2B, ...), e.g. (2B,) rewards or (2B, T) token ids.

    Returns:
        chosen, rejected: each Shape (B, ...).
    """
    if rewards.dim() == 0 or rewards.shape[0] % 2 != 0 or rewards.shape[0] == 0:
        n = "a scalar" if rewards.dim() == 0 else f"{rewards.shape[0]} rows"
        raise ValueError(f"rewards must stack chosen then rejected as (2B, ...), an even row count; got {n}")
    chosen, rejected = rewards.chunk(2, dim=0)
    return chosen, rejected


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood of the preferences, optionally with Llama 2's margin.

    .. math::  \\mathcal{L} = -\\log \\sigma\\big(r(x, y_c) - r(x, y_r) - m(r)\\big)

    With ``margin=None`` (m = 0) this is the standard reward-model loss (RLHF Book ch. 5; Ouyang et al. 2022;
    TRL's ``RewardTrainer``). Llama 2 (Touvron et al. 2023, eq. 2) adds m(r), a discrete function of the
    annotator's rating of *how much* better the chosen response is (their "large" margins: 3 / 2 / 1 / 0 for
    significantly / better / slightly / negligibly better): the loss then keeps pushing until the reward gap
    exceeds m. Computed as ``-logsigmoid(...)``, finite at any margin.

    Args:
        chosen_rewards: Shape (B,), r(x, y_c).
        rejected_rewards: Shape (B,), r(x, y_r).
        margin: None, a float, or Shape (B,): m(r) per pair.
        reduction: ``"mean"`` (scalar, the usual training loss), ``"sum"``, or ``"none"`` (per-pair, (B,)).

    Returns:
        Shape () or (B,), float32.
    """
    _check_pair(chosen_rewards, rejected_rewards)
    logits = chosen_rewards.float() - rejected_rewards.float()  # (B,)
    if margin is not None:
        margin = torch.as_tensor(margin, dtype=torch.float32, device=logits.device)
        if margin.dim() != 0 and margin.shape != logits.shape:
            raise ValueError(
                f"margin must be a scalar or have shape (B,) = {tuple(logits.shape)}; "
                f"got {tuple(margin.shape)}"
            )
        _check_finite(margin, "margin")
        logits = logits - margin
    losses = -F.logsigmoid(logits)  # (B,)
    return _reduce(losses, reduction)


def plackett_luce_loss(
    scores: torch.Tensor, ranking: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Plackett-Luce negative log-likelihood of a full ranking of K responses (K-wise; Zhu et al. 2023).

    The ranking is built by repeatedly picking the best of the responses not yet placed, each pick a softmax
    over the remaining scores. With π the ranking (π(1) best):

    .. math::  \\mathcal{L} = -\\sum_{i=1}^{K-1} \\Big[ s_{\\pi(i)}
                 - \\log \\sum_{j=i}^{K} \\exp s_{\\pi(j)} \\Big]

    (the i = K term is log 1 = 0). At K = 2 this is exactly −log σ(s_c − s_r), the Bradley-Terry loss.
    Computed with a reversed ``logcumsumexp``: finite at any score gap.

    Args:
        scores: Shape (B, K), a reward per response.
        ranking: None (columns of ``scores`` already ordered best first) or Shape (B, K), integer indices into
            ``scores``, best first; each row a permutation of 0..K−1.
        reduction: ``"mean"`` over prompts, ``"sum"``, or ``"none"`` (per-prompt ranking NLL, (B,)).

    Returns:
        Shape () or (B,), float32. Each prompt's loss is the NLL of its whole ranking (a sum of K−1 terms,
        not divided by K).
    """
    ordered = _ordered_scores(scores, ranking)  # (B, K), best first
    # log Σ_{j ≥ i} exp s_π(j) for every i: logcumsumexp from the worst end.
    tail_lse = ordered.flip(1).logcumsumexp(dim=1).flip(1)  # (B, K)
    losses = (tail_lse - ordered)[:, :-1].sum(dim=1)  # (B,); the last stage is exactly 0
    return _reduce(losses, reduction)


def ranking_to_pairs(ranking: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All K-choose-2 (better, worse) index pairs of each ranking, in the order (rank i, rank j) for i < j.

    Args:
        ranking: Shape (B, K), integer indices best first (each row a permutation of 0..K−1).

    Returns:
        chosen_idx, rejected_idx: each Shape (B, K(K−1)/2), indices into the K responses; for every pair the
        chosen response is ranked above the rejected one.
    """
    _check_ranking(ranking)
    K = ranking.shape[1]
    hi, lo = torch.triu_indices(K, K, offset=1, device=ranking.device)  # rank positions, hi < lo: (C,), (C,)
    ranking = ranking.long()
    return ranking[:, hi], ranking[:, lo]


def instructgpt_pairwise_loss(
    scores: torch.Tensor, ranking: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """InstructGPT's reward-model loss: all C(K,2) pairs of a prompt in one batch element, weighted 1/C(K,2).

    .. math::  \\mathcal{L} = -\\frac{1}{\\binom{K}{2}} \\sum_{(y_w, y_l)}
                 \\log \\sigma\\big(r(x, y_w) - r(x, y_l)\\big)

    (Ouyang et al. 2022, eq. 1.) Labelers rank K = 4..9 responses; the C(K,2) pairs it implies are highly
    correlated, and shuffling them into separate batches made the reward model overfit in one epoch. Keeping a
    prompt's pairs together costs K forward passes instead of 2·C(K,2), and the 1/C(K,2) weight makes every
    prompt count the same whatever its K. Unlike :func:`plackett_luce_loss` this treats the pairs as
    independent (a composite likelihood), so it is not the likelihood of the ranking.

    Args:
        scores: Shape (B, K), a reward per response.
        ranking: None (columns already best first) or Shape (B, K), indices best first.
        reduction: ``"mean"`` (scalar: mean over prompts of each prompt's weighted pair sum, i.e. the mean of
            −log σ over all pairs), ``"sum"`` (sum over prompts), or ``"none"`` (the weighted pair losses,
            Shape (B, C(K,2)); a row sums to that prompt's loss).

    Returns:
        Shape (), or (B, C(K,2)) for ``reduction="none"``; float32.
    """
    ordered = _ordered_scores(scores, ranking)  # (B, K), best first
    K = ordered.shape[1]
    hi, lo = torch.triu_indices(K, K, offset=1, device=ordered.device)  # (C,), (C,)
    n_pairs = hi.numel()  # C(K, 2)
    pair_losses = -F.logsigmoid(ordered[:, hi] - ordered[:, lo]) / n_pairs  # (B, C)
    if reduction == "none":
        return pair_losses
    return _reduce(pair_losses.sum(dim=1), reduction)


def orm_loss(logits: torch.Tensor, labels: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Outcome reward model loss: per-token binary cross-entropy on whether the answer is correct.

    An ORM (Cobbe et al. 2021; RLHF Book ch. 5) predicts at *every* response token the probability that the
    completion's final answer is correct, p_t = σ(z_t), trained against the outcome label y ∈ {0, 1}:

    .. math::  \\mathcal{L} = \\frac{1}{\\sum_{b,t} m_{bt}} \\sum_{b,t} m_{bt}
                 \\Big[ -y \\log \\sigma(z_{bt}) - (1 - y) \\log\\big(1 - \\sigma(z_{bt})\\big) \\Big]

    Reduction: the mean over all response tokens of the batch (``logprobs.masked_mean``), so longer
    completions weigh more, as in SFT.

    Args:
        logits: Shape (B, T), the ORM head's correctness logit z at every position (aligned with input_ids).
        labels: Shape (B,) (one outcome per completion, broadcast to its tokens) or (B, T); values in [0, 1].
        completion_mask: Shape (B, T), 1 on response tokens.

    Returns:
        Shape (), float32.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, T); got {tuple(logits.shape)}")
    check_completion_mask(completion_mask, logits)
    if labels.shape == logits.shape[:1]:
        labels = labels.unsqueeze(1).expand_as(logits)  # (B,) → (B, T)
    elif labels.shape != logits.shape:
        raise ValueError(
            f"labels must have shape (B,) or (B, T) = {tuple(logits.shape)}; got {tuple(labels.shape)}"
        )
    labels = labels.float()
    _check_finite(labels, "labels")
    if bool(((labels < 0) | (labels > 1)).any()):
        raise ValueError("labels must lie in [0, 1] (1 = correct answer, 0 = wrong)")
    per_token_loss = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")  # (B, T)
    return masked_mean(per_token_loss, completion_mask)


SURPRISE_FEATURES = ("logp", "gap_to_top", "entropy", "below_top", "log_not_p")
"""The columns of :func:`token_surprise_features`, in order."""


def token_surprise_features(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """How surprised a language model is by each next token: five numbers per position.

    With p_t = softmax(logits[:, t]) the model's distribution for the token at t + 1 and y = input_ids[:, t + 1]:

    .. math::  f_t = \big(\\log p_t(y),\\; \\log p_t(y) - \\max_v \\log p_t(v),\\; H(p_t),\\;
                 1 - p_t(y) / \\max_v p_t(v),\\; \\log(1 - p_t(y))\big)

    A reply whose answer the model "knows" to be different shows up as a token far from the model's top choice
    (``gap_to_top`` < 0, ``below_top`` near 1) where the rest of the reply is near it; every feature is a
    continuous function of the logits (no argmax indicator), so CPUs whose kernels differ in the last bit give
    features that differ in the last bits only. ``log(1 − p)`` is computed as ``log1p(−p)`` with p clamped
    below 1 − 1e-6, finite for a certain token.

    Args:
        logits: Shape (B, T, V), the model's logits at every position.
        input_ids: Shape (B, T), the tokens.

    Returns:
        Shape (B, T − 1, 5), float32: row t describes token t + 1 (the columns are :data:`SURPRISE_FEATURES`).
    """
    if logits.dim() != 3 or input_ids.dim() != 2 or logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits must have shape (B, T, V) and input_ids (B, T) with the same B, T; got "
                         f"{tuple(logits.shape)} and {tuple(input_ids.shape)}")
    if input_ids.shape[1] < 2:
        raise ValueError(f"input_ids must have at least 2 positions (a token and its successor); got "
                         f"{input_ids.shape[1]}")
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, T-1, V)
    _check_finite(logp, "logits")
    token = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1): log p_t(y)
    gap = token - logp.max(dim=-1).values  # (B, T-1), <= 0
    entropy = -(logp.exp() * logp).sum(dim=-1)  # (B, T-1)
    below_top = 1.0 - gap.exp()  # 1 - p(y) / max p
    log_not_p = torch.log1p(-token.exp().clamp(max=1.0 - 1e-6))
    return torch.stack([token, gap, entropy, below_top, log_not_p], dim=-1)  # (B, T-1, 5)


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def pairwise_accuracy(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, ties: str = "half"
) -> torch.Tensor:
    """Fraction of pairs the reward model orders like the labels: mean of 1[r_c > r_r].

    Ties (r_c == r_r exactly) are ambiguous. ``ties="half"`` (default) scores them 0.5, so a constant reward
    model gets exactly chance, 0.5. ``ties="exclude"`` drops them (TRL's choice), which lets a model that ties
    most pairs look good on the few it decides; it raises if every pair is tied.

    Args:
        chosen_rewards: Shape (B,).
        rejected_rewards: Shape (B,).
        ties: ``"half"`` or ``"exclude"``.

    Returns:
        Shape (), float32, in [0, 1].
    """
    _check_pair(chosen_rewards, rejected_rewards)
    diff = chosen_rewards.float() - rejected_rewards.float()  # (B,)
    wins, tied = (diff > 0).float(), diff == 0
    if ties == "half":
        return (wins + 0.5 * tied.float()).mean()
    if ties == "exclude":
        if bool(tied.all()):
            raise ValueError(
                "chosen_rewards == rejected_rewards in every pair: with ties='exclude' accuracy is undefined"
            )
        return wins[~tied].mean()
    raise ValueError(f"ties must be 'half' or 'exclude'; got {ties!r}")


class ReliabilityBins(NamedTuple):
    """A reliability diagram: per probability bin, the mean predicted probability vs the observed frequency.

    Empty bins hold NaN in ``mean_predicted`` and ``observed_frequency`` (matplotlib skips them).
    """

    bin_edges: torch.Tensor  # (n_bins + 1,), 0 … 1
    mean_predicted: torch.Tensor  # (n_bins,), mean p in the bin
    observed_frequency: torch.Tensor  # (n_bins,), mean outcome in the bin
    counts: torch.Tensor  # (n_bins,), int64
    ece: torch.Tensor  # (), expected calibration error


def calibration_bins(probs: torch.Tensor, outcomes: torch.Tensor, n_bins: int = 10) -> ReliabilityBins:
    """Reliability bins and expected calibration error (ECE) of probabilistic predictions.

    Bins are equal-width on [0, 1]: bin k holds p in [k/n, (k+1)/n) (the last bin includes 1). With n_k
    predictions in bin k, mean prediction conf_k and observed frequency freq_k (Guo et al. 2017):

    .. math::  \\mathrm{ECE} = \\sum_k \\frac{n_k}{N} \\, \\lvert \\mathrm{freq}_k - \\mathrm{conf}_k \\rvert

    Args:
        probs: Shape (N,), predicted probabilities in [0, 1].
        outcomes: Shape (N,), observed outcomes in {0, 1} (or in [0, 1]).
        n_bins: number of equal-width bins.

    Returns:
        :class:`ReliabilityBins`, float64 tensors.
    """
    if probs.dim() != 1 or probs.shape[0] == 0:
        raise ValueError(f"probs must have shape (N,) with N >= 1; got {tuple(probs.shape)}")
    if outcomes.shape != probs.shape:
        raise ValueError(f"outcomes shape {tuple(outcomes.shape)} does not match probs {tuple(probs.shape)}")
    _check_finite(probs, "probs")
    _check_finite(outcomes, "outcomes")
    if bool(((probs < 0) | (probs > 1)).any()):
        raise ValueError("probs must lie in [0, 1]")
    if bool(((outcomes < 0) | (outcomes > 1)).any()):
        raise ValueError("outcomes must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    p, y = probs.double(), outcomes.double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)
    idx = torch.bucketize(p, edges[1:-1], right=True)  # (N,): bin k ⇔ edges[k] <= p < edges[k+1]
    counts = torch.bincount(idx, minlength=n_bins)  # (n_bins,)
    sum_p = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, p)
    sum_y = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, idx, y)
    n = counts.double()
    mean_predicted = torch.where(counts > 0, sum_p / n.clamp(min=1), torch.nan)
    observed = torch.where(counts > 0, sum_y / n.clamp(min=1), torch.nan)
    ece = ((sum_y - sum_p).abs()).sum() / p.numel()  # Σ_k n_k/N |freq_k − conf_k|; empty bins add 0
    return ReliabilityBins(edges, mean_predicted, observed, counts, ece)


def preference_calibration(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, n_bins: int = 10
) -> ReliabilityBins:
    """Calibration of a reward model's preference probabilities P(y_c ≻ y_r) = σ(r_c − r_r).

    In a preference dataset the chosen response wins by construction, so scored only as (chosen, rejected)
    every bin's observed frequency would be 1. We score each pair in both orders: (p = σ(r_c − r_r),
    outcome 1) and (1 − p, outcome 0). The diagram is then mirror-symmetric about 0.5, and the observed
    frequency in the bin near p > 0.5 is the fraction of pairs, among those the model separates by a gap of
    about logit(p), in which the model's favourite is the one people chose. A calibrated reward model lies on
    the diagonal; an overconfident one (e.g. trained too long) lies below it for p > 0.5.

    Args:
        chosen_rewards: Shape (B,).
        rejected_rewards: Shape (B,).
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        :class:`ReliabilityBins` over the 2B mirrored predictions.
    """
    _check_pair(chosen_rewards, rejected_rewards)
    p_chosen = torch.sigmoid(chosen_rewards.double() - rejected_rewards.double())  # (B,)
    probs = torch.cat([p_chosen, 1.0 - p_chosen])  # (2B,)
    outcomes = torch.cat([torch.ones_like(p_chosen), torch.zeros_like(p_chosen)])  # (2B,)
    return calibration_bins(probs, outcomes, n_bins)


# --------------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------------


def normalization_stats(scores: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of raw scores, the shift and scale that map them to mean 0, std 1.

    The std is the population one (divide by N), so the normalised calibration scores have
    ``scores.std(unbiased=False) == 1`` exactly.

    Args:
        scores: Shape (N,), N ≥ 2, raw rewards of samples from the reference policy.
    """
    if scores.dim() != 1 or scores.shape[0] < 2:
        raise ValueError(f"scores must have shape (N,) with N >= 2; got {tuple(scores.shape)}")
    _check_finite(scores, "scores")
    s = scores.double()
    mean, std = float(s.mean()), float(s.std(unbiased=False))
    if std <= 1e-12:
        raise ValueError("every calibration score is the same: the std is 0, nothing to normalise by")
    return mean, std
