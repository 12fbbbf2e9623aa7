"""Tests for rlhfbook_lab.equations.policy_gradient: returns, GAE, group advantages, PPO losses, aggregation modes."""

import math
import statistics

import pytest
import torch

from rlhfbook_lab.equations.numerics import assert_numerically_equal
from rlhfbook_lab.equations.policy_gradient import (
    aggregate_loss,
    cispo_policy_loss,
    discounted_returns,
    dr_grpo_advantages,
    entropy_loss,
    explained_variance,
    gae_advantages,
    grpo_advantages,
    gspo_policy_loss,
    informative_groups,
    maxrl_advantages,
    policy_gradient_loss,
    ppo_policy_loss,
    ppo_value_loss,
    reinforce_advantages,
    rloo_advantages,
    sequence_advantages,
)

# A batch with a prompt position, responses of different lengths, padding after them, and (row 1) a hole:
# e.g. a tool's output inside a multi-turn response, which is not the policy's action. Across a hole,
# "the next response token" is the next unmasked one.
MASK = torch.tensor(
    [
        [0, 1, 1, 1, 0, 0],
        [0, 0, 1, 0, 1, 1],
        [0, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
    ]
)


def _random_tokens(seed, shape=MASK.shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


# ---------------------------------------------------------------------------------------------------------
# Loop references: one row at a time, over the list of response positions, straight from the definitions
# ---------------------------------------------------------------------------------------------------------


def _loop_returns(rewards, mask, gamma):
    out = torch.zeros(rewards.shape)
    for b in range(rewards.shape[0]):
        pos = [t for t in range(rewards.shape[1]) if mask[b, t]]
        for i, t in enumerate(pos):
            out[b, t] = sum(gamma**l * rewards[b, s].item() for l, s in enumerate(pos[i:]))
    return out


def _loop_gae(rewards, values, mask, gamma, lam):
    """Â_t = Σ_l (γλ)^l δ_{t+l} as an explicit double sum (no recursion)."""
    adv = torch.zeros(rewards.shape)
    for b in range(rewards.shape[0]):
        pos = [t for t in range(rewards.shape[1]) if mask[b, t]]
        v = [values[b, t].item() for t in pos] + [0.0]  # the episode ends after the last response token
        deltas = [rewards[b, t].item() + gamma * v[i + 1] - v[i] for i, t in enumerate(pos)]
        for i, t in enumerate(pos):
            adv[b, t] = sum((gamma * lam) ** l * d for l, d in enumerate(deltas[i:]))
    return adv


# ---------------------------------------------------------------------------------------------------------
# Discounted returns
# ---------------------------------------------------------------------------------------------------------


def test_discounted_returns_hand_computed():
    rewards, mask = torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3)
    torch.testing.assert_close(discounted_returns(rewards, mask, gamma=0.5), torch.tensor([[2.75, 3.5, 3.0]]))


def test_discounted_returns_match_the_loop():
    rewards = _random_tokens(0)
    for gamma in (1.0, 0.9, 0.0):
        want = _loop_returns(rewards, MASK, gamma)
        torch.testing.assert_close(discounted_returns(rewards, MASK, gamma), want)


def test_discounted_returns_properties():
    rewards = _random_tokens(1)
    # γ = 1 on a full row is a reversed cumulative sum; γ = 0 returns the rewards themselves
    full = torch.ones_like(rewards)
    torch.testing.assert_close(discounted_returns(rewards, full, 1.0), rewards.flip(1).cumsum(1).flip(1))
    torch.testing.assert_close(discounted_returns(rewards, MASK, 0.0), rewards * MASK)
    # garbage in masked slots changes nothing
    dirty = rewards.clone()
    dirty[MASK == 0] = 100.0
    torch.testing.assert_close(discounted_returns(dirty, MASK, 0.9), discounted_returns(rewards, MASK, 0.9))


# ---------------------------------------------------------------------------------------------------------
# GAE
# ---------------------------------------------------------------------------------------------------------


def test_gae_hand_computed():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    advantages, returns = gae_advantages(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.5)
    # δ = [0.6−0.5, 0.7−0.6, 1−0.7] = [0.1, 0.1, 0.3]; Â_2 = 0.3, Â_1 = 0.1 + 0.5·0.3, Â_0 = 0.1 + 0.5·0.25
    torch.testing.assert_close(advantages, torch.tensor([[0.225, 0.25, 0.3]]))
    torch.testing.assert_close(returns, torch.tensor([[0.725, 0.85, 1.0]]))


@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.5), (0.99, 1.0), (1.0, 0.0)])
def test_gae_matches_the_loop(gamma, lam):
    rewards, values = _random_tokens(2), _random_tokens(3)
    advantages, returns = gae_advantages(rewards, values, MASK, gamma, lam)
    torch.testing.assert_close(advantages, _loop_gae(rewards, values, MASK, gamma, lam))
    torch.testing.assert_close(returns, (advantages + values) * MASK)


def test_gae_matches_the_matrix_form():
    # On a full row, Â = M δ with M[t, s] = (γλ)^(s−t) for s ≥ t: the whole sum as one matrix product.
    gamma, lam, T = 0.9, 0.7, 8
    rewards, values = _random_tokens(4, (3, T)), _random_tokens(5, (3, T))
    next_values = torch.cat([values[:, 1:], torch.zeros(3, 1)], dim=1)
    deltas = rewards + gamma * next_values - values
    t = torch.arange(T)
    M = torch.where(t[None, :] >= t[:, None], (gamma * lam) ** (t[None, :] - t[:, None]).float(), 0.0)
    advantages, _ = gae_advantages(rewards, values, torch.ones(3, T), gamma, lam)
    torch.testing.assert_close(advantages, deltas @ M.T)


