"""Batched sampling with a KV cache: sequences, completion masks and the sampler's own log-probs.

Two engines draw the same samples (tests check token for token, and the log-probs to 1e-6 on a small model and 1e-5
on the shipped one, at fixed seeds):

- ``"cached"`` (the default for Llama, Qwen2 and Qwen3 models, the presets among them): :func:`sample_cached`, a
  decode loop written out here. It runs each *distinct* prompt through the model once and copies its keys and values
  into every member of the group (a GRPO group of 8 shares one prompt, so 7/8 of the prompt work is saved),
  preallocates the cache for the whole completion instead of growing it by concatenation, multiplies by fused q|k|v
  and gate|up weights (2 matrix products per layer instead of 5), and drops rows that have emitted EOS from the cache
  (each time a quarter of its rows have finished; ``model.generate`` keeps computing finished rows to the end). It
  still draws a token for every row at every step, as ``model.generate`` does, so the random stream and the samples
  stay the same. On a 2-core CPU it samples a GRPO rollout (4 prompts × 8, ≤ 48 tokens) in 0.38 s where
  ``model.generate`` takes 0.58 s (``benchmarks/bench_grpo.py``, medians of 15 steps; both vary by a third with the
  machine).
- ``"hf"``: ``model.generate`` from ``transformers`` (any causal LM; the fallback for models the loop does not
  know, e.g. one named by ``RLHFBOOK_MODEL``).

Both return the processed scores of every step, from which we read the log-probability of each sampled token
*under the distribution it was sampled from* (after temperature and top-p). RL needs exactly these: at
temperature 1 without top-p they equal the model's log-probs recomputed by the log-prob core, and a test checks
that to 1e-5.

Everything returned is aligned with ``input_ids`` (the log-prob core's convention): one ``(B, P + T)`` layout
holding the left-padded prompt and the right-padded completion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhfbook_lab.lm.forward import eval_mode
from rlhfbook_lab.world.calculator import run_tool_call
from rlhfbook_lab.world.tool_use import pending_call, result_text

__all__ = ["CACHED_ARCHITECTURES", "Generation", "ToolRunner", "encode_prompts", "generate", "sample_cached",
           "sample_cached_tools", "supports_cached_sampling"]


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
    tool_mask: torch.Tensor | None = None
    """With tools: (B, P + T) bool, True on tool-result tokens (in ``attention_mask``, not in
    ``completion_mask``, log-prob 0); ``None`` without tools."""


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


CACHED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
"""The model classes :func:`sample_cached` knows (their decoder layers differ only in projection biases and Qwen3's
per-head q/k RMSNorm, both handled by :class:`_Decoder`)."""


def supports_cached_sampling(model) -> bool:
    """True for the models :func:`sample_cached` knows: a Llama (the presets, Llama-architecture checkpoints, with
    or without projection biases), Qwen2 (q/k/v biases) or Qwen3 (q/k RMSNorm) with a SiLU MLP and full attention
    in every layer (no sliding window), and no output-changing forward hook on a decoder layer (a hook function with
    ``changes_output = True``, as ``steering.steering`` registers: the cached sampler reads the layers' weights
    itself and would skip it; transformers' own output-recording hooks do not count). Other models (GPT-2, ...)
    sample with ``model.generate``."""
    cfg = getattr(model, "config", None)
    ok = (type(model).__name__ in CACHED_ARCHITECTURES and cfg is not None and cfg.hidden_act == "silu"
          and all(kind == "full_attention" for kind in (getattr(cfg, "layer_types", None) or ["full_attention"])))
    return ok and not any(getattr(hook, "changes_output", False) for m in model.model.layers.modules()
                          for hook in (*m._forward_hooks.values(), *m._forward_pre_hooks.values()))


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm, y = w · x / sqrt(mean(x²) + eps), computed in float32 and cast back, as ``LlamaRMSNorm`` does
    (in float32 through torch's ``rms_norm``, one call instead of seven; the engine-agreement tests compare the
    two engines' samples and log-probs)."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    dtype = x.dtype
    x = x.float()
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding: x·cos + rotate_half(x)·sin, rotate_half(x) = (−x₂, x₁) for the two halves of the last dim."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _process_scores(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """What the sampler draws from: logits / temperature, then top-p (nucleus) filtering, which sets to −inf the
    least likely tokens whose total probability is at most 1 − top_p (the most likely token is always kept).
    Shapes: (B, V) → (B, V). Written as ``transformers``' logits warpers compute it, so both engines agree."""
    if temperature != 1.0:
        logits = logits / temperature
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        remove_sorted = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        remove_sorted[..., -1:] = False
        logits = logits.masked_fill(remove_sorted.scatter(1, order, remove_sorted), float("-inf"))
    return logits


def _fused_bias(*linears) -> torch.Tensor | None:
    """The biases of linears whose weights are fused side by side (zeros for one without), or None when none has."""
    if all(lin.bias is None for lin in linears):
        return None
    return torch.cat([lin.bias if lin.bias is not None else lin.weight.new_zeros(lin.weight.shape[0])
                      for lin in linears])


class _Decoder:
    """The model's weights arranged for the decode loop, and its key/value cache.

    Fused weights, transposed once for x @ W: [q|k|v] (2 matrix products per layer instead of 5 with [gate|up]);
    rotary tables for every position, read per row by its position; a cache preallocated for the whole completion
    (B rows, L columns), written at each step's column."""

    def __init__(self, model, B: int, L: int, group_size: int):
        inner, cfg = model.model, model.config
        self.model, self.inner, self.B, self.L, self.group_size = model, inner, B, L, group_size
        self.H, self.H_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.H
        self.eps = cfg.rms_norm_eps
        self.layers = [(layer, torch.cat([layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight,
                                          layer.self_attn.v_proj.weight]).t(),
                        torch.cat([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]).t(),
                        layer.self_attn.o_proj.weight.t(), layer.mlp.down_proj.weight.t()) for layer in inner.layers]
        # Optional parts (None where absent, so a plain Llama runs exactly the operations it always ran): projection
        # biases (Qwen2's q/k/v; a Llama's with attention_bias / mlp_bias) fused like their weights, and Qwen3's
        # per-head RMSNorm of q and k (applied before the rotation, as Qwen3Attention does).
        self.extras = [(_fused_bias(layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj),
                        _fused_bias(layer.mlp.gate_proj, layer.mlp.up_proj), layer.self_attn.o_proj.bias,
                        layer.mlp.down_proj.bias, getattr(layer.self_attn, "q_norm", None),
                        getattr(layer.self_attn, "k_norm", None)) for layer in inner.layers]
        device = inner.embed_tokens.weight.device
        cos_all, sin_all = inner.rotary_emb(inner.embed_tokens.weight[:1, None], torch.arange(L, device=device)[None])
        self.cos_all, self.sin_all = cos_all[0], sin_all[0]  # (L, hd)
        self.k_cache: list[torch.Tensor] = []
        self.v_cache: list[torch.Tensor] = []

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner.embed_tokens(ids)

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Drop the cache rows of finished completions (``keep``: (rows,) bool over the rows it holds)."""
        for cache in (self.k_cache, self.v_cache):
            cache[:] = [c[keep] for c in cache]

    def block(self, x, cos, sin, mask, start):
        """All layers for the new tokens x (rows, n, D) written at cache columns [start, start + n); the logits of
        each row's last token (rows, V), float32."""
        H, H_kv, hd, eps, B, L = self.H, self.H_kv, self.hd, self.eps, self.B, self.L
        rows, n = x.shape[:2]
        end = start + n
        for i, (layer, w_qkv, w_gu, w_o, w_down) in enumerate(self.layers):
            b_qkv, b_gu, b_o, b_down, q_norm, k_norm = self.extras[i]
            qkv = _rms_norm(x, layer.input_layernorm.weight, eps) @ w_qkv
            if b_qkv is not None:
                qkv = qkv + b_qkv
            qkv = qkv.view(rows, n, H + 2 * H_kv, hd)
            if q_norm is not None:  # Qwen3: RMSNorm over each head's dims, q and k with their own weights
                qkv = torch.cat([_rms_norm(qkv[:, :, :H], q_norm.weight, q_norm.variance_epsilon),
                                 _rms_norm(qkv[:, :, H:H + H_kv], k_norm.weight, k_norm.variance_epsilon),
                                 qkv[:, :, H + H_kv:]], dim=2)
            qk, v = qkv.transpose(1, 2).split([H + H_kv, H_kv], dim=1)
            q, k = _rotate(qk, cos, sin).split([H, H_kv], dim=1)  # q and k rotated in one pass
            if start == 0:  # the prompt pass: attend within the distinct prompts, then copy into each group row
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=hd ** -0.5, enable_gqa=H != H_kv)
                self.k_cache.append(k.new_empty(B, H_kv, L, hd))
                self.v_cache.append(v.new_empty(B, H_kv, L, hd))
                self.k_cache[i][:, :, :n] = k.repeat_interleave(self.group_size, 0)
                self.v_cache[i][:, :, :n] = v.repeat_interleave(self.group_size, 0)
            else:
                self.k_cache[i][:, :, start:end] = k
                self.v_cache[i][:, :, start:end] = v
                o = F.scaled_dot_product_attention(q, self.k_cache[i][:, :, :end], self.v_cache[i][:, :, :end],
                                                   attn_mask=mask, scale=hd ** -0.5, enable_gqa=H != H_kv)
            attn = o.transpose(1, 2).reshape(rows, n, H * hd) @ w_o
            x = x + (attn if b_o is None else attn + b_o)
            gu = _rms_norm(x, layer.post_attention_layernorm.weight, eps) @ w_gu
            gate, up = (gu if b_gu is None else gu + b_gu).chunk(2, dim=-1)
            mlp = (F.silu(gate) * up) @ w_down
            x = x + (mlp if b_down is None else mlp + b_down)
        return self.model.lm_head(_rms_norm(x[:, -1], self.inner.norm.weight, eps)).float()  # (rows, V)



