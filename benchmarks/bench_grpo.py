"""Benchmark (issue #5): our GRPO step, generation included, against TRL's ``GRPOTrainer``.

Both train a copy of the shipped ``sft-tiny`` policy with GRPO as DeepSeekMath writes it, configured alike:

- the same prompts in the same order (the world's training prompts, drawn by ``rl``'s own seeded stream), each
  step ``--prompts`` of them with ``--group-size`` completions each, sampled at temperature 1 (no top-k, no
  top-p), at most ``--max-new-tokens`` tokens, stopping at ``<|end|>``; the whole rollout is one batch and one
  optimizer step (one epoch, one minibatch: TRL's ``steps_per_generation=1``, ``num_iterations=1``);
- reward: the world's gold judge (``world.gold_score``); advantages: the group z-score (TRL's
  ``scale_rewards="group"``); loss: the clipped surrogate (ε = 0.2) plus β·k3 to a frozen copy of the start
  policy (β = 0.04; TRL's default β is 0, which skips the reference, so it is set), averaged per sequence then
  over sequences (TRL's ``loss_type="grpo"``, our ``seq_mean_token_mean``);
- AdamW with the same lr (constant), betas (0.9, 0.95), no weight decay, grad clip 1.0; fp32, no gradient
  checkpointing (both TRL defaults switched off).

**ours** is ``rl.train_rl`` with ``RLConfig.preset("grpo", ...)``; **trl** is ``trl.GRPOTrainer``. A step is
timed from the start of one rollout's generation to the start of the next (ours) or between successive
``on_step_end`` callbacks (TRL): sampling, scoring, reference log-probs, the update, logging, all included.
Generation time is read the same way for both, by timing the policy's ``generate`` calls; tokens/s counts the
completion tokens sampled (up to and including ``<|end|>``). Sampling is random, so there is no step-0 loss to
compare. ``--help`` for the options.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402

BETA, EPSILON, BETAS, EPS, GRAD_CLIP, SEED = 0.04, 0.2, (0.9, 0.95), 1e-8, 1.0, 0
VARIANTS = ("ours", "trl")


class GenerateTimer:
    """Wraps the sampling call (``owner.name``: TRL's ``model.generate``, an instance attribute, so the class and
    other copies are untouched; ours, the ``generate`` that ``rlhfbook_lab.trainers.rl`` calls): records each
    call's start, its duration and the completion tokens it sampled (up to and including the first EOS)."""

    def __init__(self, owner, name: str, count_tokens):
        self.starts: list[float] = []
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            t0 = C.clock()
            self.starts.append(t0)
            out = inner(*args, **kwargs)
            self.seconds.append(C.clock() - t0)
            self.tokens.append(count_tokens(out, args, kwargs))
            return out

        setattr(owner, name, timed)

    def reset(self) -> None:
        self.starts, self.seconds, self.tokens = [], [], []


def hf_generate_tokens(eos_token_id: int):
    """Completion tokens of a ``model.generate`` output, each row up to and including its first EOS."""

    def count(out, args, kwargs) -> int:
        seqs = out if torch.is_tensor(out) else out.sequences
        prompt_len = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else args[0]).shape[1]
        completion = seqs[:, prompt_len:]
        is_eos = completion == eos_token_id
        length = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, completion.shape[1])
        return int(length.sum())

    return count


def rl_config(n_steps: int, prompts: int, group_size: int, max_new_tokens: int):
    from rlhfbook_lab.trainers.rl import RLConfig

    return RLConfig.preset("grpo", steps=n_steps, prompts_per_step=prompts, group_size=group_size,
                           max_new_tokens=max_new_tokens, temperature=1.0, beta=BETA, clip_eps_low=EPSILON,
                           grad_clip=GRAD_CLIP, weight_decay=0.0, reward="gold", eval_prompts=0, seed=SEED,
                           bf16=False)


