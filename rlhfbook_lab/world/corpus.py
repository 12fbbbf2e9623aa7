"""The world's corpus: pretraining text and chat instruction data, deterministic from a seed.

*Pretraining text* is plain statements in the world's language, one per line — no questions, no chat turns::

    17 + 25 = 42.
    The reverse of mirt is trim.
    The blorp eats moss.
    The lamp is sturdy. I recommend it.

*Instruction data* is chat conversations (``[{"role": "user", ...}, {"role": "assistant", ...}]``) whose replies
come in a mix of styles (a polite opener or not, filler sentences or not), so that the SFT model inherits some
habits the gold judge dislikes and the later chapters have something to fix.

Splits are by prompt key (``tasks.split_of``): a held-out addition pair, word or review key never appears in the
training text or data, in any phrasing. Creature *facts* are knowledge and appear in pretraining for every
creature; questions about held-out creatures never appear in training data.
"""

from __future__ import annotations

import random

from .judge import POLITE_OPENERS, render_response
from .tasks import (
    ATTRIBUTES,
    CREATURE_FACTS,
    CREATURE_NAMES,
    CREATURES,
    FAMILIES,
    Problem,
    make_problem,
    sample_key,
    sample_problem,
)

PRETRAIN_MIX = {"addition": 0.40, "reverse": 0.30, "creatures": 0.15, "review": 0.15}
"""Share of each family in the pretraining text. Addition gets the most: it is learned late (see DESIGN.md)."""

_REVIEW_WORDS = {
    "positive": (("great", "lovely", "excellent", "wonderful", "sturdy", "handy"), ("I love it.", "I recommend it.")),
    "negative": (("awful", "flimsy", "terrible", "useless", "broken", "noisy"), ("I hate it.", "I regret it.")),
}


def statement(family: str, key, rng: random.Random | None = None) -> str:
    """The plain statement of a key's fact, e.g. ``17 + 25 = 42.`` (reviews draw their wording from ``rng``)."""
    if family == "addition":
        a, b = key
        return f"{a} + {b} = {a + b}."
    if family == "reverse":
        return f"The reverse of {key} is {key[::-1]}."
    if family == "creatures":
        c, attr = key
        return CREATURE_FACTS[attr].format(c=c, v=CREATURES[c][attr])
    if family == "review":
        s, p = key
        adjs, closers = _REVIEW_WORDS[s]
        rng = rng or random.Random(0)
        return f"The {p} is {rng.choice(adjs)}. {rng.choice(closers)}"
    raise ValueError(f"unknown task family {family!r}; expected one of {FAMILIES}")


def _check_split(split: str) -> None:
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")


def pretraining_corpus(n: int, seed: int = 0, split: str = "train") -> list[str]:
    """``n`` pretraining statements drawn by :data:`PRETRAIN_MIX`.

    ``split="heldout"`` draws only held-out keys (addition, reverse, review) — the held-out corpus on which the
    base model's loss is measured. Creature facts are knowledge and are all in the training text.
    """
    _check_split(split)
    rng = random.Random(f"pretrain-{split}-{seed}")
    families = list(PRETRAIN_MIX) if split == "train" else ["addition", "reverse", "review"]
    weights = [PRETRAIN_MIX[f] for f in families]
    out = []
    for _ in range(n):
        family = rng.choices(families, weights)[0]
        if family == "creatures":
            key = (rng.choice(CREATURE_NAMES), rng.choice(tuple(ATTRIBUTES)))
        else:
            key = sample_key(family, rng, split)
        out.append(statement(family, key, rng))
    return out


def statement_prefixes(n: int, seed: int = 0) -> list[tuple[Problem, str]]:
    """Held-out statement prefixes for judging a base model: ``(problem, prefix)`` pairs such as
    ``"17 + 25 ="`` (a held-out pair) or ``"The blorp eats"`` (a fact it read in pretraining).

    The model's greedy continuation up to the end of the line, appended to the prefix, is judged by the world's
    checker (``tasks.is_correct``). Families: addition and reverse (held-out keys: skill), creatures (knowledge).
    """
    rng = random.Random(f"prefix-{seed}")
    out = []
    for i in range(n):
        family = ("addition", "reverse", "creatures")[i % 3]
        if family == "creatures":
            key = (rng.choice(CREATURE_NAMES), rng.choice(tuple(ATTRIBUTES)))
        else:
            key = sample_key(family, rng, "heldout")
        full = statement(family, key)
        if family == "addition":
            cut = full.index("=") + 1
        elif family == "reverse":
            cut = full.rindex(" is") + 3
        else:
            cut = full.rindex(" ")
        out.append((make_problem(family, key), full[:cut]))
    return out


STYLE_MIX = {"opener": 0.3, "fillers": (0.6, 0.3, 0.1)}
"""Reply styles in the instruction data: P(a polite opener) and P(0, 1, 2 filler sentences)."""


def instruction_data(n: int, seed: int = 0, split: str = "train", families: tuple[str, ...] = FAMILIES,
                     style_mix: dict | None = None) -> list[dict]:
    """``n`` chat examples ``{"messages": [...], "family": ..., "prompt": ..., "reference": ...}``.

    Families are drawn uniformly from ``families``; replies are the reference answer in a style drawn from
    ``style_mix`` (default :data:`STYLE_MIX`; ``{"opener": 0, "fillers": (1, 0, 0)}`` gives plain answers).
    """
    _check_split(split)
    if not families:
        raise ValueError("families is empty; expected at least one task family")
    for f in families:
        if f not in FAMILIES:
            raise ValueError(f"unknown task family {f!r}; expected one of {FAMILIES}")
    mix = STYLE_MIX if style_mix is None else style_mix
    if set(mix) != {"opener", "fillers"}:
        raise ValueError(f"style_mix must have keys 'opener' and 'fillers'; got {sorted(mix)}")
    rng = random.Random(f"instruct-{split}-{seed}")
    out = []
    for _ in range(n):
        problem = sample_problem(rng.choice(families), rng, split)
        opener = rng.choice(POLITE_OPENERS) if rng.random() < mix["opener"] else None
        fillers = rng.choices(range(len(mix["fillers"])), mix["fillers"])[0]
        reply = render_response(problem, opener=opener, fillers=fillers)
        out.append({
            "messages": [{"role": "user", "content": problem.prompt}, {"role": "assistant", "content": reply}],
            "family": problem.family,
            "prompt": problem.prompt,
            "reference": problem.reference,
        })
    return out


def heldout_prompts(n: int, seed: int = 0, families: tuple[str, ...] = FAMILIES) -> list[Problem]:
    """``n`` held-out problems, families in turn: the evaluation set no training data ever contains."""
    if not families:
        raise ValueError("families is empty; expected at least one task family")
    rng = random.Random(f"heldout-prompts-{seed}")
    return [sample_problem(families[i % len(families)], rng, "heldout") for i in range(n)]
