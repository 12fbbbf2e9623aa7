"""Judging a chat model on the world's problems with the gold judge: the measurement every chapter reuses.

For each problem we sample (or greedily decode) one reply and record three things per task family:

- ``eos_rate``: the reply ended with ``<|end|>`` within ``max_new_tokens`` (``Generation.finished``): did the
  model learn to stop?
- ``correct_rate``: the family's checker accepts the reply (``world.is_correct``);
- ``gold_score``: the mean true quality (``world.gold_score``; an empty reply gets ``EMPTY_RESPONSE_SCORE``).

Two more measurements chapter 4 introduces and later chapters reuse:

- :func:`sample_groups` / :func:`mixed_share`: sample ``k`` replies per prompt at temperature 1 and count the
  right ones. A prompt whose group is *mixed* (some right, some wrong) is one RL can learn from: a group that
  is all right or all wrong has zero advantage everywhere (GRPO, RLOO; chapters 6–7).
- :func:`elicitation_report`: does instruction tuning surface what pretraining taught? For each creature we
  compare the base model's *knowledge* of its facts (greedy completion of the plain statement, "The blorp eats
  ...") with the SFT model's *answers* to the questions about them, for creatures asked about in the SFT data
  and for the held-out ones that never are (``world.split_of``); and, to tell forgetting from not surfacing,
  the SFT model's answers when its reply is started for it with the creature's name.

And one every alignment chapter needs: :func:`sampled_kl`, how far a trained policy has moved from its
reference, KL(π‖π_ref) per reply, estimated on the policy's own samples (the x-axis of a reward–KL frontier).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhfbook_lab import world
from rlhfbook_lab.equations.kl import categorical_kl
from rlhfbook_lab.equations.logprobs import masked_sum, per_token_logprobs
from rlhfbook_lab.lm.forward import eval_mode, forward_logits
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.world.tasks import ATTRIBUTES, CREATURE_NAMES, CREATURE_QUESTIONS

__all__ = ["ChatEval", "ElicitationReport", "GroupSampling", "SampledKL", "creature_split", "elicitation_report",
           "evaluate_chat", "mixed_share", "sample_groups", "sampled_kl"]

METRICS = ("eos_rate", "correct_rate", "gold_score")


@dataclass
class ChatEval:
    """The result of :func:`evaluate_chat`."""

    by_family: dict[str, dict[str, float]]
    """``{family: {"n", "eos_rate", "correct_rate", "gold_score"}}``, families in first-seen order."""
    overall: dict[str, float]
    """The same keys over all problems."""
    rows: list[tuple[str, str, float]]
    """``(prompt, reply, gold score)`` for every problem, in input order."""
    correct: list[bool]
    """Whether each reply is correct (``world.is_correct``), in input order."""


def _summary(finished: list[bool], correct: list[bool], scores: list[float]) -> dict[str, float]:
    n = len(scores)
    return {"n": n, "eos_rate": sum(finished) / n, "correct_rate": sum(correct) / n,
            "gold_score": sum(scores) / n}


@torch.no_grad()
def evaluate_chat(model, tokenizer, problems: list[world.Problem], greedy: bool = True,
                  temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 48,
                  batch_size: int = 128, seed: int = 0) -> ChatEval:
    """Reply to each problem's prompt as a user message and judge the replies.

    Args:
        problems: world problems (e.g. ``world.heldout_prompts(n)``).
        greedy: argmax decoding; otherwise sample at ``temperature`` / ``top_p``.
        batch_size: prompts per ``generate`` call (bounds memory).
        seed: seeds torch's RNG once before the first batch, so sampled evaluations are reproducible.
    """
    if not problems:
        raise ValueError("problems is empty")
    torch.manual_seed(seed)
    finished: list[bool] = []
    replies: list[str] = []
    for i in range(0, len(problems), batch_size):
        chunk = problems[i:i + batch_size]
        gen = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, greedy=greedy)
        finished += gen.finished.tolist()
        replies += gen.texts
    correct = [world.is_correct(p, r) for p, r in zip(problems, replies)]
    scores = [world.gold_score(p, r, allow_empty=True) for p, r in zip(problems, replies)]
    by_family: dict[str, dict[str, float]] = {}
    for fam in dict.fromkeys(p.family for p in problems):
        idx = [i for i, p in enumerate(problems) if p.family == fam]
        by_family[fam] = _summary([finished[i] for i in idx], [correct[i] for i in idx],
                                  [scores[i] for i in idx])
    return ChatEval(by_family=by_family, overall=_summary(finished, correct, scores),
                    rows=[(p.prompt, r, s) for p, r, s in zip(problems, replies, scores)], correct=correct)


# --- groups of samples: the signal RL needs -----------------------------------------------------------------


@dataclass
class GroupSampling:
    """The result of :func:`sample_groups`: ``counts[i]`` of the ``k`` samples for problem ``i`` were correct."""

    counts: list[int]
    """Correct samples per problem, each in ``0 ... k``, in input order."""
    k: int
    """Samples per problem."""

    def _share(self, keep) -> float:
        return sum(1 for c in self.counts if keep(c)) / len(self.counts)

    @property
    def mixed_share(self) -> float:
        """Share of problems with ``0 < #correct < k``: the prompts a group-relative RL update learns from."""
        return self._share(lambda c: 0 < c < self.k)

    @property
    def all_correct_share(self) -> float:
        """Share of problems whose ``k`` samples are all correct (nothing left to learn there)."""
        return self._share(lambda c: c == self.k)

    @property
    def all_wrong_share(self) -> float:
        """Share of problems whose ``k`` samples are all wrong (no reward signal there)."""
        return self._share(lambda c: c == 0)

    @property
    def sample_accuracy(self) -> float:
        """Mean correctness of one sample (pass@1 at this temperature)."""
        return sum(self.counts) / (self.k * len(self.counts))


