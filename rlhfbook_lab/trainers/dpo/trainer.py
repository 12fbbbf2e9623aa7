"""The direct-alignment trainer: configuration, the paired batch loss, the loop and the recipe of
``rlhfbook-lab dpo`` (the package docstring has the overview)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from datasets import Dataset

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.direct_alignment import (
    LOSS_REDUCTION,
    REFERENCE_FREE_LOSSES,
    preference_loss,
)
from rlhfbook_lab.lm import distributed
from rlhfbook_lab.lm.data import (
    REF_PAIR_COLUMNS,
    BuiltDataset,
    TokenizedPairs,
    collate_pairs,
    fingerprint,
    read_pairs,
    tokenize_pairs,
)
from rlhfbook_lab.lm.evaluation import evaluate_chat, sampled_kl
from rlhfbook_lab.lm.forward import check_reference, disable_dropout, eval_mode, make_reference_model, sequence_logps
from rlhfbook_lab.lm.models import check_output_folder, load_model, save_model
from rlhfbook_lab.lm.preference_data import subsample_pairs
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.trainers.dpo.kto import (
    REF_KTO_COLUMNS,
    collate_kto,
    kto_examples,
    kto_loss_sum,
    missing_ref_error,
    tokenize_kto,
)
from rlhfbook_lab.trainers.loop import TrainConfig, autocast_context, train

__all__ = [
    "FAST",
    "FAST_SIZES",
    "RECIPES",
    "REF_KTO_COLUMNS",
    "check_dpo_config",
    "collate_kto",
    "compute_ref_logps",
    "concatenated_forward",
    "ConcatenatedOutput",
    "dpo_config",
    "dpo_from_sft",
    "dpo_loss_sum",
    "DPOConfig",
    "DPORun",
    "kto_examples",
    "make_reference_model",
    "tokenize_kto",
    "train_dpo",
]

log = logging.getLogger(__name__)


@dataclass
class DPOConfig:
    """Direct-alignment settings: one trainer for every loss of ``dpo``; ``loss`` picks which."""

    loss: str = "dpo"
    """``"dpo"``, ``"cdpo"``, ``"ipo"``, ``"simpo"``, ``"orpo"`` or ``"kto"``. It also fixes the reduction over
    tokens (``LOSS_REDUCTION``) and whether a reference model is needed (``REFERENCE_FREE_LOSSES``)."""
    beta: float = 0.1
    """The loss's ``beta``: the KL strength β of DPO, cDPO and KTO; IPO's τ; SimPO's reward scale (SimPO wants
    β ≈ 2–10, not 0.1); ORPO's λ, the weight of the odds-ratio term (TRL's naming throughout)."""
    label_smoothing: float = 0.1
    """cDPO only: ε in [0, 0.5], the assumed probability that a preference label is flipped."""
    gamma: float = 1.0
    """SimPO only: γ >= 0, the target reward margin."""
    orpo_nll_weight: float = 1.0
    """ORPO only: weight of the SFT term, the mean NLL of each chosen reply, beside λ·L_OR (the paper: 1)."""
    desirable_weight: float = 1.0
    """KTO only: λ_D, the weight of a desirable example's loss."""
    undesirable_weight: float = 1.0
    """KTO only: λ_U, the weight of an undesirable example's loss."""
    max_length: int = 160
    """Longest conversation (prompt + reply) kept, in tokens. A pair with either side longer is dropped, never
    truncated (a cut reply would lose its ``<|end|>``), and counted."""
    batch_size: int = 16
    """Items per micro-batch: pairs (a forward pass sees 2·batch_size rows), or examples for KTO (>= 2, and each
    micro-batch holds both desirable and undesirable ones)."""
    precompute_ref_logps: bool = False
    """Score the whole dataset with the reference once before training and store the log-probs in the rows;
    training then runs no reference forward pass and holds no reference model in memory."""
    disable_dropout: bool = True
    """Set every ``nn.Dropout`` of the policy (and reference) to p = 0, as TRL does: with dropout on, the
    policy's log-probs at step 0 are not the reference's and the step-0 loss is not ln 2. (Attention dropout
    that a ``transformers`` config applies functionally is not an ``nn.Dropout``; the presets have none.)"""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100, lr=5e-5, warmup_steps=10,
                                                                   weight_decay=0.0, bf16=False))
    """The shared loop's settings (steps, lr, schedule, grad_accum, seed): 100 steps of 16 pairs (1,600 of the 3,397
    shipped on-policy pairs seen once), peak lr 5e-5. No weight decay by default: it pulls
    the weights toward 0, not toward the reference, which is what β regularises toward. fp32 by default: the
    losses compare differences of summed log-probs, which bf16 blurs."""

    def __post_init__(self):
        check_dpo_config(self)


