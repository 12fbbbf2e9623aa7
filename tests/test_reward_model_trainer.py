"""Tests for the reward model and its trainer (rlhfbook_lab.trainers.reward): the head reads the last real token
whatever the padding, normalisation, save/load, a hand-computed batch loss, exact gradient accumulation, a tiny
seeded run that learns, determinism, and the evaluation next to the Bayes ceiling."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from _models import tiny_llama
from torch import nn
from torch.testing import assert_close
from transformers import LlamaForCausalLM

from rlhfbook_lab import world
from rlhfbook_lab.equations.reward_losses import pairwise_accuracy
from rlhfbook_lab.lm.data import collate_pairs, tokenize_conversation, tokenize_pairs
from rlhfbook_lab.lm.generation import encode_prompts, generate
from rlhfbook_lab.lm.models import load_model, save_model
from rlhfbook_lab.lm.preference_data import off_policy_pairs, pairs_bayes_ceiling
from rlhfbook_lab.lm.reward_model import (
    HEAD_FILE,
    RewardModel,
    load_reward_model,
    normalize_on_policy,
    normalize_on_replies,
    save_reward_model,
    score_replies,
)
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.reward import (
    RM_RECIPES,
    RMConfig,
    RMEval,
    _visiting_order,
    accuracy_by_kind,
    evaluate_reward_model,
    mix_rm_config,
    rm_loss_sum,
    train_reward_model,
)


def conv(prompt: str, reply: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def problems(n: int, seed: int = 0) -> list[world.Problem]:
    rng = random.Random(seed)
    return [world.sample_problem(world.FAMILIES[i % 4], rng) for i in range(n)]


def pad(seqs: list[list[int]], pad_id: int, left: list[int], right: list[int]):
    """Each sequence with ``left[i]`` pads before it and ``right[i]`` after (then right-filled to one width)."""
    rows = [[pad_id] * l + s + [pad_id] * r for s, l, r in zip(seqs, left, right)]
    masks = [[0] * l + [1] * len(s) + [0] * r for s, l, r in zip(seqs, left, right)]
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return ids, mask


@pytest.fixture(scope="module")
def rm(micro_model):
    return RewardModel.from_causal_lm(micro_model, seed=1).eval()  # a copy: the session fixture stays as it is


@pytest.fixture(scope="module")
def seqs(tokenizer):
    return [tokenize_conversation(tokenizer, conv(p, r))["input_ids"] for p, r in [
        ("What is 2 + 3?", "2 + 3 = 5."),
        ("Spell mirt backward.", "Sure! The reverse of mirt is trim. I hope this helps."),
        ("What does the blorp eat?", "The blorp eats moss."),
    ]]


# --------------------------------------------------------------------------------------------------
# The model: where the head reads
# --------------------------------------------------------------------------------------------------


def test_from_causal_lm_copies_by_default(micro_model):
    rm = RewardModel.from_causal_lm(micro_model)
    assert rm.backbone is not micro_model
    assert rm.head.weight.shape == (1, micro_model.config.hidden_size) and rm.head.bias is None
    assert RewardModel.from_causal_lm(micro_model, copy=False).backbone is micro_model
    assert torch.equal(RewardModel.from_causal_lm(micro_model, seed=3).head.weight,
                       RewardModel.from_causal_lm(micro_model, seed=3).head.weight)


@torch.no_grad()
def test_score_is_independent_of_padding_side_amount_and_company(rm, seqs, tokenizer):
    pad_id = tokenizer.pad_token_id
    alone = torch.cat([rm(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)) for s in seqs])  # (3,)
    layouts = {
        "right": ([0, 0, 0], [0, 0, 0]),
        "left": ([30, 0, 21], [0, 0, 0]),  # left-aligned to one width... then right-filled
        "more right padding": ([0, 0, 0], [9, 4, 17]),
        "both sides (generation's layout)": ([5, 0, 3], [2, 11, 0]),
    }
    for name, (left, right) in layouts.items():
        ids, mask = pad(seqs, pad_id, left, right)
        assert_close(rm(ids, mask), alone, atol=1e-5, rtol=0, msg=name)
    # batch company: the first sequence beside different neighbours, in a different row
    for company in ([seqs[1]], [seqs[2], seqs[1]], [seqs[1]] * 4):
        ids, mask = pad(company + [seqs[0]], pad_id, [0] * (len(company) + 1), [0] * (len(company) + 1))
        assert_close(rm(ids, mask)[-1], alone[0], atol=1e-5, rtol=0)


@torch.no_grad()
def test_head_reads_the_last_real_token_hooked(rm, seqs, tokenizer):
    captured = {}
    handle = rm.backbone.base_model.register_forward_hook(
        lambda mod, args, out: captured.__setitem__("h", out.last_hidden_state))
    ids, mask = pad(seqs, tokenizer.pad_token_id, [4, 0, 2], [1, 6, 0])
    try:
        rewards = rm(ids, mask)
    finally:
        handle.remove()
    h = captured["h"]  # (B, T, H)
    for b in range(ids.shape[0]):
        last = max(t for t in range(ids.shape[1]) if mask[b, t] == 1)  # the loop way
        assert ids[b, last] == tokenizer.eos_token_id  # a chat pair ends with <|end|>
        assert_close(rewards[b], (h[b, last] @ rm.head.weight[0] - rm.reward_mean) / rm.reward_std)


class StubBackbone(nn.Module):
    """A 'language model' whose hidden state at t is (token id, position id, mask, 1): the head's input is
    readable by hand."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=4, initializer_range=0.02)
        self.base_model = self._Base()

    class _Base(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, attention_mask, position_ids, use_cache):
            h = torch.stack([input_ids.float(), position_ids.float(), attention_mask.float(),
                             torch.ones_like(input_ids, dtype=torch.float)], dim=-1)
            return SimpleNamespace(last_hidden_state=h + self.dummy)


