"""Judging a chat model on the world's problems with the gold judge: the measurement every chapter reuses.

For each problem we sample (or greedily decode) one reply and record three things per task family:

- ``eos_rate``: the reply ended with ``<|end|>`` within ``max_new_tokens`` (``Generation.finished``): did the
  model learn to stop?
- ``correct_rate``: the family's checker accepts the reply (``world.is_correct``);
- ``gold_score``: the mean true quality (``world.gold_score``; an empty reply gets ``EMPTY_RESPONSE_SCORE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import world
from .generation import generate

__all__ = ["ChatEval", "evaluate_chat"]

METRICS = ("eos_rate", "correct_rate", "gold_score")


@dataclass
class ChatEval:
    """The result of :func:`evaluate_chat`."""

    by_family: dict[str, dict[str, float]]
    """``{family: {"n", "eos_rate", "correct_rate", "gold_score"}}``, families in first-seen order."""
    overall: dict[str, float]
    """The same keys over all problems."""
    rows: list[tuple[str, str, float]]
    """``(prompt, reply, gold score)`` for every problem, in input order."""


def _summary(finished: list[bool], correct: list[bool], scores: list[float]) -> dict[str, float]:
    n = len(scores)
    return {"n": n, "eos_rate": sum(finished) / n, "correct_rate": sum(correct) / n,
            "gold_score": sum(scores) / n}


@torch.no_grad()
def evaluate_chat(model, tokenizer, problems: list[world.Problem], greedy: bool = True,
                  temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 48,
                  batch_size: int = 128, seed: int = 0) -> ChatEval:
    """Reply to each problem's prompt as a user message and judge the replies.

    Args:
        problems: world problems (e.g. ``world.heldout_prompts(n)``).
        greedy: argmax decoding; otherwise sample at ``temperature`` / ``top_p``.
        batch_size: prompts per ``generate`` call (bounds memory).
        seed: seeds torch's RNG once before the first batch, so sampled evaluations are reproducible.
    """
    if not problems:
        raise ValueError("problems is empty")
    torch.manual_seed(seed)
    finished: list[bool] = []
    replies: list[str] = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        gen = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, greedy=greedy)
        finished += gen.finished.tolist()
        replies += gen.texts
    correct = [world.is_correct(p, r) for p, r in zip(problems, replies)]
    scores = [world.gold_score(p, r, allow_empty=True) for p, r in zip(problems, replies)]
    by_family: dict[str, dict[str, float]] = {}
    for fam in dict.fromkeys(p.family for p in problems):
        idx = [i for i, p in enumerate(problems) if p.family == fam]
        by_family[fam] = _summary([finished[i] for i in idx], [correct[i] for i in idx],
                                  [scores[i] for i in idx])
    return ChatEval(by_family=by_family, overall=_summary(finished, correct, scores),
                    rows=[(p.prompt, r, s) for p, r, s in zip(problems, replies, scores)])
