# %% [markdown]
# # Lesson 11 · Preference data — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/11_preference_data_solutions.py`. It rebuilds the lesson's pairs and features (sampling
# and one forward pass per reply: the only costly part) and then fits linear heads, which take milliseconds. About
# 1 minute of CPU with `RLHFBOOK_FAST=1` (the lesson's fast sizes), about 5 minutes in full mode.
#
# The numbers quoted under "What you should see" come from one run of this file with RLHFBOOK_FAST=1 on 2 CPU cores
# (96 training prompts): expect a few points of difference in full mode or with other seeds.

# %%
import random

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from rlhfbook_lab import world
from rlhfbook_lab.equations.preferences import fit_linear_bradley_terry
from rlhfbook_lab.equations.reward_losses import pairwise_accuracy
from rlhfbook_lab.lesson import pick, seed_everything, use_style
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import (
    flip_labels,
    label_pairs,
    off_policy_pairs,
    on_policy_pairs,
    pairs_bayes_ceiling,
    subsample_pairs,
)
from rlhfbook_lab.lm.reward_model import RewardModel, reply_features

seed_everything(0)
use_style()
pd.set_option("display.width", 160)

sft_model, tok = load_model("sft-tiny")
train_rng = random.Random(0)
train_problems = [world.sample_problem(world.FAMILIES[i % 4], train_rng, "train") for i in range(pick(96, 400))]
test_problems = world.heldout_prompts(pick(48, 200), seed=0)
sampling = dict(num_samples=4, temperature=1.0, max_new_tokens=40)
on_train = on_policy_pairs(sft_model, tok, train_problems, seed=0, **sampling).rows
on_test = on_policy_pairs(sft_model, tok, test_problems, seed=1, **sampling).rows
off_train = off_policy_pairs(train_problems, pairs_per_prompt=None, seed=0).rows

# Exercise 4's data: as many prompts as the on-policy set has labelled pairs, 2 samples each, 1 pair per prompt.
# Its prompts are drawn after the lesson's, from the same training split.
wide_problems = [world.sample_problem(world.FAMILIES[i % 4], train_rng, "train") for i in range(len(on_train))]
wide = on_policy_pairs(sft_model, tok, wide_problems, num_samples=2, temperature=1.0, max_new_tokens=40, seed=2)

rm = RewardModel.from_causal_lm(sft_model, copy=False).eval()
texts = sorted({(r["prompt"], r[side]) for rows in (on_train, on_test, off_train, wide.rows) for r in rows
                for side in ("chosen", "rejected")})
features = reply_features(rm, tok, [p for p, _ in texts], [y for _, y in texts]).double().numpy()
where = {t: i for i, t in enumerate(texts)}
ALPHA = 1.0


def pair_features(rows):
    return (features[[where[r["prompt"], r["chosen"]] for r in rows]],
            features[[where[r["prompt"], r["rejected"]] for r in rows]])


def fit_head(rows):
    return fit_linear_bradley_terry(*pair_features(rows), alpha=ALPHA)


def accuracy(w, rows):
    chosen, rejected = pair_features(rows)
    return float(pairwise_accuracy(torch.from_numpy(chosen @ w), torch.from_numpy(rejected @ w)))


def relabel(rows, annotator, seed=0):
    """The same pairs, labelled again by another annotator (who may pick the other reply)."""
    candidates = [(r["prompt"], r["chosen"], r["rejected"], {}) for r in rows]
    return label_pairs(candidates, annotator, random.Random(f"relabel-{seed}")).rows


base_accuracy = accuracy(fit_head(on_train), on_test)
print(f"{len(on_train)} on-policy and {len(off_train)} off-policy training pairs; the lesson's on-policy head scores "
      f"{base_accuracy:.3f} on held-out on-policy pairs")
assert base_accuracy > 0.6, "the on-policy head ranks held-out on-policy pairs well above chance"

# %% [markdown]
# ## Exercise 1 · Mix the data
#
# Add off-policy pairs to the on-policy set, as a share of its size.

# %%
mix = {}
for share in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
    extra = subsample_pairs(off_train, min(len(off_train), int(share * len(on_train))), seed=0)
    mix[share] = accuracy(fit_head(on_train + extra), on_test)
print(pd.Series(mix, name="held-out on-policy accuracy").rename_axis("off-policy pairs per on-policy pair").round(3))
assert max(mix.values()) - min(mix.values()) < 0.06 and min(mix.values()) > 0.6, "no clear effect of mixing"

# What you should see: no clear effect. Between none and four times as many off-policy pairs the accuracy moves
# between 0.65 and 0.68, within the seed-to-seed noise of these sizes (a couple of points). Alone the off-policy pairs
# trained a head *below* chance on the policy's samples (0.46 in the lesson); mixed in, they neither teach the head
# what the on-policy pairs do not, nor override it: the head fits both, and the on-policy pairs decide how it orders
# the policy's samples. Off-policy data is cheap to add, but it has to be *about* the replies you will score to help.

# %% [markdown]
# ## Exercise 2 · A noisier annotator vs symmetric flips
#
# Relabel the training pairs with a gold-taste annotator four times noisier (noise scale s = 0.4), then find the flip
# rate ε whose noisy-label ceiling is the same, and compare both heads on the *gold*-labelled held-out pairs.

