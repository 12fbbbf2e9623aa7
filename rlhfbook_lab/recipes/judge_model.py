"""A generative pairwise judge (RLHF Book ch. 12, LLM-as-a-judge): the tiny chat model fine-tuned to read a question
and two replies and write ``"A"`` or ``"B"`` (the task: ``world.pairwise``).

**Training** (:func:`train_judge`): supervised fine-tuning (``trainers.sft``) from ``sft-tiny`` on the judge task's
conversations built from the shipped gold-labelled preference pairs (``data/preferences/train.jsonl``), the chosen
reply shown as A or B by a fair coin. Only the verdict and its ``<|end|>`` are targets. The shipped ``judge-tiny`` is
:data:`JUDGE_COMMAND`'s output.

**Reading a verdict** (:func:`model_judge`): one forward pass over the judge prompt (the chat template with a
generation prompt) and a comparison of two logits at the last position,

.. math::  \\text{verdict}(x, a, b) = \\text{A if } z_A > z_B \\text{, else B},
           \\qquad z = \\text{the logits of the reply's first token},

i.e. greedy decoding restricted to the two legal answers: the judge never says anything else, and never needs to be
parsed. A prompt longer than the model's context is refused (``ValueError`` naming the pair), never truncated.

The judge is measured like every judge of lesson 12 (``synthetic_data.judge_biases``): agreement with gold labels
beside the Bayes ceiling, position bias (it reads both replies at once, so unlike a reward model it *can* be swayed
by their order), verbosity and piled politeness.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int
from rlhfbook_lab.lm.forward import eval_mode
from rlhfbook_lab.lm.models import load_model, save_model
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.recipes.synthetic_data import Judge, judge_biases
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.sft import SFTConfig, sft

__all__ = ["JUDGE_COMMAND", "JudgeConfig", "arena_judge", "model_judge", "train_judge", "write_judge"]

JUDGE_COMMAND = "OMP_NUM_THREADS=1 rlhfbook-lab judge --out data/checkpoints/judge-tiny"
"""The command that makes the shipped ``judge-tiny`` (the defaults of :class:`JudgeConfig`)."""


@dataclass
class JudgeConfig:
    """How ``judge-tiny`` is trained (the defaults are the shipped recipe). Chosen once (2026-12-03, held-out
    pairs): 300 steps of 16 at lr 1e-3 from ``sft-tiny`` agree with gold labels on 68 % of pairs (ceiling 92 %)."""

    sft: SFTConfig = field(default_factory=lambda: SFTConfig(
        train=TrainConfig(steps=300, lr=1e-3, warmup_steps=20, bf16=False), max_length=256, batch_size=16))
    """The supervised fine-tuning (``trainers.sft``): steps, lr, batch; conversations over ``max_length`` tokens are
    dropped and counted, never truncated."""
    start: str = "sft-tiny"
    """The chat model the judge is fine-tuned from (a shipped name or a folder)."""
    seed: int = 0
    """Seeds the coin that puts each pair's chosen reply in slot A or B (``world.judge_conversations``)."""


def train_judge(cfg: JudgeConfig | None = None, rows: list[dict] | None = None, progress: bool = False):
    """Fine-tune ``cfg.start`` on the judge task (module docstring); return ``(model, tokenizer, history)``.
    ``rows``: labelled preference pairs (default: the shipped ``train`` split, every origin)."""
    cfg = cfg or JudgeConfig()
    check_int("seed", cfg.seed, minimum=0)
    rows = load_preference_file("train") if rows is None else rows
    model, tok = load_model(cfg.start)
    history = sft(model, tok, world.judge_conversations(rows, seed=cfg.seed), cfg.sft, progress=progress)
    return model.eval(), tok, history


def _verdict_ids(tokenizer) -> tuple[int, int]:
    ids = tuple(tokenizer.convert_tokens_to_ids(v) for v in world.VERDICTS)
    if any(not isinstance(i, int) or i == tokenizer.unk_token_id for i in ids):
        raise ValueError(f"tokenizer has no single token for each verdict {world.VERDICTS}; got {ids}")
    return ids


