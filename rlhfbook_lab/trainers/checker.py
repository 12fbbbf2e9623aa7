"""Training the checker of a :class:`~rlhfbook_lab.lm.reward_model.CheckingRewardModel` (issue 18): Bradley-Terry on
preference pairs and counterfactual minimal pairs, on features of frozen models computed once.

The taste model and the reference language model are frozen, so everything they say about a pair is computed once
(:func:`checker_inputs`, about 5 CPU-minutes for the shipped pairs and their counterfactual twins) and each step
only runs the checker's ~12,000 parameters: every step draws ``batch_size`` preference pairs and ``batch_size``
counterfactual ones and minimises

.. math::  \\mathcal{L} = \\lambda\\, \\mathcal{L}_{BT}(\\text{preferences}) + (1 - \\lambda)\\,
             \\mathcal{L}_{BT}(\\text{counterfactual}),
           \\qquad \\mathcal{L}_{BT} = -\\big[\\ell \\log\\sigma(r_c - r_r) + (1 - \\ell)\\log\\sigma(r_r - r_c)\\big]

with ``ℓ`` each pair's label (1: chosen preferred; 0.5: a tie, which pulls the two rewards together). Both sets
sit in every step, so neither can erase what the other taught — the failure of the fine-tuned mixes recorded in
``trainers.reward.mix_rm_config``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.equations.reward_losses import bradley_terry_loss
from rlhfbook_lab.lm.data import collate_sft, tokenize_pairs
from rlhfbook_lab.lm.forward import eval_mode
from rlhfbook_lab.lm.reward_model import CheckingRewardModel

__all__ = ["CheckerConfig", "checker_inputs", "soft_bradley_terry_loss", "train_checker"]


@dataclass
class CheckerConfig:
    """How the checker of ``rm-check-tiny`` is trained (``rlhfbook-lab rm --recipe check``)."""

    steps: int = 600
    """Adam steps (each on ``batch_size`` pairs of each set)."""
    lr: float = 3e-3
    """Adam's learning rate (constant: the checker is small and its loss smooth)."""
    batch_size: int = 256
    """Pairs of each set per step."""
    preference_weight: float = 0.7
    """λ: the preference pairs' share of the loss; 1 − λ the counterfactual pairs'."""
    gate_hidden: int = 64
    """Width of the gate's hidden layer."""
    seed: int = 0
    """Seeds the checker's initial weights and the batches."""
    feature_batch_size: int = 64
    """Rows per forward pass of the frozen models when computing the features."""

    def __post_init__(self):
        for name in ("steps", "batch_size", "gate_hidden", "feature_batch_size"):
            check_int(name, getattr(self, name), 1)
        check_number("lr", self.lr, 0.0, strict=True)
        check_number("preference_weight", self.preference_weight, 0.0, 1.0)


