# %% [markdown]
# # Lesson 12 · Synthetic data and AI feedback — solutions to the exercises
#
# Run a cell at a time (VS Code / Jupyter understand the `# %%` markers) or the whole file with
# `python lessons/solutions/12_synthetic_data_solutions.py`. Exercises 1–3 take seconds; exercise 4 runs the
# lesson's study once more with one DPO arm (about 25 s of CPU in fast mode); exercise 5 reads the shipped
# distillation result; exercise 6 samples `sft-tiny` once (a few seconds).

# %%
import numpy as np
import pandas as pd

from rlhfbook_lab import world
from rlhfbook_lab.lesson import pick, seed_everything
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.pool_scoring import gold_scorer, reward_model_scorer
from rlhfbook_lab.lm.preference_data import subsample_pairs
from rlhfbook_lab.lm.reward_model import load_reward_model
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.recipes import distillation as dist
from rlhfbook_lab.recipes import synthetic_data as sd

seed_everything(0)
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1 · Refused inputs
#
# Each error names the field: the verdict's index, the source, the principle.

# %%
add = world.make_problem("addition", (17, 25))
probs = world.heldout_prompts(2, seed=0)
attempts = {
    "a tie verdict": lambda: sd.pairs_from_verdicts([add], ["17 + 25 = 42."], ["17 + 25 = 41."], ["tie"], "me"),
    "a source with no replies": lambda: sd.ultrafeedback_pairs(
        probs, {"sft": ["a.", "b."], "silent": ["", ""]}, {"sft": [0, 0], "silent": [0, 0]}),
    "an empty principle": lambda: sd.constitution_judge({"concise": ""}),
    "an unknown principle": lambda: sd.constitution_judge({"charm": "Be charming."}),
}
for what, attempt in attempts.items():
    try:
        attempt()
        raise AssertionError(f"{what} was accepted")
    except ValueError as e:
        print(f"{what:26s} → {e}")
        assert any(k in str(e) for k in ("verdicts[0]", "replies['silent']", "constitution['concise']",
                                        "constitution['charm']"))

# %% [markdown]
# ## 2 · Which principle alone?
#
# A single principle that cannot separate a pair leaves it to a coin, so a principle about a rare feature
# (repetition, an unclean end) is close to chance. "Answer correctly" is the best single labeller: correctness is
# the heaviest row of the gold table. The whole constitution mixes the principles (a random one per pair, the next
# one when the first has no opinion), which is why it can beat each of them.

# %%
rows = subsample_pairs(load_preference_file("heldout"), pick(128, 512), seed=0)
agreement = {name: sd.judge_biases(sd.constitution_judge({name: text}), rows)["agreement"]
             for name, text in sd.CONSTITUTION.items()}
agreement["(whole constitution)"] = sd.judge_biases(sd.constitution_judge(), rows)["agreement"]
print(pd.Series(agreement).round(3).to_string())
single = {k: v for k, v in agreement.items() if k in sd.CONSTITUTION}
assert max(single, key=single.get) == "correct"
print("the whole constitution beats every single principle:", agreement["(whole constitution)"] > max(single.values()))

# %% [markdown]
# ## 3 · A perfect scorer
#
# The same replies, scored by the gold judge instead of `rm-tiny`. The AI picks the gold-best reply on most but
# not all prompts; where it misses, its choice carries a polite opener or is wrong.

# %%
problems = world.heldout_prompts(pick(64, 256), seed=5)
replies = sd.source_replies(sd.SOURCES, problems, max_new_tokens=32)
rm_scorer = reward_model_scorer(*load_reward_model("rm-tiny"))
scores = {by: {s: np.asarray(f(problems, rs)) for s, rs in replies.items()}
          for by, f in (("rm-tiny", rm_scorer), ("gold", gold_scorer))}
