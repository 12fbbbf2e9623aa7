"""Preference data (RLHF Book, ch. 11): pairs of replies, labelled by a simulated annotator, ready for a reward
model or DPO.

What a pair is
--------------
One dict per comparison (a line of a jsonl file)::

    {"prompt": "What is 17 + 25?",          # the user's message (a prompt the world wrote)
     "chosen": "17 + 25 = 42.",             # the reply the annotator preferred
     "rejected": "17 + 25 = 44.",
     "label_source": "gold",                # who labelled it (an annotator's name)
     "family": "addition",                  # the task family (world.parse_prompt)
     "p_chosen": 0.99995,                   # the annotator's P(chosen ≻ rejected | no tie)
     "label": 1.0}                          # optional: 1.0 = chosen preferred (default), 0.5 = a tie

``p_chosen`` is known only because the annotator is simulated: it is what makes the *Bayes ceiling* of a data
set computable (:func:`pairs_bayes_ceiling`), the best accuracy any reward model can reach on these labels.
Builders add bookkeeping fields (``chosen_source`` / ``rejected_source``, ``flipped``, ``label_noise``).

Where pairs come from
---------------------
- **On-policy** (:func:`on_policy_pairs`): sample n replies per prompt from the policy being improved, pair them
  up, let an annotator choose. The reward model then learns about exactly the replies it will score in RL.
- **Off-policy** (:func:`off_policy_pairs`): mix replies from several sources — other models (base, SFT) and the
  world's own styled replies (:func:`styled_replies`: with or without a polite opener and filler sentences,
  unclean endings, deliberately wrong answers) — and label them the same way.
- **Minimal pairs** (:func:`minimal_pairs`): the same styled reply twice, with the right and a wrong answer, so
  that correctness is the only difference a reward model can learn from.

Both go through one labelling step, :func:`label_pairs`. Three kinds of candidate never become pairs, and each
is **counted** (``PreferencePairs.counts``), never silently lost:

- *identical replies*: chosen == rejected carries zero gradient (σ(r − r) = 1/2 whatever r is); sampling at low
  temperature makes many;
- *empty replies*: the gold judge does not score them (a policy that stops at once);
- *ties* (an annotator with ``tie_strength > 0``): dropped by default (``ties="drop"``), or kept with
  ``label = 0.5`` (``ties="keep"``): the reward-model loss then pulls the two rewards together
  (``reward_trainer.rm_loss_sum``).

Tokenization (:func:`tokenize_pairs`) drops and counts two more: pairs longer than ``max_length`` (never
truncated, as in ``data``) and pairs whose two sides are the same token ids (pairs from elsewhere may repeat a
reply; after truncation, replies that differ only past the cut; :func:`tokenize_pairs` with ``truncation=True``
shows how often). :func:`collate_pairs` stacks a batch as (2B, T), chosen rows first: TRL's layout, split with
``.chunk(2)``. Both trainers use these two: ``reward_trainer`` (ties kept, label 0.5) and ``dpo_trainer``
(ties refused at its entry, and precomputed reference log-probs carried through the collator).

Helpers for ch 11's curves: :func:`flip_labels` (label noise ε, counted), :func:`subsample_pairs` (nested
subsets for data-size curves), :func:`split_pairs` (train / held-out by prompt key, ``world.split_of``).
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Callable, NamedTuple

import torch

from rlhfbook_lab import world
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.world.judge import POLITE_OPENERS
from rlhfbook_lab.world.tasks import ATTRIBUTES, CREATURE_FACTS, CREATURES

__all__ = [
    "DEFAULT_STYLES",
    "STYLES",
    "corrupt_answer",
    "counterfactual_pairs",
    "flip_labels",
    "label_pairs",
    "minimal_pairs",
    "off_policy_pairs",
    "on_policy_pairs",
    "pair_kind",
    "pairs_bayes_ceiling",
    "PreferencePairs",
    "split_pairs",
    "styled_replies",
    "subsample_pairs",
]

log = logging.getLogger(__name__)

TIE_POLICIES = ("drop", "keep")


class PreferencePairs(NamedTuple):
    """What a builder returns: the labelled pairs and what happened to every candidate."""

    rows: list[dict]
    """The pairs (module docstring), in a deterministic order."""
    counts: dict[str, int]
    """``candidates`` (pairs considered), ``identical`` and ``empty`` (dropped), ``ties`` (tie labels drawn:
    dropped with ``ties="drop"``, kept with ``label = 0.5`` otherwise), ``kept`` (``len(rows)``). On-policy
    builds add ``samples`` and ``unfinished`` (samples that hit ``max_new_tokens`` before EOS)."""


# --------------------------------------------------------------------------------------------------
# Validation and files
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Labelling: the one step every builder shares
# --------------------------------------------------------------------------------------------------


def _annotator(annotator: str | world.Annotator) -> world.Annotator:
    if isinstance(annotator, world.Annotator):
        return annotator
    if annotator not in world.ANNOTATORS:
        raise ValueError(f"unknown annotator {annotator!r}; expected one of {sorted(world.ANNOTATORS)} "
                         "or a world.Annotator")
    return world.ANNOTATORS[annotator]


def label_pairs(candidates, annotator: str | world.Annotator = "gold", rng: random.Random | None = None,
                ties: str = "drop") -> PreferencePairs:
    """Let a simulated annotator label candidate pairs: drop (and count) identical and empty ones, draw a label
    for the rest by ``annotator.label`` (Bradley-Terry, with Davidson ties when ``tie_strength > 0``).

    Args:
        candidates: ``(prompt, a, b, extra)`` tuples: a world prompt (string or ``world.Problem``), two
            replies, and a dict of fields for the pair. ``extra["a_source"]`` / ``extra["b_source"]`` name
            where each reply came from and follow the label (``chosen_source``, ``rejected_source``); other
            keys are copied as they are.
        annotator: a name in ``world.ANNOTATORS`` or a ``world.Annotator``.
        rng: the label draws' random source (default ``random.Random(0)``).
        ties: ``"drop"`` (count and leave out) or ``"keep"`` (a pair with ``label = 0.5``, chosen = ``a``).

    Returns:
        :class:`PreferencePairs`. ``p_chosen`` is the annotator's P(chosen ≻ rejected | no tie).
    """
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties must be one of {TIE_POLICIES}; got {ties!r}")
    ann = _annotator(annotator)
    rng = rng if rng is not None else random.Random(0)
    counts = {"candidates": 0, "identical": 0, "empty": 0, "ties": 0, "kept": 0}
    rows = []
    for prompt, a, b, extra in candidates:
        counts["candidates"] += 1
        if not a.strip() or not b.strip():
            counts["empty"] += 1
            continue
        if a == b:
            counts["identical"] += 1
            continue
        problem = prompt if isinstance(prompt, world.Problem) else world.parse_prompt(prompt)
        pa, pb, _ = ann.probabilities(problem, a, b)
        verdict = ann.label(problem, a, b, rng)
        extra = dict(extra)
        a_source, b_source = extra.pop("a_source", None), extra.pop("b_source", None)
        if verdict == "tie":
            counts["ties"] += 1
            if ties == "drop":
                continue
        a_wins = verdict in ("a", "tie")
        chosen, rejected = (a, b) if a_wins else (b, a)
        p_a = pa / (pa + pb)
        row = {"prompt": problem.prompt, "chosen": chosen, "rejected": rejected, "label_source": ann.name,
               "family": problem.family, "p_chosen": p_a if a_wins else 1.0 - p_a,
               "label": 0.5 if verdict == "tie" else 1.0}
        if a_source is not None or b_source is not None:
            row["chosen_source"], row["rejected_source"] = (a_source, b_source) if a_wins else (b_source, a_source)
        row.update(extra)
        rows.append(row)
    counts["kept"] = len(rows)
    return PreferencePairs(rows, counts)


def _index_pairs(n: int, pairs_per_prompt: int | None, rng: random.Random) -> list[tuple[int, int]]:
    """All C(n, 2) index pairs (``None``) or ``pairs_per_prompt`` distinct ones drawn by ``rng``."""
    every = list(itertools.combinations(range(n), 2))
    if pairs_per_prompt is None or pairs_per_prompt >= len(every):
        return every
    if pairs_per_prompt < 1:
        raise ValueError(f"pairs_per_prompt must be >= 1 or None (all pairs); got {pairs_per_prompt}")
    return sorted(rng.sample(every, pairs_per_prompt))


def _problems(prompts) -> list[world.Problem]:
    if not prompts:
        raise ValueError("prompts is empty; expected world prompts (strings) or world.Problem objects")
    return [p if isinstance(p, world.Problem) else world.parse_prompt(p) for p in prompts]


# --------------------------------------------------------------------------------------------------
# On-policy: the policy's own samples
# --------------------------------------------------------------------------------------------------


def on_policy_pairs(policy, tokenizer, prompts, num_samples: int = 4, pairs_per_prompt: int | None = None,
                    annotator: str | world.Annotator = "gold", ties: str = "drop", seed: int = 0,
                    batch_size: int = 64, **generate_kwargs) -> PreferencePairs:
    """Sample ``num_samples`` replies per prompt from ``policy`` and label pairs of them.

    Args:
        policy: a causal LM (e.g. the SFT model), sampled with ``generation.generate``.
        prompts: world prompts (strings) or ``world.Problem`` objects.
        num_samples: replies per prompt (``num_return_sequences``), at least 2.
        pairs_per_prompt: ``None`` pairs every two samples of a prompt (C(n, 2) pairs, correlated: they share
            replies); an int draws that many distinct pairs per prompt at random.
        annotator, ties: see :func:`label_pairs`.
        seed: seeds the sampler, the choice of pairs and the labels: the same seed gives the same pairs.
        batch_size: sequences per ``generate`` call.
        generate_kwargs: passed to ``generation.generate`` (``temperature``, ``top_p``, ``max_new_tokens``,
            ``greedy``).

    Returns:
        :class:`PreferencePairs` with ``chosen_source = rejected_source = "policy"``; counts add ``samples``
        and ``unfinished``.
    """

    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 to make a pair; got {num_samples}")
    problems = _problems(prompts)
    per_call = max(1, batch_size // num_samples)
    torch.manual_seed(seed)
    texts: list[str] = []
    unfinished = 0
    for i in range(0, len(problems), per_call):
        chunk = problems[i:i + per_call]
        gen = generate(policy, tokenizer, [p.prompt for p in chunk], num_return_sequences=num_samples,
                       **generate_kwargs)
        texts += gen.texts
        unfinished += int((~gen.finished).sum())
    pair_rng = random.Random(f"on-policy-pairs-{seed}")
    candidates = []
    for k, problem in enumerate(problems):
        group = texts[k * num_samples:(k + 1) * num_samples]  # rows of a group are contiguous
        for i, j in _index_pairs(num_samples, pairs_per_prompt, pair_rng):
            candidates.append((problem, group[i], group[j], {"a_source": "policy", "b_source": "policy"}))
    out = label_pairs(candidates, annotator, random.Random(f"on-policy-labels-{seed}"), ties)
    out.counts.update(samples=len(texts), unfinished=unfinished)
    return out


# --------------------------------------------------------------------------------------------------
# Off-policy: replies from several sources, including the world's styled and corrupted ones
# --------------------------------------------------------------------------------------------------


def corrupt_answer(problem: world.Problem, rng: random.Random) -> str:
    """A fluent but *wrong* answer sentence for ``problem`` (``world.is_correct`` rejects it).

    addition: a sum off by 1–9; reverse: the reversal with one letter changed; creatures: another value of the
    asked attribute; review: the opposite sentiment.
    """
    if problem.family == "addition":
        a, b = problem.key
        wrong = a + b + rng.choice([d for d in range(-9, 10) if d and a + b + d >= 0])
        return f"{a} + {b} = {wrong}."
    if problem.family == "reverse":
        rev = list(problem.key[::-1])
        i = rng.randrange(len(rev))
        rev[i] = rng.choice([c for c in "abcdefghijklmnopqrstuvwxyz" if c != rev[i]])
        return f"The reverse of {problem.key} is {''.join(rev)}."
    if problem.family == "creatures":
        c, attr = problem.key
        wrong = rng.choice([v for v in ATTRIBUTES[attr] if v != CREATURES[c][attr]])
        return CREATURE_FACTS[attr].format(c=c, v=wrong)
    if problem.family == "review":
        s, p = problem.key
        other = "negative" if s == "positive" else "positive"
        return world.make_problem("review", (other, p)).reference
    raise ValueError(f"unknown task family {problem.family!r}")  # pragma: no cover


STYLES: dict[str, Callable[[world.Problem, random.Random], str]] = {
    "reference": lambda p, rng: world.render_response(p),
    "opener": lambda p, rng: world.render_response(p, opener=rng.choice(POLITE_OPENERS)),
    "fillers": lambda p, rng: world.render_response(p, fillers=rng.randint(1, 2)),
    "opener_fillers": lambda p, rng: world.render_response(p, opener=rng.choice(POLITE_OPENERS),
                                                           fillers=rng.randint(1, 2)),
    "unclean_end": lambda p, rng: world.render_response(p, clean_end=False),
    "wrong_answer": lambda p, rng: world.render_response(p, answer=corrupt_answer(p, rng)),
    "wrong_answer_opener": lambda p, rng: world.render_response(p, opener=rng.choice(POLITE_OPENERS),
                                                                answer=corrupt_answer(p, rng)),
    "polite_pileup": lambda p, rng: world.render_response(p, opener=" ".join(POLITE_OPENERS)),
}
"""The world's reply styles: name → ``f(problem, rng) -> reply``. Correct answers with or without a polite
opener and filler sentences; a clean answer with its final punctuation dropped; wrong answers
(:func:`corrupt_answer`); and ``polite_pileup`` (every opener at once)."""

DEFAULT_STYLES = ("reference", "opener", "fillers", "opener_fillers", "unclean_end", "wrong_answer",
                  "wrong_answer_opener")
"""The styles :func:`off_policy_pairs` uses by default. ``polite_pileup`` is left out on purpose: in data where
a reply carries at most one polite opener, "more polite = better" looks like a perfect rule, which is the
Goodhart lever of ch 14 (``world.judge``). Add it to see a reward model learn that piling up costs."""


def styled_replies(problem: world.Problem, rng: random.Random, styles=DEFAULT_STYLES) -> dict[str, str]:
    """One reply per style for ``problem`` (:data:`STYLES`), ``{style: reply}``."""
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise ValueError(f"unknown style(s) {unknown}; expected names from {sorted(STYLES)}")
    return {s: STYLES[s](problem, rng) for s in styles}


def off_policy_pairs(prompts, replies: dict[str, list[str]] | None = None, styles=DEFAULT_STYLES,
                     pairs_per_prompt: int | None = 4, annotator: str | world.Annotator = "gold",
                     ties: str = "drop", seed: int = 0) -> PreferencePairs:
    """Pairs of replies from several sources per prompt, labelled by a simulated annotator.

    Args:
        prompts: world prompts (strings) or ``world.Problem`` objects.
        replies: other sources' replies, ``{source: [reply per prompt]}`` (e.g. ``{"base": ..., "sft": ...}``
            from ``generation.generate(...).texts``), each list aligned with ``prompts``.
        styles: the world's reply styles to add (:data:`STYLES`; :data:`DEFAULT_STYLES`).
        pairs_per_prompt: distinct pairs of sources drawn per prompt (``None``: every pair of sources).
        annotator, ties: see :func:`label_pairs`.
        seed: seeds the styles' random choices, the choice of pairs and the labels.

    Returns:
        :class:`PreferencePairs`; each pair records ``chosen_source`` and ``rejected_source``.
    """
    problems = _problems(prompts)
    replies = dict(replies or {})
    for source, texts in replies.items():
        if len(texts) != len(problems):
            raise ValueError(f"replies[{source!r}] has {len(texts)} replies for {len(problems)} prompts; "
                             "each source needs one reply per prompt, in order")
        if source in styles:
            raise ValueError(f"replies source {source!r} has the name of a style; rename it")
    if len(replies) + len(styles) < 2:
        raise ValueError("need at least two sources (replies and styles together) to make a pair")
    rng = random.Random(f"off-policy-{seed}")
    candidates = []
    for k, problem in enumerate(problems):
        by_source = {s: texts[k] for s, texts in replies.items()}
        by_source.update(styled_replies(problem, rng, styles))
        names = list(by_source)
        for i, j in _index_pairs(len(names), pairs_per_prompt, rng):
            a, b = names[i], names[j]
            candidates.append((problem, by_source[a] or "", by_source[b] or "", {"a_source": a, "b_source": b}))
    return label_pairs(candidates, annotator, random.Random(f"off-policy-labels-{seed}"), ties)


# --------------------------------------------------------------------------------------------------
# Label noise, data size, splits, the Bayes ceiling
# --------------------------------------------------------------------------------------------------


def minimal_pairs(prompts, annotator: str | world.Annotator = "gold", seed: int = 0) -> PreferencePairs:
    """*Minimal pairs*: two replies to a prompt that differ **only in the answer**, one right and one wrong.

    Each pair draws one random style (a polite opener or none, 0–2 filler sentences, the final punctuation kept
    or dropped) and writes the reply twice in it: with the reference answer, and with :func:`corrupt_answer`'s
    wrong one (a sum off by 1–9, one letter of a reversal changed, another value of the creature's attribute, the
    opposite sentiment)::

        chosen:   "Sure! 17 + 25 = 42. I hope this helps."
        rejected: "Sure! 17 + 25 = 47. I hope this helps."

    Every pair is a correctness pair (:func:`pair_kind`) and nothing but correctness separates its two sides,
    so a reward model cannot fit these labels by reading style: what a pair *contrasts* is what a model trained
    on it can learn. Lesson 05 (exercise 7) trains ``sft-tiny``'s reward model on them alone.

    Args:
        prompts: world prompts (strings) or ``world.Problem`` objects; one pair each.
        annotator, seed: as in :func:`off_policy_pairs` (``seed`` seeds the styles, the wrong answers and the
            labels). With the ``gold`` annotator the right reply is chosen with probability above 0.99.

    Returns:
        :class:`PreferencePairs` with ``chosen_source`` / ``rejected_source`` ``"right"`` or ``"wrong"``.
    """
    rng = random.Random(f"minimal-{seed}")
    candidates = []
    for problem in _problems(prompts):
        opener = rng.choice(POLITE_OPENERS) if rng.random() < 0.5 else None
        style = dict(opener=opener, fillers=rng.randint(0, 2), clean_end=rng.random() < 0.8)
        right = world.render_response(problem, **style)
        wrong = world.render_response(problem, answer=corrupt_answer(problem, rng), **style)
        candidates.append((problem, right, wrong, {"a_source": "right", "b_source": "wrong"}))
    return label_pairs(candidates, annotator, random.Random(f"minimal-labels-{seed}"))


def counterfactual_pairs(rows: list[dict], seed: int = 0, annotator: str | world.Annotator = "gold",
                         max_per_prompt: int | None = None) -> PreferencePairs:
    """*Counterfactual* minimal pairs from the replies of existing pairs: each distinct reply, written once with its
    answer right and once wrong (``world.set_answer``), everything else as it was (RRM, Liu et al. 2024).

    Unlike :func:`minimal_pairs`, whose replies are the world's own styles, these keep the replies' own wording
    (``sft-tiny``'s samples, the base model's, the styled ones), so the one difference a reward model can learn
    from sits in the replies it will actually score::

        "Of course! 24 + 11 = 35. I hope this helps."  ≻  "Of course! 24 + 11 = 38. I hope this helps."

    Args:
        rows: preference pairs (``prompt``, ``chosen``, ``rejected``); every distinct (prompt, reply) is used once.
        seed: seeds the wrong answers, the order of the result and the labels.
        annotator: who labels the pairs (``gold``: the right reply is chosen with probability above 0.99).
        max_per_prompt: keep at most this many pairs per prompt (``None``: all).

    Returns:
        :class:`PreferencePairs` with ``chosen_source`` / ``rejected_source`` ``"right"`` / ``"wrong"``; counts
        add ``replies`` (distinct replies seen) and ``no_answer`` (replies without an answer to edit).
    """
    rng = random.Random(f"counterfactual-{seed}")
    seen: set[tuple[str, str]] = set()
    per_prompt: dict[str, int] = {}
    candidates, n_replies, n_none = [], 0, 0
    for row in rows:
        problem = world.parse_prompt(row["prompt"])
        for reply in (row["chosen"], row["rejected"]):
            if (row["prompt"], reply) in seen or not reply:
                continue
            seen.add((row["prompt"], reply))
            n_replies += 1
            right, wrong = world.set_answer(problem, reply, True, rng), world.set_answer(problem, reply, False, rng)
            if right is None or wrong is None:
                n_none += 1
                continue
            if max_per_prompt is not None and per_prompt.get(row["prompt"], 0) >= max_per_prompt:
                continue
            per_prompt[row["prompt"]] = per_prompt.get(row["prompt"], 0) + 1
            candidates.append((problem, right, wrong, {"a_source": "right", "b_source": "wrong"}))
    rng.shuffle(candidates)
    built = label_pairs(candidates, annotator, random.Random(f"counterfactual-labels-{seed}"))
    return PreferencePairs(built.rows, {**built.counts, "replies": n_replies, "no_answer": n_none})


def flip_labels(rows: list[dict], epsilon: float, seed: int = 0) -> tuple[list[dict], int]:
    """Swap chosen and rejected in each decisive pair with probability ε: symmetric label noise.

    Flipped pairs get ``p_chosen → 1 − p_chosen`` (still the annotator's probability for the reply now called
    chosen) and ``flipped = True``; every pair records ``label_noise = ε``, which :func:`pairs_bayes_ceiling`
    uses: with noise the label agrees with the likelier reply with probability
    (1 − ε)·max(p, 1 − p) + ε·min(p, 1 − p). Ties (``label = 0.5``) have no order to flip. The input is not
    modified.

    Returns:
        ``(new_rows, n_flipped)``.
    """
    if not 0.0 <= epsilon <= 0.5:
        raise ValueError(f"epsilon must lie in [0, 0.5] (more than 0.5 is a flipped data set); got {epsilon}")
    rng = random.Random(f"flip-{seed}")
    out, n_flipped = [], 0
    for row in rows:
        row = {**row, "label_noise": epsilon, "flipped": bool(row.get("flipped", False))}
        if row.get("label", 1.0) == 1.0 and rng.random() < epsilon:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            if "p_chosen" in row:
                row["p_chosen"] = 1.0 - row["p_chosen"]
            if "chosen_source" in row:
                row["chosen_source"], row["rejected_source"] = row["rejected_source"], row["chosen_source"]
            row["flipped"] = not row["flipped"]
            n_flipped += 1
        out.append(row)
    return out, n_flipped


def subsample_pairs(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """The first ``n`` pairs of one permutation fixed by ``seed``: subsets for a data-size curve are *nested*
    (the 100-pair set is inside the 1,000-pair set), so a curve's points differ only by the added data."""
    if not 0 <= n <= len(rows):
        raise ValueError(f"n must be in 0..{len(rows)} (the number of pairs); got {n}")
    order = list(range(len(rows)))
    random.Random(f"subsample-{seed}").shuffle(order)
    return [rows[i] for i in order[:n]]


