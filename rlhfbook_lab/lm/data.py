"""Chat data for every trainer: validation, tokenization with a completion mask, collation (SFT rows and
preference pairs stacked chosen-over-rejected), packing, jsonl files.

Why one module (~600 lines): the SFT rows, the pair rows and the reward model's rows are the same rendered
conversations with the same completion mask and the same right-padding collator; kept together, the three
cannot drift apart.

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

The shipped files (``data/sft``, ``data/preferences``) are built and loaded by ``shipped_data``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NamedTuple

import torch

from rlhfbook_lab.world import instruction_data

if TYPE_CHECKING:  # the annotation only; the import itself is deferred to the one builder that needs it
    from datasets import Dataset

__all__ = [
    "PAIR_COLUMNS",
    "REF_PAIR_COLUMNS",
    "REQUIRED_FIELDS",
    "ROLES",
    "build_sft_dataset",
    "BuiltDataset",
    "collate_pairs",
    "collate_sft",
    "conversation",
    "data_folder",
    "ExampleTooLong",
    "fingerprint",
    "instruction_dataset",
    "pack_dataset",
    "pack_statements",
    "read_jsonl",
    "read_pairs",
    "rows_of",
    "stack_ref_logps",
    "target_mask",
    "token_roles",
    "tokenize_conversation",
    "tokenize_pairs",
    "TokenizedPairs",
    "validate_messages",
    "validate_pairs",
    "write_jsonl",
    "write_pairs",
]

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")


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
    from datasets import Dataset  # deferred: 0.6 s at import; the chat page and the lessons' data helpers never need it

    return BuiltDataset(Dataset.from_dict(rows), dropped)


def instruction_dataset(tokenizer, n: int, split: str = "train", seed: int = 0, max_length: int = 160,
                        **kwargs) -> BuiltDataset:
    """``n`` conversations from ``world.instruction_data(n, seed, split, **kwargs)``, tokenized."""

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
    from datasets import Dataset  # deferred: see build_sft_dataset

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


def data_folder(path: str | Path, what: str) -> Path:
    """``path`` as a folder to read from or write into: ``NotADirectoryError`` naming ``what`` when it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; expected a folder ({what})")
    return path


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a jsonl file of records (one JSON object per line; blank lines skipped). A missing path, a folder, an
    empty file, a line that is not JSON or not an object: a clear error naming the file (and the line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected a jsonl file")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a jsonl file")
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {n}: not valid JSON ({e.msg})") from e
                if not isinstance(record, dict):
                    raise ValueError(f"{path}, line {n}: expected a JSON object, got {type(record).__name__}")
                out.append(record)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); expected a jsonl file") from e
    if not out:
        raise ValueError(f"{path} is empty; expected one JSON record per line")
    return out


REQUIRED_FIELDS = ("prompt", "chosen", "rejected")


class TokenizedPairs(NamedTuple):
    """What :func:`tokenize_pairs` returns."""

    rows: list[dict]
    """``chosen_input_ids``, ``chosen_completion_mask``, ``rejected_input_ids``, ``rejected_completion_mask``
    (lists of ints), ``label`` (float) and ``index`` (the pair's position in the input)."""
    counts: dict[str, int]
    """``too_long`` (a side over ``max_length``, dropped), ``identical_tokens`` (both sides the same ids after
    tokenization and any truncation, or the same text to begin with; dropped), ``kept``."""


def _check_probability(row: dict, i: int, name: str) -> None:
    if name not in row:
        return
    v = row[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"pair {i}: {name!r} must be a number in [0, 1]; got {v!r}")
    if math.isnan(v):
        raise ValueError(f"pair {i}: {name!r} is NaN; expected a probability in [0, 1]")
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"pair {i}: {name!r} must lie in [0, 1]; got {v}")


