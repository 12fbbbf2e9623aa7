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


def _cmd_sft_data(args) -> None:
    from .data import SFT_DATA_DIR, SFT_HELDOUT_SIZE, SFT_TRAIN_SIZE, build_instruction_files

    n_train, n_heldout = args.n_train or SFT_TRAIN_SIZE, args.n_heldout or SFT_HELDOUT_SIZE
    paths = build_instruction_files(args.out, n_train=n_train, n_heldout=n_heldout, seed=args.seed)
    print(json.dumps({"out": str(args.out or SFT_DATA_DIR), "n_train": n_train, "n_heldout": n_heldout,
                      "seed": args.seed, "bytes": {k: p.stat().st_size for k, p in paths.items()}}, indent=2))


def _cmd_sft(args) -> None:
    from . import world
    from .data import SFT_DATA_DIR, build_instruction_files
    from .evaluation import evaluate_chat, sample_groups
    from .paths import CHECKPOINTS
    from .sft import SHIPPED_QUALITY, SFTConfig, sft_from_base

    cfg = SFTConfig()
    cfg.train.steps = args.steps or cfg.train.steps
    cfg.train.seed = args.seed
    if args.pretrain_mix is not None:
        cfg.pretrain_mix = args.pretrain_mix
    out = Path(args.out) if args.out else CHECKPOINTS / "sft-tiny"
    data_dir = Path(args.data) if args.data else SFT_DATA_DIR
    if not (data_dir / "sft_train.jsonl").exists() or not (data_dir / "sft_heldout.jsonl").exists():
        build_instruction_files(data_dir)  # the same files `rlhfbook-lab sft-data` writes
        print(f"wrote the instruction data to {data_dir}", file=sys.stderr)
    t0 = time.perf_counter()
    model, tok, history = sft_from_base(cfg, base=args.base, out=out, num_examples=args.examples,
                                        overwrite=args.overwrite, data_dir=data_dir)
    q = SHIPPED_QUALITY
    ev = evaluate_chat(model, tok, world.heldout_prompts(q["n_prompts"], seed=0))
    groups = sample_groups(model, tok, world.heldout_prompts(q["n_group_prompts"], seed=1, families=("addition",)),
                           k=q["k"], seed=0)
    print(json.dumps({
        "out": str(out), "steps": cfg.train.steps, "train_seconds": round(history["charts/wall_time"][0], 1),
        "total_seconds": round(time.perf_counter() - t0, 1), "examples": history["data/num_examples"][0],
        "final_train_loss": round(history["losses/train"][-1], 4),
        "heldout_loss": round(history["eval/heldout_loss"][-1], 4),
        "greedy_heldout": {f: {k: round(v, 3) for k, v in d.items()} for f, d in {**ev.by_family,
                                                                                  "all": ev.overall}.items()},
        "addition_mixed_share": round(groups.mixed_share, 3),
        "addition_sample_accuracy": round(groups.sample_accuracy, 3),
    }, indent=2))


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

    p = sub.add_parser("sft-data", help="write the instruction data (data/sft/sft_train.jsonl, sft_heldout.jsonl)")
    p.add_argument("--out", default=None, help="output folder (default data/sft)")
    p.add_argument("--n-train", type=int, default=None, help="training conversations (default: the shipped size)")
    p.add_argument("--n-heldout", type=int, default=None, help="held-out conversations (default: the shipped size)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sft_data)

    p = sub.add_parser("sft", help="instruction-tune the base model on data/sft (writes data/checkpoints/sft-tiny)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: SFTConfig's recipe)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default data/checkpoints/sft-tiny)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
    p.add_argument("--base", default="base-tiny", help="the model to fine-tune (checkpoint name or folder)")
    p.add_argument("--data", default=None, help="folder with sft_train.jsonl and sft_heldout.jsonl (default "
                                                "data/sft; written first with `sft-data`'s defaults if missing)")
    p.add_argument("--examples", type=int, default=None, help="use only the first N training conversations")
    p.add_argument("--pretrain-mix", type=float, default=None, help="share of each batch that is pretraining "
                                                                    "text (default: SFTConfig's, 0)")
    p.set_defaults(func=_cmd_sft)

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
