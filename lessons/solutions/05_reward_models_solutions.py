# %% [markdown]
# # Lesson 05 · Reward models — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/05_reward_models_solutions.py`. Exercises 1–3 are tensor arithmetic, 4–6 score the
# held-out pairs with the shipped `rm-tiny` (about 30 s of CPU; `RLHFBOOK_FAST=1` scores a 400-pair subset), and 7
# trains a reward model (about 4 min on 2 cores). With `RLHFBOOK_FAST=1` (how the tests run this file) exercise 7
# reads that training's scores from a shipped result instead, `data/solutions/05_minimal_pairs.json`, written by
# `RLHFBOOK_FAST=1 OMP_NUM_THREADS=1 python lessons/solutions/05_reward_models_solutions.py --write` (fast mode's
# 100 + 60 steps, about 3 CPU-min); `RLHFBOOK_LIVE=1` trains in fast mode instead of reading it.

# %%
import math

import numpy as np
import pandas as pd
import torch

from rlhfbook_lab import world
from rlhfbook_lab.equations.reward_losses import bradley_terry_loss, instructgpt_pairwise_loss, plackett_luce_loss
from rlhfbook_lab.lesson import pick, seed_everything
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import knowledge_reach, pair_kind, pairs_bayes_ceiling, subsample_pairs
from rlhfbook_lab.lm.reward_model import load_reward_model, score_replies
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.trainers.reward import evaluate_reward_model

seed_everything(0)
pd.set_option("display.width", 160)

# %% [markdown]
# ## Exercise 1 · The margin loss by hand
#
# With gap d = r_c − r_r = 1: BT loss = −log σ(1) = log(1 + e^{−1}) ≈ 0.3133; with margin m = 2 the loss is
# −log σ(1 − 2) = log(1 + e) ≈ 1.3133. The gradient with respect to d is −σ(−d) resp. −σ(m − d): the plain loss still
# pushes with 0.269, the margin loss with 0.731 — it treats a pair that is ordered but not by *enough* almost like a
# wrongly ordered one, and relaxes only once d exceeds m.

# %%
d = torch.tensor([1.0], requires_grad=True)
plain = bradley_terry_loss(d, torch.zeros(1))
plain.backward()
g_plain = float(d.grad)
d.grad = None
with_margin = bradley_terry_loss(d, torch.zeros(1), margin=2.0)
with_margin.backward()
g_margin = float(d.grad)
print(f"BT: {float(plain.detach()):.4f} (by hand {math.log1p(math.exp(-1)):.4f}), gradient {g_plain:+.4f}")
print(f"margin 2: {float(with_margin.detach()):.4f} (by hand {math.log1p(math.e):.4f}), gradient {g_margin:+.4f}")
assert abs(float(plain.detach()) - math.log1p(math.exp(-1))) < 1e-6
assert abs(float(with_margin.detach()) - math.log1p(math.e)) < 1e-6

# %% [markdown]
# Why no margin on a tie: a tie (label ½) says the two replies are equally good; its loss pulls r_c and r_r
# *together* (½ of the loss in each order). A margin demands a minimum *gap* in a given direction, which contradicts
# the label: with a margin the tie's optimum would no longer be r_c = r_r.

# %% [markdown]
# ## Exercise 2 · Plackett-Luce vs pairs

# %%
best_first = torch.tensor([[2.0, 1.0, 0.0]])
reversed_ = best_first.flip(1)  # the same replies, ranked the other way round
rows = {}
for name, s in (("ranked as scored", best_first), ("ranked in reverse", reversed_)):
    rows[name] = {"Plackett-Luce": float(plackett_luce_loss(s)),
                  "InstructGPT pairs (1/C(3,2) each)": float(instructgpt_pairwise_loss(s))}
print(pd.DataFrame(rows).T.round(4))

# %% [markdown]
# Plackett-Luce is the likelihood of the *whole* ranking as one event (pick the best of three, then the best of
# two): 0.7209 when the scores agree with the ranking and 3.7209 when they are reversed. The InstructGPT loss is the
# mean of −log σ over the three implied pairs, treated as independent (a composite likelihood): 0.2512 and 1.5845 —
# averaged per pair, so on another scale, and it counts the (best, worst) pair as separate evidence although the two
# adjacent pairs already imply it.

# %% [markdown]
# ## Exercise 3 · The ceiling by hand
#
# One filler sentence of 4 words costs 4 × 0.03 = 0.12 gold points, so p = σ(0.12 / 0.1) = σ(1.2) ≈ 0.769: the
# annotator picks the shorter reply 77 % of the time, and no model can beat 76.9 % on such pairs.