def test_gae_lambda_one_is_monte_carlo_minus_values_and_lambda_zero_is_td_error():
    rewards, values = _random_tokens(6), _random_tokens(7)
    for gamma in (1.0, 0.8):
        advantages, returns = gae_advantages(rewards, values, MASK, gamma, lam=1.0)
        torch.testing.assert_close(advantages, (discounted_returns(rewards, MASK, gamma) - values) * MASK)
        torch.testing.assert_close(returns, discounted_returns(rewards, MASK, gamma))
    # λ = 0: Â_t = δ_t = r_t + γ V_{t+1} − V_t, with V after the last response token = 0
    advantages, _ = gae_advantages(rewards, values, MASK, gamma=0.9, lam=0.0)
    row = 0  # response tokens at 1, 2, 3
    r, v = rewards[row], values[row]
    want = [r[t] + 0.9 * (v[t + 1] if t < 3 else 0.0) - v[t] for t in (1, 2, 3)]
    torch.testing.assert_close(advantages[row, 1:4], torch.stack(want))


def test_gae_ignores_a_large_value_in_a_masked_slot():
    rewards, values = _random_tokens(8), _random_tokens(9)
    clean_adv, clean_ret = gae_advantages(rewards, values, MASK, gamma=1.0, lam=0.95)
    dirty_values, dirty_rewards = values.clone(), rewards.clone()
    dirty_values[MASK == 0], dirty_rewards[MASK == 0] = 100.0, -100.0
    adv, ret = gae_advantages(dirty_rewards, dirty_values, MASK, gamma=1.0, lam=0.95)
    assert torch.equal(adv, clean_adv) and torch.equal(ret, clean_ret)
    assert (adv[MASK == 0] == 0).all()


def test_gae_is_invariant_to_where_the_response_sits():
    rewards, values = _random_tokens(10, (1, 3)), _random_tokens(11, (1, 3))
    alone, _ = gae_advantages(rewards, values, torch.ones(1, 3))
    padded_rewards = torch.cat([torch.full((1, 2), 7.0), rewards, torch.full((1, 4), 7.0)], dim=1)
    padded_values = torch.cat([torch.full((1, 2), 9.0), values, torch.full((1, 4), 9.0)], dim=1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0, 0, 0]])
    padded, _ = gae_advantages(padded_rewards, padded_values, mask)
    torch.testing.assert_close(padded[:, 2:5], alone)


def test_gae_outputs_are_detached():
    values = _random_tokens(12).requires_grad_()
    advantages, returns = gae_advantages(_random_tokens(13), values, MASK)
    assert not advantages.requires_grad and not returns.requires_grad


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(completion_mask=torch.tensor([[0, 1, 1, 0, 0, 0]] * 3 + [[0] * 6])), "no response tokens"),
        (dict(values=torch.zeros(4, 5)), "values shape"),
        (dict(gamma=1.5), "gamma"),
        (dict(lam=-0.1), "lam"),
    ],
)
def test_gae_bad_input(kwargs, match):
    args = dict(rewards=torch.zeros(4, 6), values=torch.zeros(4, 6), completion_mask=MASK) | kwargs
    with pytest.raises(ValueError, match=match):
        gae_advantages(**args)


def test_discounted_returns_bad_input():
    with pytest.raises(ValueError, match="no response tokens"):
        discounted_returns(torch.zeros(2, 3), torch.tensor([[0, 1, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(torch.zeros(2, 3), torch.ones(2, 3), gamma=-1.0)


# ---------------------------------------------------------------------------------------------------------
# Sequence-level advantages
# ---------------------------------------------------------------------------------------------------------

REWARDS = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])  # two groups of G = 4; the second unanimous


def test_group_advantages_hand_computed():
    std = math.sqrt(1 / 3)  # sample std of [1, 0, 0, 1]
    torch.testing.assert_close(
        grpo_advantages(REWARDS, 4), torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]) / (std + 1e-4)
    )
    want = torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0.0])
    torch.testing.assert_close(dr_grpo_advantages(REWARDS, 4), want)
    # RLOO: 1 − mean(0, 0, 1) = 2/3; 0 − mean(1, 0, 1) = −2/3
    torch.testing.assert_close(rloo_advantages(REWARDS, 4), torch.tensor([2, -2, -2, 2, 0, 0, 0, 0]) / 3)
    # REINFORCE: batch mean 1.25
    torch.testing.assert_close(
        reinforce_advantages(REWARDS), torch.tensor([-0.25, -1.25, -1.25, -0.25, 0.75, 0.75, 0.75, 0.75])
    )


def _loop_group_advantages(rewards, G, estimator):
    out = []
    for start in range(0, len(rewards), G):
        group = rewards[start : start + G]
        for i, r in enumerate(group):
            if estimator == "rloo":
                out.append(r - statistics.mean(group[:i] + group[i + 1 :]))
            elif estimator == "grpo":
                out.append((r - statistics.mean(group)) / (statistics.stdev(group) + 1e-4))
            else:
                out.append(r - statistics.mean(group))
    return torch.tensor(out)


