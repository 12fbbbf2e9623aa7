"""Toolformer's filter (Schick et al. 2023, "Toolformer: Language Models Can Teach Themselves to Use Tools", §2).

A candidate API call c inserted at position i of a text is kept for training only if it makes the following
tokens easier to predict. With L(z) the model's loss on the tokens after position i given the prefix z:

.. math::

    L^+ = L(e(c, r)), \\qquad L^- = \\min\\big(L(\\varepsilon),\\; L(e(c, \\varepsilon))\\big), \\qquad
    \\text{keep} \\iff L^- - L^+ \\ge \\tau

where e(c, r) is the call with its result r, e(c, ε) the call with no result and ε no call at all. Taking the
minimum in L⁻ asks more than "the call helps": the *result* must help, beyond what writing the call alone does.
"""

from __future__ import annotations

import torch

__all__ = ["toolformer_keep"]


def toolformer_keep(loss_with_result: torch.Tensor, loss_no_call: torch.Tensor, loss_call_no_result: torch.Tensor,
                    tau: float) -> torch.Tensor:
    """Which candidate calls pass the filter: ``min(L(ε), L(e(c, ε))) − L(e(c, r)) ≥ τ``.

    Args:
        loss_with_result: L⁺, shape (N,): loss on the continuation with the call and its result inserted.
        loss_no_call: L(ε), shape (N,): with no call.
        loss_call_no_result: L(e(c, ε)), shape (N,): with the call but no result.
        tau: the threshold τ (in the losses' units, e.g. nats per token).

    Returns: (N,) bool, True for the calls kept.
    """
    if not (loss_with_result.shape == loss_no_call.shape == loss_call_no_result.shape):
        raise ValueError(f"the three losses must have one shape; got {tuple(loss_with_result.shape)}, "
                         f"{tuple(loss_no_call.shape)}, {tuple(loss_call_no_result.shape)}")
    return torch.minimum(loss_no_call, loss_call_no_result) - loss_with_result >= tau
