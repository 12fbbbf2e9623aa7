"""Tests for rlhfbook_lab.recipes.spec_change: relabelling under a changed spec uses the same draws as under the
baseline, so labels move only where the changed row matters. (The train-and-measure headline is asserted in lesson
17, which runs the recipe in fast mode.)"""

from __future__ import annotations

import pytest

from rlhfbook_lab import world
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.recipes.spec_change import RECIPES, relabel_pairs, spec_change_config

OPENERS = world.judge.POLITE_OPENERS


@pytest.fixture(scope="module")
def rows():
    return load_preference_file("train", origin="on_policy")[:400]


def test_relabelling_changes_labels_only_where_the_changed_row_matters(rows):
    base = relabel_pairs(rows, "default", seed=0)
    new = relabel_pairs(rows, "no_openers", seed=0)
    assert base.counts == new.counts and base.counts["kept"] == len(rows)  # no identical or empty pairs to drop
    moved = 0
    for a, b in zip(base.rows, new.rows):
        assert {a["chosen"], a["rejected"]} == {b["chosen"], b["rejected"]}
        differ = a["chosen"].startswith(OPENERS) != a["rejected"].startswith(OPENERS)
        if a["chosen"] != b["chosen"]:
            moved += 1
            assert differ  # only a pair whose replies differ in the opener can change its label
            assert b["chosen"].startswith(OPENERS) is False  # ... and it flips toward the reply without one
        if not differ:
            assert a["p_chosen"] == pytest.approx(b["p_chosen"], abs=1e-12)  # the same difference of utilities
    assert moved > 0
    assert {r["relabelled_by"] for r in new.rows} == {"no_openers"}
    assert {r["label_source"] for r in new.rows} == {"gold"}


def test_relabelling_by_the_default_spec_reproduces_the_shipped_probabilities(rows):
    again = relabel_pairs(rows, world.DEFAULT_SPEC, seed=0)
    for old, new in zip(rows, again.rows):
        p_old_a = old["p_chosen"]  # P(old chosen ≻ old rejected) under gold
        p_new = new["p_chosen"] if new["chosen"] == old["chosen"] else 1 - new["p_chosen"]
        assert p_new == pytest.approx(p_old_a, abs=1e-6)  # the file stores 6 decimals


def test_config():
    assert spec_change_config().steps == 60 and spec_change_config(fast=True).steps == RECIPES["fast"]["steps"]
    assert spec_change_config(fast=True, steps=5).steps == 5
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        spec_change_config(steps=0)
