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
    "{% if tools %}{{ '<|system|>Tools: ' }}{% for tool in tools %}"
    "{% set fn = tool['function'] if tool['function'] is defined else tool %}"
    "{{ fn['name'] + '(' + (fn['parameters']['properties'] | list | join(', ')) + ')' }}"
    "{% if fn['description'] %}{{ ' ' + fn['description'] }}{% endif %}{% if not loop.last %}{{ ' ' }}{% endif %}"
    "{% endfor %}{{ '<|end|>' }}{% endif %}"
    "{% set ns = namespace(in_reply=false, waiting=false) %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "{% if not ns.waiting %}{{ raise_exception('a tool message without a tool call before it') }}{% endif %}"
    "{% if ']' in message['content'] %}{{ raise_exception('a tool result may not contain ]') }}{% endif %}"
    "{{ ' ' + message['content'] + ']' }}"
    "{% set ns.waiting = false %}"
    "{% elif ns.waiting %}{{ raise_exception('a tool call without a tool message after it') }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if not ns.in_reply %}{{ '<|assistant|>' }}{% endif %}"
    "{% if message['content'] %}{{ message['content'] }}{% endif %}"
    "{% if message['tool_calls'] %}"
    "{% if message['tool_calls'] | length > 1 %}"
    "{{ raise_exception('at most one tool call per assistant message') }}{% endif %}"
    "{% set fn = message['tool_calls'][0]['function'] %}"
    "{% set args = fn['arguments'] %}"
    "{{ '[' + fn['name'] + '(' + (args['expression'] if args is mapping else args) + ') ->' }}"
    "{% set ns.in_reply = true %}{% set ns.waiting = true %}"
    "{% else %}{{ '<|end|>' }}{% set ns.in_reply = false %}{% endif %}"
    "{% elif ns.in_reply %}{{ raise_exception('a reply with tool calls must end with an assistant message') }}"
    "{% elif message['role'] not in ['system', 'user'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}"
    "{% else %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt and not ns.in_reply %}{{ '<|assistant|>' }}{% endif %}"
)
"""The chat template. Without ``tools`` and tool messages it renders exactly the one-line format above. With
them it follows the Hugging Face conventions (``tokenizer.apply_chat_template(messages, tools=[calculator])``):

- ``tools`` (JSON schemas, or Python functions that ``transformers`` turns into them) become one system turn,
  ``<|system|>Tools: calculator(expression) Evaluate ...<|end|>``, before the messages;
- an ``assistant`` message with ``tool_calls`` (one per message) and the ``tool`` message with its result render
  *inside one assistant turn* as the plain-text call format of ``world.tool_use``:
  ``<|assistant|>[calculator(123+456) -> 579] The answer is 579.<|end|>``. A result may not contain ``]``, as
  in ``tool_use.render_reply`` (the sampler's ``tool_use.result_text`` shows one as ``)``). A conversation may
  end on a ``tool`` message: the reply goes on from the result, and ``add_generation_prompt`` adds nothing (the
  model is still in its turn).

So the text the model reads is the same whether a conversation is written as Hugging Face messages or with the
calls inline (``tool_use.render_reply`` / ``parse_reply``), and no new special token is needed."""


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
