"""Pretraining the tiny base model on the world's plain statements (next-token prediction).

Rows are packed: ``<|bos|>`` then whole statements, each followed by a newline, until the next would not fit in
``block_size`` tokens; the rest of the row is padding, which never counts. A statement is never cut in two.

The loss is the mean negative log-likelihood of every real token after the first:

.. math::  \\mathcal{L} = -\\frac{1}{N} \\sum_{b,t \\ge 1} m_{b,t} \\log p_\\theta(x_{b,t} \\mid x_{b,<t})

read through the log-prob core (``logprobs.per_token_logprobs``), like every other loss in the package.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_choice, check_int
from rlhfbook_lab.equations.logprobs import masked_sum, per_token_logprobs
from rlhfbook_lab.lm import distributed
from rlhfbook_lab.lm.data import pack_statements, target_mask
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import PRESETS, check_output_folder, get_device, init_model, num_parameters, save_model
from rlhfbook_lab.trainers.loop import TrainConfig, train

__all__ = [
    "SHIPPED_QUALITY",
    "heldout_loss",
    "lm_loss_sum",
    "prefix_accuracy",
    "pretrain",
    "PretrainConfig",
]

SHIPPED_QUALITY = {
    "heldout_loss_max": 0.55,
    "prefix_accuracy_min": {"addition": 0.90, "reverse": 0.80, "creatures": 0.95},
}
"""The shipped ``base-tiny``'s stated quality (README, tests and lesson 03 all read it from here): held-out
corpus loss (nats/token) below ``heldout_loss_max`` and greedy prefix-continuation accuracy per family at least
``prefix_accuracy_min`` on ``statement_prefixes(150, seed=0)``."""


@dataclass
class PretrainConfig:
    """Pretraining settings. The defaults produce the shipped ``base-tiny`` checkpoint."""

    preset: str = "tiny"
    """Model preset (``models.PRESETS``)."""
    block_size: int = 64
    """Tokens per packed row."""
    batch_size: int = 64
    """Rows per optimizer step."""
    n_statements: int = 160_000
    """Size of the generated training text (statements); rows cycle through it."""
    data_seed: int = 0
    """Seed of the world's corpus generator."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, lr=2e-3, warmup_steps=50,
                                                                   weight_decay=0.1, bf16=False))
    """The shared loop's settings (steps, lr, schedule, seed)."""

    def __post_init__(self):
        check_choice("preset", self.preset, PRESETS)
        for name in ("block_size", "batch_size", "n_statements"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("data_seed", self.data_seed, minimum=0)


def lm_loss_sum(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """Summed next-token NLL over the batch's target tokens (the shared loop divides by ``num_items``)."""
    logits = forward_logits(model, batch["input_ids"], batch["attention_mask"])  # (B, T, V)
    per_token_logps = per_token_logprobs(logits, batch["input_ids"])  # (B, T)
    return -masked_sum(per_token_logps, batch["target_mask"]), {}


@torch.no_grad()
def heldout_loss(model, tokenizer, n: int = 600, block_size: int = 64, seed: int = 0, batch_size: int = 64) -> float:
    """Mean NLL per token (nats) on held-out statements (keys never seen in training)."""
    ids, mask = pack_statements(tokenizer, world.pretraining_corpus(n, seed, split="heldout"), block_size)
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(ids), batch_size):
        b_ids, b_mask = ids[i:i + batch_size].to(device), mask[i:i + batch_size].to(device)
        tm = target_mask(b_mask)
        loss, _ = lm_loss_sum(model, {"input_ids": b_ids, "attention_mask": b_mask, "target_mask": tm})
        total += float(loss)
        count += int(tm.sum())
    return total / count


@torch.no_grad()
def prefix_accuracy(model, tokenizer, n: int = 150, seed: int = 0) -> dict[str, float]:
    """Greedy continuations of held-out statement prefixes, judged by the world's checker.

    Returns the accuracy per family (``addition``, ``reverse``: held-out keys, a skill; ``creatures``: facts
    read in pretraining, knowledge) and overall (``all``).
    """
    items = world.statement_prefixes(n, seed)
    gen = generate(model, tokenizer, [prefix for _, prefix in items], max_new_tokens=12, greedy=True, chat=False)
    hits: dict[str, list[bool]] = {}
    for (problem, prefix), cont in zip(items, gen.texts):
        line = (prefix + cont).split("\n")[0]
        hits.setdefault(problem.family, []).append(world.is_correct(problem, line))
    acc = {f: sum(h) / len(h) for f, h in hits.items()}
    acc["all"] = sum(sum(h) for h in hits.values()) / len(items)
    return acc


def pretrain(cfg: PretrainConfig, tokenizer, out: str | Path | None = None, progress: bool = True,
             eval_every: int = 0, overwrite: bool = False, device: torch.device | str | None = None):
    """Train a base model from scratch; save it to ``out`` (atomically) if given.

    ``device``: where to train; ``None`` picks ``models.get_device()`` (CUDA when there is one, where the loop
    also turns on bf16 autocast).

    Returns ``(model, history)``; the history holds ``losses/train`` per step and, at each evaluation,
    ``eval/heldout_loss`` and ``eval/prefix_acc``.
    """
    if out is not None:  # fail before training, not after
        out = check_output_folder(out, overwrite)
    statements = world.pretraining_corpus(cfg.n_statements, cfg.data_seed)
    input_ids, attention_mask = pack_statements(tokenizer, statements, cfg.block_size)
    tmask = target_mask(attention_mask)
    device = torch.device(device) if device is not None else get_device()
    model = init_model(cfg.preset, tokenizer, seed=cfg.train.seed).to(device)
    order = torch.randperm(len(input_ids), generator=torch.Generator().manual_seed(cfg.train.seed))

    def get_batch(step: int, micro: int) -> dict:
        k = (step * cfg.train.grad_accum + micro) * cfg.batch_size
        idx = torch.as_tensor(distributed.shard(order[torch.arange(k, k + cfg.batch_size) % len(order)].tolist()))
        return {"input_ids": input_ids[idx].to(device), "attention_mask": attention_mask[idx].to(device),
                "target_mask": tmask[idx].to(device), "num_items": int(tmask[idx].sum())}

    def eval_fn(m, step):
        return {"eval/heldout_loss": heldout_loss(m, tokenizer),
                "eval/prefix_acc": prefix_accuracy(m, tokenizer)["all"]}

    t0 = time.perf_counter()
    history = train(model, get_batch, lm_loss_sum, cfg.train, eval_fn=eval_fn if eval_every else None,
                    eval_every=eval_every, desc="pretrain", progress=progress)
    history["charts/wall_time"] = [time.perf_counter() - t0]
    if out is not None:
        meta = {"config": asdict(cfg), "parameters": num_parameters(model),
                "train_seconds": history["charts/wall_time"][0], "final_train_loss": history["losses/train"][-1]}
        curves = {k: history[k] for k in ("step", "losses/train", "eval/step", "eval/heldout_loss", "eval/prefix_acc")
                  if k in history}
        save_model(model, tokenizer, out, overwrite=overwrite,
                   extra_files={"training_meta.json": json.dumps(meta, indent=2, default=str),
                                "training_log.json": json.dumps(curves)})
    return model, history
