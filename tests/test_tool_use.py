"""Tool use (ch 13): the call format round-trips, tool results are masked out of targets and log-probs, and the
cached sampler with tools draws what a slow one-row-at-a-time loop draws from the same seeds."""

import copy
import random

import pytest
import torch

from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.equations.numerics import assert_numerically_equal, common_prefix_lengths
from rlhfbook_lab.equations.toolformer import toolformer_keep
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import (
    ToolRunner,
    _left_pad,
    _process_scores,
    encode_prompts,
    generate,
    sample_cached_tools,
)
from rlhfbook_lab.lm.tools import (
    continuation_loss,
    lying_tool,
    tokenize_tool_conversation,
    tool_sft_dataset,
    toolformer_losses,
)
from rlhfbook_lab.world import tool_use
from rlhfbook_lab.world.calculator import run_tool_call

CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "123+456"}}}]}


# --- the format ---------------------------------------------------------------------------------------------
def test_render_hand_value_and_round_trip():
    messages = [CALL, {"role": "tool", "name": "calculator", "content": "579"},
                {"role": "assistant", "content": " The answer is 579."}]
    text = tool_use.render_reply(messages)
    assert text == "[calculator(123+456) -> 579] The answer is 579."
    assert tool_use.parse_reply(text) == messages


def test_round_trip_random_conversations():
    """Property: render → parse gives the messages back, and the segments concatenate to the text."""
    rng = random.Random(0)
    words = ["Let me see.", " ok", "", " so", " (a) [b]", " ->", "x ->"]
    for _ in range(300):
        messages = []
        for _ in range(rng.randint(0, 3)):
            expr = rng.choice(["1+2", "(3*4)-5", "", "a b", "9**9"])
            messages.append({"role": "assistant", "content": rng.choice(words), "tool_calls": [
                {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expr}}}]})
            messages.append({"role": "tool", "name": "calculator", "content": run_tool_call("calculator", expr)})
        messages.append({"role": "assistant", "content": rng.choice([w for w in words if w])})
        text = tool_use.render_reply(messages)
        assert tool_use.parse_reply(text) == messages, text
        assert "".join(t for t, _ in tool_use.reply_segments(text)) == text


def test_render_refuses_malformed():
    with pytest.raises(ValueError, match="no tool result"):
        tool_use.render_reply([CALL])
    with pytest.raises(ValueError, match="without a tool call"):
        tool_use.render_reply([{"role": "tool", "content": "3"}])
    with pytest.raises(ValueError, match="may not contain"):
        tool_use.render_reply([CALL, {"role": "tool", "content": "3]"}])
    with pytest.raises(ValueError, match="role"):
        tool_use.render_reply([{"role": "user", "content": "hi"}])


def test_pending_call():
    assert tool_use.pending_call("Sure. [calculator(1 + 2) ->") == ("calculator", "1 + 2")
    assert tool_use.pending_call("[calculator((1+2)*3) ->") == ("calculator", "(1+2)*3")
    assert tool_use.pending_call("[calculator(1+2) -> 3] then ->") is None  # no open call
    assert tool_use.pending_call("[calculator(1+2) -> 3] [calculator(4) ->") == ("calculator", "4")
    assert tool_use.pending_call("[calculator(1+2)") is None  # not closed yet
    assert tool_use.result_text("error: unknown character ']'") == " error: unknown character ')']"


# --- the family ---------------------------------------------------------------------------------------------
def test_family_split_and_checker():
    assert tool_use.split_of((123, 456)) == tool_use.split_of((456, 123))
    held = [tool_use.split_of((a, b)) == "heldout" for a in range(100, 200) for b in range(300, 400)]
    assert 0.17 < sum(held) / len(held) < 0.23
    probs = tool_use.sample_problems(50, "heldout", seed=1)
    assert all(tool_use.split_of(p.key) == "heldout" for p in probs)
    assert probs == tool_use.sample_problems(50, "heldout", seed=1)
    p = tool_use.make_problem((123, 456))
    assert tool_use.is_correct(p, tool_use.tool_reply(p))
    assert tool_use.is_correct(p, "123 + 456 = 579.")
    # the result alone is not an answer: the model must state it
    assert not tool_use.is_correct(p, "[calculator(123+456) -> 579] I do not know.")
    assert not tool_use.is_correct(p, tool_use.tool_reply(p, tool=lying_tool(100)))
    assert all(tool_use.split_of(tuple(map(int, ex["messages"][0]["content"].rstrip("?.").split()[-3::2])))
               == "train" for ex in tool_use.tool_instruction_data(20) if "+" in ex["messages"][0]["content"])


