# %% [markdown]
# # Lesson 08 · Direct alignment — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/08_direct_alignment_solutions.py`. Every exercise trains from `sft-tiny` with the recipe of
# `rlhfbook-lab dpo` (100 steps of 16 pairs, about 2.5 minutes of one CPU core per run; 6 runs in all). With
# `RLHFBOOK_FAST=1` every run is the fast recipe instead (24 steps of 8 pairs, about 20 s each; exercise 4's two runs
# take 8 steps; exercises 2 and 3 take 8 and are judged on 48 prompts, so compare their rows with each other rather
# than with exercise 1's 24-step run): the same code, noisier numbers.
#
# The numbers quoted under "What you should see" come from one run of this file in full mode (seeded, so they repeat
# on the same machine; one seed per run, so differences of a few hundredths of gold are noise).

# %%
import time

import pandas as pd
import torch

from rlhfbook_lab import world
from rlhfbook_lab.lesson import FAST, pick, seed_everything
from rlhfbook_lab.lm.data import collate_pairs, tokenize_pairs
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import flip_labels
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.trainers.dpo import compute_ref_logps, concatenated_forward, dpo_config, dpo_from_sft

seed_everything(0)
pd.set_option("display.width", 160)
pd.set_option("display.precision", 3)
pd.set_option("display.max_columns", 20)
SIZES = pick(dict(num_pairs=512, eval_prompts=128, kl_prompts=32), dict(eval_prompts=200, kl_prompts=64))
# exercises 2 and 3 compare runs with each other: in fast mode they train 8 steps and are judged on 48 prompts
COMPARE_SIZES = pick(dict(num_pairs=512, eval_prompts=48, kl_prompts=16), SIZES)
SHORT = pick({"steps": 8}, {})
sft_model, tok = load_model("sft-tiny")
on_policy = load_preference_file("train", origin="on_policy")


def summary(run) -> dict:
    rep = run.report
    return {"gold sampled": rep["gold_sampled_after"], "gold greedy": rep["gold_after"],
            "correct greedy": rep["correct_after"], "KL": rep["kl"], "train accuracy": rep["accuracy"],
            "logps/chosen, first 5 steps": sum(run.history["logps/chosen"][:5]) / 5, "CPU s": rep["train_cpu_seconds"]}


def logps(model, prompts, replies_a, replies_b):
    """Summed log π of two replies per prompt, scored as the chosen and rejected sides of one stacked batch."""
    rows = [{"prompt": p, "chosen": a, "rejected": b} for p, a, b in zip(prompts, replies_a, replies_b)]
    batch = collate_pairs(tokenize_pairs(rows, tok).rows, tok.pad_token_id)
    with torch.no_grad():
        out = concatenated_forward(model, batch, "sum")
    return out.chosen_logps, out.rejected_logps


# %% [markdown]
# ## Exercise 1 · Where did the probability go?
#
# Train DPO with the recipe, find the held-out *review* prompts whose greedy reply changed, and score the SFT model's
# reply and the DPO model's reply under both models. Then look for the winning words in the training pairs.

# %%
dpo = dpo_from_sft(dpo_config("dpo", fast=FAST), progress=False, **SIZES)
print("DPO:", {k: round(v, 3) for k, v in summary(dpo).items()})
assert dpo.report["gold_sampled_after"] > dpo.report["gold_sampled_before"], "DPO raises the sampled gold score"
flips = list(dict.fromkeys((p, a, b) for (p, a, _), (_, b, _) in zip(dpo.evals["greedy_before"].rows,
                                                                     dpo.evals["greedy_after"].rows)
                            if a != b and world.parse_prompt(p).family == "review"))
print(f"{len(flips)} distinct held-out review prompts changed their greedy reply")
if flips:
    prompts, sft_replies, dpo_replies = zip(*flips)
    before_a, before_b = logps(sft_model, prompts, sft_replies, dpo_replies)
    after_a, after_b = logps(dpo.model, prompts, sft_replies, dpo_replies)
    print(pd.DataFrame({"prompt": prompts, "SFT reply": sft_replies, "DPO reply": dpo_replies,
                        "log π(SFT reply): SFT": before_a.numpy(), "→ DPO": after_a.numpy(),
                        "log π(DPO reply): SFT": before_b.numpy(), "→ DPO ": after_b.numpy()}).to_string())
    # the displaced reply gained on the SFT's own reply: its log-prob rose relative to the one DPO's greedy left
    assert (after_b - before_b).mean() > (after_a - before_a).mean(), "the new greedy replies gained on the old ones"
negative = [p for p in on_policy if p["family"] == "review" and "negative" in p["prompt"]]
print(f"training pairs for negative reviews: {len(negative)}; with 'great' in the chosen reply: "
      f"{sum('great' in p['chosen'] for p in negative)}, in the rejected reply: "
      f"{sum('great' in p['rejected'] for p in negative)}")
assert negative and not any("great" in p["chosen"] or "great" in p["rejected"] for p in negative), \
    "no training pair for a negative review says 'great': the displaced mass lands outside every pair"

# What you should see: the flipped replies are negative review requests answered positively ("The mug is great. I
# love it."). The SFT model's correct reply lost log-probability and the flipped one gained (from a few nats below to
# above it), although no training pair for a negative review contains "great" at all: its chosen and rejected replies
# both say "awful", the chosen one after a polite opener and the rejected one without. DPO lowered "awful" in the
# no-opener context (the rejected replies) and raised it after an opener (the chosen ones); at greedy decoding
# without an opener the displaced mass lands on the only other review the model knows how to write. This is the
# likelihood displacement of Razin et al. (2024): similar chosen and rejected replies make DPO's push act on what
# they share, and the probability goes to a reply outside every pair.

