"""Over-optimization in direct alignment (RLHF Book ch. 14; Rafailov et al. 2024, "Scaling Laws for Reward Model
Overoptimization in Direct Alignment Algorithms"), with the world's exact gold judge.

DPO has no reward model to over-optimise, yet Rafailov et al. find the same hump as Gao et al.: trained longer (more
epochs) or with a smaller β, the policy moves further from the reference in KL and its gold score first rises, then
falls. Here: DPO (``trainers.dpo.train_dpo``) from ``sft-tiny`` on the over-optimization study's pairs (the SFT
policy's own samples labelled by the ``gold`` annotator, ``overoptimization.proxy_pairs``), at several β, for
several epochs; at checkpoints (``evals_per_epoch`` per epoch) one sampled reply (T = 1) per held-out prompt is
gold-judged, and KL(π ‖ π_SFT) is measured on the policy's own samples (``evaluation.sampled_kl``, the exact
per-token KL summed over the reply). The result (:func:`dpo_overoptimization`) is gold against d = √KL per β,
:func:`overoptimization.peak_then_fall` on each, and Gao's RL form fitted where it can be.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.equations.overoptimization import fit_overoptimization
from rlhfbook_lab.lm.evaluation import evaluate_chat, sampled_kl
from rlhfbook_lab.lm.forward import make_reference_model
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import subsample_pairs
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.recipes.overoptimization import fast_config, gold_breakdown, peak_then_fall, proxy_pairs

__all__ = ["DPO_HISTORY", "DPO_HISTORY_COMMAND", "DPOOveroptConfig", "RECIPES", "checkpoint_eval",
           "dpo_overoptimization", "fast_dpo_config", "load_dpo_history"]


@dataclass
class DPOOveroptConfig:
    """The sizes of the direct-alignment over-optimization run."""

    betas: tuple[float, ...] = (0.05, 0.5)
    """DPO's β values, one run each from the same SFT model on the same pairs."""
    epochs: int = 6
    """Passes over the pairs per run."""
    pairs: int = 256
    """Pairs trained on: a seeded subset of the study's gold-annotator pairs (an error if fewer exist)."""
    batch_size: int = 8
    """Pairs per DPO step."""
    lr: float = 1e-4
    """Peak learning rate (4 warm-up steps, then the shared loop's schedule)."""
    evals_per_epoch: int = 2
    """Checkpoints judged per epoch (and the start and the last step)."""
    eval_prompts: int = 256
    """Held-out prompts per checkpoint: one sampled reply each, gold-judged, and the KL on the policy's samples."""
    seed: int = 0
    """Seeds the pairs (``overoptimization.proxy_pairs`` with the fast study's prompts), the subset, the order of
    training and the checkpoints' samples."""

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if not self.betas:
            raise ValueError("betas must hold at least one DPO β")
        for b in self.betas:
            check_number("betas", b, minimum=0, strict=True)
        for name in ("epochs", "batch_size", "evals_per_epoch", "eval_prompts"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("pairs", self.pairs, minimum=2)
        check_int("seed", self.seed, minimum=0)
        check_number("lr", self.lr, minimum=0, strict=True)


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"pairs": 64, "epochs": 2, "eval_prompts": 16, "betas": (0.1,)},
}
"""``"full"`` (the defaults: what :data:`DPO_HISTORY` holds) and ``"fast"`` (a smoke run)."""


def checkpoint_eval(model, ref_model, tokenizer, problems, seed: int = 0) -> dict:
    """One checkpoint: one reply per problem sampled at T = 1 (``evaluation.evaluate_chat``), its gold mean and
    standard error, the correct rate, the gold split by feature (``overoptimization.gold_breakdown``), and
    KL(π ‖ π_ref) per reply on the policy's own samples (``evaluation.sampled_kl``: exact per-token KL, summed)."""
    ev = evaluate_chat(model, tokenizer, problems, greedy=False, seed=seed)
    g = np.array([s for _, _, s in ev.rows])
    kl = sampled_kl(model, ref_model, tokenizer, problems, seed=seed)
    return {"gold": float(g.mean()), "gold_se": float(g.std(ddof=1) / math.sqrt(len(g))) if len(g) > 1 else 0.0,
            "correct": float(np.mean(ev.correct)), "kl": kl.kl, "kl_se": kl.stderr, "d": math.sqrt(max(kl.kl, 0.0)),
            "features": gold_breakdown([p for p, _, _ in ev.rows], [r for _, r, _ in ev.rows]),
            "sample": list(ev.rows[0][:2])}


