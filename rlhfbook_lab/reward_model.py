"""Reward models (RLHF Book, ch. 5): the losses that turn preferences into a scalar reward, their metrics, the
model (a causal LM with a scalar head) and its trainer.

Layers, top of the file to the bottom: the losses and metrics are pure functions of reward tensors (no models,
no I/O); :class:`RewardModel` reads a scalar off a language model; :func:`rm_loss_sum` (a batch) and
:func:`train_reward_model` (the shared loop) train it; :func:`evaluate_reward_model` prints its accuracy next
to the Bayes ceiling of the labels.

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

import copy as _copy
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from rlhfbook_lab.data import collate_sft, tokenize_conversation
from rlhfbook_lab.generation import generate
from rlhfbook_lab.logprobs import check_completion_mask, masked_mean
from rlhfbook_lab.models import load_model, position_ids_from_mask, resolve, save_model
from rlhfbook_lab.preference_data import collate_pairs, pairs_bayes_ceiling, tokenize_pairs
from rlhfbook_lab.train import TrainConfig, train

__all__ = [
    "HEAD_FILE",
    "RMConfig",
    "RMEval",
    "ReliabilityBins",
    "RewardModel",
    "bradley_terry_loss",
    "calibration_bins",
    "evaluate_reward_model",
    "instructgpt_pairwise_loss",
    "load_reward_model",
    "normalization_stats",
    "normalize_on_policy",
    "normalize_on_replies",
    "orm_loss",
    "pairwise_accuracy",
    "plackett_luce_loss",
    "preference_calibration",
    "ranking_to_pairs",
    "rm_loss_sum",
    "save_reward_model",
    "score_replies",
    "split_chosen_rejected",
    "train_reward_model",
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
# The reward model: a causal LM backbone with a scalar head read at the last real token
# --------------------------------------------------------------------------------------------------

HEAD_FILE = "reward_head.safetensors"
"""The head's weights and normalisation, saved beside the backbone's ``model.safetensors``."""


class RewardModel(nn.Module):
    """r(x, y): a causal LM's final hidden state at the last real token of ``x + y``, times a linear head.

    .. math::  r(x, y) = \\big(w^\\top h_L(x, y)_{t^*} - \\mu\\big) / s,
               \\qquad t^* = \\text{the last position with attention\\_mask} = 1

    ``h_L`` is the backbone's last hidden state (after its final norm: ``backbone.base_model(...)``'s
    ``last_hidden_state``), so the LM head is not used. For a chat pair the last real token is the reply's
    ``<|end|>``, which has attended to the whole prompt and reply. Reading it by the attention mask works for
    right padding (``preference_data.collate_pairs``), left padding, and ``generation.generate``'s layout
    (left-padded prompt, right-padded completion: ``rm(gen.input_ids, gen.attention_mask)`` scores samples
    for RL directly, an unfinished one at its last token); positions come from the mask
    (``models.position_ids_from_mask``), so a row's reward does not depend on its padding.

    The head is ``nn.Linear(hidden, 1, bias=False)``: Bradley-Terry sees only reward *differences*, so a bias
    would get exactly zero gradient. The offset and scale live in two buffers instead, ``reward_mean`` μ and
    ``reward_std`` s (0 and 1 until :meth:`set_normalization`; see :func:`normalize_on_policy`), saved with
    the head. The head runs in float32 even under bf16 autocast (bf16 cannot resolve small reward gaps).
    """

    def __init__(self, backbone: nn.Module, seed: int = 0):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.head = nn.Linear(hidden, 1, bias=False)
        std = getattr(backbone.config, "initializer_range", 0.02)
        with torch.no_grad():
            self.head.weight.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))
        self.to(next(backbone.parameters()).device)

    @classmethod
    def from_causal_lm(cls, model: nn.Module, copy: bool = True, seed: int = 0) -> "RewardModel":
        """A reward model on top of ``model`` (any ``transformers`` causal LM, e.g. the SFT model), with a fresh
        head drawn from N(0, initializer_range²) by ``seed``.

        ``copy=True`` (default) trains a deep copy, so the policy you started from is left untouched;
        ``copy=False`` shares the weights.
        """
        return cls(_copy.deepcopy(model) if copy else model, seed=seed)

    def raw_rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """w^T h at the last real token of each row, before normalisation. Shapes: (B, T), (B, T) → (B,)."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask "
                             f"{tuple(attention_mask.shape)} must both have shape (B, T)")
        real = attention_mask.bool()
        empty = (~real.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"attention_mask has no real token in row(s) {empty}: nothing to score")
        out = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                       position_ids=position_ids_from_mask(attention_mask), use_cache=False)
        hidden = out.last_hidden_state  # (B, T, H)
        T = input_ids.shape[1]
        positions = torch.arange(T, device=input_ids.device).expand_as(input_ids)  # (B, T)
        last = torch.where(real, positions, -1).max(dim=1).values  # (B,): last real token, any padding side
        h_last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
        with torch.autocast(h_last.device.type, enabled=False):
            return self.head(h_last.float()).squeeze(-1)  # (B,)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised rewards (raw − reward_mean) / reward_std. Shapes: (B, T), (B, T) → (B,), float32."""
        return (self.raw_rewards(input_ids, attention_mask) - self.reward_mean) / self.reward_std

    def set_normalization(self, mean: float, std: float) -> None:
        """Make :meth:`forward` return (raw − mean) / std (``mean=0, std=1`` undoes it)."""
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"normalisation needs a finite mean and a std > 0; got mean={mean}, std={std}")
        self.reward_mean.fill_(float(mean))
        self.reward_std.fill_(float(std))

    @property
    def is_normalized(self) -> bool:
        """True when :meth:`set_normalization` set anything but (0, 1)."""
        return float(self.reward_mean) != 0.0 or float(self.reward_std) != 1.0

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True) -> None:
        """Write the backbone with its own ``save_pretrained`` and the head + normalisation to
        :data:`HEAD_FILE` (what ``models.save_model`` calls; use :func:`save_reward_model`)."""
        self.backbone.save_pretrained(str(path), safe_serialization=safe_serialization)
        tensors = {"head.weight": self.head.weight, "reward_mean": self.reward_mean, "reward_std": self.reward_std}
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(Path(path) / HEAD_FILE),
                  metadata={"format": "pt", "hidden_size": str(self.head.in_features)})


