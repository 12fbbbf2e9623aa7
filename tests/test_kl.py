"""Tests for rlhfbook_lab.equations.kl: estimators against exact KL, penalised rewards, KL losses, controllers."""

import math

import pytest
import torch

from rlhfbook_lab.equations.kl import (
    AdaptiveKLController,
    FixedKLController,
    categorical_kl,
    kl_estimate,
    kl_k1,
    kl_k2,
    kl_k3,
    kl_loss,
    kl_penalized_rewards,
)

# ---------------------------------------------------------------------------------------------------------
# k1, k2, k3
# ---------------------------------------------------------------------------------------------------------


def test_estimators_hand_computed():
    # π(y) = 0.5, π_ref(y) = 0.25: log_ratio = log(π_ref/π) = log 0.5.
    logp, ref_logp = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_k1(logp, ref_logp).item() == pytest.approx(math.log(2))
    assert kl_k2(logp, ref_logp).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_k3(logp, ref_logp).item() == pytest.approx((0.5 - 1) + math.log(2))


def test_estimators_match_a_scalar_loop():
    g = torch.Generator().manual_seed(0)
    logp, ref_logp = -3 * torch.rand(5, 7, generator=g), -3 * torch.rand(5, 7, generator=g)
    for name, formula in {
        "k1": lambda lp, lq: -(lq - lp),
        "k2": lambda lp, lq: (lq - lp) ** 2 / 2,
        "k3": lambda lp, lq: (math.exp(lq - lp) - 1) - (lq - lp),
    }.items():
        got = kl_estimate(logp, ref_logp, name)
        rows = zip(logp.tolist(), ref_logp.tolist())
        want = torch.tensor([[formula(a, b) for a, b in zip(r1, r2)] for r1, r2 in rows])
        torch.testing.assert_close(got, want)


def test_estimators_vanish_at_the_reference_and_k2_k3_are_nonnegative():
    g = torch.Generator().manual_seed(1)
    logp = -5 * torch.rand(1000, generator=g)
    for name in ("k1", "k2", "k3"):
        assert torch.equal(kl_estimate(logp, logp, name), torch.zeros_like(logp))
    ref_logp = logp + 1e-3 * torch.randn(1000, generator=g)  # tiny log-ratios: where rounding could bite
    far = logp + 20 * torch.randn(1000, generator=g)
    for other in (ref_logp, far):
        assert (kl_k3(logp, other) >= 0).all()
        assert (kl_k2(logp, other) >= 0).all()


P = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)  # the policy (samples come from here)
Q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)  # the reference


def _samples(n=200_000, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.multinomial(P, n, replacement=True, generator=g)
    return torch.log(P)[y], torch.log(Q)[y]


def _mean_and_4_sigma(x):
    return x.mean().item(), 4 * x.std().item() / math.sqrt(x.numel())


def test_k1_and_k3_are_unbiased_and_k2_is_biased_over_many_samples():
    logp, ref_logp = _samples()
    exact = categorical_kl(P, Q, from_logits=False).item()
    for estimator in ("k1", "k3"):
        mean, four_sigma = _mean_and_4_sigma(kl_estimate(logp, ref_logp, estimator))
        assert abs(mean - exact) < four_sigma, estimator
    k2 = kl_k2(logp, ref_logp)
    mean, four_sigma = _mean_and_4_sigma(k2)
    assert abs(mean - exact) > four_sigma  # biased ...
    expected_k2 = (0.5 * P * torch.log(P / Q) ** 2).sum().item()
    assert abs(mean - expected_k2) < four_sigma  # ... by exactly what ½·E_π[log²(π/π_ref)] says
    assert (kl_k3(logp, ref_logp) >= 0).all()
    assert (kl_k1(logp, ref_logp) < 0).any()  # k1 is unbiased only on average: single samples go negative


def test_k3_has_lower_variance_than_k1_when_the_policies_are_close():
    # Schulman's point: near π_ref, k3 ≈ k2 ≈ ½ log_ratio², with far less variance than k1.
    close_q = torch.tensor([0.45, 0.32, 0.17, 0.06], dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    y = torch.multinomial(P, 50_000, replacement=True, generator=g)
    logp, ref_logp = torch.log(P)[y], torch.log(close_q)[y]
    assert kl_k3(logp, ref_logp).var() < 0.1 * kl_k1(logp, ref_logp).var()


def test_unknown_estimator_is_rejected():
    with pytest.raises(ValueError, match="estimator"):
        kl_estimate(torch.zeros(2), torch.zeros(2), "k4")


# ---------------------------------------------------------------------------------------------------------
# Exact categorical KL
# ---------------------------------------------------------------------------------------------------------


def test_categorical_kl_hand_computed():
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.75])
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert categorical_kl(p, q, from_logits=False).item() == pytest.approx(want)
    assert categorical_kl(p.log(), q.log()).item() == pytest.approx(want)


