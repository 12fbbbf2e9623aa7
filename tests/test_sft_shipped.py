"""The shipped SFT model (data/checkpoints/sft-tiny) and its data (data/sft) still meet their stated quality
(``sft.SHIPPED_QUALITY``), measured against the shipped base model on the same held-out prompts. Greedy
evaluation is deterministic; the sampled one is seeded."""

import json

import pytest

from rlhfbook_lab import world
from rlhfbook_lab.lm.evaluation import elicitation_report, evaluate_chat, sample_groups
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.shipped_data import SFT_HELDOUT_SIZE, SFT_TRAIN_SIZE, load_instruction_file
from rlhfbook_lab.paths import CHECKPOINTS
from rlhfbook_lab.trainers.sft import SHIPPED_QUALITY, SFTConfig

Q = SHIPPED_QUALITY


@pytest.fixture(scope="module")
def models():
    base, tok = load_model("base-tiny", device="cpu")
    sft_model, sft_tok = load_model("sft-tiny", device="cpu")
    assert sft_tok.get_vocab() == tok.get_vocab()
    return base, sft_model, tok


@pytest.fixture(scope="module")
def greedy(models):
    base, sft_model, tok = models
    problems = world.heldout_prompts(Q["n_prompts"], seed=0)
    return evaluate_chat(base, tok, problems), evaluate_chat(sft_model, tok, problems)


def test_shipped_sft_data_is_split_by_prompt_and_small():
    train, heldout = load_instruction_file("train"), load_instruction_file("heldout")
    assert len(train) == SFT_TRAIN_SIZE and len(heldout) == SFT_HELDOUT_SIZE
    assert train[:50] == world.instruction_data(50, 0, "train")  # regenerable: `rlhfbook-lab sft-data`
    for rows, split in ((train, "train"), (heldout, "heldout")):
        for r in rows:
            p = world.parse_prompt(r["prompt"])
            assert world.split_of(p.family, p.key) == split
    sizes = [(CHECKPOINTS.parent / "sft" / f"sft_{s}.jsonl").stat().st_size for s in ("train", "heldout")]
    assert sum(sizes) < 2e6


def test_shipped_sft_recipe_is_the_default_config():
    meta = json.loads((CHECKPOINTS / "sft-tiny" / "training_meta.json").read_text())
    default = SFTConfig()
    assert meta["base"] == "base-tiny" and meta["num_examples"] == SFT_TRAIN_SIZE
    assert meta["config"]["train"]["steps"] == default.train.steps
    assert meta["config"]["train"]["lr"] == default.train.lr and meta["config"]["batch_size"] == default.batch_size
    assert meta["config"]["pretrain_mix"] == default.pretrain_mix
    log = json.loads((CHECKPOINTS / "sft-tiny" / "training_log.json").read_text())
    assert len(log["losses/train"]) == default.train.steps and log["eval/step"][-1] == default.train.steps
    assert (CHECKPOINTS / "sft-tiny" / "model.safetensors").stat().st_size < 10e6


def test_shipped_sft_ends_its_turns_and_beats_the_base_model(greedy):
    base, sft_eval = greedy
    o, b = sft_eval.overall, base.overall
    assert o["eos_rate"] >= Q["eos_rate_min"], o
    assert o["correct_rate"] >= Q["correct_rate_min"], o
    assert o["gold_score"] >= Q["gold_score_min"], o
    assert o["correct_rate"] - b["correct_rate"] >= Q["margin_over_base"]["correct_rate"], (o, b)
    assert o["gold_score"] - b["gold_score"] >= Q["margin_over_base"]["gold_score"], (o, b)
    for family, floor in Q["family_correct_min"].items():
        assert sft_eval.by_family[family]["correct_rate"] >= floor, (family, sft_eval.by_family[family])
    for family, res in sft_eval.by_family.items():  # every family, the held-out creatures included
        assert res["eos_rate"] >= 0.9, (family, res)
        assert res["gold_score"] > base.by_family[family]["gold_score"], family


def test_shipped_sft_leaves_room_for_rl(models):
    _, sft_model, tok = models
    problems = world.heldout_prompts(Q["n_group_prompts"], seed=1, families=("addition",))
    groups = sample_groups(sft_model, tok, problems, k=Q["k"], temperature=1.0, seed=0)
    assert groups.mixed_share >= Q["mixed_share_min"], groups.counts
    assert 0.2 < groups.sample_accuracy < 0.95, groups.sample_accuracy


def test_shipped_sft_answers_what_it_was_asked_about_and_base_knows_the_rest(models):
    base, sft_model, tok = models
    rep = elicitation_report(base, sft_model, tok)
    assert rep.base_knows["heldout"] >= 0.95 and rep.base_knows["train"] >= 0.95  # knowledge from pretraining
    assert rep.sft_answers["train"] >= Q["creatures_train_answers_min"], rep.sft_answers
    assert rep.sft_answers["heldout"] < rep.sft_answers["train"]  # ... not all of it surfaced by SFT
