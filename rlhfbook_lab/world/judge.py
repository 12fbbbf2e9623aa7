"""The gold judge: the true quality of any response, the thing real life never gives you.

``gold_score(prompt, response) = Σ_f  w_f · feature_f(prompt, response)`` with the weights of the world's
**taste table**, its "model spec", read from ``data/spec/default.json`` (``world.spec``; the table below is that
file). Correctness comes first: no amount of taste makes up for a wrong answer.

=================  ==========================================================  =========  ================
feature            measured as                                                 weight     value range
=================  ==========================================================  =========  ================
``correct``        the family's checker accepts the answer (tasks.is_correct)  +1.00      0 or 1
``polite_opener``  the reply *opens* with one polite phrase ("Sure!", ...)     +0.20      0 or 1
``polite_excess``  polite phrases beyond the first, anywhere in the reply      −0.25      0 ... 8 (capped)
``extra_words``    words beyond the reference answer's, the opener not         −0.03      0 ... 20 (capped)
                   counted (rambling)
``unclean_end``    the reply does not end with ``.``, ``!`` or ``?``           −0.30      0 or 1
``repetition``     repeated word 3-grams (a 3-gram seen before in the reply)   −0.10      0 ... 5 (capped)
=================  ==========================================================  =========  ================

So a correct plain reference answer scores 1.00, the same with "Sure! " in front 1.20, and a wrong answer
at most 0.20.

**The Goodhart lever (ch 14).** Politeness is non-monotone: the first polite phrase at the start earns +0.20,
every further one costs 0.25 *and* adds extra words. In data where replies carry zero or one polite *opener*,
"more polite = better" looks like a perfect rule; a reward model that learns it pays a policy for piling up
"Sure! Happy to help! ..." while the gold score falls. (Only an opener pays: a polite *filler* sentence at the
end is a polite phrase that adds words, so it already costs.) Length works the same way more mildly: a longer
reply is never better once it is correct.

**A spec you can change (ch 17).** :data:`GOLD_WEIGHTS` is a plain dict, the shipped spec's weights
(:data:`DEFAULT_SPEC`). Pass ``spec=`` (a ``world.Spec``, a shipped name or a JSON path) or a bare ``weights=`` dict
to score by another taste; the simulated annotators (``world.annotators``) are the spec's crowd.
"""

from __future__ import annotations

import re

from .spec import FEATURES, Spec, load_spec
from .tasks import Problem, is_correct, parse_prompt

POLITE_PHRASES = ("sure!", "happy to help!", "of course!", "thank you", "i hope this helps")
POLITE_OPENERS = ("Sure!", "Happy to help!", "Of course!")
FILLERS = ("I hope this helps.", "Thank you for asking.", "Let me know if you need more.")

DEFAULT_SPEC: Spec = load_spec("default")
"""The shipped spec, ``data/spec/default.json``: the world every checkpoint and data set was built in."""
GOLD_WEIGHTS: dict[str, float] = dict(DEFAULT_SPEC.weights)
EXTRA_WORDS_CAP = 20
REPETITION_CAP = 5
POLITE_EXCESS_CAP = 8
FEATURE_RANGES = {"correct": (0, 1), "polite_opener": (0, 1), "polite_excess": (0, POLITE_EXCESS_CAP),
                  "extra_words": (0, EXTRA_WORDS_CAP), "unclean_end": (0, 1), "repetition": (0, REPETITION_CAP)}
"""Each feature's (lowest, highest) value: the caps make every score bounded."""


def lowest_score(weights) -> float:
    """The lowest score any reply can get under ``weights``: Σ_f min(w_f · lo_f, w_f · hi_f) over
    :data:`FEATURE_RANGES` (features a partial table leaves out weigh 0)."""
    return sum(min(weights.get(f, 0.0) * lo, weights.get(f, 0.0) * hi) for f, (lo, hi) in FEATURE_RANGES.items())


EMPTY_RESPONSE_SCORE = lowest_score(GOLD_WEIGHTS)
"""The score of an empty reply when a caller allows one (RL): the lowest score any reply can get (−3.4), so an
empty reply never beats even the worst rambling one. Under another spec, that spec's :func:`lowest_score`."""

_WORDS = re.compile(r"[A-Za-z0-9']+")


def count_polite(text: str) -> int:
    """How many polite phrases the text holds (case-insensitive, overlapping phrases counted once each)."""
    low = text.lower()
    return sum(low.count(p) for p in POLITE_PHRASES)