# %%
problem = world.make_problem("addition", (17, 25))
short, longer = problem.reference, problem.reference + " Thank you for asking."
gap = world.gold_score(problem, short) - world.gold_score(problem, longer)
p = 1 / (1 + math.exp(-gap / world.ANNOTATORS["gold"].tau))
print(f"gold gap {gap:.2f} → p = {p:.4f}; world.bayes_ceiling_pair = "
      f"{world.bayes_ceiling_pair(world.ANNOTATORS['gold'], problem, short, longer):.4f}")
assert abs(p - 1 / (1 + math.exp(-1.2))) < 1e-9

# %% [markdown]
# ## Exercise 4 · Normalisation changes the scale, not the order

# %%
rm, tok = load_reward_model("rm-tiny")
heldout = load_preference_file("heldout")
subset = subsample_pairs(heldout, pick(400, len(heldout)), seed=0)
prompts = [r["prompt"] for r in subset]
raw_c = score_replies(rm, tok, prompts, [r["chosen"] for r in subset], raw=True)
raw_r = score_replies(rm, tok, prompts, [r["rejected"] for r in subset], raw=True)
norm_c = score_replies(rm, tok, prompts, [r["chosen"] for r in subset])
norm_r = score_replies(rm, tok, prompts, [r["rejected"] for r in subset])
acc_raw = float(((raw_c > raw_r).float()).mean())
acc_norm = float(((norm_c > norm_r).float()).mean())
conf_raw = float(torch.sigmoid((raw_c - raw_r).abs()).mean())
conf_norm = float(torch.sigmoid((norm_c - norm_r).abs()).mean())
print(f"normalisation: mean {float(rm.reward_mean):+.3f}, std {float(rm.reward_std):.3f}")
print(f"accuracy raw {acc_raw:.4f} = normalised {acc_norm:.4f}; mean confidence σ(|Δr|): raw {conf_raw:.3f}, "
      f"normalised {conf_norm:.3f}")
assert acc_raw == acc_norm

# %% [markdown]
# The normalisation subtracts a mean (which cancels in every difference) and divides by the std of `sft-tiny`'s
# sample rewards: every gap r_c − r_r is divided by the same positive number, so no order changes. σ(Δr) does
# change: with a std above 1 the normalised model is *less* confident than the one the Bradley-Terry loss trained;
# `rm-tiny`'s std is 0.87, so its normalised σ(|Δr|) is a little *more* confident (0.74 vs 0.72 on average). That
# is why `evaluate_reward_model` scores raw rewards for the loss and the calibration, and why RL uses the normalised
# ones (a reward in units of "standard deviations of the reference policy's replies").

# %% [markdown]
# ## Exercise 5 · Where the gap comes from

# %%
ev = evaluate_reward_model(rm, tok, subset)
right = (ev.chosen_rewards > ev.rejected_rewards).numpy()
table = {}
for fam in world.FAMILIES:
    for kind in ("taste", "correctness"):
        m = np.array([r["family"] == fam and pair_kind(r) == kind for r in subset])
        if m.sum():
            rows_m = [r for r, k in zip(subset, m) if k]
            table[(fam, kind)] = {"pairs": int(m.sum()), "accuracy": right[m].mean(),
                                  "ceiling": pairs_bayes_ceiling(rows_m)}
print(pd.DataFrame(table).T.round(3))

# %% [markdown]
# What you should see (400-pair sample, ±8 points per cell): every family's taste pairs within a few points of their
# ceiling, every family's correctness pairs near chance (0.46–0.57) against ceilings of ≈ 1. No family's check is
# learned — not even review's, the simplest (the requested sentiment is one word of the prompt, the reply's adjective
# one word of the reply). The style signal is in every pair and is learned first; a correctness pair whose right
# reply is the wordier one then pulls the model the wrong way, which is why some cells sit *below* 0.5.

# %% [markdown]
# ## Exercise 6 · Knowledge or learning, family by family
#
# For each family's correctness pairs: the reward model's accuracy, the knowledge reach (where `sft-tiny`'s own greedy
# reply is right the pair counts its ceiling, elsewhere ½) and the ceiling. The reach minus the accuracy is checking
# the backbone could support but the reward model has not learned; the ceiling minus the reach is knowledge the
# backbone lacks.