@pytest.mark.parametrize("estimator", ["rloo", "grpo", "dr_grpo"])
def test_group_advantages_match_the_loop(estimator):
    g = torch.Generator().manual_seed(14)
    rewards = torch.randn(12, generator=g, dtype=torch.float64)
    want = _loop_group_advantages(rewards.tolist(), 3, estimator).double()
    torch.testing.assert_close(sequence_advantages(rewards, estimator, group_size=3), want)


def test_rloo_is_a_rescaled_dr_grpo():
    g = torch.Generator().manual_seed(15)
    rewards = torch.randn(20, generator=g, dtype=torch.float64)
    for G in (2, 4, 5, 10):
        torch.testing.assert_close(rloo_advantages(rewards, G), G / (G - 1) * dr_grpo_advantages(rewards, G))


def test_group_advantages_sum_to_zero_and_ignore_a_per_group_shift():
    g = torch.Generator().manual_seed(16)
    rewards = torch.randn(4 * 5, generator=g, dtype=torch.float64)
    shift = torch.arange(4, dtype=torch.float64).repeat_interleave(5) * 10.0  # a different offset per prompt
    for estimator in ("rloo", "grpo", "dr_grpo"):
        adv = sequence_advantages(rewards, estimator, group_size=5)
        torch.testing.assert_close(adv.view(4, 5).sum(1), torch.zeros(4, dtype=torch.float64))
        torch.testing.assert_close(sequence_advantages(rewards + shift, estimator, group_size=5), adv)
    torch.testing.assert_close(reinforce_advantages(rewards).sum(), torch.tensor(0.0, dtype=torch.float64))
    # GRPO is (nearly) scale-free; Dr. GRPO scales with the reward
    scaled = grpo_advantages(3 * rewards, 5)
    torch.testing.assert_close(scaled, grpo_advantages(rewards, 5), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(dr_grpo_advantages(3 * rewards, 5), 3 * dr_grpo_advantages(rewards, 5))


def test_an_all_equal_group_gives_exact_zeros():
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.7, 0.3, 0.1])  # 0.1 + 0.1 + 0.1 != 0.3 in floating point
    for estimator in ("rloo", "grpo", "dr_grpo"):
        adv = sequence_advantages(rewards, estimator, group_size=3)
        assert torch.equal(adv[:3], torch.zeros(3)), estimator
        assert (adv[3:] != 0).all()
    assert torch.equal(reinforce_advantages(torch.full((5,), 0.1)), torch.zeros(5))


def test_permuting_groups_or_rows_within_a_group_permutes_the_advantages():
    g = torch.Generator().manual_seed(17)
    G, n = 4, 3
    rewards = torch.randn(G * n, generator=g)
    group_perm = torch.tensor([2, 0, 1])
    whole_groups = (group_perm[:, None] * G + torch.arange(G)).flatten()
    within = torch.cat([torch.randperm(G, generator=g) + G * i for i in range(n)])
    for estimator in ("rloo", "grpo", "dr_grpo"):
        adv = sequence_advantages(rewards, estimator, group_size=G)
        for perm in (whole_groups, within):
            torch.testing.assert_close(sequence_advantages(rewards[perm], estimator, group_size=G), adv[perm])
    # A permutation that mixes groups is *not* a relabelling: the advantages change.
    mixed = torch.tensor([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
    assert not torch.allclose(grpo_advantages(rewards[mixed], G), grpo_advantages(rewards, G)[mixed])


@pytest.mark.parametrize(
    "rewards, group_size, match",
    [
        (torch.tensor([1.0, math.nan, 0.0, 1.0]), 2, "rewards must be finite"),
        (torch.tensor([1.0, math.inf, 0.0, 1.0]), 2, "rewards must be finite"),
        (torch.tensor([1.0, 0.0, 0.0, 1.0]), 1, "group_size"),
        (torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]), 2, "multiple of group_size"),  # groups of 2, 2 and 1
        (torch.tensor([1.0, 0.0, 0.0, 1.0]), 2.0, "group_size"),
        (torch.ones(2, 2), 2, "rewards must be a 1-D"),
    ],
)
@pytest.mark.parametrize("estimator", ["rloo", "grpo", "dr_grpo"])
def test_group_advantages_bad_input(estimator, rewards, group_size, match):
    with pytest.raises(ValueError, match=match):
        sequence_advantages(rewards, estimator, group_size=group_size)


def test_sequence_advantages_bad_input():
    with pytest.raises(ValueError, match="rewards must be finite"):
        reinforce_advantages(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="B >= 2"):
        reinforce_advantages(torch.tensor([1.0]))
    with pytest.raises(ValueError, match="estimator"):
        sequence_advantages(REWARDS, "ppo", group_size=4)
    with pytest.raises(ValueError, match="group_size is required"):
        sequence_advantages(REWARDS, "rloo")


def test_informative_groups_hand_computed():
    # groups of 3: all right, mixed, all wrong, equal non-binary, tiny difference
    r = torch.tensor([1.0, 1, 1, 0, 1, 0, 0, 0, 0, 0.5, 0.5, 0.5, 2.0, 2.0, 2.0 + 1e-6])
    assert informative_groups(r, 3).tolist() == [False, True, False, False, True]


