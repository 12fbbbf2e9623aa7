# %% [markdown]
# # Lesson 16 · Evaluation — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/16_evaluation_solutions.py` (`RLHFBOOK_FAST=1` for the quick version). It rebuilds the
# lesson's players (a few seconds of generation), then only counts and fits.

# %%
import random

import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.equations.agreement import kendall_tau
from rlhfbook_lab.equations.evaluation_stats import arena_elo, detection_power, prompts_needed
from rlhfbook_lab.lesson import pick, seed_everything
from rlhfbook_lab.lm.reward_model import load_reward_model
from rlhfbook_lab.recipes import evaluation as ev

seed_everything(0)
problems = world.heldout_prompts(pick(96, 400), seed=0)
loaded = {}
sft, sft07, sft1 = (ev.player_replies(spec, problems, loaded=loaded)
                    for spec in ("sft-tiny", "sft-tiny@0.7", "sft-tiny@1.0"))
rng = random.Random(0)
players = {"sft+opener": ev.restyle(problems, sft, opener="Sure!"), "sft": sft, "sft@0.7": sft07, "sft@1": sft1,
           "sft@1+pad": ev.restyle(problems, sft1, fillers=[rng.randint(0, 3) for _ in problems]),
           "base": ev.player_replies("base-tiny", problems, loaded=loaded)}
gold = {n: np.array([world.gold_score(p, r, allow_empty=True) for p, r in zip(problems, rs)])
        for n, rs in players.items()}

# %% [markdown]
# ## Exercise 1 · Power by simulation
#
# Take the real per-prompt differences (sft@0.7 − sft), centre them and plant a gain δ = 0.05, then draw n prompts
# with replacement many times and run the two-sided z-test. The detection rate should follow `detection_power`.

# %%
d = gold["sft@0.7"] - gold["sft"]
d = d - d.mean() + 0.05  # the real spread, a known gain
sd = float(d.std(ddof=1))
gen = np.random.default_rng(0)
print(f"per-prompt sd {sd:.3f}; prompts for power 0.8: {prompts_needed(sd, 0.05)}")
for n in (50, 200, prompts_needed(sd, 0.05)):
    draws = d[gen.integers(0, len(d), size=(2000, n))]
    z = draws.mean(1) / (draws.std(1, ddof=1) / np.sqrt(n))
    rate = float(np.mean(np.abs(z) > 1.96))
    print(f"n = {n:4d}: detected {rate:.2f} of the time; detection_power says {detection_power(n, sd, 0.05):.2f}")
    assert abs(rate - detection_power(n, sd, 0.05)) < 0.07
# What you should see: the simulated rate tracks the formula (a heavy-tailed difference distribution makes small
# n slightly off), and power 0.8 needs hundreds of prompts even for a 5-point gain.

# %% [markdown]
# ## Exercise 2 · Position bias in the arena
#
# Show every battle with the *better* reply (by gold) second, so a first-slot bias always favours the worse one. Then
# ask each battle in both orders, the remedy judges use in practice (MT-Bench counts a verdict only if it survives
# the swap; here both verdicts count, half each).

# %%
rm, rm_tok = load_reward_model("rm-tiny")
rm_judge = ev.score_judge(ev.rm_scores(rm, rm_tok, problems, players))
names = list(players)
truth = np.array([gold[n].mean() for n in names])


def arena_tau(judge, both_orders: bool, n_battles: int = pick(800, 3000)) -> float:
    r, judge_rng = random.Random(1), random.Random(2)  # the same battles whatever the judge draws
    comps, ties = [], []
    for _ in range(n_battles):
        k = r.randrange(len(problems))
        a, b = r.sample(range(len(names)), 2)
        worse, better = (a, b) if gold[names[a]][k] <= gold[names[b]][k] else (b, a)
        orders = [(worse, better), (better, worse)] if both_orders else [(worse, better)]
        for first, second in orders:
            v = judge(k, names[first], names[second], judge_rng)
            comps.append((first, second) if v >= 0.5 else (second, first))
            ties.append(v == 0.5)
    fit = arena_elo(np.array(comps), len(names), np.array(ties), n_resamples=1)
    return kendall_tau(fit["elo"], truth)


for b in (0.0, 0.3, 0.6):
    one, both = arena_tau(ev.position_biased(rm_judge, b), False), arena_tau(ev.position_biased(rm_judge, b), True)
    print(f"position bias {b:.1f}: τ vs truth {one:+.2f} one order, {both:+.2f} both orders")
    if b == 0.6:
        assert both > one, "showing both orders should undo most of the damage"
# What you should see: at bias 0 both ways give the same τ (the reward model is order-blind; its τ is below 1 because
# it misranks the base model). With the worse reply always first, a growing bias drags τ down (at 0.6 the ranking is
# mostly inverted); asking both orders cancels the bias in expectation and τ stays near the unbiased judge's.

