"""One RL loop for language models (book ch. 6): REINFORCE, RLOO, GRPO and PPO are *configurations* of it.

The public API (lessons 06, 07 and 15 use it; keep it small)::

    from rlhfbook_lab.models import load_model
    from rlhfbook_lab.rl import RLConfig, train_rl

    policy, tok = load_model("sft-tiny")
    cfg = RLConfig.preset("grpo")                     # "reinforce", "rloo", "grpo", "dr_grpo" or "ppo"
    cfg = RLConfig.preset("ppo", beta=0.1, steps=20)  # any field can be overridden by keyword
    cfg = RLConfig.fast("grpo")                       # the ~30 s CPU run a lesson makes in fast mode
    policy, history = train_rl(policy, tok, cfg)      # trains ``policy`` in place
    history["eval/gold_score"]                        # [before, ..., after]: greedy, held-out prompts

- ``train_rl(policy, tokenizer, cfg, ref_model=None, reward_fn=None, progress=True) -> (policy, history)``.
  ``ref_model``: the frozen reference π_ref (default: a copy of ``policy`` taken before the first step).
  ``reward_fn``: overrides ``cfg.reward``; a callable ``(prompts: list[str], replies: list[str]) -> (B,)``
  scores, or a ``reward_trainer.RewardModel`` (scored in the sampler's own token layout).
  ``history``: a dict of per-step lists (keys in :func:`train_rl`'s docstring), plus ``eval/*`` lists with
  their own ``eval/step``.
- ``rl_from_sft(cfg, policy="sft-tiny", out=None, overwrite=False, progress=True) -> (policy, tok, history)``:
  the CLI's recipe (``rlhfbook-lab rl --algo ppo|grpo|rloo|reinforce|dr_grpo [--fast]``); saves the policy
  atomically with ``training_meta.json`` and ``training_log.json``, as ``sft`` does.
- The layers below it, each testable alone (STYLE.md): :func:`collect_rollout` (sample, score, reference
  log-probs) → :func:`compute_advantages` (tensors in, advantages out) → :func:`rl_loss` (one minibatch's
  forward and loss).

One step of the loop (the same for every algorithm)
---------------------------------------------------
1. **Sample** ``prompts_per_step`` training prompts of the world and ``group_size`` completions of each, in
   *one* batched ``generation.generate`` call with the KV cache (rows of a group contiguous). At temperature 1
   the sampler's own log-probs *are* log π_old (``generation`` tests this to 1e-5), so we keep them instead of
   recomputing them; at another temperature (or top-p, or bf16 autocast) we recompute them with a forward pass.
2. **Score** every completion with the reward source (``cfg.reward``); the gold judge's score is computed too,
   whatever the source, so every run reports what it really achieved. An empty reply gets a documented score:

   ============  =====================================================================
   source        score of a reply
   ============  =====================================================================
   ``gold``      ``world.gold_score`` (an empty reply: ``EMPTY_RESPONSE_SCORE``, −3.4)
   ``verifier``  1.0 if ``world.is_correct`` else 0.0 (an empty reply is not correct: 0)
   ``rm``        the reward model's score of prompt + reply in the sampler's layout (an
                 empty reply: ``EMPTY_RESPONSE_SCORE``: the RM never saw one, so its
                 score there is an extrapolation we do not pay out)
   ============  =====================================================================

3. **Reference**: log π_ref of the sampled tokens (a no-grad forward of the frozen SFT model, eval mode).
4. **Advantages** (:func:`compute_advantages`). The KL to the reference enters in one of two places,
   ``cfg.kl_penalty``: ``"reward"`` (InstructGPT/PPO, RLOO: r_t = −β·k̂_t plus the score on the last token,
   ``kl.kl_penalized_rewards``) or ``"loss"`` (GRPO: β·k̂ added to the per-token loss, ``kl.kl_loss``). The
   advantage estimator is ``cfg.advantage``: ``"reinforce"`` / ``"rloo"`` / ``"grpo"`` / ``"dr_grpo"``
   (one number per sequence, from the sequence's summed reward, as ``bandit`` does) or ``"gae"`` (PPO: a value
   per token, :func:`policy_gradient.gae_advantages`).
5. **Update**: ``ppo_epochs`` passes over the rollout in ``num_minibatches`` shuffled minibatches, one
   optimizer step each, on PPO's clipped loss (``policy_gradient.ppo_policy_loss``, reduced by
   ``aggregate_loss`` with ``cfg.loss_agg``). With one epoch and one minibatch the ratio is 1 and the loss's
   gradient is the vanilla policy gradient (REINFORCE, RLOO, GRPO as TRL runs it by default).

PPO's value: a head on the policy
---------------------------------
``advantage="gae"`` needs V(s_t) per token. We put a linear head (``nn.Linear(hidden, 1)``, zero-initialised, so
V = 0 at the start) on the policy's last hidden state, as TRL's original ``AutoModelForCausalLMWithValueHead``
did, rather than training a separate value model initialised from the SFT or reward model (InstructGPT, TRL's
later ``PPOTrainer``). Why: one forward pass then gives both the logits and the values, and on a CPU, where the
forward and backward passes dominate a step, a separate critic of the same size would double the training cost.
The price: the value loss's gradient flows into the backbone the policy uses; ``vf_coef`` (0.1, TRL's old
default) keeps it small. V(s_t) for the response token at column t is read at column t − 1, the position whose
logits predict token t. The head is training state only: the saved checkpoint is the plain causal LM.

What the head achieves at this scale, measured: little. Its explained variance stays near 0 (the score depends
on whether the answer is right, which a linear read-out of a 1.8 M-parameter model's state does not predict),
so PPO's preset uses λ = 1 (Monte-Carlo returns; TRL's default is 0.95): with λ < 1 an early token (the choice
of a polite opener, the answer's first digit) gets its credit only through a value function that has not
learned, discounted by λ^L over the L tokens after it. The value then serves as a per-token baseline, and the
advantages are whitened over the batch, as TRL does.

The policy stays in eval mode while it trains (autograd does not care): dropout would make the first ratio
differ from 1. Everything is seeded by ``cfg.seed``: the same config gives the same run on CPU.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import world
from .dpo_trainer import _check_reference, _disable_dropout, make_reference_model
from .evaluation import evaluate_chat
from .generation import generate
from .kl import ESTIMATORS, AdaptiveKLController, FixedKLController, kl_estimate, kl_loss, kl_penalized_rewards
from .logprobs import entropy_from_logits, masked_mean, masked_sum, masked_whiten, per_token_logprobs
from .models import (
    autocast_dtype,
    check_output_folder,
    forward_logits,
    load_model,
    position_ids_from_mask,
    resolve,
    save_model,
)
from .policy_gradient import (
    ADVANTAGE_ESTIMATORS,
    AGGREGATION_MODES,
    aggregate_loss,
    entropy_loss,
    explained_variance,
    gae_advantages,
    ppo_policy_loss,
    ppo_value_loss,
    sequence_advantages,
)
from .sft import sft_loss_sum
from .train import TrainConfig, autocast_context, make_optimizer

__all__ = ["ALGORITHMS", "PRESETS", "REWARD_SOURCES", "RLConfig", "Rollout", "collect_rollout",
           "compute_advantages", "rl_from_sft", "rl_loss", "summarize", "train_rl"]

ALGORITHMS = ("reinforce", "rloo", "grpo", "dr_grpo", "ppo")
REWARD_SOURCES = ("gold", "verifier", "rm")
KL_PENALTIES = ("reward", "loss")
ADVANTAGES = (*ADVANTAGE_ESTIMATORS, "gae")

@dataclass
class RLConfig:
    """Everything that defines an RL run. Build one with :meth:`preset` (or :meth:`fast`); the plain defaults
    are the GRPO preset."""

    algo: str = "grpo"
    """Which preset this came from (a label written to ``training_meta.json``; the fields below decide)."""
    # --- rollouts ------------------------------------------------------------------------------------------
    steps: int = 30
    """Rollouts. Each is followed by ``ppo_epochs × num_minibatches`` optimizer steps."""
    prompts_per_step: int = 16
    """Distinct training prompts per rollout (the world's train split, families in turn)."""
    group_size: int = 8
    """G: completions sampled per prompt (rows of a group are contiguous). RLOO/GRPO need G >= 2."""
    max_new_tokens: int = 48
    """Completion budget in tokens (characters, for the world's tokenizer); an unfinished reply keeps its
    score (the gold judge already docks a reply that does not end cleanly). Also Dr. GRPO's constant L_max."""
    temperature: float = 1.0
    """Sampling temperature. At 1 the sampler's log-probs are reused as log π_old; at another one log π_old is
    recomputed untempered (the policy trained is π itself; the tempered samples make the batch off-policy)."""
    families: tuple[str, ...] = world.FAMILIES
    """Task families the training prompts are drawn from (e.g. ``("addition",)`` for RLVR)."""
    # --- reward --------------------------------------------------------------------------------------------
    reward: str = "gold"
    """Reward source: ``"gold"`` (the world's judge), ``"verifier"`` (correct 1 / wrong 0) or ``"rm"``."""
    reward_model: str | None = None
    """With ``reward="rm"``: a folder or shipped name of a reward model (``reward_trainer.load_reward_model``);
    ``None`` means ``"rm-tiny"``."""
    # --- KL regularisation ---------------------------------------------------------------------------------
    beta: float = 0.04
    """KL coefficient β >= 0 (the start value when ``kl_target`` is set)."""
    kl_penalty: str = "loss"
    """Where the KL goes: ``"reward"`` (per-token penalty in the reward) or ``"loss"`` (a loss term)."""
    kl_estimator: str = "k3"
    """``"k1"``, ``"k2"`` or ``"k3"`` (see ``kl``'s docstring: as a loss, k1 has zero expected gradient, k2
    follows ∇KL(π‖π_ref), k3 follows ∇KL(π_ref‖π))."""
    kl_target: float | None = None
    """If set, adapt β to hold this KL (nats per sequence; ``kl.AdaptiveKLController``, Ziegler et al.)."""
    kl_horizon: float = 10_000.0
    """The adaptive controller's horizon (samples)."""
    # --- advantages ----------------------------------------------------------------------------------------
    advantage: str = "grpo"
    """``"reinforce"``, ``"rloo"``, ``"grpo"``, ``"dr_grpo"`` (one per sequence) or ``"gae"`` (per token, with
    a value head: PPO)."""
    gamma: float = 1.0
    """GAE discount γ."""
    lam: float = 0.95
    """GAE λ."""
    whiten_advantages: bool = False
    """Whiten the advantages over the rollout's response tokens (PPO, as TRL)."""
    # --- optimisation --------------------------------------------------------------------------------------
    lr: float = 1e-4
    """AdamW learning rate (constant)."""
    ppo_epochs: int = 1
    """Passes over each rollout."""
    num_minibatches: int = 1
    """Optimizer steps per pass; must divide ``prompts_per_step * group_size``."""
    clip_eps_low: float = 0.2
    """PPO clip ε below 1."""
    clip_eps_high: float | None = None
    """PPO clip ε above 1 (``None``: ``clip_eps_low``; DAPO raises it)."""
    loss_agg: str = "seq_mean_token_mean"
    """How per-token losses become a scalar: a mode of ``policy_gradient.aggregate_loss``."""
    vf_coef: float = 0.1
    """Weight of the value loss (PPO)."""
    value_lr: float | None = None
    """Learning rate of the value head (PPO; ``None``: ``lr``). The head starts from zero and must catch up with
    the returns quickly, so PPO's preset gives it a larger one."""
    clip_range_value: float | None = 0.2
    """PPO's value clipping range (``None``: no clipping)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus (0: entropy is only measured)."""
    sft_coef: float = 0.0
    """InstructGPT's PPO-ptx: add ``sft_coef ×`` the SFT loss (mean NLL per token) on a batch of the shipped
    SFT data to every minibatch's loss. 0 turns it off (and loads no data)."""
    sft_batch_size: int = 16
    """SFT conversations per minibatch when ``sft_coef > 0``."""
    grad_clip: float = 1.0
    """Clip the global gradient norm (0 disables)."""
    weight_decay: float = 0.0
    """AdamW weight decay on matrices."""
    bf16: bool | None = False
    """bf16 autocast for the training forward (``None``: on CUDA only). On a CPU it is ~40× slower: keep False."""
    seed: int = 0
    """Seeds prompt choice, sampling and minibatch order."""
    # --- evaluation ----------------------------------------------------------------------------------------
    eval_prompts: int = 200
    """Held-out prompts (``world.heldout_prompts(n, seed=0)``) judged greedily before training, every
    ``eval_every`` rollouts, and after; 0 skips evaluation."""
    eval_every: int = 0
    """Evaluate every this many rollouts (0: only before and after)."""

    def __post_init__(self):
        self.families = tuple(self.families)
        _check_config(self)

    @classmethod
    def preset(cls, algo: str, **overrides) -> "RLConfig":
        """The configuration of ``algo`` (one of :data:`ALGORITHMS`, table :data:`PRESETS`), with any field
        overridden by keyword."""
        if algo not in PRESETS:
            raise ValueError(f"algo must be one of {ALGORITHMS}; got {algo!r}")
        return cls(**{"algo": algo, **PRESETS[algo], **overrides})

    @classmethod
    def fast(cls, algo: str = "grpo", **overrides) -> "RLConfig":
        """A preset cut down to about 30 s of CPU (one thread) that still raises the gold score: fewer rollouts,
        smaller ones, 100 evaluation prompts. Overrides as in :meth:`preset`."""
        return cls.preset(algo, **{**FAST[algo], **overrides})

    def differs_from(self, other: "RLConfig") -> dict[str, tuple]:
        """``{field: (self's value, other's value)}`` for the fields that differ."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}


PRESETS: dict[str, dict] = {
    # REINFORCE / RLOO (Ahmadian et al. 2024): KL in the reward (k1), one advantage per sequence from the summed
    # reward, the plain policy gradient Σ_t log π (summed over tokens; L_max only rescales it), on-policy.
    "reinforce": dict(advantage="reinforce", kl_penalty="reward", kl_estimator="k1",
                      loss_agg="seq_mean_token_sum_norm"),
    "rloo": dict(advantage="rloo", kl_penalty="reward", kl_estimator="k1", loss_agg="seq_mean_token_sum_norm"),
    # GRPO (DeepSeekMath): group-normalised advantages of the raw score, β·k3 as a loss, per-sequence token mean.
    "grpo": dict(advantage="grpo", kl_penalty="loss", kl_estimator="k3", loss_agg="seq_mean_token_mean"),
    # Dr. GRPO (Liu et al. 2025): no std division, a constant-length token sum; with a k2 loss (the bandit's
    # finding: this pair reaches ~99 % of J*, canonical GRPO ~80 %).
    "dr_grpo": dict(advantage="dr_grpo", kl_penalty="loss", kl_estimator="k2", loss_agg="seq_mean_token_sum_norm"),
    # PPO (InstructGPT, TRL): KL in the reward (k1), GAE with a value head, whitened advantages, several epochs
    # of minibatches, the token mean. λ = 1 and a faster value head (module docstring); half GRPO's lr, since
    # it takes four optimizer steps per rollout (at 1e-4 held-out correctness fell from 0.71 to 0.62).
    "ppo": dict(advantage="gae", kl_penalty="reward", kl_estimator="k1", loss_agg="token_mean",
                whiten_advantages=True, ppo_epochs=2, num_minibatches=2, lam=1.0, value_lr=1e-3, lr=5e-5),
}
"""The fields each algorithm sets (everything else is :class:`RLConfig`'s default).

Measured from ``sft-tiny`` (seed 0; 30 rollouts of 16 prompts × 8 samples; greedy gold score on 200 held-out
prompts, where sft-tiny scores +0.69 and answers 71 % correctly; KL in nats per sequence over the last 5
rollouts; CPU seconds with one thread, on a loaded machine, evaluation included):

=====================  =============  ============  =========  =====  =======
run                    gold           correct       KL to ref  CPU s  reward
=====================  =============  ============  =========  =====  =======
``grpo``               0.69 → 0.90    0.71 → 0.72   2.1        196    gold
``ppo``                0.69 → 0.87    0.71 → 0.69   1.2        296    gold
``grpo``               0.69 → 0.83    0.71 → 0.64   1.9        203    rm-tiny
``ppo``                0.69 → 0.78    0.71 → 0.59   2.3        311    rm-tiny
=====================  =============  ============  =========  =====  =======

Most of the gain is the judge's polite-opener lever (+0.2 on a correct reply): nearly every reply learns to
open with "Sure!". With the reward model (73 % pairwise accuracy) correctness falls while the gold score still
rises: the proxy pays for the opener more reliably than for the right answer. PPO at GRPO's lr (1e-4) bought
less (+0.12) and lost correctness (0.71 → 0.62)."""

FAST: dict[str, dict] = {algo: dict(steps=4, eval_prompts=100, lr=3e-4) for algo in ALGORITHMS}
FAST["ppo"] = dict(steps=8, group_size=4, lr=1e-4, eval_prompts=100)
"""What :meth:`RLConfig.fast` changes on top of the preset.

PPO's fast run (lesson 06) takes 8 rollouts of 16 prompts × 4 at lr 1e-4: from ``sft-tiny`` with the gold reward
it raised the held-out greedy gold score (100 prompts) by +0.075, +0.056 and +0.062 for seeds 0, 1 and 2, the same
with 1 and 2 CPU threads (about 30 s of CPU). The earlier cut — 4 rollouts of 16 × 8 at lr 3e-4 — took a few large
steps and *lowered* it (+0.68 → +0.62); 10 rollouts of 16 × 4 at lr 2e-4 did too (−0.11, −0.07, +0.02)."""


def _check_config(cfg: RLConfig) -> None:
    """Raise ``ValueError`` naming the field for every out-of-range setting."""
    def need(ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {expected}; got {getattr(cfg, name)!r}")

    def finite(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "ppo_epochs", "num_minibatches",
                 "sft_batch_size"):
        need(isinstance(getattr(cfg, name), int) and getattr(cfg, name) >= 1, name, "an int >= 1")
    need(isinstance(cfg.eval_prompts, int) and cfg.eval_prompts >= 0, "eval_prompts", "an int >= 0")
    need(isinstance(cfg.eval_every, int) and cfg.eval_every >= 0, "eval_every", "an int >= 0")
    need(finite(cfg.temperature) and cfg.temperature > 0, "temperature", "> 0")
    need(len(cfg.families) > 0 and all(f in world.FAMILIES for f in cfg.families), "families",
         f"a non-empty tuple of {world.FAMILIES}")
    need(cfg.reward in REWARD_SOURCES, "reward", f"one of {REWARD_SOURCES}")
    need(finite(cfg.beta) and cfg.beta >= 0, "beta", "a finite number >= 0")
    need(cfg.kl_penalty in KL_PENALTIES, "kl_penalty", f"one of {KL_PENALTIES}")
    need(cfg.kl_estimator in ESTIMATORS, "kl_estimator", f"one of {ESTIMATORS}")
    need(cfg.kl_target is None or (finite(cfg.kl_target) and cfg.kl_target > 0), "kl_target", "None or > 0")
    need(finite(cfg.kl_horizon) and cfg.kl_horizon > 0, "kl_horizon", "> 0")
    need(cfg.advantage in ADVANTAGES, "advantage", f"one of {ADVANTAGES}")
    need(cfg.advantage in ("reinforce", "gae") or cfg.group_size >= 2, "group_size",
         f">= 2 for advantage={cfg.advantage!r} (a group of one has no baseline)")
    need(cfg.advantage != "reinforce" or cfg.prompts_per_step * cfg.group_size >= 2, "prompts_per_step",
         "such that prompts_per_step * group_size >= 2 (REINFORCE's batch-mean baseline)")
    need(0 <= cfg.gamma <= 1, "gamma", "in [0, 1]")
    need(0 <= cfg.lam <= 1, "lam", "in [0, 1]")
    need(finite(cfg.lr) and cfg.lr > 0, "lr", "> 0")
    need(cfg.value_lr is None or (finite(cfg.value_lr) and cfg.value_lr > 0), "value_lr", "None or > 0")
    need((cfg.prompts_per_step * cfg.group_size) % cfg.num_minibatches == 0, "num_minibatches",
         f"a divisor of prompts_per_step * group_size = {cfg.prompts_per_step * cfg.group_size}")
    need(0 <= cfg.clip_eps_low < 1, "clip_eps_low", "in [0, 1)")
    need(cfg.clip_eps_high is None or cfg.clip_eps_high >= 0, "clip_eps_high", "None or >= 0")
    need(cfg.loss_agg in AGGREGATION_MODES, "loss_agg", f"one of {AGGREGATION_MODES}")
    for name in ("vf_coef", "ent_coef", "sft_coef", "grad_clip", "weight_decay"):
        need(finite(getattr(cfg, name)) and getattr(cfg, name) >= 0, name, "a finite number >= 0")
    need(cfg.clip_range_value is None or cfg.clip_range_value > 0, "clip_range_value", "None or > 0")


# ---------------------------------------------------------------------------------------------------------
# Forward passes
# ---------------------------------------------------------------------------------------------------------


class _ValueHead(nn.Module):
    """V(s) = w·h + b on the policy's last hidden state (zero-initialised: V = 0 at the start)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.float()).squeeze(-1)


CHUNK_OVERHEAD = 96
"""The cost of one more forward pass, in token slots, for :func:`length_chunks`. Measured on the GRPO bench's
rollouts (``sft-tiny``, 4 prompts × 8, ≤ 48 tokens; policy forward + backward and reference forward, 2 threads):
0 and 16 were slower than one unchunked pass (each extra pass through the model costs milliseconds), 96 and 160
about 6 % faster."""


def length_chunks(lengths: torch.Tensor, overhead: int = CHUNK_OVERHEAD) -> list[torch.Tensor]:
    """Split rows into chunks of similar length, so that a chunk's forward pass stops at *its* longest row.

    A batch padded to its longest completion computes B · max(L) token slots; chunks of rows sorted by length
    compute Σ_c |c| · max_{i∈c} L_i. Each extra pass costs fixed work (launching every layer once more), counted
    as ``overhead`` token slots. The cut points minimise Σ_c (|c| · max_{i∈c} L_i + overhead) exactly, by
    dynamic programming over the sorted lengths (O(B²), B is a rollout's row count).

    Args:
        lengths: Shape (B,), int: each row's completion length (tokens after the prompt, up to and including EOS).
        overhead: the cost of one more pass, in token slots (>= 0).

    Returns:
        row indices of each chunk (1-D int64 tensors), shortest rows first; together a permutation of ``range(B)``.
    """
    if lengths.dim() != 1 or len(lengths) == 0:
        raise ValueError(f"lengths must be a non-empty 1-D tensor (B,); got shape {tuple(lengths.shape)}")
    order = torch.argsort(lengths, stable=True)
    ls = lengths[order].tolist()
    B = len(ls)
    best = [0.0] + [math.inf] * B  # best[j]: cheapest cost of the first j sorted rows
    cut = [0] * (B + 1)
    for j in range(1, B + 1):  # the last chunk is sorted rows [i, j): its width is ls[j - 1]
        for i in range(j):
            cost = best[i] + (j - i) * ls[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], B
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    return [order[i:j] for i, j in reversed(bounds)]


def shared_prompt_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int,
                         distinct: tuple[torch.Tensor, torch.Tensor] | None = None,
                         chunk_overhead: int | None = CHUNK_OVERHEAD) -> torch.Tensor:
    """Final hidden states (B, T, H) of ``model.base_model`` computing each *distinct* prompt once, and each
    completion only up to its chunk's longest row.

    The rows of a rollout come in groups that share a prompt (G completions of each), and the prompt's hidden
    states, keys and values do not depend on the completion that follows it (causal attention). So: run the U
    distinct prompts (columns ``[0, P)``) once, with the cache on; copy each prompt's keys and values to the rows
    that share it (``index_select``, whose backward sums each group's gradients back with ``index_add_``); run
    the completion columns of the B rows against that cache.
    Work on the prompt falls from B·P to U·P tokens.

    Completions differ in length (a rollout's rows are padded to its longest), so the completion pass runs on
    chunks of rows of similar length (:func:`length_chunks`, ``chunk_overhead``; None: one chunk), each cut at
    its own longest row. Columns past a chunk's width hold zeros: they are padding, which no log-prob reads.
    The result equals one full forward pass on every real token up to float rounding (a test checks logits and
    gradients to 1e-5). ``distinct``: ``torch.unique(input_ids[:, :P], dim=0, return_inverse=True)`` if the
    caller already has it.
    """
    from transformers import DynamicCache

    B, T = input_ids.shape
    P = prompt_length
    prompts, inverse = distinct if distinct is not None else torch.unique(
        input_ids[:, :P], dim=0, return_inverse=True)  # (U, P), (B,)
    first = torch.empty(len(prompts), dtype=torch.long, device=input_ids.device).scatter_(
        0, inverse, torch.arange(B, device=input_ids.device))  # one row of each distinct prompt
    positions = position_ids_from_mask(attention_mask)
    base = model.base_model
    head = base(input_ids=prompts, attention_mask=attention_mask[first, :P], position_ids=positions[first, :P],
                use_cache=True)
    kv = [(layer.keys, layer.values) for layer in head.past_key_values.layers]  # each (U, H_kv, P, hd)
    lengths = attention_mask[:, P:].sum(dim=1)  # (B,)
    chunks = ([torch.arange(B, device=input_ids.device)] if chunk_overhead is None
              else length_chunks(lengths, chunk_overhead))
    parts = []
    for rows in chunks:
        width = max(1, int(lengths[rows].max()))
        cache = DynamicCache([(k.index_select(0, inverse[rows]), v.index_select(0, inverse[rows])) for k, v in kv])
        tail = base(input_ids=input_ids[rows, P:P + width], attention_mask=attention_mask[rows, :P + width],
                    position_ids=positions[rows, P:P + width], past_key_values=cache, use_cache=True)
        parts.append(F.pad(tail.last_hidden_state, (0, 0, 0, T - P - width)))  # (|c|, T − P, H)
    back = torch.argsort(torch.cat(chunks))  # chunk order → row order
    return torch.cat([head.last_hidden_state.index_select(0, inverse), torch.cat(parts)[back]], dim=1)


def _prompt_length(completion_mask: torch.Tensor | None) -> int | None:
    """P, the first column any completion starts in (generation's layout: every completion starts there)."""
    if completion_mask is None:
        return None
    cols = completion_mask.bool().any(dim=0).nonzero()
    return int(cols[0]) if len(cols) else None


def _forward(policy, input_ids, attention_mask, value_head: _ValueHead | None = None,
             completion_mask: torch.Tensor | None = None, chunk_overhead: int | None = CHUNK_OVERHEAD):
    """Logits (B, T, V) and, with a value head, values (B, T) aligned with input_ids (values[:, t] = V read at
    column t − 1, the state before token t; column 0 is 0).

    Given the ``completion_mask`` of a rollout whose rows share prompts, each distinct prompt is computed once
    (:func:`shared_prompt_hidden`, its completions in chunks of similar length by ``chunk_overhead``); otherwise
    (or when every prompt is distinct) one plain forward pass."""
    P = _prompt_length(completion_mask)
    distinct = torch.unique(input_ids[:, :P], dim=0, return_inverse=True) if P else None
    shared = distinct is not None and len(distinct[0]) < input_ids.shape[0]
    if value_head is None and not shared:
        return forward_logits(policy, input_ids, attention_mask), None
    if shared:
        hidden = shared_prompt_hidden(policy, input_ids, attention_mask, P, distinct, chunk_overhead)
    else:
        hidden = policy.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids_from_mask(attention_mask), use_cache=False
                                   ).last_hidden_state  # (B, T, H), after the final norm
    logits = policy.get_output_embeddings()(hidden)  # (B, T, V): what forward_logits computes
    values = F.pad(value_head(hidden)[:, :-1], (1, 0)) if value_head is not None else None  # (B, T)
    return logits, values


