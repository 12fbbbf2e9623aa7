"""Tests for the reward-model losses and metrics: hand values, a second (loop) implementation, properties."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rlhfbook_lab.equations.reward_losses import (
    bradley_terry_loss,
    calibration_bins,
    instructgpt_pairwise_loss,
    normalization_stats,
    orm_loss,
    pairwise_accuracy,
    plackett_luce_loss,
    preference_calibration,
    ranking_to_pairs,
    split_chosen_rejected,
)


def softplus_ref(x: float) -> float:
    """log(1 + e^x) in float64, the reference for −log σ(−x)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def random_rankings(gen: torch.Generator, B: int, K: int) -> torch.Tensor:
    return torch.stack([torch.randperm(K, generator=gen) for _ in range(B)])  # (B, K)


# --------------------------------------------------------------------------------------------------
# split_chosen_rejected
# --------------------------------------------------------------------------------------------------


def test_split_chosen_rejected_takes_chosen_first():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])  # B = 3: chosen 1,2,3 then rejected 10,20,30
    chosen, rejected = split_chosen_rejected(rewards)
    assert chosen.tolist() == [1.0, 2.0, 3.0]
    assert rejected.tolist() == [10.0, 20.0, 30.0]


def test_split_chosen_rejected_round_trips_a_stacked_2d_batch():
    ids = torch.arange(24).reshape(6, 4)  # (2B, T)
    chosen, rejected = split_chosen_rejected(ids)
    assert chosen.shape == rejected.shape == (3, 4)
    assert torch.equal(torch.cat([chosen, rejected]), ids)


# --------------------------------------------------------------------------------------------------
# Bradley-Terry (and margin) loss
# --------------------------------------------------------------------------------------------------


def test_bradley_terry_hand_values():
    chosen, rejected = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 2.0])
    # pair 0: −log σ(1)  = log(1 + e^−1) = log 1.367879 = 0.313262
    # pair 1: −log σ(0)  = log 2                        = 0.693147
    # pair 2: −log σ(−2) = log(1 + e^2)  = log 8.389056 = 2.126928
    # mean = (0.313262 + 0.693147 + 2.126928) / 3 = 1.044446
    per_pair = bradley_terry_loss(chosen, rejected, reduction="none")
    torch.testing.assert_close(per_pair, torch.tensor([0.313262, 0.693147, 2.126928]), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        bradley_terry_loss(chosen, rejected), torch.tensor(1.044446), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        bradley_terry_loss(chosen, rejected, reduction="sum"), torch.tensor(3.133337), atol=1e-5, rtol=0
    )


def test_margin_loss_hand_values():
    chosen, rejected = torch.tensor([2.0, 2.0]), torch.tensor([0.0, 0.0])
    margin = torch.tensor([1.0, 3.0])  # e.g. Llama 2: "slightly better" = 1, "significantly better" = 3
    # pair 0: −log σ(2 − 0 − 1) = −log σ(1)  = 0.313262
    # pair 1: −log σ(2 − 0 − 3) = −log σ(−1) = log(1 + e) = 1.313262: the gap 2 is short of the margin 3
    losses = bradley_terry_loss(chosen, rejected, margin=margin, reduction="none")
    torch.testing.assert_close(losses, torch.tensor([0.313262, 1.313262]), atol=1e-6, rtol=0)


def test_bradley_terry_matches_a_float64_loop():
    gen = torch.Generator().manual_seed(0)
    chosen, rejected = 3 * torch.randn(50, generator=gen), 3 * torch.randn(50, generator=gen)
    margin = torch.rand(50, generator=gen)
    expected = [
        softplus_ref(-(c - r - m)) for c, r, m in zip(chosen.tolist(), rejected.tolist(), margin.tolist())
    ]
    got = bradley_terry_loss(chosen, rejected, margin=margin, reduction="none")
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=1e-6)


