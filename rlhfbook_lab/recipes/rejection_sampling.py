"""Rejection-sampling fine-tuning (RLHF Book ch. 9): sample a pool of replies per prompt from the current model,
keep the best by a scorer, fine-tune on them with plain SFT (``trainers.sft.sft``), repeat. Llama 2's rejection
sampling (a reward model picks), expert iteration and STaR (a verifier picks) are this loop with another scorer.

Two selection rules, each with a **random control of the same budget** (the same rule with random scores, so
the only difference from the selected arm is *which* replies are kept):

- ``top_per_prompt``: the best of the n replies to each prompt (P examples per round);
- ``top_k_overall``: the ``budget`` best replies of the whole pool, wherever they come from (several replies to
  an easy prompt, none to a hard one).

Each round reports the pool's gold score and correctness, the selected replies', and the model's greedy gold
score and correctness on held-out prompts (``evaluate_chat``), so a run shows what each round really achieved.

    cfg = RSConfig(rule="top_k_overall", selector="gold")
    result = rejection_sampling(*load_model("sft-tiny"), cfg)
    result.history["heldout/gold"]                 # one value per round, round 0 = before training
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_choice, check_int, check_number
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.pool_scoring import Scorer, gold_scorer, score_pool, verifier_scorer
from rlhfbook_lab.lm.sample_pool import sample_pool
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.sft import SFTConfig, sft

__all__ = ["RULES", "SELECTORS", "RSConfig", "RSResult", "rejection_sampling", "select_examples"]

RULES = ("top_per_prompt", "top_k_overall")
"""The selection rules."""
SELECTORS = ("gold", "verifier", "random", "custom")
"""Who ranks the pool: the gold judge, the verifier (correctness 0/1), random scores (the control), or the
``scorer`` passed to :func:`rejection_sampling` (e.g. ``pool_scoring.reward_model_scorer``)."""


@dataclass
class RSConfig:
    """Rejection-sampling fine-tuning settings (the defaults are full mode; the lesson's fast mode shrinks them)."""

    rounds: int = 3
    """Rounds of sample → select → fine-tune, each from the model the previous round left."""
    prompts_per_round: int = 96
    """Fresh training prompts sampled each round (train split)."""
    n: int = 8
    """Replies sampled per prompt (the pool is prompts_per_round × n)."""
    rule: str = "top_per_prompt"
    """``"top_per_prompt"`` or ``"top_k_overall"`` (:data:`RULES`)."""
    budget: int = 0
    """Replies kept per round for ``top_k_overall``; 0 means ``prompts_per_round`` (the budget of one per
    prompt, so the two rules train on equally many examples)."""
    selector: str = "gold"
    """:data:`SELECTORS`; ``"random"`` is the control."""
    temperature: float = 1.0
    """Sampling temperature of the pool."""
    max_new_tokens: int = 32
    """Reply budget of the pool's samples, in tokens."""
    families: tuple[str, ...] = world.FAMILIES
    """Task families of the training and held-out prompts."""
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(
        train=TrainConfig(steps=24, lr=3e-4, warmup_steps=0, min_lr_ratio=1.0, log_every=1000, bf16=False),
        batch_size=16))
    """The fine-tuning of each round (``trainers.sft``): a few steps at a small constant lr from the current
    model."""
    eval_prompts: int = 200
    """Held-out prompts the model answers greedily after each round (``world.heldout_prompts``)."""
    seed: int = 0
    """Seeds the prompts, the pools and the random control."""


def _check(cfg: RSConfig) -> int:
    check_int("rounds", cfg.rounds, 1)
    check_int("prompts_per_round", cfg.prompts_per_round, 1)
    check_int("n", cfg.n, 1)
    check_choice("rule", cfg.rule, RULES)
    check_choice("selector", cfg.selector, SELECTORS)
    check_number("temperature", cfg.temperature, 0.0, strict=True)
    check_int("eval_prompts", cfg.eval_prompts, 1)
    budget = check_int("budget", cfg.budget, 0) or cfg.prompts_per_round
    if cfg.rule == "top_k_overall" and budget > cfg.prompts_per_round * cfg.n:
        raise ValueError(f"budget must be <= prompts_per_round × n = {cfg.prompts_per_round * cfg.n} (the pool); "
                         f"got {budget}")
    return budget


