"""Tests for rlhfbook_lab.trainers.rl, the one RL loop (the tensor math it calls is tested in test_policy_gradient.py
and test_kl.py; the bandit versions of the same algorithms in test_bandit.py).

Properties: with identical weights the first minibatch's ratio is 1, clipfrac 0 and the KL 0; the sampler's
log-probs equal the recomputed ones; padding and column trimming never change a log-prob; the value head's
forward gives forward_logits' logits. Hand values: advantages of a 4-row rollout for each estimator and both KL
placements; GAE with λ = 1 gives the Monte-Carlo returns. Behaviour: one step of every algorithm raises the
exact probability of a rewarded first token; PPO's value loss falls; a seed fixes the run. Bad input: every
malformed field is a ValueError naming it; an empty reply gets the documented score. The CLI writes a loadable
checkpoint.
"""

import copy
import json
import math

import pytest
import torch
from _models import tiny_llama

from rlhfbook_lab import world
from rlhfbook_lab.cli import main
from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.equations.numerics import assert_numerically_equal, numerical_tolerance
from rlhfbook_lab.equations.policy_gradient import grpo_advantages, informative_groups, rloo_advantages
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import encode_prompts, generate
from rlhfbook_lab.lm.models import load_model, save_model
from rlhfbook_lab.lm.reward_model import RewardModel, save_reward_model
from rlhfbook_lab.trainers import rl
from rlhfbook_lab.trainers.rl import PRESETS, RLConfig, collect_rollout, compute_advantages, rl_loss, train_rl
from rlhfbook_lab.trainers.rl import forward as rl_forward
from rlhfbook_lab.trainers.rl import loop as rl_loop
from rlhfbook_lab.trainers.rl import rollout as rl_rollout

PROMPTS = ["What is 2 + 3?", "Spell mirt backward.", "Write a positive review of the lamp.", "Add 7 and 12."]


def small(algo="grpo", **kw):
    """A config small enough for the micro model: 4 prompts × 4 samples of 8 tokens, no evaluation."""
    base = dict(steps=1, prompts_per_step=4, group_size=4, max_new_tokens=8, eval_prompts=0)
    return RLConfig.preset(algo, **{**base, **kw})


@pytest.fixture()
def policy(tokenizer):
    return tiny_llama(tokenizer, seed=0, layers=2)


def value_head_for(policy, cfg):
    return rl.ValueHead(policy.config.hidden_size) if cfg.advantage == "gae" else None


def rollout_for(policy, tokenizer, cfg, seed=0, reward_fn=None, value_head=None):
    torch.manual_seed(seed)
    ref = copy.deepcopy(policy).eval()
    ro, _ = collect_rollout(policy, tokenizer, PROMPTS[:cfg.prompts_per_step], cfg, ref, reward_fn, value_head)
    return ro


# --- presets ------------------------------------------------------------------------------------------------


def test_presets_differ_only_in_the_fields_they_should():
    expected = {
        "reinforce": {"algo", "advantage", "kl_penalty", "kl_estimator", "loss_agg"},
        "rloo": {"algo", "advantage", "kl_penalty", "kl_estimator", "loss_agg"},
        "grpo": set(),  # the plain defaults are GRPO
        "dr_grpo": {"algo", "advantage", "kl_estimator", "loss_agg"},
        "ppo": {"algo", "advantage", "kl_penalty", "kl_estimator", "loss_agg", "whiten_advantages", "ppo_epochs",
                "num_minibatches", "lam", "value_lr", "train.lr"},
        "dapo": {"algo", "beta", "clip_eps_high", "loss_agg", "dynamic_sampling"},
        "gspo": {"algo", "beta", "policy_loss", "clip_eps_low", "clip_eps_high", "num_minibatches"},
        "cispo": {"algo", "beta", "policy_loss", "clip_eps_low", "clip_eps_high", "loss_agg", "num_minibatches"},
    }
    assert set(PRESETS) == set(rl.ALGORITHMS) == set(expected)
    default = RLConfig()
    for algo, keys in expected.items():
        cfg = RLConfig.preset(algo)
        assert cfg.algo == algo
        assert set(cfg.differs_from(default)) == keys, algo
        # the fast config only shrinks the run
        assert set(RLConfig.fast(algo).differs_from(cfg)) == set(rl.FAST[algo]), algo
    # REINFORCE and RLOO differ in the estimator alone
    assert set(RLConfig.preset("rloo").differs_from(RLConfig.preset("reinforce"))) == {"algo", "advantage"}
    assert RLConfig.preset("ppo", beta=0.3).beta == 0.3  # overrides win
    with pytest.raises(ValueError, match="algo"):
        RLConfig.preset("dpo")


# --- properties of the first minibatch ----------------------------------------------------------------------