picked = {by: sd.ultrafeedback_pairs(problems, replies, sc, seed=0)[0] for by, sc in scores.items()}
same = np.mean([a["best"] == b["best"] for a, b in zip(picked["rm-tiny"], picked["gold"])])
for by, rows_ in picked.items():
    sources = pd.Series([r["best_source"] for r in rows_]).value_counts().to_dict()
    mean_gold = np.mean([world.gold_score(r["problem"], r["best"]) for r in rows_])
    print(f"chosen by {by:8s}: mean gold {mean_gold:+.3f}; sources {sources}")
print(f"rm-tiny's chosen reply is gold's on {same:.0%} of prompts")
assert 0.3 < same < 1.0

# %% [markdown]
# ## 4 · β, as Zephyr re-ran it
#
# A smaller β lets DPO move further from `sft-tiny` on the same steps. Compare the gain with the lesson's (β = 0.1,
# printed there); in fast mode both are noisy at ±0.03, so read the standard errors before the means.

# %%
cfg = sd.synthetic_config(fast=True, beta=0.01, arms=("ai",))
low_beta = sd.run_ai_feedback(cfg)
g = low_beta.gains["dpo[ai] - sft"]
print(pd.DataFrame(low_beta.table).set_index("model").round(3))
print(f"β = 0.01: DPO on AI labels {g['diff']:+.3f} ± {g['se']:.3f} gold over SFT")
assert np.isfinite(g["diff"]) and g["se"] > 0

# %% [markdown]
# ## 5 · What a student keeps, family by family
#
# The oracle teacher gains most where `sft-tiny` is least sure: on `creatures` (where a creature lives, a fact
# learned in pretraining) eight guesses often contain the right one and the gold judge picks it. A student learns
# one reply per prompt; on held-out creatures it must *recall* the fact, and no reply it was shown teaches a fact
# it did not know. So that family's gain is the search's, not the data's: the student keeps none of it.

# %%
distilled = dist.load_result()
m = distilled["models"]
keep = {}
for family, base in m["sft-tiny"]["correct_by_family"].items():
    teacher_gain = m["teacher[gold]"]["correct_by_family"][family] - base
    student_gain = m["student[gold]"]["correct_by_family"][family] - base
    keep[family] = {"teacher gain": teacher_gain, "student gain": student_gain,
                    "kept": student_gain / teacher_gain if teacher_gain else float("nan")}
keep = pd.DataFrame(keep).T
print(keep.round(2))
assert keep.loc["creatures", "teacher gain"] == keep["teacher gain"].max()   # the search helps most here ...
assert keep.loc["creatures", "student gain"] < 0                              # ... and the student keeps none of it

# %% [markdown]
# ## 6 · Which principle is worth the most?
#
# The rule's revision under "answer correctly" lifts gold the most: it changes fewer replies than "polite" does,
# but correctness is the heaviest row of the taste table. No rule revision lowers a reply's gold score: each fixes
# its own principle's features and leaves the rest of the reply as it was (`world.revise`'s guarantee, tested in
# `tests/test_constitution.py`). The learned reviser of §3 is far from this: it miscopies what it should keep.

# %%
sft_model, sft_tok = load_model("sft-tiny")
problems6 = world.heldout_prompts(pick(96, 400), seed=3)
ev6 = evaluate_chat(sft_model, sft_tok, problems6, greedy=False, seed=0)
pairs6 = [(p, r) for p, (_, r, _) in zip(problems6, ev6.rows) if r.strip()]
before = np.array([world.gold_score(p, r) for p, r in pairs6])
worth = {}
for name in world.CONSTITUTION:
    revised = [world.revise(p, r, name) for p, r in pairs6]
    after = np.array([world.gold_score(p, x) for (p, _), x in zip(pairs6, revised)])
    worth[name] = {"gold gain": float((after - before).mean()),
                   "replies changed": float(np.mean([x != r.strip() for (_, r), x in zip(pairs6, revised)])),
                   "lowest change": float((after - before).min())}
worth = pd.DataFrame(worth).T
print(worth.round(3))
assert worth["gold gain"].idxmax() == "correct"
assert (worth["lowest change"] >= -1e-9).all()