@torch.no_grad()
def test_head_reads_token_and_position_of_the_last_real_token():
    rm = RewardModel(StubBackbone())
    ids = torch.tensor([[0, 0, 7, 8, 9],    # left padding: last real token 9, position 2
                        [5, 6, 0, 0, 0],    # right padding: last real token 6, position 1
                        [0, 4, 3, 0, 0]])   # both sides: last real token 3, position 1
    mask = (ids != 0).long()
    rm.head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert rm(ids, mask).tolist() == [9.0, 6.0, 3.0]
    rm.head.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 0.0]]))
    assert rm(ids, mask).tolist() == [2.0, 1.0, 1.0]  # positions count real tokens only
    rm.set_normalization(1.0, 2.0)
    assert rm(ids, mask).tolist() == [0.5, 0.0, 0.0]
    assert rm.raw_rewards(ids, mask).tolist() == [2.0, 1.0, 1.0]


@torch.no_grad()
def test_head_runs_in_float32_under_bf16_autocast(rm, seqs, tokenizer):
    ids, mask = pad(seqs, tokenizer.pad_token_id, [0, 0, 0], [0, 0, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        try:
            rewards = rm(ids, mask)
        except RuntimeError as e:  # only under a forced kernel set (CI runs ATEN_CPU_CAPABILITY=...), not on a user CPU
            if "pack_vnni2" not in str(e):
                raise
            pytest.skip("torch's bf16 CPU attention packs its weights when the *hardware* has AVX-512 BF16/AMX, with "
                        "code built per kernel set: under ATEN_CPU_CAPABILITY=avx2/default on such a CPU it raises")
    assert rewards.dtype == torch.float32 and torch.isfinite(rewards).all()


def test_forward_rejects_bad_inputs(rm):
    with pytest.raises(ValueError, match=r"no real token in row\(s\) \[1\]"):
        rm(torch.ones(2, 3, dtype=torch.long), torch.tensor([[1, 1, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match="must both have shape"):
        rm(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))


def test_text_scoring_matches_the_samplers_layout(rm, tokenizer):
    """RL scores ``generate``'s own tokens; ``score_replies`` re-renders text. Same tokens, same reward."""
    prompt, reply = "What is 2 + 3?", "2 + 3 = 5."
    sampled = encode_prompts(tokenizer, [prompt])[0] + tokenizer.encode(reply, add_special_tokens=False)
    sampled += [tokenizer.eos_token_id]
    assert sampled == tokenize_conversation(tokenizer, conv(prompt, reply))["input_ids"]
    ids, mask = pad([sampled], tokenizer.pad_token_id, [3], [4])
    with torch.no_grad():
        assert_close(rm(ids, mask), score_replies(rm, tokenizer, [prompt], [reply]), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------
# Normalisation and save / load
# --------------------------------------------------------------------------------------------------


def test_normalize_on_replies_gives_mean0_std1(micro_model, tokenizer):
    rm = RewardModel.from_causal_lm(micro_model, seed=2)
    probs = problems(12)
    prompts, replies = [p.prompt for p in probs], [p.reference for p in probs]
    raw = score_replies(rm, tokenizer, prompts, replies, raw=True)
    stats = normalize_on_replies(rm, tokenizer, prompts, replies, batch_size=5)
    scores = score_replies(rm, tokenizer, prompts, replies, batch_size=5)
    assert abs(float(scores.mean())) < 1e-5 and float(scores.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
    assert_close(score_replies(rm, tokenizer, prompts, replies, raw=True), raw)  # raw rewards untouched
    assert normalize_on_replies(rm, tokenizer, prompts, replies) == pytest.approx(stats)  # idempotent
    with pytest.raises(ValueError, match="std > 0"):
        rm.set_normalization(0.0, 0.0)


def test_normalize_on_policy_gives_mean0_std1_on_its_samples(micro_model, tokenizer):
    rm = RewardModel.from_causal_lm(micro_model, seed=2)
    prompts = [p.prompt for p in problems(4)]
    normalize_on_policy(rm, tokenizer, micro_model, prompts, num_samples=3, seed=7, max_new_tokens=8)
    torch.manual_seed(7)  # the same samples again
    gen = generate(micro_model, tokenizer, prompts, num_return_sequences=3, max_new_tokens=8)
    with torch.no_grad():
        scores = rm(gen.input_ids, gen.attention_mask)
    assert abs(float(scores.mean())) < 1e-5 and float(scores.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)


def test_save_and_load_round_trip(micro_model, tokenizer, tmp_path):
    rm = RewardModel.from_causal_lm(micro_model, seed=4)
    rm.set_normalization(0.25, 1.5)
    out = save_reward_model(rm, tokenizer, tmp_path / "rm", extra_files={"notes.txt": "hello"})
    assert (out / HEAD_FILE).exists() and (out / "notes.txt").read_text() == "hello"
    loaded, tok = load_reward_model(out, device="cpu")
    assert loaded.reward_mean.item() == 0.25 and loaded.reward_std.item() == 1.5
    probs = problems(5)
    args = ([p.prompt for p in probs], [p.reference for p in probs])
    assert torch.equal(score_replies(loaded, tok, *args), score_replies(rm, tokenizer, *args))
    lm, _ = load_model(out, device="cpu")  # still an ordinary causal LM folder
    assert isinstance(lm, LlamaForCausalLM)
    with pytest.raises(FileExistsError):
        save_reward_model(rm, tokenizer, out)
    save_reward_model(rm, tokenizer, out, overwrite=True)
    save_model(micro_model, tokenizer, tmp_path / "lm")
    with pytest.raises(FileNotFoundError, match="is a causal LM, not a reward model"):
        load_reward_model(tmp_path / "lm", device="cpu")


# --------------------------------------------------------------------------------------------------
# The batch loss
# --------------------------------------------------------------------------------------------------


class ScalarStub(nn.Module):
    """Reward of a row = ``values[input_ids[row, 0]]``: the rewards are parameters we can read gradients of."""

    def __init__(self, values):
        super().__init__()
        self.values = nn.Parameter(torch.tensor(values))

    def forward(self, input_ids, attention_mask):
        return self.values[input_ids[:, 0]]


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def stub_batch(labels=None) -> dict:
    ids = torch.tensor([[0, 9], [1, 9], [2, 9], [3, 9]])  # chosen rows 0, 1; rejected rows 2, 3
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "num_items": 2}
    if labels is not None:
        batch["labels"] = torch.tensor(labels)
    return batch


def test_rm_loss_sum_hand_computed_two_pairs():
    model = ScalarStub([2.0, -1.0, 0.5, 1.0])  # r_c = (2, -1), r_r = (0.5, 1): gaps 1.5, -2
    loss, metrics = rm_loss_sum(model, stub_batch())
    assert loss.item() == pytest.approx(softplus(-1.5) + softplus(2.0), abs=1e-6)
    assert metrics == pytest.approx({"rewards/chosen": 1.0, "rewards/rejected": 1.5, "rewards/margins": -0.5,
                                     "rewards/accuracies": 1.0})
    loss.backward()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = [-sig(-1.5), -sig(2.0), sig(-1.5), sig(2.0)]  # d/dr_c −log σ(r_c − r_r) = −σ(r_r − r_c)
    assert model.values.grad.tolist() == pytest.approx(expected, abs=1e-6)


def test_rm_loss_sum_margin_and_ties():
    model = ScalarStub([2.0, -1.0, 0.5, 1.0])
    loss, _ = rm_loss_sum(model, stub_batch(), margin=1.0)
    assert loss.item() == pytest.approx(softplus(-(1.5 - 1)) + softplus(-(-2 - 1)), abs=1e-6)
    # pair 1 a tie: ½ of each direction, and no margin
    loss, metrics = rm_loss_sum(model, stub_batch(labels=[1.0, 0.5]), margin=1.0)
    assert loss.item() == pytest.approx(softplus(-0.5) + 0.5 * softplus(2.0) + 0.5 * softplus(-2.0), abs=1e-6)
    assert metrics["rewards/accuracies"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="num_items = 3 pairs"):
        rm_loss_sum(model, {**stub_batch(), "num_items": 3})
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        rm_loss_sum(model, stub_batch(labels=[1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"labels must have shape \(B,\)"):
        rm_loss_sum(model, stub_batch(labels=[1.0, 1.0, 1.0]))


def test_gradient_accumulation_matches_one_batch(tokenizer):
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer), seed=0)
    rows = tokenize_pairs(off_policy_pairs(problems(4), pairs_per_prompt=1, seed=0).rows, tokenizer).rows

    def grads(micro_batches):
        rm.zero_grad()
        total = sum(len(m) for m in micro_batches)
        for m in micro_batches:
            loss_sum, _ = rm_loss_sum(rm, collate_pairs(m, tokenizer.pad_token_id))
            (loss_sum / total).backward()
        return {n: p.grad.clone() for n, p in rm.named_parameters() if p.grad is not None}

    one, two = grads([rows]), grads([rows[:1], rows[1:]])
    assert one.keys() == two.keys() and "head.weight" in one
    for name in one:
        assert_close(two[name], one[name], atol=1e-6, rtol=1e-4, msg=name)


# --------------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def easy_pairs():
    """The reference answer against the same answer behind every polite opener: easy to tell apart."""
    return off_policy_pairs(problems(48), styles=("reference", "polite_pileup"), pairs_per_prompt=None,
                            seed=0).rows


def quick_config(seed=0, steps=30) -> RMConfig:
    return RMConfig(train=TrainConfig(steps=steps, lr=3e-3, warmup_steps=3, seed=seed, bf16=False), batch_size=16)


def test_short_run_learns_an_easy_preference(tokenizer, easy_pairs):
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer), seed=0)
    before = evaluate_reward_model(rm, tokenizer, easy_pairs)
    history = train_reward_model(rm, tokenizer, easy_pairs, quick_config(), eval_pairs=easy_pairs[:16],
                                 eval_every=10, progress=False)
    after = evaluate_reward_model(rm, tokenizer, easy_pairs)
    assert after.accuracy >= 0.95 and after.accuracy > before.accuracy + 0.2
    assert after.loss < 0.3 < before.loss
    assert history["losses/train"][-1] < history["losses/train"][0]
    assert history["rewards/accuracies"][-1] >= 0.9
    assert history["eval/step"] == [10, 20, 30] and len(history["eval/accuracy"]) == 3
    assert history["data/num_pairs"] == [len(easy_pairs)]


def test_training_is_deterministic_given_the_seed(tokenizer, easy_pairs):
    def run(seed):
        rm = RewardModel.from_causal_lm(tiny_llama(tokenizer), seed=0)
        h = train_reward_model(rm, tokenizer, easy_pairs[:24], quick_config(seed, steps=4), progress=False)
        return h["losses/train"], rm.head.weight.detach().clone()

    (l1, w1), (l2, w2), (l3, _) = run(0), run(0), run(1)
    assert l1 == l2 and torch.equal(w1, w2)
    assert l1 != l3  # another seed visits the pairs in another order


def test_length_grouped_order_is_a_permutation_with_less_padding():
    rng = random.Random(0)
    rows = [{"chosen_input_ids": [1] * rng.randint(20, 140), "rejected_input_ids": [1] * rng.randint(20, 140)}
            for _ in range(1000)]
    width = [max(len(r["chosen_input_ids"]), len(r["rejected_input_ids"])) for r in rows]

    def padded(order):  # tokens a pass costs, each batch of 32 padded to its widest pair
        return sum(32 * max(width[j] for j in order[i:i + 32]) for i in range(0, len(order), 32))

    plain, grouped = _visiting_order(rows, 32, 0, seed=0), _visiting_order(rows, 32, 8, seed=0)
    assert sorted(plain) == sorted(grouped) == list(range(1000))
    assert plain == torch.randperm(1000, generator=torch.Generator().manual_seed(0)).tolist()
    assert padded(grouped) < 0.85 * padded(plain)
    assert grouped == _visiting_order(rows, 32, 8, seed=0) != _visiting_order(rows, 32, 8, seed=1)
    # every batch is drawn from one mega-batch of 8 * 32 consecutive pairs of the shuffled order
    megas = [set(plain[i:i + 256]) for i in range(0, 1000, 256)]
    assert all(any(set(grouped[i:i + 32]) <= m for m in megas) for i in range(0, 1000, 32))


def test_mixed_batches_hold_each_set_in_its_share(tokenizer, easy_pairs, monkeypatch):
    import rlhfbook_lab.trainers.reward as reward  # monkeypatched below: the batches collate_pairs sees

    seen = []
    real = reward.collate_pairs
    monkeypatch.setattr(reward, "collate_pairs", lambda rows, pad: seen.append(rows) or real(rows, pad))
    a = easy_pairs[:20]
    b = [r for r in easy_pairs[20:] if r["chosen"] not in {x["chosen"] for x in a}]  # two sets apart
    cfg = quick_config(steps=5)
    cfg.mix = {"a": 12, "b": 4}
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer), seed=0)
    history = train_reward_model(rm, tokenizer, {"a": a, "b": b}, cfg, progress=False)
    assert history["data/num_pairs"] == [len(a) + len(b)] and len(seen) == 5
    a_ids = {tuple(r["chosen_input_ids"]) for r in tokenize_pairs(a, tokenizer).rows}
    for rows in seen:  # the first 12 of every batch come from a, the last 4 from b
        assert len(rows) == 16
        assert [tuple(r["chosen_input_ids"]) in a_ids for r in rows] == [True] * 12 + [False] * 4
    # over 5 steps set a (20 pairs) is cycled in its own order: all 20 visited
    assert len({tuple(r["chosen_input_ids"]) for rows in seen for r in rows[:12]}) == len(a_ids)
    for bad, match in ((None, "cfg.mix is None"), ({"a": 12, "c": 4}, "must be the keys"),
                       ({"a": 12, "b": 3}, "summing to batch_size")):
        cfg.mix = bad
        with pytest.raises(ValueError, match=match):
            train_reward_model(rm, tokenizer, {"a": a, "b": b}, cfg, progress=False)


def test_a_warm_start_reads_one_set_then_the_mix_continues_its_order(tokenizer, easy_pairs, monkeypatch):
    import rlhfbook_lab.trainers.reward as reward  # monkeypatched below: the batches collate_pairs sees

    seen = []
    real = reward.collate_pairs
    monkeypatch.setattr(reward, "collate_pairs", lambda rows, pad: seen.append(rows) or real(rows, pad))
    a = easy_pairs[:20]
    b = [r for r in easy_pairs[20:] if r["chosen"] not in {x["chosen"] for x in a}][:40]
    cfg = quick_config(steps=4)
    cfg.mix, cfg.warm_start_steps, cfg.warm_start_set = {"a": 12, "b": 4}, 2, "b"
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer), seed=0)
    train_reward_model(rm, tokenizer, {"a": a, "b": b}, cfg, progress=False)
    b_ids = [tuple(r["chosen_input_ids"]) for r in tokenize_pairs(b, tokenizer).rows]
    ids = [[tuple(r["chosen_input_ids"]) for r in rows] for rows in seen]
    assert len(ids) == 4 and all(len(x) == 16 for x in ids)
    assert all(i in b_ids for x in ids[:2] for i in x)  # the two warm-start batches: all 16 from b
    assert [i in b_ids for i in ids[2]] == [False] * 12 + [True] * 4  # then the mix: 12 of a, 4 of b
    # b's order goes on where the warm start left it: the 40 pairs of b are one order of its n < 32 pairs, cycled
    b_seen, n = ids[0] + ids[1] + ids[2][12:] + ids[3][12:], len(b_ids)
    assert 32 % n and sorted(b_seen[:n]) == sorted(b_ids)
    assert b_seen == [b_seen[i % n] for i in range(40)]  # a restart at the mix would repeat b_seen[0] at 32
    for steps, name, match in ((2, "c", "warm_start_set must name a set"), (-1, "b", "warm_start_steps must be")):
        cfg.warm_start_steps, cfg.warm_start_set = steps, name
        with pytest.raises(ValueError, match=match):
            train_reward_model(rm, tokenizer, {"a": a, "b": b}, cfg, progress=False)


