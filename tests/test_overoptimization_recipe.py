"""recipes/overoptimization.py: best-of-n curves from one pool, the proxies, the gold breakdown, the config."""

import itertools
import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.numerics import assert_numerically_equal
from rlhfbook_lab.lm.data import collate_sft, conversation, tokenize_conversation
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.reward_model import RewardModel, reply_features, score_replies
from rlhfbook_lab.recipes.overoptimization import (
    HISTORY,
    HISTORY_COMMAND,
    HISTORY_FULL,
    HISTORY_FULL_COMMAND,
    RECIPES,
    EnsembleProxy,
    FeatureProxy,
    OveroptConfig,
    bon_curve,
    fast_config,
    fit_proxies,
    gold_breakdown,
    kl_penalty_frontier,
    load_history,
    peak_then_fall,
    rank_agreement,
    run_overoptimization,
    write_report,
)


def test_bon_curve_hand_value():
    # one prompt, pool scores 1 < 2 < 3 (selector), gold 10, 30, 20. Best of 2 without replacement:
    # pairs {1,2}→2, {1,3}→3, {2,3}→3: E[selector] = 8/3, E[gold] = (30 + 20 + 20)/3.
    c = bon_curve([[1.0, 2.0, 3.0]], [[10.0, 30.0, 20.0]], n_values=[1, 2, 3])
    np.testing.assert_allclose(c["selector"], [2.0, 8 / 3, 3.0])
    np.testing.assert_allclose(c["others"][0], [20.0, 70 / 3, 20.0])
    np.testing.assert_allclose(c["kl"], [0.0, math.log(2) - 0.5, math.log(3) - 2 / 3])
    np.testing.assert_allclose(c["d"], np.sqrt(c["kl"]))


def test_bon_curve_matches_enumeration_of_subsets():
    rng = np.random.default_rng(0)
    sel, gold = rng.normal(size=(3, 7)), rng.normal(size=(3, 7))
    c = bon_curve(sel, gold, n_values=range(1, 8))
    for k, n in enumerate(range(1, 8)):  # every subset of size n, equally likely
        means_sel, means_gold = [], []
        for p in range(3):
            subsets = list(itertools.combinations(range(7), n))
            best = [max(s, key=lambda i: sel[p, i]) for s in subsets]
            means_sel.append(np.mean(sel[p, best]))
            means_gold.append(np.mean(gold[p, best]))
        assert c["selector"][k] == pytest.approx(np.mean(means_sel), rel=1e-9)
        assert c["others"][0][k] == pytest.approx(np.mean(means_gold), rel=1e-9)


def test_bon_curve_properties():
    rng = np.random.default_rng(1)
    sel = rng.normal(size=(5, 32))
    c = bon_curve(sel, -sel, n_values=[1, 2, 4, 8, 16, 32])
    assert np.all(np.diff(c["selector"]) > 0)  # the selector's own score only rises with n
    assert np.all(np.diff(c["others"][0]) < 0)  # a score opposed to the selector only falls
    assert c["selector"][0] == pytest.approx(sel.mean())  # n = 1 is the policy itself
    assert c["selector"][-1] == pytest.approx(sel.max(axis=1).mean())  # n = N takes the pool's best
    # Monte-Carlo: draw n without replacement, keep the best
    draws = np.array([sel[p, rng.choice(32, 4, replace=False)].max() for p in range(5) for _ in range(4000)])
    assert c["selector"][2] == pytest.approx(draws.mean(), abs=0.03)


@pytest.mark.parametrize("kwargs, match", [
    (dict(selector=[[1.0, 2.0]], n_values=[3]), "n must be an int"),
    (dict(selector=[[1.0, 2.0]], n_values=[0]), "n must be an int"),
    (dict(selector=[[1.0, float("nan")]], n_values=[1]), "finite"),
    (dict(selector=[1.0, 2.0], n_values=[1]), r"shape \(P, N\)"),
])
def test_bon_curve_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bon_curve(kwargs.pop("selector"), **kwargs)


