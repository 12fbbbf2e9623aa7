"""Tests for rlhfbook_lab.world: tasks and checkers, the gold judge's taste table, annotators, the corpus."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest

from rlhfbook_lab.world import (
    ANNOTATORS,
    EMPTY_RESPONSE_SCORE,
    FAMILIES,
    FEATURES,
    GOLD_WEIGHTS,
    Annotator,
    Problem,
    bayes_ceiling_pair,
    count_polite,
    gold_score,
    heldout_prompts,
    instruction_data,
    is_correct,
    make_problem,
    parse_prompt,
    pretraining_corpus,
    render_response,
    sample_problem,
    split_of,
    statement,
    statement_prefixes,
    taste_features,
)
from rlhfbook_lab.world.corpus import PRETRAIN_MIX
from rlhfbook_lab.world.judge import FILLERS, POLITE_OPENERS
from rlhfbook_lab.world.tasks import (
    ADD_MAX,
    ADD_TEMPLATES,
    ATTRIBUTES,
    CREATURE_NAMES,
    CREATURE_QUESTIONS,
    CREATURES,
    HELDOUT_FRACTION,
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    PRODUCTS,
    REVERSE_TEMPLATES,
    REVIEW_TEMPLATES,
    SENTIMENTS,
    WORDS,
    random_string,
    sample_key,
)

ADD = make_problem("addition", (17, 25))  # "What is 17 + 25?" -> "17 + 25 = 42."


def _templates(family: str, key) -> tuple[str, ...]:
    if family == "creatures":
        return CREATURE_QUESTIONS[key[1]]
    return {"addition": ADD_TEMPLATES, "reverse": REVERSE_TEMPLATES, "review": REVIEW_TEMPLATES}[family]


def _all_keys(rng: random.Random) -> dict[str, list]:
    """Every key of the finite families, and the word list plus 200 random strings for `reverse`."""
    return {
        "addition": [(a, b) for a in range(ADD_MAX + 1) for b in range(ADD_MAX + 1)],
        "reverse": list(WORDS) + [random_string(rng) for _ in range(200)],
        "creatures": [(c, attr) for c in CREATURE_NAMES for attr in ATTRIBUTES],
        "review": [(s, p) for s in SENTIMENTS for p in PRODUCTS],
    }


def _wrong_answer(problem: Problem) -> str:
    """A wrong answer with the same number of words as the reference (so only `correct` differs)."""
    if problem.family == "addition":
        a, b = problem.key
        return f"{a} + {b} = {a + b + 1}."
    if problem.family == "reverse":
        w = problem.key
        return f"The reverse of {w} is {w[::-1]}x."  # the reversal plus one letter: never the reversal
    if problem.family == "creatures":
        c, attr = problem.key
        right = CREATURES[c][attr]
        other = next(v for v in ATTRIBUTES[attr] if v != right)
        return problem.reference[: -len(right + ".")] + other + "."  # references end with "<value>."
    s, p = problem.key
    return f"The {p} is awful. I hate it." if s == "positive" else f"The {p} is great. I love it."


# ---------------------------------------------------------------------------------------------------------
# tasks: references, prompts, checkers, splits
# ---------------------------------------------------------------------------------------------------------


def test_make_problem_hand_values():
    assert ADD == Problem("addition", (17, 25), "What is 17 + 25?", "17 + 25 = 42.")
    assert make_problem("addition", (17, 25), template=4).prompt == "Add 17 and 25."  # 4 wraps to 1
    assert make_problem("reverse", "mirt").reference == "The reverse of mirt is trim."
    assert make_problem("creatures", ("blorp", "food")).reference == "The blorp eats moss."
    assert make_problem("creatures", ("blorp", "home"), 1).prompt == "Tell me where the blorp lives."
    assert make_problem("review", ("negative", "lamp"), 1).prompt == "Review the lamp in a negative way."
    assert make_problem("review", ("negative", "lamp")).reference == "The lamp is awful. I hate it."


def test_creature_table_is_frozen():
    # The shipped base model learned these facts; a change to the table's seed would silently make it wrong.
    assert CREATURES["blorp"] == {"color": "pink", "home": "pond", "food": "moss"}
    assert CREATURES["zorb"] == {"color": "pink", "home": "river", "food": "leaves"}
    assert len(CREATURES) == 30 and all(set(v) == set(ATTRIBUTES) for v in CREATURES.values())


def test_every_reference_is_correct_and_every_template_round_trips():
    keys = _all_keys(random.Random(0))
    for family in FAMILIES:
        for key in keys[family]:
            for t in range(len(_templates(family, key))):
                problem = make_problem(family, key, template=t)
                assert is_correct(problem, problem.reference), problem
                assert parse_prompt(problem.prompt) == problem  # family, key, prompt and reference recovered
    # a prompt with surrounding whitespace still parses (to the stripped text)
    assert parse_prompt("  What is 17 + 25?\n") == ADD


def test_all_phrasings_are_distinct():
    for family in FAMILIES:
        key = _all_keys(random.Random(0))[family][3]
        prompts = {make_problem(family, key, t).prompt for t in range(len(_templates(family, key)))}
        assert len(prompts) == len(_templates(family, key))


@pytest.mark.parametrize("response, expected", [
    ("17 + 25 = 42.", True),
    ("42", True),
    ("17 + 25 = 41.", False),
    ("17 + 25 = -42.", False),
    ("41? No: 17 + 25 = 42.", True),        # answer extraction takes the LAST integer ...
    ("The answer is 42, not 41.", False),   # ... so a trailing wrong number is what counts
    ("Seventeen plus twenty-five is forty-two.", False),
    ("", False),
])
def test_addition_checker(response, expected):
    assert is_correct(ADD, response) is expected


@pytest.mark.parametrize("response, expected", [
    ("The reverse of mirt is trim.", True),
    ("The reverse of mirt is trim. I hope this helps. Thank you for asking. Let me know if you need more.",
     True),
    ("trim", True),                               # no "is": the last word
    ("The reverse of mirt is tirm.", False),      # one letter swapped
    ("The reverse of mirt is mirt.", False),      # echoes the word
    ("The reverse of mirt is trim. This is wrong.", False),  # the word after the LAST "is" is the answer
    ("The reverse of mirt is trim. It is", True),  # a final dangling "is" has no answer after it: ignored
    ("is", False),
    ("", False),
])
def test_reverse_checker(response, expected):
    assert is_correct(make_problem("reverse", "mirt"), response) is expected


def test_creature_and_review_checkers():
    p = make_problem("creatures", ("blorp", "color"))  # the blorp is pink
    assert is_correct(p, "The blorp is pink.")
    assert is_correct(p, "Sure! It is PINK, I think.")
    assert not is_correct(p, "The blorp is blue.")
    assert not is_correct(p, "The blorp is pink or blue.")  # two colors: no credit
    assert not is_correct(p, "The blorp lives in the pond.")  # right fact, wrong attribute
    pos = make_problem("review", ("positive", "lamp"))
    assert is_correct(pos, "The lamp is great. I love it.")
    assert is_correct(pos, "The lamp is sturdy, handy and a bit noisy.")  # 2 positive vs 1 negative
    assert not is_correct(pos, "The lamp is awful. I hate it.")  # only negative words
    assert not is_correct(pos, "It is great. I love it.")  # does not name the product
    assert not is_correct(pos, "The lamp is great but flimsy.")  # lean 0
    assert not is_correct(pos, "The lamp is a lamp.")  # no sentiment at all
    assert not is_correct(pos, "The chair is great. I love it.")  # another product
    neg = make_problem("review", ("negative", "lamp"))
    assert is_correct(neg, "The lamp is awful. I hate it.")
    assert not is_correct(neg, "The lamp is great. I love it.")
    assert set(POSITIVE_WORDS).isdisjoint(NEGATIVE_WORDS)


def test_wrong_answers_of_every_family_are_wrong():
    rng = random.Random(1)
    for family in FAMILIES:
        for _ in range(50):
            problem = sample_problem(family, rng)
            assert not is_correct(problem, _wrong_answer(problem)), problem


@pytest.mark.parametrize("prompt", [
    "Hello", "", "What is 17 + 25", "What is 50 + 1?", "What does the dragon eat?", "Spell Mirt backward.",
    "Write a positive review of the car.", "Write a neutral review of the lamp.", "What color is the lamp?",
])
def test_parse_prompt_rejects_unknown_tasks(prompt):
    with pytest.raises(ValueError, match="unknown task"):
        parse_prompt(prompt)


@pytest.mark.parametrize("prompt", [None, 17, ["What is 1 + 2?"]])
def test_parse_prompt_rejects_non_strings(prompt):
    with pytest.raises(ValueError, match="prompt must be a string"):
        parse_prompt(prompt)


def test_split_of_fractions_and_stability():
    keys = _all_keys(random.Random(0))
    for family in ("addition", "reverse"):
        frac = sum(split_of(family, k) == "heldout" for k in keys[family]) / len(keys[family])
        assert abs(frac - HELDOUT_FRACTION[family]) < 0.05, (family, frac)
    # creatures split by creature, whatever the attribute
    for c in CREATURE_NAMES:
        assert {split_of("creatures", (c, a)) for a in ATTRIBUTES} == {split_of("creatures", c)}
    # frozen: shipped checkpoints were trained on this split; changing the hash would leak held-out keys
    assert [c for c in CREATURE_NAMES if split_of("creatures", c) == "heldout"] == [
        "blorp", "mimbo", "trell", "plov", "crumb", "vesk", "keppo"]
    assert [k for k in keys["review"] if split_of("review", k) == "heldout"] == [
        ("positive", "kettle"), ("positive", "bike"), ("negative", "lamp"), ("negative", "phone"),
        ("negative", "tent"), ("negative", "mug"), ("negative", "sofa")]
    assert split_of("addition", (17, 25)) == "heldout" and split_of("addition", (14, 11)) == "train"
    assert sum(split_of("addition", k) == "heldout" for k in keys["addition"]) == 486  # of 2,500 pairs
    held_words = [w for w in WORDS if split_of("reverse", w) == "heldout"]
    assert len(held_words) == 40 and held_words[:4] == ["bed", "bell", "bird", "boat"]


def test_sample_key_respects_split():
    rng = random.Random(2)
    for family in FAMILIES:
        for split in ("train", "heldout"):
            for _ in range(100):
                assert split_of(family, sample_key(family, rng, split)) == split


@pytest.mark.parametrize("call", [
    lambda: make_problem("subtraction", (1, 2)),
    lambda: sample_key("subtraction", random.Random(0)),
    lambda: sample_problem("subtraction", random.Random(0)),
    lambda: split_of("subtraction", (1, 2)),
    lambda: instruction_data(3, families=("addition", "subtraction")),
    lambda: statement("subtraction", (1, 2)),
    lambda: heldout_prompts(3, families=("subtraction",)),
], ids=["make_problem", "sample_key", "sample_problem", "split_of", "instruction_data", "statement",
        "heldout_prompts"])
def test_unknown_family_raises(call):
    with pytest.raises(ValueError, match="unknown task family 'subtraction'"):
        call()


@pytest.mark.parametrize("call", [
    lambda: sample_key("addition", random.Random(0), "test"),
    lambda: sample_problem("addition", random.Random(0), "validation"),
    lambda: pretraining_corpus(3, split="dev"),
    lambda: instruction_data(3, split="Train"),
], ids=["sample_key", "sample_problem", "pretraining_corpus", "instruction_data"])
def test_bad_split_raises(call):
    with pytest.raises(ValueError, match="split must be 'train' or 'heldout'"):
        call()


# ---------------------------------------------------------------------------------------------------------
# the gold judge
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response, expected", [
    # plain reference: correct 1.00, nothing else                                       = 1.00
    ("17 + 25 = 42.", 1.00),
    # opener: 1.00 + 0.20 (the opener's word is not "extra")                            = 1.20
    ("Sure! 17 + 25 = 42.", 1.20),
    # render_response(opener="Sure!", fillers=2): polite = sure!, i hope this helps, thank you -> excess 2;
    # words Sure 17 25 42 I hope this helps Thank you for asking = 12, minus 1 opener, minus 3 ref = 8 extra
    # 1.00 + 0.20 - 2*0.25 - 8*0.03                                                     = 0.46
    ("Sure! 17 + 25 = 42. I hope this helps. Thank you for asking.", 0.46),
    # wrong answer, nothing else                                                        = 0.00
    ("17 + 25 = 41.", 0.00),
    # wrong answer with an opener: the best a wrong answer can do                       = 0.20
    ("Sure! 17 + 25 = 41.", 0.20),
    # no final punctuation: 1.00 - 0.30                                                 = 0.70
    ("17 + 25 = 42", 0.70),
    # said twice: words 17 25 42 17 25 42 -> 3 extra; trigrams (17,25,42) (25,42,17) (42,17,25) (17,25,42)
    # -> 1 repeat; 1.00 - 3*0.03 - 1*0.10                                                = 0.81
    ("17 + 25 = 42. 17 + 25 = 42.", 0.81),
    # 10 x "la": 10 extra words; 11 trigrams, 4 distinct -> 7 repeats, capped at 5: 1.00 - 0.30 - 0.50 = 0.20
    ("17 + 25 = 42" + " la" * 10 + ".", 0.20),
    # 25 x "la": 25 extra capped at 20, 22 repeats capped at 5: 1.00 - 0.60 - 0.50       = -0.10
    ("17 + 25 = 42" + " la" * 25 + ".", -0.10),
    # lower-case "sure!" is polite (count 1, excess 0) but not the opener; 1 extra word  = 0.97
    ("sure! 17 + 25 = 42.", 0.97),
])
def test_gold_score_hand_values_addition(response, expected):
    assert gold_score(ADD.prompt, response) == pytest.approx(expected, abs=1e-12)
    assert gold_score(ADD, response) == pytest.approx(expected, abs=1e-12)  # a Problem works too


def test_gold_score_hand_values_other_families():
    review = make_problem("review", ("positive", "lamp"))
    # Happy to help (3 opener words) + The lamp is great I love it (7 = ref) + Let me know if you need
    # more (7) -> 7 extra; "happy to help!" is the only polite phrase: 1.00 + 0.20 - 7*0.03 = 0.99
    reply = "Happy to help! The lamp is great. I love it. Let me know if you need more."
    assert gold_score(review.prompt, reply) == pytest.approx(0.99)
    # "The lamp is great. The lamp is great." -> trigrams the-lamp-is, lamp-is-great repeat: 2 repeats;
    # 8 words vs 7 -> 1 extra; still correct (product named, 2 positive words): 1.00 - 0.03 - 0.20 = 0.77
    assert gold_score(review.prompt, "The lamp is great. The lamp is great.") == pytest.approx(0.77)
    reverse = make_problem("reverse", "mirt")
    # "Of course!" is 2 opener words; one filler "I hope this helps." is a second polite phrase and 4 extra
    # words: 1.00 + 0.20 - 0.25 - 0.12 = 0.83
    reply = render_response(reverse, opener="Of course!", fillers=1)
    assert gold_score(reverse.prompt, reply) == pytest.approx(0.83)
    creature = make_problem("creatures", ("blorp", "color"))
    # shorter than the reference is not rewarded (extra words floor at 0): 1.00
    assert gold_score(creature.prompt, "Pink.") == pytest.approx(1.0)
    for family, key in (("reverse", "mirt"), ("creatures", ("zorb", "home")),
                        ("review", ("negative", "mug"))):
        p = make_problem(family, key)
        assert gold_score(p.prompt, p.reference) == pytest.approx(1.0)
        assert gold_score(p.prompt, "Sure! " + p.reference) == pytest.approx(1.2)


def _independent_gold(opener: str | None, fillers: int, correct: bool, clean_end: bool) -> float:
    """The taste table applied to a reply's *construction*, with no text analysis at all (fillers <= 3, so no
    3-gram repeats; wrong answers have the reference's word count)."""
    filler_words = [len(f.split()) for f in FILLERS]             # 4, 4, 7
    filler_polite = [1, 1, 0]                                     # "I hope this helps", "Thank you", -
    n_polite = (opener is not None) + sum(filler_polite[:fillers])
    return (1.00 * correct + 0.20 * (opener is not None) - 0.25 * max(0, n_polite - 1)
            - 0.03 * min(20, sum(filler_words[:fillers])) - 0.30 * (not clean_end))


