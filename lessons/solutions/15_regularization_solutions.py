# %% [markdown]
# # Lesson 15 · Regularization — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/15_regularization_solutions.py`. Exercises 1–5 are bandits and closed forms (about 10 s
# of CPU); exercise 6 trains the language model twice with `RLConfig.fast("ppo")` (about 100 s of CPU). With
# `RLHFBOOK_FAST=1` (how the tests run this file) exercise 6 reads those two runs from a shipped result instead,
# `data/solutions/15_sft_mixing.json`, written by this file's live run with `--write`:
# `OMP_NUM_THREADS=1 python lessons/solutions/15_regularization_solutions.py --write` (`RLHFBOOK_LIVE=1` trains in
# fast mode too).
#
# The numbers quoted under "What you should see" come from one run of this file (seeded, so they repeat).

# %%
import dataclasses
import math

import numpy as np
import pandas as pd
import torch

from rlhfbook_lab.equations.bandit import BanditConfig, optimal_policy, optimal_policy_forward_kl, train_bandit
from rlhfbook_lab.equations.kl import ESTIMATORS, AdaptiveKLController, categorical_kl, kl_estimate
from rlhfbook_lab.lesson import seed_everything

seed_everything(0)
pd.set_option("display.width", 160)
pd.set_option("display.precision", 4)
pd.set_option("display.max_columns", 20)
cfg = BanditConfig()
R = torch.tensor(cfg.rewards, dtype=torch.float64)
REF = torch.tensor(cfg.ref_probs, dtype=torch.float64)


def exact_point(probs):
    """(KL(π‖π_ref), E_π[r], KL(π_ref‖π)) of a bandit policy."""
    return (categorical_kl(probs, REF, from_logits=False).item(), (probs * R).sum().item(),
            categorical_kl(REF, probs, from_logits=False).item())


# %% [markdown]
# ## Exercise 1 · Schulman's Gaussian table
#
# The policy is π = N(0, 1) (samples come from it), the reference π_ref = N(μ, 1); KL(π‖π_ref) = μ²/2. The package's
# estimators only need the two log-densities of each sample, in the order (policy, reference).

# %%
def gaussian_logpdf(x, mean):
    return -0.5 * (x - mean) ** 2 - 0.5 * math.log(2 * math.pi)


g = torch.Generator().manual_seed(0)
rows = []
for mu in (0.1, 1.0):
    x = torch.randn(2_000_000, generator=g, dtype=torch.float64)  # x ∼ π = N(0, 1)
    logp, ref_logp = gaussian_logpdf(x, 0.0), gaussian_logpdf(x, mu)
    true_kl = mu**2 / 2
    for name in ESTIMATORS:
        k = kl_estimate(logp, ref_logp, name)
        rows.append({"μ": mu, "true KL": true_kl, "estimator": name,
                     "relative bias": (k.mean().item() - true_kl) / true_kl, "relative std": k.std().item() / true_kl})
table1 = pd.DataFrame(rows).set_index(["μ", "estimator"])
print(table1)
assert abs(table1.loc[(1.0, "k2"), "relative bias"] - 0.25) < 0.02, "k2's relative bias is μ²/4: +25 % at μ = 1"
assert all(abs(table1.loc[(mu, k), "relative bias"]) < 0.05 for mu in (0.1, 1.0) for k in ("k1", "k3")), "unbiased"
assert all(table1.loc[(mu, "k3"), "relative std"] < table1.loc[(mu, "k1"), "relative std"] for mu in (0.1, 1.0))

# What you should see (Schulman's note reports the same): here log_ratio = μx − μ²/2 exactly, so
# E[k2] = ½·E[log_ratio²] = μ²/2 + μ⁴/8: a relative bias of μ²/4, +0.25 % at μ = 0.1 (measured +0.19 %) and +25 % at
# μ = 1 (measured +25.1 %). At μ = 0.1 (KL 0.005) k1's relative std is 20 and k3's 1.42; at μ = 1 (KL 0.5) they are
# 2.0 and 1.7: k3 still beats k1, but by far less than near the reference. k1 and k3 stay unbiased throughout.

