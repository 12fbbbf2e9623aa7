# %% [markdown]
# # Lesson 13 · Tool use — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/13_tool_use_solutions.py`. It trains the tool caller twice (60 SFT steps each, about
# 20 CPU-s each) and measures greedy replies on 100 held-out problems.
#
# The claims asserted below are loose on purpose: each exercise's question, not one run's last digit.

# %%
import json
import random

from rlhfbook_lab import world
from rlhfbook_lab.lesson import seed_everything
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.tools import lying_tool, tool_accuracy
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.recipes.tool_use import train_tool_caller
from rlhfbook_lab.world import tool_use
from rlhfbook_lab.world.calculator import run_tool_call

seed_everything(0)
heldout = tool_use.sample_problems(100, "heldout", seed=0)
model, tokenizer, history = train_tool_caller(steps=60)

# %% [markdown]
# ## 1 · A subtler lie (+1)
#
# The model copies whatever the tool says: nothing in training ever showed a wrong result, so nothing taught it to
# check. A +1 lie is copied as readily as a +100 one.

# %%
subtle = tool_accuracy(model, tokenizer, heldout, tool=lying_tool(1), lie_offset=1)
print("lie +1:", subtle)
assert subtle["copied_lie"] >= 0.5 and subtle["accuracy"] <= 0.2

# %% [markdown]
# ## 2 · Unnecessary calls on two-digit sums
#
# The tool-trained model was only ever shown three-digit sums with calls. On two-digit sums (which `sft-tiny`
# answers alone) it calls anyway: in one run (seed 0) it called on 100 % of them and got 0 % right, because it
# copies *invented three-digit operands* into the call (`What is 17 + 25?` → `[calculator(224+488) -> 712] ...`).
# Sixty steps on one family overwrote the old one: mixing the shipped SFT data back in (or replies without calls
# on two-digit sums) is the fix, and the cost per call in an RL reward is the lever the chapter describes.

# %%
rng = random.Random(0)
two_digit = [world.sample_problem("addition", rng, "heldout") for _ in range(100)]
gen = generate(model, tokenizer, [p.prompt for p in two_digit], greedy=True, max_new_tokens=48, tool=run_tool_call)
calls = sum(tool_use.CALL_CLOSE in t for t in gen.texts) / len(two_digit)
correct = sum(world.is_correct(p, t) for p, t in zip(two_digit, gen.texts)) / len(two_digit)
tokens = gen.attention_mask[:, gen.prompt_length:].sum(1).float().mean().item()
print(f"two-digit sums: calls {calls:.0%}, correct {correct:.0%}, {tokens:.1f} tokens per reply")
print(gen.texts[:3])
assert calls >= 0.5 and correct <= 0.5  # it calls where it need not, and forgot the family it knew

# %% [markdown]
# ## 3 · No mask: the result tokens become targets
#
# The model is now also trained to *write* the result after `->`. The loss includes tokens it cannot predict (the
# sum), so it ends higher; with the tool disabled the model writes a guess where the result would be, in the right
# shape, and is still almost always wrong.

# %%
unmasked, _, hist_unmasked = train_tool_caller(steps=60, mask_results=False)
last = {name: sum(h["losses/train"][-10:]) / 10 for name, h in (("masked", history), ("unmasked", hist_unmasked))}
print("final training loss:", last)
disabled = tool_accuracy(unmasked, tokenizer, heldout, tool=None)
print("unmasked, tool disabled:", disabled)
print(generate(unmasked, tokenizer, [heldout[0].prompt], greedy=True, max_new_tokens=48).texts)
assert last["unmasked"] > last["masked"]
assert disabled["accuracy"] <= 0.3

# %% [markdown]
# ## 4 · The call limit
#
# With `max_calls=0` every call is answered `error: too many tool calls`. The model never saw an error in training;
# it copies the error's text (or no number at all) and is wrong.

# %%
gen = generate(model, tokenizer, [p.prompt for p in heldout[:20]], greedy=True, max_new_tokens=64,
               tool=run_tool_call, max_calls=0)
print(gen.texts[:3])
acc = sum(tool_use.is_correct(p, t) for p, t in zip(heldout[:20], gen.texts)) / 20
assert acc <= 0.2

# %% [markdown]
# ## 5 · A judge that reads results (open)
#
# A sketch, not run here (the lesson's section 6 runs the filter with `sft-tiny` as the judge and ships the training
# study, `recipes.tool_use.toolformer_study`): score with a judge that has read results, e.g. the tool caller,
# `toolformer_scores(tool_model, tok, problems)`, then `toolformer_conversations(problems, losses, tau)` and train
# with `trainers.sft.sft` on `lm.tools.tool_sft_dataset(tok, conversations)`. Mind what the judge lost: the caller
# of section 3 has forgotten two-digit sums (exercise 2), so its L⁻ is high on them too and it keeps needless calls.
#
# Why the package scores the answer's tokens only, measured once with `sft-tiny` as the judge on the *whole* text
# after the call (60 train problems, half two-digit, `tool_problems(60, 0.5, "train", random.Random(0))`, then
# `lm.tools.toolformer_losses` on each problem's call reply): L⁻ − L⁺ had median −0.67 nats per token on three-digit
# sums and −0.33 on two-digit ones (10th-90th percentiles −0.99..−0.13 and −0.78..+0.22). A judge that has never
# seen a call finds `The answer is` unlikely whatever the result, and that phrase dominates the loss, so at any
# τ ≥ 0 the filter kept *more* two-digit calls than three-digit ones: the reverse of what it is for.

# %% [markdown]
# ## 6 · The price's history
#
# The priced run (c = 0.1) drops its two-digit calls within about ten rollouts; its KL to the start climbs at the
# same time, from near 0 to several nats per reply, while the unpriced run stays under about 1 nat. Dropping calls
# is a large change of the policy (a whole span of tokens it no longer writes), not a small reweighting. A smaller
# price would slow the drop; whether it would keep the needed three-digit calls is the question a run answers
# (`tool_rl_study(costs=(0.0, 0.02))`, a few minutes of CPU).

# %%
study = json.loads((DATA_DIR / "tool_use" / "rl_study.json").read_text())
free, priced = study["runs"]
calls = priced["history"]["calls_two_digit"]
gone = next(i for i, c in enumerate(calls) if c == 0.0) + 1
print(f"two-digit calls reach 0 at rollout {gone}; KL there {priced['history']['kl'][gone - 1]:.1f} nats "
      f"(unpriced run: {free['history']['kl'][gone - 1]:.1f})")
assert gone <= 12 and priced["history"]["kl"][gone - 1] > 2 * max(free["history"]["kl"][:gone])