def test_bon_curve_wrong_shape_of_other():
    with pytest.raises(ValueError, match="others"):
        bon_curve([[1.0, 2.0]], [[1.0, 2.0, 3.0]], n_values=[1])


def test_gold_breakdown_sums_to_gold():
    p = world.heldout_prompts(3, seed=0)
    replies = [world.render_response(p[0], opener="Sure!", fillers=2), p[1].reference, ""]
    split = gold_breakdown([q.prompt for q in p], replies)
    gold = np.mean([world.gold_score(q.prompt, r, allow_empty=True) for q, r in zip(p, replies)])
    assert sum(split.values()) == pytest.approx(gold)
    assert split["polite_excess"] < 0 and split["polite_opener"] > 0
    assert split["empty"] == pytest.approx(world.EMPTY_RESPONSE_SCORE / 3)


def test_peak_then_fall():
    out = peak_then_fall([0.0, 0.5, 1.0, 0.4, 0.2], [0.1] * 5)
    assert (out["peak_index"], out["peak"], out["final"]) == (2, 1.0, 0.2)
    assert out["fall_in_se"] == pytest.approx(8.0)
    smooth = peak_then_fall([0.0, 0.5, 1.0, 0.4, 0.2], [0.1] * 5, smooth=3)
    assert smooth["peak"] == pytest.approx(1.9 / 3) and smooth["peak_index"] == 2
    assert smooth["final"] == pytest.approx((1.0 + 0.4 + 0.2) / 3)
    assert smooth["final_se"] == pytest.approx(0.1 / math.sqrt(3))


def test_fit_proxies_recovers_a_linear_taste():
    rng = np.random.default_rng(0)
    w_true = np.array([2.0, -1.0, 0.0])
    feats = {}
    rows = []
    for i in range(400):
        a, b = rng.normal(size=3), rng.normal(size=3)
        feats["p", f"a{i}"], feats["p", f"b{i}"] = a, b
        a_wins = rng.random() < 1 / (1 + np.exp(-(a - b) @ w_true))
        rows.append({"prompt": "p", "chosen": f"a{i}" if a_wins else f"b{i}",
                     "rejected": f"b{i}" if a_wins else f"a{i}"})
    ref = rng.normal(size=(100, 3))
    small, large = fit_proxies(rows, lambda p, y: feats[p, y], [20, 400], ref, alpha=0.1)
    assert (small.pairs, large.pairs) == (20, 400)
    cos = large.weight @ w_true / np.linalg.norm(large.weight) / np.linalg.norm(w_true)
    assert cos > 0.95
    assert large.score(ref).mean() == pytest.approx(0.0, abs=1e-9)
    assert large.score(ref).std() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="proxy_sizes"):
        fit_proxies(rows, lambda p, y: feats[p, y], [401], ref)


def test_feature_proxy_as_reward_model_scores_like_its_features():
    sft, tok = load_model("sft-tiny")
    problems = world.heldout_prompts(4, seed=0)
    prompts, replies = [p.prompt for p in problems], [p.reference for p in problems]
    feats = reply_features(RewardModel.from_causal_lm(sft, copy=False), tok, prompts, replies).double().numpy()
    proxy = FeatureProxy(pairs=10, weight=np.random.default_rng(0).normal(size=feats.shape[1]), mean=0.3, std=2.0)
    got = score_replies(proxy.reward_model(sft), tok, prompts, replies)
    assert_numerically_equal(got, torch.as_tensor(proxy.score(feats), dtype=torch.float32))


