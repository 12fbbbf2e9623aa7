"""recipes/dpo_overoptimization.py: DPO's gold against √KL over epochs and β, and its shipped result."""

import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.recipes.dpo_overoptimization import (
    DPO_HISTORY,
    DPO_HISTORY_COMMAND,
    DPOOveroptConfig,
    dpo_overoptimization,
    fast_dpo_config,
    load_dpo_history,
)


@pytest.mark.parametrize("field, value", [("betas", ()), ("betas", (0.0,)), ("epochs", 0), ("pairs", 1),
                                          ("lr", 0.0), ("eval_prompts", 0), ("evals_per_epoch", 0)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        DPOOveroptConfig(**{field: value})


def test_fast_recipe_builds():
    assert fast_dpo_config().pairs < DPOOveroptConfig().pairs


def test_tiny_run_end_to_end():
    """Two epochs of 2 steps, judged every epoch: the start (KL exactly 0: the policy is its reference), one
    point per checkpoint, the peak bookkeeping; asking for more pairs than given is an error naming ``pairs``."""
    rows = load_preference_file("train", origin="on_policy")[:20]
    cfg = DPOOveroptConfig(betas=(0.1,), epochs=2, pairs=8, batch_size=4, evals_per_epoch=1, eval_prompts=3)
    r = dpo_overoptimization(cfg, pairs=rows, log=None)
    (run,) = r["runs"]
    assert r["steps_per_epoch"] == 2 and run["step"] == [0, 2, 4] and run["epoch"] == [0.0, 1.0, 2.0]
    assert run["kl"][0] == pytest.approx(0.0, abs=1e-4) and run["d"][0] == pytest.approx(0.0, abs=1e-2)
    assert run["kl"][-1] > run["kl"][0]  # training moved the policy
    assert all(math.isfinite(g) for g in run["gold"]) and run["peak"]["peak"] == max(run["gold"])
    with pytest.raises(ValueError, match="pairs"):
        dpo_overoptimization(DPOOveroptConfig(pairs=30), pairs=rows, log=None)



def test_shipped_result_loads_and_meets_its_stated_quality():
    """Lesson 14's claims on the shipped DPO result, made by DPO_HISTORY_COMMAND at the full recipe: the smaller β
    travels much further in KL; at every β gold first rises above the start; at the smaller β it then falls below
    its peak by more than 3 s.e. and below the start; the larger β ends with more gold."""
    h = load_dpo_history()
    assert DPO_HISTORY.stat().st_size < 1_000_000 and "data/overopt/dpo.json" in DPO_HISTORY_COMMAND
    assert h["config"] == json.loads(json.dumps(asdict(DPOOveroptConfig())))
    lo, hi = min(h["runs"], key=lambda r: r["beta"]), max(h["runs"], key=lambda r: r["beta"])
    assert lo["kl"][-1] > 3 * hi["kl"][-1]
    for r in (lo, hi):
        assert np.all(np.diff(r["step"]) > 0) and r["kl"][0] == pytest.approx(0.0, abs=1e-4)
        assert r["peak"]["peak"] > r["peak"]["start"] + 3 * r["gold_se"][0]
    p = lo["peak"]
    assert p["fall"] > 3 * p["final_se"] and p["final"] < p["start"], p
    assert hi["peak"]["final"] > p["final"] + 3 * p["final_se"]


def test_load_dpo_history_refuses_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_dpo_history(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="path"):
        load_dpo_history(tmp_path / "x.json")