def _prompt_pass(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group_size: int,
                 max_new_tokens: int):
    """The prompt pass of both cached loops, one row per distinct prompt, copied into each group row.

    Returns the :class:`_Decoder` holding the cache, the logits of each row's next token (B, V), the keys a
    query may see (B, P + max_new_tokens) bool (the real prompt tokens so far) and each row's position (B,).
    A padded query sees every key (its output is never read; this only keeps a fully masked softmax from
    producing NaN). Positions count real tokens only (left padding does not shift them)."""
    n_prompts, P = prompt_ids.shape
    B, L = n_prompts * group_size, P + max_new_tokens
    dec = _Decoder(model, B, L, group_size)
    real = prompt_mask.bool()
    positions = (prompt_mask.long().cumsum(-1) - 1).masked_fill(~real, 1)  # (N, P)
    mask = torch.ones(P, P, dtype=torch.bool, device=prompt_ids.device).tril()[None] & real[:, None, :]
    mask = (mask | ~mask.any(-1, keepdim=True))[:, None]  # (N, 1, P, P)
    logits = dec.block(dec.embed(prompt_ids), dec.cos_all[positions][:, None], dec.sin_all[positions][:, None],
                       mask, 0)
    valid = torch.zeros(B, L, dtype=torch.bool, device=prompt_ids.device)  # keys a query may see
    valid[:, :P] = real.repeat_interleave(group_size, 0)
    return dec, logits.repeat_interleave(group_size, 0), valid, positions[:, -1].repeat_interleave(group_size, 0)


