# %% [markdown]
# # Lesson 14 · Over-optimization — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/14_over_optimization_solutions.py`. The shipped run of the study (two RL runs, β = 0
# and β = 0.3, and the ensembles; `data/overopt/history.json`) answers exercises 1 and 3 (`RLHFBOOK_LIVE=1`
# reruns it, about two minutes of CPU in fast mode); exercises 2 and 4 train more RL runs and run in full mode
# only (`RLHFBOOK_FAST=0`).

# %%
import os

import numpy as np
import pandas as pd

from rlhfbook_lab.config import build
from rlhfbook_lab.lesson import FAST, seed_everything
from rlhfbook_lab.recipes.overoptimization import RECIPES, OveroptConfig, load_history, run_overoptimization

seed_everything(0)
if os.environ.get("RLHFBOOK_LIVE", "0") == "1":
    result = run_overoptimization(build(OveroptConfig, RECIPES, "fast" if FAST else "full", rl_betas=(0.0, 0.3)),
                                  log=None)
else:
    result = load_history()
plain, penalised = result["rl"][:2]

# %% [markdown]
# ## 1 · A KL penalty
#
# The penalised run stops at a smaller d: the penalty holds the policy near the SFT model, as early stopping would.
# Compare gold at matched d: interpolate the plain run's gold at the penalised run's final d.

# %%
def smooth(x, k=3):
    return np.convolve(x, np.ones(k) / k, mode="valid")


d_plain, g_plain = smooth(plain["d"]), smooth(plain["gold"])
d_pen, g_pen = smooth(penalised["d"]), smooth(penalised["gold"])
print(f"final d: β=0 {d_plain[-1]:.2f}, β={penalised['beta']} {d_pen[-1]:.2f}")
order = np.argsort(d_plain)
g_plain_at = float(np.interp(d_pen[-1], d_plain[order], g_plain[order]))
print(f"gold at the penalised run's final d: β={penalised['beta']} {g_pen[-1]:+.3f}, β=0 (interpolated) "
      f"{g_plain_at:+.3f}")
assert d_pen[-1] < d_plain[-1], "the KL penalty should keep the policy closer to the SFT model"
assert g_pen[-1] > g_plain[-1], "stopped earlier, the penalised run should end with more gold"

# %% [markdown]
# What you should see: the penalised run ends at a much smaller d with more gold than the unpenalised run's end, and
# at the same d the two runs' gold is close (within the rollouts' noise): the penalty moves *where the run stops*
# along about the same gold–KL curve, as Gao et al. found, rather than lifting the curve.
#
# ## 3 · An ensemble

# %%
ens = pd.DataFrame({rule: {"gold at n = 1": v["gold"][0], "best gold (any n)": max(v["gold"]),
                           "gold at n = N": v["gold"][-1]} for rule, v in result["ensembles"].items()}).T
print(ens.round(3))
assert np.allclose(ens["gold at n = 1"], ens["gold at n = 1"].iloc[0]), "n = 1 is the policy itself, whatever the rule"
kept = ens["gold at n = N"] - ens.loc["single", "gold at n = N"]
print("gold kept at n = N relative to one proxy:", kept.round(3).to_dict())

# %% [markdown]
# What to look for: four proxies trained on disjoint data make partly independent errors, so the reply *every* member
# overrates (mean, min) should be rarer than the reply one member overrates, and gold at large n should hold up
# better than with one proxy (Coste et al. 2024). In the shipped run it does not: at n = N every ensemble rule keeps
# *less* gold than one member alone (mean − λ·variance least). The members are heads on the same frozen features,
# blind to correctness in the same way, and with 60 pairs each much of their disagreement is noise: vetoing
# disagreement then vetoes good replies as often as bad ones. Try `ensemble_lambda` 0.1 and members with more
# pairs (a live run) to see when the pessimistic rules start to pay.
#
# ## 2 · A bigger proxy for RL, and 4 · the first half over seeds (full mode)

# %%
if not FAST:
    big = run_overoptimization(build(OveroptConfig, RECIPES, "full", proxy_sizes=(OveroptConfig().proxy_sizes[-1],)),
                               log=None)["rl"][0]
    print("largest proxy: gold peak", big["peak"], "fit", big["fit"])
    for seed in (1, 2):
        run = run_overoptimization(build(OveroptConfig, RECIPES, "full", seed=seed), log=None)["rl"][0]
        print(f"seed {seed}: first half {run['first_half']}")
else:
    print("fast mode: exercises 2 and 4 run with RLHFBOOK_FAST=0")
