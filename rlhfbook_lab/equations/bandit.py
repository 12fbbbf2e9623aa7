"""A bandit you can solve by hand: one prompt, K canned responses, known rewards, a reference policy.

The policy is a categorical distribution π_θ = softmax(θ) over the K responses (one "token" each), started at
π_ref. The KL-regularised RLHF objective (book ch. 6 and 15)

.. math::  J(\\pi) = \\mathbb{E}_{y\\sim\\pi}[r(y)] - \\beta\\,\\mathrm{KL}(\\pi\\,\\|\\,\\pi_{ref})

has a closed-form maximiser and maximum (the same algebra that gives DPO its implicit reward):

.. math::  \\pi^*(y) = \\frac{\\pi_{ref}(y)\\, e^{r(y)/\\beta}}{Z}, \\qquad
           J^* = J(\\pi^*) = \\beta \\log Z = \\beta \\log \\sum_y \\pi_{ref}(y)\\, e^{r(y)/\\beta}

so every RL algorithm can be graded exactly: what fraction of J* did it reach, and how far is it from π*?
The trainers below sample ``group_size`` responses per step and use the package's own advantage, loss and KL
functions (:mod:`~rlhfbook_lab.equations.policy_gradient`, :mod:`~rlhfbook_lab.equations.kl`) on (G, 1) "token"
tensors, exactly
as a language-model trainer would on (B, T) ones.

Two ways to regularise, both here. REINFORCE, RLOO and PPO put −β·k1 in the reward (InstructGPT style): the
sampled return is then an unbiased estimate of J, so they climb J itself. GRPO scores with the raw reward and
adds β·k3 as a loss term (DeepSeekMath style). Both choices move its fixed point away from π*: the std
division scales the reward term up as the group comes to agree (so the KL term cannot hold the policy), and
the k3 loss follows ∇KL(π_ref‖π), not ∇KL(π‖π_ref) (see :mod:`rlhfbook_lab.equations.kl`). On the default bandit it
passes near J* and then settles at about 80 % of it, over-confident in the top-reward answer; with
``grpo_scale_rewards=False`` (Dr. GRPO) and ``grpo_kl_estimator="k2"`` it reaches ~99 % of J*.

A third regulariser, SFT mixing (``sft_coef`` = λ): every trainer can add λ times the NLL of responses sampled
from π_ref (the "SFT data"). Its expected value is the cross-entropy H(π_ref, π) = KL(π_ref‖π) + H(π_ref), so it
pulls toward the reference in the *forward* direction. With β = 0 the trainers then climb
E_π[r] − λ·KL(π_ref‖π), whose maximiser :func:`optimal_policy_forward_kl` also has a closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhfbook_lab.equations.kl import ESTIMATORS, categorical_kl, kl_loss, kl_penalized_rewards
from rlhfbook_lab.equations.policy_gradient import (
    ADVANTAGE_ESTIMATORS,
    aggregate_loss,
    gae_advantages,
    policy_gradient_loss,
    ppo_policy_loss,
    ppo_value_loss,
    sequence_advantages,
)

__all__ = [
    "ALGORITHMS",
    "BanditConfig",
    "gradient_estimates",
    "objective",
    "optimal_objective",
    "optimal_policy",
    "optimal_policy_forward_kl",
    "reward_gradient",
    "train_bandit",
    "train_grpo",
    "train_ppo",
    "train_reinforce",
    "train_rloo",
]

ALGORITHMS = ("reinforce", "rloo", "grpo", "ppo")


@dataclass(frozen=True)
class BanditConfig:
    """Everything that defines a bandit run. The defaults are the lesson's bandit."""

    responses: tuple[str, ...] = (
        "4.",
        "The answer is 4.",
        "Great question!! The answer is 4, I think, maybe.",
        "5.",
    )
    """The K canned responses to "What is 2 + 2?" (for display only)."""
    rewards: tuple[float, ...] = (1.0, 0.8, 0.2, 0.0)
    """r(y) for each response: known and deterministic."""
    ref_probs: tuple[float, ...] = (0.05, 0.15, 0.5, 0.3)
    """π_ref(y): the reference (SFT) policy, which prefers the chatty answer. The policy starts here."""
    beta: float = 0.2
    """KL coefficient β > 0. At 0.2 the optimum π* mixes the two correct answers; it is not the argmax."""
    group_size: int = 8
    """G: responses sampled from the policy per step (one prompt, so one group)."""
    num_steps: int = 200
    """Optimiser steps (PPO: rollouts, each followed by ``ppo_epochs`` steps)."""
    learning_rate: float = 0.1
    """Adam's learning rate on the logits (and PPO's value)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run (as CleanRL), so the policy settles."""
    seed: int = 0
    """Seeds the sampler: a run is deterministic."""
    clip_eps_low: float = 0.2
    """PPO/GRPO clip range below 1 (ε_low)."""
    clip_eps_high: float = 0.2
    """PPO/GRPO clip range above 1 (ε_high; DAPO's "clip-higher" raises it)."""
    ppo_epochs: int = 4
    """PPO: optimiser steps on each rollout (the clipped ratio matters from the second one on)."""
    vf_coef: float = 0.5
    """PPO: weight of the value loss."""
    clip_range_value: float = 0.2
    """PPO: how far the value may move from its rollout-time prediction before its loss is clipped."""
    grpo_scale_rewards: bool = True
    """GRPO: divide advantages by the group's std (DeepSeekMath; TRL's ``scale_rewards``). False: Dr. GRPO."""
    grpo_kl_estimator: str = "k3"
    """GRPO: the estimator of its KL loss term (DeepSeekMath: k3; k2 gives the gradient of KL(π‖π_ref))."""
    sft_coef: float = 0.0
    """λ ≥ 0: every step adds λ·(mean NLL of ``group_size`` responses sampled from π_ref) to the loss, an SFT
    term whose gradient is λ·∇KL(π_ref‖π) (forward KL). 0 (default): no SFT term, and no extra sampling. With
    ``sft_coef > 0``, ``beta`` may be 0 (the SFT term is then the only regulariser)."""
    init_probs: tuple[float, ...] | None = None
    """Where the policy starts: None (default) starts at ``ref_probs`` — the reference as initialisation, itself a
    regulariser (lesson 15); a tuple of K probabilities > 0 summing to 1 starts there instead."""

    def __post_init__(self):
        k = len(self.rewards)
        if k < 2:
            raise ValueError(f"rewards needs at least 2 responses; got {k}")
        if len(self.ref_probs) != k or len(self.responses) != k:
            raise ValueError(
                f"responses ({len(self.responses)}), rewards ({k}) and ref_probs ({len(self.ref_probs)}) "
                "must have the same length K"
            )
        if not all(math.isfinite(r) for r in self.rewards):
            raise ValueError(f"rewards must be finite; got {self.rewards}")
        if min(self.ref_probs) <= 0 or abs(sum(self.ref_probs) - 1.0) > 1e-6:
            raise ValueError(f"ref_probs must be > 0 and sum to 1; got {self.ref_probs}")
        if self.init_probs is not None and (len(self.init_probs) != k or min(self.init_probs) <= 0
                                            or abs(sum(self.init_probs) - 1.0) > 1e-6):
            raise ValueError(f"init_probs must be None or K={k} probabilities > 0 summing to 1; got {self.init_probs}")
        if not (math.isfinite(self.sft_coef) and self.sft_coef >= 0):
            raise ValueError(f"sft_coef must be a finite number >= 0; got {self.sft_coef}")
        if not (math.isfinite(self.beta) and (self.beta > 0 or (self.beta == 0 and self.sft_coef > 0))):
            raise ValueError(
                f"beta must be > 0 (the closed-form optimum needs it), or 0 together with sft_coef > 0; "
                f"got beta={self.beta}, sft_coef={self.sft_coef}"
            )
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2; got {self.group_size}")
        if self.num_steps < 1 or self.ppo_epochs < 1:
            raise ValueError(f"num_steps and ppo_epochs must be >= 1: {self.num_steps}, {self.ppo_epochs}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if self.grpo_kl_estimator not in ESTIMATORS:
            raise ValueError(f"grpo_kl_estimator must be one of {ESTIMATORS}; got {self.grpo_kl_estimator!r}")


# ---------------------------------------------------------------------------------------------------------
# The closed form
# ---------------------------------------------------------------------------------------------------------


def _check_bandit(
    rewards: torch.Tensor, ref_probs: torch.Tensor, beta: float, name: str = "beta", allow_zero: bool = False
) -> None:
    if rewards.dim() != 1 or ref_probs.shape != rewards.shape:
        raise ValueError(
            f"rewards and ref_probs must both have shape (K,); "
            f"got {tuple(rewards.shape)}, {tuple(ref_probs.shape)}"
        )
    if not (math.isfinite(beta) and (beta > 0 or (allow_zero and beta == 0))):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {beta}")


def optimal_policy(rewards: torch.Tensor, ref_probs: torch.Tensor, beta: float) -> torch.Tensor:
    """π*(y) = π_ref(y)·exp(r(y)/β) / Z, the maximiser of J.

    Args:
        rewards: Shape (K,). ref_probs: Shape (K,), π_ref. beta: β > 0.

    Returns:
        Shape (K,), sums to 1.
    """
    _check_bandit(rewards, ref_probs, beta)
    return torch.softmax(torch.log(ref_probs) + rewards / beta, dim=-1)


def optimal_objective(rewards: torch.Tensor, ref_probs: torch.Tensor, beta: float) -> torch.Tensor:
    """J* = β·log Σ_y π_ref(y)·exp(r(y)/β), the maximum of J.

    Args:
        rewards: Shape (K,). ref_probs: Shape (K,), π_ref. beta: β > 0.

    Returns:
        A scalar.
    """
    _check_bandit(rewards, ref_probs, beta)
    return beta * torch.logsumexp(torch.log(ref_probs) + rewards / beta, dim=-1)


def optimal_policy_forward_kl(rewards: torch.Tensor, ref_probs: torch.Tensor, coef: float) -> torch.Tensor:
    """The maximiser of E_π[r] − λ·KL(π_ref‖π): the policy an SFT term of weight λ (or, on average, a k3 KL
    loss of weight λ) holds against the reward.

    The objective is concave in π; its stationarity condition on the simplex, r(y) + λ·π_ref(y)/π(y) = c, gives

    .. math::  \\pi_\\lambda(y) = \\frac{\\lambda\\, \\pi_{ref}(y)}{c - r(y)}, \\qquad
               c > \\max_y r(y) \\text{ the unique root of } \\sum_y \\pi_\\lambda(y) = 1

    (found by bisection in float64). Compare π* ∝ π_ref·e^{r/β}: the reverse KL tilts π_ref exponentially, the
    forward KL only by the factor 1/(c − r), so it keeps more mass on poor responses and piles the rest on the
    best one.

    Args:
        rewards: Shape (K,). ref_probs: Shape (K,), π_ref > 0. coef: λ > 0.

    Returns:
        Shape (K,), float64, sums to 1.
    """
    _check_bandit(rewards, ref_probs, coef, name="coef")
    r, ref = rewards.double(), ref_probs.double()
    lo, hi = r.max().item(), r.max().item() + coef  # Σ λ·π_ref/(c − r) is > 1 just above max r, ≤ 1 at hi
    for _ in range(200):  # bisection: the sum falls monotonically in c
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if (coef * ref / (mid - r)).sum().item() > 1.0:
            lo = mid
        else:
            hi = mid
    probs = coef * ref / (hi - r)
    return probs / probs.sum()


def objective(
    probs: torch.Tensor, rewards: torch.Tensor, ref_probs: torch.Tensor, beta: float
) -> torch.Tensor:
    """Exact J(π) = Σ_y π(y) r(y) − β·KL(π‖π_ref).

    Args:
        probs: Shape (K,), π. rewards: Shape (K,). ref_probs: Shape (K,). beta: β ≥ 0 (0: the expected reward).

    Returns:
        A scalar.
    """
    _check_bandit(rewards, ref_probs, beta, allow_zero=True)
    return (probs * rewards).sum() - beta * categorical_kl(probs, ref_probs, from_logits=False)


def reward_gradient(rewards: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """The exact gradient of E_π[r] with respect to the logits θ of π = softmax(θ):

    .. math::  \\nabla_\\theta\\, \\mathbb{E}_{y\\sim\\pi}[r(y)] = \\pi \\odot (r - \\mathbb{E}_\\pi[r])

    Args:
        rewards: Shape (K,). probs: Shape (K,), π.

    Returns:
        Shape (K,), sums to 0.
    """
    _check_bandit(rewards, probs, 1.0)
    return probs * (rewards - (probs * rewards).sum())


def gradient_estimates(
    cfg: BanditConfig, estimator: str, num_groups: int, probs: torch.Tensor | None = None, seed: int = 0
) -> torch.Tensor:
    """Sampled policy-gradient estimates of ∇_θ E_π[r], one per group, to study their bias and variance.

    Each of ``num_groups`` groups draws ``cfg.group_size`` responses from π, computes advantages of the raw
    rewards with ``estimator`` (:func:`~.policy_gradient.sequence_advantages`, or ``"none"``: A = r,
    no baseline), and differentiates the package's policy-gradient loss (mean over the group) with respect to
    its own copy of the logits, so one backward pass gives every group's estimate:

    .. math::  \\hat g = \\frac{1}{G}\\sum_{i=1}^{G} A_i\\, \\nabla_\\theta \\log \\pi_\\theta(y_i), \\qquad
               \\mathbb{E}[\\hat g] = \\nabla_\\theta\\, \\mathbb{E}_\\pi[r] \\text{ for an unbiased estimator}

    (compare with :func:`reward_gradient`). No KL term: this is the gradient of the reward alone.

    Args:
        cfg: the bandit (rewards, ``group_size``, ``ref_probs``).
        estimator: ``"none"`` or one of ``policy_gradient.ADVANTAGE_ESTIMATORS`` (``"reinforce"`` uses each
            group's own mean, so on one group it equals ``"dr_grpo"``).
        num_groups: how many independent groups (estimates), >= 1.
        probs: Shape (K,), the policy π at which to estimate (default: π_ref).
        seed: seeds the sampler.

    Returns:
        Shape (num_groups, K): row n is group n's estimate of ∇_θ E_π[r] (the negative loss gradient).
    """
    if estimator != "none" and estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"estimator must be 'none' or one of {ADVANTAGE_ESTIMATORS}; got {estimator!r}")
    if not isinstance(num_groups, int) or num_groups < 1:
        raise ValueError(f"num_groups must be an int >= 1; got {num_groups}")
    rewards = torch.tensor(cfg.rewards, dtype=torch.float64)
    probs = torch.tensor(cfg.ref_probs, dtype=torch.float64) if probs is None else probs.double()
    _check_bandit(rewards, probs, 1.0)
    G = cfg.group_size
    generator = torch.Generator().manual_seed(seed)
    actions = torch.multinomial(probs, num_groups * G, replacement=True, generator=generator)  # (N·G,)
    scores = rewards[actions].view(num_groups, G)  # (N, G)
    if estimator == "none":
        advantages = scores
    elif estimator == "reinforce":  # the batch mean, with each group its own batch
        advantages = torch.stack([sequence_advantages(row, "reinforce") for row in scores])
    else:
        advantages = sequence_advantages(scores.reshape(-1), estimator, G).view(num_groups, G)
    logits = torch.log(probs).repeat(num_groups, 1).requires_grad_()  # (N, K): one copy per group
    logps = torch.log_softmax(logits, dim=-1).gather(1, actions.view(num_groups, G))  # (N, G)
    mask = torch.ones(num_groups * G, 1, dtype=torch.float64)
    per_token_loss = policy_gradient_loss(logps.reshape(-1, 1), advantages.reshape(-1), mask)  # (N·G, 1)
    # the mean over each group's G responses, summed over groups: each group's logits get its own gradient
    (per_token_loss.view(num_groups, G).mean(dim=1).sum()).backward()
    return -logits.grad


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------


class _Run:
    """What every trainer shares: the problem as tensors, the logits, Adam, the sampler, the history."""

    def __init__(self, cfg: BanditConfig, extra_params: tuple[torch.Tensor, ...] = ()):
        self.cfg = cfg
        self.rewards = torch.tensor(cfg.rewards, dtype=torch.float64)
        self.ref_probs = torch.tensor(cfg.ref_probs, dtype=torch.float64)
        self.ref_logps = torch.log(self.ref_probs).float()  # (K,)
        start = self.ref_logps if cfg.init_probs is None else torch.log(torch.tensor(cfg.init_probs)).float()
        self.logits = torch.nn.Parameter(start.clone())  # θ: the policy starts at π_ref unless told otherwise
        self.optimizer = torch.optim.Adam([self.logits, *extra_params], lr=cfg.learning_rate)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.mask = torch.ones(cfg.group_size, 1)  # (G, 1): each response is one token
        self.history: dict[str, list] = {}

    def sample(self) -> torch.Tensor:
        """G response indices from the current policy. Shape (G,)."""
        probs = torch.softmax(self.logits.detach(), dim=-1)
        return torch.multinomial(probs, self.cfg.group_size, replacement=True, generator=self.generator)

    def token_logps(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π_θ, log π_ref) of the sampled responses as per-token tensors, Shape (G, 1) each."""
        return F.log_softmax(self.logits, dim=-1)[actions][:, None], self.ref_logps[actions][:, None]

    def sft_loss(self) -> torch.Tensor:
        """The SFT term, Shape (), with grad: λ times the mean NLL of G responses sampled from π_ref,

        .. math::  \\lambda \\cdot \\frac{1}{G}\\sum_i -\\log \\pi_\\theta(y_i), \\quad y_i \\sim \\pi_{ref},
                   \\qquad \\mathbb{E} = \\lambda\\, H(\\pi_{ref}, \\pi_\\theta)
                   = \\lambda\\,\\big(\\mathrm{KL}(\\pi_{ref}\\|\\pi_\\theta) + H(\\pi_{ref})\\big)

        With λ = 0 it is 0 and draws nothing from the sampler, so runs without it are unchanged.
        """
        if self.cfg.sft_coef == 0:
            return torch.zeros(())
        sft_actions = torch.multinomial(self.ref_probs, self.cfg.group_size, replacement=True, generator=self.generator)
        nll = -F.log_softmax(self.logits, dim=-1)[sft_actions][:, None]  # (G, 1)
        return self.cfg.sft_coef * aggregate_loss(nll, self.mask, "token_mean")

    def step(self, loss: torch.Tensor, step: int) -> None:
        """One Adam step on ``loss`` plus the SFT term (:meth:`sft_loss`; 0 unless ``cfg.sft_coef > 0``)."""
        if self.cfg.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = self.cfg.learning_rate * (1.0 - step / self.cfg.num_steps)
        sft = self.sft_loss()
        self.last_sft_loss = sft.detach()
        self.optimizer.zero_grad()
        (loss + sft).backward()
        self.optimizer.step()

    def log(self, **metrics: float) -> None:
        if self.cfg.sft_coef > 0:
            metrics["losses/sft"] = self.last_sft_loss
        probs = torch.softmax(self.logits.detach().double(), dim=-1)
        metrics = {
            "charts/J": objective(probs, self.rewards, self.ref_probs, self.cfg.beta),
            "charts/expected_reward": (probs * self.rewards).sum(),
            "kl/exact": categorical_kl(probs, self.ref_probs, from_logits=False),
            **metrics,
        }
        for key, value in metrics.items():
            value = value.detach() if torch.is_tensor(value) else value
            self.history.setdefault(key, []).append(float(value))
        self.history.setdefault("policy/probs", []).append(probs.tolist())


def _train_kl_in_reward(cfg: BanditConfig, estimator: str) -> dict[str, list]:
    """REINFORCE-style training with the KL in the reward: r̃ = r − β·k1, advantages by ``estimator``."""
    run = _Run(cfg)
    for step in range(cfg.num_steps):
        actions = run.sample()  # (G,)
        logps, ref_logps = run.token_logps(actions)  # (G, 1) each
        scores = run.rewards[actions].float()  # (G,)
        rewards = kl_penalized_rewards(scores, logps, ref_logps, run.mask, cfg.beta, estimator="k1")  # (G, 1)
        advantages = sequence_advantages(rewards.sum(dim=1), estimator, cfg.group_size)  # (G,)
        per_token_loss = policy_gradient_loss(logps, advantages, run.mask)
        loss = aggregate_loss(per_token_loss, run.mask, "seq_mean_token_mean")
        run.step(loss, step)
        run.log(**{"losses/policy": loss, "charts/reward_mean": scores.mean()})
    return run.history


def train_reinforce(cfg: BanditConfig) -> dict[str, list]:
    """REINFORCE with the batch-mean baseline (:func:`~rlhfbook_lab.equations.policy_gradient.reinforce_advantages`),
    KL in the reward. Returns the history: ``charts/J``, ``kl/exact``, ``losses/policy``, … one per step."""
    return _train_kl_in_reward(cfg, "reinforce")


def train_rloo(cfg: BanditConfig) -> dict[str, list]:
    """RLOO (:func:`~rlhfbook_lab.equations.policy_gradient.rloo_advantages`), KL in the reward. Returns the history."""
    return _train_kl_in_reward(cfg, "rloo")


def train_grpo(cfg: BanditConfig) -> dict[str, list]:
    """GRPO: group-normalised advantages of the raw reward, the clipped surrogate with π_old = the sampler
    (one update per batch, so ρ = 1), and β·KL as a loss term (``cfg.grpo_kl_estimator``). Returns the
    history, with ``losses/kl`` (the mean per-token KL loss) besides the common keys."""
    run = _Run(cfg)
    for step in range(cfg.num_steps):
        actions = run.sample()
        logps, ref_logps = run.token_logps(actions)  # (G, 1) each
        scores = run.rewards[actions].float()  # (G,)
        estimator = "grpo" if cfg.grpo_scale_rewards else "dr_grpo"
        advantages = sequence_advantages(scores, estimator, cfg.group_size)  # (G,)
        pg_loss, metrics = ppo_policy_loss(
            logps, logps.detach(), advantages, run.mask, cfg.clip_eps_low, cfg.clip_eps_high
        )
        per_token_kl = kl_loss(logps, ref_logps, run.mask, cfg.grpo_kl_estimator)
        loss = aggregate_loss(pg_loss + cfg.beta * per_token_kl, run.mask, "seq_mean_token_mean")
        run.step(loss, step)
        run.log(**{
            "losses/policy": aggregate_loss(pg_loss, run.mask, "seq_mean_token_mean"),
            "losses/kl": aggregate_loss(per_token_kl, run.mask, "seq_mean_token_mean"),
            "losses/total": loss,
            "charts/clipfrac": metrics["clipfrac"],
            "charts/reward_mean": scores.mean(),
        })
    return run.history


def train_ppo(cfg: BanditConfig) -> dict[str, list]:
    """PPO with a learned value (the bandit has one state, so V is one number), KL in the reward (k1),
    GAE (one token, so Â = r̃ − V), and ``cfg.ppo_epochs`` clipped policy + value steps per rollout.
    Returns the history, with ``losses/value``, ``kl/approx_kl``, ``charts/clipfrac`` besides the common keys
    (from the last epoch)."""
    value = torch.nn.Parameter(torch.zeros(()))
    run = _Run(cfg, extra_params=(value,))
    for step in range(cfg.num_steps):
        with torch.no_grad():  # the rollout
            actions = run.sample()
            old_logps, ref_logps = run.token_logps(actions)  # (G, 1) each
            scores = run.rewards[actions].float()
            rewards = kl_penalized_rewards(scores, old_logps, ref_logps, run.mask, cfg.beta, estimator="k1")
            old_values = value.detach().expand(cfg.group_size, 1)  # (G, 1)
            advantages, returns = gae_advantages(rewards, old_values, run.mask, gamma=1.0, lam=1.0)
        for _ in range(cfg.ppo_epochs):
            logps, _ = run.token_logps(actions)
            pg_loss, pg_metrics = ppo_policy_loss(
                logps, old_logps, advantages, run.mask, cfg.clip_eps_low, cfg.clip_eps_high
            )
            values = value.expand(cfg.group_size, 1)
            vf_loss, vf_metrics = ppo_value_loss(values, old_values, returns, run.mask, cfg.clip_range_value)
            loss = aggregate_loss(pg_loss + cfg.vf_coef * vf_loss, run.mask, "token_mean")
            run.step(loss, step)
        run.log(**{
            "losses/policy": aggregate_loss(pg_loss, run.mask, "token_mean"),
            "losses/value": aggregate_loss(vf_loss, run.mask, "token_mean"),
            "kl/approx_kl": pg_metrics["approx_kl"],
            "charts/clipfrac": pg_metrics["clipfrac"],
            "charts/vf_clipfrac": vf_metrics["vf_clipfrac"],
            "charts/reward_mean": scores.mean(),
        })
    return run.history


def train_bandit(cfg: BanditConfig, algorithm: str) -> dict[str, list]:
    """Train on the bandit with one of ``ALGORITHMS``; returns the history dict of per-step lists."""
    trainers = {"reinforce": train_reinforce, "rloo": train_rloo, "grpo": train_grpo, "ppo": train_ppo}
    if algorithm not in trainers:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}; got {algorithm!r}")
    return trainers[algorithm](cfg)
