"""pipeline: the config's checks and the report it writes (the full arc is run by `rlhfbook-lab pipeline`)."""

import json

import pytest
import torch

from rlhfbook_lab.config import fields_of
from rlhfbook_lab.recipes.pipeline import RL_RECIPE, RL_RECIPE_CHECK, PipelineConfig, pipeline_rl_config, write_report
from rlhfbook_lab.trainers.rl import RLConfig


def test_fast_config_uses_the_shipped_sft_and_reward_models():
    cfg = PipelineConfig.fast_config()
    assert cfg.fast and set(cfg.stages) == {"dpo", "rl"}
    assert PipelineConfig().stages == ("sft", "rm", "dpo", "rl")


@pytest.mark.parametrize("fast", [True, False])
def test_rl_stage_config(fast):
    """GRPO gets the pipeline's recipe, a set field overrides it, another algorithm keeps its own preset."""
    make = PipelineConfig.fast_config if fast else PipelineConfig
    rl = pipeline_rl_config(make(seed=3))
    assert (rl.algo, rl.train.seed, rl.eval_prompts) == ("grpo", 3, 0)
    assert {k: fields_of(rl)[k][1] for k in RL_RECIPE_CHECK} == RL_RECIPE_CHECK  # the checking reward model's
    bt = pipeline_rl_config(make(seed=3, reward_model="bt"))
    assert {k: fields_of(bt)[k][1] for k in RL_RECIPE} == RL_RECIPE
    assert pipeline_rl_config(make(rl_beta=0.2, rl_steps=3)).beta == 0.2
    assert pipeline_rl_config(make(rl_beta=0.2, rl_steps=3)).train.steps == 3
    ppo = pipeline_rl_config(make(rl_algo="ppo"))
    expected = (RLConfig.fast if fast else RLConfig.preset)("ppo", seed=0, eval_prompts=0)
    assert ppo.differs_from(expected) == {}


@pytest.mark.parametrize("change, match", [
    (dict(stages=("sft", "ppo")), "stages"),
    (dict(sft_steps=0), "sft_steps"),
    (dict(dpo_steps=-1), "dpo_steps"),
    (dict(rm_steps=0), "rm_steps"),
    (dict(rl_steps=0), "rl_steps"),
    (dict(dpo_beta=0.0), "dpo_beta"),
    (dict(eval_prompts=0), "eval_prompts"),
    (dict(dpo_lr=0.0), "dpo_lr"),
    (dict(rl_group_size=0), "rl_group_size"),
    (dict(rl_lr=-1e-4), "rl_lr"),
    (dict(rl_beta=-0.1), "rl_beta"),
    (dict(rm_eval_pairs=0), "rm_eval_pairs"),
    (dict(reward_model="gold"), "reward_model must be one of"),
])
def test_config_bad_input(change, match):
    with pytest.raises(ValueError, match=match):
        PipelineConfig(**change)


def test_write_report_table_and_figure(tmp_path):
    results = {
        "config": {"fast": True, "seed": 0, "eval_prompts": 8, "rl_algo": "grpo"},
        "models": {
            "base": {"eos_rate": 0.0, "correct_rate": 0.0, "gold_score": -0.4},
            "sft": {"eos_rate": 1.0, "correct_rate": 0.5, "gold_score": 0.5, "kl_to_sft": 0.0,
                    "kl_to_sft_stderr": 0.0},
            "dpo": {"eos_rate": 1.0, "correct_rate": 0.625, "gold_score": 0.6, "kl_to_sft": 1.25,
                    "kl_to_sft_stderr": 0.1, "gain_over_sft": 0.1, "gain_over_sft_stderr": 0.025,
                    "correct_gain_over_sft": 0.125, "correct_gain_over_sft_stderr": 0.05},
        },
        "reward_model": {"name": "rm-check-tiny", "kind": "check", "heldout_accuracy": 0.7, "bayes_ceiling": 0.9,
                         "heldout_pairs": 10, "ece": 0.03, "taste_accuracy": 0.75, "correctness_accuracy": 0.625},
        "seconds": {"base": 1.0, "total": 2.0},
    }
    write_report(results, tmp_path / "out")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| DPO | +0.600 | 0.62 | 1.00 | 1.25 ± 0.10 |" in md
    assert "| base (pretrained) | -0.400 | 0.00 | 0.00 | — |" in md
    assert "paired on the same prompts (± standard error): DPO +0.100 ± 0.025." in md
    assert "Correctness change over SFT, paired (± standard error): DPO +0.125 ± 0.050." in md
    assert ("Reward model: rm-check-tiny. Held-out accuracy 0.700 on 10 pairs (taste pairs 0.750, pairs where one "
            "reply is right 0.625); Bayes ceiling of the labels 0.900") in md
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    assert (tmp_path / "out" / "summary.png").stat().st_size > 10_000


def test_reward_model_stage_builds_a_checking_reward_model_and_saves_it_loadable(tmp_path, monkeypatch):
    """The ``rm`` stage with ``reward_model="check"`` on a sliver of the data: a Bradley-Terry taste model, a checker on
    it and the SFT model, RL paid by it, the report naming it, and ``checkpoints/rm`` loading back as the same
    checking reward model (its frozen models named by absolute path)."""
    from rlhfbook_lab.lm.reward_model import CheckingRewardModel, load_reward_model, score_replies
    from rlhfbook_lab.lm.shipped_data import load_preference_file
    from rlhfbook_lab.recipes import pipeline
    from rlhfbook_lab.trainers.checker import CheckerConfig

    sliver = {"train": load_preference_file("train")[:24], "heldout": load_preference_file("heldout")[:8]}
    monkeypatch.setattr(pipeline, "load_preference_file", lambda split: sliver[split])
    monkeypatch.setattr(pipeline, "CheckerConfig", lambda seed: CheckerConfig(steps=2, batch_size=4, seed=seed))
    cfg = PipelineConfig(stages=("rm", "rl"), rm_steps=1, rl_steps=1, rl_prompts_per_step=2, rl_group_size=2,
                         eval_prompts=2, kl_prompts=1)
    results = pipeline.run_pipeline(cfg, out=tmp_path / "out", progress=False, log=lambda *a: None)
    assert results["reward_model"]["kind"] == "check" and "trained here" in results["reward_model"]["name"]
    assert "correct_gain_over_sft" in results["models"]["rl"]
    back, tok = load_reward_model(tmp_path / "out" / "checkpoints" / "rm", "cpu")
    assert isinstance(back, CheckingRewardModel) and back.is_normalized
    assert back.names["reference"] == "sft-tiny" and back.names["taste"].endswith("rm-taste")
    md = (tmp_path / "out" / "results.md").read_text()
    assert "RL (grpo, check reward model)" in md and "Reward model: checking" in md
    scores = score_replies(back, tok, ["What is 2 + 3?"] * 2, ["2 + 3 = 5.", "2 + 3 = 7."])
    assert torch.isfinite(scores).all()
