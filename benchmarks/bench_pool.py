"""Benchmark (issue #17, item 5): the pool sampler behind every test-time scaling curve, against ``model.generate``.

Both sample the same pool, one call per chunk of problems with ``num_return_sequences = n`` (``lm.sample_pool``:
``--batch-size`` rows per call, a multiple of n), at temperature 1, at most ``--max-new-tokens`` tokens, stopping at
``<|end|>``: **ours** is the package's cached sampler (``generation.sample_cached``: a KV cache, finished rows
dropped from the batch), **hf** is Hugging Face's ``model.generate`` with its own KV cache (finished rows padded
until every row ends). The two engines draw the same tokens from the same seed (``tests/test_generation.py``), so
they do the same work. The rounds are interleaved (ours, hf, then the order swapped) after one untimed warm-up
each; we print the median seconds per pool, replies/s and completion tokens/s (tokens up to and including
``<|end|>``), and the ratio. ``--full`` times the full-mode pool (256 × 200) once with ours.

    OMP_NUM_THREADS=2 python benchmarks/bench_pool.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

from rlhfbook_lab import world  # noqa: E402
from rlhfbook_lab.lm.models import load_model  # noqa: E402
from rlhfbook_lab.lm.sample_pool import sample_pool  # noqa: E402

ENGINES = {"ours": "cached", "hf": "hf"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=50, help="held-out addition problems in the pool (fast mode: 50)")
    p.add_argument("--n", type=int, default=64, help="replies per problem (fast mode: 64)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="reply budget in tokens")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per generate call")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--full", action="store_true", help="also time the full-mode pool (256 × 200) once, ours only")
    args = p.parse_args(argv)
    C.set_threads(args.threads)
    C.quiet_libraries()
    model, tok = load_model("sft-tiny")
    model.eval()
    problems = world.heldout_prompts(args.prompts, seed=0, families=("addition",))

    def run(variant: str, problems, n):
        return sample_pool(model, tok, problems, n=n, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, seed=0, engine=ENGINES[variant])

    for v in ENGINES:  # warm-up
        run(v, problems[:2], args.n)
    seconds = {v: [] for v in ENGINES}
    tokens = {}
    order = list(ENGINES)
    for r in range(args.repeats):
        for v in order if r % 2 == 0 else order[::-1]:
            pool = run(v, problems, args.n)
            seconds[v].append(pool.seconds)
            tokens[v] = pool.tokens
    replies = args.prompts * args.n
    rows = []
    for v in ENGINES:
        med = statistics.median(seconds[v])
        rows.append([v, f"{med:.2f}", f"{replies / med:.0f}", f"{tokens[v] / med:.0f}",
                     f"{statistics.median(seconds['hf']) / med:.2f}"])
    print(f"pool of {args.n} replies × {args.prompts} problems, batch {args.batch_size} rows, "
          f"{args.repeats} interleaved rounds; {C.machine_line(args.threads)}")
    C.print_table(["engine", "median s", "replies/s", "tokens/s", "hf / this"], rows)
    if tokens["ours"] != tokens["hf"]:
        print(f"note: the engines sampled {tokens['ours']} and {tokens['hf']} tokens (the same seed should draw the "
              "same tokens; a difference means a near-tie was broken differently)")
    if args.full:
        full = run("ours", world.heldout_prompts(200, seed=0, families=("addition",)), 256)
        print(f"full-mode pool (256 × 200) with ours: {full.seconds:.0f} s, {full.n * 200 / full.seconds:.0f} "
              f"replies/s, {full.tokens / full.seconds:.0f} tokens/s")


if __name__ == "__main__":
    main()
