"""lm.sample_pool: one pool per problem → every test-time scaling curve (pass@k, maj@k, best-of-k)."""

import itertools

import numpy as np
import pytest
from _models import tiny_llama

from rlhfbook_lab import world
from rlhfbook_lab.cli import main
from rlhfbook_lab.equations.scaling import pass_at_k_curve
from rlhfbook_lab.lm.sample_pool import Pool, sample_pool, scaling_table

ADD = world.make_problem("addition", (17, 25))
REV = world.make_problem("reverse", "mirt")


def _hand_pool():
    return Pool(problems=[ADD, REV], replies=[
        ["17 + 25 = 42.", "17 + 25 = 41.", "17 + 25 = 41.", ""],
        ["The reverse of mirt is trim.", "The reverse of mirt is trim.", "trim", "The reverse of mirt is tirm."],
    ])


def test_pool_grades_every_reply():
    pool = _hand_pool()
    assert pool.correct.tolist() == [[True, False, False, False], [True, True, True, False]]
    assert pool.answers == [[42, 41, 41, None], ["trim", "trim", "trim", "tirm"]]
    assert pool.counts.tolist() == [1, 3] and pool.rates.tolist() == [0.25, 0.75]
    assert pool.gold.shape == (2, 4) and pool.gold[0, 3] == world.EMPTY_RESPONSE_SCORE


def _subset_mean(pool, k, stat):
    """Second implementation: the average of ``stat`` over every k-subset of every problem's pool."""
    per_problem = []
    for i in range(len(pool.problems)):
        vals = [stat(i, list(s)) for s in itertools.combinations(range(pool.n), k)]
        per_problem.append(np.mean(vals))
    return float(np.mean(per_problem))


def _majority(pool, i, s):
    votes = {}
    for j in s:
        a = pool.answers[i][j]
        if a is not None:
            votes[a] = votes.get(a, 0) + 1
    if not votes:
        return 0.0
    top = max(votes.values())
    winners = [a for a, v in votes.items() if v == top]
    return (world.reference_answer(pool.problems[i]) in winners) / len(winners)


def test_scaling_table_hand_values_and_brute_force():
    pool = _hand_pool()
    t = scaling_table(pool)
    # hand values: pass@1 = mean(1/4, 3/4); pass@2 for c=1, n=4: 1 − C(3,2)/C(4,2) = 1/2; for c=3: 1
    assert t["pass@k"][0] == pytest.approx(0.5) and t["pass@k"][1] == pytest.approx(0.75)
    # maj@4: problem 1 votes 42:1, 41:2 → wrong; problem 2 trim:3 → right
    assert t["maj@k"][3] == pytest.approx(0.5)
    for k in range(1, 5):
        assert t["maj@k"][k - 1] == pytest.approx(_subset_mean(pool, k, lambda i, s: _majority(pool, i, s)))
        best = _subset_mean(pool, k, lambda i, s: np.mean(
            [pool.correct[i][j] for j in s if pool.gold[i][j] == max(pool.gold[i][m] for m in s)]))
        assert t["best_gold@k"][k - 1] == pytest.approx(best)
    assert np.allclose(t["pass@k"], pass_at_k_curve(pool.counts, 4))
    assert np.all(t["pass@k_plugin"] <= t["pass@k"] + 1e-12)  # the plug-in is biased low


def test_rm_selector_column():
    pool = _hand_pool()
    t = scaling_table(pool, ks=[1, 4], select_scores=np.arange(8.0).reshape(2, 4))
    # the "rm" prefers the last reply: wrong in both problems
    assert t["best_rm@k"].tolist() == pytest.approx([0.5, 0.0])


@pytest.mark.parametrize("replies, match", [
    ([["17 + 25 = 42."], ["trim", "trim"]], "same number"),
    ([["17 + 25 = 42."]], "one list of replies per problem"),
    ([[], []], "same number"),
])
def test_ragged_or_empty_pools_raise(replies, match):
    with pytest.raises(ValueError, match=match):
        Pool(problems=[ADD, REV], replies=replies)


def test_sample_pool_is_seeded_and_shaped(tokenizer):
    model = tiny_llama(tokenizer)
    a = sample_pool(model, tokenizer, [ADD, REV, ADD], n=4, max_new_tokens=6, batch_size=8, seed=3)
    b = sample_pool(model, tokenizer, [ADD, REV, ADD], n=4, max_new_tokens=6, batch_size=8, seed=3)
    assert a.replies == b.replies and a.correct.shape == (3, 4) and a.tokens > 0
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        sample_pool(model, tokenizer, [ADD], n=0)
    with pytest.raises(ValueError, match="non-empty list of world.Problem"):
        sample_pool(model, tokenizer, ["What is 1 + 2?"], n=2)


def test_cli_scaling_writes_the_table_and_the_plot(tmp_path, capsys):
    main(["scaling", "--problems", "3", "--n", "4", "--out", str(tmp_path / "s")])
    lines = (tmp_path / "s" / "scaling.csv").read_text().splitlines()
    assert lines[0] == "k,pass@k,pass@k_plugin,maj@k,best_gold@k" and len(lines) == 5
    assert (tmp_path / "s" / "scaling.png").stat().st_size > 1000
    assert '"pass@k"' in capsys.readouterr().out
