"""Generation: the sampler's own log-probs agree with the log-prob core; masks stop at the first EOS."""

import pytest
import torch
from _compare import assert_same_samples

from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.equations.numerics import assert_numerically_equal, common_prefix_lengths, numerical_tolerance
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import _left_pad, _process_scores, encode_prompts, generate, sample_cached

PROMPTS = ["What is 2 + 3?", "Spell mirt backward.", "Write a positive review of the lamp."]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_match_recomputed(micro_model, tokenizer, temperature):
    gen = generate(micro_model, tokenizer, PROMPTS, max_new_tokens=12, temperature=temperature, seed=0,
                   num_return_sequences=2)
    with torch.no_grad():
        logits = forward_logits(micro_model, gen.input_ids, gen.attention_mask)
    recomputed = per_token_logprobs(logits, gen.input_ids, temperature=temperature) * gen.completion_mask
    assert_numerically_equal(gen.logprobs, recomputed, what="sampler vs recomputed log-probs")  # numerical
    assert gen.completion_mask.sum() > 0


def test_masks_and_shapes(micro_model, tokenizer):
    gen = generate(micro_model, tokenizer, PROMPTS, max_new_tokens=10, seed=1, num_return_sequences=3)
    B, P = 9, gen.prompt_length
    assert gen.input_ids.shape == gen.attention_mask.shape == gen.completion_mask.shape == gen.logprobs.shape
    assert gen.input_ids.shape[0] == B and len(gen.texts) == B
    assert torch.all(gen.completion_mask[:, :P] == 0)
    eos = tokenizer.eos_token_id
    for i in range(B):
        comp = gen.input_ids[i, P:][gen.completion_mask[i, P:].bool()].tolist()
        # the completion holds at most one EOS, and only as its last token
        assert comp.count(eos) == int(gen.finished[i])
        if gen.finished[i]:
            assert comp[-1] == eos
        # everything after the completion is padding
        rest = gen.input_ids[i, P + len(comp):]
        assert torch.all(rest == tokenizer.pad_token_id)
    # rows of a group share their prompt
    torch.testing.assert_close(gen.input_ids[0, :P], gen.input_ids[2, :P])


def test_stops_at_eos(micro_model, tokenizer):
    """Force EOS to be the likeliest token: every completion is exactly [EOS] and finished."""
    eos = tokenizer.eos_token_id
    head = micro_model.get_output_embeddings()
    bias_hook = head.register_forward_hook(lambda m, i, o: o + 1e4 * torch.nn.functional.one_hot(
        torch.tensor(eos), o.shape[-1]).to(o.dtype))
    try:
        gen = generate(micro_model, tokenizer, PROMPTS, max_new_tokens=8, greedy=True)
    finally:
        bias_hook.remove()
    assert gen.finished.all()
    assert gen.completion_mask.sum(1).tolist() == [1, 1, 1]
    assert gen.texts == ["", "", ""]


def test_greedy_is_deterministic_and_seed_reproducible(micro_model, tokenizer):
    a = generate(micro_model, tokenizer, PROMPTS, max_new_tokens=8, greedy=True)
    b = generate(micro_model, tokenizer, PROMPTS, max_new_tokens=8, greedy=True)
    assert torch.equal(a.input_ids, b.input_ids)
    c = generate(micro_model, tokenizer, PROMPTS, max_new_tokens=8, seed=3)
    d = generate(micro_model, tokenizer, PROMPTS, max_new_tokens=8, seed=3)
    assert torch.equal(c.input_ids, d.input_ids)


def test_raw_prompts_start_with_bos(tokenizer):
    ids = encode_prompts(tokenizer, ["17 + 25 ="], chat=False)[0]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.decode(ids[1:]) == "17 + 25 ="


@pytest.mark.parametrize("kw, match", [
    (dict(prompts=[]), "prompts is empty"),
    (dict(prompts=PROMPTS, temperature=0.0), "temperature"),
    (dict(prompts=PROMPTS, top_p=0.0), "top_p"),
    (dict(prompts=[["not", "a", "string"]], chat=False), "must be a string"),
])
def test_bad_input(micro_model, tokenizer, kw, match):
    with pytest.raises(ValueError, match=match):
        generate(micro_model, tokenizer, **kw)


# --- the cached decode loop against transformers' generate ---------------------------------------------------------

ENGINE_CASES = [
    dict(temperature=1.0, num_return_sequences=3),
    dict(temperature=0.7, top_p=0.9, num_return_sequences=2),
    dict(greedy=True),
    dict(chat=False, num_return_sequences=2, prompts=["17 + 25 =", "The lamp", "Once upon a time, the mirt"]),
]


@pytest.mark.parametrize("case", ENGINE_CASES, ids=["t1-groups", "t0.7-top_p", "greedy", "raw"])
def test_cached_engine_draws_what_generate_draws(micro_model, tokenizer, case):
    """Second implementation (numerical): from the same seed both engines sample the same tokens from numerically
    equal scores, up to a draw within rounding of a boundary (``tests/_compare.py``)."""
    kw = dict(prompts=PROMPTS, max_new_tokens=14, seed=5) | case
    ours = generate(micro_model, tokenizer, engine="cached", **kw)
    ref = generate(micro_model, tokenizer, engine="hf", **kw)
    assert_same_samples(ours, ref)


