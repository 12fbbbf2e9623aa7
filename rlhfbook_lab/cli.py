"""The command line: ``rlhfbook-lab <command>``. Run ``rlhfbook-lab --help`` for the list."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _cmd_tokenizer(args) -> None:
    from .tokenizer import build_and_save

    tok = build_and_save(args.out)
    print(f"tokenizer with {len(tok)} tokens written to {args.out or 'data/tokenizer'}")


def _cmd_pretrain(args) -> None:
    from .paths import CHECKPOINTS
    from .pretrain import PretrainConfig, heldout_loss, prefix_accuracy, pretrain
    from .tokenizer import load_tokenizer

    cfg = PretrainConfig(preset=args.preset)
    cfg.train.steps = args.steps or cfg.train.steps
    cfg.train.seed = args.seed
    out = Path(args.out) if args.out else CHECKPOINTS / f"base-{args.preset}"
    tok = load_tokenizer()
    model, history = pretrain(cfg, tok, out=out, eval_every=args.eval_every, overwrite=args.overwrite)
    acc = prefix_accuracy(model, tok)
    print(json.dumps({"out": str(out), "steps": cfg.train.steps, "seconds": round(history["charts/wall_time"][0], 1),
                      "final_train_loss": round(history["losses/train"][-1], 4),
                      "heldout_loss": round(heldout_loss(model, tok), 4),
                      "prefix_accuracy": {k: round(v, 3) for k, v in acc.items()}}, indent=2))


def _cmd_sample(args) -> None:
    from . import world
    from .generation import generate
    from .models import load_model
    from .paths import CHECKPOINTS

    name = args.model or os.environ.get("RLHFBOOK_MODEL") or \
        ("sft-tiny" if (CHECKPOINTS / "sft-tiny").exists() else "base-tiny")
    model, tok = load_model(name)
    print(f"model: {name}", file=sys.stderr)
    problems = world.heldout_prompts(args.n, seed=args.seed)
    t0 = time.perf_counter()
    if args.raw:  # a base model: continue plain statement prefixes
        items = world.statement_prefixes(args.n, seed=args.seed)
        gen = generate(model, tok, [p for _, p in items], chat=False, max_new_tokens=24,
                       temperature=args.temperature, greedy=args.temperature == 0, seed=args.seed)
        rows = [(prefix, prefix + text.split("\n")[0], world.is_correct(pr, prefix + text.split("\n")[0]))
                for (pr, prefix), text in zip(items, gen.texts)]
        for prefix, line, ok in rows:
            print(f"{'✓' if ok else '✗'} {prefix!r:32} → {line!r}")
        print(f"correct: {sum(r[2] for r in rows)}/{len(rows)}")
    else:
        gen = generate(model, tok, [p.prompt for p in problems], max_new_tokens=48,
                       temperature=args.temperature, greedy=args.temperature == 0, seed=args.seed)
        scores = [world.gold_score(p, t, allow_empty=True) for p, t in zip(problems, gen.texts)]
        for p, t, s in zip(problems, gen.texts, scores):
            print(f"[gold {s:+.2f}] {p.prompt!r} → {t!r}")
        print(f"mean gold score: {sum(scores) / len(scores):+.3f}")
    print(f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rlhfbook-lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tokenizer", help="rebuild the world's character-level tokenizer (data/tokenizer)")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_cmd_tokenizer)

    p = sub.add_parser("pretrain", help="train the base model from scratch on the world corpus")
    p.add_argument("--preset", default="tiny", help="model preset: tiny (CPU) or small (GPU)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the preset's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default data/checkpoints/base-<preset>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: only at the end)")
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("sample", help="sample replies to held-out prompts and score them with the gold judge")
    p.add_argument("--model", default=None, help="checkpoint name, folder or hub id (default $RLHFBOOK_MODEL, "
                                                  "else sft-tiny if shipped, else base-tiny)")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw", action="store_true", help="continue plain statements instead of chatting "
                                                      "(what a base model was trained on)")
    p.set_defaults(func=_cmd_sample)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError, PermissionError) as e:
        parser.exit(2, f"rlhfbook-lab {args.command}: error: {e}\n")


if __name__ == "__main__":
    main()
