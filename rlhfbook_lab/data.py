"""Chat data for instruction tuning: validation, tokenization with a completion mask, collation, packing,
jsonl files.

What a training example is
--------------------------
A conversation is a list of messages ``{"role": ..., "content": ...}``: an optional system message first, then
user and assistant turns alternating, starting with the user. We render it with the tokenizer's chat template
and mark which tokens the model is trained to produce::

    token:  <|bos|>  <|user|>  W h a t ... ?  <|end|>  <|assistant|>  2 ␣ + ... 5 .  <|end|>
    mask:      0        0      0 0 0 0 ... 0     0           0         1 1 1 ... 1 1     1

``completion_mask`` is 1 on every assistant turn's content **and its closing** ``<|end|>`` (the EOS: a model
that never sees it as a target never learns to stop), 0 on the system and user turns and on the
``<|assistant|>`` header (the header is part of the prompt: at generation time we write it, the model does
not). It is aligned with ``input_ids``, the log-prob core's convention (``logprobs`` module docstring).

How the assistant spans are found: the template's *prefix property*. Rendering the messages before an
assistant turn with ``add_generation_prompt=True`` gives exactly the tokens up to and including its header;
rendering the messages through that turn gives the tokens up to and including its ``<|end|>``. Both must be
prefixes of the whole conversation's tokens, and the span between them is the reply. A template that breaks
the property is refused with a ``ValueError`` rather than mis-masked.

Over-long examples are dropped, never truncated
-----------------------------------------------
Cutting a conversation at ``max_length`` would cut a reply before its EOS and teach the model to stop in the
middle of a sentence (or never to stop). So :func:`tokenize_conversation` raises :class:`ExampleTooLong` and
the dataset builders **drop** such examples and report how many (``BuiltDataset.num_dropped``, and a logged
warning). If every example is too long, that is an error.

The shipped instruction data
----------------------------
``data/sft/sft_train.jsonl`` (:data:`SFT_TRAIN_SIZE` conversations) and ``sft_heldout.jsonl``
(:data:`SFT_HELDOUT_SIZE`), one ``world.instruction_data`` record per line, are written by
:func:`build_instruction_files` (``rlhfbook-lab sft-data``; ``rlhfbook-lab sft`` writes them first if they are
missing) and read by :func:`load_instruction_file`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, NamedTuple

import torch
from datasets import Dataset

from .paths import DATA_DIR

__all__ = [
    "BuiltDataset",
    "ExampleTooLong",
    "build_instruction_files",
    "build_sft_dataset",
    "collate_sft",
    "instruction_dataset",
    "load_instruction_file",
    "pack_dataset",
    "read_jsonl",
    "token_roles",
    "tokenize_conversation",
    "validate_messages",
    "write_jsonl",
]

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")

SFT_DATA_DIR = DATA_DIR / "sft"
"""Where the shipped instruction data lives (``sft_train.jsonl``, ``sft_heldout.jsonl``)."""
SFT_TRAIN_SIZE = 4000
"""Conversations in the shipped training file (about 1 MB of jsonl)."""
SFT_HELDOUT_SIZE = 500
"""Conversations in the shipped held-out file (prompt keys never in the training file)."""


class ExampleTooLong(ValueError):
    """A conversation's tokens do not fit in ``max_length`` (the builders drop these and count them)."""


class BuiltDataset(NamedTuple):
    """What a dataset builder returns: the tokenized rows and how many examples were dropped as too long."""

    dataset: Dataset
    """Columns ``input_ids`` and ``completion_mask`` (lists of ints of equal length per row)."""
    num_dropped: int
    """Examples longer than ``max_length`` that were left out (never truncated)."""


# --- validation and tokenization ----------------------------------------------------------------------------