def soft_bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry with soft labels: −[ℓ log σ(r_c − r_r) + (1 − ℓ) log σ(r_r − r_c)], averaged. Shapes:
    (B,), (B,), (B,) → (); ℓ = 1 is ``reward_losses.bradley_terry_loss``, ℓ = 0.5 a tie (``trainers.reward.rm_loss_sum``
    weighs the same two terms, with a margin, and sums)."""
    if not (chosen.shape == rejected.shape == labels.shape) or chosen.dim() != 1:
        raise ValueError(f"chosen, rejected and labels must all have shape (B,); got {tuple(chosen.shape)}, "
                         f"{tuple(rejected.shape)}, {tuple(labels.shape)}")
    return (labels * bradley_terry_loss(chosen, rejected, reduction="none")
            + (1 - labels) * bradley_terry_loss(rejected, chosen, reduction="none")).mean()


def _pad_cat(chunks: list[torch.Tensor]) -> torch.Tensor:
    width = max(c.shape[1] for c in chunks)
    return torch.cat([F.pad(c, (0, 0) * (c.dim() - 2) + (0, width - c.shape[1])) for c in chunks])


@torch.no_grad()
def checker_inputs(crm: CheckingRewardModel, tokenizer, pairs: list[dict], batch_size: int = 64) -> dict:
    """The frozen models' view of every pair, computed once: ``{"chosen": inputs, "rejected": inputs, "labels":
    (N,), "index": [i, ...]}``, each ``inputs`` :meth:`CheckingRewardModel.frozen_inputs` of that side stacked over
    the pairs (``hidden`` stored in float16 to halve its memory: 0.6 GB for the 5,371 shipped pairs). Pairs that
    tokenize identically are dropped (``tokenize_pairs``); ``index`` says which were kept."""
    tok = tokenize_pairs(pairs, tokenizer)
    if not tok.rows:
        raise ValueError("no pair left to compute the checker's inputs on (all dropped as identical)")
    out: dict = {"labels": torch.tensor([r["label"] for r in tok.rows]), "index": [r["index"] for r in tok.rows]}
    device = next(crm.parameters()).device
    with eval_mode(crm):
        for side in ("chosen", "rejected"):
            seqs = [{"input_ids": r[f"{side}_input_ids"], "completion_mask": r[f"{side}_completion_mask"]}
                    for r in tok.rows]
            parts: dict[str, list[torch.Tensor]] = {"taste": [], "hidden": [], "features": [], "mask": []}
            for i in range(0, len(seqs), batch_size):
                batch = collate_sft(seqs[i:i + batch_size], tokenizer.pad_token_id)
                got = crm.frozen_inputs(batch["input_ids"].to(device), batch["attention_mask"].to(device))
                for k, v in got.items():
                    parts[k].append(v.half().cpu() if k == "hidden" else v.cpu())
            out[side] = {"taste": torch.cat(parts["taste"]),
                         **{k: _pad_cat(parts[k]) for k in ("hidden", "features", "mask")}}
    return out


def _rows(inputs: dict, idx: torch.Tensor) -> dict:
    return {k: v[idx] for k, v in inputs.items()}


def _pair_rewards(crm: CheckingRewardModel, data: dict, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (crm.reward_from_inputs(_rows(data["chosen"], idx)), crm.reward_from_inputs(_rows(data["rejected"], idx)))


def train_checker(crm: CheckingRewardModel, preferences: dict, counterfactual: dict, cfg: CheckerConfig,
                  progress: bool = False) -> dict[str, list]:
    """Fit the checker on two sets of :func:`checker_inputs` (see the module docstring for the loss); the frozen
    models are not touched. Returns the history: ``step``, ``losses/train``, ``losses/preferences``,
    ``losses/counterfactual`` every 50 steps and ``charts/cpu_seconds``."""
    params = crm.trainable_parameters()
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_pref, n_cf = len(preferences["labels"]), len(counterfactual["labels"])
    history: dict[str, list] = {"step": [], "losses/train": [], "losses/preferences": [], "losses/counterfactual": []}
    c0 = time.process_time()
    crm.train()
    for step in range(1, cfg.steps + 1):
        ip, ic = torch.randint(n_pref, (cfg.batch_size,), generator=gen), torch.randint(n_cf, (cfg.batch_size,),
                                                                                          generator=gen)
        lp = soft_bradley_terry_loss(*_pair_rewards(crm, preferences, ip), preferences["labels"][ip])
        lc = soft_bradley_terry_loss(*_pair_rewards(crm, counterfactual, ic), counterfactual["labels"][ic])
        loss = cfg.preference_weight * lp + (1 - cfg.preference_weight) * lc
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg.steps:
            for k, v in (("step", step), ("losses/train", loss.item()), ("losses/preferences", lp.item()),
                         ("losses/counterfactual", lc.item())):
                history[k].append(v)
            if progress:
                print(f"checker step {step}/{cfg.steps}: loss {loss.item():.4f} (preferences {lp.item():.4f}, "
                      f"counterfactual {lc.item():.4f})", file=sys.stderr, flush=True)
    crm.eval()
    history["charts/cpu_seconds"] = [time.process_time() - c0]
    return history