def test_ensemble_proxy_hand_value():
    """Two members on 2-d features: r_1 = (φ_1 − 1) / 2, r_2 = φ_2. For φ = (3, 0): r = (1, 0); for φ = (1, 2):
    r = (0, 2). min → (0, 0); mean → (0.5, 1); mean − 1·var → (0.5 − 0.25, 1 − 1) = (0.25, 0)."""
    members = [FeatureProxy(pairs=2, weight=np.array([1.0, 0.0]), mean=1.0, std=2.0),
               FeatureProxy(pairs=2, weight=np.array([0.0, 1.0]))]
    phi = np.array([[3.0, 0.0], [1.0, 2.0]])
    assert EnsembleProxy(members, "min").score(phi) == pytest.approx([0.0, 0.0])
    assert EnsembleProxy(members, "mean").score(phi) == pytest.approx([0.5, 1.0])
    assert EnsembleProxy(members, "mean-var", lam=1.0).score(phi) == pytest.approx([0.25, 0.0])
    assert EnsembleProxy(members, "single").score(phi) == pytest.approx(members[0].score(phi))
    with pytest.raises(ValueError, match="rule"):
        EnsembleProxy(members, "max").score(phi)
    with pytest.raises(ValueError, match="members"):
        EnsembleProxy([], "min").score(phi)


def test_ensemble_proxy_worst_case_is_below_the_mean():
    """Property: min ≤ mean − λ·var ≤ mean for λ ≥ 0 is not a law, but min ≤ mean and mean − λ·var ≤ mean are."""
    rng = np.random.default_rng(0)
    members = [FeatureProxy(pairs=5, weight=rng.normal(size=6), mean=rng.normal(), std=1.0 + rng.random())
               for _ in range(4)]
    phi = rng.normal(size=(50, 6))
    mean = EnsembleProxy(members, "mean").score(phi)
    assert np.all(EnsembleProxy(members, "min").score(phi) <= mean + 1e-12)
    assert np.all(EnsembleProxy(members, "mean-var", lam=0.5).score(phi) <= mean + 1e-12)
    assert np.any(EnsembleProxy(members, "min").score(phi) < mean - 1e-3)  # members disagree: the rule bites


def test_ensemble_proxy_scorer_reads_the_reward_models_features():
    """The RL scorer (one backbone pass, the head's input captured) agrees with scoring reply_features directly;
    an empty reply gets EMPTY_RESPONSE_SCORE."""
    sft, tok = load_model("sft-tiny")
    problems = world.heldout_prompts(3, seed=1)
    prompts, replies = [p.prompt for p in problems], [p.reference for p in problems]
    rm = RewardModel.from_causal_lm(sft, copy=False).eval()
    feats = reply_features(rm, tok, prompts, replies).double().numpy()
    rng = np.random.default_rng(1)
    ens = EnsembleProxy([FeatureProxy(pairs=2, weight=rng.normal(size=feats.shape[1])) for _ in range(3)], "min")
    batch = collate_sft([tokenize_conversation(tok, conversation(p, r)) for p, r in zip(prompts, replies)],
                        tok.pad_token_id)
    got = ens.scorer(rm)(batch["input_ids"], batch["attention_mask"], replies[:2] + [" "])
    assert_numerically_equal(got[:2], torch.as_tensor(ens.score(feats[:2]), dtype=torch.float32))
    assert float(got[2]) == pytest.approx(world.EMPTY_RESPONSE_SCORE)


@pytest.mark.parametrize("field, value", [("proxy_sizes", ()), ("proxy_sizes", (1,)), ("rl_betas", ()),
                                          ("rl_betas", (-0.1,)), ("rl_group_size", 1), ("pool_size", 0),
                                          ("rl_lr", 0.0), ("head_alpha", float("nan")),
                                          ("rl_proxy_sizes", (7,)), ("ensemble_lambda", -1.0),
                                          ("ensemble_members", 0), ("rl_ensemble_rules", ("max",))])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        OveroptConfig(**{field: value})


def test_fast_recipe_builds():
    cfg = build(OveroptConfig, RECIPES, "fast")
    assert cfg.pool_size < OveroptConfig().pool_size and len(cfg.proxy_sizes) >= 4


