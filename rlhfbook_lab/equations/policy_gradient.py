"""Policy-gradient math: returns, GAE, group advantages (REINFORCE/RLOO/GRPO/Dr. GRPO), PPO's clipped losses,
and the loss-aggregation modes that distinguish GRPO, DAPO and Dr. GRPO.

Tensor math only: no models, no I/O. Book chapter 6 (Reinforcement Learning).

Why one module (~680 lines): the losses and estimators share the conventions below (masks, per-token losses,
detached targets) and the lessons compare them side by side; each function is short and stands alone.

Conventions
-----------
* Token tensors are (B, T) with a ``completion_mask`` (B, T) that is 1 on response tokens. Every function
  ignores masked slots *completely*: whatever they hold (padding garbage, a stale value of 100, even inf)
  changes neither an output nor a gradient. A row with no response token is refused with ``ValueError``.
* Tensors may be response-only (B, T_response) or full sequences aligned with ``input_ids`` as in
  :mod:`rlhfbook_lab.equations.logprobs`; the functions only look at the mask. In returns and GAE, "the next token"
  of a response token is the row's next *unmasked* one: a masked hole inside a response (a tool's output in
  a multi-turn reply: not the policy's action) is skipped, not counted as a step.
* Losses come back **per token** (B, T) and are reduced by :func:`aggregate_loss`, whose ``mode`` names the
  reduction, so "sum or mean, over what?" is always an explicit choice.
* Advantages, returns and rewards are targets: they come back detached.
"""

from __future__ import annotations

import torch

from rlhfbook_lab.checks import check_number
from rlhfbook_lab.equations.kl import check_token_mask, kl_k3
from rlhfbook_lab.equations.logprobs import entropy_from_logits, masked_mean, masked_sum, masked_var

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AGGREGATION_MODES",
    "POLICY_LOSSES",
    "aggregate_loss",
    "cispo_policy_loss",
    "discounted_returns",
    "dr_grpo_advantages",
    "entropy_loss",
    "explained_variance",
    "gae_advantages",
    "grpo_advantages",
    "gspo_policy_loss",
    "informative_groups",
    "maxrl_advantages",
    "policy_gradient_loss",
    "ppo_policy_loss",
    "ppo_value_loss",
    "reinforce_advantages",
    "rloo_advantages",
    "sequence_advantages",
]

ADVANTAGE_ESTIMATORS = ("reinforce", "rloo", "grpo", "dr_grpo", "maxrl")
AGGREGATION_MODES = ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm")
POLICY_LOSSES = ("ppo", "gspo", "cispo")
"""The clipped surrogates: PPO's per-token ratio (:func:`ppo_policy_loss`), GSPO's per-sequence one
(:func:`gspo_policy_loss`), CISPO's clipped, detached weight on REINFORCE (:func:`cispo_policy_loss`)."""


def _check_unit_interval(x: float, name: str) -> None:
    check_number(name, x, minimum=0, maximum=1)


