"""Training outcome and process reward models (book ch. 5 and 7): a :class:`~rlhfbook_lab.lm.token_reward_model.
TokenRewardModel` on labelled replies, with the shared loop.

* ``kind="orm"``: ``equations.reward_losses.orm_loss``, every reply token against the reply's outcome (Cobbe et al.
  2021);
* ``kind="prm"``: ``equations.process_rewards.prm_loss``, each step's last token against that step's label
  (Lightman et al. 2023).

The layers: tensor loss (``equations``) → batch loss (:func:`verifier_loss_sum`) → loop (:func:`train_verifier`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import torch

from rlhfbook_lab.checks import check_choice, check_int
from rlhfbook_lab.equations.process_rewards import prm_loss
from rlhfbook_lab.equations.reward_losses import orm_loss
from rlhfbook_lab.lm.token_reward_model import TokenRewardModel, collate_steps, tokenize_steps
from rlhfbook_lab.trainers.loop import TrainConfig, train

__all__ = ["VERIFIER_KINDS", "VerifierConfig", "train_verifier", "verifier_loss_sum"]

VERIFIER_KINDS = ("orm", "prm")


@dataclass
class VerifierConfig:
    """An ORM or a PRM (:func:`train_verifier`)."""

    kind: str = "orm"
    """``"orm"`` (the outcome at every reply token) or ``"prm"`` (each step's label at its last token)."""
    batch_size: int = 32
    """Labelled replies per optimizer step."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=200, lr=1e-2, warmup_steps=10, bf16=False,
                                                                   log_every=10**6))
    """The shared loop's settings (steps, lr, schedule, seed); the default lr suits a head alone."""
    freeze_backbone: bool = True
    """Train the head alone (a logistic regression on its inputs, the backbone's features: fast, convex, and at this
    scale better than fine-tuning, which fitted the base rate and nothing else in every run we tried); ``False``
    fine-tunes the backbone too. :func:`train_verifier` sets ``requires_grad`` on the backbone's parameters
    accordingly, so give it a copy (``TokenRewardModel.from_causal_lm`` copies by default)."""

    def __post_init__(self):
        check_choice("kind", self.kind, VERIFIER_KINDS)
        check_int("batch_size", self.batch_size, minimum=1)


def verifier_loss_sum(model: TokenRewardModel, batch: dict, kind: str) -> tuple[torch.Tensor, dict]:
    """The batch's loss *summed* over its items (the shared loop divides by ``num_items``): reply tokens for an
    ORM, steps for a PRM. Metrics (sums too): ``verifier/accuracy`` (σ(z) > ½ agrees with the label, per item)."""
    logits = model(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])  # (B, T)
    if kind == "orm":
        mask, labels = batch["completion_mask"], batch["outcome"][:, None].expand_as(logits)  # (B, T)
        loss = orm_loss(logits, batch["outcome"], mask)
    else:
        mask, labels = batch["step_mask"], batch["step_labels"]
        loss = prm_loss(logits, labels, mask)
    n = mask.sum()
    hits = (((logits > 0).float() == labels.float()).float() * mask).sum()
    return loss * n, {"verifier/accuracy": hits.detach()}


def train_verifier(model: TokenRewardModel, tokenizer, rows: list[dict], cfg: VerifierConfig,
                   progress: bool = False) -> dict[str, list]:
    """Train ``model`` in place on labelled replies; return the shared loop's history.

    Args:
        rows: dicts with ``prompt``, ``reply``, ``correct`` (the outcome, bool or 0/1), ``step_ends`` (character
            indices, ``world.thinking.step_ends``) and ``step_labels`` (one per step, or ``None`` for a reply the
            labeller cannot split into steps: a PRM then learns the outcome at each of its full stops, or at its
            last character if it has none).
    """
    if not isinstance(cfg, VerifierConfig):
        raise ValueError(f"cfg must be a VerifierConfig; got {type(cfg).__name__}")
    if not rows:
        raise ValueError("rows is empty: no labelled reply to train on")
    data = []
    for r in rows:
        labels = r["step_labels"]
        if labels is None:
            labels = [float(r["correct"])] * max(1, len(r["step_ends"]))
        row = tokenize_steps(tokenizer, r["prompt"], r["reply"], r["step_ends"], labels if cfg.kind == "prm" else None)
        row["outcome"] = float(r["correct"])
        data.append(row)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.train.seed)).tolist()
    for p in model.backbone.parameters():
        p.requires_grad_(not cfg.freeze_backbone)
    device = next(model.parameters()).device

    def get_batch(step: int, micro: int) -> dict:
        k = step * cfg.train.grad_accum + micro
        chosen = [data[order[(k * cfg.batch_size + j) % len(order)]] for j in range(cfg.batch_size)]
        batch = collate_steps(chosen, tokenizer.pad_token_id)
        batch["outcome"] = torch.tensor([r["outcome"] for r in chosen])
        batch["num_items"] = int((batch["completion_mask"] if cfg.kind == "orm" else batch["step_mask"]).sum())
        return {name: v.to(device) if torch.is_tensor(v) else v for name, v in batch.items()}

    return train(model, get_batch, partial(verifier_loss_sum, kind=cfg.kind), cfg.train, desc=cfg.kind,
                 progress=progress)
