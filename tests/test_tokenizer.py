"""Tests for rlhfbook_lab.lm.tokenizer: the shipped character-level tokenizer, its chat template, regeneration."""

from __future__ import annotations

import json

import pytest
from jinja2.exceptions import TemplateError
from transformers import PreTrainedTokenizerFast

from rlhfbook_lab.lm.tokenizer import (
    BOS,
    CHAT_TEMPLATE,
    EOS,
    PAD,
    ROLE_TOKENS,
    SPECIAL_TOKENS,
    build_and_save,
    load_tokenizer,
    train_tokenizer,
)
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.world import instruction_data, pretraining_corpus

UNICODE = ["héllo wörld", "naïve café ✓", "日本語のテキスト", "emoji 🙂 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "tab\tand\nnewline",
           "  leading and trailing spaces  ", "", " ", "Ġ is a byte-level symbol, not a space"]


@pytest.fixture(scope="module")
def examples():
    return instruction_data(300, seed=21)


# ---------------------------------------------------------------------------------------------------------
# the shipped file and its special tokens
# ---------------------------------------------------------------------------------------------------------


def test_shipped_tokenizer_loads(tokenizer):
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert len(tokenizer) == 256 + len(SPECIAL_TOKENS) == 262
    assert sorted(tokenizer.get_vocab().values()) == list(range(262))  # dense ids, nothing missing
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.padding_side == "right"


def test_special_tokens_are_distinct_single_tokens(tokenizer):
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (PAD, BOS, EOS)
    ids = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id]
    assert len(set(ids)) == 3 and None not in ids
    assert ids == [0, 1, 2]  # frozen: shipped checkpoints and configs use these ids
    for i, token in enumerate(SPECIAL_TOKENS):  # PAD, BOS, EOS, then the role tokens: one id each
        assert tokenizer.encode(token) == [i] == [tokenizer.convert_tokens_to_ids(token)]
        assert tokenizer.decode([i]) == token
    assert set(tokenizer.all_special_ids) == set(range(len(SPECIAL_TOKENS)))


def test_padding_uses_pad_not_eos(tokenizer):
    batch = tokenizer(["ab", "abcd"], padding=True)
    assert batch["input_ids"][0][2:] == [tokenizer.pad_token_id] * 2
    assert batch["attention_mask"] == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert tokenizer.eos_token_id not in batch["input_ids"][0]


def test_load_tokenizer_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# the chat template
# ---------------------------------------------------------------------------------------------------------


def test_chat_template_hand_rendering(tokenizer):
    messages = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5."}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|bos|><|user|>What is 2 + 3?<|end|><|assistant|>2 + 3 = 5.<|end|>")
    assert tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=False) == (
        "<|bos|><|user|>What is 2 + 3?<|end|><|assistant|>")
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    # BOS, <|user|>, 14 characters, EOS, <|assistant|>, 10 characters, EOS
    assert len(ids) == 1 + 1 + 14 + 1 + 1 + 10 + 1
    assert ids[:2] == [tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids("<|user|>")]