def test_gold_score_matches_two_other_implementations():
    rng = random.Random(3)
    for _ in range(300):
        problem = sample_problem(rng.choice(FAMILIES), rng)
        opener = rng.choice((None, *POLITE_OPENERS))
        fillers, correct, clean_end = rng.randrange(4), rng.random() < 0.5, rng.random() < 0.7
        answer = None if correct else _wrong_answer(problem)
        reply = render_response(problem, opener, fillers, answer, clean_end)
        g = gold_score(problem.prompt, reply)
        f = taste_features(problem.prompt, reply)
        assert set(f) == set(FEATURES)
        assert g == pytest.approx(sum(GOLD_WEIGHTS[k] * f[k] for k in FEATURES), abs=1e-12)  # Σ w·f
        assert g == pytest.approx(_independent_gold(opener, fillers, correct, clean_end), abs=1e-12), reply


def test_goodhart_lever_politeness_is_non_monotone():
    openers = ("Sure!", "Happy to help!", "Of course!")
    rng = random.Random(4)
    for family in FAMILIES:
        p = sample_problem(family, rng)
        scores = [gold_score(p.prompt, " ".join([*openers[:k], p.reference])) for k in range(4)]
        assert scores[1] > scores[0]  # the first polite phrase pays ...
        assert scores[1] > scores[2] > scores[3]  # ... every further one costs
    # addition: k=0: 1.00; k=1: 1.20; k=2 ("Happy to help!" is 3 extra words, 1 excess phrase):
    # 1.00 + 0.20 - 0.25 - 3*0.03 = 0.86; k=3 ("Of course!" 2 more words):
    # 1.00 + 0.20 - 2*0.25 - 5*0.03 = 0.55
    scores = [gold_score(ADD.prompt, " ".join([*openers[:k], ADD.reference])) for k in range(4)]
    assert scores == pytest.approx([1.00, 1.20, 0.86, 0.55])
    # fillers: a longer reply is never better once it is correct
    for opener in (None, *POLITE_OPENERS):
        s = [gold_score(ADD.prompt, render_response(ADD, opener, fillers=k)) for k in range(8)]
        assert all(x >= y for x, y in itertools.pairwise(s)) and s[0] > s[-1]


