"""Headless Chromium, driven over the DevTools protocol through a pipe: open a page from ``file://`` with every
other request blocked and counted, evaluate JavaScript in it, take screenshots, print it to PDF. A page may also be
let talk to named loopback origins (``new_page(allow_origins=["http://127.0.0.1:8123"])``: a local server under
test, such as the chat page's); every other origin stays blocked.

No dependency beyond the standard library and a Chromium on the machine (Debian's ``chromium`` package): Chromium
started with ``--remote-debugging-pipe`` reads protocol commands (JSON, each ended by a NUL byte) on its file
descriptor 3 and writes replies and events on descriptor 4 — the same channel Playwright and Puppeteer use.
``RLHFBOOK_CHROMIUM`` names the browser's executable when it is not on the ``PATH``.

    with Browser() as browser:
        page = browser.new_page(1280, 720)
        page.goto("file:///tmp/deck.html")
        assert page.blocked == []
        page.evaluate("document.title")
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--allow-file-access-from-files", "--remote-debugging-pipe")
# Schemes that never leave the machine; any other request is blocked and counted.
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def origin_of(url: str) -> str:
    """``scheme://host:port`` of a URL, the port written out (``http://localhost/x`` → ``http://localhost:80``)."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def loopback_origin(url: str) -> str:
    """The origin of ``url`` if it is an http(s) origin on this machine's loopback; ``ValueError`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"allow_origins takes http(s) origins on the loopback ({', '.join(LOOPBACK_HOSTS)}); "
                         f"got {url!r}")
    return origin_of(url)


def find_chromium() -> str | None:
    """The Chromium executable: ``$RLHFBOOK_CHROMIUM`` if set, else the first of :data:`CANDIDATES` on the PATH."""
    named = os.environ.get("RLHFBOOK_CHROMIUM")
    if named:
        return named if Path(named).exists() or shutil.which(named) else None
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """The browser failed to start, answered a command with an error, or did not answer in time."""


class Browser:
    """One headless Chromium process with a fresh profile; :meth:`new_page` opens tabs in it."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0):
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError("no Chromium found: install Debian's `chromium` package (apt-get install chromium) "
                               "or set RLHFBOOK_CHROMIUM to a Chromium executable")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="rlhfbook-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium reads on fd 3 and writes on fd 4. Move our ends above 10 first so the dup2s cannot clobber them.
        high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        log = os.path.join(self._profile, "chromium.log")
        actions = [(os.POSIX_SPAWN_DUP2, high_r, 3), (os.POSIX_SPAWN_DUP2, high_w, 4),
                   (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT, 0o644),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        argv = [self.executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"]
        try:
            self.pid = os.posix_spawn(self.executable, argv, os.environ, file_actions=actions, setpgroup=0)
        finally:
            for fd in (to_browser_r, from_browser_w, high_r, high_w):
                os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self._handlers: dict[str, list] = {}
        try:
            self.send("Browser.getVersion")  # fails fast if the pipe does not work
        except BaseException:
            self.close()
            raise

    # --- the protocol -----------------------------------------------------------------------------------------------
    def _write(self, message: dict) -> int:
        self._next_id += 1
        message["id"] = self._next_id
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data):]
        return self._next_id

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited; its log is {self._profile}/chromium.log")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result, handling the events that arrive meanwhile."""
        message = {"method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        wanted = self._write(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._dispatch(reply)

    def post(self, method: str, params: dict | None = None, session: str | None = None) -> None:
        """Send a command without waiting for its result (for replies to events, sent from inside a handler)."""
        message = {"method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._write(message)

    def wait_for(self, event: str, session: str | None = None) -> dict:
        """Read messages until ``event`` arrives (for ``session``), handling the others; return its parameters."""
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            self._dispatch(message)
            if message.get("method") == event and (session is None or message.get("sessionId") == session):
                return message.get("params", {})

    def _dispatch(self, message: dict) -> None:
        for handler in self._handlers.get(message.get("sessionId", ""), []):
            handler(message)

    # --- pages ------------------------------------------------------------------------------------------------------
    def new_page(self, width: int = 1280, height: int = 720, scale: float = 1.0, mobile: bool = False,
                 allow_origins: tuple[str, ...] | list[str] = ()) -> "Page":
        """A new tab with a ``width`` × ``height`` viewport, every non-local request blocked and counted, except
        requests to ``allow_origins`` (loopback http(s) origins only, e.g. a local server under test)."""
        allowed = frozenset(loopback_origin(o) for o in allow_origins)
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, target, session, width, height, scale, mobile, allowed)

    def close(self) -> None:
        """Close the browser and remove its profile."""
        if getattr(self, "pid", None) is None:
            return
        try:
            self.post("Browser.close")
        except OSError:
            pass
        for _ in range(50):
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pid = None
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab. ``blocked`` lists every non-local URL the page tried to fetch (each was refused); ``allowed`` holds
    the loopback origins it may reach besides (see :meth:`Browser.new_page`)."""

    def __init__(self, browser: Browser, target: str, session: str, width: int, height: int, scale: float,
                 mobile: bool, allowed: frozenset[str] = frozenset()):
        self.browser, self.target, self.session = browser, target, session
        self.allowed = allowed
        self.blocked: list[str] = []
        self.console_errors: list[str] = []
        browser._handlers[session] = [self._on_event]
        for method, params in (("Page.enable", {}), ("Runtime.enable", {}), ("Network.enable", {}),
                               ("Fetch.enable", {"patterns": [{"urlPattern": "*"}]}),
                               ("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})):
            self.send(method, params)

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def _on_event(self, message: dict) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if self.is_local(url):
                self.browser.post("Fetch.continueRequest", {"requestId": params["requestId"]}, self.session)
            else:
                self._block(url)
                self.browser.post("Fetch.failRequest", {"requestId": params["requestId"],
                                                        "errorReason": "BlockedByClient"}, self.session)
        elif method == "Network.requestWillBeSent":  # a second count, in case a request escaped interception
            url = params["request"]["url"]
            if not self.is_local(url):
                self._block(url)
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(params["exceptionDetails"].get("text", "exception"))

    def is_local(self, url: str) -> bool:
        """True for a URL that never leaves the machine: a local scheme, or one of the allowed loopback origins."""
        if url.startswith(LOCAL_SCHEMES):
            return True
        if not self.allowed or not url.startswith(("http:", "https:")):
            return False
        try:
            return origin_of(url) in self.allowed
        except ValueError:  # a malformed port
            return False

    def _block(self, url: str) -> None:
        if url not in self.blocked:
            self.blocked.append(url)

    def goto(self, url: str) -> None:
        """Navigate to ``url`` and wait for its load event (images included) and its fonts."""
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        self.browser.wait_for("Page.loadEventFired", self.session)
        self.evaluate("document.fonts.ready.then(() => true)")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (promises awaited), returned as JSON."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript error: {result['exceptionDetails'].get('text')} in {expression[:80]}")
        return result["result"].get("value")

    def screenshot(self, path: str | Path, clip: dict | None = None) -> Path:
        """Save a PNG of the viewport, or of ``clip`` = {x, y, width, height} in page pixels."""
        params = {"format": "png"}
        if clip:
            params.update(clip={**clip, "scale": 1}, captureBeyondViewport=True)
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def pdf(self, path: str | Path) -> Path:
        """Print the page to PDF with the page size its CSS asks for (``@page { size: ... }``), backgrounds on."""
        data = self.send("Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True,
                                             "marginTop": 0, "marginBottom": 0, "marginLeft": 0,
                                             "marginRight": 0})["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self.browser._handlers.pop(self.session, None)
        self.browser.send("Target.closeTarget", {"targetId": self.target})
