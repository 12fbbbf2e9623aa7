"""evaluation.sampled_kl: KL(π‖π_ref) per reply from the policy's own samples."""

import pytest
import torch
from _models import tiny_llama

from rlhfbook_lab import world
from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.lm import evaluation
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import generate


def test_sampled_kl_of_a_model_against_itself_is_zero(tokenizer):
    model = tiny_llama(tokenizer, seed=0)
    res = evaluation.sampled_kl(model, model, tokenizer, world.heldout_prompts(6, seed=0), num_samples=2,
                                max_new_tokens=6)
    assert res.kl == 0.0 and res.kl_k1 == 0.0 and res.n == 12
    assert 1 <= res.mean_length <= 6


@torch.no_grad()
def test_sampled_kl_agrees_with_a_per_row_loop(tokenizer):
    """Second implementation: one reply at a time, KL summed token by token over the vocabulary by hand."""
    policy, ref = tiny_llama(tokenizer, seed=1), tiny_llama(tokenizer, seed=2)
    problems = world.heldout_prompts(4, seed=1)
    res = evaluation.sampled_kl(policy, ref, tokenizer, problems, max_new_tokens=5, seed=3)
    torch.manual_seed(3)
    gen = generate(policy, tokenizer, [p.prompt for p in problems], max_new_tokens=5)
    total, total_k1 = 0.0, 0.0
    for i in range(len(problems)):
        keep = gen.attention_mask[i].bool()
        ids = gen.input_ids[i][keep][None]
        comp = gen.completion_mask[i][keep]
        p = torch.log_softmax(policy(ids).logits[0].double(), -1)  # one row, no padding: plain positions
        q = torch.log_softmax(ref(ids).logits[0].double(), -1)
        for t in torch.nonzero(comp).flatten().tolist():
            total += float((p[t - 1].exp() * (p[t - 1] - q[t - 1])).sum())
            total_k1 += float(p[t - 1, ids[0, t]] - q[t - 1, ids[0, t]])
    assert res.kl == pytest.approx(total / len(problems), rel=1e-4, abs=1e-6)
    assert res.kl_k1 == pytest.approx(total_k1 / len(problems), rel=1e-4, abs=1e-5)


@torch.no_grad()
def test_sampled_kl_k1_and_exact_agree_in_expectation(tokenizer):
    """Property: both estimate the same KL, so over many samples k1's mean lies within a few standard errors
    of the exact one; and the exact per-token form is never negative."""
    policy, ref = tiny_llama(tokenizer, seed=4), tiny_llama(tokenizer, seed=5)
    problems = world.heldout_prompts(32, seed=2)
    res = evaluation.sampled_kl(policy, ref, tokenizer, problems, num_samples=16, max_new_tokens=3)
    assert res.kl > 0
    # spread of k1 per reply, for its own standard error
    torch.manual_seed(0)
    gen = generate(policy, tokenizer, [p.prompt for p in problems], max_new_tokens=3, num_return_sequences=16)
    lp = per_token_logprobs(forward_logits(policy, gen.input_ids, gen.attention_mask), gen.input_ids)
    lq = per_token_logprobs(forward_logits(ref, gen.input_ids, gen.attention_mask), gen.input_ids)
    k1 = ((lp - lq) * gen.completion_mask).sum(1)
    se = float(k1.std() / k1.numel() ** 0.5)
    assert abs(res.kl_k1 - res.kl) < 4 * (se + res.stderr)


def test_sampled_kl_bad_input(tokenizer):
    model = tiny_llama(tokenizer)
    with pytest.raises(ValueError, match="problems"):
        evaluation.sampled_kl(model, model, tokenizer, [])
    with pytest.raises(ValueError, match="num_samples"):
        evaluation.sampled_kl(model, model, tokenizer, world.heldout_prompts(2), num_samples=0)
