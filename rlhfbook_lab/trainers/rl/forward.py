"""The RL loop's forward passes: each distinct prompt of a rollout computed once, completions in chunks of similar
length, and PPO's value head on the policy's last hidden state (the package docstring says why a head)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from rlhfbook_lab.equations.logprobs import per_token_logprobs
from rlhfbook_lab.lm.forward import cache_kwargs, forward_logits, position_ids_from_mask, returned_cache


class ValueHead(nn.Module):
    """V(s) = w·h + b on the policy's last hidden state (zero-initialised: V = 0 at the start)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.float()).squeeze(-1)


CHUNK_OVERHEAD = 96
"""The cost of one more forward pass, in token slots, for :func:`length_chunks`. Measured on the GRPO bench's
rollouts (``sft-tiny``, 4 prompts × 8, ≤ 48 tokens; policy forward + backward and reference forward, 2 threads):
0 and 16 were slower than one unchunked pass (each extra pass through the model costs milliseconds), 96 and 160
about 6 % faster."""


def length_chunks(lengths: torch.Tensor, overhead: int = CHUNK_OVERHEAD) -> list[torch.Tensor]:
    """Split rows into chunks of similar length, so that a chunk's forward pass stops at *its* longest row.

    A batch padded to its longest completion computes B · max(L) token slots; chunks of rows sorted by length
    compute Σ_c |c| · max_{i∈c} L_i. Each extra pass costs fixed work (launching every layer once more), counted
    as ``overhead`` token slots. The cut points minimise Σ_c (|c| · max_{i∈c} L_i + overhead) exactly, by
    dynamic programming over the sorted lengths (O(B²), B is a rollout's row count).

    Args:
        lengths: Shape (B,), int: each row's completion length (tokens after the prompt, up to and including EOS).
        overhead: the cost of one more pass, in token slots (>= 0).

    Returns:
        row indices of each chunk (1-D int64 tensors), shortest rows first; together a permutation of ``range(B)``.
    """
    if lengths.dim() != 1 or len(lengths) == 0:
        raise ValueError(f"lengths must be a non-empty 1-D tensor (B,); got shape {tuple(lengths.shape)}")
    order = torch.argsort(lengths, stable=True)
    ls = lengths[order].tolist()
    B = len(ls)
    best = [0.0] + [math.inf] * B  # best[j]: cheapest cost of the first j sorted rows
    cut = [0] * (B + 1)
    for j in range(1, B + 1):  # the last chunk is sorted rows [i, j): its width is ls[j - 1]
        for i in range(j):
            cost = best[i] + (j - i) * ls[j - 1] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], B
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    return [order[i:j] for i, j in reversed(bounds)]


def shared_prompt_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int,
                         distinct: tuple[torch.Tensor, torch.Tensor] | None = None,
                         chunk_overhead: int | None = CHUNK_OVERHEAD) -> torch.Tensor:
    """Final hidden states (B, T, H) of ``model.base_model`` computing each *distinct* prompt once, and each
    completion only up to its chunk's longest row.

    The rows of a rollout come in groups that share a prompt (G completions of each), and the prompt's hidden
    states, keys and values do not depend on the completion that follows it (causal attention). So: run the U
    distinct prompts (columns ``[0, P)``) once, with the cache on; copy each prompt's keys and values to the rows
    that share it (``index_select``, whose backward sums each group's gradients back with ``index_add_``); run
    the completion columns of the B rows against that cache.
    Work on the prompt falls from B·P to U·P tokens.

    Completions differ in length (a rollout's rows are padded to its longest), so the completion pass runs on
    chunks of rows of similar length (:func:`length_chunks`, ``chunk_overhead``; None: one chunk), each cut at
    its own longest row. Columns past a chunk's width hold zeros: they are padding, which no log-prob reads.
    The result equals one full forward pass on every real token up to float rounding (numerical: a test checks
    logits, values and gradients with ``equations.numerics``' tolerance). ``distinct``:
    ``torch.unique(input_ids[:, :P], dim=0, return_inverse=True)`` if the caller already has it.
    """

    B, T = input_ids.shape
    P = prompt_length
    prompts, inverse = distinct if distinct is not None else torch.unique(
        input_ids[:, :P], dim=0, return_inverse=True)  # (U, P), (B,)
    first = torch.empty(len(prompts), dtype=torch.long, device=input_ids.device).scatter_(
        0, inverse, torch.arange(B, device=input_ids.device))  # one row of each distinct prompt
    positions = position_ids_from_mask(attention_mask)
    base = model.base_model
    head = base(input_ids=prompts, attention_mask=attention_mask[first, :P], position_ids=positions[first, :P],
                use_cache=True)
    kv = [(layer.keys, layer.values) for layer in returned_cache(head).layers]  # each (U, H_kv, P, hd)
    lengths = attention_mask[:, P:].sum(dim=1)  # (B,)
    chunks = ([torch.arange(B, device=input_ids.device)] if chunk_overhead is None
              else length_chunks(lengths, chunk_overhead))
    parts = []
    for rows in chunks:
        width = max(1, int(lengths[rows].max()))
        cache = DynamicCache([(k.index_select(0, inverse[rows]), v.index_select(0, inverse[rows])) for k, v in kv])
        tail = base(input_ids=input_ids[rows, P:P + width], attention_mask=attention_mask[rows, :P + width],
                    position_ids=positions[rows, P:P + width], use_cache=True, **cache_kwargs(base, cache))
        parts.append(F.pad(tail.last_hidden_state, (0, 0, 0, T - P - width)))  # (|c|, T − P, H)
    back = torch.argsort(torch.cat(chunks))  # chunk order → row order
    return torch.cat([head.last_hidden_state.index_select(0, inverse), torch.cat(parts)[back]], dim=1)