def test_accuracy_by_kind_hand_computed():
    rows = [  # two taste pairs of addition, one correctness pair of addition, one of review
        {"prompt": "What is 2 + 3?", "chosen": "2 + 3 = 5.", "rejected": "Sure! 2 + 3 = 5.", "family": "addition"},
        {"prompt": "What is 2 + 3?", "chosen": "2 + 3 = 6.", "rejected": "2 + 3 = 7. Thanks.", "family": "addition"},
        {"prompt": "What is 2 + 3?", "chosen": "2 + 3 = 5.", "rejected": "2 + 3 = 6.", "family": "addition"},
        {"prompt": "Write a positive review of the lamp.", "chosen": "The lamp is great. I love it.",
         "rejected": "The lamp is awful. I hate it.", "family": "review"},
    ]
    c, r = torch.tensor([1.0, 0.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 3.0, -1.0])  # right, tie, wrong, right
    ev = RMEval(accuracy=0.0, bayes_ceiling=1.0, loss=0.0, calibration=None, num_pairs=4, counts={},
                chosen_rewards=c, rejected_rewards=r)
    acc = accuracy_by_kind(ev, rows)
    assert acc["all"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert acc["taste"] == acc["addition/taste"] == pytest.approx(0.75) and acc["n/taste"] == 2
    assert acc["correctness"] == pytest.approx(0.5) and acc["n/correctness"] == 2
    assert acc["addition/correctness"] == 0.0 and acc["review/correctness"] == 1.0
    with pytest.raises(ValueError, match="scored 4 pairs but 3"):
        accuracy_by_kind(ev, rows[:3])


def test_mix_recipe_interleaves_preference_and_counterfactual_pairs():
    cfg = mix_rm_config()
    assert sum(cfg.mix.values()) == cfg.batch_size and set(cfg.mix) == {"preferences", "counterfactual"}
    assert RM_RECIPES["mix"][0] is mix_rm_config and "check" not in RM_RECIPES and RM_RECIPES["shipped"][1] == "rm-tiny"
    assert RM_RECIPES["shipped"][0]().mix is None  # rm-tiny's recipe is unchanged: one set of pairs


def test_train_refuses_a_normalized_model_and_an_empty_set(tokenizer, easy_pairs):
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer))
    rm.set_normalization(1.0, 2.0)
    with pytest.raises(ValueError, match="normalisation set"):
        train_reward_model(rm, tokenizer, easy_pairs, quick_config(steps=1), progress=False)
    rm.set_normalization(0.0, 1.0)
    cfg = quick_config(steps=1)
    cfg.max_length = 10
    with pytest.raises(ValueError, match="no pair to train on"):
        train_reward_model(rm, tokenizer, easy_pairs, cfg, progress=False)


