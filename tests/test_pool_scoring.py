"""lm.pool_scoring: scorers on a pool, best-of-n selection (its Monte-Carlo mean equals the order-statistics
best_of_k), and the exact vs analytic best-of-n KL on a pool of replies."""

import math

import numpy as np
import pytest

from rlhfbook_lab import world
from rlhfbook_lab.equations.best_of_n import bon_kl_analytic
from rlhfbook_lab.equations.scaling import best_of_k
from rlhfbook_lab.lm.pool_scoring import (
    best_of_n_indices,
    gold_scorer,
    pool_bon_kl,
    reward_model_scorer,
    score_groups,
    score_pool,
    select_replies,
    verifier_scorer,
)
from rlhfbook_lab.lm.reward_model import RewardModel
from rlhfbook_lab.lm.sample_pool import Pool

ADD = world.make_problem("addition", (17, 25))
REV = world.make_problem("reverse", "mirt")
REPLIES = [["17 + 25 = 42.", "17 + 25 = 41.", "Sure! 17 + 25 = 42.", ""],
           ["The reverse of mirt is trim.", "trim", "The reverse of mirt is tirm.", "The reverse of mirt is trim."]]


def test_scorers_on_a_pool_hand_values():
    pool = Pool(problems=[ADD, REV], replies=REPLIES)
    gold = score_pool(pool, gold_scorer)
    np.testing.assert_allclose(gold, pool.gold)  # the same judge the pool already asked
    assert score_pool(pool, verifier_scorer).tolist() == [[1, 0, 1, 0], [1, 1, 0, 1]]
    assert gold[0, 0] > gold[0, 1]  # right beats wrong


def test_reward_model_scorer_agrees_with_one_by_one_scoring(tokenizer, micro_model):
    rm = RewardModel.from_causal_lm(micro_model, seed=0)
    scorer = reward_model_scorer(rm, tokenizer, batch_size=3)
    s = score_groups([ADD, REV], REPLIES, scorer)
    one = [[float(scorer([p], [r])[0]) for r in group] for p, group in zip([ADD, REV], REPLIES)]
    np.testing.assert_allclose(s, one, rtol=1e-4, atol=1e-4)  # batched vs alone: padding must not matter
    assert s[0, 3] == world.EMPTY_RESPONSE_SCORE  # an empty reply, as in the RL loop


@pytest.mark.parametrize("scorer, match", [
    (lambda ps, rs: [0.0] * (len(rs) - 1), "returned 7 scores for 8 replies"),
    (lambda ps, rs: [float("nan")] + [0.0] * (len(rs) - 1), "non-finite"),
    (lambda ps, rs: ["high"] * len(rs), "scorer must return real numbers"),
])
def test_bad_scorers_raise(scorer, match):
    with pytest.raises(ValueError, match=match):
        score_groups([ADD, REV], REPLIES, scorer)


def test_ragged_groups_raise():
    with pytest.raises(ValueError, match="ragged"):
        score_groups([ADD, REV], [REPLIES[0], REPLIES[1][:3]], gold_scorer)
    with pytest.raises(ValueError, match="one list of replies per problem"):
        score_groups([ADD, REV], [REPLIES[0]], gold_scorer)


def test_best_of_n_hand_values_and_bad_n():
    scores = np.array([[0.0, 3.0, 1.0, 3.0], [2.0, 1.0, 0.0, -1.0]])
    assert best_of_n_indices(scores, 4, seed=None).tolist() == [1, 0]  # first of the tied maxima
    assert best_of_n_indices(scores, 1, seed=None).tolist() == [0, 0]
    assert select_replies(REPLIES, [1, 0]) == ["17 + 25 = 41.", "The reverse of mirt is trim."]
    for _ in range(20):  # ties are broken at random between positions 1 and 3
        assert best_of_n_indices(scores, 4, seed=_)[0] in (1, 3)
    assert {int(best_of_n_indices(scores, 4, seed=s)[0]) for s in range(20)} == {1, 3}
    for bad in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match="n must be an integer in 1..4"):
            best_of_n_indices(scores, bad)
    with pytest.raises(ValueError, match="scores must be finite"):
        best_of_n_indices([[0.0, np.nan]], 1)


def test_best_of_n_draws_average_to_the_order_statistics_curve():
    # Monte-Carlo: many best-of-n draws from one pool, averaged, equal best_of_k's exact expectation.
    rng = np.random.default_rng(0)
    select = np.round(rng.normal(size=(6, 12)), 1)  # rounded: ties happen
    value = select + rng.normal(size=(6, 12))  # the selector is a noisy proxy of the value
    for n in (1, 3, 12):
        draws = np.array([np.take_along_axis(value, best_of_n_indices(select, n, seed=s)[:, None], 1)[:, 0]
                          for s in range(4000)])  # (draws, P)
        exact = best_of_k(select, value, ks=[n], reduction="none")[:, 0]
        se = draws.std(axis=0) / math.sqrt(len(draws))
        assert np.all(np.abs(draws.mean(axis=0) - exact) <= 4.5 * se + 1e-12)


def test_pool_bon_kl_exact_vs_analytic():
    # untied distinct replies: the pool's exact KL is that of N equal atoms, below log n − (n−1)/n
    N = 64
    replies = [[f"reply {j}" for j in range(N)]]
    out = pool_bon_kl(replies, [np.arange(N, dtype=float)], ns=[1, 2, 8])
    assert out["exact"][0] == pytest.approx(0.0, abs=1e-12)
    assert np.all(out["exact"][1:] < out["analytic"][1:])
    np.testing.assert_allclose(out["analytic"], bon_kl_analytic(np.array([1, 2, 8])))
    # hand value: half the pool says "right" (score 1), half "wrong": best of 2 keeps "right" w.p. 3/4
    two = pool_bon_kl([["right", "wrong"] * 4], [[1.0, 0.0] * 4], ns=[2])
    assert two["exact"][0] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)
    with pytest.raises(ValueError, match="ns must be integers in 1..8"):
        pool_bon_kl([["a"] * 8], [[0.0] * 8], ns=[9])
    with pytest.raises(ValueError, match="matching scores"):
        pool_bon_kl([["a"] * 7], [[0.0] * 8], ns=[2])
