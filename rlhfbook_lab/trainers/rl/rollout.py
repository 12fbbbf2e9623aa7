"""Rollouts: sample G completions of each prompt, score them with the reward source (and the gold judge, always),
and read the reference's (and the value head's) log-probs of them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from rlhfbook_lab import world
from rlhfbook_lab.equations.policy_gradient import informative_groups
from rlhfbook_lab.lm.forward import eval_mode
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import autocast_dtype, resolve
from rlhfbook_lab.lm.reward_model import CheckingRewardModel, RewardModel, load_reward_model
from rlhfbook_lab.trainers.loop import autocast_context
from rlhfbook_lab.trainers.rl.config import RLConfig
from rlhfbook_lab.trainers.rl.forward import ValueHead, score_tokens, trim_columns

TENSORS = ("input_ids", "attention_mask", "completion_mask", "old_logps", "ref_logps", "old_values", "advantages",
           "returns")
"""The (B, P + T) tensors of a :class:`Rollout`, in generate's layout."""


@dataclass
class Rollout:
    """One batch of B = prompts × G completions and everything the update needs. Tensors (B, P + T) are aligned
    with ``input_ids`` (``generation``'s layout: left-padded prompt, right-padded completion)."""

    prompts: list[str]
    """The prompt of each row (each repeated G times)."""
    texts: list[str]
    """The completions, decoded."""
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    old_logps: torch.Tensor
    """log π_old of each sampled token (the sampler's own at temperature 1), 0 off the completion."""
    ref_logps: torch.Tensor
    """log π_ref of each sampled token, 0 off the completion."""
    scores: torch.Tensor
    """(B,) the reward source's score of each completion."""
    gold: torch.Tensor
    """(B,) the gold judge's score (always computed)."""
    finished: torch.Tensor
    """(B,) bool: the completion ended with EOS."""
    group_size: int
    old_values: torch.Tensor | None = None
    """(B, P + T) the value head's V at rollout time (PPO), else None."""
    advantages: torch.Tensor | None = None
    """(B, P + T), filled by :func:`compute_advantages`."""
    returns: torch.Tensor | None = None
    """(B, P + T) value targets (PPO), filled by :func:`compute_advantages`."""

    def rows(self, index: list[int]) -> "Rollout":
        """The rollout of rows ``index`` only (whole groups, for a process's share of a rollout)."""
        pick = torch.as_tensor(index, dtype=torch.long)

        def take(x):
            return None if x is None else x[pick.to(x.device)]
        return Rollout(prompts=[self.prompts[i] for i in index], texts=[self.texts[i] for i in index],
                       input_ids=take(self.input_ids), attention_mask=take(self.attention_mask),
                       completion_mask=take(self.completion_mask), old_logps=take(self.old_logps),
                       ref_logps=take(self.ref_logps), scores=take(self.scores), gold=take(self.gold),
                       finished=take(self.finished), group_size=self.group_size, old_values=take(self.old_values),
                       advantages=take(self.advantages), returns=take(self.returns))

    @property
    def prompt_length(self) -> int:
        """P: the column where every row's completion starts (its first token is always a completion token)."""
        return int(self.completion_mask.any(dim=0).long().argmax())

    def minibatch(self, rows: torch.Tensor) -> dict:
        """The tensors of ``rows`` as a dict, unused columns trimmed."""
        names = ("input_ids", "attention_mask", "completion_mask", "old_logps", "ref_logps", "advantages",
                 "returns", "old_values")
        return trim_columns({n: getattr(self, n)[rows] for n in names if getattr(self, n) is not None})