@pytest.mark.parametrize("algo", rl.ALGORITHMS)
def test_first_minibatch_ratio_is_one_clipfrac_zero_kl_zero(policy, tokenizer, algo):
    cfg = small(algo, beta=0.1)
    vh = value_head_for(policy, cfg)
    ro = rollout_for(policy, tokenizer, cfg, value_head=vh)
    adv = compute_advantages(ro.scores, ro.old_logps, ro.ref_logps, ro.completion_mask, cfg, values=ro.old_values)
    ro.advantages, ro.returns = adv.advantages, adv.returns
    B = ro.input_ids.shape[0]
    batch = ro.minibatch(torch.arange(B // cfg.num_minibatches))
    _, metrics = rl_loss(policy, batch, cfg, value_head=vh)
    # numerical: log π_θ (a forward pass) and log π_old (the sampler's cached decode) agree to rounding
    tol = numerical_tolerance(ro.old_logps)
    assert abs(float(metrics["charts/ratio_mean"]) - 1.0) <= tol
    assert float(metrics["charts/clipfrac"]) == 0.0
    assert float(metrics["kl/approx_kl"]) <= tol ** 2
    # the reference is the same weights: log π_old = log π_ref token by token (numerical, as above)
    assert_numerically_equal(ro.old_logps, ro.ref_logps, what="log π_old and log π_ref")
    if cfg.kl_penalty == "loss":
        assert abs(float(metrics["losses/kl"])) < 1e-9


def test_sampler_logprobs_are_reused_and_equal_the_recomputed_ones(policy, tokenizer, monkeypatch):
    """At temperature 1 the sampler's log-probs are kept as log π_old (only the reference is scored), and they equal
    the recomputed ones (numerical: a cached decode against a forward pass)."""
    scored = []
    real_fn = rl_rollout.score_tokens
    monkeypatch.setattr(rl_rollout, "score_tokens",
                        lambda model, *a, **k: scored.append(model) or real_fn(model, *a, **k))
    cfg = small("grpo")
    ro = rollout_for(policy, tokenizer, cfg)
    assert len(scored) == 1 and scored[0] is not policy  # the reference alone: the policy's were reused
    with torch.no_grad():
        recomputed = per_token_logprobs(forward_logits(policy, ro.input_ids, ro.attention_mask), ro.input_ids)
    assert_numerically_equal(ro.old_logps, recomputed * ro.completion_mask, what="sampler vs recomputed log-probs")


def test_at_another_temperature_old_logprobs_are_recomputed_untempered(policy, tokenizer):
    """Bitwise: the rollout's log π_old is exactly what the same untempered scoring call gives on the same rows; and
    it is not the sampler's tempered log-prob."""
    cfg = small("grpo", temperature=0.7)
    ro = rollout_for(policy, tokenizer, cfg)
    logps, _ = rl.score_tokens(policy, ro.input_ids, ro.attention_mask, 64, completion_mask=ro.completion_mask)
    assert torch.equal(ro.old_logps, torch.where(ro.completion_mask.bool(), logps, 0.0))
    torch.manual_seed(0)
    gen = generate(policy, tokenizer, PROMPTS[:cfg.prompts_per_step], max_new_tokens=cfg.max_new_tokens,
                   temperature=0.7, num_return_sequences=cfg.group_size)
    assert torch.equal(gen.input_ids, ro.input_ids)  # the same draw (bitwise: the same sampler, seed and rows)
    assert (gen.logprobs - ro.old_logps).abs().max() > 0.01  # the tempered log-probs were not kept


def test_padding_and_trimming_never_change_old_logprobs(policy, tokenizer):
    cfg = small("grpo", temperature=0.5)  # recomputed by a forward pass: the path padding could break
    ro = rollout_for(policy, tokenizer, cfg)
    full, _ = rl.score_tokens(policy, ro.input_ids, ro.attention_mask, 64)
    pad = tokenizer.pad_token_id
    for i in range(ro.input_ids.shape[0]):
        alone = ro.minibatch(torch.tensor([i]))  # trimmed: no left padding, no right padding
        logps_alone, _ = rl.score_tokens(policy, alone["input_ids"], alone["attention_mask"], 64)
        ids = torch.cat([torch.full((1, 7), pad), alone["input_ids"]], dim=1)  # extra left padding
        am = torch.cat([torch.zeros(1, 7, dtype=torch.long), alone["attention_mask"]], dim=1)
        logps_padded, _ = rl.score_tokens(policy, ids, am, 64)
        m = alone["completion_mask"].bool()
        reference = ro.old_logps[i][ro.completion_mask[i].bool()]
        # numerical: each is another computation (fewer rows, fewer or more columns, no shared prompt)
        assert_numerically_equal(logps_alone[m], reference, what="trimmed")
        assert_numerically_equal(logps_padded[:, 7:][m], reference, what="padded")
        assert_numerically_equal(full[i][ro.completion_mask[i].bool()], reference, what="one plain forward pass")


def test_value_head_forward_gives_the_models_logits_and_aligned_values(policy, tokenizer):
    ids = torch.tensor([encode_prompts(tokenizer, PROMPTS[:1])[0]])
    am = torch.ones_like(ids)
    vh = rl.ValueHead(policy.config.hidden_size)
    torch.nn.init.normal_(vh.summary.weight)
    logits, values = rl.forward_with_values(policy, ids, am, vh)
    torch.testing.assert_close(logits, forward_logits(policy, ids, am), atol=1e-6, rtol=1e-6)
    hidden = policy.base_model(input_ids=ids, attention_mask=am).last_hidden_state
    expected = vh.summary(hidden).squeeze(-1)
    assert values[0, 0] == 0
    torch.testing.assert_close(values[:, 1:], expected[:, :-1])  # V for token t is read at column t − 1


# --- advantages by hand -------------------------------------------------------------------------------------

# Four completions of one prompt's group of 2 (two groups), response-only columns (T = 3).
MASK = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
LOGP = torch.tensor([[-1.0, -2.0, 9.0], [-0.5, -0.5, -0.5], [-3.0, 9.0, 9.0], [-1.0, -1.0, 9.0]])
REF = torch.tensor([[-1.5, -1.0, 0.0], [-0.5, -1.0, -0.5], [-2.0, 0.0, 0.0], [-1.0, -1.0, 0.0]])
SCORES = torch.tensor([1.0, 0.0, 0.5, 0.25])


def test_advantages_by_hand_kl_in_the_reward_rloo():
    cfg = RLConfig.preset("rloo", group_size=2, beta=0.1)
    out = compute_advantages(SCORES, LOGP, REF, MASK, cfg)
    # k1 per sequence: (−1 + 1.5) + (−2 + 1) = −0.5; 0.5; −1.0; 0  →  R = s − 0.1·KL
    totals = [1.0 + 0.05, 0.0 - 0.05, 0.5 + 0.1, 0.25]
    # RLOO with G = 2: A = R_i − R_other
    hand = [totals[0] - totals[1], totals[1] - totals[0], totals[2] - totals[3], totals[3] - totals[2]]
    for i in range(4):
        row = out.advantages[i][MASK[i].bool()]
        assert torch.allclose(row, torch.full_like(row, hand[i]), atol=1e-6), i
    assert torch.all(out.advantages[~MASK.bool()] == 0)
    assert out.returns is None
    torch.testing.assert_close((out.token_rewards * MASK).sum(1), torch.tensor(totals))
    torch.testing.assert_close(out.advantages[:, 0], rloo_advantages(torch.tensor(totals), 2))


def test_advantages_kl_in_the_loss_use_the_raw_score_grpo():
    cfg = RLConfig.preset("grpo", group_size=2, beta=0.5)
    out = compute_advantages(SCORES, LOGP, REF, MASK, cfg)
    torch.testing.assert_close(out.advantages[:, 0], grpo_advantages(SCORES, 2))  # β plays no part here
    # z-score of a pair: ±(d/2) / (|d|/√2 + eps) = ±1/√2
    assert out.advantages[0, 0] == pytest.approx(1 / math.sqrt(2), abs=1e-3)


def test_gae_with_lambda_one_is_monte_carlo_returns_minus_values():
    cfg = RLConfig.preset("ppo", group_size=2, beta=0.1, lam=1.0, whiten_advantages=False)
    values = torch.tensor([[0.3, -0.2, 5.0], [0.1, 0.0, 0.4], [0.7, 5.0, 5.0], [0.0, 0.2, 5.0]])
    out = compute_advantages(SCORES, LOGP, REF, MASK, cfg, values=values)
    r = out.token_rewards
    for i in range(4):
        n = int(MASK[i].sum())
        for t in range(n):
            mc = float(r[i, t:n].sum())
            assert float(out.returns[i, t]) == pytest.approx(mc, abs=1e-6)
            assert float(out.advantages[i, t]) == pytest.approx(mc - float(values[i, t]), abs=1e-6)
    whitened = compute_advantages(SCORES, LOGP, REF, MASK, RLConfig.preset("ppo", group_size=2), values=values)
    adv = whitened.advantages[MASK.bool()]
    assert abs(float(adv.mean())) < 1e-6 and float(adv.std(unbiased=True)) == pytest.approx(1.0, abs=1e-4)


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, field", [
    (dict(beta=-0.1), "beta"), (dict(beta=float("nan")), "beta"), (dict(group_size=1), "group_size"),
    (dict(num_minibatches=3), "num_minibatches"), (dict(reward="oracle"), "reward"),
    (dict(kl_penalty="both"), "kl_penalty"), (dict(kl_estimator="k4"), "kl_estimator"),
    (dict(advantage="vtrace"), "advantage"), (dict(loss_agg="sum"), "loss_agg"), (dict(lr=0.0), "lr"),
    (dict(families=("chess",)), "families"), (dict(temperature=0.0), "temperature"), (dict(lam=1.5), "lam"),
    (dict(steps=0), "steps"), (dict(kl_target=-1.0), "kl_target"), (dict(sft_coef=-1.0), "sft_coef"),
    (dict(policy_loss="trpo"), "policy_loss"), (dict(clip_eps_low=-0.1), "clip_eps_low"),
    (dict(eval_families=("chess",)), "eval_families"), (dict(eval_families=()), "eval_families"),
    (dict(max_sampling_rounds=0), "max_sampling_rounds"),
])
def test_bad_config_is_a_value_error_naming_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        RLConfig.preset("grpo", **kw)