@torch.no_grad()
def sample_cached(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group_size: int,
                  max_new_tokens: int, eos_id: int, pad_id: int, temperature: float = 1.0, top_p: float = 1.0,
                  greedy: bool = False, compact_at: float = 0.75) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``group_size`` completions of each distinct prompt with a preallocated KV cache.

    Args:
        prompt_ids, prompt_mask: (N, P) left-padded distinct prompts.
        compact_at: drop finished rows from the cache once the rows still sampling are at most this share of
            the rows it holds (1: at every finish; 0: never). It changes no token (a test checks).
    Returns:
        completion: (B, T) token ids, B = N · group_size (rows of a group contiguous), T ≤ max_new_tokens (the
        loop stops once every row has emitted EOS); ``pad_id`` after a row's EOS.
        scores: (B, T, V) float32, the processed scores each token was drawn from (greedy: the raw logits);
        a row's scores after its EOS are a dummy (zeros once it left the cache).

    The loop, per layer, for the new token(s) x (the whole prompt on the first pass, one token after):
    h = RMSNorm(x); [q|k|v] = h·W_qkv; rotate q, k by position; write k, v into the cache at their columns;
    x += softmax(q·Kᵀ/√d + mask)·V · W_o; x += (silu(g) ⊙ u)·W_down with [g|u] = RMSNorm(x)·W_gate|up.
    Positions count real tokens only (left padding does not shift them); padded keys are masked out.
    """
    if not 0.0 <= compact_at <= 1.0:
        raise ValueError(f"compact_at must be in [0, 1]; got {compact_at}")
    n_prompts, P = prompt_ids.shape
    B = n_prompts * group_size
    dec, logits, valid, position = _prompt_pass(model, prompt_ids, prompt_mask, group_size, max_new_tokens)
    device, cos_all, sin_all = prompt_ids.device, dec.cos_all, dec.sin_all
    # 2. one token at a time. The cache holds the rows still sampling (`live`, indices into the B rows): when
    #    enough rows have emitted EOS, their cache rows are dropped, so finished rows cost nothing. Every step
    #    still draws a token for all B rows (finished rows from a dummy distribution, their token replaced by
    #    pad), as `model.generate` does: the random stream, and so every live row's token, is the same.
    live = torch.arange(B, device=device)  # the rows the cache (and valid, position) hold, in cache order
    unfinished = torch.ones(B, dtype=torch.bool, device=device)
    tokens, scores = [], []
    for t in range(max_new_tokens):
        if len(live) < B:  # the logits of the live rows, zeros (a uniform dummy) for the others
            logits = logits.new_zeros(B, logits.shape[-1]).index_copy_(0, live, logits)
        if greedy:
            step_scores, token = logits, logits.argmax(-1)
        else:
            step_scores = _process_scores(logits, temperature, top_p)
            token = torch.multinomial(F.softmax(step_scores, dim=-1), num_samples=1).squeeze(1)
        token = torch.where(unfinished, token, pad_id)
        tokens.append(token)
        scores.append(step_scores)
        unfinished = unfinished & (token != eos_id)
        if t == max_new_tokens - 1 or not unfinished.any():
            break
        keep = unfinished[live]
        n_keep = int(keep.sum())
        if n_keep < len(live) and n_keep <= len(live) * compact_at:  # drop the finished rows from the cache
            live, valid, position = live[keep], valid[keep], position[keep]
            dec.keep_rows(keep)
        col = P + t  # the cache column of the token just sampled
        valid[:, col] = True
        position = position + 1
        logits = dec.block(dec.embed(token[live])[:, None], cos_all[position][:, None, None],
                           sin_all[position][:, None, None], valid[:, None, None, :col + 1], col)
    return torch.stack(tokens, dim=1), torch.stack(scores, dim=1)



class ToolRunner:
    """What the sampler with tools does when a row's call closes: runs the tool and gives the result's tokens.

    Args:
        tokenizer: to read a row's text and encode results.
        tool: ``(name, arguments) -> str``, e.g. ``world.calculator.run_tool_call`` (the default); a lesson
            passes a tool that lies. An exception becomes an ``error:`` result: nothing a row writes stops the
            rollout.
        max_calls: calls answered per reply; a call beyond it gets ``error: too many tool calls``.
    """

    def __init__(self, tokenizer, tool=run_tool_call, max_calls: int = 4):
        if max_calls < 0:
            raise ValueError(f"max_calls must be >= 0; got {max_calls}")
        self.tokenizer, self.tool, self.max_calls = tokenizer, tool, max_calls
        self.special = set(tokenizer.all_special_ids)

    def text(self, token: int) -> str:
        return self.tokenizer.decode([token], skip_special_tokens=True)

    def result_ids(self, reply: str, calls_so_far: int) -> list[int] | None:
        """The result tokens to append if ``reply`` ends with a closed call (``world.tool_use.pending_call``)."""
        call = pending_call(reply)
        if call is None:
            return None
        if calls_so_far >= self.max_calls:
            result = "error: too many tool calls"
        else:
            try:
                result = str(self.tool(*call))
            except Exception as e:  # noqa: BLE001 -- a tool's failure is a result the model reads
                result = f"error: the tool raised {type(e).__name__}"
        ids = self.tokenizer.encode(result_text(result), add_special_tokens=False)
        return [i for i in ids if i not in self.special]  # a result cannot end the turn or pose as a role


def _draw(step_scores: torch.Tensor, greedy: bool, generator) -> int:
    """One token from one row's processed scores (V,): argmax, or a draw with the row's own generator."""
    if greedy:
        return int(step_scores.argmax())
    return int(torch.multinomial(F.softmax(step_scores, dim=-1), 1, generator=generator))


@torch.no_grad()
def sample_cached_tools(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, group_size: int,
                        max_new_tokens: int, eos_id: int, pad_id: int, runner: ToolRunner, seeds: list[int],
                        temperature: float = 1.0, top_p: float = 1.0,
                        greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`sample_cached` with tools: a row pauses when its call closes, the tool runs, the result's tokens
    are fed in, and the same reply continues (several calls per reply, up to ``runner.max_calls`` answered).

    All rows advance one cache column per step, batched, whether they are sampling or being fed a result, so
    rows that call at different steps share every forward pass. Each row draws from its own generator
    (``seeds[r]``): a row's tokens do not depend on the other rows' calls, so a one-row-at-a-time loop from the
    same seeds draws the same tokens (a test checks). A result token is not drawn: it consumes no randomness.

    Returns:
        completion: (B, T) token ids (pad after EOS); logps: (B, T) float32, the log-prob of each *sampled*
        token under the distribution it was drawn from (0 on result tokens and after EOS); tool_mask: (B, T)
        bool, True on result tokens (not the model's: never a loss target, never in log-probs or KL).
    """
    n_prompts, P = prompt_ids.shape
    B = n_prompts * group_size
    if len(seeds) != B:
        raise ValueError(f"seeds must give one seed per row ({B}); got {len(seeds)}")
    dec, logits, valid, position = _prompt_pass(model, prompt_ids, prompt_mask, group_size, max_new_tokens)
    device = prompt_ids.device
    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    queue: list[list[int]] = [[] for _ in range(B)]  # result tokens still to feed, per row
    replies, calls = [""] * B, [0] * B
    unfinished = [True] * B
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long)
    logps = torch.zeros(B, max_new_tokens)
    tool_mask = torch.zeros(B, max_new_tokens, dtype=torch.bool)
    T = max_new_tokens
    for t in range(max_new_tokens):
        step_scores = logits if greedy else _process_scores(logits, temperature, top_p)
        step_logps = F.log_softmax(step_scores, dim=-1)
        for r in range(B):
            if not unfinished[r]:
                continue
            if queue[r]:
                tokens[r, t], tool_mask[r, t] = queue[r].pop(0), True
                continue
            tok = _draw(step_scores[r], greedy, gens[r])
            tokens[r, t], logps[r, t] = tok, step_logps[r, tok]
            if tok == eos_id:
                unfinished[r] = False
                continue
            replies[r] += runner.text(tok)
            result = runner.result_ids(replies[r], calls[r])
            if result is not None:
                calls[r] += 1
                queue[r] = result
                replies[r] += runner.tokenizer.decode(result)
        if t == max_new_tokens - 1 or not any(unfinished):
            T = t + 1
            break
        col = P + t
        valid[:, col] = True
        position = position + 1
        logits = dec.block(dec.embed(tokens[:, t].to(device))[:, None], dec.cos_all[position][:, None, None],
                           dec.sin_all[position][:, None, None], valid[:, None, None, :col + 1], col)
    return tokens[:, :T].to(device), logps[:, :T].to(device), tool_mask[:, :T].to(device)


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
    engine: str = "auto",
    tool=None,
    max_calls: int = 4,
) -> Generation:
    """Sample completions for a batch of prompts in one call.

    Why one function (~80 lines): the one front door for sampling (argument checks, the engine's choice, the
    result's assembly); the engines themselves are :func:`sample_cached`, :func:`sample_cached_tools` and
    ``model.generate``.

    Args:
        prompts: strings (user messages, or raw text with ``chat=False``) or lists of chat messages.
        temperature, top_p: the sampler; ignored when ``greedy``.
        num_return_sequences: completions per prompt (a *group*); rows of a group are contiguous.
        seed: seeds torch's RNG first, for reproducible samples.
        engine: ``"cached"`` (:func:`sample_cached`), ``"hf"`` (``model.generate``) or ``"auto"`` (cached when
            :func:`supports_cached_sampling`). Both draw the same tokens from the same seed.
        tool: ``(name, arguments) -> str`` (e.g. ``world.calculator.run_tool_call``): generate with tools
            (:func:`sample_cached_tools`, cached engine only; each row draws from its own generator, seeded from
            torch's RNG after ``seed``). ``max_calls``: calls answered per reply.
    """
    if not prompts:
        raise ValueError("prompts is empty")
    if not greedy and temperature <= 0:
        raise ValueError(f"temperature must be > 0 (or use greedy=True); got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1]; got {top_p}")
    if engine not in ("auto", "cached", "hf"):
        raise ValueError(f"engine must be 'auto', 'cached' or 'hf'; got {engine!r}")
    if engine == "cached" and not supports_cached_sampling(model):
        raise ValueError(f"engine='cached' supports {', '.join(CACHED_ARCHITECTURES)} (SiLU, full attention); "
                         f"got {type(model).__name__}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
    if num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be >= 1; got {num_return_sequences}")
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    prompt_ids, prompt_mask = _left_pad(encode_prompts(tokenizer, prompts, chat), pad_id)  # (N, P) distinct
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    if engine == "auto":
        engine = "cached" if supports_cached_sampling(model) else "hf"
    distinct_ids, distinct_mask = prompt_ids, prompt_mask
    prompt_ids = prompt_ids.repeat_interleave(num_return_sequences, 0)  # (B, P): a row per completion
    prompt_mask = prompt_mask.repeat_interleave(num_return_sequences, 0)
    if tool is not None:
        if not supports_cached_sampling(model) or engine == "hf":
            raise ValueError(f"tool= needs the cached engine ({', '.join(CACHED_ARCHITECTURES)}); got "
                             f"{type(model).__name__}")
        runner = ToolRunner(tokenizer, tool, max_calls)
        seeds = torch.randint(2**62, (prompt_ids.shape[0],)).tolist()
        with eval_mode(model):
            completion, logps, tool_mask = sample_cached_tools(
                model, distinct_ids, distinct_mask, num_return_sequences, max_new_tokens, eos_id, pad_id, runner,
                seeds, temperature, top_p, greedy)
        return _as_generation(tokenizer, prompt_ids, prompt_mask, completion, token_logps=logps,
                              tool_mask=tool_mask)
    with eval_mode(model):
        if engine == "cached":
            completion, scores = sample_cached(model, distinct_ids, distinct_mask, num_return_sequences,
                                               max_new_tokens, eos_id, pad_id, temperature, top_p, greedy)
        else:
            sample_kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature,
                                                                  top_p=top_p, top_k=0)
            out = model.generate(
                input_ids=prompt_ids, attention_mask=prompt_mask, max_new_tokens=max_new_tokens,
                pad_token_id=pad_id, eos_token_id=eos_id, return_dict_in_generate=True, output_scores=True,
                **sample_kw,
            )
            completion = out.sequences[:, prompt_ids.shape[1]:]  # (B, T)
            scores = torch.stack(out.scores, dim=1).float()  # (B, T, V): what the sampler drew from
    return _as_generation(tokenizer, prompt_ids, prompt_mask, completion, scores)