def test_bradley_terry_swapping_chosen_and_rejected():
    # Both orders are probabilities of complementary events: σ(d) + σ(−d) = 1, so e^−L(a,b) + e^−L(b,a) = 1,
    # and L(a, b) − L(b, a) = softplus(−d) − softplus(d) = −d.
    gen = torch.Generator().manual_seed(1)
    a, b = 4 * torch.randn(64, generator=gen), 4 * torch.randn(64, generator=gen)
    l_ab = bradley_terry_loss(a, b, reduction="none")
    l_ba = bradley_terry_loss(b, a, reduction="none")
    torch.testing.assert_close(torch.exp(-l_ab) + torch.exp(-l_ba), torch.ones(64))
    torch.testing.assert_close(l_ab - l_ba, -(a - b), atol=1e-5, rtol=0)


def test_margin_only_shifts_the_chosen_reward():
    gen = torch.Generator().manual_seed(2)
    chosen, rejected, margin = torch.randn(3, 16, generator=gen)
    with_margin = bradley_terry_loss(chosen, rejected, margin=margin, reduction="none")
    torch.testing.assert_close(with_margin, bradley_terry_loss(chosen - margin, rejected, reduction="none"))
    scalar = bradley_terry_loss(chosen, rejected, margin=0.5, reduction="none")
    torch.testing.assert_close(scalar, bradley_terry_loss(chosen - 0.5, rejected, reduction="none"))
    # A positive margin makes every pair's loss strictly larger.
    assert torch.all(scalar > bradley_terry_loss(chosen, rejected, reduction="none"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_losses_and_gradients_finite_at_margins_of_100(dtype):
    chosen = torch.tensor([100.0, -100.0, 0.0], dtype=dtype, requires_grad=True)
    rejected = torch.zeros(3, dtype=dtype, requires_grad=True)
    loss = bradley_terry_loss(chosen, rejected, margin=torch.tensor([0.0, 0.0, 100.0]))
    loss.backward()
    # per pair: −log σ(100) ≈ 0, −log σ(−100) ≈ 100, −log σ(−100) ≈ 100 → mean ≈ 66.67
    assert torch.isfinite(loss) and abs(loss.item() - 200 / 3) < 1e-3
    assert (
        chosen.grad.dtype == dtype
        and torch.isfinite(chosen.grad).all()
        and torch.isfinite(rejected.grad).all()
    )
    # dL/dchosen = −σ(−d)/B: 0 for the easy pair, −1/3 for the two hopeless ones.
    torch.testing.assert_close(chosen.grad.float(), torch.tensor([0.0, -1 / 3, -1 / 3]), atol=1e-2, rtol=0)

    scores = torch.tensor([[100.0, -100.0, 0.0], [-100.0, 100.0, 0.0]], dtype=dtype, requires_grad=True)
    for fn in (plackett_luce_loss, instructgpt_pairwise_loss):
        out = fn(scores)
        (grad,) = torch.autograd.grad(out, scores)
        assert torch.isfinite(out) and torch.isfinite(grad).all(), fn.__name__


def test_naive_bradley_terry_is_not_finite_at_margin_minus_100():
    # Why the loss uses logsigmoid: σ(−100) underflows, so −log σ gives inf (this is the bug the test above
    # would catch if bradley_terry_loss were written naively).
    d = torch.tensor([-100.0])
    assert torch.isinf(-torch.log(torch.sigmoid(d))).all()
    assert torch.isfinite(bradley_terry_loss(d, torch.zeros(1)))


# --------------------------------------------------------------------------------------------------
# Plackett-Luce
# --------------------------------------------------------------------------------------------------


def test_plackett_luce_hand_value():
    scores = torch.tensor([[2.0, 1.0, 0.0]])  # best first
    # stage 1: −[2 − log(e^2 + e^1 + e^0)] = log(1 + e^−1 + e^−2) = log 1.503215 = 0.407606
    # stage 2: −[1 − log(e^1 + e^0)]       = log(1 + e^−1)         = log 1.367879 = 0.313262
    # total = 0.720868
    torch.testing.assert_close(plackett_luce_loss(scores), torch.tensor(0.720868), atol=1e-6, rtol=0)


def test_plackett_luce_at_equal_scores_is_log_k_factorial():
    # Equal scores make all K! rankings equally likely: the ranking NLL is log K!.
    for K in (2, 3, 5, 8):
        loss = plackett_luce_loss(torch.full((2, K), 0.7))
        torch.testing.assert_close(loss, torch.tensor(math.log(math.factorial(K))), rtol=1e-6, atol=1e-6)


def plackett_luce_loop(scores: torch.Tensor, ranking: torch.Tensor) -> list[float]:
    """Pick the best remaining response at each stage, one softmax at a time, in float64."""
    out = []
    for s, order in zip(scores.double().tolist(), ranking.tolist()):
        remaining, nll = list(order), 0.0
        for item in order[:-1]:
            log_z = math.log(sum(math.exp(s[j]) for j in remaining))
            nll -= s[item] - log_z
            remaining.remove(item)
        out.append(nll)
    return out


def test_plackett_luce_matches_a_stagewise_loop():
    gen = torch.Generator().manual_seed(3)
    scores = 2 * torch.randn(20, 5, generator=gen)
    ranking = random_rankings(gen, 20, 5)
    got = plackett_luce_loss(scores, ranking, reduction="none")
    torch.testing.assert_close(got, torch.tensor(plackett_luce_loop(scores, ranking)), atol=1e-5, rtol=1e-6)


def test_plackett_luce_at_k2_equals_bradley_terry():
    gen = torch.Generator().manual_seed(4)
    scores = 5 * torch.randn(32, 2, generator=gen)
    ranking = random_rankings(gen, 32, 2)
    chosen = scores.gather(1, ranking[:, :1]).squeeze(1)
    rejected = scores.gather(1, ranking[:, 1:]).squeeze(1)
    pl = plackett_luce_loss(scores, ranking, reduction="none")
    torch.testing.assert_close(
        pl, bradley_terry_loss(chosen, rejected, reduction="none"), atol=1e-6, rtol=1e-6
    )


def test_plackett_luce_ranking_argument_means_reordering_the_columns():
    gen = torch.Generator().manual_seed(5)
    scores, ranking = torch.randn(8, 4, generator=gen), random_rankings(gen, 8, 4)
    reordered = scores.gather(1, ranking)  # columns best first
    torch.testing.assert_close(plackett_luce_loss(scores, ranking), plackett_luce_loss(reordered))
    # Only score differences matter: a constant per prompt changes nothing.
    shifted = scores + 10 * torch.randn(8, 1, generator=gen)
    torch.testing.assert_close(plackett_luce_loss(shifted, ranking), plackett_luce_loss(scores, ranking))


# --------------------------------------------------------------------------------------------------
# InstructGPT's K-choose-2 pairs
# --------------------------------------------------------------------------------------------------


def test_ranking_to_pairs_lists_every_better_worse_pair():
    ranking = torch.tensor([[2, 0, 1]])  # response 2 best, then 0, then 1
    chosen_idx, rejected_idx = ranking_to_pairs(ranking)
    assert list(zip(chosen_idx[0].tolist(), rejected_idx[0].tolist())) == [(2, 0), (2, 1), (0, 1)]
    chosen_idx, _ = ranking_to_pairs(random_rankings(torch.Generator().manual_seed(0), 3, 6))
    assert chosen_idx.shape == (3, 15)  # C(6, 2) = 15


def test_instructgpt_pairwise_hand_value():
    scores = torch.tensor([[2.0, 1.0, 0.0]])  # best first; pairs (2,1), (2,0), (1,0) have gaps 1, 2, 1
    # −log σ(1) = 0.313262, −log σ(2) = log(1 + e^−2) = 0.126928, −log σ(1) = 0.313262
    # weighted by 1/C(3,2) = 1/3: [0.104421, 0.042309, 0.104421], sum = 0.251151
    pairs = instructgpt_pairwise_loss(scores, reduction="none")
    torch.testing.assert_close(pairs, torch.tensor([[0.104421, 0.042309, 0.104421]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(instructgpt_pairwise_loss(scores), torch.tensor(0.251151), atol=1e-6, rtol=0)


def test_instructgpt_pairwise_matches_a_combinations_loop():
    gen = torch.Generator().manual_seed(6)
    B, K = 6, 5
    scores, ranking = 2 * torch.randn(B, K, generator=gen), random_rankings(gen, B, K)
    expected = []
    for s, order in zip(scores.double().tolist(), ranking.tolist()):
        pairs = list(itertools.combinations(order, 2))  # (better, worse) since order is best first
        expected.append(sum(softplus_ref(-(s[w] - s[l])) for w, l in pairs) / len(pairs))
    got = instructgpt_pairwise_loss(scores, ranking, reduction="none").sum(dim=1)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=1e-6)
    # Same pairs through ranking_to_pairs + bradley_terry_loss: the mean over all pairs.
    chosen_idx, rejected_idx = ranking_to_pairs(ranking)
    bt = bradley_terry_loss(scores.gather(1, chosen_idx).flatten(), scores.gather(1, rejected_idx).flatten())
    torch.testing.assert_close(instructgpt_pairwise_loss(scores, ranking), bt)


def test_instructgpt_weighting_makes_each_prompt_count_the_same_whatever_k():
    # Untrained model (equal scores): every pair costs ln 2, so each prompt costs C(K,2)·ln2/C(K,2) = ln 2.
    for K in (2, 4, 9):
        per_prompt = instructgpt_pairwise_loss(torch.zeros(3, K), reduction="none").sum(dim=1)
        torch.testing.assert_close(per_prompt, torch.full((3,), math.log(2.0)))
    # And at K = 2 it is Bradley-Terry.
    scores = torch.tensor([[1.5, -0.5], [0.0, 3.0]])
    torch.testing.assert_close(
        instructgpt_pairwise_loss(scores), bradley_terry_loss(scores[:, 0], scores[:, 1])
    )


# --------------------------------------------------------------------------------------------------
# Outcome reward model
# --------------------------------------------------------------------------------------------------


def test_orm_loss_hand_value():
    logits = torch.tensor([[9.0, 2.0, -1.0, 5.0]])  # position 0 is prompt, 3 is padding
    mask = torch.tensor([[0, 1, 1, 0]])
    # label 1 (correct): BCE(z, 1) = log(1 + e^−z): z=2 → 0.126928, z=−1 → log(1 + e) = 1.313262
    # mean over the 2 response tokens = 0.720095
    torch.testing.assert_close(
        orm_loss(logits, torch.tensor([1.0]), mask), torch.tensor(0.720095), atol=1e-6, rtol=0
    )
    # Zero logits predict p = 1/2: ln 2 whatever the label.
    zeros = torch.zeros(2, 4)
    mask2 = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0]])
    torch.testing.assert_close(orm_loss(zeros, torch.tensor([1.0, 0.0]), mask2), torch.tensor(math.log(2.0)))


def test_orm_loss_matches_a_token_loop():
    gen = torch.Generator().manual_seed(7)
    logits = 3 * torch.randn(4, 6, generator=gen)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0]])
    total, count = 0.0, 0
    for b in range(4):
        for t in range(6):
            if mask[b, t]:
                z, y = logits[b, t].item(), labels[b].item()
                total += y * softplus_ref(-z) + (1 - y) * softplus_ref(z)  # −y log σ(z) − (1−y) log(1−σ(z))
                count += 1
    torch.testing.assert_close(
        orm_loss(logits, labels, mask), torch.tensor(total / count), atol=1e-6, rtol=1e-6
    )
    # (B,) labels mean the same as (B, T) labels repeated on every token.
    torch.testing.assert_close(
        orm_loss(logits, labels, mask), orm_loss(logits, labels[:, None].expand(4, 6), mask)
    )