def test_categorical_kl_matches_a_loop_and_logits_match_probs():
    g = torch.Generator().manual_seed(3)
    p_logits, q_logits = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    p, q = p_logits.softmax(-1), q_logits.softmax(-1)
    rows = zip(p.tolist(), q.tolist())
    want = torch.tensor([sum(a * math.log(a / b) for a, b in zip(pr, qr)) for pr, qr in rows])
    torch.testing.assert_close(categorical_kl(p_logits, q_logits), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(categorical_kl(p, q, from_logits=False), want, rtol=1e-5, atol=1e-6)


def test_categorical_kl_properties():
    g = torch.Generator().manual_seed(4)
    p_logits, q_logits = torch.randn(100, 7, generator=g), torch.randn(100, 7, generator=g)
    kl = categorical_kl(p_logits, q_logits)
    assert (kl > 0).all()
    assert torch.allclose(categorical_kl(p_logits, p_logits), torch.zeros(100), atol=1e-6)
    torch.testing.assert_close(categorical_kl(p_logits + 3.0, q_logits - 1.0), kl)  # logits shift-invariant
    assert not torch.allclose(categorical_kl(q_logits, p_logits), kl)  # KL is not symmetric
    # 0·log 0 = 0; mass where q has none is infinite.
    assert categorical_kl(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]), from_logits=False).item() == (
        pytest.approx(math.log(2))
    )
    half, one_hot = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])
    assert categorical_kl(half, one_hot, from_logits=False).item() == math.inf


def test_categorical_kl_bad_input():
    with pytest.raises(ValueError, match="shape"):
        categorical_kl(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="probabilities"):
        categorical_kl(torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5]), from_logits=False)


# ---------------------------------------------------------------------------------------------------------
# KL-penalised rewards
# ---------------------------------------------------------------------------------------------------------