def check_scores(scores, n: int, what: str) -> torch.Tensor:
    scores = torch.as_tensor(scores, dtype=torch.float32).detach().cpu().flatten()
    if scores.shape != (n,):
        raise ValueError(f"{what} must give one score per completion, shape ({n},); got {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
        raise ValueError(f"rewards must be finite: {what} returned NaN or inf for completion(s) {bad}")
    return scores


def gold_scores(prompts: list[str], texts: list[str]) -> torch.Tensor:
    return torch.tensor([world.gold_score(p, t, allow_empty=True) for p, t in zip(prompts, texts)])


def rm_scores(rm, input_ids, attention_mask, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """A reward model's scores in the sampler's layout; an empty reply gets ``EMPTY_RESPONSE_SCORE``."""
    device = next(rm.parameters()).device
    with torch.no_grad(), eval_mode(rm):
        out = torch.cat([rm(input_ids[i:i + batch_size].to(device), attention_mask[i:i + batch_size].to(device))
                         .float().cpu() for i in range(0, input_ids.shape[0], batch_size)])
    empty = torch.tensor([not t.strip() for t in texts])
    return torch.where(empty, torch.full_like(out, world.EMPTY_RESPONSE_SCORE), out)


class Scorer:
    """A resolved reward source: ``scorer(prompts, texts, input_ids, attention_mask) -> (B,)`` scores."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, prompts, texts, input_ids, attention_mask):
        return self.fn(prompts, texts, input_ids, attention_mask)


def reward_source(cfg: RLConfig, reward_fn, tokenizer, device=None) -> Scorer:
    """Resolve the reward: ``reward_fn`` (a callable (prompts, replies) -> scores, a RewardModel or a
    CheckingRewardModel) if given, else ``cfg.reward``'s source (``"rm"`` loads ``cfg.reward_model``)."""

    if isinstance(reward_fn, Scorer):
        return reward_fn
    if reward_fn is None and cfg.reward == "rm":
        name = cfg.reward_model or "rm-tiny"
        if not Path(resolve(name)).is_dir():
            raise FileNotFoundError(f"reward_model {name!r} not found: expected a shipped name (rm-tiny) or a folder "
                                    "written by reward_trainer.save_reward_model")
        reward_fn, rm_tok = load_reward_model(name, device)
        if rm_tok.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"reward_model {cfg.reward_model or 'rm-tiny'} uses another tokenizer than the policy")
    if isinstance(reward_fn, (RewardModel, CheckingRewardModel)):
        rm = reward_fn
        return Scorer(lambda prompts, texts, ids, am: rm_scores(rm, ids, am, texts))
    if reward_fn is not None:
        if not callable(reward_fn):
            raise ValueError(f"reward_fn must be a callable (prompts, replies) -> scores or a RewardModel; "
                             f"got {type(reward_fn).__name__}")
        return Scorer(lambda prompts, texts, ids, am: reward_fn(prompts, texts))
    if cfg.reward == "gold":
        return Scorer(lambda prompts, texts, ids, am: gold_scores(prompts, texts))
    return Scorer(lambda prompts, texts, ids, am: torch.tensor(world.verifier_rewards(prompts, texts)))


@torch.no_grad()
def collect_rollout(policy, tokenizer, prompts: list[str], cfg: RLConfig, ref_model, reward_fn=None,
                    value_head: ValueHead | None = None, chunk: int = 64) -> tuple[Rollout, dict[str, float]]:
    """Sample ``cfg.group_size`` completions of each prompt in one ``generate`` call, score them, and read the
    reference's (and the value head's) view of them.

    Args:
        prompts: user messages the world can read (``world.parse_prompt``).
        ref_model: the frozen reference.
        reward_fn: as in :func:`train_rl` (default: ``cfg.reward``'s source).
        value_head: PPO's head on ``policy`` (None otherwise).
        chunk: rows per no-grad forward pass.

    Returns:
        (the :class:`Rollout`, its wall-clock times ``{"generation": s, "scoring": s}``).
    """
    device = next(policy.parameters()).device
    reward = reward_source(cfg, reward_fn, tokenizer, device)
    t0 = time.perf_counter()
    gen = generate(policy, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                   num_return_sequences=cfg.group_size)
    # The sampler's log-probs are log π_old when it sampled from π itself (temperature 1) in the precision the
    # update computes in (fp32); otherwise recompute them.
    bf16 = autocast_dtype(device) is not None if cfg.train.bf16 is None else cfg.train.bf16
    reuse = cfg.temperature == 1.0 and not bf16
    with autocast_context(device, cfg.train.bf16):
        if reuse:
            old_logps, old_values = gen.logprobs, None
            if value_head is not None:
                _, old_values = score_tokens(policy, gen.input_ids, gen.attention_mask, chunk,
                                              value_head=value_head, completion_mask=gen.completion_mask)
        else:
            old_logps, old_values = score_tokens(policy, gen.input_ids, gen.attention_mask, chunk,
                                                  value_head=value_head, completion_mask=gen.completion_mask)
        t1 = time.perf_counter()
        ref_logps, _ = score_tokens(ref_model, gen.input_ids, gen.attention_mask, chunk,
                                     completion_mask=gen.completion_mask)
    rows_prompts = [p for p in prompts for _ in range(cfg.group_size)]
    scores = check_scores(reward(rows_prompts, gen.texts, gen.input_ids, gen.attention_mask),
                           len(gen.texts), "the reward")
    mask = gen.completion_mask
    zero = torch.zeros((), device=mask.device)
    rollout = Rollout(
        prompts=rows_prompts, texts=gen.texts, input_ids=gen.input_ids, attention_mask=gen.attention_mask,
        completion_mask=mask, old_logps=torch.where(mask.bool(), old_logps.float(), zero),
        ref_logps=torch.where(mask.bool(), ref_logps.float(), zero), scores=scores.to(device),
        gold=gold_scores(rows_prompts, gen.texts).to(device), finished=gen.finished, group_size=cfg.group_size,
        old_values=None if old_values is None else torch.where(mask.bool(), old_values, zero),
    )
    return rollout, {"generation": t1 - t0, "scoring": time.perf_counter() - t1}


def cat_rollouts(parts: list[Rollout], pad_token_id: int) -> Rollout:
    """One rollout of the rows of ``parts`` (same group size), in order. Each part's prompt columns are
    left-padded and its completion columns right-padded to the widest part's, so every row keeps generate's
    layout (the completion starts at one column P); padding is ``pad_token_id`` in ``input_ids`` and 0 (masked)
    elsewhere, so no log-prob, score or mask of any row changes."""
    if not parts:
        raise ValueError("parts is empty; expected at least one Rollout")
    if len({r.group_size for r in parts}) != 1:
        raise ValueError(f"parts must share one group_size; got {sorted({r.group_size for r in parts})}")
    P = [r.prompt_length for r in parts]
    T = [r.input_ids.shape[1] - p for r, p in zip(parts, P)]

    def cat(name):
        if getattr(parts[0], name) is None:
            return None
        return torch.cat([F.pad(getattr(r, name), (max(P) - p, max(T) - t),
                                value=pad_token_id if name == "input_ids" else 0) for r, p, t in zip(parts, P, T)])
    return Rollout(prompts=[p for r in parts for p in r.prompts], texts=[t for r in parts for t in r.texts],
                   scores=torch.cat([r.scores for r in parts]), gold=torch.cat([r.gold for r in parts]),
                   finished=torch.cat([r.finished for r in parts]), group_size=parts[0].group_size,
                   **{name: cat(name) for name in TENSORS})


def collect_dynamic(policy, tokenizer, draw_prompts, cfg: RLConfig, ref_model, reward_fn=None,
                    value_head: ValueHead | None = None) -> tuple[Rollout, dict[str, float]]:
    """DAPO's dynamic sampling (Yu et al. 2025): collect rollouts of fresh prompts (``draw_prompts()``, one batch
    per round) and keep only the groups with unequal rewards (``informative_groups``) until ``len(first batch)``
    groups are kept or ``cfg.max_sampling_rounds`` batches are spent; empty slots then take dropped groups, so
    the rollout always has as many groups as one batch. Returns (the rollout, times as :func:`collect_rollout`'s
    plus ``"groups_sampled"`` and ``"groups_dropped"``: how many groups were drawn, and how many of them the
    rollout leaves out)."""
    G = cfg.group_size
    kept: list[Rollout] = []
    spare: list[Rollout] = []
    times = {"generation": 0.0, "scoring": 0.0, "groups_sampled": 0.0, "groups_dropped": 0.0}
    need = n_kept = None
    for _ in range(cfg.max_sampling_rounds):
        prompts = draw_prompts()
        need = len(prompts) if need is None else need
        ro, t = collect_rollout(policy, tokenizer, prompts, cfg, ref_model, reward_fn, value_head)
        for k in ("generation", "scoring"):
            times[k] += t[k]
        times["groups_sampled"] += len(prompts)
        keep = informative_groups(ro.scores.cpu(), G).tolist()
        take = [g for g, ok in enumerate(keep) if ok][:need - (n_kept or 0)]
        kept.append(ro.rows([g * G + j for g in take for j in range(G)]))
        if not all(keep):
            spare.append(ro.rows([g * G + j for g, ok in enumerate(keep) if not ok for j in range(G)]))
        n_kept = (n_kept or 0) + len(take)
        if n_kept == need:
            break
    fill = need - n_kept  # rounds spent: unanimous groups (zero advantage) fill the rest, the most recent first
    if fill:
        pool = cat_rollouts(spare[::-1], tokenizer.pad_token_id)
        kept.append(pool.rows(list(range(fill * G))))
    times["groups_dropped"] = times["groups_sampled"] - need
    rollout = cat_rollouts([r for r in kept if r.scores.numel()], tokenizer.pad_token_id)
    return rollout, times