def test_orm_loss_ignores_prompt_and_padding_logits():
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(3, 5, generator=gen)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1], [0, 1, 1, 1, 0]])
    labels = torch.tensor([1.0, 0.0, 1.0])
    garbage = torch.where(mask.bool(), logits, torch.full_like(logits, 1e4))
    torch.testing.assert_close(orm_loss(garbage, labels, mask), orm_loss(logits, labels, mask))


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------


def test_pairwise_accuracy_hand_values_and_tie_modes():
    chosen, rejected = torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([0.0, 2.0, 4.0, -1.0])
    # outcomes: right, tie, wrong, right
    assert pairwise_accuracy(chosen, rejected).item() == pytest.approx((1 + 0.5 + 0 + 1) / 4)  # 0.625
    assert pairwise_accuracy(chosen, rejected, ties="exclude").item() == pytest.approx(2 / 3)
    # A constant reward model is exactly at chance with ties="half".
    assert pairwise_accuracy(torch.zeros(7), torch.zeros(7)).item() == 0.5


def test_pairwise_accuracy_matches_a_loop():
    gen = torch.Generator().manual_seed(9)
    chosen = torch.randint(0, 4, (200,), generator=gen).float()  # small integers: many ties
    rejected = torch.randint(0, 4, (200,), generator=gen).float()
    score = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen.tolist(), rejected.tolist())]
    assert pairwise_accuracy(chosen, rejected).item() == pytest.approx(sum(score) / 200)
    decided = [s for s in score if s != 0.5]
    assert pairwise_accuracy(chosen, rejected, ties="exclude").item() == pytest.approx(
        sum(decided) / len(decided)
    )


