"""Tests for ``rlhfbook-lab dpo`` and the recipe behind it (``dpo_trainer.dpo_config`` / ``dpo_from_sft``).

The policy is the tests' micro model saved to a folder, so a run costs a second; the shipped pairs are real.
Property: trained with lr = 0 the policy is its reference, so its KL is exactly 0 and the judge's verdict does not
change. The front door refuses bad input with a message naming it, before any training.
"""

import copy
import json

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.cli import main
from rlhfbook_lab.config import fields_of
from rlhfbook_lab.lm.data import write_pairs
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model, save_model
from rlhfbook_lab.trainers.dpo import (
    FAST,
    FAST_SIZES,
    RECIPES,
    DPOConfig,
    dpo_config,
    dpo_from_sft,
    kto_examples,
    train_dpo,
)
from rlhfbook_lab.trainers.loop import TrainConfig

KEYS = [(3, 4), (12, 7), (25, 31), (8, 9), (40, 2), (6, 6)]


def make_pairs(keys=KEYS):
    """Chosen: the plain reference answer; rejected: a wrong sum."""
    out = []
    for a, b in keys:
        p = world.make_problem("addition", (a, b))
        out.append({"prompt": p.prompt, "chosen": world.render_response(p),
                    "rejected": world.render_response(p, answer=f"{a} + {b} = {a + b + 1}.")})
    return out


@pytest.fixture(scope="module")
def policy_dir(micro_model, tokenizer, tmp_path_factory):
    """The micro model as a checkpoint folder: what ``--policy`` loads."""
    return save_model(copy.deepcopy(micro_model), tokenizer, tmp_path_factory.mktemp("ckpt") / "micro")


def small_run(cfg, policy_dir, **kw):
    kw = {"pairs": make_pairs(), "eval_prompts": 8, "kl_prompts": 4, "progress": False, **kw}
    return dpo_from_sft(cfg, policy=policy_dir, **kw)


# --- the configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", sorted(RECIPES))
def test_dpo_config_is_the_recipe_of_each_loss(loss):
    """The class's defaults, then the loss's recipe, then fast mode's changes, then overrides: each written once."""
    cfg, fast = dpo_config(loss), dpo_config(loss, fast=True)
    leaves, fast_leaves = fields_of(cfg), fields_of(fast)
    assert cfg.loss == loss and all(leaves[k][1] == v for k, v in RECIPES[loss].items() if k in leaves)
    assert all(fast_leaves[k][1] == v for k, v in FAST[loss].items())
    untouched = set(leaves) - set(RECIPES[loss]) - {"loss"}
    assert all(leaves[k][1] == fields_of(DPOConfig())[k][1] for k in untouched)  # nothing else is written
    assert fast.batch_size == (2 if loss == "kto" else 1) * FAST["dpo"]["batch_size"]  # KTO's items: examples
    over = dpo_config(loss, beta=0.7, steps=5, seed=3)
    assert (over.beta, over.train.steps, over.train.seed, over.train.lr) == (0.7, 5, 3, cfg.train.lr)


@pytest.mark.parametrize("kwargs, match", [({"loss": "ppo"}, "unknown recipe 'ppo'"), ({"beta": 0.0}, "beta"),
                                           ({"beta": -1.0}, "beta"), ({"steps": 0}, "steps must be"),
                                           ({"lr": -1e-4}, "lr must be"), ({"lrr": 1.0}, "unknown setting 'lrr'")])
def test_dpo_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dpo_config(**kwargs)


# --- the run ----------------------------------------------------------------------------------------------------


def test_a_run_with_lr_zero_stays_at_the_reference(policy_dir, tokenizer):
    """lr = 0: the policy never moves, so the sampled KL to the reference is exactly 0 and the verdict is the
    same before and after (the judge is greedy, the reference is a copy of the start)."""
    cfg = dpo_config("dpo", steps=2, lr=0.0, batch_size=3)
    run = small_run(cfg, policy_dir)
    r = run.report
    assert r["kl"] == 0.0 and r["kl_k1"] == 0.0
    assert r["gold_after"] == r["gold_before"] and r["gold_gain"] == 0.0
    assert r["pairs"] == len(KEYS) and r["steps"] == 2 and r["loss"] == "dpo"
    assert sorted(run.evals) == ["greedy_after", "greedy_before", "sampled_after", "sampled_before"]
    assert run.evals["greedy_after"].rows == run.evals["greedy_before"].rows  # the very same replies
    assert run.evals["sampled_after"].overall["gold_score"] == r["gold_sampled_after"] == r["gold_sampled_before"]
    start, _ = load_model(policy_dir)
    assert all(torch.equal(a, b) for a, b in zip(start.parameters(), run.model.parameters()))
    # the verdict is the judge's, recomputed outside the recipe
    ev = evaluate_chat(start, tokenizer, world.heldout_prompts(8, seed=0))
    assert r["gold_before"] == ev.overall["gold_score"] and r["eos_before"] == ev.overall["eos_rate"]