# %% [markdown]
# ## Exercise 3 · What LC cannot fix
#
# The "friendly" annotator loves politeness (+0.15 per extra polite phrase) more than it minds words. Its bias is
# not length, although polite filler sentences are long.

# %%
friendly = ev.annotator_judge(world.ANNOTATORS["friendly"], problems, players)
lc = ev.lc_vs_raw(problems, players, friendly, baseline="sft")
for n in lc["players"]:
    print(f"{n:>11}: gold {lc['gold'][n]:+.3f}  raw {lc['raw'][n]:.3f}  LC {lc['lc'][n]:.3f}  "
          f"slope {lc['length_slope'][n]:+.2f}")
print(f"τ vs gold: raw {lc['tau_raw']:+.2f}, LC {lc['tau_lc']:+.2f}")
assert lc["raw"]["sft@1+pad"] > lc["raw"]["sft@1"], "the friendly judge should pay for polite fillers"
assert lc["lc"]["sft@1+pad"] < lc["raw"]["sft@1+pad"], "LC should take the fillers' bonus away"
# What you should see: here politeness arrives as length (filler sentences), so LC takes most of the padded player's
# bonus away and τ improves. But the slope it fits is the friendly judge's liking of polite sentences read as a
# liking of length, and what is left at equal length is still the friendly taste: it forgives wrong answers and
# loves the openers sampling produces, so sft@1 can stay above sft@0.7 although gold says otherwise. LC controls
# length, not taste.

# %% [markdown]
# ## Exercise 4 · The detector's n
#
# Clean data: the shipped SFT conversations (training split) against the benchmark. A verbatim leak: the benchmark's
# own prompt + reply. A paraphrased leak: the benchmark's keys asked in another template, with the same reply.

# %%
from rlhfbook_lab.lm.shipped_data import load_instruction_file  # noqa: E402  (a cell of its own)

bench = world.heldout_prompts(pick(64, 200), seed=0)
bench_texts = [f"{p.prompt} {p.reference}" for p in bench]
clean = [f"{r['prompt']} {r['messages'][-1]['content']}" for r in load_instruction_file("train")]
paraphrased = [world.make_problem(p.family, p.key, template=(i % 2) + 1) for i, p in enumerate(bench)]
paraphrased = [f"{q.prompt} {q.reference}" for q, p in zip(paraphrased, bench) if q.prompt != p.prompt]
shares = {}
for n in range(2, 11):
    shares[n] = {"clean": ev.ngram_overlap(clean, bench_texts, n)["share"],
                 "verbatim": ev.ngram_overlap(bench_texts, bench_texts, n)["share"],
                 "paraphrased": ev.ngram_overlap(paraphrased, bench_texts, n)["share"]}
    print(f"n = {n:2d}: " + ", ".join(f"{k} {v:.2f}" for k, v in shares[n].items()))
assert shares[2]["clean"] > 0.5 and shares[8]["clean"] == 0.0, "short n-grams flag clean data, n = 8 does not"
assert all(s["verbatim"] == 1.0 for s in shares.values())
assert shares[10]["paraphrased"] < shares[3]["paraphrased"], "a paraphrase escapes the long n-grams first"
# What you should see: every clean item shares a short n-gram with the training data (the templates are shared:
# "write a negative review of"), so a small n flags everything; by n = 8 clean data is no longer flagged. A verbatim
# leak is caught at every n. A paraphrase keeps the reply (the answer, "17 + 25 = 42.") and changes the question, so
# it survives only as short n-grams in the reply: the longer n, the more of it slips through. Real detectors face the
# same trade and add embedding similarity or "guess the next words" tests for paraphrased leaks.

# %% [markdown]
# ## Exercise 5 · Self-preference on samples only

# %%
rm_s = ev.rm_scores(rm, rm_tok, problems, players)
for subset in (list(players), ["sft@0.7", "sft@1", "base"]):
    reps = [r for n in subset for r in players[n]]
    fam = {m: ev.reply_logprobs(*loaded[m], problems * len(subset), reps) for m in ("sft-tiny", "base-tiny")}
    c = ev.self_preference(np.concatenate([rm_s[n] for n in subset]), np.concatenate([gold[n] for n in subset]), fam)
    print(f"{subset}: " + ", ".join(f"c[{m}] {v:+.3f}" for m, v in c.items()))
# What you should see: the coefficients move with the player set, by more than their difference. Familiarity under
# either model is strongly tied to form (a reply the base model writes is unlikely under sft-tiny and vice versa), and
# gold measures form too, so the regressors are collinear and c shifts with whichever replies are in the fit. A
# self-preference claim needs replies of equal quality from two sources, judged by judges of both backbones.