def test_calibration_bins_hand_values():
    probs = torch.tensor([0.05, 0.15, 0.12, 0.95])
    outcomes = torch.tensor([0.0, 1.0, 0.0, 1.0])
    bins = calibration_bins(probs, outcomes, n_bins=10)
    # bin 0: {0.05}: conf 0.05, freq 0, gap 0.05 | bin 1: {0.15, 0.12}: conf 0.135, freq 0.5, gap 0.365
    # bin 9: {0.95}: conf 0.95, freq 1, gap 0.05
    # ECE = (1·0.05 + 2·0.365 + 1·0.05) / 4 = 0.83 / 4 = 0.2075
    assert bins.counts.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert bins.mean_predicted[1].item() == pytest.approx(0.135)
    assert bins.observed_frequency[1].item() == pytest.approx(0.5)
    assert torch.isnan(bins.observed_frequency[2])  # empty bin
    assert bins.ece.item() == pytest.approx(0.2075)
    # Bin edges are [k/n, (k+1)/n): 0 and 0.25 open bins 0 and 1, and 1.0 joins the last bin.
    edge_cases = calibration_bins(torch.tensor([0.0, 0.25, 0.5, 1.0]), torch.ones(4), n_bins=4)
    assert edge_cases.counts.tolist() == [1, 1, 1, 1]


