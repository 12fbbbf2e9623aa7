"""The pairwise-judge task (RLHF Book ch. 12, LLM-as-a-judge): read a question and two replies marked A and B, answer
``"A"`` or ``"B"``.

A generative judge is the model itself, taught to write a verdict. Its prompt shows both replies at once, so (unlike
a reward model, which scores each reply alone) the order they are shown in *can* sway it: position bias lives here.
The task's examples come from preference pairs the gold annotator labelled (``data/preferences``): the chosen reply
is shown as A or as B by a fair coin per pair, and the verdict names where it went. Its split is the pairs' split:
the judge trains on ``train.jsonl`` and is measured on ``heldout.jsonl``, whose prompts are the world's held-out
prompts.

    >>> judge_prompt("What is 2 + 3?", "2 + 3 = 5.", "Sure! 2 + 3 = 6.")
    'Which reply is better?\\nQ: What is 2 + 3?\\nA: 2 + 3 = 5.\\nB: Sure! 2 + 3 = 6.'
"""

from __future__ import annotations

import random

__all__ = ["JUDGE_QUESTION", "VERDICTS", "judge_conversations", "judge_prompt", "parse_verdict"]

JUDGE_QUESTION = "Which reply is better?"
"""The first line of every judge prompt."""

VERDICTS = ("A", "B")
"""The only answers a judge may give: reply A is better, or reply B is."""


def _one_line(name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string; got {value!r}")
    return " ".join(value.split())


def judge_prompt(question: str, a: str, b: str) -> str:
    """The judge's user message: :data:`JUDGE_QUESTION`, then ``Q: question``, ``A: a``, ``B: b``, one per line.

    Each part must be a non-empty string (``ValueError`` naming it) and is shown on one line, its runs of white
    space (line breaks included) written as one space. A reply is model output: written on one line, a reply that
    contains ``"\nB: ..."`` cannot pose as the other reply."""
    return f"{JUDGE_QUESTION}\nQ: {_one_line('question', question)}\nA: {_one_line('a', a)}\nB: {_one_line('b', b)}"


def parse_verdict(text) -> str:
    """``"A"`` or ``"B"`` from a judge's reply (surrounding white space ignored); anything else (``"a"``, ``"tie"``,
    ``"A."``, an empty reply) is a ``ValueError``: a verdict is read, never guessed."""
    if not isinstance(text, str) or text.strip() not in VERDICTS:
        raise ValueError(f"verdict must be 'A' or 'B'; got {text!r}")
    return text.strip()


def judge_conversations(rows: list[dict], seed: int = 0) -> list[list[dict]]:
    """The task's chat examples from labelled preference pairs: for each row ``{"prompt", "chosen", "rejected"}``, a
    conversation ``[user: judge_prompt(...), assistant: verdict]`` with the chosen reply shown as A or as B by a fair
    coin (``random.Random(f"judge-{seed}")``, one draw per row, in order), and the verdict naming where it went.
    A row with a missing or empty field is a ``ValueError`` naming the row and the field."""
    if not rows:
        raise ValueError("rows is empty: the judge task needs at least one labelled pair")
    rng = random.Random(f"judge-{seed}")
    out = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"rows[{i}] must be a dict with prompt, chosen and rejected; got {type(r).__name__}")
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(r.get(field), str) or not r[field].strip():
                raise ValueError(f"rows[{i}][{field!r}] must be a non-empty string; got {r.get(field)!r}")
        chosen_first = rng.random() < 0.5
        a, b = (r["chosen"], r["rejected"]) if chosen_first else (r["rejected"], r["chosen"])
        out.append([{"role": "user", "content": judge_prompt(r["prompt"], a, b)},
                    {"role": "assistant", "content": "A" if chosen_first else "B"}])
    return out