def test_bad_advantage_inputs():
    cfg = RLConfig.preset("grpo", group_size=2)
    with pytest.raises(ValueError, match="scores must be finite"):
        compute_advantages(torch.tensor([1.0, float("nan"), 0.0, 0.0]), LOGP, REF, MASK, cfg)
    with pytest.raises(ValueError, match="scores must be finite"):
        compute_advantages(torch.tensor([1.0, float("inf"), 0.0, 0.0]), LOGP, REF, MASK, cfg)
    with pytest.raises(ValueError, match="group_size"):  # 4 rows in groups of 3: unequal groups
        compute_advantages(SCORES, LOGP, REF, MASK, cfg, group_size=3)
    empty_row = MASK.clone()
    empty_row[2] = 0
    with pytest.raises(ValueError, match="no response tokens"):
        compute_advantages(SCORES, LOGP, REF, empty_row, cfg)
    with pytest.raises(ValueError, match="beta"):
        compute_advantages(SCORES, LOGP, REF, MASK, cfg, beta=-0.5)
    with pytest.raises(ValueError, match="values"):
        compute_advantages(SCORES, LOGP, REF, MASK, RLConfig.preset("ppo", group_size=2))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_reward_fn_returning_non_finite_rewards_is_refused(policy, tokenizer, bad):
    def reward_fn(prompts, replies):
        return [bad if i == 1 else 0.0 for i in range(len(replies))]

    with pytest.raises(ValueError, match="rewards must be finite.*completion\\(s\\) \\[1\\]"):
        train_rl(policy, tokenizer, small("grpo"), reward_fn=reward_fn, progress=False)