def check_dpo_config(cfg: DPOConfig) -> None:
    """Raise ``ValueError`` naming the field unless ``cfg`` is usable (called on construction and at every
    entry point, so a field changed after construction is caught too)."""
    if cfg.loss not in LOSS_REDUCTION:
        raise ValueError(f"loss must be one of {sorted(LOSS_REDUCTION)}; got {cfg.loss!r}")
    check_number("beta", cfg.beta, minimum=0, strict=True)
    check_number("label_smoothing", cfg.label_smoothing, minimum=0, maximum=0.5)  # a flip probability
    check_number("gamma", cfg.gamma, minimum=0)
    check_number("orpo_nll_weight", cfg.orpo_nll_weight, minimum=0)
    check_number("desirable_weight", cfg.desirable_weight, minimum=0, strict=True)
    check_number("undesirable_weight", cfg.undesirable_weight, minimum=0, strict=True)
    smallest = 2 if cfg.loss == "kto" else 1
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < smallest:
        raise ValueError(f"batch_size must be an int >= {smallest} for loss={cfg.loss!r}"
                         + (" (a KTO micro-batch needs a desirable and an undesirable example)" if smallest == 2
                            else "") + f"; got {cfg.batch_size!r}")
    if not isinstance(cfg.max_length, int) or cfg.max_length < 2:
        raise ValueError(f"max_length must be an int >= 2; got {cfg.max_length!r}")
    if cfg.train.grad_accum < 1:
        raise ValueError(f"train.grad_accum must be >= 1; got {cfg.train.grad_accum}")


# --- data: pairs (tokenized and stacked by preference_data) ---------------------------------------------------


def _refuse_ties(labels, indices, what: str) -> None:
    """The losses read every pair as chosen ≻ rejected: a pair with ``label`` other than 1.0 (``preference_data``'s
    0.5 = a tie, which the reward model trains on) would be trained on as a win, so it is refused."""
    for k, label in zip(indices, labels):
        if isinstance(label, bool) or label != 1.0:
            raise ValueError(f"{what} {k} has label {label!r}: these losses need a strict preference (label 1.0, "
                             "chosen ≻ rejected); drop ties (preference_data: ties='drop') or swap flipped pairs")


def _pair_rows(tokenizer, pairs, max_length: int) -> tuple[list[dict], int, int]:
    """``train_dpo``'s paired input → (tokenized rows, pairs dropped as too long, pairs dropped as identical).

    ``pairs``: raw pairs (a list or a ``datasets.Dataset``; ``preference_data.tokenize_pairs`` tokenizes them), a
    ``TokenizedPairs``, or rows that already have the token columns (used as they are). Ties are refused here.
    """
    if isinstance(pairs, TokenizedPairs):
        rows, counts = pairs
    else:
        pairs = pairs.to_list() if isinstance(pairs, Dataset) else list(pairs)
        if pairs and isinstance(pairs[0], dict) and "chosen_input_ids" in pairs[0]:
            rows, counts = pairs, {}  # tokenized rows, used as they are
        else:
            rows, counts = tokenize_pairs(pairs, tokenizer, max_length)
    dropped, identical = counts.get("too_long", 0), counts.get("identical_tokens", 0)
    if not rows:
        raise ValueError(f"no pair to train on: {dropped} longer than max_length={max_length}, "
                         f"{identical} with chosen identical to rejected")
    _refuse_ties([r.get("label", 1.0) for r in rows], [r.get("index", i) for i, r in enumerate(rows)], "pair")
    return list(rows), dropped, identical