def test_prompt_is_an_exact_prefix_at_the_chat_boundary(tokenizer, examples):
    eos = tokenizer.eos_token_id
    for ex in examples:
        prompt_ids = tokenizer.apply_chat_template(ex["messages"][:1], add_generation_prompt=True, tokenize=True,
                                                   return_dict=False)
        full_ids = tokenizer.apply_chat_template(ex["messages"], tokenize=True, return_dict=False)
        reply = ex["messages"][1]["content"]
        assert full_ids[: len(prompt_ids)] == prompt_ids
        # what follows the prompt is exactly the reply's own tokens, then one EOS: prompt and response can be
        # tokenized separately and concatenated (as the data collators and the sampler do)
        assert full_ids[len(prompt_ids):] == tokenizer.encode(reply, add_special_tokens=False) + [eos]
        assert prompt_ids[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")


def test_assistant_turn_ends_with_exactly_one_eos(tokenizer, examples):
    eos = tokenizer.eos_token_id
    for ex in examples:
        ids = tokenizer.apply_chat_template(ex["messages"], tokenize=True, return_dict=False)
        assert ids[-1] == eos and ids[-2] != eos
        assert ids.count(eos) == 2  # one per turn: user, assistant
        assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
        assert tokenizer.pad_token_id not in ids


def test_multi_turn_with_system_message(tokenizer, examples):
    messages = [{"role": "system", "content": "You are terse."}]
    for ex in examples[:3]:
        messages += ex["messages"]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    eos = tokenizer.eos_token_id
    role_ids = {tokenizer.convert_tokens_to_ids(t) for t in ROLE_TOKENS}
    assert ids.count(eos) == len(messages) == 7
    # every EOS closes a turn: it is followed by the next role token, or it is the last token
    for i, t in enumerate(ids):
        if t == eos:
            assert i == len(ids) - 1 or ids[i + 1] in role_ids
    assert [t for t in ids if t in role_ids] == [tokenizer.convert_tokens_to_ids(f"<|{m['role']}|>")
                                                 for m in messages]
    # the text between the special tokens is the messages' content, in order
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text == "".join(m["content"] for m in messages)
    # a generation prompt after a multi-turn history is still a prefix of the history plus the next reply
    history = messages[:-1]
    prompt_ids = tokenizer.apply_chat_template(history, add_generation_prompt=True, tokenize=True,
                                               return_dict=False)
    assert ids[: len(prompt_ids)] == prompt_ids


@pytest.mark.parametrize("role", ["bot", "User", "function"])
def test_unknown_role_raises(tokenizer, role):
    with pytest.raises(TemplateError, match=f"unknown role: {role}"):
        tokenizer.apply_chat_template([{"role": role, "content": "hi"}], tokenize=False)
    # "tool" is known (tool results, tests/test_tool_use.py), but only right after an assistant's call
    with pytest.raises(TemplateError, match="a tool message without a tool call"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "hi"}], tokenize=False)


# ---------------------------------------------------------------------------------------------------------
# character level: round trips, one token per character
# ---------------------------------------------------------------------------------------------------------


def test_round_trip_on_the_corpus_and_unicode(tokenizer):
    for text in pretraining_corpus(2000, seed=22) + UNICODE:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text, text
        assert len(ids) == len(text.encode("utf-8"))  # one token per byte, whatever the script
    # a whole rendered conversation survives the round trip, special tokens included
    rendered = tokenizer.apply_chat_template(instruction_data(5, seed=22)[0]["messages"], tokenize=False)
    assert tokenizer.decode(tokenizer.encode(rendered)) == rendered


def test_one_token_per_ascii_character(tokenizer):
    texts = pretraining_corpus(500, seed=23) + ["What is 48 + 23?", " 48", "48", "x  y\n"]
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert len(ids) == len(text)
        assert ids == [tokenizer.encode(ch, add_special_tokens=False)[0] for ch in text]  # context-free
    # encode adds no special tokens by itself (the chat template does that)
    assert tokenizer.encode("17") == tokenizer.encode("17", add_special_tokens=False)
    # the digits of a number are the same tokens wherever it stands (DESIGN: BPE broke this)
    assert tokenizer.encode(" 48")[1:] == tokenizer.encode("48") == tokenizer.encode("a48")[1:]


# ---------------------------------------------------------------------------------------------------------
# training and regeneration
# ---------------------------------------------------------------------------------------------------------


def test_train_tokenizer_learns_zero_merges(tokenizer):
    small = train_tokenizer(["17 + 25 = 42.", "The reverse of mirt is trim.", "aaaa aaaa aaaa"] * 50)
    assert small.get_vocab() == tokenizer.get_vocab()
    assert json.loads(small.backend_tokenizer.to_str())["model"]["merges"] == []
    assert json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"] == []
    assert small.encode("aaaa") == [small.convert_tokens_to_ids("a")] * 4  # no "aa" token however frequent
    assert (small.pad_token_id, small.bos_token_id, small.eos_token_id) == (0, 1, 2)
    assert small.chat_template == CHAT_TEMPLATE


def test_shipped_tokenizer_is_regenerable(tmp_path, tokenizer):
    rebuilt = build_and_save(tmp_path)
    shipped_dir = DATA_DIR / "tokenizer"
    assert (tmp_path / "tokenizer.json").read_bytes() == (shipped_dir / "tokenizer.json").read_bytes()
    assert (json.loads((tmp_path / "tokenizer_config.json").read_text())
            == json.loads((shipped_dir / "tokenizer_config.json").read_text()))
    reloaded = load_tokenizer(tmp_path)
    sample = "Sure! 17 + 25 = 42. The reverse of mirt is trim. ✓"
    for tok in (rebuilt, reloaded):
        assert tok.get_vocab() == tokenizer.get_vocab()
        assert tok.encode(sample) == tokenizer.encode(sample)
        assert tok.chat_template == tokenizer.chat_template
