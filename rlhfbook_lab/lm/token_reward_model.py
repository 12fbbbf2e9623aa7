"""A reward model with a logit at every token (book ch. 5 and 7): the model behind outcome and process reward
models (ORM, PRM), how their replies are tokenized with the tokens that end each step marked, and how replies
are scored.

The losses and the scores are tensor maths in ``equations.process_rewards`` (and ``equations.reward_losses.orm_loss``);
the trainer is ``trainers.verifier``. The Bradley-Terry reward model, one scalar per reply, is ``lm.reward_model``.
"""

from __future__ import annotations

import copy as _copy

import torch
from torch import nn

from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.equations.process_rewards import orm_score, prm_score
from rlhfbook_lab.lm.data import collate_sft, conversation, tokenize_conversation
from rlhfbook_lab.lm.forward import eval_mode, position_ids_from_mask

__all__ = ["TokenRewardModel", "collate_steps", "tokenize_steps", "token_reward_scores"]


class TokenRewardModel(nn.Module):
    """z_t: a causal LM's final hidden state at *every* position, times a linear head with a bias.

    .. math::  z_t = w^\\top h_L(x, y)_t + b, \\qquad p_t = \\sigma(z_t)

    p_t is the model's probability that the reply is right (an ORM, trained on the outcome at every reply token)
    or that the step ending at t is right (a PRM, trained at step ends only). Unlike the Bradley-Terry head of
    ``reward_model.RewardModel`` it has a bias: binary cross-entropy sees absolute probabilities, not differences.
    Positions come from the attention mask, so a row's logits do not depend on its padding.

    With ``surprise=True`` the head also reads two numbers per position, from the backbone's own language-model
    head: ℓ_t = log π(y_t | y_<t), the log-probability it gives the reply token at t, and min_{s ≤ t} ℓ_s over the
    reply so far (both 0 outside the reply, detached: features, not targets):

    .. math::  z_t = w^\\top h_t + u_1 \\ell_t + u_2 \\min_{s \\le t} \\ell_s + b

    A backbone that writes the replies itself (the policy, as Cobbe et al. 2021 start their verifier from the
    generator) has the arithmetic in its next-token predictions; a wrong digit is a token it found unlikely. The
    hidden state alone does not hand that comparison to a linear head, and at this scale fine-tuning does not build it
    within a CPU budget (``recipes.process_rewards`` measures both).
    """

    def __init__(self, backbone: nn.Module, seed: int = 0, surprise: bool = False):
        super().__init__()
        self.backbone = backbone
        self.surprise = bool(surprise)
        self.head = nn.Linear(backbone.config.hidden_size + (2 if self.surprise else 0), 1)
        std = getattr(backbone.config, "initializer_range", 0.02)
        with torch.no_grad():
            self.head.weight.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))
            self.head.bias.zero_()
        self.to(next(backbone.parameters()).device)

    @classmethod
    def from_causal_lm(cls, model: nn.Module, copy: bool = True, seed: int = 0,
                       surprise: bool = False) -> "TokenRewardModel":
        """A token reward model on ``model`` (a deep copy unless ``copy=False``) with a fresh head (``seed``)."""
        return cls(_copy.deepcopy(model) if copy else model, seed=seed, surprise=surprise)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                completion_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits z at every position. Shapes: (B, T), (B, T), optional (B, T) → (B, T), float32.
        ``completion_mask`` (1 on the reply) is required with ``surprise=True``."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask "
                             f"{tuple(attention_mask.shape)} must both have shape (B, T)")
        out = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                       position_ids=position_ids_from_mask(attention_mask), use_cache=False)
        hidden = out.last_hidden_state  # (B, T, H)
        with torch.autocast(hidden.device.type, enabled=False):
            features = hidden.float()
            if self.surprise:
                if completion_mask is None or completion_mask.shape != input_ids.shape:
                    raise ValueError("completion_mask of shape (B, T) is required when surprise=True")
                with torch.no_grad():
                    lm_logits = self.backbone.get_output_embeddings()(hidden).float()  # (B, T, V)
                    m = completion_mask.bool()
                    logps = per_token_logprobs(lm_logits, input_ids).masked_fill(~m, 0.0)  # ℓ_t, (B, T)
                    running_min = logps.cummin(dim=1).values.masked_fill(~m, 0.0)  # min over the reply so far
                extra = torch.stack([logps, running_min], dim=-1)  # (B, T, 2)
                features = torch.cat([features, extra], dim=-1)  # (B, T, H + 2)
            return self.head(features).squeeze(-1)  # (B, T)