def validate_messages(messages, special_tokens: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming the problem unless ``messages`` is a well-formed chat conversation.

    Well-formed: a non-empty list of dicts with a known ``role`` (system, user, assistant) and non-empty
    string ``content``; a system message only first; then user and assistant alternating, starting with the
    user; at least one assistant turn (otherwise there is nothing to train on). Content may not contain a
    special token string from ``special_tokens`` (e.g. ``<|end|>``): the tokenizer would read it as a real end
    of turn.
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(f"messages must be a non-empty list of {{'role', 'content'}} dicts; "
                         f"got {messages!r}")
    specials = [s for s in special_tokens if s]
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"message {i} must be a dict with 'role' and 'content'; got {m!r}")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise ValueError(f"message {i} has unknown role {role!r}; expected one of {ROLES}")
        if not isinstance(content, str):
            raise ValueError(f"message {i} ({role}) content must be a string; got {type(content).__name__}")
        if not content.strip():
            raise ValueError(f"message {i} ({role}) is empty")
        for s in specials:
            if s in content:
                raise ValueError(f"message {i} ({role}) contains the special token {s!r} in its content")
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for j, m in enumerate(turns):
        i = j + len(messages) - len(turns)
        expected = "user" if j % 2 == 0 else "assistant"
        if m["role"] == "system":
            raise ValueError(f"roles out of order: message {i} is 'system', "
                             "but a system message may only come first")
        if m["role"] != expected:
            raise ValueError(f"roles out of order: message {i} is {m['role']!r} but {expected!r} was "
                             "expected (after an optional system message, user and assistant alternate, "
                             "starting with user)")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("the conversation has no assistant turn: there is nothing to train on")


def _render(tokenizer, messages, add_generation_prompt: bool = False) -> list[int]:
    ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=add_generation_prompt,
                                        tokenize=True, return_dict=False)
    return list(ids)


def _messages_of(example) -> list[dict]:
    """A conversation is a list of messages or a dict with a ``"messages"`` list (world.instruction_data)."""
    return example["messages"] if isinstance(example, dict) else example


def tokenize_conversation(tokenizer, messages, max_length: int | None = None) -> dict[str, list[int]]:
    """Render ``messages`` with the chat template; mark the assistant tokens.

    Args:
        tokenizer: a tokenizer with a chat template that has the prefix property (module docstring).
        messages: a conversation (validated by :func:`validate_messages`).
        max_length: raise :class:`ExampleTooLong` if the conversation has more tokens (``None``: no limit).

    Returns:
        ``{"input_ids": [...], "completion_mask": [...]}``, lists of the same length ``T``. The mask is 1 on
        each assistant turn's content and its ``<|end|>``, 0 elsewhere (system, user, the assistant header).
    """
    validate_messages(messages, tokenizer.all_special_tokens)
    input_ids = _render(tokenizer, messages)
    if max_length is not None and len(input_ids) > max_length:
        raise ExampleTooLong(f"the conversation has {len(input_ids)} tokens > max_length={max_length}")
    completion_mask = [0] * len(input_ids)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = _render(tokenizer, messages[:i], add_generation_prompt=True)  # ... <|assistant|>
        last = i == len(messages) - 1
        end = input_ids if last else _render(tokenizer, messages[: i + 1])  # ... reply <|end|>
        if input_ids[: len(start)] != start or input_ids[: len(end)] != end or len(end) <= len(start):
            raise ValueError("the chat template does not have the prefix property (rendering the "
                             f"conversation up to assistant turn {i} is not a prefix of the whole), so its "
                             "reply cannot be located in the tokens")
        completion_mask[len(start): len(end)] = [1] * (len(end) - len(start))
    return {"input_ids": input_ids, "completion_mask": completion_mask}


