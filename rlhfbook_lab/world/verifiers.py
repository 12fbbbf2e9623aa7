"""Verifiers: rule-based rewards from the world's checkers (RLHF Book ch. 7, RL with verifiable rewards).

DeepSeek-R1-Zero was trained by RL on two rule-based rewards and no reward model: an *accuracy* reward (is the
final answer right?) and a *format* reward (is the answer where the format says it goes?). The world's task
families have exact checkers (``tasks.is_correct``), so both exist here without any model:

- :func:`extract_answer` — the normalised final answer of a reply (``int`` for addition, the answer word for
  reverse, the attribute's value for creatures, the review's lean for review), or ``None`` when the reply gives
  none. Majority voting counts these. ``extract_answer(p, r) == reference_answer(p)`` exactly when
  ``is_correct(p, r)``;
- :func:`correctness_reward` — 1.0 if the family's checker accepts the reply, else 0.0;
- :func:`format_reward` — 1.0 if the reply *ends* with the family's answer sentence (``"17 + 25 = 42."``,
  ``"The reverse of mirt is trim."``, ...) and so ends cleanly, else 0.0: the answer where the family expects it;
- :func:`set_answer` — the same reply with its answer made right or wrong and nothing else changed: the
  *counterfactual* of a reply, material for minimal pairs that teach a reward model to check an answer;
- :func:`verifier_rewards` — a batch version for the RL loop: ``(prompts, replies) -> list[float]``.

Pure Python, no model. Bad input (a prompt the world cannot read, an unknown family, a non-string reply, an
empty reply unless ``allow_empty``) raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

import random
import re

from rlhfbook_lab.checks import check_number

from .tasks import ATTRIBUTES, CREATURES, FAMILIES, NEGATIVE_WORDS, POSITIVE_WORDS, Problem, is_correct, parse_prompt

__all__ = ["FORMAT_PATTERNS", "correctness_reward", "extract_answer", "format_reward", "reference_answer",
           "set_answer", "verifier_rewards"]

FORMAT_PATTERNS: dict[str, re.Pattern] = {
    "addition": re.compile(r"\d+ \+ \d+ = -?\d+\.\Z"),
    "reverse": re.compile(r"The reverse of [a-z]+ is [a-z]+\.\Z"),
    "creatures": re.compile(r"The [a-z]+ (is|lives in the|eats) [a-z]+\.\Z"),
    "review": re.compile(r"The [a-z]+ is [a-z]+\. I (love|hate) it\.\Z"),
}
"""The answer sentence each family's reply should end with (the reference answers' shape)."""

_WORD = re.compile(r"[a-z]+")
_INT = re.compile(r"-?\d+")


def _problem(prompt) -> Problem:
    """A :class:`Problem` from a problem or a prompt the world wrote; ``ValueError`` otherwise."""
    if isinstance(prompt, Problem):
        if prompt.family not in FAMILIES:
            raise ValueError(f"unknown task family {prompt.family!r}; expected one of {FAMILIES}")
        return prompt
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string or a world.Problem; got {type(prompt).__name__}")
    return parse_prompt(prompt)


def _reply(reply, allow_empty: bool) -> str | None:
    """The reply's text, or ``None`` for an allowed empty reply."""
    if not isinstance(reply, str):
        raise ValueError(f"reply must be a string; got {type(reply).__name__}")
    if not reply.strip():
        if allow_empty:
            return None
        raise ValueError("reply is empty; a verifier grades only non-empty replies (pass allow_empty=True to "
                         "score an empty one 0)")
    return reply


def reference_answer(prompt: str | Problem):
    """The normalised right answer of a problem, comparable with :func:`extract_answer`'s."""
    p = _problem(prompt)
    if p.family == "addition":
        return sum(p.key)
    if p.family == "reverse":
        return p.key[::-1]
    if p.family == "creatures":
        c, attr = p.key
        return CREATURES[c][attr]
    return p.key[0]  # review: the requested sentiment


def extract_answer(prompt: str | Problem, reply: str, allow_empty: bool = False):
    """The normalised final answer of ``reply``, or ``None`` if it gives none (abstains, for majority voting).

    - addition: the *last* integer (``int``);
    - reverse: the word after the last "is", or the last word if there is none;
    - creatures: the attribute's value, if the reply names exactly one value of that attribute;
    - review: ``"positive"`` or ``"negative"`` — the way the sentiment words lean — if the reply names the
      product and leans at all.

    Same rules as ``tasks.is_correct``, so ``extract_answer(p, r) == reference_answer(p)`` iff ``is_correct(p, r)``.
    """
    p = _problem(prompt)
    text = _reply(reply, allow_empty)
    if text is None:
        return None
    text = text.lower()
    if p.family == "addition":
        ints = _INT.findall(text)
        return int(ints[-1]) if ints else None
    words = _WORD.findall(text)
    if p.family == "reverse":
        head = words[:-1]
        if "is" in head:
            return words[len(head) - head[::-1].index("is")]
        return words[-1] if words else None
    if p.family == "creatures":
        named = {v for v in ATTRIBUTES[p.key[1]] if v in words}
        return named.pop() if len(named) == 1 else None
    lean = sum(w in POSITIVE_WORDS for w in words) - sum(w in NEGATIVE_WORDS for w in words)
    if p.key[1] not in words or lean == 0:
        return None
    return "positive" if lean > 0 else "negative"


