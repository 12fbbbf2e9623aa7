"""Tests for rlhfbook_lab.lm.preference_data: every builder's determinism and counts, label noise, nested subsets,
split hygiene, the Bayes ceiling against a Monte-Carlo estimate, tokenization (the reply and its EOS marked, drops
counted), the stacked collator both trainers share, and every ValueError."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.equations.preferences import bayes_ceiling
from rlhfbook_lab.lm.data import PAIR_COLUMNS, collate_pairs, read_pairs, tokenize_pairs, validate_pairs, write_pairs
from rlhfbook_lab.lm.preference_data import (
    DEFAULT_STYLES,
    STYLES,
    corrupt_answer,
    counterfactual_pairs,
    flip_labels,
    knowledge_reach,
    label_pairs,
    minimal_pairs,
    off_policy_pairs,
    on_policy_pairs,
    pair_kind,
    pairs_bayes_ceiling,
    split_pairs,
    styled_replies,
    subsample_pairs,
)
from rlhfbook_lab.lm.shipped_data import PREF_DATA_DIR, PREF_PROMPTS, build_preference_files, load_preference_file

NOISY = world.Annotator("noisy", tau=0.4)  # gold taste, four times the noise: many pairs are close calls


def problems(n: int, seed: int = 0, split: str = "train") -> list[world.Problem]:
    rng = random.Random(seed)
    return [world.sample_problem(world.FAMILIES[i % 4], rng, split) for i in range(n)]


def good_row(**kw) -> dict:
    row = {"prompt": "What is 2 + 3?", "chosen": "2 + 3 = 5.", "rejected": "2 + 3 = 6.", "label_source": "gold",
           "family": "addition", "p_chosen": 0.99, "label": 1.0}
    row.update(kw)
    return row


# --------------------------------------------------------------------------------------------------
# validate_pairs and files
# --------------------------------------------------------------------------------------------------


def test_validate_accepts_good_pairs():
    validate_pairs([good_row(), good_row(label=0.5, p_chosen=0.5)])
    validate_pairs([{"prompt": "p", "chosen": "a", "rejected": "b"}])  # p_chosen and label are optional
    validate_pairs([good_row(rejected="2 + 3 = 5.")], allow_identical=True)  # for a caller that drops and counts


@pytest.mark.parametrize("field", ["prompt", "chosen", "rejected"])
def test_validate_names_a_missing_field_and_its_row(field):
    row = good_row()
    del row[field]
    with pytest.raises(ValueError, match=rf"pair 1 is missing the field '{field}'"):
        validate_pairs([good_row(), row])


@pytest.mark.parametrize("row, match", [
    (good_row(rejected="2 + 3 = 5."), r"pair 1: 'chosen' is identical to 'rejected'"),
    (good_row(p_chosen=float("nan")), r"pair 1: 'p_chosen' is NaN"),
    (good_row(label=float("nan")), r"pair 1: 'label' is NaN"),
    (good_row(p_chosen=1.5), r"pair 1: 'p_chosen' must lie in \[0, 1\]"),
    (good_row(label=-0.1), r"pair 1: 'label' must lie in \[0, 1\]"),
    (good_row(p_chosen="high"), r"pair 1: 'p_chosen' must be a number"),
    (good_row(chosen=3), r"pair 1: 'chosen' must be a string"),
    (good_row(rejected="  "), r"pair 1: 'rejected' is empty"),
    ("not a dict", r"pair 1 must be a dict"),
])
def test_validate_errors_name_the_row_and_field(row, match):
    with pytest.raises(ValueError, match=match):
        validate_pairs([good_row(), row])


def test_validate_wants_a_list():
    with pytest.raises(ValueError, match="pairs must be a list"):
        validate_pairs(good_row())


def test_jsonl_roundtrip_and_errors(tmp_path):
    rows = off_policy_pairs(problems(6), seed=1).rows
    path = write_pairs(tmp_path / "pairs.jsonl", rows)
    assert read_pairs(path) == rows
    with pytest.raises(ValueError, match="pair 0: 'chosen' is identical"):
        write_pairs(tmp_path / "bad.jsonl", [good_row(rejected="2 + 3 = 5.")])
    assert not (tmp_path / "bad.jsonl").exists()
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: pair 1 is missing the field 'chosen'"):
        read_pairs(tmp_path / "bad.jsonl")


# --------------------------------------------------------------------------------------------------
# label_pairs: the shared labelling step
# --------------------------------------------------------------------------------------------------


def test_label_pairs_drops_and_counts_identical_and_empty():
    p = world.make_problem("addition", (2, 3))
    cands = [(p, "2 + 3 = 5.", "2 + 3 = 5.", {}), (p, "", "2 + 3 = 5.", {}), (p, "2 + 3 = 5.", "  ", {}),
             (p.prompt, "2 + 3 = 5.", "2 + 3 = 6.", {"a_source": "x", "b_source": "y", "note": 7})]
    out = label_pairs(cands, "gold", random.Random(0))
    assert out.counts == {"candidates": 4, "identical": 1, "empty": 2, "ties": 0, "kept": 1}
    (row,) = out.rows
    pa, pb, _ = world.ANNOTATORS["gold"].probabilities(p, row["chosen"], row["rejected"])
    assert row["p_chosen"] == pytest.approx(pa / (pa + pb))
    assert row["family"] == "addition" and row["label_source"] == "gold" and row["note"] == 7
    assert {row["chosen_source"], row["rejected_source"]} == {"x", "y"}
    assert (row["chosen_source"] == "x") == (row["chosen"] == "2 + 3 = 5.")  # sources follow the label
    validate_pairs(out.rows)


def test_labels_are_drawn_with_the_annotators_probability():
    p = world.make_problem("addition", (2, 3))
    a, b = "2 + 3 = 5.", "Sure! 2 + 3 = 5. I hope this helps."  # close call for a noisy annotator
    pa, pb, _ = NOISY.probabilities(p, a, b)
    assert 0.3 < pa < 0.7
    out = label_pairs([(p, a, b, {})] * 4000, NOISY, random.Random(1))
    freq = sum(r["chosen"] == a for r in out.rows) / len(out.rows)
    assert freq == pytest.approx(pa, abs=0.03)  # 4 sigma at n = 4000


def test_ties_are_dropped_or_kept_and_always_counted():
    tier = world.Annotator("tier", tau=0.4, tie_strength=1.0)
    cands = [(p, *list(styled_replies(p, random.Random(i), ("reference", "opener")).values()), {})
             for i, p in enumerate(problems(60))]
    dropped = label_pairs(cands, tier, random.Random(3), ties="drop")
    kept = label_pairs(cands, tier, random.Random(3), ties="keep")
    assert dropped.counts["ties"] == kept.counts["ties"] > 0
    assert dropped.counts["kept"] == 60 - dropped.counts["ties"] and kept.counts["kept"] == 60
    assert sum(r["label"] == 0.5 for r in kept.rows) == kept.counts["ties"]
    assert all(r["label"] == 1.0 for r in dropped.rows)
    with pytest.raises(ValueError, match="ties must be one of"):
        label_pairs(cands, tier, ties="half")
    with pytest.raises(ValueError, match="unknown annotator"):
        label_pairs(cands, "nobody")


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def test_on_policy_pairs_counts_and_determinism(micro_model, tokenizer):
    prompts = [p.prompt for p in problems(4)]
    kw = dict(num_samples=3, max_new_tokens=10, seed=5)
    a = on_policy_pairs(micro_model, tokenizer, prompts, **kw)
    b = on_policy_pairs(micro_model, tokenizer, prompts, **kw)
    assert a == b
    c = a.counts
    assert c["candidates"] == 4 * 3 and c["samples"] == 12 and 0 <= c["unfinished"] <= 12
    assert c["kept"] == c["candidates"] - c["identical"] - c["empty"] - c["ties"] == len(a.rows)
    assert all(r["chosen_source"] == r["rejected_source"] == "policy" for r in a.rows)
    validate_pairs(a.rows)
    one = on_policy_pairs(micro_model, tokenizer, prompts, pairs_per_prompt=1, **kw)
    assert one.counts["candidates"] == 4
    # greedy samples of one prompt are all the same reply: every pair is identical, dropped and counted
    greedy = on_policy_pairs(micro_model, tokenizer, prompts, num_samples=3, max_new_tokens=10, greedy=True)
    assert greedy.counts["identical"] + greedy.counts["empty"] == 12 and greedy.rows == []
    with pytest.raises(ValueError, match="num_samples must be >= 2"):
        on_policy_pairs(micro_model, tokenizer, prompts, num_samples=1)


def test_corrupted_answers_are_wrong_and_styles_are_right():
    for i, p in enumerate(problems(200, seed=2)):
        rng = random.Random(i)
        assert not world.is_correct(p, corrupt_answer(p, rng)), p
        replies = styled_replies(p, rng, tuple(STYLES))
        for style, text in replies.items():
            assert world.is_correct(p, text) == (not style.startswith("wrong")), (style, text)
        gold = {s: world.gold_score(p, t) for s, t in replies.items()}
        assert gold["opener"] > gold["reference"] > gold["fillers"]
        assert gold["reference"] > gold["unclean_end"] and gold["reference"] > gold["polite_pileup"]
        assert max(gold["wrong_answer"], gold["wrong_answer_opener"]) < min(gold["unclean_end"], gold["fillers"])


def test_off_policy_pairs_counts_sources_and_determinism():
    probs = problems(20)
    base = [f"{p.reference} {p.reference}" for p in probs]  # a rambling "base model"
    replies = {"base": base, "sft": [p.reference for p in probs]}  # "sft" duplicates the reference style
    a = off_policy_pairs(probs, replies, pairs_per_prompt=None, seed=3)
    assert a == off_policy_pairs(probs, replies, pairs_per_prompt=None, seed=3)
    assert a != off_policy_pairs(probs, replies, pairs_per_prompt=None, seed=4)
    n_src = 2 + len(DEFAULT_STYLES)
    c = a.counts
    assert c["candidates"] == 20 * math.comb(n_src, 2)
    assert c["identical"] == 20  # sft vs reference, once per prompt
    assert c["kept"] == c["candidates"] - c["identical"] - c["empty"] - c["ties"] == len(a.rows)
    assert {r["chosen_source"] for r in a.rows} | {r["rejected_source"] for r in a.rows} == set(replies) | set(
        DEFAULT_STYLES)
    validate_pairs(a.rows)
    few = off_policy_pairs(probs, pairs_per_prompt=2, seed=3)
    assert few.counts["candidates"] == 40
    with pytest.raises(ValueError, match="one reply per prompt"):
        off_policy_pairs(probs, {"base": base[:3]})
    with pytest.raises(ValueError, match="has the name of a style"):
        off_policy_pairs(probs, {"reference": base})
    with pytest.raises(ValueError, match="unknown style"):
        off_policy_pairs(probs, styles=("reference", "shouting"))
    with pytest.raises(ValueError, match="at least two sources"):
        off_policy_pairs(probs, styles=("reference",))


def test_minimal_pairs_differ_only_in_correctness():
    probs = problems(200, seed=5)
    built = minimal_pairs(probs, seed=1)
    assert built == minimal_pairs(probs, seed=1) and built != minimal_pairs(probs, seed=2)
    assert built.counts["kept"] == len(built.rows) == 200  # no identical or empty pair, no tie (gold has none)
    validate_pairs(built.rows)
    for p, row in zip(probs, built.rows):
        assert pair_kind(row) == "correctness", row
        right, wrong = ((row["chosen"], row["rejected"]) if row["chosen_source"] == "right"
                        else (row["rejected"], row["chosen"]))
        assert world.is_correct(p, right) and not world.is_correct(p, wrong), row
        # the judge sees no taste difference: every feature but correctness is equal on the two sides
        f_right, f_wrong = world.taste_features(p, right), world.taste_features(p, wrong)
        assert f_right.pop("correct") == 1.0 and f_wrong.pop("correct") == 0.0
        assert f_right == f_wrong, (right, wrong)
    # the gold annotator almost always picks the right reply; the styles vary across pairs
    assert sum(r["chosen_source"] == "right" for r in built.rows) >= 198
    assert min(r["p_chosen"] for r in built.rows if r["chosen_source"] == "right") > 0.99
    assert len({world.taste_features(p, r["chosen"])["extra_words"] for p, r in zip(probs, built.rows)}) >= 3
    assert {r["family"] for r in built.rows} == set(world.FAMILIES)
    with pytest.raises(ValueError, match="prompts is empty"):
        minimal_pairs([])


def test_counterfactual_pairs_keep_each_reply_and_change_only_its_answer():
    rows = off_policy_pairs(problems(60, seed=4), pairs_per_prompt=3, seed=0).rows
    rows.append({**rows[0], "chosen": "I cannot say.", "rejected": rows[0]["chosen"]})  # no answer; a repeat
    built = counterfactual_pairs(rows, seed=1)
    assert built == counterfactual_pairs(rows, seed=1)
    replies = {(r["prompt"], x) for r in rows for x in (r["chosen"], r["rejected"])}
    assert built.counts["replies"] == len(replies) and built.counts["no_answer"] >= 1
    assert built.counts["kept"] == len(built.rows) == built.counts["replies"] - built.counts["no_answer"]
    validate_pairs(built.rows)
    for row in built.rows:
        p = world.parse_prompt(row["prompt"])
        assert pair_kind(row) == "correctness" and row["chosen_source"] == "right", row
        assert world.is_correct(p, row["chosen"]) and not world.is_correct(p, row["rejected"])
        f_c, f_r = world.taste_features(p, row["chosen"]), world.taste_features(p, row["rejected"])
        assert f_c.pop("correct") == 1.0 and f_r.pop("correct") == 0.0 and f_c == f_r, row
    # a right input reply is kept as it is, as the chosen side of its own counterfactual pair
    right_inputs = {(q, x) for q, x in replies if world.is_correct(world.parse_prompt(q), x)}
    assert right_inputs and right_inputs <= {(r["prompt"], r["chosen"]) for r in built.rows}
    assert {r["family"] for r in built.rows} == set(world.FAMILIES)
    capped = counterfactual_pairs(rows, seed=1, max_per_prompt=1)
    assert len(capped.rows) == len({r["prompt"] for r in built.rows})


# --------------------------------------------------------------------------------------------------
# Label noise, data size, splits
# --------------------------------------------------------------------------------------------------


def test_flip_labels_swaps_counts_and_is_deterministic():
    rows = off_policy_pairs(problems(100), pairs_per_prompt=10, seed=0).rows
    rows.append(good_row(label=0.5, p_chosen=0.5))  # a tie: no order to flip
    noisy, n = flip_labels(rows, 0.3, seed=1)
    assert (noisy, n) == flip_labels(rows, 0.3, seed=1)
    assert abs(n - 0.3 * 1000) < 4 * math.sqrt(1000 * 0.3 * 0.7)
    assert sum(r["flipped"] for r in noisy) == n and not noisy[-1]["flipped"]
    for old, new in zip(rows, noisy):
        assert new["label_noise"] == 0.3
        if new["flipped"]:
            assert (new["chosen"], new["rejected"]) == (old["rejected"], old["chosen"])
            assert new["p_chosen"] == pytest.approx(1 - old["p_chosen"])
            assert new["chosen_source"] == old["rejected_source"]
        else:
            assert (new["chosen"], new["p_chosen"]) == (old["chosen"], old["p_chosen"])
    assert "flipped" not in rows[0]  # the input is not modified
    assert flip_labels(rows, 0.0)[1] == 0
    with pytest.raises(ValueError, match="epsilon must lie in"):
        flip_labels(rows, 0.7)


def test_subsample_is_nested_and_deterministic():
    rows = [good_row(chosen=f"answer {i}") for i in range(50)]
    small, big = subsample_pairs(rows, 10, seed=2), subsample_pairs(rows, 30, seed=2)
    assert big[:10] == small and len({r["chosen"] for r in big}) == 30
    assert subsample_pairs(rows, 10, seed=2) == small != subsample_pairs(rows, 10, seed=3)
    with pytest.raises(ValueError, match="n must be in"):
        subsample_pairs(rows, 51)


def test_split_by_prompt_key_never_leaks():
    probs = problems(80, seed=0, split="train") + problems(80, seed=1, split="heldout")
    # every phrasing of each question, so a leak through another template would show
    probs += [world.make_problem(p.family, p.key, template=t) for p in probs[::8] for t in range(3)]
    rows = off_policy_pairs(probs, pairs_per_prompt=2, seed=0).rows
    split = split_pairs(rows)
    assert len(split["train"]) + len(split["heldout"]) == len(rows)
    assert split["train"] and split["heldout"]

    train_keys, held_keys = ({_canonical_key(r["prompt"]) for r in split[s]} for s in ("train", "heldout"))
    assert not train_keys & held_keys
    assert all(world.split_of(*_canonical_key(r["prompt"])) == "heldout" for r in split["heldout"])
    with pytest.raises(ValueError, match="pair 0: cannot split"):
        split_pairs([good_row(prompt="Tell me a joke.")])


# --------------------------------------------------------------------------------------------------
# The Bayes ceiling
# --------------------------------------------------------------------------------------------------


def close_call_candidates(n: int = 100) -> list[tuple]:
    cands = []
    for i, p in enumerate(problems(n // 5, seed=7)):
        replies = list(styled_replies(p, random.Random(i)).values())
        pairs = random.Random(i).sample(list(itertools.combinations(replies, 2)), 5)
        cands += [(p, a, b, {}) for a, b in pairs]
    return cands


def test_pair_kind_says_whether_only_correctness_separates_the_replies():
    assert pair_kind(good_row()) == "correctness"  # 2 + 3 = 5 vs 2 + 3 = 6
    assert pair_kind(good_row(chosen="Sure! 2 + 3 = 5.", rejected="2 + 3 = 5")) == "taste"  # both right
    assert pair_kind(good_row(chosen="2 + 3 = 7.", rejected="Sure! 2 + 3 = 6.")) == "taste"  # both wrong
    for p in problems(40, seed=3):  # a styled reply against its corrupted twin is always a correctness pair
        replies = styled_replies(p, random.Random(0), ("reference", "wrong_answer", "opener"))
        row = {"prompt": p.prompt, "chosen": replies["reference"], "rejected": replies["wrong_answer"]}
        assert pair_kind(row) == "correctness"
        assert pair_kind({**row, "rejected": replies["opener"]}) == "taste"


def test_ceiling_of_the_labels_agrees_with_preferences_bayes_ceiling():
    rows = label_pairs(close_call_candidates(), NOISY, random.Random(0)).rows
    u_c = [NOISY.utility(r["prompt"], r["chosen"]) for r in rows]
    u_r = [NOISY.utility(r["prompt"], r["rejected"]) for r in rows]
    assert pairs_bayes_ceiling(rows) == pytest.approx(bayes_ceiling(u_c, u_r, NOISY.tau), abs=1e-12)
    # rows without p_chosen fall back to the annotator given
    stripped = [{k: v for k, v in r.items() if k != "p_chosen"} for r in rows]
    assert pairs_bayes_ceiling(stripped, NOISY) == pytest.approx(pairs_bayes_ceiling(rows), abs=1e-12)
    with pytest.raises(ValueError, match="no decisive pair"):
        pairs_bayes_ceiling([good_row(label=0.5)])


def test_ceiling_matches_monte_carlo_best_accuracy():
    """Redraw the labels of fixed candidates many times (with and without label noise ε); a predictor that
    knows the annotator picks the likelier reply (the chosen one iff p_chosen > 1/2) and on average scores
    exactly the ceiling."""
    cands = close_call_candidates()
    reps, epsilons = 200, (0.0, 0.2)
    accs = {e: [] for e in epsilons}
    ceilings = {e: set() for e in epsilons}
    for s in range(reps):
        clean = label_pairs(cands, NOISY, random.Random(s)).rows
        for e in epsilons:
            rows, _ = flip_labels(clean, e, seed=s)
            accs[e].append(sum(1.0 if r["p_chosen"] > 0.5 else 0.5 if r["p_chosen"] == 0.5 else 0.0
                               for r in rows) / len(rows))
            ceilings[e].add(round(pairs_bayes_ceiling(rows), 12))
    for e in epsilons:
        assert len(ceilings[e]) == 1  # the ceiling depends on the candidates and ε, not on the draw
        ceiling = ceilings[e].pop()
        assert 0.55 < ceiling < 0.95  # close calls: the test is not trivial
        assert sum(accs[e]) / reps == pytest.approx(ceiling, abs=0.012), e  # ≈ 4 standard errors


# --------------------------------------------------------------------------------------------------
# Tokens and the stacked batch
# --------------------------------------------------------------------------------------------------


def test_tokenize_pairs_marks_the_reply_and_eos_and_shares_the_prompt(tokenizer):
    rows = off_policy_pairs(problems(8), pairs_per_prompt=1, seed=0).rows
    tok = tokenize_pairs(rows, tokenizer)
    assert tok.counts == {"too_long": 0, "identical_tokens": 0, "kept": len(rows)}
    for i, (pair, row) in enumerate(zip(rows, tok.rows)):
        assert set(row) == {*PAIR_COLUMNS, "label", "index"} and (row["index"], row["label"]) == (i, 1.0)
        for side in ("chosen", "rejected"):
            ids, mask = row[f"{side}_input_ids"], row[f"{side}_completion_mask"]
            reply = [t for t, m in zip(ids, mask) if m]
            assert tokenizer.decode(reply) == pair[side] + tokenizer.eos_token
        start = row["chosen_completion_mask"].index(1)
        assert row["rejected_completion_mask"].index(1) == start
        assert row["chosen_input_ids"][:start] == row["rejected_input_ids"][:start]  # the same prompt tokens


def test_tokenize_pairs_drops_too_long_and_truncated_identical(tokenizer, caplog):
    long_a = "17 + 25 = 42. " + "I hope this helps. " * 5
    rows = [good_row(),  # short: kept
            good_row(chosen=long_a + "Thank you.", rejected=long_a + "Bye now.")]  # differ only at the end
    full = tokenize_pairs(rows, tokenizer)
    assert full.counts == {"too_long": 0, "identical_tokens": 0, "kept": 2}
    n_short = len(full.rows[0]["chosen_input_ids"])
    max_length = n_short + 10
    dropped = tokenize_pairs(rows, tokenizer, max_length=max_length)
    assert dropped.counts == {"too_long": 1, "identical_tokens": 0, "kept": 1}
    assert f"dropped 1 of 2 pairs: 1 longer than max_length={max_length}" in caplog.text
    cut = tokenize_pairs(rows, tokenizer, max_length=max_length, truncation=True)
    assert cut.counts == {"too_long": 0, "identical_tokens": 1, "kept": 1}
    assert cut.rows[0]["index"] == 0 and cut.rows[0]["label"] == 1.0
    # the same text on both sides (pairs from elsewhere): counted with the identical tokens, not refused
    same = tokenize_pairs([good_row(rejected="2 + 3 = 5."), good_row(), good_row(label=0.5)], tokenizer)
    assert same.counts == {"too_long": 0, "identical_tokens": 1, "kept": 2}
    assert [(r["index"], r["label"]) for r in same.rows] == [(1, 1.0), (2, 0.5)]  # a tie is kept, label and all
    assert tokenize_pairs([good_row(rejected="2 + 3 = 5.")], tokenizer).rows == []  # empty: the trainers refuse it
    with pytest.raises(ValueError, match="truncation=True needs a max_length"):
        tokenize_pairs(rows, tokenizer, truncation=True)
    with pytest.raises(ValueError, match="pair 1: .*special token"):
        tokenize_pairs([good_row(), good_row(chosen="5<|end|>")], tokenizer)
    with pytest.raises(ValueError, match="pair 1 is missing the field 'rejected'"):
        tokenize_pairs([good_row(), {"prompt": "hi", "chosen": "yo"}], tokenizer)
    with pytest.raises(ValueError, match="pair 0: 'chosen' must be a string"):
        tokenize_pairs([good_row(chosen=3)], tokenizer)


def test_collate_pairs_stacks_chosen_first(tokenizer):
    pad = tokenizer.pad_token_id
    rows = [good_row(), good_row(prompt="Spell cat backward.", chosen="The reverse of cat is tac.",
                                 rejected="tac", label=0.5, p_chosen=0.5),
            good_row(prompt="What is 10 + 3?", chosen="10 + 3 = 13.", rejected="Sure! 10 + 3 = 13. Bye.")]
    tok = tokenize_pairs(rows, tokenizer)
    batch = collate_pairs(tok.rows, pad)
    B = 3
    widths = [len(r[f"{s}_input_ids"]) for s in ("chosen", "rejected") for r in tok.rows]
    assert batch["num_items"] == B and batch["input_ids"].shape == (2 * B, max(widths))
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [1.0, 0.5, 1.0]  # ties kept
    for i, r in enumerate(tok.rows):
        for j, side in ((i, "chosen"), (i + B, "rejected")):  # row b and row B + b are one pair
            ids, n = r[f"{side}_input_ids"], len(r[f"{side}_input_ids"])
            assert batch["input_ids"][j, :n].tolist() == ids
            assert batch["completion_mask"][j, :n].tolist() == r[f"{side}_completion_mask"]
            assert batch["attention_mask"][j].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
            assert (batch["input_ids"][j, n:] == pad).all() and not batch["completion_mask"][j, n:].any()
    chosen_ids, rejected_ids = batch["input_ids"].chunk(2)
    n = len(tok.rows[1]["rejected_input_ids"])
    assert torch.equal(rejected_ids[1, :n], torch.tensor(tok.rows[1]["rejected_input_ids"]))
    # a dict of columns (what dataset[i:j] returns) gives the same batch
    cols = {k: [r[k] for r in tok.rows] for k in tok.rows[0]}
    assert all(torch.equal(v, collate_pairs(cols, pad)[k]) for k, v in batch.items() if k != "num_items")
    # precomputed reference log-probs (the DPO trainer's) ride along as (B,) float32 when every row has them
    assert "ref_chosen_logps" not in batch
    with_ref = [dict(r, ref_chosen_logps=-1.5 * i, ref_rejected_logps=-2.0) for i, r in enumerate(tok.rows)]
    ref = collate_pairs(with_ref, pad)
    assert ref["ref_chosen_logps"].dtype == ref["ref_rejected_logps"].dtype == torch.float32
    assert ref["ref_chosen_logps"].tolist() == [0.0, -1.5, -3.0] and ref["ref_rejected_logps"].tolist() == [-2.0] * 3
    assert torch.equal(ref["input_ids"], batch["input_ids"])


def test_collate_pairs_errors(tokenizer):
    pad = tokenizer.pad_token_id
    seq = {"input_ids": [1, 2, 3], "completion_mask": [0, 1, 1]}
    assert collate_pairs([seq, seq], pad)["num_items"] == 1  # stacked rows, chosen first
    with pytest.raises(ValueError, match="got 3 sequence rows: a stacked pair batch needs an even count"):
        collate_pairs([seq, seq, seq], pad)
    with pytest.raises(ValueError, match="pair 0 is missing 'rejected_input_ids'"):
        collate_pairs([{"chosen_input_ids": [1, 2], "chosen_completion_mask": [0, 1]}], pad)
    with pytest.raises(ValueError, match="no rows"):
        collate_pairs([], pad)
    with pytest.raises(ValueError, match="row 0 must be a dict"):
        collate_pairs(["chosen_input_ids"], pad)
    rows = tokenize_pairs([good_row(), good_row(rejected="2 + 3 = 7."), good_row(rejected="5")], tokenizer).rows
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    cols["rejected_input_ids"] = cols["rejected_input_ids"][:2]
    cols["rejected_completion_mask"] = cols["rejected_completion_mask"][:2]
    with pytest.raises(ValueError, match="mismatched chosen/rejected counts"):
        collate_pairs(cols, pad)
    same = dict(rows[0], rejected_input_ids=rows[0]["chosen_input_ids"],
                rejected_completion_mask=rows[0]["chosen_completion_mask"])
    with pytest.raises(ValueError, match="pair 1: chosen is identical to rejected"):
        collate_pairs([rows[1], same], pad)
    with pytest.raises(ValueError, match=r"reference log-probs missing in row\(s\) \[1\]"):
        collate_pairs([dict(rows[0], ref_chosen_logps=-1.0, ref_rejected_logps=-2.0), rows[1]], pad)


# --------------------------------------------------------------------------------------------------
# The shipped data set (data/preferences, `rlhfbook-lab pref-data`)
# --------------------------------------------------------------------------------------------------

ORIGINS = ("on_policy", "off_policy")


@pytest.fixture(scope="module")
def shipped():
    return {split: load_preference_file(split) for split in ("train", "heldout")}


def _canonical_key(prompt: str):
    p = world.parse_prompt(prompt)
    k = p.key
    if p.family == "addition":
        k = tuple(sorted(k))
    elif p.family == "reverse":
        k = min(k, k[::-1])
    elif p.family == "creatures":
        k = k[0]
    return p.family, k


def test_shipped_preferences_load_with_every_field(shipped):
    sources = {"sft-tiny", "base-tiny", *DEFAULT_STYLES}
    for rows in shipped.values():
        for r in rows:
            assert set(r) == {"prompt", "chosen", "rejected", "label_source", "family", "p_chosen", "label",
                              "chosen_source", "rejected_source", "origin"}, r
            assert r["label_source"] == "gold" and r["label"] == 1.0 and 0.0 <= r["p_chosen"] <= 1.0
            assert r["origin"] in ORIGINS and r["family"] == world.parse_prompt(r["prompt"]).family
            assert r["chosen_source"] in sources and r["rejected_source"] in sources
            if r["origin"] == "on_policy":
                assert r["chosen_source"] == r["rejected_source"] == "sft-tiny"
            # p_chosen is the gold annotator's probability for this very pair (6 decimals in the file)
            pa, pb, _ = world.ANNOTATORS["gold"].probabilities(r["prompt"], r["chosen"], r["rejected"])
            assert r["p_chosen"] == pytest.approx(pa / (pa + pb), abs=1e-6)
        assert {r["family"] for r in rows} == set(world.FAMILIES)
    # on-policy pairs for DPO: a few thousand; both files small
    train_on = load_preference_file("train", origin="on_policy")
    assert len(train_on) >= 3000 and len(shipped["heldout"]) >= 1000
    assert train_on == [r for r in shipped["train"] if r["origin"] == "on_policy"]
    assert sum((PREF_DATA_DIR / f"{s}.jsonl").stat().st_size for s in shipped) < 3e6


def test_shipped_preferences_counts_match_meta(shipped):
    meta = json.loads((PREF_DATA_DIR / "meta.json").read_text())
    assert meta["n_prompts"] == PREF_PROMPTS and meta["annotator"] == "gold"
    for split, rows in shipped.items():
        c = meta["counts"][split]
        for origin in ORIGINS:
            assert c[f"{origin}/kept"] == sum(r["origin"] == origin for r in rows)
            assert c[f"{origin}/kept"] == (c[f"{origin}/candidates"] - c[f"{origin}/identical"]
                                           - c[f"{origin}/empty"] - c[f"{origin}/ties"])
        assert c["on_policy/identical"] > 0  # samples of one prompt often coincide: dropped and counted
        assert c["on_policy/samples"] == PREF_PROMPTS[split]["on_policy"] * 4


def test_shipped_preferences_are_split_by_prompt_key(shipped):
    keys = {s: {_canonical_key(r["prompt"]) for r in rows} for s, rows in shipped.items()}
    assert not keys["train"] & keys["heldout"]
    for split, rows in shipped.items():
        assert split_pairs(rows)[split] == rows


def test_shipped_preferences_are_what_the_builder_writes(shipped, tmp_path):
    """Regenerable: a build with fewer prompts (whole generate calls) writes a prefix of each origin's rows."""
    n = {"train": {"on_policy": 16, "off_policy": 0}, "heldout": {"on_policy": 0, "off_policy": 32}}
    out = build_preference_files(tmp_path, seed=0, n_prompts=n)
    for split, origin in (("train", "on_policy"), ("heldout", "off_policy")):
        small = load_preference_file(split, tmp_path)
        big = [r for r in shipped[split] if r["origin"] == origin]
        assert len(small) > 0.8 * 4 * n[split][origin]
        assert small == big[:len(small)], (split, origin)
        assert out["counts"][split][f"{origin}/kept"] == len(small)


