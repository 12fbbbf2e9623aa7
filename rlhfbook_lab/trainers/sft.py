"""Supervised fine-tuning (instruction tuning, the book's chapter 4): next-token prediction on the replies.

The loss is the negative log-likelihood of the reply given the prompt,

.. math::  \\mathcal{L}(\\theta) = -\\sum_{t} \\log \\pi_\\theta(y_t \\mid x, y_{<t})

summed over the reply tokens ``y`` (each assistant turn's content and its ``<|end|>``; ``data`` module) and
never over the prompt ``x``. How the sum becomes a mean is a choice with a name (``SFTConfig.reduction``):

- ``"token"`` (default): divide by the number of target tokens in the whole optimizer step. Every token weighs
  the same, so a long reply counts more than a short one.
- ``"sequence"``: average within each sequence first, then over sequences. Every reply weighs the same, so a
  short reply's tokens count more.

Both go through the shared loop's contract (``train`` module): :func:`sft_loss_sum` returns the *sum* over
the items of a micro-batch (tokens, or per-sequence means), each batch says how many items it holds, and the
loop divides by the step's total, so gradient accumulation is exact.

Layers: :func:`nll_loss_sum` (tensors) → :func:`sft_loss_sum` (model + batch) → :func:`sft` (the loop) →
:func:`sft_from_base` (the shipped recipe: base model + ``data/sft/sft_train.jsonl`` → ``sft-tiny``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from datasets import Dataset

from rlhfbook_lab import world
from rlhfbook_lab.equations.logprobs import REDUCTIONS, num_loss_items
from rlhfbook_lab.lm import distributed
from rlhfbook_lab.lm.data import (
    BuiltDataset,
    build_sft_dataset,
    collate_sft,
    fingerprint,
    pack_dataset,
    pack_statements,
    target_mask,
)
from rlhfbook_lab.lm.forward import eval_mode, sft_loss_sum
from rlhfbook_lab.lm.models import check_output_folder, load_model, save_model
from rlhfbook_lab.lm.shipped_data import load_instruction_file
from rlhfbook_lab.trainers.loop import TrainConfig, train

__all__ = [
    "SHIPPED_QUALITY",
    "apply_label_options",
    "eval_loss",
    "num_loss_items",
    "sft",
    "sft_from_base",
    "sft_loss_sum",
    "SFTConfig",
]


SHIPPED_QUALITY = {
    "n_prompts": 200,
    "eos_rate_min": 0.95,
    "correct_rate_min": 0.60,
    "gold_score_min": 0.55,
    "family_correct_min": {"addition": 0.65, "reverse": 0.65, "review": 0.75},
    "margin_over_base": {"correct_rate": 0.50, "gold_score": 0.80},
    "n_group_prompts": 64,
    "k": 8,
    "mixed_share_min": 0.70,
    "creatures_train_answers_min": 0.95,
}
"""The shipped ``sft-tiny``'s stated quality (tests, README and lesson 04 read it from here).

Greedy replies to ``world.heldout_prompts(n_prompts, seed=0)`` (``evaluation.evaluate_chat``): at least
``eos_rate_min`` end their turn; overall correctness and mean gold score at least ``correct_rate_min`` and
``gold_score_min``, and above the base model's on the same prompts by ``margin_over_base``; per-family
correctness at least ``family_correct_min``. The held-out *creatures* are not floored: their questions are the
elicitation measurement (``evaluation.elicitation_report``), about creatures no SFT example asks about; the
creatures that are asked about are answered at least ``creatures_train_answers_min`` of the time.

Room for RL: on ``world.heldout_prompts(n_group_prompts, seed=1, families=("addition",))``, ``k`` samples
per prompt at temperature 1 (``evaluation.sample_groups``, seed 0) are a mix of right and wrong answers for
at least ``mixed_share_min`` of the prompts.

