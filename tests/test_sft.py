"""Tests for rlhfbook_lab.trainers.sft and rlhfbook_lab.lm.evaluation: hand-computed losses, exact gradient accumulation
(and the classic bug it avoids), prompt tokens get no gradient, padding invariance, packing's pinned
behaviour, a tiny seeded SFT run, the chat evaluation's bookkeeping, groups of samples and elicitation by hand,
the held-out loss, and the shipped recipe's checkpoint writing."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from _models import tiny_llama
from torch.testing import assert_close

from rlhfbook_lab import world
from rlhfbook_lab.equations.logprobs import nll_loss_sum, num_loss_items, per_token_logprobs
from rlhfbook_lab.lm import evaluation
from rlhfbook_lab.lm.data import collate_sft, instruction_dataset, pack_dataset, token_roles, tokenize_conversation
from rlhfbook_lab.lm.forward import sft_loss_sum
from rlhfbook_lab.lm.generation import Generation
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.sft import SFTConfig, apply_label_options, eval_loss, sft, sft_from_base


class FixedLogits(torch.nn.Module):
    """A 'model' whose logits are a parameter, whatever the input: the gradient w.r.t. logits is readable."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(logits.clone())

    def forward(self, input_ids, **kwargs):
        return SimpleNamespace(logits=self.logits)


# A 2-example batch, T = 4, V = 3. Row 0: prompt [0, 1], reply [2, 0]; row 1: prompt [0], reply [1], then pad.
LOGITS = torch.tensor([
    [[1.0, 2.0, 3.0], [0.5, 0.5, 2.0], [2.0, 0.0, 0.0], [9.0, 9.0, 9.0]],
    [[0.0, 1.0, 0.0], [3.0, 3.0, 3.0], [7.0, 1.0, 2.0], [5.0, 5.0, 5.0]],
], dtype=torch.float64)
INPUT_IDS = torch.tensor([[0, 1, 2, 0], [0, 1, 2, 2]])
ATTENTION = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
COMPLETION = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 0]])


def log_softmax_py(z, k):
    return z[k] - math.log(sum(math.exp(v) for v in z))


def hand_nll():
    """−log p by hand. Row 0 predicts id 2 from logits[0,1] and id 0 from logits[0,2]; row 1 predicts id 1
    from logits[1,0]."""
    r0 = [-log_softmax_py([0.5, 0.5, 2.0], 2), -log_softmax_py([2.0, 0.0, 0.0], 0)]
    r1 = [-log_softmax_py([0.0, 1.0, 0.0], 1)]
    return r0, r1


def test_nll_by_hand_token_and_sequence():
    r0, r1 = hand_nll()
    # r0[0] = −log(e^2 / (2e^0.5 + e^2)) = log(1 + 2e^−1.5) ≈ 0.3656
    assert r0[0] == pytest.approx(math.log(1 + 2 * math.exp(-1.5)))
    logps = per_token_logprobs(LOGITS, INPUT_IDS)
    tok = nll_loss_sum(logps, COMPLETION, "token")
    seq = nll_loss_sum(logps, COMPLETION, "sequence")
    # the log-prob core computes in float32, hence 1e-6
    assert float(tok) == pytest.approx(sum(r0) + sum(r1), abs=1e-6)
    assert float(seq) == pytest.approx(sum(r0) / 2 + sum(r1) / 1, abs=1e-6)
    assert num_loss_items(COMPLETION, "token") == 3 and num_loss_items(COMPLETION, "sequence") == 2
    with pytest.raises(ValueError, match="reduction"):
        nll_loss_sum(logps, COMPLETION, "mean")


def fixed_batch():
    return {"input_ids": INPUT_IDS, "attention_mask": ATTENTION, "completion_mask": COMPLETION,
            "num_items": 3}


