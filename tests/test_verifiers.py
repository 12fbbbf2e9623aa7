"""world.verifiers: rule-based rewards (correctness, format), answer extraction, and their bad input."""

import random

import pytest

from rlhfbook_lab import world
from rlhfbook_lab.world import tasks
from rlhfbook_lab.world.judge import FILLERS, POLITE_OPENERS, render_response
from rlhfbook_lab.world.verifiers import (
    correctness_reward,
    extract_answer,
    format_reward,
    reference_answer,
    verifier_rewards,
)

ADD = world.make_problem("addition", (17, 25))
REV = world.make_problem("reverse", "mirt")
CRE = world.make_problem("creatures", ("blorp", "food"))
REVIEW = world.make_problem("review", ("positive", "lamp"))


@pytest.mark.parametrize("problem, reply, answer, correct, fmt", [
    (ADD, "17 + 25 = 42.", 42, 1.0, 1.0),
    (ADD, "Sure! 17 + 25 = 42.", 42, 1.0, 1.0),
    (ADD, "17 + 25 = 41.", 41, 0.0, 1.0),            # well formatted, wrong
    (ADD, "42", 42, 1.0, 0.0),                        # right, but not in the answer sentence
    (ADD, "17 + 25 = 42. I hope this helps.", 42, 1.0, 0.0),  # a filler after the answer: not the format
    (ADD, "The answer is many.", None, 0.0, 0.0),     # no integer: abstains
    (REV, "The reverse of mirt is trim.", "trim", 1.0, 1.0),
    (REV, "The reverse of mirt is tirm.", "tirm", 0.0, 1.0),
    (REV, "trim", "trim", 1.0, 0.0),
    (CRE, f"The blorp eats {world.tasks.CREATURES['blorp']['food']}.", world.tasks.CREATURES["blorp"]["food"],
     1.0, 1.0),
    (CRE, "The blorp eats moss and fish.", None, 0.0, 0.0),  # two values named: no single answer
    (REVIEW, "The lamp is great. I love it.", "positive", 1.0, 1.0),
    (REVIEW, "The lamp is awful. I hate it.", "negative", 0.0, 1.0),
    (REVIEW, "It is great.", None, 0.0, 0.0),         # product not named
])
def test_hand_values(problem, reply, answer, correct, fmt):
    assert extract_answer(problem, reply) == answer
    assert correctness_reward(problem, reply) == correct
    assert correctness_reward(problem.prompt, reply) == correct  # a prompt string works the same
    assert format_reward(problem, reply) == fmt


def test_reference_answers():
    assert reference_answer(ADD) == 42 and reference_answer(REV) == "trim"
    assert reference_answer(REVIEW) == "positive"
    assert reference_answer(CRE) == world.tasks.CREATURES["blorp"]["food"]


def _random_reply(problem, rng):
    """Replies of every kind the checkers must sort: right, wrong, with fillers, openers, noise."""
    wrong = {"addition": lambda: f"{problem.key[0]} + {problem.key[1]} = {sum(problem.key) + rng.randint(1, 9)}.",
             "reverse": lambda: f"The reverse of {problem.key} is {problem.key}x.",
             "creatures": lambda: f"The {problem.key[0]} is {rng.choice(world.tasks.COLORS)}.",
             "review": lambda: f"The {problem.key[1]} is {rng.choice(tasks.NEGATIVE_WORDS)}."}[problem.family]()
    answer = None if rng.random() < 0.5 else wrong
    reply = render_response(problem, opener=rng.choice((None, *POLITE_OPENERS)), fillers=rng.randint(0, 2),
                            answer=answer, clean_end=rng.random() < 0.8)
    if rng.random() < 0.2:
        reply = " ".join(rng.sample(reply.split(), len(reply.split())))  # scrambled
    if rng.random() < 0.1:
        reply += " " + rng.choice(FILLERS) + " 7"
    return reply


def test_extraction_agrees_with_the_checker():
    """Second implementation: extract_answer == reference_answer exactly when tasks.is_correct accepts."""
    rng = random.Random(0)
    seen = {True: 0, False: 0}
    for i in range(2000):
        p = world.sample_problem(world.FAMILIES[i % 4], rng, "train")
        reply = _random_reply(p, rng)
        if not reply.strip():
            continue
        ok = world.is_correct(p, reply)
        seen[ok] += 1
        assert (extract_answer(p, reply) == reference_answer(p)) == ok, (p.prompt, reply)
        assert correctness_reward(p, reply) == float(ok)
    assert min(seen.values()) > 300  # both outcomes exercised