Measured when it shipped (800 steps, 3.7 min on 2 CPU cores): EOS 0.98, correct 0.71 (base 0.005), gold
+0.69 (base −0.40); addition 0.80, reverse 0.80, review 0.92, held-out creatures 0.32; addition mixed share
0.91 with one sample right 65 % of the time."""


@dataclass
class SFTConfig:
    """Instruction-tuning settings. The defaults are the recipe of the shipped ``sft-tiny`` (``rlhfbook-lab
    sft``): 800 steps of 16 conversations (12,800 examples, ≈ 3 passes over the 4,000 of ``data/sft``) at a peak
    lr of 1.5e-3, about 3–4 minutes on 2 CPU cores.

    How they were chosen (greedy correctness on 200 held-out prompts, one seed per run, so ±7 points per
    family): 32 × 300 steps at lr 5e-4 learned the format (100 % EOS) but not to copy a question's operands into
    the answer (7 % correct); at lr 1.5e-3 it reached 21 %; 16 × 800 steps at lr 1.5e-3 reached 71 % (seeds 0
    and 1), while lr 3e-3 there forgot held-out addition (80 % → 8 %)."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=800, lr=1.5e-3, warmup_steps=30,
                                                                   bf16=False))
    """The shared loop's settings (steps, lr, schedule, grad_accum, seed). Training is budgeted in steps."""
    max_length: int = 160
    """Longest conversation kept, in tokens. Longer ones are dropped (never truncated) and counted."""
    batch_size: int = 16
    """Rows per micro-batch (a step sees ``batch_size * train.grad_accum`` rows)."""
    reduction: str = "token"
    """``"token"``: mean over all target tokens of the step. ``"sequence"``: mean within each sequence, then
    mean over the step's sequences."""
    mask_prompt: bool = True
    """Train on the assistant tokens only. ``False`` trains on every token after the first, prompt included
    (the lesson's exercise: what does the model learn from the user's words?)."""
    train_on_eos: bool = True
    """Keep ``<|end|>`` among the targets. ``False`` drops every EOS from the labels (exercise: watch the
    model ramble, since nothing taught it to stop)."""
    pack: bool = False
    """Pack short conversations into rows of ``max_length`` tokens (``data.pack_dataset``: examples attend
    across their boundaries). Only with ``reduction="token"``: a packed row is not one sequence."""
    pretrain_mix: float = 0.0
    """Fraction of each micro-batch's rows that are pretraining text (rounded to whole rows), every real token
    a target (the elicitation experiment: does replaying pretraining help SFT surface what the base model
    knew?)."""
    pretrain_block_size: int = 64
    """Tokens per pretraining row when ``pretrain_mix > 0`` (the base model's own block size)."""
    pretrain_statements: int = 20_000
    """Statements generated for the pretraining rows when ``pretrain_mix > 0``."""
    data_seed: int = 0
    """Seed of the world's corpus generator for the pretraining rows."""


# --- tensors ------------------------------------------------------------------------------------------------


def apply_label_options(input_ids: list[int], completion_mask: list[int], eos_token_id: int,
                        mask_prompt: bool = True, train_on_eos: bool = True) -> list[int]:
    """The target mask of one row under the lesson's switches (``SFTConfig.mask_prompt``, ``train_on_eos``).

    ``mask_prompt=False``: every token but the row's first is a target. ``train_on_eos=False``: no EOS token
    is. Lists in, a list out (a dataset row).
    """
    mask = list(completion_mask) if mask_prompt else [0] + [1] * (len(input_ids) - 1)
    if not train_on_eos:
        mask = [0 if tok == eos_token_id else m for tok, m in zip(input_ids, mask)]
    if not any(mask):
        raise ValueError("a row has no target token left under these label options")
    return mask


# --- a batch ------------------------------------------------------------------------------------------------


# --- the loop -----------------------------------------------------------------------------------------------


def _pretrain_rows(tokenizer, cfg: SFTConfig) -> list[dict]:

    ids, attn = pack_statements(tokenizer, world.pretraining_corpus(cfg.pretrain_statements, cfg.data_seed),
                                cfg.pretrain_block_size)
    tmask = target_mask(attn)
    lengths = attn.sum(dim=1).tolist()
    return [{"input_ids": ids[i, :n].tolist(), "completion_mask": tmask[i, :n].tolist()}
            for i, n in enumerate(lengths)]


def sft(model, tokenizer, examples, cfg: SFTConfig, progress: bool = True, eval_fn=None,
        eval_every: int = 0) -> dict[str, list]:
    """Fine-tune ``model`` in place on chat ``examples``; return the shared loop's metrics history.

    Args:
        examples: conversations (lists of messages or ``world.instruction_data`` dicts), or an already
            tokenized ``datasets.Dataset`` / :class:`data.BuiltDataset` (``input_ids``, ``completion_mask``).
        cfg: :class:`SFTConfig`. The rows are visited in one random order fixed by ``cfg.train.seed``
            (cycled), so the same model, data and config give the same loss curve.
        eval_fn, eval_every: passed to ``train.train``.

    The history adds ``data/num_examples`` and ``data/num_dropped`` (conversations over ``max_length``) and
    ``charts/wall_time``.
    """
    if cfg.reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}; got {cfg.reduction!r}")
    if not 0.0 <= cfg.pretrain_mix < 1.0:
        raise ValueError(f"pretrain_mix must be in [0, 1); got {cfg.pretrain_mix}")
    if cfg.pack and cfg.reduction != "token":
        raise ValueError("pack=True needs reduction='token': a packed row holds several sequences")
    if isinstance(examples, BuiltDataset):
        dataset, dropped = examples
    elif isinstance(examples, Dataset):
        dataset, dropped = examples, 0
    else:
        dataset, dropped = build_sft_dataset(tokenizer, examples, cfg.max_length)
    num_examples = len(dataset)
    if cfg.pack:
        dataset = pack_dataset(dataset, cfg.max_length)
    cols = dataset.select_columns(["input_ids", "completion_mask"])[:]
    eos = tokenizer.eos_token_id
    rows = [{"input_ids": ids,
             "completion_mask": apply_label_options(ids, m, eos, cfg.mask_prompt, cfg.train_on_eos)}
            for ids, m in zip(cols["input_ids"], cols["completion_mask"])]
    n_pre = round(cfg.pretrain_mix * cfg.batch_size)
    n_sft = cfg.batch_size - n_pre
    if n_sft < 1:
        raise ValueError(f"pretrain_mix={cfg.pretrain_mix} leaves no SFT row in a batch of {cfg.batch_size}")
    pre_rows = _pretrain_rows(tokenizer, cfg) if n_pre else []
    gen = torch.Generator().manual_seed(cfg.train.seed)
    order = torch.randperm(len(rows), generator=gen).tolist()
    pre_order = torch.randperm(len(pre_rows), generator=gen).tolist() if n_pre else []
    device = next(model.parameters()).device

    def get_batch(step: int, micro: int) -> dict:
        k = step * cfg.train.grad_accum + micro
        chosen = [rows[order[(k * n_sft + j) % len(order)]] for j in range(n_sft)]
        chosen += [pre_rows[pre_order[(k * n_pre + j) % len(pre_order)]] for j in range(n_pre)]
        batch = collate_sft(distributed.shard(chosen), tokenizer.pad_token_id)  # this rank's slice
        batch["num_items"] = num_loss_items(batch["completion_mask"], cfg.reduction)
        return {name: v.to(device) if torch.is_tensor(v) else v for name, v in batch.items()}

    t0 = time.perf_counter()
    loss_fn = partial(sft_loss_sum, reduction=cfg.reduction)
    history = train(model, get_batch, loss_fn, cfg.train, eval_fn=eval_fn, eval_every=eval_every, desc="sft",
                    progress=progress)
    history["charts/wall_time"] = [time.perf_counter() - t0]
    history["data/num_examples"] = [num_examples]
    history["data/num_dropped"] = [dropped]
    return history