def test_a_reward_fn_with_the_wrong_number_of_scores_is_refused(policy, tokenizer):
    with pytest.raises(ValueError, match="one score per completion"):
        train_rl(policy, tokenizer, small("grpo"), reward_fn=lambda p, r: [0.0] * 3, progress=False)


def test_a_reference_sharing_weights_is_refused(policy, tokenizer):
    with pytest.raises(ValueError, match="ref_model"):
        train_rl(policy, tokenizer, small("grpo"), ref_model=policy, progress=False)


def always_stop(model, eos):
    """Make EOS the likeliest token of ``model``: every completion is exactly [EOS], an empty reply."""
    head = model.get_output_embeddings()
    return head.register_forward_hook(
        lambda m, i, o: o + 1e4 * torch.nn.functional.one_hot(torch.tensor(eos), o.shape[-1]).to(o.dtype))


@pytest.mark.parametrize("source, expected", [("gold", world.EMPTY_RESPONSE_SCORE), ("verifier", 0.0),
                                              ("rm", world.EMPTY_RESPONSE_SCORE)])
def test_an_empty_reply_gets_the_documented_score(policy, tokenizer, source, expected):
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer, seed=3)) if source == "rm" else None
    cfg = small("grpo", reward=source)
    hook = always_stop(policy, tokenizer.eos_token_id)
    try:
        ro = rollout_for(policy, tokenizer, cfg, reward_fn=rm)
    finally:
        hook.remove()
    assert ro.texts == [""] * len(ro.texts) and ro.completion_mask.sum(1).tolist() == [1] * len(ro.texts)
    assert torch.all(ro.scores == expected)
    assert torch.all(ro.gold == world.EMPTY_RESPONSE_SCORE)  # the gold score is always there, never NaN
    # the advantages are defined (all equal: exactly 0), not NaN
    adv = compute_advantages(ro.scores, ro.old_logps, ro.ref_logps, ro.completion_mask, cfg)
    assert torch.all(adv.advantages == 0)


def test_reward_rm_loads_the_reward_model_named_in_the_config(policy, tokenizer, tmp_path):
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer, seed=3))
    rm.set_normalization(0.5, 2.0)
    save_reward_model(rm, tokenizer, tmp_path / "rm")
    cfg = small("grpo", reward="rm", reward_model=str(tmp_path / "rm"))
    ro = rollout_for(policy, tokenizer, cfg)
    with torch.no_grad():
        expected = rm(ro.input_ids, ro.attention_mask)
    torch.testing.assert_close(ro.scores, expected)
    with pytest.raises(FileNotFoundError):
        rollout_for(policy, tokenizer, small("grpo", reward="rm", reward_model=str(tmp_path / "none")))


def test_a_reward_model_scores_in_the_samplers_layout(policy, tokenizer):
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer, seed=3))
    ro = rollout_for(policy, tokenizer, small("grpo"), reward_fn=rm)
    with torch.no_grad():
        expected = rm(ro.input_ids, ro.attention_mask)
    torch.testing.assert_close(ro.scores, expected)
    assert bool(torch.isfinite(ro.scores).all())


# --- behaviour: one step moves the right way ----------------------------------------------------------------


def first_token_reward(tokenizer):
    """Reward 1 when the reply's first character is ASCII with an even code (about a quarter of the micro model's
    first tokens): E[r] is then exactly the probability of those first tokens, read off one forward pass."""
    def good_char(c):
        return c.isascii() and ord(c) % 2 == 0

    good = [i for i in range(len(tokenizer)) if tokenizer.decode([i]) and good_char(tokenizer.decode([i])[0])]

    def reward_fn(prompts, replies):
        return [float(bool(r) and good_char(r[0])) for r in replies]

    return reward_fn, torch.tensor(good)