def test_rank_agreement():
    gold = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 0.0]])
    assert rank_agreement(gold, gold) == 1.0
    assert rank_agreement(-gold, gold) == 0.0
    # prompt 1: pairs (0,1),(0,2),(1,2) all agree with [0, 2, 1]? (0<2 ✓, 0<1 ✓, 2>1 ✗); prompt 2: the gold tie
    # (0,1) is skipped, (0,2) and (1,2) by a constant scorer count ½ each → (2 + 1) / 5
    assert rank_agreement([[0.0, 2.0, 1.0], [5.0, 5.0, 5.0]], gold) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="shape"):
        rank_agreement([[1.0]], [[1.0, 2.0]])




def _keys(result: dict) -> dict:
    """The key structure of a study's result: its top level, one best-of-n curve, the ensembles, one RL run."""
    return {"top": set(result), "pool": set(result["pool"]), "bon": set(next(iter(result["bon"].values()))),
            "ensembles": set(result["ensembles"]), "ensemble": set(next(iter(result["ensembles"].values()))),
            "rl": set(result["rl"][0]), "peak": set(result["rl"][0]["peak"]), "config": set(result["config"])}


@pytest.fixture(scope="module")
def tiny_result():
    cfg = OveroptConfig(proxy_prompts=8, proxy_sizes=(2, 4), pool_prompts=3, pool_size=6, max_new_tokens=24,
                        rl_steps=2, rl_prompts_per_step=2, rl_group_size=2, rl_betas=(0.0, 0.5), rl_proxy_sizes=(4,),
                        samples_kept=1, rl_ensemble_rules=("min",), rl_baseline=True)
    return run_overoptimization(cfg, log=None)


def test_tiny_study_end_to_end(tiny_result, tmp_path):
    r = tiny_result
    assert [(run["proxy_pairs"], run["beta"]) for run in r["rl"]] == [(2, 0.0), (2, 0.5), (4, 0.0)]
    assert set(r["ensembles"]) == {"single", "mean", "min", "mean-var"}  # 4 members × 2 pairs ≤ the pairs there
    for curve in r["ensembles"].values():  # n = 1 is the policy itself, whatever the rule
        assert curve["gold"][0] == pytest.approx(r["ensembles"]["single"]["gold"][0])
    assert len(r["rl_baseline"]["gold"]) == len(r["rl_baseline"]["gold_se"]) == 2  # one per rollout
    (ens,) = r["rl_ensembles"]
    assert ens["rule"] == "min" and ens["members"] == 4 and len(ens["gold"]) == 2 and ens["d"][0] == 0.0
    (gap,) = kl_penalty_frontier(r)
    assert gap["beta"] == 0.5 and gap["proxy_pairs"] == 2 and gap["matched"] >= 1
    out = write_report(r, tmp_path / "report")
    assert {p.name for p in out.iterdir()} == {"result.json", "fits.json", "fits.md", "samples.md", "curves.png"}
    assert "| RL (GRPO) | 4 | 0.0 |" in (out / "fits.md").read_text()
    assert "| RL, ensemble min | 4×2 | 0.0 |" in (out / "fits.md").read_text()


def test_shipped_history_has_the_recipes_format(tiny_result):
    """The shipped history is what ``run_overoptimization`` returns today (the same nested keys), made by
    HISTORY_COMMAND's sizes, and small."""
    h = load_history()
    assert HISTORY.stat().st_size < 300_000
    want = json.loads(json.dumps(asdict(fast_config(rl_betas=(0.0, 0.3)))))
    assert {k: want[k] for k in h["config"]} == h["config"]  # fields added since take their defaults
    assert set(want) - set(h["config"]) <= {"ensemble_members", "rl_ensemble_rules", "rl_baseline"}
    want = _keys(tiny_result)
    want["top"] -= {"rl_ensembles", "rl_baseline"} - set(h)  # in a history only when asked for
    want["config"] -= {"ensemble_members", "rl_ensemble_rules", "rl_baseline"} - set(h["config"])  # added since
    assert _keys(h) == want
    for arg in HISTORY_COMMAND.split("--")[1:]:
        name, *value = arg.split()
        if name in ("out", "fast"):
            continue
        want = h["config"][name.replace("-", "_")]
        value = value[0].split("&&")[0] if value else ""
        got = [float(v) for v in value.split(",")]
        assert np.allclose(np.atleast_1d(want), got), (name, want, got)


