"""Constitutional AI, learned (RLHF Book ch. 12; Bai et al. 2022): a model that critiques and revises its own replies
under a written principle, and the supervised stage (SL-CAI) built on it, measured by the gold judge.

**The reviser** (:func:`train_reviser`). ``sft-tiny`` answers training prompts (sampled, so its replies carry every
fault a small chat model has: no opener, fillers, cut ends, wrong answers); each reply gets one principle drawn at
random and the world's rule writes the critique and the revision (``world.constitution``: the task, its format
``"Critique: ...\\nRevision: ..."`` and the rule). Supervised fine-tuning (``trainers.sft``) from ``sft-tiny`` on
those conversations teaches the model the task. The rule is the teacher of the *skill*; from here on the model
works alone.

**Measured on held-out prompts** (:func:`reviser_report`): ``sft-tiny``'s sampled replies to held-out prompts,
each revised under every principle by the model (greedy, :func:`model_revise`): per principle, how often the
model's answer parses, how often its revision equals the rule's, how often it follows the principle, and the gold
score of the revisions against the original replies'.

**The supervised stage, SL-CAI** (:func:`run_cai`): ``sft-tiny`` answers *other* training prompts, the reviser
revises each reply under a principle drawn at random (by itself: no rule at this step), and ``sft-tiny`` is
fine-tuned on (prompt, revision). Both it and ``sft-tiny`` answer the held-out prompts (sampled, one seed); the gain
is the paired difference of per-prompt gold (``evaluation_stats.paired_difference``). The control arm ``sl-rule``
fine-tunes on the *rule's* revisions of the same replies: the gap between the two is what the reviser's mistakes
cost. No gold label is used anywhere: the constitution is the only supervision.

**The RL stage, RL-CAI** (:func:`rl_stage`): a *feedback model* (``sft-tiny`` fine-tuned on the pairwise judge task
under a principle, ``world.principle_judge_prompt``, labels from the constitution's rule ``principle_verdict``; a
pair its principle cannot separate is left out) judges pairs of ``sft-tiny``'s sampled replies to other training
prompts, each under a principle drawn at random; DPO from ``sft-tiny`` on its verdicts (``rl-cai``) against DPO on
the gold annotator's labels of the *same* pairs (``rl-gold``), the gold-labelled pipeline at the same label budget.

    result = run_cai(cai_config(fast=True))
    result["reviser"]["by_principle"]["polite"]     # {"parsed", "matches_rule", "follows", "gold_before", ...}
    result["gains"]["sl-cai - sft"]                 # {"diff", "se", ...}: held-out gold gain of SL-CAI
    result["gains"]["rl-cai - rl-gold"]             # RL-CAI (0 gold labels) against gold-labelled DPO, paired
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.evaluation_stats import paired_difference
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.recipes.judge_model import model_judge
from rlhfbook_lab.recipes.synthetic_data import annotator_judge, pairs_from_verdicts
from rlhfbook_lab.trainers.dpo import dpo_config, train_dpo
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.sft import SFTConfig, sft

__all__ = ["CAI_COMMAND", "CAI_RESULT", "CAIConfig", "RECIPES", "cai_config", "load_cai_result", "model_revise",
           "principled_verdicts", "reviser_report", "rl_stage", "run_cai", "sample_replies", "train_principle_judge",
           "train_reviser", "write_cai"]

CAI_RESULT = Path(__file__).resolve().parents[2] / "data" / "synthetic" / "cai.json"
"""The shipped study (lesson 12 §3 reads it): :data:`CAI_COMMAND`'s output."""

CAI_COMMAND = ("OMP_NUM_THREADS=1 python -c 'from rlhfbook_lab.recipes.constitutional import write_cai; "
               "write_cai(\"data/synthetic/cai.json\")'")
"""The command that writes :data:`CAI_RESULT` (the defaults of :class:`CAIConfig`)."""


