# %% [markdown]
# # Lesson 04 · Instruction tuning — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/04_instruction_tuning_solutions.py`. Every exercise fine-tunes `base-tiny` with the
# shipped recipe (800 steps, about 3.5 minutes each on 2 CPU cores; 7 runs in all, about 25 minutes).
# `SFT_STEPS=300` runs them shorter (the format is learned, the content only partly). `RLHFBOOK_FAST=1` (how the
# tests run this file) trains 16 steps per run on fewer sizes and mixes and scores 30 prompts: a smoke run, whose
# numbers are not the ones quoted below.
#
# The numbers quoted under "What you should see" come from one run of this file on 2 CPU cores (one seed each, 200
# held-out prompts: ±7 points per family).

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd

from rlhfbook_lab import world
from rlhfbook_lab.lesson import FAST, pick, seed_everything, use_style
from rlhfbook_lab.lm.data import build_sft_dataset
from rlhfbook_lab.lm.evaluation import elicitation_report, evaluate_chat
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.shipped_data import load_instruction_file
from rlhfbook_lab.trainers.sft import SFTConfig, eval_loss, sft_from_base

seed_everything(0)
use_style()
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)
STEPS = int(os.environ.get("SFT_STEPS", pick(16, SFTConfig().train.steps)))
problems = world.heldout_prompts(pick(30, 200), seed=0)
base, tok = load_model("base-tiny")
shipped, _ = load_model("sft-tiny")
heldout = build_sft_dataset(tok, load_instruction_file("heldout"), SFTConfig().max_length).dataset


def recipe(**changes) -> SFTConfig:
    """The shipped recipe with some fields changed (and the step count of this run)."""
    cfg = SFTConfig(**changes)
    cfg.train.steps = STEPS
    return cfg


def verdict(model=None, ev=None) -> pd.DataFrame:
    """EOS rate, correctness and gold score by family on the held-out problems (``ev``: an evaluation of them)."""
    ev = evaluate_chat(model, tok, problems) if ev is None else ev
    return pd.DataFrame({**ev.by_family, "all": ev.overall}).T[["eos_rate", "correct_rate", "gold_score"]]


shipped_verdict = verdict(shipped)
print("the shipped sft-tiny:\n", shipped_verdict.round(2))

# %% [markdown]
# ## Exercise 1 · Train without prompt masking
#
# `mask_prompt=False` makes every token after the first a target: the user's question (and the chat tokens around
# it) is now something the model is trained to *write*. We compare the loss on the held-out *replies* only (the
# held-out file's completion mask), which is the quantity both models can be judged on.

# %%
no_mask, _, _ = sft_from_base(recipe(mask_prompt=False), progress=False, eval_every=0)
print(f"held-out reply loss: shipped {eval_loss(shipped, heldout, tok.pad_token_id):.3f}, "
      f"no prompt mask {eval_loss(no_mask, heldout, tok.pad_token_id):.3f} nats/token")
print("no prompt mask:\n", verdict(no_mask).round(2))

# What did it learn from the user's words? Start a user turn and let it write.
gen = generate(no_mask, tok, ["<|user|>"] * 6, chat=False, max_new_tokens=40, temperature=1.0, seed=0)
print("the no-mask model, asked to write a user turn:", gen.texts)
gen = generate(shipped, tok, ["<|user|>"] * 6, chat=False, max_new_tokens=40, temperature=1.0, seed=0)
print("the shipped model, asked the same:", gen.texts)
if not FAST:  # 40 steps (fast mode) do not teach the chat format yet: the comparison needs the full recipe
    assert abs(verdict(no_mask).loc["all", "gold_score"] - shipped_verdict.loc["all", "gold_score"]) < 0.2

# What you should see: the two models answer about equally well (here the prompt is short and predictable, so
# training on it costs little capacity; the held-out reply loss and the gold score move by a few points at most). But
# the no-mask model has also learned the *user's* distribution: started with `<|user|>` it writes questions in the
# world's templates ("What is 23 + 8?", "Spell kobe backward.") and even answers them after `<|assistant|>`, while the
# shipped model, never trained on user turns, writes replies or junk there. Real chat data has long, varied prompts:
# there the prompt tokens would dominate the loss and pull capacity toward imitating users, which is why the standard
# recipe masks them.

# %% [markdown]
# ## Exercise 2 · Drop EOS from the labels and watch the model ramble

# %%
no_eos, _, _ = sft_from_base(recipe(train_on_eos=False), progress=False, eval_every=0)
ev = evaluate_chat(no_eos, tok, problems)
v = verdict(ev=ev)
print("no EOS in the labels:\n", v.round(2))
for prompt, reply, score in ev.rows[:4]:
    print(f"  [gold {score:+.2f}] {prompt!r} → {reply!r}")
