"""The reward model (book ch. 5): a causal LM backbone with a scalar head read at the last real token; saving,
loading, scoring replies and normalising the scores.

Its losses (Bradley-Terry, Plackett-Luce, calibration) are tensor maths in ``equations.reward_losses``; its
trainer is ``trainers.reward``. RL (``trainers.rl``) and the pipeline score samples with it.
"""

from __future__ import annotations

import copy as _copy
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rlhfbook_lab.equations.reward_losses import SURPRISE_FEATURES, normalization_stats, token_surprise_features
from rlhfbook_lab.lm.data import collate_sft, conversation, tokenize_conversation
from rlhfbook_lab.lm.forward import eval_mode, position_ids_from_mask
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model, resolve, save_model

__all__ = [
    "CHECKER_FILE",
    "CheckingRewardModel",
    "HEAD_FILE",
    "load_reward_model",
    "normalize_on_policy",
    "normalize_on_replies",
    "reply_features",
    "RewardModel",
    "reply_token_mask",
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


def reply_token_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, assistant_id: int) -> torch.Tensor:
    """1 on the reply's tokens: the real tokens after the last ``<|assistant|>`` token of each row. Shapes:
    (B, T), (B, T) → (B, T) bool. Works for any padding (right, left, ``generation.generate``'s layout); a row
    without an ``<|assistant|>`` token is a ``ValueError`` (there is no reply to check)."""
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                         "must both have shape (B, T)")
    real = attention_mask.bool()
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)  # (B, T)
    start = torch.where(real & (input_ids == assistant_id), positions, -1).max(dim=1).values  # (B,)
    missing = (start < 0).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"row(s) {missing} have no <|assistant|> token: a checking reward model scores chat "
                         "replies (render them with data.tokenize_conversation)")
    return real & (positions > start.unsqueeze(1))


CHECKER_FILE = "checker.safetensors"
"""A :class:`CheckingRewardModel`'s own weights; ``checker.json`` beside it names its two frozen models."""