def _trim(batch: dict) -> dict:
    """Drop the columns no row of the batch uses (left padding of the prompt, right padding after the
    longest completion); positions come from the attention mask, so no log-prob changes."""
    real = batch["attention_mask"].bool().any(dim=0)  # (T,)
    cols = real.nonzero().flatten()
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    return {k: v[:, lo:hi] if torch.is_tensor(v) and v.dim() == 2 else v for k, v in batch.items()}


@torch.no_grad()
def _score_tokens(model, input_ids, attention_mask, batch_size: int, value_head: _ValueHead | None = None,
                  completion_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (B, T) of ``input_ids`` under ``model`` (eval mode, no grad), in chunks of rows,
    and values (B, T) with a value head."""
    logps, values = [], []
    for i in range(0, input_ids.shape[0], batch_size):
        ids, am = input_ids[i:i + batch_size], attention_mask[i:i + batch_size]
        cm = completion_mask[i:i + batch_size] if completion_mask is not None else None
        logits, v = _forward(model, ids, am, value_head, cm)
        logps.append(per_token_logprobs(logits, ids))
        if v is not None:
            values.append(v.float())
    return torch.cat(logps), (torch.cat(values) if values else None)


# ---------------------------------------------------------------------------------------------------------
# Rollouts: sample, score, reference log-probs
# ---------------------------------------------------------------------------------------------------------


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

    def minibatch(self, rows: torch.Tensor) -> dict:
        """The tensors of ``rows`` as a dict, unused columns trimmed."""
        names = ("input_ids", "attention_mask", "completion_mask", "old_logps", "ref_logps", "advantages",
                 "returns", "old_values")
        return _trim({n: getattr(self, n)[rows] for n in names if getattr(self, n) is not None})


def _check_scores(scores, n: int, what: str) -> torch.Tensor:
    scores = torch.as_tensor(scores, dtype=torch.float32).detach().cpu().flatten()
    if scores.shape != (n,):
        raise ValueError(f"{what} must give one score per completion, shape ({n},); got {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        bad = (~torch.isfinite(scores)).nonzero().flatten().tolist()
        raise ValueError(f"rewards must be finite: {what} returned NaN or inf for completion(s) {bad}")
    return scores


def _gold_scores(prompts: list[str], texts: list[str]) -> torch.Tensor:
    return torch.tensor([world.gold_score(p, t, allow_empty=True) for p, t in zip(prompts, texts)])


def _rm_scores(rm, input_ids, attention_mask, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """A reward model's scores in the sampler's layout; an empty reply gets ``EMPTY_RESPONSE_SCORE``."""
    device = next(rm.parameters()).device
    was_training = rm.training
    rm.eval()
    with torch.no_grad():
        out = torch.cat([rm(input_ids[i:i + batch_size].to(device), attention_mask[i:i + batch_size].to(device))
                         .float().cpu() for i in range(0, input_ids.shape[0], batch_size)])
    rm.train(was_training)
    empty = torch.tensor([not t.strip() for t in texts])
    return torch.where(empty, torch.full_like(out, world.EMPTY_RESPONSE_SCORE), out)


class _Scorer:
    """A resolved reward source: ``scorer(prompts, texts, input_ids, attention_mask) -> (B,)`` scores."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, prompts, texts, input_ids, attention_mask):
        return self.fn(prompts, texts, input_ids, attention_mask)


def _reward_source(cfg: RLConfig, reward_fn, tokenizer, device=None) -> _Scorer:
    """Resolve the reward: ``reward_fn`` (a callable (prompts, replies) -> scores, or a RewardModel) if given,
    else ``cfg.reward``'s source (``"rm"`` loads ``cfg.reward_model``)."""
    from .reward_trainer import RewardModel, load_reward_model

    if isinstance(reward_fn, _Scorer):
        return reward_fn
    if reward_fn is None and cfg.reward == "rm":
        name = cfg.reward_model or "rm-tiny"
        if not Path(resolve(name)).is_dir():
            raise FileNotFoundError(f"reward_model {name!r} not found: expected a shipped name (rm-tiny) or a folder "
                                    "written by reward_trainer.save_reward_model")
        reward_fn, rm_tok = load_reward_model(name, device)
        if rm_tok.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"reward_model {cfg.reward_model or 'rm-tiny'} uses another tokenizer than the policy")
    if isinstance(reward_fn, RewardModel):
        rm = reward_fn
        return _Scorer(lambda prompts, texts, ids, am: _rm_scores(rm, ids, am, texts))
    if reward_fn is not None:
        if not callable(reward_fn):
            raise ValueError(f"reward_fn must be a callable (prompts, replies) -> scores or a RewardModel; "
                             f"got {type(reward_fn).__name__}")
        return _Scorer(lambda prompts, texts, ids, am: reward_fn(prompts, texts))
    if cfg.reward == "gold":
        return _Scorer(lambda prompts, texts, ids, am: _gold_scores(prompts, texts))
    return _Scorer(lambda prompts, texts, ids, am: torch.tensor(
        [float(world.is_correct(world.parse_prompt(p), t)) for p, t in zip(prompts, texts)]))


