"""Tests for rlhfbook_lab.lm.steering: the steering vector by hand, α = 0 is the model itself, α·v lands where it
should, the hook never outlives its block, and generation under steering honours the hook."""

from __future__ import annotations

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.equations.numerics import assert_numerically_equal, numerical_tolerance
from rlhfbook_lab.lm.data import conversation, tokenize_conversation
from rlhfbook_lab.lm.generation import generate, supports_cached_sampling
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.steering import (
    layer_outputs,
    mean_reply_states,
    opener_vector,
    steering,
    steering_curve,
    steering_vector,
)

PROBLEMS = [world.make_problem("addition", (17, 25)), world.make_problem("reverse", ("crow",)),
            world.make_problem("addition", (3, 4))]
PLUS = [world.render_response(p, opener="Sure!") for p in PROBLEMS]
MINUS = [world.render_response(p) for p in PROBLEMS]


@pytest.fixture(scope="module")
def sft():
    return load_model("sft-tiny")


def _ids(tok, prompt):
    return torch.tensor([tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=False)])


def test_steering_vector_by_hand(sft):
    model, tok = sft
    prompts = [p.prompt for p in PROBLEMS]
    for layer in (0, 2):
        means = []
        for replies in (PLUS, MINUS):  # one conversation at a time, no padding, HF's own hidden states
            per = []
            for p, y in zip(prompts, replies):
                r = tokenize_conversation(tok, conversation(p, y))
                with torch.no_grad():
                    hs = model(input_ids=torch.tensor([r["input_ids"]]), output_hidden_states=True).hidden_states
                h = hs[layer + 1][0]  # hidden_states[0] is the embeddings; [ℓ + 1] the output of layer ℓ
                per.append(h[torch.tensor(r["completion_mask"]).bool()].mean(0))
            means.append(torch.stack(per).mean(0))
        v = steering_vector(model, tok, prompts, PLUS, MINUS, layer)
        assert v.shape == (model.config.hidden_size,)
        assert_numerically_equal(v, means[0] - means[1], what="steering vector", ulps=64)
    # a trait compared with itself has no direction
    assert torch.equal(steering_vector(model, tok, prompts, MINUS, MINUS, 1), torch.zeros(model.config.hidden_size))


def test_padding_does_not_change_the_mean_reply_states(sft):
    model, tok = sft
    prompts = [p.prompt for p in PROBLEMS]
    batched = mean_reply_states(model, tok, prompts, PLUS, layer=1)
    alone = torch.cat([mean_reply_states(model, tok, [p], [y], layer=1) for p, y in zip(prompts, PLUS)])
    assert_numerically_equal(batched, alone, what="padded vs alone", ulps=64)


def test_alpha_zero_is_the_model_itself(sft):
    model, tok = sft
    ids = _ids(tok, PROBLEMS[0].prompt)
    v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with steering(model, v, 2, 0.0):
            steered0 = model(input_ids=ids).logits
        with steering(model, v, 2, 1.0):
            steered1 = model(input_ids=ids).logits
    assert torch.equal(plain, steered0)  # h + 0·v is h exactly: the same computation
    assert not torch.allclose(plain, steered1)


def test_steering_adds_alpha_v_to_the_layer_output_and_later_layers_see_it(sft):
    model, tok = sft
    ids = _ids(tok, PROBLEMS[1].prompt)
    mask = torch.ones_like(ids)
    v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    before = layer_outputs(model, ids, mask, 1)
    with steering(model, v, 1, 0.5):
        after = layer_outputs(model, ids, mask, 1)
        after_next = layer_outputs(model, ids, mask, 2)
    assert_numerically_equal(after - before, (0.5 * v).expand_as(before), what="h + αv", ulps=64)
    assert not torch.allclose(after_next, layer_outputs(model, ids, mask, 2))  # the change propagates up


def test_first_position_steering_pushes_only_the_last_prompt_position(sft):
    """Hand value: `where="first"` adds α·v at the last position of a multi-token pass and nowhere else; a
    one-token pass (a decode step with a KV cache) is left as it was."""
    model, tok = sft
    ids = _ids(tok, PROBLEMS[1].prompt)
    mask = torch.ones_like(ids)
    v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    before = layer_outputs(model, ids, mask, 1)
    one = ids[:, :1]
    before_one = layer_outputs(model, one, torch.ones_like(one), 1)
    with steering(model, v, 1, 0.5, where="first"):
        after = layer_outputs(model, ids, mask, 1)
        after_one = layer_outputs(model, one, torch.ones_like(one), 1)
    assert torch.equal(after[:, :-1], before[:, :-1])  # untouched positions: the same computation
    assert_numerically_equal(after[:, -1] - before[:, -1], 0.5 * v[None], what="h + αv at the last position",
                             ulps=64)
    assert torch.equal(after_one, before_one)


