"""Comparing two samplers' outputs under the numerical contract (``rlhfbook_lab.equations.numerics``)."""

import torch
import torch.nn.functional as F

from rlhfbook_lab.equations.numerics import assert_numerically_equal, common_prefix_lengths


def assert_same_samples(ours, ref, max_diverged: float = 0.25) -> int:
    """Two ``Generation``s from the same prompts and seed: every row equal up to its first differing token, at most
    ``max_diverged`` of the rows diverging at all (a draw within rounding of a boundary; a real bug diverges nearly
    every row), and the sampler's log-probs numerically equal on each row's common prefix. Returns how many rows
    diverged."""
    P = ours.prompt_length
    assert P == ref.prompt_length and torch.equal(ours.input_ids[:, :P], ref.input_ids[:, :P])
    a, b = ours.input_ids[:, P:], ref.input_ids[:, P:]
    T = max(a.shape[1], b.shape[1])
    a, b = F.pad(a, (0, T - a.shape[1]), value=-1), F.pad(b, (0, T - b.shape[1]), value=-1)
    prefix = common_prefix_lengths(a, b)
    diverged = prefix < T
    assert float(diverged.float().mean()) <= max_diverged, f"{int(diverged.sum())} of {len(a)} rows diverged"
    on_prefix = torch.arange(T)[None] < prefix[:, None]  # (B, T)
    la = F.pad(ours.logprobs[:, P:], (0, T - ours.logprobs.shape[1] + P)) * on_prefix
    lb = F.pad(ref.logprobs[:, P:], (0, T - ref.logprobs.shape[1] + P)) * on_prefix
    assert_numerically_equal(la, lb, what="the sampler's log-probs")
    same = ~diverged
    assert [t for t, s in zip(ours.texts, same) if s] == [t for t, s in zip(ref.texts, same) if s]
    assert torch.equal(ours.finished[same], ref.finished[same])
    return int(diverged.sum())
