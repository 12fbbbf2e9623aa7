"""KL regularisation: the k1/k2/k3 estimators, exact categorical KL, KL-penalised rewards, KL controllers.

Tensor math only. Book chapter 15 (Regularization); the estimators follow John Schulman's note
"Approximating KL divergence" (2020).

The direction convention (the one thing to remember)
----------------------------------------------------
We want KL(π‖π_ref) = E_{y∼π}[log π(y) − log π_ref(y)], estimated from tokens **sampled from the policy π**.
Following Schulman's note (samples x ∼ q = π, target KL(q‖p) with p = π_ref) we write

    log_ratio = ref_logp − logp          = log (π_ref / π)   on the sampled token
    k1 = −log_ratio                      unbiased, high variance, can be negative per token
    k2 = log_ratio² / 2                  biased (its mean is ½·E_π[log²(π/π_ref)]), low variance
    k3 = (exp(log_ratio) − 1) − log_ratio    unbiased (E_π[π_ref/π] = 1), low variance, never negative

Swapping ``logp`` and ``ref_logp`` silently estimates the *other* direction KL(π_ref‖π) with the wrong
sampling distribution, so every function here takes them in the order (policy, reference).

What a KL *loss* does to the gradient (why the estimator matters twice)
-----------------------------------------------------------------------
As a reward penalty (PPO/InstructGPT, RLOO) the estimator only has to be unbiased: k1 is the classic choice.
As a loss term that autograd differentiates through (GRPO), the expected gradient on on-policy samples is

    ∇ k1 loss:  E_π[∇ log π]                 = 0                 (a k1 loss does nothing on average!)
    ∇ k2 loss:  E_π[log(π/π_ref) ∇ log π]    = ∇ KL(π‖π_ref)     (the score-function gradient of the KL)
    ∇ k3 loss:  E_π[(1 − π_ref/π) ∇ log π]   = ∇ KL(π_ref‖π)     (the *forward* KL, not the one we estimate)

All three vanish at π = π_ref, so a k2 or k3 loss still pulls the policy home; ``tests/test_kl.py`` checks
these three identities exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rlhfbook_lab.checks import check_number
from rlhfbook_lab.equations.logprobs import check_completion_mask

__all__ = [
    "ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "categorical_kl",
    "check_token_mask",
    "kl_estimate",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_loss",
    "kl_penalized_rewards",
]

ESTIMATORS = ("k1", "k2", "k3")


def check_token_mask(completion_mask: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``completion_mask`` is a usable (B, T) 0/1 mask with at least one response
    token per row, and every tensor in ``tensors`` (given by name) has the same (B, T) shape.

    Unlike :func:`rlhfbook_lab.equations.logprobs.check_completion_mask` we allow position 0 to be a response token:
    RL code often works on response-only tensors (B, T_response).
    """
    if not isinstance(completion_mask, torch.Tensor):
        raise ValueError(f"completion_mask must be a (B, T) torch.Tensor; got {type(completion_mask)}")
    # Reuse the package's check; a prepended prompt column makes its "position 0" rule vacuous.
    check_completion_mask(F.pad(completion_mask, (1, 0)) if completion_mask.dim() == 2 else completion_mask)
    for name, x in tensors.items():
        if x.shape != completion_mask.shape:
            raise ValueError(
                f"{name} shape {tuple(x.shape)} does not match "
                f"completion_mask shape {tuple(completion_mask.shape)}"
            )


