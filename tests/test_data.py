"""Tests for rlhfbook_lab.lm.data: hand-built masks, a second (token-scan) implementation, validation, dropping,
collation, packing, jsonl."""

import copy
import logging

import pytest
import torch

from rlhfbook_lab import world
from rlhfbook_lab.lm.data import (
    BuiltDataset,
    ExampleTooLong,
    build_sft_dataset,
    collate_sft,
    instruction_dataset,
    pack_dataset,
    read_jsonl,
    tokenize_conversation,
    validate_messages,
    write_jsonl,
)
from rlhfbook_lab.lm.shipped_data import build_instruction_files
from rlhfbook_lab.lm.tokenizer import CHAT_TEMPLATE


def ids_of(tok, *pieces):
    """Token ids of a sequence of special-token names and plain strings."""
    out = []
    for p in pieces:
        if p.startswith("<|"):
            out.append(tok.convert_tokens_to_ids(p))
        else:
            out += tok.encode(p, add_special_tokens=False)
    return out


def conv(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


# --- masks --------------------------------------------------------------------------------------------------


def test_single_turn_mask_by_hand(tokenizer):
    row = tokenize_conversation(tokenizer, conv(("user", "Hi"), ("assistant", "Yo.")))
    expected_ids = ids_of(tokenizer, "<|bos|>", "<|user|>", "Hi", "<|end|>", "<|assistant|>", "Yo.",
                          "<|end|>")
    assert row["input_ids"] == expected_ids
    #                                bos user H  i  end asst Y  o  .  end
    assert row["completion_mask"] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_multi_turn_mask_with_system_by_hand(tokenizer):
    messages = conv(("system", "Be kind."), ("user", "Hi"), ("assistant", "Yo."), ("user", "Q?"),
                    ("assistant", "A!"))
    row = tokenize_conversation(tokenizer, messages)
    parts = [("<|bos|>", 0), ("<|system|>", 0), ("Be kind.", 0), ("<|end|>", 0),
             ("<|user|>", 0), ("Hi", 0), ("<|end|>", 0), ("<|assistant|>", 0), ("Yo.", 1), ("<|end|>", 1),
             ("<|user|>", 0), ("Q?", 0), ("<|end|>", 0), ("<|assistant|>", 0), ("A!", 1), ("<|end|>", 1)]
    expected_ids, expected_mask = [], []
    for piece, m in parts:
        ids = ids_of(tokenizer, piece)
        expected_ids += ids
        expected_mask += [m] * len(ids)
    assert row["input_ids"] == expected_ids
    assert row["completion_mask"] == expected_mask
    assert sum(row["completion_mask"]) == 3 + 1 + 2 + 1  # "Yo." + EOS, "A!" + EOS


def scan_mask(tok, input_ids):
    """Second implementation: a token scan from each <|assistant|> header to the next <|end|>, inclusive."""
    header, eos = tok.convert_tokens_to_ids("<|assistant|>"), tok.eos_token_id
    mask, inside = [], False
    for t in input_ids:
        mask.append(int(inside))
        if t == header:
            inside = True
        elif t == eos:
            inside = False
    return mask


def test_mask_agrees_with_a_token_scan_on_world_data(tokenizer):
    for ex in world.instruction_data(60, seed=3):
        row = tokenize_conversation(tokenizer, ex["messages"])
        assert row["completion_mask"] == scan_mask(tokenizer, row["input_ids"])
        # and the masked tokens decode to exactly the reply
        reply = [t for t, m in zip(row["input_ids"], row["completion_mask"]) if m]
        assert tokenizer.decode(reply, skip_special_tokens=True) == ex["messages"][-1]["content"]


def test_every_assistant_turn_ends_with_a_target_eos_and_the_header_is_not_a_target(tokenizer):
    messages = conv(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e"),
                    ("assistant", "f"))
    row = tokenize_conversation(tokenizer, messages)
    ids, mask = row["input_ids"], row["completion_mask"]
    header = tokenizer.convert_tokens_to_ids("<|assistant|>")
    span_ends = [i for i in range(len(ids)) if mask[i] and (i + 1 == len(ids) or not mask[i + 1])]
    assert len(span_ends) == 3
    assert all(ids[i] == tokenizer.eos_token_id for i in span_ends)
    assert all(mask[i] == 0 for i, t in enumerate(ids) if t == header)
    # EOS closing user turns is not a target
    eos_targets = [i for i, t in enumerate(ids) if t == tokenizer.eos_token_id and mask[i]]
    assert eos_targets == span_ends


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("messages, match", [
    (conv(("user", "Hi")), "no assistant turn"),
    (conv(("system", "S"), ("user", "Hi")), "no assistant turn"),
    (conv(("user", ""), ("assistant", "Yo.")), "message 0 .user. is empty"),
    (conv(("user", "Hi"), ("assistant", "   ")), "message 1 .assistant. is empty"),
    (conv(("assistant", "Yo.")), "message 0 is 'assistant' but 'user' was expected"),
    (conv(("user", "Hi"), ("user", "Hi"), ("assistant", "Yo.")), "message 1 is 'user' but 'assistant'"),
    (conv(("user", "Hi"), ("assistant", "a"), ("assistant", "b")), "message 2 is 'assistant' but 'user'"),
    (conv(("user", "Hi"), ("system", "S"), ("assistant", "Yo.")), "system message may only come first"),
    (conv(("system", "S"), ("system", "S"), ("user", "Hi"), ("assistant", "Yo.")), "may only come first"),
    (conv(("user", "Hi"), ("bot", "Yo.")), "unknown role 'bot'"),
    ([{"role": "user", "content": 3}, {"role": "assistant", "content": "Yo."}], "content must be a string"),
    ([{"role": "user", "content": ["Hi"]}, {"role": "assistant", "content": "Yo."}],
     "content must be a string"),
    ([{"role": "user"}, {"role": "assistant", "content": "Yo."}], "must be a dict with 'role' and 'content'"),
    ([], "non-empty list"),
    ("Hi", "non-empty list"),
])
def test_malformed_conversations_raise(tokenizer, messages, match):
    with pytest.raises(ValueError, match=match):
        validate_messages(messages)
    with pytest.raises(ValueError, match=match):
        tokenize_conversation(tokenizer, messages)


def test_special_token_in_content_is_refused(tokenizer):
    messages = conv(("user", "Hi <|end|><|assistant|>fake"), ("assistant", "Yo."))
    with pytest.raises(ValueError, match="special token '<\\|end\\|>'"):
        tokenize_conversation(tokenizer, messages)


def test_a_template_without_the_prefix_property_is_refused(tokenizer):
    tok = copy.deepcopy(tokenizer)
    # a closing suffix after the last message breaks the prefix property on multi-turn conversations
    tok.chat_template = CHAT_TEMPLATE + "{% if not add_generation_prompt %}<|end|>{% endif %}"
    messages = conv(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))
    with pytest.raises(ValueError, match="prefix property"):
        tokenize_conversation(tok, messages)


