"""The shipped reward models (data/checkpoints/rm-tiny, and rm-check-tiny below) load and still meet their stated
quality (``reward_trainer.SHIPPED_QUALITY``, ``checking_rm.CHECK_QUALITY``) on the shipped held-out preference pairs,
and are normalised on samples of ``sft-tiny`` as their metadata says. Scoring is deterministic; the sampled check is
seeded."""

import json
from dataclasses import asdict

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import pair_kind, pairs_bayes_ceiling
from rlhfbook_lab.lm.reward_model import CheckingRewardModel, load_reward_model
from rlhfbook_lab.lm.shipped_data import load_preference_file, preference_prompts
from rlhfbook_lab.paths import CHECKPOINTS
from rlhfbook_lab.recipes.checking_rm import CHECK_QUALITY as CQ
from rlhfbook_lab.trainers.checker import CheckerConfig
from rlhfbook_lab.trainers.reward import (
    NORMALIZE_SETTINGS,
    SHIPPED_QUALITY,
    accuracy_by_kind,
    evaluate_reward_model,
    shipped_rm_config,
)

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


# --- rm-check-tiny: the reward model that checks answers (recipes.checking_rm, issue 18) -------------------------

CHECK_DIR = CHECKPOINTS / "rm-check-tiny"


@pytest.fixture(scope="module")
def check_eval():
    crm, tok = load_reward_model("rm-check-tiny", device="cpu")
    return crm, evaluate_reward_model(crm, tok, load_preference_file("heldout"))


def test_shipped_checking_rm_checks_answers_and_keeps_taste(check_eval, heldout_eval):
    crm, ev = check_eval
    heldout = load_preference_file("heldout")
    mine, base = accuracy_by_kind(ev, heldout), accuracy_by_kind(heldout_eval, heldout)
    assert isinstance(crm, CheckingRewardModel) and crm.names == {"taste": "rm-tiny", "reference": "sft-tiny"}
    assert mine["all"] >= CQ["min_accuracy"] and mine["correctness"] >= CQ["min_correctness"], mine
    assert base["taste"] - mine["taste"] <= CQ["max_taste_drop"], (mine["taste"], base["taste"])
    assert mine["correctness"] - base["correctness"] > 0.2  # rm-tiny is at chance there
    meta = json.loads((CHECK_DIR / "training_meta.json").read_text())
    # what it reported when it shipped, within 3 of 1,368 pairs (a near-tie pair may flip on another CPU's kernels)
    assert meta["heldout"]["accuracy"] == pytest.approx(ev.accuracy, abs=0.0022)
    assert meta["config"] == asdict(CheckerConfig()) and meta["num_train_pairs"] == len(load_preference_file("train"))
    assert sum(f.stat().st_size for f in CHECK_DIR.iterdir()) < 200_000  # the checker only: the models are named
    assert crm.is_normalized and float(crm.reward_std) == pytest.approx(meta["normalization"]["std"])