def validate_pairs(rows, allow_identical: bool = False) -> None:
    """Raise ``ValueError`` naming the pair's index and the field unless ``rows`` is a usable list of pairs.

    Each pair must be a dict with string ``prompt``, ``chosen`` and ``rejected``, non-empty, and ``chosen``
    different from ``rejected`` (an identical pair has zero gradient and a meaningless label; with
    ``allow_identical=True`` it passes, for a caller that drops and counts it, as :func:`tokenize_pairs` does).
    ``p_chosen`` and ``label``, when present, must be numbers in [0, 1] (not NaN).
    """
    if not isinstance(rows, (list, tuple)):
        raise ValueError(f"pairs must be a list of dicts; got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"pair {i} must be a dict with 'prompt', 'chosen' and 'rejected'; got {row!r}")
        for name in REQUIRED_FIELDS:
            if name not in row:
                raise ValueError(f"pair {i} is missing the field {name!r} (a pair needs {REQUIRED_FIELDS})")
            if not isinstance(row[name], str):
                raise ValueError(f"pair {i}: {name!r} must be a string; got {type(row[name]).__name__}")
            if not row[name].strip():
                raise ValueError(f"pair {i}: {name!r} is empty")
        if row["chosen"] == row["rejected"] and not allow_identical:
            raise ValueError(f"pair {i}: 'chosen' is identical to 'rejected' (such a pair carries zero gradient; "
                             "the builders drop and count them)")
        _check_probability(row, i, "p_chosen")
        _check_probability(row, i, "label")


def write_pairs(path: str | Path, rows: list[dict]) -> Path:
    """Validate ``rows`` and write them as jsonl (``data.write_jsonl``: atomic). Returns the path."""
    validate_pairs(rows)
    return write_jsonl(path, rows)


def read_pairs(path: str | Path) -> list[dict]:
    """Read a jsonl file of pairs (``data.read_jsonl``) and validate them; ``ValueError`` names a bad pair."""
    rows = read_jsonl(path)
    try:
        validate_pairs(rows)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return rows


PAIR_COLUMNS = ("chosen_input_ids", "chosen_completion_mask", "rejected_input_ids", "rejected_completion_mask")
"""The token columns of a tokenized pair (:func:`tokenize_pairs`), what :func:`collate_pairs` stacks."""


REF_PAIR_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
"""Optional per-pair floats a DPO trainer precomputes (``dpo_trainer.compute_ref_logps``); carried by
:func:`collate_pairs` when every row has them."""


def conversation(prompt: str, reply: str) -> list[dict]:
    """A single-turn chat: the user's ``prompt`` and the assistant's ``reply``."""
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]


def tokenize_pairs(rows: list[dict], tokenizer, max_length: int | None = None,
                   truncation: bool = False) -> TokenizedPairs:
    """Render each side of each pair as a chat conversation (``data.tokenize_conversation``); drop and count
    pairs that do not fit or that tokenize identically.

    Each side's ``completion_mask`` marks the reply and its ``<|end|>``; the prompt tokens are the same on both
    sides. Other keys of a pair are ignored (``label`` is kept, ties included: the reward model trains on them;
    ``dpo_trainer.train_dpo`` refuses them). Drops are counted, and logged as a warning.

    Args:
        rows: pairs (validated by :func:`validate_pairs`; a pair whose chosen and rejected texts are the same is
            counted in ``identical_tokens``, not refused).
        max_length: the longest conversation (prompt + reply) in tokens; ``None``: no limit.
        truncation: ``False`` (the package's rule): a pair with a side over ``max_length`` is dropped
            (``too_long``). ``True``: each side is cut to its first ``max_length`` tokens, what a truncating
            pipeline trains on; pairs that differ only past the cut become identical and are dropped
            (``identical_tokens``). The reward head then reads a cut-off reply, not its ``<|end|>``.

    Returns:
        :class:`TokenizedPairs`; it may hold no rows (the trainers refuse that, naming the counts).
    """
    validate_pairs(rows, allow_identical=True)
    if truncation and max_length is None:
        raise ValueError("truncation=True needs a max_length")
    out, counts = [], {"too_long": 0, "identical_tokens": 0, "kept": 0}
    limit = None if truncation else max_length
    for i, row in enumerate(rows):
        sides = {}
        try:
            for side in ("chosen", "rejected"):
                sides[side] = tokenize_conversation(tokenizer, conversation(row["prompt"], row[side]), limit)
        except ExampleTooLong:
            counts["too_long"] += 1
            continue
        except ValueError as e:
            raise ValueError(f"pair {i}: {e}") from e
        if truncation:
            sides = {s: {k: v[:max_length] for k, v in t.items()} for s, t in sides.items()}
        if sides["chosen"]["input_ids"] == sides["rejected"]["input_ids"]:
            counts["identical_tokens"] += 1
            continue
        out.append({"chosen_input_ids": sides["chosen"]["input_ids"],
                    "chosen_completion_mask": sides["chosen"]["completion_mask"],
                    "rejected_input_ids": sides["rejected"]["input_ids"],
                    "rejected_completion_mask": sides["rejected"]["completion_mask"],
                    "label": float(row.get("label", 1.0)), "index": i})
    counts["kept"] = len(out)
    if counts["too_long"] or counts["identical_tokens"]:
        log.warning("dropped %d of %d pairs: %d longer than max_length=%s tokens, %d with chosen == rejected tokens",
                    len(rows) - len(out), len(rows), counts["too_long"], max_length, counts["identical_tokens"])
    return TokenizedPairs(out, counts)


def rows_of(rows, what: str) -> list[dict]:
    """A non-empty list of row dicts, from a list or a dict of equal-length columns (what ``dataset[i:j]``
    returns). Shared with ``dpo_trainer.collate_kto``."""
    if isinstance(rows, dict):
        lengths = {name: len(col) for name, col in rows.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{what}: the columns have different lengths {lengths}: every chosen needs its "
                             "rejected (mismatched chosen/rejected counts)")
        rows = [dict(zip(rows, vals)) for vals in zip(*rows.values())]
    rows = list(rows)
    if not rows:
        raise ValueError(f"{what} got no rows")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ValueError(f"{what}: row {i} must be a dict of token columns; got {type(r).__name__}")
    return rows