@torch.no_grad()
def collect_rollout(policy, tokenizer, prompts: list[str], cfg: RLConfig, ref_model, reward_fn=None,
                    value_head: _ValueHead | None = None, chunk: int = 64) -> tuple[Rollout, dict[str, float]]:
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
    reward = _reward_source(cfg, reward_fn, tokenizer, device)
    t0 = time.perf_counter()
    gen = generate(policy, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                   num_return_sequences=cfg.group_size)
    # The sampler's log-probs are log π_old when it sampled from π itself (temperature 1) in the precision the
    # update computes in (fp32); otherwise recompute them.
    bf16 = autocast_dtype(device) is not None if cfg.bf16 is None else cfg.bf16
    reuse = cfg.temperature == 1.0 and not bf16
    with autocast_context(device, cfg.bf16):
        if reuse:
            old_logps, old_values = gen.logprobs, None
            if value_head is not None:
                _, old_values = _score_tokens(policy, gen.input_ids, gen.attention_mask, chunk,
                                              value_head=value_head, completion_mask=gen.completion_mask)
        else:
            old_logps, old_values = _score_tokens(policy, gen.input_ids, gen.attention_mask, chunk,
                                                  value_head=value_head, completion_mask=gen.completion_mask)
        t1 = time.perf_counter()
        ref_logps, _ = _score_tokens(ref_model, gen.input_ids, gen.attention_mask, chunk,
                                     completion_mask=gen.completion_mask)
    rows_prompts = [p for p in prompts for _ in range(cfg.group_size)]
    scores = _check_scores(reward(rows_prompts, gen.texts, gen.input_ids, gen.attention_mask),
                           len(gen.texts), "the reward")
    mask = gen.completion_mask
    zero = torch.zeros((), device=mask.device)
    rollout = Rollout(
        prompts=rows_prompts, texts=gen.texts, input_ids=gen.input_ids, attention_mask=gen.attention_mask,
        completion_mask=mask, old_logps=torch.where(mask.bool(), old_logps.float(), zero),
        ref_logps=torch.where(mask.bool(), ref_logps.float(), zero), scores=scores.to(device),
        gold=_gold_scores(rows_prompts, gen.texts).to(device), finished=gen.finished, group_size=cfg.group_size,
        old_values=None if old_values is None else torch.where(mask.bool(), old_values, zero),
    )
    return rollout, {"generation": t1 - t0, "scoring": time.perf_counter() - t1}