# %% [markdown]
# ## Exercise 2 · When is k2 an under-estimate?
#
# Per sample, with x = log_ratio = log(π_ref/π): k3 − k2 = eˣ − 1 − x − x²/2 =: h(x), and E_π[k3] = KL, so
# exactly E_π[k2] − KL = −E_π[h(x)]. h(x) = x³/6 + x⁴/24 + … has the sign of x and grows like eˣ for x > 0: k2
# under-estimates when tokens the *reference* strongly prefers (x ≫ 0) carry enough weight under the policy. We
# search random categorical pairs, with the expectations computed exactly by enumeration.
#
# %%
g = torch.Generator().manual_seed(1)
found = None
for trial in range(10_000):
    pi = torch.softmax(2 * torch.randn(6, generator=g, dtype=torch.float64), -1)
    ref = torch.softmax(2 * torch.randn(6, generator=g, dtype=torch.float64), -1)
    x = torch.log(ref / pi)
    kl_exact = categorical_kl(pi, ref, from_logits=False).item()
    k2_mean = (pi * 0.5 * x**2).sum().item()
    if k2_mean < kl_exact:
        found = (trial, pi, ref, x, kl_exact, k2_mean)
        break
trial, pi, ref, x, kl_exact, k2_mean = found
h = torch.expm1(x) - x - x**2 / 2
print(f"trial {trial}: π = {np.round(pi.numpy(), 3)}, π_ref = {np.round(ref.numpy(), 3)}")
print(f"KL = {kl_exact:.4f}, E[k2] = {k2_mean:.4f} (under by {kl_exact - k2_mean:.4f}); "
      f"E_π[h(x)] = {(pi * h).sum():.4f}")
print("per token: x =", np.round(x.numpy(), 2), " π·h(x) =", np.round((pi * h).numpy(), 3))
seen = 0
for _ in range(2000):
    a = torch.softmax(2 * torch.randn(6, generator=g, dtype=torch.float64), -1)
    b = torch.softmax(2 * torch.randn(6, generator=g, dtype=torch.float64), -1)
    seen += int((a * 0.5 * torch.log(b / a) ** 2).sum() < categorical_kl(a, b, from_logits=False))
print(f"share of random pairs where k2 under-estimates: {seen / 2000:.0%}")
assert k2_mean < kl_exact and trial < 100 and 0.02 < seen / 2000 < 0.4, "k2 under-estimates on a minority of pairs"
assert abs((pi * h).sum().item() - (kl_exact - k2_mean)) < 1e-9, "E[k2] − KL = −E_π[h(x)] exactly"

# What you should see: the first under-estimate turns up within ten trials (about one random pair in eight).
# In it the policy puts ~1 % on two tokens the reference gives 13 % and 43 % (x ≈ 2.7 and 3.4): their π·h(x) terms
# (≈ 0.07 and 0.28) outweigh the negative ones, although E_π[x³] is negative: the third-order expansion alone
# would have predicted the wrong sign. The lesson's pair sits on the other side: there k2 over-estimates by ~10 %.

# %% [markdown]
# ## Exercise 3 · The (G−1)/G correction
#
# Dr. GRPO's advantage r_i − mean(r) includes r_i in the mean, so its expected policy gradient is (G−1)/G·∇E[r]: a
# KL loss of weight β then acts like β·G/(G−1).

# %%
rows = []
for group_size in (2, 4, 16):
    run_cfg = dataclasses.replace(cfg, group_size=group_size, grpo_scale_rewards=False, grpo_kl_estimator="k2",
                                  num_steps=400)
    final = torch.tensor(train_bandit(run_cfg, "grpo")["policy/probs"][-1], dtype=torch.float64)
    corrected = optimal_policy(R, REF, cfg.beta * group_size / (group_size - 1))
    rows.append({"G": group_size, "β_eff": cfg.beta * group_size / (group_size - 1),
                 "final π": np.round(final.numpy(), 3),
                 "max |π − π*(β_eff)|": (final - corrected).abs().max().item(),
                 "max |π − π*(β)|": (final - optimal_policy(R, REF, cfg.beta)).abs().max().item()})
print(pd.DataFrame(rows))
assert all(row["max |π − π*(β_eff)|"] < row["max |π − π*(β)|"] for row in rows), "β·G/(G−1) predicts the fixed point"

# What you should see: with G = 2 the trained policy is much closer to π* at β_eff = 0.4 (max error 0.07: a group of
# two is a noisy gradient) than to π* at β = 0.2 (0.20): the group of two halves the reward gradient. At G = 4 the
# errors are 0.04 and 0.14; at G = 16 the two predictions nearly coincide (0.01 and 0.03).
# RLOO's baseline for sample i is the mean of the *other* samples, independent of y_i, so E[A_i ∇log π(y_i)] is
# exactly ∇E[r]: no shrinkage, no correction. (REINFORCE with the batch mean shrinks too, but it carries the KL in
# the reward, which shrinks by the same factor, so its fixed point does not move.)