def test_first_position_steering_in_generation_equals_a_manual_first_step(sft):
    """Second implementation, teacher-forced: greedy generation steered at the first position only picks its first
    token as the steered prompt pass ranks it, and every later token as the *unsteered* model ranks it given the
    tokens so far. Greedy picks from two different computations (a cached decode, one full forward) are compared
    as the numerical contract says: equal unless the top two logits are within rounding of each other."""
    model, tok = sft
    prompts = [p.prompt for p in PROBLEMS[:2]]
    v = steering_vector(model, tok, prompts, PLUS[:2], MINUS[:2], 2)
    v = 1000 * v / v.norm()  # loud enough to change the first token (an opener: lesson 17)
    with steering(model, v, 2, 1.0, where="first"):
        out = generate(model, tok, prompts, greedy=True, max_new_tokens=12)
    for row in range(len(prompts)):
        ids = out.input_ids[row][out.attention_mask[row].bool()][None]  # the row without padding: prompt + reply
        P = int(out.attention_mask[row, :out.prompt_length].sum())
        with torch.no_grad():
            with steering(model, v, 2, 1.0, where="first"):
                first = model(input_ids=ids[:, :P]).logits[0, -1]
            plain = model(input_ids=ids[:, :P]).logits[0, -1]
            rest = model(input_ids=ids).logits[0, P:-1]  # unsteered: the ranks of tokens 2 ..
        assert int(first.argmax()) != int(plain.argmax())  # the push did change the first token
        for logits, token in zip([first, *rest], ids[0, P:].tolist()):
            top = logits.topk(2).values
            tie = float(top[0] - top[1]) <= numerical_tolerance(logits)
            assert int(logits.argmax()) == token or tie


def test_stops_steering_pushes_the_prefill_end_and_one_token_passes_of_a_full_stop(sft):
    """Hand value: `where="stops"` adds α·v at the last position of a multi-token pass (as "first") and in a
    one-token pass only to the rows whose token is ".", leaving other rows as they were."""
    model, tok = sft
    ids = _ids(tok, PROBLEMS[1].prompt)
    mask = torch.ones_like(ids)
    v = torch.randn(model.config.hidden_size, generator=torch.Generator().manual_seed(3))
    stop, other = tok.convert_tokens_to_ids("."), tok.convert_tokens_to_ids("a")
    one = torch.tensor([[stop], [other], [stop]])
    before, before_one = layer_outputs(model, ids, mask, 2), layer_outputs(model, one, torch.ones_like(one), 2)
    with steering(model, v, 2, 0.5, where="stops", tokenizer=tok):
        after = layer_outputs(model, ids, mask, 2)
        after_one = layer_outputs(model, one, torch.ones_like(one), 2)
    assert torch.equal(after[:, :-1], before[:, :-1])
    assert_numerically_equal(after[:, -1] - before[:, -1], 0.5 * v[None], what="h + αv at the prefill's end", ulps=64)
    assert torch.equal(after_one[1], before_one[1])  # not a full stop: untouched
    assert_numerically_equal(after_one[[0, 2]] - before_one[[0, 2]], (0.5 * v).expand(2, 1, -1),
                             what="h + αv after a full stop", ulps=64)


def test_stops_steering_in_generation_equals_a_teacher_forced_pass(sft):
    """Second implementation: greedy generation steered at the stops picks each token as one full forward pass over
    the finished row ranks it, with α·v added by hand at the prompt's last position and at every "." of the reply.
    Greedy picks from the two computations are compared as the numerical contract says (ties within rounding)."""
    model, tok = sft
    prompts = [p.prompt for p in PROBLEMS]
    v = opener_vector(model, tok, 3, n=16)
    v = 400 * v / v.norm()  # loud enough that replies go on past their first full stop
    with steering(model, v, 3, 1.0, where="stops", tokenizer=tok):
        out = generate(model, tok, prompts, greedy=True, max_new_tokens=24)
    plain = generate(model, tok, prompts, greedy=True, max_new_tokens=24)
    assert out.texts != plain.texts
    stop = tok.convert_tokens_to_ids(".")
    went_on = 0
    for row in range(len(prompts)):
        ids = out.input_ids[row][out.attention_mask[row].bool()][None]
        P = int(out.attention_mask[row, :out.prompt_length].sum())
        where = torch.zeros(ids.shape[1], 1)
        where[P - 1] = 1
        where[P:] = (ids[0, P:] == stop).float()[:, None]
        went_on += int(where[P:-1].sum() > 0)  # a full stop that was not the reply's last token
        push = where * v  # (T, D): α·v at the prompt's last position and at the reply's full stops

        def by_hand(module, args, output, push=push):
            return (output[0] + push, *output[1:]) if isinstance(output, tuple) else output + push

        handle = model.model.layers[3].register_forward_hook(by_hand)
        try:
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, P - 1:-1]
        finally:
            handle.remove()
        for step, token in zip(logits, ids[0, P:].tolist()):
            top = step.topk(2).values
            assert int(step.argmax()) == token or float(top[0] - top[1]) <= numerical_tolerance(step)
    assert went_on > 0  # the pushes at full stops were exercised