# ---------------------------------------------------------------------------------------------------------
# Advantages (tensors in, tensors out)
# ---------------------------------------------------------------------------------------------------------


class Advantages(NamedTuple):
    """What :func:`compute_advantages` returns. Tensors are detached."""

    advantages: torch.Tensor
    """(B, T): per token (GAE) or each sequence's advantage on all its tokens; 0 off the completion."""
    returns: torch.Tensor | None
    """(B, T) value targets Â + V (GAE only), else None."""
    token_rewards: torch.Tensor
    """(B, T): the per-token rewards: −β·k̂_t (if ``kl_penalty="reward"``) plus the score on the last token."""


def compute_advantages(scores: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor,
                       completion_mask: torch.Tensor, cfg: RLConfig, group_size: int | None = None,
                       values: torch.Tensor | None = None, beta: float | None = None) -> Advantages:
    """From scores and log-probs to advantages, the way ``cfg`` says (REINFORCE, RLOO, (Dr.) GRPO or PPO).

    .. math::  r_t = -\\beta_{r}\\,\\hat k(\\pi_{old}, \\pi_{ref})_t + [t = t_{last}]\\,s, \\qquad
               \\beta_r = \\beta \\text{ if kl\\_penalty = "reward" else } 0

    - ``advantage="gae"``: Â_t, R̂_t = GAE(r, V) (``policy_gradient.gae_advantages``);
    - otherwise one advantage per sequence from its total reward R = Σ_t r_t = s − β_r·KL̂, by the named
      estimator (``policy_gradient.sequence_advantages``: batch mean, leave-one-out, group z-score, group
      mean), put on every token of the sequence.

    ``cfg.whiten_advantages`` then whitens Â over all response tokens.

    Args:
        scores: Shape (B,), finite: one score per completion.
        old_logps: Shape (B, T), log π_old of the sampled tokens.
        ref_logps: Shape (B, T), log π_ref of the same tokens.
        completion_mask: Shape (B, T), 1 on response tokens; every row needs at least one.
        cfg: the estimator, KL placement and estimator, γ, λ.
        group_size: G (default ``cfg.group_size``); B must be a multiple of it for group estimators.
        values: Shape (B, T), V at rollout time; required for ``"gae"``.
        beta: the KL coefficient now (default ``cfg.beta``; an adaptive controller passes its own), >= 0.

    Raises:
        ValueError: non-finite ``scores``, B not a multiple of ``group_size`` (groups of unequal size), a row
            with no response token, ``beta < 0``, missing ``values`` for GAE.
    """
    beta = cfg.beta if beta is None else beta
    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0; got {beta}")
    group_size = cfg.group_size if group_size is None else group_size
    if not isinstance(scores, torch.Tensor) or scores.dim() != 1:
        raise ValueError(f"scores must be a 1-D tensor (B,); got {getattr(scores, 'shape', scores)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (no NaN or inf): check the reward")
    # kl_penalized_rewards checks the mask (a row without response tokens is refused) and the shapes
    token_rewards = kl_penalized_rewards(scores, old_logps, ref_logps, completion_mask,
                                         beta if cfg.kl_penalty == "reward" else 0.0, cfg.kl_estimator)
    returns = None
    if cfg.advantage == "gae":
        if values is None:
            raise ValueError("values (B, T) are required for advantage='gae' (PPO's value head)")
        advantages, returns = gae_advantages(token_rewards, values, completion_mask, cfg.gamma, cfg.lam)
    else:
        seq_rewards = masked_sum(token_rewards, completion_mask, dim=1)  # (B,) = s − β_r·KL̂
        seq_adv = sequence_advantages(seq_rewards, cfg.advantage, group_size)  # (B,)
        advantages = torch.where(completion_mask.bool(), seq_adv[:, None], torch.zeros_like(token_rewards))
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, completion_mask)
    return Advantages(advantages.detach(), None if returns is None else returns.detach(), token_rewards)


