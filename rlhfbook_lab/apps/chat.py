"""The chat page: one prompt answered side by side by several checkpoints (base, SFT, DPO, RL, any given), each
reply with its reward-model score, its gold score and the gold judge's feature breakdown, and the sampler's own
log-prob of every token (shown on hover). ``rlhfbook-lab chat`` starts it; the page is ``chat.html`` beside this
module, one static file with inline CSS and JavaScript (no network).

The server (listener, request checks at the door, start-up) is :mod:`rlhfbook_lab.apps.chat_server`, which
imports no torch so that the page is up at once; this module holds the models: :class:`ChatApp` checks a request's
fields against the models (tokens against the context, special tokens, known names) and answers it.
"""

from __future__ import annotations

import codecs
import math
import threading
import time
from dataclasses import asdict, dataclass

from transformers.convert_slow_tokenizer import bytes_to_unicode

from rlhfbook_lab import world
from rlhfbook_lab.apps.chat_server import ChatConfig, RequestError, check_checkpoints
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.lm.generation import encode_prompts, generate
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.reward_model import load_reward_model, score_replies

__all__ = ["ChatApp", "gold_breakdown", "load_chat_app", "token_pieces"]

_REQUEST_KEYS = ("prompt", "temperature", "seed", "max_new_tokens", "models")


# --- token pieces --------------------------------------------------------------------------------------------------
_BYTE_OF_SYMBOL = {symbol: byte for byte, symbol in bytes_to_unicode().items()}


def token_pieces(tokenizer, ids: list[int]) -> list[tuple[str, bool]]:
    """``(text, special)`` for each token id. A byte-level token's text is its character; the bytes of a multi-byte
    character go to the token that completes it (the earlier ones get ``""``), so the pieces of the non-special
    tokens join to the decoded reply. Tokens of other tokenizers are decoded one by one."""
    special = set(tokenizer.all_special_ids)
    symbols = tokenizer.convert_ids_to_tokens(ids)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = []
    for token_id, symbol in zip(ids, symbols):
        if token_id in special:
            out.append((symbol, True))
        elif symbol and all(c in _BYTE_OF_SYMBOL for c in symbol):
            out.append((decoder.decode(bytes(_BYTE_OF_SYMBOL[c] for c in symbol)), False))
        else:
            out.append((tokenizer.decode([token_id]), False))
    return out


def _finite(x: float) -> float | None:
    """JSON has no infinity or NaN: such a float becomes ``None`` (null)."""
    return x if math.isfinite(x) else None


def gold_breakdown(problem: world.Problem, reply: str) -> dict:
    """The gold judge on one reply: its score and, per feature of the taste table, the value, the weight and their
    product (the score is the sum of the products). An empty reply gets ``EMPTY_RESPONSE_SCORE`` and no features."""
    if not reply.strip():
        return {"score": world.EMPTY_RESPONSE_SCORE, "features": [], "note": "empty reply: the lowest score"}
    values = world.taste_features(problem, reply)
    return {"score": world.gold_score(problem, reply),
            "features": [{"name": f, "value": values[f], "weight": w, "contribution": w * values[f]}
                         for f, w in world.GOLD_WEIGHTS.items()]}


# --- the app: models, request checks, generation -------------------------------------------------------------------
@dataclass
class _Request:
    prompt: str
    temperature: float
    seed: int
    max_new_tokens: int
    models: list[str]