# %% [markdown]
# ## Exercise 4 · Both regularisers at once (PPO-ptx)

# %%
beta, lam = 0.2, 0.2
runs = {"KL penalty β": dataclasses.replace(cfg, beta=beta),
        "SFT mixing λ (β = 0)": dataclasses.replace(cfg, beta=0.0, sft_coef=lam),
        "both": dataclasses.replace(cfg, beta=beta, sft_coef=lam)}
rows = {}
for name, run_cfg in runs.items():
    final = torch.tensor(train_bandit(run_cfg, "rloo")["policy/probs"][-1], dtype=torch.float64)
    kl_rev, reward, kl_fwd = exact_point(final)
    rows[name] = {"π": np.round(final.numpy(), 3), "KL(π‖π_ref)": kl_rev, "E[r]": reward, "KL(π_ref‖π)": kl_fwd}
coefs = np.logspace(-3, 2, 400)
reverse = np.array([exact_point(optimal_policy(R, REF, b)) for b in coefs])[::-1]
forward = np.array([exact_point(optimal_policy_forward_kl(R, REF, c)) for c in coefs])[::-1]
table = pd.DataFrame(rows).T
kl_rev, kl_fwd = table["KL(π‖π_ref)"].astype(float), table["KL(π_ref‖π)"].astype(float)
table["reverse frontier at its KL(π‖π_ref)"] = np.interp(kl_rev, reverse[:, 0], reverse[:, 1])
table["forward frontier at its KL(π_ref‖π)"] = np.interp(kl_fwd, forward[:, 2], forward[:, 1])
print(table)
others = [name for name in table.index if name != "both"]
assert kl_rev["both"] < kl_rev[others].min() and kl_fwd["both"] < kl_fwd[others].min(), "closer in both divergences"
assert table.loc["both", "E[r]"] < table.loc[others, "E[r]"].astype(float).min(), "and earns less"
assert all(0 <= table.loc["both", col] - table.loc["both", "E[r]"] < 0.05
           for col in ("reverse frontier at its KL(π‖π_ref)", "forward frontier at its KL(π_ref‖π)")), "just inside"

# What you should see: the combined run is much closer to π_ref in *both* divergences than either regulariser alone
# (KL(π‖π_ref) ≈ 0.47 and KL(π_ref‖π) ≈ 0.40, against 1.27/1.49 for the penalty and 1.51/1.10 for SFT mixing) and
# earns less (E[r] 0.60 against 0.82). It lies just inside both frontiers (by 0.002 and 0.007): optimal for neither
# divergence alone, but near the reference the two frontiers almost touch, so it loses little to either. Two
# regularisers of weight 0.2 act like one stronger one; that is the price of PPO-ptx's insurance.

# %% [markdown]
# ## Exercise 5 · An adaptive β on the closed form

# %%
target, n_steps, horizon = 0.5, 256, 10_000
ctl = AdaptiveKLController(init_kl_coef=0.02, target=target, horizon=horizon)
trace = []
for update in range(5_000):
    kl_now = categorical_kl(optimal_policy(R, REF, ctl.value), REF, from_logits=False).item()
    trace.append((update, ctl.value, kl_now))
    if abs(kl_now / target - 1) < 0.05:
        break
    ctl.update(kl_now, n_steps)
print(f"within 5 % of the target after {trace[-1][0]} updates: β = {trace[-1][1]:.4f}, KL = {trace[-1][2]:.4f}")

lo, hi = 1e-3, 10.0  # KL(π*_β‖π_ref) falls as β grows: bisect in log β for KL = target
for _ in range(100):
    mid = math.sqrt(lo * hi)
    if categorical_kl(optimal_policy(R, REF, mid), REF, from_logits=False).item() > target:
        lo = mid
    else:
        hi = mid
print(f"solving KL(π*_β‖π_ref) = {target} directly: β = {hi:.4f}")
assert abs(trace[-1][2] / target - 1) < 0.05 and trace[-1][0] > 100, "slow, but it reaches the 5 % band"
assert abs(trace[-1][1] / hi - 1) < 0.05, "the controller's β lands near the exact answer"

# What you should see: each update moves β by at most ±0.2·256/10,000 = ±0.5 %, so climbing from 0.02 takes several
# hundred updates (575 here) — the controller is deliberately slow, reacting to a KL averaged over many batches rather
# than to the noise of one. It stops at β ≈ 0.356 (KL 0.525, just inside the 5 % band); the exact answer is
# β ≈ 0.365.