# --- data: KTO's unpaired examples ---------------------------------------------------------------------------


# --- a batch --------------------------------------------------------------------------------------------------


class ConcatenatedOutput(NamedTuple):
    """What :func:`concatenated_forward` returns."""

    chosen_logps: torch.Tensor  # (B,) log π(y_w|x), summed or averaged over the reply's tokens
    rejected_logps: torch.Tensor  # (B,) log π(y_l|x)
    per_token_logps: torch.Tensor  # (2B, T) aligned with input_ids, chosen rows first (0 where not a reply)
    completion_mask: torch.Tensor  # (2B, T)


def concatenated_forward(model, batch: dict, reduction: str) -> ConcatenatedOutput:
    """Score chosen and rejected replies in ONE forward pass of the stacked (2B, T) batch (``collate_pairs``).

    One pass instead of two: the model's weights are read once, and both halves see the same padding and the
    same kernels. ``reduction`` is ``LOSS_REDUCTION[loss]``: ``"sum"`` gives log π(y|x), ``"mean"`` gives
    log π(y|x)/|y|. Gradients flow unless the caller wraps this in ``torch.no_grad()``.
    """
    input_ids = batch["input_ids"]
    n = input_ids.shape[0]
    if n % 2 or ("num_items" in batch and int(batch["num_items"]) * 2 != n):
        raise ValueError(f"a pair batch must stack B chosen rows on B rejected rows; got {n} rows for "
                         f"num_items={batch.get('num_items')} pairs (mismatched chosen/rejected counts)")
    logps, per_token_logps = sequence_logps(model, input_ids, batch["attention_mask"], batch["completion_mask"],
                                             reduction)
    chosen_logps, rejected_logps = logps.chunk(2)  # chosen rows stacked first
    return ConcatenatedOutput(chosen_logps, rejected_logps, per_token_logps, batch["completion_mask"])


def _paired_ref_logps(batch: dict, cfg: DPOConfig, ref_model, reduction: str):
    if cfg.loss in REFERENCE_FREE_LOSSES:
        return None, None  # the reference is skipped entirely
    if cfg.precompute_ref_logps:
        if not all(name in batch for name in REF_PAIR_COLUMNS):
            raise missing_ref_error(REF_PAIR_COLUMNS)
        return batch["ref_chosen_logps"], batch["ref_rejected_logps"]
    if ref_model is None:
        raise ValueError(f"loss={cfg.loss!r} needs a reference model: pass ref_model (make_reference_model) or "
                         "set precompute_ref_logps=True")
    with torch.no_grad():
        ref = concatenated_forward(ref_model, batch, reduction)
    return ref.chosen_logps, ref.rejected_logps


