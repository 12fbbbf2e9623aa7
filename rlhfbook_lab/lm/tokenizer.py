"""The world's tokenizer: character-level (byte-level BPE with zero merges), a chat template, distinct pad and EOS.

Why characters? A byte-level BPE at vocab 512–1024 splits digits inconsistently (" 48" → ``Ġ4``, ``8`` but
"23" → ``2``, ``3``), turns two-digit sums into a lookup table, and cuts a word and its reversal into unrelated
pieces (DESIGN.md's feasibility run). With one token per character, addition and spelling are learnable by a
model of a few million parameters. It is still a normal ``tokenizer.json`` that ``transformers`` loads.

Chat format (one line, no newlines)::

    <|bos|><|user|>What is 2 + 3?<|end|><|assistant|>2 + 3 = 5.<|end|>

``<|end|>`` is the EOS token and ends every turn, so a model that learns to emit it after its reply has learned
to stop. ``<|pad|>`` is a different token: padding is never mistaken for an end of turn. The prompt rendered with
``add_generation_prompt=True`` is an exact prefix of the full conversation.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.world import instruction_data, pretraining_corpus

BOS, EOS, PAD = "<|bos|>", "<|end|>", "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def train_tokenizer(texts) -> PreTrainedTokenizerFast:
    """Train the character-level tokenizer on ``texts`` (an iterable of strings).

    The BPE trainer is given a vocabulary of exactly the 256 byte symbols plus the special tokens, so it learns
    **zero merges**: every byte is one token, whatever the corpus. Training still goes through the
    ``tokenizers`` library so the result is a standard ``tokenizer.json``.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + len(SPECIAL_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="right",
        model_max_length=256,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def load_tokenizer(path: str | Path | None = None) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained`` (default: the shipped ``data/tokenizer``)."""
    path = Path(path) if path is not None else DATA_DIR / "tokenizer"
    if not (path / "tokenizer.json").exists():
        raise FileNotFoundError(f"no tokenizer.json in {path}; run `rlhfbook-lab tokenizer` to build it")
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def build_and_save(out: str | Path | None = None, seed: int = 0) -> PreTrainedTokenizerFast:
    """Regenerate the shipped tokenizer from the world corpus (``rlhfbook-lab tokenizer``)."""
    out = Path(out) if out is not None else DATA_DIR / "tokenizer"
    if out.exists() and not out.is_dir():  # before the work, not after
        raise NotADirectoryError(f"{out} is a file; expected a folder for the tokenizer")
    texts = pretraining_corpus(20_000, seed) + [m["content"] for ex in instruction_data(2_000, seed)
                                                for m in ex["messages"]]
    tok = train_tokenizer(texts)
    tok.save_pretrained(str(out))
    return tok