def test_a_run_moves_the_policy_and_reports_it(policy_dir):
    cfg = dpo_config("dpo", steps=4, lr=1e-3, batch_size=3)
    run = small_run(cfg, policy_dir, eval_every=2)
    r = run.report
    assert r["kl"] > 0 and r["margin"] > 0 and r["logps_chosen"] < 0
    assert r["gold_gain"] == pytest.approx(r["gold_after"] - r["gold_before"])
    assert run.history["eval/step"] == [2, 4] and len(run.history["eval/kl"]) == 2
    assert run.history["eval/kl"][-1] == pytest.approx(r["kl"])  # the same prompts, the same seed
    assert r["train_cpu_seconds"] > 0


def test_num_pairs_takes_a_seeded_subset(policy_dir):
    cfg = dpo_config("dpo", steps=1, batch_size=2)
    r = small_run(cfg, policy_dir, num_pairs=4, judge_before=False).report
    assert r["pairs"] == 4 and "gold_before" not in r and "gold_gain" not in r
    assert small_run(cfg, policy_dir, num_pairs=100).report["pairs"] == len(KEYS)  # at most what there is


def test_identical_pairs_given_as_a_list_are_dropped_and_counted(policy_dir):
    same = dict(make_pairs()[0], rejected=make_pairs()[0]["chosen"])
    r = small_run(dpo_config("dpo", steps=1, batch_size=2), policy_dir, pairs=make_pairs() + [same]).report
    assert (r["pairs"], r["pairs_identical"]) == (len(KEYS), 1)


def test_kto_refuses_data_with_only_undesirable_examples(micro_model, tokenizer):
    bad = [e for e in kto_examples(make_pairs()) if not e["label"]]
    cfg = dpo_config("kto", steps=1, batch_size=2)
    with pytest.raises(ValueError, match="KTO needs desirable and undesirable examples; all 6 are undesirable"):
        train_dpo(copy.deepcopy(micro_model), tokenizer, bad, cfg, progress=False)


# --- the command ------------------------------------------------------------------------------------------------


def test_cli_writes_a_loadable_checkpoint(policy_dir, tmp_path, capsys):
    out = tmp_path / "dpo"
    main(["dpo", "--fast", "--steps", "2", "--policy", str(policy_dir), "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"] == str(out) and printed["loss"] == "dpo" and printed["steps"] == 2
    assert printed["pairs"] == FAST_SIZES["num_pairs"] and printed["eval_prompts"] == FAST_SIZES["eval_prompts"]
    assert printed["pairs_source"] == "data/preferences/train.jsonl on_policy"
    model, tok = load_model(out)
    assert tok.pad_token_id is not None and sum(p.numel() for p in model.parameters()) > 0
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["config"]["loss"] == "dpo" and meta["report"]["kl"] == pytest.approx(printed["kl"], abs=1e-4)
    log = json.loads((out / "training_log.json").read_text())
    assert log["step"] == [0, 1] and len(log["rewards/margins"]) == 2
    # a second run into the same folder is refused before training, and leaves the checkpoint alone
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit) as e:
        main(["dpo", "--fast", "--steps", "2", "--policy", str(policy_dir), "--out", str(out)])
    assert e.value.code == 2 and "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before


def test_cli_loss_choice_and_precomputed_reference(policy_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, make_pairs())
    out = tmp_path / "ipo"
    main(["dpo", "--fast", "--loss", "ipo", "--beta", "0.3", "--steps", "1", "--precompute-ref-logps",
          "--policy", str(policy_dir), "--pairs", str(pairs), "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert (printed["loss"], printed["beta"], printed["precompute_ref_logps"]) == ("ipo", 0.3, True)
    assert printed["pairs_source"] == str(pairs) and printed["pairs"] == len(KEYS)
    assert json.loads((out / "training_meta.json").read_text())["config"]["precompute_ref_logps"] is True


@pytest.mark.parametrize("argv, message", [
    (["--beta", "0"], "beta must be a finite number > 0; got 0.0"),
    (["--beta", "-0.1"], "beta must be a finite number > 0"),
    (["--steps", "0"], "steps must be an int >= 1"),
])
def test_cli_refuses_bad_settings(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["dpo", "--out", str(tmp_path / "x"), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_refuses_a_pair_whose_chosen_equals_its_rejected(policy_dir, tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    rows = make_pairs()
    rows[2]["rejected"] = rows[2]["chosen"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(SystemExit) as e:
        main(["dpo", "--policy", str(policy_dir), "--pairs", str(path), "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "pair 2: 'chosen' is identical to 'rejected'" in capsys.readouterr().err


def test_cli_refuses_a_non_empty_output_folder_before_training(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as e:
        main(["dpo", "--out", str(tmp_path), "--policy", "no-such-model"])  # refused before loading anything
    assert e.value.code == 2 and "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_lesson_sized_train_config_is_untouched():
    """dpo_config builds a fresh TrainConfig each time: changing one run's steps never leaks into the next."""
    a = dpo_config("dpo")
    a.train.steps = 1
    assert dpo_config("dpo").train.steps == DPOConfig().train.steps and isinstance(a.train, TrainConfig)


def test_printed_reports_keep_small_values():
    """Regression: the CLIs rounded floats to 4 decimals, so DPO's lr 5e-5 printed as 0.0001."""
    from rlhfbook_lab.cli import _rounded

    assert _rounded({"lr": 5e-5, "gold": 0.693412, "steps": 100, "cpu": 120.0595}) == \
        {"lr": 5e-5, "gold": 0.6934, "steps": 100, "cpu": 120.1}