def _check_beta(beta: float, name: str = "beta") -> None:
    check_number(name, beta, minimum=0)


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = −log_ratio = log π(y) − log π_ref(y), with y sampled from π. Unbiased for KL(π‖π_ref).

    Args:
        logp: log π of the sampled tokens. Shape (...), e.g. (B, T).
        ref_logp: log π_ref of the same tokens. Shape (...).

    Returns:
        Shape (...): one estimate per token (may be negative).
    """
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = ½·log_ratio², log_ratio = log π_ref(y) − log π(y), y ∼ π. Biased: E[k2] = ½·E_π[log²(π/π_ref)].

    Args:
        logp: Shape (...). ref_logp: Shape (...).

    Returns:
        Shape (...), ≥ 0.
    """
    return 0.5 * (ref_logp - logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = (exp(log_ratio) − 1) − log_ratio, log_ratio = log π_ref(y) − log π(y), y ∼ π.

    Unbiased for KL(π‖π_ref) because E_π[π_ref/π] = 1, and never negative because e^x ≥ 1 + x.
    Computed with ``expm1`` so it stays accurate when the ratio is close to 1.

    Args:
        logp: Shape (...). ref_logp: Shape (...).

    Returns:
        Shape (...), ≥ 0.
    """
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL(π‖π_ref) estimate by name: ``"k1"``, ``"k2"`` or ``"k3"``. Shapes as in :func:`kl_k1`."""
    if estimator == "k1":
        return kl_k1(logp, ref_logp)
    if estimator == "k2":
        return kl_k2(logp, ref_logp)
    if estimator == "k3":
        return kl_k3(logp, ref_logp)
    raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")


def categorical_kl(p: torch.Tensor, q: torch.Tensor, from_logits: bool = True) -> torch.Tensor:
    """Exact KL(p‖q) = Σ_v p_v (log p_v − log q_v) between categorical distributions over the last axis.

    Args:
        p: Shape (..., V): logits (``from_logits=True``) or probabilities summing to 1.
        q: Shape (..., V), same kind as ``p``.
        from_logits: whether ``p`` and ``q`` are unnormalised logits or probabilities. With probabilities,
            0·log 0 counts as 0, and p_v > 0 where q_v = 0 gives +inf.

    Returns:
        Shape (...), in nats, ≥ 0.
    """
    if p.shape != q.shape:
        raise ValueError(f"p shape {tuple(p.shape)} does not match q shape {tuple(q.shape)}")
    if from_logits:
        log_p, log_q = F.log_softmax(p.float(), dim=-1), F.log_softmax(q.float(), dim=-1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    if bool((p < 0).any()) or bool((q < 0).any()):
        raise ValueError("p and q must be probabilities (>= 0) when from_logits=False")
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim=-1)


def kl_penalized_rewards(
    scores: torch.Tensor,
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    completion_mask: torch.Tensor,
    beta: float,
    estimator: str = "k1",
) -> torch.Tensor:
    """Per-token rewards with the KL penalty inside the reward (InstructGPT, TRL's PPO):

    .. math::  r_t = -\\beta\\,\\hat{k}(\\pi, \\pi_{ref})_t \\;+\\; [t = t_{last}]\\, s

    where ``s`` is the sequence score (reward model or verifier), placed on each row's last response token.
    Summed over a row, ``Σ_t r_t = s − β·KL̂(π‖π_ref)`` — the KL-regularised objective's sampled value.

    Args:
        scores: Shape (B,), the sequence-level score s.
        logp: Shape (B, T), log π of the sampled tokens (the sampling policy's own log-probs).
        ref_logp: Shape (B, T), log π_ref of the same tokens.
        completion_mask: Shape (B, T), 1 on response tokens. Masked slots get reward 0, whatever they hold.
        beta: KL coefficient β ≥ 0.
        estimator: ``"k1"`` (default, as InstructGPT and TRL), ``"k2"`` or ``"k3"``.

    Returns:
        rewards: Shape (B, T), detached (rewards are constants for the policy gradient).
    """
    _check_beta(beta)
    check_token_mask(completion_mask, logp=logp, ref_logp=ref_logp)
    if scores.shape != (completion_mask.shape[0],):
        raise ValueError(f"scores must have shape ({completion_mask.shape[0]},); got {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (no NaN or inf)")
    m = completion_mask.bool()
    logp = torch.where(m, logp.detach(), torch.zeros_like(logp))  # masked slots: 0 − 0 = no KL
    ref_logp = torch.where(m, ref_logp.detach(), torch.zeros_like(ref_logp))
    rewards = -beta * kl_estimate(logp, ref_logp, estimator)  # (B, T)
    rewards = torch.where(m, rewards, torch.zeros_like(rewards))
    positions = torch.arange(completion_mask.shape[1], device=completion_mask.device)
    last = torch.where(m, positions, -1).argmax(dim=1)  # (B,) index of the last response token
    rewards[torch.arange(rewards.shape[0]), last] += scores.to(rewards.dtype)
    return rewards


def kl_loss(
    logp: torch.Tensor, ref_logp: torch.Tensor, completion_mask: torch.Tensor, estimator: str = "k3"
) -> torch.Tensor:
    """Per-token KL *loss* term (GRPO: ``loss = pg_loss + β·kl_loss``), differentiable through ``logp``.

    .. math::  \\ell_t = \\hat{k}(\\log\\pi_\\theta(y_t), \\log\\pi_{ref}(y_t))   (0 on masked slots)

    Reduce it with :func:`rlhfbook_lab.equations.policy_gradient.aggregate_loss`. Read the module docstring before
    choosing the estimator: on on-policy samples a k1 loss has zero expected gradient, a k2 loss follows
    ∇KL(π‖π_ref), and a k3 loss (GRPO's default) follows ∇KL(π_ref‖π).

    Args:
        logp: Shape (B, T), log π_θ of the sampled tokens, with grad.
        ref_logp: Shape (B, T), log π_ref (no grad needed; it is detached here).
        completion_mask: Shape (B, T). Masked slots are zeroed *before* the exp, so garbage there (even inf)
            gives neither a NaN loss nor a NaN gradient.
        estimator: ``"k1"``, ``"k2"`` or ``"k3"`` (default, as GRPO).

    Returns:
        Shape (B, T).
    """
    check_token_mask(completion_mask, logp=logp, ref_logp=ref_logp)
    m = completion_mask.bool()
    logp = torch.where(m, logp, torch.zeros_like(logp))
    ref_logp = torch.where(m, ref_logp.detach(), torch.zeros_like(ref_logp))
    return torch.where(m, kl_estimate(logp, ref_logp, estimator), torch.zeros_like(logp))


class FixedKLController:
    """A constant KL coefficient β. ``value`` is read by the trainer; ``update`` does nothing.

    Args:
        kl_coef: β ≥ 0.
    """

    def __init__(self, kl_coef: float):
        _check_beta(kl_coef, "kl_coef")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Keep β; returns it."""
        return self.value


class AdaptiveKLController:
    """Adaptive β from Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences", eq. 2):

    .. math::  e_t = \\mathrm{clip}\\Big(\\frac{KL_t - KL_{target}}{KL_{target}}, -0.2, 0.2\\Big), \\qquad
               \\beta_{t+1} = \\beta_t\\,(1 + K_\\beta\\, e_t), \\quad K_\\beta = n_{steps} / \\text{horizon}

    β rises when the measured KL overshoots the target and falls when it undershoots; the clip bounds each
    relative change to ±0.2·n_steps/horizon.

    Args:
        init_kl_coef: starting β ≥ 0.
        target: the KL (nats per sequence) to hold, > 0.
        horizon: how many samples the correction is spread over (Ziegler et al.: 10,000), > 0.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        _check_beta(init_kl_coef, "init_kl_coef")
        if not target > 0:
            raise ValueError(f"target must be > 0; got {target}")
        if not horizon > 0:
            raise ValueError(f"horizon must be > 0; got {horizon}")
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Update β from the KL measured on the last batch of ``n_steps`` samples; returns the new β."""
        if not math.isfinite(current_kl):
            raise ValueError(f"current_kl must be finite; got {current_kl}")
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
        return self.value