def _reward_inputs():
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0], [0.0, -0.5, 0.0, 0.0]])
    ref_logp = torch.tensor([[0.0, -1.5, -1.0, 0.0], [0.0, -0.5, 0.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    return torch.tensor([2.0, -1.0]), logp, ref_logp, mask


def test_kl_penalized_rewards_hand_computed():
    scores, logp, ref_logp, mask = _reward_inputs()
    rewards = kl_penalized_rewards(scores, logp, ref_logp, mask, beta=0.1)
    # row 0: k1 = logp − ref = [0.5, −1.0] → −β·k1 = [−0.05, 0.1]; score 2 on the last response token.
    want = torch.tensor([[0.0, -0.05, 0.1 + 2.0, 0.0], [0.0, 0.0 - 1.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, want)


def test_kl_penalized_rewards_match_a_loop():
    g = torch.Generator().manual_seed(5)
    B, T, beta = 4, 6, 0.3
    logp, ref_logp = -torch.rand(B, T, generator=g), -torch.rand(B, T, generator=g)
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [0, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    scores = torch.randn(B, generator=g)
    for estimator in ("k1", "k2", "k3"):
        want = torch.zeros(B, T)
        for b in range(B):
            positions = [t for t in range(T) if mask[b, t]]
            for t in positions:
                want[b, t] = -beta * kl_estimate(logp[b, t], ref_logp[b, t], estimator)
            want[b, positions[-1]] += scores[b]
        torch.testing.assert_close(kl_penalized_rewards(scores, logp, ref_logp, mask, beta, estimator), want)


def test_kl_penalized_rewards_properties():
    scores, logp, ref_logp, mask = _reward_inputs()
    beta = 0.2
    rewards = kl_penalized_rewards(scores, logp, ref_logp, mask, beta)
    # Σ_t r_t = s − β·Σ_t k1_t
    torch.testing.assert_close(rewards.sum(1), scores - beta * ((logp - ref_logp) * mask).sum(1))
    # policy = reference: only the score remains
    same = kl_penalized_rewards(scores, logp, logp, mask, beta)
    assert torch.equal(same, torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, -1.0, 0.0, 0.0]]))
    # garbage in masked slots changes nothing
    dirty_logp, dirty_ref = logp.clone(), ref_logp.clone()
    dirty_logp[mask == 0], dirty_ref[mask == 0] = -math.inf, 100.0
    assert torch.equal(kl_penalized_rewards(scores, dirty_logp, dirty_ref, mask, beta), rewards)
    # detached: rewards are constants for the policy gradient
    assert not kl_penalized_rewards(scores, logp.requires_grad_(), ref_logp, mask, beta).requires_grad


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(beta=-0.1), "beta"),
        (dict(beta=math.nan), "beta"),
        (dict(scores=torch.tensor([1.0, 2.0, 3.0])), "scores"),
        (dict(scores=torch.tensor([1.0, math.nan])), "scores"),
        (dict(completion_mask=torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])), "no response tokens"),
        (dict(completion_mask=torch.tensor([[0, 1, 2, 0], [0, 1, 0, 0]])), "0 and 1"),
        (dict(ref_logp=torch.zeros(2, 3)), "ref_logp shape"),
        (dict(estimator="k7"), "estimator"),
    ],
)
def test_kl_penalized_rewards_bad_input(change, match):
    scores, logp, ref_logp, mask = _reward_inputs()
    kwargs = dict(scores=scores, logp=logp, ref_logp=ref_logp, completion_mask=mask, beta=0.1, estimator="k1")
    with pytest.raises(ValueError, match=match):
        kl_penalized_rewards(**(kwargs | change))


# ---------------------------------------------------------------------------------------------------------
# KL as a loss term
# ---------------------------------------------------------------------------------------------------------


def _expected_gradient(theta, ref_logits, estimator):
    """E_{y∼π_θ}[∇_θ kl_loss(y)], exactly: each response's loss gradient weighted by its (detached) prob."""
    theta = theta.clone().requires_grad_()
    logp = torch.log_softmax(theta, -1)[:, None]  # (K, 1): every response once, as a one-token sequence
    ref_logp = torch.log_softmax(ref_logits, -1)[:, None]
    per_token = kl_loss(logp, ref_logp, torch.ones_like(logp), estimator)  # (K, 1)
    (theta.softmax(-1).detach()[:, None] * per_token).sum().backward()
    return theta.grad


def test_kl_loss_expected_gradients_k1_zero_k2_reverse_kl_k3_forward_kl():
    g = torch.Generator().manual_seed(6)
    theta = torch.randn(5, generator=g, dtype=torch.float64)
    ref_logits = torch.randn(5, generator=g, dtype=torch.float64)

    def grad_of(fn):
        t = theta.clone().requires_grad_()
        fn(t).backward()
        return t.grad

    grad_reverse = grad_of(lambda t: categorical_kl(t, ref_logits))  # ∇ KL(π‖π_ref)
    grad_forward = grad_of(lambda t: categorical_kl(ref_logits, t))  # ∇ KL(π_ref‖π)
    zeros = torch.zeros(5, dtype=torch.float64)
    torch.testing.assert_close(_expected_gradient(theta, ref_logits, "k1"), zeros)
    torch.testing.assert_close(_expected_gradient(theta, ref_logits, "k2"), grad_reverse)
    torch.testing.assert_close(_expected_gradient(theta, ref_logits, "k3"), grad_forward)
    assert not torch.allclose(grad_reverse, grad_forward)  # so the two identities are not the same claim