def dpo_loss_sum(policy, batch: dict, cfg: DPOConfig, ref_model=None) -> tuple[torch.Tensor, dict]:
    """The shared loop's ``loss_fn``: (loss summed over the batch's items, metrics summed over them).

    Paired losses (items: pairs): one stacked forward of the policy (:func:`concatenated_forward`), the
    reference's log-probs (a no-grad forward of ``ref_model``, or the batch's precomputed ones, or none for
    the reference-free losses), then ``preference_loss``. ORPO adds ``orpo_nll_weight`` × the chosen reply's mean
    NLL, −log π(y_w|x)/|y_w|, per pair. KTO (items: examples) goes to :func:`kto_loss_sum`. A batch whose
    ``labels`` (``collate_pairs``) are not all 1.0 is refused: a tie is not a win.

    Metrics (TRL's names; the loop divides by the step's items): ``rewards/chosen``, ``rewards/rejected``,
    ``rewards/margins`` (chosen − rejected), ``rewards/accuracies`` (chosen > rejected, strictly: a tie counts
    0), ``logps/chosen``, ``logps/rejected`` (the policy's, with the loss's reduction); ORPO also
    ``losses/nll`` and ``losses/odds_ratio``.
    """
    check_dpo_config(cfg)
    if cfg.loss == "kto":
        return kto_loss_sum(policy, batch, cfg, ref_model)
    if "labels" in batch:
        labels = batch["labels"].tolist()
        _refuse_ties(labels, range(len(labels)), "the batch's pair")
    reduction = LOSS_REDUCTION[cfg.loss]
    out = concatenated_forward(policy, batch, reduction)
    ref_chosen_logps, ref_rejected_logps = _paired_ref_logps(batch, cfg, ref_model, reduction)
    extra = {"cdpo": {"label_smoothing": cfg.label_smoothing}, "simpo": {"gamma": cfg.gamma}}.get(cfg.loss, {})
    losses, chosen_rewards, rejected_rewards = preference_loss(
        cfg.loss, policy_chosen_logps=out.chosen_logps, policy_rejected_logps=out.rejected_logps,
        ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps, beta=cfg.beta, **extra)
    metrics = {}
    if cfg.loss == "orpo":
        nll = -out.chosen_logps  # (B,) mean NLL of each chosen reply (the reduction is "mean")
        metrics["losses/nll"] = nll.sum()
        metrics["losses/odds_ratio"] = losses.sum()
        losses = cfg.orpo_nll_weight * nll + losses
    margins = chosen_rewards - rejected_rewards
    metrics.update({
        "rewards/chosen": chosen_rewards.sum(),
        "rewards/rejected": rejected_rewards.sum(),
        "rewards/margins": margins.sum(),
        "rewards/accuracies": (margins > 0).float().sum(),
        "logps/chosen": out.chosen_logps.detach().sum(),
        "logps/rejected": out.rejected_logps.detach().sum(),
    })
    return losses.sum(), {k: float(v.detach()) for k, v in metrics.items()}


# --- the reference ----------------------------------------------------------------------------------------------


def _to(batch: dict, device: torch.device) -> dict:
    return {name: v.to(device) if torch.is_tensor(v) else v for name, v in batch.items()}


@torch.no_grad()
def compute_ref_logps(ref_model, rows, cfg: DPOConfig, pad_token_id: int) -> list[dict]:
    """Score every row with ``ref_model`` once; return copies of the rows with the reference's log-probs added.

    Paired rows get ``ref_chosen_logps``, ``ref_rejected_logps``; KTO rows (``cfg.loss == "kto"``) get
    ``ref_logps``, ``ref_kl_logps``. The reduction is ``LOSS_REDUCTION[cfg.loss]``, the autocast the loop's
    (``train.autocast_context``), and the model runs in eval mode (its mode is restored). Rows are scored
    ``cfg.batch_size`` at a time: a row's log-probs do not depend on its padding, but a different batch shape may
    change the last bits of a float32 sum (≈1e-5 on a log-prob of −300), so precomputed and live values agree to
    that precision.

    Args:
        rows: a list of row dicts or a ``datasets.Dataset``: ``preference_data.tokenize_pairs(...).rows``, or
            :func:`tokenize_kto`'s dataset.
    """
    check_dpo_config(cfg)
    rows = rows.to_list() if isinstance(rows, Dataset) else [dict(r) for r in rows]
    reduction = LOSS_REDUCTION[cfg.loss]
    device = next(ref_model.parameters()).device
    with eval_mode(ref_model), autocast_context(device, cfg.train.bf16):
        for start in range(0, len(rows), cfg.batch_size):
            chunk = rows[start:start + cfg.batch_size]
            if cfg.loss == "kto":
                b = _to(collate_kto(chunk, pad_token_id), device)
                logps, _ = sequence_logps(ref_model, b["input_ids"], b["attention_mask"],
                                           b["completion_mask"], reduction)
                kl_logps, _ = sequence_logps(ref_model, b["kl_input_ids"], b["kl_attention_mask"],
                                              b["kl_completion_mask"], reduction)
                values = (logps, kl_logps)
            else:
                out = concatenated_forward(ref_model, _to(collate_pairs(chunk, pad_token_id), device), reduction)
                values = (out.chosen_logps, out.rejected_logps)
            names = REF_KTO_COLUMNS if cfg.loss == "kto" else REF_PAIR_COLUMNS
            for name, v in zip(names, values):
                for r, x in zip(chunk, v.float().tolist()):
                    r[name] = x
    return rows