@dataclass
class CAIConfig:
    """What :func:`run_cai` samples, trains and measures (the defaults are the shipped study)."""

    start: str = "sft-tiny"
    """The chat model that writes the replies, is taught to revise, and is fine-tuned on the revisions."""
    reviser_prompts: int = 1024
    """Training prompts whose sampled replies (one each) make the reviser's task data."""
    reviser_sft: SFTConfig = field(default_factory=lambda: SFTConfig(
        train=TrainConfig(steps=150, lr=1e-3, warmup_steps=15, bf16=False), max_length=256, batch_size=16))
    """The reviser's fine-tuning (``trainers.sft``); conversations over ``max_length`` tokens are dropped, counted."""
    sl_prompts: int = 1024
    """Other training prompts for the supervised stage: one sampled reply each, revised by the reviser."""
    sl_sft: SFTConfig = field(default_factory=lambda: SFTConfig(
        train=TrainConfig(steps=60, lr=3e-4, warmup_steps=6, bf16=False), max_length=160, batch_size=16))
    """SL-CAI's fine-tuning of ``start`` on (prompt, revision)."""
    rule_arm: bool = True
    """Also fine-tune on the rule's revisions of the same replies (``sl-rule``: what the reviser's mistakes cost)."""
    rl_stage: bool = True
    """Run the RL stage too (:func:`rl_stage`): a principled judge trained on the constitution's labels, DPO on its
    verdicts, beside DPO on the gold annotator's labels of the same pairs."""
    judge_prompts: int = 1024
    """Training prompts whose two sampled replies make the principled judge's task data (labels: the rule)."""
    judge_sft: SFTConfig = field(default_factory=lambda: SFTConfig(
        train=TrainConfig(steps=150, lr=1e-3, warmup_steps=15, bf16=False), max_length=256, batch_size=16))
    """The principled judge's fine-tuning from ``start`` (the judge task of ``judge-tiny``, under a principle)."""
    rl_prompts: int = 256
    """Other training prompts for the RL stage: two sampled replies each make one pair (same pairs in both arms)."""
    dpo_steps: int = 24
    """DPO steps of each RL-stage arm (``synthetic_data``'s dose: a longer run passed this model's cliff)."""
    dpo_batch_size: int = 8
    """Pairs per DPO step."""
    dpo_lr: float = 1e-4
    """DPO's peak learning rate."""
    dpo_beta: float = 0.1
    """DPO's β."""
    report_prompts: int = 200
    """Held-out prompts whose replies the reviser revises under every principle (:func:`reviser_report`)."""
    eval_prompts: int = 400
    """Held-out prompts (``world.heldout_prompts(n, seed=0)``) the SL models answer, sampled at temperature 1."""
    temperature: float = 1.0
    """Sampling temperature of every reply (training and held-out)."""
    max_new_tokens: int = 48
    """Reply budget in tokens (characters) of the sampled replies."""
    revise_tokens: int = 112
    """Token budget of a critique and revision."""
    seed: int = 0
    """Seeds the prompts, the samples, the principles drawn and the fine-tuning."""


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"reviser_prompts": 64, "reviser_sft.train.steps": 4, "sl_prompts": 32, "sl_sft.train.steps": 3,
             "judge_prompts": 32, "judge_sft.train.steps": 3, "rl_prompts": 16, "dpo_steps": 2, "dpo_batch_size": 4,
             "report_prompts": 8, "eval_prompts": 16},
}
"""``full``: :class:`CAIConfig`'s defaults (the shipped study); ``fast``: a few steps at tiny sizes, for tests."""


def cai_config(fast: bool = False, **overrides) -> CAIConfig:
    """:data:`RECIPES` ``["fast" if fast else "full"]`` then ``overrides`` (any field by name), checked."""
    cfg = build(CAIConfig, RECIPES, "fast" if fast else "full", **overrides)
    for name in ("reviser_prompts", "sl_prompts", "judge_prompts", "rl_prompts", "dpo_steps", "dpo_batch_size",
                 "report_prompts", "eval_prompts", "max_new_tokens", "revise_tokens"):
        check_int(name, getattr(cfg, name), minimum=1)
    check_number("dpo_lr", cfg.dpo_lr, 0, strict=True)
    check_number("dpo_beta", cfg.dpo_beta, 0, strict=True)
    check_int("seed", cfg.seed, minimum=0)
    check_number("temperature", cfg.temperature, 0, strict=True)
    return cfg


