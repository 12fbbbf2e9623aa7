"""Outcome and process reward models, and best-of-n with each (lesson 05 §9; book ch. 5 and 7).

The task is ``world.thinking``'s ``sum3`` with the step written out (``17 + 25 = 42. 42 + 38 = 80.``): two steps,
each checkable by the world (``thinking.step_labels``). The study:

1. a **policy** that writes the steps and is right about 70 % of the time at temperature 1: a short SFT from
   ``sft-tiny`` with every reply in the step form (``recipes.thinking.train_sum3_writer``, 100 steps);
2. **training data** for the verifiers: its samples on training-split problems, labelled by the world's checker —
   the outcome (``thinking.is_correct``) for the ORM, each step (``thinking.step_labels``) for the PRM;
3. **verifiers** (``trainers.verifier``), each a ``TokenRewardModel`` head on a frozen copy of the policy (Cobbe et
   al. 2021 start the verifier from the generator): an **ORM** (``reward_losses.orm_loss``, the outcome at every
   reply token) and a **PRM** (``process_rewards.prm_loss``, each step at its full stop), whose head reads the
   hidden state and the policy's own per-token log-probability (its *surprise*); and the same two reading the
   hidden state alone (``orm_hidden``, ``prm_hidden``);
4. **best-of-n** on held-out problems: a pool of samples per problem, and for n in :data:`NS` the exact expected
   accuracy of the reply picked from n of them (``scaling.best_of_k``) by each of :data:`SELECTORS` — the shipped
   Bradley-Terry ``rm-tiny`` (taste only), the verifiers, the policy's least confident token (no labels at all),
   and the gold checker (pass@n).

What we tried first (one seed each, 100 held-out problems × 16 samples; within-problem AUC, see
:func:`within_problem_auc`): heads on the hidden state alone, the whole model fine-tuned (lr 3e-4 or 1e-3, 200-600
steps of 32, ``sft-tiny`` or the policy as backbone, natural samples or minimal pairs of one step changed) never
beat the base rate of their loss, AUC 0.45-0.57; a Bradley-Terry reward model on 4,800 such minimal pairs reached
0.70 training accuracy after 150 steps and 0.53 AUC; with the surprise inputs but the whole model fine-tuned at
3e-4, the head's weights on them barely moved in 200 steps (AUC 0.52). A frozen backbone whose head also reads the
surprise learns in about 25 CPU-s (AUC 0.96-0.97). At this scale the check lives in the policy's next-token
predictions, not in a direction of its hidden state.

:func:`process_reward_study` runs it all; :data:`STUDY_COMMAND` wrote the shipped
``data/reasoning/process_rewards.json`` that lesson 05 plots without training.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from rlhfbook_lab.checks import check_choice, check_int, check_number
from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.equations.scaling import best_of_k
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.reward_model import load_reward_model, score_replies
from rlhfbook_lab.lm.token_reward_model import TokenRewardModel, collate_steps, token_reward_scores, tokenize_steps
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.recipes.thinking import train_sum3_writer
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.verifier import VerifierConfig, train_verifier
from rlhfbook_lab.world import thinking

__all__ = ["NS", "SELECTORS", "SHIPPED_STUDY", "STUDY_COMMAND", "ProcessRewardConfig", "best_of_n_table",
           "load_process_reward_study", "process_reward_study", "within_problem_auc", "sample_labelled"]

SHIPPED_STUDY = DATA_DIR / "reasoning" / "process_rewards.json"
"""The shipped result of :func:`process_reward_study` (lesson 05 §9)."""
STUDY_COMMAND = ("OMP_NUM_THREADS=1 python -m rlhfbook_lab.recipes.process_rewards "
                 "--out data/reasoning/process_rewards.json")
"""The command that wrote :data:`SHIPPED_STUDY` (one thread)."""
NS = (1, 2, 4, 8, 16)
"""Best-of-n budgets reported."""
SELECTORS = ("bt_rm", "orm", "prm_min", "prm_product", "orm_hidden", "prm_hidden", "confidence", "gold")
"""Who picks the reply: the Bradley-Terry ``rm-tiny``; the ORM; the PRM (min or product of its steps); the ORM and
PRM (min) whose head reads the hidden state alone; the policy's own least confident token (no labels); the checker."""


