# %% [markdown]
# # Lesson 10 · The nature of preferences — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/10_preferences_solutions.py`. It rebuilds the lesson's arena (a few seconds of
# generation) and then only fits and counts: about 30 s of CPU in full mode, 15 s with `RLHFBOOK_FAST=1`.
#
# The numbers quoted under "What you should see" come from one run of this file in full mode on 2 CPU cores.

# %%
import random

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rlhfbook_lab import world
from rlhfbook_lab.equations.agreement import find_preference_cycles, kendall_tau
from rlhfbook_lab.equations.preferences import comparisons_from_pairs, elo_ratings, fit_bradley_terry, strengths_to_elo
from rlhfbook_lab.lesson import pick, seed_everything, use_style
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import STYLES, off_policy_pairs, styled_replies

seed_everything(0)
use_style()

sft_model, tok = load_model("sft-tiny")
base_model, _ = load_model("base-tiny")
problems = world.heldout_prompts(pick(48, 200), seed=0)
prompts = [p.prompt for p in problems]
replies = {"base-tiny greedy": generate(base_model, tok, prompts, max_new_tokens=40, greedy=True).texts,
           "sft-tiny greedy": generate(sft_model, tok, prompts, max_new_tokens=40, greedy=True).texts}
for t in (0.7, 1.0, 1.5):
    replies[f"sft-tiny T={t}"] = generate(sft_model, tok, prompts, max_new_tokens=40, temperature=t, seed=0).texts
arena_styles = ("reference", "opener", "polite_pileup", "wrong_answer")
arena = off_policy_pairs(problems, replies=replies, styles=arena_styles, pairs_per_prompt=None, seed=0)
comparisons, ties, systems = comparisons_from_pairs(arena.rows)
n = len(systems)
rng = random.Random("arena-styles")
styled = [styled_replies(p, rng, arena_styles) for p in problems]
gold_mean = np.array([np.mean([world.gold_score(p, (replies[s][k] if s in replies else styled[k][s]), allow_empty=True)
                               for k, p in enumerate(problems)]) for s in systems])
theta = fit_bradley_terry(comparisons, n, ties=ties)
print(f"{len(comparisons)} battles between {n} systems; Kendall τ of the full fit with gold: "
      f"{kendall_tau(theta, gold_mean):.2f}")
assert kendall_tau(theta, gold_mean) >= 0.9, "the full arena recovers the gold ordering (within a swap)"

# %% [markdown]
# ## Exercise 1 · How many battles does an arena need?
#
# Subsample the battles, refit, and compare with the gold ordering. Small samples can leave a system unbeaten (its
# maximum-likelihood strength is then infinite), so the fits use a small L2 penalty α = 0.01.

# %%
sizes = [10, 30, 100, 300, len(comparisons)]
rng_np = np.random.default_rng(0)
taus, confused = {}, pd.Series(0, index=pd.MultiIndex.from_tuples([], names=["a", "b"]), dtype=int)
swaps = {}
for size in sizes:
    taus[size] = []
    for _ in range(pick(10, 50)):
        idx = rng_np.choice(len(comparisons), size, replace=False)
        fit = fit_bradley_terry(comparisons[idx], n, alpha=0.01)
        taus[size].append(kendall_tau(fit, gold_mean))
        if size == 100:  # which pairs of systems does a 100-battle arena order wrongly?
            for i in range(n):
                for j in range(i + 1, n):
                    if (fit[i] - fit[j]) * (gold_mean[i] - gold_mean[j]) < 0:
                        key = tuple(sorted((systems[i], systems[j])))
                        swaps[key] = swaps.get(key, 0) + 1
curve = pd.DataFrame({s: {"mean τ": np.mean(v), "sd": np.std(v)} for s, v in taus.items()}).T
print(curve.round(3))
assert curve["mean τ"].iloc[-1] > curve["mean τ"].iloc[0] + 0.2, "more battles, a truer ordering"
assert curve.loc[300, "mean τ"] > 0.8, "a few hundred battles order the systems almost perfectly"
print("pairs most often swapped with 100 battles:", sorted(swaps.items(), key=lambda kv: -kv[1])[:4])
fig, ax = plt.subplots()
ax.errorbar(curve.index, curve["mean τ"], yerr=curve["sd"], fmt="o-", capsize=3)
ax.set_xscale("log")
ax.set_xlabel("battles (log scale)")
ax.set_ylabel("Kendall τ with the gold ordering")
ax.set_title("A few hundred battles order 9 systems almost perfectly")
plt.show()