def test_informative_groups_is_a_nonzero_advantage_and_a_nonzero_std():
    """Second implementations: a group is kept exactly when its sample std is > 0, and exactly when some
    GRPO/Dr. GRPO advantage in it is non-zero (a dropped group is one that adds no gradient)."""
    gen = torch.Generator().manual_seed(0)
    for G in (2, 4, 8):
        r = torch.randint(0, 2, (12 * G,), generator=gen).float()  # 0/1 verifier rewards: many unanimous groups
        keep = informative_groups(r, G)
        assert keep.tolist() == [bool(g.std() > 0) for g in r.view(-1, G)]
        for adv in (grpo_advantages(r, G), dr_grpo_advantages(r, G)):
            assert keep.tolist() == (adv.view(-1, G) != 0).any(dim=1).tolist()


def test_informative_groups_properties_and_bad_input():
    r = torch.tensor([0.0, 1.0, 3.0, 3.0, 2.0, 7.0, 5.0, 5.0])
    keep = informative_groups(r, 2)
    assert torch.equal(informative_groups(2.5 * r - 1.0, 2), keep)  # invariant to a positive affine map
    assert torch.equal(informative_groups(r.view(-1, 2).flip(1).reshape(-1), 2), keep)  # order within a group
    assert torch.equal(informative_groups(r.view(-1, 2).flip(0).reshape(-1), 2), keep.flip(0))  # groups permute
    with pytest.raises(ValueError, match="multiple of group_size"):
        informative_groups(r[:7], 2)
    with pytest.raises(ValueError, match="group_size"):
        informative_groups(r, 1)
    with pytest.raises(ValueError, match="finite"):
        informative_groups(torch.tensor([0.0, math.nan]), 2)


# ---------------------------------------------------------------------------------------------------------
# PPO policy loss
# ---------------------------------------------------------------------------------------------------------


def test_ppo_policy_loss_hand_computed_with_asymmetric_clip():
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.5, 1.25]])
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0]])
    old = torch.full((1, 5), -2.0)
    logps = (old + ratios.log()).requires_grad_()
    mask = torch.ones(1, 5)
    loss, metrics = ppo_policy_loss(logps, old, advantages, mask, clip_eps_low=0.2, clip_eps_high=0.28)
    # A>0, ρ=1.5 → clipped at 1.28; A<0, ρ=0.5 → clipped at 0.8; the other two directions are not clipped;
    # ρ = 1.25 < 1 + ε_high is inside the asymmetric range (a symmetric 0.2 would clip it).
    torch.testing.assert_close(loss.detach(), torch.tensor([[-1.28, 0.8, -0.5, 1.5, -1.25]]))
    assert metrics["clipfrac"].item() == pytest.approx(2 / 5)
    k3 = [(r - 1) - math.log(r) for r in (1.5, 0.5, 0.5, 1.5, 1.25)]
    assert metrics["approx_kl"].item() == pytest.approx(sum(k3) / 5, rel=1e-5)
    loss.sum().backward()
    # clipped tokens get no gradient; the others get −Â·ρ (d ρ / d logπ = ρ)
    torch.testing.assert_close(logps.grad, torch.tensor([[0.0, 0.0, -0.5, 1.5, -1.25]]))
    symmetric, m = ppo_policy_loss(logps.detach(), old, advantages, mask, clip_eps_low=0.2)
    assert symmetric[0, 4].item() == pytest.approx(-1.2) and m["clipfrac"].item() == pytest.approx(3 / 5)


def test_ppo_policy_loss_matches_the_loop():
    logps, old = 0.3 * _random_tokens(18) - 1, 0.3 * _random_tokens(19) - 1
    advantages = _random_tokens(20)
    loss, metrics = ppo_policy_loss(logps, old, advantages, MASK, clip_eps_low=0.1, clip_eps_high=0.15)
    want, clipped = torch.zeros(MASK.shape), []
    for b, t in MASK.nonzero().tolist():
        ratio = math.exp(logps[b, t].item() - old[b, t].item())
        a = advantages[b, t].item()
        unclipped, clipped_obj = ratio * a, min(max(ratio, 0.9), 1.15) * a
        want[b, t] = -min(unclipped, clipped_obj)  # the PPO objective is the min; the loss its negative
        clipped.append(clipped_obj < unclipped)
    torch.testing.assert_close(loss, want)
    assert metrics["clipfrac"].item() == pytest.approx(sum(clipped) / len(clipped))


def test_ppo_ratio_is_one_and_gradient_is_vanilla_pg_on_policy():
    logps = (_random_tokens(21) - 2).requires_grad_()
    advantages = torch.tensor([1.0, -2.0, 0.5, 3.0])  # sequence-level (B,), broadcast over tokens
    loss, metrics = ppo_policy_loss(logps, logps.detach(), advantages, MASK)
    assert metrics["ratio_mean"].item() == 1.0
    assert metrics["clipfrac"].item() == 0.0 and metrics["approx_kl"].item() == 0.0
    aggregate_loss(loss, MASK, "token_mean").backward()
    ppo_grad = logps.grad.clone()
    logps.grad = None
    aggregate_loss(policy_gradient_loss(logps, advantages, MASK), MASK, "token_mean").backward()
    torch.testing.assert_close(ppo_grad, logps.grad)