def prompt_length(completion_mask: torch.Tensor | None) -> int | None:
    """P, the first column any completion starts in (generation's layout: every completion starts there)."""
    if completion_mask is None:
        return None
    cols = completion_mask.bool().any(dim=0).nonzero()
    return int(cols[0]) if len(cols) else None


def forward_with_values(policy, input_ids, attention_mask, value_head: ValueHead | None = None,
             completion_mask: torch.Tensor | None = None, chunk_overhead: int | None = CHUNK_OVERHEAD):
    """Logits (B, T, V) and, with a value head, values (B, T) aligned with input_ids (values[:, t] = V read at
    column t − 1, the state before token t; column 0 is 0).

    Given the ``completion_mask`` of a rollout whose rows share prompts, each distinct prompt is computed once
    (:func:`shared_prompt_hidden`, its completions in chunks of similar length by ``chunk_overhead``); otherwise
    (or when every prompt is distinct) one plain forward pass."""
    P = prompt_length(completion_mask)
    distinct = torch.unique(input_ids[:, :P], dim=0, return_inverse=True) if P else None
    shared = distinct is not None and len(distinct[0]) < input_ids.shape[0]
    if value_head is None and not shared:
        return forward_logits(policy, input_ids, attention_mask), None
    if shared:
        hidden = shared_prompt_hidden(policy, input_ids, attention_mask, P, distinct, chunk_overhead)
    else:
        hidden = policy.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids_from_mask(attention_mask), use_cache=False
                                   ).last_hidden_state  # (B, T, H), after the final norm
    logits = policy.get_output_embeddings()(hidden)  # (B, T, V): what forward_logits computes
    values = F.pad(value_head(hidden)[:, :-1], (1, 0)) if value_head is not None else None  # (B, T)
    return logits, values


def trim_columns(batch: dict) -> dict:
    """Drop the columns no row of the batch uses (left padding of the prompt, right padding after the
    longest completion); positions come from the attention mask, so no log-prob changes."""
    real = batch["attention_mask"].bool().any(dim=0)  # (T,)
    cols = real.nonzero().flatten()
    lo, hi = int(cols[0]), int(cols[-1]) + 1
    return {k: v[:, lo:hi] if torch.is_tensor(v) and v.dim() == 2 else v for k, v in batch.items()}


@torch.no_grad()
def score_tokens(model, input_ids, attention_mask, batch_size: int, value_head: ValueHead | None = None,
                  completion_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (B, T) of ``input_ids`` under ``model`` (eval mode, no grad), in chunks of rows,
    and values (B, T) with a value head."""
    logps, values = [], []
    for i in range(0, input_ids.shape[0], batch_size):
        ids, am = input_ids[i:i + batch_size], attention_mask[i:i + batch_size]
        cm = completion_mask[i:i + batch_size] if completion_mask is not None else None
        logits, v = forward_with_values(model, ids, am, value_head, cm)
        logps.append(per_token_logprobs(logits, ids))
        if v is not None:
            values.append(v.float())
    return torch.cat(logps), (torch.cat(values) if values else None)
