"""How much arithmetic a transformer step is, and how much of a chip's peak a run used (MFU).

Model FLOPs utilisation (PaLM, Chowdhery et al. 2022, appendix B) compares the FLOPs the *model* needs per token
with the device's datasheet peak; recomputation, padding and kernels that waste work do not count, so MFU is
comparable across implementations.

    forward FLOPs per token   = 2·N + 4·L·T·d          (N: parameters of the matrix products, lm_head included;
    training FLOPs per token  = 3 × forward              L layers, T tokens of context, d = heads × head size)
    MFU = tokens/s × training FLOPs per token / peak FLOP/s
    one RL rollout and its update = tokens × forward × (2 + 3 · passes)   (sampling, the reference, training)

2·N: each weight is one multiply-add per token. 4·L·T·d: the attention scores QKᵀ and the weighted sum AV, each
2·T·d per token per layer, counted over the full T × T square as PaLM does (a causal kernel may skip half). The
backward pass costs twice the forward (a gradient for the input and one for the weights).
"""

from __future__ import annotations

from rlhfbook_lab.checks import check_int, check_number

__all__ = ["forward_flops_per_token", "mfu", "rl_rollout_flops", "training_flops_per_token"]


def forward_flops_per_token(n_matmul_params: int, n_layers: int, seq_len: int, attn_width: int) -> int:
    """2·N + 4·L·T·d: the forward FLOPs per token of a decoder with ``n_matmul_params`` weights in its matrix
    products (q, k, v, o, the MLP and the output head; not the embedding lookup or the norms), ``n_layers`` layers
    and attention of width ``attn_width`` = heads × head size over ``seq_len`` tokens.

    >>> forward_flops_per_token(1000, 2, 8, 4)
    2256
    """
    check_int("n_matmul_params", n_matmul_params, minimum=0)
    check_int("n_layers", n_layers, minimum=0)
    check_int("seq_len", seq_len, minimum=1)
    check_int("attn_width", attn_width, minimum=0)
    return 2 * n_matmul_params + 4 * n_layers * seq_len * attn_width


def training_flops_per_token(n_matmul_params: int, n_layers: int, seq_len: int, attn_width: int) -> int:
    """3 × :func:`forward_flops_per_token` = 6·N + 12·L·T·d: forward plus a backward of twice its cost."""
    return 3 * forward_flops_per_token(n_matmul_params, n_layers, seq_len, attn_width)


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops: float) -> float:
    """Model FLOPs utilisation, tokens/s × FLOPs per token / peak FLOP/s, a fraction in [0, 1] for honest inputs
    (above 1 means the peak or the FLOP count is wrong)."""
    check_number("tokens_per_second", tokens_per_second, minimum=0)
    check_number("flops_per_token", flops_per_token, minimum=0)
    check_number("peak_flops", peak_flops, minimum=0, strict=True)
    return tokens_per_second * flops_per_token / peak_flops


def rl_rollout_flops(n_tokens: int, n_matmul_params: int, n_layers: int, seq_len: int, attn_width: int,
                     train_passes: int = 1) -> int:
    """The FLOPs of one RL rollout and its update, counted from its tokens (the x-axis of an RL compute-scaling
    plot, "The Art of Scaling RL Compute", 2025):

        n_tokens · F · (1 + 1 + 3 · train_passes),   F = :func:`forward_flops_per_token`

    one forward to sample every token (with a KV cache each token is computed once), one forward of the frozen
    reference, and ``train_passes`` (= PPO epochs) training passes of forward + backward (3 F). The sampler's own
    log-probs serve as log π_old (temperature 1, as the RL loop does), so no extra forward for them.

    Args:
        n_tokens: prompt + completion tokens in the rollout (every row's, padding not counted), >= 0.
        n_matmul_params, n_layers, attn_width: as in :func:`forward_flops_per_token`.
        seq_len: the attention term's context length (e.g. the rollout's mean row length), >= 1.
        train_passes: passes over the rollout, >= 0.

    >>> rl_rollout_flops(10, 1000, 2, 8, 4)  # 10 · 2256 · 5
    112800
    """
    check_int("n_tokens", n_tokens, minimum=0)
    check_int("train_passes", train_passes, minimum=0)
    return n_tokens * forward_flops_per_token(n_matmul_params, n_layers, seq_len, attn_width) * (2 + 3 * train_passes)