@torch.no_grad()
def expected_first_token_reward(model, tokenizer, good):
    total = 0.0
    for ids in encode_prompts(tokenizer, PROMPTS):
        ids = torch.tensor([ids])
        probs = torch.softmax(forward_logits(model, ids, torch.ones_like(ids))[0, -1], dim=-1)
        total += float(probs[good].sum())
    return total / len(PROMPTS)


@pytest.mark.parametrize("algo", rl.ALGORITHMS)
def test_one_step_of_every_algorithm_raises_the_expected_reward(policy, tokenizer, algo):
    reward_fn, good = first_token_reward(tokenizer)
    before = expected_first_token_reward(policy, tokenizer, good)
    # GSPO's clip range (4e-4) is far below what one step at lr 1e-2 moves a sequence's ratio: its second
    # minibatch would be clipped whole; one minibatch keeps the test about the first step
    extra = {"num_minibatches": 1} if algo == "gspo" else {}
    cfg = small(algo, lr=1e-2, group_size=8, beta=0.01, **extra)
    _, history = train_rl(policy, tokenizer, cfg, reward_fn=reward_fn, progress=False)
    after = expected_first_token_reward(policy, tokenizer, good)
    assert 0 < history["rewards/score"][0] < 1  # the batch had a signal
    assert after > before + 0.004, (before, after)  # measured: +0.006 to +0.014 from 0.273
    assert history["kl/seq"][0] == pytest.approx(0.0, abs=1e-4)  # sampled from π = π_ref


def test_ppo_value_loss_falls_and_first_ratio_is_one(policy, tokenizer):
    cfg = small("ppo", steps=6, lr=1e-2, value_lr=1e-2, ppo_epochs=1, num_minibatches=1)
    _, history = train_rl(policy, tokenizer, cfg, reward_fn=lambda p, r: [1.0] * len(r), progress=False)
    assert history["losses/value"][-1] < 0.2 * history["losses/value"][0]  # measured: 0.36 → 0.03
    assert history["charts/ratio_mean"][0] == pytest.approx(1.0, abs=1e-5)
    assert history["charts/clipfrac"][0] == 0.0
    assert all(math.isfinite(v) or math.isnan(v) for v in history["charts/explained_variance"])


def test_adaptive_kl_moves_beta_and_sft_coef_adds_the_sft_loss(policy, tokenizer):
    cfg = small("rloo", steps=3, lr=3e-3, kl_target=1e-3, kl_horizon=10.0, sft_coef=0.5, sft_batch_size=2)
    _, history = train_rl(policy, tokenizer, cfg, progress=False)
    assert history["charts/beta"][0] == cfg.beta and history["charts/beta"][-1] != cfg.beta
    assert len(history["losses/sft"]) == 3 and all(v > 0 for v in history["losses/sft"])


def test_the_same_seed_gives_the_same_run(tokenizer):
    def run(seed):
        model = tiny_llama(tokenizer, seed=0, layers=2)
        cfg = small("ppo", steps=2, lr=1e-3, seed=seed, eval_prompts=2)
        _, h = train_rl(model, tokenizer, cfg, progress=False)
        return {k: v for k, v in h.items() if not k.startswith("time/")}, model.state_dict()

    (h1, w1), (h2, w2), (h3, w3) = run(0), run(0), run(1)
    assert json.dumps(h1) == json.dumps(h2)  # the same numbers, NaN included (a rollout with no right reply)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert h1["losses/total"] != h3["losses/total"] and not all(torch.equal(w1[k], w3[k]) for k in w1)
    assert h1["eval/step"] == [0, 2]


def test_summarize_reads_the_history(policy, tokenizer):
    _, h = train_rl(policy, tokenizer, small("grpo", steps=2, eval_prompts=4), progress=False)
    s = rl.summarize(h)
    assert s["gold_gain"] == pytest.approx(h["eval/gold_score"][-1] - h["eval/gold_score"][0])
    assert s["rollouts"] == 2 and s["seconds_generation"] > 0


def test_length_dynamics_are_logged_and_add_up(policy, tokenizer):
    """Right and wrong replies' mean lengths, weighted by the correct rate, are the mean length; the rollout's
    tokens are at least its completion tokens; rambling and repetition are the gold judge's features."""
    cfg = small("grpo", steps=2, max_new_tokens=12, eval_prompts=4, eval_families=("addition",))
    _, h = train_rl(policy, tokenizer, cfg, progress=False)
    for i in range(2):
        c, lc, lw = h["charts/correct_rate"][i], h["charts/length_correct"][i], h["charts/length_wrong"][i]
        mixed = c * (lc if c > 0 else 0.0) + (1 - c) * (lw if c < 1 else 0.0)
        assert mixed == pytest.approx(h["charts/response_length"][i])
        assert h["charts/rollout_tokens"][i] >= 16 * h["charts/response_length"][i]
        assert 0 <= h["charts/extra_words"][i] <= world.judge.EXTRA_WORDS_CAP
        assert 0 <= h["charts/repetition"][i] <= world.judge.REPETITION_CAP
        assert math.isnan(lc) == (c == 0) and math.isnan(lw) == (c == 1)  # NaN exactly when there is none
    assert h["eval/step"] == [0, 2]