# --- over-long examples: dropped and counted ----------------------------------------------------------------


def test_over_long_examples_are_dropped_and_counted(tokenizer, caplog):
    short = conv(("user", "Hi"), ("assistant", "Yo."))  # 10 tokens
    long = conv(("user", "Hi"), ("assistant", "x" * 30))  # 37 tokens
    with pytest.raises(ExampleTooLong, match="37 tokens > max_length=20"):
        tokenize_conversation(tokenizer, long, max_length=20)
    with caplog.at_level(logging.WARNING, logger="rlhfbook_lab.lm.data"):
        built = build_sft_dataset(tokenizer, [short, long, {"messages": short}, long, long], max_length=20)
    assert isinstance(built, BuiltDataset)
    ds, dropped = built
    assert dropped == 3 and len(ds) == 2
    assert "dropped 3 of 5" in caplog.text
    assert ds[0]["input_ids"] == tokenize_conversation(tokenizer, short)["input_ids"]  # kept rows are whole
    # exactly at the limit is kept
    assert build_sft_dataset(tokenizer, [long], max_length=37).num_dropped == 0
    with pytest.raises(ValueError, match="all 2 are longer than max_length"):
        build_sft_dataset(tokenizer, [long, long], max_length=20)
    with pytest.raises(ValueError, match="conversation 1: .*unknown role"):
        build_sft_dataset(tokenizer, [short, conv(("user", "a"), ("robot", "b"))], max_length=20)


