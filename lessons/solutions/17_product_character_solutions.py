# %% [markdown]
# # Lesson 17 · Product, UX and character — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/17_product_character_solutions.py`. Exercises 1–3 take seconds; exercise 4 trains DPO
# from `sft-tiny` once (the lessons' fast setting, about 20 s of CPU).

# %%
import json
import tempfile
from pathlib import Path

import pandas as pd
import torch

from rlhfbook_lab import world
from rlhfbook_lab.lesson import pick, seed_everything
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.lm.steering import opener_vector, steering, steering_curve
from rlhfbook_lab.recipes.spec_change import relabel_pairs, spec_change_config
from rlhfbook_lab.trainers.dpo import dpo_config, train_dpo

seed_everything(0)
pd.set_option("display.width", 160)
spec = world.load_spec("default")

# %% [markdown]
# ## 1 · A bad spec
#
# The error names the file and the field: an unknown feature is listed with the features that exist; a missing one
# is named with the hint that indifference is written 0.0.

# %%
with tempfile.TemporaryDirectory() as tmp:
    data = spec.to_dict()
    data["weights"]["polite_openr"] = data["weights"].pop("polite_opener")
    path = Path(tmp) / "typo.json"
    path.write_text(json.dumps(data))
    try:
        world.load_spec(path)
        raise AssertionError("a misspelt feature was accepted")
    except ValueError as e:
        print(e)
        assert "'typo.json': weights has unknown feature(s) ['polite_openr']" in str(e)
    del data["weights"]["polite_openr"]
    path.write_text(json.dumps(data))
    try:
        world.load_spec(path)
        raise AssertionError("a missing feature was accepted")
    except ValueError as e:
        print(e)
        assert "is missing the weight(s) of ['polite_opener']" in str(e)

# %% [markdown]
# ## 2 · A terser world
#
# Relabel the shipped pairs under `extra_words = −0.10` with the same draws as the default: every moved label now
# prefers the reply with fewer extra words.

# %%
terse = spec.replace(name="terser", extra_words=-0.10)
rows = load_preference_file("train", origin="on_policy")
old, new = relabel_pairs(rows, spec).rows, relabel_pairs(rows, terse).rows
moved = [(a, b) for a, b in zip(old, new) if a["chosen"] != b["chosen"]]


def words(r, side):
    return world.taste_features(r["prompt"], r[side])["extra_words"]


shorter = sum(words(b, "chosen") < words(b, "rejected") for _, b in moved)
print(f"{len(moved)} of {len(rows)} labels moved; the newly chosen reply has fewer extra words in {shorter}")
assert moved and shorter == len(moved)

# %% [markdown]
# ## 3 · Which layer?
#
# Over-steering is visible at every layer: a large α breaks the answers. The vectors grow with depth (the residual
# stream's norm does).

# %%
model, tok = load_model("sft-tiny")
problems = world.heldout_prompts(pick(32, 128), seed=0)
big = 8.0
layers = []
for layer in range(model.config.num_hidden_layers):
    v = opener_vector(model, tok, layer, n=32)
    curve = steering_curve(model, tok, v, layer, [0.0, big], problems)
    layers.append({"layer": layer, "|v|": v.norm().item(), "gold α=0": curve[0]["gold"],
                   f"gold α={big:g}": curve[1]["gold"], "opener α=8": curve[1]["opener"]})
layers = pd.DataFrame(layers).set_index("layer")
print(layers)
assert (layers[f"gold α={big:g}"] < layers["gold α=0"]).all()

# %% [markdown]
# ## 4 · Steer the other way
#
# Train DPO on the default spec's labels (the model then opens many of its samples with a polite phrase), then
# steer it with a negative α along its own opener vector and count openers in its samples.
#
# What you should see (one fast-mode run of this file): the opener rate does *not* fall (0.72 at α = 0, −2 and −4)
# while correctness does (0.50 → 0.47 → 0.41). The mean-difference vector is not the lever that decides the first
# token of a reply: it moves the content. To remove a trained habit here, change the spec and retrain (section 3).

# %%
cfg = spec_change_config(fast=True)
pairs = relabel_pairs(load_preference_file("train", origin="on_policy")[:cfg.num_pairs], "default").rows
policy, _ = load_model("sft-tiny")
torch.manual_seed(0)
train_dpo(policy, tok, pairs, dpo_config(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=0,
                                         warmup_steps=4), progress=False)
v = opener_vector(policy, tok, 3, n=32)


def has(t):
    return t.startswith(world.judge.POLITE_OPENERS)


rates = {}
for alpha in (0.0, -2.0, -4.0):
    with steering(policy, v, 3, alpha):
        ev = evaluate_chat(policy, tok, problems, greedy=False, seed=0)
    rates[alpha] = (sum(has(y) for _, y, _ in ev.rows) / len(ev.rows), ev.overall["correct_rate"])
print(pd.DataFrame(rates, index=["opener rate (sampled)", "correct"]).T)
assert rates[0.0][0] > 0.3  # the default-labelled model does open many replies politely
