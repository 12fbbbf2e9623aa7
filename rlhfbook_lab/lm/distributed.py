"""Data parallel on several processes: the same trainers, launched by ``torchrun``.

    torchrun --nproc_per_node 2 -m rlhfbook_lab.cli sft --out runs/sft        # 2 processes (GPUs, or CPU cores)
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 -m rlhfbook_lab.cli sft ...

Nothing in a config changes: ``batch_size`` stays the **global** micro-batch (every process takes a 1/N slice
of it, ``rows[rank::N]``), so a run on N processes follows the same optimisation as a run on one.

Why the result is the same (numerically, not bitwise)
-----------------------------------------------------
The shared loop (``trainers/loop.py``) divides each micro-batch's *summed* loss by the items of the whole step
before ``backward``. On N processes every rank divides by the same global total (an all-reduce of the ranks'
item counts), and the gradients are then summed across ranks (an all-reduce): the result is
Σ_ranks Σ_items ∇ℓ / total — the single-process gradient, with the terms added in another order. Clipping reads
the global norm of that same gradient on every rank, so every rank takes the same AdamW step and the replicas stay
identical without broadcasting weights. Metrics are sums over items, all-reduced the same way. Only rank 0 shows a
progress bar and writes files.

With one process (no ``torchrun``, the default) every function here is the identity, and no ``torch.distributed``
call is made.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["all_reduce_sum", "init", "is_main", "rank", "shard", "sync_gradients", "world_size"]


def init() -> bool:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) and not yet
    joined: NCCL on CUDA (each process on GPU ``LOCAL_RANK``), gloo on CPU. Returns True when running distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without ``torchrun``)."""
    return dist.get_rank() if _active() else 0


def world_size() -> int:
    """The number of processes (1 without ``torchrun``)."""
    return dist.get_world_size() if _active() else 1


def is_main() -> bool:
    """True on the process that shows progress and writes checkpoints and logs (rank 0)."""
    return rank() == 0


def shard(items: list) -> list:
    """This rank's slice ``items[rank::N]`` of one global micro-batch (the whole list on one process).

    Raises ``ValueError`` when the batch has fewer items than processes (a rank would get nothing to train on)."""
    n = world_size()
    if n == 1:
        return items
    if len(items) < n:
        raise ValueError(f"batch_size: a micro-batch of {len(items)} item(s) cannot be split across {n} processes; "
                         f"use batch_size ≥ {n}")
    return items[rank()::n]


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64, one collective); the values themselves on one
    process."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


def sync_gradients(parameters) -> None:
    """Sum every trainable parameter's gradient over all ranks, in place (one flat all-reduce). A parameter that got
    no gradient on this rank counts as zeros, so every rank joins the same collective."""
    if world_size() == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()