def test_ppo_policy_loss_ignores_garbage_in_masked_slots():
    logps, old, advantages = _random_tokens(22) - 1, _random_tokens(23) - 1, _random_tokens(24)
    clean, _ = ppo_policy_loss(logps, old, advantages, MASK)
    dirty_logps = logps.clone()
    dirty_logps[MASK == 0] = 1e4  # exp(1e4) = inf
    dirty_old, dirty_adv = old.clone(), advantages.clone()
    dirty_old[MASK == 0], dirty_adv[MASK == 0] = -math.inf, math.nan
    dirty_logps.requires_grad_()
    loss, metrics = ppo_policy_loss(dirty_logps, dirty_old, dirty_adv, MASK)
    assert torch.equal(loss.detach(), clean) and all(torch.isfinite(v) for v in metrics.values())
    aggregate_loss(loss, MASK, "token_mean").backward()
    assert torch.isfinite(dirty_logps.grad).all() and (dirty_logps.grad[MASK == 0] == 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(completion_mask=torch.tensor([[1, 1], [0, 0]])), "no response tokens"),
        (dict(advantages=torch.zeros(3)), "advantages must have shape"),
        (dict(advantages=torch.tensor([0.0, math.nan])), "advantages must be finite"),
        (dict(old_per_token_logps=torch.zeros(2, 3)), "old_per_token_logps shape"),
        (dict(clip_eps_low=-0.1), "clip_eps_low"),
        (dict(clip_eps_low=math.nan), "clip_eps_low"),
        (dict(clip_eps_high=-0.1), "clip_eps_high"),
    ],
)
def test_ppo_policy_loss_bad_input(kwargs, match):
    args = dict(
        per_token_logps=torch.zeros(2, 2), old_per_token_logps=torch.zeros(2, 2), advantages=torch.zeros(2),
        completion_mask=torch.ones(2, 2),
    ) | kwargs
    with pytest.raises(ValueError, match=match):
        ppo_policy_loss(**args)


def test_policy_gradient_loss_hand_computed_and_bad_input():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -math.inf]], requires_grad=True)  # −inf in a masked slot
    loss = policy_gradient_loss(logps, torch.tensor([2.0, -1.0]), torch.tensor([[1, 1], [1, 0]]))
    torch.testing.assert_close(loss.detach(), torch.tensor([[2.0, 4.0], [-0.5, 0.0]]))
    loss.sum().backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[-2.0, -2.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="no response tokens"):
        policy_gradient_loss(logps, torch.zeros(2), torch.tensor([[1, 1], [0, 0]]))


# ---------------------------------------------------------------------------------------------------------
# Value loss, entropy, explained variance
# ---------------------------------------------------------------------------------------------------------


def test_ppo_value_loss_hand_computed():
    values = torch.tensor([[1.0, 0.0, 0.6]], requires_grad=True)
    old_values, returns = torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([[2.0, 0.0, 1.0]])
    loss, metrics = ppo_value_loss(values, old_values, returns, torch.ones(1, 3), clip_range_value=0.2)
    # vf_loss1 = [1, 0, 0.16]; V_clip = [0.7, 0.3, 0.6] → vf_loss2 = [1.69, 0.09, 0.16]; ½·max
    torch.testing.assert_close(loss.detach(), torch.tensor([[0.845, 0.045, 0.08]]))
    assert metrics["vf_clipfrac"].item() == pytest.approx(2 / 3)
    loss.sum().backward()
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, 0.0, -0.4]]))  # clipped: no gradient
    unclipped, m = ppo_value_loss(values, old_values, returns, torch.ones(1, 3), clip_range_value=None)
    torch.testing.assert_close(unclipped.detach(), torch.tensor([[0.5, 0.0, 0.08]]))
    assert m["vf_clipfrac"].item() == 0.0


def test_ppo_value_loss_matches_the_loop_and_bad_input():
    values, old, returns = _random_tokens(25), _random_tokens(26), _random_tokens(27)
    loss, _ = ppo_value_loss(values, old, returns, MASK, clip_range_value=0.3)
    want = torch.zeros(MASK.shape)
    for b, t in MASK.nonzero().tolist():
        v, vo, r = values[b, t].item(), old[b, t].item(), returns[b, t].item()
        v_clip = vo + min(max(v - vo, -0.3), 0.3)
        want[b, t] = 0.5 * max((v - r) ** 2, (v_clip - r) ** 2)
    torch.testing.assert_close(loss, want)
    with pytest.raises(ValueError, match="clip_range_value"):
        ppo_value_loss(values, old, returns, MASK, clip_range_value=0.0)
    with pytest.raises(ValueError, match="returns shape"):
        ppo_value_loss(values, old, returns[:, :3], MASK)


def test_entropy_loss():
    logits = torch.zeros(2, 3, 4)  # uniform over 4 tokens: H = log 4
    mask = torch.tensor([[0, 1, 1], [1, 0, 0]])
    torch.testing.assert_close(entropy_loss(logits, mask), -math.log(4) * mask.float())
    g = torch.Generator().manual_seed(28)
    logits = torch.randn(2, 3, 4, generator=g)
    p = logits.softmax(-1)
    want = torch.tensor([[sum(x * math.log(x) for x in p[b, t].tolist()) for t in range(3)] for b in (0, 1)])
    torch.testing.assert_close(entropy_loss(logits, mask), want * mask)
    dirty = logits.clone()
    dirty[0, 0] = math.nan
    dirty.requires_grad_()
    entropy_loss(dirty, mask).sum().backward()
    assert torch.isfinite(dirty.grad).all()
    with pytest.raises(ValueError, match="logits must have shape"):
        entropy_loss(torch.zeros(2, 3), mask)


