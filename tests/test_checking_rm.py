"""The checking reward model (issue 18): its surprise features, reply mask, checker, loss, trainer, saving, and the
``rm --recipe check`` path. Hand-computed values, a second implementation, properties; bad input is refused."""

import math

import pytest
import torch

from rlhfbook_lab.equations.reward_losses import SURPRISE_FEATURES, bradley_terry_loss, token_surprise_features
from rlhfbook_lab.lm.data import collate_sft, conversation, tokenize_conversation
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.reward_model import (
    CheckingRewardModel,
    RewardModel,
    load_reward_model,
    reply_token_mask,
    save_reward_model,
    score_replies,
)
from rlhfbook_lab.trainers.checker import CheckerConfig, checker_inputs, soft_bradley_terry_loss, train_checker
from tests._models import tiny_llama

# --- token_surprise_features ------------------------------------------------------------------------------------


def test_surprise_features_hand_computed():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]]]))  # (1, 2, 3)
    ids = torch.tensor([[0, 1]])  # token 1 follows position 0, where p = (0.5, 0.25, 0.25)
    f = token_surprise_features(logits, ids)
    assert f.shape == (1, 1, len(SURPRISE_FEATURES))
    want = [math.log(0.25), math.log(0.25 / 0.5), 1.5 * math.log(2.0), 0.5, math.log(0.75)]
    assert f[0, 0].tolist() == pytest.approx(want, abs=1e-6)


def test_surprise_features_agree_with_a_loop():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(2, 5, 7, generator=g) * 3, torch.randint(7, (2, 5), generator=g)
    f = token_surprise_features(logits, ids)
    for b in range(2):
        for t in range(4):
            p = torch.softmax(logits[b, t].double(), -1).tolist()
            y = int(ids[b, t + 1])
            want = [math.log(p[y]), math.log(p[y] / max(p)), -sum(q * math.log(q) for q in p), 1 - p[y] / max(p),
                    math.log(1 - p[y])]
            assert f[b, t].tolist() == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_surprise_features_properties():
    g = torch.Generator().manual_seed(1)
    logits, ids = torch.randn(3, 6, 11, generator=g) * 4, torch.randint(11, (3, 6), generator=g)
    f = token_surprise_features(logits, ids)
    assert (f[..., 1] <= 0).all() and ((f[..., 3] >= 0) & (f[..., 3] < 1)).all()
    assert (f[..., 2] >= 0).all() and (f[..., 2] <= math.log(11) + 1e-5).all()
    assert torch.allclose(token_surprise_features(logits + 5.0, ids), f, atol=1e-5)  # a softmax ignores a shift
    top = logits[:, :-1].argmax(-1)  # the model's own choice: no surprise
    sure = token_surprise_features(logits, torch.cat([ids[:, :1], top], 1))
    assert torch.allclose(sure[..., 1], torch.zeros(3, 5), atol=1e-6)
    assert torch.allclose(sure[..., 3], torch.zeros(3, 5), atol=1e-6)
    certain = torch.full((1, 2, 3), -1e4)
    certain[0, 0, 1] = 0.0
    assert torch.isfinite(token_surprise_features(certain, torch.tensor([[0, 1]]))).all()