# --- the loop -------------------------------------------------------------------------------------------------


def _cycled(indices: list[int], gen: torch.Generator):
    """``take(k, n)``: the k-th run of n items from one fixed random order of ``indices``, cycled."""
    order = [indices[i] for i in torch.randperm(len(indices), generator=gen).tolist()]
    return lambda k, n: [order[(k * n + j) % len(order)] for j in range(n)]


def _visiting_order(rows: list[dict], cfg: DPOConfig):
    """``(pick, collate)``: ``pick(k)`` is the k-th micro-batch's row indices, from one fixed random order seeded by
    ``cfg.train.seed`` (cycled); KTO's micro-batches are stratified, each with desirable and undesirable examples
    in the data's proportion (at least one of each)."""
    gen = torch.Generator().manual_seed(cfg.train.seed)
    n = cfg.batch_size
    if cfg.loss != "kto":
        take = _cycled(list(range(len(rows))), gen)
        return (lambda k: take(k, n)), collate_pairs
    good = [i for i, r in enumerate(rows) if r["desirable"]]
    bad = [i for i, r in enumerate(rows) if not r["desirable"]]
    n_good = min(max(round(n * len(good) / len(rows)), 1), n - 1)  # both classes in every micro-batch
    take_good, take_bad = _cycled(good, gen), _cycled(bad, gen)
    return (lambda k: take_good(k, n_good) + take_bad(k, n - n_good)), collate_kto