@torch.no_grad()
def eval_loss(model, dataset, pad_token_id: int, reduction: str = "token", batch_size: int = 64) -> float:
    """The SFT loss of ``model`` on a tokenized dataset (``input_ids``, ``completion_mask``), no gradient:
    the held-out curve beside the training one. ``"token"``: mean NLL per target token (nats)."""
    if isinstance(dataset, BuiltDataset):
        dataset = dataset.dataset
    device = next(model.parameters()).device
    total, items = 0.0, 0
    with eval_mode(model):
        for i in range(0, len(dataset), batch_size):
            batch = collate_sft(dataset[i:i + batch_size], pad_token_id)
            loss_sum, _ = sft_loss_sum(model, {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)},
                                       reduction)
            total += float(loss_sum)
            items += num_loss_items(batch["completion_mask"], reduction)
    return total / items


# --- the shipped recipe -------------------------------------------------------------------------------------


def sft_from_base(cfg: SFTConfig | None = None, base: str | Path = "base-tiny", out: str | Path | None = None,
                  num_examples: int | None = None, overwrite: bool = False, progress: bool = True,
                  eval_every: int = 100, data_dir: str | Path | None = None):
    """The recipe of the shipped ``sft-tiny``: fine-tune ``base`` on ``data/sft/sft_train.jsonl``.

    Args:
        cfg: :class:`SFTConfig` (default: its defaults, the shipped recipe).
        base: the model to start from (a shipped checkpoint name or a folder).
        out: save the result there (atomically, with ``training_meta.json`` and ``training_log.json``).
        num_examples: use only the first ``num_examples`` conversations of the training file.
        eval_every: every this many steps (and at the end), record ``eval/heldout_loss``, the loss on the
            first 256 conversations of the held-out file (``sft_heldout.jsonl``; prompt keys never in training).
        data_dir: where the jsonl files are (default ``data/sft``).

    Returns ``(model, tokenizer, history)``.
    """
    cfg = cfg or SFTConfig()
    if out is not None:  # fail before training, not after
        out = check_output_folder(out, overwrite)
    rows = load_instruction_file("train", data_dir)
    if num_examples is not None:
        if not 0 < num_examples <= len(rows):
            raise ValueError(f"num_examples must be in 1 ... {len(rows)} (the training file's size); "
                             f"got {num_examples}")
        rows = rows[:num_examples]
    model, tokenizer = load_model(base)
    heldout = build_sft_dataset(tokenizer, load_instruction_file("heldout", data_dir), cfg.max_length).dataset
    heldout = heldout.select(range(min(len(heldout), 256)))

    def eval_fn(m, step):
        return {"eval/heldout_loss": eval_loss(m, heldout, tokenizer.pad_token_id, cfg.reduction)}

    history = sft(model, tokenizer, rows, cfg, progress=progress, eval_fn=eval_fn if eval_every else None,
                  eval_every=eval_every)
    if out is not None:
        meta = {"base": str(base), "config": asdict(cfg), "num_examples": len(rows),
                "train_file_sha256_16": fingerprint(rows), "train_seconds": history["charts/wall_time"][0],
                "final_train_loss": history["losses/train"][-1]}
        curves = {k: history[k] for k in ("step", "losses/train", "charts/token_accuracy", "charts/lr",
                                          "eval/step", "eval/heldout_loss") if k in history}
        save_model(model, tokenizer, out, overwrite=overwrite,
                   extra_files={"training_meta.json": json.dumps(meta, indent=2, default=str),
                                "training_log.json": json.dumps(curves)})
    return model, tokenizer, history