# %% [markdown]
# ## Exercise 6 · SFT mixing on the language model
#
# Two fast PPO runs from `sft-tiny`, identical but for `sft_coef`. Besides the gold score and the KL we measure the
# loss the SFT term optimises: the NLL of the held-out SFT conversations (`sft.eval_loss`).

# %%
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

from rlhfbook_lab.lesson import FAST  # noqa: E402
from rlhfbook_lab.lm.data import build_sft_dataset  # noqa: E402
from rlhfbook_lab.lm.models import load_model  # noqa: E402
from rlhfbook_lab.lm.shipped_data import load_instruction_file  # noqa: E402
from rlhfbook_lab.paths import DATA_DIR  # noqa: E402
from rlhfbook_lab.trainers.rl import RLConfig, train_rl  # noqa: E402
from rlhfbook_lab.trainers.sft import SFTConfig, eval_loss  # noqa: E402

SHIPPED = DATA_DIR / "solutions" / "15_sft_mixing.json"
WRITE = "--write" in sys.argv[1:]
if FAST and not WRITE and os.environ.get("RLHFBOOK_LIVE", "0") != "1":
    rows = json.loads(SHIPPED.read_text())["rows"]
    print(f"(read from {SHIPPED.relative_to(DATA_DIR.parent)}; RLHFBOOK_LIVE=1 trains the two runs instead)")
else:
    sft_model, tok = load_model("sft-tiny")
    heldout_sft = build_sft_dataset(tok, load_instruction_file("heldout"), SFTConfig().max_length).dataset
    rows = {"sft-tiny": {"held-out gold": None, "KL per response (k3, last 3 rollouts)": 0.0,
                         "held-out SFT NLL": float(eval_loss(sft_model, heldout_sft, tok.pad_token_id))}}
    for coef in (0.0, 1.0):
        policy, _ = load_model("sft-tiny")
        policy, h = train_rl(policy, tok, RLConfig.fast("ppo", sft_coef=coef), progress=False)
        rows["sft-tiny"]["held-out gold"] = float(h["eval/gold_score"][0])
        rows[f"PPO, sft_coef = {coef:g}"] = {
            "held-out gold": float(h["eval/gold_score"][-1]),
            "KL per response (k3, last 3 rollouts)": float(np.mean(h["kl/seq_k3"][-3:])),
            "held-out SFT NLL": float(eval_loss(policy, heldout_sft, tok.pad_token_id))}
    if WRITE:
        SHIPPED.parent.mkdir(parents=True, exist_ok=True)
        SHIPPED.write_text(json.dumps({"made_by": "python lessons/solutions/15_regularization_solutions.py --write",
                                       "rows": rows}, indent=1) + "\n")
table6 = pd.DataFrame(rows).T.astype(float)
print(table6)
base_row, plain, mixed = table6.loc["sft-tiny"], table6.loc["PPO, sft_coef = 0"], table6.loc["PPO, sft_coef = 1"]
assert plain["held-out gold"] > base_row["held-out gold"] and mixed["held-out gold"] > base_row["held-out gold"], \
    "PPO raises the held-out gold score, with and without the SFT term"
assert mixed["held-out gold"] < plain["held-out gold"], "the SFT term costs some of the gold gain"
assert mixed["KL per response (k3, last 3 rollouts)"] < 0.5 * plain["KL per response (k3, last 3 rollouts)"], \
    "the SFT term keeps the policy much nearer the reference"
assert base_row["held-out SFT NLL"] < mixed["held-out SFT NLL"] < plain["held-out SFT NLL"], \
    "RL raises the held-out SFT loss; the SFT term holds back part of the rise"

# What you should see: PPO raises the held-out gold score from +0.68 to +0.75 without the SFT term and to +0.72 with
# it. The other two columns are the point. Without the SFT term the policy ends 0.95 nats per response from the
# reference and the held-out SFT loss rises from the SFT model's 0.182 to 0.223 nats/token; with it the KL is 0.30
# and the SFT loss 0.200. The SFT term protects exactly what it optimises — the likelihood of the SFT data, a
# forward-KL quantity — and, through it, much of the reverse KL too; here it costs some of the gold gain, because
# the gain is itself a move away from the SFT model (the polite opener, dropped filler).
# (One seed, 100 prompts; `RLConfig.fast` is a cut-down preset, so the digits move if it changes: then rerun
# `--write`.)
