"""Outcome and process reward models (RLHF Book ch. 5 and 7): the process reward model's loss, and how each
model's per-token probabilities become one score for a reply.

Tensor math only: pure functions of per-token logits, no models, no I/O. The model that writes the logits
(a causal LM with a one-logit head at every token) is ``lm.token_reward_model``; its trainer is
``trainers.verifier``.

* An **outcome reward model** (ORM; Cobbe et al. 2021, "Training verifiers to solve math word problems") predicts
  at every reply token the probability that the *final answer* is right; it trains with
  ``reward_losses.orm_loss`` (the outcome label broadcast to every reply token) and scores a reply by its
  probability at the last reply token (:func:`orm_score`).
* A **process reward model** (PRM; Lightman et al. 2023, "Let's verify step by step") predicts the probability that
  each *step* is right, read only at the token that ends the step; it trains with :func:`prm_loss` against each
  step's label, and scores a reply by aggregating its step probabilities (:func:`prm_score`: the minimum, or the
  product as in Lightman et al.).

Conventions: ``logits`` (B, T) are aligned with ``input_ids`` (the head's logit *at* token t has read tokens
0..t); a ``step_mask`` (B, T) is 1 at each step's last token; ``step_labels`` (B, T) hold that step's label in
[0, 1] there (other positions are ignored).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["PRM_AGGREGATIONS", "orm_score", "prm_loss", "prm_score", "step_probabilities"]

PRM_AGGREGATIONS = ("min", "product")
"""How :func:`prm_score` turns step probabilities into one score."""


def _check_logits_and_mask(logits: torch.Tensor, mask: torch.Tensor, mask_name: str) -> None:
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, T); got {tuple(logits.shape)}")
    if mask.shape != logits.shape:
        raise ValueError(f"{mask_name} must have the shape of logits {tuple(logits.shape)}; got {tuple(mask.shape)}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError(f"{mask_name} must contain only 0 and 1")
    empty = (mask.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"{mask_name} marks no token in row(s) {empty}; every row needs at least one")
    if not bool(torch.isfinite(logits[mask.bool()]).all()):
        raise ValueError("logits must be finite (no NaN or inf) where the mask is 1")


def prm_loss(logits: torch.Tensor, step_labels: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """Process reward model loss: binary cross-entropy at each step's last token against that step's label.

    With z_{bt} the head's logit, s_{bt} = 1 at the token that ends a step and y_{bt} ∈ [0, 1] that step's label
    (1 = the step is right):

    .. math::  \\mathcal{L} = \\frac{1}{\\sum_{b,t} s_{bt}} \\sum_{b,t} s_{bt}
                 \\Big[ -y_{bt} \\log \\sigma(z_{bt}) - (1 - y_{bt}) \\log\\big(1 - \\sigma(z_{bt})\\big) \\Big]

    Lightman et al. (2023) train their PRM this way (a label per step, predicted at the step's last token); only
    those tokens carry a loss, unlike ``reward_losses.orm_loss``, which trains every reply token on the final
    answer. Reduction: the mean over all steps of the batch, so a reply with more steps weighs more.

    Args:
        logits: Shape (B, T), the head's correctness logit at every position (aligned with input_ids).
        step_labels: Shape (B, T), each step's label in [0, 1] at its last token; other entries are ignored.
        step_mask: Shape (B, T), 1 at the last token of every step; each row needs at least one.

    Returns:
        Shape (), float32.
    """
    _check_logits_and_mask(logits, step_mask, "step_mask")
    if step_labels.shape != logits.shape:
        raise ValueError(f"step_labels must have the shape of logits {tuple(logits.shape)}; "
                         f"got {tuple(step_labels.shape)}")
    on = step_mask.bool()
    labels = step_labels.float()
    if not bool(torch.isfinite(labels[on]).all()) or bool(((labels[on] < 0) | (labels[on] > 1)).any()):
        raise ValueError("step_labels must lie in [0, 1] at every step's last token (1 = a right step)")
    labels = torch.where(on, labels, torch.zeros_like(labels))  # whatever sits off the steps is ignored
    per_token = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")  # (B, T)
    return (per_token * step_mask.float()).sum() / step_mask.float().sum()


def step_probabilities(logits: torch.Tensor, step_mask: torch.Tensor) -> list[torch.Tensor]:
    """Each reply's step probabilities σ(z) at its step-ending tokens, in order. Shapes: (B, T), (B, T) → B
    tensors of shape (K_b,), K_b the steps of reply b (float32)."""
    _check_logits_and_mask(logits, step_mask, "step_mask")
    probs = torch.sigmoid(logits.float())
    return [probs[b][step_mask[b].bool()] for b in range(logits.shape[0])]


def prm_score(logits: torch.Tensor, step_mask: torch.Tensor, aggregation: str = "min") -> torch.Tensor:
    """A process reward model's score of each reply: its step probabilities p_k = σ(z at step k's last token)
    aggregated into one number.

    .. math::  \\text{min:}\\; r = \\min_k p_k \\qquad\\qquad \\text{product:}\\; r = \\prod_k p_k

    The product is the probability that every step is right if the steps' errors were independent (Lightman et al.
    2023 rank solutions by it); the minimum is "as good as its weakest step" and does not punish a reply for having
    more steps. Both are 1 only if every step is surely right.

    Args:
        logits: Shape (B, T), the head's logit at every position.
        step_mask: Shape (B, T), 1 at the last token of every step (at least one per row).
        aggregation: ``"min"`` or ``"product"`` (:data:`PRM_AGGREGATIONS`).

    Returns:
        Shape (B,), float32, in [0, 1].
    """
    if aggregation not in PRM_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {PRM_AGGREGATIONS}; got {aggregation!r}")
    _check_logits_and_mask(logits, step_mask, "step_mask")
    on = step_mask.bool()
    if aggregation == "min":
        probs = torch.sigmoid(logits.float()).masked_fill(~on, float("inf"))  # (B, T)
        return probs.min(dim=1).values
    log_p = F.logsigmoid(logits.float()).masked_fill(~on, 0.0)  # log σ(z), summed in log space: no underflow
    return log_p.sum(dim=1).exp()


def orm_score(logits: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """An outcome reward model's score of each reply: its probability that the final answer is right, read at the
    reply's last token (the one that has read the whole reply),

    .. math::  r = \\sigma(z_{t^*}), \\qquad t^* = \\text{the last position with completion\\_mask} = 1.

    Args:
        logits: Shape (B, T), the head's logit at every position.
        completion_mask: Shape (B, T), 1 on the reply's tokens (at least one per row).

    Returns:
        Shape (B,), float32, in [0, 1].
    """
    _check_logits_and_mask(logits, completion_mask, "completion_mask")
    T = logits.shape[1]
    positions = torch.arange(T, device=logits.device).expand_as(logits)
    last = torch.where(completion_mask.bool(), positions, -1).max(dim=1).values  # (B,)
    return torch.sigmoid(logits.float()[torch.arange(logits.shape[0], device=logits.device), last])
