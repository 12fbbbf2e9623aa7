# %% [markdown]
# # Lesson 07 · Reasoning — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/07_reasoning_solutions.py`. Exercises 1–3 read one pool of samples of `sft-tiny`
# (60 problems × 32 samples with `RLHFBOOK_FAST=1`, 200 × 256 otherwise); exercise 4 trains the policy once
# (about 30 CPU-s in fast mode, 90 otherwise); exercise 5 reads the shipped long RLVR log, exercise 6 the shipped
# thinking study.

# %%
import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.equations.scaling import fit_beta_binomial, fit_pass_at_k_power_law, pass_at_k_curve, pass_at_k_plugin
from rlhfbook_lab.lesson import pick, seed_everything
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.sample_pool import sample_pool, scaling_table
from rlhfbook_lab.trainers.rl import RLConfig, train_rl

seed_everything(0)
N_PROBLEMS, N_SAMPLES = pick(60, 200), pick(32, 256)
problems = world.heldout_prompts(N_PROBLEMS, seed=0, families=("addition",))
sft, tok = load_model("sft-tiny")
pool = sample_pool(sft, tok, problems, n=N_SAMPLES, seed=1)
table = scaling_table(pool)

# %% [markdown]
# ## 1 · The plug-in's bias
#
# Keep the first 8 samples of each problem. The full pool's pass@k (n = 32 or 256) is close to the truth; from 8
# samples the unbiased estimator stays on it on average, the plug-in falls below it.

# %%
n_small = 8
counts8 = pool.correct[:, :n_small].sum(axis=1)
ks = np.arange(1, n_small + 1)
unbiased8 = pass_at_k_curve(counts8, n_small, ks)
plugin8 = pass_at_k_plugin(n_small, counts8[:, None], ks[None, :]).mean(axis=0)
truth = table["pass@k"][:n_small]
for k in (1, 2, 4, 8):
    print(f"k = {k}: full pool {truth[k - 1]:.3f}   from 8 samples: unbiased {unbiased8[k - 1]:.3f}, "
          f"plug-in {plugin8[k - 1]:.3f} (bias {plugin8[k - 1] - unbiased8[k - 1]:+.3f})")
assert np.all(plugin8 <= unbiased8 + 1e-12)
assert unbiased8[3] - plugin8[3] > 0.005  # at k = 4 the plug-in is visibly low
# What you should see: the plug-in's bias grows with k/n (a few points at k = 4 of n = 8), while the unbiased
# estimate stays within sampling noise of the full pool's value.

# %% [markdown]
# ## 2 · Where the power law comes from
#
# Fit Beta(α, β) to the per-problem success rates by maximum likelihood on the counts, and compare α with the
# exponent b of the power-law fit over the same ks.

# %%
keep = table["pass@k"] < 1 - 1e-9
power = fit_pass_at_k_power_law(table["k"][keep], table["pass@k"][keep])
try:
    beta_fit = fit_beta_binomial(pool.counts, pool.n)
    implied = fit_pass_at_k_power_law(table["k"][keep], beta_fit.pass_at_k(table["k"][keep]))
    print(f"power law over the pool: b = {power.b:.2f};  Beta fit: α = {beta_fit.alpha:.2f}, β = {beta_fit.beta:.2f}; "
          f"exponent of the Beta fit's own pass@k curve over the same ks: {implied.b:.2f}")
except ValueError as e:  # the MLE runs to its box's edge when the rates do not look beta-distributed
    print("no Beta fit:", e)
# What you should see (fast mode, measured once): b = 1.05 from the pool, α = 2.2 from the Beta fit, whose own
# curve has exponent 1.7. The Beta over-predicts the exponent: the pool's left tail is heavier than a Beta's — one
# problem never solved in 32 tries is nearly a point mass at 0, which a Beta has to spread out. The explanation
# (the spread of per-problem rates sets the exponent) holds; the Beta form is only a rough fit to these rates.

# %% [markdown]
# ## 3 · Format reward

# %%
fmt = np.array([[world.format_reward(p, r, allow_empty=True) for r in rs] for p, rs in zip(pool.problems,
                                                                                          pool.replies)])
share = fmt.mean()
acc_fmt, acc_other = pool.correct[fmt == 1].mean(), pool.correct[fmt == 0].mean()
print(f"{share:.1%} of replies end with the answer sentence; correct: {acc_fmt:.3f} of those, {acc_other:.3f} "
      "of the others")
assert 0 < share < 1
# What you should see (fast mode, measured once): 55 % of replies end with the answer sentence; the others mostly
# carry a polite filler after it ("... = 68. I hope this helps."), which the format reward refuses although the sum
# is right about as often (0.58 vs 0.54) — a format reward pays for *where* the answer is, not whether it is right.