def select_examples(scores, rule: str, budget: int, usable=None, seed: int = 0) -> list[tuple[int, int]]:
    """The (problem, reply) positions a rule keeps from a scored pool; ties are broken at random.

    Args:
        scores: the selector's scores. Shape: (P, n).
        rule: ``"top_per_prompt"`` (the best reply of each problem with a usable one) or ``"top_k_overall"`` (the
            ``budget`` best usable replies of the pool).
        usable: (P, n) bool, replies that may be kept (an empty reply cannot be trained on); default all.
    """
    check_choice("rule", rule, RULES)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or not np.all(np.isfinite(s)):
        raise ValueError(f"scores must be a finite (P, n) array; got shape {s.shape}")
    ok = np.ones(s.shape, bool) if usable is None else np.asarray(usable, bool)
    if ok.shape != s.shape:
        raise ValueError(f"usable must have the scores' shape {s.shape}; got {ok.shape}")
    tiebreak = np.random.default_rng(seed).random(s.shape)
    if rule == "top_per_prompt":
        keyed = np.where(ok, s, -np.inf)
        out = []
        for i in range(s.shape[0]):
            if ok[i].any():
                top = np.flatnonzero(keyed[i] == keyed[i].max())
                out.append((i, int(top[np.argmax(tiebreak[i, top])])))
        return out
    check_int("budget", budget, 1)
    flat = np.flatnonzero(ok.reshape(-1))
    order = flat[np.lexsort((-tiebreak.reshape(-1)[flat], -s.reshape(-1)[flat]))][:budget]
    return [(int(j) // s.shape[1], int(j) % s.shape[1]) for j in order]


@dataclass
class RSResult:
    """What :func:`rejection_sampling` returns."""

    history: dict[str, list]
    """Per round (index 0 = before any training; pool and selected entries start at round 1, so they hold one
    fewer value): ``round``, ``heldout/gold``, ``heldout/correct``, ``pool/gold``, ``pool/correct``,
    ``selected/gold``, ``selected/correct``, ``selected/count``, ``selected/distinct_prompts``, ``sft/loss``."""
    heldout_gold: np.ndarray
    """(rounds + 1, eval_prompts): each held-out prompt's greedy gold score after each round (pairs arms)."""
    heldout_correct: np.ndarray
    """(rounds + 1, eval_prompts): the same, correctness."""
    examples: list[list[dict]] = field(default_factory=list)
    """The conversations each round trained on."""


def _train_problems(cfg: RSConfig, round_index: int) -> list[world.Problem]:
    rng = random.Random(f"rs-{cfg.seed}-{round_index}")
    return [world.sample_problem(cfg.families[i % len(cfg.families)], rng, "train")
            for i in range(cfg.prompts_per_round)]


def rejection_sampling(model, tokenizer, cfg: RSConfig, scorer: Scorer | None = None,
                       progress: bool = False) -> RSResult:
    """Run ``cfg.rounds`` rounds of rejection-sampling fine-tuning on ``model`` (in place).

    Each round: sample ``n`` replies to ``prompts_per_round`` fresh training prompts (``sample_pool``), score
    them (``cfg.selector``), keep ``select_examples(rule)`` (non-empty replies only), fine-tune with
    ``trainers.sft.sft`` on them, and answer the held-out prompts greedily.
    """
    budget = _check(cfg)
    if (cfg.selector == "custom") != (scorer is not None):
        raise ValueError("scorer must be given exactly when selector='custom'")
    heldout = world.heldout_prompts(cfg.eval_prompts, seed=cfg.seed, families=cfg.families)
    hist: dict[str, list] = {k: [] for k in ("round", "heldout/gold", "heldout/correct", "pool/gold",
                                             "pool/correct", "selected/gold", "selected/correct",
                                             "selected/count", "selected/distinct_prompts", "sft/loss")}
    golds, corrects, examples = [], [], []

    def evaluate(r: int) -> None:
        ev = evaluate_chat(model, tokenizer, heldout, greedy=True, max_new_tokens=cfg.max_new_tokens)
        golds.append([row[2] for row in ev.rows])
        corrects.append([float(c) for c in ev.correct])
        hist["round"].append(r)
        hist["heldout/gold"].append(float(np.mean(golds[-1])))
        hist["heldout/correct"].append(float(np.mean(corrects[-1])))

    evaluate(0)
    for r in range(1, cfg.rounds + 1):
        problems = _train_problems(cfg, r)
        pool = sample_pool(model, tokenizer, problems, n=cfg.n, temperature=cfg.temperature,
                           max_new_tokens=cfg.max_new_tokens, seed=cfg.seed * 1000 + r)
        if cfg.selector == "random":
            scores = np.random.default_rng([cfg.seed, r]).random(pool.gold.shape)
        else:
            scores = score_pool(pool, {"gold": gold_scorer, "verifier": verifier_scorer}.get(cfg.selector, scorer))
        usable = np.array([[bool(t.strip()) for t in group] for group in pool.replies])
        kept = select_examples(scores, cfg.rule, budget, usable, seed=cfg.seed * 1000 + r)
        if not kept:
            raise ValueError(f"round {r}: every reply in the pool is empty; nothing to fine-tune on")
        convs = [[{"role": "user", "content": problems[i].prompt},
                  {"role": "assistant", "content": pool.replies[i][j]}] for i, j in kept]
        examples.append(convs)
        hist["pool/gold"].append(float(pool.gold.mean()))
        hist["pool/correct"].append(float(pool.correct.mean()))
        hist["selected/gold"].append(float(np.mean([pool.gold[i, j] for i, j in kept])))
        hist["selected/correct"].append(float(np.mean([pool.correct[i, j] for i, j in kept])))
        hist["selected/count"].append(len(kept))
        hist["selected/distinct_prompts"].append(len({i for i, _ in kept}))
        train_hist = sft(model, tokenizer, convs, cfg.sft, progress=progress)
        losses = train_hist.get("losses/train") or train_hist.get("losses/loss") or [float("nan")]
        hist["sft/loss"].append(float(losses[-1]))
        evaluate(r)
    return RSResult(history=hist, heldout_gold=np.array(golds), heldout_correct=np.array(corrects),
                    examples=examples)