def _zero_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with masked slots set to 0 (``torch.where``: inf/NaN there vanish from values and gradients)."""
    return torch.where(mask.bool(), x, torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------------------
# Token-level returns and advantages
# ---------------------------------------------------------------------------------------------------------


def discounted_returns(
    rewards: torch.Tensor, completion_mask: torch.Tensor, gamma: float = 1.0
) -> torch.Tensor:
    """Monte-Carlo return of every response token.

    .. math::  G_t = \\sum_{l \\ge 0} \\gamma^l\\, r_{t+l}

    where t, t+1, … run over the row's response tokens only (masked slots are skipped, not counted as steps),
    and the return after the last response token is 0.

    Args:
        rewards: Shape (B, T), per-token rewards (e.g. from :func:`rlhfbook_lab.equations.kl.kl_penalized_rewards`).
        completion_mask: Shape (B, T), 1 on response tokens.
        gamma: discount γ in [0, 1].

    Returns:
        returns: Shape (B, T), detached, 0 on masked slots.
    """
    check_token_mask(completion_mask, rewards=rewards)
    _check_unit_interval(gamma, "gamma")
    m = completion_mask.bool()
    rewards = _zero_masked(rewards.detach(), m)
    running = torch.zeros_like(rewards[:, 0])  # (B,)
    returns_reversed = []
    for t in reversed(range(rewards.shape[1])):
        running = torch.where(m[:, t], rewards[:, t] + gamma * running, running)
        returns_reversed.append(torch.where(m[:, t], running, torch.zeros_like(running)))
    return torch.stack(returns_reversed[::-1], dim=1)


def gae_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    completion_mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016) over masked token sequences.

    .. math::  \\delta_t = r_t + \\gamma V_{t+1} - V_t, \\qquad
               \\hat A_t = \\sum_{l \\ge 0} (\\gamma\\lambda)^l\\, \\delta_{t+l}, \\qquad
               \\hat R_t = \\hat A_t + V_t

    computed backwards with the recursion ``lastgaelam = δ_t + γλ·lastgaelam`` (TRL/CleanRL). t+1 is the row's
    *next response token*; after the last response token the episode ends, so that token bootstraps from
    V = 0 (not from whatever the value head wrote in the padding after it). λ = 1 gives Monte-Carlo returns
    minus values; λ = 0 gives the one-step TD errors δ_t.

    Args:
        rewards: Shape (B, T), per-token rewards.
        values: Shape (B, T), the value head's V(s_t) at each response token.
        completion_mask: Shape (B, T), 1 on response tokens; masked ``rewards``/``values`` are ignored.
        gamma: discount γ in [0, 1] (RLHF usually uses 1).
        lam: GAE λ in [0, 1].

    Returns:
        advantages: Shape (B, T), detached, 0 on masked slots.
        returns: Shape (B, T), detached, the value targets Â_t + V_t, 0 on masked slots.
    """
    check_token_mask(completion_mask, rewards=rewards, values=values)
    _check_unit_interval(gamma, "gamma")
    _check_unit_interval(lam, "lam")
    m = completion_mask.bool()
    rewards, values = _zero_masked(rewards.detach(), m), _zero_masked(values.detach(), m)
    lastgaelam = torch.zeros_like(values[:, 0])  # (B,)
    nextvalues = torch.zeros_like(values[:, 0])  # V after the last response token: terminal, 0
    advantages_reversed = []
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        gae = delta + gamma * lam * lastgaelam
        lastgaelam = torch.where(m[:, t], gae, lastgaelam)  # masked slots pass the carry through untouched
        nextvalues = torch.where(m[:, t], values[:, t], nextvalues)
        advantages_reversed.append(torch.where(m[:, t], gae, torch.zeros_like(gae)))
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    return advantages, advantages + values


# ---------------------------------------------------------------------------------------------------------
# Sequence-level advantages from one scalar reward per completion
# ---------------------------------------------------------------------------------------------------------


def _check_rewards(rewards: torch.Tensor) -> None:
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1:
        raise ValueError(f"rewards must be a 1-D tensor (B,); got {getattr(rewards, 'shape', rewards)}")
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("rewards must be finite; got NaN or inf")


def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Validate and reshape (B,) rewards into (B // G, G): rows of one prompt's group are contiguous."""
    _check_rewards(rewards)
    if not isinstance(group_size, int) or group_size < 2:
        raise ValueError(f"group_size must be an int >= 2 (a group of one has no baseline); got {group_size}")
    if rewards.shape[0] % group_size != 0:
        raise ValueError(
            f"rewards has {rewards.shape[0]} rows, not a multiple of group_size={group_size}: "
            "every prompt's group must have exactly group_size completions"
        )
    return rewards.detach().view(-1, group_size)


def _zero_constant_groups(advantages: torch.Tensor, grouped: torch.Tensor) -> torch.Tensor:
    """An all-equal group carries no signal: make its advantages exactly 0 (not rounding noise / eps)."""
    constant = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)
    return torch.where(constant, torch.zeros_like(advantages), advantages).reshape(-1)


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """DAPO's dynamic-sampling filter (Yu et al. 2025): which groups carry a learning signal.

    .. math::  \\mathrm{keep}_g = \\big[\\max_{i \\in g} r_i > \\min_{i \\in g} r_i\\big]
               \\;\\;(\\Leftrightarrow \\mathrm{std}(r_g) > 0)

    A group whose G rewards are all equal — every reply right, or every one wrong, under a 0/1 verifier — gets
    zero advantage under every group baseline (RLOO, GRPO, Dr. GRPO, MaxRL): it adds no gradient and only dilutes
    a token mean. DAPO drops such groups and refills the batch from fresh prompts (``trainers.rl``'s
    ``dynamic_sampling``).

    Args:
        rewards: Shape (B,), B = num_prompts · G, each prompt's G completions contiguous; finite.
        group_size: G >= 2.

    Returns:
        keep: Shape (B // G,), bool.
    """
    grouped = _grouped(rewards, group_size)  # (B/G, G)
    return grouped.amax(dim=1) > grouped.amin(dim=1)


