"""Lesson 04's two SFT runs from the base model — plain, and with pretraining text replayed in every batch — as one
small JSON history the lesson's full mode plots and asserts from.

Each run (:func:`sft_run`) fine-tunes ``base-tiny`` with ``trainers.sft.sft`` on the shipped instruction data, then
measures what lesson 04 reads: the loss curve, greedy replies to held-out prompts (``evaluation.evaluate_chat``:
turn-ending, correctness per family, a few replies to show) and the elicitation measurement
(``evaluation.elicitation_report``: does the tuned model still state the facts of creatures no SFT example asks
about?). :func:`sft_replay_study` runs both arms with the same steps, batch and seed.

The full recipe (the shipped ``sft-tiny`` recipe, 800 steps × 16, twice) costs about 10 CPU-minutes, so lesson 04's
full mode loads the shipped result, :data:`HISTORY`, written by :data:`HISTORY_COMMAND`; ``RLHFBOOK_LIVE=1`` runs it
in the notebook instead. Fast mode (``RECIPES["fast"]``) always runs live.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build
from rlhfbook_lab.lm.data import build_sft_dataset
from rlhfbook_lab.lm.evaluation import elicitation_report, evaluate_chat
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.shipped_data import load_instruction_file
from rlhfbook_lab.paths import DATA_DIR
from rlhfbook_lab.trainers.sft import SFTConfig, sft

__all__ = [
    "HISTORY",
    "HISTORY_COMMAND",
    "RECIPES",
    "SFTReplayConfig",
    "elicitation_summary",
    "load_history",
    "sft_config",
    "sft_replay_study",
    "sft_run",
]


@dataclass
class SFTReplayConfig:
    """The sizes of lesson 04's two SFT runs. ``config.build(SFTReplayConfig, RECIPES, "fast")`` is its fast mode."""

    steps: int = 800
    """Optimizer steps of each run (the shipped ``sft-tiny`` recipe's)."""
    batch_size: int = 16
    """Conversations per step, replayed rows included."""
    replay_mix: float = 0.25
    """Share of each batch that is plain pretraining text in the replay run (``SFTConfig.pretrain_mix``)."""
    replay_statements: int = 20_000
    """Pretraining statements generated for the replay run's rows (``SFTConfig.pretrain_statements``)."""
    eval_prompts: int = 200
    """Held-out prompts (``world.heldout_prompts(n, seed=0)``) each tuned model answers greedily."""
    shown_replies: int = 4
    """Replies kept with their prompts, to print."""


RECIPES: dict[str, dict] = {
    "full": {},
    "fast": {"steps": 150, "batch_size": 4, "replay_statements": 4000, "eval_prompts": 40},
}
"""``"full"`` (the defaults: the shipped SFT recipe) and ``"fast"`` (lesson 04's fast mode)."""

HISTORY = DATA_DIR / "sft" / "replay_runs.json"
"""The full recipe's result as shipped (lesson 04's full mode plots and asserts from it)."""

HISTORY_COMMAND = "OMP_NUM_THREADS=1 python -m rlhfbook_lab.recipes.sft_replay --out data/sft/replay_runs.json"
"""The command that regenerates :data:`HISTORY` (each run's ``cpu_seconds`` records what it cost)."""


def _check(cfg: SFTReplayConfig) -> None:
    for name in ("steps", "batch_size", "replay_statements", "eval_prompts"):
        check_int(name, getattr(cfg, name), minimum=1)
    check_int("shown_replies", cfg.shown_replies, minimum=0)
    check_number("replay_mix", cfg.replay_mix, minimum=0.0, maximum=0.99)


def sft_config(cfg: SFTReplayConfig, pretrain_mix: float = 0.0) -> SFTConfig:
    """The ``SFTConfig`` of one run: the shipped recipe with ``cfg``'s steps and batch, and ``pretrain_mix``."""
    _check(cfg)
    out = SFTConfig(batch_size=cfg.batch_size, pretrain_mix=pretrain_mix, pretrain_statements=cfg.replay_statements)
    out.train.steps = cfg.steps
    return out


def elicitation_summary(report) -> dict[str, dict[str, float]]:
    """The rates of an ``evaluation.ElicitationReport`` (``base_knows``, ``sft_answers``, ``elicited``,
    ``sft_prefilled``, each ``{"train": …, "heldout": …}``), without its per-question rows."""
    return {k: dict(getattr(report, k)) for k in ("base_knows", "sft_answers", "elicited", "sft_prefilled")}


