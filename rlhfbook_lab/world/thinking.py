"""Thinking before answering, in miniature: three-operand sums whose reply may write the intermediate step
(book chapter 7, Reasoning).

**The family ``sum3``.** ``What is 17 + 25 + 38?`` has two right replies of different shape:

==========  ==============================  =====================================================
form        reply                           what the model must do
==========  ==============================  =====================================================
``step``    ``17 + 25 = 42. 42 + 38 = 80.``   two sums of two numbers, the second reading the first
``direct``  ``17 + 25 + 38 = 80.``            the whole sum at once, "in its head"
==========  ==============================  =====================================================

Operands are chosen so that each written step is a sum of ``tasks``' own ``addition`` family (operands 0..49,
which ``sft-tiny`` learned): ``a + b <= 49`` and ``c <= 49``. Writing the step turns one hard sum into two easy
ones; the direct form asks for a three-operand sum in one go. Both forms start with ``a + b``; the next character
(``=`` or ``+``) decides the form, so a reply can be *forced* into either by a one-character prefix
(:func:`forced_prefix`).

The checker reads only the final answer (the reply's last integer, as ``addition``'s does): the RL reward of
R1-Zero, which says nothing about *how* the answer was reached. The gold judge (``judge.gold_score``) accepts a
:class:`~.tasks.Problem` of this family: the reference is the step form, so neither right form counts extra words
and both score 1.0 — except a step reply whose numbers repeat a word 3-gram (``0 + 0 = 0. 0 + 23 = 23.``), which
the judge's repetition feature docks by 0.1.

Kept out of ``tasks.FAMILIES`` (like ``tool_use``'s ``addition3``), so the shipped corpus, held-out sets and
checkpoints do not change. Held-out split by a stable hash of the sorted triple.
"""

from __future__ import annotations

import random
import re
import zlib

from .tasks import ADD_MAX, Problem

__all__ = ["FAMILY", "FORMS", "SUM3_TEMPLATES", "direct_reply", "final_answer", "forced_prefix", "instruction_data",
           "is_correct", "make_problem", "parse_prompt", "reply_form", "sample_problems", "split_of", "step_ends",
           "step_is_right", "step_labels", "step_reply", "verifier_reward"]

FAMILY = "sum3"
FORMS = ("step", "direct")
"""The two reply forms: the intermediate sum written out, or the answer alone."""
SUM3_TEMPLATES = ("What is {a} + {b} + {c}?", "Add {a}, {b} and {c}.", "Compute {a} + {b} + {c}.")
HELDOUT_FRACTION = 0.2

_INT = re.compile(r"-?\d+")
_STEP = re.compile(r"(\d+) \+ (\d+) = (-?\d+)\. (-?\d+) \+ (\d+) = (-?\d+)\.\Z")
_STEP_END = re.compile(r"\.(?=\s|\Z)")
_DIRECT = re.compile(r"(\d+) \+ (\d+) \+ (\d+) = (-?\d+)\.\Z")
_PROMPTS = [re.compile(re.escape(t).replace(r"\{a\}", r"(\d+)").replace(r"\{b\}", r"(\d+)")
                       .replace(r"\{c\}", r"(\d+)") + r"\Z") for t in SUM3_TEMPLATES]


def _check_key(key) -> tuple[int, int, int]:
    if (not isinstance(key, tuple) or len(key) != 3
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in key)):
        raise ValueError(f"key must be a tuple of three ints (a, b, c); got {key!r}")
    a, b, c = key
    if min(key) < 0 or a + b > ADD_MAX or c > ADD_MAX:
        raise ValueError(f"key must have a, b, c >= 0, a + b <= {ADD_MAX} and c <= {ADD_MAX} (each step a two-digit "
                         f"sum of the addition family); got {key!r}")
    return key


def split_of(key: tuple[int, int, int]) -> str:
    """``"train"`` or ``"heldout"`` for a triple: a stable hash of the *sorted* triple (reorderings share it)."""
    a, b, c = sorted(_check_key(key))
    return "heldout" if zlib.crc32(f"{FAMILY}:{a},{b},{c}".encode()) % 1000 < HELDOUT_FRACTION * 1000 else "train"


def step_reply(problem: Problem) -> str:
    """The reply that writes the step: ``a + b = s. s + c = t.`` (the family's reference)."""
    a, b, c = problem.key
    return f"{a} + {b} = {a + b}. {a + b} + {c} = {a + b + c}."


def direct_reply(problem: Problem) -> str:
    """The reply that gives the answer alone: ``a + b + c = t.``"""
    a, b, c = problem.key
    return f"{a} + {b} + {c} = {a + b + c}."


def make_problem(key: tuple[int, int, int], template: int = 0) -> Problem:
    """The ``sum3`` problem for ``(a, b, c)`` in phrasing ``template`` (wrapped); ``ValueError`` for a key out of
    range (a + b > 49, c > 49, a negative or non-int operand)."""
    a, b, c = _check_key(key)
    prompt = SUM3_TEMPLATES[template % len(SUM3_TEMPLATES)].format(a=a, b=b, c=c)
    return Problem(FAMILY, (a, b, c), prompt, step_reply(Problem(FAMILY, (a, b, c), prompt, "")))