def tokenize_steps(tokenizer, prompt: str, reply: str, step_ends: list[int],
                   step_labels: list[float] | None = None) -> dict[str, list]:
    """One (prompt, reply) chat as a training row with its steps marked.

    Args:
        step_ends: character indices into ``reply`` of each step's last character (``world.thinking.step_ends``);
            the token holding that character gets ``step_mask`` 1. An empty list marks the reply's last
            character instead (a reply with no finished step is read where it stops).
        step_labels: one label per step (or ``None``): written at the same tokens in ``step_labels``.

    Returns:
        ``input_ids``, ``completion_mask`` (``data.tokenize_conversation``: the reply and its ``<|end|>``),
        ``step_mask`` and ``step_labels`` (0.0 off the steps), lists of length T.
    """
    row = tokenize_conversation(tokenizer, conversation(prompt, reply))
    ids, cmask = row["input_ids"], row["completion_mask"]
    start = cmask.index(1)
    n_reply = len(tokenizer.encode(reply, add_special_tokens=False))
    if not reply or start + n_reply != len(ids) - 1:
        raise ValueError(f"the reply {reply!r} is not its own tokens followed by one end token in the chat: cannot "
                         "mark its steps")
    ends = list(step_ends) if step_ends else [len(reply) - 1]
    if any(not 0 <= e < len(reply) for e in ends):
        raise ValueError(f"step_ends must be character indices into the reply (0..{len(reply) - 1}); got {step_ends}")
    if step_labels is not None and len(step_labels) != len(ends):
        raise ValueError(f"step_labels must have one label per step ({len(ends)}); got {len(step_labels)}")
    step_mask, labels = [0] * len(ids), [0.0] * len(ids)
    for k, e in enumerate(ends):
        t = start + len(tokenizer.encode(reply[:e + 1], add_special_tokens=False)) - 1  # the token ending at e
        step_mask[t] = 1
        labels[t] = float(step_labels[k]) if step_labels is not None else 0.0
    return {"input_ids": ids, "completion_mask": cmask, "step_mask": step_mask, "step_labels": labels}


def collate_steps(rows: list[dict], pad_token_id: int) -> dict:
    """Right-pad :func:`tokenize_steps` rows: ``data.collate_sft``'s batch plus ``step_mask`` (B, T) long and
    ``step_labels`` (B, T) float, 0 on padding."""
    batch = collate_sft([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]} for r in rows],
                        pad_token_id)
    T = batch["input_ids"].shape[1]
    batch["step_mask"] = torch.tensor([r["step_mask"] + [0] * (T - len(r["step_mask"])) for r in rows])
    batch["step_labels"] = torch.tensor([r["step_labels"] + [0.0] * (T - len(r["step_labels"])) for r in rows])
    return batch


@torch.no_grad()
def token_reward_scores(model: TokenRewardModel, tokenizer, prompts: list[str], replies: list[str],
                        step_ends: list[list[int]], batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Every score a token reward model gives each reply, in one pass: ``"orm"`` (p at the last reply token,
    ``process_rewards.orm_score``), ``"prm_min"`` and ``"prm_product"`` (its step probabilities aggregated,
    ``process_rewards.prm_score``). Each Shape (N,), float32, on CPU."""
    if not (len(prompts) == len(replies) == len(step_ends)) or not prompts:
        raise ValueError(f"need one reply and one step_ends list per prompt (and at least one prompt); got "
                         f"{len(prompts)} prompts, {len(replies)} replies, {len(step_ends)} step_ends")
    device = next(model.parameters()).device
    out: dict[str, list] = {"orm": [], "prm_min": [], "prm_product": []}
    with eval_mode(model):
        for i in range(0, len(prompts), batch_size):
            rows = [tokenize_steps(tokenizer, p, r, e) for p, r, e in
                    zip(prompts[i:i + batch_size], replies[i:i + batch_size], step_ends[i:i + batch_size])]
            batch = collate_steps(rows, tokenizer.pad_token_id)
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device),
                           batch["completion_mask"].to(device)).cpu()  # (B, T)
            out["orm"].append(orm_score(logits, batch["completion_mask"]))
            for how in ("min", "product"):
                out[f"prm_{how}"].append(prm_score(logits, batch["step_mask"], how))
    return {k: torch.cat(v) for k, v in out.items()}