def train_dpo(policy, tokenizer, pairs, cfg: DPOConfig, ref_model=None, progress: bool = True, eval_fn=None,
              eval_every: int = 0) -> dict[str, list]:
    """Train ``policy`` in place with ``cfg.loss`` on preference data; return the shared loop's history.

    Args:
        policy: the model to train (usually the SFT model). It is also the reference's starting point.
        pairs: preference pairs ``{"prompt", "chosen", "rejected"}`` (a list or a ``datasets.Dataset``), a
            ``preference_data.TokenizedPairs``, or tokenized rows with its columns (its ``.rows``, e.g. with
            ``compute_ref_logps``'s log-probs added). Every pair's ``label`` must be 1.0 (ties refused). For
            ``loss="kto"``: pairs (unrolled by :func:`kto_examples`: chosen → desirable, rejected →
            undesirable), unpaired examples ``{"prompt", "completion", "label"}``, or a ``tokenize_kto`` result.
        cfg: :class:`DPOConfig`. Rows are visited in one random order fixed by ``cfg.train.seed`` (cycled), so
            the same model, data and config give the same curve. KTO micro-batches are stratified: each holds
            desirable and undesirable examples in the data's proportion (at least one of each).
        ref_model: the frozen reference. ``None``: a copy of ``policy`` taken now (:func:`make_reference_model`),
            or, with ``precompute_ref_logps``, the policy itself scores the data before its first step. Unused by
            the reference-free losses (SimPO, ORPO).
        eval_fn, eval_every: passed to ``train.train``.

    The history adds ``data/num_items`` (pairs, or KTO examples), ``data/num_dropped`` (over ``max_length``),
    ``data/num_identical`` (chosen == rejected tokens) and ``charts/wall_time``.
    """
    check_dpo_config(cfg)
    if cfg.loss == "kto":
        identical = 0
        if isinstance(pairs, BuiltDataset):
            dataset, dropped = pairs
        else:
            examples = list(pairs)
            if examples and isinstance(examples[0], dict) and "chosen" in examples[0]:
                examples = kto_examples(examples)
            dataset, dropped = tokenize_kto(tokenizer, examples, cfg.max_length, seed=cfg.train.seed)
        rows = dataset.to_list()
    else:
        rows, dropped, identical = _pair_rows(tokenizer, pairs, cfg.max_length)
    if cfg.disable_dropout:
        disable_dropout(policy)
    if ref_model is not None:
        check_reference(ref_model, policy)
        ref_model.eval()
        if cfg.disable_dropout:
            disable_dropout(ref_model)
    if cfg.loss in REFERENCE_FREE_LOSSES:
        ref_model = None
    elif cfg.precompute_ref_logps:
        rows = compute_ref_logps(ref_model if ref_model is not None else policy, rows, cfg, tokenizer.pad_token_id)
        ref_model = None  # not needed during training
    elif ref_model is None:
        ref_model = make_reference_model(policy)

    pick, collate = _visiting_order(rows, cfg)
    device = next(policy.parameters()).device

    def get_batch(step: int, micro: int) -> dict:
        picked = pick(step * cfg.train.grad_accum + micro)
        return _to(collate([rows[i] for i in distributed.shard(picked)], tokenizer.pad_token_id), device)

    t0 = time.perf_counter()
    history = train(policy, get_batch, partial(dpo_loss_sum, cfg=cfg, ref_model=ref_model), cfg.train,
                    eval_fn=eval_fn, eval_every=eval_every, desc=cfg.loss, progress=progress)
    history["charts/wall_time"] = [time.perf_counter() - t0]
    history["data/num_items"] = [len(rows)]
    history["data/num_dropped"] = [dropped]
    history["data/num_identical"] = [identical]
    return history


# --- the recipe of `rlhfbook-lab dpo`: the SFT model + the shipped pairs → a model the gold judge scores -------

RECIPES: dict[str, dict] = {
    "dpo": {},
    "cdpo": {"loss": "cdpo"},
    "ipo": {"loss": "ipo", "beta": 0.5},
    "simpo": {"loss": "simpo", "beta": 2.0},
    "orpo": {"loss": "orpo"},
    "kto": {"loss": "kto", "batch_size": 32},
}
"""What each loss changes on :class:`DPOConfig`'s defaults in ``rlhfbook-lab dpo --loss <name>``: IPO's τ = 0.5,
SimPO's β = 2 (it wants β ≈ 2–10); KTO's items are examples, two per pair, so its batch is doubled and a step sees
the same replies as the paired losses'."""

FAST: dict[str, dict] = {loss: {"train.steps": 24, "train.lr": 1e-4, "train.warmup_steps": 4,
                                "batch_size": 16 if loss == "kto" else 8} for loss in RECIPES}
"""``--fast`` and the lessons' fast mode, on top of the recipe: 24 steps of 8 pairs at twice the lr: about 15 s of
CPU for the training (one thread), with noisier numbers."""

FAST_SIZES = dict(num_pairs=512, eval_prompts=128, kl_prompts=32)
"""What ``--fast`` passes to :func:`dpo_from_sft`: a random 512 of the pairs, judged on fewer prompts."""


def dpo_config(loss: str = "dpo", fast: bool = False, **overrides) -> DPOConfig:
    """The configuration ``rlhfbook-lab dpo --loss <loss>`` trains with: :class:`DPOConfig`'s defaults, then
    :data:`RECIPES` ``[loss]``, then :data:`FAST` ``[loss]`` if ``fast``, then ``overrides`` (any field, by dotted
    or unique name: ``beta=0.3``, ``steps=50`` for ``train.steps``; ``config.override``)."""
    return build(DPOConfig, RECIPES, loss, FAST[loss] if fast and loss in FAST else None, **overrides)