def test_shipped_history_meets_its_stated_quality():
    """Lesson 14's claims on the shipped history: every best-of-n curve rises then falls and Gao's form fits it;
    RL against the smallest proxy without a KL penalty: the proxy keeps rising while gold peaks and falls by more
    than its standard error; the penalised runs stop at a smaller distance."""
    h = load_history()
    for v in h["bon"].values():
        assert v["fit"]["beta"] > 0 and v["fit"]["r2"] > 0.8, v["fit"]
        assert max(v["gold"]) > v["gold"][0] and v["gold"][-1] < max(v["gold"])
        assert v["proxy"][-1] > v["proxy"][0]
    run = h["rl"][0]
    assert run["beta"] == 0.0 and run["proxy_pairs"] == min(v["pairs"] for v in h["bon"].values())
    k = max(1, len(run["proxy"]) // 4)
    assert np.mean(run["proxy"][-k:]) > np.mean(run["proxy"][:k]) + 0.3
    assert run["peak"]["fall"] > run["peak"]["final_se"] and run["peak"]["final"] < run["peak"]["start"]
    gaps = kl_penalty_frontier(h)
    assert gaps, "the history should hold a KL-penalised run"
    for gap in gaps:  # early stopping: it stops closer, on about the same gold–KL curve
        assert gap["final_d"] < 0.5 * gap["final_d_ref"] and abs(gap["gap"]) < 3 * gap["gap_se"] + 0.02, gap


def test_shipped_full_history_matches_its_command_and_meets_its_stated_quality(tiny_result):
    """The full-mode history: the recipe's format, the sizes of HISTORY_FULL_COMMAND, < 1 MB; an unpenalised RL run
    and Gao's RL fit per proxy size; the smallest proxy's run ends below its gold peak by more than its s.e. while
    its proxy score rises; RL against each ensemble rule of the command."""
    h = load_history(full=True)
    assert HISTORY_FULL.stat().st_size < 1_000_000
    assert _keys(h) == _keys(tiny_result)
    cfg = h["config"]
    for arg in HISTORY_FULL_COMMAND.split("&&")[0].split("--")[1:]:
        name, *value = arg.split()
        if name == "out":
            continue
        want, got = cfg[name.replace("-", "_")], value[0].split(",")
        if name == "rl-ensemble-rules":
            assert want == got
        elif name == "rl-baseline":
            assert want is True and got == ["true"]
        else:
            assert np.allclose(np.atleast_1d(want), [float(v) for v in got]), (name, want, got)
    sizes = sorted(v["pairs"] for v in h["bon"].values())
    unpenalised = {r["proxy_pairs"]: r for r in h["rl"] if r["beta"] == 0}
    assert sorted(unpenalised) == sizes
    for r in unpenalised.values():
        assert "alpha" in r["fit"] and math.isfinite(r["fit"]["r2"]), r["fit"]
    small = unpenalised[sizes[0]]
    assert small["peak"]["fall"] > small["peak"]["final_se"] and small["proxy"][-1] > small["proxy"][0]
    assert [r["rule"] for r in h["rl_ensembles"]] == cfg["rl_ensemble_rules"]
    # paired with the SFT model's gold on the same prompts (rl_baseline): the larger proxies' runs end far below it,
    # the smallest proxy's run (which barely moves) near it
    base = np.array(h["rl_baseline"]["gold"])
    assert len(base) == cfg["rl_steps"]
    end = {n: float(np.mean((np.array(r["gold"]) - base)[-6:])) for n, r in unpenalised.items()}
    assert all(end[n] < -0.3 for n in sizes[1:]) and end[sizes[0]] > -0.1, end
