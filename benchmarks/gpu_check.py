"""The GPU path, checked on a CUDA machine: the checks CI (CPU only) cannot make.

    python benchmarks/gpu_check.py            # about 3 minutes on one H100

1. **Sampling on CUDA**: the cached decode loop against ``model.generate`` (same seed), and the sampler's own
   log-probs against the log-prob core's recomputation, in fp32 and under bf16 autocast.
2. **The ``small`` preset** (≈ 25 M parameters, the GPU default): pretraining steps under the training loop's
   bf16 autocast; the loss must fall and stay finite; steps/s and peak GPU memory.
3. **RL on CUDA**: ``RLConfig.fast("grpo")`` from ``sft-tiny`` (gold reward), gold score before and after.
4. **Throughput**: a training step (forward, backward, AdamW) of the ``small`` preset — or of the model given by
   ``--model PATH`` (e.g. a 100 M–500 M checkpoint) — in bf16: tokens/s and model FLOPs utilisation against the
   device's datasheet dense bf16 peak (``equations/flops.py``); and the cached sampler's tokens/s against
   ``model.generate`` on the same prompts (medians of interleaved rounds).

    python benchmarks/gpu_check.py --model /path/to/a/causal-lm     # checks 1–3, then 4 on that model

It prints one line per check and a final ``ALL OK`` (exit code 0) or the failures (exit code 1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from rlhfbook_lab.equations.flops import mfu, training_flops_per_token
from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.lm.forward import forward_logits
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.models import init_model, load_model
from rlhfbook_lab.lm.tokenizer import load_tokenizer
from rlhfbook_lab.trainers.loop import TrainConfig, make_optimizer

# Dense bf16 tensor-core peaks from the vendors' datasheets, FLOP/s (no sparsity). A device not listed gets no MFU.
PEAK_BF16 = {"H200": 989e12, "H100 80GB HBM3": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12,
             "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "RTX 4090": 165e12}

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


def peak_flops(name: str) -> float | None:
    """The datasheet peak of the first entry of ``PEAK_BF16`` whose key is in the device name (most specific
    first), or None."""
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def _median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(device: torch.device, model_path: str | None = None, batch: int = 16, seq_len: int = 256) -> None:
    tok = load_tokenizer() if model_path is None else None
    if model_path is None:
        model = init_model("small", tok).to(device)
    else:
        model, tok = load_model(model_path, device=device)
    cfg = model.config
    seq_len = min(seq_len, getattr(cfg, "max_position_embeddings", seq_len))
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    width = cfg.num_attention_heads * getattr(cfg, "head_dim", None) if getattr(cfg, "head_dim", None) else \
        cfg.hidden_size
    flops = training_flops_per_token(n_matmul, cfg.num_hidden_layers, seq_len, width)
    opt = make_optimizer(model, TrainConfig(lr=1e-5))
    ids = torch.randint(10, len(tok), (batch, seq_len), device=device)
    model.train()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()  # warm-up: kernels chosen, memory allocated
    seconds = _median_time(step, 10)
    tokens_per_s = batch * seq_len / seconds
    peak = peak_flops(torch.cuda.get_device_name())
    share = f"MFU {mfu(tokens_per_s, flops, peak):.1%} of {peak / 1e12:.0f} TFLOP/s" if peak else \
        "MFU not reported (device not in PEAK_BF16)"
    check("training-step throughput, bf16", seconds > 0,
          f"{n_matmul / 1e6:.1f} M matmul params, {batch}×{seq_len} tokens: {tokens_per_s:,.0f} tokens/s, "
          f"{flops * tokens_per_s / 1e12:.1f} TFLOP/s achieved; {share}")
    model.eval()
    prompts = PROMPTS * 8
    kw = dict(max_new_tokens=64, seed=0)
    engines = ["cached", "hf"] if model_path is None or type(model).__name__ == "LlamaForCausalLM" else ["hf"]
    times = {e: [] for e in engines}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(5):  # interleaved rounds
            for e in engines:
                times[e].append(_median_time(lambda e=e: generate(model, tok, prompts, engine=e, **kw), 1))
    new_tokens = len(prompts) * kw["max_new_tokens"]
    rates = {e: new_tokens / statistics.median(t) for e, t in times.items()}
    ratio = f"; cached / generate = {rates['cached'] / rates['hf']:.2f}×" if "cached" in rates else ""
    check("sampler throughput, bf16", True,
          ", ".join(f"{e}: ≤ {r:,.0f} tokens/s" for e, r in rates.items()) + f" ({len(prompts)} prompts × "
          f"{kw['max_new_tokens']} new tokens at most){ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a causal LM folder or hub id for the throughput check (default: the "
                                        "`small` preset, freshly initialised)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (CI covers the CPU path)")
        return 0
    import transformers

    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"bf16 {'supported' if torch.cuda.is_bf16_supported() else 'NOT supported'}", flush=True)
    for fn in (sampling, small_preset, rl, lambda d: throughput(d, args.model)):
        try:
            fn(device)
        except Exception as e:  # report and go on: one broken check should not hide the others
            check(fn.__name__, False, f"{type(e).__name__}: {e}")
    print("ALL OK" if not failures else f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