def _with_case(new: str, old: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def set_answer(prompt: str | Problem, reply: str, right: bool, rng: random.Random) -> str | None:
    """``reply`` with its answer made right (``right=True``) or wrong, every other character kept: the reply's
    *counterfactual*. ``None`` when the reply gives no answer this can edit (the spans :func:`extract_answer`
    reads).

    - addition: the last integer becomes the sum, or the sum off by 1–9 (never negative);
    - reverse: the answer word becomes the reversal, or the reversal with one letter changed;
    - creatures: every value of the asked attribute the reply names becomes the right one, or one wrong value;
    - review: each sentiment word of the wrong (right) polarity becomes its opposite (``great`` ↔ ``awful``, in
      the order of the word lists), so the reply leans the requested way, or the other way.

    The result is checked: ``is_correct(problem, result) == right``, else ``None``. Deterministic given ``rng``.
    """
    p = _problem(prompt)
    if not isinstance(reply, str):
        raise ValueError(f"reply must be a string; got {type(reply).__name__}")
    lower = reply.lower()
    spans: list[tuple[int, int]] = []
    new: list[str] = []
    if p.family == "addition":
        m = list(_INT.finditer(lower))
        if not m:
            return None
        total = sum(p.key)
        value = total if right else total + rng.choice([d for d in range(-9, 10) if d and total + d >= 0])
        spans, new = [m[-1].span()], [str(value)]
    else:
        words = list(_WORD.finditer(lower))
        if not words:
            return None
        if p.family == "reverse":
            texts = [w.group() for w in words]
            head = texts[:-1]
            at = len(head) - head[::-1].index("is") if "is" in head else len(texts) - 1
            answer = list(p.key[::-1])
            if not right:
                i = rng.randrange(len(answer))
                answer[i] = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != answer[i]])
            spans, new = [words[at].span()], ["".join(answer)]
        elif p.family == "creatures":
            c, attr = p.key
            named = [w for w in words if w.group() in ATTRIBUTES[attr]]
            if not named:
                return None
            truth = CREATURES[c][attr]
            value = truth if right else rng.choice([v for v in ATTRIBUTES[attr] if v != truth])
            spans, new = [w.span() for w in named], [value] * len(named)
        else:  # review
            want_positive = (p.key[0] == "positive") == right
            src, dst = (NEGATIVE_WORDS, POSITIVE_WORDS) if want_positive else (POSITIVE_WORDS, NEGATIVE_WORDS)
            hits = [w for w in words if w.group() in src]
            spans, new = [w.span() for w in hits], [dst[src.index(w.group())] for w in hits]
    out, last = [], 0
    for (a, b), text in zip(spans, new):
        out += [reply[last:a], _with_case(text, reply[a:b])]
        last = b
    result = "".join(out) + reply[last:]
    return result if is_correct(p, result) == right else None


def correctness_reward(prompt: str | Problem, reply: str, allow_empty: bool = False) -> float:
    """R1-Zero's accuracy reward: 1.0 if the family's checker accepts ``reply``, else 0.0 (an allowed empty
    reply: 0.0)."""
    p = _problem(prompt)
    text = _reply(reply, allow_empty)
    return 0.0 if text is None else float(is_correct(p, text))


def format_reward(prompt: str | Problem, reply: str, allow_empty: bool = False) -> float:
    """R1-Zero's format reward: 1.0 if ``reply`` ends with its family's answer sentence
    (:data:`FORMAT_PATTERNS`; a polite opener before it is allowed), else 0.0. It says nothing about
    whether the answer is right."""
    p = _problem(prompt)
    text = _reply(reply, allow_empty)
    return 0.0 if text is None else float(FORMAT_PATTERNS[p.family].search(text.strip()) is not None)


def verifier_rewards(prompts: list, replies: list, format_weight: float = 0.0,
                     allow_empty: bool = True) -> list[float]:
    """The RL loop's verifier reward, one per reply: correctness + ``format_weight`` × format.

    Args:
        prompts: one prompt (or :class:`Problem`) per reply.
        replies: the replies (strings). An empty one scores 0 (``allow_empty``, the RL default: a policy may
            emit one).
        format_weight: weight of :func:`format_reward` (0: the accuracy reward alone, as the lessons use).
    """
    if isinstance(prompts, str) or isinstance(replies, str):
        raise ValueError("prompts and replies must be lists (one prompt per reply), not a single string")
    if len(prompts) != len(replies):
        raise ValueError(f"prompts and replies must have the same length; got {len(prompts)} and {len(replies)}")
    check_number("format_weight", format_weight)
    out = []
    for prompt, reply in zip(prompts, replies):
        r = correctness_reward(prompt, reply, allow_empty)
        if format_weight:
            r += format_weight * format_reward(prompt, reply, allow_empty)
        out.append(r)
    return out