def test_evaluate_reports_accuracy_next_to_the_ceiling(rm, tokenizer):
    rows = off_policy_pairs(problems(10), pairs_per_prompt=3, seed=1).rows
    tie = {**rows[0], "label": 0.5}
    too_long = {**rows[1], "chosen": rows[1]["chosen"] + " I hope this helps." * 8}
    ev = evaluate_reward_model(rm, tokenizer, rows + [tie, too_long], max_length=160, batch_size=7)
    assert ev.num_pairs == len(rows) and ev.counts == {"too_long": 1, "identical_tokens": 0, "ties": 1}
    assert ev.bayes_ceiling == pytest.approx(pairs_bayes_ceiling(rows))
    assert ev.accuracy == pytest.approx(float(pairwise_accuracy(ev.chosen_rewards, ev.rejected_rewards)))
    # the evaluation's rewards are the model's, pair by pair
    assert_close(ev.chosen_rewards, score_replies(rm, tokenizer, [r["prompt"] for r in rows],
                                                  [r["chosen"] for r in rows]), atol=1e-5, rtol=0)
    assert int(ev.calibration.counts.sum()) == 2 * len(rows)
    # scored raw: a normalised copy has the same accuracy, loss and calibration (the Bradley-Terry logits)
    normed = RewardModel.from_causal_lm(rm.backbone, seed=1).eval()
    normed.set_normalization(0.3, 0.01)
    ev_n = evaluate_reward_model(normed, tokenizer, rows)
    assert ev_n.accuracy == ev.accuracy and ev_n.loss == pytest.approx(ev.loss, abs=1e-6)
    assert_close(ev_n.calibration.ece, ev.calibration.ece)
    text = str(ev)
    assert f"accuracy {ev.accuracy:.3f}" in text and f"Bayes ceiling {ev.bayes_ceiling:.3f}" in text