# %% [markdown]
# ## 4 · Another algorithm: CISPO on the same RLVR run

# %%
cfg = RLConfig.preset("cispo", reward="verifier", families=("addition",), max_new_tokens=24, eval_prompts=0,
                      **{"train.steps": pick(20, 60), "train.lr": 1e-4})
policy, hist = train_rl(sft, tok, cfg, progress=False)
pool_rl = sample_pool(policy, tok, problems, n=N_SAMPLES, seed=1)
gain = pool_rl.rates - pool.rates
se = gain.std(ddof=1) / np.sqrt(len(gain))
print(f"CISPO: pass@1 {pool.rates.mean():.3f} → {pool_rl.rates.mean():.3f} (gain {gain.mean():+.3f} ± {se:.3f})")
assert gain.mean() > 0
# What you should see: a gain of the same size as GRPO's in the lesson. With two minibatches per rollout the second
# is slightly off-policy, the only place CISPO's clipped weights differ from GRPO's clipped ratios; at this scale
# the learning rate matters far more than the surrogate.

# %% [markdown]
# ## 5 · The compute fit on held-out accuracy
#
# Fit the same sigmoid to the shipped long run's *held-out* greedy accuracy (`eval/correct_rate`, 100 addition
# prompts every 10 rollouts) instead of the training samples' pass@1, and compare the asymptotes.

# %%
from rlhfbook_lab.equations.scaling import fit_sigmoid_compute_curve  # noqa: E402
from rlhfbook_lab.recipes.rlvr_study import binned, load_rlvr_log  # noqa: E402

h = load_rlvr_log("grpo")["history"]
steps = h["eval/step"].astype(int)
at = steps > 0  # step 0 has spent no compute: not on a log axis
C_eval = h["flops/cumulative"][steps[at] - 1]
fit_eval = fit_sigmoid_compute_curve(C_eval, h["eval/correct_rate"][at], R0=h["eval/correct_rate"][0])
fit_train = fit_sigmoid_compute_curve(*binned(h, "charts/correct_rate"), R0=h["charts/correct_rate"][0])
print(f"held-out greedy: A = {fit_eval.A:.3f} (R² {fit_eval.r2:.3f});  training samples at T = 1: "
      f"A = {fit_train.A:.3f} (R² {fit_train.r2:.3f})")
print(f"held-out greedy: {h['eval/correct_rate'][0]:.2f} → {h['eval/correct_rate'][-1]:.2f}; fit at the search "
      f"box's edge: {fit_eval.at_bound}")
assert h["eval/correct_rate"][-1] > fit_train.A  # greedy decoding ends above sampling's ceiling at T = 1
# What you should see (measured once): the training samples give a clean fit (A ≈ 0.86, R² ≈ 0.9), the held-out
# greedy accuracy does not: it starts at 0.79, reaches 0.95+ within a few dozen rollouts and then only wobbles
# (100 prompts: ±0.02), so the fit is ill-posed — A above 1, B and C_mid on the search box's edge. A compute
# fit needs a metric that is still far from its ceiling: here sampling at T = 1, not greedy decoding.

# %% [markdown]
# ## 6 · When did the step take over?
#
# From the shipped thinking study (lesson 07 §7), find the first GRPO rollout at which at least 90 % of the
# sampled replies write the step, and compare the accuracy of step and answer-alone replies over the first five
# rollouts.

# %%
from rlhfbook_lab.recipes.thinking import load_thinking_study  # noqa: E402

hist3 = load_thinking_study()["history"]
share = np.array(hist3["step_share"])
first_90 = int(np.argmax(share >= 0.9)) + 1
acc_step = np.nanmean(hist3["correct_step"][:5])
acc_direct = np.nanmean(hist3["correct_direct"][:5])
print(f"step share: rollout 1 {share[0]:.2f}, first ≥ 0.9 at rollout {first_90}, last {share[-1]:.2f}")
print(f"first five rollouts: accuracy of replies writing the step {acc_step:.2f}, of answers alone {acc_direct:.2f}")
assert share.max() >= 0.9 and acc_step > acc_direct + 0.3
# What you should see (shipped study): the share passes 0.9 at rollout 7. In the first rollouts a step reply is right
# about four times as often as an answer-alone reply, so almost every mixed group gives the step a positive
# advantage and the other form a negative one, at the one token where the forms part (`=` or `+` after `a + b`):
# a large, consistent push on a single decision, which a handful of updates at lr 1e-4 is enough to settle.
