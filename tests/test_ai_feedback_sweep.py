"""Tests for rlhfbook_lab.recipes.ai_feedback_sweep: the grid's checks, the cliff read by hand, a tiny sweep end to
end (its run at the study's own lr and β is the study's DPO run), and the shipped sweep meeting lesson 12's claims."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from rlhfbook_lab.recipes import ai_feedback_sweep as afs
from rlhfbook_lab.recipes import synthetic_data as sd


def _tiny_cfg(**overrides):
    sizes = {"num_prompts": 8, "steps": 2, "batch_size": 2, "eval_prompts": 8,
             "sources": ("sft-tiny@1.0", "base-tiny@1.0")}
    return sd.synthetic_config(fast=True, **{**sizes, **overrides})


def _fake_sweep(gains: dict[float, tuple[float, float]]) -> dict:
    runs = [{"labels": "ai", "beta": 0.1, "lr": lr, "gold": 0.5 + d, "correct": 0.5, "opener": 0.5, "eos": 0.9,
             "gain": {"diff": d, "se": se}, "kl": 1.0, "kl_se": 0.1, "cpu_seconds": 1.0}
            for lr, (d, se) in gains.items()]
    return {"config": {}, "grid": {"labels": ["ai"], "betas": [0.1], "lrs": sorted(gains)}, "labels": {},
            "sft": {"gold": 0.5, "correct": 0.5, "opener": 0.5, "eos": 0.9}, "runs": runs}


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": ("ai", "crowd")}, "labels must be one of"),
    ({"labels": ()}, "labels must be a non-empty"),
    ({"betas": (0.1, 0.1)}, "betas must be a non-empty sequence of distinct"),
    ({"betas": (0.0,)}, "betas must be a finite number > 0"),
    ({"lrs": (1e-4, float("nan"))}, "lrs must be a finite number > 0"),
    ({"kl_prompts": -1}, "kl_prompts must be an int >= 0"),
    ({"out": "sweep.txt"}, "out must be a .json file path"),
])
def test_bad_grid_is_refused_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        afs.dpo_sweep(_tiny_cfg(), **kwargs)


def test_peak_and_cliff_by_hand():
    # gain climbs to 1e-4, then is below SFT at 3e-4 but within 2 s.e., then clearly below at 1e-3
    sweep = _fake_sweep({1e-5: (0.01, 0.02), 1e-4: (0.10, 0.02), 3e-4: (-0.03, 0.02), 1e-3: (-0.30, 0.02),
                         3e-3: (-0.50, 0.02)})
    assert afs.peak_run(sweep, "ai", 0.1)["lr"] == 1e-4
    assert afs.cliff_lr(sweep, "ai", 0.1) == 1e-3
    assert afs.cliff_lr(sweep, "ai", 0.1, z=1.0) == 3e-4  # a looser cliff comes sooner
    assert [r["lr"] for r in afs.sweep_line(sweep, "ai", 0.1)] == [1e-5, 1e-4, 3e-4, 1e-3, 3e-3]
    # a line that never falls has no cliff; a line that is not there is refused
    assert afs.cliff_lr(_fake_sweep({1e-5: (0.0, 0.01), 1e-4: (0.1, 0.01)}), "ai", 0.1) is None
    with pytest.raises(ValueError, match="no run with labels 'gold'"):
        afs.cliff_lr(sweep, "gold", 0.1)
    with pytest.raises(ValueError, match="z must be"):
        afs.cliff_lr(sweep, "ai", 0.1, z=-1)


def test_load_sweep_refuses_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ValueError, match="no DPO sweep at .*make it with: OMP_NUM_THREADS=1"):
        afs.load_sweep(tmp_path / "none.json")
    (tmp_path / "x.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match="not a result of dpo_sweep"):
        afs.load_sweep(tmp_path / "x.json")
    bad = _fake_sweep({1e-5: (0.0, 0.01), 1e-4: (0.1, 0.01)})
    bad["runs"].pop()
    (tmp_path / "y.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="has 1 runs; its grid needs 2"):
        afs.load_sweep(tmp_path / "y.json")


def test_a_tiny_sweep_end_to_end_agrees_with_the_study(tmp_path):
    cfg = _tiny_cfg(lr=1e-4, beta=0.1)
    sweep = afs.dpo_sweep(cfg, labels=("ai", "gold"), betas=(0.1, 0.01), lrs=(1e-3, 1e-4), kl_prompts=4,
                          out=tmp_path / "s.json")
    assert afs.load_sweep(tmp_path / "s.json") == json.loads(json.dumps(sweep))  # JSON-able, written as returned
    assert sweep["grid"] == {"labels": ["ai", "gold"], "betas": [0.1, 0.01], "lrs": [1e-4, 1e-3]}
    assert [(r["labels"], r["beta"], r["lr"]) for r in sweep["runs"]] == [
        (a, b, lr) for a in ("ai", "gold") for b in (0.1, 0.01) for lr in (1e-4, 1e-3)]
    assert all(r["kl"] >= 0 for r in sweep["runs"])  # the exact per-token KL summed: never negative
    # a second computation: the study itself at the same lr and β trains and measures the same DPO runs
    study = sd.run_ai_feedback(cfg)
    assert sweep["labels"] == study.labels
    sft = next(row for row in study.table if row["model"] == "sft")
    assert sweep["sft"] == {k: sft[k] for k in ("gold", "correct", "opener", "eos")}
    for arm in ("ai", "gold"):
        run = next(r for r in sweep["runs"] if (r["labels"], r["beta"], r["lr"]) == (arm, 0.1, 1e-4))
        assert run["gain"] == {k: study.gains[f"dpo[{arm}] - sft"][k] for k in ("diff", "se")}


def test_a_sweep_without_kl(tmp_path):
    sweep = afs.dpo_sweep(_tiny_cfg(steps=1), labels=("ai",), betas=(0.1,), lrs=(1e-4,), kl_prompts=0)
    assert sweep["runs"][0]["kl"] is None and sweep["runs"][0]["kl_se"] is None


# --- the shipped sweep: lesson 12 §2 plots it and asserts these ---------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return afs.load_sweep()


def test_the_shipped_sweep_is_the_documented_command(shipped):
    assert shipped["config"] == json.loads(json.dumps(asdict(sd.synthetic_config())))
    assert shipped["grid"] == {"labels": list(afs.LABELS), "betas": list(afs.BETAS), "lrs": list(afs.LRS)}
    assert "--out data/synthetic/sweep.json" in afs.SWEEP_COMMAND


# --- the label budget -------------------------------------------------------------------------------------------


def test_budget_rm_config_is_two_epochs_within_the_shipped_recipe():
    assert afs.budget_rm_config(5371).train.steps == 150  # rm-tiny's recipe exactly, all the shipped pairs
    shipped = afs.budget_rm_config(5371)
    assert (shipped.train.lr, shipped.batch_size, shipped.train.warmup_steps) == (3e-4, 32, 10)
    assert afs.budget_rm_config(1500).train.steps == 94  # ⌈3000 / 32⌉
    assert afs.budget_rm_config(100).train.steps == 20  # the floor
    assert afs.budget_rm_config(100, min_steps=2).train.steps == 7
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        afs.budget_rm_config(1)


@pytest.mark.parametrize("kwargs, match", [
    ({"budgets": ()}, "budgets must be a non-empty"),
    ({"budgets": (4, 4)}, "budgets must be a non-empty sequence of distinct"),
    ({"budgets": (1,)}, "budgets must be an int >= 2"),
    ({"budgets": (10**6,)}, "budgets must be an int >= 2 and <= 5371"),
    ({"heldout_pairs": 0}, "heldout_pairs must be an int >= 1"),
    ({"min_rm_steps": 0}, "min_rm_steps must be an int >= 1"),
    ({"out": "b.txt"}, "out must be a .json file path"),
])
def test_bad_budget_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        afs.label_budget_study(_tiny_cfg(), **kwargs)


def test_a_tiny_budget_study_end_to_end(tmp_path):
    study = afs.label_budget_study(_tiny_cfg(), budgets=(8, 4), heldout_pairs=16, min_rm_steps=2,
                                   judge="judge-tiny", out=tmp_path / "b.json")
    assert afs.load_budget(tmp_path / "b.json") == json.loads(json.dumps(study))
    assert study["budgets"] == [4, 8] and [p["n"] for p in study["points"]] == [4, 8]
    for p in study["points"]:
        assert p["direct"]["pairs"] == p["n"]  # DPO directly on the same n gold labels the reward model read
        assert 1 <= p["ai"]["pairs"] <= 8  # at most one study pair per training prompt
        assert 0 <= p["rm"]["heldout_accuracy"] <= 1 and 0 <= p["rm"]["label_agreement"] <= 1
        assert p["rm"]["steps"] == 2
    j = study["judge"]  # the generative judge labels the same study pairs, each shown in a random order
    assert j["pairs"] + j["unreadable"] == study["points"][0]["ai"]["pairs"] and j["dpo"]["pairs"] == j["pairs"]
    assert 0 <= j["label_agreement"] <= 1 and 0 <= j["agrees_with_rm"] <= 1 and j["sft"] == study["sft"]
    with pytest.raises(ValueError, match="no label-budget study at"):
        afs.load_budget(tmp_path / "none.json")


def test_the_shipped_sweep_meets_lesson_12s_claims(shipped):
    sft = shipped["sft"]
    for a in afs.LABELS:
        for b in afs.BETAS:
            line, peak = afs.sweep_line(shipped, a, b), afs.peak_run(shipped, a, b)
            assert line[0]["lr"] < peak["lr"] < line[-1]["lr"]  # rises, peaks inside the grid, falls
            assert peak["gain"]["diff"] - 2 * peak["gain"]["se"] > 0
            assert afs.cliff_lr(shipped, a, b) is not None and line[-1]["correct"] < 0.1
            assert all(r["correct"] < sft["correct"] and r["eos"] > sft["eos"] for r in line if r["lr"] >= 1e-4)
        for strong, weak in zip(afs.sweep_line(shipped, a, 0.1)[:-1], afs.sweep_line(shipped, a, 0.01)[:-1]):
            assert weak["kl"] > strong["kl"]
        assert afs.peak_run(shipped, a, 0.01)["gain"]["diff"] <= afs.peak_run(shipped, a, 0.1)["gain"]["diff"]
        assert afs.cliff_lr(shipped, a, 0.01) <= afs.cliff_lr(shipped, a, 0.1)
    assert afs.peak_run(shipped, "ai", 0.1)["lr"] == 1e-4
    assert afs.cliff_lr(shipped, "ai", 0.01) < afs.cliff_lr(shipped, "ai", 0.1)
    for b in afs.BETAS:
        g, ai = afs.peak_run(shipped, "gold", b), afs.peak_run(shipped, "ai", b)
        assert g["lr"] < ai["lr"] and g["gain"]["diff"] < ai["gain"]["diff"]


def test_the_shipped_budget_study_meets_lesson_12s_claims(shipped):
    study = afs.load_budget()
    assert study["budgets"] == list(afs.BUDGETS)
    assert study["config"] == json.loads(json.dumps(asdict(sd.synthetic_config(arms=("ai", "gold")))))
    pts = {p["n"]: p for p in study["points"]}
    full = pts[max(pts)]
    accs = [p["rm"]["heldout_accuracy"] for p in study["points"]]
    assert all(x < y for x, y in zip(accs, accs[1:]))
    assert abs(full["rm"]["label_agreement"] - shipped["labels"]["agreement[ai]"]) < 0.02
    assert full["ai"]["gain"]["diff"] - 2 * full["ai"]["gain"]["se"] > 0
    for n, p in pts.items():
        if n <= 1500:
            assert p["rm"]["label_agreement"] < 0.5 and p["ai"]["gain"]["diff"] - 2 * p["ai"]["gain"]["se"] < 0
            assert p["rm"]["gold_of_chosen"] < full["rm"]["gold_of_chosen"] - 0.2
            assert p["direct"]["gain"]["diff"] - 2 * p["direct"]["gain"]["se"] > \
                p["ai"]["gain"]["diff"] + 2 * p["ai"]["gain"]["se"]
    assert pts[min(pts)]["direct"]["gain"]["diff"] >= full["ai"]["gain"]["diff"]
    assert full["direct"]["gain"]["diff"] - 2 * full["direct"]["gain"]["se"] < 0 < full["ai"]["gain"]["diff"]
    jt = study["judge"]
    assert jt["judge"] == "judge-tiny" and jt["sft"] == study["sft"]
    assert 0.5 < jt["label_agreement"] < full["rm"]["label_agreement"]
    assert jt["dpo"]["gain"]["diff"] - 2 * jt["dpo"]["gain"]["se"] < 0