# ---------------------------------------------------------------------------------------------------------
# The loss of one minibatch
# ---------------------------------------------------------------------------------------------------------


def rl_loss(policy, batch: dict, cfg: RLConfig, beta: float | None = None,
            value_head: _ValueHead | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One minibatch's loss: PPO's clipped surrogate, plus β·KL (if ``kl_penalty="loss"``), the entropy bonus
    and, for PPO, vf_coef · the clipped value loss.

    .. math::  \\mathcal L = \\mathrm{agg}\\big(\\ell^{clip}_t + \\beta\\,\\hat k_t - c_H H_t\\big)
               + c_V\\,\\mathrm{token\\_mean}(\\ell^V_t)

    with agg = ``cfg.loss_agg`` (``policy_gradient.aggregate_loss``). ``batch`` holds (B, T) tensors
    ``input_ids``, ``attention_mask``, ``completion_mask``, ``old_logps``, ``ref_logps``, ``advantages`` and, for
    PPO, ``returns`` and ``old_values`` (:meth:`Rollout.minibatch`).

    Returns:
        (the scalar loss, metrics: scalar tensors ``losses/*``, ``charts/clipfrac``, ``kl/approx_kl``,
        ``charts/ratio_mean``, ``charts/entropy``, and for PPO ``charts/vf_clipfrac``).
    """
    beta = cfg.beta if beta is None else beta
    mask = batch["completion_mask"]
    logits, values = _forward(policy, batch["input_ids"], batch["attention_mask"], value_head,
                              batch["completion_mask"])  # (B, T, V)
    logps = per_token_logprobs(logits, batch["input_ids"])  # (B, T): log π_θ (untempered: π is what we train)
    pg_loss, pg_metrics = ppo_policy_loss(logps, batch["old_logps"], batch["advantages"], mask,
                                          cfg.clip_eps_low, cfg.clip_eps_high)
    per_token = pg_loss
    metrics: dict[str, torch.Tensor] = {}
    if cfg.kl_penalty == "loss":
        per_token_kl = kl_loss(logps, batch["ref_logps"], mask, cfg.kl_estimator)
        per_token = per_token + beta * per_token_kl
        metrics["losses/kl"] = aggregate_loss(per_token_kl.detach(), mask, cfg.loss_agg, cfg.max_new_tokens)
    aligned = F.pad(logits[:, :-1], (0, 0, 1, 0))  # (B, T, V): aligned[:, t] is the distribution of token t
    if cfg.ent_coef > 0:
        per_token = per_token + cfg.ent_coef * entropy_loss(aligned, mask)
    loss = aggregate_loss(per_token, mask, cfg.loss_agg, cfg.max_new_tokens)
    with torch.no_grad():
        metrics["losses/policy"] = aggregate_loss(pg_loss, mask, cfg.loss_agg, cfg.max_new_tokens)
        metrics["charts/entropy"] = masked_mean(entropy_from_logits(aligned.detach()), mask)
        metrics["charts/clipfrac"] = pg_metrics["clipfrac"]
        metrics["kl/approx_kl"] = pg_metrics["approx_kl"]
        metrics["charts/ratio_mean"] = pg_metrics["ratio_mean"]
    if value_head is not None:
        vf_loss, vf_metrics = ppo_value_loss(values, batch["old_values"], batch["returns"], mask,
                                             cfg.clip_range_value)
        vf = aggregate_loss(vf_loss, mask, "token_mean")
        loss = loss + cfg.vf_coef * vf
        metrics["losses/value"] = vf.detach()
        metrics["charts/vf_clipfrac"] = vf_metrics["vf_clipfrac"]
    metrics["losses/total"] = loss.detach()
    return loss, metrics


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


def _training_prompts(cfg: RLConfig) -> Callable[[], list[str]]:
    """A seeded stream of training-split prompts, families in turn."""
    rng = random.Random(f"rl-prompts-{cfg.seed}")
    counter = iter(range(10**12))

    def draw() -> list[str]:
        return [world.sample_problem(cfg.families[next(counter) % len(cfg.families)], rng, "train").prompt
                for _ in range(cfg.prompts_per_step)]
    return draw


def _sft_batches(tokenizer, cfg: RLConfig, device):
    """An endless seeded stream of SFT batches (the shipped training conversations, tokenized as drawn) for
    PPO-ptx; each batch carries ``num_items`` = its target tokens."""
    from .data import collate_sft, load_instruction_file, tokenize_conversation

    rows = load_instruction_file("train")
    gen = torch.Generator().manual_seed(cfg.seed)
    while True:
        order = torch.randperm(len(rows), generator=gen).tolist()
        for i in range(0, len(order) - cfg.sft_batch_size + 1, cfg.sft_batch_size):
            batch = collate_sft([tokenize_conversation(tokenizer, rows[j]["messages"])
                                 for j in order[i:i + cfg.sft_batch_size]], tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            batch["num_items"] = int(batch["completion_mask"].sum())
            yield batch


def _evaluate(policy, tokenizer, problems, history: dict, step: int) -> None:
    with torch.random.fork_rng(devices=[]):  # evaluation must not move the rollouts' random stream
        ev = evaluate_chat(policy, tokenizer, problems, greedy=True)
    history.setdefault("eval/step", []).append(step)
    for k in ("gold_score", "correct_rate", "eos_rate"):
        history.setdefault(f"eval/{k}", []).append(ev.overall[k])


def train_rl(policy, tokenizer, cfg: RLConfig, ref_model=None, reward_fn=None,
             progress: bool = True) -> tuple[nn.Module, dict[str, list]]:
    """Train ``policy`` in place with the RL algorithm ``cfg`` describes; return ``(policy, history)``.

    Args:
        policy: a causal LM (e.g. ``load_model("sft-tiny")[0]``).
        tokenizer: its tokenizer (the world's).
        cfg: :class:`RLConfig` (``RLConfig.preset(algo)``).
        ref_model: the frozen reference; default a copy of ``policy`` as it is now (``dpo_trainer``'s
            ``make_reference_model``). It must not share parameters with the policy.
        reward_fn: overrides ``cfg.reward``: a callable ``(prompts, replies) -> (B,)`` scores (finite), or a
            ``reward_trainer.RewardModel``.
        progress: show a tqdm bar.

    Returns:
        ``history``, one value per rollout under ``"step"`` (1, 2, ...) and: ``rewards/score`` (mean score of the
        reward source), ``rewards/score_std``, ``charts/gold_score`` (mean gold score of the rollout's samples),
        ``charts/correct_rate``, ``kl/seq`` (mean over sequences of Σ_t k1 = log π_old − log π_ref: KL to the
        reference in nats per sequence), ``kl/seq_k3``, ``charts/beta``, ``charts/response_length``,
        ``charts/eos_rate``, ``charts/zero_adv_share`` (share of rows whose advantage is exactly 0: unanimous
        groups), and the minibatch means of :func:`rl_loss`'s metrics (``losses/policy``, ``losses/kl``,
        ``losses/value``, ``losses/total``, ``charts/clipfrac``, ``kl/approx_kl``, ``charts/ratio_mean``,
        ``charts/entropy``, ``charts/vf_clipfrac``), ``losses/sft`` (PPO-ptx), ``charts/explained_variance``
        (PPO), ``charts/grad_norm``, and wall-clock ``time/generation``, ``time/scoring``, ``time/training``.
        With ``cfg.eval_prompts``: ``eval/step`` (0 = before training), ``eval/gold_score``,
        ``eval/correct_rate``, ``eval/eos_rate`` (greedy, ``evaluation.evaluate_chat``).
    """
    if not isinstance(cfg, RLConfig):
        raise ValueError(f"cfg must be an RLConfig (RLConfig.preset(algo)); got {type(cfg).__name__}")
    _check_config(cfg)
    device = next(policy.parameters()).device
    if ref_model is None:
        ref_model = make_reference_model(policy)
    _check_reference(ref_model, policy)
    ref_model.eval()
    reward = _reward_source(cfg, reward_fn, tokenizer, device)
    _disable_dropout(policy)
    policy.eval()  # no dropout: the first ratio is exactly the sampler's
    value_head = _ValueHead(policy.config.hidden_size).to(device) if cfg.advantage == "gae" else None
    torch.manual_seed(cfg.seed)  # after the head's init: every algorithm draws the same first rollout
    opt = make_optimizer(policy, TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay))
    if value_head is not None:
        opt.add_param_group({"params": list(value_head.parameters()), "lr": cfg.value_lr or cfg.lr,
                             "weight_decay": 0.0})
    params = [p for g in opt.param_groups for p in g["params"]]
    kl_ctl = (AdaptiveKLController(cfg.beta, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target is not None
              else FixedKLController(cfg.beta))
    draw_prompts = _training_prompts(cfg)
    sft_stream = _sft_batches(tokenizer, cfg, device) if cfg.sft_coef > 0 else None
    mb_gen = torch.Generator().manual_seed(cfg.seed)
    eval_problems = world.heldout_prompts(cfg.eval_prompts, seed=0) if cfg.eval_prompts else None
    history: dict[str, list] = {}

    def log(key, value):
        history.setdefault(key, []).append(float(value))

    if eval_problems:
        _evaluate(policy, tokenizer, eval_problems, history, 0)
    bar = tqdm(range(1, cfg.steps + 1), desc=f"rl {cfg.algo}", disable=not progress, mininterval=1.0)
    for step in bar:
        beta = kl_ctl.value
        rollout, times = collect_rollout(policy, tokenizer, draw_prompts(), cfg, ref_model, reward, value_head)
        mask = rollout.completion_mask
        adv = compute_advantages(rollout.scores, rollout.old_logps, rollout.ref_logps, mask, cfg,
                                 rollout.group_size, rollout.old_values, beta)
        rollout.advantages, rollout.returns = adv.advantages, adv.returns
        t0 = time.perf_counter()
        B = mask.shape[0]
        mb_size = B // cfg.num_minibatches
        sums: dict[str, float] = {}
        n_updates = 0
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=mb_gen) if cfg.num_minibatches > 1 else torch.arange(B)
            for start in range(0, B, mb_size):
                batch = rollout.minibatch(order[start:start + mb_size].to(device))
                with autocast_context(device, cfg.bf16):
                    loss, metrics = rl_loss(policy, batch, cfg, beta, value_head)
                    if sft_stream is not None:  # PPO-ptx: + sft_coef · (mean NLL per SFT target token)
                        sb = next(sft_stream)
                        nll = sft_loss_sum(policy, sb)[0] / sb["num_items"]
                        loss = loss + cfg.sft_coef * nll
                        metrics["losses/sft"] = nll.detach()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else 1e12)
                opt.step()
                metrics["charts/grad_norm"] = grad_norm
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                n_updates += 1
        t_train = time.perf_counter() - t0
        with torch.no_grad():
            k1 = masked_sum(rollout.old_logps - rollout.ref_logps, mask, dim=1)  # (B,) nats per sequence
            k3 = masked_sum(kl_estimate(rollout.old_logps, rollout.ref_logps, "k3"), mask, dim=1)
        kl_ctl.update(float(k1.mean()), B)
        history.setdefault("step", []).append(step)
        log("rewards/score", rollout.scores.mean())
        log("rewards/score_std", rollout.scores.std() if B > 1 else 0.0)
        log("charts/gold_score", rollout.gold.mean())
        log("charts/correct_rate", sum(world.is_correct(world.parse_prompt(p), t)
                                       for p, t in zip(rollout.prompts, rollout.texts)) / B)
        log("kl/seq", k1.mean())
        log("kl/seq_k3", k3.mean())
        log("charts/beta", beta)
        log("charts/response_length", mask.sum(dim=1).float().mean())
        log("charts/eos_rate", rollout.finished.float().mean())
        log("charts/zero_adv_share", (rollout.advantages.abs().sum(dim=1) == 0).float().mean())
        for k, v in sums.items():
            log(k, v / n_updates)
        if value_head is not None:
            log("charts/explained_variance", explained_variance(rollout.old_values, rollout.returns, mask))
        log("time/generation", times["generation"])
        log("time/scoring", times["scoring"])
        log("time/training", t_train)
        if eval_problems and cfg.eval_every and step % cfg.eval_every == 0 and step != cfg.steps:
            _evaluate(policy, tokenizer, eval_problems, history, step)
        bar.set_postfix(gold=f"{history['charts/gold_score'][-1]:.3f}", kl=f"{history['kl/seq'][-1]:.2f}")
    if eval_problems:
        _evaluate(policy, tokenizer, eval_problems, history, cfg.steps)
    policy.eval()
    return policy, history


# ---------------------------------------------------------------------------------------------------------
# The recipe behind the CLI
# ---------------------------------------------------------------------------------------------------------


def summarize(history: dict[str, list], last: int = 5) -> dict[str, float]:
    """The headline numbers of a run: held-out gold score and correctness before and after (greedy), the KL to
    the reference and the rollouts' mean score over the ``last`` rollouts, and the time split (seconds)."""
    tail = min(last, len(history["step"]))

    def mean_last(key):
        return sum(history[key][-tail:]) / tail

    out = {"rollouts": len(history["step"]), "kl_seq_last": mean_last("kl/seq"),
           "score_first": history["rewards/score"][0], "score_last": mean_last("rewards/score"),
           "gold_samples_first": history["charts/gold_score"][0], "gold_samples_last": mean_last("charts/gold_score")}
    if "eval/gold_score" in history:
        g, c = history["eval/gold_score"], history["eval/correct_rate"]
        out.update(gold_before=g[0], gold_after=g[-1], gold_gain=g[-1] - g[0], correct_before=c[0],
                   correct_after=c[-1])
    for k in ("generation", "scoring", "training"):
        out[f"seconds_{k}"] = sum(history[f"time/{k}"])
    return out


def rl_from_sft(cfg: RLConfig, policy: str | Path = "sft-tiny", out: str | Path | None = None,
                overwrite: bool = False, progress: bool = True):
    """Load ``policy`` (a shipped name or folder), train it with :func:`train_rl`, and save it to ``out``
    (atomically, with ``training_meta.json`` and ``training_log.json``) when given. Returns
    ``(policy, tokenizer, history)``; ``history["charts/wall_time"]`` holds the run's seconds."""
    if out is not None:  # fail before training, not after
        out = check_output_folder(out, overwrite)
    model, tokenizer = load_model(policy)
    t0 = time.perf_counter()
    model, history = train_rl(model, tokenizer, cfg, progress=progress)
    history["charts/wall_time"] = [time.perf_counter() - t0]
    if out is not None:
        meta = {"policy": str(policy), "config": asdict(cfg), "train_seconds": history["charts/wall_time"][0],
                "eval": {k: history[k] for k in history if k.startswith("eval/")}}
        save_model(model, tokenizer, out, overwrite=overwrite,
                   extra_files={"training_meta.json": json.dumps(meta, indent=2, default=str),
                                "training_log.json": json.dumps(history)})
    return model, tokenizer, history

