"""Steering vectors (RLHF Book, ch. 17, character): a trait as a direction in the residual stream.

Take replies that show a trait and the same replies without it (here: with and without a polite opener, "Sure!
17 + 25 = 42." vs "17 + 25 = 42."). Run both through the model and read the output of one decoder layer ℓ. The
**steering vector** is the difference of the mean hidden states over the reply tokens (activation addition,
Turner et al. 2023; contrastive activation addition, Rimsky et al. 2024):

.. math::  v_\\ell = \\frac{1}{N}\\sum_i \\bar h_\\ell(x_i, y_i^+) - \\frac{1}{N}\\sum_i \\bar h_\\ell(x_i, y_i^-),
           \\qquad \\bar h_\\ell(x, y) = \\frac{1}{|y|}\\sum_{t \\in y} h_\\ell(x, y)_t

(each h is the layer's output at one token, shape (D,); |y| counts the reply's tokens and its end-of-turn token,
the completion mask of ``data.tokenize_conversation``). **Steering** adds α·v to that layer's output at every
position while the model runs (:func:`steering`, a forward hook): α = 0 is the model itself, α > 0 pushes
toward the trait, α < 0 away from it. Nothing is trained; the character changes at inference time, and past a
point it breaks the model: over-steering. ``where="first"`` pushes only the position that predicts the reply's
first token, where an opener is chosen, and leaves the rest of the reply unsteered. ``where="stops"`` pushes there
and at every full stop the reply writes, where the model decides whether the reply ends or goes on: a gentle push
adds one opener, a hard one adds polite phrases after the answer too (lesson 17's inverted U).

Generation under steering: the package's cached sampler (``generation.sample_cached``) reads the layers' weights
itself and would skip a hook, so ``generation.supports_cached_sampling`` is False while a layer carries a steering
hook and ``generate`` falls back to ``model.generate`` (the engines draw the same tokens otherwise).
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import torch

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_choice, check_int, check_number
from rlhfbook_lab.equations.logprobs import masked_mean
from rlhfbook_lab.lm.data import conversation, tokenize_conversation
from rlhfbook_lab.lm.evaluation import evaluate_chat
from rlhfbook_lab.lm.forward import eval_mode

__all__ = ["STEER_WHERE", "decoder_layers", "layer_outputs", "mean_reply_states", "opener_vector", "steering",
           "steering_curve", "steering_vector"]


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks of a causal LM (``model.model.layers`` for Llama-style models)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (expected model.model.layers)")
    return layers


def _check_layer(model, layer) -> torch.nn.Module:
    layers = decoder_layers(model)
    check_int("layer", layer, minimum=0, maximum=len(layers) - 1)
    return layers[layer]


def _hidden(output) -> torch.Tensor:
    """A decoder layer's hidden states, whether it returns a tensor or a tuple (transformers versions differ)."""
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def layer_outputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
    """The output of decoder layer ``layer`` (0-based) at every token: (B, T) ids → (B, T, D), read by a hook."""
    block = _check_layer(model, layer)
    seen = []
    handle = block.register_forward_hook(lambda module, args, output: seen.append(_hidden(output)))
    try:
        with eval_mode(model):
            model(input_ids=input_ids, attention_mask=attention_mask)
    finally:
        handle.remove()
    return seen[0]


def mean_reply_states(model, tokenizer, prompts, replies, layer: int, batch_size: int = 64) -> torch.Tensor:
    """h̄_ℓ(x, y) for each (prompt, reply): the mean of layer ``layer``'s output over the reply's tokens
    (completion mask: the reply and its ``<|end|>``). Conversations are right-padded, so positions are unshifted.
    Returns (N, D) float32."""
    if len(prompts) != len(replies) or not prompts:
        raise ValueError(f"need as many replies as prompts, at least one; got {len(prompts)} prompts and "
                         f"{len(replies)} replies")
    rows = [tokenize_conversation(tokenizer, conversation(p, y)) for p, y in zip(prompts, replies)]
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        T = max(len(r["input_ids"]) for r in chunk)
        ids = torch.full((len(chunk), T), tokenizer.pad_token_id, dtype=torch.long)
        attn, reply = torch.zeros(len(chunk), T, dtype=torch.long), torch.zeros(len(chunk), T)
        for j, r in enumerate(chunk):
            n = len(r["input_ids"])
            ids[j, :n], attn[j, :n] = torch.tensor(r["input_ids"]), 1
            reply[j, :n] = torch.tensor(r["completion_mask"], dtype=torch.float)
        h = layer_outputs(model, ids.to(device), attn.to(device), layer).float()  # (b, T, D)
        out.append(masked_mean(h, reply.to(device)[..., None].expand_as(h), dim=1))  # (b, D)
    return torch.cat(out)


def steering_vector(model, tokenizer, prompts, with_trait, without_trait, layer: int) -> torch.Tensor:
    """v_ℓ = mean_i h̄_ℓ(x_i, y_i⁺) − mean_i h̄_ℓ(x_i, y_i⁻) (module docstring): (D,) float32.

    Args:
        prompts: N user messages; ``with_trait`` / ``without_trait``: N replies each, showing the trait or not.
        layer: the decoder layer (0-based) whose output is read (and later steered).
    """
    if len(with_trait) != len(without_trait):
        raise ValueError(f"with_trait and without_trait must pair up; got {len(with_trait)} and "
                         f"{len(without_trait)} replies")
    plus = mean_reply_states(model, tokenizer, prompts, with_trait, layer)
    minus = mean_reply_states(model, tokenizer, prompts, without_trait, layer)
    return plus.mean(0) - minus.mean(0)


