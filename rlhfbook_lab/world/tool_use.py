"""Tool calls in the chat text, and a task beyond the tiny model's head (book chapter 13, Tool Use).

**The call format.** A call and its result live *inside* the assistant's reply, as plain text::

    [calculator(123+456) -> 579] The answer is 579.
    ^^^^^^^^^^^^^^^^^^^^^^^^^          the model writes the call, up to and including ``) ->`` (CALL_CLOSE)
                            ^^^^^      the tool's result and ``]`` (RESULT_CLOSE): appended by generation, not
                                       written by the model (never a loss target, never in the policy's log-probs)

Plain text rather than new special tokens keeps the shipped tokenizer and checkpoints unchanged: the
character-level tokenizer can already write every character of it. :func:`render_reply` and :func:`parse_reply`
convert between this text and the Hugging Face message convention (an assistant message with ``tool_calls``, a
``tool`` message with the result, then the assistant again), and round-trip exactly. :func:`reply_segments`
splits a reply into the model's text and the tools' text, which is what the masks are built from.

**The family ``addition3``.** Three-digit sums (100..999 + 100..999): the shipped ``sft-tiny`` learned sums of
two-digit numbers only, and a model of a few million parameters trained briefly cannot carry through three
digits in its head, but it can copy the operands into a call and copy the result back.
Kept out of ``tasks.FAMILIES`` so the shipped corpus and checkpoints do not change. Held-out split by a stable
hash of the unordered pair (as ``tasks.split_of`` does for ``addition``).
"""

from __future__ import annotations

import random
import re
import zlib

from .calculator import TOOL_NAME, run_tool_call
from .tasks import Problem

CALL_CLOSE = ") ->"
"""What ends a call: generation pauses the row as soon as its reply ends with this after an open call."""
RESULT_CLOSE = "]"
"""What ends a tool's result (appended with it)."""

FAMILY = "addition3"
ADD3_MIN, ADD3_MAX = 100, 999
ADD3_TEMPLATES = ("What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} + {b}.")
HELDOUT_FRACTION = 0.2

_CALL = re.compile(r"\[([a-z_]+)\(")  # where a call opens: "[" name "("
_INT = re.compile(r"-?\d+")


# --- the format ---------------------------------------------------------------------------------------------
def call_text(name: str, arguments: str) -> str:
    """The text the model writes to call ``name`` with ``arguments``: ``[name(arguments) ->``."""
    return f"[{name}({arguments}{CALL_CLOSE}"


def result_text(result: str) -> str:
    """The text appended after a call: a space, the result with any ``]`` shown as ``)`` (so the result cannot
    close early and the reply parses back), then ``]``."""
    return " " + result.replace(RESULT_CLOSE, ")") + RESULT_CLOSE


def pending_call(reply: str) -> tuple[str, str] | None:
    """``(name, arguments)`` if ``reply`` (the text generated so far) ends with a call that has just closed
    (``... [name(arguments) ->``) and has no result yet; else ``None``. The call is the last ``[name(`` before
    the end; ``arguments`` are the characters between it and ``) ->``, whatever they are (the tool judges them)."""
    if not reply.endswith(CALL_CLOSE):
        return None
    opens = list(_CALL.finditer(reply, 0, len(reply) - len(CALL_CLOSE)))
    if not opens:
        return None
    m = opens[-1]
    arguments = reply[m.end(): len(reply) - len(CALL_CLOSE)]
    if RESULT_CLOSE in arguments or CALL_CLOSE in arguments:  # that opening was closed already
        return None
    return m.group(1), arguments


def reply_segments(reply: str) -> list[tuple[str, bool]]:
    """Split a rendered reply into ``(text, is_tool)`` pieces in order: the model's text (``False``) and each
    tool result including its leading space and ``]`` (``True``). Concatenated, they give ``reply`` back."""
    out: list[tuple[str, bool]] = []
    pos = start = 0
    while True:
        i = reply.find(CALL_CLOSE, pos)
        if i < 0 or pending_call(reply[: i + len(CALL_CLOSE)]) is None:
            if i < 0:
                break
            pos = i + len(CALL_CLOSE)
            continue
        j = i + len(CALL_CLOSE)
        k = reply.find(RESULT_CLOSE, j)
        end = len(reply) if k < 0 else k + len(RESULT_CLOSE)
        out.append((reply[start:j], False))
        out.append((reply[j:end], True))
        pos = start = end
    if start < len(reply):
        out.append((reply[start:], False))
    return [(t, tool) for t, tool in out if t]


