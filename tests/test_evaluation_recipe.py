"""Tests for recipes/evaluation: report card, arena, judge traps, LC vs raw and the report files, on players made
of rendered replies of known quality (no model needed), and the player specs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rlhfbook_lab import world
from rlhfbook_lab.lm.shipped_data import load_instruction_file
from rlhfbook_lab.recipes.evaluation import (
    CHANCE,
    VERBOSE_JUDGE,
    annotator_judge,
    arena,
    judge_traps,
    lc_vs_raw,
    ngram_overlap,
    parse_player,
    position_biased,
    reply_logprobs,
    report_card,
    restyle,
    run_battles,
    score_judge,
    self_preference,
    write_report,
)

PROBLEMS = world.heldout_prompts(48)


def _players():
    ref = [world.render_response(p) for p in PROBLEMS]
    wrong = [world.render_response(p, answer="nothing") for p in PROBLEMS]
    rng = random.Random(0)
    return {"ref": ref, "opener": restyle(PROBLEMS, ref, opener="Sure!"),
            "padded": restyle(PROBLEMS, ref, fillers=[rng.randint(0, 3) for _ in PROBLEMS]),
            "wrong": wrong}


def test_report_card_hand_values():
    card = report_card(PROBLEMS, _players(), n_resamples=200)
    ref, opener = card["players"]["ref"], card["players"]["opener"]
    assert ref["gold"] == pytest.approx(1.0) and ref["gold_lo"] == pytest.approx(1.0)  # every reply scores 1.00
    assert opener["vs_baseline"]["diff"] == pytest.approx(0.2) and opener["vs_baseline"]["sd"] == pytest.approx(0)
    assert ref["accuracy"] == 1.0 and ref["centred_accuracy"] == 1.0
    wrong = card["players"]["wrong"]
    for fam, row in wrong["families"].items():  # never right: centred accuracy −chance/(1 − chance)
        assert row["centred_accuracy"] == pytest.approx(-CHANCE[fam] / (1 - CHANCE[fam]))
    assert card["players"]["padded"]["vs_baseline"]["hi"] < 0  # padding costs gold, with a paired interval


def test_arena_gold_annotator_recovers_true_skill():
    players = _players()
    gold = annotator_judge(world.ANNOTATORS["gold"], PROBLEMS, players)
    out = arena(PROBLEMS, players, {"gold": gold}, n_battles=400, n_resamples=100)
    res = out["judges"]["gold"]
    assert res["tau_vs_truth"] == pytest.approx(1.0)
    assert all(res["lo"][n] <= res["elo"][n] <= res["hi"][n] for n in players)
    assert np.mean(list(res["elo"].values())) == pytest.approx(1500.0)


def test_judge_traps_against_the_truth():
    players = _players()
    scores = {n: np.array([world.gold_score(p, r) for p, r in zip(PROBLEMS, rs)]) for n, rs in players.items()}
    pointwise = judge_traps(PROBLEMS, players, score_judge(scores), n_battles=300)
    assert pointwise["position"] == {"consistency": 1.0, "first_rate": 0.5}  # a pointwise judge is order-blind
    assert pointwise["verbosity"]["judge_picks_longer"] == pointwise["verbosity"]["gold_picks_longer"]
    verbose = judge_traps(PROBLEMS, players, annotator_judge(VERBOSE_JUDGE, PROBLEMS, players), n_battles=300)
    assert verbose["verbosity"]["judge_picks_longer"] > verbose["verbosity"]["gold_picks_longer"] + 0.15
    biased = judge_traps(PROBLEMS, players, position_biased(score_judge(scores), 0.4), n_battles=300)
    assert biased["position"]["first_rate"] == pytest.approx(0.7, abs=0.06)  # ½ + bias/2
    assert biased["position"]["consistency"] == pytest.approx(0.6, abs=0.08)  # fooled in one order: 1 − bias


def test_lc_removes_the_verbose_judges_padding_bonus():
    players = _players()
    judge = annotator_judge(VERBOSE_JUDGE, PROBLEMS, players)
    out = lc_vs_raw(PROBLEMS, players, judge, baseline="ref")
    assert out["raw"]["padded"] > 0.75  # the judge pays for length: padded "beats" the reference
    assert abs(out["lc"]["padded"] - 0.5) < 0.15  # at equal length it is the reference
    assert out["gold_win"]["padded"] < 0.2  # gold: never better (ties where no filler was added)


def test_battles_and_report_files(tmp_path):
    players = _players()
    rows = run_battles(PROBLEMS, players, score_judge({n: np.zeros(len(PROBLEMS)) for n in players}), 50, seed=3)
    assert rows == run_battles(PROBLEMS, players, score_judge({n: np.zeros(len(PROBLEMS)) for n in players}), 50,
                               seed=3)
    assert {r["verdict"] for r in rows} == {0.5}
    gold = annotator_judge(world.ANNOTATORS["gold"], PROBLEMS, players)
    results = {"models": list(players), "n_prompts": len(PROBLEMS), "seed": 0,
               "report_card": report_card(PROBLEMS, players, n_resamples=50),
               "arena": arena(PROBLEMS, players, {"gold": gold}, n_battles=100, n_resamples=20),
               "judge_traps": {"gold": judge_traps(PROBLEMS, players, gold, n_battles=100)}}
    out = write_report(results, tmp_path / "card")
    assert sorted(p.name for p in out.iterdir()) == ["arena.md", "report.json", "report.md", "report.png"]
    assert json.loads((out / "report.json").read_text())["n_prompts"] == 48
    bad = dict(results, arena={})  # an error while writing leaves nothing behind
    with pytest.raises(KeyError):
        write_report(bad, tmp_path / "broken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card"]


def test_bad_input():
    players = _players()
    with pytest.raises(ValueError, match="replies"):
        report_card(PROBLEMS, {**players, "short": players["ref"][:3]})
    with pytest.raises(ValueError, match="baseline"):
        report_card(PROBLEMS, players, baseline="nobody")
    with pytest.raises(ValueError, match="problems is empty"):
        report_card([], players)
    with pytest.raises(ValueError, match="at least two"):
        run_battles(PROBLEMS, {"ref": players["ref"]}, None)
    with pytest.raises(ValueError, match="fillers"):
        restyle(PROBLEMS, players["ref"], fillers=[1])
    assert parse_player("sft-tiny") == ("sft-tiny", None) and parse_player("sft-tiny@0.7") == ("sft-tiny", 0.7)
    for spec in ("sft@hot", "sft@0", "@1.0", ""):
        with pytest.raises(ValueError, match="player|temperature"):
            parse_player(spec)


def test_ngram_overlap_finds_a_planted_leak():
    assert ngram_overlap(["a b c d"], ["x a b c y", "a b d c"], n=3) == {"share": 0.5, "flags": [True, False]}
    train = [r["prompt"] + " " + r["reference"] for r in load_instruction_file("train")]
    heldout = [p.prompt + " " + p.reference for p in world.heldout_prompts(200)]
    assert ngram_overlap(train, heldout)["share"] == 0.0  # the shipped SFT data is clean
    leaked = ngram_overlap(train + heldout[:20], heldout)
    assert leaked["flags"] == [t in heldout[:20] for t in heldout]  # the leaked items (and their repeats), only
    shares = [ngram_overlap(train, heldout, n)["share"] for n in (3, 5, 8)]  # longer n-grams: fewer matches
    assert shares == sorted(shares, reverse=True) and shares[0] > 0.5


def test_self_preference_recovers_a_planted_familiarity_bonus():
    rng = np.random.default_rng(0)
    g, own, other = rng.normal(size=(3, 400))
    scores = 0.5 * g + 0.3 * (own - own.mean()) / own.std()  # pays 0.3 per sd of its own backbone's familiarity
    c = self_preference(scores, g, {"own": own, "other": other})
    assert abs(c["own"] - 0.3) < 1e-9 and abs(c["other"]) < 0.05
    # a second implementation: the residual of the score on gold, regressed on the residual of z on gold
    z = (own - own.mean()) / own.std()
    X = np.c_[np.ones_like(g), g]
    res = lambda y: y - X @ np.linalg.lstsq(X, y, rcond=None)[0]  # noqa: E731
    assert abs(c["own"] - res(scores) @ res(z) / (res(z) @ res(z))) < 1e-9
    with pytest.raises(ValueError, match="familiarity"):
        self_preference(scores, g, {"flat": np.ones(400)})


def test_reply_logprobs_knows_the_reference_from_garbage():
    from rlhfbook_lab.lm.models import load_model

    model, tok = load_model("sft-tiny")
    probs = PROBLEMS[:8]
    good = reply_logprobs(model, tok, probs, [p.reference for p in probs])
    bad = reply_logprobs(model, tok, probs, ["zq xv kk qq zz." for _ in probs])
    assert good.shape == (8,) and (good > bad).all() and (good <= 0).all()
    assert np.allclose(reply_logprobs(model, tok, probs, [p.reference for p in probs], batch_size=3), good,
                       atol=1e-5)


def test_the_truth_reads_the_spec():
    players = _players()
    default = report_card(PROBLEMS, players, n_resamples=50)["players"]
    changed = report_card(PROBLEMS, players, n_resamples=50, spec="no_openers")["players"]
    assert abs(default["opener"]["gold"] - default["ref"]["gold"] - 0.2) < 1e-9  # "Sure!" is worth +0.20 ...
    assert abs(changed["opener"]["gold"] - changed["ref"]["gold"] + 0.2) < 1e-9  # ... and costs 0.20 under it
    truth = arena(PROBLEMS, players, {}, spec="no_openers")["truth"]
    assert truth["ref"] > truth["opener"]
    with pytest.raises(ValueError, match="unknown spec"):
        report_card(PROBLEMS, players, spec="nosuchspec")