def reinforce_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE with the batch-mean baseline: :math:`A_i = r_i - \\frac{1}{B}\\sum_j r_j`.

    The mean includes r_i itself, which shrinks the expected gradient by (B − 1)/B; RLOO removes exactly
    that shrinkage.

    Args:
        rewards: Shape (B,), one finite scalar reward per completion, B >= 2.

    Returns:
        advantages: Shape (B,), detached; sums to 0.
    """
    _check_rewards(rewards)
    if rewards.shape[0] < 2:
        raise ValueError("rewards needs B >= 2 rows: a baseline from one sample cancels its own reward")
    grouped = rewards.detach().view(1, -1)
    return _zero_constant_groups(grouped - grouped.mean(dim=1, keepdim=True), grouped)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024): the baseline of sample i is the mean
    of the *other* G − 1 rewards of its group.

    .. math::  A_i = r_i - \\frac{1}{G-1}\\sum_{j \\ne i} r_j \\;=\\; \\frac{G}{G-1}\\,(r_i - \\bar r)

    Args:
        rewards: Shape (B,), B = num_prompts · G, each prompt's G completions contiguous.
        group_size: G >= 2.

    Returns:
        advantages: Shape (B,), detached; each group sums to 0.
    """
    grouped = _grouped(rewards, group_size)  # (B/G, G)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)  # leave-one-out mean
    return _zero_constant_groups(grouped - baseline, grouped)


def grpo_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-normalised advantage (Shao et al. 2024, DeepSeekMath):

    .. math::  A_i = \\frac{r_i - \\mathrm{mean}(r_{group})}{\\mathrm{std}(r_{group}) + \\epsilon}

    std is the sample standard deviation (Bessel's correction, torch's default, as TRL). An all-equal group
    gives exactly 0.

    Args:
        rewards: Shape (B,), each prompt's G completions contiguous.
        group_size: G >= 2.
        eps: added to the std (TRL: 1e-4).

    Returns:
        advantages: Shape (B,), detached; each group sums to 0.
    """
    grouped = _grouped(rewards, group_size)
    mean, std = grouped.mean(dim=1, keepdim=True), grouped.std(dim=1, keepdim=True)
    return _zero_constant_groups((grouped - mean) / (std + eps), grouped)


def dr_grpo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): GRPO without the std division,
    which up-weights near-unanimous (too easy / too hard) groups.

    .. math::  A_i = r_i - \\mathrm{mean}(r_{group})

    Args:
        rewards: Shape (B,), each prompt's G completions contiguous.
        group_size: G >= 2.

    Returns:
        advantages: Shape (B,), detached; each group sums to 0.
    """
    grouped = _grouped(rewards, group_size)
    return _zero_constant_groups(grouped - grouped.mean(dim=1, keepdim=True), grouped)