def test_the_hook_never_outlives_its_block(sft):
    model, tok = sft
    v = torch.ones(model.config.hidden_size)
    assert supports_cached_sampling(model)
    with pytest.raises(RuntimeError, match="boom"):
        with steering(model, v, 0, 2.0):
            assert not supports_cached_sampling(model)  # the cached sampler would skip the hook
            raise RuntimeError("boom")
    assert supports_cached_sampling(model)
    assert not any(getattr(h, "changes_output", False) for m in model.modules() for h in m._forward_hooks.values())


def test_generation_under_steering_follows_the_hook(sft):
    model, tok = sft
    prompts = [p.prompt for p in PROBLEMS]
    plain = generate(model, tok, prompts, greedy=True, max_new_tokens=16)
    v = steering_vector(model, tok, prompts, PLUS, MINUS, 3)
    with steering(model, v, 3, 0.0):
        zero = generate(model, tok, prompts, greedy=True, max_new_tokens=16)  # the hf engine, hook and all
    assert zero.texts == plain.texts
    with steering(model, v, 3, 20.0):
        loud = generate(model, tok, prompts, greedy=True, max_new_tokens=16)
    assert loud.texts != plain.texts
    with steering(model, v, 3, 1.0), pytest.raises(ValueError, match="engine='cached' supports"):
        generate(model, tok, prompts, greedy=True, engine="cached")


def test_bad_steering_arguments_raise(sft):
    model, tok = sft
    D = model.config.hidden_size
    with pytest.raises(ValueError, match=r"layer must be an int >= 0 and <= 3"):
        with steering(model, torch.zeros(D), 4, 1.0):
            pass
    with pytest.raises(ValueError, match=rf"vector must be a tensor of shape \({D},\)"):
        with steering(model, torch.zeros(D + 1), 0, 1.0):
            pass
    with pytest.raises(ValueError, match="NaN or infinite"):
        with steering(model, torch.full((D,), float("nan")), 0, 1.0):
            pass
    with pytest.raises(ValueError, match="where must be one of"):
        with steering(model, torch.zeros(D), 0, 1.0, where="last"):
            pass
    with pytest.raises(ValueError, match="tokenizer is needed"):
        with steering(model, torch.zeros(D), 0, 1.0, where="stops"):
            pass
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        with steering(model, torch.zeros(D), 0, float("inf")):
            pass
    with pytest.raises(ValueError, match="must pair up"):
        steering_vector(model, tok, [PROBLEMS[0].prompt], PLUS[:1], MINUS[:2], 0)
    with pytest.raises(ValueError, match="as many replies as prompts"):
        mean_reply_states(model, tok, [PROBLEMS[0].prompt], PLUS[:2], 0)
    assert supports_cached_sampling(model)  # no steering hook left behind


def test_steering_curve_rows(sft):
    model, tok = sft
    v = steering_vector(model, tok, [p.prompt for p in PROBLEMS], PLUS, MINUS, 3)
    rows = steering_curve(model, tok, v, 3, [0.0, 30.0], PROBLEMS)
    assert [r["alpha"] for r in rows] == [0.0, 30.0]
    plain = generate(model, tok, [p.prompt for p in PROBLEMS], greedy=True)
    assert rows[0]["example"] == plain.texts[0]  # α = 0: the model's own greedy reply
    assert rows[0]["gold"] == pytest.approx(sum(world.gold_score(p, y, allow_empty=True)
                                                for p, y in zip(PROBLEMS, plain.texts)) / len(PROBLEMS))
    assert rows[1]["gold"] < rows[0]["gold"]  # a huge α breaks the model: over-steering
    assert opener_vector(model, tok, 3, n=4).shape == (model.config.hidden_size,)