def save_reward_model(rm: RewardModel, tokenizer, out: str | Path, overwrite: bool = False,
                      extra_files: dict[str, str] | None = None) -> Path:
    """Save backbone, head and tokenizer atomically (``models.save_model``). The folder also loads as a plain
    causal LM (``models.load_model``): the head is an extra file."""
    return save_model(rm, tokenizer, out, overwrite=overwrite, extra_files=extra_files)


def load_reward_model(name_or_path: str | Path, device: torch.device | str | None = None):
    """Load ``(RewardModel, tokenizer)`` saved by :func:`save_reward_model` (a folder or a shipped name), in eval
    mode on ``device`` (default ``models.get_device()``)."""
    backbone, tokenizer = load_model(name_or_path, device)
    head_path = Path(resolve(name_or_path)) / HEAD_FILE
    if not head_path.exists():
        raise FileNotFoundError(f"{head_path} not found: {name_or_path} is a causal LM, not a reward model "
                                "(start one with RewardModel.from_causal_lm)")
    rm = RewardModel(backbone)
    state = load_file(str(head_path), device=str(next(backbone.parameters()).device))
    with torch.no_grad():
        if state["head.weight"].shape != rm.head.weight.shape:
            raise ValueError(f"{head_path}: head weight {tuple(state['head.weight'].shape)} does not fit a "
                             f"backbone of hidden size {rm.head.in_features}")
        rm.head.weight.copy_(state["head.weight"])
        rm.reward_mean.copy_(state["reward_mean"])
        rm.reward_std.copy_(state["reward_std"])
    return rm.eval(), tokenizer


# --- scoring and normalisation ------------------------------------------------------------------------------


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


@torch.no_grad()
def score_replies(rm: RewardModel, tokenizer, prompts: list[str], replies: list[str], batch_size: int = 64,
                  raw: bool = False) -> torch.Tensor:
    """Rewards of ``replies`` to ``prompts`` (user messages), each rendered as a chat conversation
    (``data.tokenize_conversation``), right-padded and scored in batches. Returns Shape (N,), float32, on CPU.
    ``raw=True`` skips the normalisation."""
    if len(prompts) != len(replies):
        raise ValueError(f"got {len(prompts)} prompts and {len(replies)} replies; expected one reply per prompt")
    if not prompts:
        raise ValueError("prompts is empty")
    device = next(rm.parameters()).device
    was_training = rm.training
    rm.eval()
    rows = [tokenize_conversation(tokenizer, [{"role": "user", "content": p}, {"role": "assistant", "content": r}])
            for p, r in zip(prompts, replies)]
    out = []
    for i in range(0, len(rows), batch_size):
        batch = collate_sft(rows[i:i + batch_size], tokenizer.pad_token_id)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        out.append((rm.raw_rewards(ids, mask) if raw else rm(ids, mask)).float().cpu())
    rm.train(was_training)
    return torch.cat(out)