def maxrl_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """MaxRL-style advantage: the group-mean baseline, divided by the group *mean* instead of GRPO's std.

    .. math::  A_i = \\frac{r_i - \\bar r}{\\bar r + \\epsilon}

    With 0/1 verifier rewards, r̄ = p̂ is the prompt's estimated success rate and
    E[(r − p)/p · ∇log π] = ∇p / p = ∇log p: the update climbs the *log*-likelihood of success, so a hard prompt
    (small p) weighs as much as an easy one, where Dr. GRPO's r − r̄ climbs p itself. An all-zero group (nothing
    solved) gives exactly 0.

    Args:
        rewards: Shape (B,), each prompt's G completions contiguous; >= 0 (a success rate, e.g. 0/1).
        group_size: G >= 2.
        eps: added to the mean.

    Returns:
        advantages: Shape (B,), detached; each group sums to 0.
    """
    grouped = _grouped(rewards, group_size)
    if bool((grouped < 0).any()):
        raise ValueError("rewards must be >= 0 for maxrl advantages (they are normalised by the group mean)")
    mean = grouped.mean(dim=1, keepdim=True)
    return _zero_constant_groups((grouped - mean) / (mean + eps), grouped)


def sequence_advantages(
    rewards: torch.Tensor, estimator: str, group_size: int | None = None, eps: float = 1e-4
) -> torch.Tensor:
    """Sequence-level advantages by name: ``"reinforce"`` (batch mean; ``group_size`` unused), ``"rloo"``,
    ``"grpo"``, ``"dr_grpo"`` or ``"maxrl"``. ``rewards``: Shape (B,). Returns Shape (B,)."""
    if estimator == "reinforce":
        return reinforce_advantages(rewards)
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"estimator must be one of {ADVANTAGE_ESTIMATORS}; got {estimator!r}")
    if group_size is None:
        raise ValueError(f"group_size is required for estimator {estimator!r}")
    if estimator == "rloo":
        return rloo_advantages(rewards, group_size)
    if estimator == "grpo":
        return grpo_advantages(rewards, group_size, eps)
    if estimator == "maxrl":
        return maxrl_advantages(rewards, group_size, eps)
    return dr_grpo_advantages(rewards, group_size)


# ---------------------------------------------------------------------------------------------------------
# Per-token losses
# ---------------------------------------------------------------------------------------------------------


