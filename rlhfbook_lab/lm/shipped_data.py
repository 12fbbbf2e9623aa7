"""The data sets that ship in ``data/``, how each is built (deterministically from a seed) and loaded:

- the instruction data, ``data/sft/sft_{train,heldout}.jsonl`` (``rlhfbook-lab sft-data``): the world's chat
  conversations, split by prompt key;
- the preference pairs, ``data/preferences/{train,heldout}.jsonl`` (``rlhfbook-lab pref-data``): on-policy pairs
  sampled from ``sft-tiny`` and off-policy styled pairs, labelled by the gold annotator, split by prompt. The pair
  builders it uses are in ``preference_data``; the file format and its checks in ``data``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from rlhfbook_lab import world
from rlhfbook_lab.lm.data import data_folder, read_jsonl, read_pairs, write_jsonl, write_pairs
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import DEFAULT_STYLES, PreferencePairs, off_policy_pairs, on_policy_pairs
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.world import instruction_data

__all__ = [
    "PREF_DATA_DIR",
    "PREF_GENERATE_PROMPTS",
    "PREF_GENERATION",
    "PREF_NUM_SAMPLES",
    "PREF_PAIRS_PER_PROMPT",
    "PREF_PROMPTS",
    "SFT_DATA_DIR",
    "SFT_HELDOUT_SIZE",
    "SFT_TRAIN_SIZE",
    "build_instruction_files",
    "build_preference_files",
    "build_preference_split",
    "load_instruction_file",
    "load_preference_file",
    "preference_prompts",
]

PREF_DATA_DIR = DATA_DIR / "preferences"
"""Where the shipped preference data lives (``train.jsonl``, ``heldout.jsonl``, ``meta.json``)."""


PREF_PROMPTS = {"train": {"on_policy": 1000, "off_policy": 500}, "heldout": {"on_policy": 250, "off_policy": 125}}
"""Prompts per split and origin in the shipped files (each prompt gives up to :data:`PREF_PAIRS_PER_PROMPT`
pairs)."""


PREF_NUM_SAMPLES = 4
"""On-policy replies sampled per prompt from the policy (C(4, 2) = 6 possible pairs)."""


PREF_PAIRS_PER_PROMPT = {"on_policy": 4, "off_policy": 4}
"""Distinct pairs drawn per prompt: 4 of the 6 on-policy pairs; 4 of the C(9, 2) = 36 off-policy source pairs."""


PREF_GENERATION = {"temperature": 1.0, "max_new_tokens": 96}
"""How replies are sampled (long enough that almost every reply ends with its ``<|end|>``; the longest
instruction-data reply is 89 characters)."""


PREF_GENERATE_PROMPTS = 32
"""Prompts per ``generate`` call for the off-policy models' replies (a build of fewer prompts is a prefix of a
bigger one only in whole calls: the sampler's random stream depends on the batch)."""


_SPLIT_SEED = {"train": 0, "heldout": 1}


def preference_prompts(n: int, split: str = "train", seed: int = 0, origin: str = "on_policy") -> list[world.Problem]:
    """``n`` world problems of ``split`` for the shipped data, the four families in turn, phrasings at random.

    ``origin`` (``"on_policy"`` / ``"off_policy"``) picks an independent stream, so the two parts of the data
    set ask different questions (prompt keys can still repeat: the world has few review keys)."""
    if split not in _SPLIT_SEED:
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")
    rng = random.Random(f"pref-prompts-{origin}-{split}-{seed}")
    return [world.sample_problem(world.FAMILIES[i % len(world.FAMILIES)], rng, split) for i in range(n)]


def _sample_replies(model, tokenizer, problems: list[world.Problem], seed: int) -> list[str]:
    """One reply per problem (:data:`PREF_GENERATION`), :data:`PREF_GENERATE_PROMPTS` prompts per call."""

    torch.manual_seed(seed)
    texts: list[str] = []
    for i in range(0, len(problems), PREF_GENERATE_PROMPTS):
        chunk = problems[i:i + PREF_GENERATE_PROMPTS]
        texts += generate(model, tokenizer, [p.prompt for p in chunk], **PREF_GENERATION).texts
    return texts