def normalize_on_replies(rm: RewardModel, tokenizer, prompts: list[str], replies: list[str],
                         batch_size: int = 64) -> tuple[float, float]:
    """Set ``rm``'s normalisation so that these replies score mean 0, std 1; return (mean, std) of the raw
    scores (:func:`normalization_stats`)."""
    mean, std = normalization_stats(score_replies(rm, tokenizer, prompts, replies, batch_size, raw=True))
    rm.set_normalization(mean, std)
    return mean, std


@torch.no_grad()
def normalize_on_policy(rm: RewardModel, tokenizer, policy, prompts: list[str], num_samples: int = 4,
                        seed: int = 0, batch_size: int = 64, **generate_kwargs) -> tuple[float, float]:
    """Normalise ``rm`` to mean 0, std 1 on samples from a reference policy (e.g. the SFT model RL starts from).

    Samples ``num_samples`` replies per prompt with ``generation.generate`` (seeded; ``generate_kwargs`` such as
    ``temperature`` and ``max_new_tokens`` are passed on) and scores them in the sampler's own token layout,
    exactly as RL will. Rewards then read in units of "standard deviations of the reference policy's replies",
    so a KL coefficient or a reward threshold means the same thing whatever the head's scale. Returns the raw
    (mean, std).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    if not prompts:
        raise ValueError("prompts is empty")
    torch.manual_seed(seed)
    per_call = max(1, batch_size // num_samples)
    device = next(rm.parameters()).device
    was_training = rm.training
    rm.eval()
    raw = []
    for i in range(0, len(prompts), per_call):
        gen = generate(policy, tokenizer, prompts[i:i + per_call], num_return_sequences=num_samples,
                       **generate_kwargs)
        raw.append(rm.raw_rewards(gen.input_ids.to(device), gen.attention_mask.to(device)).float().cpu())
    rm.train(was_training)
    mean, std = normalization_stats(torch.cat(raw))
    rm.set_normalization(mean, std)
    return mean, std


# --------------------------------------------------------------------------------------------------
# Trainer: tensor loss → batch (rm_loss_sum) → loop (train_reward_model)
# --------------------------------------------------------------------------------------------------


@dataclass
class RMConfig:
    """Reward-model training settings (TRL's ``RewardConfig`` in miniature)."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=2e-4, warmup_steps=20,
                                                                   bf16=False))
    """The shared loop's settings (steps, lr, schedule, grad_accum, seed). Reward models overfit fast
    (InstructGPT trained one epoch): keep ``steps * batch_size * grad_accum`` near the number of pairs."""
    batch_size: int = 32
    """Pairs per micro-batch (each is two rows of the stacked (2B, T) batch)."""
    max_length: int = 160
    """Longest conversation (prompt + reply) in tokens; a pair with a longer side is dropped and counted, never
    truncated."""
    margin: float | None = None
    """A constant margin m in −log σ(r_c − r_r − m) (Llama 2's margin loss, here the same for every decisive
    pair; never applied to ties). ``None``: the plain Bradley-Terry loss."""
    eval_batch_size: int = 128
    """Pairs per forward pass when evaluating."""