def test_sft_loss_sum_matches_hand_value_and_prompt_positions_get_no_gradient():
    model = FixedLogits(LOGITS)
    loss, metrics = sft_loss_sum(model, fixed_batch())
    r0, r1 = hand_nll()
    assert float(loss.detach()) == pytest.approx(sum(r0) + sum(r1), abs=1e-6)
    # argmax of logits[0,1] is 2 (hit), of logits[0,2] is 0 (hit), of logits[1,0] is 1 (hit)
    assert metrics["charts/token_accuracy"] == 3
    loss.backward()
    grad_rows = model.logits.grad.abs().sum(-1)  # (B, T): logits[:, t] predict token t + 1
    predicts_target = torch.zeros_like(COMPLETION)
    predicts_target[:, :-1] = COMPLETION[:, 1:]
    assert torch.all(grad_rows[predicts_target == 0] == 0)  # exactly zero, not merely small
    assert torch.all(grad_rows[predicts_target == 1] > 0)


def test_changing_a_prompt_token_does_not_change_the_loss():
    base, _ = sft_loss_sum(FixedLogits(LOGITS), fixed_batch())
    base = base.detach()
    b = fixed_batch()
    b["input_ids"] = INPUT_IDS.clone()
    b["input_ids"][0, 1] = 2  # a prompt token's label
    changed = sft_loss_sum(FixedLogits(LOGITS), b)[0].detach()
    assert float(changed) == float(base)
    b["input_ids"][0, 2] = 1  # a reply token's label does change it
    assert float(sft_loss_sum(FixedLogits(LOGITS), b)[0].detach()) != float(base)


def test_mask_prompt_false_trains_on_prompt_tokens():
    b = fixed_batch()
    ids = INPUT_IDS[0].tolist()
    row0 = apply_label_options(ids, COMPLETION[0].tolist(), eos_token_id=99, mask_prompt=False)
    b["completion_mask"] = torch.tensor([row0, [0, 1, 0, 0]])
    assert b["completion_mask"][0].tolist() == [0, 1, 1, 1]
    loss, _ = sft_loss_sum(FixedLogits(LOGITS), b)
    r0, r1 = hand_nll()
    prompt_nll = -log_softmax_py([1.0, 2.0, 3.0], 1)  # row 0's prompt token 1, predicted from logits[0,0]
    assert float(loss.detach()) == pytest.approx(prompt_nll + sum(r0) + sum(r1), abs=1e-6)


def test_label_options_on_a_real_conversation(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}]
    row = tokenize_conversation(tokenizer, messages)
    ids, mask, eos = row["input_ids"], row["completion_mask"], tokenizer.eos_token_id
    assert apply_label_options(ids, mask, eos) == mask
    assert mask[-1] == 1 and ids[-1] == eos  # the reply's EOS is a target by default
    no_eos = apply_label_options(ids, mask, eos, train_on_eos=False)
    assert no_eos == mask[:-1] + [0]
    everything = apply_label_options(ids, mask, eos, mask_prompt=False)
    assert everything == [0] + [1] * (len(ids) - 1)
    assert apply_label_options(ids, mask, eos, mask_prompt=False, train_on_eos=False) == [
        0 if t == eos else m for t, m in zip(ids, everything)]


# --- gradient accumulation ----------------------------------------------------------------------------------


def conversations(n, seed=0):
    return [ex["messages"] for ex in world.instruction_data(n, seed=seed)]


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_accumulation_is_exact_and_naive_averaging_is_not(tokenizer):
    rows = [tokenize_conversation(tokenizer, m) for m in conversations(5, seed=4)]
    pad = tokenizer.pad_token_id
    micro = [collate_sft(rows[:1], pad), collate_sft(rows[1:], pad)]
    assert micro[0]["num_items"] != micro[1]["num_items"] / 4  # different tokens per example: the bug shows
    model = tiny_llama(tokenizer, seed=1)

    for reduction in ("token", "sequence"):
        model.zero_grad()
        full = collate_sft(rows, pad)
        loss, _ = sft_loss_sum(model, full, reduction)
        (loss / num_loss_items(full["completion_mask"], reduction)).backward()
        g_one = grads(model).clone()

        model.zero_grad()  # the loop's contract: Σ loss_sum / total items of the step
        total = sum(num_loss_items(b["completion_mask"], reduction) for b in micro)
        for b in micro:
            (sft_loss_sum(model, b, reduction)[0] / total).backward()
        assert_close(grads(model), g_one, atol=1e-6, rtol=0)

        model.zero_grad()  # the classic bug: average inside each micro-batch, then over micro-batches
        for b in micro:
            loss, _ = sft_loss_sum(model, b, reduction)
            (loss / num_loss_items(b["completion_mask"], reduction) / len(micro)).backward()
        assert (grads(model) - g_one).abs().max() > 1e-4