def test_explained_variance():
    mask = torch.ones(1, 4)
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert explained_variance(returns, returns, mask).item() == 1.0
    assert explained_variance(torch.full((1, 4), 2.5), returns, mask).item() == pytest.approx(0.0)
    # residual [0, 0, 0, 1]: Var = 0.1875; Var[R] = 1.25
    values = torch.tensor([[1.0, 2.0, 3.0, 3.0]])
    assert explained_variance(values, returns, mask).item() == pytest.approx(0.85)
    values, rets = _random_tokens(29), _random_tokens(30)
    res = [(rets[b, t] - values[b, t]).item() for b, t in MASK.nonzero().tolist()]
    ys = [rets[b, t].item() for b, t in MASK.nonzero().tolist()]
    want = 1 - statistics.pvariance(res) / statistics.pvariance(ys)
    assert explained_variance(values, rets, MASK).item() == pytest.approx(want, rel=1e-5)
    assert math.isnan(explained_variance(values, torch.ones(4, 6), MASK).item())


# ---------------------------------------------------------------------------------------------------------
# Aggregation modes
# ---------------------------------------------------------------------------------------------------------


def _two_responses():
    """Two responses of 10 and 100 tokens with the same advantage (+1)."""
    mask = torch.zeros(2, 100)
    mask[0, :10], mask[1, :] = 1, 1
    return mask


@pytest.mark.parametrize(
    "mode, short_weight, long_weight",
    [
        ("seq_mean_token_mean", 1 / (2 * 10), 1 / (2 * 100)),  # GRPO: a short answer's tokens count 10× more
        ("token_mean", 1 / 110, 1 / 110),  # DAPO: every token equal
        ("seq_mean_token_sum_norm", 1 / (2 * 100), 1 / (2 * 100)),  # Dr. GRPO: every token equal, constant
    ],
)
def test_aggregation_gives_the_hand_computed_per_token_gradient(mode, short_weight, long_weight):
    mask = _two_responses()
    logps = torch.full((2, 100), -1.0, requires_grad=True)
    per_token_loss = policy_gradient_loss(logps, torch.tensor([1.0, 1.0]), mask)
    aggregate_loss(per_token_loss, mask, mode, max_completion_length=100).backward()
    want = torch.zeros(2, 100)
    want[0, :10], want[1, :] = -short_weight, -long_weight  # ∂(−Â log π)/∂ log π = −Â = −1, times the weight
    torch.testing.assert_close(logps.grad, want)


def _loop_aggregate(loss, mask, mode, max_len=None):
    rows = [[loss[b, t].item() for t in range(loss.shape[1]) if mask[b, t]] for b in range(loss.shape[0])]
    if mode == "seq_mean_token_mean":
        return sum(sum(r) / len(r) for r in rows) / len(rows)
    if mode == "token_mean":
        return sum(sum(r) for r in rows) / sum(len(r) for r in rows)
    return sum(sum(r) / max_len for r in rows) / len(rows)