def rm_loss_sum(model, batch: dict, margin: float | None = None) -> tuple[torch.Tensor, dict]:
    """Bradley-Terry loss of a stacked pair batch, **summed** over pairs, and metrics summed the same way.

    One forward pass over the (2B, T) batch (``preference_data.collate_pairs``: chosen rows first), split
    with ``.chunk(2)`` (:func:`split_chosen_rejected`). With label y (1 = chosen preferred, 0.5 = a tie,
    ``batch["labels"]``; all 1 when absent):

    .. math::  \\mathcal{L} = \\sum_b \\Big[ -y_b \\log\\sigma(r_c - r_r - m_b)
                 - (1 - y_b) \\log\\sigma(r_r - r_c) \\Big]

    with m_b = ``margin`` on decisive pairs and 0 on ties (so a tie pulls the two rewards together).

    Args:
        model: ``model(input_ids, attention_mask) -> (2B,)`` rewards (a :class:`RewardModel`).
        batch: ``input_ids``, ``attention_mask`` (2B, T); ``num_items`` = B; optional ``labels`` (B,).
        margin: see :class:`RMConfig`.

    Returns:
        (loss summed over the B pairs, metrics): ``rewards/chosen``, ``rewards/rejected``,
        ``rewards/margins`` (r_c − r_r) and ``rewards/accuracies`` (1 if r_c > r_r, ½ if equal; ½ for a tie,
        which has no order), each summed over pairs (the shared loop turns sums into means).
    """
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    n_pairs = int(batch["num_items"])
    if input_ids.shape[0] != 2 * n_pairs:
        raise ValueError(f"batch has {input_ids.shape[0]} rows but num_items = {n_pairs} pairs; a pair batch "
                         "stacks 2B rows, chosen first (preference_data.collate_pairs)")
    rewards = model(input_ids, attention_mask)  # (2B,)
    chosen_rewards, rejected_rewards = split_chosen_rejected(rewards)  # (B,), (B,)
    labels = batch.get("labels")
    if labels is None:
        labels = torch.ones_like(chosen_rewards)
    labels = labels.to(chosen_rewards.device, torch.float32)
    if labels.shape != chosen_rewards.shape:
        raise ValueError(f"labels must have shape (B,) = ({n_pairs},); got {tuple(labels.shape)}")
    decisive = labels == 1.0
    m = None if margin is None else margin * decisive.float()  # (B,)
    loss_sum = (labels * bradley_terry_loss(chosen_rewards, rejected_rewards, m, reduction="none")
                + (1 - labels) * bradley_terry_loss(rejected_rewards, chosen_rewards, reduction="none")).sum()
    with torch.no_grad():
        c, r = chosen_rewards.detach().float(), rejected_rewards.detach().float()
        n_dec = int(decisive.sum())
        acc = 0.5 * (n_pairs - n_dec)
        if n_dec:
            acc += float(pairwise_accuracy(c[decisive], r[decisive])) * n_dec
        metrics = {"rewards/chosen": float(c.sum()), "rewards/rejected": float(r.sum()),
                   "rewards/margins": float((c - r).sum()), "rewards/accuracies": acc}
    return loss_sum, metrics


@dataclass
class RMEval:
    """What :func:`evaluate_reward_model` returns. ``str()`` prints accuracy next to the Bayes ceiling."""

    accuracy: float
    """Pairwise accuracy on the decisive pairs (:func:`pairwise_accuracy`, ties of the rewards count ½)."""
    bayes_ceiling: float
    """The best accuracy any model can reach on these labels (``preference_data.pairs_bayes_ceiling``)."""
    loss: float
    """Mean Bradley-Terry loss on the decisive pairs (nats)."""
    calibration: ReliabilityBins
    """:func:`preference_calibration` of σ(r_c − r_r) on the decisive pairs."""
    num_pairs: int
    """Decisive pairs scored."""
    counts: dict[str, int]
    """Pairs left out: ``too_long``, ``identical_tokens`` (``preference_data.tokenize_pairs``), ``ties``."""
    chosen_rewards: torch.Tensor
    """Shape (num_pairs,), float32, CPU."""
    rejected_rewards: torch.Tensor
    """Shape (num_pairs,), float32, CPU."""

    def __str__(self) -> str:
        return (f"accuracy {self.accuracy:.3f} · Bayes ceiling {self.bayes_ceiling:.3f} · "
                f"ECE {float(self.calibration.ece):.3f} · loss {self.loss:.3f} (n = {self.num_pairs} pairs)")