def test_correctness_dominates_taste():
    rng = random.Random(5)
    styles = list(itertools.product((None, *POLITE_OPENERS), range(4), (True, False)))
    for family in FAMILIES:
        for _ in range(10):
            p = sample_problem(family, rng)
            for opener, fillers, clean_end in styles:
                right = gold_score(p.prompt, render_response(p, opener, fillers, None, clean_end))
                wrong = gold_score(p.prompt, render_response(p, opener, fillers, _wrong_answer(p), clean_end))
                assert right - wrong == pytest.approx(1.0)  # same style, same length: exactly the weight
                assert wrong <= 0.20 + 1e-12  # "a wrong answer at most 0.20"
            assert gold_score(p.prompt, p.reference) > max(  # a correct plain reply beats every wrong one
                gold_score(p.prompt, render_response(p, o, f, _wrong_answer(p), c)) for o, f, c in styles)


def test_custom_weights_change_the_score_as_the_dict_says():
    reply = "Sure! 17 + 25 = 42. I hope this helps. Thank you for asking."  # features: 1, 1, 2, 8, 0, 0
    f = taste_features(ADD.prompt, reply)
    assert f == {"correct": 1.0, "polite_opener": 1.0, "polite_excess": 2.0, "extra_words": 8.0,
                 "unclean_end": 0.0, "repetition": 0.0}
    for k in FEATURES:  # a one-hot table reads off that feature
        assert gold_score(ADD.prompt, reply, weights={k: 1.0}) == f[k]
    assert gold_score(ADD.prompt, reply, weights={"correct": 2.0, "extra_words": -0.5}) == pytest.approx(-2.0)
    assert gold_score(ADD.prompt, reply, weights={}) == 0.0
    # the table is linear in the weights: g(w1 + w2) = g(w1) + g(w2)
    w1, w2 = ANNOTATORS["friendly"].weights, ANNOTATORS["terse"].weights
    both = {k: w1[k] + w2[k] for k in FEATURES}
    assert gold_score(ADD.prompt, reply, weights=both) == pytest.approx(
        gold_score(ADD.prompt, reply, weights=w1) + gold_score(ADD.prompt, reply, weights=w2))
    # changing one row of the spec (ch 17): politeness now penalised, the opener reply falls below plain
    spec = dict(GOLD_WEIGHTS, polite_opener=-0.20)
    assert gold_score(ADD.prompt, "Sure! 17 + 25 = 42.", weights=spec) == pytest.approx(0.80)
    assert GOLD_WEIGHTS["polite_opener"] == 0.20  # the default table was not mutated


