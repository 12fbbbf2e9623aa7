"""Direct alignment losses (book chapter 8): DPO and its relatives, as pure functions of sequence log-probs.

Tensor math only: no models, no I/O. Each loss takes per-sequence log-probs, shape (B,), that the caller
computed with ``logprobs.sequence_logprobs``, and returns per-example losses (the training loss is their
mean) with the rewards a trainer logs.

The reduction over tokens is part of the method
-----------------------------------------------
    DPO, cDPO, KTO     sum over response tokens    log π(y|x)       = Σ_t log π(y_t | x, y_<t)
    IPO, SimPO, ORPO   mean over response tokens   log π(y|x) / |y| = (1/|y|) Σ_t log π(y_t | x, y_<t)

The loss functions cannot see tokens, so they cannot check this: ``LOSS_REDUCTION[name]`` records the choice
and the trainer passes it on::

    logps = sequence_logprobs(logits, input_ids, completion_mask, reduction=LOSS_REDUCTION[name])
    policy_chosen_logps, policy_rejected_logps = logps.chunk(2)  # chosen rows stacked first

The implicit reward
-------------------
DPO's policy defines a reward, r̂(x, y) = β·(log π(y|x) − log π_ref(y|x)) (Rafailov et al. 2023): the reward
for which π is the KL-regularised optimum, up to a term that depends on the prompt only and so cancels in
every chosen − rejected comparison. The reference-free losses (SimPO, ORPO) report β·log π(y|x) instead.
Rewards come back detached: they are metrics, not part of the graph.

All arithmetic runs in float32 or wider (bf16 inputs are upcast; gradients still flow back to them), and every
``-log σ(·)`` is ``-F.logsigmoid(·)``, which stays finite where ``-log(sigmoid(·))`` overflows.

The trainer that puts these losses on the shared loop (a model, a batch, the reference) is ``dpo_trainer``;
nothing here sees a model.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from rlhfbook_lab.checks import check_number

__all__ = [
    "LOSS_REDUCTION",
    "REFERENCE_FREE_LOSSES",
    "KTOLossOutput",
    "PreferenceLossOutput",
    "cdpo_loss",
    "dpo_loss",
    "implicit_reward",
    "ipo_loss",
    "kto_loss",
    "kto_reference_point",
    "orpo_loss",
    "preference_loss",
    "simpo_loss",
]

# How each loss wants the per-token log-probs reduced to one number per sequence (see the module docstring).
LOSS_REDUCTION = {"dpo": "sum", "cdpo": "sum", "ipo": "mean", "simpo": "mean", "orpo": "mean", "kto": "sum"}

# Losses that never read the reference model: a trainer can skip the reference forward pass for these.
REFERENCE_FREE_LOSSES = frozenset({"simpo", "orpo"})


class PreferenceLossOutput(NamedTuple):
    """What every paired loss returns; unpacks as ``losses, chosen_rewards, rejected_rewards``."""

    losses: torch.Tensor  # (B,) one loss per (chosen, rejected) pair; the training loss is losses.mean()
    chosen_rewards: torch.Tensor  # (B,) detached
    rejected_rewards: torch.Tensor  # (B,) detached


class KTOLossOutput(NamedTuple):
    """What ``kto_loss`` returns. Rewards are split by label, so their lengths differ from B."""

    losses: torch.Tensor  # (B,) in batch order; the training loss is losses.mean()
    chosen_rewards: torch.Tensor  # (n_desirable,) β·log-ratio of the desirable examples, detached
    rejected_rewards: torch.Tensor  # (n_undesirable,) β·log-ratio of the undesirable examples, detached
    kl: torch.Tensor  # () the reference point z_ref, detached


# --- input checks -------------------------------------------------------------------------------------------


def _check_logps(**named: torch.Tensor | None) -> None:
    """Each argument must be a (B,) tensor without NaN, all of the same B (they are paired row by row)."""
    first_name, first = None, None
    for name, x in named.items():
        if x is None:
            raise ValueError(f"{name} is required for this loss; got None")
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (B,); got {type(x).__name__}")
        if x.dim() != 1 or x.numel() == 0:
            raise ValueError(f"{name} must have shape (B,) with B >= 1; got {tuple(x.shape)}")
        if first is None:
            first_name, first = name, x
        elif x.shape != first.shape:
            raise ValueError(
                f"{name} has batch size {x.shape[0]} but {first_name} has {first.shape[0]}: "
                "the log-probs are paired row by row and must have the same shape (B,)"
            )
        if bool(torch.isnan(x).any()):
            raise ValueError(f"{name} contains NaN at row(s) {torch.isnan(x).nonzero().flatten().tolist()}")


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """Upcast to float32 (or keep float64): bf16 keeps ~3 significant digits, too few for log-prob math."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