def render_reply(messages: list[dict]) -> str:
    """One assistant reply's text from Hugging Face style messages: ``assistant`` messages (``content`` and
    optional ``tool_calls`` = ``[{"type": "function", "function": {"name": ..., "arguments": {"expression":
    ...}}}]``, at most one call per message) each followed, when it calls, by a ``tool`` message with the result.

    ``ValueError`` for anything else: another role, a call without its result, a result without a call, a
    result that contains ``]``, several calls in one message."""
    out, waiting = [], False
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "assistant":
            if waiting:
                raise ValueError(f"message {i}: a tool call has no tool result before the next assistant message")
            out.append(m.get("content") or "")
            calls = m.get("tool_calls") or []
            if len(calls) > 1:
                raise ValueError(f"message {i}: at most one tool call per assistant message; got {len(calls)}")
            if calls:
                fn = calls[0]["function"]
                args = fn["arguments"]
                expr = args["expression"] if isinstance(args, dict) else str(args)
                out.append(call_text(fn["name"], expr))
                waiting = True
        elif role == "tool":
            if not waiting:
                raise ValueError(f"message {i}: a tool result without a tool call before it")
            content = m.get("content", "")
            if RESULT_CLOSE in content:
                raise ValueError(f"message {i}: a tool result may not contain {RESULT_CLOSE!r}")
            out.append(result_text(content))
            waiting = False
        else:
            raise ValueError(f"message {i}: expected role 'assistant' or 'tool'; got {role!r}")
    if waiting:
        raise ValueError("the last tool call has no tool result")
    return "".join(out)


def parse_reply(reply: str) -> list[dict]:
    """The inverse of :func:`render_reply`: Hugging Face style messages from a reply's text.
    ``parse_reply(render_reply(m)) == m`` for messages in the form :func:`render_reply` writes (assistant
    messages carry ``tool_calls`` only when they call; a final assistant message is present when text follows
    the last result)."""
    messages: list[dict] = []
    text = ""
    for piece, is_tool in reply_segments(reply):
        if not is_tool:
            text += piece
            continue
        name, arguments = pending_call(text)
        content = text[: len(text) - len(call_text(name, arguments))]
        messages.append({"role": "assistant", "content": content, "tool_calls": [
            {"type": "function", "function": {"name": name, "arguments": {"expression": arguments}}}]})
        body = piece[1:-1] if piece.endswith(RESULT_CLOSE) else piece[1:]
        messages.append({"role": "tool", "name": name, "content": body})
        text = ""
    if text or not messages:
        messages.append({"role": "assistant", "content": text})
    return messages


def inline_tool_messages(messages: list[dict]) -> list[dict]:
    """A conversation in Hugging Face form (``assistant`` messages with ``tool_calls``, ``tool`` messages) with
    each reply's run of assistant and tool messages joined into one ``assistant`` message whose content is the
    reply's text (:func:`render_reply`); other messages are passed through. A conversation already inline is
    returned equal. The shipped chat template renders both forms to the same text (``lm.tokenizer.CHAT_TEMPLATE``).

    ``ValueError`` (from :func:`render_reply`) for a call without its result or a result without a call."""
    out: list[dict] = []
    run: list[dict] = []

    def flush():
        if run:
            out.append({"role": "assistant", "content": render_reply(run)})
            run.clear()

    for m in messages:
        role = m.get("role") if isinstance(m, dict) else None
        if role == "assistant" and run and run[-1].get("role") == "assistant" and not run[-1].get("tool_calls"):
            flush()  # the previous reply ended: this assistant message starts the next one
        if role in ("assistant", "tool"):
            run.append(m)
        else:
            flush()
            out.append(m)
    flush()
    return out