def test_surprise_features_refuse_bad_input():
    with pytest.raises(ValueError, match="logits must have shape"):
        token_surprise_features(torch.zeros(1, 3, 4), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 positions"):
        token_surprise_features(torch.zeros(1, 1, 4), torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        token_surprise_features(torch.full((1, 2, 4), float("nan")), torch.zeros(1, 2, dtype=torch.long))


# --- reply_token_mask ---------------------------------------------------------------------------------------------


def test_reply_token_mask_by_hand_and_for_any_padding():
    A = 9
    ids = torch.tensor([[1, A, 5, A, 6, 7, 0], [0, 0, 1, A, 6, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1]])
    got = reply_token_mask(ids, mask, A)
    assert got.int().tolist() == [[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1, 1]]  # after the *last* assistant token
    with pytest.raises(ValueError, match=r"row\(s\) \[0\] have no <\|assistant\|>"):
        reply_token_mask(torch.tensor([[1, 2, 3]]), torch.ones(1, 3), A)
    with pytest.raises(ValueError, match="must both have shape"):
        reply_token_mask(ids, mask[:, :3], A)


# --- the model ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crm(tokenizer):
    taste = RewardModel.from_causal_lm(tiny_llama(tokenizer, seed=1), copy=False, seed=1)
    model = CheckingRewardModel(taste, tiny_llama(tokenizer, seed=2), tokenizer.convert_tokens_to_ids("<|assistant|>"),
                                gate_hidden=8, seed=0)
    with torch.no_grad():  # a checker that is not zero, so the check term matters
        model.value.weight.copy_(torch.tensor([[0.5, 1.0, -0.2, -1.0, 0.3]]))
        model.bias.fill_(0.1)
    return model.eval()


def _batch(tokenizer, prompts, replies):
    rows = [tokenize_conversation(tokenizer, conversation(p, r)) for p, r in zip(prompts, replies)]
    return collate_sft(rows, tokenizer.pad_token_id)


def test_check_logit_agrees_with_a_loop(crm, tokenizer):
    b = _batch(tokenizer, ["What is 2 + 3?", "Spell cat backward."], ["2 + 3 = 5.", "The reverse of cat is tac."])
    inputs = crm.frozen_inputs(b["input_ids"], b["attention_mask"])
    with torch.no_grad():
        z = crm.check_logit(inputs["hidden"], inputs["features"], inputs["mask"])
    for i in range(2):
        total = crm.bias.item()
        for t in range(inputs["mask"].shape[1]):
            if inputs["mask"][i, t] > 0:
                g = torch.sigmoid(crm.gate(inputs["hidden"][i, t])).item()
                total += g * crm.value(inputs["features"][i, t]).item()
        assert z[i].item() == pytest.approx(total, rel=1e-4, abs=1e-5)
    reply_len = [len(tokenize_conversation(tokenizer, conversation(p, r))["input_ids"]) -
                 tokenize_conversation(tokenizer, conversation(p, r))["input_ids"].index(crm.assistant_id) - 1
                 for p, r in (("What is 2 + 3?", "2 + 3 = 5."), ("Spell cat backward.", "The reverse of cat is tac."))]
    assert inputs["mask"].sum(1).tolist() == reply_len  # every reply token and its <|end|>, no prompt token


def test_reward_is_taste_plus_a_bounded_check_and_ignores_padding(crm, tokenizer):
    prompts, replies = ["What is 2 + 3?", "What is 12 + 30?"], ["2 + 3 = 5.", "Sure! 12 + 30 = 42. I hope this helps."]
    b = _batch(tokenizer, prompts, replies)
    with torch.no_grad():
        r = crm.raw_rewards(b["input_ids"], b["attention_mask"])
        taste = crm.taste.raw_rewards(b["input_ids"], b["attention_mask"])
        check = r - crm.alpha * taste
        assert ((check >= 0) & (check <= crm.beta)).all()
        alone = torch.stack([crm.raw_rewards(*(_batch(tokenizer, [p], [y])[k] for k in ("input_ids",
                                                                                          "attention_mask")))[0]
                             for p, y in zip(prompts, replies)])
        assert torch.allclose(r, alone, atol=1e-4)  # right padding of the shorter row changes nothing
        left_ids = torch.stack([torch.roll(b["input_ids"][i], int((b["attention_mask"][i] == 0).sum()))
                                for i in range(2)])
        left_mask = torch.stack([torch.roll(b["attention_mask"][i], int((b["attention_mask"][i] == 0).sum()))
                                 for i in range(2)])
        assert torch.allclose(crm.raw_rewards(left_ids, left_mask), r, atol=1e-4)  # nor does left padding


def test_checker_trains_only_its_own_parameters(crm):
    own = {id(p) for p in crm.trainable_parameters()}
    assert all(not p.requires_grad for p in crm.taste.parameters()) and all(
        not p.requires_grad for p in crm.reference.parameters())
    assert own == {id(p) for p in crm.parameters() if p.requires_grad}
    hidden = crm.reference.config.hidden_size
    assert sum(p.numel() for p in crm.trainable_parameters()) == hidden * 8 + 8 + 8 + 1 + 5 + 1 + 3


# --- the loss and the trainer ------------------------------------------------------------------------------------


def test_soft_bradley_terry_loss():
    c, r = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([0.0, 0.5, 1.0])
    assert float(soft_bradley_terry_loss(torch.zeros(1), torch.zeros(1), torch.ones(1))) == pytest.approx(math.log(2))
    assert float(soft_bradley_terry_loss(c, r, torch.ones(3))) == pytest.approx(float(bradley_terry_loss(c, r)))
    labels = torch.tensor([1.0, 0.5, 0.2])
    assert float(soft_bradley_terry_loss(c, r, labels)) == pytest.approx(float(soft_bradley_terry_loss(r, c,
                                                                                                       1 - labels)))
    with pytest.raises(ValueError, match="shape"):
        soft_bradley_terry_loss(c, r, torch.ones(2))


def test_checker_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="steps"):
        CheckerConfig(steps=0)
    with pytest.raises(ValueError, match="preference_weight"):
        CheckerConfig(preference_weight=1.5)
    with pytest.raises(ValueError, match="lr"):
        CheckerConfig(lr=0.0)


def test_train_checker_learns_to_check_sums(tokenizer):
    """Counterfactual pairs (right vs wrong sum, same words) that a taste model cannot order: the checker learns them
    from the reference model's surprise. The reference here is a tiny model trained on right sums for a moment."""
    ref = tiny_llama(tokenizer, seed=3)
    prompts = [f"What is {a} + {b}?" for a in range(3) for b in range(3)]
    right = [f"{a} + {b} = {a + b}." for a in range(3) for b in range(3)]
    wrong = [f"{a} + {b} = {a + b + 4}." for a in range(3) for b in range(3)]
    batch = _batch(tokenizer, prompts, right)
    opt = torch.optim.Adam(ref.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(60):  # the reference learns the right sums
        logits = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        target = batch["input_ids"][:, 1:].masked_fill(batch["completion_mask"][:, 1:] == 0, -100)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    taste = RewardModel.from_causal_lm(tiny_llama(tokenizer, seed=4), copy=False)
    model = CheckingRewardModel(taste, ref.eval(), tokenizer.convert_tokens_to_ids("<|assistant|>"), gate_hidden=8)
    pairs = [{"prompt": p, "chosen": c, "rejected": w} for p, c, w in zip(prompts, right, wrong)]
    data = checker_inputs(model, tokenizer, pairs, batch_size=4)
    assert data["chosen"]["hidden"].dtype == torch.float16 and data["labels"].tolist() == [1.0] * 9

    def accuracy():
        with torch.no_grad():
            return float((model.reward_from_inputs(data["chosen"]) > model.reward_from_inputs(data["rejected"]))
                         .float().mean())

    before = accuracy()  # a zero checker: the (untrained) taste model alone orders them
    history = train_checker(model, data, data, CheckerConfig(steps=100, batch_size=9, lr=1e-2))
    assert before < 1.0 and accuracy() == 1.0 and history["losses/train"][-1] < 0.5 * math.log(2)
    assert all(not p.requires_grad for p in ref.parameters())


# --- saving and loading --------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    taste, tok = load_reward_model("rm-tiny", "cpu")
    ref, _ = load_model("sft-tiny", "cpu")
    model = CheckingRewardModel(taste, ref, tok.convert_tokens_to_ids("<|assistant|>"),
                                {"taste": "rm-tiny", "reference": "sft-tiny"}, gate_hidden=16, seed=3)
    with torch.no_grad():
        model.value.weight.normal_(generator=torch.Generator().manual_seed(0))
    model.set_normalization(0.5, 2.0)
    save_reward_model(model, tok, tmp_path / "crm")
    back, _ = load_reward_model(tmp_path / "crm", "cpu")
    assert isinstance(back, CheckingRewardModel) and back.is_normalized
    prompts, replies = ["What is 2 + 3?"] * 2, ["2 + 3 = 5.", "2 + 3 = 7."]
    assert torch.allclose(score_replies(back, tok, prompts, replies), score_replies(model, tok, prompts, replies))
    assert sum(f.stat().st_size for f in (tmp_path / "crm").iterdir()) < 100_000  # only the checker is stored
    unnamed = CheckingRewardModel(taste, ref, model.assistant_id)
    with pytest.raises(ValueError, match="names must give"):
        save_reward_model(unnamed, tok, tmp_path / "unnamed")


def test_cli_rm_check_trains_saves_and_reports(tmp_path, capsys):
    import json

    from rlhfbook_lab.cli import main
    from rlhfbook_lab.lm.data import write_pairs
    from rlhfbook_lab.lm.shipped_data import load_preference_file

    data = tmp_path / "prefs"
    write_pairs(data / "train.jsonl", load_preference_file("train")[:40])
    write_pairs(data / "heldout.jsonl", load_preference_file("heldout")[:16])
    out = tmp_path / "crm"
    main(["rm", "--recipe", "check", "--fast", "--steps", "3", "--batch-size", "8", "--data", str(data), "--out",
          str(out)])
    report = json.loads(capsys.readouterr().out)
    assert report["recipe"] == "check" and report["steps"] == 3 and report["pairs_per_step"] == 16
    assert report["train_pairs"] == 40 and report["counterfactual_pairs"] > 0 and report["heldout_pairs"] <= 16
    back, _ = load_reward_model(out, "cpu")
    meta = json.loads((out / "training_meta.json").read_text())
    assert isinstance(back, CheckingRewardModel) and meta["config"]["steps"] == 3 and meta["taste"] == "rm-tiny"
    assert not back.is_normalized and report["normalization"] is None


def test_rl_scores_samples_with_a_checking_reward_model(crm, tokenizer):
    from rlhfbook_lab.trainers.rl import RLConfig
    from rlhfbook_lab.trainers.rl.rollout import reward_source

    b = _batch(tokenizer, ["What is 2 + 3?"] * 2, ["2 + 3 = 5.", "2 + 3 = 7."])
    scorer = reward_source(RLConfig(), crm, tokenizer)
    got = scorer(["What is 2 + 3?"] * 2, ["2 + 3 = 5.", "2 + 3 = 7."], b["input_ids"], b["attention_mask"])
    with torch.no_grad():
        assert torch.allclose(got, crm(b["input_ids"], b["attention_mask"]), atol=1e-5)  # the model, not a callable