# %%
noisy_judge = world.Annotator("noisy", tau=0.4)
tau_rows = relabel(on_train, noisy_judge)
tau_ceiling = pairs_bayes_ceiling(tau_rows)
clean_ceiling = pairs_bayes_ceiling(on_train)
eps = 0.5 * (1 - (tau_ceiling - 0.5) / (clean_ceiling - 0.5))  # 0.5 + (1 − 2ε)(c − 0.5) = tau_ceiling
flip_accs = [accuracy(fit_head(flip_labels(on_train, eps, seed=s)[0]), on_test) for s in range(10)]
tau_accs = [accuracy(fit_head(relabel(on_train, noisy_judge, seed=s)), on_test) for s in range(10)]
print(f"ceiling of the training labels: gold s = 0.1 {clean_ceiling:.3f}; s = 0.4 {tau_ceiling:.3f}; "
      f"flips with ε = {eps:.2f} give the same")
print(f"held-out accuracy (gold labels): s = 0.4 labels {np.mean(tau_accs):.3f} ± {np.std(tau_accs):.3f}, "
      f"symmetric flips {np.mean(flip_accs):.3f} ± {np.std(flip_accs):.3f}, clean {base_accuracy:.3f}")
assert tau_ceiling < clean_ceiling and 0.1 < eps < 0.4, "a noisier annotator lowers the labels' ceiling"
assert abs(np.mean(tau_accs) - np.mean(flip_accs)) < 0.05, "noise of either kind at one ceiling costs about the same"
assert max(np.mean(tau_accs), np.mean(flip_accs)) < base_accuracy + 0.02, "and neither beats clean labels"

# What you should see: s = 0.4 takes the ceiling of the training labels from 0.90 to about 0.71, the same as flipping
# ε ≈ 0.24 of them, and the two heads end up about equally good (0.62 ± 0.04 vs 0.63 ± 0.02 here, against 0.65 with
# clean labels). The errors fall in different places — a noisier Bradley-Terry annotator errs mostly on close pairs,
# symmetric flips hit clear pairs as often — but for this head, at this size, the cost is about the same: a couple of
# points. The ceiling is a fair summary of random noise of either kind. Exercise 3 shows noise it does not summarise.

# %% [markdown]
# ## Exercise 3 · Another annotator's taste
#
# Label the training pairs with `friendly` or `terse` (lesson 10) and score on gold-labelled held-out pairs.

# %%
# Compare each annotator's labels with random flips of the gold labels *at the same rate of disagreement*.
taste = {}
for name in ("gold", "stickler", "friendly", "terse"):
    relabelled = [relabel(on_train, name, seed=s) for s in range(5)]
    disagree = np.mean([np.mean([r["chosen"] != g["chosen"] for r, g in zip(rows, on_train)]) for rows in relabelled])
    taste[name] = {"disagrees with the gold labels": disagree,
                   "head trained on their labels": np.mean([accuracy(fit_head(rows), on_test) for rows in relabelled]),
                   "gold labels, same share flipped at random": np.mean(
                       [accuracy(fit_head(flip_labels(on_train, disagree, seed=s)[0]), on_test) for s in range(10)])}
print(f"held-out accuracy on gold labels (clean gold labels: {base_accuracy:.3f}):")
print(pd.DataFrame(taste).T.round(3).to_string())
head, flips = "head trained on their labels", "gold labels, same share flipped at random"
assert taste["friendly"][head] < taste["friendly"][flips] - 0.02, "systematic disagreement costs more than flips"
assert all(abs(taste[name][head] - base_accuracy) < 0.03 for name in ("stickler", "terse")), "close-pair noise is cheap"
assert taste["friendly"]["disagrees with the gold labels"] > taste["gold"]["disagrees with the gold labels"]

# What you should see: the other annotators disagree with the gold labels on a fifth to over a quarter of the pairs
# (gold itself, relabelling, on about a seventh: its own noise), yet the cost differs. The stickler's and the terse
# annotator's labels train heads about as good as clean gold labels (within a point), no worse than the same share of
# random flips: they disagree mostly on close pairs, like the noise a Bradley-Terry annotator makes. The friendly
# annotator's labels cost clearly more than random flips at the same rate (0.57 vs 0.62 here): its disagreements all
# push one way, towards polite padding, so the head learns a *different* reward, not a noisier one. Systematic
# disagreement biases a reward model; random noise only slows it down.

# %% [markdown]
# ## Exercise 4 · Pairs per prompt
#
# The lesson labels every pair of 4 samples (6 correlated pairs per prompt). With the same number of labels, take
# one pair on each of many more prompts.

# %%
n_labels = [n for n in (50, 100, 200) if n < len(wide.rows)] + [min(len(on_train), len(wide.rows))]
budget = pd.DataFrame({
    "6 pairs per prompt": {n: np.mean([accuracy(fit_head(subsample_pairs(on_train, n, s)), on_test) for s in range(5)])
                           for n in n_labels},
    "1 pair per prompt": {n: np.mean([accuracy(fit_head(subsample_pairs(wide.rows, n, s)), on_test) for s in range(5)])
                          for n in n_labels}})
print(budget.round(3))
assert budget["1 pair per prompt"].iloc[-1] > budget["6 pairs per prompt"].iloc[-1], "spread labels over prompts"
fig, ax = plt.subplots()
for col in budget:
    ax.plot(budget.index, budget[col], "o-", label=col)
ax.set_xscale("log")
ax.set_xlabel("labelled pairs")
ax.set_ylabel("held-out pairwise accuracy")
ax.legend()
plt.show()

# What you should see: for a fixed number of labels, one pair on each of many prompts is about as good at 50 labels and
# better from about 100 on (0.69 vs 0.65 with 380 labels here). Pairs that share a prompt and a reply are correlated:
# the sixth pair of a prompt says less that is new than a first pair of a new prompt. Labelling all C(k, 2) pairs of k
# samples is still common because the *samples* are the expensive part (InstructGPT ranked K = 4–9 replies per prompt
# and used every pair, with a 1/C(K, 2) weight so a prompt's pairs count as one example).