def _round(x: float) -> float:
    return float(f"{x:.4g}") if math.isfinite(x) else x


def sft_run(cfg: SFTReplayConfig, pretrain_mix: float, tokenizer, train_ds, base, progress: bool = False) -> dict:
    """Fine-tune a fresh ``base-tiny`` with :func:`sft_config` (``pretrain_mix`` of each batch replayed) on
    ``train_ds`` (``data.build_sft_dataset`` of the shipped training conversations) and measure it.

    Returns a JSON-ready dict: ``pretrain_mix``; ``history`` (``step`` and ``losses/train``, 4 significant
    digits); ``cpu_seconds`` of the training; ``eval`` (``overall`` and ``by_family`` rates of greedy replies to
    ``cfg.eval_prompts`` held-out prompts, and ``replies``, the first ``cfg.shown_replies`` as
    ``[prompt, reply, gold score]``); ``elicitation`` (:func:`elicitation_summary` against ``base``).
    """
    model, _ = load_model("base-tiny")
    t0 = time.process_time()
    history = sft(model, tokenizer, train_ds, sft_config(cfg, pretrain_mix), progress=progress)
    seconds = time.process_time() - t0
    ev = evaluate_chat(model, tokenizer, world.heldout_prompts(cfg.eval_prompts, seed=0))
    return {"pretrain_mix": pretrain_mix,
            "history": {"step": list(history["step"]), "losses/train": [_round(v) for v in history["losses/train"]]},
            "cpu_seconds": round(seconds, 1),
            "eval": {"overall": ev.overall, "by_family": ev.by_family,
                     "replies": [list(r) for r in ev.rows[:cfg.shown_replies]]},
            "elicitation": elicitation_summary(elicitation_report(base, model, tokenizer))}


def sft_replay_study(cfg: SFTReplayConfig | None = None, progress: bool = False) -> dict:
    """Both runs of lesson 04 (module docstring): ``{"config", "runs": {"plain", "replay"}}``, each run a
    :func:`sft_run` result."""
    cfg = cfg or SFTReplayConfig()
    _check(cfg)
    base, tok = load_model("base-tiny")
    train_ds = build_sft_dataset(tok, load_instruction_file("train"), SFTConfig().max_length)
    return {"config": asdict(cfg),
            "runs": {"plain": sft_run(cfg, 0.0, tok, train_ds, base, progress),
                     "replay": sft_run(cfg, cfg.replay_mix, tok, train_ds, base, progress)}}


def load_history(path: str | Path | None = None) -> dict:
    """The shipped result of :func:`sft_replay_study` (:data:`HISTORY`, made by :data:`HISTORY_COMMAND`)."""
    path = Path(path) if path is not None else HISTORY
    if not path.is_file():
        raise ValueError(f"path: no SFT replay history at {path}; make it with: {HISTORY_COMMAND}")
    result = json.loads(path.read_text())
    runs = result.get("runs", {})
    if set(result.get("config", {})) != {f.name for f in fields(SFTReplayConfig)} or set(runs) != {"plain", "replay"}:
        raise ValueError(f"path: {path} is not a result of sft_replay_study (config and runs plain/replay expected)")
    for name, run in runs.items():
        missing = {"pretrain_mix", "history", "cpu_seconds", "eval", "elicitation"} - set(run)
        if missing:
            raise ValueError(f"path: run {name!r} of {path} lacks {sorted(missing)}")
    return result


def main(argv: list[str] | None = None) -> None:
    """``python -m rlhfbook_lab.recipes.sft_replay --out FILE [--fast]``: run the study, write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m rlhfbook_lab.recipes.sft_replay",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help=f"the .json file to write (shipped: {HISTORY})")
    parser.add_argument("--fast", action="store_true", help="the fast recipe (lesson 04's fast mode)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.is_dir() or out.suffix != ".json":
        parser.error(f"--out: expected a .json file path; got {out}")
    result = sft_replay_study(build(SFTReplayConfig, RECIPES, "fast" if args.fast else "full"), progress=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}: " + ", ".join(f"{k} {r['cpu_seconds']} CPU-s" for k, r in result["runs"].items()))


if __name__ == "__main__":
    main()