# %%
sft, _ = load_model("sft-tiny")
corr_prompts = sorted({r["prompt"] for r in subset if pair_kind(r) == "correctness"})
answers = evaluate_chat(sft, tok, [world.parse_prompt(p) for p in corr_prompts])
knows = dict(zip(corr_prompts, answers.correct))
table = {}
for fam in world.FAMILIES:
    m = np.array([r["family"] == fam and pair_kind(r) == "correctness" for r in subset])
    rows_m = [r for r, k in zip(subset, m) if k]
    table[fam] = {"pairs": len(rows_m), "rm accuracy": right[m].mean(),
                  "knowledge reach": knowledge_reach(rows_m, knows), "ceiling": pairs_bayes_ceiling(rows_m)}
gaps = pd.DataFrame(table).T
gaps["not learned"] = gaps["knowledge reach"] - gaps["rm accuracy"]
gaps["not known"] = gaps["ceiling"] - gaps["knowledge reach"]
print(gaps.round(3))
# the claims below, checked: sums and reversals are mostly known (their gap is checking not learned), creature
# facts mostly not known
for fam in ("addition", "reverse"):
    assert gaps.loc[fam, "not known"] < 0.06 < gaps.loc[fam, "not learned"], gaps.loc[fam]
assert gaps.loc["creatures", "not known"] > 0.2, gaps.loc["creatures"]

# %% [markdown]
# What you should see (400-pair sample): on addition and reversal the reach is within about 4 points of the ceiling
# (sft-tiny gets those answers right), so nearly all of their gap is checking the reward model has not learned; on
# review the reach is about 12 points under it. On creatures it is about 30 points under (sft-tiny recalls under half
# of the held-out facts), so most of that gap is knowledge no head on this backbone could read off. When we added
# 5,000 fresh right-vs-wrong pairs (the experiment in §5 of the lesson), only review's check was learned: its answer
# is one visible word, while sums, reversals and facts need the backbone to compute or recall. They *can* be learned
# from pairs in which nothing but the answer differs, and are lost again in the shipped mix: exercise 7.

# %% [markdown]
# ## Exercise 7 · What the pairs contrast
#
# `minimal_pairs` writes each reply twice in one style, with the right and with a wrong answer, so correctness is the
# only thing a reward model can learn from them. Three scores of the same model: on minimal pairs for held-out
# prompts (the skill it was shown), on the shipped held-out addition correctness pairs (the skill where it matters:
# the policy's own replies, whose styles differ too), and on both again after the recipe's 150 steps on the shipped
# pairs. This one trains: about 90 s for the first part and 2 min for the second on 2 CPU cores (fast mode reads the
# shipped result of its 100 + 60 steps).

# %%
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402

from rlhfbook_lab.lesson import FAST  # noqa: E402
from rlhfbook_lab.lm.preference_data import minimal_pairs  # noqa: E402
from rlhfbook_lab.lm.reward_model import RewardModel  # noqa: E402
from rlhfbook_lab.paths import DATA_DIR  # noqa: E402
from rlhfbook_lab.trainers.reward import shipped_rm_config, train_reward_model  # noqa: E402

SHIPPED = DATA_DIR / "solutions" / "05_minimal_pairs.json"
WRITE = "--write" in sys.argv[1:]  # train (at this mode's sizes) and write SHIPPED


def addition_problems(n, split, seed):
    rng = random.Random(seed)
    return [world.sample_problem("addition", rng, split) for _ in range(n)]


def minimal_pairs_study(minimal_steps, shipped_steps):
    """Train a reward model from sft-tiny on minimal pairs, then on the shipped pairs; score it after each part."""
    cfg = shipped_rm_config()
    cfg.train.steps = minimal_steps
    minimal_train = minimal_pairs(addition_problems(minimal_steps * cfg.batch_size, "train", 1), seed=1).rows
    minimal_test = minimal_pairs(addition_problems(400, "heldout", 2), seed=2).rows
    natural = {origin: [r for r in heldout if r["family"] == "addition" and pair_kind(r) == "correctness"
                        and r["origin"] == origin] for origin in ("on_policy", "off_policy")}

    def addition_scores(model):
        scores = {"minimal pairs (held-out prompts)": evaluate_reward_model(model, tok, minimal_test).accuracy}
        for origin, rows in natural.items():
            scores[f"shipped correctness pairs, {origin}"] = evaluate_reward_model(model, tok, rows).accuracy
        return {k: float(v) for k, v in scores.items()}

    sft_model, _ = load_model("sft-tiny")
    checker = RewardModel.from_causal_lm(sft_model, seed=0)
    train_reward_model(checker, tok, minimal_train, cfg, progress=False)
    after_minimal = addition_scores(checker)
    cfg.train.steps = shipped_steps
    train_reward_model(checker, tok, load_preference_file("train"), cfg, progress=False)
    return {"minimal_steps": minimal_steps, "shipped_steps": shipped_steps, "after_minimal": after_minimal,
            "after_shipped": addition_scores(checker), "pairs": {o: len(rows) for o, rows in natural.items()}}