class CheckingRewardModel(nn.Module):
    """A reward model that checks answers: a frozen taste model plus a small checker reading a frozen reference
    language model's surprise at each reply token (issue 18; the counterfactual data of RRM, Liu et al. 2024).

    .. math::  r(x, y) = \alpha\\, r_{taste}(x, y) + \beta\\, \\sigma\\Big(b + \\sum_{t \\in y}
                 g_t\\, w^\top f_t\\Big), \\qquad g_t = \\sigma\big(\\mathrm{MLP}(h_t)\big)

    ``f_t`` are the reference model's :func:`~rlhfbook_lab.equations.reward_losses.token_surprise_features` of
    reply token t + 1 and ``h_t`` its last hidden state at t (what it knew before seeing that token); the gate
    ``g_t`` learns *where* an answer is decided (a digit of a sum, the first letter of a sentiment word), ``w``
    how surprise there counts. The σ makes the check saturate: two wrong replies both score near 0 on it and two
    right ones near β, so on pairs that differ only in taste the taste model decides — a graded check (one wrong
    sum less wrong than another) would add noise there. The frozen models are not trained (the checker has about
    12,000 parameters and trains in minutes on precomputed features, ``trainers.reward.train_checker``); what the
    checker can check is bounded by what the reference model knows (lesson 05's *knowledge reach*).

    ``raw_rewards``/``forward``/``set_normalization`` behave as :class:`RewardModel`'s, so RL, evaluation and
    normalisation take either. Saved as ``checker.safetensors`` + ``checker.json`` naming the frozen models
    (:func:`save_reward_model`), so a checkpoint is a few kilobytes beside the models it names.
    """

    def __init__(self, taste: "RewardModel", reference: nn.Module, assistant_id: int, names: dict | None = None,
                 gate_hidden: int = 64, seed: int = 0):
        super().__init__()
        self.taste, self.reference = taste, reference
        for p in list(taste.parameters()) + list(reference.parameters()):
            p.requires_grad_(False)
        self.assistant_id = int(assistant_id)
        self.names = dict(names or {})
        hidden = reference.config.hidden_size
        g = torch.Generator().manual_seed(seed)
        self.gate = nn.Sequential(nn.Linear(hidden, gate_hidden), nn.Tanh(), nn.Linear(gate_hidden, 1))
        self.value = nn.Linear(len(SURPRISE_FEATURES), 1)
        with torch.no_grad():
            for lin in (self.gate[0], self.gate[2]):
                lin.weight.uniform_(-1.0, 1.0, generator=g).mul_(lin.in_features ** -0.5)
                lin.bias.zero_()
            self.value.weight.zero_()
            self.value.bias.zero_()
        self.alpha = nn.Parameter(torch.ones(()))
        self.beta = nn.Parameter(torch.full((), 2.0))
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))
        self.to(next(reference.parameters()).device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The checker's own parameters (the taste and reference models stay frozen)."""
        return [*self.gate.parameters(), *self.value.parameters(), self.alpha, self.beta, self.bias]

    @torch.no_grad()
    def frozen_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the frozen models say about each row, the checker's whole input: ``taste`` (B,) the taste model's
        raw reward; ``hidden`` (B, T − 1, H) the reference's last hidden state at t; ``features`` (B, T − 1, 5)
        its surprise at token t + 1; ``mask`` (B, T − 1) float, 1 where token t + 1 is a reply token."""
        mask = reply_token_mask(input_ids, attention_mask, self.assistant_id)
        out = self.reference.model(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids_from_mask(attention_mask), use_cache=False)
        hidden = out.last_hidden_state  # (B, T, H)
        logits = self.reference.lm_head(hidden)  # (B, T, V)
        return {"taste": self.taste.raw_rewards(input_ids, attention_mask).float(),
                "hidden": hidden[:, :-1].float(), "features": token_surprise_features(logits, input_ids),
                "mask": mask[:, 1:].float()}

    def check_logit(self, hidden: torch.Tensor, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z = b + Σ_t mask_t · g_t · w^T f_t. Shapes: (B, T', H), (B, T', 5), (B, T') → (B,)."""
        gates = torch.sigmoid(self.gate(hidden.float())).squeeze(-1)  # (B, T')
        values = self.value(features.float()).squeeze(-1)  # (B, T')
        return self.bias + (gates * values * mask).sum(dim=1)

    def reward_from_inputs(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """α · taste + β · σ(z) from :meth:`frozen_inputs` (precomputed for training). Shape (B,)."""
        z = self.check_logit(inputs["hidden"], inputs["features"], inputs["mask"])
        return self.alpha * inputs["taste"] + self.beta * torch.sigmoid(z)

    def raw_rewards(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """r(x, y) before normalisation. Shapes: (B, T), (B, T) → (B,), float32."""
        with torch.autocast(input_ids.device.type, enabled=False):
            return self.reward_from_inputs(self.frozen_inputs(input_ids, attention_mask))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Normalised rewards (raw − reward_mean) / reward_std. Shapes: (B, T), (B, T) → (B,), float32."""
        return (self.raw_rewards(input_ids, attention_mask) - self.reward_mean) / self.reward_std

    set_normalization = RewardModel.set_normalization
    is_normalized = RewardModel.is_normalized

    def save_pretrained(self, path: str | Path, safe_serialization: bool = True) -> None:
        """Write the checker's weights and normalisation to :data:`CHECKER_FILE` and ``checker.json`` (the names
        of the frozen taste and reference models, which must be shipped names or folders that still exist)."""
        missing = [k for k in ("taste", "reference") if not self.names.get(k)]
        if missing:
            raise ValueError(f"names must give the {missing} model(s) to save a checking reward model: it stores "
                             "only its own weights and the names of the frozen models it reads")
        tensors = {k: v for k, v in self.state_dict().items() if not k.startswith(("taste.", "reference."))}
        save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()},
                  str(Path(path) / CHECKER_FILE), metadata={"format": "pt"})
        (Path(path) / "checker.json").write_text(json.dumps({
            **self.names, "assistant_id": self.assistant_id, "gate_hidden": self.gate[0].out_features,
            "features": list(SURPRISE_FEATURES)}, indent=2))


def _load_checking(path: Path, device) -> tuple["CheckingRewardModel", object]:
    spec = json.loads((path / "checker.json").read_text())
    if spec.get("features") != list(SURPRISE_FEATURES):
        raise ValueError(f"{path}/checker.json: features {spec.get('features')} are not this package's "
                         f"{list(SURPRISE_FEATURES)}")
    taste, _ = load_reward_model(spec["taste"], device)
    reference, tokenizer = load_model(spec["reference"], device)
    crm = CheckingRewardModel(taste, reference, spec["assistant_id"], {"taste": spec["taste"],
                              "reference": spec["reference"]}, gate_hidden=spec["gate_hidden"])
    state = load_file(str(path / CHECKER_FILE), device=str(next(reference.parameters()).device))
    own = {k for k in crm.state_dict() if not k.startswith(("taste.", "reference."))}
    if set(state) != own:
        raise ValueError(f"{path / CHECKER_FILE}: tensors {sorted(state)} do not match a checker's {sorted(own)}")
    crm.load_state_dict(state, strict=False)
    return crm.eval(), tokenizer


def save_reward_model(rm: RewardModel, tokenizer, out: str | Path, overwrite: bool = False,
                      extra_files: dict[str, str] | None = None, save_dtype: torch.dtype | None = None) -> Path:
    """Save backbone, head and tokenizer atomically (``models.save_model``; ``save_dtype=torch.float16`` stores
    the backbone in half the bytes, the head stays float32). The folder also loads as a plain causal LM
    (``models.load_model``): the head is an extra file."""
    return save_model(rm, tokenizer, out, overwrite=overwrite, extra_files=extra_files, save_dtype=save_dtype)


def load_reward_model(name_or_path: str | Path, device: torch.device | str | None = None):
    """Load ``(RewardModel, tokenizer)`` saved by :func:`save_reward_model` (a folder or a shipped name), in eval
    mode on ``device`` (default ``models.get_device()``); a folder holding ``checker.json`` loads as a
    :class:`CheckingRewardModel` with the frozen models it names."""
    src = Path(str(resolve(name_or_path)))
    if (src / "checker.json").exists():
        return _load_checking(src, device)
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