def test_preference_calibration_hand_value():
    # One pair with r_c − r_r = ln 3: p = σ(ln 3) = 3/4 (outcome 1), mirrored as 1/4 (outcome 0).
    # bin 7 [0.7, 0.8): conf 0.75, freq 1, gap 0.25; bin 2 [0.2, 0.3): conf 0.25, freq 0, gap 0.25; ECE = 0.25
    bins = preference_calibration(torch.tensor([math.log(3.0)]), torch.tensor([0.0]), n_bins=10)
    assert bins.counts.tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
    assert bins.ece.item() == pytest.approx(0.25)


def test_calibration_matches_a_loop():
    gen = torch.Generator().manual_seed(10)
    probs, outcomes = torch.rand(300, generator=gen), (torch.rand(300, generator=gen) < 0.5).float()
    n_bins = 7
    ece = 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        last = k == n_bins - 1
        members = [
            (p, y) for p, y in zip(probs.tolist(), outcomes.tolist()) if lo <= p < hi or (last and p == 1)
        ]
        if members:
            conf = sum(p for p, _ in members) / len(members)
            freq = sum(y for _, y in members) / len(members)
            ece += len(members) / 300 * abs(freq - conf)
    assert calibration_bins(probs, outcomes, n_bins).ece.item() == pytest.approx(ece, abs=1e-9)