# --- masks --------------------------------------------------------------------------------------------------
def test_tool_result_tokens_are_not_targets(tokenizer):
    messages = [{"role": "user", "content": "What is 123 + 456?"},
                {"role": "assistant", "content": "[calculator(123+456) -> 579] The answer is 579."}]
    row = tokenize_tool_conversation(tokenizer, messages)
    ids, mask, tool = row["input_ids"], row["completion_mask"], row["tool_mask"]
    assert tokenizer.decode([i for i, t in zip(ids, tool) if t]) == " 579]"  # hand value
    assert tokenizer.decode([i for i, m in zip(ids, mask) if m]) == "[calculator(123+456) -> The answer is 579.<|end|>"
    assert not any(m and t for m, t in zip(mask, tool))
    ds, dropped = tool_sft_dataset(tokenizer, [messages])
    assert dropped == 0 and ds[0]["completion_mask"] == mask


# --- generation ---------------------------------------------------------------------------------------------
class _EveryFewRunner(ToolRunner):
    """A stand-in tool for a random model (which never writes a real call): a 'call' closes whenever a sampled
    character's code is divisible by 5; the 'result' is a few fixed tokens."""

    def result_ids(self, reply, calls_so_far):
        if not reply or ord(reply[-1]) % 5 or calls_so_far >= self.max_calls:
            return None
        return self.tokenizer.encode(" 42]", add_special_tokens=False)


def _reference(model, tokenizer, prompt_ids, runner, seed, T, temperature, greedy):
    """One row, no cache: the whole sequence through the model at every step."""
    gen = torch.Generator().manual_seed(seed)
    ids, toks, logps, tool = list(prompt_ids), [], [], []
    queue, reply, calls = [], "", 0
    for _ in range(T):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        scores = logits if greedy else _process_scores(logits[None], temperature, 1.0)[0]
        if queue:
            tok, lp, is_tool = queue.pop(0), 0.0, True
        else:
            tok = int(scores.argmax()) if greedy else int(torch.multinomial(scores.softmax(-1), 1, generator=gen))
            lp, is_tool = float(scores.log_softmax(-1)[tok]), False
        ids.append(tok), toks.append(tok), logps.append(lp), tool.append(is_tool)
        if tok == tokenizer.eos_token_id:
            break
        if not is_tool:
            reply += runner.text(tok)
            result = runner.result_ids(reply, calls)
            if result is not None:
                calls, queue = calls + 1, list(result)
                reply += tokenizer.decode(result)
    return toks, logps, tool


