"""Tests for rlhfbook_lab.equations.direct_alignment: hand-computed values, a plain-Python second implementation, and
properties."""

import math

import pytest
import torch
from torch.testing import assert_close

from rlhfbook_lab.equations.direct_alignment import (
    LOSS_REDUCTION,
    REFERENCE_FREE_LOSSES,
    cdpo_loss,
    dpo_loss,
    implicit_reward,
    ipo_loss,
    kto_loss,
    kto_reference_point,
    orpo_loss,
    preference_loss,
    simpo_loss,
)
from rlhfbook_lab.equations.logprobs import sequence_logprobs

FUNCTIONS = {"dpo": dpo_loss, "cdpo": cdpo_loss, "ipo": ipo_loss, "simpo": simpo_loss, "orpo": orpo_loss}
PAIRED = list(FUNCTIONS)
# each loss's hyperparameters in the tests that do not vary them (the losses have no defaults: DPOConfig holds them)
HP = {"dpo": {"beta": 0.1}, "cdpo": {"beta": 0.1, "label_smoothing": 0.1}, "ipo": {"beta": 0.1},
      "simpo": {"beta": 2.0, "gamma": 1.0}, "orpo": {"beta": 0.1}, "kto": {"beta": 0.1}}
WITH_REF = ["dpo", "cdpo", "ipo"]
FIELDS = ["policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"]
KTO_FIELDS = ["policy_logps", "ref_logps", "policy_kl_logps", "ref_kl_logps"]
LN2 = math.log(2)
SOFTPLUS_M1 = math.log1p(math.exp(-1))  # −log σ(1) = log(1 + e^−1) = 0.313261687518...


def t(*xs, dtype=torch.float64):
    return torch.tensor(xs, dtype=dtype)