def test_padding_does_not_change_the_loss(tokenizer):
    rows = [tokenize_conversation(tokenizer, m) for m in conversations(3, seed=7)]
    model = tiny_llama(tokenizer, seed=2)
    with torch.no_grad():
        alone = [float(sft_loss_sum(model, collate_sft([r], tokenizer.pad_token_id))[0]) for r in rows]
        batched, _ = sft_loss_sum(model, collate_sft(rows, tokenizer.pad_token_id))
    assert float(batched) == pytest.approx(sum(alone), abs=1e-4)
    assert len({len(r["input_ids"]) for r in rows}) > 1  # there was padding


def test_packed_examples_attend_across_boundaries(tokenizer):
    """Pins data.pack_dataset's documented choice: the first example of a packed row scores as it does alone
    (causal attention), the second does not (it sees the first)."""
    ds = instruction_dataset(tokenizer, 2, seed=8).dataset
    packed = pack_dataset(ds, max_length=160)
    assert packed["num_examples"] == [2]
    model = tiny_llama(tokenizer, seed=3)
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        first, second = (float(sft_loss_sum(model, collate_sft([ds[i]], pad))[0]) for i in range(2))
        n0 = len(ds[0]["input_ids"])
        row = packed[0]
        ids, mask, n = row["input_ids"], row["completion_mask"], len(row["input_ids"])
        only_first = {"input_ids": ids, "completion_mask": mask[:n0] + [0] * (n - n0)}
        only_second = {"input_ids": ids, "completion_mask": [0] * n0 + mask[n0:]}
        p_first = float(sft_loss_sum(model, collate_sft([only_first], pad))[0])
        p_second = float(sft_loss_sum(model, collate_sft([only_second], pad))[0])
    assert p_first == pytest.approx(first, abs=1e-4)
    assert abs(p_second - second) > 1e-3


# --- the loop -----------------------------------------------------------------------------------------------


def small_cfg(**kw):
    train = TrainConfig(steps=kw.pop("steps", 25), lr=1e-2, warmup_steps=2, seed=kw.pop("seed", 0),
                        bf16=False, grad_accum=kw.pop("grad_accum", 1))
    return SFTConfig(train=train, batch_size=kw.pop("batch_size", 8), **kw)


def test_tiny_sft_run_learns_and_is_deterministic(tokenizer):
    data = world.instruction_data(48, seed=9)
    h1 = sft(tiny_llama(tokenizer, seed=4), tokenizer, data, small_cfg(), progress=False)
    h2 = sft(tiny_llama(tokenizer, seed=4), tokenizer, data, small_cfg(), progress=False)
    losses = h1["losses/train"]
    assert len(losses) == 25
    assert h1["losses/train"] == h2["losses/train"]  # bit-identical curves
    assert losses[0] == pytest.approx(math.log(len(tokenizer)), abs=0.2)  # ≈ uniform at init: ln 262 ≈ 5.57
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0]  # ≈ 3.0 after 25 steps
    assert h1["data/num_examples"] == [48] and h1["data/num_dropped"] == [0]
    assert all(0 <= a <= 1 for a in h1["charts/token_accuracy"])
    h3 = sft(tiny_llama(tokenizer, seed=4), tokenizer, data, small_cfg(seed=1), progress=False)
    assert h3["losses/train"] != losses  # the seed changes the batch order


def test_sft_variants_run(tokenizer):
    data = world.instruction_data(24, seed=10)
    h = sft(tiny_llama(tokenizer), tokenizer, data, small_cfg(steps=2, reduction="sequence", grad_accum=2),
            progress=False)
    assert h["charts/items"] == [16, 16]  # sequence reduction: items are rows (8 rows × 2 micro-batches)
    h = sft(tiny_llama(tokenizer), tokenizer, data, small_cfg(steps=2, pack=True), progress=False)
    assert h["charts/items"][0] > 8 * 30  # packed rows hold several replies
    cfg = small_cfg(steps=2, pretrain_mix=0.25, pretrain_statements=200)
    h = sft(tiny_llama(tokenizer), tokenizer, data, cfg, progress=False)
    assert len(h["losses/train"]) == 2
    h = sft(tiny_llama(tokenizer), tokenizer, data, small_cfg(steps=1, max_length=70, mask_prompt=False,
                                                                train_on_eos=False), progress=False)
    lengths = [len(tokenize_conversation(tokenizer, ex["messages"])["input_ids"]) for ex in data]
    assert h["data/num_dropped"][0] == sum(n > 70 for n in lengths) > 0