def stack_ref_logps(rows: list[dict], names: tuple[str, ...], batch: dict) -> None:
    """Put precomputed reference log-probs into ``batch`` as (B,) float32 tensors, if the rows carry them (all
    rows or none). Shared with ``dpo_trainer.collate_kto``."""
    has = [all(name in r for name in names) for r in rows]
    if not any(has):
        return
    if not all(has):
        missing = [i for i, h in enumerate(has) if not h]
        raise ValueError(f"reference log-probs missing in row(s) {missing} of a batch whose other rows have them; "
                         f"expected {list(names)} in every row (dpo_trainer.compute_ref_logps)")
    for name in names:
        batch[name] = torch.tensor([float(r[name]) for r in rows], dtype=torch.float32)


def _as_list(x) -> list:
    return x.tolist() if torch.is_tensor(x) else list(x)


def collate_pairs(rows, pad_token_id: int) -> dict:
    """Stack a batch of pairs as (2B, T): rows 0..B−1 the chosen sides, rows B..2B−1 the rejected ones.

    Args:
        rows: either B tokenized pairs (:func:`tokenize_pairs`'s rows, as a list or as a dict of columns;
            other keys are ignored), or 2B sequence rows (``input_ids``, ``completion_mask``) already stacked
            chosen first — then their count must be even, so that row b and row B + b are one pair.
        pad_token_id: the tokenizer's pad id.

    Returns:
        ``input_ids``, ``attention_mask``, ``completion_mask`` (2B, T), right-padded (``data.collate_sft``);
        ``labels`` (B,) float32 (1 = chosen preferred, 0.5 = a tie: the collator passes ties on, each trainer
        decides); ``num_items`` = B, the number of pairs (the shared loop's items); ``ref_chosen_logps``,
        ``ref_rejected_logps`` (B,) float32 when the rows carry them (:data:`REF_PAIR_COLUMNS`). ``ValueError``
        for mismatched chosen/rejected counts, a missing column, or a pair whose two sides are the same tokens.
    """
    rows = rows_of(rows, "collate_pairs")
    if "chosen_input_ids" in rows[0]:
        for i, r in enumerate(rows):
            for name in PAIR_COLUMNS:
                if name not in r:
                    raise ValueError(f"pair {i} is missing {name!r} (tokenize the pairs with tokenize_pairs)")
            if _as_list(r["chosen_input_ids"]) == _as_list(r["rejected_input_ids"]):
                raise ValueError(f"pair {i}: chosen is identical to rejected; the pair carries no preference "
                                 "(tokenize_pairs drops such pairs)")
        seqs = [{"input_ids": r[f"{side}_input_ids"], "completion_mask": r[f"{side}_completion_mask"]}
                for side in ("chosen", "rejected") for r in rows]
        labels = torch.tensor([float(r.get("label", 1.0)) for r in rows], dtype=torch.float32)
    else:
        if len(rows) % 2:
            raise ValueError(f"got {len(rows)} sequence rows: a stacked pair batch needs an even count "
                             "(B chosen rows, then the B rejected rows in the same order)")
        seqs = rows
        labels = torch.ones(len(rows) // 2, dtype=torch.float32)
    batch = collate_sft(seqs, pad_token_id)
    batch["labels"] = labels
    batch["num_items"] = len(seqs) // 2
    stack_ref_logps(rows, REF_PAIR_COLUMNS, batch)
    return batch


def pack_statements(tokenizer, statements: list[str], block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack statements into (N, block_size) rows of ``<|bos|> s1\\n s2\\n ...``; returns (input_ids, attention_mask).

    Raises ``ValueError`` if a single statement does not fit in a row (never a silent truncation).
    """
    encoded = tokenizer([s + "\n" for s in statements], add_special_tokens=False)["input_ids"]
    rows, row = [], [tokenizer.bos_token_id]
    for ids in encoded:
        if 1 + len(ids) > block_size:
            raise ValueError(f"a statement of {len(ids)} tokens does not fit in block_size={block_size}")
        if len(row) + len(ids) > block_size:
            rows.append(row)
            row = [tokenizer.bos_token_id]
        row += ids
    rows.append(row)
    input_ids = torch.full((len(rows), block_size), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), block_size), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r)] = torch.tensor(r)
        attention_mask[i, : len(r)] = 1
    return input_ids, attention_mask


def target_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Which tokens are predicted: every real token except the first of its row. Shape (B, T)."""
    m = attention_mask.clone()
    m[:, 0] = 0
    return m


def fingerprint(rows: list[dict]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