def build_preference_split(policy, base, tokenizer, split: str, n_on_policy: int, n_off_policy: int,
                           seed: int = 0, policy_name: str = "sft-tiny",
                           base_name: str = "base-tiny") -> PreferencePairs:
    """The pairs of one split of the shipped data: on-policy pairs, then off-policy pairs, labelled by ``gold``.

    - on-policy: :data:`PREF_NUM_SAMPLES` samples per prompt from ``policy`` (:data:`PREF_GENERATION`),
      :data:`PREF_PAIRS_PER_PROMPT` pairs of them per prompt (:func:`on_policy_pairs`);
    - off-policy: per prompt one sample from ``policy``, one from ``base`` and the world's
      :data:`DEFAULT_STYLES` (:func:`off_policy_pairs`), :data:`PREF_PAIRS_PER_PROMPT` pairs of sources.

    Rows get ``origin`` and their sources named after the models (``policy_name``, ``base_name``); ``p_chosen``
    is rounded to 6 decimals (the file's precision). Counts are the builders', prefixed ``on_policy/`` and
    ``off_policy/``. Deterministic given the models and ``seed``.
    """
    sub = 2 * seed + _SPLIT_SEED[split]
    counts: dict[str, int] = {}
    rows: list[dict] = []
    if n_on_policy:
        on = on_policy_pairs(policy, tokenizer, preference_prompts(n_on_policy, split, seed, "on_policy"),
                             num_samples=PREF_NUM_SAMPLES, pairs_per_prompt=PREF_PAIRS_PER_PROMPT["on_policy"],
                             seed=sub, batch_size=16 * PREF_NUM_SAMPLES, **PREF_GENERATION)
        rows += [{**r, "chosen_source": policy_name, "rejected_source": policy_name, "origin": "on_policy"}
                 for r in on.rows]
        counts.update({f"on_policy/{k}": v for k, v in on.counts.items()})
    if n_off_policy:
        problems = preference_prompts(n_off_policy, split, seed, "off_policy")
        replies = {policy_name: _sample_replies(policy, tokenizer, problems, 1000 + sub),
                   base_name: _sample_replies(base, tokenizer, problems, 2000 + sub)}
        off = off_policy_pairs(problems, replies, pairs_per_prompt=PREF_PAIRS_PER_PROMPT["off_policy"], seed=sub)
        rows += [{**r, "origin": "off_policy"} for r in off.rows]
        counts.update({f"off_policy/{k}": v for k, v in off.counts.items()})
    for r in rows:
        r["p_chosen"] = round(r["p_chosen"], 6)
    return PreferencePairs(rows, counts)