def test_count_polite():
    assert count_polite("Sure! Happy to help! Of course! Thank you. I hope this helps.") == 5
    assert count_polite("SURE! sure! thank you, THANK YOU") == 4
    assert count_polite("17 + 25 = 42. Let me know if you need more.") == 0


def test_unknown_feature_in_weights_raises():
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['kindness'\]"):
        gold_score(ADD.prompt, ADD.reference, weights={"correct": 1.0, "kindness": 0.5})


@pytest.mark.parametrize("response, match", [
    ("", "response is empty"),
    ("   \n\t", "response is empty"),
    (None, "response must be a string; got NoneType"),
    (42, "response must be a string; got int"),
])
def test_gold_score_bad_response_raises(response, match):
    with pytest.raises(ValueError, match=match):
        gold_score(ADD.prompt, response)
    if response is None or isinstance(response, int):  # allow_empty does not excuse a non-string
        with pytest.raises(ValueError, match=match):
            gold_score(ADD.prompt, response, allow_empty=True)


def test_allow_empty():
    assert gold_score(ADD.prompt, "", allow_empty=True) == EMPTY_RESPONSE_SCORE
    assert gold_score(ADD, "  ", allow_empty=True) == EMPTY_RESPONSE_SCORE
    assert gold_score(ADD.prompt, ADD.reference, allow_empty=True) == 1.0  # non-empty replies unaffected
    # worse than a plain wrong answer (0.00) -- though not a floor: polite_excess is uncapped, and a wrong,
    # unfinished, polite ramble scores 0.20 - 2*0.25 - 15*0.03 - 0.30 = -1.05
    assert EMPTY_RESPONSE_SCORE < gold_score(ADD.prompt, "17 + 25 = 41.")
    assert gold_score(ADD.prompt, render_response(ADD, "Sure!", 3, "17 + 25 = 41.", clean_end=False)) == (
        pytest.approx(-1.05))
    with pytest.raises(ValueError, match="unknown task"):
        gold_score("Tell me a joke.", "", allow_empty=True)


