"""Lesson 07's pools and RLVR run (sections 3–5) as one small JSON history its full mode plots and asserts from.

A pool of ``samples`` replies at temperature 1 to each of ``problems`` held-out addition problems from ``sft-tiny``
(``sample_pool.sample_pool``), GRPO on the verifier's 0/1 reward with no KL for ``rl_steps`` rollouts
(``trainers.rl.train_rl``), and the same pool from the trained policy: pass@k, maj@k and best-of-k by gold for every
k (``sample_pool.scaling_table``), each problem's number of right replies, and greedy accuracy before and after.

The full recipe (200 problems × 256 samples, twice, and 60 rollouts) cost 528 CPU-s (measured once, 2026-12-03), so
lesson 07's full mode loads the shipped result, :data:`HISTORY`, written by :data:`HISTORY_COMMAND`;
``RLHFBOOK_LIVE=1`` runs it in the notebook instead. Fast mode (``RECIPES["fast"]``) always runs live.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.sample_pool import sample_pool, scaling_table
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.trainers.rl import RLConfig, train_rl

__all__ = [
    "HISTORY",
    "HISTORY_COMMAND",
    "RECIPES",
    "SharpeningConfig",
    "load_history",
    "dumps",
    "pool_summary",
    "rl_config",
    "rlvr_and_pool",
    "sharpening_study",
]


@dataclass
class SharpeningConfig:
    """The sizes of lesson 07's sections 3–5. ``config.build(SharpeningConfig, RECIPES, "fast")`` is its fast mode."""

    problems: int = 200
    """Held-out addition problems (``world.heldout_prompts(n, seed=0, families=("addition",))``)."""
    samples: int = 256
    """Replies per problem in each pool (temperature 1, seed 1)."""
    rl_steps: int = 60
    """GRPO rollouts on the verifier's reward (16 prompts × 8 replies each, lr ``rl_lr``, β = 0)."""
    rl_lr: float = 1e-4
    """GRPO's learning rate (section 4's sweep: 1e-4 helped most)."""
    shown_replies: int = 4
    """Replies of the first problem kept from each pool, to print."""


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"problems": 60, "samples": 32, "rl_steps": 20},
}
"""``"full"`` (the defaults) and ``"fast"`` (lesson 07's fast mode)."""

HISTORY = DATA_DIR / "reasoning" / "sharpening.json"
"""The full recipe's result as shipped (lesson 07's full mode plots and asserts from it)."""

HISTORY_COMMAND = ("OMP_NUM_THREADS=1 python -m rlhfbook_lab.recipes.rlvr_sharpening "
                   "--out data/reasoning/sharpening.json")
"""The command that regenerates :data:`HISTORY` (its ``cpu_seconds`` record what each part cost)."""

MAX_NEW_TOKENS = 24
"""Reply budget of the RL run and the greedy evaluations (sums are short)."""


def _check(cfg: SharpeningConfig) -> None:
    for name in ("problems", "samples", "rl_steps"):
        check_int(name, getattr(cfg, name), minimum=1)
    check_int("shown_replies", cfg.shown_replies, minimum=0)
    check_number("rl_lr", cfg.rl_lr, minimum=0.0)


def rl_config(cfg: SharpeningConfig) -> RLConfig:
    """Section 4's run: the GRPO preset, verifier reward on addition, β = 0, ``cfg.rl_steps`` rollouts."""
    _check(cfg)
    return RLConfig.preset("grpo", reward="verifier", families=("addition",), beta=0.0,
                           max_new_tokens=MAX_NEW_TOKENS, eval_prompts=0,
                           **{"train.steps": cfg.rl_steps, "train.lr": cfg.rl_lr})


def pool_summary(pool, shown_replies: int = 4) -> dict:
    """What the lesson reads of a ``sample_pool.Pool``: ``n``, ``counts`` (right replies per problem, an int array),
    ``table`` (``scaling_table``: ``k``, ``pass@k``, ``pass@k_plugin``, ``maj@k``, ``best_gold@k``, arrays),
    ``examples`` (the first problem's first replies), ``seconds``, ``replies_per_second``, ``tokens_per_second``."""
    return {"n": pool.n, "counts": pool.counts, "table": scaling_table(pool),
            "examples": list(pool.replies[0][:shown_replies]), "seconds": round(pool.seconds, 1),
            "replies_per_second": round(pool.replies_per_second, 1),
            "tokens_per_second": round(pool.tokens_per_second, 1)}