STEER_WHERE = ("all", "first", "stops")
"""Where :func:`steering` adds α·v: at every position; at the reply's first position only; there and at every full
stop of the reply."""


@contextmanager
def steering(model, vector: torch.Tensor, layer: int, alpha: float, where: str = "all", tokenizer=None):
    """Within the block, decoder layer ``layer`` outputs h + α·v (a forward hook, removed on exit even after an
    error). ``vector``: (D,) with D the model's hidden size.

    ``where="all"``: at every position of every forward pass. ``where="first"``: only at the *last* position of a
    forward pass over more than one token, and not at all in one-token passes. In generation with a KV cache
    (``model.generate``, which ``generate`` falls back to under a steering hook) that is the prompt's prefill: the
    push lands on the position whose output predicts the reply's first token, and the reply goes on unsteered.
    ``where="stops"`` (needs ``tokenizer``): as ``"first"``, and also in every one-token pass whose token is a full
    stop ``"."`` — in generation, each place where the reply has just finished a sentence and the next token decides
    whether it ends (``<|end|>``) or goes on."""
    block = _check_layer(model, layer)
    alpha = check_number("alpha", alpha)
    check_choice("where", where, STEER_WHERE)
    D = model.config.hidden_size
    if not isinstance(vector, torch.Tensor) or vector.shape != (D,):
        raise ValueError(f"vector must be a tensor of shape ({D},) (the hidden size); got "
                         f"{tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__}")
    if not torch.isfinite(vector).all():
        raise ValueError("vector has NaN or infinite entries")
    stop = None
    if where == "stops":
        if tokenizer is None:
            raise ValueError('tokenizer is needed for where="stops" (to find the full stop\'s token id)')
        stop = tokenizer.convert_tokens_to_ids(".")
        if not isinstance(stop, int) or stop == tokenizer.unk_token_id:
            raise ValueError(f'tokenizer has no single token for "." (got {stop!r}); where="stops" needs one')
    seen = {}  # the token ids of the model's current forward pass (read by a pre-hook on the model)

    def read_ids(module, args, kwargs):
        seen["ids"] = kwargs["input_ids"] if kwargs.get("input_ids") is not None else args[0]

    def add(module, args, output):
        h = _hidden(output)
        push = alpha * vector.to(device=h.device, dtype=h.dtype)
        if where == "all":
            h = h + push
        elif h.shape[1] > 1:  # "first", "stops": the prefill's last position only
            h = torch.cat([h[:, :-1], h[:, -1:] + push], dim=1)
        elif where == "stops":  # a one-token pass: push the rows whose token is a full stop
            at_stop = (seen["ids"][:, -1:] == stop).to(h.dtype)[..., None]  # (B, 1, 1)
            h = h + at_stop * push
        return (h, *output[1:]) if isinstance(output, tuple) else h

    add.changes_output = True  # generation.supports_cached_sampling: the cached sampler cannot honour it
    handles = [model.register_forward_pre_hook(read_ids, with_kwargs=True)] if where == "stops" else []
    handles.append(block.register_forward_hook(add))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def opener_vector(model, tokenizer, layer: int, n: int = 64, seed: int = 0) -> torch.Tensor:
    """The polite-opener steering vector: :func:`steering_vector` on ``n`` training-split problems of every family
    (``world.sample_problem``, seeded), each answered by its reference reply with a random polite opener
    (``"Sure! 17 + 25 = 42."``) and without (``"17 + 25 = 42."``). (D,) float32."""
    check_int("n", n)
    rng = random.Random(f"opener-vector-{seed}")
    problems = [world.sample_problem(rng.choice(world.FAMILIES), rng) for _ in range(n)]
    plus = [world.render_response(p, opener=rng.choice(world.judge.POLITE_OPENERS)) for p in problems]
    minus = [world.render_response(p) for p in problems]
    return steering_vector(model, tokenizer, [p.prompt for p in problems], plus, minus, layer)


def steering_curve(model, tokenizer, vector: torch.Tensor, layer: int, alphas, problems,
                   greedy: bool = True, seed: int = 0, where: str = "all") -> list[dict]:
    """The model's behaviour at each steering strength: one reply per problem (``evaluate_chat``) with α·v
    added at ``layer`` (``where``: as in :func:`steering`). Returns one row per α: ``alpha``, ``gold`` (mean
    gold score), ``correct``, ``eos``, ``opener`` (share of replies opening with a polite phrase), ``polite``
    (polite phrases per reply, ``world.count_polite``), ``excess`` (polite phrases beyond the first, per reply: the
    spec's ``polite_excess``), ``example`` (the first reply), ``replies`` (all of them, in ``problems``' order)."""
    rows = []
    for alpha in alphas:
        with steering(model, vector, layer, alpha, where, tokenizer):
            ev = evaluate_chat(model, tokenizer, problems, greedy=greedy, seed=seed)
        replies = [y for _, y, _ in ev.rows]
        rows.append({"alpha": float(alpha), "gold": ev.overall["gold_score"], "correct": ev.overall["correct_rate"],
                     "eos": ev.overall["eos_rate"],
                     "opener": sum(y.startswith(world.judge.POLITE_OPENERS) for y in replies) / len(replies),
                     "polite": sum(world.count_polite(y) for y in replies) / len(replies),
                     "excess": sum(max(0, world.count_polite(y) - 1) for y in replies) / len(replies),
                     "example": replies[0], "replies": replies})
    return rows