@pytest.mark.parametrize("kw, match", [
    (dict(reduction="mean"), "reduction"),
    (dict(pack=True, reduction="sequence"), "pack=True needs reduction='token'"),
    (dict(pretrain_mix=1.0), "pretrain_mix"),
    (dict(pretrain_mix=0.99, batch_size=2), "leaves no SFT row"),
])
def test_sft_config_errors(tokenizer, kw, match):
    with pytest.raises(ValueError, match=match):
        sft(tiny_llama(tokenizer), tokenizer, world.instruction_data(4), small_cfg(steps=1, **kw),
            progress=False)


# --- evaluation ---------------------------------------------------------------------------------------------


def fake_generate(replies, finished):
    def gen(model, tokenizer, prompts, **kwargs):
        out = [replies[p] for p in prompts]
        return SimpleNamespace(texts=out, finished=torch.tensor([finished[p] for p in prompts]))
    return gen


def test_evaluate_chat_bookkeeping_by_hand(monkeypatch):
    problems = world.heldout_prompts(8, seed=0)  # families in turn: 2 of each
    replies, finished = {}, {}
    for i, p in enumerate(problems):
        replies[p.prompt] = p.reference if i < 4 else ""  # first of each family right, second empty
        finished[p.prompt] = i % 2 == 0
    monkeypatch.setattr(evaluation, "generate", fake_generate(replies, finished))
    res = evaluation.evaluate_chat(None, None, problems, batch_size=3)
    for fam in world.FAMILIES:
        assert res.by_family[fam]["n"] == 2
        assert res.by_family[fam]["correct_rate"] == 0.5
        # a reference answer scores 1.00; an empty reply EMPTY_RESPONSE_SCORE
        assert res.by_family[fam]["gold_score"] == pytest.approx((1.0 + world.EMPTY_RESPONSE_SCORE) / 2)
    assert res.overall["eos_rate"] == 0.5 and res.overall["n"] == 8
    assert [r[0] for r in res.rows] == [p.prompt for p in problems]
    assert res.rows[0][1:] == (problems[0].reference, pytest.approx(1.0))
    assert res.correct == [True] * 4 + [False] * 4  # per problem, in input order


def test_evaluate_chat_with_a_real_model(tokenizer):
    problems = world.heldout_prompts(6, seed=1)
    res = evaluation.evaluate_chat(tiny_llama(tokenizer), tokenizer, problems, max_new_tokens=4, batch_size=4)
    assert len(res.rows) == 6 and set(res.by_family) == set(world.FAMILIES)
    for (prompt, reply, score), p in zip(res.rows, problems):
        assert prompt == p.prompt
        assert score == world.gold_score(p, reply, allow_empty=True)
    assert res.correct == [world.is_correct(p, reply) for (_, reply, _), p in zip(res.rows, problems)]
    with pytest.raises(ValueError, match="empty"):
        evaluation.evaluate_chat(None, tokenizer, [])


def test_generation_type_is_what_evaluation_reads():
    fields = Generation.__dataclass_fields__
    assert "texts" in fields and "finished" in fields


# --- groups of samples (the signal RL needs) ----------------------------------------------------------------


