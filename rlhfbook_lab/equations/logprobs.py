"""The log-prob core: per-token log-probabilities of response tokens, masked reductions, entropy.

Tensor math only: no models, no I/O. Every trainer in the package (SFT, reward models, DPO, RL) reads
log-probs through this module, so the off-by-one between logits and labels is handled once, here.

Alignment convention (the one thing to remember)
-------------------------------------------------
A causal LM's ``logits[:, t]`` predict token ``t + 1``. We return log-probs **aligned with input_ids**:

    per_token_logps[b, t] = log p(input_ids[b, t] | input_ids[b, :t])      for t >= 1
    per_token_logps[b, 0] = 0                                               (nothing predicts the first token)

so a ``completion_mask`` (B, T) that marks the response tokens *in input_ids* selects exactly their log-probs,
and ``masked_sum(per_token_logps, completion_mask)`` is the sequence log-prob log π(y | x). Position 0 can
never be a response token (a response always follows a prompt), and we check that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "REDUCTIONS",
    "check_completion_mask",
    "entropy_from_logits",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "nll_loss_sum",
    "num_loss_items",
    "per_token_logprobs",
    "reduce_sequence",
    "sequence_logprobs",
]


def check_completion_mask(completion_mask: torch.Tensor, input_ids: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` unless ``completion_mask`` is a usable (B, T) response mask.

    It must be 2-D, match ``input_ids`` in shape when given, hold only 0/1, have no response token at
    position 0, and have at least one response token in every row (a row with none has no log-prob to
    average: we refuse it rather than return NaN).
    """
    if completion_mask.dim() != 2:
        raise ValueError(f"completion_mask must have shape (B, T); got {tuple(completion_mask.shape)}")
    if input_ids is not None and completion_mask.shape != input_ids.shape:
        raise ValueError(
            f"completion_mask shape {tuple(completion_mask.shape)} does not match "
            f"input_ids shape {tuple(input_ids.shape)}"
        )
    m = completion_mask
    if not torch.all((m == 0) | (m == 1)):
        raise ValueError("completion_mask must contain only 0 and 1")
    if m.shape[1] > 0 and bool(m[:, 0].any()):
        raise ValueError("completion_mask marks position 0 as a response token; nothing predicts the first token")
    empty = (m.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"completion_mask has no response tokens in row(s) {empty}; every row needs at least one")


def per_token_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Log-probability of every token of ``input_ids`` under ``logits``, aligned with ``input_ids``.

    .. math::  \\log \\pi(x_t \\mid x_{<t}) = \\mathrm{logsoftmax}(z_{t-1} / T)[x_t]

    Args:
        logits: Shape (B, T, V). ``logits[:, t]`` is the model's prediction for token ``t + 1``.
        input_ids: Shape (B, T), int64.
        temperature: the sampler's temperature ``T``; 1.0 scores the model itself.

    Returns:
        per_token_logps: Shape (B, T), float32; column 0 is 0 (see the module docstring).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V); got {tuple(logits.shape)}")
    if input_ids.dim() != 2 or logits.shape[:2] != input_ids.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} does not match input_ids shape {tuple(input_ids.shape)}: "
            "expected logits (B, T, V) and input_ids (B, T)"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    logps = F.log_softmax(logits[:, :-1].float() / temperature, dim=-1)  # (B, T-1, V)
    labels = input_ids[:, 1:].unsqueeze(-1)  # (B, T-1, 1)
    token_logps = logps.gather(-1, labels).squeeze(-1)  # (B, T-1)
    return F.pad(token_logps, (1, 0), value=0.0)  # (B, T): aligned with input_ids


def sequence_logprobs(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    reduction: str = "sum",
) -> torch.Tensor:
    """Log-probability of each row's response, log π(y | x), from one forward pass's logits.

    Args:
        logits: Shape (B, T, V).
        input_ids: Shape (B, T).
        completion_mask: Shape (B, T), 1 on response tokens (in ``input_ids``), 0 on prompt and padding.
        reduction: ``"sum"`` gives log π(y|x) = Σ_t log π(y_t | x, y_<t) (DPO, RL);
            ``"mean"`` divides by the response length (IPO, SimPO).

    Returns:
        Shape (B,).
    """
    check_completion_mask(completion_mask, input_ids)
    return reduce_sequence(per_token_logprobs(logits, input_ids), completion_mask, reduction)