# --- DAPO's dynamic sampling -----------------------------------------------------------------------------


def test_cat_rollouts_keeps_every_row_as_it_was(policy, tokenizer):
    """Two rollouts of different prompt and completion widths: in the concatenation every row's completion
    tokens, log-probs, masks and scores are the same numbers, moved, and every completion starts at one column."""
    a = rollout_for(policy, tokenizer, small("grpo", prompts_per_step=2, max_new_tokens=5), seed=0)
    torch.manual_seed(1)
    b, _ = collect_rollout(policy, tokenizer, ["Write a positive review of the lamp.", "Add 7 and 12."],
                           small("grpo", prompts_per_step=2, max_new_tokens=9), copy.deepcopy(policy).eval())
    assert a.prompt_length != b.prompt_length or a.input_ids.shape != b.input_ids.shape
    c = rl.cat_rollouts([a, b], tokenizer.pad_token_id)
    assert c.prompts == a.prompts + b.prompts and c.texts == a.texts + b.texts
    assert torch.equal(c.scores, torch.cat([a.scores, b.scores]))
    P = c.prompt_length
    assert not c.completion_mask[:, :P].any() and bool(c.completion_mask[:, P].all())
    for part, rows in ((a, range(0, 8)), (b, range(8, 16))):
        for i, r in enumerate(rows):
            for name in ("input_ids", "old_logps", "ref_logps"):
                orig, new = getattr(part, name)[i], getattr(c, name)[r]
                assert torch.equal(orig[part.completion_mask[i].bool()], new[c.completion_mask[r].bool()])
            real = part.input_ids[i][part.attention_mask[i].bool()]
            assert torch.equal(real, c.input_ids[r][c.attention_mask[r].bool()])
    with pytest.raises(ValueError, match="parts is empty"):
        rl.cat_rollouts([], tokenizer.pad_token_id)


def _half_right(unanimous):
    """A reward: rows whose prompt ``unanimous(prompt)`` accepts all 0, the others 0, 1, 0, 1, ... in each group."""
    def reward(prompts, texts):
        return torch.tensor([0.0 if unanimous(p) else float(i % 2) for i, p in enumerate(prompts)])
    return reward


@pytest.mark.parametrize("rounds, sampled, dropped, unanimous_kept", [(3, 8, 4, 0), (1, 4, 0, 1)])
def test_dynamic_sampling_drops_unanimous_groups_and_refills(policy, tokenizer, rounds, sampled, dropped,
                                                             unanimous_kept):
    cfg = small("dapo", max_new_tokens=4, max_sampling_rounds=rounds)
    torch.manual_seed(0)
    ro, times = rl.collect_dynamic(policy, tokenizer, lambda: list(PROMPTS), cfg, copy.deepcopy(policy).eval(),
                                   _half_right(lambda p: p == PROMPTS[0]))
    assert ro.completion_mask.shape[0] == 16 and times["groups_sampled"] == sampled
    assert times["groups_dropped"] == dropped
    groups = [ro.prompts[g * 4:(g + 1) * 4] for g in range(4)]
    assert all(len(set(g)) == 1 for g in groups)  # whole groups, contiguous
    assert sum(g[0] == PROMPTS[0] for g in groups) == unanimous_kept  # only when the rounds ran out
    keep = informative_groups(ro.scores, 4)
    assert int((~keep).sum()) == unanimous_kept


def test_dapo_trains_with_dynamic_sampling(policy, tokenizer):
    cfg = small("dapo", steps=2, max_new_tokens=4, max_sampling_rounds=2)
    addition = _half_right(lambda p: world.parse_prompt(p).family == "addition")  # 1 prompt in 4: families in turn
    _, h = train_rl(policy, tokenizer, cfg, reward_fn=addition, progress=False)
    assert h["charts/groups_sampled"] == [8.0, 8.0] and h["charts/groups_dropped"] == [4.0, 4.0]
    assert h["charts/zero_adv_share"] == [0.0, 0.0]  # no unanimous group reached the update


def test_eval_families_picks_the_evaluation_prompts(policy, tokenizer):
    run = rl_loop._Run(policy, tokenizer, small("grpo", eval_prompts=6, eval_families=("addition",)), None, None)
    assert {p.family for p in run.eval_problems} == {"addition"}
    run = rl_loop._Run(policy, tokenizer, small("grpo", eval_prompts=8), None, None)
    assert {p.family for p in run.eval_problems} == set(world.FAMILIES)


# --- the command line ---------------------------------------------------------------------------------------