def test_cached_engine_on_the_shipped_sft_model(tokenizer):
    """The same on the real checkpoint, with prompts of different lengths and a GRPO-sized group (4 × 8)."""
    from rlhfbook_lab.lm.models import load_model

    model, tok = load_model("sft-tiny")
    prompts = ["What is 12 + 35?", "Spell mirt backward.", "Which creature glows?",
               "Write a short, positive review of the lamp."]
    kw = dict(max_new_tokens=40, num_return_sequences=8, seed=0)
    ours, ref = generate(model, tok, prompts, engine="cached", **kw), generate(model, tok, prompts, engine="hf", **kw)
    assert_same_samples(ours, ref)  # numerical: once finished rows leave the cache the products run on fewer rows
    assert ours.finished.any()


def test_cached_engine_ignores_padding_and_group_company(micro_model, tokenizer):
    """Property (numerical): a prompt's greedy completion does not depend on the other prompts in the batch (their
    lengths set its left padding) nor on the group size."""
    alone = generate(micro_model, tokenizer, PROMPTS[:1], max_new_tokens=10, greedy=True, engine="cached").texts[0]
    batched = generate(micro_model, tokenizer, PROMPTS[::-1], max_new_tokens=10, greedy=True, num_return_sequences=2,
                       engine="cached").texts
    # numerical: other padding is another computation; greedy tokens can only flip where the top two logits are
    # within rounding, so check the margins along this prompt's path first
    ids, mask = _left_pad(encode_prompts(tokenizer, PROMPTS[:1]), tokenizer.pad_token_id)
    _, logits = sample_cached(micro_model, ids, mask, 1, 10, tokenizer.eos_token_id, tokenizer.pad_token_id,
                              greedy=True)
    top2 = logits[0].topk(2, dim=-1).values  # (T, 2)
    assert float((top2[:, 0] - top2[:, 1]).min()) > 100 * numerical_tolerance(logits)
    assert batched[-1] == batched[-2] == alone


def test_top_p_hand_computed():
    """Probabilities (0.5, 0.3, 0.15, 0.05): top_p = 0.8 keeps the two likeliest tokens (0.5 + 0.3 reaches 0.8);
    top_p = 0.81 keeps three; top_p = 0.01 keeps only the likeliest; temperature divides the logits."""

    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = lambda p: torch.isfinite(_process_scores(logits, 1.0, p)).squeeze(0).tolist()  # noqa: E731
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(0.01) == [True, False, False, False]
    assert kept(1.0) == [True] * 4
    torch.testing.assert_close(_process_scores(logits, 0.5, 1.0), logits * 2)


@pytest.mark.parametrize("kw, match", [
    (dict(engine="vllm"), "engine"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(num_return_sequences=0), "num_return_sequences"),
])
def test_bad_engine_arguments(micro_model, tokenizer, kw, match):
    with pytest.raises(ValueError, match=match):
        generate(micro_model, tokenizer, PROMPTS, **kw)


def test_cached_engine_refuses_unknown_architectures(tokenizer):
    class NotLlama(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="cached"):
        generate(NotLlama(), tokenizer, PROMPTS, engine="cached")


def test_dropping_finished_rows_changes_no_sample():
    """Property: dropping finished rows from the cache (at every finish, compact_at=1) draws the same tokens from
    the same scores as keeping every row (compact_at=0), on rows that finish at different steps."""
    from rlhfbook_lab.lm.models import load_model

    model, tok = load_model("sft-tiny")
    prompts = ["What is 12 + 35?", "Spell mirt backward.", "Which creature glows?",
               "Write a short, positive review of the lamp."]
    ids, mask = _left_pad(encode_prompts(tok, prompts), tok.pad_token_id)
    runs = []
    for compact_at in (0.0, 1.0):
        torch.manual_seed(0)
        runs.append(sample_cached(model.eval(), ids, mask, 8, 40, tok.eos_token_id, tok.pad_token_id,
                                  compact_at=compact_at))
    (tok_keep, sc_keep), (tok_drop, sc_drop) = runs
    # numerical: the cache holds fewer rows, so the products may round otherwise; rows agree up to a boundary draw
    prefix = common_prefix_lengths(tok_keep, tok_drop)
    assert float((prefix < tok_keep.shape[1]).float().mean()) <= 0.25
    agree = torch.arange(tok_keep.shape[1])[None] < prefix[:, None]
    is_eos = tok_keep == tok.eos_token_id
    live = (torch.cumsum(is_eos.long(), 1) - is_eos.long()) == 0  # up to and including each row's EOS
    lengths = live.sum(1)
    assert is_eos.any(1).sum() >= 2 and len(set(lengths.tolist())) > 2  # rows leave at several steps
    both = live & agree
    assert_numerically_equal(sc_drop[both], sc_keep[both], what="the processed scores")
    assert torch.all(sc_drop[~live & agree] == 0)  # dropped rows: the dummy scores
    with pytest.raises(ValueError, match="compact_at"):
        sample_cached(model, ids, mask, 2, 4, tok.eos_token_id, tok.pad_token_id, compact_at=1.5)


def test_cached_engine_with_grouped_query_attention(tokenizer):
    """Second implementation with fewer key/value heads than query heads (each key/value head serves two query
    heads): the same tokens and log-probs as ``model.generate``."""
    from _models import tiny_llama

    model = tiny_llama(tokenizer, seed=3, layers=2, kv_heads=1)
    kw = dict(prompts=PROMPTS, max_new_tokens=12, seed=1, num_return_sequences=3)
    ours = generate(model, tokenizer, engine="cached", **kw)
    ref = generate(model, tokenizer, engine="hf", **kw)
    assert_same_samples(ours, ref)