def _train_problems(n: int, seed: int, stream: str) -> list[world.Problem]:
    rng = random.Random(f"cai-{stream}-{seed}")
    return [world.sample_problem(world.FAMILIES[i % len(world.FAMILIES)], rng, "train") for i in range(n)]


def sample_replies(model, tokenizer, problems: list[world.Problem], cfg: CAIConfig, seed: int) -> list[str]:
    """One sampled reply per problem (``cfg.temperature``, ``cfg.max_new_tokens``), white space runs as one space."""
    ev = evaluate_chat(model, tokenizer, problems, greedy=False, temperature=cfg.temperature,
                       max_new_tokens=cfg.max_new_tokens, seed=seed)
    return [" ".join(r.split()) for _, r, _ in ev.rows]


def _draw(n: int, seed: int, stream: str) -> list[str]:
    rng = random.Random(f"cai-principles-{stream}-{seed}")
    return [rng.choice(list(world.PRINCIPLE_FEATURES)) for _ in range(n)]


def train_reviser(cfg: CAIConfig | None = None, loaded=None, progress: bool = False):
    """Fine-tune ``cfg.start`` on the critique-and-revise task built from its own sampled replies to training
    prompts, one random principle each (module docstring). Returns ``(model, tokenizer, history)``."""
    cfg = cfg or cai_config()
    start, tok = loaded or load_model(cfg.start)
    problems = _train_problems(cfg.reviser_prompts, cfg.seed, "reviser")
    replies = sample_replies(start, tok, problems, cfg, seed=cfg.seed)
    keep = [i for i, r in enumerate(replies) if r]
    convs = world.revision_conversations([problems[i] for i in keep], [replies[i] for i in keep],
                                         _draw(len(keep), cfg.seed, "reviser"))
    model, _ = load_model(cfg.start)
    torch.manual_seed(cfg.seed)
    history = sft(model, tok, convs, cfg.reviser_sft, progress=progress)
    return model.eval(), tok, history


def model_revise(model, tokenizer, problems, replies: list[str], principles: list[str], max_new_tokens: int = 112,
                 batch_size: int = 128) -> list[tuple[str, str] | None]:
    """The model's critique and revision of each reply under its principle, greedy: ``(critique, revision)``, or
    ``None`` where the model's answer does not parse (``world.parse_revision``) or never ended."""
    if not (len(problems) == len(replies) == len(principles)) or not problems:
        raise ValueError(f"problems, replies and principles must be non-empty lists of one length; got "
                         f"{len(problems)}, {len(replies)}, {len(principles)}")
    prompts = [world.revision_prompt(p.prompt, r, n) for p, r, n in zip(problems, replies, principles)]
    out: list[tuple[str, str] | None] = []
    for i in range(0, len(prompts), batch_size):
        gen = generate(model, tokenizer, prompts[i:i + batch_size], max_new_tokens=max_new_tokens, greedy=True)
        for text, done in zip(gen.texts, gen.finished.tolist()):
            try:
                out.append(world.parse_revision(text) if done else None)
            except ValueError:
                out.append(None)
    return out


def reviser_report(model, tokenizer, problems: list[world.Problem], replies: list[str],
                   max_new_tokens: int = 112) -> dict:
    """The reviser against the rule on ``replies`` (non-empty), each revised under every principle: per principle
    ``n``, ``parsed`` (share whose answer parses), and over the parsed ones ``matches_rule`` (the revision equals
    ``world.revise``'s), ``follows`` (the revision follows the principle), ``gold_before`` / ``gold_after`` (mean
    gold of the replies and of the model's revisions) and ``rule_gold_after`` (of the rule's revisions)."""
    keep = [i for i, r in enumerate(replies) if r.strip()]
    problems, replies = [problems[i] for i in keep], [replies[i] for i in keep]
    names = list(world.PRINCIPLE_FEATURES)
    asks = [(p, r, n) for n in names for p, r in zip(problems, replies)]
    answers = model_revise(model, tokenizer, [a[0] for a in asks], [a[1] for a in asks], [a[2] for a in asks],
                           max_new_tokens=max_new_tokens)
    by = {}
    for n in names:
        rows = [(p, r, ans) for (p, r, m), ans in zip(asks, answers) if m == n]
        ok = [(p, r, ans[1]) for p, r, ans in rows if ans is not None]
        by[n] = {"n": len(rows), "parsed": len(ok) / len(rows)}
        if ok:
            by[n].update({
                "matches_rule": float(np.mean([v == world.revise(p, r, n) for p, r, v in ok])),
                "follows": float(np.mean([world.follows(p, v, n) for p, _, v in ok])),
                "gold_before": float(np.mean([world.gold_score(p, r) for p, r, _ in ok])),
                "gold_after": float(np.mean([world.gold_score(p, v) for p, _, v in ok])),
                "rule_gold_after": float(np.mean([world.gold_score(p, world.revise(p, r, n)) for p, r, _ in ok])),
            })
    return {"replies": len(replies), "by_principle": by}