@pytest.mark.parametrize("estimator", ["k2", "k3"])
def test_optimising_only_the_sampled_kl_loss_lowers_the_exact_kl(estimator):
    from rlhfbook_lab.equations.policy_gradient import aggregate_loss

    g = torch.Generator().manual_seed(7)
    ref_logits = torch.tensor([2.0, 0.0, -1.0, 0.5])
    theta = torch.tensor([-1.0, 2.0, 0.0, 1.0], requires_grad=True)
    optimizer = torch.optim.SGD([theta], lr=0.5)
    start = categorical_kl(theta, ref_logits).item()
    for _ in range(100):
        y = torch.multinomial(theta.detach().softmax(-1), 16, replacement=True, generator=g)
        logp = torch.log_softmax(theta, -1)[y][:, None]  # (16, 1)
        ref_logp = torch.log_softmax(ref_logits, -1)[y][:, None]
        mask = torch.ones_like(logp)
        loss = aggregate_loss(kl_loss(logp, ref_logp, mask, estimator), mask, "token_mean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = categorical_kl(theta, ref_logits).item()
    assert end < 0.1 * start, (start, end)


def test_kl_loss_hand_value_and_masked_garbage():
    logp = torch.tensor([[math.log(0.5), -math.inf]], requires_grad=True)  # padding: exp(ref − logp) = inf
    ref_logp = torch.tensor([[math.log(0.25), 0.0]])
    mask = torch.tensor([[1, 0]])
    loss = kl_loss(logp, ref_logp, mask, "k3")
    torch.testing.assert_close(loss.detach(), torch.tensor([[(0.5 - 1) + math.log(2), 0.0]]))
    loss.sum().backward()
    assert torch.isfinite(logp.grad).all() and logp.grad[0, 1] == 0
    # d/dlogp [(e^{ref−logp} − 1) − (ref − logp)] = 1 − π_ref/π = 0.5
    assert logp.grad[0, 0].item() == pytest.approx(0.5)


def test_kl_loss_bad_mask():
    with pytest.raises(ValueError, match="no response tokens"):
        kl_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([[1, 1, 0], [0, 0, 0]]))


# ---------------------------------------------------------------------------------------------------------
# KL controllers
# ---------------------------------------------------------------------------------------------------------


def test_adaptive_controller_hand_computed():
    ctl = AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=10_000)
    # KL 12 = twice the target: error 1, clipped to 0.2 → β·(1 + 0.2·256/10000)
    assert ctl.update(current_kl=12.0, n_steps=256) == pytest.approx(0.2 * 1.00512)
    # KL 5.4: error −0.1 (inside the clip)
    before = ctl.value
    assert ctl.update(current_kl=5.4, n_steps=1000) == pytest.approx(before * (1 - 0.1 * 1000 / 10_000))


def test_adaptive_controller_matches_a_loop():
    kls = [1.0, 8.0, 6.0, 30.0, 0.0, 5.9, 6.3]
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=500)
    beta = 0.1
    for kl in kls:
        error = kl / 6.0 - 1
        error = 0.2 if error > 0.2 else (-0.2 if error < -0.2 else error)
        beta = beta * (1 + error * 64 / 500)
        assert ctl.update(kl, 64) == pytest.approx(beta)


def test_controllers_properties():
    ctl = AdaptiveKLController(0.3, target=4.0, horizon=1000)
    assert ctl.update(4.0, 100) == 0.3  # on target: unchanged
    assert ctl.update(5.0, 100) > 0.3  # too much KL: more penalty
    high = ctl.value
    assert ctl.update(1.0, 100) < high  # too little: less
    a, b = AdaptiveKLController(0.3, 4.0, 1000), AdaptiveKLController(0.3, 4.0, 1000)
    assert a.update(4.8, 100) == b.update(400.0, 100)  # the error is clipped at +0.2
    fixed = FixedKLController(0.05)
    assert fixed.update(100.0, 100) == 0.05 and fixed.value == 0.05


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FixedKLController(-0.1), "kl_coef"),
        (lambda: AdaptiveKLController(-0.1, 6.0, 10_000), "init_kl_coef"),
        (lambda: AdaptiveKLController(0.1, 0.0, 10_000), "target"),
        (lambda: AdaptiveKLController(0.1, 6.0, 0), "horizon"),
        (lambda: AdaptiveKLController(0.1, 6.0, 10_000).update(math.nan, 10), "current_kl"),
    ],
)
def test_controllers_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        make()