def model_judge(model, tokenizer, batch_size: int = 64, prompt=None) -> Judge:
    """A chat model read as a pairwise judge (``synthetic_data.Judge``): for each (problem, a, b), ``"A"`` when the
    logit of ``"A"`` beats that of ``"B"`` at the first reply position of ``world.judge_prompt(question, a, b)``
    (module docstring), else ``"B"``. Rows are left-padded in batches of ``batch_size``.

    Raises ``ValueError`` for lists of unequal length, and for a pair whose prompt is longer than the model's context
    (``model.config.max_position_embeddings``), naming the pair: it is refused, not truncated. The judge's attribute
    ``fits(problem, a, b) -> bool`` says beforehand whether a pair is readable (``synthetic_data.judge_biases`` uses
    it to measure on the readable pairs and count the rest). ``prompt(question, a, b) -> str``: the judge's user
    message (default ``world.judge_prompt``; ``recipes.constitutional`` passes a principle's)."""
    check_int("batch_size", batch_size, minimum=1)
    prompt = world.judge_prompt if prompt is None else prompt
    a_id, b_id = _verdict_ids(tokenizer)
    limit = model.config.max_position_embeddings

    rendered: dict[str, list[int]] = {}  # judge prompt → its tokens (fits() and the judge ask for the same ones)

    def prompt_ids(problem, a: str, b: str) -> list[int]:
        text = prompt(problem.prompt if isinstance(problem, world.Problem) else problem, a, b)
        if text not in rendered:  # rendered, then tokenized as apply_chat_template(tokenize=True) does; verbose=False:
            # a prompt over the context is refused by the caller, so the tokenizer's own warning would only confuse
            chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                 tokenize=False)
            rendered[text] = tokenizer(chat, add_special_tokens=False, verbose=False)["input_ids"]
        return rendered[text]

    @torch.no_grad()
    def judge(problems, a, b):
        if not (len(problems) == len(a) == len(b)) or not problems:
            raise ValueError(f"problems, a and b must be non-empty lists of one length; got {len(problems)}, "
                             f"{len(a)}, {len(b)}")
        rows = []
        for i, (p, x, y) in enumerate(zip(problems, a, b)):
            ids = prompt_ids(p, x, y)
            if len(ids) > limit:
                raise ValueError(f"pair {i}: the judge prompt is {len(ids)} tokens, over the model's context of "
                                 f"{limit}; refused rather than truncated")
            rows.append(ids)
        device = next(model.parameters()).device
        verdicts = []
        with eval_mode(model):
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                T = max(len(r) for r in chunk)
                ids = torch.full((len(chunk), T), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros(len(chunk), T, dtype=torch.long)
                for j, r in enumerate(chunk):  # left padding: every row's last position is its prompt's end
                    ids[j, T - len(r):], mask[j, T - len(r):] = torch.tensor(r), 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, -1]  # (b, V)
                verdicts += ["A" if za > zb else "B" for za, zb in zip(logits[:, a_id].tolist(),
                                                                        logits[:, b_id].tolist())]
        return verdicts

    judge.fits = lambda problem, a, b: len(prompt_ids(problem, a, b)) <= limit  # what the judge can read
    return judge


def arena_judge(judge: Judge, problems, players: dict[str, list[str]]):
    """A pairwise judge (``judge(problems, a, b) -> ["A" | "B"]``, e.g. :func:`model_judge`) in the arena's form
    (``recipes.evaluation``: ``judge(k, first, second, rng) -> 1.0 | 0.5 | 0.0``, does the first-shown player's reply
    to problem ``k`` win?). Every ordered pair of different players on every problem is asked once, up front, in one
    batched call; a battle then looks its verdict up. An empty reply loses to any other (two empty replies tie)."""
    names = list(players)
    if len(names) < 2 or any(len(players[n]) != len(problems) for n in names):
        raise ValueError(f"players must map at least two names to one reply per problem ({len(problems)}); got "
                         f"{ {n: len(r) for n, r in players.items()} }")
    asks = [(k, x, y) for k in range(len(problems)) for x in names for y in names
            if x != y and players[x][k].strip() and players[y][k].strip()]
    verdicts = judge([problems[k] for k, _, _ in asks], [players[x][k] for k, x, _ in asks],
                     [players[y][k] for k, _, y in asks]) if asks else []
    table = {ask: float(v == "A") for ask, v in zip(asks, verdicts)}

    def battle(k: int, first: str, second: str, rng) -> float:
        if (k, first, second) in table:
            return table[k, first, second]
        return 0.5 * (bool(players[first][k].strip()) + (not players[second][k].strip()))

    return battle


def write_judge(out, cfg: JudgeConfig | None = None, overwrite: bool = False, progress: bool = False) -> dict:
    """Train the judge (:func:`train_judge`), measure it on the held-out pairs (``judge_biases``) and save it to
    ``out`` in float16 with ``judge_report.json`` (the config, the training CPU seconds and the measurement).
    Returns the report."""
    cfg = cfg or JudgeConfig()
    t0 = time.process_time()
    model, tok, history = train_judge(cfg, progress=progress)
    cpu = time.process_time() - t0
    model = model.half().float()  # measured as it will load: float16 weights read back as float32
    report = {"config": asdict(cfg), "train_cpu_seconds": round(cpu, 1),
              "final_loss": round(history["losses/train"][-1], 4),
              "dropped": history["data/num_dropped"][0],
              "heldout": judge_biases(model_judge(model, tok), load_preference_file("heldout"), seed=0)}
    save_model(model, tok, out, overwrite=overwrite, save_dtype=torch.float16,
               extra_files={"judge_report.json": json.dumps(report, indent=2) + "\n"})
    return report