def _pairs(model, tokenizer, problems, cfg: CAIConfig, seed: int):
    """Two sampled replies per problem; the problems whose two replies are non-empty and differ."""
    a = sample_replies(model, tokenizer, problems, cfg, seed=seed)
    b = sample_replies(model, tokenizer, problems, cfg, seed=seed + 1)
    keep = [i for i in range(len(problems)) if a[i] and b[i] and a[i] != b[i]]
    return [problems[i] for i in keep], [a[i] for i in keep], [b[i] for i in keep]


def train_principle_judge(cfg: CAIConfig | None = None, loaded=None, progress: bool = False):
    """Fine-tune ``cfg.start`` to judge a pair under a principle (``world.principle_judge_conversations``): two
    sampled replies per training prompt, one random principle each, labelled by the rule (the constitution, no gold
    label); a pair its principle cannot tell apart is left out. Returns ``(model, tokenizer, history)``."""
    cfg = cfg or cai_config()
    start, tok = loaded or load_model(cfg.start)
    problems, a, b = _pairs(start, tok, _train_problems(cfg.judge_prompts, cfg.seed, "judge"), cfg, cfg.seed + 3)
    convs, _ = world.principle_judge_conversations(problems, a, b, _draw(len(problems), cfg.seed, "judge"))
    model, _ = load_model(cfg.start)
    torch.manual_seed(cfg.seed)
    history = sft(model, tok, convs, cfg.judge_sft, progress=progress)
    return model.eval(), tok, history


def principled_verdicts(model, tokenizer, problems, a: list[str], b: list[str],
                        principles: list[str]) -> list[str | None]:
    """The model's verdict on each pair under its principle (``judge_model.model_judge`` with
    ``world.principle_judge_prompt``: the logit of ``"A"`` against ``"B"``); ``None`` for a pair whose prompt is over
    the model's context (refused, not truncated)."""
    out: list[str | None] = [None] * len(problems)
    for name in dict.fromkeys(principles):
        judge = model_judge(model, tokenizer, prompt=partial(world.principle_judge_prompt, principle=name))
        idx = [i for i, n in enumerate(principles) if n == name and judge.fits(problems[i], a[i], b[i])]
        if idx:
            for i, v in zip(idx, judge([problems[i] for i in idx], [a[i] for i in idx], [b[i] for i in idx])):
                out[i] = v
    return out