def split_pairs(rows: list[dict]) -> dict[str, list[dict]]:
    """``{"train": [...], "heldout": [...]}`` by each pair's prompt key (``world.split_of`` of
    ``world.parse_prompt``): every phrasing of a held-out question, and its symmetric twins, land on one side."""
    out: dict[str, list[dict]] = {"train": [], "heldout": []}
    for i, row in enumerate(rows):
        try:
            problem = world.parse_prompt(row["prompt"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"pair {i}: cannot split by prompt key: {e}") from e
        out[world.split_of(problem.family, problem.key)].append(row)
    return out


def pair_kind(row: dict) -> str:
    """``"correctness"`` when exactly one reply of the pair is correct (``world.is_correct``), else ``"taste"``
    (both right or both wrong: only the taste features can separate them). A reward model must check the answer
    to order the first kind, and only read the style to order the second."""
    problem = world.parse_prompt(row["prompt"])
    return "correctness" if world.is_correct(problem, row["chosen"]) != world.is_correct(problem, row["rejected"]) \
        else "taste"


def pairs_bayes_ceiling(rows: list[dict], annotator: str | world.Annotator = "gold") -> float:
    """The best expected accuracy any reward model can reach on these pairs' labels (ties excluded).

    .. math::  \\mathrm{ceiling} = \\frac{1}{N} \\sum_i \\Big[ \\tfrac12 + (1 - 2\\varepsilon_i)
                 \\big(\\max(p_i, 1 - p_i) - \\tfrac12\\big) \\Big]

    with p_i the labeller's ``p_chosen`` and ε_i the pair's ``label_noise`` (0 when absent). Without noise
    this is ``preferences.bayes_ceiling`` of the annotator's utilities; a pair without ``p_chosen`` gets
    ``world.bayes_ceiling_pair(annotator, ...)``.
    """
    per_pair = [best for _, best in _decisive_pair_ceilings(rows, annotator)]
    if not per_pair:
        raise ValueError("no decisive pair (label 1.0) to compute a Bayes ceiling on")
    return sum(per_pair) / len(per_pair)


def _decisive_pair_ceilings(rows: list[dict], annotator) -> list[tuple[dict, float]]:
    """(row, its best accuracy ½ + |1 − 2ε|·(max(p, 1 − p) − ½)) for each decisive row (ties skipped)."""
    ann = None
    out = []
    for row in rows:
        if row.get("label", 1.0) != 1.0:
            continue  # a tie has no order to predict
        if "p_chosen" in row:
            best = max(row["p_chosen"], 1.0 - row["p_chosen"])
        else:
            ann = ann or _annotator(annotator)
            best = world.bayes_ceiling_pair(ann, row["prompt"], row["chosen"], row["rejected"])
        eps = row.get("label_noise", 0.0)
        out.append((row, 0.5 + abs(1.0 - 2.0 * eps) * (best - 0.5)))
    return out


def knowledge_reach(rows: list[dict], knows: dict[str, bool], annotator: str | world.Annotator = "gold") -> float:
    """The accuracy a reward model would reach if it read taste perfectly but could check an answer only where
    its backbone knows it: an *estimate* of how far the backbone's knowledge lets a reward model go.

    .. math::  \\mathrm{reach} = \\frac{1}{N} \\sum_i r_i, \\qquad
               r_i = \\begin{cases} a_i & \\text{taste pair, or the backbone knows } x_i \\\\
               \\tfrac12 & \\text{a correctness pair it does not know (a coin flip)} \\end{cases}

    with a_i the pair's Bayes-optimal accuracy (as in :func:`pairs_bayes_ceiling`, ties excluded). With every prompt
    known it equals the ceiling. Not a bound: a reward model may *recognise* a right answer it could not write,
    and surface cues may beat a coin flip; nor may it reach it (it still has to learn to check).

    Args:
        rows: preference pairs with ``prompt``, ``chosen``, ``rejected`` (and ``p_chosen``, ``label``).
        knows: for the prompt of every correctness pair (:func:`pair_kind`), whether the backbone answers it
            correctly (e.g. its greedy reply, ``evaluation.evaluate_chat``).
        annotator: whose preferences the per-pair ceilings use for pairs without ``p_chosen`` (as in
            :func:`pairs_bayes_ceiling`).
    Raises:
        ValueError: a correctness pair whose prompt ``knows`` lacks, or no decisive pair.
    """
    per_pair = []
    for row, best in _decisive_pair_ceilings(rows, annotator):
        if pair_kind(row) == "correctness":
            if row["prompt"] not in knows:
                raise ValueError(f"knows has no entry for the prompt {row['prompt']!r} (a correctness pair): "
                                 "expected whether the backbone answers every such prompt correctly")
            best = best if knows[row["prompt"]] else 0.5
        per_pair.append(best)
    if not per_pair:
        raise ValueError("no decisive pair (label 1.0) to compute a knowledge reach on")
    return sum(per_pair) / len(per_pair)


# --------------------------------------------------------------------------------------------------
# Tokens: pairs → token ids → a stacked (2B, T) batch
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# The shipped data set: data/preferences/{train,heldout}.jsonl (`rlhfbook-lab pref-data`)
# --------------------------------------------------------------------------------------------------