# --- the losses -------------------------------------------------------------------------------------------


def implicit_reward(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward, r̂(x, y) = β·(log π(y|x) − log π_ref(y|x)) (Rafailov et al. 2023, §5).

    Not detached: this is the math. The losses detach it when they report it.

    Args:
        policy_logps: Shape (B,). log π(y|x) under the policy being trained.
        ref_logps: Shape (B,). log π_ref(y|x) under the frozen reference model.
        beta: β > 0, the strength of the KL regularisation the reward is implicit in.

    Returns:
        Shape (B,), float32 or wider.
    """
    check_number("beta", beta, minimum=0, strict=True)
    return beta * (_as_float(policy_logps) - _as_float(ref_logps))


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
) -> PreferenceLossOutput:
    """DPO, the sigmoid loss (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7).

        loss = −log σ( r̂(x, y_w) − r̂(x, y_l) ),    r̂(x, y) = β·(log π(y|x) − log π_ref(y|x))

    The Bradley-Terry likelihood of the preference y_w ≻ y_l under the implicit reward. Reduction: **sum**
    over response tokens. When π = π_ref every reward is 0 and every loss is ln 2. Its gradient weights each
    pair by how wrong the implicit reward is: ∂loss/∂log π(y_w|x) = −β·σ(r̂(x, y_l) − r̂(x, y_w)).

    Args:
        policy_chosen_logps: Shape (B,). log π(y_w|x).
        policy_rejected_logps: Shape (B,). log π(y_l|x).
        ref_chosen_logps: Shape (B,). log π_ref(y_w|x).
        ref_rejected_logps: Shape (B,). log π_ref(y_l|x).
        beta: β > 0; smaller β lets the policy move further from the reference (typical: 0.1).

    Returns:
        ``PreferenceLossOutput(losses, chosen_rewards, rejected_rewards)``, each (B,).
    """
    check_number("beta", beta, minimum=0, strict=True)
    _check_logps(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    chosen_rewards = implicit_reward(policy_chosen_logps, ref_chosen_logps, beta)  # (B,)
    rejected_rewards = implicit_reward(policy_rejected_logps, ref_rejected_logps, beta)  # (B,)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards)
    return PreferenceLossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())


def cdpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
    label_smoothing: float,
) -> PreferenceLossOutput:
    """Conservative DPO, cDPO (Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO").

    If each label is flipped with probability ε, the expected DPO loss is

        loss = −(1 − ε)·log σ(h) − ε·log σ(−h),    h = r̂(x, y_w) − r̂(x, y_l)

    (TRL: ``loss_type="sigmoid"`` with ``label_smoothing=ε``.) Because −log σ(−h) = −log σ(h) + h, this is
    DPO plus ε·h: the loss no longer falls forever as the margin grows, its minimum is at σ(h) = 1 − ε.
    Reduction: **sum** over response tokens, as DPO. ε = 0 is DPO.

    Args:
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: Shape (B,) each,
            as in ``dpo_loss``.
        beta: β > 0.
        label_smoothing: ε in [0, 0.5], the assumed probability that a preference label is wrong.

    Returns:
        ``PreferenceLossOutput(losses, chosen_rewards, rejected_rewards)``, each (B,).
    """
    check_number("beta", beta, minimum=0, strict=True)
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5] (a flip probability); got {label_smoothing}")
    _check_logps(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    chosen_rewards = implicit_reward(policy_chosen_logps, ref_chosen_logps, beta)  # (B,)
    rejected_rewards = implicit_reward(policy_rejected_logps, ref_rejected_logps, beta)  # (B,)
    margins = chosen_rewards - rejected_rewards  # h
    losses = -(1 - label_smoothing) * F.logsigmoid(margins) - label_smoothing * F.logsigmoid(-margins)
    return PreferenceLossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    beta: float,
) -> PreferenceLossOutput:
    """IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences").

        loss = ( h − 1/(2τ) )²,    h = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x))

    A squared regression of the log-ratio margin h (not multiplied by τ) toward the finite target 1/(2τ):
    unlike DPO, whose loss keeps falling as h → ∞, IPO stops at the target, so it cannot push deterministic
    preferences to infinity. ``beta`` is the paper's τ (TRL's naming).

    Reduction: **mean** over response tokens. The paper writes IPO on whole-sequence log-probs; TRL and most
    implementations use length-averaged log-probs, and so do we (a sum would make the fixed target 1/(2τ)
    mean different things for long and short responses).

    Args:
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: Shape (B,) each,
            length-averaged log-probs.
        beta: τ > 0; the target margin is 1/(2τ).

    Returns:
        ``PreferenceLossOutput(losses, chosen_rewards, rejected_rewards)``, each (B,); rewards are
        β·(log π − log π_ref) on the averaged log-probs.
    """
    check_number("beta", beta, minimum=0, strict=True)
    _check_logps(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
    )
    chosen_logratios = _as_float(policy_chosen_logps) - _as_float(ref_chosen_logps)  # (B,)
    rejected_logratios = _as_float(policy_rejected_logps) - _as_float(ref_rejected_logps)  # (B,)
    losses = (chosen_logratios - rejected_logratios - 1 / (2 * beta)) ** 2
    chosen_rewards, rejected_rewards = beta * chosen_logratios, beta * rejected_logratios
    return PreferenceLossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())


def simpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    beta: float,
    gamma: float,
) -> PreferenceLossOutput:
    """SimPO (Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward").

        loss = −log σ( β/|y_w|·log π(y_w|x) − β/|y_l|·log π(y_l|x) − γ )

    The reward is the length-normalised log-prob, β·log π(y|x)/|y|, with no reference model, and the chosen
    reward must beat the rejected one by a margin γ. Reduction: **mean** over response tokens (the 1/|y|).
    Because averaged log-probs are small, β is much larger than DPO's (of order 1–10, not 0.1).

    The reference log-probs are accepted and ignored, so a trainer can call every paired loss the same way.

    Args:
        policy_chosen_logps, policy_rejected_logps: Shape (B,) each, length-averaged log-probs.
        ref_chosen_logps, ref_rejected_logps: ignored.
        beta: β > 0.
        gamma: γ >= 0, the target reward margin.

    Returns:
        ``PreferenceLossOutput(losses, chosen_rewards, rejected_rewards)``, each (B,); rewards are
        β·log π(y|x)/|y|.
    """
    check_number("beta", beta, minimum=0, strict=True)
    check_number("gamma", gamma, minimum=0)  # the target reward margin
    _check_logps(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    chosen_rewards = beta * _as_float(policy_chosen_logps)  # (B,)
    rejected_rewards = beta * _as_float(policy_rejected_logps)  # (B,)
    losses = -F.logsigmoid(chosen_rewards - rejected_rewards - gamma)
    return PreferenceLossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach())


# log(1 − P) is −inf at P = 1, and fp32 does reach an average log-prob of exactly 0 (with a vocabulary of 260,
# a logit that leads the rest by 23 nats already gets log-prob 0.0). Inside log(1 − P) we therefore read log P
# as at most −1e-6; the gradient still flows through the log P term of the log-odds.
_ORPO_MAX_MEAN_LOGP = -1e-6


def _log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """log odds(y) = log P − log(1 − P) with log P = ``mean_logps`` <= 0; log(1 − e^a) = log(−expm1(a))."""
    return mean_logps - torch.log(-torch.expm1(mean_logps.clamp(max=_ORPO_MAX_MEAN_LOGP)))


def orpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    beta: float,
) -> PreferenceLossOutput:
    """ORPO's odds-ratio term (Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference
    Model").

        L_OR = −log σ( log[ odds(y_w|x) / odds(y_l|x) ] ),    odds(y|x) = P(y|x) / (1 − P(y|x)),
        P(y|x) = exp( (1/|y|) Σ_t log π(y_t | x, y_<t) )

    ORPO is SFT with this term added: L_ORPO = L_NLL(y_w) + λ·L_OR. This function returns λ·L_OR per pair,
    so the full loss is ``nll + losses.mean()``, where ``nll`` is the SFT loss on the chosen responses (the
    paper and TRL use token-level cross-entropy; ``-policy_chosen_logps.mean()`` is its per-sequence version).
    ``beta`` is the paper's λ (TRL's naming). Reduction: **mean** over response tokens (P is a per-token
    geometric mean). No reference model: the reference log-probs are accepted and ignored.

    Args:
        policy_chosen_logps, policy_rejected_logps: Shape (B,) each, length-averaged log-probs, all <= 0.
        ref_chosen_logps, ref_rejected_logps: ignored.
        beta: λ > 0, the weight of the odds-ratio term (the paper uses 0.1).

    Returns:
        ``PreferenceLossOutput(losses, chosen_rewards, rejected_rewards)``, each (B,); ``losses`` is λ·L_OR
        and the rewards are λ·log P(y|x), as TRL logs them.
    """
    check_number("beta", beta, minimum=0, strict=True)
    _check_logps(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps)
    named = {"policy_chosen_logps": policy_chosen_logps, "policy_rejected_logps": policy_rejected_logps}
    for name, x in named.items():
        if bool((x > 0).any()):
            raise ValueError(f"{name} must be <= 0 (a log-probability); got max {x.max().item():.4g}")
    chosen_logps, rejected_logps = _as_float(policy_chosen_logps), _as_float(policy_rejected_logps)
    log_odds_ratio = _log_odds(chosen_logps) - _log_odds(rejected_logps)  # (B,)
    losses = -beta * F.logsigmoid(log_odds_ratio)
    return PreferenceLossOutput(losses, (beta * chosen_logps).detach(), (beta * rejected_logps).detach())


def kto_reference_point(policy_kl_logps: torch.Tensor, ref_kl_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z_ref = max(0, mean_i[log π(y_i|x_i) − log π_ref(y_i|x_i)]), detached.

    A one-sample-per-row estimate of KL(π ‖ π_ref), clamped at 0 because a KL cannot be negative. Detached:
    the paper does not back-propagate through it (it only sets where the loss saturates).

    Args:
        policy_kl_logps: Shape (M,). Summed log-probs of responses under the policy.
        ref_kl_logps: Shape (M,). The same responses under the reference model.

    Returns:
        Shape (), float32 or wider.
    """
    _check_logps(policy_kl_logps=policy_kl_logps, ref_kl_logps=ref_kl_logps)
    return (_as_float(policy_kl_logps) - _as_float(ref_kl_logps)).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    policy_kl_logps: torch.Tensor | None = None,
    ref_kl_logps: torch.Tensor | None = None,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLossOutput:
    """KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization").

    Unpaired data: each response is labelled desirable or undesirable on its own. With r = log π(y|x) −
    log π_ref(y|x) and the reference point z_ref (``kto_reference_point``):

        loss = λ_D·(1 − σ(β·(r − z_ref)))    if y is desirable
        loss = λ_U·(1 − σ(β·(z_ref − r)))    if y is undesirable

    i.e. λ_y − v(x, y) with the prospect-theory value v. A response only gains by beating the policy's
    average log-ratio z_ref, not zero. Reduction: **sum** over response tokens, as DPO. The paper suggests
    choosing the weights so that λ_D·n_D / (λ_U·n_U) lies in [1, 4/3].

    z_ref is estimated from ``policy_kl_logps``/``ref_kl_logps``. The paper and TRL score *mismatched* pairs
    (prompt x_i with the response of another row, y_j) for this; when both are omitted we use this batch's
    own log-ratios, a cruder estimate that needs no extra forward pass.

    Args:
        policy_logps: Shape (B,). log π(y|x), summed over response tokens.
        ref_logps: Shape (B,). log π_ref(y|x).
        desirable: Shape (B,), bool. True for desirable ("thumbs up") responses. The batch needs both kinds.
        policy_kl_logps: Shape (M,) or None. Policy log-probs of the responses used to estimate z_ref.
        ref_kl_logps: Shape (M,) or None. Reference log-probs of the same responses.
        beta: β > 0.
        desirable_weight: λ_D > 0.
        undesirable_weight: λ_U > 0.

    Returns:
        ``KTOLossOutput(losses (B,), chosen_rewards (n_D,), rejected_rewards (n_U,), kl ())``.
    """
    check_number("beta", beta, minimum=0, strict=True)
    check_number("desirable_weight", desirable_weight, minimum=0, strict=True)
    check_number("undesirable_weight", undesirable_weight, minimum=0, strict=True)
    _check_logps(policy_logps=policy_logps, ref_logps=ref_logps)
    if not isinstance(desirable, torch.Tensor) or desirable.dtype != torch.bool:
        got = desirable.dtype if isinstance(desirable, torch.Tensor) else type(desirable).__name__
        raise ValueError(f"desirable must be a bool tensor of shape (B,); got {got}")
    if desirable.shape != policy_logps.shape:
        raise ValueError(
            f"desirable has shape {tuple(desirable.shape)} but policy_logps has {tuple(policy_logps.shape)}"
        )
    if not bool(desirable.any()) or bool(desirable.all()):
        raise ValueError(
            "desirable must mark at least one desirable and one undesirable example in the batch; "
            f"got {int(desirable.sum())} desirable of {desirable.numel()}"
        )
    if (policy_kl_logps is None) != (ref_kl_logps is None):
        raise ValueError("policy_kl_logps and ref_kl_logps must be given together (or both omitted)")
    if policy_kl_logps is None:
        kl = kto_reference_point(policy_logps, ref_logps)
    else:
        kl = kto_reference_point(policy_kl_logps, ref_kl_logps)
    rewards = implicit_reward(policy_logps, ref_logps, beta)  # (B,) β·r
    desirable_losses = desirable_weight * (1 - torch.sigmoid(rewards - beta * kl))
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * kl - rewards))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)  # (B,) batch order kept
    rewards = rewards.detach()
    return KTOLossOutput(losses, rewards[desirable], rewards[~desirable], kl)


_LOSSES = {
    "dpo": dpo_loss,
    "cdpo": cdpo_loss,
    "ipo": ipo_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
    "kto": kto_loss,
}


def preference_loss(name: str, **inputs) -> PreferenceLossOutput | KTOLossOutput:
    """Call the loss called ``name`` (a key of ``LOSS_REDUCTION``) with keyword ``inputs``.

    The paired losses take ``policy_chosen_logps``, ``policy_rejected_logps``, ``ref_chosen_logps``,
    ``ref_rejected_logps`` plus their own hyperparameters (``beta``; ``label_smoothing`` for cdpo; ``gamma``
    for simpo); ``"kto"`` takes ``kto_loss``'s arguments. Compute the log-probs with
    ``reduction=LOSS_REDUCTION[name]``.
    """
    if name not in _LOSSES:
        raise ValueError(f"name must be one of {sorted(_LOSSES)}; got {name!r}")
    return _LOSSES[name](**inputs)