@dataclass
class ProcessRewardConfig:
    """The study's sizes (:func:`process_reward_study`)."""

    writer_steps: int = 100
    """SFT steps of the policy from ``sft-tiny`` (batch 16, every reply in the step form): about 70 % right at T = 1,
    so that a pool has wrong replies to avoid (300 steps: 97 %)."""
    train_problems: int = 1000
    """Training-split problems whose samples label the verifiers' data."""
    train_samples: int = 4
    """Policy samples per training problem (temperature 1)."""
    verifier_steps: int = 200
    """Optimizer steps of each verifier's head (the backbone is frozen)."""
    batch_size: int = 32
    """Labelled replies per verifier step."""
    lr: float = 1e-2
    """Verifiers' peak learning rate (a head alone)."""
    eval_problems: int = 200
    """Held-out problems for best-of-n."""
    pool: int = 32
    """Samples per held-out problem; best-of-n for n <= pool is computed exactly over this pool."""
    backbone: str = "policy"
    """Under each verifier's head: ``"policy"`` (a copy of the trained writer, as Cobbe et al. start their verifier
    from the generator) or a shipped checkpoint name."""
    seed: int = 0
    """Seeds the writer, the samplers and the verifiers."""

    def __post_init__(self):
        for name in ("writer_steps", "train_problems", "train_samples", "verifier_steps", "batch_size",
                     "eval_problems"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("pool", self.pool, minimum=max(NS))
        check_int("seed", self.seed, minimum=0)
        check_number("lr", self.lr, minimum=0, strict=True)
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ValueError(f"backbone must be a checkpoint name or 'policy'; got {self.backbone!r}")


@torch.no_grad()
def sample_labelled(model, tokenizer, problems, samples: int, seed: int = 0, batch_size: int = 256,
                    max_new_tokens: int = 32) -> list[dict]:
    """``samples`` replies per problem at temperature 1, each labelled by the world: ``prompt``, ``reply``,
    ``problem`` (index into ``problems``), ``correct`` (the checker), ``form``, ``step_ends`` and ``step_labels``
    (``thinking.step_ends`` / ``thinking.step_labels``). Rows of one problem are contiguous."""
    check_int("samples", samples, minimum=1)
    torch.manual_seed(seed)
    per_call = max(1, batch_size // samples)
    rows = []
    for i in range(0, len(problems), per_call):
        chunk = problems[i:i + per_call]
        gen = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                       num_return_sequences=samples)
        for j, text in enumerate(gen.texts):
            p = chunk[j // samples]
            rows.append({"prompt": p.prompt, "reply": text, "problem": i + j // samples,
                         "correct": thinking.is_correct(p, text), "form": thinking.reply_form(text),
                         "step_ends": thinking.step_ends(text), "step_labels": thinking.step_labels(p, text)})
    return rows


def within_problem_auc(scores, correct) -> float:
    """How often a selector ranks a right reply above a wrong one *of the same problem* (ties count ½): over every
    (right, wrong) pair of replies in one problem's pool, the share it orders right — the area under the ROC curve
    restricted to the comparisons best-of-n makes. ``nan`` if no problem has both. Shapes: (P, N), (P, N)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"scores and correct must both have shape (P, N); got {s.shape} and {y.shape}")
    diff = s[:, :, None] - s[:, None, :]  # (P, N, N): reply i against reply j of the same problem
    pairs = y[:, :, None] & ~y[:, None, :]  # i right, j wrong
    if not pairs.any():
        return float("nan")
    return float(((diff > 0) + 0.5 * (diff == 0))[pairs].mean())


def best_of_n_table(scores: dict[str, np.ndarray], correct: np.ndarray, ns=NS) -> dict[str, dict[str, list]]:
    """Best-of-n accuracy per selector: for each n, the mean over problems of the exact expected correctness of
    the reply the selector picks from n samples of the pool (``scaling.best_of_k``, ties broken at random), and
    its standard error over problems (std / √P).

    Args:
        scores: selector name → Shape (P, N) scores of the pool's replies.
        correct: Shape (P, N), 1 for a right reply.
    """
    correct = np.asarray(correct, dtype=np.float64)
    out = {}
    for name, s in scores.items():
        per_problem = best_of_k(s, correct, ks=list(ns), reduction="none")  # (P, len(ns))
        se = per_problem.std(axis=0, ddof=1) / np.sqrt(per_problem.shape[0])
        out[name] = {"mean": [round(float(v), 4) for v in per_problem.mean(axis=0)],
                     "se": [round(float(v), 4) for v in se]}
    return out


VERIFIERS = {"orm": ("orm", True), "prm": ("prm", True), "orm_hidden": ("orm", False), "prm_hidden": ("prm", False)}
"""The verifiers the study trains: name → (kind, whether the head also reads the backbone's surprise)."""


def _verifier(name: str, rows: list[dict], cfg: ProcessRewardConfig, policy, tokenizer, progress: bool):
    """A fresh verifier :data:`VERIFIERS` ``[name]`` on ``cfg.backbone`` trained on ``rows``; (model, history)."""
    check_choice("name", name, tuple(VERIFIERS))
    kind, surprise = VERIFIERS[name]
    start = policy if cfg.backbone == "policy" else load_model(cfg.backbone)[0]
    model = TokenRewardModel.from_causal_lm(start, copy=True, seed=cfg.seed, surprise=surprise)
    vcfg = VerifierConfig(kind=kind, batch_size=cfg.batch_size,
                          train=TrainConfig(steps=cfg.verifier_steps, lr=cfg.lr, warmup_steps=10, bf16=False,
                                            log_every=10**6, seed=cfg.seed))
    history = train_verifier(model, tokenizer, rows, vcfg, progress=progress)
    return model, history


@torch.no_grad()
def min_reply_logprob(model, tokenizer, prompts: list[str], replies: list[str], batch_size: int = 128) -> np.ndarray:
    """The lowest log-probability ``model`` gives any token of each reply (its least confident token), min_t ℓ_t.
    With the policy that sampled the replies, a selector that uses no label at all. Shape (N,)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        rows = [tokenize_steps(tokenizer, p, r, [])
                for p, r in zip(prompts[i:i + batch_size], replies[i:i + batch_size])]
        batch = collate_steps(rows, tokenizer.pad_token_id)
        logps = per_token_logprobs(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                   batch["input_ids"])  # (B, T)
        out.append(logps.masked_fill(~batch["completion_mask"].bool(), 0.0).min(dim=1).values.numpy())
    return np.concatenate(out)


def _score_pool(pool: list[dict], verifiers: dict, policy, tokenizer, shape) -> dict[str, np.ndarray]:
    """Every selector's score of every pooled reply, each Shape ``shape`` (P, N)."""
    prompts, replies, ends = [r["prompt"] for r in pool], [r["reply"] for r in pool], [r["step_ends"] for r in pool]
    rm, rm_tok = load_reward_model("rm-tiny")
    scores = {"bt_rm": score_replies(rm, rm_tok, prompts, replies)}
    for name, model in verifiers.items():
        both = token_reward_scores(model, tokenizer, prompts, replies, ends)
        if name.startswith("orm"):
            scores[name] = both["orm"]
        elif name == "prm":
            scores.update({"prm_min": both["prm_min"], "prm_product": both["prm_product"]})
        else:
            scores[name] = both["prm_min"]
    scores["confidence"] = min_reply_logprob(policy, tokenizer, prompts, replies)
    scores = {k: np.asarray(v, dtype=np.float64).reshape(shape) for k, v in scores.items()}
    scores["gold"] = np.array([r["correct"] for r in pool], dtype=np.float64).reshape(shape)
    return scores


def _data_summary(rows: list[dict]) -> dict:
    """The share of right replies, of step-form replies, and of step-form replies by their first wrong step."""
    labelled = [r["step_labels"] for r in rows if r["form"] == "step"]
    return {"replies": len(rows), "correct": round(float(np.mean([r["correct"] for r in rows])), 4),
            "step_form": round(len(labelled) / len(rows), 4),
            "step1_wrong": round(sum(not lab[0] for lab in labelled) / max(1, len(labelled)), 4),
            "step2_wrong_after_right_step1": round(sum(lab[0] and not lab[1] for lab in labelled)
                                                   / max(1, len(labelled)), 4)}


def process_reward_study(cfg: ProcessRewardConfig | None = None, out: str | Path | None = None,
                         progress: bool = False) -> dict:
    """Run the whole study (module docstring); return (and write to ``out`` as JSON) ``{"command", "config", "ns",
    "train_data", "heldout", "verifiers", "auc", "best_of_n", "cpu_seconds"}``: ``best_of_n[selector]`` holds
    ``mean`` and ``se`` per n of ``ns``; ``auc[selector]`` its :func:`within_problem_auc` on the pool; ``verifiers``
    each one's training loss and accuracy (mean of the last 20 steps)."""
    cfg = ProcessRewardConfig() if cfg is None else cfg
    t0, cpu = time.process_time(), {}
    policy, tokenizer, _ = train_sum3_writer(steps=cfg.writer_steps, step_share=1.0, seed=cfg.seed)
    cpu["writer"] = time.process_time() - t0
    t = time.process_time()
    train_rows = sample_labelled(policy, tokenizer, thinking.sample_problems(cfg.train_problems, "train",
                                                                             seed=100 + cfg.seed),
                                 cfg.train_samples, seed=cfg.seed)
    pool = sample_labelled(policy, tokenizer, thinking.sample_problems(cfg.eval_problems, "heldout", seed=cfg.seed),
                           cfg.pool, seed=1 + cfg.seed)
    cpu["sampling"] = time.process_time() - t
    verifiers, histories = {}, {}
    for name in VERIFIERS:
        t = time.process_time()
        verifiers[name], histories[name] = _verifier(name, train_rows, cfg, policy, tokenizer, progress)
        cpu[name] = time.process_time() - t
    t = time.process_time()
    scores = _score_pool(pool, verifiers, policy, tokenizer, (cfg.eval_problems, cfg.pool))
    cpu["scoring"] = time.process_time() - t
    correct = scores["gold"]
    result = {
        "command": STUDY_COMMAND, "config": asdict(cfg), "ns": list(NS),
        "train_data": _data_summary(train_rows),
        "heldout": {"problems": cfg.eval_problems, "pool": cfg.pool, **_data_summary(pool)},
        "verifiers": {k: {"loss_last20": round(float(np.mean(h["losses/train"][-20:])), 4),
                          "accuracy_last20": round(float(np.mean(h["verifier/accuracy"][-20:])), 4)}
                      for k, h in histories.items()},
        "auc": {k: round(within_problem_auc(v, correct), 4) for k, v in scores.items() if k != "gold"},
        "best_of_n": best_of_n_table(scores, correct),
        "examples": [{k: r[k] for k in ("prompt", "reply", "correct", "step_labels")} for r in pool[:cfg.pool:4]],
    }
    cpu["total"] = time.process_time() - t0
    result["cpu_seconds"] = {k: round(v, 1) for k, v in cpu.items()}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def load_process_reward_study(path: str | Path | None = None) -> dict:
    """A result :func:`process_reward_study` wrote (default: the shipped :data:`SHIPPED_STUDY`)."""
    return json.loads(Path(SHIPPED_STUDY if path is None else path).read_text())


def main(argv=None) -> dict:
    """``python -m rlhfbook_lab.recipes.process_rewards --out FILE``: run the study at full size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="write the result here as JSON")
    parser.add_argument("--backbone", default="policy", help="verifiers' start: 'policy' or a checkpoint name")
    args = parser.parse_args(argv)
    result = process_reward_study(ProcessRewardConfig(backbone=args.backbone), out=args.out, progress=True)
    print(json.dumps(result["best_of_n"], indent=1))
    print(f"CPU seconds: {result['cpu_seconds']}")
    return result


if __name__ == "__main__":
    main()