def rl_stage(cfg: CAIConfig, loaded, progress: bool = False) -> tuple[dict, dict]:
    """RL-CAI in miniature: the principled judge (:func:`train_principle_judge`) labels pairs of ``start``'s
    sampled replies to other training prompts, each under a principle drawn at random; DPO from ``start`` on its
    labels (``rl-cai``) and, on the same pairs, on the gold annotator's (``rl-gold``: the gold-labelled pipeline at
    the same label budget; RL-CAI used no gold label). Returns ``(report, models)``."""
    start, tok = loaded
    judge, _, history = train_principle_judge(cfg, loaded=loaded, progress=progress)
    problems, a, b = _pairs(start, tok, _train_problems(cfg.rl_prompts, cfg.seed, "rl"), cfg, cfg.seed + 5)
    principles = _draw(len(problems), cfg.seed, "rl")
    cai = principled_verdicts(judge, tok, problems, a, b, principles)
    unreadable = sum(v is None for v in cai)
    keep = [i for i, v in enumerate(cai) if v is not None]
    problems, a, b = [problems[i] for i in keep], [a[i] for i in keep], [b[i] for i in keep]
    principles, cai = [principles[i] for i in keep], [cai[i] for i in keep]
    if not problems:
        raise ValueError("the RL stage has no pair: no prompt got two distinct readable replies; add rl_prompts")
    gold = annotator_judge("gold", seed=cfg.seed)(problems, a, b)
    rule = [world.principle_verdict(n, p, x, y) for n, p, x, y in zip(principles, problems, a, b)]
    decided = [i for i, v in enumerate(rule) if v is not None]
    ga = np.array([world.gold_score(p, x) for p, x in zip(problems, a)])
    gb = np.array([world.gold_score(p, x) for p, x in zip(problems, b)])
    labels = {"pairs": len(problems), "unreadable": unreadable,
              "judge_final_loss": history["losses/train"][-1], "judge_examples": history["data/num_examples"][0],
              "agreement_with_gold": float(np.mean([c == g for c, g in zip(cai, gold)])),
              "agreement_with_rule": float(np.mean([cai[i] == rule[i] for i in decided])) if decided else None,
              "rule_decides": len(decided) / len(problems)}
    for arm, v in (("cai", cai), ("gold", gold)):
        va = np.array([x == "A" for x in v])
        labels[f"gold_of_chosen[{arm}]"] = float(np.where(va, ga, gb).mean())
        labels[f"gold_of_rejected[{arm}]"] = float(np.where(va, gb, ga).mean())
    dcfg = dpo_config(steps=cfg.dpo_steps, batch_size=cfg.dpo_batch_size, lr=cfg.dpo_lr, beta=cfg.dpo_beta,
                      seed=cfg.seed, warmup_steps=min(10, cfg.dpo_steps // 5), precompute_ref_logps=True)
    models = {}
    for arm, v in (("rl-cai", cai), ("rl-gold", gold)):
        policy, _ = load_model(cfg.start)
        torch.manual_seed(cfg.seed)
        train_dpo(policy, tok, pairs_from_verdicts(problems, a, b, v, label_source=arm), dcfg, progress=progress)
        models[arm] = policy.eval()
    return labels, models


def _examples(problems, replies, principles, answers, k: int = 6) -> list[dict]:
    """The first ``k`` revisions that changed the reply, one principle after another where possible."""
    out, seen = [], set()
    for p, r, n, a in zip(problems, replies, principles, answers):
        if a is None or a[1] == r or n in seen:
            continue
        seen.add(n)
        out.append({"prompt": p.prompt, "principle": n, "reply": r, "critique": a[0], "revision": a[1],
                    "rule_revision": world.revise(p, r, n), "gold_reply": world.gold_score(p, r),
                    "gold_revision": world.gold_score(p, a[1])})
        if len(out) == k:
            break
    return out


def _row(label: str, ev) -> dict:
    return {"model": label, "gold": ev.overall["gold_score"], "correct": ev.overall["correct_rate"],
            "opener": float(np.mean([y.strip().startswith(world.judge.POLITE_OPENERS) for _, y, _ in ev.rows])),
            "eos": ev.overall["eos_rate"]}


def run_cai(cfg: CAIConfig | None = None, progress: bool = False) -> dict:
    """Train the reviser, measure it, run the supervised stage and measure it (module docstring). Returns a JSON-able
    dict: ``config``, ``reviser`` (training loss, dropped conversations, :func:`reviser_report`), ``rl``
    (:func:`rl_stage`'s label report, or None), ``sl`` (how many
    replies were revised, parsed, changed; ``skipped_arms``: an arm with no parsed revision is not trained;
    ``examples``), ``table`` (one row per model: held-out ``gold``,
    ``correct``, ``opener``, ``eos``), ``gains`` (paired differences) and ``cpu_seconds`` per stage."""
    t0 = time.process_time()
    cfg = cfg or cai_config()
    cpu = {}
    start, tok = load_model(cfg.start)
    reviser, _, history = train_reviser(cfg, loaded=(start, tok), progress=progress)
    cpu["reviser"] = time.process_time() - t0
    held = world.heldout_prompts(cfg.report_prompts, seed=1)
    report = reviser_report(reviser, tok, held, sample_replies(start, tok, held, cfg, seed=cfg.seed + 1),
                            max_new_tokens=cfg.revise_tokens)
    cpu["report"] = time.process_time() - t0 - sum(cpu.values())
    problems = _train_problems(cfg.sl_prompts, cfg.seed, "sl")
    replies = sample_replies(start, tok, problems, cfg, seed=cfg.seed + 2)
    keep = [i for i, r in enumerate(replies) if r]
    problems, replies = [problems[i] for i in keep], [replies[i] for i in keep]
    principles = _draw(len(problems), cfg.seed, "sl")
    answers = model_revise(reviser, tok, problems, replies, principles, max_new_tokens=cfg.revise_tokens)
    data = {"sl-cai": [(p, a[1]) for p, a in zip(problems, answers) if a is not None]}
    if cfg.rule_arm:
        data["sl-rule"] = [(p, world.revise(p, r, n)) for p, r, n in zip(problems, replies, principles)]
    cpu["revise"] = time.process_time() - t0 - sum(cpu.values())
    skipped = [arm for arm, rows in data.items() if not rows]  # a reviser none of whose answers parse: no SL-CAI
    data = {arm: rows for arm, rows in data.items() if rows}
    models = {"sft": start}
    for arm, rows in data.items():
        model, _ = load_model(cfg.start)
        torch.manual_seed(cfg.seed)
        sft(model, tok, [[{"role": "user", "content": p.prompt}, {"role": "assistant", "content": y}]
                         for p, y in rows], cfg.sl_sft, progress=progress)
        models[arm] = model.eval()
    cpu["sl_train"] = time.process_time() - t0 - sum(cpu.values())
    rl = None
    if cfg.rl_stage:
        rl, rl_models = rl_stage(cfg, (start, tok), progress=progress)
        models.update(rl_models)
        cpu["rl"] = time.process_time() - t0 - sum(cpu.values())
    heldout = world.heldout_prompts(cfg.eval_prompts, seed=0)
    table, gold = [], {}
    for label, model in models.items():
        ev = evaluate_chat(model, tok, heldout, greedy=False, temperature=cfg.temperature, seed=cfg.seed)
        gold[label] = np.array([g for _, _, g in ev.rows])
        table.append(_row(label, ev))
    gains = {f"{arm} - sft": paired_difference(gold[arm], gold["sft"]) for arm in models if arm != "sft"}
    if "sl-cai" in data and "sl-rule" in data:
        gains["sl-cai - sl-rule"] = paired_difference(gold["sl-cai"], gold["sl-rule"])
    if rl is not None:
        gains["rl-cai - rl-gold"] = paired_difference(gold["rl-cai"], gold["rl-gold"])
    cpu["eval"] = time.process_time() - t0 - sum(cpu.values())
    n_parsed = sum(a is not None for a in answers)
    return {
        "config": asdict(cfg),
        "reviser": {"final_loss": history["losses/train"][-1], "dropped": history["data/num_dropped"][0],
                    "examples": history["data/num_examples"][0], **report},
        "sl": {"replies": len(replies), "parsed": n_parsed, "skipped_arms": skipped,
               "changed": sum(a is not None and a[1] != r for a, r in zip(answers, replies)),
               "matches_rule": sum(a is not None and a[1] == world.revise(p, r, n)
                                   for p, r, n, a in zip(problems, replies, principles, answers)),
               "gold_replies": float(np.mean([world.gold_score(p, r) for p, r in zip(problems, replies)])),
               "gold_revisions": float(np.mean([world.gold_score(p, a[1]) for p, a in zip(problems, answers)
                                                if a is not None])) if n_parsed else None,
               "examples": _examples(problems, replies, principles, answers)},
        "rl": rl,
        "table": table,
        "gains": gains,
        "cpu_seconds": {k: round(v, 1) for k, v in {**cpu, "total": time.process_time() - t0}.items()},
    }


def write_cai(out, cfg: CAIConfig | None = None, progress: bool = False) -> dict:
    """Run the study (:func:`run_cai`) and write its result to ``out`` as JSON; return it."""
    result = run_cai(cfg, progress=progress)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def load_cai_result(path=CAI_RESULT) -> dict:
    """The shipped study (:data:`CAI_RESULT`), or another :func:`write_cai` output."""
    return json.loads(Path(path).read_text())