def random_paired(B=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    # in (−3, −0.05): valid both as summed and as length-averaged log-probs (ORPO needs them < 0)
    return {f: -(0.05 + 2.95 * torch.rand(B, generator=g, dtype=dtype)) for f in FIELDS}


def random_kto(B=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    inputs = {f: -(0.05 + 2.95 * torch.rand(B, generator=g, dtype=dtype)) for f in KTO_FIELDS}
    inputs["desirable"] = torch.arange(B) % 3 != 0  # [F, T, T, F, T, T]
    return inputs


def random_inputs(name, **kwargs):
    return random_kto(**kwargs) if name == "kto" else random_paired(**kwargs)


# --- a second implementation: one example at a time, plain Python floats and the math module ------


def neg_log_sigmoid(x):
    return math.log(1.0 + math.exp(-x))  # −log σ(x); fine for the moderate x used with it


def loop_paired(name, inputs, beta, label_smoothing=0.0, gamma=0.0):
    losses, chosen_rewards, rejected_rewards = [], [], []
    pc, pr, rc, rr = (inputs[f].tolist() for f in FIELDS)
    for i in range(len(pc)):
        if name in ("dpo", "cdpo"):
            rw, rl = beta * (pc[i] - rc[i]), beta * (pr[i] - rr[i])
            eps = label_smoothing if name == "cdpo" else 0.0
            loss = (1 - eps) * neg_log_sigmoid(rw - rl) + eps * neg_log_sigmoid(rl - rw)
        elif name == "ipo":
            rw, rl = beta * (pc[i] - rc[i]), beta * (pr[i] - rr[i])
            loss = ((pc[i] - rc[i]) - (pr[i] - rr[i]) - 1 / (2 * beta)) ** 2
        elif name == "simpo":
            rw, rl = beta * pc[i], beta * pr[i]
            loss = neg_log_sigmoid(rw - rl - gamma)
        elif name == "orpo":
            p_w, p_l = math.exp(pc[i]), math.exp(pr[i])
            odds_ratio = (p_w / (1 - p_w)) / (p_l / (1 - p_l))
            loss = -beta * math.log(odds_ratio / (1 + odds_ratio))  # σ(log OR) = OR / (1 + OR)
            rw, rl = beta * pc[i], beta * pr[i]
        losses.append(loss)
        chosen_rewards.append(rw)
        rejected_rewards.append(rl)
    return t(*losses), t(*chosen_rewards), t(*rejected_rewards)


def loop_kto(inputs, beta, desirable_weight, undesirable_weight):
    kl_terms = [p - r for p, r in zip(inputs["policy_kl_logps"].tolist(), inputs["ref_kl_logps"].tolist())]
    z = max(0.0, sum(kl_terms) / len(kl_terms))
    losses = []
    rows = zip(inputs["policy_logps"].tolist(), inputs["ref_logps"].tolist(), inputs["desirable"].tolist())
    for p, r, d in rows:
        if d:
            losses.append(desirable_weight * (1 - 1 / (1 + math.exp(-beta * ((p - r) - z)))))
        else:
            losses.append(undesirable_weight * (1 - 1 / (1 + math.exp(-beta * (z - (p - r))))))
    return t(*losses), z


# --- hand-computed values -------------------------------------------------------------------------


def test_implicit_reward_hand_computed():
    # β = 0.1: 0.1·(−3 − (−5)) = 0.2 and 0.1·(−5 − (−3)) = −0.2
    assert_close(implicit_reward(t(-3.0, -5.0), t(-5.0, -3.0), beta=0.1), t(0.2, -0.2))


def test_dpo_hand_computed():
    # β = 0.5. Row 0: r̂_w = 0.5·(−10 − (−11)) = 0.5, r̂_l = 0.5·(−12 − (−11)) = −0.5,
    #   loss = −log σ(0.5 − (−0.5)) = −log σ(1) = log(1 + e^−1) = 0.313261687518...
    # Row 1: policy = reference, so r̂_w = r̂_l = 0 and loss = −log σ(0) = ln 2 = 0.693147180559...
    out = dpo_loss(t(-10.0, -5.0), t(-12.0, -7.0), t(-11.0, -5.0), t(-11.0, -7.0), beta=0.5)
    assert_close(out.losses, t(SOFTPLUS_M1, LN2))
    assert_close(out.chosen_rewards, t(0.5, 0.0))
    assert_close(out.rejected_rewards, t(-0.5, 0.0))
    assert_close(SOFTPLUS_M1, 0.31326168751822286)


def test_cdpo_hand_computed():
    # β = 0.5, ε = 0.1, same rows as the DPO test. Row 0 has margin h = 1:
    #   0.9·log(1 + e^−1) + 0.1·log(1 + e^1) = 0.9·0.313261687518 + 0.1·1.313261687518
    #   = 0.281935518766 + 0.131326168752 = 0.413261687518   (log(1 + e) = 1 + log(1 + e^−1))
    # Row 1 has h = 0: 0.9·ln 2 + 0.1·ln 2 = ln 2.
    logps = t(-10.0, -5.0), t(-12.0, -7.0), t(-11.0, -5.0), t(-11.0, -7.0)
    out = cdpo_loss(*logps, beta=0.5, label_smoothing=0.1)
    assert_close(out.losses, t(0.413261687518223, LN2))
    assert_close(out.chosen_rewards, t(0.5, 0.0))


def test_ipo_hand_computed():
    # τ = β = 0.25, so the target margin is 1/(2τ) = 2. References all −1.5.
    # Row 0: h = (−1 + 1.5) − (−2 + 1.5) = 0.5 + 0.5 = 1, loss = (1 − 2)² = 1;
    #   rewards 0.25·0.5 = 0.125 and 0.25·(−0.5) = −0.125.
    # Row 1: h = (−0.5 + 1.5) − (−2.5 + 1.5) = 2, on target: loss 0.
    # Row 2: policy = reference, h = 0: loss (0 − 2)² = 4.
    ref = t(-1.5, -1.5, -1.5)
    out = ipo_loss(t(-1.0, -0.5, -1.5), t(-2.0, -2.5, -1.5), ref, ref, beta=0.25)
    assert_close(out.losses, t(1.0, 0.0, 4.0))
    assert_close(out.chosen_rewards, t(0.125, 0.25, 0.0))
    assert_close(out.rejected_rewards, t(-0.125, -0.25, 0.0))


def test_simpo_hand_computed():
    # β = 2, γ = 1, averaged log-probs.
    # Row 0: 2·(−0.5) − 2·(−1.0) − 1 = −1 + 2 − 1 = 0, loss = −log σ(0) = ln 2.
    # Row 1: 2·(−0.5) − 2·(−1.5) − 1 = −1 + 3 − 1 = 1, loss = log(1 + e^−1) = 0.313261687518...
    out = simpo_loss(t(-0.5, -0.5), t(-1.0, -1.5), beta=2.0, gamma=1.0)
    assert_close(out.losses, t(LN2, SOFTPLUS_M1))
    assert_close(out.chosen_rewards, t(-1.0, -1.0))
    assert_close(out.rejected_rewards, t(-2.0, -3.0))


def test_orpo_hand_computed():
    # λ = β = 0.1, averaged log-probs log P.
    # Row 0: P_w = 1/2 → odds 1;  P_l = 1/3 → odds (1/3)/(2/3) = 1/2;  OR = 2,
    #   L_OR = −log σ(ln 2) = −log(2/3) = ln 1.5 = 0.405465108108,  λ·L_OR = 0.0405465108108.
    # Row 1: P_w = P_l = 1/4 → OR = 1, L_OR = −log σ(0) = ln 2,  λ·L_OR = 0.0693147180560.
    # Rewards λ·log P: 0.1·ln(1/2) = −0.0693147, 0.1·ln(1/3) = −0.1098612, 0.1·ln(1/4) = −0.1386294.
    out = orpo_loss(t(math.log(1 / 2), math.log(1 / 4)), t(math.log(1 / 3), math.log(1 / 4)), beta=0.1)
    assert_close(out.losses, t(0.1 * math.log(1.5), 0.1 * LN2))
    assert_close(out.losses, t(0.0405465108108, 0.0693147180560))
    assert_close(out.chosen_rewards, t(-0.0693147180560, -0.1386294361120))
    assert_close(out.rejected_rewards, t(-0.1098612288668, -0.1386294361120))


def test_kto_hand_computed():
    # β = 1, λ_D = 1, λ_U = 2. KL rows: (−3 − (−4), −4 − (−4)) = (1, 0), mean 0.5 ≥ 0, so z_ref = 0.5.
    # Row 0, undesirable: r = (−9.5 + ln 3) − (−10) = 0.5 + ln 3, z − r = −ln 3, σ(−ln 3) = 1/(1 + 3) = 1/4,
    #   loss = 2·(1 − 1/4) = 1.5.
    # Row 1, desirable: r = −9.5 − (−10) = 0.5, r − z = 0, σ(0) = 1/2, loss = 1·(1 − 1/2) = 0.5.
    out = kto_loss(
        policy_logps=t(-9.5 + math.log(3), -9.5),
        ref_logps=t(-10.0, -10.0),
        desirable=torch.tensor([False, True]),
        policy_kl_logps=t(-3.0, -4.0),
        ref_kl_logps=t(-4.0, -4.0),
        beta=1.0,
        desirable_weight=1.0,
        undesirable_weight=2.0,
    )
    assert_close(out.losses, t(1.5, 0.5))  # batch order kept
    assert_close(out.kl, torch.tensor(0.5, dtype=torch.float64))
    assert_close(out.chosen_rewards, t(0.5))
    assert_close(out.rejected_rewards, t(0.5 + math.log(3)))


# --- a second implementation agrees ---------------------------------------------------------------

LOOP_CASES = [
    ("dpo", {"beta": 0.1}),
    ("dpo", {"beta": 1.3}),
    ("cdpo", {"beta": 0.5, "label_smoothing": 0.2}),
    ("ipo", {"beta": 0.1}),
    ("ipo", {"beta": 0.7}),
    ("simpo", {"beta": 2.5, "gamma": 0.6}),
    ("orpo", {"beta": 0.1}),
    ("orpo", {"beta": 1.0}),
]


@pytest.mark.parametrize("name,hp", LOOP_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_paired_losses_match_python_loop(name, hp, seed):
    inputs = random_paired(B=8, seed=seed)
    out = FUNCTIONS[name](**inputs, **hp)
    losses, chosen_rewards, rejected_rewards = loop_paired(name, inputs, **hp)
    assert_close(out.losses, losses, rtol=1e-10, atol=1e-12)
    assert_close(out.chosen_rewards, chosen_rewards, rtol=1e-10, atol=1e-12)
    assert_close(out.rejected_rewards, rejected_rewards, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kl_shift", [0.0, 2.0])  # at 0 the mean KL term may be negative: the clamp acts
def test_kto_matches_python_loop(kl_shift):
    inputs = random_kto(B=9, seed=3)
    inputs["policy_kl_logps"] = inputs["policy_kl_logps"] + kl_shift
    out = kto_loss(**inputs, beta=0.8, desirable_weight=1.0, undesirable_weight=1.5)
    losses, z = loop_kto(inputs, beta=0.8, desirable_weight=1.0, undesirable_weight=1.5)
    assert_close(out.losses, losses, rtol=1e-10, atol=1e-12)
    assert out.kl.item() == pytest.approx(z, rel=1e-12, abs=1e-12)
    ratios = inputs["policy_logps"] - inputs["ref_logps"]
    assert_close(out.chosen_rewards, 0.8 * ratios[inputs["desirable"]])
    assert_close(out.rejected_rewards, 0.8 * ratios[~inputs["desirable"]])


# --- properties -----------------------------------------------------------------------------------


def test_dpo_is_ln2_and_rewards_zero_when_policy_equals_reference():
    inputs = random_paired(B=8, seed=4)
    out = dpo_loss(
        inputs["ref_chosen_logps"].clone(), inputs["ref_rejected_logps"].clone(),
        inputs["ref_chosen_logps"], inputs["ref_rejected_logps"], beta=0.3,
    )  # fmt: skip
    assert_close(out.losses, torch.full((8,), LN2, dtype=torch.float64))
    assert torch.equal(out.chosen_rewards, torch.zeros(8, dtype=torch.float64))
    assert torch.equal(out.rejected_rewards, torch.zeros(8, dtype=torch.float64))


def test_dpo_gradient_weight_matches_autograd():
    # ∂loss/∂log π(y_w) = −β·σ(r̂_l − r̂_w) and ∂loss/∂log π(y_l) = +β·σ(r̂_l − r̂_w) (Rafailov et al. §4)
    beta = 0.7
    inputs = random_paired(B=8, seed=5)
    inputs["policy_chosen_logps"].requires_grad_(True)
    inputs["policy_rejected_logps"].requires_grad_(True)
    out = dpo_loss(**inputs, beta=beta)
    out.losses.sum().backward()
    weight = beta * torch.sigmoid(out.rejected_rewards - out.chosen_rewards)
    assert_close(inputs["policy_chosen_logps"].grad, -weight)
    assert_close(inputs["policy_rejected_logps"].grad, weight)


def test_cdpo_with_zero_smoothing_equals_dpo():
    inputs = random_paired(B=8, seed=6)
    dpo, cdpo = dpo_loss(**inputs, beta=0.4), cdpo_loss(**inputs, beta=0.4, label_smoothing=0.0)
    assert_close(cdpo.losses, dpo.losses, rtol=1e-12, atol=1e-12)
    assert_close(cdpo.chosen_rewards, dpo.chosen_rewards)
    assert_close(cdpo.rejected_rewards, dpo.rejected_rewards)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_cdpo_is_dpo_plus_eps_times_margin(eps):
    # −log σ(−h) = −log σ(h) + h, so (1 − ε)·(−log σ(h)) + ε·(−log σ(−h)) = −log σ(h) + ε·h
    inputs = random_paired(B=8, seed=7)
    dpo, cdpo = dpo_loss(**inputs, beta=0.9), cdpo_loss(**inputs, beta=0.9, label_smoothing=eps)
    assert_close(cdpo.losses, dpo.losses + eps * (dpo.chosen_rewards - dpo.rejected_rewards))


def test_cdpo_at_half_smoothing_is_symmetric_in_the_labels():
    # ε = 0.5: the label is a coin flip, so swapping chosen and rejected cannot change the loss.
    inputs = random_paired(B=8, seed=8)
    swap = {"policy_chosen": "policy_rejected", "policy_rejected": "policy_chosen",
            "ref_chosen": "ref_rejected", "ref_rejected": "ref_chosen"}  # fmt: skip
    swapped = {f"{a}_logps": inputs[f"{b}_logps"] for a, b in swap.items()}
    half = cdpo_loss(**inputs, label_smoothing=0.5, beta=0.1).losses
    assert_close(half, cdpo_loss(**swapped, label_smoothing=0.5, beta=0.1).losses)
    assert not torch.allclose(dpo_loss(**inputs, beta=0.1).losses, dpo_loss(**swapped, beta=0.1).losses)


def test_ipo_stops_at_its_target_while_dpo_keeps_pushing():
    beta = 0.25  # IPO target margin 1/(2τ) = 2
    margins = t(0.0, 1.0, 2.0, 3.0, 4.0, 8.0).requires_grad_(True)
    zeros = torch.zeros(6, dtype=torch.float64)
    ipo = ipo_loss(margins, zeros, zeros, zeros, beta=beta).losses
    dpo = dpo_loss(margins, zeros, zeros, zeros, beta=beta).losses
    assert ipo.argmin().item() == 2 and ipo[2].item() == 0.0
    assert bool((dpo[1:] < dpo[:-1]).all())  # DPO's loss falls forever as the margin grows
    ipo.sum().backward()
    assert margins.grad[2].item() == 0.0 and margins.grad[4].item() > 0  # past the target IPO pulls back


@pytest.mark.parametrize("name", PAIRED)
def test_only_reference_losses_read_the_reference(name):
    inputs = random_paired(B=8, seed=9)
    other_ref = random_paired(B=8, seed=10)
    moved = {**inputs, "ref_chosen_logps": other_ref["ref_chosen_logps"] - 50.0}
    out, out_moved = FUNCTIONS[name](**inputs, **HP[name]), FUNCTIONS[name](**moved, **HP[name])
    if name in ("simpo", "orpo"):  # reference-free: moving (or dropping) the reference changes nothing
        assert torch.equal(out.losses, out_moved.losses)
        policy_only = {k: inputs[k] for k in ("policy_chosen_logps", "policy_rejected_logps")}
        assert torch.equal(out.losses, FUNCTIONS[name](**policy_only, **HP[name]).losses)
        assert torch.equal(out.chosen_rewards, out_moved.chosen_rewards)
    else:
        assert not torch.allclose(out.losses, out_moved.losses)
    assert REFERENCE_FREE_LOSSES == {"simpo", "orpo"}


def test_orpo_stays_finite_at_probability_one():
    # fp32 log_softmax returns exactly 0.0 for a confident enough model; log(1 − P) would be −inf there.
    chosen = torch.tensor([0.0, -0.3], requires_grad=True)
    rejected = torch.tensor([-0.7, 0.0], requires_grad=True)
    out = orpo_loss(chosen, rejected, beta=0.1)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all()
    assert torch.isfinite(chosen.grad).all() and torch.isfinite(rejected.grad).all()
    assert rejected.grad[1].item() > 0  # a rejected response at P = 1 is still pushed down
    assert out.losses[1].item() > out.losses[0].item()  # and its loss is the larger one


def test_orpo_matches_reference_free_dpo_when_probabilities_are_small():
    # odds = P/(1 − P) ≈ P when P ≪ 1, so L_OR → −log σ(log P_w − log P_l):
    # log P_w = −20, log P_l = −25 → λ·log(1 + e^−5) = 0.1·0.006715348489 = 0.0006715348489
    out = orpo_loss(t(-20.0), t(-25.0), beta=0.1)
    assert_close(out.losses, t(0.1 * math.log1p(math.exp(-5.0))), rtol=1e-7, atol=0.0)


def test_kto_at_policy_equals_reference_is_half_the_weight():
    inputs = random_kto(B=6, seed=11)
    inputs["policy_logps"] = inputs["ref_logps"].clone()
    inputs["policy_kl_logps"] = inputs["ref_kl_logps"].clone()  # z_ref = 0
    out = kto_loss(**inputs, beta=0.5, desirable_weight=1.0, undesirable_weight=3.0)
    expected = torch.where(inputs["desirable"], 0.5, 1.5).to(torch.float64)  # λ·(1 − σ(0)) = λ/2
    assert_close(out.losses, expected)
    assert out.kl.item() == 0.0


def test_kto_reference_point_is_clamped_at_zero_and_detached():
    policy_kl = t(-5.0, -6.0).requires_grad_(True)  # log-ratios (−1, −2): mean −1.5 < 0
    z = kto_reference_point(policy_kl, t(-4.0, -4.0))
    assert z.item() == 0.0 and not z.requires_grad
    assert kto_reference_point(t(-3.0, -4.0), t(-4.0, -4.0)).item() == 0.5  # (1 + 0)/2, left alone
    inputs = random_kto(B=6, seed=12)
    inputs["policy_kl_logps"] = (inputs["ref_kl_logps"] + 2.0).requires_grad_(True)  # z = 2
    inputs["policy_logps"].requires_grad_(True)
    kto_loss(**inputs, beta=0.1).losses.sum().backward()
    assert inputs["policy_kl_logps"].grad is None  # no gradient through z_ref
    assert inputs["policy_logps"].grad is not None


def test_kto_without_kl_inputs_uses_the_batch_log_ratios():
    inputs = random_kto(B=6, seed=13)
    inputs["policy_logps"] = inputs["ref_logps"] + t(1.0, 2.0, 0.5, 1.5, 0.0, 3.0)  # mean log-ratio 1.333
    out = kto_loss(inputs["policy_logps"], inputs["ref_logps"], inputs["desirable"], beta=0.1)
    kl_inputs = {"policy_kl_logps": inputs["policy_logps"], "ref_kl_logps": inputs["ref_logps"]}
    same = kto_loss(**{**inputs, **kl_inputs}, beta=0.1)
    assert_close(out.losses, same.losses)
    assert out.kl.item() == pytest.approx(8.0 / 6.0)


@pytest.mark.parametrize("name", PAIRED + ["kto"])
def test_rewards_are_detached_and_losses_are_not(name):
    inputs = random_inputs(name, B=6, seed=14)
    first = "policy_logps" if name == "kto" else "policy_chosen_logps"
    inputs[first].requires_grad_(True)
    out = preference_loss(name, **inputs, **HP[name])
    assert out.losses.requires_grad
    assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad


# --- finite at extreme log-ratio differences, fp32 and bf16 ---------------------------------------


def extreme_inputs(name, sign, dtype):
    """Log-ratio margin h = sign·100 (β = 1 below, so the sigmoid sees ±100)."""
    if name == "kto":
        ref = torch.tensor([-150.0, -150.0], dtype=dtype)
        return {
            "policy_logps": ref + sign * 100.0, "ref_logps": ref, "desirable": torch.tensor([True, False]),
            "policy_kl_logps": ref + sign * 100.0, "ref_kl_logps": ref,
        }  # fmt: skip
    high, low = torch.tensor([-0.5], dtype=dtype), torch.tensor([-100.5], dtype=dtype)
    chosen, rejected = (high, low) if sign > 0 else (low, high)
    return {
        "policy_chosen_logps": chosen, "policy_rejected_logps": rejected,
        "ref_chosen_logps": high.clone(), "ref_rejected_logps": high.clone(),
    }  # fmt: skip


@pytest.mark.parametrize("name", PAIRED + ["kto"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_losses_and_gradients_finite_at_extreme_margins(name, dtype, sign):
    inputs = extreme_inputs(name, sign, dtype)
    policy = [k for k in inputs if k.startswith("policy")]
    for k in policy:
        inputs[k].requires_grad_(True)
    out = preference_loss(name, **inputs, **{**HP[name], "beta": 1.0})
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all(), out.losses
    for k in policy:
        if k != "policy_kl_logps":  # z_ref is detached (tested above)
            assert torch.isfinite(inputs[k].grad).all(), (k, inputs[k].grad)
    # arithmetic runs in float32: bf16 inputs give the loss of their exact float32 values
    assert out.losses.dtype == torch.float32
    as_fp32 = {k: v.detach().float() if v.dtype == dtype else v for k, v in inputs.items()}
    assert_close(out.losses.detach(), preference_loss(name, **as_fp32, **{**HP[name], "beta": 1.0}).losses)


# --- the reduction over tokens: DPO sums, SimPO averages ------------------------------------------

V = 5
DELTA = math.log((math.e**2 + 4) / 5)  # per-token log π − log π_ref = −ln 5 + ln(e² + 4) = 0.823214990558


def response_logps(response_len, T, reduction, ref):
    """log π(y|x) of one row: prompt [1, 2], a response of ``response_len`` tokens from {3, 4}, pad to T.

    The policy's logits are all 0 (every token has log-prob −ln 5); the reference puts +2 on token 0, which no
    response uses, so each response token has log-prob −ln(e² + 4) under it. Padding is token 0, masked out.
    """
    ids = [1, 2] + [3 + i % 2 for i in range(response_len)]
    mask = [0, 0] + [1] * response_len
    ids, mask = ids + [0] * (T - len(ids)), mask + [0] * (T - len(mask))
    logits = torch.zeros(1, T, V)
    if ref:
        logits[..., 0] = 2.0
    return sequence_logprobs(logits, torch.tensor([ids]), torch.tensor([mask]), reduction=reduction)


def token_built_loss(name, chosen_len, rejected_len, T, **hp):
    red = LOSS_REDUCTION[name]
    pc, pr = response_logps(chosen_len, T, red, ref=False), response_logps(rejected_len, T, red, ref=False)
    rc, rr = response_logps(chosen_len, T, red, ref=True), response_logps(rejected_len, T, red, ref=True)
    if name == "kto":  # the chosen row desirable, the rejected row undesirable
        return kto_loss(torch.cat([pc, pr]), torch.cat([rc, rr]), torch.tensor([True, False]),
                        **{**HP["kto"], **hp}).losses
    return preference_loss(name, policy_chosen_logps=pc, policy_rejected_logps=pr,
                           ref_chosen_logps=rc, ref_rejected_logps=rr, **{**HP[name], **hp}).losses  # fmt: skip


def test_loss_reduction_table():
    expected = {"dpo": "sum", "cdpo": "sum", "kto": "sum", "ipo": "mean", "simpo": "mean", "orpo": "mean"}
    assert LOSS_REDUCTION == expected


def test_dpo_sums_and_simpo_averages_over_tokens():
    # DPO (sum): h = DELTA·|y_w| − DELTA·|y_l|; with β = 0.5, |y_w| = 2:
    #   |y_l| = 3: −log σ(0.5·0.8232·(2 − 3)) = −log σ(−0.41161) = log(1 + e^0.41161) = 0.9189...
    #   |y_l| = 5: −log σ(0.5·0.8232·(2 − 5)) = −log σ(−1.23482) = log(1 + e^1.23482) = 1.4822...
    # SimPO (mean): both averages are −ln 5, so the loss is −log σ(−γ) = log(1 + e^1) = 1.313261687518
    #   whatever the lengths (γ = 1, β = 2).
    for rejected_len in (3, 5):
        expected_dpo = math.log1p(math.exp(0.5 * DELTA * (rejected_len - 2)))
        for T in (8, 16):  # padding never matters
            dpo = token_built_loss("dpo", 2, rejected_len, T, beta=0.5)
            simpo = token_built_loss("simpo", 2, rejected_len, T, beta=2.0, gamma=1.0)
            assert_close(dpo, torch.tensor([expected_dpo]))
            assert_close(simpo, torch.tensor([1.0 + SOFTPLUS_M1]))


@pytest.mark.parametrize("name", PAIRED + ["kto"])
def test_length_changes_the_loss_only_for_summed_losses(name):
    # Same per-token log-probs, longer rejected response: a summed log-prob sees the extra tokens,
    # an averaged one does not. Padding changes nothing either way.
    short, long, padded = (token_built_loss(name, 2, n, T) for n, T in ((3, 8), (5, 8), (3, 16)))
    assert_close(short, padded)
    length_dependent = {"dpo": True, "cdpo": True, "kto": True, "ipo": False, "simpo": False, "orpo": False}
    if length_dependent[name]:
        assert not torch.allclose(short, long)
    else:
        assert_close(short, long)


# --- the dispatcher -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAIRED + ["kto"])
def test_preference_loss_dispatches_to_the_named_loss(name):
    inputs = random_inputs(name, B=6, seed=15)
    direct = kto_loss(**inputs, beta=0.1) if name == "kto" else FUNCTIONS[name](**inputs, **HP[name])
    via = preference_loss(name, **inputs, **HP[name])
    assert torch.equal(via.losses, direct.losses)
    assert set(LOSS_REDUCTION) == set(PAIRED) | {"kto"}


def test_preference_loss_rejects_unknown_name():
    with pytest.raises(ValueError, match="name must be one of"):
        preference_loss("dpoo", **random_paired())


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAIRED + ["kto"])
@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf")])
def test_rejects_non_positive_beta(name, beta):
    with pytest.raises(ValueError, match="beta"):
        preference_loss(name, **random_inputs(name), **{**HP[name], "beta": beta})


def test_implicit_reward_rejects_non_positive_beta():
    with pytest.raises(ValueError, match="beta"):
        implicit_reward(t(-1.0), t(-2.0), beta=0.0)


MISMATCH_CASES = [(n, "policy_rejected_logps") for n in PAIRED]
MISMATCH_CASES += [(n, "ref_rejected_logps") for n in WITH_REF]


@pytest.mark.parametrize("name,field", MISMATCH_CASES)
def test_rejects_mismatched_batch_sizes(name, field):
    inputs = random_paired(B=4)
    inputs[field] = inputs[field][:3]
    with pytest.raises(ValueError, match=f"{field} has batch size 3"):
        preference_loss(name, **inputs, **HP[name])


@pytest.mark.parametrize("field", ["ref_logps", "desirable", "ref_kl_logps"])
def test_kto_rejects_mismatched_shapes(field):
    inputs = random_kto(B=6)
    inputs[field] = inputs[field][:5]
    with pytest.raises(ValueError, match=field):
        kto_loss(**inputs, beta=0.1)


NAN_CASES = (
    [(n, f) for n in WITH_REF for f in FIELDS]
    + [(n, f) for n in ("simpo", "orpo") for f in FIELDS[:2]]
    + [("kto", f) for f in KTO_FIELDS]
)


@pytest.mark.parametrize("name,field", NAN_CASES)
def test_rejects_nan_logps(name, field):
    inputs = random_inputs(name)
    inputs[field] = inputs[field].clone()
    inputs[field][1] = float("nan")
    with pytest.raises(ValueError, match=f"{field} contains NaN at row"):
        preference_loss(name, **inputs, **HP[name])


@pytest.mark.parametrize("name", PAIRED)
def test_rejects_logps_that_are_not_one_dimensional(name):
    inputs = random_paired(B=4)
    inputs["policy_chosen_logps"] = inputs["policy_chosen_logps"].reshape(2, 2)
    with pytest.raises(ValueError, match=r"policy_chosen_logps must have shape \(B,\)"):
        preference_loss(name, **inputs, **HP[name])


@pytest.mark.parametrize("name", WITH_REF)
def test_reference_losses_require_reference_logps(name):
    inputs = random_paired()
    with pytest.raises(ValueError, match="ref_chosen_logps is required"):
        preference_loss(name, **{**inputs, "ref_chosen_logps": None}, **HP[name])


@pytest.mark.parametrize("eps", [-0.1, 0.6])
def test_cdpo_rejects_label_smoothing_outside_zero_half(eps):
    with pytest.raises(ValueError, match="label_smoothing"):
        cdpo_loss(**random_paired(), label_smoothing=eps, beta=0.1)


def test_simpo_rejects_negative_gamma():
    with pytest.raises(ValueError, match="gamma"):
        simpo_loss(**random_paired(), gamma=-0.5, beta=2.0)


def test_orpo_rejects_positive_logps():
    with pytest.raises(ValueError, match="policy_rejected_logps must be <= 0"):
        orpo_loss(t(-1.0, -0.5), t(-1.0, 0.2), beta=0.1)


@pytest.mark.parametrize("labels", [[True, True, True], [False, False, False]])
def test_kto_rejects_a_batch_without_both_labels(labels):
    inputs = random_kto(B=3)
    inputs["desirable"] = torch.tensor(labels)
    with pytest.raises(ValueError, match="desirable must mark at least one desirable and one undesirable"):
        kto_loss(**inputs, beta=0.1)


def test_kto_rejects_non_bool_labels():
    inputs = random_kto(B=6)
    inputs["desirable"] = inputs["desirable"].long()
    with pytest.raises(ValueError, match="desirable must be a bool tensor"):
        kto_loss(**inputs, beta=0.1)


def test_kto_rejects_half_of_the_kl_inputs():
    inputs = random_kto(B=6)
    with pytest.raises(ValueError, match="policy_kl_logps and ref_kl_logps must be given together"):
        kto_loss(**{**inputs, "ref_kl_logps": None}, beta=0.1)


@pytest.mark.parametrize("field", ["desirable_weight", "undesirable_weight"])
def test_kto_rejects_non_positive_weights(field):
    with pytest.raises(ValueError, match=field):
        kto_loss(**random_kto(), **{field: 0.0}, beta=0.1)