def build_preference_files(out_dir: str | Path | None = None, seed: int = 0, n_prompts: dict | None = None,
                           policy: str | Path = "sft-tiny", base: str | Path = "base-tiny") -> dict:
    """Write ``train.jsonl``, ``heldout.jsonl`` and ``meta.json`` (the recipe and every count).

    The defaults write the shipped files in ``data/preferences/`` (``rlhfbook-lab pref-data``): the prompts of
    :data:`PREF_PROMPTS`, replies from the shipped ``sft-tiny`` (the policy) and ``base-tiny``, sampled on CPU.
    Split by prompt key: held-out pairs ask only held-out questions (``world.split_of``), which the policy was
    never fine-tuned on either. Regenerable: the same arguments write the same rows (on CPU, with the same
    ``torch``), and a build with fewer prompts writes a prefix of each origin's rows when its counts are
    multiples of 16 (on-policy) and :data:`PREF_GENERATE_PROMPTS` (off-policy).

    Args:
        n_prompts: ``{split: {"on_policy": n, "off_policy": m}}`` (default :data:`PREF_PROMPTS`).
        policy, base: checkpoint names or folders.

    Returns:
        ``{"train": path, "heldout": path, "meta": path, "counts": {split: counts}}``.
    """
    n_prompts = n_prompts or PREF_PROMPTS
    if set(n_prompts) != set(_SPLIT_SEED):
        raise ValueError(f"n_prompts must have the keys 'train' and 'heldout'; got {sorted(n_prompts)}")
    out_dir = data_folder(out_dir if out_dir is not None else PREF_DATA_DIR, "for train.jsonl and heldout.jsonl")
    policy_model, tokenizer = load_model(policy, device="cpu")
    base_model, base_tok = load_model(base, device="cpu")
    if base_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"{policy} and {base} have different tokenizers")
    names = {"policy_name": Path(str(policy)).name, "base_name": Path(str(base)).name}
    out: dict = {"counts": {}}
    for split in ("train", "heldout"):
        n = n_prompts[split]
        built = build_preference_split(policy_model, base_model, tokenizer, split, n.get("on_policy", 0),
                                       n.get("off_policy", 0), seed, **names)
        if not built.rows:
            raise ValueError(f"no {split} pairs built; n_prompts[{split!r}] = {n}")
        out[split] = write_pairs(out_dir / f"{split}.jsonl", built.rows)
        out["counts"][split] = built.counts
    meta = {"seed": seed, "policy": str(policy), "base": str(base), "annotator": "gold", "n_prompts": n_prompts,
            "num_samples": PREF_NUM_SAMPLES, "pairs_per_prompt": PREF_PAIRS_PER_PROMPT,
            "generation": PREF_GENERATION, "styles": list(DEFAULT_STYLES), "torch": torch.__version__,
            "counts": out["counts"]}
    out["meta"] = out_dir / "meta.json"
    out["meta"].write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_preference_file(split: str = "train", data_dir: str | Path | None = None,
                         origin: str | None = None) -> list[dict]:
    """The shipped preference pairs of ``split`` (``"train"`` or ``"heldout"``), read from ``data/preferences/``
    and validated (:func:`read_pairs`). ``origin="on_policy"`` / ``"off_policy"`` keeps only that part.

    A missing file is a ``FileNotFoundError`` that names the command writing it.
    """
    if split not in _SPLIT_SEED:
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")
    if origin not in (None, "on_policy", "off_policy"):
        raise ValueError(f"origin must be None, 'on_policy' or 'off_policy'; got {origin!r}")
    path = data_folder(data_dir if data_dir is not None else PREF_DATA_DIR, "holding train.jsonl and heldout.jsonl") \
        / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no preference data at {path}; run `rlhfbook-lab pref-data` to write it")
    rows = read_pairs(path)
    return rows if origin is None else [r for r in rows if r.get("origin") == origin]


SFT_DATA_DIR = DATA_DIR / "sft"
"""Where the shipped instruction data lives (``sft_train.jsonl``, ``sft_heldout.jsonl``)."""


SFT_TRAIN_SIZE = 4000
"""Conversations in the shipped training file (about 1 MB of jsonl)."""


SFT_HELDOUT_SIZE = 500
"""Conversations in the shipped held-out file (prompt keys never in the training file)."""


def build_instruction_files(out_dir: str | Path | None = None, n_train: int = SFT_TRAIN_SIZE,
                            n_heldout: int = SFT_HELDOUT_SIZE, seed: int = 0) -> dict[str, Path]:
    """Write ``sft_train.jsonl`` and ``sft_heldout.jsonl`` from ``world.instruction_data``.

    The defaults write the shipped files in ``data/sft/`` (``rlhfbook-lab sft-data``). Regenerable: the same
    arguments write the same bytes. Each line is ``{"messages", "family", "prompt",
    "reference"}``; the held-out file's prompt keys never occur in the training file (the world splits by
    key). Returns ``{"train": path, "heldout": path}``.
    """
    out_dir = data_folder(out_dir if out_dir is not None else SFT_DATA_DIR, "for sft_train.jsonl and sft_heldout.jsonl")
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
    path = data_folder(data_dir if data_dir is not None else SFT_DATA_DIR, "holding the instruction data") / \
        f"sft_{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no instruction data at {path}; run `rlhfbook-lab sft-data` to write it")
    return read_jsonl(path)
