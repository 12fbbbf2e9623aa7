"""Benchmark (issue #6): our DPO training step against TRL's ``DPOTrainer`` and against the floor.

Every variant trains a copy of the same policy (the shipped ``sft-tiny``) against an explicit frozen reference (a
copy of the same weights) on the same batch (the same pairs, stacked chosen-first, right-padded to the same
(2B, T), the same completion masks: reply + ``<|end|>``), sigmoid DPO with β = 0.1, summed log-probs, the same
AdamW settings (lr, betas, eps, no weight decay, grad clip 1.0, constant learning rate), fp32, no gradient
checkpointing, dropout off:

- **ours**: ``dpo_trainer.train_dpo`` with ``ref_model`` (the code path of a real run: ``dpo_loss_sum`` on the
  shared loop: one stacked policy forward, a no-grad reference forward each step; batch_size = the number of
  pairs, so every step stacks all of them in the trainer's seeded order: the same batch, pairs permuted); step
  times from the loop's ``charts/step_time``.
- **ours-precomp**: the same with ``precompute_ref_logps=True``: the reference scores the pairs once before
  training (timed apart) and no step runs it.
- **trl**: ``trl.DPOTrainer`` with ``ref_model``, fed the same pairs as conversations (TRL tokenizes them with
  the chat template; the benchmark checks its collated batch equals ours token for token) in the same order
  (sequential sampler); step times between successive ``on_step_end`` callbacks. bf16 and gradient
  checkpointing, TRL's defaults, are off.
- **floor**: a bare step on pre-collated tensors: the policy's forward, log-softmax + gather of the reply
  tokens, the reference's no-grad forward, the loss mean −log σ(β·Δ), backward, AdamW (``fused=True``),
  zero_grad. **floor-noref**: the same with the reference's log-probs computed once (the floor of ours-precomp).

With policy = reference every step-0 loss is ln 2 exactly; a second check scores the policy against a different
reference (``base-tiny``), where ours and TRL must still agree within 1e-5. ``--help`` for the options.
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LR, WEIGHT_DECAY, BETAS, EPS, GRAD_CLIP, BETA, SEED = 1e-4, 0.0, (0.9, 0.95), 1e-8, 1.0, 0.1, 0
VARIANTS = ("ours", "trl", "floor", "ours-precomp", "floor-noref")


def _frozen(model):
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


# --- the variants ------------------------------------------------------------------------------------------------


class OursRunner:
    """``dpo_trainer.train_dpo`` for n steps per call on the same pairs (batch_size = number of pairs)."""

    def __init__(self, policy, ref, tokenizer, pairs: list[dict], precompute: bool):
        self.policy, self.ref, self.tokenizer, self.pairs, self.precompute = policy, ref, tokenizer, pairs, precompute
        self.losses: list[float] = []

    def config(self, n: int):
        from rlhfbook_lab.trainers.dpo import DPOConfig
        from rlhfbook_lab.trainers.loop import TrainConfig

        train_cfg = TrainConfig(steps=n, lr=LR, warmup_steps=0, min_lr_ratio=1.0, weight_decay=WEIGHT_DECAY,
                                betas=BETAS, grad_clip=GRAD_CLIP, seed=SEED, bf16=False)
        return DPOConfig(loss="dpo", beta=BETA, batch_size=len(self.pairs), max_length=10_000,
                         precompute_ref_logps=self.precompute, train=train_cfg)

    def __call__(self, n: int) -> list[float]:
        from rlhfbook_lab.trainers.dpo import train_dpo

        with C.loop_clock():
            history = train_dpo(self.policy, self.tokenizer, self.pairs, self.config(n), ref_model=self.ref,
                                progress=False)
        self.losses.extend(history["losses/train"])
        return list(history["charts/step_time"])


def conversational(pairs: list[dict]) -> dict[str, list]:
    """Pairs in TRL's conversational preference format (explicit prompt), as columns."""
    return {"prompt": [[{"role": "user", "content": p["prompt"]}] for p in pairs],
            "chosen": [[{"role": "assistant", "content": p["chosen"]}] for p in pairs],
            "rejected": [[{"role": "assistant", "content": p["rejected"]}] for p in pairs]}


class TrlRunner(C.TrlRunner):
    """``trl.DPOTrainer`` with an explicit ``ref_model`` for n steps per call (``max_steps = n``; the dataset
    repeats the pairs so a call never wraps an epoch; sequential sampling keeps our order)."""

    def __init__(self, policy, ref, tokenizer, pairs: list[dict], max_steps: int):
        from datasets import Dataset
        from trl import DPOConfig, DPOTrainer

        self.losses: list[float] = []
        self.times: list[float] = []
        data = {k: v * (max_steps + 1) for k, v in conversational(pairs).items()}
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-dpo-trl-")
        args = C.trl_args(DPOConfig, self._tmp.name, lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS, eps=EPS,
                          grad_clip=GRAD_CLIP, seed=SEED, per_device_train_batch_size=len(pairs), beta=BETA,
                          loss_type=["sigmoid"], max_length=None, precompute_ref_log_probs=False,
                          train_sampling_strategy="sequential")
        # TRL patches forward() of the models it gets (its fused LM head): give it its own copies
        self._use(C.loss_recording(DPOTrainer, self.losses)(
            model=copy.deepcopy(policy).train(), ref_model=_frozen(ref), args=args,
            train_dataset=Dataset.from_dict(data), processing_class=tokenizer, callbacks=[C.trl_step_timer(self)]))