def rlvr_and_pool(model, tokenizer, problems, cfg: SharpeningConfig, progress: bool = False) -> dict:
    """Sections 4–5 of lesson 07 on ``model`` (trained **in place**: afterwards it is the RLVR policy): greedy
    accuracy on ``problems`` before, :func:`rl_config`'s GRPO run, greedy accuracy after, and the same pool as
    before from the trained policy. Returns ``{"history"`` (``step``, ``rewards/score``, ``kl/seq`` per
    rollout), ``"greedy_before"``, ``"greedy_after"``, ``"rl"`` (:func:`pool_summary`), ``"cpu_seconds"``
    (``rl``, ``rl_pool``)``}``."""
    greedy_before = evaluate_chat(model, tokenizer, problems, greedy=True, max_new_tokens=MAX_NEW_TOKENS)
    t0 = time.process_time()
    model, hist = train_rl(model, tokenizer, rl_config(cfg), progress=progress)
    seconds = {"rl": time.process_time() - t0}
    greedy_after = evaluate_chat(model, tokenizer, problems, greedy=True, max_new_tokens=MAX_NEW_TOKENS)
    t0 = time.process_time()
    after = sample_pool(model, tokenizer, problems, n=cfg.samples, seed=1)
    seconds["rl_pool"] = time.process_time() - t0
    return {"history": {k: list(hist[k]) for k in ("step", "rewards/score", "kl/seq")},
            "greedy_before": greedy_before.overall["correct_rate"],
            "greedy_after": greedy_after.overall["correct_rate"], "rl": pool_summary(after, cfg.shown_replies),
            "cpu_seconds": {k: round(v, 1) for k, v in seconds.items()}}


def sharpening_study(cfg: SharpeningConfig | None = None, policy: str = "sft-tiny", progress: bool = False) -> dict:
    """Sections 3–5 of lesson 07 (module docstring): ``{"config", "policy", "sft"`` (:func:`pool_summary` of
    ``policy``'s pool)``}`` and :func:`rlvr_and_pool`'s keys, ``cpu_seconds`` with ``sft_pool`` added."""
    cfg = cfg or SharpeningConfig()
    _check(cfg)
    problems = world.heldout_prompts(cfg.problems, seed=0, families=("addition",))
    model, tok = load_model(policy)
    t0 = time.process_time()
    before = pool_summary(sample_pool(model, tok, problems, n=cfg.samples, seed=1), cfg.shown_replies)
    seconds = time.process_time() - t0
    run = rlvr_and_pool(model, tok, problems, cfg, progress=progress)
    return {"config": asdict(cfg), "policy": str(policy), "sft": before, **run,
            "cpu_seconds": {"sft_pool": round(seconds, 1), **run["cpu_seconds"]}}


def _jsonable(x):
    """``x`` with arrays as lists, floats to 6 significant digits (NaN as null), NumPy scalars as Python's."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray | list | tuple):
        return [_jsonable(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(f"{float(x):.6g}") if math.isfinite(x) else None
    return x


def dumps(result: dict) -> str:
    """:func:`sharpening_study`'s result as the JSON text of :data:`HISTORY`."""
    return json.dumps(_jsonable(result), indent=1) + "\n"


def load_history(path: str | Path | None = None) -> dict:
    """The shipped result of :func:`sharpening_study` (:data:`HISTORY`, made by :data:`HISTORY_COMMAND`), with the
    pools' ``counts`` and ``table`` curves as NumPy arrays."""
    path = Path(path) if path is not None else HISTORY
    if not path.is_file():
        raise ValueError(f"path: no sharpening history at {path}; make it with: {HISTORY_COMMAND}")
    result = json.loads(path.read_text())
    missing = {"config", "sft", "rl", "history", "greedy_before", "greedy_after", "cpu_seconds"} - set(result)
    if missing or set(result["config"]) != {f.name for f in fields(SharpeningConfig)}:
        raise ValueError(f"path: {path} is not a result of sharpening_study (missing {sorted(missing)} or another "
                         "config)")
    for name in ("sft", "rl"):
        pool = result[name]
        pool["counts"] = np.asarray(pool["counts"])
        pool["table"] = {k: np.asarray(v) for k, v in pool["table"].items()}
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m rlhfbook_lab.recipes.rlvr_sharpening --out FILE [--fast]``: run the study, write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m rlhfbook_lab.recipes.rlvr_sharpening",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help=f"the .json file to write (shipped: {HISTORY})")
    parser.add_argument("--fast", action="store_true", help="the fast recipe (lesson 07's fast mode)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir() or out.suffix != ".json":
        parser.error(f"--out: expected a .json file path; got {out}")
    result = sharpening_study(build(SharpeningConfig, RECIPES, "fast" if args.fast else "full"), progress=True)
    out.write_text(dumps(result))
    print(f"wrote {out}: {result['cpu_seconds']} CPU-s")


if __name__ == "__main__":
    main()
