"""The world's constitution and the critique-and-revise task (RLHF Book ch. 12, Constitutional AI).

**The constitution** (:data:`CONSTITUTION`): one plain-text principle per row of the taste table
(``data/spec/default.json``), in the *choose* form a feedback model reads when it judges a pair (Bai et al. 2022's
RL stage); :data:`PRINCIPLE_FEATURES` says which taste features each principle speaks about, and
:func:`principle_verdict` applies one principle to a pair by rule. The same principles in the *revise* form
(:data:`REVISION_REQUESTS`, short, as the paper's supervised stage pairs each principle with a critique request and
a revision request): the model's context is 256 characters, so the request is a few words.

**The critique-and-revise task.** The user message (:func:`revision_prompt`), one line each::

    Revise the reply to end with a full stop.
    Q: What is 17 + 25?
    Reply: 17 + 25 = 42

and the assistant's answer (:func:`revision_target`), a critique line then the revision::

    Critique: It does not end cleanly.
    Revision: 17 + 25 = 42.

:func:`parse_revision` reads the two back (anything else is a ``ValueError``). The critique is what the rule sees
(:func:`critique`, or :data:`NOTHING_TO_FIX` when the reply already follows the principle, and then the revision
is the reply unchanged).

**The rule** (:func:`revise`): the revision a principle asks for, written from the world's own features and
reference answer (the rule that makes the task's labels, as ``principle_verdict`` makes the RL stage's):

=================  ===============================================================================================
principle          revision (a reply that already follows the principle is returned as it is shown, one line)
=================  ===============================================================================================
``correct``        the reference answer, behind the reply's polite opener if it had one
``polite``         polite phrases removed (a sentence that is nothing but one, e.g. a filler, dropped whole), then
                   one opener in front (the reply's own, else ``"Sure!"``)
``concise``        a right answer: the reference behind the reply's opener; a wrong one: cut to as many words as
                   the reference has, then ended with a full stop
``clean_end``      trailing characters that are neither letters, digits nor ``.!?`` removed, then a full stop
``no_repetition``  repeated sentences dropped, then every word that would complete an already seen word 3-gram
                   (a reply that was right and lost its answer so: the reference behind its opener)
=================  ===============================================================================================

What holds (``tests/test_constitution.py``): the revision's features of its principle are at their best
(``correct`` 1; ``polite_opener`` 1 and ``polite_excess`` 0; ``extra_words`` 0; ``unclean_end`` 0; ``repetition``
0) for every non-empty reply; and on every reply of the tests' generator (right and wrong answers with openers,
fillers, repeats and cut ends) the gold score of the revision is never below the reply's.
"""

from __future__ import annotations

import random
import re

from .judge import GOLD_WEIGHTS, POLITE_OPENERS, POLITE_PHRASES, count_polite, taste_features
from .tasks import Problem, is_correct, parse_prompt

__all__ = [
    "CONSTITUTION", "NOTHING_TO_FIX", "PRINCIPLE_FEATURES", "REVISION_REQUESTS", "check_constitution",
    "check_principle", "critique", "follows", "parse_revision", "principle_judge_conversations",
    "principle_judge_prompt", "principle_verdict", "revise", "revision_conversations", "revision_prompt",
    "revision_target",
]

CONSTITUTION: dict[str, str] = {
    "correct": "Choose the reply that answers the question correctly.",
    "polite": "Choose the reply that opens with one short polite phrase and uses no other polite phrases.",
    "concise": "Choose the reply that says what is needed and nothing more; do not ramble.",
    "clean_end": "Choose the reply that ends cleanly, with a full stop, a question mark or an exclamation mark.",
    "no_repetition": "Choose the reply that does not repeat itself.",
}
"""The world's constitution: one plain-text principle per row of the taste table (``data/spec/default.json``),
paraphrased: answer correctly, one opener at most, no rambling, end cleanly, no repetition."""

PRINCIPLE_FEATURES: dict[str, tuple[str, ...]] = {
    "correct": ("correct",),
    "polite": ("polite_opener", "polite_excess"),
    "concise": ("extra_words",),
    "clean_end": ("unclean_end",),
    "no_repetition": ("repetition",),
}
"""What each principle checks: the taste features (``world.taste_features``) it speaks about. A principle's score of
a reply is Σ w_f·φ_f over its features, with the default spec's weights (only their signs and, for ``polite``,
their ratio matter)."""