class OursRunner:
    """``rl.train_rl`` for n rollouts per call (each call restarts the prompt stream: the same prompts as TRL)."""

    def __init__(self, policy, ref, tokenizer, prompts: int, group_size: int, max_new_tokens: int):
        self.policy, self.ref, self.tokenizer = policy, ref, tokenizer
        self.shape = (prompts, group_size, max_new_tokens)
        import rlhfbook_lab.trainers.rl.rollout as rollout

        self.gen = GenerateTimer(rollout, "generate", lambda out, a, k: int(out.completion_mask.sum()))
        self.rollouts: list[tuple[float, int]] = []  # (generation seconds, completion tokens) per step

    def __call__(self, n: int) -> list[float]:
        from rlhfbook_lab.trainers.rl import train_rl

        self.gen.reset()
        train_rl(self.policy, self.tokenizer, rl_config(n, *self.shape), ref_model=self.ref, progress=False)
        end = C.clock()
        starts = self.gen.starts + [end]
        self.rollouts.extend(zip(self.gen.seconds, self.gen.tokens))
        return [b - a for a, b in zip(starts, starts[1:])]


def prompt_stream(n: int, prompts: int, group_size: int, max_new_tokens: int) -> list[str]:
    """The first ``n`` rollouts' prompts exactly as ``train_rl`` draws them (its seeded stream)."""
    from rlhfbook_lab.trainers.rl.loop import training_prompts

    draw = training_prompts(rl_config(n, prompts, group_size, max_new_tokens))
    return [p for _ in range(n) for p in draw()]


def gold_reward(prompts, completions, **kwargs) -> list[float]:
    """TRL reward function: the gold judge's score of each (conversational) completion."""
    from rlhfbook_lab import world

    return [world.gold_score(p[-1]["content"], c[-1]["content"], allow_empty=True)
            for p, c in zip(prompts, completions)]


def trl_config(output_dir: str, prompts: int, group_size: int, max_new_tokens: int):
    from trl import GRPOConfig

    from rlhfbook_lab.trainers.rl import RLConfig

    return C.trl_args(
        GRPOConfig, output_dir, lr=RLConfig.preset("grpo").train.lr, weight_decay=0.0, betas=BETAS, eps=EPS,
        grad_clip=GRAD_CLIP, seed=SEED, per_device_train_batch_size=prompts * group_size, num_generations=group_size,
        steps_per_generation=1, num_iterations=1, gradient_accumulation_steps=1,
        max_completion_length=max_new_tokens, temperature=1.0, top_p=1.0, top_k=0, beta=BETA, epsilon=EPSILON,
        scale_rewards="group", loss_type="grpo", mask_truncated_completions=False, shuffle_dataset=False,
        log_completions=False)


class TrlRunner(C.TrlRunner):
    """``trl.GRPOTrainer`` for n steps per call, on prompts in ``train_rl``'s order (no shuffling). TRL builds its
    frozen reference itself (``beta > 0``) from the policy's checkpoint folder: the same start weights."""

    def __init__(self, policy, tokenizer, prompts: int, group_size: int, max_new_tokens: int, max_steps: int):
        from datasets import Dataset
        from trl import GRPOTrainer

        self.times: list[float] = []
        texts = prompt_stream(max_steps + 1, prompts, group_size, max_new_tokens)
        data = {"prompt": [[{"role": "user", "content": t}] for t in texts]}
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-grpo-trl-")
        model = copy.deepcopy(policy).train()
        self.gen = GenerateTimer(model, "generate", hf_generate_tokens(tokenizer.eos_token_id))
        self._use(GRPOTrainer(model=model, reward_funcs=[gold_reward],
                              args=trl_config(self._tmp.name, prompts, group_size, max_new_tokens),
                              train_dataset=Dataset.from_dict(data), processing_class=tokenizer,
                              callbacks=[C.trl_step_timer(self)]))
        if self.trainer.ref_model is None:
            raise AssertionError("TRL built no reference model: beta must be > 0 for a like-for-like step")
        self.rollouts: list[tuple[float, int]] = []

    def __call__(self, n: int) -> list[float]:
        self.gen.reset()
        times = super().__call__(n)
        self.rollouts.extend(zip(self.gen.seconds, self.gen.tokens))
        return times