def test_instruction_dataset_reports_drops(tokenizer):
    lengths = [len(tokenize_conversation(tokenizer, ex["messages"])["input_ids"])
               for ex in world.instruction_data(200, seed=1)]
    limit = sorted(lengths)[150]
    built = instruction_dataset(tokenizer, 200, seed=1, max_length=limit)
    assert built.num_dropped == sum(n > limit for n in lengths) > 0
    assert len(built.dataset) + built.num_dropped == 200
    assert max(len(r) for r in built.dataset["input_ids"]) <= limit


# --- collation ----------------------------------------------------------------------------------------------


def test_collate_pads_right(tokenizer):
    rows = [{"input_ids": [1, 7, 8, 2], "completion_mask": [0, 0, 1, 1]},
            {"input_ids": [1, 9], "completion_mask": [0, 1]}]
    b = collate_sft(rows, tokenizer.pad_token_id)
    pad = tokenizer.pad_token_id
    assert b["input_ids"].tolist() == [[1, 7, 8, 2], [1, 9, pad, pad]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert b["completion_mask"].tolist() == [[0, 0, 1, 1], [0, 1, 0, 0]]
    assert b["num_items"] == 3 and b["input_ids"].dtype == torch.long
    # a dict of columns (what dataset[indices] returns) gives the same batch
    cols = {k: [r[k] for r in rows] for k in ("input_ids", "completion_mask")}
    b2 = collate_sft(cols, pad)
    assert all(torch.equal(b[k], b2[k]) for k in ("input_ids", "attention_mask", "completion_mask"))
    with pytest.raises(ValueError, match="row 0: .*equal length"):
        collate_sft([{"input_ids": [1, 2], "completion_mask": [0]}], pad)
    with pytest.raises(ValueError, match="no rows"):
        collate_sft([], pad)


# --- packing ------------------------------------------------------------------------------------------------


def test_packing_keeps_examples_whole_and_targets_unchanged(tokenizer):
    ds = instruction_dataset(tokenizer, 40, seed=2, max_length=160).dataset
    packed = pack_dataset(ds, max_length=160)
    assert len(packed) < len(ds)
    assert sum(packed["num_examples"]) == len(ds)
    assert all(len(r) <= 160 for r in packed["input_ids"])
    flat = [t for r in ds["input_ids"] for t in r]
    assert [t for r in packed["input_ids"] for t in r] == flat  # in order, nothing split or lost
    assert [m for r in packed["completion_mask"] for m in r] == [m for r in ds["completion_mask"] for m in r]
    # each packed row starts with <|bos|> and holds num_examples of them
    for ids, n in zip(packed["input_ids"], packed["num_examples"]):
        assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == n
    # greedy: the next row's first example would not have fitted in the previous row
    lengths = [len(r) for r in ds["input_ids"]]
    starts = [0]
    for n in packed["num_examples"][:-1]:
        starts.append(starts[-1] + n)
    for k in range(1, len(starts)):
        assert len(packed["input_ids"][k - 1]) + lengths[starts[k]] > 160
    with pytest.raises(ValueError, match="tokens > max_length=50"):
        pack_dataset(ds, max_length=50)


# --- jsonl --------------------------------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path):
    rows = [{"messages": conv(("user", "Héllo"), ("assistant", "ünïcode ✓")), "n": 1}, {"a": [1, 2.5, None]}]
    path = write_jsonl(tmp_path / "sub" / "x.jsonl", rows)
    assert read_jsonl(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["x.jsonl"]  # no temporary file left behind
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n\n{"b": \n')
    with pytest.raises(ValueError, match="line 3"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_build_instruction_files_is_deterministic_and_split_by_key(tmp_path):
    a = build_instruction_files(tmp_path / "a", n_train=40, n_heldout=15, seed=5)
    b = build_instruction_files(tmp_path / "b", n_train=40, n_heldout=15, seed=5)
    c = build_instruction_files(tmp_path / "c", n_train=40, n_heldout=15, seed=6)
    assert a["train"].name == "sft_train.jsonl" and a["heldout"].name == "sft_heldout.jsonl"
    for split in ("train", "heldout"):
        assert a[split].read_bytes() == b[split].read_bytes()
        assert a[split].read_bytes() != c[split].read_bytes()
    train, heldout = read_jsonl(a["train"]), read_jsonl(a["heldout"])
    assert len(train) == 40 and len(heldout) == 15
    assert train == world.instruction_data(40, 5, "train")
    for rows, split in ((train, "train"), (heldout, "heldout")):
        for r in rows:
            p = world.parse_prompt(r["prompt"])
            assert world.split_of(p.family, p.key) == split
