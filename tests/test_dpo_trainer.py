"""Tests for rlhfbook_lab.trainers.dpo (the losses themselves are tested in test_dpo.py; the pair tokenizer and
collator it shares with the reward model, in test_preference_data.py).

Properties: the step-0 loss is ln 2 (KTO: λ/2) when policy = reference, on a real model and a real batch; padding
never changes the loss. Second implementations: the one stacked forward against two separate forwards; the
precomputed reference against the live one; k micro-batches against one batch; ORPO's total against its parts.
A short seeded run learns the pairs; the same seed gives the same run; every malformed input is a ValueError.
"""

import copy
import math

import pytest
import torch
from torch.testing import assert_close

import rlhfbook_lab.trainers.dpo.trainer as dpo_trainer
from rlhfbook_lab import world
from rlhfbook_lab.equations.direct_alignment import orpo_loss
from rlhfbook_lab.equations.logprobs import per_token_logprobs, sequence_logprobs
from rlhfbook_lab.lm.data import BuiltDataset, collate_pairs, collate_sft, tokenize_pairs
from rlhfbook_lab.lm.forward import forward_logits, make_reference_model
from rlhfbook_lab.trainers.dpo import (
    DPOConfig,
    collate_kto,
    compute_ref_logps,
    concatenated_forward,
    dpo_loss_sum,
    kto_examples,
    tokenize_kto,
    train_dpo,
)
from rlhfbook_lab.trainers.loop import TrainConfig

LN2 = math.log(2)
PAIRED = ["dpo", "cdpo", "ipo", "simpo", "orpo"]
KEYS = [(3, 4), (12, 7), (25, 31), (8, 9), (40, 2), (6, 6), (17, 22), (30, 11)]


def make_pairs(keys=KEYS):
    """Easy pairs: chosen is the plain reference; rejected a wrong sum (odd i) or a rambling reply (even i)."""
    pairs = []
    for i, (a, b) in enumerate(keys):
        p = world.make_problem("addition", (a, b))
        wrong = world.render_response(p, answer=f"{a} + {b} = {a + b + 1}.")
        rambling = world.render_response(p, opener="Sure!", fillers=2)
        pairs.append({"prompt": p.prompt, "chosen": world.render_response(p),
                      "rejected": wrong if i % 2 else rambling})
    return pairs


def config(loss="dpo", steps=1, lr=1e-3, **kw):
    kw.setdefault("beta", 2.0 if loss == "simpo" else 0.1)
    kw.setdefault("batch_size", 8)
    return DPOConfig(loss=loss, train=TrainConfig(steps=steps, lr=lr, warmup_steps=0, weight_decay=0.0,
                                                  bf16=False, seed=0), **kw)


def perturbed(model, seed=1, scale=0.05):
    """A frozen copy of ``model`` with seeded noise on every weight: a reference that differs from the policy."""
    ref = make_reference_model(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return ref


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.fixture
def policy(micro_model):
    """A fresh trainable copy of the shared micro model (never train the session fixture itself)."""
    return copy.deepcopy(micro_model).train()


@pytest.fixture(scope="module")
def pair_rows(tokenizer):
    return tokenize_pairs(make_pairs(), tokenizer, max_length=120).rows


@pytest.fixture
def batch(pair_rows, tokenizer):
    return collate_pairs(pair_rows, tokenizer.pad_token_id)


# --- config -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    ({"beta": 0.0}, "beta"), ({"beta": -0.1}, "beta"), ({"beta": float("nan")}, "beta"),
    ({"beta": float("inf")}, "beta"), ({"loss": "ppo"}, "loss"), ({"label_smoothing": 0.6}, "label_smoothing"),
    ({"gamma": -1.0}, "gamma"), ({"orpo_nll_weight": -1.0}, "orpo_nll_weight"),
    ({"desirable_weight": 0.0}, "desirable_weight"), ({"undesirable_weight": -1.0}, "undesirable_weight"),
    ({"batch_size": 0}, "batch_size"), ({"loss": "kto", "batch_size": 1}, "batch_size"),
    ({"max_length": 1}, "max_length"),
])
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DPOConfig(**kwargs)


