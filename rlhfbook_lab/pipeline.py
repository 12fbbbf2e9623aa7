"""The whole course arc in one command (``rlhfbook-lab pipeline``): base → SFT → reward model → DPO → RL, each
judged by the world's gold judge on the same held-out prompts.

Stages (each calls the package's own trainer; nothing here is a second implementation):

1. **base** — the shipped pretrained ``base-tiny`` (pretraining it again is ``rlhfbook-lab pretrain``, ~9 min
   on 2 cores, so the arc starts from its checkpoint).
2. **SFT** — :func:`rlhfbook_lab.sft.sft_from_base` on the shipped instruction data (``data/sft``).
3. **Reward model** — :class:`~rlhfbook_lab.reward_trainer.RewardModel` on the SFT backbone, trained with the
   Bradley-Terry loss on the shipped preference pairs (``data/preferences``), its held-out accuracy reported
   next to the Bayes ceiling of the labels, then normalised to mean 0 / std 1 on the SFT policy's samples.
4. **DPO** — :func:`rlhfbook_lab.dpo_trainer.train_dpo` from the SFT model on the same pairs.
5. **RL** — :func:`rlhfbook_lab.rl.train_rl` (GRPO by default, ``rl_algo="ppo"`` for PPO) from the SFT model,
   rewarded by the reward model of stage 3, with a KL penalty to the SFT model.

Then every model answers the same held-out prompts greedily (:func:`~rlhfbook_lab.evaluation.evaluate_chat`:
end-of-turn rate, correctness, gold score) and, for the models trained from SFT, their KL to it is estimated on
their own samples (:func:`~rlhfbook_lab.evaluation.sampled_kl`). Everything goes to ``out``:

- ``results.json`` and ``results.md`` (one table, a row per model, and the reward model's accuracy vs ceiling);
- ``summary.png`` (gold score per stage; gold score against KL to SFT);
- ``checkpoints/{sft,rm,dpo,rl}`` — loadable with ``rlhfbook-lab sample --model <folder>``.

Two speeds: the default (≤ 10 min on 2 CPU cores) and ``fast=True`` (≤ 2 min, shorter runs of every stage and
fewer evaluation prompts: the arc and its plumbing, with noisier numbers).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import world
from .evaluation import evaluate_chat, sampled_kl
from .models import check_writable, load_model, save_model

__all__ = ["PipelineConfig", "run_pipeline", "write_report"]

STAGES = ("sft", "rm", "dpo", "rl")


@dataclass
class PipelineConfig:
    """Step counts and sizes of each stage. ``PipelineConfig.fast()`` is the ≤ 2 min version."""

    sft_steps: int = 600
    """SFT optimiser steps (the shipped ``sft-tiny`` recipe uses 800; 600 reach nearly the same quality)."""
    rm_steps: int | None = None
    """Reward-model steps; ``None``: the shipped ``rm-tiny`` recipe (``reward_trainer.shipped_rm_config``)."""
    dpo_steps: int = 150
    """DPO steps."""
    dpo_batch_size: int = 16
    """Pairs per DPO step."""
    dpo_beta: float = 0.1
    """DPO's β."""
    rl_algo: str = "grpo"
    """``"grpo"``, ``"ppo"``, ``"rloo"`` or ``"reinforce"``."""
    rl_steps: int | None = None
    """RL steps (rollout + update); ``None``: the algorithm's preset (``RLConfig.preset`` / ``RLConfig.fast``)."""
    eval_prompts: int = 200
    """Held-out prompts every model answers (greedy)."""
    kl_prompts: int = 64
    """Held-out prompts on which KL to SFT is estimated (4 samples each)."""
    seed: int = 0
    stages: tuple[str, ...] = field(default=STAGES)
    """Which stages train (a subset of ``STAGES``). Without ``"sft"`` the arc uses the shipped ``sft-tiny`` (the
    same recipe, 800 steps) as its SFT model; without ``"rm"``, the shipped ``rm-tiny``."""
    fast: bool = False

    @classmethod
    def fast_config(cls, **overrides) -> "PipelineConfig":
        """The arc in ≤ 2 min on 2 CPU cores: the shipped ``sft-tiny`` and ``rm-tiny`` stand in for the SFT and
        reward-model stages (a useful SFT model needs ~3 min of training: held-out addition arrives late; the
        reward model ~3 more), and the DPO and RL runs are short. The numbers are noisier; the plumbing is the same."""
        kw = dict(stages=("dpo", "rl"), dpo_steps=30, dpo_batch_size=8,
                  rl_steps=None, eval_prompts=64, kl_prompts=32, fast=True)
        kw.update(overrides)
        return cls(**kw)

    def __post_init__(self):
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"stages must be a subset of {STAGES}; got unknown {bad}")
        if self.rm_steps is not None and self.rm_steps < 1:
            raise ValueError(f"rm_steps must be >= 1 or None; got {self.rm_steps}")
        for name in ("sft_steps", "dpo_steps", "dpo_batch_size", "eval_prompts",
                     "kl_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.rl_steps is not None and self.rl_steps < 1:
            raise ValueError(f"rl_steps must be >= 1 or None; got {self.rl_steps}")
        if not self.dpo_beta > 0:
            raise ValueError(f"dpo_beta must be > 0; got {self.dpo_beta}")


def _stage(name: str, log) -> float:
    log(f"\n=== {name} ===")
    return time.perf_counter()


def _copy(model):
    import copy

    return copy.deepcopy(model)


def run_pipeline(cfg: PipelineConfig | None = None, out: str | Path | None = None, overwrite: bool = False,
                 progress: bool = True, log=print) -> dict:
    """Run the arc; return (and, with ``out``, write) the results. See the module docstring."""
    from .dpo_trainer import DPOConfig, train_dpo
    from .preference_data import load_preference_file
    from .reward_trainer import (
        RewardModel,
        evaluate_reward_model,
        load_reward_model,
        normalize_rm,
        save_reward_model,
        shipped_rm_config,
        train_reward_model,
    )
    from .sft import SFTConfig, sft_from_base

    cfg = cfg or PipelineConfig()
    if out is not None:  # fail before training, not after
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass --overwrite to replace it")
        check_writable(out.parent if not out.exists() else out)
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
    if "rm" in cfg.stages:
        _stage(f"reward model: trained on {len(train_pairs)} preference pairs (the rm-tiny recipe)", log)
        rm = RewardModel.from_causal_lm(sft, seed=cfg.seed)
        rm_cfg = shipped_rm_config()
        rm_cfg.train.seed = cfg.seed
        if cfg.rm_steps is not None:
            rm_cfg.train.steps = cfg.rm_steps
            rm_cfg.train.warmup_steps = min(rm_cfg.train.warmup_steps, max(cfg.rm_steps // 10, 1))
        train_reward_model(rm, tok, train_pairs, rm_cfg, progress=progress)
        normalize_rm(rm, tok, sft)
    else:
        _stage("reward model: the shipped rm-tiny (rlhfbook-lab rm)", log)
        rm, _ = load_reward_model("rm-tiny")
        rm_cfg = shipped_rm_config()
    ev = evaluate_reward_model(rm, tok, heldout_pairs, rm_cfg.max_length)
    results["reward_model"] = {"heldout_accuracy": ev.accuracy, "bayes_ceiling": ev.bayes_ceiling,
                               "heldout_pairs": ev.num_pairs, "ece": float(ev.calibration.ece)}
    log(f"reward model: held-out accuracy {ev.accuracy:.3f} (Bayes ceiling {ev.bayes_ceiling:.3f})")
    seconds["rm"] = time.perf_counter() - t0

    if "dpo" in cfg.stages:
        t0 = _stage(f"DPO: {cfg.dpo_steps} steps, beta {cfg.dpo_beta}", log)
        dpo_cfg = DPOConfig(beta=cfg.dpo_beta, batch_size=cfg.dpo_batch_size, precompute_ref_logps=True)
        dpo_cfg.train.steps = cfg.dpo_steps
        dpo_cfg.train.seed = cfg.seed
        models["dpo"] = _copy(sft)
        # one pass over as many pairs as the run visits, so precomputing the reference costs no more than it saves
        decisive = [r for r in train_pairs if r.get("label", 1.0) == 1.0]
        order = torch.randperm(len(decisive), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        dpo_pairs = [decisive[i] for i in order[:cfg.dpo_steps * cfg.dpo_batch_size]]
        train_dpo(models["dpo"], tok, dpo_pairs, dpo_cfg, ref_model=sft, progress=progress)
        seconds["dpo"] = time.perf_counter() - t0

    if "rl" in cfg.stages:
        from .rl import RLConfig, train_rl

        overrides = {"seed": cfg.seed, "eval_prompts": 0}  # every model is judged below, on the same prompts
        if cfg.rl_steps is not None:
            overrides["steps"] = cfg.rl_steps
        rl_cfg = (RLConfig.fast if cfg.fast else RLConfig.preset)(cfg.rl_algo, **overrides)
        t0 = _stage(f"RL: {cfg.rl_algo}, {rl_cfg.steps} steps, rewarded by the reward model", log)
        models["rl"], _ = train_rl(_copy(sft), tok, rl_cfg, ref_model=sft, reward_fn=rm, progress=progress)
        seconds["rl"] = time.perf_counter() - t0

    t0 = _stage(f"evaluation: {cfg.eval_prompts} held-out prompts, gold judge", log)
    problems = world.heldout_prompts(cfg.eval_prompts, seed=cfg.seed)
    kl_problems = world.heldout_prompts(cfg.kl_prompts, seed=cfg.seed + 1)
    for name, model in models.items():
        ev = evaluate_chat(model, tok, problems)
        row = {k: ev.overall[k] for k in ("eos_rate", "correct_rate", "gold_score")}
        row["by_family_gold"] = {f: d["gold_score"] for f, d in ev.by_family.items()}
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
            save_reward_model(rm, tok, ckpt / "rm", overwrite=True)
        log(f"\nwrote {out / 'results.md'}, results.json, summary.png and checkpoints/")
    return results


_LABELS = {"base": "base (pretrained)", "sft": "SFT", "dpo": "DPO", "rl": "RL"}


def _markdown(results: dict) -> str:
    cfg = results["config"]
    lines = ["# rlhfbook-lab pipeline", "",
             f"{'fast' if cfg['fast'] else 'full'} mode, seed {cfg['seed']}; {cfg['eval_prompts']} held-out "
             "prompts answered greedily, judged by the world's gold judge.", "",
             "| model | gold score | correct | ends its turn | KL to SFT (nats/reply) |",
             "|---|---|---|---|---|"]
    for name, row in results["models"].items():
        label = _LABELS.get(name, name)
        if name == "rl":
            label = f"RL ({cfg['rl_algo']}, reward model)"
        kl = f"{row['kl_to_sft']:.2f} ± {row['kl_to_sft_stderr']:.2f}" if "kl_to_sft" in row else "—"
        lines.append(f"| {label} | {row['gold_score']:+.3f} | {row['correct_rate']:.2f} | {row['eos_rate']:.2f} "
                     f"| {kl} |")
    if "reward_model" in results:
        rm = results["reward_model"]
        lines += ["", f"Reward model: held-out accuracy {rm['heldout_accuracy']:.3f} on {rm['heldout_pairs']} pairs; "
                  f"Bayes ceiling of the labels {rm['bayes_ceiling']:.3f}."]
    secs = results["seconds"]
    lines += ["", "Seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()), ""]
    return "\n".join(lines)


def write_report(results: dict, out: str | Path) -> None:
    """Write ``results.json``, ``results.md`` and ``summary.png`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(_markdown(results))

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
