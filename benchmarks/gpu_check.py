"""The GPU path, checked on a CUDA machine: the checks CI (CPU only) cannot make.

    python benchmarks/gpu_check.py            # about 3 minutes on one H100

1. **Sampling on CUDA**: the cached decode loop against ``model.generate`` (same seed), and the sampler's own
   log-probs against the log-prob core's recomputation, in fp32 and under bf16 autocast.
2. **The ``small`` preset** (≈ 25 M parameters, the GPU default): pretraining steps under the training loop's
   bf16 autocast; the loss must fall and stay finite; steps/s and peak GPU memory.
3. **RL on CUDA**: ``RLConfig.fast("grpo")`` from ``sft-tiny`` (gold reward), gold score before and after.

It prints one line per check and a final ``ALL OK`` (exit code 0) or the failures (exit code 1).
"""

from __future__ import annotations

import sys
import time

import torch

from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import load_model

PROMPTS = ["What is 12 + 35?", "Spell mirt backward.", "Which creature glows?",
           "Write a short, positive review of the lamp."]
failures: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
    if not ok:
        failures.append(name)


def sampling(device: torch.device) -> None:
    model, tok = load_model("sft-tiny", device=device)
    for bf16 in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            kw = dict(max_new_tokens=40, num_return_sequences=8, seed=0)
            ours = generate(model, tok, PROMPTS, engine="cached", **kw)
            ref = generate(model, tok, PROMPTS, engine="hf", **kw)
            same = (ours.input_ids == ref.input_ids).all(dim=1).float().mean().item()
            with torch.no_grad():
                logits = forward_logits(model, ours.input_ids, ours.attention_mask)
        recomputed = per_token_logprobs(logits.float(), ours.input_ids) * ours.completion_mask
        err = (ours.logprobs - recomputed).abs().max().item()
        tol = 0.1 if bf16 else 1e-4
        label = "bf16 autocast" if bf16 else "fp32"
        check(f"sampling, {label}", err < tol and torch.isfinite(ours.logprobs).all().item(),
              f"{same:.0%} of the 32 completions identical to model.generate's; max |sampler − recomputed "
              f"log-prob| = {err:.2e} (bound {tol:g})")


def small_preset(device: torch.device, steps: int = 150) -> None:
    from rlhfbook_lab.lm.tokenizer import load_tokenizer
    from rlhfbook_lab.trainers.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(preset="small", n_statements=40_000)
    cfg.train.steps, cfg.train.warmup_steps = steps, 20
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model, history = pretrain(cfg, load_tokenizer(), out=None, progress=False)
    elapsed = time.perf_counter() - start
    losses = history["losses/train"]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    check("small preset, bf16 pretraining", last < 0.8 * first and all(map(lambda x: x == x, losses)),
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params on {next(model.parameters()).device}; "
          f"loss {first:.3f} → {last:.3f} over {steps} steps; {steps / elapsed:.1f} steps/s (data included); "
          f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


def rl(device: torch.device) -> None:
    from rlhfbook_lab.trainers.rl import RLConfig, train_rl

    policy, tok = load_model("sft-tiny", device=device)
    start = time.perf_counter()
    _, history = train_rl(policy, tok, RLConfig.fast("grpo"), progress=False)
    elapsed = time.perf_counter() - start
    gold = history["eval/gold_score"]
    check("GRPO on CUDA", all(g == g for g in gold), f"held-out gold {gold[0]:+.3f} → {gold[-1]:+.3f}, KL "
          f"{history['kl/seq'][-1]:.3f} nats/reply, {elapsed:.0f} s")


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (CI covers the CPU path)")
        return 0
    import transformers

    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"bf16 {'supported' if torch.cuda.is_bf16_supported() else 'NOT supported'}", flush=True)
    for fn in (sampling, small_preset, rl):
        try:
            fn(device)
        except Exception as e:  # report and go on: one broken check should not hide the others
            check(fn.__name__, False, f"{type(e).__name__}: {e}")
    print("ALL OK" if not failures else f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