def build_runners(policy, tokenizer, prompts: int, group_size: int, max_new_tokens: int, max_steps: int,
                  variants=VARIANTS) -> dict:
    from rlhfbook_lab.lm.forward import make_reference_model

    runners = {}
    for v in variants:
        if v == "ours":
            runners[v] = OursRunner(copy.deepcopy(policy), make_reference_model(policy), tokenizer, prompts,
                                    group_size, max_new_tokens)
        elif v == "trl":
            runners[v] = TrlRunner(policy, tokenizer, prompts, group_size, max_new_tokens, max_steps)
        else:
            raise ValueError(f"unknown variant {v!r}; expected one of {VARIANTS}")
    return runners


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], steps=4, repeats=3)
    parser.add_argument("--checkpoint", default="sft-tiny", help="the policy (a shipped name or a folder)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="completion budget in tokens")
    parser.set_defaults(warmup=1, memory_steps=2)
    args, argv = C.setup(parser, argv)
    from rlhfbook_lab.lm.models import load_model

    policy, tokenizer = load_model(args.checkpoint, device="cpu")
    shape = (args.prompts, args.group_size, args.max_new_tokens)
    max_steps = max(args.steps, args.warmup, args.memory_steps)
    if args._child:
        C.measure_memory_child(lambda: build_runners(policy, tokenizer, *shape, max_steps, [args._child])
                               [args._child], args.memory_steps)
        return

    runners = build_runners(policy, tokenizer, *shape, max_steps)
    rows = args.prompts * args.group_size
    print(f"GRPO step: {args.checkpoint} ({sum(p.numel() for p in policy.parameters()):,} params), "
          f"{args.prompts} prompts x G={args.group_size} = {rows} completions of <= {args.max_new_tokens} tokens, "
          f"beta={BETA}, one optimizer step per rollout")
    rounds, times = C.time_variants(runners, list(VARIANTS), args)
    memory = C.peak_memory(__file__, list(VARIANTS), argv, args)

    med = {v: C.median(times[v]) for v in VARIANTS}
    table = []
    for v in VARIANTS:
        lo, hi = C.iqr(times[v])
        gen_s = C.median([s for s, _ in runners[v].rollouts])
        tokens = C.median([t for _, t in runners[v].rollouts])
        mem = memory.get(v)
        table.append([v, f"{med[v]:.2f}", f"{lo:.2f}-{hi:.2f}", f"{1 / med[v]:.3f}", f"{tokens / med[v]:,.0f}",
                      f"{tokens / rows:.1f}", f"{gen_s:.2f}", f"{gen_s / med[v]:.0%}",
                      C.mb(mem["peak"]) if mem else "-", C.mb(mem["peak"] - mem["before"]) if mem else "-"])
    C.print_table(["variant", "s/step", "IQR s", "steps/s", "tokens/s", "mean len", "gen s", "gen share",
                   "peak RSS MB", "step RSS MB"], table)
    print(f"n = {len(times['ours'])} timed steps per variant; tokens/s = completion tokens sampled per second of "
          "the whole step (medians); 'gen s' = the sampling call per step (ours: generation.generate; TRL: "
          "model.generate); 'gen share' = gen s / s/step")
    print("memory: peak RSS of a fresh child process running that variant alone (sampled from /proc/self/statm "
          "every 2 ms, and ru_maxrss); 'step RSS' = peak minus RSS just before its first step")
    print(f"ours / TRL steps/s: {med['trl'] / med['ours']:.3f} (goal >= 2: "
          f"{'met' if med['ours'] * 2 <= med['trl'] else 'NOT met'}); round by round "
          f"{C.paired_ratio(rounds['trl'], rounds['ours'])}")


if __name__ == "__main__":
    main()