def test_properties_every_reference_is_correct_and_well_formatted():
    rng = random.Random(1)
    for i in range(400):
        p = world.sample_problem(world.FAMILIES[i % 4], rng, "heldout")
        assert correctness_reward(p, p.reference) == 1.0 and format_reward(p, p.reference) == 1.0
        assert format_reward(p, p.reference.rstrip(".")) == 0.0  # an unclean end is never the format


def test_verifier_rewards_batch_and_format_weight():
    prompts = [ADD.prompt, ADD.prompt, REV.prompt, REV.prompt]
    replies = ["17 + 25 = 42.", "42", "", "The reverse of mirt is tirm."]
    assert verifier_rewards(prompts, replies) == [1.0, 1.0, 0.0, 0.0]
    assert verifier_rewards(prompts, replies, format_weight=0.5) == [1.5, 1.0, 0.0, 0.5]


@pytest.mark.parametrize("call, match", [
    (lambda: correctness_reward(ADD, ""), "reply is empty"),
    (lambda: extract_answer(ADD, "   "), "reply is empty"),
    (lambda: format_reward(ADD, None), "reply must be a string"),
    (lambda: correctness_reward(ADD, 42), "reply must be a string"),
    (lambda: correctness_reward("What is the capital of France?", "Paris."), "unknown task"),
    (lambda: correctness_reward(tasks.Problem("chess", "e4", "Play.", "e5"), "e5"), "unknown task family 'chess'"),
    (lambda: correctness_reward(3, "5"), "prompt must be a string"),
    (lambda: verifier_rewards([ADD.prompt], ["1", "2"]), "same length"),
    (lambda: verifier_rewards(ADD.prompt, "42"), "must be lists"),
    (lambda: verifier_rewards([ADD.prompt], ["42"], format_weight=float("nan")), "format_weight"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_allow_empty_scores_zero():
    assert correctness_reward(ADD, "", allow_empty=True) == 0.0
    assert format_reward(ADD, " ", allow_empty=True) == 0.0
    assert extract_answer(ADD, "", allow_empty=True) is None


# --- set_answer: a reply's counterfactual ---------------------------------------------------------------------


@pytest.mark.parametrize("prompt, reply, right_reply", [
    ("What is 17 + 25?", "Sure! 17 + 25 = 44. I hope this helps.", "Sure! 17 + 25 = 42. I hope this helps."),
    ("Spell mirt backward.", "The reverse of mirt is trom. Thank you.", "The reverse of mirt is trim. Thank you."),
    ("Write a negative review of the lamp.", "Great! The lamp is great. I love it.",
     "Awful! The lamp is awful. I hate it."),
])
def test_set_answer_hand_values(prompt, reply, right_reply):
    assert world.set_answer(prompt, reply, True, random.Random(0)) == right_reply
    assert world.set_answer(prompt, right_reply, True, random.Random(0)) == right_reply  # already right: unchanged


def test_set_answer_changes_only_the_answer_and_agrees_with_the_checker():
    rng = random.Random(3)
    n_edited = 0
    for i in range(400):
        p = world.sample_problem(world.FAMILIES[i % 4], rng)
        reply = render_response(p, opener=rng.choice((None,) + POLITE_OPENERS), fillers=rng.randint(0, 2),
                                clean_end=rng.random() < 0.8)
        right, wrong = world.set_answer(p, reply, True, rng), world.set_answer(p, reply, False, rng)
        assert right is not None and wrong is not None, (p, reply)
        assert world.is_correct(p, right) and not world.is_correct(p, wrong)
        # a second implementation of "only the answer differs": the same taste features but correctness
        f_right, f_wrong = world.taste_features(p, right), world.taste_features(p, wrong)
        assert f_right.pop("correct") == 1.0 and f_wrong.pop("correct") == 0.0 and f_right == f_wrong
        assert extract_answer(p, right) == reference_answer(p) != extract_answer(p, wrong)
        n_edited += right != reply
    assert n_edited == 0  # rendered replies are right already: the right version is the reply itself
    # no answer to edit: None; the same rng state gives the same edit
    assert world.set_answer("What is 1 + 2?", "I do not know.", False, random.Random(0)) is None
    assert world.set_answer("What does the blorp eat?", "Hello.", True, random.Random(0)) is None
    a = world.set_answer("What is 1 + 2?", "1 + 2 = 3.", False, random.Random(5))
    assert a == world.set_answer("What is 1 + 2?", "1 + 2 = 3.", False, random.Random(5))
    with pytest.raises(ValueError, match="reply must be a string"):
        world.set_answer("What is 1 + 2?", None, True, random.Random(0))