@pytest.mark.parametrize("prompt", ["Tell me a joke.", "What is 99 + 1?", None])
def test_gold_score_unknown_prompt_raises(prompt):
    with pytest.raises(ValueError, match="unknown task|prompt must be a string"):
        gold_score(prompt, "42.")
    with pytest.raises(ValueError, match="unknown task|prompt must be a string"):
        taste_features(prompt, "42.")


def test_render_response_hand_values():
    assert render_response(ADD, opener="Sure!", fillers=2) == (
        "Sure! 17 + 25 = 42. I hope this helps. Thank you for asking.")
    assert render_response(ADD, fillers=4).endswith("Let me know if you need more. I hope this helps.")
    assert render_response(ADD, answer="17 + 25 = 41.", clean_end=False) == "17 + 25 = 41"


# ---------------------------------------------------------------------------------------------------------
# annotators
# ---------------------------------------------------------------------------------------------------------

PLAIN, OPENER = "17 + 25 = 42.", "Sure! 17 + 25 = 42."  # gold 1.00 and 1.20
RAMBLING = "Sure! 17 + 25 = 42. I hope this helps. Thank you for asking."  # gold 0.46


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_hand_value():
    # gold annotator, τ = 0.1: (1.20 - 1.00)/0.1 = 2; σ(2) = 0.8807970779778823
    pa, pb, pt = ANNOTATORS["gold"].probabilities(ADD.prompt, OPENER, PLAIN)
    assert (pa, pb, pt) == pytest.approx((0.8807970779778823, 0.1192029220221177, 0.0), abs=1e-12)
    ceiling = bayes_ceiling_pair(ANNOTATORS["gold"], ADD.prompt, OPENER, PLAIN)
    assert ceiling == pytest.approx(0.8807970779778823)


def test_davidson_hand_value_and_second_implementation():
    ann = Annotator("d", tau=0.2, tie_strength=0.8)
    # d = (1.20 - 1.00)/0.2 = 1; z = e^0.5 + e^-0.5 + 0.8 = 3.05511...; P = (e^0.5, e^-0.5, 0.8)/z
    assert ann.probabilities(ADD.prompt, OPENER, PLAIN) == pytest.approx(
        (0.5396351293614559, 0.19852066982597136, 0.2618442008125729), abs=1e-12)
    # equal replies, ν = 1: a third each (the docstring's "ties about a third of the time")
    assert Annotator("t", tie_strength=1.0).probabilities(ADD, PLAIN, PLAIN) == pytest.approx((1 / 3,) * 3)
    # second implementation: Davidson's strengths π = exp(u/τ) directly
    rng = random.Random(6)
    replies = [render_response(ADD, o, f, a, c) for o in (None, "Sure!") for f in range(3)
               for a in (None, "17 + 25 = 41.") for c in (True, False)]
    for _ in range(50):
        a, b = rng.sample(replies, 2)
        tau, nu = rng.uniform(0.1, 2.0), rng.uniform(0.0, 3.0)
        ann = Annotator("r", tau=tau, tie_strength=nu)
        pi_a, pi_b = math.exp(gold_score(ADD, a) / tau), math.exp(gold_score(ADD, b) / tau)
        z = pi_a + pi_b + nu * math.sqrt(pi_a * pi_b)
        tie = nu * math.sqrt(pi_a * pi_b)
        assert ann.probabilities(ADD, a, b) == pytest.approx((pi_a / z, pi_b / z, tie / z))


