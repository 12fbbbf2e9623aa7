"""What the benchmark scripts share: threads, the fixed pair batch, interleaved step timing, peak memory in a child
process, FLOP counts and the printed table.

Timing rule: each variant ("ours", "trl", "floor", ...) runs in blocks of ``--steps`` optimizer steps, the
blocks interleaved (ours, trl, floor, then the order rotated) ``--repeats`` times after one untimed warm-up block
per variant, so a burst of load on a shared machine hits every variant alike. A step's time is wall time from the
start of one optimizer step to the start of the next, everything included (collation, forward, backward, clip,
optimizer, logging); the first step of each block is dropped (it pays for the block's setup: a fresh optimizer
state, a new data iterator). We report medians over all timed steps: OpenMP on a loaded machine now and then
stalls one step for seconds, which a mean would report as a slowdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent

clock = time.perf_counter
"""The clock every runner reads: wall time (default), or this process's CPU time with ``--clock cpu`` (robust to
other processes' load, but only meaningful with ``--threads 1``: idle or spinning OpenMP threads distort it)."""


def use_clock(name: str) -> None:
    global clock
    if name not in ("wall", "cpu"):
        raise ValueError(f"--clock must be 'wall' or 'cpu'; got {name!r}")
    clock = time.perf_counter if name == "wall" else time.process_time


@contextlib.contextmanager
def loop_clock():
    """Make the shared loop (``rlhfbook_lab.trainers.loop``) read :data:`clock` for its ``charts/step_time``: the loop
    times its own steps with ``time.perf_counter``; under ``--clock cpu`` we hand it a ``time`` whose
    ``perf_counter`` is the CPU clock, for the length of one call."""
    import types

    from rlhfbook_lab.trainers import loop as loop

    saved = loop.time
    if clock is not time.perf_counter:
        loop.time = types.SimpleNamespace(perf_counter=clock)
    try:
        yield
    finally:
        loop.time = saved