REVISION_REQUESTS: dict[str, str] = {
    "correct": "answer the question correctly",
    "polite": "open with one polite phrase and use no other",
    "concise": "say what is needed and nothing more",
    "clean_end": "end with a full stop",
    "no_repetition": "not repeat itself",
}
"""The principles in the revise form: ``"Revise the reply to <request>."`` (:func:`revision_prompt`)."""

NOTHING_TO_FIX = "Nothing to fix."
"""The critique of a reply that already follows the principle (its revision is the reply itself)."""

_BEST = {"correct": 1.0, "polite_opener": 1.0, "polite_excess": 0.0, "extra_words": 0.0, "unclean_end": 0.0,
         "repetition": 0.0}
_CRITIQUES = {
    "correct": "The answer is wrong.",
    "polite_opener": "It does not open with a polite phrase.",
    "polite_excess": "It piles up polite phrases.",
    "extra_words": "It says more than is needed.",
    "unclean_end": "It does not end cleanly.",
    "repetition": "It repeats itself.",
}
_WORD = re.compile(r"[A-Za-z0-9']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def check_constitution(constitution) -> dict[str, str]:
    """Return the constitution as a dict if every principle is known (:data:`PRINCIPLE_FEATURES`) and has a
    non-empty text; else ``ValueError`` naming the principle."""
    if not isinstance(constitution, dict) or not constitution:
        raise ValueError("constitution must be a non-empty dict {principle: text}; got "
                         f"{type(constitution).__name__ if not isinstance(constitution, dict) else 'an empty dict'}")
    for name, text in constitution.items():
        if name not in PRINCIPLE_FEATURES:
            raise ValueError(f"constitution[{name!r}]: unknown principle; expected one of {list(PRINCIPLE_FEATURES)}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"constitution[{name!r}]: the principle's text must be a non-empty string; got {text!r}")
    return dict(constitution)


def check_principle(principle) -> str:
    """Return ``principle`` if it names a principle of :data:`PRINCIPLE_FEATURES`; else ``ValueError``."""
    if not isinstance(principle, str) or principle not in PRINCIPLE_FEATURES:
        raise ValueError(f"principle must be one of {list(PRINCIPLE_FEATURES)}; got {principle!r}")
    return principle


def principle_verdict(principle: str, problem, a: str, b: str) -> str | None:
    """Which reply a principle prefers: ``"A"``, ``"B"``, or ``None`` when it cannot tell them apart.

    The principle's score of a reply is Σ_f w_f·φ_f over :data:`PRINCIPLE_FEATURES` ``[principle]``, with the
    default spec's weights (``world.GOLD_WEIGHTS``)."""
    check_principle(principle)
    fa, fb = taste_features(problem, a), taste_features(problem, b)
    w = GOLD_WEIGHTS
    sa = sum(w[f] * fa[f] for f in PRINCIPLE_FEATURES[principle])
    sb = sum(w[f] * fb[f] for f in PRINCIPLE_FEATURES[principle])
    return None if sa == sb else ("A" if sa > sb else "B")


def _one_line(name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string; got {value!r}")
    return " ".join(value.split())


def _problem(problem) -> Problem:
    return problem if isinstance(problem, Problem) else parse_prompt(problem)


def revision_prompt(question: str, reply: str, principle: str) -> str:
    """The task's user message: ``Revise the reply to <request>.``, ``Q: question``, ``Reply: reply``, one per line
    (:data:`REVISION_REQUESTS`). Question and reply must be non-empty strings (``ValueError`` naming them), each
    shown on one line (runs of white space as one space), so a reply cannot pose as another line of the prompt."""
    check_principle(principle)
    return (f"Revise the reply to {REVISION_REQUESTS[principle]}.\nQ: {_one_line('question', question)}\n"
            f"Reply: {_one_line('reply', reply)}")


def _faults(problem: Problem, reply: str, principle: str) -> list[str]:
    f = taste_features(problem, reply)
    return [k for k in PRINCIPLE_FEATURES[principle] if f[k] != _BEST[k]]


def follows(problem, reply: str, principle: str) -> bool:
    """Whether ``reply`` already follows ``principle``: its features of the principle are at their best."""
    return not _faults(_problem(problem), _one_line("reply", reply), check_principle(principle))


def critique(problem, reply: str, principle: str) -> str:
    """What is wrong with ``reply`` under ``principle``, one sentence per fault (:data:`NOTHING_TO_FIX` if none)."""
    faults = _faults(_problem(problem), _one_line("reply", reply), check_principle(principle))
    return " ".join(_CRITIQUES[k] for k in faults) or NOTHING_TO_FIX


def _opener(text: str) -> str | None:
    return next((o for o in POLITE_OPENERS if text.startswith(o)), None)


def _clean_end(text: str) -> str:
    text = text.rstrip()
    while text and not (text[-1].isalnum() or text[-1] in ".!?"):
        text = text[:-1].rstrip()
    return text if text and text[-1] in ".!?" else text + "."


def _with_opener(opener: str | None, body: str) -> str:
    return f"{opener} {body}".strip() if opener else body


def _drop_polite(problem: Problem, text: str) -> str:
    """``text`` without polite phrases: a sentence that holds one is dropped whole when the rest keeps the reply's
    correctness and is not empty, else only the phrases are cut out of it."""
    right = is_correct(problem, text)
    sentences = _SENTENCE_END.split(text)
    i = 0
    while i < len(sentences):
        if count_polite(sentences[i]):
            rest = " ".join(sentences[:i] + sentences[i + 1:])
            if rest.strip() and is_correct(problem, rest) >= right:
                sentences.pop(i)
                continue
            s = sentences[i]
            while count_polite(s):
                for p in POLITE_PHRASES:
                    s = re.sub(re.escape(p), " ", s, flags=re.IGNORECASE)
            sentences[i] = " ".join(s.split())
        i += 1
    return " ".join(s for s in sentences if s.strip())


def _drop_repeats(text: str) -> str:
    """Repeated sentences dropped (a sentence whose words were all said before, in that order, any case), then
    every word that would complete a word 3-gram already seen skipped (its gap's marks kept), so no 3-gram repeats."""
    kept, before = [], " "
    for s in _SENTENCE_END.split(text):
        key = " ".join(w.lower() for w in _WORD.findall(s))
        if key and f" {key} " in before:  # its words were all said before, in this order
            continue
        before += f"{key} " if key else ""
        kept.append(s)
    text = " ".join(kept)
    out, last, words, grams = [], 0, [], set()
    for m in _WORD.finditer(text):
        w, gap = m.group().lower(), text[last:m.start()]
        gram = tuple(words[-2:] + [w])
        last = m.end()
        if len(gram) == 3 and gram in grams:  # skip the word; keep the marks (not the spaces) of the gap before it
            out.append("".join(gap.split()))
            continue
        if len(gram) == 3:
            grams.add(gram)
        words.append(w)
        out.append(gap + m.group())
    out.append(text[last:])
    return " ".join("".join(out).split())


def revise(problem, reply: str, principle: str) -> str:
    """The revision ``principle`` asks of ``reply`` (the table in the module docstring): a reply that already
    follows the principle comes back as it is shown (one line); else the rule's revision, whose features of the
    principle are at their best. ``problem``: a :class:`Problem` or a prompt the world wrote.

    >>> from rlhfbook_lab.world import make_problem
    >>> revise(make_problem("addition", (17, 25)), "Sure! 17 + 25 = 41", "correct")
    'Sure! 17 + 25 = 42.'
    """
    problem, text, principle = _problem(problem), _one_line("reply", reply), check_principle(principle)
    if not _faults(problem, text, principle):
        return text
    opener = _opener(text)
    body = text[len(opener):].strip() if opener else text
    if principle == "correct":
        return _with_opener(opener, problem.reference)
    if principle == "polite":
        out = _drop_polite(problem, text)
        if text[-1] in ".!?" and out:
            out = _clean_end(out)
        return _with_opener(opener or POLITE_OPENERS[0], out)
    if principle == "concise":
        if is_correct(problem, text):
            return _with_opener(opener, problem.reference)
        n = len(_WORD.findall(problem.reference))
        words = list(_WORD.finditer(body))
        cut = body[:words[n - 1].end()] if len(words) >= n else body
        return _with_opener(opener, _clean_end(cut))
    if principle == "clean_end":
        return _clean_end(text)
    out = _drop_repeats(text)
    if is_correct(problem, text) and not is_correct(problem, out):  # the cut lost the answer: write it plainly
        return _with_opener(opener, problem.reference)
    return _clean_end(out) if text[-1] in ".!?" else out


def revision_target(problem, reply: str, principle: str) -> str:
    """The assistant's answer of the task: ``"Critique: <critique>\\nRevision: <revision>"`` (:func:`critique`,
    :func:`revise`)."""
    return f"Critique: {critique(problem, reply, principle)}\nRevision: {revise(problem, reply, principle)}"


def parse_revision(text) -> tuple[str, str]:
    """``(critique, revision)`` from a reply of the form :func:`revision_target` writes (surrounding white space
    ignored); anything else (no ``Critique:`` line, no ``Revision:`` line, an empty revision) is a ``ValueError``:
    a revision is read, never guessed."""
    if not isinstance(text, str):
        raise ValueError(f"revision text must be a string; got {type(text).__name__}")
    m = re.fullmatch(r"Critique: ([^\n]*)\nRevision: ([^\n]*)", text.strip())
    if not m or not m.group(2).strip():
        raise ValueError(f"revision text must read 'Critique: ...\\nRevision: <non-empty reply>'; got {text!r}")
    return m.group(1).strip(), m.group(2).strip()


def revision_conversations(problems, replies: list[str], principles: list[str] | None = None,
                           seed: int = 0) -> list[list[dict]]:
    """The task's chat examples: for each (problem, reply), ``[user: revision_prompt, assistant: revision_target]``
    under ``principles[i]``, or, when ``principles`` is None, a principle drawn uniformly from
    :data:`PRINCIPLE_FEATURES` (``random.Random(f"revise-{seed}")``, one draw per row, in order). Lists of unequal
    length, an empty list, an empty reply or an unknown principle are a ``ValueError`` naming the row."""
    problems, replies = list(problems), list(replies)
    if not problems or len(problems) != len(replies):
        raise ValueError(f"problems and replies must be non-empty lists of one length; got {len(problems)}, "
                         f"{len(replies)}")
    if principles is None:
        rng = random.Random(f"revise-{seed}")
        principles = [rng.choice(list(PRINCIPLE_FEATURES)) for _ in problems]
    elif len(principles) != len(problems):
        raise ValueError(f"principles must hold one principle per reply ({len(problems)}); got {len(principles)}")
    out = []
    for i, (p, r, pr) in enumerate(zip(problems, replies, principles)):
        try:
            p = _problem(p)
            out.append([{"role": "user", "content": revision_prompt(p.prompt, r, pr)},
                        {"role": "assistant", "content": revision_target(p, r, pr)}])
        except ValueError as e:
            raise ValueError(f"row {i}: {e}") from None
    return out


def principle_judge_prompt(question: str, a: str, b: str, principle: str) -> str:
    """The RL stage's judge prompt: ``Which reply is better? Principle: <request>.``, then ``Q:``, ``A:``, ``B:``,
    one per line (the pairwise judge's task, ``world.pairwise``, under one principle in its short form,
    :data:`REVISION_REQUESTS`). Each part must be a non-empty string (``ValueError`` naming it), shown on one line."""
    check_principle(principle)
    return (f"Which reply is better? Principle: {REVISION_REQUESTS[principle]}.\nQ: {_one_line('question', question)}"
            f"\nA: {_one_line('a', a)}\nB: {_one_line('b', b)}")


def principle_judge_conversations(problems, a: list[str], b: list[str], principles: list[str]):
    """The principled judge's chat examples, labelled by the constitution's rule (:func:`principle_verdict`, no
    gold label): ``[user: principle_judge_prompt, assistant: "A" | "B"]`` for each pair its principle can tell apart.
    Returns ``(conversations, kept)``: ``kept`` lists the indices of the pairs used (a tie under its principle is
    left out). Lists of unequal length or empty are a ``ValueError``; a bad reply or principle names its row."""
    problems, a, b, principles = list(problems), list(a), list(b), list(principles)
    if not problems or not (len(problems) == len(a) == len(b) == len(principles)):
        raise ValueError(f"problems, a, b and principles must be non-empty lists of one length; got {len(problems)}, "
                         f"{len(a)}, {len(b)}, {len(principles)}")
    convs, kept = [], []
    for i, (p, x, y, n) in enumerate(zip(problems, a, b, principles)):
        try:
            p = _problem(p)
            prompt = principle_judge_prompt(p.prompt, x, y, n)
            verdict = principle_verdict(n, p, x, y)
        except ValueError as e:
            raise ValueError(f"row {i}: {e}") from None
        if verdict is not None:
            convs.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": verdict}])
            kept.append(i)
    return convs, kept
