"""Batched sampling with the KV cache: sequences, completion masks and the sampler's own log-probs.

We call ``model.generate`` (it already batches, caches keys and values, and handles left padding and stopping
at EOS) and ask it for the processed scores of every step, from which we read the log-probability of each
sampled token *under the distribution it was sampled from* (after temperature and top-p). RL needs exactly
these: at temperature 1 without top-p they equal the model's log-probs recomputed by the log-prob core, and a
test checks that to 1e-5.

Everything returned is aligned with ``input_ids`` (the log-prob core's convention): one ``(B, P + T)`` layout
holding the left-padded prompt and the right-padded completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Generation", "encode_prompts", "generate"]


@dataclass
class Generation:
    """The output of :func:`generate`. Tensors are (B, P + T), aligned with ``input_ids``."""

    input_ids: torch.Tensor
    """Left-padded prompt followed by the completion (padded after its EOS)."""
    attention_mask: torch.Tensor
    """1 on real tokens (prompt and completion up to and including EOS)."""
    completion_mask: torch.Tensor
    """1 on completion tokens, EOS included; 0 on prompt and padding."""
    logprobs: torch.Tensor
    """The sampler's log-prob of each completion token (0 elsewhere), float32."""
    prompt_length: int
    """P: the completion starts at column P."""
    texts: list[str]
    """Completions decoded without special tokens."""
    finished: torch.Tensor
    """(B,) bool: the completion ended with EOS (False: it hit ``max_new_tokens``)."""


def encode_prompts(tokenizer, prompts, chat: bool = True) -> list[list[int]]:
    """Token ids of each prompt. ``chat=True``: a user message rendered by the chat template with the
    assistant header appended; a prompt may also be a list of messages. ``chat=False``: BOS + raw text (what a
    base model saw in pretraining)."""
    out = []
    for p in prompts:
        if chat:
            msgs = [{"role": "user", "content": p}] if isinstance(p, str) else p
            ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=False)
        else:
            if not isinstance(p, str):
                raise ValueError(f"with chat=False each prompt must be a string; got {type(p).__name__}")
            ids = [tokenizer.bos_token_id] + tokenizer.encode(p, add_special_tokens=False)
        out.append(list(ids))
    return out


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts,
    max_new_tokens: int = 48,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    chat: bool = True,
    num_return_sequences: int = 1,
    seed: int | None = None,
) -> Generation:
    """Sample completions for a batch of prompts in one call.

    Args:
        prompts: strings (user messages, or raw text with ``chat=False``) or lists of chat messages.
        temperature, top_p: the sampler; ignored when ``greedy``.
        num_return_sequences: completions per prompt (a *group*); rows of a group are contiguous.
        seed: seeds torch's RNG first, for reproducible samples.
    """
    if not prompts:
        raise ValueError("prompts is empty")
    if not greedy and temperature <= 0:
        raise ValueError(f"temperature must be > 0 (or use greedy=True); got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1]; got {top_p}")
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    seqs = encode_prompts(tokenizer, prompts, chat)
    seqs = [s for s in seqs for _ in range(num_return_sequences)]
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    prompt_ids, prompt_mask = _left_pad(seqs, pad_id)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    was_training = model.training
    model.eval()
    sample_kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_p=top_p,
                                                          top_k=0)
    out = model.generate(
        input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
        pad_token_id=pad_id, eos_token_id=eos_id, return_dict_in_generate=True, output_scores=True,
        **sample_kw,
    )
    model.train(was_training)
    P = prompt_ids.shape[1]
    completion = out.sequences[:, P:]  # (B, T)
    scores = torch.stack(out.scores, dim=1).float()  # (B, T, V): what the sampler drew from
    token_logps = F.log_softmax(scores, dim=-1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)  # (B, T)
    is_eos = completion == eos_id
    # a token is in the completion if no EOS came strictly before it
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    comp_mask = (before == 0).long()
    finished = is_eos.any(dim=1)
    completion = torch.where(comp_mask.bool(), completion, torch.full_like(completion, pad_id))
    token_logps = torch.where(comp_mask.bool(), token_logps, torch.zeros_like(token_logps))
    texts = tokenizer.batch_decode(completion, skip_special_tokens=True)
    return Generation(
        input_ids=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, comp_mask], dim=1),
        completion_mask=torch.cat([torch.zeros_like(prompt_mask), comp_mask], dim=1),
        logprobs=torch.cat([torch.zeros(prompt_mask.shape, device=device), token_logps], dim=1),
        prompt_length=P,
        texts=texts,
        finished=finished,
    )