def parse_prompt(prompt: str) -> Problem:
    """The :class:`Problem` behind a ``sum3`` prompt; ``ValueError`` for any other text or a key out of range."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a string; got {type(prompt).__name__}")
    for template, rx in enumerate(_PROMPTS):
        m = rx.match(prompt.strip())
        if m:
            return make_problem(tuple(int(x) for x in m.groups()), template)
    raise ValueError(f"not a sum3 prompt: {prompt!r}")


def sample_problems(n: int, split: str = "train", seed: int = 0) -> list[Problem]:
    """``n`` random problems of ``split`` with random phrasings, deterministic in ``seed``. ``a + b`` is uniform
    on 0..49 and ``a`` uniform on 0..a + b, so small first operands are not over-represented."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")
    rng = random.Random(f"{FAMILY}:{split}:{seed}")
    out = []
    while len(out) < n:
        s = rng.randint(0, ADD_MAX)
        a = rng.randint(0, s)
        key = (a, s - a, rng.randint(0, ADD_MAX))
        if split_of(key) == split:
            out.append(make_problem(key, rng.randrange(len(SUM3_TEMPLATES))))
    return out


# --- reading replies ------------------------------------------------------------------------------------------
def final_answer(reply: str) -> int | None:
    """The reply's final answer: its last integer (``None`` if it has none)."""
    if not isinstance(reply, str):
        raise ValueError(f"reply must be a string; got {type(reply).__name__}")
    ints = _INT.findall(reply)
    return int(ints[-1]) if ints else None


def is_correct(problem: Problem, reply: str) -> bool:
    """The checker: the reply's :func:`final_answer` is ``a + b + c``, whatever came before it."""
    return final_answer(reply) == sum(problem.key)


def verifier_reward(problem: Problem, reply: str) -> float:
    """R1-Zero's accuracy reward on the final answer only: 1.0 if :func:`is_correct`, else 0.0 (an empty reply
    scores 0). Writing the step earns nothing by itself."""
    return float(is_correct(problem, reply))


def reply_form(reply: str) -> str:
    """``"step"`` if the reply (stripped) is two written sums ``x + y = s. s' + z = t.``, ``"direct"`` if it is one
    three-operand sum ``x + y + z = t.``, else ``"other"``. Only the shape is read, not whether the numbers are
    right (:func:`step_is_right` checks the written step)."""
    if not isinstance(reply, str):
        raise ValueError(f"reply must be a string; got {type(reply).__name__}")
    text = reply.strip()
    if _STEP.fullmatch(text):
        return "step"
    if _DIRECT.fullmatch(text):
        return "direct"
    return "other"


def step_is_right(problem: Problem, reply: str) -> bool | None:
    """For a reply of the step form: whether its written step is ``a + b = a+b`` with the problem's own ``a, b``
    and its second line starts from that result; ``None`` for a reply of another form."""
    m = _STEP.fullmatch(reply.strip()) if isinstance(reply, str) else None
    if m is None:
        return None
    x, y, s, s2, z, _ = (int(g) for g in m.groups())
    a, b, c = problem.key
    return (x, y, s, s2, z) == (a, b, a + b, a + b, c)


def step_ends(reply: str) -> list[int]:
    """The character index of the full stop that ends each step (each sentence: a ``.`` followed by a space or the
    end) of ``reply``, in order: ``[12, 26]`` for ``"17 + 25 = 42. 42 + 38 = 80."``, ``[17]`` for a direct reply,
    ``[]`` for a reply with no full stop. A process reward model reads its step probabilities at these characters."""
    if not isinstance(reply, str):
        raise ValueError(f"reply must be a string; got {type(reply).__name__}")
    return [m.start() for m in _STEP_END.finditer(reply)]


def step_labels(problem: Problem, reply: str) -> list[bool] | None:
    """The checker's label of each step of ``reply`` (one per :func:`step_ends`), the process supervision of a PRM.

    A step is right when it *and every step before it* are right (labels after the first mistake are wrong, as
    PRM800K stops at the first wrong step; Lightman et al. 2023):

    * the step form ``x + y = s. s' + z = t.``: step 1 is right iff ``(x, y, s) = (a, b, a + b)``; step 2 iff step 1
      is, it starts from that result and adds ``c`` rightly: ``(s', z, t) = (a + b, c, a + b + c)``;
    * the direct form ``x + y + z = t.``: one step, right iff it is ``a + b + c = a+b+c`` with the problem's operands;
    * any other reply: ``None`` (no steps to label).

    So every step is right exactly when the step form is fully right (:func:`step_is_right` and :func:`is_correct`).
    """
    text = reply.strip() if isinstance(reply, str) else None
    if text is None:
        raise ValueError(f"reply must be a string; got {type(reply).__name__}")
    a, b, c = problem.key
    m = _STEP.fullmatch(text)
    if m is not None:
        x, y, s, s2, z, t = (int(g) for g in m.groups())
        first = (x, y, s) == (a, b, a + b)
        return [first, first and (s2, z, t) == (a + b, c, a + b + c)]
    m = _DIRECT.fullmatch(text)
    if m is not None:
        return [tuple(int(g) for g in m.groups()) == (a, b, c, a + b + c)]
    return None


def forced_prefix(problem: Problem, form: str) -> str:
    """The start of a reply that commits to ``form``: ``"a + b ="`` (the step) or ``"a + b +"`` (direct). Both
    forms share ``"a + b "``; the next character decides."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}; got {form!r}")
    a, b, _ = problem.key
    return f"{a} + {b} =" if form == "step" else f"{a} + {b} +"


def instruction_data(n: int, step_share: float = 0.5, seed: int = 0) -> list[dict]:
    """``n`` training conversations (``{"messages": [user, assistant]}``) of the train split, each reply written
    in the step form with probability ``step_share`` (else direct), deterministic in ``seed``."""
    if not (isinstance(step_share, (int, float)) and 0 <= step_share <= 1):
        raise ValueError(f"step_share must be a number in [0, 1]; got {step_share!r}")
    rng = random.Random(f"{FAMILY}:forms:{seed}")
    return [{"messages": [{"role": "user", "content": p.prompt},
                          {"role": "assistant", "content": step_reply(p) if rng.random() < step_share
                           else direct_reply(p)}]}
            for p in sample_problems(n, "train", seed)]