if FAST and not WRITE and os.environ.get("RLHFBOOK_LIVE", "0") != "1":
    study = json.loads(SHIPPED.read_text())
    print(f"(read from {SHIPPED.relative_to(DATA_DIR.parent)}; RLHFBOOK_LIVE=1 trains instead)")
else:
    study = minimal_pairs_study(pick(100, 300), pick(60, 150))
if WRITE:
    SHIPPED.parent.mkdir(parents=True, exist_ok=True)
    SHIPPED.write_text(json.dumps({"made_by": "RLHFBOOK_FAST=1 python lessons/solutions/05_reward_models_solutions.py"
                                              " --write", **study}, indent=1) + "\n")
after_minimal, after_shipped = study["after_minimal"], study["after_shipped"]
print(pd.DataFrame({f"after {study['minimal_steps']} steps of minimal pairs": after_minimal,
                    f"then {study['shipped_steps']} steps of the shipped pairs": after_shipped}).round(3))
print("shipped addition correctness pairs:", study["pairs"])
# the claims below, checked: the tiny backbone learns to check sums; the check carries over to the shipped off-policy
# pairs better than to the policy's own replies; the shipped pairs then erase it
MINIMAL, ON, OFF = after_minimal  # the keys, in the order addition_scores writes them
assert after_minimal[MINIMAL] > 0.8, after_minimal
assert after_minimal[OFF] > after_minimal[ON], after_minimal
for key in (MINIMAL, OFF):
    assert after_shipped[key] < after_minimal[key] - 0.1, (key, after_minimal, after_shipped)

# %% [markdown]
# What you should see (full mode, 2 CPU cores; fast mode's 100 + 60 steps, the shipped result, show the same pattern,
# less sharply): on minimal pairs for prompts it never saw, the reward model checks sums (0.92 after 300 steps; 0.998
# when the replies carry no opener or filler at all) — the 2.8 M-parameter backbone *can* learn to add up and compare.
# The check carries over only in part to the shipped pairs: 0.88 on the off-policy ones, whose right and wrong replies
# are the world's styled sentences, and 0.64 on the on-policy ones, where `sft-tiny`'s right and wrong replies also
# differ in opener and filler, and a wrong reply may restate the sum it got wrong ("6 + 10 = 16." for 7 + 10) so that it
# adds up. Then 150 steps of the shipped pairs, where style separates most pairs, erase most of it (0.61, 0.59 and
# 0.56): the model goes back to reading style.
#
# This is the diagnosis behind the shipped `rm-tiny`'s chance accuracy on correctness pairs: not a backbone too small
# to check, but data in which checking is a minority signal that the visible style outcompetes. We also tried mixing
# 6,000 minimal pairs of all four families into the shipped data (350 steps, 4.5 min: overall accuracy 0.689,
# correctness pairs still at chance) and four more transformer layers on top of the backbone (0.716): neither keeps
# the check. A verifier (chapter 7) gives the signal directly.

# %% [markdown]
# ## Exercise 8 · Min or product
#
# With step probabilities (0.9, 0.9, 0.9, 0.9) for reply A and (0.7) for reply B: the minimum prefers A (0.9 > 0.7),
# the product prefers B (0.9⁴ = 0.656 < 0.7). The product is the probability that every step is right if their errors
# were independent, so each extra step costs a factor below 1: 0.9^k < 0.7 from k = 4 on (0.9³ = 0.729 still wins).
# Under best-of-n a product-scored PRM therefore leans towards replies with fewer steps — including ones that skip
# the working — while the minimum ("as good as its weakest step") does not count steps at all.

# %%
from rlhfbook_lab.equations.process_rewards import prm_score  # noqa: E402

logit = torch.logit(torch.tensor([0.9, 0.9, 0.9, 0.9, 0.7, 0.7]))
logits = torch.stack([logit, logit])  # (2, 6): row A reads the four 0.9 steps, row B the 0.7 step
steps = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0]])
by_min, by_product = prm_score(logits, steps, "min"), prm_score(logits, steps, "product")
print(f"min: A {float(by_min[0]):.3f}, B {float(by_min[1]):.3f};  product: A {float(by_product[0]):.3f}, "
      f"B {float(by_product[1]):.3f}")
assert by_min[0] > by_min[1] and by_product[0] < by_product[1]
k_flip = next(k for k in range(1, 20) if 0.9 ** k < 0.7)
print(f"the product ranks k steps at 0.9 below one step at 0.7 from k = {k_flip}")
assert k_flip == 4
