"""Model FLOPs (``equations/flops.py``): a hand value, torch's own FLOP counter on a real forward pass, and the
properties that make MFU comparable."""

import pytest
import torch
from _models import tiny_llama
from torch.utils.flop_counter import FlopCounterMode

from rlhfbook_lab.equations.flops import forward_flops_per_token, mfu, rl_rollout_flops, training_flops_per_token


def test_hand_values():
    # 2·1000 + 4·2·8·4 = 2000 + 256
    assert forward_flops_per_token(1000, 2, 8, 4) == 2256
    assert training_flops_per_token(1000, 2, 8, 4) == 3 * 2256
    # 1e4 tokens/s × 6e9 FLOPs per token on a 1e15 FLOP/s chip: 6 %
    assert mfu(1e4, 6e9, 1e15) == pytest.approx(0.06)


def _matmul_params(model) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


@pytest.mark.parametrize("kv_heads", [2, 1])
def test_the_formula_is_what_torch_counts_on_a_forward_pass(tokenizer, kv_heads):
    """Second implementation: torch's FlopCounterMode counts every matrix product of a real Llama forward pass
    (eager attention, so QKᵀ and AV are matrix products it sees; grouped-query attention too: k and v
    are narrower, which N already holds) — exactly 2·N + 4·L·T·d per token."""
    model = tiny_llama(tokenizer, layers=2, kv_heads=kv_heads)
    model.set_attn_implementation("eager")  # attention as plain matrix products, which the counter sees
    B, T = 3, 16
    ids = torch.randint(7, len(tokenizer), (B, T))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=ids)
    cfg = model.config
    width = cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads)
    expected = B * T * forward_flops_per_token(_matmul_params(model), cfg.num_hidden_layers, T, width)
    assert counter.get_total_flops() == expected, counter.get_flop_counts()["Global"]


def test_properties():
    """Linear in N; the attention term grows with the context; MFU is linear in throughput."""
    a, b = forward_flops_per_token(10**6, 4, 128, 256), forward_flops_per_token(2 * 10**6, 4, 128, 256)
    assert b - a == 2 * 10**6
    assert forward_flops_per_token(10**6, 4, 256, 256) - a == 4 * 4 * 128 * 256
    assert mfu(2e4, 6e9, 1e15) == pytest.approx(2 * mfu(1e4, 6e9, 1e15))


@pytest.mark.parametrize("call, field", [
    (lambda: forward_flops_per_token(-1, 2, 8, 4), "n_matmul_params"),
    (lambda: forward_flops_per_token(10, 2, 0, 4), "seq_len"),
    (lambda: mfu(1.0, 1.0, 0.0), "peak_flops"),
    (lambda: mfu(float("nan"), 1.0, 1.0), "tokens_per_second"),
])
def test_bad_input_names_the_field(call, field):
    with pytest.raises(ValueError, match=field):
        call()


def test_rl_rollout_flops_hand_value_components_and_linearity():

    # hand value: 10 tokens · (2·1000 + 4·2·8·4 = 2256) · (sample + reference + 3 for one training pass = 5)
    assert rl_rollout_flops(10, 1000, 2, 8, 4) == 112_800
    # second implementation: the sum of its parts, each counted by the existing functions
    for passes in (0, 1, 2):
        fwd, train = forward_flops_per_token(5000, 3, 20, 16), training_flops_per_token(5000, 3, 20, 16)
        parts = 2 * 37 * fwd + passes * 37 * train
        assert rl_rollout_flops(37, 5000, 3, 20, 16, train_passes=passes) == parts
    # properties: additive in tokens (two half rollouts cost one whole), zero tokens cost nothing
    assert rl_rollout_flops(30, 700, 2, 9, 8) + rl_rollout_flops(12, 700, 2, 9, 8) == rl_rollout_flops(42, 700, 2, 9, 8)
    assert rl_rollout_flops(0, 700, 2, 9, 8) == 0
    for bad in (dict(n_tokens=-1), dict(n_tokens=1.5), dict(train_passes=-1)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            rl_rollout_flops(**{**dict(n_tokens=1, n_matmul_params=1, n_layers=1, seq_len=1, attn_width=1), **bad})
