"""Tests for rlhfbook_lab.world.spec: the model spec as a file (ch 17), validated on load, read by the gold judge and
the annotators; the shipped default reproduces the world as it was built, exactly."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from rlhfbook_lab import world
from rlhfbook_lab.world import (
    ANNOTATORS,
    DEFAULT_SPEC,
    EMPTY_RESPONSE_SCORE,
    FAMILIES,
    FEATURES,
    GOLD_WEIGHTS,
    Spec,
    gold_score,
    load_spec,
    lowest_score,
    make_problem,
    render_response,
    sample_problem,
    spec_annotators,
    spec_from_dict,
    spec_names,
    taste_features,
)
from rlhfbook_lab.world.judge import FEATURE_RANGES, POLITE_OPENERS

ADD = make_problem("addition", (17, 25))  # "What is 17 + 25?" -> "17 + 25 = 42."

# The taste table as it was written in world/judge.py and world/annotators.py before it became a file.
OLD_GOLD = {"correct": 1.00, "polite_opener": 0.20, "polite_excess": -0.25, "extra_words": -0.03,
            "unclean_end": -0.30, "repetition": -0.10}
OLD_CROWD = {
    "stickler": {"correct": 1.5, "polite_opener": 0.0, "polite_excess": -0.05, "extra_words": -0.02,
                 "unclean_end": -0.6, "repetition": -0.2},
    "friendly": {"correct": 0.5, "polite_opener": 0.6, "polite_excess": 0.15, "extra_words": -0.01,
                 "unclean_end": -0.1, "repetition": -0.05},
    "terse": {"correct": 0.8, "polite_opener": -0.3, "polite_excess": -0.3, "extra_words": -0.12,
              "unclean_end": -0.2, "repetition": -0.2},
}


def _replies(n: int = 200, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(n):
        p = sample_problem(rng.choice(FAMILIES), rng)
        yield p, render_response(p, rng.choice((None, *POLITE_OPENERS)), rng.randrange(4), None, rng.random() < .7)


def _valid() -> dict:
    return json.loads((world.spec.SPEC_DIR / "default.json").read_text())


# --- the shipped default is the old table, bit for bit -------------------------------------------------------------

def test_default_spec_is_the_old_table_exactly():
    assert "default" in spec_names()
    spec = load_spec("default")
    assert spec == DEFAULT_SPEC and spec.name == "default"
    assert dict(spec.weights) == OLD_GOLD and list(spec.weights) == list(FEATURES)
    assert GOLD_WEIGHTS == OLD_GOLD and list(GOLD_WEIGHTS) == list(OLD_GOLD)
    assert EMPTY_RESPONSE_SCORE == OLD_GOLD["polite_excess"] * 8 + OLD_GOLD["extra_words"] * 20 \
        + OLD_GOLD["unclean_end"] + OLD_GOLD["repetition"] * 5  # the old formula, same operations in order
    assert set(spec.notes) == set(FEATURES)
    assert list(ANNOTATORS) == ["gold", "stickler", "friendly", "terse"]
    assert ANNOTATORS["gold"].weights == OLD_GOLD
    for name, weights in OLD_CROWD.items():
        a = ANNOTATORS[name]
        assert (a.weights, a.tau, a.tie_strength) == (weights, 0.1, 0.0)


def test_gold_score_with_the_default_spec_is_the_same_computation():
    for p, reply in _replies():
        g = gold_score(p, reply)
        assert gold_score(p, reply, spec="default") == g  # the same weights, the same sum: equal
        assert gold_score(p, reply, spec=DEFAULT_SPEC) == g
        assert gold_score(p, reply, weights=OLD_GOLD) == g
    assert gold_score(ADD, " ", allow_empty=True, spec="default") == EMPTY_RESPONSE_SCORE


def test_a_saved_spec_loads_back_equal(tmp_path):
    path = DEFAULT_SPEC.save(tmp_path / "copy.json")
    assert load_spec(path) == DEFAULT_SPEC
    assert spec_from_dict(DEFAULT_SPEC.to_dict()) == DEFAULT_SPEC
    assert load_spec(DEFAULT_SPEC) is DEFAULT_SPEC


# --- changing one row ----------------------------------------------------------------------------------------------

def test_changing_one_weight_changes_scores_by_that_weight_times_the_feature():
    against = DEFAULT_SPEC.replace(polite_opener=-0.20)
    assert against.name == "default with polite_opener=-0.2" and against.weights["polite_opener"] == -0.20
    assert DEFAULT_SPEC.weights["polite_opener"] == 0.20 and GOLD_WEIGHTS["polite_opener"] == 0.20  # not mutated
    assert against.annotators == DEFAULT_SPEC.annotators
    # by hand: "Sure! 17 + 25 = 42." is correct with an opener: 1.00 + 0.20 = 1.20 before, 1.00 − 0.20 = 0.80 after
    assert gold_score(ADD, "Sure! 17 + 25 = 42.") == pytest.approx(1.20)
    assert gold_score(ADD, "Sure! 17 + 25 = 42.", spec=against) == pytest.approx(0.80)
    assert gold_score(ADD, "17 + 25 = 42.", spec=against) == gold_score(ADD, "17 + 25 = 42.")
    for p, reply in _replies():  # property: g' − g = Δw · f_opener, and only replies with an opener move
        f = taste_features(p, reply)
        diff = gold_score(p, reply, spec=against) - gold_score(p, reply)
        assert diff == pytest.approx(-0.40 * f["polite_opener"], abs=1e-12)


def test_the_changed_specs_annotators_follow_it():
    against = DEFAULT_SPEC.replace(polite_opener=-0.20)
    crowd = spec_annotators(against)
    assert list(crowd) == list(ANNOTATORS) and crowd["terse"] == ANNOTATORS["terse"]
    opener, plain = "Sure! 17 + 25 = 42.", "17 + 25 = 42."
    p_old = ANNOTATORS["gold"].probabilities(ADD, opener, plain)[0]
    p_new = crowd["gold"].probabilities(ADD, opener, plain)[0]
    assert p_old == pytest.approx(1 / (1 + math.exp(-2.0)))  # σ((1.20 − 1.00) / 0.1)
    assert p_new == pytest.approx(1 / (1 + math.exp(+2.0)))  # σ((0.80 − 1.00) / 0.1): the preference flips
    shipped = load_spec("no_openers")
    assert dict(shipped.weights) == dict(against.weights)  # the shipped changed spec is exactly that one row


def test_lowest_score_is_the_minimum_over_every_corner():
    for spec in (DEFAULT_SPEC, DEFAULT_SPEC.replace(polite_opener=-0.2, polite_excess=0.3)):
        corners = itertools.product(*FEATURE_RANGES.values())
        brute = min(sum(spec.weights[f] * v for f, v in zip(FEATURE_RANGES, c)) for c in corners)
        assert lowest_score(spec.weights) == pytest.approx(brute)
        assert gold_score(ADD, "", allow_empty=True, spec=spec) == lowest_score(spec.weights)
    assert lowest_score(GOLD_WEIGHTS) == pytest.approx(-3.4)


# --- bad specs: a ValueError naming the field ------------------------------------------------------------------------

def _broken(change):
    data = _valid()
    change(data)
    return data


@pytest.mark.parametrize("change, match", [
    (lambda d: d["weights"].update(kindness=0.5), r"weights has unknown feature\(s\) \['kindness'\]"),
    (lambda d: d["weights"].pop("repetition"), r"weights is missing the weight\(s\) of \['repetition'\]"),
    (lambda d: d["weights"].update(polite_opener="high"), r"weights\.polite_opener must be a finite number"),
    (lambda d: d["weights"].update(correct=True), r"weights\.correct must be a finite number; got True"),
    (lambda d: d["weights"].update(correct=float("nan")), r"weights\.correct must be a finite number; got nan"),
    (lambda d: d["weights"].update(correct=None), r"weights\.correct must be a finite number; got None"),
    (lambda d: d.update(weights=[1, 2]), r"weights must be an object of feature -> number; got list"),
    (lambda d: d.pop("weights"), r"has no 'weights'"),
    (lambda d: d.pop("name"), r"has no 'name'"),
    (lambda d: d.update(name=3), r"name must be a string; got int"),
    (lambda d: d.update(taste={}), r"unknown key\(s\) \['taste'\]"),
    (lambda d: d["notes"].update(charm="x"), r"notes has unknown key\(s\) \['charm'\]"),
    (lambda d: d["annotators"].update(gold={"weights": d["weights"]}), r"annotators\.gold: the name 'gold'"),
    (lambda d: d["annotators"]["terse"]["weights"].pop("correct"),
     r"annotators\.terse\.weights is missing the weight\(s\) of \['correct'\]"),
    (lambda d: d["annotators"]["terse"]["weights"].update(polite_opener="-0.3"),
     r"annotators\.terse\.weights\.polite_opener must be a finite number; got '-0\.3'"),
    (lambda d: d["annotators"]["terse"].update(tau=0), r"annotators\.terse\.tau must be a finite number > 0"),
    (lambda d: d["annotators"]["terse"].update(tie_strength=-1), r"annotators\.terse\.tie_strength must be"),
    (lambda d: d["annotators"]["terse"].pop("weights"), r"annotators\.terse has no 'weights'"),
    (lambda d: d["annotators"]["terse"].update(mood=1), r"annotators\.terse has unknown key\(s\) \['mood'\]"),
])
def test_bad_spec_raises_naming_the_field(tmp_path, change, match):
    data = _broken(change)
    with pytest.raises(ValueError, match=match):
        spec_from_dict(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"spec 'bad\.json'.*" + match):  # the file's name prefixes the field
        load_spec(path)


def test_bad_spec_sources_raise(tmp_path):
    with pytest.raises(ValueError, match=r"unknown spec 'kind'; expected a path to a \.json file or one of"):
        load_spec("kind")
    with pytest.raises(ValueError, match=r"does not exist"):
        load_spec(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{\"name\": ")
    with pytest.raises(ValueError, match=r"'broken\.json' is not valid JSON"):
        load_spec(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match=r"must be an object; got list"):
        load_spec(tmp_path / "list.json")
    with pytest.raises(ValueError, match=r"spec must be a world\.Spec, a shipped name or a path; got dict"):
        load_spec({"name": "x"})
    with pytest.raises(ValueError, match=r"give weights or spec, not both"):
        gold_score(ADD, ADD.reference, weights=GOLD_WEIGHTS, spec="default")
    with pytest.raises(ValueError, match=r"weights\.polite_opener must be a finite number"):
        DEFAULT_SPEC.replace(polite_opener="more")
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['charm'\]"):
        DEFAULT_SPEC.replace(charm=1.0)
    assert isinstance(DEFAULT_SPEC, Spec)
