"""Tests for recipes.distillation: the best-of-n choice (hand value, a second implementation, a property), the
config's refusals, a smoke-sized study whose format the shipped result shares, and the shipped result itself (made
by the full recipe, small, and meeting every claim lesson 12 §4 asserts on it)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rlhfbook_lab.recipes.distillation import (
    DISTILL_COMMAND,
    RESULT,
    TASTE,
    DistillConfig,
    best_of_n,
    distillation_config,
    distillation_study,
    load_result,
    main,
)


def test_best_of_n_hand_value():
    replies = [["a.", "b.", "c."], ["", "x.", "y."], ["p.", "q.", "r."]]
    scores = np.array([[0.1, 0.9, 0.3],
                       [5.0, -1.0, -2.0],      # the empty reply scores best and is still never chosen
                       [0.2, 0.2, 0.1]])       # a tie goes to the first
    assert best_of_n(scores, replies) == [1, 1, 0]


def test_best_of_n_agrees_with_a_sort_and_is_the_max():
    rng = random.Random(0)
    for _ in range(50):
        n, p = rng.randint(1, 6), rng.randint(1, 5)
        replies = [[rng.choice(["", "ok.", "fine."]) for _ in range(n)] for _ in range(p)]
        for rs in replies:
            if not any(r.strip() for r in rs):
                rs[rng.randrange(n)] = "ok."
        scores = np.array([[rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(n)] for _ in range(p)])
        got = best_of_n(scores, replies)
        for i, rs in enumerate(replies):
            # second implementation: sort the non-empty replies by (-score, index), take the first
            want = sorted((j for j in range(n) if rs[j].strip()), key=lambda j: (-scores[i, j], j))[0]
            assert got[i] == want
            assert rs[got[i]].strip() and scores[i, got[i]] == max(scores[i, j] for j in range(n) if rs[j].strip())


def test_best_of_n_refuses_bad_input():
    with pytest.raises(ValueError, match=r"replies\[1\]: every sample is empty"):
        best_of_n(np.zeros((2, 2)), [["a.", "b."], ["", " "]])
    with pytest.raises(ValueError, match="scores must have shape"):
        best_of_n(np.zeros((2, 3)), [["a.", "b."], ["c.", "d."]])


@pytest.mark.parametrize("field, value, message", [
    ("n", 0, "n must be an int >= 1"),
    ("num_prompts", 10_000, "num_prompts must be at most 4000"),
    ("selectors", (), "selectors must name at least one"),
    ("selectors", ("gold", "gold"), "selectors must be distinct"),
    ("temperature", 0, "temperature"),
    ("steps", 0, "steps must be an int >= 1"),
])
def test_config_refuses(field, value, message):
    with pytest.raises(ValueError, match=message):
        distillation_study(distillation_config(fast=True, **{field: value}))


@pytest.fixture(scope="module")
def tiny_result():
    return distillation_study(distillation_config(fast=True, num_prompts=24, n=2, steps=2, eval_prompts=8, shown=2))


def _shape(x):
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return "list"
    return "number" if isinstance(x, int | float) and not isinstance(x, bool) else type(x).__name__


def test_tiny_study_format(tiny_result):
    r = tiny_result
    assert set(r["models"]) == {"sft-tiny", "teacher[rm-tiny]", "teacher[gold]", "student[rm-tiny]", "student[gold]"}
    for m in r["models"].values():
        assert {"gold", "correct", "correct_by_family", *TASTE} <= set(m)
    assert set(r["data"]) == {"original", "rm-tiny", "gold"} and len(r["data"]["gold"]["shown"]) == 2
    # the gold-selected teacher data are at least as good by gold as the rm-selected ones: each prompt's pick is the
    # max of the same pool
    assert r["data"]["gold"]["gold"] >= r["data"]["rm-tiny"]["gold"] - 1e-12
    g = r["gains"]["student[gold] - sft-tiny"]
    assert g["lo"] <= g["diff"] <= g["hi"] and g["se"] >= 0
    json.dumps(r)  # JSON-ready


def test_shipped_result_has_todays_format(tiny_result):
    shipped = load_result()
    assert _shape(shipped["models"]["sft-tiny"]) == _shape(tiny_result["models"]["sft-tiny"])
    assert set(shipped["gains"]) == set(tiny_result["gains"])
    assert shipped["config"] == {**DistillConfig().__dict__, "selectors": list(DistillConfig().selectors)}
    assert RESULT.stat().st_size < 100_000


def test_shipped_result_meets_lesson_claims():
    r = load_result()
    m, g, data = r["models"], r["gains"], r["data"]
    # the oracle teacher (best of 8 by gold) is far above its sampler's greedy reply ...
    assert g["teacher[gold] - sft-tiny"]["diff"] > 5 * g["teacher[gold] - sft-tiny"]["se"]
    # ... its student keeps a part of the gain (more than two paired s.e.), far from all of it
    student = g["student[gold] - sft-tiny"]
    assert 2 * student["se"] < student["diff"] < g["teacher[gold] - sft-tiny"]["diff"] / 2
    # both teachers' data clean up the original replies' taste: one opener, no piled politeness, no filler
    for s in ("rm-tiny", "gold"):
        assert data[s]["polite_opener"] > 0.75 > data["original"]["polite_opener"]
        assert data[s]["extra_words"] < 0.1 < 1.0 < data["original"]["extra_words"]
    # taste carries over to the students: openers up, extra words down against sft-tiny
    for s in ("rm-tiny", "gold"):
        assert m[f"student[{s}]"]["polite_opener"] > m["sft-tiny"]["polite_opener"] + 0.3
        assert m[f"student[{s}]"]["extra_words"] < m["sft-tiny"]["extra_words"]
    # the reward model's blind spot carries over too: its teacher kept wrong sums, its student learns them
    assert data["rm-tiny"]["correct_by_family"]["addition"] < 0.7 < data["gold"]["correct_by_family"]["addition"]
    assert m["student[rm-tiny]"]["correct_by_family"]["addition"] < m["sft-tiny"]["correct_by_family"]["addition"] - 0.1


def test_load_result_refuses(tmp_path):
    with pytest.raises(ValueError, match="no distillation result"):
        load_result(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {"n": 8}}))
    with pytest.raises(ValueError, match="not a result of distillation_study"):
        load_result(bad)
    assert "--out data/synthetic/distillation.json" in DISTILL_COMMAND


def test_main_refuses_a_folder(tmp_path):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
