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

import json
import math
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_choice, check_int, check_number
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import check_output_folder, check_writable, load_model
from rlhfbook_lab.lm.pool_scoring import Scorer, gold_scorer, score_pool, verifier_scorer
from rlhfbook_lab.lm.sample_pool import sample_pool
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.sft import SFTConfig, sft

__all__ = ["RECIPES", "RULES", "SELECTORS", "RSConfig", "RSResult", "check_config", "rejection_sampling",
           "run_against_control", "select_examples", "write_report"]

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


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"prompts_per_round": 32, "eval_prompts": 80, "sft.train.steps": 8},
}
"""``"full"`` (the defaults) and ``"fast"`` (lesson 09's fast sizes; ``rlhfbook-lab rs --fast``)."""


def check_config(cfg: RSConfig) -> int:
    """Check ``cfg`` (a ``ValueError`` naming the field) and return the per-round budget it implies."""
    return _check(cfg)


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


def run_against_control(cfg: RSConfig, policy: str = "sft-tiny", log=print) -> dict:
    """Rejection-sampling fine-tuning selected by ``cfg.selector`` beside its random control (``selector="random"``,
    the same rule, budget, prompts and seeds), each from a fresh copy of ``policy``; the paired held-out gain of the
    selected arm over the control after the last round (mean ± standard error over the held-out prompts). Returns a
    JSON-serialisable dict; ``rlhfbook-lab rs`` writes it with :func:`write_report`."""
    check_config(cfg)
    if cfg.selector in ("random", "custom"):
        raise ValueError(f"selector must be 'gold' or 'verifier' (compared with the random control); "
                         f"got {cfg.selector!r}")
    say = log or (lambda *a, **k: None)
    arms, finals = {}, {}
    for selector in (cfg.selector, "random"):
        arm_cfg = replace(cfg, selector=selector)
        model, tok = load_model(policy)
        res = rejection_sampling(model, tok, arm_cfg)
        arms[selector] = res.history
        finals[selector] = (res.heldout_gold[-1], res.heldout_correct[-1])
        say(f"{cfg.rule} by {selector}: held-out gold " + " → ".join(f"{g:+.3f}" for g in res.history["heldout/gold"]))
    gain = {}
    for k, name in ((0, "gold"), (1, "correct")):
        diff = finals[cfg.selector][k] - finals["random"][k]  # paired: the same held-out prompts
        se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
        gain[name] = {"mean": float(diff.mean()), "se": se}
    return {"config": asdict(cfg), "policy": policy, "arms": arms, "gain": gain}


def write_report(result: dict, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``result.json`` and ``report.md`` (per round: held-out gold and correctness of both arms, the pool's
    and the selected replies' gold; the paired final gain over the control) into ``out``."""
    out = check_output_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    cfg, arms = result["config"], result["arms"]
    lines = [f"# Rejection sampling ({cfg['rule']}, selected by {cfg['selector']}) vs its random control", "",
             f"{cfg['rounds']} rounds × {cfg['prompts_per_round']} prompts × {cfg['n']} samples from "
             f"{result['policy']}; held-out: {cfg['eval_prompts']} prompts, greedy.", "",
             "| arm | round | held-out gold | held-out correct | pool gold | selected gold |",
             "|---|---|---|---|---|---|"]
    for arm, h in arms.items():
        for r in h["round"]:
            pool = f"{h['pool/gold'][r - 1]:+.3f}" if r else "–"
            sel = f"{h['selected/gold'][r - 1]:+.3f}" if r else "–"
            lines.append(f"| {arm} | {r} | {h['heldout/gold'][r]:+.3f} | {h['heldout/correct'][r]:.3f} | {pool} | "
                         f"{sel} |")
    g, c = result["gain"]["gold"], result["gain"]["correct"]
    lines += ["", f"Final held-out gain over the control (paired): gold {g['mean']:+.3f} ± {g['se']:.3f}, "
              f"correct {c['mean']:+.3f} ± {c['se']:.3f}."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out