# --- the family ---------------------------------------------------------------------------------------------
def split_of(key: tuple[int, int]) -> str:
    """``"train"`` or ``"heldout"`` for a pair; a stable hash of the unordered pair (a + b and b + a share it)."""
    a, b = sorted(key)
    return "heldout" if zlib.crc32(f"{FAMILY}:{a},{b}".encode()) % 1000 < HELDOUT_FRACTION * 1000 else "train"


def make_problem(key: tuple[int, int], template: int = 0) -> Problem:
    """The ``addition3`` problem for ``(a, b)``; its reference is the answer sentence without a call."""
    a, b = key
    return Problem(FAMILY, key, ADD3_TEMPLATES[template % len(ADD3_TEMPLATES)].format(a=a, b=b),
                   f"The answer is {a + b}.")


def sample_problems(n: int, split: str = "train", seed: int = 0) -> list[Problem]:
    """``n`` random ``addition3`` problems of ``split`` with random phrasings, deterministic in ``seed``."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")
    rng = random.Random(f"{FAMILY}:{split}:{seed}")
    out = []
    while len(out) < n:
        key = (rng.randint(ADD3_MIN, ADD3_MAX), rng.randint(ADD3_MIN, ADD3_MAX))
        if split_of(key) == split:
            out.append(make_problem(key, rng.randrange(len(ADD3_TEMPLATES))))
    return out


def final_answer(reply: str) -> int | None:
    """The reply's answer: the last integer in the model's own text after the last tool result (``None`` if
    there is none). Numbers inside calls and results do not count: the model must state the answer."""
    pieces = reply_segments(reply)
    tail = pieces[-1][0] if pieces and not pieces[-1][1] else ""
    ints = _INT.findall(tail)
    return int(ints[-1]) if ints else None


def is_correct(problem: Problem, reply: str) -> bool:
    """The checker: the reply's :func:`final_answer` is ``a + b``."""
    return final_answer(reply) == sum(problem.key)


def tool_reply(problem: Problem, tool=run_tool_call) -> str:
    """The gold reply that calls the calculator: ``[calculator(a+b) -> s] The answer is s.`` (``tool`` gives s)."""
    a, b = problem.key
    expression = f"{a}+{b}"
    result = tool(TOOL_NAME, expression)
    return render_reply([
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": TOOL_NAME, "arguments": {"expression": expression}}}]},
        {"role": "tool", "name": TOOL_NAME, "content": result},
        {"role": "assistant", "content": f" The answer is {result}."},
    ])


def tool_instruction_data(n: int, seed: int = 0, calls: bool = True) -> list[dict]:
    """``n`` training conversations (``{"messages": [user, assistant]}``) of ``addition3``'s train split whose
    replies call the calculator (``calls=False``: the same problems answered alone, ``The answer is s.``)."""
    return [{"messages": [{"role": "user", "content": p.prompt},
                          {"role": "assistant", "content": tool_reply(p) if calls else p.reference}]}
            for p in sample_problems(n, "train", seed)]


# --- the reward of RL with tools ----------------------------------------------------------------------------
def count_calls(reply: str) -> int:
    """How many tool results the reply holds: the calls the tool answered (a call cut off before its result,
    at the token budget, is not counted)."""
    return sum(is_tool for _, is_tool in reply_segments(reply))


def tool_reward(problem: Problem, reply: str, call_cost: float = 0.0) -> float:
    """The verifier's reward for RL with tools, with a price per call:

    .. math::  r = \\mathbb 1[\\text{final answer} = a + b] - c \\cdot n_{calls}

    ``call_cost`` c >= 0 (``ValueError`` otherwise); with c = 0 it is the plain verifier (1 right, 0 wrong). A
    cost below 1 keeps a right answer through the tool worth more than a wrong one without it, while a right
    answer *without* a call is worth the most: where the model can answer alone, calling is a loss."""
    if not call_cost >= 0:  # also refuses NaN
        raise ValueError(f"call_cost must be >= 0; got {call_cost!r}")
    return float(is_correct(problem, reply)) - call_cost * count_calls(reply)