# What you should see (full mode): τ climbs from about 0.56 with 10 battles (most systems met once or never) to 0.83
# with 100, 0.89 with 300 and 0.94 with all 6,449 (one swap left, between systems whose gold means differ by less
# than 0.01). The pairs swapped first are the close ones: sft-tiny T=0.7, sft-tiny T=1.0 and polite_pileup (gold
# means 0.55, 0.48, 0.55), and sft-tiny T=0.7 vs greedy. The extremes (opener, base-tiny) are placed right from the
# start. An arena's resolution is set by the closest pairs you care about, not by the number of systems.

# %% [markdown]
# ## Exercise 2 · Elo's knobs
#
# (a) Average K = 32 Elo over many random orders; (b) K = 4 on one pass; (c) K = 4 with the battles replayed ten
# times (a new random order each pass). Compare each with the Bradley-Terry fit on the Elo scale.

# %%
bt_elo = strengths_to_elo(theta)
orders = [rng_np.permutation(len(comparisons)) for _ in range(pick(50, 200))]
avg32 = np.mean([elo_ratings(comparisons[o], n, ties=ties[o], k_factor=32) for o in orders], axis=0)
one_pass_4 = elo_ratings(comparisons[orders[0]], n, ties=ties[orders[0]], k_factor=4)
replay = np.concatenate([rng_np.permutation(len(comparisons)) for _ in range(10)])
ten_pass_4 = elo_ratings(comparisons[replay], n, ties=ties[replay], k_factor=4)
elo_table = pd.DataFrame({"BT (Elo scale)": bt_elo, "K=32, mean over orders": avg32, "K=4, one pass": one_pass_4,
                          "K=4, ten passes": ten_pass_4}, index=systems).sort_values("BT (Elo scale)")
print(elo_table.round(0))
off_bt = {col: np.max(np.abs(elo_table[col] - elo_table["BT (Elo scale)"])) for col in elo_table.columns[1:]}
for col, off in off_bt.items():
    print(f"{col:24} max |Elo − BT| = {off:.0f} points")
assert off_bt["K=32, mean over orders"] < 40 and off_bt["K=4, ten passes"] < 40, "averaging or replaying lands near BT"
assert off_bt["K=4, one pass"] > 2 * max(off_bt["K=32, mean over orders"], off_bt["K=4, ten passes"]), \
    "K = 4 on one pass has not travelled far enough from 1500"

# What you should see: averaging K = 32 over orders lands within about 15 points of the fit (the order noise averages
# out, a small bias remains); K = 4 on one pass is 92 points off at the extremes in full mode and 273 in fast mode (it
# has not travelled far enough from 1500 in the battles each system played); ten passes at K = 4 come within about 15
# points. Each costs compute, and each replaces "what happened lately" by "what happened on average": for a model
# whose quality changes (a live system being updated), a single online pass with a moderate K is what tracks it; for
# frozen checkpoints, the Bradley-Terry fit answers the question directly.

# %% [markdown]
# ## Exercise 3 · Add gold to the crowd
#
# Votes of four annotators can split 2–2: a tie is not a majority, so it cannot close a cycle. Pooled probabilities
# (the mean of the four annotators' P(a ≻ b)) never tie exactly.

# %%
style_names = list(STYLES)
style_rng = random.Random("cycles")
cycle_problems = world.heldout_prompts(pick(60, 300), seed=1)
count = {"3 people, votes": 0, "4 with gold, votes": 0, "4 with gold, pooled P": 0, "3 people, pooled P": 0}
margins = []
for problem in cycle_problems:
    reps = styled_replies(problem, style_rng, style_names)
    u = {name: np.array([ann.utility(problem, reps[s]) for s in style_names]) for name, ann in world.ANNOTATORS.items()}
    votes = {name: (x[:, None] > x[None, :]).astype(float) for name, x in u.items()}
    probs = {name: 1 / (1 + np.exp(-(x[:, None] - x[None, :]) / world.ANNOTATORS[name].tau)) for name, x in u.items()}
    for key, names, kind in (("3 people, votes", ("stickler", "friendly", "terse"), votes),
                             ("4 with gold, votes", tuple(world.ANNOTATORS), votes),
                             ("4 with gold, pooled P", tuple(world.ANNOTATORS), probs),
                             ("3 people, pooled P", ("stickler", "friendly", "terse"), probs)):
        m = sum(kind[name] for name in names) / len(names)
        np.fill_diagonal(m, 0)
        cycles = find_preference_cycles(m)
        count[key] += bool(cycles)
        if key == "4 with gold, pooled P":
            margins += [min(m[a, b], m[b, c], m[c, a]) for a, b, c in cycles]