@pytest.mark.parametrize("greedy,temperature", [(False, 1.0), (False, 0.7), (True, 1.0)])
def test_tool_sampler_matches_one_row_reference(micro_model, tokenizer, greedy, temperature):
    """Numerical: the batched cached loop with calls at different steps draws each row's tokens as a one-row
    uncached loop does from the same seed (up to a first difference within rounding), log-probs to tolerance."""
    prompts = ["What is 2 + 3?", "Spell mirt backward.", "Write a positive review of the lamp."]
    runner = _EveryFewRunner(tokenizer, max_calls=3)
    ids, mask = _left_pad(encode_prompts(tokenizer, prompts), tokenizer.pad_token_id)
    group, T = 3, 30
    seeds = list(range(100, 100 + len(prompts) * group))
    toks, logps, tool = sample_cached_tools(micro_model, ids, mask, group, T, tokenizer.eos_token_id,
                                            tokenizer.pad_token_id, runner, seeds, temperature, greedy=greedy)
    if not greedy:  # several rows called, at different steps (greedy rows of a random model may never call)
        assert tool.any(dim=1).sum() >= 2
        assert len({int(row.nonzero()[0]) for row in tool if row.any()}) >= 2
    refs = [_reference(micro_model, tokenizer, encode_prompts(tokenizer, [prompts[r // group]])[0], runner,
                       seeds[r], T, temperature, greedy) for r in range(len(seeds))]
    width = max(toks.shape[1], max(len(r[0]) for r in refs))
    ref_toks = torch.full((len(seeds), width), -1)
    ref_logps = torch.zeros(len(seeds), width)
    for r, (t, lp, _) in enumerate(refs):
        ref_toks[r, :len(t)], ref_logps[r, :len(lp)] = torch.tensor(t), torch.tensor(lp)
    ours = torch.full((len(seeds), width), -1)
    ours[:, :toks.shape[1]] = toks
    ours = torch.where(ours == tokenizer.pad_token_id, -1, ours)
    prefix = common_prefix_lengths(ours, ref_toks)
    assert (prefix < width).float().mean() <= 0.25
    on = torch.arange(width)[None] < prefix[:, None]
    our_logps = torch.zeros(len(seeds), width)
    our_logps[:, :logps.shape[1]] = logps
    assert_numerically_equal(our_logps * on, ref_logps * on, what="tool sampler vs one-row reference")
    for r, (_, _, is_tool) in enumerate(refs):  # the tool positions agree on the common prefix
        n = min(int(prefix[r]), len(is_tool))
        assert tool[r, :n].tolist() == is_tool[:n]


def test_generate_with_tools_masks_results(micro_model, tokenizer):
    """The sampler's log-probs cover the model's tokens only and equal the recomputed ones there (numerical);
    tool tokens are attended to but are not completion tokens; the same seed gives the same samples (bitwise)."""
    def run():
        return generate(micro_model, tokenizer, ["What is 2 + 3?", "Add 1 and 4."], max_new_tokens=24, seed=3,
                        num_return_sequences=2, tool=run_tool_call)
    gen = run()
    assert gen.tool_mask is not None and not (gen.tool_mask & gen.completion_mask.bool()).any()
    assert torch.equal(gen.input_ids, run().input_ids)
    with torch.no_grad():
        logits = forward_logits(micro_model, gen.input_ids, gen.attention_mask)
    recomputed = per_token_logprobs(logits, gen.input_ids) * gen.completion_mask
    assert_numerically_equal(gen.logprobs, recomputed, what="sampler vs recomputed log-probs with tools")


def test_runner_runs_the_calculator_and_never_raises(tokenizer):
    runner = ToolRunner(tokenizer, max_calls=1)
    assert tokenizer.decode(runner.result_ids("[calculator(17+25) ->", 0)) == " 42]"
    assert tokenizer.decode(runner.result_ids("[calculator(17+25) ->", 1)) == " error: too many tool calls]"
    assert runner.result_ids("[calculator(17+25)", 0) is None

    def broken(name, args):
        raise RuntimeError("boom")
    assert tokenizer.decode(ToolRunner(tokenizer, broken).result_ids("[x(1) ->", 0)) == \
        " error: the tool raised RuntimeError]"
    lie = ToolRunner(tokenizer, lambda n, a: "<|end|>7").result_ids("[x(1) ->", 0)
    assert tokenizer.eos_token_id not in lie
    with pytest.raises(ValueError, match="max_calls"):
        ToolRunner(tokenizer, max_calls=-1)


# --- Toolformer's filter ------------------------------------------------------------------------------------
def test_toolformer_keep_hand_value_second_implementation_and_monotone():
    plus = torch.tensor([0.5, 1.0, 2.0, 0.1])
    none = torch.tensor([2.0, 1.2, 1.0, 0.3])
    no_result = torch.tensor([1.5, 3.0, 4.0, 0.2])
    # hand: L⁻ = [1.5, 1.2, 1.0, 0.2]; L⁻ − L⁺ = [1.0, 0.2, −1.0, 0.1]
    assert toolformer_keep(plus, none, no_result, 0.15).tolist() == [True, True, False, False]
    rng = random.Random(0)
    for _ in range(50):
        a, b, c = (torch.tensor([rng.uniform(0, 3) for _ in range(8)]) for _ in range(3))
        tau = rng.uniform(-1, 1)
        loop = [min(float(b[i]), float(c[i])) - float(a[i]) >= tau for i in range(8)]
        assert toolformer_keep(a, b, c, tau).tolist() == loop
        # property: a higher threshold keeps a subset
        assert not (toolformer_keep(a, b, c, tau + 0.3) & ~toolformer_keep(a, b, c, tau)).any()
    with pytest.raises(ValueError, match="one shape"):
        toolformer_keep(plus, none, no_result[:2], 0.0)


def test_continuation_loss_is_the_mean_nll_of_the_continuation(micro_model, tokenizer):
    """Numerical: against the log-probs of the whole conversation read off a full forward pass."""
    loss = continuation_loss(micro_model, tokenizer, "What is 2 + 3?", "[calculator(2+3) -> 5]", " It is 5.")
    ids = encode_prompts(tokenizer, ["What is 2 + 3?"])[0]
    ctx = ids + tokenizer.encode("[calculator(2+3) -> 5]", add_special_tokens=False)
    full = ctx + tokenizer.encode(" It is 5.", add_special_tokens=False)
    with torch.no_grad():
        logp = micro_model(input_ids=torch.tensor([full])).logits[0].log_softmax(-1)
    manual = -sum(float(logp[t - 1, full[t]]) for t in range(len(ctx), len(full))) / (len(full) - len(ctx))
    assert_numerically_equal(torch.tensor(loss), torch.tensor(manual), what="continuation loss")
    p = tool_use.make_problem((123, 456))
    assert len(toolformer_losses(micro_model, tokenizer, p, tool_use.tool_reply(p))) == 3
    with pytest.raises(ValueError, match="must start with a call"):
        toolformer_losses(micro_model, tokenizer, p, "The answer is 579.")


# --- the chat template's Hugging Face form ----------------------------------------------------------------------
# The template as it was before it learned tools, frozen here: without tools it must render exactly this.
TEMPLATE_BEFORE_TOOLS = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")
USER = {"role": "user", "content": "What is 123 + 456?"}


def _random_tool_reply(rng):
    words = ["Let me see.", " ok", "", " so", " (a) [b]", " ->"]
    messages = []
    for _ in range(rng.randint(0, 3)):
        expr = rng.choice(["1+2", "(3*4)-5", "", "9**9"])
        result = run_tool_call("calculator", expr).replace("]", ")")
        messages += [{"role": "assistant", "content": rng.choice(words), "tool_calls": [
            {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expr}}}]},
            {"role": "tool", "name": "calculator", "content": result}]
    return messages + [{"role": "assistant", "content": rng.choice([w for w in words if w])}]


def test_template_renders_tool_messages_by_hand(tokenizer):
    messages = [USER, CALL, {"role": "tool", "name": "calculator", "content": "579"},
                {"role": "assistant", "content": " The answer is 579."}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|bos|><|user|>What is 123 + 456?<|end|><|assistant|>[calculator(123+456) -> 579] The answer is 579.<|end|>")
    # ending on the tool's result, the model is still in its turn: no new <|assistant|> header
    assert tokenizer.apply_chat_template(messages[:3], add_generation_prompt=True, tokenize=False) == (
        "<|bos|><|user|>What is 123 + 456?<|end|><|assistant|>[calculator(123+456) -> 579]")


def test_template_agrees_with_render_reply_and_inline_form(tokenizer):
    """Second implementation: the Jinja template and `tool_use.render_reply` write the same reply text, for random
    conversations (several calls, empty contents, `->` and brackets in the text), and the tokens that
    `tokenize_tool_conversation` builds from either form are the template's."""
    rng = random.Random(1)
    for _ in range(200):
        reply = _random_tool_reply(rng)
        messages = [USER, *reply]
        inline = tool_use.inline_tool_messages(messages)
        assert inline == [USER, {"role": "assistant", "content": tool_use.render_reply(reply)}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        assert text == "<|bos|><|user|>" + USER["content"] + "<|end|><|assistant|>" + inline[1]["content"] + "<|end|>"
        assert text == tokenizer.apply_chat_template(inline, tokenize=False)
        rows = [tokenize_tool_conversation(tokenizer, m) for m in (messages, inline)]
        assert rows[0] == rows[1]
        assert rows[0]["input_ids"] == tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)


def test_template_without_tools_is_byte_identical_to_the_old_one(tokenizer):
    from rlhfbook_lab.world import instruction_data

    old = copy.deepcopy(tokenizer)
    old.chat_template = TEMPLATE_BEFORE_TOOLS
    conversations = [ex["messages"] for ex in instruction_data(200, seed=3)]
    conversations += [[{"role": "system", "content": "Be brief."}, *c, {"role": "user", "content": "And 1 + 1?"},
                       {"role": "assistant", "content": "2."}] for c in conversations[:50]]
    for messages in conversations:
        for k in range(1, len(messages) + 1):
            for gen in (False, True):
                kwargs = {"tokenize": False, "add_generation_prompt": gen}
                assert (tokenizer.apply_chat_template(messages[:k], **kwargs)
                        == tokenizer.apply_chat_template(messages[:k], tools=None, **kwargs)
                        == old.apply_chat_template(messages[:k], **kwargs))


def test_template_tools_argument_names_each_tool(tokenizer):
    from rlhfbook_lab.world.calculator import calculator

    text = tokenizer.apply_chat_template([USER], tools=[calculator], add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|bos|><|system|>Tools: calculator(expression) Evaluate an integer arithmetic")
    assert text.endswith("<|end|><|user|>What is 123 + 456?<|end|><|assistant|>")
    schema = {"type": "function", "function": {"name": "add", "description": "Add two integers.",
                                               "parameters": {"type": "object", "properties": {"a": {}, "b": {}}}}}
    text = tokenizer.apply_chat_template([USER], tools=[schema], tokenize=False)
    assert text.startswith("<|bos|><|system|>Tools: add(a, b) Add two integers.<|end|><|user|>")


@pytest.mark.parametrize("messages, message", [
    ([USER, {"role": "tool", "content": "3"}], "without a tool call"),
    ([USER, CALL, USER], "without a tool message"),
    ([USER, CALL, {"role": "tool", "content": "5]"}], "may not contain"),
    ([USER, CALL, {"role": "tool", "content": "5"}, USER], "must end with an assistant message"),
    ([USER, {"role": "robot", "content": "hi"}], "unknown role"),
])
def test_template_refuses_malformed_tool_conversations(tokenizer, messages, message):
    from jinja2.exceptions import TemplateError

    with pytest.raises(TemplateError, match=message):
        tokenizer.apply_chat_template(messages, tokenize=False)
