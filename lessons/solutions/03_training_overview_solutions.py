# %% [markdown]
# # Lesson 03 · Training overview — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/03_training_overview_solutions.py` (exercise 4 takes ~15 min on a laptop CPU; it runs
# only when `RUN_EXERCISE_4=1`).

# %%
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rlhfbook_lab import world
from rlhfbook_lab.equations.logprobs import entropy_from_logits
from rlhfbook_lab.lesson import seed_everything, use_style
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import encode_prompts, generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.tokenizer import load_tokenizer
from rlhfbook_lab.trainers.pretrain import PretrainConfig, prefix_accuracy, pretrain

seed_everything(0)
use_style()

# %% [markdown]
# ## Exercise 1 · BPE instead of characters
#
# We train byte-level BPEs *with* merges on the same corpus the shipped tokenizer saw.

# %%
texts = world.pretraining_corpus(20_000)
single = {}
for vocab in (512, 1024):
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    n_single = sum(f"Ġ{n}" in bpe.get_vocab() for n in range(10, 100))
    single[vocab] = n_single
    print(f"vocab {vocab}: {n_single} of the 90 two-digit numbers ' 10'…' 99' are single tokens")
    for s in ["17 + 25 = 42.", "3 + 48 = 51.", "40 + 8 = 48.", "The reverse of mirt is trim.",
              "The reverse of kettle is elttek."]:
        print(f"   {s!r:36} → {bpe.encode(s).tokens}")

assert 0 < single[512] < single[1024] and single[1024] >= 70, single  # most two-digit numbers become one token

# What you should see (vocab 512 / 1024): 39 / 82 of the 90 two-digit numbers are single tokens, and
#   '17 + 25 = 42.'  → ['1','7','Ġ+','Ġ25','Ġ=','Ġ42','.']      /  ['17','Ġ+','Ġ25','Ġ=','Ġ42','.']
#   '3 + 48 = 51.'   → [...,'Ġ=','Ġ5','1','.']                    /  [...,'Ġ=','Ġ51','.']
#   'mirt' / 'trim'  → ['Ġm','ir','t'] / ['Ġt','ri','m']
#
# Why addition suffers:
# - The same number is cut differently depending on its position (a leading "17" is two tokens, " 42" one) and
#   on the vocabulary size (" 51" is "Ġ5","1" at 512 but one token at 1024). The model must learn each spelling
#   separately instead of one digit-by-digit procedure.
# - When (nearly) every two-digit number is one token (82 of 90 at vocab 1024), "a + b = c" becomes a lookup
#   from two opaque symbols to a third: ~2,500 memorised facts, no shared carry rule, and the held-out pairs
#   (20 % of them) are simply never seen. With characters, the ones digit of the sum depends only on the two
#   ones digits (100 cases, all seen in training), so the skill generalises to held-out pairs.
# Why reversal suffers: "mirt" is ['m','ir','t'] but "trim" is ['t','ri','m']: the pieces of the answer are
# different tokens from the pieces of the question, so the model must know how each token is spelled — which it
# never sees — before it can reverse anything. With one token per character, reversing is reversing the ids.

# %% [markdown]
# ## Exercise 2 · Where does sampling collapse?

# %%
base, tok = load_model("base-tiny")
add_items = [(p, prefix) for p, prefix in world.statement_prefixes(150, seed=0) if p.family == "addition"]
add_problems = [p for p, _ in add_items]
add_prefixes = [prefix for _, prefix in add_items]
n_samples = 16