feats = pd.DataFrame([world.taste_features(p, r) for p, r, _ in ev.rows if r.strip()])
print("mean taste features of its replies:\n", feats.mean().round(2))
print("their cost in gold units:\n", (feats.mean() * pd.Series(world.GOLD_WEIGHTS)).round(2))
assert v.loc["all", "eos_rate"] < 0.2 < shipped_verdict.loc["all", "eos_rate"] - 0.5, "no EOS label, no EOS"

# What you should see: almost no reply ends its turn (eos_rate near 0 instead of 0.98): nothing ever taught the model
# that `<|end|>` follows a reply, so after the answer it writes filler sentences or the start of another answer until
# it hits max_new_tokens. The answer itself is usually still there and right, so correctness barely moves; the gold
# score falls by the taste penalties: `extra_words` (capped at 20 words × 0.03) is the biggest cost, then an unclean
# end (the reply is cut mid-sentence) and repeated 3-grams.

# %% [markdown]
# ## Exercise 3 · The LIMA question in miniature
#
# Same 800 steps, fewer distinct conversations: with 100 examples the model sees each one 128 times.

# %%
sizes = pick([100], [100, 400, 1600])
rows = {}
for n in sizes:
    model, _, _ = sft_from_base(recipe(), num_examples=n, progress=False, eval_every=0)
    rows[n] = verdict(model)
rows[4000] = shipped_verdict
lima = pd.DataFrame({n: {**{f"correct/{f}": v.loc[f, "correct_rate"] for f in list(world.FAMILIES) + ["all"]},
                         "eos_rate": v.loc["all", "eos_rate"], "gold": v.loc["all", "gold_score"]}
                     for n, v in rows.items()}).T
print(lima.round(2))
if not FAST:
    assert (lima["eos_rate"] >= 0.9).all(), "the format is learned from 100 conversations"
    assert lima.loc[1600, "correct/addition"] > lima.loc[100, "correct/addition"], "content needs distinct examples"
fig, ax = plt.subplots()
for col in ["eos_rate"] + [f"correct/{f}" for f in ("addition", "reverse", "review")]:
    ax.plot(lima.index, lima[col], "o-", label=col)
ax.set_xscale("log")
ax.set_xlabel("distinct training conversations (same 800 steps)")
ax.set_ylabel("share of held-out prompts")
ax.set_title("The format needs few examples; generalising content needs many")
ax.legend()
plt.show()

# What you should see: the format is learned from 100 conversations — every size ends ≥ 95 % of its turns — but
# held-out correctness needs data. With 100 examples the model memorises its ~25 sums and ~25 words and cannot copy
# a new operand or spell a new string; addition and reverse improve steadily with more distinct examples. Review is
# the most data-hungry *per key*: a held-out review request is an unseen (sentiment, product) pair, and with few
# examples the model learns "mug → positive" instead of reading the requested sentiment. LIMA's point survives in
# miniature (format is cheap), and so does its caveat: content that must generalise is not.

# %% [markdown]
# ## Exercise 4 · How much replay?

# %%
mixes = pick([0.0, 0.25], [0.0, 0.1, 0.25])
sweep = {}
for mix in mixes:
    model = shipped if mix == 0 else sft_from_base(recipe(pretrain_mix=mix), progress=False, eval_every=0)[0]
    rep = elicitation_report(base, model, tok)
    v = verdict(model)
    sweep[mix] = {"held-out creatures answered": rep.sft_answers["heldout"],
                  "held-out facts, creature named": rep.sft_prefilled["heldout"],
                  **{f"correct/{f}": v.loc[f, "correct_rate"] for f in ("addition", "reverse", "review")},
                  "eos_rate": v.loc["all", "eos_rate"]}
sweep = pd.DataFrame(sweep).T
print(sweep.round(2))
if not FAST:
    assert sweep.loc[0.25, "held-out creatures answered"] > sweep.loc[0.0, "held-out creatures answered"] + 0.3
fig, ax = plt.subplots()
for col in sweep.columns:
    ax.plot(sweep.index, sweep[col], "o-", label=col)
ax.set_xlabel("pretrain_mix (share of each batch that is pretraining text)")
ax.set_ylabel("share")
ax.set_title("Replay surfaces the held-out facts and costs some skill")
ax.legend(fontsize=8)
plt.show()

# What you should see: the held-out creature answers rise steeply with the mix (about 26 % → 95 % from 0 to 0.25 in
# our run) and the facts stay reachable once the creature is named; reverse and review lose the most (reverse
# about 80 % → 58 % at 0.25), addition's greedy answers hold. A small mix buys most of the knowledge.