def test_preference_calibration_separates_calibrated_from_overconfident_models():
    gen = torch.Generator().manual_seed(11)
    # True rewards: the labeller prefers a with probability σ(r_a − r_b).
    r_a, r_b = torch.randn(20000, generator=gen), torch.randn(20000, generator=gen)
    a_wins = torch.rand(20000, generator=gen) < torch.sigmoid(r_a - r_b)
    chosen, rejected = torch.where(a_wins, r_a, r_b), torch.where(a_wins, r_b, r_a)
    calibrated = preference_calibration(chosen, rejected)
    overconfident = preference_calibration(4 * chosen, 4 * rejected)  # same ranking, gaps ×4
    assert calibrated.ece.item() < 0.02
    assert overconfident.ece.item() > 0.1
    # Same ordering, same accuracy: calibration is a separate axis from accuracy.
    assert pairwise_accuracy(chosen, rejected) == pairwise_accuracy(4 * chosen, 4 * rejected)
    # Mirror symmetry: the bin at p and the bin at 1 − p see complementary frequencies.
    freq = calibrated.observed_frequency
    torch.testing.assert_close(freq + freq.flip(0), torch.ones(10, dtype=torch.float64))


# --------------------------------------------------------------------------------------------------
# Normalisation statistics
# --------------------------------------------------------------------------------------------------


def test_normalization_stats_hand_values():
    mean, std = normalization_stats(torch.tensor([1.0, 2.0, 3.0]))
    assert mean == pytest.approx(2.0) and std == pytest.approx(math.sqrt(2 / 3))
    with pytest.raises(ValueError, match="std is 0"):
        normalization_stats(torch.full((4,), 0.3))
    with pytest.raises(ValueError, match="N >= 2"):
        normalization_stats(torch.tensor([1.0]))


# --------------------------------------------------------------------------------------------------
# Bad input: every ValueError, naming its field
# --------------------------------------------------------------------------------------------------

ok2 = torch.zeros(2)
nan2 = torch.tensor([0.0, float("nan")])
scores = torch.zeros(2, 3)
mask = torch.tensor([[0, 1, 1]])