def test_beta_is_checked_at_every_entry_point(policy, tokenizer, batch, pair_rows):
    cfg = config()
    cfg.beta = 0.0  # changed after construction: each entry point checks again
    with pytest.raises(ValueError, match="beta"):
        train_dpo(policy, tokenizer, make_pairs(), cfg, progress=False)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss_sum(policy, batch, cfg, make_reference_model(policy))
    with pytest.raises(ValueError, match="beta"):
        compute_ref_logps(policy, pair_rows, cfg, tokenizer.pad_token_id)


# --- data -------------------------------------------------------------------------------------------------------


def test_ties_are_refused_not_trained_on_as_wins(policy, pair_rows, tokenizer):
    """preference_data keeps ties (label 0.5) for the reward model; every entry point of the DPO trainer refuses
    them, naming the pair, instead of training on them as wins."""
    tie = dict(make_pairs()[0], label=0.5)
    with pytest.raises(ValueError, match="pair 1 has label 0.5: .*strict preference"):
        train_dpo(policy, tokenizer, [make_pairs()[1], tie], config(), progress=False)
    tokenized = tokenize_pairs([make_pairs()[1], tie], tokenizer, max_length=120)
    assert [r["label"] for r in tokenized.rows] == [1.0, 0.5]  # the shared tokenizer keeps it ...
    with pytest.raises(ValueError, match="pair 1 has label 0.5"):
        train_dpo(policy, tokenizer, tokenized, config(), progress=False)  # ... the trainer refuses it
    with pytest.raises(ValueError, match="pair 1 has label 0.5"):
        train_dpo(policy, tokenizer, tokenized.rows, config(), progress=False)
    batch = collate_pairs([pair_rows[0], dict(pair_rows[1], label=0.5)], tokenizer.pad_token_id)
    assert batch["labels"].tolist() == [1.0, 0.5]  # the generic collator passes it on ...
    with pytest.raises(ValueError, match="the batch's pair 1 has label 0.5"):
        dpo_loss_sum(policy, batch, config(), make_reference_model(policy))  # ... the batch loss refuses it
    assert collate_pairs([dict(pair_rows[0], label=1.0, index=7)], tokenizer.pad_token_id)["num_items"] == 1


def test_train_dpo_refuses_data_with_no_pair_left(policy, tokenizer):
    p = world.make_problem("addition", (2, 2))
    long_pair = {"prompt": p.prompt, "chosen": world.render_response(p),
                 "rejected": world.render_response(p, fillers=30)}
    same = {"prompt": p.prompt, "chosen": "2 + 2 = 4.", "rejected": "2 + 2 = 4."}
    with pytest.raises(ValueError, match="no pair to train on: 1 longer than max_length=120, 1 with chosen identical"):
        train_dpo(policy, tokenizer, [long_pair, same], config(max_length=120), progress=False)


def test_concatenated_forward_rejects_an_unpaired_batch(policy, batch):
    odd = {k: v[:-1] for k, v in batch.items() if torch.is_tensor(v)}
    with pytest.raises(ValueError, match="mismatched chosen/rejected counts"):
        concatenated_forward(policy, odd, "sum")
    with pytest.raises(ValueError, match="mismatched chosen/rejected counts"):
        concatenated_forward(policy, dict(batch, num_items=3), "sum")


# --- a batch: properties and second implementations ------------------------------------------------------------


@pytest.mark.parametrize("loss", ["dpo", "cdpo"])
def test_step0_loss_is_ln2_when_policy_is_reference(policy, batch, loss):
    ref = make_reference_model(policy)
    B = batch["num_items"]
    loss_sum, m = dpo_loss_sum(policy, batch, config(loss), ref)
    assert abs(loss_sum.item() / B - LN2) < 1e-6
    assert m["rewards/chosen"] == m["rewards/rejected"] == m["rewards/margins"] == 0.0
    assert m["rewards/accuracies"] == 0.0  # a tie is not a win (TRL: chosen > rejected, strictly)
    assert m["logps/chosen"] < 0 and m["logps/rejected"] < 0


