"""Benchmark (issue #4): our reward-model training step against TRL's ``RewardTrainer`` and against the floor.

Three variants train the same reward model (the shipped ``sft-tiny`` backbone with one scalar head, the head drawn
once and copied, so all three start from the same weights) on the same batch (the same pairs, stacked chosen-first
and right-padded to the same (2B, T)), with the same AdamW settings (lr, betas, eps, weight decay on matrices only,
grad clip 1.0, a constant learning rate), fp32, no gradient checkpointing:

- **ours**: ``reward_trainer.train_reward_model``, exactly the code path of a real run (tokenize once, collate
  every step, ``rm_loss_sum`` on the shared loop ``train.train``; with batch_size = the number of pairs every
  step stacks all of them, in the trainer's seeded order: the same batch with its pairs permuted, the same
  (2B, T)); step times from the loop's own ``charts/step_time``.
- **trl**: ``trl.RewardTrainer`` on a ``LlamaForSequenceClassification`` holding the same weights (its ``score``
  layer is our head), fed the same token ids pre-tokenized, in the same order (sequential sampler); step times
  between successive ``on_step_end`` callbacks. bf16 and gradient checkpointing, TRL's defaults, are off.
- **floor**: a bare step in plain PyTorch on pre-collated tensors: the backbone's forward, the head at the last
  real token, mean −log σ(r_c − r_r), backward, AdamW (``fused=True``), zero_grad. Nothing else.

The step-0 losses of the three must agree within 1e-5 (same weights, same batch; any gap means a different head
init, padding, scoring position or loss reduction). Run ``python benchmarks/bench_reward.py --help``.
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LR, WEIGHT_DECAY, BETAS, EPS, GRAD_CLIP, SEED = 2e-4, 0.1, (0.9, 0.95), 1e-8, 1.0, 0
VARIANTS = ("ours", "trl", "floor")


# --- the three variants ----------------------------------------------------------------------------------------


class OursRunner:
    """``reward_trainer.train_reward_model`` for n steps per call on the same pairs (batch_size = number of pairs,
    so every step sees the whole set in one fixed order)."""

    def __init__(self, rm, tokenizer, pairs: list[dict]):
        self.rm, self.tokenizer, self.pairs = rm, tokenizer, pairs
        self.losses: list[float] = []

    def __call__(self, n: int) -> list[float]:
        from rlhfbook_lab.trainers.loop import TrainConfig
        from rlhfbook_lab.trainers.reward import RMConfig, train_reward_model

        train_cfg = TrainConfig(steps=n, lr=LR, warmup_steps=0, min_lr_ratio=1.0, weight_decay=WEIGHT_DECAY,
                                betas=BETAS, grad_clip=GRAD_CLIP, seed=SEED, bf16=False)
        cfg = RMConfig(train=train_cfg, batch_size=len(self.pairs), max_length=None)
        with C.loop_clock():
            history = train_reward_model(self.rm, self.tokenizer, self.pairs, cfg, progress=False)
        self.losses.extend(history["losses/train"])
        return list(history["charts/step_time"])


def _seqcls_copy(rm):
    """A ``*ForSequenceClassification`` (num_labels=1) holding ``rm``'s backbone weights and its head as ``score``."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(rm.backbone.config)
    config.num_labels = 1
    model = AutoModelForSequenceClassification.from_config(config)
    model.base_model.load_state_dict(rm.backbone.base_model.state_dict())
    with torch.no_grad():
        model.score.weight.copy_(rm.head.weight)
    return model.train()


class TrlRunner(C.TrlRunner):
    """``trl.RewardTrainer`` for n steps per call (``max_steps = n``; the dataset repeats the pairs enough times
    that a call never wraps an epoch; sequential sampling keeps our order)."""

    def __init__(self, rm, tokenizer, tok_rows: list[dict], max_steps: int):
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer

        self.losses: list[float] = []
        self.times: list[float] = []
        copies = max_steps + 1
        data = {"chosen_ids": [r["chosen_input_ids"] for r in tok_rows] * copies,
                "rejected_ids": [r["rejected_input_ids"] for r in tok_rows] * copies}
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-rm-trl-")
        args = C.trl_args(RewardConfig, self._tmp.name, lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS, eps=EPS,
                          grad_clip=GRAD_CLIP, seed=SEED, per_device_train_batch_size=len(tok_rows), max_length=None,
                          train_sampling_strategy="sequential")
        self._use(C.loss_recording(RewardTrainer, self.losses)(
            model=_seqcls_copy(rm), args=args, train_dataset=Dataset.from_dict(data), processing_class=tokenizer,
            callbacks=[C.trl_step_timer(self)]))