@torch.no_grad()
def _score_pairs(rm, tok_rows: list[dict], pad_token_id: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    device = next(rm.parameters()).device
    chosen, rejected = [], []
    for i in range(0, len(tok_rows), batch_size):
        batch = collate_pairs(tok_rows[i:i + batch_size], pad_token_id)
        rewards = rm(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu()
        c, r = split_chosen_rejected(rewards)
        chosen.append(c)
        rejected.append(r)
    return torch.cat(chosen), torch.cat(rejected)


def _evaluate_tokenized(rm, tokenized, rows: list[dict], pad_token_id: int, batch_size: int,
                        n_bins: int = 10) -> RMEval:
    decisive = [t for t in tokenized.rows if t["label"] == 1.0]
    if not decisive:
        raise ValueError("no decisive pair to evaluate on (every pair was dropped or is a tie)")
    was_training = rm.training
    rm.eval()
    c, r = _score_pairs(rm, decisive, pad_token_id, batch_size)
    rm.train(was_training)
    counts = {k: v for k, v in tokenized.counts.items() if k != "kept"}
    counts["ties"] = len(tokenized.rows) - len(decisive)
    return RMEval(
        accuracy=float(pairwise_accuracy(c, r)),
        bayes_ceiling=pairs_bayes_ceiling([rows[t["index"]] for t in decisive]),
        loss=float(bradley_terry_loss(c, r)),
        calibration=preference_calibration(c, r, n_bins),
        num_pairs=len(decisive), counts=counts, chosen_rewards=c, rejected_rewards=r,
    )


def evaluate_reward_model(rm, tokenizer, pairs: list[dict], max_length: int | None = None, batch_size: int = 128,
                          n_bins: int = 10) -> RMEval:
    """Accuracy, loss and calibration of ``rm`` on ``pairs``, next to the pairs' Bayes ceiling.

    The ceiling comes from the labeller's own probabilities (``p_chosen``, and ``label_noise`` when labels were
    flipped; rows without ``p_chosen`` use the gold annotator): accuracy close to it means nothing is left to
    learn from these labels; accuracy above it on held-out pairs means a leak. Ties are left out of every
    number (they have no order) and counted.
    """
    tokenized = tokenize_pairs(pairs, tokenizer, max_length)
    return _evaluate_tokenized(rm, tokenized, pairs, tokenizer.pad_token_id, batch_size, n_bins)


def train_reward_model(rm: RewardModel, tokenizer, pairs: list[dict], cfg: RMConfig,
                       eval_pairs: list[dict] | None = None, eval_every: int = 0,
                       progress: bool = True) -> dict[str, list]:
    """Train ``rm`` in place on preference ``pairs`` with the shared loop; return its metrics history.

    Pairs are tokenized once (``preference_data.tokenize_pairs``: over-long and token-identical pairs dropped
    and counted) and visited in one random order fixed by ``cfg.train.seed`` (cycled), ``cfg.batch_size``
    pairs per micro-batch, so the same model, pairs and config give the same curve.

    The history has the loop's keys, the :func:`rm_loss_sum` metrics (per-pair means), ``data/num_pairs``,
    ``data/num_too_long``, ``data/num_identical_tokens``, and with ``eval_pairs`` ``eval/accuracy``,
    ``eval/loss``, ``eval/ece`` and ``eval/bayes_ceiling`` every ``eval_every`` steps and at the end.
    """
    if rm.is_normalized:
        raise ValueError("rm has a reward normalisation set: it would rescale the Bradley-Terry logits. Train "
                         "first and normalise after, or call rm.set_normalization(0.0, 1.0)")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {cfg.batch_size}")
    tokenized = tokenize_pairs(pairs, tokenizer, cfg.max_length)
    rows = tokenized.rows
    if not rows:
        raise ValueError(f"no pair to train on: {tokenized.counts}")
    gen = torch.Generator().manual_seed(cfg.train.seed)
    order = torch.randperm(len(rows), generator=gen).tolist()
    device = next(rm.parameters()).device

    def get_batch(step: int, micro: int) -> dict:
        k = step * cfg.train.grad_accum + micro
        batch = collate_pairs([rows[order[(k * cfg.batch_size + j) % len(order)]] for j in range(cfg.batch_size)],
                              tokenizer.pad_token_id)
        return {name: v.to(device) if torch.is_tensor(v) else v for name, v in batch.items()}

    eval_fn = None
    if eval_pairs is not None:
        eval_tok = tokenize_pairs(eval_pairs, tokenizer, cfg.max_length)

        def eval_fn(model, step):
            ev = _evaluate_tokenized(model, eval_tok, eval_pairs, tokenizer.pad_token_id, cfg.eval_batch_size)
            return {"eval/accuracy": ev.accuracy, "eval/loss": ev.loss, "eval/ece": float(ev.calibration.ece),
                    "eval/bayes_ceiling": ev.bayes_ceiling}

    history = train(rm, get_batch, partial(rm_loss_sum, margin=cfg.margin), cfg.train, eval_fn=eval_fn,
                    eval_every=eval_every, desc="reward model", progress=progress)
    history["data/num_pairs"] = [len(rows)]
    history["data/num_too_long"] = [tokenized.counts["too_long"]]
    history["data/num_identical_tokens"] = [tokenized.counts["identical_tokens"]]
    return history