def _as_generation(tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion: torch.Tensor,
                   scores: torch.Tensor | None = None, token_logps: torch.Tensor | None = None,
                   tool_mask: torch.Tensor | None = None) -> Generation:
    """The sampler's output in the package's layout: completion masks that stop at the first EOS (included),
    padding after it, and each token's log-prob under the scores it was drawn from. Shapes: (B, P), (B, P),
    (B, T), (B, T, V) → :class:`Generation` with (B, P + T) tensors. With tools, the log-probs come computed
    (``token_logps``, (B, T)) and ``tool_mask`` (B, T) takes the result tokens out of the completion mask."""
    pad_id, eos_id, device = tokenizer.pad_token_id, tokenizer.eos_token_id, prompt_ids.device
    P = prompt_ids.shape[1]
    if token_logps is None:
        token_logps = F.log_softmax(scores, dim=-1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)  # (B, T)
    is_eos = completion == eos_id
    # a token is in the completion if no EOS came strictly before it
    before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    comp_mask = (before == 0).long()
    finished = is_eos.any(dim=1)
    completion = torch.where(comp_mask.bool(), completion, torch.full_like(completion, pad_id))
    token_logps = torch.where(comp_mask.bool(), token_logps, torch.zeros_like(token_logps))
    texts = tokenizer.batch_decode(completion, skip_special_tokens=True)
    model_mask = comp_mask if tool_mask is None else comp_mask * (~tool_mask).long()
    return Generation(
        input_ids=torch.cat([prompt_ids, completion], dim=1),
        attention_mask=torch.cat([prompt_mask, comp_mask], dim=1),
        completion_mask=torch.cat([torch.zeros_like(prompt_mask), model_mask], dim=1),
        logprobs=torch.cat([torch.zeros(prompt_mask.shape, device=device), token_logps], dim=1),
        prompt_length=P,
        texts=texts,
        finished=finished,
        tool_mask=None if tool_mask is None else torch.cat([torch.zeros_like(prompt_mask, dtype=torch.bool),
                                                            tool_mask & comp_mask.bool()], dim=1),
    )
