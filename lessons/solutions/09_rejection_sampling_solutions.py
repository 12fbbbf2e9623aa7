# %% [markdown]
# # Lesson 09 · Rejection sampling — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/09_rejection_sampling_solutions.py` (`RLHFBOOK_FAST=1` for the small sizes).
# Exercises 1–3 each run rejection-sampling fine-tuning beside a random control; exercise 4 is a pool and counting.

# %%
import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.equations.best_of_n import bon_kl_analytic
from rlhfbook_lab.equations.evaluation_stats import paired_difference
from rlhfbook_lab.lesson import pick, seed_everything
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.pool_scoring import gold_scorer, pool_bon_kl, reward_model_scorer, score_pool
from rlhfbook_lab.lm.reward_model import load_reward_model
from rlhfbook_lab.lm.sample_pool import sample_pool
from rlhfbook_lab.recipes.rejection_sampling import RSConfig, rejection_sampling

seed_everything(0)
rm, rm_tok = load_reward_model("rm-tiny")
P = pick(24, 96)  # prompts per round (and top-k overall's default budget)


def run(selector: str, rule: str = "top_per_prompt", budget: int = 0, scorer=None):
    model, tok = load_model("sft-tiny")
    cfg = RSConfig(rule=rule, selector=selector, budget=budget, rounds=pick(2, 3), prompts_per_round=P, n=8,
                   eval_prompts=pick(60, 200))
    cfg.sft.train.steps = pick(6, 24)
    return rejection_sampling(model, tok, cfg, scorer=scorer)


def versus(a, b, what="gold"):
    x, y = (a.heldout_gold, b.heldout_gold) if what == "gold" else (a.heldout_correct, b.heldout_correct)
    return paired_difference(x[-1], y[-1])


control = run("random")

# %% [markdown]
# ## Exercise 1 · A reward model as the selector
#
# `rm-tiny` learned style (openers, clean endings), not arithmetic. Selecting by it still keeps the model from
# drifting as far as the random control does (it prefers well-formed replies), but it keeps wrong answers as
# readily as right ones, so it gains less held-out gold than selection by gold.

# %%
by_rm = run("custom", scorer=reward_model_scorer(rm, rm_tok))
by_gold = run("gold")
d_rm, d_gold = versus(by_rm, control), versus(by_gold, control)
print(f"rm − random: {d_rm['diff']:+.3f} ± {d_rm['se']:.3f};  "
      f"gold − random: {d_gold['diff']:+.3f} ± {d_gold['se']:.3f}")
print("selected correctness, rm vs gold:", by_rm.history["selected/correct"], by_gold.history["selected/correct"])
assert np.mean(by_gold.history["selected/correct"]) > np.mean(by_rm.history["selected/correct"])

# %% [markdown]
# ## Exercise 2 · STaR: select by the verifier
#
# The verifier keeps right answers only, so its selected correctness matches gold's; among right replies it picks
# at random, so it misses gold's taste (the polite opener, no filler): the selected gold score is a little lower.

# %%
by_verifier = run("verifier")
d_v = versus(by_verifier, control)
print(f"verifier − random: {d_v['diff']:+.3f} ± {d_v['se']:.3f}")
print("selected gold, verifier vs gold:", by_verifier.history["selected/gold"], by_gold.history["selected/gold"])
assert d_v["diff"] > 0
assert np.mean(by_verifier.history["selected/gold"]) <= np.mean(by_gold.history["selected/gold"]) + 1e-9

# %% [markdown]
# ## Exercise 3 · A larger budget for top-k overall
#
# Twice the budget lets top-k overall reach more prompts (more distinct prompts per round) but also keeps more
# replies from the easy ones. Compare its held-out gold with the default budget's.

# %%
topk = run("gold", rule="top_k_overall")
topk2 = run("gold", rule="top_k_overall", budget=2 * P)
print("prompts covered, budget P vs 2P:", topk.history["selected/distinct_prompts"],
      topk2.history["selected/distinct_prompts"])
print("held-out gold, budget P vs 2P:", np.round(topk.history["heldout/gold"], 3),
      np.round(topk2.history["heldout/gold"], 3))
assert np.mean(topk2.history["selected/distinct_prompts"]) >= np.mean(topk.history["selected/distinct_prompts"])

# %% [markdown]
# ## Exercise 4 · Pool size and the empirical KL estimate
#
# With n = 8 fixed, the pool's estimate of KL(π_bon ‖ π) *rises* with N here: a small pool misses the rare
# better replies that best-of-8 would find (the downward bias of `empirical_policy`), and it stays below the
# analytic bound.

# %%
model, tok = load_model("sft-tiny")
problems = world.heldout_prompts(pick(20, 60), seed=2)
big = sample_pool(model, tok, problems, n=64, seed=0)
gold = score_pool(big, gold_scorer)
est = {N: pool_bon_kl([g[:N] for g in big.replies], gold[:, :N], [8])["exact"][0] for N in (16, 32, 64)}
print({N: round(float(v), 3) for N, v in est.items()}, "analytic:", round(bon_kl_analytic(8), 3))
assert all(v <= bon_kl_analytic(8) + 1e-12 for v in est.values())
assert est[64] >= est[16] - 0.05