print({k: f"{v / len(cycle_problems):.0%} of prompts" for k, v in count.items()})
if margins:
    print(f"pooled-probability cycles of four: majorities of {min(margins):.3f}–{max(margins):.3f}")
assert count["3 people, votes"] > 0.3 * len(cycle_problems), "the three people's votes cycle on many prompts"
assert count["4 with gold, votes"] < count["3 people, votes"], "gold as a fourth voter breaks cycles (2–2 splits)"
assert count["4 with gold, pooled P"] > count["3 people, pooled P"], "the aggregation rule changes which crowd cycles"
assert margins and max(margins) < 0.55, "pooled-probability cycles have razor-thin majorities"

# What you should see: the three people's votes cycle on about half the prompts (52 %); adding gold as a fourth voter
# removes every cycle here. With four voters an edge of a cycle needs 3 of 4 votes, and gold sides with the
# stickler on the edges that made the cycle, turning a 2–1 majority into a 2–2 split. Pooled probabilities behave
# differently again: the three people's mean probabilities have no cycle here (strong preferences of one person
# outweigh weak ones of two), while the four annotators' mean has cycles on about a quarter of the prompts (27 %), with
# majorities of only 0.511: so thin that thousands of labels per pair would be needed to see them. Whether a crowd
# is cyclic depends on the aggregation rule as much as on the crowd: Arrow's theorem in practice.

# %% [markdown]
# ## Exercise 4 · Ties
#
# Davidson's model lets an annotator call a tie with probability ∝ ν·sqrt(π_a π_b): likeliest between replies of
# equal utility. `ties="keep"` keeps them as label-0.5 pairs; `comparisons_from_pairs` turns those into tie rows.

# %%
tie_judge = world.Annotator("gold-ties", tie_strength=1.0)
arena_ties = off_policy_pairs(problems, replies=replies, styles=arena_styles, pairs_per_prompt=None,
                              annotator=tie_judge, ties="keep", seed=0)
comp_t, ties_t, systems_t = comparisons_from_pairs(arena_ties.rows, items=systems)
theta_t = fit_bradley_terry(comp_t, n, ties=ties_t)
tie_rows = [r for r in arena_ties.rows if r["label"] == 0.5]
tie_gaps = [abs(world.gold_score(r["prompt"], r["chosen"]) - world.gold_score(r["prompt"], r["rejected"]))
            for r in tie_rows]
pairs = pd.Series([" vs ".join(sorted((r["chosen_source"], r["rejected_source"]))) for r in tie_rows])
print(f"{len(tie_rows)} of {len(arena_ties.rows)} battles were ties; "
      f"median gold gap of a tie {np.median(tie_gaps):.2f}")
print(pairs.value_counts().head(5))
print(pd.DataFrame({"BT, no ties": theta, "BT, ties kept": theta_t}, index=systems).sort_values("BT, no ties").round(2))
print(f"Kendall τ between the two rankings: {kendall_tau(theta, theta_t):.2f}")
assert 0 < len(tie_rows) < 0.2 * len(arena_ties.rows), "about one battle in eleven is a tie"
assert np.median(tie_gaps) < 0.5, "ties come from close replies"
assert kendall_tau(theta, theta_t) >= 0.9, "keeping ties does not change the ranking"
assert np.ptp(theta_t) < np.ptp(theta), "a tie counts half a win each way: the strengths shrink towards the middle"

# What you should see: about one battle in eleven ends in a tie (588 of 6,449 in full mode), between replies a median
# 0.2 gold points apart: Davidson's tie probability is a third for equal replies and fades as the gap grows, so the
# commonest ties are opener vs reference (0.2 apart). The ranking does not change (τ = 1.00), but the strengths shrink
# towards the middle (opener 3.36 → 2.68, base-tiny −3.66 → −3.17): a tie counts as half a win each way, which pulls
# the two systems' strengths together.