class ChatApp:
    """The loaded models and reward model, and what the routes do with them (no HTTP here: testable alone)."""

    def __init__(self, models: dict[str, tuple], reward_model, reward_tokenizer, reward_name: str,
                 paths: dict[str, str] | None = None, cfg: ChatConfig | None = None):
        self.cfg = cfg or ChatConfig()
        if not models:
            raise ValueError("models is empty: give at least one checkpoint")
        if len(models) > self.cfg.max_models:
            raise ValueError(f"at most {self.cfg.max_models} models (ChatConfig.max_models); got {len(models)}")
        self.models, self.rm, self.rm_tokenizer, self.reward_name = models, reward_model, reward_tokenizer, reward_name
        self.paths = paths or {name: name for name in models}
        positions = [m.config.max_position_embeddings for m, _ in models.values()]
        self.context = min(positions + [reward_model.backbone.config.max_position_embeddings])
        self._lock = threading.Lock()  # one generation at a time: models and torch's RNG are not thread-safe
        self._slots = threading.BoundedSemaphore(self.cfg.queue_limit)
        self._tokenizer_lock = threading.Lock()  # request checks run outside the generation lock

    def info(self) -> dict:
        """What ``GET /api/models`` answers: the models, the reward model, the limits, example prompts."""
        examples = [p.prompt for p in world.heldout_prompts(len(world.FAMILIES), seed=0)]
        return {"models": [{"name": n, "path": self.paths[n], "parameters": sum(p.numel() for p in m.parameters())}
                           for n, (m, _) in self.models.items()],
                "reward_model": {"name": self.reward_name, "normalized": bool(self.rm.is_normalized)},
                "context": self.context, "limits": asdict(self.cfg), "examples": examples}

    def parse_request(self, body: object) -> _Request:
        """Check a decoded ``POST /api/generate`` body; ``RequestError(400, ...)`` naming the first bad field."""
        cfg = self.cfg
        if not isinstance(body, dict):
            raise RequestError(400, f"the body must be a JSON object; got {type(body).__name__}")
        unknown = sorted(set(body) - set(_REQUEST_KEYS))
        if unknown:
            raise RequestError(400, f"unknown field(s) {unknown}; the fields are {list(_REQUEST_KEYS)}")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise RequestError(400, "prompt must be a non-empty string")
        prompt = prompt.strip()
        if len(prompt) > cfg.max_prompt_chars:
            raise RequestError(400, f"prompt is {len(prompt)} characters; at most {cfg.max_prompt_chars}")
        names = body.get("models", list(self.models))
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise RequestError(400, "models must be a non-empty list of model names")
        if len(names) > cfg.max_models:
            raise RequestError(400, f"models names {len(names)} models; at most {cfg.max_models}")
        unknown = [n for n in names if n not in self.models]
        if unknown:
            raise RequestError(400, f"unknown model(s) {[n[:40] for n in unknown]}; this server has "
                                    f"{list(self.models)}")
        if len(set(names)) != len(names):
            raise RequestError(400, "models names a model twice")
        try:
            temperature = check_number("temperature", body.get("temperature", cfg.default_temperature), 0.0,
                                       cfg.max_temperature)
            seed = check_int("seed", body.get("seed", 0), 0, cfg.max_seed)
            max_new_tokens = check_int("max_new_tokens", body.get("max_new_tokens", cfg.default_new_tokens), 1,
                                       cfg.max_new_tokens)
        except ValueError as e:
            raise RequestError(400, str(e)) from None
        for name in names:
            tokenizer = self.models[name][1]
            found = [t for t in tokenizer.all_special_tokens if t in prompt]
            if found:
                raise RequestError(400, f"prompt contains the special token(s) {found}; they are not text")
            with self._tokenizer_lock:  # a fast tokenizer shared between threads may refuse a concurrent call
                n = len(encode_prompts(tokenizer, [prompt])[0])
            if n + max_new_tokens + 1 > self.context:  # + 1: the reward model reads the reply's <|end|> too
                raise RequestError(400, f"prompt is {n} tokens with the chat template; with max_new_tokens "
                                        f"{max_new_tokens} it needs {n + max_new_tokens + 1} of the models' "
                                        f"{self.context} positions")
        return _Request(prompt, temperature, seed, max_new_tokens, names)

    def generate(self, body: object) -> dict:
        """Answer a ``POST /api/generate`` body: one reply per model with its tokens, log-probs and scores.
        ``RequestError`` for a bad request, or 503 when :attr:`ChatConfig.queue_limit` requests are already in."""
        req = self.parse_request(body)
        if not self._slots.acquire(blocking=False):
            raise RequestError(503, f"busy: {self.cfg.queue_limit} requests are waiting or running; retry in "
                                    f"{self.cfg.retry_after} s")
        try:
            with self._lock:
                return self._answer(req)
        finally:
            self._slots.release()

    def _answer(self, req: _Request) -> dict:
        try:
            problem = world.parse_prompt(req.prompt)
        except ValueError:
            problem = None  # a free prompt: no gold judge, the reward model still scores
        t0 = time.perf_counter()
        replies = []
        for name in req.models:
            model, tokenizer = self.models[name]
            t_model = time.perf_counter()
            gen = generate(model, tokenizer, [req.prompt], max_new_tokens=req.max_new_tokens,
                           temperature=req.temperature or 1.0, greedy=req.temperature == 0, seed=req.seed)
            mask = gen.completion_mask[0].bool()
            ids = gen.input_ids[0][mask].tolist()
            logps = gen.logprobs[0][mask].tolist()
            tokens = [{"text": text, "logprob": _finite(lp), **({"special": True} if special else {})}
                      for (text, special), lp in zip(token_pieces(tokenizer, ids), logps)]
            replies.append({"model": name, "text": gen.texts[0], "tokens": tokens, "finished": bool(gen.finished[0]),
                            "gold": gold_breakdown(problem, gen.texts[0]) if problem else None,
                            "seconds": time.perf_counter() - t_model})
        rewards = score_replies(self.rm, self.rm_tokenizer, [req.prompt] * len(replies), [r["text"] for r in replies])
        for reply, reward in zip(replies, rewards.tolist()):
            reply["reward"] = _finite(reward)
        task = {"family": problem.family, "reference": problem.reference} if problem else None
        return {"prompt": req.prompt, "temperature": req.temperature, "seed": req.seed,
                "max_new_tokens": req.max_new_tokens, "task": task,
                "note": None if problem else "not a world task: the gold judge scores only prompts the world wrote",
                "replies": replies, "seconds": time.perf_counter() - t0}


def load_chat_app(checkpoints: dict[str, str], reward_model: str = "rm-tiny", cfg: ChatConfig | None = None,
                  device: str | None = None) -> ChatApp:
    """Load every checkpoint (``{name: shipped name or folder}``) and the reward model once. Only local folders and
    shipped names are accepted (never a hub id: nothing is downloaded); ``FileNotFoundError`` names a missing one."""
    cfg = cfg or ChatConfig()
    check_checkpoints(checkpoints, reward_model, cfg.max_models)
    models = {name: load_model(path, device) for name, path in checkpoints.items()}
    rm, rm_tokenizer = load_reward_model(reward_model, device)
    return ChatApp(models, rm, rm_tokenizer, str(reward_model), paths=dict(checkpoints), cfg=cfg)