def base_parser(description: str, steps: int, repeats: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeats", type=int, default=repeats, help="interleaved rounds (ours, TRL, floor) to time")
    p.add_argument("--steps", type=int, default=steps, help="optimizer steps per variant per round (first dropped)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps per variant before the rounds")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (the lead's final run: 2)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="step clock: wall time, or process CPU time (for a loaded machine; with --threads 1 only)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--memory-steps", type=int, default=4, help="steps each memory child runs")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)  # internal: measure one variant's memory
    return p


def set_threads(n: int) -> None:
    """Intra-op threads for this process (and OMP_NUM_THREADS for the memory children)."""
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ["MKL_NUM_THREADS"] = str(n)


def quiet_libraries() -> None:
    """Silence progress bars and advisory warnings of transformers / datasets / TRL."""
    import logging
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


# --- data --------------------------------------------------------------------------------------------------------


def bench_pairs(tokenizer, n_pairs: int, max_length: int, seed: int = 0) -> list[dict]:
    """``n_pairs`` decisive preference pairs from the world whose two sides both fit in ``max_length`` tokens
    (off-policy styled replies to held-out prompts, labelled by the gold annotator; deterministic)."""
    import logging

    from rlhfbook_lab import world
    from rlhfbook_lab.lm.data import tokenize_pairs
    from rlhfbook_lab.lm.preference_data import off_policy_pairs

    pairs = off_policy_pairs(world.heldout_prompts(64, seed=seed), seed=seed).rows
    log = logging.getLogger("rlhfbook_lab.lm.preference_data")
    level = log.level
    log.setLevel(logging.ERROR)  # most of the 256 candidates are longer than max_length: expected, not news
    try:
        tok = tokenize_pairs(pairs, tokenizer, max_length)
    finally:
        log.setLevel(level)
    keep = [pairs[r["index"]] for r in tok.rows if r["label"] == 1.0][:n_pairs]
    if len(keep) < n_pairs:
        raise ValueError(f"only {len(keep)} pairs fit in max_length={max_length}; ask for fewer or longer")
    return keep


def batch_tokens(batch: dict) -> tuple[int, int]:
    """(real tokens, padded tokens) of a collated (2B, T) batch."""
    return int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())


def trl_plain_fp32_kwargs(config_cls) -> dict:
    """Config kwargs that turn off what TRL turns on by default: bf16 autocast and gradient (activation)
    checkpointing. transformers 5 renamed ``gradient_checkpointing`` to ``activation_checkpointing`` (the old name
    still works, with a warning); pass the name this version has."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    kw = {"bf16": False, "fp16": False}
    kw["activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"] = False
    return kw


def check_trl_plain_fp32(trainer) -> None:
    """Refuse to time a TRL trainer that would run bf16 or checkpoint activations (our side does neither)."""
    args = trainer.args
    if args.bf16 or args.fp16 or getattr(args, "gradient_checkpointing", False) or \
            getattr(args, "activation_checkpointing", False):
        raise AssertionError("the TRL trainer would use bf16/fp16 or gradient checkpointing; the benchmark compares "
                             "plain fp32 steps")


def trl_step_timer(sink):
    """A ``transformers.TrainerCallback`` appending to ``sink.times`` the wall time between successive
    ``on_step_end`` calls (the first measured from ``on_train_begin``): one optimizer step with everything the
    Trainer does around it (data loading, logging, callbacks)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            sink._last = clock()

        def on_step_end(self, args, state, control, **kw):
            now = clock()
            sink.times.append(now - sink._last)
            sink._last = now

    return StepTimer()


def trl_args(config_cls, output_dir: str, *, lr: float, weight_decay: float, betas: tuple[float, float], eps: float,
             grad_clip: float, seed: int, **specific):
    """A TRL config (``config_cls``: ``RewardConfig``, ``DPOConfig``, ``GRPOConfig``) set like our side's step: AdamW
    with these settings at a constant lr and no warmup, fp32 without activation checkpointing, one step per call
    (``max_steps`` is set by the runner), and no workers, logging, saving or progress bars. ``specific``: the
    trainer's own fields (batch size, β, generation lengths, data order)."""
    return config_cls(
        output_dir=output_dir, max_steps=1, learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=weight_decay, adam_beta1=betas[0], adam_beta2=betas[1], adam_epsilon=eps,
        max_grad_norm=grad_clip, dataloader_num_workers=0, report_to="none", save_strategy="no", disable_tqdm=True,
        seed=seed, use_cpu=not torch.cuda.is_available(), **trl_plain_fp32_kwargs(config_cls), **specific)


def loss_recording(trainer_cls, losses: list[float]):
    """``trainer_cls`` whose ``compute_loss`` also appends each training-mode loss to ``losses`` (the step-0 check)."""

    class Recording(trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training:
                losses.append(float((out[0] if return_outputs else out).detach()))
            return out

    return Recording


class TrlRunner:
    """A TRL trainer run for n optimizer steps per call (``max_steps = n``); subclasses build ``self.trainer`` with
    :func:`trl_step_timer` (``self``) among its callbacks and hand it to :meth:`_use`."""

    times: list[float]

    def _use(self, trainer) -> None:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        check_trl_plain_fp32(trainer)
        self.trainer = trainer

    def first_batch(self) -> dict:
        """TRL's collated first batch (to check it is ours, token for token)."""
        return next(iter(self.trainer.get_train_dataloader()))

    def __call__(self, n: int) -> list[float]:
        self.times = []
        self.trainer.args.max_steps = n
        self.trainer.train()
        return self.times


# --- FLOPs -------------------------------------------------------------------------------------------------------


def matmul_params(config, lm_head: bool) -> int:
    """Weights that multiply every token: per layer q, k, v, o (with grouped KV heads) and the 3 MLP matrices,
    plus the LM head (vocab × hidden) when the logits are computed. Embedding lookups and norms do no matmul."""
    h, m, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    d = getattr(config, "head_dim", None) or h // config.num_attention_heads
    attn = h * d * (config.num_attention_heads * 2 + config.num_key_value_heads * 2)
    return L * (attn + 3 * h * m) + (config.vocab_size * h if lm_head else 0)


def train_flops(config, rows: int, seq: int, lm_head: bool) -> float:
    """FLOPs of one forward + backward over a (rows, seq) batch: 6·N·tokens + 12·L·seq·(heads·head_dim)·tokens.

    N = :func:`matmul_params`; tokens = rows·seq (padded: the kernels compute on padding too). The attention term
    counts QKᵀ and AV over the full seq × seq square (2·2·seq·d per token per layer forward, ×3 with backward),
    the usual non-causal convention (PaLM, nanoGPT, TRL's ``compute_flops_per_token``)."""
    d = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    tokens = rows * seq
    attn = 12 * config.num_hidden_layers * seq * config.num_attention_heads * d
    return tokens * (6 * matmul_params(config, lm_head) + attn)


def forward_flops(config, rows: int, seq: int, lm_head: bool) -> float:
    """A forward pass alone: a third of :func:`train_flops`."""
    return train_flops(config, rows, seq, lm_head) / 3


# --- timing ------------------------------------------------------------------------------------------------------


Runner = Callable[[int], list[float]]
"""``runner(n)`` runs n optimizer steps and returns the n step times in seconds."""


def interleaved_times(runners: dict[str, Runner], repeats: int, steps: int, warmup: int,
                      log: Callable[[str], None] = print) -> dict[str, list[list[float]]]:
    """Warm each runner up, then time ``repeats`` rounds of ``steps`` steps per runner, rotating the order each
    round; drop each block's first step. Returns {name: [[step seconds of round 1], [round 2], ...]}."""
    if steps < 2:
        raise ValueError(f"--steps must be >= 2 (the first step of a block is dropped); got {steps}")
    names = list(runners)
    for name in names:
        if warmup > 0:
            runners[name](warmup)
    rounds: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            rounds[name].append(runners[name](steps)[1:])
        log(f"  round {r + 1}/{repeats} medians: " + ", ".join(
            f"{n} {statistics.median(rounds[n][-1]) * 1e3:.0f} ms" for n in names))
    return rounds


def setup(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line (``argv``: ``sys.argv[1:]`` when None), then set threads, the clock and quiet
    libraries. Returns ``(args, argv)``; ``argv`` is passed on to the memory children."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    set_threads(args.threads)
    use_clock(args.clock)
    quiet_libraries()
    return args, argv


def time_variants(runners: dict[str, Runner], variants: list[str], args
                  ) -> tuple[dict[str, list[list[float]]], dict[str, list[float]]]:
    """Interleaved timing of ``variants`` (:func:`interleaved_times`, with the header and machine lines printed).
    Returns ``(rounds, times)``: each variant's step times round by round, and all of them in one list."""
    print(f"timing: {args.repeats} interleaved rounds x {args.steps} steps per variant (first of each dropped), "
          f"{args.warmup} warm-up step(s)")
    rounds = interleaved_times({v: runners[v] for v in variants}, args.repeats, args.steps, args.warmup)
    print(machine_line(args.threads))
    return rounds, {v: flat(rounds[v]) for v in variants}


def peak_memory(script: str, variants: list[str], argv: list[str], args) -> dict[str, dict]:
    """:func:`memory_in_children` unless ``--no-memory`` ({} then)."""
    if args.no_memory:
        return {}
    print(f"peak memory: one child process per variant, {args.memory_steps} steps each ...")
    return memory_in_children(script, variants, argv, args.threads)


def flat(rounds: list[list[float]]) -> list[float]:
    return [t for block in rounds for t in block]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratio(a: list[list[float]], b: list[list[float]]) -> str:
    """Time ratio a/b compared round by round (each round's median over its median; the rounds ran minutes
    apart at most, under the same load): "median (min-max over rounds)"."""
    ratios = sorted(statistics.median(x) / statistics.median(y) for x, y in zip(a, b))
    return f"{statistics.median(ratios):.3f} (rounds {ratios[0]:.3f}-{ratios[-1]:.3f})"


def iqr(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return q[0], q[2]


# --- memory ------------------------------------------------------------------------------------------------------


def current_rss() -> int:
    """Resident set size of this process in bytes (/proc/self/statm; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class PeakRSS:
    """Samples this process's RSS every ``interval`` s on a thread while the block runs; ``peak`` in bytes.

    Also reads ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the kernel's lifetime peak) at exit, and keeps the
    larger of the two when that lifetime peak was reached during the block (it is at least the sampled peak)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0
        self.before = 0
        self._stop = threading.Event()

    def _poll(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(self.interval)

    def __enter__(self):
        import resource

        self.before = current_rss()
        self._maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import resource

        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss > self._maxrss_before:  # the lifetime peak moved during the block: it is the block's peak
            self.peak = max(self.peak, maxrss)
        return False


def measure_memory_child(make_runner: Callable[[], Runner], steps: int) -> None:
    """In a child process: build one variant, then run ``steps`` steps under :class:`PeakRSS`; print one JSON line."""
    runner = make_runner()
    import gc

    gc.collect()
    with PeakRSS() as m:
        runner(steps)
    print("MEMORY_JSON " + json.dumps({"before": m.before, "peak": m.peak}))


def memory_in_children(script: str, variants: list[str], argv: list[str], threads: int,
                       log: Callable[[str], None] = print) -> dict[str, dict]:
    """Run ``script --_child VARIANT`` for every variant (a fresh process each, so one variant's allocations cannot
    hide another's; all at once, after the timing, since RSS is per process); return {variant: {"before": bytes,
    "peak": bytes}}."""
    out = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs = {v: subprocess.Popen([sys.executable, script, *argv, "--_child", v], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env) for v in variants}
    for v, proc in procs.items():
        stdout, stderr = proc.communicate()
        line = [x for x in stdout.splitlines() if x.startswith("MEMORY_JSON ")]
        if proc.returncode != 0 or not line:
            log(f"  memory child {v!r} failed (rc {proc.returncode}): {stderr.strip()[-400:]}")
            continue
        out[v] = json.loads(line[-1].split(" ", 1)[1])
    return out


# --- the table -----------------------------------------------------------------------------------------------------


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:.0f}"


def machine_line(threads: int) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    what = "wall time" if clock is time.perf_counter else "process CPU time"
    return (f"torch {torch.__version__}, {threads} thread(s), {os.cpu_count()} CPUs, step clock: {what}, "
            f"1-min load average {load:.2f} when the timing ended")