def test_sample_groups_counts_by_hand(monkeypatch):
    problems = world.heldout_prompts(5, seed=0, families=("addition",))
    k = 4
    right = {p.prompt: i for i, p in enumerate(problems)}  # problem i gets min(i, k) right samples

    def gen(model, tokenizer, prompts, num_return_sequences=1, **kwargs):
        texts = []
        for prompt in prompts:
            p = world.parse_prompt(prompt)
            n_right = min(right[prompt], num_return_sequences)
            texts += [p.reference] * n_right + ["0 + 0 = 1000."] * (num_return_sequences - n_right)
        return SimpleNamespace(texts=texts)

    monkeypatch.setattr(evaluation, "generate", gen)
    g = evaluation.sample_groups(None, None, problems, k=k, batch_size=8)  # 2 prompts per call: 3 calls
    assert g.counts == [0, 1, 2, 3, 4] and g.k == k
    assert g.mixed_share == pytest.approx(3 / 5)        # counts 1, 2, 3
    assert g.all_wrong_share == pytest.approx(1 / 5) and g.all_correct_share == pytest.approx(1 / 5)
    assert g.sample_accuracy == pytest.approx(10 / 20)
    assert evaluation.mixed_share(None, None, problems, k=k) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="empty"):
        evaluation.sample_groups(None, None, [], k=k)
    with pytest.raises(ValueError, match="k must"):
        evaluation.sample_groups(None, None, problems, k=0)


def test_sample_groups_is_seeded_with_a_real_model(tokenizer):
    problems = world.heldout_prompts(3, seed=2, families=("addition",))
    model = tiny_llama(tokenizer)
    a = evaluation.sample_groups(model, tokenizer, problems, k=3, max_new_tokens=4, seed=7)
    b = evaluation.sample_groups(model, tokenizer, problems, k=3, max_new_tokens=4, seed=7)
    assert a.counts == b.counts and len(a.counts) == 3 and all(0 <= c <= 3 for c in a.counts)


# --- elicitation --------------------------------------------------------------------------------------------


def test_creature_split_partitions_the_cast():
    train, heldout = evaluation.creature_split("train"), evaluation.creature_split("heldout")
    assert sorted(train + heldout) == sorted(world.tasks.CREATURE_NAMES) and not set(train) & set(heldout)
    assert len(heldout) == 7  # the elicitation set the issue describes
    for rows, split in ((world.instruction_data(300, 0, "train", families=("creatures",)), "train"),
                        (world.heldout_prompts(60, families=("creatures",)), "heldout")):
        for r in rows:
            p = world.parse_prompt(r["prompt"] if isinstance(r, dict) else r.prompt)
            assert p.key[0] in (train if split == "train" else heldout)
    with pytest.raises(ValueError, match="split"):
        evaluation.creature_split("test")


def test_elicitation_report_bookkeeping(monkeypatch, tokenizer):
    """A fake base that knows every fact but the blorp's, and a fake SFT model that answers only questions
    about creatures in the SFT data but, once the creature is named for it, states every fact right: the
    report's rates follow by hand."""
    heldout = evaluation.creature_split("heldout")

    def value_after(subject):  # "The blorp eats" → the fact's last word
        c = subject.split()[1]
        attr = next(a for a, t in world.tasks.CREATURE_FACTS.items() if t.format(c=c, v="").strip(" .") == subject)
        return world.tasks.CREATURES[c][attr]

    def gen(model, tokenizer, prompts, chat=True, **kwargs):
        texts = []
        for prompt in prompts:
            if chat:  # a question
                p = world.parse_prompt(prompt)
                texts.append(p.reference if p.key[0] not in heldout else "I do not know.")
            elif "<|assistant|>" in prompt:  # a question with the reply's subject prefilled
                assert prompt.startswith("<|user|>") and prompt.count("<|end|>") == 1
                texts.append(f" {value_after(prompt.split('<|assistant|>')[1])}.")
            else:  # a statement prefix
                texts.append(" mud.\nThe" if prompt.split()[1] == "blorp" else f" {value_after(prompt)}.\nThe")
        return SimpleNamespace(texts=texts)

    monkeypatch.setattr(evaluation, "generate", gen)
    rep = evaluation.elicitation_report("base", "sft", tokenizer)
    n_train = len(rep.creatures["train"])
    assert len(rep.rows) == (n_train + len(heldout)) * 3 * 2  # creature × attribute × phrasing
    assert rep.base_knows["train"] == 1.0
    assert rep.base_knows["heldout"] == pytest.approx(1 - 1 / len(heldout))  # "blorp" is held out
    assert rep.sft_answers == {"train": 1.0, "heldout": 0.0} and rep.elicited["heldout"] == 0.0
    assert rep.sft_prefilled == {"train": 1.0, "heldout": 1.0}
    blorp = [r for r in rep.rows if r["creature"] == "blorp"]
    assert blorp and not any(r["base_knows"] for r in blorp)
    assert blorp[0]["base_completion"].startswith("The blorp") and "\n" not in blorp[0]["base_completion"]
    assert blorp[0]["prefilled_reply"] == world.make_problem("creatures", ("blorp", "color")).reference


