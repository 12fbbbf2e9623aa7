"""recipes/dpo_overoptimization.py: DPO's gold against √KL over epochs and β, and its shipped result."""

import math

import pytest

from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.recipes.dpo_overoptimization import (
    DPOOveroptConfig,
    dpo_overoptimization,
    fast_dpo_config,
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

