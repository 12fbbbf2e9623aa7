"""Forward passes every trainer shares: logits with padding-independent positions, per-sequence log-probs, the SFT
batch loss, and the frozen reference model.

Trainers never import each other; what two of them need lives here (or lower). The tensor maths these call is in
``equations`` (``logprobs``); this module adds the model.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager

import torch

from rlhfbook_lab.equations.logprobs import (
    check_completion_mask,
    masked_mean,
    masked_sum,
    nll_loss_sum,
    per_token_logprobs,
    reduce_sequence,
)

__all__ = [
    "cache_kwargs",
    "check_reference",
    "disable_dropout",
    "eval_mode",
    "forward_logits",
    "make_reference_model",
    "position_ids_from_mask",
    "returned_cache",
    "sequence_logps",
    "sft_loss_sum",
]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count only real tokens: (cumsum(mask) − 1) clamped at 0. Shape (B, T) → (B, T).

    With left padding, ``arange(T)`` would start each row's text at a different position and change its
    log-probs; counting from the first real token makes a row's log-probs independent of its padding.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def forward_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The model's logits with padding-independent positions. Shapes: (B, T) → (B, T, V)."""
    if input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids shape {tuple(input_ids.shape)} does not match "
                         f"attention_mask shape {tuple(attention_mask.shape)}")
    out = model(input_ids=input_ids, attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask), use_cache=False)
    return out.logits


def make_reference_model(policy):
    """The frozen reference π_ref: a deep copy of ``policy`` as it is now, in eval mode, ``requires_grad=False``."""
    ref = copy.deepcopy(policy).eval()
    ref.requires_grad_(False)
    return ref


def check_reference(ref_model, policy) -> None:
    if ref_model is policy or {id(p) for p in ref_model.parameters()} & {id(p) for p in policy.parameters()}:
        raise ValueError("ref_model shares parameters with the policy, so the reference would move as the policy "
                         "trains; pass a copy (make_reference_model(policy)) or None")
    ref_device, device = next(ref_model.parameters()).device, next(policy.parameters()).device
    if ref_device != device:
        raise ValueError(f"ref_model is on {ref_device} but the policy is on {device}; move it with .to()")


def disable_dropout(model) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def sft_loss_sum(model, batch: dict, reduction: str = "token") -> tuple[torch.Tensor, dict]:
    """Forward a batch; return (:func:`nll_loss_sum`, metrics summed over the same items).

    Args:
        batch: ``input_ids``, ``attention_mask``, ``completion_mask``, all (B, T) (``data.collate_sft``).

    Metrics: ``charts/token_accuracy``, how often the argmax next token is the target (per token for
    ``"token"``, per-sequence means for ``"sequence"``; the loop turns the sums into means).
    """
    input_ids, completion_mask = batch["input_ids"], batch["completion_mask"]
    check_completion_mask(completion_mask, input_ids)
    logits = forward_logits(model, input_ids, batch["attention_mask"])  # (B, T, V)
    per_token_logps = per_token_logprobs(logits, input_ids)  # (B, T)
    loss_sum = nll_loss_sum(per_token_logps, completion_mask, reduction)
    with torch.no_grad():
        hits = torch.zeros_like(per_token_logps)
        hits[:, 1:] = (logits[:, :-1].argmax(-1) == input_ids[:, 1:]).float()  # aligned with input_ids
        if reduction == "token":
            acc = masked_sum(hits, completion_mask)
        else:
            acc = masked_mean(hits, completion_mask, dim=1).sum()
    return loss_sum, {"charts/token_accuracy": float(acc)}


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor,
                   reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass → (log π(y|x) per row, per-token log-probs). Shapes: (N, T) each → (N,), (N, T).

    ``reduction``: ``"sum"`` (DPO, KTO: log π(y|x)) or ``"mean"`` (IPO, SimPO, ORPO: divided by |y|), as in
    ``equations.logprobs.sequence_logprobs``, which this calls on the model's logits."""
    if reduction not in ("sum", "mean"):  # before the forward pass, not after it
        raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")
    check_completion_mask(completion_mask, input_ids)
    logits = forward_logits(model, input_ids, attention_mask)  # (N, T, V)
    per_token_logps = per_token_logprobs(logits, input_ids)  # (N, T)
    return reduce_sequence(per_token_logps, completion_mask, reduction), per_token_logps


@contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode for the ``with`` block and restore its previous mode afterwards, also when the
    block raises (generation, scoring and evaluation switch a training model to eval and back)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def cache_kwargs(model, cache) -> dict:
    """The keyword that passes a key/value cache to ``model``'s forward: ``cache=`` in ``transformers`` 5.24 and
    later, ``past_key_values=`` before (the old name warns that it "will be removed in version 5.40.0")."""
    params = inspect.signature(type(model).forward).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def returned_cache(output):
    """The key/value cache a forward pass with ``use_cache=True`` returned (``output.cache``, formerly
    ``output.past_key_values``)."""
    return output.cache if "cache" in getattr(output, "__dataclass_fields__", {}) else output.past_key_values
