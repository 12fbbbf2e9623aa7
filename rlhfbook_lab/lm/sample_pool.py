"""Inference-time scaling on a model (RLHF Book ch. 7): sample one pool of n replies per problem, then read
pass@k, majority@k and best-of-k for *every* k ≤ n from it (``equations.scaling``: exact expectations over
k-subsets, no resampling).

    from rlhfbook_lab.lm.models import load_model
    from rlhfbook_lab.lm.sample_pool import sample_pool, scaling_table

    model, tok = load_model("sft-tiny")
    pool = sample_pool(model, tok, world.heldout_prompts(50, families=("addition",)), n=64)
    table = scaling_table(pool)     # {"k": ..., "pass@k": ..., "maj@k": ..., "best_gold@k": ...}

The verifier (``world.verifiers``) grades each reply and extracts its final answer (majority voting counts those);
the gold judge scores it (best-of-k by gold). A reward model's scores of the pool can be passed in as another
selector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from rlhfbook_lab import world
from rlhfbook_lab.equations.scaling import best_of_k, majority_at_k, pass_at_k_curve, pass_at_k_plugin
from rlhfbook_lab.lm.generation import generate
from rlhfbook_lab.lm.pool_scoring import gold_scorer, score_groups, verifier_scorer

__all__ = ["Pool", "sample_pool", "scaling_table"]


@dataclass
class Pool:
    """n replies to each of P problems, with what the verifier and the gold judge say of each."""

    problems: list[world.Problem]
    """The P problems, in input order."""
    replies: list[list[str]]
    """replies[i]: the n replies to problem i. Shape: (P, n)."""
    seconds: float = 0.0
    """Wall-clock seconds the sampling took."""
    tokens: int = 0
    """Reply tokens generated in all (EOS included)."""
    correct: np.ndarray = field(init=False)
    """(P, n) bool: the verifier's verdict on each reply (an empty reply is wrong)."""
    answers: list[list] = field(init=False)
    """(P, n) each reply's extracted final answer (``None``: no answer; it does not vote)."""
    gold: np.ndarray = field(init=False)
    """(P, n) float: the gold judge's score of each reply."""

    def __post_init__(self):
        if len(self.problems) == 0 or len(self.problems) != len(self.replies):
            raise ValueError(f"a pool needs one list of replies per problem; got {len(self.problems)} problems and "
                             f"{len(self.replies)} lists")
        sizes = {len(r) for r in self.replies}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError("replies must hold the same number (>= 1) of replies per problem; "
                             f"got sizes {sorted(sizes)}")
        # the same scorers best-of-n selects with (lm/pool_scoring.py), so a pool and a selection never disagree
        self.correct = score_groups(self.problems, self.replies, verifier_scorer) == 1.0
        self.answers = [[world.extract_answer(p, r, allow_empty=True) for r in rs]
                        for p, rs in zip(self.problems, self.replies)]
        self.gold = score_groups(self.problems, self.replies, gold_scorer)

    @property
    def n(self) -> int:
        """Replies per problem."""
        return len(self.replies[0])

    @property
    def counts(self) -> np.ndarray:
        """(P,) correct replies per problem."""
        return self.correct.sum(axis=1)

    @property
    def rates(self) -> np.ndarray:
        """(P,) each problem's success rate c_i / n (its pass@1)."""
        return self.counts / self.n

    @property
    def replies_per_second(self) -> float:
        return self.n * len(self.problems) / max(self.seconds, 1e-9)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


@torch.no_grad()
def sample_pool(model, tokenizer, problems: list[world.Problem], n: int = 64, temperature: float = 1.0,
                max_new_tokens: int = 32, batch_size: int = 1024, seed: int = 0, engine: str = "auto") -> Pool:
    """Sample ``n`` replies to each problem at ``temperature`` (batched: ``batch_size`` rows per
    ``generate`` call with the KV cache; the cached sampler drops finished rows from its cache as they end).

    Args:
        problems: world problems (``world.heldout_prompts(P, families=("addition",))``).
        n: the pool size per problem (k runs up to it).
        max_new_tokens: reply budget in tokens (characters); an addition reply needs ~15.
        batch_size: rows per call; a multiple of ``n`` is used (at least one problem per call).
        seed: seeds torch's RNG once: the same model and seed give the same pool.
        engine: ``generation.generate``'s engine (``"auto"``: the cached sampler; ``"hf"``: ``model.generate``,
            which ``benchmarks/bench_pool.py`` times against it).
    """
    if not problems or not all(isinstance(p, world.Problem) for p in problems):
        raise ValueError("problems must be a non-empty list of world.Problem")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    torch.manual_seed(seed)
    per_call = max(1, batch_size // n)
    replies: list[list[str]] = []
    tokens = 0
    t0 = time.perf_counter()
    for i in range(0, len(problems), per_call):
        chunk = problems[i:i + per_call]
        gen = generate(model, tokenizer, [p.prompt for p in chunk], max_new_tokens=max_new_tokens,
                       temperature=temperature, num_return_sequences=n, engine=engine)
        tokens += int(gen.completion_mask.sum())
        replies += [gen.texts[j * n:(j + 1) * n] for j in range(len(chunk))]
    return Pool(problems=list(problems), replies=replies, seconds=time.perf_counter() - t0, tokens=tokens)


def scaling_table(pool: Pool, ks=None, select_scores=None) -> dict[str, np.ndarray]:
    """Every test-time scaling curve of one pool, for each k in ``ks`` (default 1..n):

    - ``pass@k``: unbiased (Chen et al.); ``pass@k_plugin``: 1 − (1 − c/n)^k, biased low;
    - ``maj@k``: majority vote over the extracted answers (self-consistency);
    - ``best_gold@k``: correctness of the reply the gold judge ranks first among k (an oracle reranker);
    - ``best_rm@k``: the same with ``select_scores`` (P, n) as the selector (e.g. a reward model), if given.

    Best-of-k *by the verifier* is pass@k itself (the verifier picks a right reply whenever one exists).
    """
    k = np.arange(1, pool.n + 1) if ks is None else np.asarray(ks)
    counts = pool.counts
    value = pool.correct.astype(float)
    table = {
        "k": k,
        "pass@k": pass_at_k_curve(counts, pool.n, k),
        "pass@k_plugin": pass_at_k_plugin(pool.n, counts[:, None], k[None, :]).mean(axis=0),
        "maj@k": majority_at_k(pool.answers, [world.reference_answer(p) for p in pool.problems], k),
        "best_gold@k": best_of_k(pool.gold, value, k),
    }
    if select_scores is not None:
        table["best_rm@k"] = best_of_k(select_scores, value, k)
    return table