@pytest.mark.parametrize("mode", ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"])
def test_aggregation_matches_the_loop(mode):
    loss = _random_tokens(31)
    got = aggregate_loss(loss, MASK, mode, max_completion_length=8)
    assert got.item() == pytest.approx(_loop_aggregate(loss, MASK, mode, max_len=8), rel=1e-6)


def _grad(fn, x):
    x = x.clone().requires_grad_()
    fn(x).backward()
    return x.grad


def test_micro_batching_token_mean_needs_the_full_batch_token_count():
    loss = _random_tokens(32)
    full = _grad(lambda x: aggregate_loss(x, MASK, "token_mean"), loss)
    parts = [slice(0, 1), slice(1, 4)]  # 3 tokens and 12 tokens: unequal micro-batches
    # The common mistake: average the micro-batches' own token means.
    naive = _grad(lambda x: sum(aggregate_loss(x[p], MASK[p], "token_mean") for p in parts) / 2, loss)
    assert not torch.allclose(naive, full)
    # Sum the micro-batch losses, each divided by the full batch's token count: exactly the full gradient.
    kw = dict(num_items_in_batch=int(MASK.sum()))
    exact = _grad(lambda x: sum(aggregate_loss(x[p], MASK[p], "token_mean", **kw) for p in parts), loss)
    torch.testing.assert_close(exact, full)


@pytest.mark.parametrize("mode", ["seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_micro_batching_sequence_modes(mode):
    loss = _random_tokens(33)
    kw = dict(max_completion_length=6)
    full = _grad(lambda x: aggregate_loss(x, MASK, mode, **kw), loss)
    halves = [slice(0, 2), slice(2, 4)]  # equal row counts: averaging micro-batch losses is already exact
    averaged = _grad(lambda x: sum(aggregate_loss(x[p], MASK[p], mode, **kw) for p in halves) / 2, loss)
    torch.testing.assert_close(averaged, full)
    uneven = [slice(0, 1), slice(1, 4)]  # unequal row counts: pass the full batch's row count and sum
    kw_full = kw | dict(num_items_in_batch=4)
    summed = _grad(lambda x: sum(aggregate_loss(x[p], MASK[p], mode, **kw_full) for p in uneven), loss)
    torch.testing.assert_close(summed, full)
    naive = _grad(lambda x: sum(aggregate_loss(x[p], MASK[p], mode, **kw) for p in uneven) / 2, loss)
    assert not torch.allclose(naive, full)


def test_aggregation_ignores_garbage_in_masked_slots():
    loss = _random_tokens(34)
    dirty = loss.clone()
    dirty[MASK == 0] = math.inf
    for mode in ("seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"):
        assert aggregate_loss(dirty, MASK, mode, max_completion_length=6) == aggregate_loss(
            loss, MASK, mode, max_completion_length=6
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(completion_mask=torch.tensor([[1, 1, 0], [0, 0, 0]])), "no response tokens"),
        (dict(mode="sum"), "mode"),
        (dict(mode="seq_mean_token_sum_norm"), "max_completion_length"),
        (dict(mode="seq_mean_token_sum_norm", max_completion_length=1), "max_completion_length"),
        (dict(num_items_in_batch=0), "num_items_in_batch"),
        (dict(per_token_loss=torch.zeros(2, 4)), "per_token_loss shape"),
    ],
)
def test_aggregation_bad_input(kwargs, match):
    args = dict(per_token_loss=torch.zeros(2, 3), completion_mask=torch.tensor([[1, 1, 0], [0, 1, 0]]))
    args = args | dict(mode="token_mean") | kwargs
    with pytest.raises(ValueError, match=match):
        aggregate_loss(**args)


@pytest.mark.parametrize("loss", ["policy_gradient", "ppo"])
@pytest.mark.parametrize("shape", ["sequence", "token"])
def test_no_gradient_flows_into_the_advantages(loss, shape):
    """The advantages are constants of the surrogate ("detached here"): given advantages that carry a gradient
    (computed from a value head, say), backward leaves them untouched while log π gets its gradient."""
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    logps = (-torch.rand(2, 3, generator=g)).requires_grad_(True)
    source = torch.randn(2, 3 if shape == "token" else 1, generator=g, requires_grad=True)
    advantages = (2 * source).squeeze(-1) if shape == "sequence" else 2 * source  # a non-leaf with a graph
    if loss == "ppo":
        per_token, _ = ppo_policy_loss(logps, logps.detach(), advantages, mask)
    else:
        per_token = policy_gradient_loss(logps, advantages, mask)
    aggregate_loss(per_token, mask, "token_mean").backward()
    assert source.grad is None
    assert logps.grad is not None and logps.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------
# Asymmetric clips, GSPO and CISPO
# ---------------------------------------------------------------------------------------------------------


def test_a_lower_clip_of_one_or_more_never_binds():
    ratios = torch.tensor([[0.01, 0.5, 3.0]])
    old = torch.zeros(1, 3)
    advantages = torch.tensor([-1.0])
    loss, metrics = ppo_policy_loss(old + ratios.log(), old, advantages, torch.ones(1, 3), clip_eps_low=1.5,
                                    clip_eps_high=0.2)
    # Â < 0: only the lower clip could bind; with ε_low ≥ 1 it cannot, so ℓ = −Â·ρ = ρ
    torch.testing.assert_close(loss, ratios)
    assert metrics["clipfrac"].item() == 0.0


def test_gspo_hand_computed():
    # row 0: token ratios e^{0.1}, e^{0.3} → s = e^{0.2} ≈ 1.2214; row 1: one token, ratio e^{-0.5} ≈ 0.6065
    old = torch.zeros(2, 3)
    logps = torch.tensor([[0.1, 0.3, 0.0], [-0.5, 0.0, 0.0]]).requires_grad_()
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    advantages = torch.tensor([1.0, -2.0])
    loss, metrics = gspo_policy_loss(logps, old, advantages, mask, clip_eps_low=0.2, clip_eps_high=0.1)
    # row 0: Â > 0, s = 1.2214 > 1.1 → clipped: ℓ = −1.1; row 1: Â < 0, s = 0.6065 < 0.8 → clipped: ℓ = 1.6
    torch.testing.assert_close(loss.detach(), torch.tensor([[-1.1, -1.1, 0.0], [1.6, 0.0, 0.0]]))
    assert metrics["clipfrac"].item() == 1.0
    assert metrics["seq_ratio_mean"].item() == pytest.approx((math.exp(0.2) + math.exp(-0.5)) / 2, rel=1e-6)
    aggregate_loss(loss, mask, "seq_mean_token_mean").backward()
    assert (logps.grad == 0).all()  # both sequences clipped: no gradient at all
    loss, _ = gspo_policy_loss(logps.detach(), old, advantages, mask, clip_eps_low=0.5, clip_eps_high=0.5)
    torch.testing.assert_close(loss[:, 0], torch.tensor([-math.exp(0.2), 2 * math.exp(-0.5)]))


def test_gspo_matches_the_loop():
    logps, old = 0.3 * _random_tokens(30) - 1, 0.3 * _random_tokens(31) - 1
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.5])
    loss, _ = gspo_policy_loss(logps, old, advantages, MASK, clip_eps_low=0.05, clip_eps_high=0.08)
    for b in range(4):
        pos = [t for t in range(MASK.shape[1]) if MASK[b, t]]
        s = math.exp(sum(logps[b, t].item() - old[b, t].item() for t in pos) / len(pos))
        a = advantages[b].item()
        want = -min(s * a, min(max(s, 0.95), 1.08) * a)
        for t in range(MASK.shape[1]):
            assert loss[b, t].item() == pytest.approx(want if MASK[b, t] else 0.0, rel=1e-5, abs=1e-7)


