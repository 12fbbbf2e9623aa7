# %% [markdown]
# # Lesson 06 · Policy gradients — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/06_policy_gradients_solutions.py`. Exercises 1–4 are bandits and closed forms (about
# 20 s of CPU in all); exercise 5 trains the language model three times with the full presets (about 11 minutes of
# CPU in all); with `RLHFBOOK_FAST=1` it runs `RLConfig.fast` at half its rollouts and 50 evaluation prompts instead
# (about 15 s each): a smoke run, whose numbers are not the ones quoted below.
#
# The numbers quoted under "What you should see" come from one run of this file (seeded, so they repeat).

# %%
import dataclasses

import numpy as np
import pandas as pd
import torch

from rlhfbook_lab.equations import bandit
from rlhfbook_lab.equations.bandit import BanditConfig, objective, optimal_objective, train_bandit
from rlhfbook_lab.equations.policy_gradient import discounted_returns, gae_advantages
from rlhfbook_lab.lesson import FAST, seed_everything

seed_everything(0)
pd.set_option("display.width", 160)
pd.set_option("display.precision", 3)
pd.set_option("display.max_columns", 20)
cfg = BanditConfig()
R = torch.tensor(cfg.rewards, dtype=torch.float64)
REF = torch.tensor(cfg.ref_probs, dtype=torch.float64)

# %% [markdown]
# ## Exercise 1 · Variance against group size

# %%
true = bandit.reward_gradient(R, REF)
rows = []
for G in (2, 4, 8, 16):
    for name, estimator in (("RLOO", "rloo"), ("mean baseline", "dr_grpo")):
        est = bandit.gradient_estimates(dataclasses.replace(cfg, group_size=G), estimator, 4000)
        rows.append({"G": G, "estimator": name, "projection on true ∇": (est.mean(0) @ true / (true @ true)).item(),
                     "(G−1)/G": (G - 1) / G, "total variance": est.var(0).sum().item(),
                     "variance × G": G * est.var(0).sum().item()})
print(pd.DataFrame(rows).set_index(["G", "estimator"]))

# What you should see: RLOO's projection stays at 1 for every G; the plain mean's follows (G−1)/G (0.49 at G = 2,
# 0.94 at G = 16). The variance falls like 1/G: "variance × G" is roughly constant for RLOO once G ≥ 8 (≈ 0.09); at
# G = 2 its leave-one-out baseline is a single other sample, and the product is 0.15. (The plain mean's variance is
# lower, partly because its gradient is shrunk.) So more samples per prompt buy variance at the usual Monte-Carlo rate,
# and the plain mean's bias is negligible from G ≈ 8 on. Where to stop is a cost question: a group of G costs G
# generations, and the baseline already works at G = 4.

# %% [markdown]
# ## Exercise 2 · GRPO and β
#
# The mean-field iteration of section 3: the effective KL coefficient of canonical GRPO is β·G/(G−1)·std_π(r), and
# with a k3 loss the policy sits at the forward-KL optimum of that coefficient.

# %%
def mean_field_grpo(beta, group_size=cfg.group_size):
    c = beta * group_size / (group_size - 1)
    for _ in range(300):
        pi = bandit.optimal_policy_forward_kl(R, REF, c)
        std = ((pi * R**2).sum() - (pi * R).sum() ** 2).sqrt().item()
        c = 0.5 * c + 0.5 * beta * group_size / (group_size - 1) * std
    return pi, c


rows = []
for beta in (0.05, 0.2, 1.0):
    run_cfg = dataclasses.replace(cfg, beta=beta, num_steps=400)
    h = train_bandit(run_cfg, "grpo")
    j_star = optimal_objective(R, REF, beta).item()
    pi_mf, c = mean_field_grpo(beta)
    rows.append({"β": beta, "trained: fraction of J*(β)": h["charts/J"][-1] / j_star,
                 "mean field: fraction": objective(pi_mf, R, REF, beta).item() / j_star, "effective coefficient": c,
                 "trained π": np.round(h["policy/probs"][-1], 3), "mean-field π": np.round(pi_mf.numpy(), 3)})
print(pd.DataFrame(rows))

# What you should see: at β = 0.05, π* is nearly greedy anyway, and GRPO reaches 99 % of its J*. At β = 0.2 it is the
# lesson's ~79 %. At β = 1 it is a disaster: π* stays close to π_ref (J(π_ref) is already 84 % of J* there), but GRPO's
# effective coefficient is only 0.45 — the std division has more than halved β — so the policy moves far more than β
# allows and J drops to 14 % of J*, far *below* not training at all. The mean-field fixed point predicts the trained
# policy within a few hundredths at β = 1 and β = 0.2 (at β = 0.05 both are nearly greedy). The practical reading: with
# std-normalised advantages, "β" is not the KL coefficient you think it is.

# %% [markdown]
# ## Exercise 3 · Clip-higher

# %%
rows = []
for eps_high in (0.2, 0.28):
    for seed in (0, 1, 2):
        run_cfg = dataclasses.replace(cfg, ppo_epochs=8, clip_eps_high=eps_high, num_steps=200, seed=seed)
        h = train_bandit(run_cfg, "ppo")
        frac = np.array(h["charts/J"]) / optimal_objective(R, REF, cfg.beta).item()
        rows.append({"ε_high": eps_high, "seed": seed, "first rollout ≥ 95 % of J*": int(np.argmax(frac >= 0.95)),
                     "final fraction": frac[-1], "clip fraction, first 20 rollouts": np.mean(h["charts/clipfrac"][:20]),
                     "π after 10 rollouts": np.round(h["policy/probs"][10], 2)})
