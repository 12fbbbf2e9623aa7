"""KTO's side of the direct-alignment trainer: unpaired examples (TRL's format), their tokenization with a
mismatched partner row for the reference point z_ref, the collator, and the batch loss.

The tensor loss is ``equations.direct_alignment.kto_loss``; the loop that runs it is :func:`trainer.train_dpo`
with ``DPOConfig(loss="kto")``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from datasets import Dataset

from rlhfbook_lab.equations.direct_alignment import kto_loss
from rlhfbook_lab.lm.data import (
    BuiltDataset,
    ExampleTooLong,
    collate_sft,
    conversation,
    rows_of,
    stack_ref_logps,
    tokenize_conversation,
)
from rlhfbook_lab.lm.forward import sequence_logps

__all__ = [
    "KTO_COLUMNS",
    "REF_KTO_COLUMNS",
    "collate_kto",
    "kto_examples",
    "kto_loss_sum",
    "missing_ref_error",
    "require_keys",
    "tokenize_kto",
]

if TYPE_CHECKING:  # the config's class lives in trainer.py, which imports this module
    from rlhfbook_lab.trainers.dpo.trainer import DPOConfig

log = logging.getLogger(__name__)

KTO_COLUMNS = ("input_ids", "completion_mask", "desirable", "kl_input_ids", "kl_completion_mask")


REF_KTO_COLUMNS = ("ref_logps", "ref_kl_logps")


def require_keys(item, keys, what: str, k: int) -> None:
    if not isinstance(item, dict):
        raise ValueError(f"{what} {k} must be a dict with keys {list(keys)}; got {type(item).__name__}")
    missing = [key for key in keys if key not in item]
    if missing:
        raise ValueError(f"{what} {k} is missing key(s) {missing}; expected {list(keys)}")


def kto_examples(pairs) -> list[dict]:
    """Unroll pairs into KTO's unpaired examples as TRL does: each pair gives its chosen reply as a desirable
    example and its rejected reply as an undesirable one, ``{"prompt", "completion", "label": bool}``."""
    out = []
    for k, pair in enumerate(pairs):
        require_keys(pair, ("prompt", "chosen", "rejected"), "pair", k)
        out.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        out.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    return out


def tokenize_kto(tokenizer, examples, max_length: int, seed: int = 0) -> BuiltDataset:
    """Tokenize KTO examples ``{"prompt", "completion", "label": bool}`` (TRL's unpaired format).

    Each row also carries a *mismatched* conversation for KTO's reference point z_ref (``kto_reference_point``):
    its prompt with the completion of another example, chosen once here by a seeded cyclic shift over a random
    order (TRL shifts completions by one inside each batch; fixing the partner per row makes the reference's
    log-probs precomputable). Mismatched rows are not limited to ``max_length``.

    Returns:
        ``data.BuiltDataset`` with columns ``input_ids``, ``completion_mask``, ``desirable``, ``kl_input_ids``,
        ``kl_completion_mask``, and the count of examples dropped as longer than ``max_length``. ``ValueError``
        for a malformed example, for fewer than two examples, or when one label is absent.
    """
    kept: list[tuple[dict, dict]] = []
    dropped = 0
    for k, ex in enumerate(examples):
        require_keys(ex, ("prompt", "completion", "label"), "example", k)
        if not isinstance(ex["label"], bool):
            raise ValueError(f"example {k}: label must be a bool (True = desirable); got {ex['label']!r}")
        try:
            row = tokenize_conversation(tokenizer, conversation(ex["prompt"], ex["completion"]), max_length)
        except ExampleTooLong:
            dropped += 1
            continue
        except ValueError as e:
            raise ValueError(f"example {k}: {e}") from e
        kept.append((ex, row))
    if len(kept) < 2:
        raise ValueError(f"KTO needs at least 2 examples; {len(kept)} left ({dropped} longer than "
                         f"max_length={max_length})")
    labels = [ex["label"] for ex, _ in kept]
    if all(labels) or not any(labels):
        raise ValueError(f"KTO needs desirable and undesirable examples; all {len(kept)} are "
                         f"{'desirable' if labels[0] else 'undesirable'}")
    order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(seed)).tolist()
    partner = {order[j]: order[(j + 1) % len(order)] for j in range(len(order))}
    cols: dict[str, list] = {c: [] for c in KTO_COLUMNS}
    for i, (ex, row) in enumerate(kept):
        kl_row = tokenize_conversation(tokenizer, conversation(ex["prompt"], kept[partner[i]][0]["completion"]))
        for name, value in zip(KTO_COLUMNS, (row["input_ids"], row["completion_mask"], ex["label"],
                                             kl_row["input_ids"], kl_row["completion_mask"])):
            cols[name].append(value)
    if dropped:
        log.warning("dropped %d of %d KTO examples longer than max_length=%d tokens",
                    dropped, dropped + len(kept), max_length)
    return BuiltDataset(Dataset.from_dict(cols), dropped)


def collate_kto(rows, pad_token_id: int) -> dict:
    """Pad B KTO examples on the right: ``input_ids``, ``attention_mask``, ``completion_mask`` (B, T); the
    mismatched rows as ``kl_input_ids``, ``kl_attention_mask``, ``kl_completion_mask`` (B, T'); ``desirable``
    (B,) bool; ``num_items`` = B; ``ref_logps``, ``ref_kl_logps`` (B,) when precomputed."""
    rows = rows_of(rows, "collate_kto")
    for i, r in enumerate(rows):
        require_keys(r, KTO_COLUMNS, "row", i)
    batch = collate_sft([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]} for r in rows],
                        pad_token_id)
    kl = collate_sft([{"input_ids": r["kl_input_ids"], "completion_mask": r["kl_completion_mask"]} for r in rows],
                     pad_token_id)
    for name in ("input_ids", "attention_mask", "completion_mask"):
        batch[f"kl_{name}"] = kl[name]
    batch["desirable"] = torch.tensor([bool(r["desirable"]) for r in rows], dtype=torch.bool)
    batch["num_items"] = len(rows)
    stack_ref_logps(rows, REF_KTO_COLUMNS, batch)
    return batch


def missing_ref_error(names) -> ValueError:
    return ValueError(f"precompute_ref_logps=True but the batch's reference log-probs missing: expected "
                      f"{list(names)} (train_dpo stores them in the rows; else call compute_ref_logps)")


def kto_loss_sum(policy, batch: dict, cfg: DPOConfig, ref_model=None) -> tuple[torch.Tensor, dict]:
    """KTO's ``loss_fn`` (items: examples). z_ref comes from the mismatched rows, scored without gradient.

    The per-class metrics are class means within the micro-batch, times its size, so the loop reports the
    class mean exactly when ``grad_accum == 1`` (else a size-weighted mean of micro-batch means). Because z_ref
    is a batch statistic, KTO's gradient depends on how a step is split into micro-batches (TRL's too).
    """
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"], "sum")
    kl_args = (batch["kl_input_ids"], batch["kl_attention_mask"], batch["kl_completion_mask"], "sum")
    policy_logps, _ = sequence_logps(policy, *args)
    with torch.no_grad():
        policy_kl_logps, _ = sequence_logps(policy, *kl_args)
        if cfg.precompute_ref_logps:
            if not all(name in batch for name in REF_KTO_COLUMNS):
                raise missing_ref_error(REF_KTO_COLUMNS)
            ref_logps, ref_kl_logps = batch["ref_logps"], batch["ref_kl_logps"]
        elif ref_model is None:
            raise ValueError("loss='kto' needs a reference model: pass ref_model (make_reference_model) or set "
                             "precompute_ref_logps=True")
        else:
            ref_logps, _ = sequence_logps(ref_model, *args)
            ref_kl_logps, _ = sequence_logps(ref_model, *kl_args)
    out = kto_loss(policy_logps, ref_logps, batch["desirable"], policy_kl_logps, ref_kl_logps, beta=cfg.beta,
                   desirable_weight=cfg.desirable_weight, undesirable_weight=cfg.undesirable_weight)
    n, desirable = len(policy_logps), batch["desirable"]
    logps = policy_logps.detach()
    metrics = {
        "rewards/chosen": out.chosen_rewards.mean() * n,
        "rewards/rejected": out.rejected_rewards.mean() * n,
        "rewards/margins": (out.chosen_rewards.mean() - out.rejected_rewards.mean()) * n,
        "logps/chosen": logps[desirable].mean() * n,
        "logps/rejected": logps[~desirable].mean() * n,
        "kto/kl": out.kl * n,
    }
    return out.losses.sum(), {k: float(v.detach()) for k, v in metrics.items()}
