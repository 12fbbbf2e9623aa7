"""The gold judge: the true quality of any response, the thing real life never gives you.

``gold_score(prompt, response) = Σ_f  w_f · feature_f(prompt, response)`` with the weights of the world's
**taste table** (its "model spec"). Correctness comes first: no amount of taste makes up for a wrong answer.

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

**A spec you can change (ch 17).** :data:`GOLD_WEIGHTS` is a plain dict. Pass ``weights=`` to score by
another taste, and the simulated annotators (``world.annotators``) are exactly such alternative weight tables.
"""

from __future__ import annotations

import re

from .tasks import Problem, is_correct, parse_prompt

POLITE_PHRASES = ("sure!", "happy to help!", "of course!", "thank you", "i hope this helps")
POLITE_OPENERS = ("Sure!", "Happy to help!", "Of course!")
FILLERS = ("I hope this helps.", "Thank you for asking.", "Let me know if you need more.")

GOLD_WEIGHTS: dict[str, float] = {
    "correct": 1.00,
    "polite_opener": 0.20,
    "polite_excess": -0.25,
    "extra_words": -0.03,
    "unclean_end": -0.30,
    "repetition": -0.10,
}
FEATURES = tuple(GOLD_WEIGHTS)
EXTRA_WORDS_CAP = 20
REPETITION_CAP = 5
POLITE_EXCESS_CAP = 8
EMPTY_RESPONSE_SCORE = (GOLD_WEIGHTS["polite_excess"] * POLITE_EXCESS_CAP
                        + GOLD_WEIGHTS["extra_words"] * EXTRA_WORDS_CAP
                        + GOLD_WEIGHTS["unclean_end"] + GOLD_WEIGHTS["repetition"] * REPETITION_CAP)
"""The score of an empty reply when a caller allows one (RL): the lowest score any reply can get (−3.4), so an
empty reply never beats even the worst rambling one."""

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
               allow_empty: bool = False) -> float:
    """The true quality of ``response`` to ``prompt``: Σ_f w_f · feature_f (taste table in the module docstring).

    Args:
        prompt: a prompt the world wrote (the user's message text), or a :class:`Problem`.
        response: the assistant's reply as plain text (no special tokens).
        weights: another taste table (a dict over :data:`FEATURES`); default :data:`GOLD_WEIGHTS`.
        allow_empty: return :data:`EMPTY_RESPONSE_SCORE` for an empty reply instead of raising.

    Raises:
        ValueError: for a non-string or (unless ``allow_empty``) empty response, or a prompt of no known task.
    """
    _check_response(response)
    if allow_empty and not response.strip():
        if not isinstance(prompt, Problem):
            parse_prompt(prompt)  # an unknown task is still an error
        return EMPTY_RESPONSE_SCORE
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