BAD_INPUTS = [
    ("odd stack", lambda: split_chosen_rejected(torch.zeros(5)), "rewards"),
    ("scalar stack", lambda: split_chosen_rejected(torch.tensor(1.0)), "rewards"),
    ("empty stack", lambda: split_chosen_rejected(torch.zeros(0)), "rewards"),
    ("shape mismatch", lambda: bradley_terry_loss(torch.zeros(3), ok2), "rejected_rewards"),
    ("(B,1) head output", lambda: bradley_terry_loss(torch.zeros(2, 1), torch.zeros(2, 1)), "chosen_rewards"),
    ("empty batch", lambda: bradley_terry_loss(torch.zeros(0), torch.zeros(0)), "chosen_rewards"),
    ("NaN chosen", lambda: bradley_terry_loss(nan2, ok2), "chosen_rewards"),
    ("NaN rejected", lambda: bradley_terry_loss(ok2, nan2), "rejected_rewards"),
    ("inf chosen", lambda: bradley_terry_loss(torch.tensor([0.0, -float("inf")]), ok2), "chosen_rewards"),
    ("NaN margin", lambda: bradley_terry_loss(ok2, ok2, margin=nan2), "margin"),
    ("margin shape", lambda: bradley_terry_loss(ok2, ok2, margin=torch.zeros(3)), "margin"),
    ("reduction", lambda: bradley_terry_loss(ok2, ok2, reduction="avg"), "reduction"),
    ("scores 1-D", lambda: plackett_luce_loss(torch.zeros(3)), "scores"),
    ("one response", lambda: plackett_luce_loss(torch.zeros(4, 1)), "scores"),
    ("no prompts", lambda: plackett_luce_loss(torch.zeros(0, 3)), "scores"),
    ("NaN scores", lambda: plackett_luce_loss(torch.tensor([[0.0, float("nan")]])), "scores"),
    ("ranking shape", lambda: plackett_luce_loss(scores, torch.tensor([[0, 1, 2]])), "ranking"),
    ("ranking repeat", lambda: plackett_luce_loss(scores, torch.tensor([[0, 1, 2], [0, 0, 2]])), "ranking"),
    (
        "ranking range",
        lambda: instructgpt_pairwise_loss(scores, torch.tensor([[0, 1, 3], [2, 1, 0]])),
        "ranking",
    ),
    ("ranking float", lambda: plackett_luce_loss(scores, torch.zeros(2, 3)), "ranking"),
    ("NaN scores pairs", lambda: instructgpt_pairwise_loss(torch.full((1, 3), float("nan"))), "scores"),
    ("pairs one response", lambda: instructgpt_pairwise_loss(torch.zeros(2, 1)), "scores"),
    ("pairs reduction", lambda: instructgpt_pairwise_loss(scores, reduction="mean_pairs"), "reduction"),
    ("ranking_to_pairs K=1", lambda: ranking_to_pairs(torch.zeros(3, 1, dtype=torch.long)), "ranking"),
    ("ranking_to_pairs 1-D", lambda: ranking_to_pairs(torch.tensor([1, 0])), "ranking"),
    ("orm logits 3-D", lambda: orm_loss(torch.zeros(1, 3, 2), torch.ones(1), mask), "logits"),
    ("orm NaN labels", lambda: orm_loss(torch.zeros(1, 3), torch.tensor([float("nan")]), mask), "labels"),
    ("orm label range", lambda: orm_loss(torch.zeros(1, 3), torch.tensor([2.0]), mask), "labels"),
    ("orm label shape", lambda: orm_loss(torch.zeros(1, 3), torch.ones(1, 2), mask), "labels"),
    (
        "orm empty response",
        lambda: orm_loss(torch.zeros(1, 3), torch.ones(1), torch.zeros(1, 3)),
        "completion_mask",
    ),
    ("accuracy ties", lambda: pairwise_accuracy(ok2, ok2, ties="drop"), "ties"),
    ("accuracy all tied", lambda: pairwise_accuracy(ok2, ok2, ties="exclude"), "chosen_rewards"),
    ("accuracy NaN", lambda: pairwise_accuracy(nan2, ok2), "chosen_rewards"),
    ("calibration NaN", lambda: preference_calibration(ok2, nan2), "rejected_rewards"),
    ("probs 2-D", lambda: calibration_bins(torch.zeros(2, 2), torch.zeros(2, 2)), "probs"),
    ("probs empty", lambda: calibration_bins(torch.zeros(0), torch.zeros(0)), "probs"),
    ("probs range", lambda: calibration_bins(torch.tensor([1.5]), torch.tensor([1.0])), "probs"),
    ("probs NaN", lambda: calibration_bins(torch.tensor([float("nan")]), torch.tensor([1.0])), "probs"),
    ("outcomes shape", lambda: calibration_bins(torch.zeros(2), torch.zeros(3)), "outcomes"),
    ("outcomes NaN", lambda: calibration_bins(torch.zeros(1), torch.tensor([float("nan")])), "outcomes"),
    ("outcomes range", lambda: calibration_bins(torch.zeros(1), torch.tensor([-1.0])), "outcomes"),
    ("n_bins", lambda: calibration_bins(torch.zeros(1), torch.zeros(1), n_bins=0), "n_bins"),
]


@pytest.mark.parametrize(
    "fn, field", [(fn, field) for _, fn, field in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_raises_value_error_naming_the_field(fn, field):
    with pytest.raises(ValueError, match=field):
        fn()
