"""The chat page's server: the listener, the request checks at the door, and the start-up of ``rlhfbook-lab chat``.
The models and what they answer are :mod:`rlhfbook_lab.apps.chat`'s; this module imports neither torch nor
transformers, so that the page is served within a second of the command while the models load in a background
thread (importing torch and transformers alone takes ≈ 6 CPU-s on a 2-core machine): until they are ready, ``GET
/api/models`` and ``POST /api/generate`` answer 503 with ``Retry-After`` and the page says it is loading.

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

import argparse
import base64
import hashlib
import ipaddress
import json
import re
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from rlhfbook_lab.checks import OneLineParser, one_line
from rlhfbook_lab.paths import CHECKPOINTS, resolve

__all__ = ["CHAT_HELP", "ChatConfig", "ChatServer", "RequestError", "add_chat_arguments", "check_checkpoints",
           "check_host", "default_checkpoints", "main", "make_server", "parse_model_specs", "serve"]

PAGE = Path(__file__).with_name("chat.html")
CHAT_HELP = ("a local web page: one prompt answered side by side by base, SFT, DPO and RL checkpoints, with reward, "
             "gold score and per-token log-probs")
SHIPPED_POLICIES = ("base-tiny", "sft-tiny")
"""The shipped checkpoints the page shows by default (those that exist)."""
PIPELINE_STAGES = ("dpo", "rl")
"""The pipeline's checkpoints the page picks up from ``<pipeline_out>/checkpoints/<stage>`` when they exist."""
LOOPBACK_NAMES = ("localhost",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


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


def check_checkpoints(checkpoints: dict[str, str], reward_model: str, max_models: int = 8) -> None:
    """``FileNotFoundError`` naming the first of ``checkpoints`` (``{name: shipped name or folder}``) or the
    ``reward_model`` that is not a local checkpoint (only local folders and shipped names: nothing is downloaded);
    ``ValueError`` for none or more than ``max_models``."""
    if not checkpoints:
        raise ValueError("no checkpoint to show: give --model name=path, or run `rlhfbook-lab pipeline` first")
    if len(checkpoints) > max_models:
        raise ValueError(f"at most {max_models} models; got {len(checkpoints)}")
    for name, path in {**checkpoints, "--reward-model": reward_model}.items():
        if not (Path(resolve(path)) / "config.json").exists():
            label = name if name == "--reward-model" else f"--model {name}"
            raise FileNotFoundError(f"{label}: no checkpoint at {path!r} (a shipped name such as "
                                    f"{', '.join(SHIPPED_POLICIES)} or rm-tiny, or a folder written by save_model)")


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
        self.timeout = self.server.cfg.socket_timeout
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
        headers = {"Retry-After": str(self.server.cfg.retry_after)} if status == 503 else None
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
            if self.server.app is None:
                return self._error(503, "the models are still loading; retry")
            self._json(200, self.server.info)
        else:
            self._error(404, f"no such page {path[:80]!r}: the routes are /, GET /api/models, POST /api/generate")

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        cfg = self.server.cfg
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
        if self.server.app is None:
            return self._error(503, "the models are still loading; retry")
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

    def __init__(self, address: tuple[str, int], cfg: ChatConfig | None = None, allow_remote: bool = False,
                 quiet: bool = False):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.cfg, self.quiet = cfg or ChatConfig(), quiet
        self.app = self.info = None  # set by set_app once the models are loaded
        self.load_error: BaseException | None = None
        self.page = PAGE.read_bytes()
        self.csp = _csp(self.page.decode("utf-8"))
        self._connections = threading.BoundedSemaphore(self.cfg.max_connections)
        port = self.server_address[1]
        if allow_remote:
            self.allowed_hosts = self.allowed_origins = None
        else:
            hosts = {"127.0.0.1", "localhost", "[::1]", f"[{address[0]}]" if ":" in address[0] else address[0]}
            self.allowed_hosts = {f"{h}:{port}" for h in hosts}
            self.allowed_origins = {f"http://{h}" for h in self.allowed_hosts}

    def set_app(self, app) -> None:
        """Serve ``app`` (a :class:`rlhfbook_lab.apps.chat.ChatApp`, built with this server's config)."""
        self.info = app.info()
        self.app = app

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
                                % (self.cfg.retry_after, len(body), body))
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