class DPORun(NamedTuple):
    """What :func:`dpo_from_sft` returns."""

    model: torch.nn.Module
    tokenizer: object
    history: dict[str, list]
    report: dict
    """The run's headline numbers (also in ``training_meta.json``). On the held-out prompts: ``gold_before`` /
    ``gold_after``, the mean gold score of greedy replies (with ``correct_*``, ``eos_*`` and ``gold_gain``), and
    ``gold_sampled_before`` / ``gold_sampled_after``, the same for one reply sampled at temperature 1 (seed 0):
    the policy the objective is about, tail and all. ``kl``: KL(π‖π_ref) per reply on the policy's samples
    (``evaluation.sampled_kl``; ``kl_k1`` its plain log-ratio estimate). ``accuracy``, ``margin``,
    ``logps_chosen``, ``logps_rejected``: the trainer's metrics over the last tenth of the steps.
    ``train_cpu_seconds``, and what was trained on."""
    evals: dict
    """The judged replies behind the report: ``evaluation.ChatEval`` under ``"greedy_after"``,
    ``"sampled_after"`` (and ``"greedy_before"``, ``"sampled_before"`` when the start was judged)."""


def _judge(model, tokenizer, problems) -> tuple[dict, dict]:
    """(summary, ChatEvals): greedy replies and one sampled reply (T = 1, seed 0) per problem, gold-judged."""
    evals = {"greedy": evaluate_chat(model, tokenizer, problems),
             "sampled": evaluate_chat(model, tokenizer, problems, greedy=False, seed=0)}
    greedy, sampled = evals["greedy"].overall, evals["sampled"].overall
    return {"gold": greedy["gold_score"], "correct": greedy["correct_rate"], "eos": greedy["eos_rate"],
            "gold_sampled": sampled["gold_score"]}, evals


def _training_pairs(pairs, num_pairs: int | None, seed: int) -> tuple[list[dict], str]:
    """(rows, where they came from): the shipped on-policy pairs, a jsonl file, or the given list; a seeded
    subset of at most ``num_pairs``."""
    if pairs is None:
        rows, source = load_preference_file("train", origin="on_policy"), "data/preferences/train.jsonl on_policy"
    elif isinstance(pairs, (str, Path)):
        rows, source = read_pairs(pairs), str(pairs)
    else:
        rows, source = list(pairs), "given"
    if num_pairs is not None:
        rows = subsample_pairs(rows, min(num_pairs, len(rows)), seed=seed)
    return rows, source


