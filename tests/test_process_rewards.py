"""Outcome and process reward models (``equations/process_rewards.py``, ``world.thinking.step_labels``,
``lm/token_reward_model.py``, ``trainers/verifier.py``, ``recipes/process_rewards.py``): the PRM loss and the
scores, each by hand, by a loop and by a property; the step labeller; step marking in tokens; a tiny run of the
study; the shipped study and what lesson 05 §9 asserts of it."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _models import tiny_llama

from rlhfbook_lab.equations.process_rewards import orm_score, prm_loss, prm_score, step_probabilities
from rlhfbook_lab.equations.reward_losses import orm_loss
from rlhfbook_lab.equations.scaling import pass_at_k
from rlhfbook_lab.lm.token_reward_model import TokenRewardModel, collate_steps, token_reward_scores, tokenize_steps
from rlhfbook_lab.recipes.process_rewards import (
    NS,
    SELECTORS,
    SHIPPED_STUDY,
    STUDY_COMMAND,
    ProcessRewardConfig,
    best_of_n_table,
    load_process_reward_study,
    process_reward_study,
    within_problem_auc,
)
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.verifier import VerifierConfig, train_verifier
from rlhfbook_lab.world import thinking

P = thinking.make_problem((17, 25, 38))


def _sig(x):
    return 1 / (1 + math.exp(-x))


# --- the equations -------------------------------------------------------------------------------------------
LOGITS = torch.tensor([[0.3, 2.0, -0.5, -1.0, 0.7], [1.5, 0.1, 0.0, 3.0, 0.0]])
STEPS = torch.tensor([[0, 1, 0, 1, 0], [0, 0, 0, 1, 0]])
LABELS = torch.tensor([[9.0, 1.0, 9.0, 0.0, 9.0], [9.0, 9.0, 9.0, 1.0, 9.0]])  # 9: off the steps, ignored


def test_prm_loss_by_hand_and_by_a_loop():
    by_hand = (-math.log(_sig(2.0)) - math.log(1 - _sig(-1.0)) - math.log(_sig(3.0))) / 3
    assert abs(float(prm_loss(LOGITS, LABELS, STEPS)) - by_hand) < 1e-6
    terms = [-(y * math.log(_sig(z)) + (1 - y) * math.log(1 - _sig(z)))
             for b in range(2) for t in range(5) if STEPS[b, t]
             for z, y in [(float(LOGITS[b, t]), float(LABELS[b, t]))]]
    assert abs(float(prm_loss(LOGITS, LABELS, STEPS)) - sum(terms) / len(terms)) < 1e-6


def test_prm_loss_properties():
    zeros = torch.zeros_like(LOGITS)
    assert abs(float(prm_loss(zeros, LABELS.clamp(0, 1), STEPS)) - math.log(2)) < 1e-6  # chance: ln 2 per step
    # off-step logits and labels never matter; a step mask that marks every reply token is the ORM's loss
    moved = torch.where(STEPS.bool(), LOGITS, torch.randn_like(LOGITS) * 5)
    assert abs(float(prm_loss(moved, LABELS, STEPS)) - float(prm_loss(LOGITS, LABELS, STEPS))) < 1e-6
    cmask = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    outcome = torch.tensor([1.0, 0.0])
    assert abs(float(prm_loss(LOGITS, outcome[:, None].expand_as(LOGITS), cmask))
               - float(orm_loss(LOGITS, outcome, cmask))) < 1e-6
    # right padding leaves it unchanged
    pad = F.pad(LOGITS, (0, 3), value=50.0)
    assert abs(float(prm_loss(pad, F.pad(LABELS, (0, 3)), F.pad(STEPS, (0, 3))))
               - float(prm_loss(LOGITS, LABELS, STEPS))) < 1e-6


def test_prm_score_by_hand_by_a_loop_and_properties():
    p = [[_sig(2.0), _sig(-1.0)], [_sig(3.0)]]
    mins, prods = prm_score(LOGITS, STEPS, "min"), prm_score(LOGITS, STEPS, "product")
    assert torch.allclose(mins, torch.tensor([min(p[0]), p[1][0]]), atol=1e-6)
    assert torch.allclose(prods, torch.tensor([p[0][0] * p[0][1], p[1][0]]), atol=1e-6)
    looped = [math.prod(float(v) for v in probs) for probs in step_probabilities(LOGITS, STEPS)]
    assert torch.allclose(prods, torch.tensor(looped), atol=1e-6)
    assert bool((prods <= mins + 1e-7).all())  # a product of probabilities never exceeds its smallest factor
    one_step = torch.tensor([[0, 0, 0, 0, 1], [0, 1, 0, 0, 0]])
    assert torch.allclose(prm_score(LOGITS, one_step, "min"), prm_score(LOGITS, one_step, "product"))
    assert float(prm_score(torch.full((1, 40), -30.0), torch.ones(1, 40), "product")) >= 0  # no NaN in log space


def test_orm_score_reads_the_last_reply_token():
    cmask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]])
    assert torch.allclose(orm_score(LOGITS, cmask), torch.tensor([_sig(-1.0), _sig(0.0)]), atol=1e-6)
    pad = F.pad(LOGITS, (0, 2), value=9.0)
    assert torch.allclose(orm_score(pad, F.pad(cmask, (0, 2))), orm_score(LOGITS, cmask))


@pytest.mark.parametrize("call, match", [
    (lambda: prm_loss(LOGITS[0], LABELS[0], STEPS[0]), "logits"),
    (lambda: prm_loss(LOGITS, LABELS[:, :4], STEPS), "step_labels"),
    (lambda: prm_loss(LOGITS, LABELS, STEPS[:, :4]), "step_mask"),
    (lambda: prm_loss(LOGITS, LABELS, torch.tensor([[0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])), "step_mask"),
    (lambda: prm_loss(LOGITS, LABELS * 2, STEPS), "step_labels"),
    (lambda: prm_loss(LOGITS, LABELS, STEPS * 2), "step_mask"),
    (lambda: prm_loss(torch.full_like(LOGITS, float("nan")), LABELS, STEPS), "finite"),
    (lambda: prm_score(LOGITS, STEPS, "mean"), "aggregation"),
    (lambda: orm_score(LOGITS, torch.zeros_like(STEPS)), "completion_mask"),
])
def test_bad_input_names_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- the world's step labels ------------------------------------------------------------------------------------
def test_step_labels_by_hand():
    assert thinking.step_ends(P.reference) == [12, 26] and thinking.step_labels(P, P.reference) == [True, True]
    assert thinking.step_labels(P, "17 + 25 = 41. 41 + 38 = 79.") == [False, False]  # wrong from the first step
    assert thinking.step_labels(P, "17 + 25 = 42. 42 + 38 = 81.") == [True, False]
    assert thinking.step_labels(P, "17 + 25 = 42. 24 + 38 = 62.") == [True, False]  # miscopied the result
    assert thinking.step_labels(P, "17 + 25 = 41. 42 + 38 = 80.") == [False, False]  # right answer, wrong step
    assert thinking.step_labels(P, "17 + 25 + 38 = 80.") == [True] and thinking.step_ends("17 + 25 + 38 = 80.") == [17]
    assert thinking.step_labels(P, "80") is None and thinking.step_ends("80") == []
    with pytest.raises(ValueError, match="reply"):
        thinking.step_labels(P, None)


def test_every_step_right_means_the_answer_is_right():
    rng = np.random.default_rng(0)
    for p in thinking.sample_problems(50, "train", seed=3):
        a, b, c = p.key
        s, t = a + b + int(rng.integers(-1, 2)), a + b + c + int(rng.integers(-1, 2))
        reply = f"{a} + {b} = {s}. {s} + {c} = {t}."
        labels = thinking.step_labels(p, reply)
        assert len(labels) == len(thinking.step_ends(reply)) == 2
        assert all(labels) == (thinking.is_correct(p, reply) and thinking.step_is_right(p, reply))
        assert labels[1] <= labels[0]  # no right step after a wrong one


# --- the model and its rows ---------------------------------------------------------------------------------------
def test_tokenize_steps_marks_the_full_stops(tokenizer):
    row = tokenize_steps(tokenizer, P.prompt, P.reference, thinking.step_ends(P.reference), [1.0, 0.0])
    marked = [i for i, m in enumerate(row["step_mask"]) if m]
    assert [tokenizer.decode([row["input_ids"][i]]) for i in marked] == [".", "."]
    assert [row["step_labels"][i] for i in marked] == [1.0, 0.0] and all(row["completion_mask"][i] for i in marked)
    bare = tokenize_steps(tokenizer, P.prompt, "80", [])  # no step: read at the reply's last character
    assert tokenizer.decode([bare["input_ids"][bare["step_mask"].index(1)]]) == "0"
    with pytest.raises(ValueError, match="step_ends"):
        tokenize_steps(tokenizer, P.prompt, "80", [5])
    with pytest.raises(ValueError, match="step_labels"):
        tokenize_steps(tokenizer, P.prompt, P.reference, [12, 26], [1.0])


def test_token_reward_model_ignores_padding_and_scores_every_reply(tokenizer):
    model = TokenRewardModel.from_causal_lm(tiny_llama(tokenizer, seed=0), seed=0)
    rows = [tokenize_steps(tokenizer, P.prompt, r, thinking.step_ends(r)) for r in (P.reference, "80.")]
    batch = collate_steps(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        together = model(batch["input_ids"], batch["attention_mask"])  # (2, T)
        alone = model(batch["input_ids"][1:, :len(rows[1]["input_ids"])],
                      batch["attention_mask"][1:, :len(rows[1]["input_ids"])])
    assert together.shape == batch["input_ids"].shape
    assert torch.allclose(together[1, :alone.shape[1]], alone[0], atol=1e-5)
    scores = token_reward_scores(model, tokenizer, [P.prompt] * 2, [P.reference, "80."],
                                 [thinking.step_ends(P.reference), [2]], batch_size=1)
    assert set(scores) == {"orm", "prm_min", "prm_product"} and all(v.shape == (2,) for v in scores.values())
    assert bool((scores["prm_product"] <= scores["prm_min"] + 1e-6).all())


def test_the_surprise_features_are_the_backbones_log_probs_and_their_running_min(tokenizer):
    backbone = tiny_llama(tokenizer, seed=0)
    model = TokenRewardModel.from_causal_lm(backbone, seed=0, surprise=True)
    rows = [tokenize_steps(tokenizer, P.prompt, r, thinking.step_ends(r)) for r in (P.reference, "80.")]
    batch = collate_steps(rows, tokenizer.pad_token_id)
    seen = []
    hook = model.head.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    with torch.no_grad():
        model(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        logits = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    hook.remove()
    m = batch["completion_mask"].bool()
    for b in range(2):  # a loop over the reply's tokens: ℓ_t = log softmax(logits_{t-1})[y_t], and its running min
        lo, running = [], 0.0
        for t in range(batch["input_ids"].shape[1]):
            lp = float(torch.log_softmax(logits[b, t - 1], -1)[batch["input_ids"][b, t]]) if m[b, t] else 0.0
            running = min(running, lp) if m[b, t] else running
            lo.append((lp, running if m[b, t] else 0.0))
        assert torch.allclose(seen[0][b, :, -2:], torch.tensor(lo), atol=1e-4)
    with pytest.raises(ValueError, match="completion_mask"):
        model(batch["input_ids"], batch["attention_mask"])


def test_verifiers_train_on_a_tiny_model(tokenizer):
    rows = [{"prompt": P.prompt, "reply": r, "correct": thinking.is_correct(P, r), "step_ends": thinking.step_ends(r),
             "step_labels": thinking.step_labels(P, r)}
            for r in (P.reference, "17 + 25 = 41. 41 + 38 = 79.", "17 + 25 = 42. 42 + 38 = 81.", "80")]
    for kind in ("orm", "prm"):  # fine-tuned, a tiny random model memorises four replies
        model = TokenRewardModel.from_causal_lm(tiny_llama(tokenizer, seed=0), seed=0)
        cfg = VerifierConfig(kind=kind, batch_size=4, freeze_backbone=False,
                             train=TrainConfig(steps=40, lr=3e-3, warmup_steps=0, bf16=False, log_every=10**6))
        h = train_verifier(model, tokenizer, rows, cfg)
        assert h["losses/train"][-1] < h["losses/train"][0] and h["verifier/accuracy"][-1] > 0.7, kind
    model = TokenRewardModel.from_causal_lm(tiny_llama(tokenizer, seed=0), seed=0, surprise=True)
    before = [p.clone() for p in model.backbone.parameters()]
    head = model.head.weight.clone()
    train_verifier(model, tokenizer, rows, VerifierConfig(kind="prm", batch_size=4, train=TrainConfig(
        steps=3, lr=1e-2, warmup_steps=0, bf16=False, log_every=10**6)))  # the default: the head alone
    assert all(torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
    assert not torch.equal(head, model.head.weight) and model.head.in_features == 32 + 2  # hidden + surprise
    with pytest.raises(ValueError, match="kind"):
        VerifierConfig(kind="bt")
    with pytest.raises(ValueError, match="rows"):
        train_verifier(model, tokenizer, [], VerifierConfig(kind="prm"))


# --- the study ----------------------------------------------------------------------------------------------------
def test_best_of_n_table_and_auc_by_hand():
    correct = np.array([[1, 0, 0, 1], [0, 0, 0, 1]], dtype=float)
    table = best_of_n_table({"gold": correct, "flat": np.zeros_like(correct), "anti": -correct}, correct, ns=(1, 2, 4))
    gold = [float(np.mean([pass_at_k(4, int(c), k) for c in correct.sum(1)])) for k in (1, 2, 4)]
    assert np.allclose(table["gold"]["mean"], gold, atol=1e-4)  # the checker as a selector is pass@n
    assert np.allclose(table["flat"]["mean"], [0.375] * 3, atol=1e-4)  # a constant score picks at random
    assert np.allclose(table["anti"]["mean"], [0.375, (1 / 6 + 0) / 2, 0.0], atol=1e-4)  # all-right subsets only
    assert abs(table["flat"]["se"][0] - np.std([0.5, 0.25], ddof=1) / np.sqrt(2)) < 1e-4
    scores = np.array([[0.9, 0.1, 0.5, 0.5], [0.2, 0.3, 0.0, 0.0]])
    labels = np.array([[1, 0, 1, 0], [1, 0, 0, 0]])
    # problem 1: 0.9 > 0.1, 0.9 > 0.5, 0.5 > 0.1, 0.5 = 0.5; problem 2: 0.2 < 0.3, 0.2 > 0.0 twice
    assert within_problem_auc(scores, labels) == pytest.approx((1 + 1 + 1 + 0.5 + 0 + 1 + 1) / 7)
    looped = [float(a > b) + 0.5 * (a == b) for s, y in zip(scores, labels)
              for a, ya in zip(s, y) for b, yb in zip(s, y) if ya and not yb]
    assert within_problem_auc(scores, labels) == pytest.approx(np.mean(looped))
    assert within_problem_auc(scores + 5 * np.arange(2)[:, None], labels) == within_problem_auc(scores, labels)
    assert math.isnan(within_problem_auc(scores, np.ones_like(labels)))
    with pytest.raises(ValueError, match="pool"):
        ProcessRewardConfig(pool=8)


def test_a_tiny_run_of_the_study():
    cfg = ProcessRewardConfig(writer_steps=1, train_problems=4, train_samples=2, verifier_steps=1, batch_size=4,
                              eval_problems=3, pool=16)
    r = process_reward_study(cfg)
    assert set(r["best_of_n"]) == set(SELECTORS) and r["ns"] == list(NS)
    assert all(len(v["mean"]) == len(v["se"]) == len(NS) for v in r["best_of_n"].values())
    assert r["heldout"]["problems"] == 3 and r["train_data"]["replies"] == 8
    assert r["best_of_n"]["gold"]["mean"] == sorted(r["best_of_n"]["gold"]["mean"])  # pass@n never falls


def test_the_shipped_study_holds_what_lesson_05_asserts():
    assert SHIPPED_STUDY.stat().st_size < 20_000
    s = load_process_reward_study()
    assert s["command"] == STUDY_COMMAND and s["config"] == ProcessRewardConfig().__dict__
    bon, i16 = s["best_of_n"], NS.index(16)
    n1 = bon["gold"]["mean"][0]
    assert all(abs(bon[k]["mean"][0] - n1) < 1e-3 for k in SELECTORS)  # n = 1: nobody chooses
    for k in ("orm", "prm_min", "prm_product"):  # ORM and PRM beat the Bradley-Terry RM at n = 16 by > 2 SE
        gap = bon[k]["mean"][i16] - bon["bt_rm"]["mean"][i16]
        se = math.hypot(bon[k]["se"][i16], bon["bt_rm"]["se"][i16])
        assert gap > 2 * se, (k, gap, se)
        assert bon[k]["mean"][i16] > n1 + 2 * bon[k]["se"][i16]  # and climb above n = 1
        assert bon["gold"]["mean"][i16] - 0.1 < bon[k]["mean"][i16] <= bon["gold"]["mean"][i16] + 1e-9  # near gold
    assert bon["bt_rm"]["mean"][i16] < n1 - 2 * bon["bt_rm"]["se"][i16]  # taste alone is worse than not choosing
    for k in ("orm_hidden", "prm_hidden"):  # heads on the hidden state alone learned (almost) nothing
        assert s["auc"][k] < 0.65 and bon[k]["mean"][i16] < n1, k
    assert abs(bon["orm"]["mean"][i16] - bon["confidence"]["mean"][i16]) < 0.01  # the ORM reads the policy's surprise