# %% [markdown]
# ## Exercise 2 · Label noise and cDPO
#
# Flip 20 % of the labels (`flip_labels`), train DPO and cDPO (ε = 0.2) on the noisy pairs, and compare with clean DPO
# (exercise 1's run).

# %%
noisy, n_flipped = flip_labels(on_policy, 0.2, seed=0)
print(f"flipped {n_flipped} of {len(noisy)} labels")
assert abs(n_flipped / len(noisy) - 0.2) < 0.03, "about a fifth of the labels flipped"
noisy_dpo = dpo_from_sft(dpo_config("dpo", fast=FAST, **SHORT), pairs=noisy, judge_before=False, progress=False,
                         **COMPARE_SIZES)
noisy_cdpo = dpo_from_sft(dpo_config("cdpo", fast=FAST, label_smoothing=0.2, **SHORT), pairs=noisy,
                          judge_before=False, progress=False, **COMPARE_SIZES)
print(pd.DataFrame({"DPO, clean": summary(dpo), "DPO, 20 % flipped": summary(noisy_dpo),
                    "cDPO ε = 0.2, 20 % flipped": summary(noisy_cdpo)}).T.to_string())

# What you should see: the flipped labels cost DPO part of its gain in sampled gold and some training accuracy (a
# fifth of the pairs now ask for the opposite); cDPO on the same noisy pairs lands close to noisy DPO. cDPO does not
# remove the noise: it caps how hard each pair is pushed (its loss is minimal at σ(βΔ) = 1 − ε rather than at an
# infinite margin), which matters once margins grow large — over 100 steps at β = 0.1 they stay small, so the two
# losses barely differ here. Label smoothing is a guard for long runs on noisy data, not a denoiser.

# %% [markdown]
# ## Exercise 3 · On-policy or off-policy pairs?
#
# The shipped off-policy pairs mix the base model's replies and the world's styled replies (a reference answer with or
# without an opener or fillers, wrong answers). Train on them and compare with the on-policy run.

# %%
off_policy = load_preference_file("train", origin="off_policy")
off = dpo_from_sft(dpo_config("dpo", fast=FAST, **SHORT), pairs=off_policy, judge_before=False, progress=False,
                   **COMPARE_SIZES)
print(pd.DataFrame({"on-policy pairs": summary(dpo), "off-policy pairs": summary(off)}).T.to_string())
assert summary(off)["logps/chosen, first 5 steps"] < summary(dpo)["logps/chosen, first 5 steps"] - 5, \
    "off-policy chosen replies start far less likely under the SFT model than its own samples"

# What you should see: the off-policy chosen replies start far less likely under the SFT model (the `logps/chosen, first
# 5 steps` column: tens of nats below the on-policy ones, whose replies the SFT model wrote itself). DPO's derivation
# assumes the pairs come from near π_ref; with off-policy pairs the loss can be lowered by moves the policy never makes
# when it samples, and the implicit reward is fitted on replies it will not write. Compare the gold columns and the
# KL: the off-policy data's clean reference answers contrast right and wrong directly, so correctness tends to hold
# better, while the on-policy data teaches the style of the replies the model actually writes.

# %% [markdown]
# ## Exercise 4 · Precompute the reference
#
# Train twice with the same seed, once with a live frozen reference and once with `precompute_ref_logps=True`, and
# compare the loss curves and the CPU time; then time the precomputation alone.

# %%
subset = on_policy[:pick(64, len(on_policy))]  # fast mode: the 64 pairs 8 steps × 8 visit
steps = pick({"steps": 8}, {})  # fast mode: a few steps show the agreement (and the per-step saving)
live = dpo_from_sft(dpo_config("dpo", fast=FAST, **steps), pairs=subset, judge_before=False, progress=False,
                    eval_prompts=16, kl_prompts=8)
pre = dpo_from_sft(dpo_config("dpo", fast=FAST, precompute_ref_logps=True, **steps), pairs=subset,
                   judge_before=False, progress=False, eval_prompts=16, kl_prompts=8)
diff = max(abs(a - b) for a, b in zip(live.history["losses/train"], pre.history["losses/train"]))
print(f"largest difference between the two loss curves: {diff:.2e} (over {len(live.history['step'])} steps)")
assert diff < 1e-3, "the precomputed reference gives the live reference's loss curve, to float32 noise"
rows = tokenize_pairs(subset, tok, max_length=160).rows
t0 = time.process_time()
compute_ref_logps(sft_model, rows, dpo_config("dpo"), tok.pad_token_id)
precompute_cpu = time.process_time() - t0
print(f"CPU seconds: live reference {live.report['train_cpu_seconds']:.1f}, precomputed "
      f"{pre.report['train_cpu_seconds']:.1f} (of which scoring {len(rows)} pairs once: {precompute_cpu:.1f})")

# What you should see: the two curves agree to float32 summation noise (about 1e-6 per step at first, growing slowly
# as tiny differences compound through Adam). The precomputation scores every pair once — here all the pairs, though
# one pass of 100 steps × 16 visits only about half of them — so it saves time only when the data is visited more than
# once (several epochs, or several runs at different β sharing one scoring) and, more importantly at scale, it frees
# the memory of a second model during training.