def _trainer_tail(history: dict[str, list]) -> dict:
    """The trainer's metrics over the last tenth of the steps, and the data counts."""
    tail = max(1, len(history["step"]) // 10)

    def last(key):
        return sum(history[key][-tail:]) / tail if key in history else None

    return dict(accuracy=last("rewards/accuracies"), margin=last("rewards/margins"),
                logps_chosen=last("logps/chosen"), logps_rejected=last("logps/rejected"),
                pairs=history["data/num_items"][0], pairs_dropped=history["data/num_dropped"][0],
                pairs_identical=history["data/num_identical"][0])


def dpo_from_sft(cfg: DPOConfig | None = None, policy: str | Path = "sft-tiny", pairs=None,
                 out: str | Path | None = None, overwrite: bool = False, num_pairs: int | None = None,
                 eval_prompts: int = 200, kl_prompts: int = 64, eval_every: int = 0, judge_before: bool = True,
                 progress: bool = True) -> DPORun:
    """Train ``policy`` with ``cfg.loss`` on preference pairs and judge it before and after with the gold judge.

    Args:
        cfg: :class:`DPOConfig` (default ``dpo_config()``: DPO with the class's defaults, β = 0.1).
        policy: the model to start from, also the reference π_ref (a shipped checkpoint name or a folder).
        pairs: ``None``: the on-policy part of the shipped ``data/preferences/train.jsonl`` (replies sampled from
            ``sft-tiny``, labelled by the gold annotator); a path to a jsonl of pairs (validated by
            ``preference_data.read_pairs``); or a list of pairs.
        out: save the trained model there (atomically, with ``training_meta.json`` and ``training_log.json``).
            An existing non-empty folder is refused before training unless ``overwrite``.
        num_pairs: train on a random subset of at most this many pairs (``preference_data.subsample_pairs``,
            seeded by ``cfg.train.seed``).
        eval_prompts: replies to ``world.heldout_prompts(eval_prompts, seed=0)`` give the gold scores.
        kl_prompts: one sampled reply to each of ``world.heldout_prompts(kl_prompts, seed=1)`` gives the KL.
        eval_every: also judge every this many steps (``eval/gold_score`` greedy, ``eval/gold_sampled``,
            ``eval/kl`` in the history): the points of a reward–KL curve. Not counted in ``train_cpu_seconds``.
        judge_before: judge the starting model too (skip it when comparing several runs from one start).
    """
    cfg = cfg or dpo_config()
    check_dpo_config(cfg)
    if out is not None:  # fail before training, not after
        out = check_output_folder(out, overwrite)
    rows, source = _training_pairs(pairs, num_pairs, cfg.train.seed)
    model, tokenizer = load_model(policy)
    ref = make_reference_model(model)  # π_ref: for the loss (unless precomputed) and for the KL
    problems, kl_problems = world.heldout_prompts(eval_prompts, seed=0), world.heldout_prompts(kl_prompts, seed=1)
    report = {"policy": str(policy), "loss": cfg.loss, "beta": cfg.beta, "steps": cfg.train.steps,
              "batch_size": cfg.batch_size, "lr": cfg.train.lr, "seed": cfg.train.seed,
              "precompute_ref_logps": cfg.precompute_ref_logps, "pairs_source": source,
              "eval_prompts": eval_prompts, "kl_prompts": kl_prompts}
    evals = {}
    if judge_before:
        verdict, before = _judge(model, tokenizer, problems)
        report.update({f"{k}_before": v for k, v in verdict.items()})
        evals.update({f"{k}_before": v for k, v in before.items()})
    last_eval, eval_cpu = {}, [0.0]

    def eval_fn(m, step):
        t = time.process_time()
        last_eval.update(step=step, judged=_judge(m, tokenizer, problems),
                         kl=sampled_kl(m, ref, tokenizer, kl_problems))
        eval_cpu[0] += time.process_time() - t
        verdict = last_eval["judged"][0]
        return {"eval/gold_score": verdict["gold"], "eval/gold_sampled": verdict["gold_sampled"],
                "eval/kl": last_eval["kl"].kl}

    t0 = time.process_time()
    history = train_dpo(model, tokenizer, rows, cfg, ref_model=ref, progress=progress,
                        eval_fn=eval_fn if eval_every else None, eval_every=eval_every)
    train_cpu = time.process_time() - t0 - eval_cpu[0]
    if last_eval.get("step") != cfg.train.steps:  # else the loop's last evaluation was of this very model
        last_eval.update(judged=_judge(model, tokenizer, problems), kl=sampled_kl(model, ref, tokenizer, kl_problems))
    (verdict, after), kl = last_eval["judged"], last_eval["kl"]
    report.update({f"{k}_after": v for k, v in verdict.items()})
    evals.update({f"{k}_after": v for k, v in after.items()})
    if judge_before:
        report["gold_gain"] = report["gold_after"] - report["gold_before"]
    report.update(kl=kl.kl, kl_k1=kl.kl_k1, kl_stderr=kl.stderr, train_cpu_seconds=train_cpu,
                  **_trainer_tail(history))
    if out is not None:
        meta = {"config": asdict(cfg), "report": report, "pairs_sha256_16": fingerprint(rows)}
        save_model(model, tokenizer, out, overwrite=overwrite,
                   extra_files={"training_meta.json": json.dumps(meta, indent=2, default=str),
                                "training_log.json": json.dumps(history)})
    return DPORun(model, tokenizer, history, report, evals)
