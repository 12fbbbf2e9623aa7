"""The one shared training loop: optimizer, warmup + cosine schedule, gradient accumulation, grad clip, tqdm,
and a metrics history. Every trainer (pretraining, SFT, reward models, DPO) is a thin layer on top.

The contract that makes gradient accumulation exact
----------------------------------------------------
``loss_fn(model, batch)`` returns the loss **summed** over the items of a micro-batch (tokens for language
modelling, pairs for DPO) and a dict of metrics; each micro-batch dict carries ``"num_items"``. The loop divides
every micro-batch's sum by the total items of the whole step *before* backward, so k micro-batches give the same
gradient as one batch of the same examples. (Averaging inside each micro-batch and then over micro-batches
weights a short micro-batch's tokens more: the classic accumulation bug.)

The same contract makes data parallel exact (``lm/distributed.py``): under ``torchrun`` each rank trains on its
slice of every micro-batch (the trainers' ``get_batch`` takes ``distributed.shard`` of the rows it picks), divides by
the *global* item total, and the gradients and metric sums are summed across ranks before the step.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.lm import distributed
from rlhfbook_lab.lm.models import autocast_dtype

__all__ = [
    "autocast_context",
    "lr_at",
    "make_optimizer",
    "optimizer_step",
    "train",
    "TrainConfig",
]


@dataclass
class TrainConfig:
    """Settings of the shared loop."""

    steps: int = 1000
    """Optimizer steps (we budget training by steps, not wall time: behaviour appears after a step count)."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    warmup_steps: int = 50
    """Linear warmup from 0 to ``lr``."""
    min_lr_ratio: float = 0.1
    """Cosine decay from ``lr`` down to ``min_lr_ratio * lr`` at the last step."""
    weight_decay: float = 0.1
    """AdamW weight decay (applied to matrices only, not to norms and biases)."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    log_every: int = 10
    """Refresh the progress bar every this many steps (the history records every step)."""
    seed: int = 0
    """Seeds torch before the first step."""
    bf16: bool | None = None
    """bf16 autocast: ``None`` = on CUDA only; ``True``/``False`` force it (CPU bf16 autocast works too)."""

    def __post_init__(self):
        check_int("steps", self.steps, minimum=1)
        check_number("lr", self.lr, minimum=0)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_number("min_lr_ratio", self.min_lr_ratio, minimum=0, maximum=1)
        check_number("weight_decay", self.weight_decay, minimum=0)
        if len(self.betas) != 2 or not all(0 <= check_number("betas", b) < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1); got {self.betas!r}")
        check_number("grad_clip", self.grad_clip, minimum=0)
        check_int("grad_accum", self.grad_accum, minimum=1)
        check_int("log_every", self.log_every, minimum=1)
        check_int("seed", self.seed, minimum=0)
        if self.bf16 not in (None, True, False):
            raise ValueError(f"bf16 must be None, True or False; got {self.bf16!r}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warmup, then cosine from ``lr`` to ``min_lr_ratio·lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on ≥2-D parameters only.

    Fused (one kernel over every tensor) when all parameters are floating point on CPU or CUDA, as TRL's default
    ``adamw_torch_fused``; otherwise torch's default. On CPU torch's default loops over the tensors in Python: for
    the tiny preset that step cost 3× the fused one, ~3 % of a training step (benchmarks/bench_reward.py)."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)


def optimizer_step(optimizer: torch.optim.Optimizer, params, grad_clip: float) -> torch.Tensor:
    """One optimizer step after ``backward``: clip the global gradient norm of ``params`` to ``grad_clip`` (0: no
    clipping), step, and clear the gradients. Returns the norm before clipping (every trainer logs it as
    ``charts/grad_norm``)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else 1e12)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def autocast_context(device: torch.device, bf16: bool | None) -> torch.autocast:
    """The autocast every ``loss_fn`` call of the loop runs under (``TrainConfig.bf16``): bf16 when ``bf16`` is
    True, or when it is None and ``device`` is a bf16-capable CUDA GPU (``models.autocast_dtype``); otherwise a
    disabled autocast (plain fp32). Use it wherever a number must match the loop's, e.g. precomputed log-probs."""
    dtype = autocast_dtype(device) if bf16 is None else (torch.bfloat16 if bf16 else None)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def train(
    model: torch.nn.Module,
    get_batch: Callable[[int, int], dict],
    loss_fn: Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]],
    cfg: TrainConfig,
    eval_fn: Callable[[torch.nn.Module, int], dict] | None = None,
    eval_every: int = 0,
    desc: str = "train",
    progress: bool = True,
) -> dict[str, list]:
    """Run ``cfg.steps`` optimizer steps; return the metrics history (a dict of lists; ``"step"`` aligns them).

    Args:
        model: trained in place (put in train mode; left in eval mode at the end).
        get_batch: ``get_batch(step, micro)`` → a dict of tensors with ``"num_items"`` (int).
        loss_fn: ``loss_fn(model, batch)`` → (loss summed over the batch's items, metrics dict of floats that
            are also sums over items; the history records their per-item mean over the step).
        eval_fn: ``eval_fn(model, step)`` → dict of floats, run every ``eval_every`` steps and after the last
            step; its keys go into the history with their own ``"eval/step"`` list.
    """
    torch.manual_seed(cfg.seed)
    device = next(model.parameters()).device
    opt = make_optimizer(model, cfg)
    history: dict[str, list] = defaultdict(list)
    model.train()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not (progress and distributed.is_main()), mininterval=1.0)
    for step in bar:
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        micro = [get_batch(step, i) for i in range(cfg.grad_accum)]
        total = int(distributed.all_reduce_sum([sum(int(b["num_items"]) for b in micro)])[0])  # over all ranks
        if total <= 0:
            raise ValueError(f"step {step}: the batch has no items to train on (num_items = {total})")
        sums: dict[str, float] = defaultdict(float)
        for b in micro:
            with autocast_context(device, cfg.bf16):
                loss_sum, metrics = loss_fn(model, b)
            (loss_sum / total).backward()
            sums["loss"] += float(loss_sum.detach())
            for k, v in metrics.items():
                sums[k] += float(v)
        distributed.sync_gradients(model.parameters())
        grad_norm = optimizer_step(opt, model.parameters(), cfg.grad_clip)
        keys = sorted(sums)
        sums = dict(zip(keys, distributed.all_reduce_sum([sums[k] for k in keys])))
        history["step"].append(step)
        history["losses/train"].append(sums.pop("loss") / total)
        for k, v in sums.items():
            history[k].append(v / total)
        history["charts/lr"].append(opt.param_groups[0]["lr"])
        history["charts/grad_norm"].append(float(grad_norm))
        history["charts/step_time"].append(time.perf_counter() - t0)
        history["charts/items"].append(total)
        if eval_fn is not None and ((eval_every and (step + 1) % eval_every == 0) or step + 1 == cfg.steps):
            model.eval()
            with torch.no_grad():
                for k, v in eval_fn(model, step + 1).items():
                    history[k].append(v)
            history["eval/step"].append(step + 1)
            model.train()
        if step % cfg.log_every == 0 or step + 1 == cfg.steps:
            bar.set_postfix(loss=f"{history['losses/train'][-1]:.3f}")
    model.eval()
    return dict(history)