@torch.no_grad()
def sample_groups(model, tokenizer, problems: list[world.Problem], k: int = 8, temperature: float = 1.0,
                  top_p: float = 1.0, max_new_tokens: int = 48, batch_size: int = 256,
                  seed: int = 0) -> GroupSampling:
    """Sample ``k`` replies to each problem and count the correct ones (``world.is_correct``).

    Args:
        problems: world problems (e.g. ``world.heldout_prompts(n, families=("addition",))``).
        k: samples per problem (a *group*, as in GRPO).
        batch_size: sequences per ``generate`` call (a multiple of ``k`` is used).
        seed: seeds torch's RNG once before the first call: the same model and seed give the same counts.
    """
    if not problems:
        raise ValueError("problems is empty")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    torch.manual_seed(seed)
    per_call = max(1, batch_size // k)
    counts: list[int] = []
    for i in range(0, len(problems), per_call):
        chunk = problems[i:i + per_call]
        gen = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                       temperature=temperature, top_p=top_p, num_return_sequences=k)
        for j, p in enumerate(chunk):  # rows of a group are contiguous
            counts.append(sum(world.is_correct(p, t) for t in gen.texts[j * k:(j + 1) * k]))
    return GroupSampling(counts=counts, k=k)


def mixed_share(model, tokenizer, problems: list[world.Problem], k: int = 8, temperature: float = 1.0,
                seed: int = 0, **kwargs) -> float:
    """Share of ``problems`` whose ``k`` samples at ``temperature`` are neither all right nor all wrong.

    ``kwargs`` go to :func:`sample_groups`; see :class:`GroupSampling` for the other shares.
    """
    return sample_groups(model, tokenizer, problems, k=k, temperature=temperature, seed=seed,
                         **kwargs).mixed_share


# --- elicitation: does SFT surface what pretraining taught? -------------------------------------------------


