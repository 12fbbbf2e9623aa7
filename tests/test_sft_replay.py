"""Tests for recipes.sft_replay: lesson 04's two SFT runs (plain and with replayed pretraining text) and the shipped
history its full mode loads — its format is what the recipe returns today, it is small, made by the full recipe,
and it meets every claim lesson 04 asserts on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlhfbook_lab.config import build
from rlhfbook_lab.lesson import smooth
from rlhfbook_lab.recipes.sft_replay import (
    HISTORY,
    HISTORY_COMMAND,
    RECIPES,
    SFTReplayConfig,
    load_history,
    main,
    sft_config,
    sft_replay_study,
)


@pytest.fixture(scope="module")
def tiny_result():
    return sft_replay_study(build(SFTReplayConfig, RECIPES, "fast", steps=3, batch_size=4, replay_statements=200,
                                  eval_prompts=4, shown_replies=2))


def _shape(x):
    """The nested keys of a result, lists reduced to their element type (the format, not the values)."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return ["list"]
    return type(x).__name__ if not isinstance(x, int | float) else "number"


def test_sft_config_is_the_shipped_recipe_with_the_modes_sizes():
    full, fast = SFTReplayConfig(), build(SFTReplayConfig, RECIPES, "fast")
    cfg = sft_config(full)
    assert (cfg.train.steps, cfg.batch_size, cfg.pretrain_mix) == (800, 16, 0.0)
    replay = sft_config(fast, fast.replay_mix)
    assert (replay.train.steps, replay.batch_size, replay.pretrain_mix, replay.pretrain_statements) == (
        150, 4, 0.25, 4000)


@pytest.mark.parametrize("field, value, match", [("steps", 0, "steps"), ("replay_mix", 1.0, "replay_mix"),
                                                  ("eval_prompts", 0, "eval_prompts"),
                                                  ("shown_replies", -1, "shown_replies")])
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        sft_config(build(SFTReplayConfig, None, None, **{field: value}))


def test_tiny_study_end_to_end(tiny_result, tmp_path):
    r = tiny_result
    assert r["config"]["steps"] == 3 and set(r["runs"]) == {"plain", "replay"}
    plain, replay = r["runs"]["plain"], r["runs"]["replay"]
    assert (plain["pretrain_mix"], replay["pretrain_mix"]) == (0.0, 0.25)
    assert plain["history"]["step"] == [0, 1, 2] and len(plain["history"]["losses/train"]) == 3
    # the same seed and data order: the first step's batch differs only by the replayed row, so the runs part
    assert plain["history"]["losses/train"] != replay["history"]["losses/train"]
    assert plain["eval"]["overall"]["n"] == 4 and len(plain["eval"]["replies"]) == 2
    for run in (plain, replay):
        e = run["elicitation"]
        assert set(e) == {"base_knows", "sft_answers", "elicited", "sft_prefilled"}
        assert all(0.0 <= v <= 1.0 for rates in e.values() for v in rates.values())
    path = tmp_path / "h.json"
    path.write_text(json.dumps(r))
    assert load_history(path) == json.loads(json.dumps(r))


def test_load_history_refuses_what_is_not_a_history(tmp_path):
    with pytest.raises(ValueError, match="no SFT replay history"):
        load_history(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"config": {}, "runs": {}}))
    with pytest.raises(ValueError, match="not a result of sft_replay_study"):
        load_history(bad)


def test_main_refuses_a_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path)])
    assert e.value.code == 2 and "--out: expected a .json file path" in capsys.readouterr().err


def test_shipped_history_has_the_recipes_format(tiny_result):
    """The shipped history is what ``sft_replay_study`` returns today, made by the full recipe, and small."""
    h = load_history()
    assert HISTORY.stat().st_size < 200_000
    assert h["config"] == vars(SFTReplayConfig())  # the full recipe: HISTORY_COMMAND has no --fast
    assert "--fast" not in HISTORY_COMMAND and f"--out data/sft/{HISTORY.name}" in HISTORY_COMMAND
    assert _shape(h) == _shape(tiny_result)
    for run in h["runs"].values():
        assert run["history"]["step"] == list(range(800))
        assert run["eval"]["overall"]["n"] == 200


def test_shipped_history_meets_lesson_04s_claims():
    """What lesson 04 asserts in full mode on the shipped runs (sections 4 and 7), the same thresholds."""
    runs = load_history()["runs"]
    loss = np.array(runs["plain"]["history"]["losses/train"])
    assert smooth(loss, 10)[-1] < 0.5 * loss[:5].mean()
    assert runs["plain"]["eval"]["overall"]["eos_rate"] >= 0.8
    plain, replay = runs["plain"]["elicitation"], runs["replay"]["elicitation"]
    assert plain["sft_prefilled"]["heldout"] < plain["base_knows"]["heldout"] - 0.3
    assert replay["sft_prefilled"]["heldout"] - plain["sft_prefilled"]["heldout"] >= 0.15