class FloorRunner:
    """The bare step on pre-collated tensors (module docstring)."""

    def __init__(self, rm, batch: dict):
        self.backbone, self.head = rm.backbone.base_model, rm.head
        rm.train()
        self.input_ids, self.attention_mask = batch["input_ids"], batch["attention_mask"]
        self.rows = torch.arange(self.input_ids.shape[0])
        self.last = self.attention_mask.sum(dim=1) - 1  # right padding: the last real token
        params = [p for p in rm.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, fused=True)
        self.losses: list[float] = []

    def __call__(self, n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = C.clock()
            hidden = self.backbone(input_ids=self.input_ids, attention_mask=self.attention_mask,
                                   use_cache=False).last_hidden_state  # (2B, T, H)
            rewards = self.head(hidden[self.rows, self.last]).squeeze(-1)  # (2B,)
            chosen, rejected = rewards.chunk(2)
            loss = -F.logsigmoid(chosen - rejected).mean()
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            times.append(C.clock() - t0)
            self.losses.append(float(loss.detach()))
        return times


# --- building ---------------------------------------------------------------------------------------------------


def build_runners(backbone, tokenizer, pairs: list[dict], max_steps: int, variants=VARIANTS) -> dict:
    """The runners in ``variants``, each on its own copy of one reward model (``RewardModel.from_causal_lm(backbone,
    seed=0)``), so all start from the same weights."""
    from rlhfbook_lab.lm.data import collate_pairs, tokenize_pairs
    from rlhfbook_lab.lm.reward_model import RewardModel

    rm = RewardModel.from_causal_lm(backbone, copy=True, seed=SEED)
    tok_rows = tokenize_pairs(pairs, tokenizer).rows
    batch = collate_pairs(tok_rows, tokenizer.pad_token_id)
    runners = {}
    for v in variants:
        if v == "ours":
            runners[v] = OursRunner(copy.deepcopy(rm), tokenizer, pairs)
        elif v == "trl":
            runners[v] = TrlRunner(rm, tokenizer, tok_rows, max_steps)
            theirs = runners[v].first_batch()
            for key in ("input_ids", "attention_mask"):
                if not torch.equal(theirs[key], batch[key]):
                    raise AssertionError(f"TRL's collated {key} differs from collate_pairs': not the same batch")
        elif v == "floor":
            runners[v] = FloorRunner(copy.deepcopy(rm), batch)
        else:
            raise ValueError(f"unknown variant {v!r}; expected one of {VARIANTS}")
    return runners, batch


def step0_losses(backbone, tokenizer, pairs: list[dict]) -> dict[str, float]:
    """One step of each variant from the same weights; {variant: step-0 loss}. What tests/test_benchmarks.py runs."""
    runners, _ = build_runners(backbone, tokenizer, pairs, max_steps=1)
    for r in runners.values():
        r(1)
    return {name: r.losses[0] for name, r in runners.items()}


# --- main -------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = C.base_parser(__doc__.splitlines()[0], steps=8, repeats=5)
    parser.add_argument("--checkpoint", default="sft-tiny", help="the backbone (a shipped name or a folder)")
    parser.add_argument("--pairs", type=int, default=8, help="pairs per step (2 x pairs rows)")
    parser.add_argument("--max-length", type=int, default=60, help="longest side of a pair, in tokens")
    args, argv = C.setup(parser, argv)
    from rlhfbook_lab.lm.models import load_model

    backbone, tokenizer = load_model(args.checkpoint, device="cpu")
    pairs = C.bench_pairs(tokenizer, args.pairs, args.max_length)
    max_steps = max(args.steps, args.warmup, args.memory_steps)
    if args._child:
        C.measure_memory_child(lambda: build_runners(backbone, tokenizer, pairs, max_steps, [args._child])[0]
                               [args._child], args.memory_steps)
        return

    runners, batch = build_runners(backbone, tokenizer, pairs, max_steps)
    real, padded = C.batch_tokens(batch)
    rows, seq = batch["input_ids"].shape
    flops = C.train_flops(backbone.config, rows, seq, lm_head=False)
    print(f"reward-model step: {args.checkpoint} ({sum(p.numel() for p in backbone.parameters()):,} params), "
          f"{args.pairs} pairs -> batch ({rows}, {seq}): {real} real tokens, {padded} with padding; "
          f"{flops / 1e9:.2f} GFLOP/step")
    rounds, times = C.time_variants(runners, list(VARIANTS), args)
    memory = C.peak_memory(__file__, list(VARIANTS), argv, args)

    med = {v: C.median(times[v]) for v in VARIANTS}
    table = []
    for v in VARIANTS:
        lo, hi = C.iqr(times[v])
        mem = memory.get(v)
        table.append([v, f"{med[v] * 1e3:.1f}", f"{lo * 1e3:.0f}-{hi * 1e3:.0f}", f"{1 / med[v]:.2f}",
                      f"{real / med[v]:,.0f}", f"{flops / med[v] / 1e9:.2f}", f"{med[v] / med['floor']:.2f}",
                      C.mb(mem["peak"]) if mem else "-", C.mb(mem["peak"] - mem["before"]) if mem else "-",
                      f"{runners[v].losses[0]:.7f}"])
    C.print_table(["variant", "ms/step", "IQR ms", "steps/s", "tokens/s", "GFLOP/s", "x floor", "peak RSS MB",
                   "step RSS MB", "step-0 loss"], table)
    gap = abs(runners["ours"].losses[0] - runners["trl"].losses[0])
    gap_floor = abs(runners["ours"].losses[0] - runners["floor"].losses[0])
    print(f"n = {len(times['ours'])} timed steps per variant; tokens/s counts real (unpadded) tokens; GFLOP/s uses "
          "6*N*tokens + 12*L*T*d*tokens over padded tokens (N = matmul weights, no LM head)")
    print("memory: peak RSS of a fresh child process running that variant alone (sampled from /proc/self/statm "
          "every 2 ms, and ru_maxrss); 'step RSS' = peak minus RSS just before its first step")
    print(f"ours / floor time: {med['ours'] / med['floor']:.3f} (goal <= 1.2: "
          f"{'met' if med['ours'] <= 1.2 * med['floor'] else 'NOT met'}); round by round "
          f"{C.paired_ratio(rounds['ours'], rounds['floor'])}")
    print(f"ours / TRL steps/s: {med['trl'] / med['ours']:.3f} (goal >= 1: "
          f"{'met' if med['ours'] <= med['trl'] else 'NOT met'}); round by round "
          f"{C.paired_ratio(rounds['trl'], rounds['ours'])}")
    print(f"step-0 loss |ours - trl| = {gap:.2e}, |ours - floor| = {gap_floor:.2e} (goal < 1e-5: "
          f"{'met' if max(gap, gap_floor) < 1e-5 else 'NOT met'})")


if __name__ == "__main__":
    main()