def test_step0_of_train_dpo_is_ln2(policy, tokenizer):
    h = train_dpo(policy, tokenizer, make_pairs(), config(steps=1), progress=False)
    assert abs(h["losses/train"][0] - LN2) < 1e-6 and h["rewards/margins"][0] == 0.0


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_one_stacked_forward_equals_two_separate_forwards(policy, batch, pair_rows, tokenizer, reduction):
    out = concatenated_forward(policy, batch, reduction)
    B = batch["num_items"]
    assert out.chosen_logps.shape == out.rejected_logps.shape == (B,)
    assert out.per_token_logps.shape == batch["input_ids"].shape
    with torch.no_grad():
        for half, side in ((slice(0, B), "chosen"), (slice(B, 2 * B), "rejected")):
            sep = collate_sft([{"input_ids": r[f"{side}_input_ids"], "completion_mask": r[f"{side}_completion_mask"]}
                               for r in pair_rows], tokenizer.pad_token_id)
            logits = forward_logits(policy, sep["input_ids"], sep["attention_mask"])
            T = sep["input_ids"].shape[1]
            mask = sep["completion_mask"].bool()
            assert_close(out.per_token_logps[half, :T][mask], per_token_logprobs(logits, sep["input_ids"])[mask],
                         rtol=0, atol=1e-5)
            seq = sequence_logprobs(logits, sep["input_ids"], sep["completion_mask"], reduction)
            # float32 sums of ~40 log-probs of ≈ −5.5: the batch shape moves the last bits (ulp ≈ 1.5e-5 at 200)
            assert_close(getattr(out, f"{side}_logps"), seq, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("loss", PAIRED)
def test_padding_does_not_change_the_loss(policy, batch, loss):
    ref = perturbed(policy)
    padded = dict(batch)
    for k, fill in (("input_ids", 0), ("attention_mask", 0), ("completion_mask", 0)):
        padded[k] = torch.nn.functional.pad(batch[k], (0, 11), value=fill)
    padded["input_ids"][:, -11:] = 1  # pad columns hold arbitrary ids; the attention mask hides them
    a, ma = dpo_loss_sum(policy, batch, config(loss), ref)
    b, mb = dpo_loss_sum(policy, padded, config(loss), ref)
    assert abs(a.item() - b.item()) < 1e-6
    assert ma.keys() == mb.keys() and all(abs(ma[k] - mb[k]) < 1e-5 for k in ma)


@pytest.mark.parametrize("loss", ["dpo", "ipo"])
def test_precomputed_reference_gives_the_live_loss_and_gradient(micro_model, pair_rows, tokenizer, loss):
    policy = copy.deepcopy(micro_model).train()
    ref = perturbed(policy)  # a reference different from the policy, so the gradient is not the symmetric one
    pad = tokenizer.pad_token_id
    live_cfg, pre_cfg = config(loss), config(loss, precompute_ref_logps=True)
    live, _ = dpo_loss_sum(policy, collate_pairs(pair_rows, pad), live_cfg, ref)
    live.backward()
    g_live = grads(policy)
    policy.zero_grad()
    rows = compute_ref_logps(ref, pair_rows, pre_cfg, pad)
    assert "ref_chosen_logps" not in pair_rows[0]  # the input rows are not modified
    pre_batch = collate_pairs(rows, pad)
    pre, _ = dpo_loss_sum(policy, pre_batch, pre_cfg)  # no ref_model: it is not needed
    pre.backward()
    assert abs(live.item() - pre.item()) < 1e-6
    for a, b in zip(g_live, grads(policy)):
        assert_close(a, b, rtol=0, atol=1e-6)
    # scored in chunks of another shape, the values agree to float32 summation noise
    chunked = collate_pairs(compute_ref_logps(ref, pair_rows, config(loss, batch_size=3), pad), pad)
    assert_close(chunked["ref_chosen_logps"], pre_batch["ref_chosen_logps"], rtol=1e-6, atol=1e-4)


def test_missing_precomputed_reference_raises(policy, batch, pair_rows, tokenizer):
    with pytest.raises(ValueError, match="reference log-probs missing"):
        dpo_loss_sum(policy, batch, config(precompute_ref_logps=True))
    rows = compute_ref_logps(policy, pair_rows[:2], config(), tokenizer.pad_token_id) + pair_rows[2:4]
    with pytest.raises(ValueError, match=r"reference log-probs missing in row\(s\) \[2, 3\]"):
        collate_pairs(rows, tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="needs a reference model"):
        dpo_loss_sum(policy, batch, config("dpo"))  # neither a reference nor precomputed log-probs


def test_train_dpo_precomputed_matches_live(micro_model, tokenizer):
    hist = {}
    for pre in (False, True):
        hist[pre] = train_dpo(copy.deepcopy(micro_model), tokenizer, make_pairs(),
                              config(steps=2, precompute_ref_logps=pre), progress=False)
    assert abs(hist[True]["losses/train"][0] - hist[False]["losses/train"][0]) < 1e-6
    assert abs(hist[True]["charts/grad_norm"][0] - hist[False]["charts/grad_norm"][0]) < 1e-6
    assert abs(hist[True]["losses/train"][1] - hist[False]["losses/train"][1]) < 1e-5


@pytest.mark.parametrize("loss", ["dpo", "simpo"])
def test_micro_batches_give_the_gradient_of_one_batch(micro_model, pair_rows, tokenizer, loss):
    """The loop's contract: sums over items, divided by the step's total. Uneven micro-batches (3 + 5) catch
    the mean-of-means bug."""
    policy = copy.deepcopy(micro_model).train()
    ref, cfg, pad = perturbed(policy), config(loss), tokenizer.pad_token_id
    whole, _ = dpo_loss_sum(policy, collate_pairs(pair_rows, pad), cfg, ref)
    (whole / len(pair_rows)).backward()
    g_one = grads(policy)
    policy.zero_grad()
    for part in (pair_rows[:3], pair_rows[3:]):
        loss_sum, _ = dpo_loss_sum(policy, collate_pairs(part, pad), cfg, ref)
        (loss_sum / len(pair_rows)).backward()
    for a, b in zip(g_one, grads(policy)):
        assert_close(a, b, rtol=0, atol=1e-6)


def test_grad_accum_in_train_dpo_matches_one_batch(micro_model, tokenizer):
    one = train_dpo(copy.deepcopy(micro_model), tokenizer, make_pairs(), config(steps=1, batch_size=8),
                    ref_model=perturbed(micro_model), progress=False)
    cfg = config(steps=1, batch_size=4)
    cfg.train.grad_accum = 2
    two = train_dpo(copy.deepcopy(micro_model), tokenizer, make_pairs(), cfg, ref_model=perturbed(micro_model),
                    progress=False)
    assert one["charts/items"] == two["charts/items"] == [8]
    assert abs(one["losses/train"][0] - two["losses/train"][0]) < 1e-6
    assert abs(one["charts/grad_norm"][0] - two["charts/grad_norm"][0]) < 1e-6


def test_orpo_adds_the_chosen_nll_to_the_odds_ratio_term(policy, batch):
    cfg = config("orpo", beta=0.2, orpo_nll_weight=0.5)
    loss_sum, m = dpo_loss_sum(policy, batch, cfg)  # reference-free: no ref_model
    B = batch["num_items"]
    with torch.no_grad():  # second implementation: separate mean log-probs, the public loss, the NLL by hand
        logits = forward_logits(policy, batch["input_ids"], batch["attention_mask"])
        mean_logps = sequence_logprobs(logits, batch["input_ids"], batch["completion_mask"], "mean")
        odds = orpo_loss(mean_logps[:B], mean_logps[B:], beta=0.2).losses
    expected = (0.5 * -mean_logps[:B] + odds).sum()
    assert abs(loss_sum.item() - expected.item()) < 1e-5
    assert abs(m["losses/nll"] + mean_logps[:B].sum().item()) < 1e-5
    assert abs(m["losses/odds_ratio"] - odds.sum().item()) < 1e-5


@pytest.mark.parametrize("loss", ["simpo", "orpo"])
def test_reference_free_losses_never_build_a_reference(policy, tokenizer, monkeypatch, loss):
    def forbidden(*args, **kwargs):
        raise AssertionError("a reference-free loss built a reference model")

    monkeypatch.setattr(dpo_trainer, "make_reference_model", forbidden)
    h = train_dpo(policy, tokenizer, make_pairs(), config(loss, steps=1, precompute_ref_logps=True), progress=False)
    assert math.isfinite(h["losses/train"][0])


# --- the reference ----------------------------------------------------------------------------------------------


def test_reference_is_a_frozen_copy_that_does_not_move(micro_model, tokenizer):
    policy = copy.deepcopy(micro_model)
    ref = make_reference_model(policy)
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())
    before = [p.clone() for p in ref.parameters()]
    for a, b in zip(policy.parameters(), ref.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    train_dpo(policy, tokenizer, make_pairs(), config(steps=2), ref_model=ref, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, ref.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(policy.parameters(), ref.parameters()))
    with pytest.raises(ValueError, match="shares parameters with the policy"):
        train_dpo(policy, tokenizer, make_pairs(), config(), ref_model=policy, progress=False)


# --- KTO --------------------------------------------------------------------------------------------------------


def test_kto_examples_unroll_pairs_as_trl_does():
    pairs = make_pairs()[:2]
    ex = kto_examples(pairs)
    assert [e["label"] for e in ex] == [True, False, True, False]
    assert [e["completion"] for e in ex] == [pairs[0]["chosen"], pairs[0]["rejected"], pairs[1]["chosen"],
                                             pairs[1]["rejected"]]


def test_tokenize_kto_rows_and_errors(tokenizer):
    ds, dropped = tokenize_kto(tokenizer, kto_examples(make_pairs()), max_length=120, seed=0)
    assert dropped == 0 and len(ds) == 2 * len(KEYS)
    assert ds["desirable"] == [True, False] * len(KEYS)
    # every mismatched row pairs the row's own prompt with another row's completion
    for r in ds:
        start, kl_start = r["completion_mask"].index(1), r["kl_completion_mask"].index(1)
        assert r["kl_input_ids"][:kl_start] == r["input_ids"][:start]
    assert sum(r["kl_input_ids"] == r["input_ids"] for r in ds) == 0
    with pytest.raises(ValueError, match="desirable and undesirable"):
        tokenize_kto(tokenizer, [e for e in kto_examples(make_pairs()) if e["label"]], max_length=120)
    with pytest.raises(ValueError, match="label must be a bool"):
        tokenize_kto(tokenizer, [{"prompt": "hi", "completion": "yo", "label": 1}], max_length=120)


def test_kto_step0_loss_is_half_the_weight_and_needs_both_classes(policy, tokenizer):
    ds, _ = tokenize_kto(tokenizer, kto_examples(make_pairs()[:4]), max_length=120)
    rows = ds.to_list()
    b = collate_kto(rows, tokenizer.pad_token_id)
    cfg = config("kto", desirable_weight=1.0, undesirable_weight=2.0)
    loss_sum, m = dpo_loss_sum(policy, b, cfg, make_reference_model(policy))
    # policy = reference: every log-ratio and z_ref are 0, so each loss is λ·(1 − σ(0)) = λ/2
    assert abs(loss_sum.item() - (4 * 1.0 + 4 * 2.0) / 2) < 1e-6
    assert m["kto/kl"] == 0.0 and m["rewards/margins"] == 0.0
    only_good = collate_kto([r for r in rows if r["desirable"]], tokenizer.pad_token_id)
    with pytest.raises(ValueError, match="at least one desirable and one undesirable"):
        dpo_loss_sum(policy, only_good, cfg, make_reference_model(policy))
    with pytest.raises(ValueError, match="reference log-probs missing"):
        dpo_loss_sum(policy, b, config("kto", precompute_ref_logps=True))
    pre = collate_kto(compute_ref_logps(policy, rows, cfg, tokenizer.pad_token_id), tokenizer.pad_token_id)
    pre_sum, _ = dpo_loss_sum(policy, pre, config("kto", desirable_weight=1.0, undesirable_weight=2.0,
                                                  precompute_ref_logps=True))
    assert abs(pre_sum.item() - loss_sum.item()) < 1e-6


def test_kto_training_keeps_both_classes_in_every_micro_batch(micro_model, tokenizer):
    """Batches of 2 from 16 examples: any micro-batch with one class would make kto_loss raise."""
    data = BuiltDataset(*tokenize_kto(tokenizer, kto_examples(make_pairs()), max_length=120))
    h = train_dpo(copy.deepcopy(micro_model), tokenizer, data, config("kto", steps=12, batch_size=2),
                  progress=False)
    assert len(h["losses/train"]) == 12 and h["data/num_items"] == [16]


# --- the loop ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def log_ratio_margins(policy, ref, rows, pad):
    """(log π − log π_ref)(chosen) − (log π − log π_ref)(rejected) per pair, scored side by side, not stacked."""
    def logps(model, side):
        b = collate_sft([{"input_ids": r[f"{side}_input_ids"], "completion_mask": r[f"{side}_completion_mask"]}
                         for r in rows], pad)
        return sequence_logprobs(forward_logits(model, b["input_ids"], b["attention_mask"]), b["input_ids"],
                                 b["completion_mask"])

    return (logps(policy, "chosen") - logps(ref, "chosen")) - (logps(policy, "rejected") - logps(ref, "rejected"))


def test_short_dpo_run_learns_the_pairs(micro_model, pair_rows, tokenizer):
    policy = copy.deepcopy(micro_model)
    h = train_dpo(policy, tokenizer, make_pairs(), config(steps=30, lr=1e-3), progress=False)
    assert h["rewards/accuracies"][0] == 0.0 and h["rewards/margins"][0] == 0.0
    assert min(h["rewards/accuracies"][-5:]) == 1.0
    assert h["rewards/margins"][-1] > 0.5
    assert h["losses/train"][-1] < 0.5 * h["losses/train"][0]
    assert h["rewards/chosen"][-1] > h["rewards/rejected"][-1]
    # what the policy learned, measured outside the trainer: every chosen reply gained on its rejected one
    margins = log_ratio_margins(policy, micro_model, pair_rows, tokenizer.pad_token_id)
    assert (margins > 0).all()
    _, m = dpo_loss_sum(policy, collate_pairs(pair_rows, tokenizer.pad_token_id), config(),
                        make_reference_model(micro_model))
    assert abs(m["rewards/margins"] - 0.1 * margins.sum().item()) < 1e-4  # the trainer's metric agrees
    assert m["rewards/accuracies"] == len(pair_rows)


@pytest.mark.parametrize("loss", ["cdpo", "ipo", "simpo", "orpo", "kto"])
def test_short_runs_of_every_loss_raise_the_margin(micro_model, tokenizer, loss):
    cfg = config(loss, steps=15, lr=1e-3, batch_size=4)
    h = train_dpo(copy.deepcopy(micro_model), tokenizer, make_pairs(), cfg, progress=False)
    # the margin in log-prob units (rewards are β × log-probs or log-ratios) grows
    assert (h["rewards/margins"][-1] - h["rewards/margins"][0]) / cfg.beta > 0.1
    assert h["losses/train"][-1] < h["losses/train"][0]
    if loss != "kto":
        assert sum(h["rewards/accuracies"][-5:]) / 5 > max(h["rewards/accuracies"][0], 0.5)


def test_same_seed_same_run(micro_model, tokenizer):
    runs, models = [], []
    for _ in range(2):
        model = copy.deepcopy(micro_model)
        runs.append(train_dpo(model, tokenizer, make_pairs(), config(steps=4, batch_size=3), progress=False))
        models.append(model)
    timing = {"charts/step_time", "charts/wall_time"}
    assert runs[0].keys() == runs[1].keys()
    assert all(runs[0][k] == runs[1][k] for k in runs[0] if k not in timing)
    assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))
    other = config(steps=4, batch_size=3)
    other.train.seed = 1
    h = train_dpo(copy.deepcopy(micro_model), tokenizer, make_pairs(), other, progress=False)
    assert h["losses/train"] != runs[0]["losses/train"]  # the seed picks the batches