def test_annotator_probability_properties():
    rng = random.Random(7)
    replies = [render_response(ADD, o, f, a, c) for o in (None, *POLITE_OPENERS) for f in range(4)
               for a in (None, "17 + 25 = 41.") for c in (True, False)]
    crowd = [*ANNOTATORS.values(), Annotator("t", tau=0.05, tie_strength=0.5), Annotator("s", tau=1e-4,
                                                                                           tie_strength=2.0)]
    for _ in range(200):
        a, b = rng.sample(replies, 2)
        for ann in crowd:
            pa, pb, pt = ann.probabilities(ADD.prompt, a, b)
            assert all(0.0 <= p <= 1.0 and math.isfinite(p) for p in (pa, pb, pt))
            assert pa + pb + pt == pytest.approx(1.0, abs=1e-12)
            assert (pt == 0.0) == (ann.tie_strength == 0.0)
            # swapping a and b swaps the probabilities
            assert ann.probabilities(ADD.prompt, b, a) == pytest.approx((pb, pa, pt), abs=1e-12)
            # given no tie, Davidson is Bradley-Terry: P(a≻b | no tie) = σ((u_a − u_b)/τ)
            d = (ann.utility(ADD.prompt, a) - ann.utility(ADD.prompt, b)) / ann.tau
            if abs(d) < 500:
                assert pa / (pa + pb) == pytest.approx(_sigmoid(d), abs=1e-9)
            ceiling = bayes_ceiling_pair(ann, ADD.prompt, a, b)
            assert 0.5 <= ceiling <= 1.0
            assert ceiling == pytest.approx(max(pa / (pa + pb), pb / (pa + pb)))


def test_labels_match_probabilities_monte_carlo():
    n = 8_000
    for ann in (Annotator("mc", tau=0.2, tie_strength=0.8), ANNOTATORS["friendly"]):
        probs = dict(zip(("a", "b", "tie"), ann.probabilities(ADD.prompt, OPENER, RAMBLING)))
        rng = random.Random(8)
        counts = {"a": 0, "b": 0, "tie": 0}
        for _ in range(n):
            counts[ann.label(ADD.prompt, OPENER, RAMBLING, rng)] += 1
        for k, p in probs.items():
            sd = math.sqrt(max(p * (1 - p), 1e-12) / n)
            assert abs(counts[k] / n - p) <= 4 * sd + 1e-12, (ann.name, k, counts, probs)
    # without ties, never a tie
    rng = random.Random(9)
    assert {ANNOTATORS["gold"].label(ADD, PLAIN, OPENER, rng) for _ in range(200)} == {"a", "b"}


