"""The reward model (book ch. 5): a causal LM backbone with a scalar head read at the last real token; saving,
loading, scoring replies and normalising the scores.

Its losses (Bradley-Terry, Plackett-Luce, calibration) are tensor maths in ``equations.reward_losses``; its
trainer is ``trainers.reward``. RL (``trainers.rl``) and the pipeline score samples with it.
"""

from __future__ import annotations

import copy as _copy
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rlhfbook_lab.equations.reward_losses import normalization_stats
from rlhfbook_lab.lm.data import collate_sft, conversation, tokenize_conversation
from rlhfbook_lab.lm.forward import eval_mode, position_ids_from_mask
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model, resolve, save_model

__all__ = [
    "HEAD_FILE",
    "load_reward_model",
    "normalize_on_policy",
    "normalize_on_replies",
    "reply_features",
    "RewardModel",
    "save_reward_model",
    "score_replies",
]


HEAD_FILE = "reward_head.safetensors"
"""The head's weights and normalisation, saved beside the backbone's ``model.safetensors``."""


class RewardModel(nn.Module):
    """r(x, y): a causal LM's final hidden state at the last real token of ``x + y``, times a linear head.

    .. math::  r(x, y) = \\big(w^\\top h_L(x, y)_{t^*} - \\mu\\big) / s,
               \\qquad t^* = \\text{the last position with attention\\_mask} = 1

    ``h_L`` is the backbone's last hidden state (after its final norm: ``backbone.base_model(...)``'s
    ``last_hidden_state``), so the LM head is not used. For a chat pair the last real token is the reply's
    ``<|end|>``, which has attended to the whole prompt and reply. Reading it by the attention mask works for
    right padding (``preference_data.collate_pairs``), left padding, and ``generation.generate``'s layout
    (left-padded prompt, right-padded completion: ``rm(gen.input_ids, gen.attention_mask)`` scores samples
    for RL directly, an unfinished one at its last token); positions come from the mask
    (``models.position_ids_from_mask``), so a row's reward does not depend on its padding.

    The head is ``nn.Linear(hidden, 1, bias=False)``: Bradley-Terry sees only reward *differences*, so a bias
    would get exactly zero gradient. The offset and scale live in two buffers instead, ``reward_mean`` μ and
    ``reward_std`` s (0 and 1 until :meth:`set_normalization`; see :func:`normalize_on_policy`), saved with
    the head. The head runs in float32 even under bf16 autocast (bf16 cannot resolve small reward gaps).
    """

    def __init__(self, backbone: nn.Module, seed: int = 0):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.head = nn.Linear(hidden, 1, bias=False)
        std = getattr(backbone.config, "initializer_range", 0.02)
        with torch.no_grad():
            self.head.weight.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))
        self.to(next(backbone.parameters()).device)

    @classmethod
    def from_causal_lm(cls, model: nn.Module, copy: bool = True, seed: int = 0) -> "RewardModel":
        """A reward model on top of ``model`` (any ``transformers`` causal LM, e.g. the SFT model), with a fresh
        head drawn from N(0, initializer_range²) by ``seed``.

        ``copy=True`` (default) trains a deep copy, so the policy you started from is left untouched;
        ``copy=False`` shares the weights.
        """
        return cls(_copy.deepcopy(model) if copy else model, seed=seed)

    def raw_rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """w^T h at the last real token of each row, before normalisation. Shapes: (B, T), (B, T) → (B,)."""
        if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask "
                             f"{tuple(attention_mask.shape)} must both have shape (B, T)")
        real = attention_mask.bool()
        empty = (~real.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"attention_mask has no real token in row(s) {empty}: nothing to score")
        out = self.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                       position_ids=position_ids_from_mask(attention_mask), use_cache=False)
        hidden = out.last_hidden_state  # (B, T, H)
        T = input_ids.shape[1]
        positions = torch.arange(T, device=input_ids.device).expand_as(input_ids)  # (B, T)
        last = torch.where(real, positions, -1).max(dim=1).values  # (B,): last real token, any padding side
        h_last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)
        with torch.autocast(h_last.device.type, enabled=False):
            return self.head(h_last.float()).squeeze(-1)  # (B,)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised rewards (raw − reward_mean) / reward_std. Shapes: (B, T), (B, T) → (B,), float32."""
        return (self.raw_rewards(input_ids, attention_mask) - self.reward_mean) / self.reward_std

    def set_normalization(self, mean: float, std: float) -> None:
        """Make :meth:`forward` return (raw − mean) / std (``mean=0, std=1`` undoes it)."""
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"normalisation needs a finite mean and a std > 0; got mean={mean}, std={std}")
        self.reward_mean.fill_(float(mean))
        self.reward_std.fill_(float(std))

    @property
    def is_normalized(self) -> bool:
        """True when :meth:`set_normalization` set anything but (0, 1)."""
        return float(self.reward_mean) != 0.0 or float(self.reward_std) != 1.0

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True) -> None:
        """Write the backbone with its own ``save_pretrained`` and the head + normalisation to
        :data:`HEAD_FILE` (what ``models.save_model`` calls; use :func:`save_reward_model`)."""
        self.backbone.save_pretrained(str(path), safe_serialization=safe_serialization)
        tensors = {"head.weight": self.head.weight, "reward_mean": self.reward_mean, "reward_std": self.reward_std}
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(Path(path) / HEAD_FILE),
                  metadata={"format": "pt", "hidden_size": str(self.head.in_features)})


