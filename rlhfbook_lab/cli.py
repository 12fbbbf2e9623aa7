"""The command line: ``rlhfbook-lab <command>``. Run ``rlhfbook-lab --help`` for the list, ``rlhfbook-lab <command>
--help`` for a command's flags.

The training commands take their settings from the algorithm's config dataclass: each field is a flag
(``--train.lr 3e-4``, or ``--lr 3e-4`` when the name is unique) whose help is the field's docstring, on top of the
named recipe (``--algo``, ``--loss``) and ``--fast`` (``rlhfbook_lab.config``). Bad input — a missing or empty file,
a folder where a file belongs, an unknown model, a number out of range — is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rlhfbook_lab import world
from rlhfbook_lab.apps.browser import find_chromium
from rlhfbook_lab.apps.chat_server import CHAT_HELP, add_chat_arguments, serve
from rlhfbook_lab.apps.slides import build_decks
from rlhfbook_lab.checks import OneLineParser, check_choice, check_int, check_number, one_line
from rlhfbook_lab.config import add_config_arguments, build, override, overrides_from_args
from rlhfbook_lab.lm import distributed
from rlhfbook_lab.lm.data import read_pairs
from rlhfbook_lab.lm.evaluation import evaluate_chat, sample_groups
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import check_output_folder, load_model
from rlhfbook_lab.lm.sample_pool import sample_pool, scaling_table
from rlhfbook_lab.lm.shipped_data import (
    PREF_DATA_DIR,
    PREF_PROMPTS,
    SFT_DATA_DIR,
    SFT_HELDOUT_SIZE,
    SFT_TRAIN_SIZE,
    build_instruction_files,
    build_preference_files,
    load_preference_file,
)
from rlhfbook_lab.lm.tokenizer import build_and_save, load_tokenizer
from rlhfbook_lab.paths import CHECKPOINTS
from rlhfbook_lab.recipes.checking_rm import checking_rm
from rlhfbook_lab.recipes.evaluation import evaluate_players
from rlhfbook_lab.recipes.evaluation import write_report as write_eval_report
from rlhfbook_lab.recipes.judge_model import JudgeConfig, write_judge
from rlhfbook_lab.recipes.overoptimization import RECIPES as OVEROPT_RECIPES
from rlhfbook_lab.recipes.overoptimization import OveroptConfig, run_overoptimization
from rlhfbook_lab.recipes.overoptimization import write_report as write_overopt_report
from rlhfbook_lab.recipes.pipeline import PipelineConfig, run_pipeline
from rlhfbook_lab.recipes.rejection_sampling import RECIPES as RS_RECIPES
from rlhfbook_lab.recipes.rejection_sampling import RSConfig, check_config, run_against_control
from rlhfbook_lab.recipes.rejection_sampling import write_report as write_rs_report
from rlhfbook_lab.recipes.rlvr_study import rlvr_study
from rlhfbook_lab.recipes.spec_change import relabel_pairs
from rlhfbook_lab.trainers.checker import CheckerConfig
from rlhfbook_lab.trainers.dpo import FAST_SIZES, RECIPES, DPOConfig, dpo_config, dpo_from_sft
from rlhfbook_lab.trainers.pretrain import PretrainConfig, heldout_loss, prefix_accuracy, pretrain
from rlhfbook_lab.trainers.reward import RM_RECIPES, RMConfig, rm_from_sft
from rlhfbook_lab.trainers.rl import ALGORITHMS, RLConfig, rl_from_sft, summarize
from rlhfbook_lab.trainers.sft import SHIPPED_QUALITY, SFTConfig, sft_from_base

SPEC_HELP = "a model spec: a shipped name (" + ", ".join(world.spec_names()) + ") or a path to a spec JSON file"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1; got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0; got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; got {text}")
    return value


def _rounded(report: dict) -> dict:
    """A report for printing: floats to 4 significant digits (not 4 decimals, which printed lr 5e-5 as 0.0001)."""
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in report.items()}


def _configured(base, args):
    """``base`` with the config flags given on the command line (``config.override``)."""
    return override(base, overrides_from_args(args))


def _out_flags(p, default_help: str) -> None:
    p.add_argument("--out", default=None, help=f"output folder ({default_help})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")


# --- commands -----------------------------------------------------------------------------------------------------


def _cmd_tokenizer(args) -> None:
    tok = build_and_save(args.out)
    print(f"tokenizer with {len(tok)} tokens written to {args.out or 'data/tokenizer'}")


def _cmd_pretrain(args) -> None:
    cfg = _configured(PretrainConfig(), args)
    out = Path(args.out) if args.out else CHECKPOINTS / f"base-{cfg.preset}"
    tok = load_tokenizer()
    model, history = pretrain(cfg, tok, out=out, eval_every=args.eval_every, overwrite=args.overwrite)
    acc = prefix_accuracy(model, tok)
    print(json.dumps({"out": str(out), "steps": cfg.train.steps, "seconds": round(history["charts/wall_time"][0], 1),
                      "final_train_loss": round(history["losses/train"][-1], 4),
                      "heldout_loss": round(heldout_loss(model, tok), 4),
                      "prefix_accuracy": {k: round(v, 3) for k, v in acc.items()}}, indent=2))


def _cmd_sft_data(args) -> None:
    paths = build_instruction_files(args.out, n_train=args.n_train, n_heldout=args.n_heldout, seed=args.seed)
    print(json.dumps({"out": str(args.out or SFT_DATA_DIR), "n_train": args.n_train, "n_heldout": args.n_heldout,
                      "seed": args.seed, "bytes": {k: p.stat().st_size for k, p in paths.items()}}, indent=2))


def _cmd_sft(args) -> None:
    cfg = _configured(SFTConfig(), args)
    out = Path(args.out) if args.out else CHECKPOINTS / "sft-tiny"
    data_dir = Path(args.data) if args.data else SFT_DATA_DIR
    if data_dir.exists() and not data_dir.is_dir():
        raise NotADirectoryError(f"--data {data_dir} is a file; expected the folder holding sft_train.jsonl and "
                                 "sft_heldout.jsonl")
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


def _cmd_pref_data(args) -> None:
    n = {split: {k: max(1, round(v * args.scale)) for k, v in d.items()} for split, d in PREF_PROMPTS.items()}
    t0 = time.process_time()
    out = build_preference_files(args.out, seed=args.seed, n_prompts=n, policy=args.policy, base=args.base)
    print(json.dumps({"out": str(args.out or PREF_DATA_DIR), "seed": args.seed, "n_prompts": n,
                      "pairs": {s: out["counts"][s]["on_policy/kept"] + out["counts"][s]["off_policy/kept"]
                                for s in ("train", "heldout")},
                      "counts": out["counts"], "cpu_seconds": round(time.process_time() - t0, 1),
                      "bytes": {s: out[s].stat().st_size for s in ("train", "heldout")}}, indent=2))


def _cmd_rl(args) -> None:
    cfg = _configured(RLConfig.fast(args.algo) if args.fast else RLConfig.preset(args.algo), args)
    out = Path(args.out) if args.out else Path("runs") / f"rl-{args.algo}"
    t0 = time.process_time()
    _, _, history = rl_from_sft(cfg, policy=args.policy, out=out, overwrite=args.overwrite)
    print(json.dumps({"out": str(out), "algo": args.algo, "reward": cfg.reward, "cpu_seconds":
                      round(time.process_time() - t0, 1), **_rounded(summarize(history))}, indent=2))


_CHECK_FLAGS = {"train.steps": "steps", "train.lr": "lr", "batch_size": "batch_size", "train.seed": "seed"}


def _rm_report(out, history: dict, ev, t0: float, normalized: bool, **head) -> str:
    """The JSON both reward-model recipes print: ``head`` first, then the held-out evaluation."""
    return json.dumps({
        "out": str(out) if out else None, **head, "train_pairs": history["data/num_pairs"][0],
        "train_cpu_seconds": round(history["charts/cpu_seconds"][0], 1),
        "train_seconds": round(history["charts/wall_time"][0], 1), "total_seconds": round(time.perf_counter() - t0, 1),
        "heldout_pairs": ev.num_pairs, "heldout_accuracy": round(ev.accuracy, 4),
        "bayes_ceiling": round(ev.bayes_ceiling, 4), "gap_to_ceiling": round(ev.bayes_ceiling - ev.accuracy, 4),
        "heldout_loss": round(ev.loss, 4), "ece": round(float(ev.calibration.ece), 4),
        "normalization": {"mean": round(history["normalize/mean"][0], 4), "std": round(history["normalize/std"][0], 4)}
        if normalized else None}, indent=2)


def _cmd_rm_check(args) -> None:
    given = overrides_from_args(args)
    if unknown := sorted(k for k in given if k not in _CHECK_FLAGS):
        raise ValueError(f"--recipe check trains only a checker on frozen models: {unknown} do not apply (it takes "
                         f"{sorted(_CHECK_FLAGS)})")
    cfg = override(CheckerConfig(steps=30, batch_size=32) if args.fast else CheckerConfig(),
                   {_CHECK_FLAGS[k]: v for k, v in given.items()})
    out = Path(args.out) if args.out else (None if args.fast else CHECKPOINTS / "rm-check-tiny")
    t0 = time.perf_counter()
    _, _, history, ev = checking_rm(cfg, reference=args.policy, out=out, overwrite=args.overwrite,
                                    normalize=args.normalize, data_dir=args.data,
                                    num_train_pairs=400 if args.fast else None,
                                    num_eval_pairs=400 if args.fast else None)
    print(_rm_report(out, history, ev, t0, args.normalize, recipe="check", steps=cfg.steps,
                     pairs_per_step=2 * cfg.batch_size,
                     counterfactual_pairs=history["data/num_counterfactual_pairs"][0]))


def _cmd_rm(args) -> None:
    if args.recipe == "check":
        return _cmd_rm_check(args)
    recipe, default_out, save_dtype = RM_RECIPES[args.recipe]
    base = recipe()
    cfg = _configured(override(base, {"train.steps": 30}) if args.fast else base, args)
    out = Path(args.out) if args.out else (None if args.fast else CHECKPOINTS / default_out)
    t0 = time.perf_counter()
    rm, tok, history, ev = rm_from_sft(cfg, policy=args.policy, out=out, overwrite=args.overwrite,
                                       normalize=args.normalize, data_dir=args.data,
                                       num_eval_pairs=400 if args.fast else None,
                                       save_dtype=save_dtype)
    print(_rm_report(out, history, ev, t0, args.normalize, recipe=args.recipe, steps=cfg.train.steps,
                     pairs_per_step=cfg.batch_size))


def _cmd_dpo(args) -> None:
    cfg = _configured(dpo_config(args.loss, fast=args.fast), args)
    out = Path(args.out) if args.out else Path("runs") / f"dpo-{args.loss}"
    pairs = args.pairs
    if args.spec is not None:  # relabel the pairs by the spec's gold annotator (recipes.spec_change)
        spec = world.load_spec(args.spec)  # a bad spec fails before any data is read
        rows = read_pairs(args.pairs) if args.pairs else load_preference_file("train", origin="on_policy")
        pairs = relabel_pairs(rows, spec, seed=cfg.train.seed).rows
    run = dpo_from_sft(cfg, policy=args.policy, pairs=pairs, out=out, overwrite=args.overwrite,
                       **(FAST_SIZES if args.fast else {}))
    print(json.dumps({"out": str(out), "spec": args.spec or "as labelled", **_rounded(run.report)}, indent=2))


def _cmd_scaling(args) -> None:
    families = tuple(f for f in args.families.split(",") if f)
    for f in families or ("",):
        check_choice("families", f, world.FAMILIES)
    out = check_output_folder(args.out or Path("runs") / "scaling", args.overwrite)
    model, tok = load_model(args.model)
    pool = sample_pool(model, tok, world.heldout_prompts(args.problems, seed=args.seed, families=families),
                       n=args.n, temperature=args.temperature, seed=args.seed)
    table = scaling_table(pool)
    out.mkdir(parents=True, exist_ok=True)
    cols = [c for c in table if c != "k"]
    (out / "scaling.csv").write_text("k," + ",".join(cols) + "\n" + "".join(
        f"{k}," + ",".join(f"{table[c][i]:.6f}" for c in cols) + "\n" for i, k in enumerate(table["k"])))
    import matplotlib  # deferred: matplotlib is heavy and only this command plots
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: as above
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in cols:
        ax.plot(table["k"], table[c], label=c)
    ax.set(xscale="log", xlabel="k (samples per problem)", ylabel="accuracy", title=f"{args.model}: test-time scaling")
    ax.legend()
    fig.savefig(out / "scaling.png", dpi=120)
    plt.close(fig)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if k <= pool.n]
    print(json.dumps({"out": str(out), "model": args.model, "problems": len(pool.problems), "n": pool.n,
                      "replies_per_second": round(pool.replies_per_second, 1),
                      **{c: {k: round(float(table[c][k - 1]), 4) for k in ks} for c in cols}}, indent=2))


def _cmd_rlvr_study(args) -> None:
    out = Path(args.out)
    if out.is_dir() or (out.exists() and not args.overwrite):
        raise ValueError(f"--out {out} {'is a folder' if out.is_dir() else 'exists'}: expected a new .json file "
                         "(or --overwrite)")
    log = rlvr_study(args.algo, steps=args.steps, seed=args.seed, policy=args.policy, beta=args.beta)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(log, separators=(",", ":")) + "\n")
    h = log["history"]
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "cpu_seconds": log["cpu_seconds"],
                      "correct_rate_first_last": [h["charts/correct_rate"][0], h["charts/correct_rate"][-1]],
                      "eval_correct_first_last": [h["eval/correct_rate"][0], h["eval/correct_rate"][-1]],
                      "length_first_last": [h["charts/response_length"][0], h["charts/response_length"][-1]]}))


def _cmd_sample(args) -> None:
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


def _cmd_pipeline(args) -> None:
    cfg = _configured(PipelineConfig.fast_config() if args.fast else PipelineConfig(), args)
    out = Path(args.out)
    run_pipeline(cfg, out=out, overwrite=args.overwrite)
    print((out / "results.md").read_text())


def _cmd_eval(args) -> None:
    check_output_folder(args.out, args.overwrite)  # a bad --out fails before any model answers
    results = evaluate_players(args.models, n_prompts=args.prompts, n_battles=args.battles,
                               n_resamples=args.resamples, judge_model=args.judge, seed=args.seed, spec=args.spec)
    out = write_eval_report(results, args.out, overwrite=args.overwrite)
    print((out / "report.md").read_text() + "\n" + (out / "arena.md").read_text())


def _cmd_rs(args) -> None:
    cfg = _configured(build(RSConfig, RS_RECIPES, "fast" if args.fast else "full"), args)
    check_config(cfg)
    out = Path(args.out)
    check_output_folder(out, args.overwrite)  # fail before the run, not after
    result = run_against_control(cfg, policy=args.policy, log=lambda m: print(m, file=sys.stderr))
    write_rs_report(result, out, overwrite=True)
    print((out / "report.md").read_text())


def _cmd_overopt(args) -> None:
    cfg = _configured(build(OveroptConfig, OVEROPT_RECIPES, "fast" if args.fast else "full"), args)
    out = Path(args.out)
    check_output_folder(out, args.overwrite)  # fail before the run, not after
    write_overopt_report(run_overoptimization(cfg, log=lambda m: print(m, file=sys.stderr)), out, overwrite=True)
    print((out / "fits.md").read_text())
    print(f"curves: {out / 'curves.png'}; sample replies: {out / 'samples.md'}")


def _cmd_judge(args) -> None:
    cfg = JudgeConfig(seed=check_int("--seed", args.seed, minimum=0))
    cfg.sft.train.seed = args.seed
    cfg.sft.train.steps = check_int("--steps", args.steps, minimum=1)
    cfg.sft.train.lr = check_number("--lr", args.lr, minimum=0, strict=True)
    check_output_folder(args.out, args.overwrite)  # fail before training, not after
    report = write_judge(args.out, cfg, overwrite=args.overwrite, progress=True)
    h = report["heldout"]
    print(json.dumps({"out": args.out, "train_cpu_seconds": report["train_cpu_seconds"],
                      "agreement": round(h["agreement"], 3), "bayes_ceiling": round(h["bayes_ceiling"], 3),
                      "swap_consistency": round(h["position"]["consistency"], 3),
                      "first_rate": round(h["position"]["first_rate"], 3)}))


def _cmd_slides(args) -> None:
    if not args.no_pdf and find_chromium() is None:
        raise FileNotFoundError("the PDF needs Chromium: install Debian's `chromium` package, set RLHFBOOK_CHROMIUM, "
                                "or pass --no-pdf for the HTML alone")
    built = build_decks(args.out, lessons=args.lesson, pdf=not args.no_pdf)
    print(f"{len(built)} deck(s) in {args.out} (open {Path(args.out) / 'index.html'})")


def _cmd_site(args) -> None:
    # deferred: the site needs nbformat, whose JSON-schema checks take seconds to import; no other command does
    from rlhfbook_lab.apps.site import build_site

    built = build_site(args.out, lessons=args.lesson, full=args.full, cached_only=args.cached_only)
    print(f"{len(built)} lesson page(s) in {args.out}, {sum(p.from_cache for p in built)} from the cache "
          f"(open {Path(args.out) / 'index.html'})")


def _cmd_chat(args) -> None:
    serve(args)  # apps/chat_server.py: listen at once, load the models in the background


# --- the parser ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rlhfbook-lab", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_pipeline_and_data_commands(sub)
    _add_training_commands(sub)
    _add_looking_commands(sub)
    return parser


def _add_pipeline_and_data_commands(sub) -> None:

    p = sub.add_parser("pipeline", help="the whole arc: base → SFT → reward model → DPO → RL, judged by the gold "
                                        "judge; writes results.md/json, summary.png and checkpoints into --out")
    p.add_argument("--out", default="pipeline-out", help="folder for the results (default: ./pipeline-out)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--fast", action="store_true", help="shorter runs of every stage (≤ 90 s on 2 CPU cores)")
    add_config_arguments(p, PipelineConfig, skip=("fast",))
    p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser("eval", help="report card (gold with 95 %% intervals, paired differences, centred accuracy), "
                                    "arena and judge traps for checkpoints; writes report.md/json/png, arena.md")
    p.add_argument("--models", nargs="+", default=["base-tiny", "sft-tiny", "sft-tiny@1.0"],
                   help="players: checkpoint names or folders, '@T' to sample at temperature T (default greedy)")
    p.add_argument("--out", default="eval-out", help="folder for the report (default: ./eval-out)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--prompts", type=_positive_int, default=200, help="held-out prompts every player answers")
    p.add_argument("--battles", type=_positive_int, default=1000, help="arena battles per judge")
    p.add_argument("--resamples", type=_positive_int, default=1000, help="bootstrap resamples")
    p.add_argument("--judge", default="rm-tiny", help="the reward model used as the AI judge (default rm-tiny)")
    p.add_argument("--seed", type=int, default=0, help="seed of prompts, sampling, battles and bootstrap")
    p.add_argument("--spec", default="default", help=SPEC_HELP + " (the truth and the gold annotator read it)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("rs", help="rejection-sampling fine-tuning (ch 9) selected by gold or the verifier beside its "
                                  "random control; report.md (per round) and result.json")
    p.add_argument("--out", required=True, help="folder for the report")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--fast", action="store_true", help="lesson 09's fast sizes")
    p.add_argument("--policy", default="sft-tiny", help="the model to start from (a shipped name or a folder)")
    add_config_arguments(p, RSConfig, skip=("families",))
    p.set_defaults(func=_cmd_rs)

    p = sub.add_parser("overopt", help="reward-model over-optimization (ch 14): proxies of 4+ data sizes, best-of-n "
                                       "and RL against them, Gao's fits; curves.png, fits.json/md, samples.md")
    p.add_argument("--out", required=True, help="folder for the report")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--fast", action="store_true", help="the lesson's fast sizes (about 75 CPU-s)")
    add_config_arguments(p, OveroptConfig)
    p.set_defaults(func=_cmd_overopt)

    p = sub.add_parser("judge", help="train the generative pairwise judge (ch 12: reads a question and replies A, B; "
                                     "says A or B) from sft-tiny on the gold-labelled pairs; saves it with its report")
    p.add_argument("--out", required=True, help="folder for the judge (data/checkpoints/judge-tiny is the shipped one)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--steps", type=int, default=JudgeConfig().sft.train.steps, help="SFT steps (default: the shipped "
                                                                                  "recipe's)")
    p.add_argument("--lr", type=float, default=JudgeConfig().sft.train.lr, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the A/B placement and of training")
    p.set_defaults(func=_cmd_judge)

    p = sub.add_parser("tokenizer", help="rebuild the world's character-level tokenizer (data/tokenizer)")
    p.add_argument("--out", default=None, help="output folder (default data/tokenizer)")
    p.set_defaults(func=_cmd_tokenizer)

    p = sub.add_parser("pretrain", help="train the base model from scratch on the world corpus")
    _out_flags(p, "default data/checkpoints/base-<preset>")
    p.add_argument("--eval-every", type=_non_negative_int, default=0, help="evaluate every N steps (0: at the end)")
    add_config_arguments(p, PretrainConfig)
    p.set_defaults(func=_cmd_pretrain)



def _add_training_commands(sub) -> None:
    p = sub.add_parser("sft-data", help="write the instruction data (data/sft/sft_train.jsonl, sft_heldout.jsonl)")
    p.add_argument("--out", default=None, help="output folder (default data/sft)")
    p.add_argument("--n-train", type=_positive_int, default=SFT_TRAIN_SIZE, help="training conversations")
    p.add_argument("--n-heldout", type=_positive_int, default=SFT_HELDOUT_SIZE, help="held-out conversations")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.set_defaults(func=_cmd_sft_data)

    p = sub.add_parser("sft", help="instruction-tune the base model on data/sft (writes data/checkpoints/sft-tiny)")
    _out_flags(p, "default data/checkpoints/sft-tiny")
    p.add_argument("--base", default="base-tiny", help="the model to fine-tune (checkpoint name or folder)")
    p.add_argument("--data", default=None, help="folder with sft_train.jsonl and sft_heldout.jsonl (default "
                                                "data/sft; written first with `sft-data`'s defaults if missing)")
    p.add_argument("--examples", type=_positive_int, default=None, help="use only the first N training conversations")
    add_config_arguments(p, SFTConfig)
    p.set_defaults(func=_cmd_sft)

    p = sub.add_parser("pref-data", help="write the preference pairs (data/preferences/train.jsonl, heldout.jsonl)")
    p.add_argument("--out", default=None, help="output folder (default data/preferences)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--scale", type=_positive_float, default=1.0, help="multiply every prompt count by this "
                                                                      "(1: the shipped size)")
    p.add_argument("--policy", default="sft-tiny", help="the model whose samples make the on-policy pairs")
    p.add_argument("--base", default="base-tiny", help="a second model for the off-policy pairs")
    p.set_defaults(func=_cmd_pref_data)

    p = sub.add_parser("rl", help="RL from the SFT model: PPO, GRPO, Dr. GRPO, RLOO or REINFORCE (trainers.rl)")
    p.add_argument("--algo", default="grpo", choices=ALGORITHMS, help="the preset (RLConfig.preset)")
    p.add_argument("--fast", action="store_true", help="the ~30 s CPU configuration (RLConfig.fast)")
    p.add_argument("--policy", default="sft-tiny", help="the model to start from (checkpoint name or folder)")
    _out_flags(p, "default runs/rl-<algo>")
    add_config_arguments(p, RLConfig, skip=("algo",))
    p.set_defaults(func=_cmd_rl)

    p = sub.add_parser("rm", help="train the reward model on data/preferences; held-out accuracy vs the Bayes ceiling")
    p.add_argument("--fast", action="store_true", help="30 steps, evaluated on 400 held-out pairs")
    p.add_argument("--recipe", default="shipped", choices=sorted([*RM_RECIPES, "check"]),
                   help="shipped: rm-tiny, preference pairs only; check: rm-check-tiny, rm-tiny frozen + a checker of "
                        "sft-tiny's surprise (takes --steps --lr --batch-size --seed); mix: rm-mix-tiny (float16)")
    p.add_argument("--normalize", action="store_true", help="normalise rewards to mean 0, std 1 on samples of the "
                                                            "reference policy (as the shipped rm-tiny is)")
    p.add_argument("--policy", default="sft-tiny", help="the backbone and reference policy")
    p.add_argument("--data", default=None, help="folder with train.jsonl and heldout.jsonl (default "
                                                "data/preferences)")
    _out_flags(p, "default data/checkpoints/<the recipe's model>; with --fast nothing is saved unless --out is given")
    add_config_arguments(p, RMConfig, skip=("mix",))
    p.set_defaults(func=_cmd_rm)

    p = sub.add_parser("dpo", help="direct alignment from the SFT model on preference pairs; gold score and KL")
    p.add_argument("--loss", default="dpo", choices=sorted(RECIPES), help="the loss and its recipe (RECIPES)")
    p.add_argument("--fast", action="store_true", help="a short run on 512 pairs, judged on fewer prompts")
    p.add_argument("--policy", default="sft-tiny", help="the model to start from, also the reference")
    p.add_argument("--pairs", default=None, help="a jsonl of pairs (default: the on-policy pairs of "
                                                 "data/preferences/train.jsonl)")
    p.add_argument("--spec", default=None, help=SPEC_HELP + ": relabel the pairs by its gold annotator first "
                                                            "(default: keep their labels)")
    _out_flags(p, "default runs/dpo-<loss>")
    add_config_arguments(p, DPOConfig, skip=("loss",))
    p.set_defaults(func=_cmd_dpo)



def _add_looking_commands(sub) -> None:
    """Commands that show what models do: sampling, the chat page, the slides and the site."""
    p = sub.add_parser("sample", help="sample replies to held-out prompts and score them with the gold judge")
    p.add_argument("--model", default=None, help="checkpoint name, folder or hub id (default $RLHFBOOK_MODEL, "
                                                  "else sft-tiny if shipped, else base-tiny)")
    p.add_argument("--n", type=_positive_int, default=8, help="prompts")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (else > 0)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--raw", action="store_true", help="continue plain statements instead of chatting "
                                                      "(what a base model was trained on)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("scaling", help="test-time scaling of a model: pass@k, maj@k, best-of-k by gold for every k "
                                       "from one pool of samples (scaling.csv, scaling.png)")
    p.add_argument("--model", default="sft-tiny", help="checkpoint name or folder (default sft-tiny)")
    p.add_argument("--problems", type=_positive_int, default=100, help="held-out problems")
    p.add_argument("--n", type=_positive_int, default=64, help="samples per problem (k runs up to it)")
    p.add_argument("--families", default="addition", help="comma-separated task families (default addition)")
    p.add_argument("--temperature", type=_positive_float, default=1.0)
    p.add_argument("--seed", type=_non_negative_int, default=0)
    _out_flags(p, "default runs/scaling")
    p.set_defaults(func=_cmd_scaling)

    p = sub.add_parser("rlvr-study", help="lesson 07's long RLVR run (verifier reward on addition, KL β) as a small "
                                          "JSON log: lengths, rambling, accuracy and FLOPs per rollout")
    p.add_argument("--algo", default="grpo", choices=ALGORITHMS, help="the preset (RLConfig.preset)")
    p.add_argument("--steps", type=_positive_int, default=200, help="rollouts (lesson 07 §4 fast mode: 20)")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--policy", default="sft-tiny", help="the model to start from (checkpoint name or folder)")
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: R1-Zero; the shipped grpo_kl run: 0.1)")
    p.add_argument("--out", required=True, help="the .json file to write (e.g. data/reasoning/rlvr_grpo.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_cmd_rlvr_study)

    p = sub.add_parser("slides", help="build the lesson decks (self-contained HTML, and PDF with Chromium)")
    p.add_argument("--lesson", action="append", default=None, help="one lesson number (NN), repeatable; "
                                                                   "default: every deck in slides/")
    p.add_argument("--out", default="build/slides", help="output folder (default build/slides)")
    p.add_argument("--no-pdf", action="store_true", help="HTML only (no browser needed)")
    p.set_defaults(func=_cmd_slides)

    p = sub.add_parser("site", help="the executed lessons as a static site (cached by content; see slides/README.md)")
    p.add_argument("--lesson", action="append", default=None, help="one lesson number (NN), repeatable")
    p.add_argument("--out", default="build/site", help="output folder (default build/site)")
    p.add_argument("--full", action="store_true", help="execute in full mode (default: fast mode)")
    p.add_argument("--cached-only", action="store_true", help="render only lessons already executed (e.g. by "
                                                              "pytest); a missing one is an error")
    p.set_defaults(func=_cmd_site)

    p = sub.add_parser("chat", help=CHAT_HELP)
    add_chat_arguments(p)
    p.set_defaults(func=_cmd_chat)


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.exit(2, f"rlhfbook-lab {args.command}: error: unrecognized arguments: {' '.join(unknown)} "
                       f"(see rlhfbook-lab {args.command} --help)\n")
    if getattr(args, "temperature", 0.0) < 0:
        parser.exit(2, f"rlhfbook-lab {args.command}: error: --temperature must be >= 0; got {args.temperature}\n")
    try:
        if distributed.init() and not distributed.is_main():  # under torchrun: rank 0 alone prints
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
        args.func(args)
    except (ValueError, OSError) as e:  # bad input: one line, not a traceback (OSError: files, folders, models)
        parser.exit(2, f"rlhfbook-lab {args.command}: error: {one_line(e)}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"rlhfbook-lab {args.command}: interrupted\n")


if __name__ == "__main__":
    main()