def dpo_overoptimization(cfg: DPOOveroptConfig | None = None, policy: str = "sft-tiny", pairs=None,
                         log=print) -> dict:
    """DPO at each ``cfg.betas`` from ``policy``; per run, at the start and every checkpoint: step, epoch, gold
    (mean, s.e.), correct rate, KL and d = √KL (:func:`checkpoint_eval`); then ``peak`` (``peak_then_fall`` on
    the gold) and ``fit`` (Gao's RL form d(α − β log d) on gold − start, or ``{"error"}``).

    Args:
        pairs: labelled pairs (``prompt``, ``chosen``, ``rejected``); default the over-optimization study's
            (``proxy_pairs`` with ``overoptimization.fast_config(seed=cfg.seed)``'s prompts).
        log: where progress lines go (``None`` for silence).
    """
    from rlhfbook_lab.trainers.dpo import dpo_config, train_dpo  # deferred: it imports `datasets` (≈ 0.5 s), which
    # lesson 14, loading the shipped result only, does not need
    cfg = cfg or DPOOveroptConfig()
    say = log or (lambda *a, **k: None)
    t_start = time.process_time()
    sft, tok = load_model(policy)
    if pairs is None:
        pairs = proxy_pairs(sft, tok, fast_config(seed=cfg.seed)).rows
    if len(pairs) < cfg.pairs:
        raise ValueError(f"pairs: {cfg.pairs} asked, but only {len(pairs)} labelled pairs are there")
    rows = subsample_pairs(list(pairs), cfg.pairs, cfg.seed)
    problems = world.heldout_prompts(cfg.eval_prompts, seed=cfg.seed + 1)
    per_epoch = math.ceil(len(rows) / cfg.batch_size)
    steps = cfg.epochs * per_epoch
    every = max(1, per_epoch // cfg.evals_per_epoch)
    runs = []
    for beta in cfg.betas:
        t0 = time.process_time()
        model, _ = load_model(policy)
        ref = make_reference_model(model)
        points = [{"step": 0, **checkpoint_eval(model, ref, tok, problems, cfg.seed)}]

        def eval_fn(m, step, points=points, ref=ref):
            points.append({"step": step, **checkpoint_eval(m, ref, tok, problems, cfg.seed)})
            return {"eval/gold": points[-1]["gold"], "eval/kl": points[-1]["kl"]}

        dcfg = dpo_config("dpo", beta=beta, batch_size=cfg.batch_size,
                          **{"train.steps": steps, "train.lr": cfg.lr, "train.warmup_steps": min(4, steps),
                             "train.seed": cfg.seed})
        history = train_dpo(model, tok, rows, dcfg, ref_model=ref, progress=False, eval_fn=eval_fn,
                            eval_every=every)
        run = {"beta": beta, **{k: [p[k] for p in points] for k in points[0]},
               "epoch": [p["step"] / per_epoch for p in points],
               "accuracy": history.get("rewards/accuracies", [])[-1:]}
        run["peak"] = peak_then_fall(run["gold"], run["gold_se"])
        try:
            d = np.array(run["d"])
            d[0] = 0.0  # the start is the reference itself
            f = fit_overoptimization(d, np.array(run["gold"]), form="rl", subtract_start=True)
            run["fit"] = {"alpha": f.alpha, "beta": f.beta, "r2": f.r2, "peak_d": f.peak_d}
        except ValueError as e:
            run["fit"] = {"error": str(e)}
        run["cpu_seconds"] = time.process_time() - t0
        runs.append(run)
        p = run["peak"]
        say(f"DPO β={beta}: gold {p['start']:+.3f} → peak {p['peak']:+.3f} (epoch "
            f"{run['epoch'][p['peak_index']]:.1f}, d {run['d'][p['peak_index']]:.2f}) → {p['final']:+.3f} ± "
            f"{p['final_se']:.3f} at d {run['d'][-1]:.2f} ({run['cpu_seconds']:.0f} CPU-s)")
    return {"config": asdict(cfg), "policy": policy, "pairs": len(rows), "steps_per_epoch": per_epoch,
            "runs": runs, "cpu_seconds": time.process_time() - t_start}


DPO_HISTORY = DATA_DIR / "overopt" / "dpo.json"
"""The shipped result of :func:`dpo_overoptimization` at the full recipe (lesson 14 plots and asserts from it)."""

DPO_HISTORY_COMMAND = ("OMP_NUM_THREADS=1 python -c 'import json; from rlhfbook_lab.recipes.dpo_overoptimization "
                       "import dpo_overoptimization as f; json.dump(f(), open(\"data/overopt/dpo.json\", \"w\"))'")
"""The command that regenerates :data:`DPO_HISTORY` (its ``cpu_seconds`` record how long it took): 465 CPU-s,
measured once on 2026-12-03 (675 s wall on the shared 2-core machine)."""


def load_dpo_history(path: str | Path | None = None) -> dict:
    """The shipped result of :func:`dpo_overoptimization` (:data:`DPO_HISTORY`, made by :data:`DPO_HISTORY_COMMAND`)."""
    path = Path(path) if path is not None else DPO_HISTORY
    if not path.is_file():
        raise ValueError(f"path: no DPO over-optimization result at {path}; make it with: {DPO_HISTORY_COMMAND}")
    result = json.loads(path.read_text())
    if not {"config", "runs"} <= set(result):
        raise ValueError(f"path: {path} is not a result of dpo_overoptimization")
    return result


def fast_dpo_config(**overrides) -> DPOOveroptConfig:
    """The fast recipe (``RECIPES["fast"]``) with overrides."""
    return build(DPOOveroptConfig, RECIPES, "fast", **overrides)