def _token_advantages(advantages: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Broadcast sequence-level (B,) advantages to (B, T); check (B, T) ones. Detached, masked slots 0."""
    if advantages.dim() == 1 and advantages.shape[0] == completion_mask.shape[0]:
        advantages = advantages[:, None].expand_as(completion_mask)
    if advantages.shape != completion_mask.shape:
        raise ValueError(
            f"advantages must have shape (B,) or (B, T) = {tuple(completion_mask.shape)}; "
            f"got {tuple(advantages.shape)}"
        )
    advantages = _zero_masked(advantages.detach(), completion_mask)
    if not bool(torch.isfinite(advantages).all()):
        raise ValueError("advantages must be finite on response tokens")
    return advantages


def policy_gradient_loss(
    per_token_logps: torch.Tensor, advantages: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """The vanilla (REINFORCE) policy-gradient surrogate, whose gradient is −Â_t ∇log π_θ(y_t).

    .. math::  \\ell_t = -\\hat A_t \\log \\pi_\\theta(y_t \\mid x, y_{<t})

    Args:
        per_token_logps: Shape (B, T), log π_θ of the sampled tokens, with grad.
        advantages: Shape (B,) (one per sequence, broadcast over its tokens) or (B, T). Detached here.
        completion_mask: Shape (B, T).

    Returns:
        per_token_loss: Shape (B, T), 0 on masked slots; reduce with :func:`aggregate_loss`.
    """
    check_token_mask(completion_mask, per_token_logps=per_token_logps)
    advantages = _token_advantages(advantages, completion_mask)
    return -advantages * _zero_masked(per_token_logps, completion_mask)


def ppo_policy_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    clip_eps_low: float = 0.2,
    clip_eps_high: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (Schulman et al. 2017), per token, with DAPO's asymmetric clip range.

    .. math::  \\rho_t = \\exp(\\log\\pi_\\theta(y_t) - \\log\\pi_{old}(y_t)), \\qquad
               \\ell_t = \\max\\big(-\\hat A_t \\rho_t,\\; -\\hat A_t\\,
                        \\mathrm{clip}(\\rho_t, 1 - \\epsilon_{low}, 1 + \\epsilon_{high})\\big)

    (``pg_loss1`` and ``pg_loss2`` are the two terms; the max of the negatives is the min of the usual
    objective.) When ρ = 1 (first minibatch, on-policy) the gradient equals :func:`policy_gradient_loss`'s.

    Args:
        per_token_logps: Shape (B, T), log π_θ, with grad.
        old_per_token_logps: Shape (B, T), log π_old of the same tokens (the sampler's); detached here.
        advantages: Shape (B,) or (B, T); detached here.
        completion_mask: Shape (B, T).
        clip_eps_low: ε_low >= 0: ratios below 1 − ε_low stop earning gradient when Â < 0 (ε_low >= 1: the lower
            clip never binds, since ρ > 0).
        clip_eps_high: ε_high >= 0 (default: ε_low, i.e. symmetric PPO; DAPO raises it, e.g. 0.28).

    Returns:
        per_token_loss: Shape (B, T), 0 on masked slots; reduce with :func:`aggregate_loss`.
        metrics: scalar tensors (no grad), means over response tokens —
            ``clipfrac``: fraction of tokens where the clipped term is the active one (pg_loss2 > pg_loss1,
            so the token gets no gradient; TRL's definition);
            ``approx_kl``: KL(π_old‖π_θ) by the k3 estimator, (ρ − 1) − log ρ (CleanRL's ``approx_kl``);
            ``ratio_mean``: mean ρ.
    """
    check_token_mask(
        completion_mask, per_token_logps=per_token_logps, old_per_token_logps=old_per_token_logps
    )
    if clip_eps_high is None:
        clip_eps_high = clip_eps_low
    _check_clips(clip_eps_low, clip_eps_high)
    m = completion_mask.bool()
    advantages = _token_advantages(advantages, completion_mask)
    logps = _zero_masked(per_token_logps, m)
    old_logps = _zero_masked(old_per_token_logps.detach(), m)
    logratio = logps - old_logps
    ratio = torch.exp(logratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    per_token_loss = _zero_masked(torch.maximum(pg_loss1, pg_loss2), m)
    with torch.no_grad():
        metrics = {
            "clipfrac": masked_mean((pg_loss2 > pg_loss1).float(), completion_mask),
            "approx_kl": masked_mean(kl_k3(old_logps, logps), completion_mask),  # samples came from π_old
            "ratio_mean": masked_mean(ratio, completion_mask),
        }
    return per_token_loss, metrics


def _ratio_metrics(logratio: torch.Tensor, completion_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``approx_kl`` (k3 of KL(π_old‖π_θ): (ρ − 1) − log ρ) and ``ratio_mean`` over response tokens, no grad."""
    logratio = logratio.detach()
    return {"approx_kl": masked_mean(torch.expm1(logratio) - logratio, completion_mask),
            "ratio_mean": masked_mean(torch.exp(logratio), completion_mask)}


def _check_clips(clip_eps_low: float, clip_eps_high: float) -> None:
    check_number("clip_eps_low", clip_eps_low, minimum=0)
    check_number("clip_eps_high", clip_eps_high, minimum=0)


def gspo_policy_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    clip_eps_low: float = 3e-4,
    clip_eps_high: float | None = 4e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GSPO's sequence-level clipped surrogate (Zheng et al. 2025, "Group Sequence Policy Optimization", eq. 5–7).

    .. math::  s_i = \\exp\\Big(\\frac{1}{|y_i|}\\sum_t \\log\\frac{\\pi_\\theta(y_{i,t})}{\\pi_{old}(y_{i,t})}\\Big),
               \\qquad \\ell_i = \\max\\big(-\\hat A_i s_i,\\; -\\hat A_i\\,
               \\mathrm{clip}(s_i, 1 - \\epsilon_{low}, 1 + \\epsilon_{high})\\big)

    One importance ratio per *sequence* (the geometric mean of its token ratios), clipped per sequence: a whole
    reply is kept or dropped, never single tokens. The ratio is a mean, so the clip range is tiny (the paper's
    3e-4 / 4e-4). Each of row i's tokens carries ℓ_i, so ``aggregate_loss(..., "seq_mean_token_mean")`` gives
    GSPO's (1/B) Σ_i ℓ_i. On-policy (s = 1) the gradient is GRPO's: (1/|y_i|) Σ_t −Â_i ∇log π.

    Args:
        per_token_logps: Shape (B, T), log π_θ, with grad.
        old_per_token_logps: Shape (B, T), log π_old; detached here.
        advantages: Shape (B,) or (B, T) (constant along each row, e.g. GRPO's); detached here. Only each row's
            mean over its response tokens is used.
        completion_mask: Shape (B, T).
        clip_eps_low, clip_eps_high: ε >= 0 (``clip_eps_high=None``: ε_low).

    Returns:
        per_token_loss: Shape (B, T): ℓ_i on each response token of row i, 0 elsewhere.
        metrics: ``clipfrac`` (share of *sequences* clipped), ``seq_ratio_mean`` (mean s_i), and per token, as
            :func:`ppo_policy_loss`'s, ``approx_kl`` and ``ratio_mean``; scalars.
    """
    check_token_mask(completion_mask, per_token_logps=per_token_logps, old_per_token_logps=old_per_token_logps)
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    _check_clips(clip_eps_low, clip_eps_high)
    m = completion_mask.bool()
    seq_adv = masked_mean(_token_advantages(advantages, completion_mask), completion_mask, dim=1)  # (B,)
    logratio = _zero_masked(per_token_logps, m) - _zero_masked(old_per_token_logps.detach(), m)
    seq_ratio = torch.exp(masked_mean(logratio, completion_mask, dim=1))  # (B,) s_i
    pg_loss1 = -seq_adv * seq_ratio
    pg_loss2 = -seq_adv * torch.clamp(seq_ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    seq_loss = torch.maximum(pg_loss1, pg_loss2)  # (B,)
    per_token_loss = _zero_masked(seq_loss[:, None].expand_as(per_token_logps), m)
    with torch.no_grad():
        metrics = {"clipfrac": (pg_loss2 > pg_loss1).float().mean(), "seq_ratio_mean": seq_ratio.mean(),
                   **_ratio_metrics(logratio, completion_mask)}
    return per_token_loss, metrics


def cispo_policy_loss(
    per_token_logps: torch.Tensor,
    old_per_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    clip_eps_low: float = 1.0,
    clip_eps_high: float | None = 0.28,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CISPO (MiniMax-M1, 2025): REINFORCE on *every* token, weighted by the clipped, detached importance ratio.

    .. math::  \\ell_t = -\\,\\mathrm{sg}\\big[\\mathrm{clip}(\\rho_t, 1 - \\epsilon_{low},
               1 + \\epsilon_{high})\\big]\\, \\hat A_t \\log \\pi_\\theta(y_t)

    PPO's clip zeroes the gradient of a clipped token (often the rare "fork" tokens of a reasoning trace);
    CISPO clips the *weight* instead, so every token keeps a gradient, bounded by 1 + ε_high. The default
    ε_low = 1 never binds (ρ > 0). On-policy (ρ = 1) it is :func:`policy_gradient_loss`. Reduce with
    ``"token_mean"`` (the paper's).

    Args:
        per_token_logps: Shape (B, T), log π_θ, with grad.
        old_per_token_logps: Shape (B, T), log π_old; detached here.
        advantages: Shape (B,) or (B, T); detached here.
        completion_mask: Shape (B, T).
        clip_eps_low, clip_eps_high: ε >= 0 (``clip_eps_high=None``: ε_low).

    Returns:
        per_token_loss: Shape (B, T), 0 on masked slots.
        metrics: ``clipfrac`` (share of tokens whose weight is clipped), ``approx_kl``, ``ratio_mean``, scalars.
    """
    check_token_mask(completion_mask, per_token_logps=per_token_logps, old_per_token_logps=old_per_token_logps)
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    _check_clips(clip_eps_low, clip_eps_high)
    m = completion_mask.bool()
    advantages = _token_advantages(advantages, completion_mask)
    logps = _zero_masked(per_token_logps, m)
    ratio = torch.exp(logps.detach() - _zero_masked(old_per_token_logps.detach(), m))
    weight = torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)  # detached: logps.detach() above
    per_token_loss = _zero_masked(-weight * advantages * logps, m)
    with torch.no_grad():
        metrics = {"clipfrac": masked_mean((weight != ratio).float(), completion_mask),
                   **_ratio_metrics(logps.detach() - _zero_masked(old_per_token_logps.detach(), m), completion_mask)}
    return per_token_loss, metrics


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    completion_mask: torch.Tensor,
    clip_range_value: float | None = 0.2,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped value loss (as in TRL/CleanRL), per token.

    .. math::  V^{clip}_t = V_{old,t} + \\mathrm{clip}(V_t - V_{old,t}, -c, c), \\qquad
               \\ell_t = \\tfrac12 \\max\\big((V_t - \\hat R_t)^2,\\; (V^{clip}_t - \\hat R_t)^2\\big)

    (``vf_loss1`` and ``vf_loss2`` are the two squared errors.) ``clip_range_value=None`` gives the plain
    ½(V − R̂)².

    Args:
        values: Shape (B, T), the value head's current V_t, with grad.
        old_values: Shape (B, T), V at rollout time; detached here.
        returns: Shape (B, T), targets R̂_t (e.g. from :func:`gae_advantages`); detached here.
        completion_mask: Shape (B, T).
        clip_range_value: c > 0, or None for no clipping.

    Returns:
        per_token_loss: Shape (B, T), 0 on masked slots.
        metrics: ``vf_clipfrac`` (fraction of tokens where the clipped error is the larger one), a scalar.
    """
    check_token_mask(completion_mask, values=values, old_values=old_values, returns=returns)
    if clip_range_value is not None and not clip_range_value > 0:
        raise ValueError(f"clip_range_value must be > 0 or None; got {clip_range_value}")
    m = completion_mask.bool()
    values = _zero_masked(values, m)
    old_values, returns = _zero_masked(old_values.detach(), m), _zero_masked(returns.detach(), m)
    vf_loss1 = (values - returns) ** 2
    if clip_range_value is None:
        vf_loss2 = vf_loss1
    else:
        values_clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
        vf_loss2 = (values_clipped - returns) ** 2
    per_token_loss = _zero_masked(0.5 * torch.maximum(vf_loss1, vf_loss2), m)
    with torch.no_grad():
        metrics = {"vf_clipfrac": masked_mean((vf_loss2 > vf_loss1).float(), completion_mask)}
    return per_token_loss, metrics


def entropy_loss(logits: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """The entropy bonus as a per-token loss, −H(π_θ(· | x, y_<t)); add it as ``ent_coef · entropy_loss``.

    .. math::  \\ell_t = -H_t = \\sum_v \\pi_v \\log \\pi_v

    Args:
        logits: Shape (B, T, V), the logits that produce token t's distribution.
        completion_mask: Shape (B, T).

    Returns:
        Shape (B, T), 0 on masked slots.
    """
    check_token_mask(completion_mask)
    if logits.dim() != 3 or logits.shape[:2] != completion_mask.shape:
        raise ValueError(
            f"logits must have shape (B, T, V) with (B, T) = {tuple(completion_mask.shape)}; "
            f"got {tuple(logits.shape)}"
        )
    logits = torch.where(completion_mask.bool()[..., None], logits, torch.zeros_like(logits))
    return _zero_masked(-entropy_from_logits(logits), completion_mask)


def explained_variance(
    values: torch.Tensor, returns: torch.Tensor, completion_mask: torch.Tensor
) -> torch.Tensor:
    """How much of the returns' variance the value head explains (a diagnostic, not a loss).

    .. math::  EV = 1 - \\frac{\\mathrm{Var}[\\hat R - V]}{\\mathrm{Var}[\\hat R]}

    over response tokens. 1: perfect; 0: no better than predicting the mean; < 0: worse than that.

    Args:
        values: Shape (B, T). returns: Shape (B, T). completion_mask: Shape (B, T).

    Returns:
        A scalar tensor (no grad); NaN when the returns are constant (as CleanRL: the ratio is undefined).
    """
    check_token_mask(completion_mask, values=values, returns=returns)
    with torch.no_grad():
        values, returns = _zero_masked(values, completion_mask), _zero_masked(returns, completion_mask)
        var_returns = masked_var(returns, completion_mask, unbiased=False)
        var_residual = masked_var(returns - values, completion_mask, unbiased=False)
        if var_returns == 0:
            return torch.tensor(float("nan"))
        return 1.0 - var_residual / var_returns


# ---------------------------------------------------------------------------------------------------------
# Aggregation: from per-token losses to the scalar you call backward() on
# ---------------------------------------------------------------------------------------------------------


def aggregate_loss(
    per_token_loss: torch.Tensor,
    completion_mask: torch.Tensor,
    mode: str,
    max_completion_length: int | None = None,
    num_items_in_batch: float | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss to a scalar. The mode decides how much gradient each token gets.

    With L_i response tokens in row i, B rows and N = Σ_i L_i tokens:

    =============================  =====================================================  ====================
    mode                           loss                                                   weight of one token
    =============================  =====================================================  ====================
    ``"seq_mean_token_mean"``      (1/B) Σ_i (1/L_i) Σ_t ℓ_it          (GRPO)              1 / (B·L_i)
    ``"token_mean"``               (1/N) Σ_i Σ_t ℓ_it                 (DAPO)              1 / N
    ``"seq_mean_token_sum_norm"``  (1/B) Σ_i (1/L_max) Σ_t ℓ_it       (Dr. GRPO)          1 / (B·L_max)
    =============================  =====================================================  ====================

    GRPO's per-sequence mean gives a long response's tokens less weight each, so a long wrong answer is
    penalised less per token than a short one (the length bias Dr. GRPO points out); ``token_mean`` and the
    constant ``L_max`` weight all tokens equally.

    Micro-batching (gradient accumulation). Pass ``num_items_in_batch`` = the denominator counted over the
    *full* batch — the number of response tokens N for ``"token_mean"``, the number of rows B for the two
    ``seq_*`` modes — and **sum** the micro-batch losses: the gradient is then exactly the full batch's. The
    usual "average the micro-batch losses" is exact for the ``seq_*`` modes when micro-batches have equal row
    counts, but not for ``"token_mean"`` when micro-batches hold different numbers of tokens.

    Args:
        per_token_loss: Shape (B, T).
        completion_mask: Shape (B, T); a row without response tokens raises ``ValueError``.
        mode: one of ``AGGREGATION_MODES`` (required: the reduction is always an explicit choice).
        max_completion_length: L_max, a constant (the generation limit), required for
            ``"seq_mean_token_sum_norm"`` and at least the longest response in the batch.
        num_items_in_batch: the full batch's denominator (see above); default: this batch's own.

    Returns:
        A scalar tensor.
    """
    check_token_mask(completion_mask, per_token_loss=per_token_loss)
    if mode not in AGGREGATION_MODES:
        raise ValueError(f"mode must be one of {AGGREGATION_MODES}; got {mode!r}")
    if num_items_in_batch is not None and not num_items_in_batch > 0:
        raise ValueError(f"num_items_in_batch must be > 0; got {num_items_in_batch}")
    lengths = completion_mask.sum(dim=1)  # (B,)
    if mode == "token_mean":
        denominator = lengths.sum() if num_items_in_batch is None else num_items_in_batch
        return masked_sum(per_token_loss, completion_mask) / denominator
    denominator = completion_mask.shape[0] if num_items_in_batch is None else num_items_in_batch
    if mode == "seq_mean_token_mean":
        return masked_mean(per_token_loss, completion_mask, dim=1).sum() / denominator
    if max_completion_length is None or not max_completion_length >= int(lengths.max()):
        raise ValueError(
            f"max_completion_length must be a constant >= the longest response ({int(lengths.max())} tokens) "
            f"for mode 'seq_mean_token_sum_norm'; got {max_completion_length}"
        )
    return (masked_sum(per_token_loss, completion_mask, dim=1) / max_completion_length).sum() / denominator
