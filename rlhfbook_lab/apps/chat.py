"""The chat page: one prompt answered side by side by several checkpoints (base, SFT, DPO, RL, any given), each
reply with its reward-model score, its gold score and the gold judge's feature breakdown, and the sampler's own
log-prob of every token (shown on hover). ``rlhfbook-lab chat`` starts it; the page is ``chat.html`` beside this
module, one static file with inline CSS and JavaScript (no network).

**Why the standard library's** ``ThreadingHTTPServer``. The server has three routes (the page, ``GET /api/models``,
``POST /api/generate``) and serialises all model work behind one lock (the models are not thread-safe and the CPU
is the bottleneck anyway), so an async framework would buy nothing; ``http.server`` ships with CPython, is
maintained with it, and adds no dependency to a course package. Its documentation warns that it implements only
basic security checks, so this module adds the rest and binds to the loopback only:

- **the listener**: 127.0.0.1 by default; a non-loopback ``host`` is refused unless ``allow_remote`` says so;
  requests whose ``Host`` header is not this loopback address and port are refused (a web page elsewhere cannot
  reach the server by DNS rebinding), and so are POSTs from another ``Origin``;
- **the request**: a body over :attr:`ChatConfig.max_body_bytes` is refused unread (413), a body without
  ``Content-Length`` (411) or not ``application/json`` (415) too; the JSON must be an object with known keys and
  each field within its bounds (prompt length in characters and in tokens against the models' context of 256
  positions, temperature, seed, ``max_new_tokens``, the models), else 400 with a message naming the field; nothing
  in a request is ever evaluated, and special tokens (``<|end|>``...) in a prompt are refused, not tokenized;
- **the load**: at most :attr:`ChatConfig.max_connections` open connections (more get an immediate 503), each
  with a socket timeout; at most :attr:`ChatConfig.queue_limit` generation requests waiting or running (more get
  503 with ``Retry-After``); generation runs one request at a time;
- **the reply**: model output is data — JSON-encoded here and inserted as text (never as HTML) by the page, which
  is served with a content security policy that allows only its own inline script and style (by hash) and
  requests to its own origin.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import ipaddress
import json
import math
import re
import socket
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from transformers.convert_slow_tokenizer import bytes_to_unicode

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.lm.generation import encode_prompts, generate
from rlhfbook_lab.lm.models import load_model, resolve
from rlhfbook_lab.lm.reward_model import load_reward_model, score_replies
from rlhfbook_lab.paths import CHECKPOINTS

__all__ = ["ChatApp", "ChatConfig", "ChatServer", "RequestError", "check_host", "default_checkpoints",
           "load_chat_app", "make_server", "parse_model_specs"]

PAGE = Path(__file__).with_name("chat.html")
SHIPPED_POLICIES = ("base-tiny", "sft-tiny")
"""The shipped checkpoints the page shows by default (those that exist)."""
PIPELINE_STAGES = ("dpo", "rl")
"""The pipeline's checkpoints the page picks up from ``<pipeline_out>/checkpoints/<stage>`` when they exist."""
LOOPBACK_NAMES = ("localhost",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
_REQUEST_KEYS = ("prompt", "temperature", "seed", "max_new_tokens", "models")


@dataclass
class ChatConfig:
    """Limits and defaults of the chat server: every request is checked against them."""

    max_body_bytes: int = 16_384
    """A request body larger than this is refused unread (413)."""
    max_prompt_chars: int = 1_000
    """Longest prompt in characters (the token check against the context follows)."""
    max_new_tokens: int = 128
    """Largest ``max_new_tokens`` a request may ask for."""
    default_new_tokens: int = 48
    """``max_new_tokens`` when a request does not say (the length the lessons sample with)."""
    default_temperature: float = 0.7
    """Temperature when a request does not say; 0 means greedy decoding."""
    max_temperature: float = 2.0
    """Highest temperature a request may ask for."""
    max_seed: int = 2**31 - 1
    """Seeds are ints in [0, max_seed]."""
    max_models: int = 8
    """Most models one request may name (and most models the server loads)."""
    queue_limit: int = 8
    """Generation requests waiting or running at once; more are answered 503 with ``Retry-After``."""
    max_connections: int = 64
    """Open connections at once; more are answered 503 at once, without a thread."""
    socket_timeout: float = 15.0
    """Seconds a client may take to send its request before the connection is dropped."""
    retry_after: int = 1
    """Seconds a 503 asks the client to wait (``Retry-After``)."""


class RequestError(ValueError):
    """A request the server refuses, with the HTTP status to answer (4xx, or 503 when busy) and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# --- checkpoints and the listener ----------------------------------------------------------------------------------
def parse_model_specs(specs: list[str] | None) -> dict[str, str]:
    """``["dpo=pipeline-out/checkpoints/dpo", ...]`` → ``{"dpo": "pipeline-out/checkpoints/dpo"}``; ``ValueError``
    for a spec without ``=``, a name that is not 1-40 letters, digits, ``.``, ``_`` or ``-``, or a name given twice."""
    out: dict[str, str] = {}
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise ValueError(f"--model takes name=path (e.g. dpo=pipeline-out/checkpoints/dpo); got {spec!r}")
        if not _NAME.fullmatch(name):
            raise ValueError(f"--model name {name!r} must be 1-40 letters, digits, '.', '_' or '-'")
        if name in out:
            raise ValueError(f"--model name {name!r} is given twice")
        out[name] = path
    return out


def default_checkpoints(pipeline_out: str | Path | None = "pipeline-out") -> dict[str, str]:
    """The checkpoints the page shows when none is named: the shipped :data:`SHIPPED_POLICIES` that exist, then the
    pipeline's :data:`PIPELINE_STAGES` under ``<pipeline_out>/checkpoints/`` that exist (``rlhfbook-lab pipeline
    --out DIR`` writes them there)."""
    out = {name: name for name in SHIPPED_POLICIES if (CHECKPOINTS / name / "config.json").exists()}
    if pipeline_out is not None:
        for stage in PIPELINE_STAGES:
            folder = Path(pipeline_out) / "checkpoints" / stage
            if (folder / "config.json").exists():
                out[stage] = str(folder)
    return out


def check_host(host: str, allow_remote: bool = False) -> None:
    """``ValueError`` unless ``host`` is a loopback address (or ``allow_remote``): the server runs models for anyone
    who reaches it, and ``http.server`` is not hardened for a network."""
    if host in LOOPBACK_NAMES:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ValueError(f"--host {host} is not a loopback address: the chat page would run models for anyone who "
                         "can reach it, and Python's http.server is not hardened for a network. Use 127.0.0.1 (the "
                         "default), or pass --allow-remote to bind it anyway")


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
    for name, path in {**checkpoints, "--reward-model": reward_model}.items():
        if not (Path(resolve(path)) / "config.json").exists():
            label = name if name == "--reward-model" else f"--model {name}"
            raise FileNotFoundError(f"{label}: no checkpoint at {path!r} (a shipped name such as "
                                    f"{', '.join(SHIPPED_POLICIES)} or rm-tiny, or a folder written by save_model)")
    if len(checkpoints) > cfg.max_models:
        raise ValueError(f"at most {cfg.max_models} models; got {len(checkpoints)}")
    models = {name: load_model(path, device) for name, path in checkpoints.items()}
    rm, rm_tokenizer = load_reward_model(reward_model, device)
    return ChatApp(models, rm, rm_tokenizer, str(reward_model), paths=dict(checkpoints), cfg=cfg)


# --- HTTP -----------------------------------------------------------------------------------------------------------
def _csp(html: str) -> str:
    """A content security policy that allows the page's own inline script and style (by their SHA-256) and
    requests to its own origin, nothing else."""
    def hashes(tag):
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                        for s in re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S))
    return (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
            "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _Handler(BaseHTTPRequestHandler):
    server: "ChatServer"
    server_version = "rlhfbook-lab-chat"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive holding a slot

    def version_string(self) -> str:  # the Server header: no Python version for a fingerprint
        return self.server_version

    def setup(self) -> None:
        self.timeout = self.server.app.cfg.socket_timeout
        self._body_read = False
        super().setup()

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        if not self.server.quiet:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _error(self, status: int, message: str) -> None:
        if self.command == "POST" and not self._body_read:  # read what the client is still sending (bounded)
            length = self.headers.get("Content-Length", "")
            self._drain(int(length) if length.isdigit() else 0)
        headers = {"Retry-After": str(self.server.app.cfg.retry_after)} if status == 503 else None
        self._json(status, {"error": message if len(message) <= 500 else message[:500] + "…"}, headers)

    def _host_ok(self) -> bool:
        if self.server.allowed_hosts is not None and self.headers.get("Host", "") not in self.server.allowed_hosts:
            self._error(403, f"Host {self.headers.get('Host', '')[:80]!r} is not this server's loopback address")
            return False
        return True

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, self.server.page, "text/html; charset=utf-8",
                       {"Content-Security-Policy": self.server.csp, "Referrer-Policy": "no-referrer"})
        elif path == "/api/models":
            self._json(200, self.server.info)
        else:
            self._error(404, f"no such page {path[:80]!r}: the routes are /, GET /api/models, POST /api/generate")

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        cfg = self.server.app.cfg
        path = urlsplit(self.path).path
        if path != "/api/generate":
            return self._error(404, f"no such route {path[:80]!r}: POST /api/generate")
        origin = self.headers.get("Origin")
        if origin is not None and self.server.allowed_origins is not None and origin not in self.server.allowed_origins:
            return self._error(403, f"Origin {origin[:80]!r} may not use this server")
        if self.headers.get_content_type() != "application/json" or \
                self.headers.get_content_charset("utf-8").lower() not in ("utf-8", "utf8"):
            return self._error(415, "Content-Type must be application/json (UTF-8)")
        if "Transfer-Encoding" in self.headers:
            return self._error(411, "send the body with a Content-Length, not a Transfer-Encoding")
        length = self.headers.get("Content-Length")
        if length is None:
            return self._error(411, "Content-Length is required")
        if not length.isdigit():
            return self._error(400, f"Content-Length must be a non-negative integer; got {length[:40]!r}")
        if int(length) > cfg.max_body_bytes:
            return self._error(413, f"the body is {int(length)} bytes; at most {cfg.max_body_bytes}")
        raw = self.rfile.read(int(length))
        self._body_read = True
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            return self._error(400, f"the body is not valid JSON: {str(e)[:200]}")
        try:
            self._json(200, self.server.app.generate(body))
        except RequestError as e:
            self._error(e.status, str(e))
        except Exception:  # a bug, not the client's fault: say so, log it, keep serving
            traceback.print_exc(file=sys.stderr)
            self._error(500, "internal error while generating (the server log has the traceback)")

    def _drain(self, length: int, limit: int = 1 << 20) -> None:
        """Read and drop up to ``limit`` bytes of a refused body, so that the client, still sending, reads the
        answer instead of a connection reset; a longer body is cut off."""
        self._body_read = True
        left = min(length, limit)
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def _method_not_allowed(self) -> None:
        self._error(405, f"{self.command} is not allowed: GET / and /api/models, POST /api/generate")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _method_not_allowed


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class ChatServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a cap on open connections (:attr:`ChatConfig.max_connections`): past it a
    connection is answered 503 at once from the accepting thread, so a flood cannot start unbounded threads."""

    daemon_threads = True
    request_queue_size = 128  # the listen backlog: a burst waits in the kernel instead of being refused

    def __init__(self, address: tuple[str, int], app: ChatApp, allow_remote: bool = False, quiet: bool = False):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.app, self.quiet = app, quiet
        self.page = PAGE.read_bytes()
        self.csp = _csp(self.page.decode("utf-8"))
        self.info = app.info()
        self._connections = threading.BoundedSemaphore(app.cfg.max_connections)
        port = self.server_address[1]
        if allow_remote:
            self.allowed_hosts = self.allowed_origins = None
        else:
            hosts = {"127.0.0.1", "localhost", "[::1]", f"[{address[0]}]" if ":" in address[0] else address[0]}
            self.allowed_hosts = {f"{h}:{port}" for h in hosts}
            self.allowed_origins = {f"http://{h}" for h in self.allowed_hosts}

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def process_request(self, request, client_address) -> None:
        if not self._connections.acquire(blocking=False):
            body = json.dumps({"error": "too many open connections; retry"}).encode()
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Retry-After: %d\r\nContent-Length: %d\r\n\r\n%s"
                                % (self.app.cfg.retry_after, len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer is not an error of the server; anything else is logged."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


def make_server(app: ChatApp, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
                quiet: bool = False) -> ChatServer:
    """A :class:`ChatServer` for ``app`` listening on ``host:port`` (port 0: a free one; see ``.url``). Refuses a
    non-loopback ``host`` unless ``allow_remote`` (:func:`check_host`). Call ``serve_forever()`` on it."""
    check_host(host, allow_remote)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in [0, 65535]; got {port}")
    return ChatServer((host, port), app, allow_remote=allow_remote, quiet=quiet)
