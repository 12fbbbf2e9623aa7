"""recipes.rejection_sampling: the selection rules on hand-made scores, bad settings, and one tiny round."""

import numpy as np
import pytest
from _models import tiny_llama

from rlhfbook_lab.recipes.rejection_sampling import (
    RSConfig,
    rejection_sampling,
    run_against_control,
    select_examples,
    write_report,
)

SCORES = np.array([[0.0, 2.0, 1.0], [5.0, 4.0, -1.0], [0.5, 0.5, 0.1]])


def test_top_per_prompt_keeps_each_prompts_best():
    assert select_examples(SCORES, "top_per_prompt", 0, seed=0)[:2] == [(0, 1), (1, 0)]
    assert {select_examples(SCORES, "top_per_prompt", 0, seed=s)[2] for s in range(20)} == {(2, 0), (2, 1)}
    # an unusable (empty) reply is never kept, and a prompt with none usable is skipped
    usable = np.array([[True, False, True], [False, False, False], [True, True, True]])
    kept = select_examples(SCORES, "top_per_prompt", 0, usable, seed=0)
    assert kept[0] == (0, 2) and all(i != 1 for i, _ in kept)


def test_top_k_overall_keeps_the_pools_best_wherever_they_are():
    assert select_examples(SCORES, "top_k_overall", 3) == [(1, 0), (1, 1), (0, 1)]  # two from prompt 1
    assert len(select_examples(SCORES, "top_k_overall", 9)) == 9
    with pytest.raises(ValueError, match="budget"):
        select_examples(SCORES, "top_k_overall", 0)
    with pytest.raises(ValueError, match="rule must be one of"):
        select_examples(SCORES, "best", 3)
    with pytest.raises(ValueError, match="finite"):
        select_examples([[np.nan]], "top_k_overall", 1)


@pytest.mark.parametrize("change, match", [
    ({"rounds": 0}, "rounds"), ({"n": 0}, "n must"), ({"rule": "top"}, "rule"), ({"selector": "rm"}, "selector"),
    ({"rule": "top_k_overall", "budget": 99}, "budget must be <="),
])
def test_bad_settings_raise(tokenizer, micro_model, change, match):
    cfg = RSConfig(prompts_per_round=2, n=2, eval_prompts=2)
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError, match=match):
        rejection_sampling(micro_model, tokenizer, cfg)


def test_one_tiny_round_records_every_metric(tokenizer):
    model = tiny_llama(tokenizer, seed=0, layers=2)  # a fresh model: the run trains it in place
    cfg = RSConfig(rounds=1, prompts_per_round=3, n=2, eval_prompts=2, max_new_tokens=8, selector="verifier",
                   rule="top_k_overall", budget=2)
    cfg.sft.train.steps, cfg.sft.batch_size = 1, 2
    out = rejection_sampling(model, tokenizer, cfg)
    assert out.history["round"] == [0, 1] and out.heldout_gold.shape == (2, 2)
    assert len(out.history["pool/gold"]) == 1 and out.history["selected/count"][0] <= 2
    with pytest.raises(ValueError, match="scorer must be given"):
        rejection_sampling(model, tokenizer, RSConfig(selector="custom", prompts_per_round=2, n=2, eval_prompts=2))


def test_run_against_control_pairs_the_arms_and_writes_a_report(tmp_path):
    cfg = RSConfig(rounds=1, prompts_per_round=2, n=2, eval_prompts=3, max_new_tokens=8, selector="verifier")
    cfg.sft.train.steps, cfg.sft.batch_size = 1, 2
    result = run_against_control(cfg, policy="sft-tiny", log=None)
    assert set(result["arms"]) == {"verifier", "random"}
    for h in result["arms"].values():
        assert h["round"] == [0, 1]
    # round 0 is the same model on the same held-out prompts in both arms: nothing differs yet
    assert result["arms"]["verifier"]["heldout/gold"][0] == result["arms"]["random"]["heldout/gold"][0]
    assert set(result["gain"]) == {"gold", "correct"} and result["gain"]["gold"]["se"] >= 0
    out = write_report(result, tmp_path / "rs")
    assert "| random | 1 |" in (out / "report.md").read_text() and (out / "result.json").is_file()
    with pytest.raises(ValueError, match="selector must be 'gold' or 'verifier'"):
        run_against_control(RSConfig(selector="random"), log=None)