def test_cli_rm_trains_reports_the_ceiling_and_refuses_to_overwrite(tmp_path, capsys):
    from rlhfbook_lab.cli import main
    from rlhfbook_lab.lm.data import write_pairs

    data = tmp_path / "prefs"
    write_pairs(data / "train.jsonl", off_policy_pairs(problems(16), pairs_per_prompt=2, seed=0).rows)
    write_pairs(data / "heldout.jsonl", off_policy_pairs(problems(8, seed=1), pairs_per_prompt=2, seed=1).rows)
    out = tmp_path / "rm"
    main(["rm", "--fast", "--steps", "2", "--data", str(data), "--out", str(out)])
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 2 and report["train_pairs"] == 32 and report["heldout_pairs"] == 16
    assert 0.5 <= report["bayes_ceiling"] <= 1 and 0 <= report["heldout_accuracy"] <= 1
    assert report["gap_to_ceiling"] == pytest.approx(report["bayes_ceiling"] - report["heldout_accuracy"], abs=2e-4)
    assert report["normalization"] is None
    rm, _ = load_reward_model(out)
    assert not rm.is_normalized
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["config"]["train"]["steps"] == 2 and meta["heldout"]["num_pairs"] == 16
    with pytest.raises(SystemExit):  # a non-empty folder is refused without --overwrite, before any training
        main(["rm", "--fast", "--steps", "2", "--data", str(data), "--out", str(out)])
    assert "exists and is not empty" in capsys.readouterr().err