def creature_split(split: str) -> list[str]:
    """The creatures whose questions are in the SFT data (``"train"``) or never are (``"heldout"``)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout'; got {split!r}")
    return [c for c in CREATURE_NAMES if world.split_of("creatures", c) == split]


@dataclass
class ElicitationReport:
    """The result of :func:`elicitation_report`. Rates are keyed by creature split (``"train"``, ``"heldout"``)."""

    creatures: dict[str, list[str]]
    """The creatures of each split."""
    base_knows: dict[str, float]
    """Share of the split's facts (creature × attribute) the base model completes correctly as a statement."""
    sft_answers: dict[str, float]
    """Share of the split's questions (creature × attribute × phrasing) the SFT model answers correctly."""
    elicited: dict[str, float]
    """Among the questions whose fact the base model knows, the share the SFT model answers correctly."""
    sft_prefilled: dict[str, float]
    """The share the SFT model gets right when its reply is *started for it* with the statement's subject
    (``"The blorp eats"``): does the SFT model still hold the fact once the creature is named?"""
    rows: list[dict]
    """One row per question: ``split``, ``creature``, ``attribute``, ``prompt``, ``base_completion`` (the
    statement the base model wrote), ``base_knows``, ``sft_reply``, ``sft_correct``, ``prefilled_reply`` (the
    subject and the SFT model's continuation), ``prefilled_correct``."""


@torch.no_grad()
def elicitation_report(base, sft_model, tokenizer, max_new_tokens: int = 32) -> ElicitationReport:
    """Base model's knowledge of every creature fact next to the SFT model's answers to every question.

    Knowledge: greedy completion of the fact's statement cut before its last word (``"The blorp eats"``), as
    ``pretrain.prefix_accuracy`` does, judged by ``world.is_correct``. Answers: greedy chat replies to each
    question in both phrasings (``CREATURE_QUESTIONS``). Prefilled: the same chat prompt followed by the start
    of the reply, the statement's subject, as if the SFT model had written it. Both models share
    ``tokenizer``.
    """
    attrs = tuple(ATTRIBUTES)
    facts = [(split, c, a) for split in ("train", "heldout") for c in creature_split(split) for a in attrs]
    prefixes = []
    for _, c, a in facts:
        full = world.statement("creatures", (c, a))
        prefixes.append(full[:full.rindex(" ")])
    gen = generate(base, tokenizer, prefixes, max_new_tokens=12, greedy=True, chat=False)
    knows, completions = {}, {}
    for (_, c, a), prefix, cont in zip(facts, prefixes, gen.texts):
        line = (prefix + cont).split("\n")[0]
        knows[(c, a)] = world.is_correct(world.make_problem("creatures", (c, a)), line)
        completions[(c, a)] = line
    questions = [(split, c, a, world.make_problem("creatures", (c, a), template=t))
                 for split, c, a in facts for t in range(len(CREATURE_QUESTIONS[a]))]
    gen = generate(sft_model, tokenizer, [q.prompt for *_, q in questions], max_new_tokens=max_new_tokens,
                   greedy=True)
    subject = {(c, a): prefix for (_, c, a), prefix in zip(facts, prefixes)}
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": q.prompt}], tokenize=False,
                                              add_generation_prompt=True) for *_, q in questions]
    bos = tokenizer.bos_token or ""
    prefilled = generate(sft_model, tokenizer,  # chat=False adds BOS itself; special tokens are read as such
                         [r[len(bos):] + subject[(c, a)] if r.startswith(bos) else r + subject[(c, a)]
                          for r, (_, c, a, _) in zip(rendered, questions)],
                         max_new_tokens=max_new_tokens, greedy=True, chat=False)
    rows = []
    for (split, c, a, q), reply, cont in zip(questions, gen.texts, prefilled.texts):
        filled = subject[(c, a)] + cont
        rows.append({"split": split, "creature": c, "attribute": a, "prompt": q.prompt,
                     "base_completion": completions[(c, a)], "base_knows": knows[(c, a)],
                     "sft_reply": reply, "sft_correct": world.is_correct(q, reply),
                     "prefilled_reply": filled, "prefilled_correct": world.is_correct(q, filled)})

    def rate(split, key, given=None):
        sel = [r for r in rows if r["split"] == split and (given is None or r[given])]
        return sum(r[key] for r in sel) / len(sel) if sel else float("nan")

    splits = ("train", "heldout")
    return ElicitationReport(
        creatures={s: creature_split(s) for s in splits},
        base_knows={s: rate(s, "base_knows") for s in splits},
        sft_answers={s: rate(s, "sft_correct") for s in splits},
        elicited={s: rate(s, "sft_correct", given="base_knows") for s in splits},
        sft_prefilled={s: rate(s, "prefilled_correct") for s in splits},
        rows=rows,
    )