def test_cli_writes_a_loadable_checkpoint(tokenizer, tmp_path, capsys):
    start = save_model(tiny_llama(tokenizer, seed=0), tokenizer, tmp_path / "start")
    out = tmp_path / "rl-ppo"
    args = ["rl", "--algo", "ppo", "--policy", str(start), "--steps", "1", "--prompts-per-step", "2",
            "--group-size", "2", "--max-new-tokens", "6", "--eval-prompts", "4", "--out", str(out)]
    main(args)
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and "gold_gain" in summary
    model, _ = load_model(out, device="cpu")
    before, _ = load_model(start, device="cpu")
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), before.state_dict().values()))
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["config"]["algo"] == "ppo" and meta["config"]["train"]["steps"] == 1
    assert json.loads((out / "training_log.json").read_text())["step"] == [1]
    with pytest.raises(SystemExit):  # a non-empty output folder needs --overwrite
        main(args)
    main(args + ["--overwrite"])


# --- each distinct prompt computed once ----------------------------------------------------------------------------

def _grouped_batch(policy, tokenizer, group=3):
    from rlhfbook_lab.lm.generation import generate

    prompts = ["What is 2 + 3?", "Spell mirt backward.", "Write a positive review of the lamp."]
    return generate(policy, tokenizer, prompts, max_new_tokens=10, num_return_sequences=group, seed=0)


@pytest.mark.parametrize("chunk_overhead", [None, 0, rl.CHUNK_OVERHEAD])
def test_shared_prompt_forward_equals_the_full_forward(policy, tokenizer, chunk_overhead):
    """Second implementation: logits, values and gradients of the shared-prompt forward, its completions in one
    pass (None) or in chunks of similar length (0: a chunk per distinct length), match one plain forward pass
    over every row (rows shuffled, so groups are not contiguous). Numerical."""
    gen = _grouped_batch(policy, tokenizer)
    order = torch.randperm(gen.input_ids.shape[0], generator=torch.Generator().manual_seed(0))
    ids, am, cm = gen.input_ids[order], gen.attention_mask[order], gen.completion_mask[order]
    # completions of several lengths (as if EOS came early): cut row i after 1 + 3i mod 10 tokens
    cut = gen.prompt_length + 1 + (3 * torch.arange(len(ids))[:, None]) % 10
    after = torch.arange(ids.shape[1])[None] >= cut
    ids, am, cm = ids.masked_fill(after, tokenizer.pad_token_id), am.masked_fill(after, 0), cm.masked_fill(after, 0)
    lengths = cm.sum(1)
    assert len(set(lengths.tolist())) > 1  # completions of several lengths: the chunks differ in width
    if chunk_overhead == 0:
        assert len(rl.length_chunks(lengths, 0)) == len(set(lengths.tolist()))
    head = rl.ValueHead(policy.config.hidden_size)
    torch.nn.init.normal_(head.summary.weight)
    results = []
    for shared in (True, False):
        policy.zero_grad()
        logits, values = rl.forward_with_values(policy, ids, am, head, cm if shared else None, chunk_overhead)
        loss = (per_token_logprobs(logits, ids) * cm).sum() + (values * cm).sum()
        loss.backward()
        results.append((logits.detach(), values.detach(), [p.grad.clone() for p in policy.parameters()]))
    (l1, v1, g1), (l2, v2, g2) = results
    real = am.bool()
    # numerical: another split of the same sums (each gradient compared at its own magnitude)
    assert_numerically_equal(l1[real], l2[real], what="logits")
    assert_numerically_equal(v1 * cm, v2 * cm, what="values")
    for (name, _), a, b in zip(policy.named_parameters(), g1, g2):
        assert_numerically_equal(a, b, what=f"gradient of {name}")
    policy.zero_grad()


def test_shared_prompt_forward_is_used_only_when_prompts_repeat(policy, tokenizer, monkeypatch):
    """Property: all-distinct prompts take the plain path (bit-identical to forward_logits); a group takes the
    shared one."""
    calls = []
    real_fn = rl_forward.shared_prompt_hidden
    monkeypatch.setattr(rl_forward, "shared_prompt_hidden", lambda *a: calls.append(1) or real_fn(*a))
    gen = _grouped_batch(policy, tokenizer, group=1)
    with torch.no_grad():
        logits, _ = rl.forward_with_values(policy, gen.input_ids, gen.attention_mask, None, gen.completion_mask)
        assert torch.equal(logits, forward_logits(policy, gen.input_ids, gen.attention_mask)) and not calls
        gen = _grouped_batch(policy, tokenizer, group=2)
        rl.forward_with_values(policy, gen.input_ids, gen.attention_mask, None, gen.completion_mask)
    assert calls == [1]


def test_length_chunks_hand_computed():
    """Rows of lengths 1, 10, 10, 10: one pass costs 4 · 10 = 40 slots; splitting off the short row costs
    1 + 30 = 31 plus one more pass. Overhead 0 splits, overhead 10 (31 + 20 > 40 + 10) does not."""
    lengths = torch.tensor([10, 1, 10, 10])
    assert [c.tolist() for c in rl.length_chunks(lengths, 0)] == [[1], [0, 2, 3]]
    assert [c.tolist() for c in rl.length_chunks(lengths, 8)] == [[1], [0, 2, 3]]  # 31 + 16 < 40 + 8
    assert [c.tolist() for c in rl.length_chunks(lengths, 10)] == [[1, 0, 2, 3]]  # 31 + 20 > 40 + 10
    with pytest.raises(ValueError, match="lengths"):
        rl.length_chunks(torch.tensor([], dtype=torch.long))


