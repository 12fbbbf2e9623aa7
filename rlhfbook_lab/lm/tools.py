"""Tool use on the model side (book chapter 13): tokens and masks of replies with tool calls, and measurement.

A reply with a call is rendered in the plain-text call format of ``world.tool_use`` inside the ordinary assistant
turn, so the shipped chat template and tokenizer render it unchanged. What is new is the mask: the tokens of a
tool's result (`` 579]`` in ``[calculator(123+456) -> 579] The answer is 579.``) are in the context but are not the
model's, so :func:`tokenize_tool_conversation` sets them to 0 in ``completion_mask`` (never an SFT target) and
returns them as ``tool_mask``; generation with tools (``generation.generate(tool=...)``) does the same for the
policy's log-probs and KL.

:func:`tool_accuracy` measures a model on problems of ``world.tool_use`` with the real tool, with none (the model
must continue past its own call alone) or with a tool that lies (:func:`lying_tool`).
"""

from __future__ import annotations

import torch

from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.lm.data import BuiltDataset, ExampleTooLong, tokenize_conversation
from rlhfbook_lab.lm.forward import eval_mode
from rlhfbook_lab.lm.generation import encode_prompts, generate
from rlhfbook_lab.world import tool_use
from rlhfbook_lab.world.calculator import run_tool_call
from rlhfbook_lab.world.tool_use import RESULT_CLOSE

__all__ = ["continuation_loss", "lying_tool", "tokenize_tool_conversation", "tool_accuracy", "tool_sft_dataset",
           "toolformer_losses"]


def tokenize_tool_conversation(tokenizer, messages, max_length: int | None = None) -> dict[str, list[int]]:
    """:func:`data.tokenize_conversation` plus the tool results' tokens taken out of the targets.

    ``messages`` may write calls inline (``[calculator(1+2) -> 3] ...`` in an assistant message) or in the Hugging
    Face form (``tool_calls`` and ``tool`` messages, joined by ``tool_use.inline_tool_messages``): the tokens are
    the same, and the same as ``tokenizer.apply_chat_template(messages)`` renders.

    Returns ``input_ids``, ``completion_mask`` (1 on the model's own reply tokens and ``<|end|>``, 0 on tool
    results) and ``tool_mask`` (1 on tool-result tokens), lists of equal length. ``ValueError`` if a reply's
    pieces do not tokenize to the same tokens as the whole (a tokenizer that merges across a piece boundary)."""
    messages = tool_use.inline_tool_messages(messages)
    row = tokenize_conversation(tokenizer, messages, max_length)
    ids, mask = row["input_ids"], list(row["completion_mask"])
    tool_mask = [0] * len(ids)
    pos = 0
    for m in messages:
        if m["role"] != "assistant":
            continue
        pos = mask.index(1, pos)  # the reply's first token
        for text, is_tool in tool_use.reply_segments(m["content"]):
            piece = tokenizer.encode(text, add_special_tokens=False)
            if ids[pos:pos + len(piece)] != piece:
                raise ValueError(f"the reply piece {text!r} does not tokenize alone as within the reply")
            if is_tool:
                mask[pos:pos + len(piece)] = [0] * len(piece)
                tool_mask[pos:pos + len(piece)] = [1] * len(piece)
            pos += len(piece)
        pos += 1  # its <|end|>
    return {"input_ids": ids, "completion_mask": mask, "tool_mask": tool_mask}


def tool_sft_dataset(tokenizer, conversations, max_length: int = 160) -> BuiltDataset:
    """Conversations (lists of messages or ``{"messages": ...}``) tokenized with tool results masked, ready for
    ``trainers.sft.sft``; those over ``max_length`` tokens are dropped and counted."""
    rows: dict[str, list] = {"input_ids": [], "completion_mask": []}
    dropped = 0
    for example in conversations:
        messages = example["messages"] if isinstance(example, dict) else example
        try:
            row = tokenize_tool_conversation(tokenizer, messages, max_length)
        except ExampleTooLong:
            dropped += 1
            continue
        rows["input_ids"].append(row["input_ids"])
        rows["completion_mask"].append(row["completion_mask"])
    if not rows["input_ids"]:
        raise ValueError("no conversation to train on")
    from datasets import Dataset  # deferred: 0.6 s at import, as in data.build_sft_dataset

    return BuiltDataset(Dataset.from_dict(rows), dropped)


def lying_tool(offset: int = 100):
    """A tool that answers every well-formed call with the true value plus ``offset`` (errors unchanged): does
    the model copy what the tool says, or check it?"""
    def tool(name: str, arguments: str) -> str:
        result = run_tool_call(name, arguments)
        return result if result.startswith("error") else str(int(result) + offset)
    return tool


def tool_accuracy(model, tokenizer, problems, tool=run_tool_call, max_new_tokens: int = 48,
                  lie_offset: int | None = None, batch_size: int = 64) -> dict[str, float]:
    """Greedy replies to ``problems`` (``world.tool_use`` problems), scored by ``tool_use.is_correct``.

    Args:
        tool: ``(name, arguments) -> str``, or ``None`` for no tool: the model's call gets no result and it
            must write the answer alone.
        lie_offset: with a lying tool, also count replies whose answer is the lie (true sum + offset).

    Returns ``accuracy``, ``calls`` (share of replies that write a call), ``copied_lie`` (share whose answer is
    the lie; ``nan`` without ``lie_offset``) and ``texts`` count ``n``."""
    if not problems:
        raise ValueError("problems is empty")
    correct = called = lied = 0
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        gen = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens, greedy=True,
                       tool=tool)
        for p, text in zip(chunk, gen.texts):
            correct += tool_use.is_correct(p, text)
            called += tool_use.CALL_CLOSE in text
            if lie_offset is not None:
                lied += tool_use.final_answer(text) == sum(p.key) + lie_offset
    n = len(problems)
    return {"accuracy": correct / n, "calls": called / n,
            "copied_lie": lied / n if lie_offset is not None else float("nan"), "n": n}


@torch.no_grad()
def continuation_loss(model, tokenizer, prompt: str, prefix: str, continuation: str) -> float:
    """Mean NLL (nats per token) of ``continuation`` after the user ``prompt`` and the reply's ``prefix``, under the
    chat template: the L(z) of Toolformer's filter (``equations.toolformer``), with z = ``prefix``."""
    context = encode_prompts(tokenizer, [prompt])[0] + tokenizer.encode(prefix, add_special_tokens=False)
    target = tokenizer.encode(continuation, add_special_tokens=False)
    if not target:
        raise ValueError("continuation is empty")
    ids = torch.tensor([context + target], device=next(model.parameters()).device)
    with eval_mode(model):
        logps = per_token_logprobs(model(input_ids=ids).logits.float(), ids)[0, len(context):]
    return float(-logps.mean())


def toolformer_losses(model, tokenizer, problem, reply: str) -> tuple[float, float, float]:
    """``(L⁺, L(ε), L(e(c, ε)))`` for the first call in ``reply`` (``[name(args) -> result]`` then the rest): the
    loss of the text after the call with the call and result, with no call, and with the call but no result."""
    segments = tool_use.reply_segments(reply)
    if len(segments) < 3 or not segments[1][1]:
        raise ValueError(f"the reply must start with a call, its result and more text; got {reply!r}")
    call, result, rest = segments[0][0], segments[1][0], "".join(t for t, _ in segments[2:])
    return (continuation_loss(model, tokenizer, problem.prompt, call + result, rest),
            continuation_loss(model, tokenizer, problem.prompt, "", rest.lstrip()),
            continuation_loss(model, tokenizer, problem.prompt, call + RESULT_CLOSE, rest))