def reduce_sequence(per_token_logps: torch.Tensor, completion_mask: torch.Tensor,
                    reduction: str = "sum") -> torch.Tensor:
    """Per-token log-probs → one log-prob per row: ``"sum"`` Σ_t m_t log π_t, or ``"mean"`` that divided by Σ_t m_t.

    Shapes: (B, T), (B, T) → (B,)."""
    if reduction == "sum":
        return masked_sum(per_token_logps, completion_mask, dim=1)
    if reduction == "mean":
        return masked_mean(per_token_logps, completion_mask, dim=1)
    raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")


def _check_same_shape(x: torch.Tensor, mask: torch.Tensor) -> None:
    if x.shape != mask.shape:
        raise ValueError(f"values shape {tuple(x.shape)} does not match mask shape {tuple(mask.shape)}")


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x·m over ``dim`` (all elements when ``dim`` is None). Masked slots count as exactly 0, even if
    they hold inf or NaN. Shapes: ``x`` and ``mask`` both (B, T)."""
    _check_same_shape(x, mask)
    x = torch.where(mask.bool(), x, torch.zeros_like(x))
    return x.sum() if dim is None else x.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x·m / Σ m over ``dim`` (all elements when ``dim`` is None).

    Raises ``ValueError`` when a reduced slice has no unmasked element (the mean is undefined; we refuse
    rather than return NaN). Shapes: ``x`` and ``mask`` both (B, T); returns a scalar or (B,) for dim=1.
    """
    _check_same_shape(x, mask)
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    if bool((count == 0).any()):
        raise ValueError("masked_mean: the mask selects no element in at least one slice (empty response?)")
    return masked_sum(x, mask, dim) / count


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the unmasked elements of ``x`` (a scalar), with Bessel's correction when ``unbiased``."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        if n < 2:
            raise ValueError("masked_var: an unbiased variance needs at least two unmasked elements")
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / sqrt(var + eps) over the unmasked elements; masked slots are returned as 0.

    With ``shift_mean=False`` the mean is added back (PPO whitens rewards without shifting them).
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution, H = −Σ_v p_v log p_v = logsumexp(z) − Σ_v p_v z_v.

    Args:
        logits: Shape (..., V).

    Returns:
        Shape (...), float32, in nats.
    """
    logits = logits.float()
    p = F.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(dim=-1)


REDUCTIONS = ("token", "sequence")


def nll_loss_sum(per_token_logps: torch.Tensor, completion_mask: torch.Tensor,
                 reduction: str = "token") -> torch.Tensor:
    """The SFT loss *summed over items*, the numerator of the step's mean.

    - ``"token"``:    −Σ_b Σ_t m_{b,t} log π(y_{b,t} | ·)                 (items: target tokens)
    - ``"sequence"``: Σ_b [ −Σ_t m_{b,t} log π(y_{b,t} | ·) / Σ_t m_{b,t} ]  (items: sequences)

    Args:
        per_token_logps: Shape (B, T), aligned with input_ids (``logprobs.per_token_logprobs``).
        completion_mask: Shape (B, T), 1 on target tokens.

    Returns:
        A scalar.
    """
    if reduction == "token":
        return -masked_sum(per_token_logps, completion_mask)
    if reduction == "sequence":
        return -masked_mean(per_token_logps, completion_mask, dim=1).sum()
    raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")


def num_loss_items(completion_mask: torch.Tensor, reduction: str = "token") -> int:
    """How many items :func:`nll_loss_sum` sums over: target tokens (``"token"``) or rows (``"sequence"``)."""
    if reduction == "token":
        return int(completion_mask.sum())
    if reduction == "sequence":
        return int(completion_mask.shape[0])
    raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
