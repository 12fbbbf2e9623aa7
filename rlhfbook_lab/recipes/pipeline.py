"""The whole course arc in one command (``rlhfbook-lab pipeline``): base → SFT → reward model → DPO → RL, each
judged by the world's gold judge on the same held-out prompts.

Stages (each calls the package's own trainer; nothing here is a second implementation):

1. **base** — the shipped pretrained ``base-tiny`` (pretraining it again is ``rlhfbook-lab pretrain``, ~9 min
   on 2 cores, so the arc starts from its checkpoint).
2. **SFT** — :func:`rlhfbook_lab.trainers.sft.sft_from_base` on the shipped instruction data (``data/sft``).
3. **Reward model** — :class:`~rlhfbook_lab.lm.reward_model.RewardModel` on the SFT backbone, trained with the
   Bradley-Terry loss on the shipped preference pairs (``data/preferences``); by default (``reward_model="check"``)
   it is then frozen as the taste model of a
   :class:`~rlhfbook_lab.lm.reward_model.CheckingRewardModel` whose checker reads the SFT model's surprise at each
   reply token (``recipes.checking_rm.fit_checking_rm``, the ``rm-check-tiny`` recipe), so that RL is paid for
   right answers and not only for taste. Its held-out accuracy is reported next to the Bayes ceiling of the labels,
   on taste pairs and on pairs where exactly one reply is right, then it is normalised to mean 0 / std 1 on the SFT
   policy's samples.
4. **DPO** — :func:`rlhfbook_lab.trainers.dpo.train_dpo` from the SFT model on the same pairs.
5. **RL** — :func:`rlhfbook_lab.trainers.rl.train_rl` (GRPO by default, ``rl_algo="ppo"`` for PPO) from the SFT model,
   rewarded by the reward model of stage 3, with a KL penalty to the SFT model.

Then every model answers the same held-out prompts greedily (:func:`~rlhfbook_lab.lm.evaluation.evaluate_chat`:
end-of-turn rate, correctness, gold score) and, for the models trained from SFT, their KL to it is estimated on
their own samples (:func:`~rlhfbook_lab.lm.evaluation.sampled_kl`). Everything goes to ``out``:

- ``results.json`` and ``results.md`` (one table, a row per model, and the reward model's accuracy vs ceiling);
- ``summary.png`` (gold score per stage; gold score against KL to SFT);
- ``checkpoints/{sft,rm,dpo,rl}`` — loadable with ``rlhfbook-lab sample --model <folder>``; with the checking
  reward model, ``rm`` is its checker (naming ``rm-taste`` and ``sft`` beside it, by absolute path).

Two speeds: the default (≤ 15 min on 2 CPU cores) and ``fast=True`` (≤ 90 s, shorter runs of every stage and
fewer evaluation prompts: the arc and its plumbing, with noisier numbers).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_choice
from rlhfbook_lab.lm.evaluation import evaluate_chat, sampled_kl
from rlhfbook_lab.lm.models import check_output_folder, check_writable, load_model, save_model
from rlhfbook_lab.lm.preference_data import subsample_pairs
from rlhfbook_lab.lm.reward_model import RewardModel, load_reward_model, save_reward_model
from rlhfbook_lab.lm.shipped_data import load_preference_file
from rlhfbook_lab.recipes.checking_rm import fit_checking_rm
from rlhfbook_lab.trainers.checker import CheckerConfig
from rlhfbook_lab.trainers.dpo import DPOConfig, train_dpo
from rlhfbook_lab.trainers.reward import (
    accuracy_by_kind,
    evaluate_reward_model,
    normalize_rm,
    shipped_rm_config,
    train_reward_model,
)
from rlhfbook_lab.trainers.rl import ALGORITHMS, RLConfig, train_rl
from rlhfbook_lab.trainers.sft import SFTConfig, sft_from_base

__all__ = ["REWARD_MODELS", "RL_RECIPE", "RL_RECIPE_CHECK", "PipelineConfig", "pipeline_rl_config", "run_pipeline",
           "write_report"]

STAGES = ("sft", "rm", "dpo", "rl")
REWARD_MODELS = {"check": "rm-check-tiny", "bt": "rm-tiny"}
"""The pipeline's two reward models and the shipped checkpoint that stands in for each when the ``rm`` stage does
not train: ``check``, a Bradley-Terry taste model plus a checker of answers (``recipes.checking_rm``); ``bt``, the
Bradley-Terry model alone (taste only: at chance on whether an answer is right)."""


@dataclass
class PipelineConfig:
    """Step counts and sizes of each stage. ``PipelineConfig.fast_config()`` is the ≤ 90 s version."""

    sft_steps: int = 800
    """SFT optimiser steps (800: the shipped ``sft-tiny`` recipe, which this stage then reproduces; 600 steps were
    measured to fall short — greedy gold +0.55 and 81 % of replies ending their turn, against +0.69 and 98 % — and
    neither DPO nor RL gained over that weaker model)."""
    reward_model: str = "check"
    """Which reward model RL is paid by (:data:`REWARD_MODELS`): ``"check"`` (taste + a checker of answers) or
    ``"bt"`` (Bradley-Terry on preference pairs alone)."""
    rm_steps: int | None = None
    """Bradley-Terry reward-model steps; ``None``: the shipped ``rm-tiny`` recipe (``reward.shipped_rm_config``)."""
    dpo_steps: int = 50
    """DPO steps (50 × 16 pairs, on- and off-policy: the recipe measured to gain over SFT; 100 steps overshot, to a
    KL of 5.3 nats per reply, correctness 0.71 → 0.51 and no gold gain, +0.002 ± 0.035)."""
    dpo_batch_size: int = 16
    """Pairs per DPO step."""
    dpo_beta: float = 0.1
    """DPO's β."""
    dpo_lr: float = 1e-4
    """DPO's peak learning rate (10 warmup steps, then the shared loop's schedule)."""
    rl_algo: str = "grpo"
    """``"grpo"``, ``"ppo"``, ``"rloo"``, ``"reinforce"`` or ``"dr_grpo"``."""
    rl_steps: int | None = None
    """RL steps (rollout + update). ``None`` here and in the three fields below: :data:`RL_RECIPE` for GRPO,
    the algorithm's preset for the others (``RLConfig.preset``; ``RLConfig.fast`` in fast mode)."""
    rl_prompts_per_step: int | None = None
    """Training prompts per rollout."""
    rl_group_size: int | None = None
    """Samples per prompt (the group)."""
    rl_lr: float | None = None
    """RL learning rate."""
    rl_beta: float | None = None
    """RL's KL coefficient β."""
    eval_prompts: int = 200
    """Held-out prompts every model answers (greedy)."""
    kl_prompts: int = 64
    """Held-out prompts on which KL to SFT is estimated (4 samples each)."""
    rm_eval_pairs: int | None = None
    """Held-out preference pairs the reward model's accuracy is measured on (a fixed random subset,
    ``preference_data.subsample_pairs``); ``None``: all 1,368."""
    seed: int = 0
    stages: tuple[str, ...] = field(default=STAGES)
    """Which stages train (a subset of ``STAGES``). Without ``"sft"`` the arc uses the shipped ``sft-tiny`` (the
    same recipe, 800 steps) as its SFT model; without ``"rm"``, the shipped ``rm-tiny``."""
    fast: bool = False

    @classmethod
    def fast_config(cls, **overrides) -> "PipelineConfig":
        """The arc in ≤ 90 s on 2 CPU cores: the shipped ``sft-tiny`` and the shipped reward model
        (:data:`REWARD_MODELS`: ``rm-check-tiny`` by default) stand in for the SFT and reward-model stages (a useful
        SFT model needs ~3 min of training: held-out addition arrives late; the checking reward model ~6 more), KL
        is estimated on 16 prompts, and the reward model's accuracy is measured on 256 of the held-out pairs; DPO
        (50 × 16 pairs) and RL (:data:`RL_RECIPE_CHECK`) train as in the full arc. Measured 2026-12-04 (seed 0; 77 s
        wall, 141 s CPU on 2 threads): SFT +0.69, DPO +0.136 ± 0.028 and RL +0.034 ± 0.021 gold over it, correctness
        −0.060 ± 0.027 and +0.000 ± 0.020 (RL's seeds 1 and 2 in :data:`RL_RECIPE_CHECK`)."""
        kw = dict(stages=("dpo", "rl"), kl_prompts=16, rm_eval_pairs=256, fast=True)
        kw.update(overrides)
        return cls(**kw)

    def __post_init__(self):
        check_choice("rl_algo", self.rl_algo, ALGORITHMS)
        check_choice("reward_model", self.reward_model, REWARD_MODELS)
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"stages must be a subset of {STAGES}; got unknown {bad}")
        if self.rm_steps is not None and self.rm_steps < 1:
            raise ValueError(f"rm_steps must be >= 1 or None; got {self.rm_steps}")
        for name in ("sft_steps", "dpo_steps", "dpo_batch_size", "eval_prompts",
                     "kl_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("rl_steps", "rl_prompts_per_step", "rl_group_size", "rm_eval_pairs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or None; got {getattr(self, name)}")
        for name in ("dpo_beta", "dpo_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if self.rl_lr is not None and not self.rl_lr > 0:
            raise ValueError(f"rl_lr must be > 0 or None; got {self.rl_lr}")
        if self.rl_beta is not None and not self.rl_beta >= 0:
            raise ValueError(f"rl_beta must be >= 0 or None; got {self.rl_beta}")


RL_RECIPE: dict = {"train.steps": 10, "prompts_per_step": 16, "group_size": 4, "train.lr": 2e-4, "beta": 0.5}
"""The pipeline's GRPO stage on top of ``RLConfig.preset("grpo")`` when rewarded by the Bradley-Terry reward model
(``reward_model="bt"``). Small groups
(4) and a strong KL pull (β = 0.5): the reward model pays for the polite opener but is at chance on whether the
answer is right, so every step away from SFT that is not the opener costs correctness; more, smaller rollouts
and a large β learn the opener and drift less. Measured from sft-tiny with rm-tiny (greedy gold on 200 held-out
prompts, paired with SFT on the same prompts, seeds 0–4): +0.13, +0.14, +0.09, +0.04, −0.01 (s.e. ≈ 0.03), where
the preset (30 rollouts of 16 × 8, lr 1e-4, β 0.04) gave +0.14, +0.06, +0.01 and twice as many rollouts of this
recipe gained less. Fast and full mode use it alike: more rollouts did not buy more gold with this reward."""


RL_RECIPE_CHECK: dict = {"train.steps": 10, "prompts_per_step": 16, "group_size": 8, "train.lr": 1e-4, "beta": 0.3}
"""The GRPO stage when RL is paid by the checking reward model (``reward_model="check"``, the default). Measured
from sft-tiny with ``rm-check-tiny`` (fast mode; 200 held-out prompts, greedy, paired with SFT, ± s.e.;
2026-12-04), seeds 0/1/2: gold +0.034 ± 0.021, +0.077 ± 0.014, +0.060 ± 0.016; correctness +0.000 ± 0.020,
+0.010 ± 0.012, −0.015 ± 0.015. A looser KL buys more gold and starts to cost correctness: β = 0.1, seeds 0/1/2:
gold +0.051, +0.083, +0.145, correctness −0.010 ± 0.021, −0.005 ± 0.017, −0.045 ± 0.020; β = 0.1 for 20 steps,
seeds 0/1: gold +0.160, +0.129, correctness −0.045 ± 0.026, −0.090 ± 0.029. The policy learns replies the checker
cannot read: it answers held-out creature questions, where ``sft-tiny`` knows least and the checker is weakest
(0.637 on those correctness pairs), with a review the taste model likes ("Sure! The blender is great. I love it.").
:data:`RL_RECIPE` (lr 2e-4, groups of 4, β = 0.5) collapses on this reward: gold +0.009 ± 0.032, correctness
−0.155 ± 0.029 (seed 0). Lesson 14 is about exactly this."""


def pipeline_rl_config(cfg: PipelineConfig):
    """The ``RLConfig`` of the RL stage: for GRPO :data:`RL_RECIPE_CHECK` with the checking reward model and
    :data:`RL_RECIPE` with the Bradley-Terry one (for the other algorithms their preset, or its fast version), then
    the ``rl_*`` fields of ``cfg`` that are set."""
    recipe = RL_RECIPE_CHECK if cfg.reward_model == "check" else RL_RECIPE
    overrides = dict(recipe) if cfg.rl_algo == "grpo" else {}
    for name, key in (("steps", "train.steps"), ("prompts_per_step", "prompts_per_step"),
                      ("group_size", "group_size"), ("lr", "train.lr"), ("beta", "beta")):
        if getattr(cfg, f"rl_{name}") is not None:
            overrides[key] = getattr(cfg, f"rl_{name}")
    overrides.update(seed=cfg.seed, eval_prompts=0)  # every model is judged below, on the same prompts
    return (RLConfig.fast if cfg.fast and cfg.rl_algo != "grpo" else RLConfig.preset)(cfg.rl_algo, **overrides)


def _stage(name: str, log) -> float:
    log(f"\n=== {name} ===")
    return time.perf_counter()


def _copy(model):
    return copy.deepcopy(model)


def run_pipeline(cfg: PipelineConfig | None = None, out: str | Path | None = None, overwrite: bool = False,
                 progress: bool = True, log=print) -> dict:
    """Run the arc; return (and, with ``out``, write) the results. See the module docstring.

    Why one function (~130 lines): the stages run in the order of the README's pipeline table, each one call into
    its trainer followed by the lines that record it in the report; cut apart, one run could no longer be read
    top to bottom."""
    cfg = cfg or PipelineConfig()
    if out is not None:  # fail before training, not after
        out = check_output_folder(out, overwrite)
        check_writable(out)  # the report is written straight into it
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    models: dict[str, torch.nn.Module] = {}
    results: dict = {"config": asdict(cfg), "models": {}, "seconds": seconds}

    t0 = _stage("base: the shipped base-tiny", log)
    models["base"], tok = load_model("base-tiny")
    seconds["base"] = time.perf_counter() - t0

    if "sft" in cfg.stages:
        t0 = _stage(f"SFT: {cfg.sft_steps} steps on data/sft", log)
        sft_cfg = SFTConfig()
        sft_cfg.train.steps = cfg.sft_steps
        sft_cfg.train.seed = cfg.seed
        sft_cfg.train.warmup_steps = min(sft_cfg.train.warmup_steps, max(cfg.sft_steps // 10, 1))
        models["sft"], tok, _ = sft_from_base(sft_cfg, progress=progress, eval_every=0)
        seconds["sft"] = time.perf_counter() - t0
    else:
        log("\n=== SFT: the shipped sft-tiny (rlhfbook-lab sft) ===")
        models["sft"], tok = load_model("sft-tiny")
    sft = models["sft"]

    train_pairs, heldout_pairs = load_preference_file("train"), load_preference_file("heldout")
    t0 = time.perf_counter()
    rm_cfg = shipped_rm_config()
    if "rm" in cfg.stages:
        _stage(f"reward model: trained on {len(train_pairs)} preference pairs (the rm-tiny recipe)", log)
        rm = RewardModel.from_causal_lm(sft, seed=cfg.seed)
        rm_cfg.train.seed = cfg.seed
        if cfg.rm_steps is not None:
            rm_cfg.train.steps = cfg.rm_steps
            rm_cfg.train.warmup_steps = min(rm_cfg.train.warmup_steps, max(cfg.rm_steps // 10, 1))
        train_reward_model(rm, tok, train_pairs, rm_cfg, progress=progress)
        rm_name = "Bradley-Terry, trained here"
        if cfg.reward_model == "check":
            _stage("checking reward model: the model above, frozen, + a checker of the SFT model's surprise, on "
                   "the pairs and their counterfactual twins (the rm-check-tiny recipe)", log)
            taste = rm
            rm, _ = fit_checking_rm(taste, _copy(sft), tok, train_pairs, CheckerConfig(seed=cfg.seed),
                                    progress=progress)
            rm_name = "checking (Bradley-Terry taste + a checker of answers), trained here"
        normalize_rm(rm, tok, sft)
    else:
        rm_name = REWARD_MODELS[cfg.reward_model]
        _stage(f"reward model: the shipped {rm_name} (rlhfbook-lab rm)", log)
        rm, _ = load_reward_model(rm_name)
    if cfg.rm_eval_pairs is not None and cfg.rm_eval_pairs < len(heldout_pairs):
        heldout_pairs = subsample_pairs(heldout_pairs, cfg.rm_eval_pairs, seed=cfg.seed)
    ev = evaluate_reward_model(rm, tok, heldout_pairs, rm_cfg.max_length)
    results["reward_model"] = {"name": rm_name, "kind": cfg.reward_model, "heldout_accuracy": ev.accuracy,
                               "bayes_ceiling": ev.bayes_ceiling, "heldout_pairs": ev.num_pairs,
                               "ece": float(ev.calibration.ece)}
    if ev.num_pairs == len(heldout_pairs):  # every pair scored: split by kind
        kinds = accuracy_by_kind(ev, heldout_pairs)
        results["reward_model"].update(taste_accuracy=kinds["taste"], correctness_accuracy=kinds["correctness"])
    log(f"reward model ({rm_name}): held-out accuracy {ev.accuracy:.3f} (Bayes ceiling {ev.bayes_ceiling:.3f})")
    seconds["rm"] = time.perf_counter() - t0

    if "dpo" in cfg.stages:
        t0 = _stage(f"DPO: {cfg.dpo_steps} steps of {cfg.dpo_batch_size} pairs, beta {cfg.dpo_beta}", log)
        dpo_cfg = DPOConfig(beta=cfg.dpo_beta, batch_size=cfg.dpo_batch_size, precompute_ref_logps=True)
        dpo_cfg.train.steps = cfg.dpo_steps
        dpo_cfg.train.lr = cfg.dpo_lr
        dpo_cfg.train.seed = cfg.seed
        models["dpo"] = _copy(sft)
        # one pass over as many pairs as the run visits, so precomputing the reference costs no more than it saves
        decisive = [r for r in train_pairs if r.get("label", 1.0) == 1.0]
        order = torch.randperm(len(decisive), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        dpo_pairs = [decisive[i] for i in order[:cfg.dpo_steps * cfg.dpo_batch_size]]
        train_dpo(models["dpo"], tok, dpo_pairs, dpo_cfg, ref_model=sft, progress=progress)
        seconds["dpo"] = time.perf_counter() - t0

    if "rl" in cfg.stages:
        rl_cfg = pipeline_rl_config(cfg)
        t0 = _stage(f"RL: {cfg.rl_algo}, {rl_cfg.train.steps} rollouts of {rl_cfg.prompts_per_step} prompts × "
                    f"{rl_cfg.group_size} samples, lr {rl_cfg.train.lr:g}, beta {rl_cfg.beta:g}, rewarded by the "
                    "reward model", log)
        models["rl"], _ = train_rl(_copy(sft), tok, rl_cfg, ref_model=sft, reward_fn=rm, progress=progress)
        seconds["rl"] = time.perf_counter() - t0

    t0 = _stage(f"evaluation: {cfg.eval_prompts} held-out prompts, gold judge", log)
    problems = world.heldout_prompts(cfg.eval_prompts, seed=cfg.seed)
    kl_problems = world.heldout_prompts(cfg.kl_prompts, seed=cfg.seed + 1)
    for name, model in models.items():
        ev = evaluate_chat(model, tok, problems)
        row = {k: ev.overall[k] for k in ("eos_rate", "correct_rate", "gold_score")}
        row["by_family_gold"] = {f: d["gold_score"] for f, d in ev.by_family.items()}
        scores = torch.tensor([r[2] for r in ev.rows], dtype=torch.float64)
        correct = torch.tensor(ev.correct, dtype=torch.float64)
        if name == "sft":
            sft_scores, sft_correct = scores, correct
        elif name in ("dpo", "rl"):  # paired with SFT on the same prompts: the gains and their standard errors
            for key, diff in (("gain_over_sft", scores - sft_scores), ("correct_gain_over_sft", correct - sft_correct)):
                row[key] = float(diff.mean())
                row[f"{key}_stderr"] = float(diff.std() / len(diff) ** 0.5) if len(diff) > 1 else 0.0
        if name in ("dpo", "rl"):
            kl = sampled_kl(model, sft, tok, kl_problems, num_samples=4, seed=cfg.seed)
            row["kl_to_sft"], row["kl_to_sft_stderr"] = kl.kl, kl.stderr
        elif name == "sft":
            row["kl_to_sft"], row["kl_to_sft_stderr"] = 0.0, 0.0
        results["models"][name] = row
        log(f"{name:>4}: gold {row['gold_score']:+.3f}  correct {row['correct_rate']:.2f}  "
            f"eos {row['eos_rate']:.2f}" + (f"  KL to SFT {row['kl_to_sft']:.2f}" if "kl_to_sft" in row else ""))
    seconds["eval"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start

    if out is not None:
        write_report(results, out)
        ckpt = out / "checkpoints"
        for name in ("sft", "dpo", "rl"):
            if name in models and (name != "sft" or "sft" in cfg.stages):
                save_model(models[name], tok, ckpt / name, overwrite=True)
        if "rm" in cfg.stages:
            if cfg.reward_model == "check":  # the checker names its frozen models, saved beside it
                save_reward_model(taste, tok, ckpt / "rm-taste", overwrite=True)
                rm.names = {"taste": str((ckpt / "rm-taste").resolve()),
                            "reference": str((ckpt / "sft").resolve()) if "sft" in cfg.stages else "sft-tiny"}
            save_reward_model(rm, tok, ckpt / "rm", overwrite=True)
        log(f"\nwrote {out / 'results.md'}, results.json, summary.png and checkpoints/")
    return results


_LABELS = {"base": "base (pretrained)", "sft": "SFT", "dpo": "DPO", "rl": "RL"}


def pipeline_markdown(results: dict) -> str:
    """The results table of a pipeline run (`results.json` as a dict) as markdown: what `results.md` holds."""
    cfg = results["config"]
    lines = ["# rlhfbook-lab pipeline", "",
             f"{'fast' if cfg['fast'] else 'full'} mode, seed {cfg['seed']}; {cfg['eval_prompts']} held-out "
             "prompts answered greedily, judged by the world's gold judge.", "",
             "| model | gold score | correct | ends its turn | KL to SFT (nats/reply) |",
             "|---|---|---|---|---|"]
    for name, row in results["models"].items():
        label = _LABELS.get(name, name)
        if name == "rl":
            label = f"RL ({cfg['rl_algo']}, {cfg.get('reward_model', 'bt')} reward model)"
        kl = f"{row['kl_to_sft']:.2f} ± {row['kl_to_sft_stderr']:.2f}" if "kl_to_sft" in row else "—"
        lines.append(f"| {label} | {row['gold_score']:+.3f} | {row['correct_rate']:.2f} | {row['eos_rate']:.2f} "
                     f"| {kl} |")
    gains = [f"{_LABELS.get(n, n)} {row['gain_over_sft']:+.3f} ± {row['gain_over_sft_stderr']:.3f}"
             for n, row in results["models"].items() if "gain_over_sft" in row]
    if gains:
        lines += ["", "Gold gain over SFT, paired on the same prompts (± standard error): " + ", ".join(gains) + "."]
    correct = [f"{_LABELS.get(n, n)} {row['correct_gain_over_sft']:+.3f} ± {row['correct_gain_over_sft_stderr']:.3f}"
               for n, row in results["models"].items() if "correct_gain_over_sft" in row]
    if correct:
        lines += ["", "Correctness change over SFT, paired (± standard error): " + ", ".join(correct) + "."]
    if "reward_model" in results:
        rm = results["reward_model"]
        kinds = (f" (taste pairs {rm['taste_accuracy']:.3f}, pairs where one reply is right "
                 f"{rm['correctness_accuracy']:.3f})" if "correctness_accuracy" in rm else "")
        lines += ["", f"Reward model{': ' + rm['name'] if 'name' in rm else ''}. Held-out accuracy "
                  f"{rm['heldout_accuracy']:.3f} on {rm['heldout_pairs']} pairs{kinds}; Bayes ceiling of the labels "
                  f"{rm['bayes_ceiling']:.3f}."]
    secs = results["seconds"]
    lines += ["", "Seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()), ""]
    return "\n".join(lines)


def write_report(results: dict, out: str | Path) -> None:
    """Write ``results.json``, ``results.md`` and ``summary.png`` into ``out``."""
    import matplotlib  # deferred: only a report with a figure needs it

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # deferred: after the backend is chosen

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(pipeline_markdown(results))

    names = list(results["models"])
    gold = [results["models"][n]["gold_score"] for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    colors = ["#999999", "#4C72B0", "#DD8452", "#55A868"][:len(names)]
    bars = ax.bar([_LABELS.get(n, n) for n in names], gold, color=colors)
    ax.axhline(0, color="k", lw=0.6)
    ax.bar_label(bars, fmt="%+.2f")
    ax.set_ylabel("gold score (held-out, greedy)")
    ax.set_title("each stage, judged by the gold judge")
    ax = axes[1]
    for n in names:
        row = results["models"][n]
        if "kl_to_sft" in row:
            ax.errorbar(row["kl_to_sft"], row["gold_score"], xerr=row["kl_to_sft_stderr"], fmt="o", capsize=3)
            ax.annotate(_LABELS.get(n, n), (row["kl_to_sft"], row["gold_score"]), textcoords="offset points",
                        xytext=(6, 4))
    ax.set_xlabel("KL(policy ‖ SFT) per reply (nats)")
    ax.set_ylabel("gold score")
    ax.set_title("gain against distance from SFT")
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=120)
    plt.close(fig)