def addition_accuracy(**sampler) -> float:
    reps = 1 if sampler.get("greedy") else n_samples
    gen = generate(base, tok, add_prefixes, max_new_tokens=6, chat=False, num_return_sequences=reps, seed=0,
                   **sampler)
    lines = [(add_prefixes[i // reps] + t).split("\n")[0] for i, t in enumerate(gen.texts)]
    return float(np.mean([world.is_correct(add_problems[i // reps], ln) for i, ln in enumerate(lines)]))


with torch.no_grad():
    first_digit_logits = torch.stack([
        forward_logits(base, ids, torch.ones_like(ids))[0, -1]
        for ids in (torch.tensor(encode_prompts(tok, [p + " "], chat=False)) for p in add_prefixes)
    ])  # (N, V): next-token logits for the first answer digit

greedy = addition_accuracy(greedy=True)
temps = [0.1, 0.3, 0.5, 0.7, 1.0, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0]
acc = [addition_accuracy(temperature=T) for T in temps]
ent = [float(entropy_from_logits(first_digit_logits / T).mean()) for T in temps]
for T, a, h in zip(temps, acc, ent):
    print(f"T = {T:3.1f}: accuracy {a:6.1%}, mean entropy of the first digit {h:.2f} nats")
collapse = next((T for T, a in zip(temps, acc) if a < greedy / 2), None)
print(f"greedy accuracy {greedy:.1%}; accuracy first falls below half of it at T = {collapse}")
assert greedy >= 0.9 and min(a for T, a in zip(temps, acc) if T <= 0.7) >= 0.85, "confident at low temperature"
assert collapse is not None and 1.2 <= collapse <= 2.5 and acc[-1] < 0.2, "a steep collapse between T ≈ 1.4 and 2.5"
assert all(h1 < h2 for h1, h2 in zip(ent, ent[1:])), "the first digit's entropy grows with T"

fig, ax = plt.subplots()
ax.plot(ent, [100 * a for a in acc], "o-")
for T, a, h in zip(temps, acc, ent):
    ax.annotate(f"T={T}", (h, 100 * a), textcoords="offset points", xytext=(4, 4), fontsize=8)
ax.set_xlabel("mean entropy of the first answer digit (nats)")
ax.set_ylabel("held-out addition accuracy (%)")
ax.set_title("Accuracy falls as the first-digit distribution flattens")
plt.show()

# What you should see (base-tiny, 50 prefixes × 16 samples): greedy 100 %; accuracy stays above 97 % up to
# T = 0.7 and is ~95 % at T = 1 (sampling the model as trained), then drops quickly — 80 % at T = 1.4, 67 % at
# 1.6 — and falls below half of greedy between T = 1.6 and 2.0 (38 % at T = 2), reaching ~4 % at T = 3, where the
# first-digit entropy (~4.3 nats) approaches ln V ≈ 5.57 and the model writes random characters. The collapse is
# steep because the base model is very confident (first-digit entropy 0.17 nats at T = 1) until the tail of wrong
# tokens gets enough mass, and because an answer is several tokens that must *all* be right: per-token errors
# multiply.

# %% [markdown]
# ## Exercise 3 · Change the spec

# %%
problem = world.make_problem("addition", (17, 25))
replies = {
    "plain answer": problem.reference,
    "polite opener": world.render_response(problem, opener="Sure!"),
    "rambling": world.render_response(problem, fillers=2),
    "wrong but polite": world.render_response(problem, opener="Sure!", answer="17 + 25 = 43."),
    "politeness piled up": "Sure! Happy to help! Of course! 17 + 25 = 42. I hope this helps.",
    "politeness piled higher": "Sure! Happy to help! Of course! 17 + 25 = 42. I hope this helps. "
                               "Thank you for asking. I hope this helps. Thank you for asking. I hope this helps.",
    "politeness without end": "Sure! 17 + 25 = 42. " + " ".join(["Thank you for asking. I hope this helps."] * 12),
}
lenient = dict(world.GOLD_WEIGHTS, polite_excess=+0.10)  # politeness never hurts
print(f"{'reply':24} {'gold':>6} {'lenient':>8}")
for name, reply in replies.items():
    print(f"{name:24} {world.gold_score(problem, reply):+6.2f} "
          f"{world.gold_score(problem, reply, weights=lenient):+8.2f}")
gold = {name: world.gold_score(problem, reply) for name, reply in replies.items()}
soft = {name: world.gold_score(problem, reply, weights=lenient) for name, reply in replies.items()}
assert max(gold, key=gold.get) == "polite opener", "under the gold table the polite opener is best"
assert gold["politeness piled up"] < gold["wrong but polite"], "piled-up politeness is punished below a wrong answer"
assert soft["politeness piled up"] > soft["polite opener"], "the lenient table makes the short pile the best reply"

# Under the gold table the polite opener (1.20) is best and piling up politeness is punished (0.18 for three
# extra phrases — below even a wrong answer — and far below zero for the longer piles). Under the lenient table
# every reply with extra polite phrases gains: the short pile (1.23) now beats the polite opener, the best reply
# in the gold world. What stops the longer piles from winning too is only the *other* rows of the table — the
# cost of the extra words and of repeated 3-grams — plus the caps the judge puts on each feature (see the taste
# table). A policy optimised against this judge would learn to append polite phrases as long as each one pays
# more than its words cost: the over-optimisation of ch 14, produced here by the *spec* itself rather than by a
# mis-learned reward model. One row of the table changes what "best" means.

# %% [markdown]
# ## Exercise 4 · When does addition appear?
#
# Each run uses the default recipe (batch 64 × 64 tokens) with a different step count. (The cosine schedule
# depends on the total number of steps, so these are three separate runs, not three checkpoints of one run.)

# %%
if os.environ.get("RUN_EXERCISE_4") == "1":
    tok = load_tokenizer()
    results = {}
    for steps in (300, 600, 1000):
        cfg = PretrainConfig()
        cfg.train.steps = steps
        model, _ = pretrain(cfg, tok, progress=True)
        results[steps] = prefix_accuracy(model, tok)
        print(steps, {k: round(v, 2) for k, v in results[steps].items()})
    fig, ax = plt.subplots()
    for family in ("creatures", "reverse", "addition"):
        ax.plot(list(results), [100 * r[family] for r in results.values()], "o-", label=family)
    ax.set_xlabel("pretraining steps (batch 64 × 64 tokens)")
    ax.set_ylabel("held-out prefix accuracy (%)")
    ax.set_title("Facts come first, reversal next, addition last and suddenly")
    ax.legend()
    plt.show()

# What you should see: creature facts are learned first (near 100 % well before the end: they are memorised
# sentences); reversing unseen strings comes next; held-out addition stays near chance for most of the run and
# then rises steeply late (the feasibility runs behind this course saw 5–11 % at ~730 steps and 57–76 % at ~810).
# That is why the package budgets training by *steps*, not wall time, and why a shorter run in lesson 03's
# section 4 writes well-formed sums with wrong answers.