def token_roles(tokenizer, input_ids: list[int], completion_mask: list[int]) -> list[tuple[str, str]]:
    """Each token's text and its role in the loss, for showing which tokens are trained on.

    Roles: ``"prompt"`` (not a target: system and user turns, the assistant header, BOS), ``"response"`` (a
    target token of a reply) and ``"eos"`` (a target ``<|end|>``: the token that teaches the model to stop). A
    space is shown as ``␣``; special tokens keep their names.
    """
    if len(input_ids) != len(completion_mask):
        raise ValueError(f"input_ids and completion_mask must have the same length; got {len(input_ids)} and "
                         f"{len(completion_mask)}")
    out = []
    for tok_id, m in zip(input_ids, completion_mask):
        text = tokenizer.decode([tok_id]).replace(" ", "␣")
        role = "prompt" if not m else ("eos" if tok_id == tokenizer.eos_token_id else "response")
        out.append((text, role))
    return out


# --- datasets -----------------------------------------------------------------------------------------------


def build_sft_dataset(tokenizer, conversations, max_length: int) -> BuiltDataset:
    """Tokenize ``conversations`` into a ``datasets.Dataset``; drop and count those over ``max_length``.

    Args:
        conversations: lists of messages, or dicts with a ``"messages"`` key (``world.instruction_data``).
        max_length: the longest conversation kept, in tokens.

    Returns:
        :class:`BuiltDataset` ``(dataset, num_dropped)``; the dataset's columns are ``input_ids`` and
        ``completion_mask``, in the order of ``conversations``. A malformed conversation raises ``ValueError``
        (with its index); if every conversation is too long, that is an error too.
    """
    rows: dict[str, list] = {"input_ids": [], "completion_mask": []}
    dropped = 0
    for k, example in enumerate(conversations):
        try:
            row = tokenize_conversation(tokenizer, _messages_of(example), max_length)
        except ExampleTooLong:
            dropped += 1
            continue
        except ValueError as e:
            raise ValueError(f"conversation {k}: {e}") from e
        rows["input_ids"].append(row["input_ids"])
        rows["completion_mask"].append(row["completion_mask"])
    if not rows["input_ids"]:
        raise ValueError(f"no conversation to train on: all {dropped} are longer than max_length={max_length}"
                         if dropped else "conversations is empty")
    if dropped:
        log.warning("dropped %d of %d conversations longer than max_length=%d tokens",
                    dropped, dropped + len(rows["input_ids"]), max_length)
    return BuiltDataset(Dataset.from_dict(rows), dropped)


def instruction_dataset(tokenizer, n: int, split: str = "train", seed: int = 0, max_length: int = 160,
                        **kwargs) -> BuiltDataset:
    """``n`` conversations from ``world.instruction_data(n, seed, split, **kwargs)``, tokenized."""
    from .world import instruction_data

    return build_sft_dataset(tokenizer, instruction_data(n, seed, split, **kwargs), max_length)


def collate_sft(rows, pad_token_id: int) -> dict:
    """Pad rows on the right into a training batch.

    Args:
        rows: dicts with ``input_ids`` and ``completion_mask`` (lists or 1-D tensors of equal length), or a
            dict of such columns (what ``dataset[indices]`` returns).
        pad_token_id: the tokenizer's pad id (distinct from EOS).

    Returns:
        ``input_ids`` (B, T) long padded with ``pad_token_id``; ``attention_mask`` (B, T), 1 on real tokens;
        ``completion_mask`` (B, T), 0 on padding; ``num_items``: the number of target tokens (an int, the
        shared loop's contract). Right padding leaves every real token's position unchanged
        (``models.forward_logits`` counts positions from the attention mask), so padding never changes a
        row's loss.
    """
    if isinstance(rows, dict):
        rows = [dict(zip(rows, vals)) for vals in zip(*rows.values())]
    if not rows:
        raise ValueError("collate_sft got no rows")
    for i, r in enumerate(rows):
        if len(r["input_ids"]) != len(r["completion_mask"]) or len(r["input_ids"]) == 0:
            raise ValueError(f"row {i}: input_ids and completion_mask must be non-empty and of equal length; "
                             f"got {len(r['input_ids'])} and {len(r['completion_mask'])}")
    width = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        input_ids[i, :n] = torch.as_tensor(r["input_ids"], dtype=torch.long)
        attention_mask[i, :n] = 1
        completion_mask[i, :n] = torch.as_tensor(r["completion_mask"], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask,
            "num_items": int(completion_mask.sum())}