def test_length_chunks_is_the_cheapest_split():
    """Second implementation: every split of the sorted rows into contiguous chunks, enumerated; the dynamic
    programme's cost is the minimum. Property: the chunks are a permutation of the rows."""
    import itertools

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        B = int(torch.randint(1, 9, (1,), generator=gen))
        lengths = torch.randint(1, 30, (B,), generator=gen)
        overhead = int(torch.randint(0, 40, (1,), generator=gen))
        chunks = rl.length_chunks(lengths, overhead)
        assert sorted(torch.cat(chunks).tolist()) == list(range(B))
        cost = sum(len(c) * int(lengths[c].max()) + overhead for c in chunks)
        s = sorted(lengths.tolist())
        best = min(sum(len(s[i:j]) * s[j - 1] + overhead for i, j in zip((0,) + cuts, cuts + (B,)))
                   for r in range(B) for cuts in itertools.combinations(range(1, B), r))
        assert cost == best


# --- β reaches the loss and the rewards (each test fails on a one-line fault tried on a copy) ---------------------


def _perturbed(policy, scale=0.05, seed=1):
    """A copy of ``policy`` with every weight moved a little: the reference then differs from the policy."""
    moved = copy.deepcopy(policy)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return moved


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_the_kl_term_of_the_loss_is_beta_times_the_kl(policy, tokenizer, estimator):
    """Property: with the KL in the loss and π ≠ π_ref, the loss is affine in β with slope the aggregated KL, so
    loss(β) − loss(0) = β · losses/kl (dropping β from the term makes it KL, whatever β)."""
    cfg = small("grpo", kl_estimator=estimator)
    ref = _perturbed(policy)
    torch.manual_seed(0)
    ro, _ = collect_rollout(policy, tokenizer, PROMPTS, cfg, ref)
    adv = compute_advantages(ro.scores, ro.old_logps, ro.ref_logps, ro.completion_mask, cfg)
    ro.advantages = adv.advantages
    batch = ro.minibatch(torch.arange(ro.input_ids.shape[0]))
    with torch.no_grad():
        loss0, _ = rl_loss(policy, batch, cfg, beta=0.0)
        losses = {b: rl_loss(policy, batch, cfg, beta=b) for b in (0.3, 0.7)}
    kl = float(losses[0.3][1]["losses/kl"])
    assert kl > 1e-3  # the reference really differs
    for b, (loss, metrics) in losses.items():
        assert float(metrics["losses/kl"]) == pytest.approx(kl, rel=1e-6)  # the KL does not depend on β
        assert float(loss - loss0) == pytest.approx(b * kl, rel=1e-4, abs=1e-7)


def test_compute_advantages_uses_the_beta_it_is_given_not_the_configs(policy, tokenizer):
    """The adaptive controller passes its current β: with the KL in the reward, the advantages follow that β and
    ignore ``cfg.beta`` (reading ``cfg.beta`` instead is a fault this test catches)."""
    cfg = small("rloo", beta=0.1)
    ref = _perturbed(policy)
    torch.manual_seed(0)
    ro, _ = collect_rollout(policy, tokenizer, PROMPTS, cfg, ref)
    args = (ro.scores, ro.old_logps, ro.ref_logps, ro.completion_mask)
    given = compute_advantages(*args, cfg, beta=0.9)
    as_config = compute_advantages(*args, small("rloo", beta=0.9))  # the same β through the config
    default = compute_advantages(*args, cfg)
    assert torch.equal(given.token_rewards, as_config.token_rewards)  # bitwise: the same computation
    assert torch.equal(given.advantages, as_config.advantages)
    assert not torch.allclose(given.token_rewards, default.token_rewards)
    # the per-token reward is −β·k1 off the last token: its ratio between the two β is 9
    off_last = ro.completion_mask.bool() & (given.token_rewards != 0)
    off_last[torch.arange(len(off_last)), ro.completion_mask.cumsum(1).argmax(1)] = False
    ratio = given.token_rewards[off_last] / default.token_rewards[off_last]
    assert torch.allclose(ratio, torch.full_like(ratio, 9.0), rtol=1e-5)


def test_train_rl_puts_the_adaptive_beta_into_the_rewards(policy, tokenizer, monkeypatch):
    """The β the adaptive controller holds at each rollout is the one compute_advantages receives."""
    seen = []
    real = rl_loop.compute_advantages
    monkeypatch.setattr(rl_loop, "compute_advantages",
                        lambda *a, **k: seen.append(a[-1] if len(a) >= 8 else k.get("beta")) or real(*a, **k))
    cfg = small("rloo", steps=3, beta=0.2, kl_target=0.01, kl_horizon=10.0)
    _, history = train_rl(policy, tokenizer, cfg, ref_model=_perturbed(policy), progress=False)
    assert seen == pytest.approx(history["charts/beta"])
    assert len(set(history["charts/beta"])) == 3  # the controller moved it