def test_annotator_bad_parameters_raise():
    with pytest.raises(ValueError, match="tau must be > 0"):
        Annotator("x", tau=0.0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        Annotator("x", tau=-1.0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        Annotator("x", tau=float("nan"))
    with pytest.raises(ValueError, match="tie_strength must be >= 0"):
        Annotator("x", tie_strength=-0.1)
    with pytest.raises(ValueError, match="unknown feature"):
        Annotator("x", weights={"charm": 1.0}).utility(ADD.prompt, PLAIN)


def test_annotators_disagree_for_a_reason():
    plain_better = {n: a.probabilities(ADD.prompt, RAMBLING, PLAIN)[0] < 0.5 for n, a in ANNOTATORS.items()}
    # friendly: u(rambling) = 0.5 + 0.6 + 2*0.15 - 8*0.01 = 1.32 > u(plain) = 0.5
    # terse:    u(rambling) = 0.8 - 0.3 - 2*0.3 - 8*0.12 = -1.06 < u(plain) = 0.8
    assert ANNOTATORS["friendly"].utility(ADD.prompt, RAMBLING) == pytest.approx(1.32)
    assert ANNOTATORS["terse"].utility(ADD.prompt, RAMBLING) == pytest.approx(-1.06)
    assert plain_better == {"gold": True, "stickler": True, "friendly": False, "terse": True}
    # correctness is not a matter of taste: everyone prefers the right plain answer to the wrong one
    for ann in ANNOTATORS.values():
        assert ann.probabilities(ADD.prompt, PLAIN, "17 + 25 = 41.")[0] > 0.5


def _find_cycle(replies, prefers):
    for i, j, k in itertools.permutations(range(len(replies)), 3):
        if i < j and i < k and prefers(i, j) and prefers(j, k) and prefers(k, i):
            return replies[i], replies[j], replies[k]
    return None


def test_majority_preferences_can_cycle():
    # Hand-checked Condorcet cycle among the three people (utilities in order A, B, C):
    #   A = "17 + 25 = 42" (unclean), B = PLAIN + 2 fillers, C = "Sure! 17 + 25 = 41." (wrong)
    #   stickler: 0.90, 1.29, 0.00  -> B > A > C
    #   friendly: 0.40, 0.57, 0.60  -> C > B > A
    #   terse:    0.60, -0.46, -0.30 -> A > C > B
    #   majorities (2 of 3): B > A, A > C, C > B: a cycle although each person is transitive.
    people = [ANNOTATORS[n] for n in ("stickler", "friendly", "terse")]
    A, B, C = "17 + 25 = 42", render_response(ADD, fillers=2), "Sure! 17 + 25 = 41."
    u = [[p.utility(ADD.prompt, r) for r in (A, B, C)] for p in people]
    assert u == [pytest.approx([0.90, 1.29, 0.00]), pytest.approx([0.40, 0.57, 0.60]),
                 pytest.approx([0.60, -0.46, -0.30])]

    def votes(x, y):
        return sum(p.probabilities(ADD.prompt, x, y)[0] > 0.5 for p in people)

    assert votes(B, A) >= 2 and votes(A, C) >= 2 and votes(C, B) >= 2

    # and a search over rendered replies finds cycles of the whole crowd's label majority (mean P > 1/2)
    replies = [render_response(ADD, o, f, a, c) for o in (None, "Sure!") for f in range(3)
               for a in (None, "17 + 25 = 41.") for c in (True, False)]
    P = {(i, j): sum(ann.probabilities(ADD.prompt, replies[i], replies[j])[0] for ann in ANNOTATORS.values())
         / len(ANNOTATORS) for i in range(len(replies)) for j in range(len(replies)) if i != j}
    assert _find_cycle(replies, lambda i, j: P[i, j] > 0.5) is not None
    # while every single annotator is transitive on the same replies
    for ann in ANNOTATORS.values():
        us = [ann.utility(ADD.prompt, r) for r in replies]
        assert _find_cycle(replies, lambda i, j, us=us: us[i] > us[j]) is None


# ---------------------------------------------------------------------------------------------------------
# corpus
# ---------------------------------------------------------------------------------------------------------

_STATEMENT_RES = (
    ("addition", re.compile(r"(\d+) \+ (\d+) = (\d+)\.")),
    ("reverse", re.compile(r"The reverse of ([a-z]+) is ([a-z]+)\.")),
    ("creatures", re.compile(r"The ([a-z]+) (?:is|lives in the|eats) ([a-z]+)\.")),
    ("review", re.compile(r"The ([a-z]+) is ([a-z]+)\. I (?:love|recommend|hate|regret) it\.")),
)


def _parse_statement(text: str):
    """(family, key) of a pretraining statement, checking the fact it states; None if it is no statement."""
    for family, rx in _STATEMENT_RES:
        m = rx.fullmatch(text)
        if not m:
            continue
        if family == "addition":
            a, b, c = map(int, m.groups())
            assert a + b == c and max(a, b) <= ADD_MAX, text
            return family, (a, b)
        if family == "reverse":
            assert m[2] == m[1][::-1], text
            return family, m[1]
        if family == "creatures" and m[1] in CREATURES:
            attr = next(a for a, vals in ATTRIBUTES.items() if m[2] in vals)
            assert CREATURES[m[1]][attr] == m[2] and statement(family, (m[1], attr)) == text, text
            return family, (m[1], attr)
        if family == "review" and m[1] in PRODUCTS:
            sentiment = "positive" if m[2] in POSITIVE_WORDS else "negative"
            assert is_correct(make_problem("review", (sentiment, m[1])), text), text
            return family, (sentiment, m[1])
    return None


def test_corpus_is_deterministic():
    assert pretraining_corpus(200, seed=1) == pretraining_corpus(200, seed=1)
    assert pretraining_corpus(200, seed=1) != pretraining_corpus(200, seed=2)
    assert pretraining_corpus(200, seed=1) != pretraining_corpus(200, seed=1, split="heldout")
    assert instruction_data(100, seed=1) == instruction_data(100, seed=1)
    assert instruction_data(100, seed=1) != instruction_data(100, seed=2)
    assert statement_prefixes(30, seed=1) == statement_prefixes(30, seed=1) != statement_prefixes(30, seed=2)
    assert heldout_prompts(30, seed=1) == heldout_prompts(30, seed=1) != heldout_prompts(30, seed=2)
    assert pretraining_corpus(50, seed=3) == pretraining_corpus(100, seed=3)[:50]  # a stream, prefix-stable


def test_pretraining_text_is_statements_with_the_right_mix():
    n = 4000
    corpus = pretraining_corpus(n, seed=0)
    parsed = [_parse_statement(s) for s in corpus]
    assert all(p is not None for p in parsed)  # every line a statement of a true fact: no questions
    assert not any("?" in s or "<|" in s or "\n" in s for s in corpus)
    assert all(len(s) <= 64 for s in corpus)  # fits the feasibility run's context of 64 characters
    for family, share in PRETRAIN_MIX.items():
        frac = sum(p[0] == family for p in parsed) / n
        assert abs(frac - share) <= 4 * math.sqrt(share * (1 - share) / n), (family, frac)
    # half the reverse lines use random strings (DESIGN: otherwise the model memorises the word list)
    rev = [p[1] for p in parsed if p[0] == "reverse"]
    assert 0.4 < sum(w not in WORDS for w in rev) / len(rev) < 0.6


def test_split_hygiene_pretraining():
    parsed = [_parse_statement(s) for s in pretraining_corpus(4000, seed=11)]
    assert all(split_of(f, k) == "train" for f, k in parsed if f != "creatures")
    # creature facts are knowledge: held-out creatures' facts ARE in the training text
    creatures_seen = {k[0] for f, k in parsed if f == "creatures"}
    assert creatures_seen == set(CREATURE_NAMES)
    assert any(split_of("creatures", c) == "heldout" for c in creatures_seen)
    # the held-out corpus holds only held-out keys (and no creatures)
    held = [_parse_statement(s) for s in pretraining_corpus(1000, seed=11, split="heldout")]
    assert {f for f, _ in held} == {"addition", "reverse", "review"}
    assert all(split_of(f, k) == "heldout" for f, k in held)
    # the keys a leak would show: every held-out addition pair and review key, held-out words of the list
    train_keys = {(f, k) for f, k in parsed}
    keys = _all_keys(random.Random(0))
    for family in ("addition", "review", "reverse"):
        held_keys = [k for k in keys[family] if split_of(family, k) == "heldout"]
        assert held_keys and not any((family, k) in train_keys for k in held_keys)


def test_split_hygiene_instruction_data():
    data = instruction_data(3000, seed=12)
    for ex in data:
        problem = parse_prompt(ex["prompt"])
        assert split_of(problem.family, problem.key) == "train", ex["prompt"]
        assert ex["family"] == problem.family and ex["reference"] == problem.reference
    asked = {parse_prompt(ex["prompt"]).key[0] for ex in data if ex["family"] == "creatures"}
    heldout_creatures = {c for c in CREATURE_NAMES if split_of("creatures", c) == "heldout"}
    assert asked and asked.isdisjoint(heldout_creatures)
    assert asked == set(CREATURE_NAMES) - heldout_creatures  # every train creature is asked about
    held = instruction_data(300, seed=12, split="heldout")
    assert all(split_of(parse_prompt(ex["prompt"]).family, parse_prompt(ex["prompt"]).key) == "heldout"
               for ex in held)


def test_instruction_data_replies_are_correct_and_styled():
    n = 3000
    data = instruction_data(n, seed=13)
    openers = fillers = 0
    for ex in data:
        user, assistant = ex["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant") and user["content"] == ex["prompt"]
        reply = assistant["content"]
        assert taste_features(ex["prompt"], reply)["correct"] == 1.0, ex
        assert ex["reference"] in reply and "<|" not in reply
        openers += reply.startswith(POLITE_OPENERS)
        fillers += any(f in reply for f in FILLERS)
    # STYLE_MIX: P(opener) = 0.3, P(at least one filler) = 0.4
    assert abs(openers / n - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert abs(fillers / n - 0.4) < 4 * math.sqrt(0.4 * 0.6 / n)
    assert {ex["family"] for ex in data} == set(FAMILIES)
    plain = instruction_data(200, seed=13, families=("addition",),
                             style_mix={"opener": 0, "fillers": (1, 0, 0)})
    assert all(ex["messages"][1]["content"] == ex["reference"] and ex["family"] == "addition" for ex in plain)


def test_statement_prefixes():
    items = statement_prefixes(300, seed=14)
    assert [p.family for p, _ in items[:3]] == ["addition", "reverse", "creatures"]
    for problem, prefix in items:
        full = statement(problem.family, problem.key)
        assert full.startswith(prefix) and len(prefix) < len(full)
        assert is_correct(problem, prefix + full[len(prefix):])  # prefix + the reference continuation
        if problem.family != "creatures":
            assert split_of(problem.family, problem.key) == "heldout"
        # the prefix alone is not an answer -- except "0 + b =", whose last integer already is the sum
        if not (problem.family == "addition" and problem.key[0] == 0):
            assert not is_correct(problem, prefix), prefix
    hand = statement_prefixes(3, seed=0)
    assert [prefix for _, prefix in hand] == [
        "42 + 10 =", "The reverse of bigu is", "The sollow lives in the"]


def test_heldout_prompts_are_held_out():
    problems = heldout_prompts(400, seed=15)
    assert [p.family for p in problems[:4]] == list(FAMILIES)
    for p in problems:
        assert split_of(p.family, p.key) == "heldout"
        assert parse_prompt(p.prompt) == p
    only = heldout_prompts(20, families=("addition",))
    assert {p.family for p in only} == {"addition"}


def test_split_has_no_symmetric_leaks():
    """A held-out sum's swapped twin and a held-out string's reversal are held out too (canonical keys)."""
    for a in range(ADD_MAX + 1):
        for b in range(ADD_MAX + 1):
            assert split_of("addition", (a, b)) == split_of("addition", (b, a))
    rng = random.Random(0)
    for _ in range(500):
        s = random_string(rng)
        assert split_of("reverse", s) == split_of("reverse", s[::-1])
    for w in WORDS:
        assert split_of("reverse", w) == split_of("reverse", w[::-1])


def test_empty_reply_scores_below_any_reply():
    p = make_problem("addition", (17, 25))
    worst = " ".join(["Sure! I hope this helps."] * 12) + " wrong wrong wrong wrong wrong wrong"
    assert gold_score(p, worst) > EMPTY_RESPONSE_SCORE
    assert gold_score(p, "", allow_empty=True) == EMPTY_RESPONSE_SCORE == pytest.approx(-3.4)


def test_annotator_rejects_unknown_features_and_nan_ties():
    with pytest.raises(ValueError, match="unknown feature"):
        Annotator("x", {"kindness": 1.0})
    with pytest.raises(ValueError, match="tie_strength"):
        Annotator("x", tie_strength=float("nan"))


def test_empty_families_and_bad_style_mix():
    with pytest.raises(ValueError, match="families is empty"):
        instruction_data(3, families=())
    with pytest.raises(ValueError, match="families is empty"):
        heldout_prompts(3, families=())
    with pytest.raises(ValueError, match="style_mix"):
        instruction_data(3, style_mix={"opener": 0.5})