def pack_dataset(dataset: Dataset, max_length: int) -> Dataset:
    """Pack tokenized examples, in order, into rows of at most ``max_length`` tokens (greedy: start a new row
    when the next example would not fit). An example is never split.

    A packed row is one plain causal sequence: **examples attend across their boundaries and positions run
    on** through the row (we do not reset positions or build a block-diagonal attention mask). This is the
    same packing ``pretrain.pack_statements`` uses, and it works because every example starts with
    ``<|bos|>`` (the model learns that what follows a ``<|bos|>`` does not depend on what came before) and
    only assistant tokens are targets. The cost: an example's log-probs in a packed row are not exactly those
    it has alone (a test pins this), so evaluate on unpacked rows. The benefit: almost no padding, so more
    target tokens per step.

    Returns a ``Dataset`` with ``input_ids``, ``completion_mask`` (masks concatenated: the number of target
    tokens is unchanged) and ``num_examples`` per row.
    """
    rows: dict[str, list] = {"input_ids": [], "completion_mask": [], "num_examples": []}
    ids: list[int] = []
    mask: list[int] = []
    count = 0
    for k, ex in enumerate(dataset):
        if len(ex["input_ids"]) > max_length:
            raise ValueError(f"example {k} has {len(ex['input_ids'])} tokens > max_length={max_length}; "
                             "build the dataset with the same max_length to drop it")
        if count and len(ids) + len(ex["input_ids"]) > max_length:
            rows["input_ids"].append(ids)
            rows["completion_mask"].append(mask)
            rows["num_examples"].append(count)
            ids, mask, count = [], [], 0
        ids.extend(ex["input_ids"])
        mask.extend(ex["completion_mask"])
        count += 1
    if count:
        rows["input_ids"].append(ids)
        rows["completion_mask"].append(mask)
        rows["num_examples"].append(count)
    return Dataset.from_dict(rows)


# --- jsonl --------------------------------------------------------------------------------------------------


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write one JSON object per line, atomically (a temporary file renamed into place). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a data file is an ordinary one
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a jsonl file (blank lines skipped); ``ValueError`` names the line of a malformed record."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not valid JSON ({e.msg})") from e
    return out


def build_instruction_files(out_dir: str | Path | None = None, n_train: int = SFT_TRAIN_SIZE,
                            n_heldout: int = SFT_HELDOUT_SIZE, seed: int = 0) -> dict[str, Path]:
    """Write ``sft_train.jsonl`` and ``sft_heldout.jsonl`` from ``world.instruction_data``.

    The defaults write the shipped files in ``data/sft/`` (``rlhfbook-lab sft-data``). Regenerable: the same
    arguments write the same bytes. Each line is ``{"messages", "family", "prompt",
    "reference"}``; the held-out file's prompt keys never occur in the training file (the world splits by
    key). Returns ``{"train": path, "heldout": path}``.
    """
    from .world import instruction_data

    out_dir = Path(out_dir) if out_dir is not None else SFT_DATA_DIR
    return {
        "train": write_jsonl(out_dir / "sft_train.jsonl", instruction_data(n_train, seed, "train")),
        "heldout": write_jsonl(out_dir / "sft_heldout.jsonl", instruction_data(n_heldout, seed, "heldout")),
    }


def load_instruction_file(split: str = "train", data_dir: str | Path | None = None) -> list[dict]:
    """The shipped instruction data of ``split`` (``"train"`` or ``"heldout"``), read from ``data/sft/``.

    A missing file is a ``FileNotFoundError`` that names the command writing it.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")
    path = (Path(data_dir) if data_dir is not None else SFT_DATA_DIR) / f"sft_{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no instruction data at {path}; run `rlhfbook-lab sft-data` to write it")
    return read_jsonl(path)