def _reply_logps(model, input_ids, attention_mask, completion_mask) -> torch.Tensor:
    """Σ_t log π(x_t | x_<t) over the reply tokens. Shapes (N, T) → (N,)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (N, T, V)
    logps = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (N, T-1)
    return (logps * completion_mask[:, 1:]).sum(dim=1)


class FloorRunner:
    """The bare DPO step on pre-collated tensors (module docstring); ``with_ref=False``: reference log-probs
    computed once."""

    def __init__(self, policy, ref, batch: dict, with_ref: bool):
        self.policy, self.ref, self.with_ref = policy.train(), ref, with_ref
        self.args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        if not with_ref:
            with torch.no_grad():
                self.ref_logps = _reply_logps(ref, *self.args)
        params = [p for p in policy.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY, fused=True)
        self.losses: list[float] = []

    def __call__(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = C.clock()
            logps = _reply_logps(self.policy, *self.args)  # (2B,)
            if self.with_ref:
                with torch.no_grad():
                    ref_logps = _reply_logps(self.ref, *self.args)
            else:
                ref_logps = self.ref_logps
            chosen, rejected = (logps - ref_logps).chunk(2)
            loss = -F.logsigmoid(BETA * (chosen - rejected)).mean()
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            times.append(C.clock() - t0)
            self.losses.append(float(loss.detach()))
        return times


# --- building -----------------------------------------------------------------------------------------------------


def build_runners(policy, ref, tokenizer, pairs: list[dict], max_steps: int, variants=VARIANTS) -> tuple[dict, dict]:
    """The runners in ``variants``, each on its own copies of ``policy`` and ``ref`` (frozen), so all start from
    the same weights; also the collated batch."""
    from rlhfbook_lab.lm.data import collate_pairs, tokenize_pairs

    batch = collate_pairs(tokenize_pairs(pairs, tokenizer).rows, tokenizer.pad_token_id)
    runners = {}
    for v in variants:
        if v in ("ours", "ours-precomp"):
            runners[v] = OursRunner(copy.deepcopy(policy), _frozen(ref), tokenizer, pairs, v == "ours-precomp")
        elif v == "trl":
            runners[v] = TrlRunner(policy, ref, tokenizer, pairs, max_steps)
            theirs = runners[v].first_batch()
            for key in ("input_ids", "attention_mask", "completion_mask"):
                if not torch.equal(theirs[key], batch[key]):
                    raise AssertionError(f"TRL's collated {key} differs from collate_pairs': not the same batch")
        elif v in ("floor", "floor-noref"):
            runners[v] = FloorRunner(copy.deepcopy(policy), _frozen(ref), batch, with_ref=v == "floor")
        else:
            raise ValueError(f"unknown variant {v!r}; expected one of {VARIANTS}")
    return runners, batch


def step0_losses(policy, ref, tokenizer, pairs: list[dict], variants=VARIANTS) -> dict[str, float]:
    """One step of each variant from the same weights; {variant: step-0 loss}. What tests/test_benchmarks.py runs."""
    runners, _ = build_runners(policy, ref, tokenizer, pairs, max_steps=1, variants=variants)
    for r in runners.values():
        r(1)
    return {name: r.losses[0] for name, r in runners.items()}


def precompute_seconds(runner: OursRunner, repeats: int = 3) -> float:
    """Median wall time of ``dpo_trainer.compute_ref_logps`` over the benchmark's pairs (what ours-precomp pays
    once per run, before its first step)."""
    from rlhfbook_lab.lm.data import tokenize_pairs
    from rlhfbook_lab.trainers.dpo import compute_ref_logps

    rows = tokenize_pairs(runner.pairs, runner.tokenizer).rows
    times = []
    for _ in range(repeats):
        t0 = C.clock()
        compute_ref_logps(runner.ref, rows, runner.config(1), runner.tokenizer.pad_token_id)
        times.append(C.clock() - t0)
    return C.median(times)


# --- main ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], steps=8, repeats=4)
    parser.add_argument("--checkpoint", default="sft-tiny", help="the policy and its reference")
    parser.add_argument("--other-reference", default="base-tiny",
                        help="reference for the second step-0 check (policy != reference); '' skips it")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per step (2 x pairs rows)")
    parser.add_argument("--max-length", type=int, default=60, help="longest side of a pair, in tokens")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    args, argv = C.setup(parser, argv)
    variants = [v for v in args.variants.split(",") if v]
    from rlhfbook_lab.lm.models import load_model

    policy, tokenizer = load_model(args.checkpoint, device="cpu")
    pairs = C.bench_pairs(tokenizer, args.pairs, args.max_length)
    max_steps = max(args.steps, args.warmup, args.memory_steps)
    if args._child:
        C.measure_memory_child(lambda: build_runners(policy, policy, tokenizer, pairs, max_steps, [args._child])[0]
                               [args._child], args.memory_steps)
        return

    runners, batch = build_runners(policy, policy, tokenizer, pairs, max_steps, variants)
    real, padded = C.batch_tokens(batch)
    rows, seq = batch["input_ids"].shape
    f_policy = C.train_flops(policy.config, rows, seq, lm_head=True)
    f_ref = C.forward_flops(policy.config, rows, seq, lm_head=True)
    flops = {v: f_policy + (0 if v in ("ours-precomp", "floor-noref") else f_ref) for v in variants}
    print(f"DPO step: {args.checkpoint} ({sum(p.numel() for p in policy.parameters()):,} params) against a frozen "
          f"copy, {args.pairs} pairs -> batch ({rows}, {seq}): {real} real tokens, {padded} with padding; "
          f"{(f_policy + f_ref) / 1e9:.2f} GFLOP/step with the reference forward, {f_policy / 1e9:.2f} without")
    rounds, times = C.time_variants(runners, variants, args)
    pre = precompute_seconds(runners["ours-precomp"]) if "ours-precomp" in runners else None

    extra = None
    if args.other_reference and "trl" in variants and "ours" in variants:
        other, _ = load_model(args.other_reference, device="cpu")
        extra = step0_losses(policy, other, tokenizer, pairs, variants=("ours", "trl"))
    memory = C.peak_memory(__file__, variants, argv, args)

    med = {v: C.median(times[v]) for v in variants}
    floor_of = {"ours": "floor", "trl": "floor", "floor": "floor", "ours-precomp": "floor-noref",
                "floor-noref": "floor-noref"}
    table = []
    for v in variants:
        lo, hi = C.iqr(times[v])
        mem = memory.get(v)
        fl = floor_of[v]
        table.append([v, f"{med[v] * 1e3:.1f}", f"{lo * 1e3:.0f}-{hi * 1e3:.0f}", f"{1 / med[v]:.2f}",
                      f"{real / med[v]:,.0f}", f"{flops[v] / med[v] / 1e9:.2f}",
                      f"{med[v] / med[fl]:.2f} ({fl})" if fl in med else "-",
                      C.mb(mem["peak"]) if mem else "-", C.mb(mem["peak"] - mem["before"]) if mem else "-",
                      f"{runners[v].losses[0]:.7f}"])
    C.print_table(["variant", "ms/step", "IQR ms", "steps/s", "tokens/s", "GFLOP/s", "x floor", "peak RSS MB",
                   "step RSS MB", "step-0 loss"], table)
    print(f"n = {len(times[variants[0]])} timed steps per variant; tokens/s counts real (unpadded) tokens; GFLOP/s "
          "uses 6*N*tokens + 12*L*T*d*tokens for the policy (N = matmul weights incl. the LM head, padded tokens) "
          "plus a third of that for the reference forward")
    print("memory: peak RSS of a fresh child process running that variant alone (sampled from /proc/self/statm "
          "every 2 ms, and ru_maxrss); 'step RSS' = peak minus RSS just before its first step")
    if pre is not None:
        print(f"ours-precomp pays {pre * 1e3:.1f} ms once, before training, to score the {args.pairs} pairs with "
              "the reference (compute_ref_logps)")
    if "ours" in med and "floor" in med:
        print(f"ours / floor time: {med['ours'] / med['floor']:.3f} (goal <= 1.2: "
              f"{'met' if med['ours'] <= 1.2 * med['floor'] else 'NOT met'}); round by round "
              f"{C.paired_ratio(rounds['ours'], rounds['floor'])}")
    if "ours-precomp" in med and "floor-noref" in med:
        print(f"ours-precomp / floor-noref time: {med['ours-precomp'] / med['floor-noref']:.3f}; round by round "
              f"{C.paired_ratio(rounds['ours-precomp'], rounds['floor-noref'])}")
    if "ours" in med and "trl" in med:
        print(f"ours / TRL steps/s: {med['trl'] / med['ours']:.3f} (goal >= 1: "
              f"{'met' if med['ours'] <= med['trl'] else 'NOT met'}); round by round "
              f"{C.paired_ratio(rounds['trl'], rounds['ours'])}")
    ln2 = max(abs(runners[v].losses[0] - math.log(2)) for v in variants)
    print(f"step-0 loss, policy = reference: max |loss - ln 2| over the variants = {ln2:.2e} (goal < 1e-5: "
          f"{'met' if ln2 < 1e-5 else 'NOT met'})")
    if extra is not None:
        gap = abs(extra["ours"] - extra["trl"])
        print(f"step-0 loss, reference = {args.other_reference}: ours {extra['ours']:.7f}, TRL {extra['trl']:.7f}, "
              f"|gap| = {gap:.2e} (goal < 1e-5: {'met' if gap < 1e-5 else 'NOT met'})")


if __name__ == "__main__":
    main()
