"""The shipped reward model (data/checkpoints/rm-tiny) loads and still meets its stated quality
(``reward_trainer.SHIPPED_QUALITY``) on the shipped held-out preference pairs, and is normalised on samples of
``sft-tiny`` as its metadata says. Scoring is deterministic; the sampled check is seeded."""

import json

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import pair_kind, pairs_bayes_ceiling
from rlhfbook_lab.lm.reward_model import load_reward_model
from rlhfbook_lab.lm.shipped_data import load_preference_file, preference_prompts
from rlhfbook_lab.paths import CHECKPOINTS
from rlhfbook_lab.trainers.reward import NORMALIZE_SETTINGS, SHIPPED_QUALITY, evaluate_reward_model, shipped_rm_config

Q = SHIPPED_QUALITY
RM_DIR = CHECKPOINTS / "rm-tiny"


@pytest.fixture(scope="module")
def rm_and_tok():
    return load_reward_model("rm-tiny", device="cpu")


@pytest.fixture(scope="module")
def heldout_eval(rm_and_tok):
    rm, tok = rm_and_tok
    return evaluate_reward_model(rm, tok, load_preference_file("heldout"))


def test_shipped_rm_recipe_is_the_default_config():
    meta = json.loads((RM_DIR / "training_meta.json").read_text())
    cfg = shipped_rm_config()
    assert meta["policy"] == "sft-tiny"
    assert meta["config"]["train"]["steps"] == cfg.train.steps and meta["config"]["train"]["lr"] == cfg.train.lr
    assert meta["config"]["batch_size"] == cfg.batch_size
    assert meta["config"]["group_by_length"] == cfg.group_by_length
    assert meta["num_train_pairs"] == len(load_preference_file("train"))
    log = json.loads((RM_DIR / "training_log.json").read_text())
    assert len(log["losses/train"]) == cfg.train.steps
    assert (RM_DIR / "model.safetensors").stat().st_size < 10e6


def test_shipped_rm_is_within_its_stated_distance_of_the_bayes_ceiling(heldout_eval):
    ev = heldout_eval
    assert ev.num_pairs == len(load_preference_file("heldout"))
    assert ev.accuracy >= Q["min_accuracy"], str(ev)
    assert ev.bayes_ceiling - ev.accuracy <= Q["max_gap_to_ceiling"], str(ev)
    heldout = load_preference_file("heldout")
    taste = torch.tensor([pair_kind(r) == "taste" for r in heldout])
    taste_acc = float((ev.chosen_rewards > ev.rejected_rewards)[taste].float().mean())
    taste_ceiling = pairs_bayes_ceiling([r for r, t in zip(heldout, taste) if t])
    assert taste_ceiling - taste_acc <= Q["max_gap_taste"], (taste_acc, taste_ceiling)
    assert ev.accuracy <= ev.bayes_ceiling + 0.03, str(ev)  # far above the ceiling would mean a leak
    meta = json.loads((RM_DIR / "training_meta.json").read_text())
    assert meta["heldout"]["accuracy"] == pytest.approx(ev.accuracy, abs=1e-9)  # what it reported when it shipped


def test_shipped_rm_is_normalised_on_the_reference_policy(rm_and_tok):
    rm, tok = rm_and_tok
    meta = json.loads((RM_DIR / "training_meta.json").read_text())["normalization"]
    assert rm.is_normalized
    assert float(rm.reward_mean) == pytest.approx(meta["mean"]) and float(rm.reward_std) == pytest.approx(meta["std"])
    assert {k: meta[k] for k in NORMALIZE_SETTINGS} == NORMALIZE_SETTINGS
    # fresh samples of sft-tiny (other prompts, another seed) score about mean 0, std 1
    policy, _ = load_model("sft-tiny", device="cpu")
    problems = preference_prompts(32, "train", seed=7, origin="normalize-check")
    gen = generate(policy, tok, [p.prompt for p in problems], num_return_sequences=4, temperature=1.0,
                   max_new_tokens=NORMALIZE_SETTINGS["max_new_tokens"], seed=7)
    with torch.no_grad():
        r = rm(gen.input_ids, gen.attention_mask)
    assert abs(float(r.mean())) < 0.35 and 0.7 < float(r.std()) < 1.4, (float(r.mean()), float(r.std()))
    # ... and they rank those samples the way the gold judge does
    gold = torch.tensor([world.gold_score(p, t, allow_empty=True)
                         for p, t in zip([p for p in problems for _ in range(4)], gen.texts)])
    corr = torch.corrcoef(torch.stack([r, gold]))[0, 1]
    assert corr > Q["min_gold_correlation"], float(corr)