def make_server(app=None, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
                quiet: bool = False, cfg: ChatConfig | None = None) -> ChatServer:
    """A :class:`ChatServer` listening on ``host:port`` (port 0: a free one; see ``.url``), serving ``app`` (a
    :class:`rlhfbook_lab.apps.chat.ChatApp`) or, when it is None, answering 503 until :meth:`ChatServer.set_app`.
    Refuses a non-loopback ``host`` unless ``allow_remote`` (:func:`check_host`). Call ``serve_forever()`` on it."""
    check_host(host, allow_remote)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in [0, 65535]; got {port}")
    server = ChatServer((host, port), app.cfg if app is not None else cfg, allow_remote=allow_remote, quiet=quiet)
    if app is not None:
        server.set_app(app)
    return server


# --- the command ----------------------------------------------------------------------------------------------------
def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected an int >= 0 and <= 65535; got {text!r}")
    return value


def add_chat_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``rlhfbook-lab chat`` (the CLI's parser and :func:`main` both use them)."""
    p.add_argument("--port", type=_port, default=8765, help="port to listen on (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; a non-loopback "
                                                       "address needs --allow-remote)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host: anyone who reaches "
                                                               "it can run the models (not recommended)")
    p.add_argument("--model", action="append", default=None, metavar="NAME=PATH",
                   help="a checkpoint to add (repeatable): a shipped name or a folder written by save_model")
    p.add_argument("--pipeline-out", default="pipeline-out", help="where `rlhfbook-lab pipeline` wrote its "
                   "results: its checkpoints/dpo and checkpoints/rl are shown when they exist (default "
                   "./pipeline-out)")
    p.add_argument("--reward-model", default="rm-tiny", help="the reward model scoring every reply (default rm-tiny)")
    p.add_argument("--quiet", action="store_true", help="do not log each request")


def _load_models(server: ChatServer, checkpoints: dict[str, str], reward_model: str) -> None:
    """The background thread of :func:`serve`: import the model code, load the models, hand them to the server;
    on failure keep the error for :func:`serve` to raise and stop the server."""
    try:
        # torch and transformers (≈ 6 CPU-s to import) load here, while the page is already served
        from rlhfbook_lab.apps.chat import load_chat_app  # deferred: see the line above

        imported = time.process_time()
        server.set_app(load_chat_app(checkpoints, reward_model, server.cfg))
        ready = time.process_time()
        print(f"  models ready after {ready:.1f} CPU-s (imports {imported:.1f}, models {ready - imported:.1f})",
              flush=True)
    except BaseException as e:  # noqa: BLE001 (any failure ends the command, with its message)
        server.load_error = e
        server.shutdown()


def serve(args: argparse.Namespace) -> None:
    """``rlhfbook-lab chat``: check the arguments and the checkpoints, listen, print the URL, load the models in a
    background thread and serve until Ctrl-C. A bad argument or checkpoint is a ``ValueError`` (or
    ``FileNotFoundError``) before anything listens; a failure while loading stops the server and is raised here."""
    check_host(args.host, args.allow_remote)  # before anything else
    checkpoints = {**default_checkpoints(args.pipeline_out), **parse_model_specs(args.model)}
    check_checkpoints(checkpoints, args.reward_model)
    try:
        server = make_server(None, args.host, args.port, allow_remote=args.allow_remote, quiet=args.quiet)
    except OSError as e:
        raise ValueError(f"cannot listen on {args.host}:{args.port} ({e.strerror or e}); --port 0 picks a free "
                         "port") from None
    print(f"rlhfbook-lab chat: {', '.join(checkpoints)} (reward model {args.reward_model}), page served after "
          f"{time.process_time():.1f} CPU-s; the models load in the background\n"
          f"  open {server.url}   (Ctrl-C stops it)", flush=True)
    threading.Thread(target=_load_models, args=(server, checkpoints, args.reward_model), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    if server.load_error is not None:
        raise server.load_error


def main(argv: list[str]) -> None:
    """``rlhfbook-lab chat ARGS`` without importing the rest of the command line (``rlhfbook_lab.__main__``):
    errors as the CLI prints them, one line and exit code 2."""
    parser = OneLineParser(prog="rlhfbook-lab chat", description=CHAT_HELP)
    add_chat_arguments(parser)
    args = parser.parse_args(argv)
    try:
        serve(args)
    except (ValueError, OSError) as e:
        parser.exit(2, f"rlhfbook-lab chat: error: {one_line(e)}\n")