def test_tokenized_rows_train_like_the_pairs_they_came_from(micro_model, pair_rows, tokenizer):
    """A ``TokenizedPairs``, or rows with its columns (extra keys and all), are used as they are."""
    rows = [dict(r, source="elsewhere") for r in pair_rows]
    cfg = config(steps=2, batch_size=3, max_length=120)
    a = train_dpo(copy.deepcopy(micro_model), tokenizer, make_pairs(), cfg, progress=False)
    b = train_dpo(copy.deepcopy(micro_model), tokenizer, rows, cfg, progress=False)
    c = train_dpo(copy.deepcopy(micro_model), tokenizer, tokenize_pairs(make_pairs(), tokenizer, 120), cfg,
                  progress=False)
    assert a["losses/train"] == b["losses/train"] == c["losses/train"] and b["data/num_items"] == [len(rows)]


def test_history_reports_dropped_and_identical_pairs(micro_model, tokenizer):
    p = world.make_problem("addition", (2, 2))
    extra = [{"prompt": p.prompt, "chosen": "2 + 2 = 4.", "rejected": "2 + 2 = 4."},
             {"prompt": p.prompt, "chosen": "2 + 2 = 4.", "rejected": world.render_response(p, fillers=30)}]
    h = train_dpo(copy.deepcopy(micro_model), tokenizer, make_pairs() + extra, config(steps=1, max_length=120),
                  progress=False)
    assert (h["data/num_items"], h["data/num_dropped"], h["data/num_identical"]) == ([8], [1], [1])