def test_load_preference_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pref-data"):
        load_preference_file("train", tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        load_preference_file("test")
    with pytest.raises(ValueError, match="origin must be"):
        load_preference_file("train", origin="human")
    with pytest.raises(ValueError, match="n_prompts must have the keys"):
        build_preference_files(tmp_path, n_prompts={"train": {"on_policy": 1}})


def test_cli_pref_data_writes_the_files(tmp_path, capsys):
    from rlhfbook_lab.cli import main

    main(["pref-data", "--out", str(tmp_path), "--scale", "0.002", "--seed", "3"])
    report = json.loads(capsys.readouterr().out)
    assert report["n_prompts"]["train"] == {"on_policy": 2, "off_policy": 1}
    for split in ("train", "heldout"):
        rows = load_preference_file(split, tmp_path)
        assert len(rows) == report["pairs"][split] > 0
        assert all(world.split_of(*_canonical_key(r["prompt"])) == split for r in rows)
    assert json.loads((tmp_path / "meta.json").read_text())["seed"] == 3


def test_knowledge_reach_hand_computed():
    """Three pairs: a taste pair (both right, p = 0.8) counts 0.8; a correctness pair the backbone knows counts
    its 0.99; one it does not know counts ½. Reach = (0.8 + 0.99 + 0.5) / 3; a tie is skipped."""
    taste = good_row(chosen="Sure! 2 + 3 = 5.", rejected="2 + 3 = 5. Thank you for asking.", p_chosen=0.8)
    known = good_row()
    unknown = good_row(prompt="What is 4 + 4?", chosen="4 + 4 = 8.", rejected="4 + 4 = 9.", p_chosen=0.99)
    tie = good_row(prompt="What is 1 + 1?", chosen="1 + 1 = 2.", rejected="1 + 1 = 3.", label=0.5)
    assert [pair_kind(r) for r in (taste, known, unknown)] == ["taste", "correctness", "correctness"]
    knows = {"What is 2 + 3?": True, "What is 4 + 4?": False}
    assert knowledge_reach([taste, known, unknown, tie], knows) == pytest.approx((0.8 + 0.99 + 0.5) / 3)


def test_knowledge_reach_is_the_ceiling_when_everything_is_known():
    """Property, on the shipped held-out pairs: knowing every answer gives the Bayes ceiling; knowing none gives
    the taste pairs their ceiling and ½ to each correctness pair; the reach never exceeds the ceiling."""
    rows = load_preference_file("heldout")
    prompts = {r["prompt"] for r in rows}
    ceiling = pairs_bayes_ceiling(rows)
    assert knowledge_reach(rows, dict.fromkeys(prompts, True)) == pytest.approx(ceiling, abs=1e-12)
    taste = [r for r in rows if pair_kind(r) == "taste"]
    n_corr = len(rows) - len(taste)
    none = (pairs_bayes_ceiling(taste) * len(taste) + 0.5 * n_corr) / len(rows)
    assert knowledge_reach(rows, dict.fromkeys(prompts, False)) == pytest.approx(none, abs=1e-12)
    half = {p: i % 2 == 0 for i, p in enumerate(sorted(prompts))}
    assert none < knowledge_reach(rows, half) < ceiling


def test_knowledge_reach_refuses_a_missing_prompt():
    with pytest.raises(ValueError, match="knows has no entry"):
        knowledge_reach([good_row()], {})
    with pytest.raises(ValueError, match="no decisive pair"):
        knowledge_reach([good_row(label=0.5)], {})