print(pd.DataFrame(rows))

# What you should see: not what DAPO would lead you to expect. Both settings end at J*, but clip-higher is *slower*
# here (first rollout at 95 %: 15, 25, 7 with ε_high = 0.2 against 39, 24, 14 with 0.28). Look at π after 10 rollouts:
# with 8 epochs per rollout PPO often rushes onto "The answer is 4." (reward 0.8, three times the reference's mass of
# "4.") and pushes "4." down to ~1 %, a plateau at ~82 % of J*; it escapes only when the rare "4." is sampled and
# rewarded again. Clip-higher lets every token with a positive advantage grow further per rollout — the already
# winning answer most of all — so the rush is bigger and the plateau longer. (The clip fractions of the first 20
# rollouts overlap: 0.14–0.19 with clip-higher, 0.17–0.32 without.) DAPO's argument is about a long tail of unlikely
# tokens in a language model, where the symmetric bound caps how fast any of them can gain mass; on a 4-answer bandit
# the same knob mainly speeds up commitment. Mechanisms transfer; their net effect depends on the problem.

# %% [markdown]
# ## Exercise 4 · GAE by hand
#
# Rewards (0, 0, 0, 1), values (0.2, 0.9, 0.6, 0.8), γ = 1.
#
# * λ = 0: δ_t = r_t + V_{t+1} − V_t = (0.9 − 0.2, 0.6 − 0.9, 0.8 − 0.6, 1 − 0.8) = (0.7, −0.3, 0.2, 0.2).
# * λ = 1: Â_t = G_t − V_t with G_t = 1 for every token: (0.8, 0.1, 0.4, 0.2).

# %%
rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
values = torch.tensor([[0.2, 0.9, 0.6, 0.8]])
mask = torch.ones(1, 4)
adv0, _ = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.0)
adv1, _ = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
torch.testing.assert_close(adv0, torch.tensor([[0.7, -0.3, 0.2, 0.2]]))
torch.testing.assert_close(adv1, discounted_returns(rewards, mask) - values)
torch.testing.assert_close(adv1, torch.tensor([[0.8, 0.1, 0.4, 0.2]]))
print("λ = 0:", adv0.numpy().round(3), " λ = 1:", adv1.numpy().round(3))

# What you should see: the hand values. The over-optimistic V = 0.9 at token 2 enters two TD errors: it inflates
# δ_1 (token 1 looks great: +0.7, because it "led to" a state valued at 0.9) and deflates δ_2 (token 2 looks bad:
# −0.3, because its true continuation was worth less than 0.9). With λ = 0 tokens 1 and 2 get exactly those corrupted
# values; with λ = 1 the error cancels in the telescoping sum, and only token 2's own baseline is off (its advantage
# 0.1 is low, but the baseline does not bias the gradient's expectation). Intermediate λ spreads the error with
# weights (γλ)^l: less bias than λ = 0, less variance than λ = 1.

# %% [markdown]
# ## Exercise 5 · Algorithms on the language model

# %%
from rlhfbook_lab.lm.models import load_model  # noqa: E402
from rlhfbook_lab.trainers.rl import RLConfig, train_rl  # noqa: E402

results, histories = {}, {}
for algo in ("grpo", "dr_grpo", "ppo"):
    policy, tok = load_model("sft-tiny")
    if FAST:  # half of RLConfig.fast's rollouts, 50 evaluation prompts: a smoke run (the file's CPU budget)
        fast = RLConfig.fast(algo)
        run_cfg = RLConfig.fast(algo, eval_prompts=50, **{"train.steps": fast.train.steps // 2})
    else:
        run_cfg = RLConfig.preset(algo)
    policy, h = train_rl(policy, tok, run_cfg, progress=False)
    histories[algo] = h
    results[algo] = {"held-out gold before": h["eval/gold_score"][0], "after": h["eval/gold_score"][-1],
                     "KL per response at the end": h["kl/seq"][-1],
                     "length, first 3 rollouts": np.mean(h["charts/response_length"][:3]),
                     "length, last 3 rollouts": np.mean(h["charts/response_length"][-3:])}
results = pd.DataFrame(results).T
print(results)
if not FAST:  # the claims below are about the full presets
    assert (results["after"] > results["held-out gold before"] + 0.1).all(), "all three raise the held-out gold"
    assert results["KL per response at the end"].between(0.8, 2.0).all(), "at KLs of 1.1–1.7 nats per response"
    assert (results["length, last 3 rollouts"] < results["length, first 3 rollouts"]).all(), "replies get shorter"

# What you should see (full presets, one seed, 200 held-out prompts): all three raise the held-out gold score well
# above the SFT model's +0.69 — GRPO to +0.90, Dr. GRPO to +0.88, PPO to +0.87 — at KLs of 1.1–1.7 nats per response
# (GRPO's the largest). Replies get a little shorter in all three (about 36 → 33–34 tokens over the run): in this
# world the gold judge rewards short, clean answers (each extra word costs 0.03), so the reward itself pulls toward
# brevity, and 30 rollouts are far too few for GRPO's length bias (a pull toward *longer* wrong answers) to show
# against it. The bias needs many wrong answers and many steps to accumulate; a verifier reward with no length term
# (lesson 07, RLVR on addition) is the place to look for it.
