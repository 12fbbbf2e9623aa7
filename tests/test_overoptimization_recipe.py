"""recipes/overoptimization.py: best-of-n curves from one pool, the proxies, the gold breakdown, the config."""

import itertools
import math

import numpy as np
import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.numerics import assert_numerically_equal
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.reward_model import RewardModel, reply_features, score_replies
from rlhfbook_lab.recipes.overoptimization import (
    RECIPES,
    FeatureProxy,
    OveroptConfig,
    bon_curve,
    ensemble_scores,
    fit_proxies,
    gold_breakdown,
    peak_then_fall,
    rank_agreement,
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


@pytest.mark.parametrize("field, value", [("proxy_sizes", ()), ("proxy_sizes", (1,)), ("rl_betas", ()),
                                          ("rl_betas", (-0.1,)), ("rl_group_size", 1), ("pool_size", 0),
                                          ("rl_lr", 0.0), ("head_alpha", float("nan"))])
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


def test_ensemble_scores():
    s = np.array([[1.0, 4.0], [3.0, 0.0]])  # 2 members × 2 replies
    np.testing.assert_allclose(ensemble_scores(s, "mean"), [2.0, 2.0])
    np.testing.assert_allclose(ensemble_scores(s, "min"), [1.0, 0.0])
    np.testing.assert_allclose(ensemble_scores(s, "mean-std", lam=0.5), [2.0 - 0.5, 2.0 - 1.0])
    np.testing.assert_allclose(ensemble_scores(s, "single"), [1.0, 4.0])
    with pytest.raises(ValueError, match="rule"):
        ensemble_scores(s, "max")