# --- how far a policy moved: KL to its reference ------------------------------------------------------------


@dataclass
class SampledKL:
    """The result of :func:`sampled_kl`: KL(π‖π_ref) per reply, in nats, two ways."""

    kl: float
    """Mean over samples of Σ_t KL(π(·|x, y_<t) ‖ π_ref(·|x, y_<t)): the exact per-token KL over the whole
    vocabulary, summed along the sampled reply. Unbiased for the sequence KL and never negative."""
    kl_k1: float
    """Mean over samples of Σ_t (log π(y_t|…) − log π_ref(y_t|…)) = log π(y|x) − log π_ref(y|x): the plain
    Monte-Carlo (k1) estimate of the same quantity; unbiased, noisier, and can come out negative."""
    stderr: float
    """Standard error of ``kl`` over the samples."""
    mean_length: float
    """Mean reply length in tokens (EOS included)."""
    n: int
    """Number of sampled replies."""


@torch.no_grad()
def sampled_kl(policy, ref_model, tokenizer, problems: list[world.Problem], num_samples: int = 1,
               max_new_tokens: int = 48, batch_size: int = 128, seed: int = 0) -> SampledKL:
    """KL(π‖π_ref) between two chat models on a set of prompts, per reply, from the policy's samples.

    .. math::  \\mathrm{KL}(\\pi\\,\\|\\,\\pi_{ref})(x) = \\mathbb{E}_{y\\sim\\pi(\\cdot|x)}
               \\sum_t \\mathrm{KL}\\big(\\pi(\\cdot|x,y_{<t})\\,\\|\\,\\pi_{ref}(\\cdot|x,y_{<t})\\big)

    (the chain rule of KL). Replies are sampled from ``policy`` at temperature 1 (the policy *itself*, as the
    objective of RLHF and DPO has it), ``num_samples`` per prompt, and both models score them in one forward
    pass each. The sampled completion mask counts the EOS token, so a policy that learns to stop differently
    pays for it.
    """
    if not problems:
        raise ValueError("problems is empty")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    torch.manual_seed(seed)
    exact, k1, lengths = [], [], []
    prompts = [p.prompt for p in problems]
    with eval_mode(policy), eval_mode(ref_model):
        for i in range(0, len(prompts), batch_size):
            gen = generate(policy, tokenizer, prompts[i:i + batch_size], max_new_tokens=max_new_tokens,
                           num_return_sequences=num_samples)
            logits = forward_logits(policy, gen.input_ids, gen.attention_mask).float()  # (B, T, V)
            ref_logits = forward_logits(ref_model, gen.input_ids, gen.attention_mask).float()
            mask = gen.completion_mask.float()  # (B, T); the prediction of token t is at t − 1
            per_token = F.pad(categorical_kl(logits[:, :-1], ref_logits[:, :-1]), (1, 0))  # (B, T)
            exact.append(masked_sum(per_token, mask, dim=1))
            k1.append(masked_sum(per_token_logprobs(logits, gen.input_ids)
                                 - per_token_logprobs(ref_logits, gen.input_ids), mask, dim=1))
            lengths.append(mask.sum(1))
    exact_t, k1_t = torch.cat(exact), torch.cat(k1)
    n = exact_t.numel()
    stderr = float(exact_t.std() / n ** 0.5) if n > 1 else float("nan")
    return SampledKL(kl=float(exact_t.mean()), kl_k1=float(k1_t.mean()), stderr=stderr,
                     mean_length=float(torch.cat(lengths).mean()), n=n)