# --- token roles, held-out loss, the shipped recipe ---------------------------------------------------------


def test_token_roles_of_a_conversation(tokenizer):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "a b"}]
    row = tokenize_conversation(tokenizer, msgs)
    roles = token_roles(tokenizer, row["input_ids"], row["completion_mask"])
    assert roles == [("<|bos|>", "prompt"), ("<|user|>", "prompt"), ("H", "prompt"), ("i", "prompt"),
                     ("<|end|>", "prompt"), ("<|assistant|>", "prompt"), ("a", "response"), ("␣", "response"),
                     ("b", "response"), ("<|end|>", "eos")]
    with pytest.raises(ValueError, match="same length"):
        token_roles(tokenizer, row["input_ids"], row["completion_mask"][:-1])


def test_eval_loss_is_the_mean_nll_of_the_targets(tokenizer):
    model = tiny_llama(tokenizer)
    ds = instruction_dataset(tokenizer, 7, seed=3).dataset
    by_row = []
    for r in ds:
        b = collate_sft([r], tokenizer.pad_token_id)
        with torch.no_grad():
            loss_sum, _ = sft_loss_sum(model, b)
        by_row.append((float(loss_sum), b["num_items"]))
    expected = sum(s for s, _ in by_row) / sum(n for _, n in by_row)
    assert eval_loss(model, ds, tokenizer.pad_token_id, batch_size=3) == pytest.approx(expected, rel=1e-5)
    seq = eval_loss(model, ds, tokenizer.pad_token_id, reduction="sequence", batch_size=2)
    assert seq == pytest.approx(sum(s / n for s, n in by_row) / len(by_row), rel=1e-5)


def test_sft_from_base_writes_a_loadable_checkpoint(tmp_path):
    from rlhfbook_lab.lm.models import load_model
    from rlhfbook_lab.lm.shipped_data import build_instruction_files

    build_instruction_files(tmp_path / "sft", n_train=12, n_heldout=5, seed=1)
    cfg = SFTConfig(batch_size=4, train=TrainConfig(steps=2, lr=1e-4, warmup_steps=1, bf16=False))
    out = tmp_path / "ckpt"
    model, tok, hist = sft_from_base(cfg, out=out, num_examples=8, progress=False, eval_every=1,
                                     data_dir=tmp_path / "sft")
    assert hist["eval/step"] == [1, 2] and len(hist["eval/heldout_loss"]) == 2
    meta = json.loads((out / "training_meta.json").read_text())
    assert meta["num_examples"] == 8 and meta["config"]["train"]["steps"] == 2 and meta["base"] == "base-tiny"
    log = json.loads((out / "training_log.json").read_text())
    assert log["step"] == [0, 1] and log["eval/heldout_loss"] == hist["eval/heldout_loss"]
    reloaded, _ = load_model(out, device="cpu")
    ids = torch.tensor([tok.encode("17 + 25 = 42.")])
    assert_close(reloaded(ids).logits, model.cpu()(ids).logits)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    with pytest.raises(FileExistsError):
        sft_from_base(cfg, out=out, data_dir=tmp_path / "sft")
    with pytest.raises(ValueError, match="num_examples"):
        sft_from_base(cfg, num_examples=13, data_dir=tmp_path / "sft")
    with pytest.raises(FileNotFoundError, match="sft-data"):
        sft_from_base(cfg, data_dir=tmp_path / "nowhere")


def test_cli_sft_data_writes_the_files(tmp_path, capsys):
    from rlhfbook_lab.cli import main
    from rlhfbook_lab.lm.shipped_data import load_instruction_file

    main(["sft-data", "--out", str(tmp_path), "--n-train", "9", "--n-heldout", "4", "--seed", "2"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_train"] == 9 and summary["n_heldout"] == 4
    assert load_instruction_file("train", tmp_path) == world.instruction_data(9, 2, "train")
    assert len(load_instruction_file("heldout", tmp_path)) == 4
    with pytest.raises(ValueError, match="split"):
        load_instruction_file("test", tmp_path)