def test_gspo_and_cispo_on_policy_are_grpo_and_reinforce():
    """Property: at ρ = 1 GSPO's gradient is GRPO's (PPO, per-sequence token mean) and CISPO's is the vanilla
    policy gradient (token mean)."""
    advantages = torch.tensor([1.0, -2.0, 0.5, 3.0])
    grads = {}
    for name, fn, mode in (("gspo", gspo_policy_loss, "seq_mean_token_mean"),
                           ("ppo_seq", ppo_policy_loss, "seq_mean_token_mean"),
                           ("cispo", cispo_policy_loss, "token_mean"),
                           ("ppo_tok", ppo_policy_loss, "token_mean")):
        logps = (_random_tokens(32) - 2).requires_grad_()
        loss, _ = fn(logps, logps.detach(), advantages, MASK)
        aggregate_loss(loss, MASK, mode).backward()
        grads[name] = logps.grad
    assert_numerically_equal(grads["gspo"], grads["ppo_seq"])
    assert_numerically_equal(grads["cispo"], grads["ppo_tok"])


def test_cispo_hand_computed_every_token_keeps_a_gradient():
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.5]])
    advantages = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    old = torch.full((1, 4), -2.0)
    logps = (old + ratios.log()).requires_grad_()
    loss, metrics = cispo_policy_loss(logps, old, advantages, torch.ones(1, 4), clip_eps_low=0.2,
                                      clip_eps_high=0.28)
    weights = torch.tensor([[1.28, 0.8, 0.8, 1.28]])  # clip(ρ) whatever the advantage's sign
    torch.testing.assert_close(loss.detach(), -weights * advantages * logps.detach())
    assert metrics["clipfrac"].item() == 1.0
    loss.sum().backward()
    torch.testing.assert_close(logps.grad, -weights * advantages)  # PPO would give 0 on tokens 0 and 1


def test_cispo_matches_the_loop_and_ignores_masked_garbage():
    logps, old, advantages = 0.3 * _random_tokens(33) - 1, 0.3 * _random_tokens(34) - 1, _random_tokens(35)
    loss, _ = cispo_policy_loss(logps, old, advantages, MASK, clip_eps_low=0.1, clip_eps_high=0.15)
    for b, t in MASK.nonzero().tolist():
        w = min(max(math.exp(logps[b, t].item() - old[b, t].item()), 0.9), 1.15)
        assert loss[b, t].item() == pytest.approx(-w * advantages[b, t].item() * logps[b, t].item(), rel=1e-5)
    dirty = logps.clone()
    dirty[MASK == 0] = 1e4
    dirty_loss, _ = cispo_policy_loss(dirty, old, advantages, MASK, clip_eps_low=0.1, clip_eps_high=0.15)
    assert torch.equal(dirty_loss, loss)


@pytest.mark.parametrize("fn", [gspo_policy_loss, cispo_policy_loss])
def test_gspo_cispo_bad_input(fn):
    z = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="clip_eps_high"):
        fn(z, z, torch.zeros(2), torch.ones(2, 2), clip_eps_high=-1.0)
    with pytest.raises(ValueError, match="no response tokens"):
        fn(z, z, torch.zeros(2), torch.tensor([[1, 1], [0, 0]]))


# ---------------------------------------------------------------------------------------------------------
# MaxRL-style normalisation by the group mean
# ---------------------------------------------------------------------------------------------------------


def test_maxrl_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    adv = maxrl_advantages(rewards, 4, eps=0.0)
    # group 1: p̂ = 1/2 → ±1; group 2: p̂ = 1/4 → (1 − 1/4)/(1/4) = 3 and −1; group 3: nothing solved → 0
    torch.testing.assert_close(adv, torch.tensor([1.0, -1, -1, 1, 3, -1, -1, -1, 0, 0, 0, 0]))
    assert torch.equal(sequence_advantages(rewards, "maxrl", 4, eps=0.0), adv)


def test_maxrl_matches_the_loop_and_is_dr_grpo_over_the_mean():
    g = torch.Generator().manual_seed(40)
    rewards = torch.rand(24, generator=g)
    adv = maxrl_advantages(rewards, 6)
    for start in range(0, 24, 6):
        group = rewards[start:start + 6].tolist()
        mean = sum(group) / 6
        for i, r in enumerate(group):
            assert adv[start + i].item() == pytest.approx((r - mean) / (mean + 1e-4), rel=1e-5)
    # property: the same direction as Dr. GRPO's, scaled per group by 1 / (mean + eps); each group sums to 0
    means = rewards.view(-1, 6).mean(dim=1).repeat_interleave(6)
    assert_numerically_equal(adv * (means + 1e-4), dr_grpo_advantages(rewards, 6))
    assert torch.allclose(adv.view(-1, 6).sum(dim=1), torch.zeros(4), atol=1e-5)


def test_maxrl_bad_input():
    with pytest.raises(ValueError, match="rewards must be >= 0"):
        maxrl_advantages(torch.tensor([1.0, -1.0]), 2)
    with pytest.raises(ValueError, match="group_size"):
        maxrl_advantages(torch.tensor([1.0, 0.0]), 1)
