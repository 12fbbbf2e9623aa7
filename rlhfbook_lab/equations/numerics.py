"""The numerical contract: which of the package's equalities hold bit for bit, which only to rounding, and the one
tolerance rule every test of the second kind uses.

Two kinds of equality
---------------------
- **Bitwise**: the *same* operations on the same shapes in the same order — the same run twice with a seed, a
  saved model reloaded, a function called through two names. These are tested with ``torch.equal``.
- **Numerical**: two *different* computations that agree mathematically — a KV-cached decode against a full
  forward pass, a batch with more left padding, completions cut into chunks, a shared prompt computed once. A CPU
  with another vector width (AVX2, AVX-512, or torch's portable kernels: ``ATEN_CPU_CAPABILITY``), a GPU, or a
  matrix product over fewer rows adds its terms in another order, so the last bits differ. These are tested with
  :func:`numerical_tolerance`, never with ``atol=0``.

The claims, by kind (each test names its kind in its docstring):

=============================================================  =========  ======================================
claim                                                          kind       where
=============================================================  =========  ======================================
a seed gives the same samples, the same run, the same weights  bitwise    generation, every trainer
a saved model reloads to the same parameters and scores        bitwise    models, reward model
the sampler's log-probs equal the recomputed log-probs         numerical  generation, rl (old log-probs)
the cached sampler draws ``model.generate``'s tokens           numerical  generation (see below)
dropping finished rows from the cache changes no token         numerical  generation (see below)
the shared-prompt forward equals one full forward pass         numerical  rl (logits, values, gradients)
padding and column trimming never change a log-prob            numerical  rl, logprobs, reward model
the recomputed old log-probs at another temperature            bitwise    rl (the same call, the same rows)
the tool sampler draws what a one-row-at-a-time loop draws      numerical  tool_use (tokens to first difference)
a steering vector with α = 0 leaves the logits as they were    bitwise    steering (h + 0·v is h)
two processes train like one (data parallel)                   numerical  distributed (its own stated bounds)
the replicas of a data-parallel run stay identical             numerical  distributed (atol 1e-6)
=============================================================  =========  ======================================

**Tokens from two samplers.** Both engines draw from the same random stream, so a row's token is the same unless
the uniform draw falls within rounding of a boundary between two tokens' cumulative probabilities — rare (none in
the suite's rollouts on three kernel sets) but possible on any CPU. Such a row then continues from another token,
and its later tokens legitimately differ. So tests compare tokens up to each row's first difference
(:func:`common_prefix_lengths`), log-probs on that common prefix with the tolerance below, and allow at most a
small share of rows to diverge: a real bug (a wrong position, a missing mask) changes nearly every row.

The tolerance rule
------------------
    |a − b| ≤ ulps · ε(dtype) · max(1, max|reference|)

ε is the dtype's machine epsilon (``torch.finfo``: 1.19e-7 for float32), ``max|reference|`` the magnitude of the
quantity compared (the largest |log-prob|, |logit| or |gradient entry| of the tensor), and ``ulps`` =
:data:`DEFAULT_ULPS` = 256. Measured on this package's comparisons under ``ATEN_CPU_CAPABILITY`` = default, avx2 and
avx512 (``sft-tiny``: 4 layers, hidden 192), the worst difference was 12 ulps of the magnitude (sampler vs
recomputed log-probs at temperature 0.7); gradients of the shared-prompt forward 3.5 ulps of the largest gradient
entry. 256 leaves a 20× margin for deeper models and GPUs, while a real bug moves values by ~1e-2 of the
magnitude, 10⁵ ulps. bf16 computations (a GPU's autocast) compare against their own dtype with a small ``ulps``.
"""

from __future__ import annotations

import torch

__all__ = ["DEFAULT_ULPS", "assert_numerically_equal", "common_prefix_lengths", "numerical_tolerance"]

DEFAULT_ULPS = 256
"""Units in the last place, of the compared quantity's magnitude, that two numerically equal computations may
differ by (module docstring: measured worst case 12)."""


def numerical_tolerance(reference: torch.Tensor, dtype: torch.dtype | None = None, ulps: float = DEFAULT_ULPS) -> float:
    """The absolute tolerance for comparing a computation with another that agrees mathematically:
    ``ulps · ε(dtype) · max(1, max|reference|)``.

    Args:
        reference: Shape (any): the values one of the two computations gave (its magnitude sets the scale).
        dtype: the floating dtype the computations ran in (default: ``reference``'s; integer tensors count as
            float32).
        ulps: how many units in the last place of the magnitude to allow (default :data:`DEFAULT_ULPS`).
    """
    if ulps <= 0:
        raise ValueError(f"ulps must be > 0; got {ulps}")
    dtype = dtype or (reference.dtype if reference.is_floating_point() else torch.float32)
    scale = float(reference.detach().abs().max()) if reference.numel() else 0.0
    if scale != scale:  # NaN: no tolerance makes a NaN equal to anything
        raise ValueError("reference contains NaN")
    return ulps * torch.finfo(dtype).eps * max(1.0, scale)


def assert_numerically_equal(actual: torch.Tensor, expected: torch.Tensor, ulps: float = DEFAULT_ULPS,
                             dtype: torch.dtype | None = None, what: str = "values") -> None:
    """Raise ``AssertionError`` unless ``actual`` and ``expected`` have the same shape and differ by at most
    :func:`numerical_tolerance` of ``expected`` everywhere (the message gives the worst difference in ulps)."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    if expected.numel() == 0:
        return
    tol = numerical_tolerance(expected, dtype or expected.dtype, ulps)
    diff = float((actual.detach().double() - expected.detach().double()).abs().max())
    if not diff <= tol:
        unit = tol / ulps
        raise AssertionError(f"{what} differ by {diff:.3g} = {diff / unit:.1f} ulps of their magnitude "
                             f"(allowed {ulps}: {tol:.3g})")


def common_prefix_lengths(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """For each row, how many leading tokens ``a`` and ``b`` share. Shapes: (B, T), (B, T) → (B,), int64.

    Two samplers that draw from numerically equal distributions with the same random stream agree up to the first
    draw that lands within rounding of a boundary; after it, a row's tokens may differ (module docstring)."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (B, T); got {tuple(a.shape)} and {tuple(b.shape)}")
    differs = (a != b).long()  # (B, T)
    return (torch.cumsum(differs, dim=1) == 0).sum(dim=1)