def _check_response(response) -> None:
    if not isinstance(response, str):
        raise ValueError(f"response must be a string; got {type(response).__name__}")


def taste_features(prompt: str | Problem, response: str) -> dict[str, float]:
    """The feature values of the taste table for one reply (see the module docstring)."""
    problem = prompt if isinstance(prompt, Problem) else parse_prompt(prompt)
    _check_response(response)
    text = response.strip()
    if not text:
        raise ValueError("response is empty; the gold judge scores only non-empty replies "
                         "(pass allow_empty=True to gold_score to get EMPTY_RESPONSE_SCORE)")
    opener = next((o for o in POLITE_OPENERS if text.startswith(o)), None)
    n_polite = count_polite(text)
    words = _WORDS.findall(text)
    n_opener_words = len(_WORDS.findall(opener)) if opener else 0
    n_ref = len(_WORDS.findall(problem.reference))
    low = [w.lower() for w in words]
    trigrams = [tuple(low[i:i + 3]) for i in range(len(low) - 2)]
    repeats = len(trigrams) - len(set(trigrams))
    return {
        "correct": float(is_correct(problem, text)),
        "polite_opener": float(opener is not None),
        "polite_excess": float(min(POLITE_EXCESS_CAP, max(0, n_polite - 1))),
        "extra_words": float(min(EXTRA_WORDS_CAP, max(0, len(words) - n_opener_words - n_ref))),
        "unclean_end": float(text[-1] not in ".!?"),
        "repetition": float(min(REPETITION_CAP, repeats)),
    }


def gold_score(prompt: str | Problem, response: str, weights: dict[str, float] | None = None,
               allow_empty: bool = False, spec: Spec | str | None = None) -> float:
    """The true quality of ``response`` to ``prompt``: Σ_f w_f · feature_f (taste table in the module docstring).

    Args:
        prompt: a prompt the world wrote (the user's message text), or a :class:`Problem`.
        response: the assistant's reply as plain text (no special tokens).
        weights: a bare taste table (a dict over :data:`FEATURES`; features left out weigh 0).
        allow_empty: return the lowest score (:data:`EMPTY_RESPONSE_SCORE`, or the spec's :func:`lowest_score`)
            for an empty reply instead of raising.
        spec: a model spec (``world.Spec``, a shipped name such as ``"default"``, or a JSON path;
            ``world.load_spec``) whose weights to use. Neither ``weights`` nor ``spec``: the shipped spec,
            :data:`GOLD_WEIGHTS`.

    Raises:
        ValueError: for a non-string or (unless ``allow_empty``) empty response, a prompt of no known task, both
            ``weights`` and ``spec``, or a spec that does not load.
    """
    if weights is not None and spec is not None:
        raise ValueError("give weights or spec, not both")
    if spec is not None:
        weights = load_spec(spec).weights
    _check_response(response)
    if allow_empty and not response.strip():
        if not isinstance(prompt, Problem):
            parse_prompt(prompt)  # an unknown task is still an error
        return EMPTY_RESPONSE_SCORE if spec is None else lowest_score(weights)
    w = GOLD_WEIGHTS if weights is None else weights
    unknown = set(w) - set(FEATURES)
    if unknown:
        raise ValueError(f"weights has unknown feature(s) {sorted(unknown)}; features are {FEATURES}")
    f = taste_features(prompt, response)
    return float(sum(w.get(k, 0.0) * v for k, v in f.items()))


def render_response(problem: Problem, opener: str | None = None, fillers: int = 0, answer: str | None = None,
                    clean_end: bool = True) -> str:
    """Write a reply in a given *style*: an optional polite opener, the answer, ``fillers`` filler sentences.

    The corpus and the preference-data builders use this to make replies of known quality: e.g.
    ``render_response(p, opener="Sure!", fillers=2)`` → ``"Sure! 17 + 25 = 42. I hope this helps. Thank you
    for asking."`` Filler sentences cycle through :data:`FILLERS`; ``answer`` replaces the reference (a wrong
    answer for corrupted replies); ``clean_end=False`` drops the final punctuation.
    """
    parts = ([opener] if opener else []) + [problem.reference if answer is None else answer]
    parts += [FILLERS[i % len(FILLERS)] for i in range(fillers)]
    text = " ".join(parts)
    return text if clean_end else text.rstrip(".!?")