def save_reward_model(rm: RewardModel, tokenizer, out: str | Path, overwrite: bool = False,
                      extra_files: dict[str, str] | None = None, save_dtype: torch.dtype | None = None) -> Path:
    """Save backbone, head and tokenizer atomically (``models.save_model``; ``save_dtype=torch.float16`` stores
    the backbone in half the bytes, the head stays float32). The folder also loads as a plain causal LM
    (``models.load_model``): the head is an extra file."""
    return save_model(rm, tokenizer, out, overwrite=overwrite, extra_files=extra_files, save_dtype=save_dtype)


def load_reward_model(name_or_path: str | Path, device: torch.device | str | None = None):
    """Load ``(RewardModel, tokenizer)`` saved by :func:`save_reward_model` (a folder or a shipped name), in eval
    mode on ``device`` (default ``models.get_device()``)."""
    backbone, tokenizer = load_model(name_or_path, device)
    head_path = Path(resolve(name_or_path)) / HEAD_FILE
    if not head_path.exists():
        raise FileNotFoundError(f"{head_path} not found: {name_or_path} is a causal LM, not a reward model "
                                "(start one with RewardModel.from_causal_lm)")
    rm = RewardModel(backbone)
    state = load_file(str(head_path), device=str(next(backbone.parameters()).device))
    with torch.no_grad():
        if state["head.weight"].shape != rm.head.weight.shape:
            raise ValueError(f"{head_path}: head weight {tuple(state['head.weight'].shape)} does not fit a "
                             f"backbone of hidden size {rm.head.in_features}")
        rm.head.weight.copy_(state["head.weight"])
        rm.reward_mean.copy_(state["reward_mean"])
        rm.reward_std.copy_(state["reward_std"])
    return rm.eval(), tokenizer


@torch.no_grad()
def score_replies(rm: RewardModel, tokenizer, prompts: list[str], replies: list[str], batch_size: int = 64,
                  raw: bool = False) -> torch.Tensor:
    """Rewards of ``replies`` to ``prompts`` (user messages), each rendered as a chat conversation
    (``data.tokenize_conversation``), right-padded and scored in batches. Returns Shape (N,), float32, on CPU.
    ``raw=True`` skips the normalisation."""
    if len(prompts) != len(replies):
        raise ValueError(f"got {len(prompts)} prompts and {len(replies)} replies; expected one reply per prompt")
    if not prompts:
        raise ValueError("prompts is empty")
    device = next(rm.parameters()).device
    rows = [tokenize_conversation(tokenizer, conversation(p, r)) for p, r in zip(prompts, replies)]
    out = []
    with eval_mode(rm):
        for i in range(0, len(rows), batch_size):
            batch = collate_sft(rows[i:i + batch_size], tokenizer.pad_token_id)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            out.append((rm.raw_rewards(ids, mask) if raw else rm(ids, mask)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def reply_features(rm: RewardModel, tokenizer, prompts: list[str], replies: list[str],
                   batch_size: int = 64) -> torch.Tensor:
    """What the head reads: the backbone's last hidden state at the last real token of each (prompt, reply)
    chat, φ(x, y). Shape (N, H), float32, on CPU; ``rm.head(φ).squeeze(-1)`` is ``score_replies(..., raw=True)``.

    Captured from the head's input while :func:`score_replies` runs (a forward hook), so it is exactly the
    model's own path. With the backbone frozen, a reward model is linear in these features, r = w·φ, and its
    Bradley-Terry fit is convex: ``preferences.fit_linear_bradley_terry`` fits w in milliseconds, the cheap
    way to train the many reward models a data-size or label-noise curve needs (lesson 11).
    """
    captured: list[torch.Tensor] = []
    handle = rm.head.register_forward_hook(lambda module, args, out: captured.append(args[0].float().cpu()))
    try:
        score_replies(rm, tokenizer, prompts, replies, batch_size, raw=True)
    finally:
        handle.remove()
    return torch.cat(captured)


def normalize_on_replies(rm: RewardModel, tokenizer, prompts: list[str], replies: list[str],
                         batch_size: int = 64) -> tuple[float, float]:
    """Set ``rm``'s normalisation so that these replies score mean 0, std 1; return (mean, std) of the raw
    scores (``reward_model.normalization_stats``)."""
    mean, std = normalization_stats(score_replies(rm, tokenizer, prompts, replies, batch_size, raw=True))
    rm.set_normalization(mean, std)
    return mean, std


@torch.no_grad()
def normalize_on_policy(rm: RewardModel, tokenizer, policy, prompts: list[str], num_samples: int = 4,
                        seed: int = 0, batch_size: int = 64, **generate_kwargs) -> tuple[float, float]:
    """Normalise ``rm`` to mean 0, std 1 on samples from a reference policy (e.g. the SFT model RL starts from).

    Samples ``num_samples`` replies per prompt with ``generation.generate`` (seeded; ``generate_kwargs`` such as
    ``temperature`` and ``max_new_tokens`` are passed on) and scores them in the sampler's own token layout,
    exactly as RL will. Rewards then read in units of "standard deviations of the reference policy's replies",
    so a KL coefficient or a reward threshold means the same thing whatever the head's scale. Returns the raw
    (mean, std).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    if not prompts:
        raise ValueError("prompts is empty")
    torch.manual_seed(seed)
    per_call = max(1, batch_size // num_samples)
    device = next(rm.parameters()).device
    raw = []
    with eval_mode(rm):
        for i in range(0, len(prompts), per_call):
            gen = generate(policy, tokenizer, prompts[i:i + per_call], num_return_sequences=num_samples,
                           **generate_kwargs)
            raw.append(rm.raw_rewards(gen.input_ids.to(device), gen.attention_mask.to(device)).float().cpu())
    mean, std = normalization_stats(torch.cat(raw))
    rm.set_normalization(mean, std)
    return mean, std
