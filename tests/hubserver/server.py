"""A local server speaking enough of the Hugging Face Hub HTTP protocol for the real huggingface_hub 2.4.0 client."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple, Self
from urllib.parse import parse_qs, unquote, urlsplit

from .oidc import TrustedPublishing
from .pulls import PullRequests
from .routes import Reply, Routes, json_reply
from .store import HubError, Store

HOLD_LIMIT = 60.0  # a held request is released after this long even if the test forgot to
# The real Hub serves these without a token (the token exchange authenticates with the ID token it carries).
PUBLIC_ROUTES = ("/api/agent-harnesses", "/api/validate-yaml", "/oauth/token")


class Request(NamedTuple):
    """One recorded request: decoded path, raw query, answered status (0 = dropped), body bytes read, and when it
    arrived on the server's clock."""

    method: str
    path: str
    query: str
    status: int
    bytes_received: int
    at: float = 0.0

    @property
    def kind(self) -> str:
        """What was asked, without repo id, revision or object id: 'GET refs', 'POST preupload', 'PUT lfs object'."""
        parts = self.path.strip("/").split("/")
        if parts[0] == "_lfs":
            return f"{self.method} lfs object"
        if parts[2:4] == ["info", "lfs"]:
            return f"{self.method} lfs {parts[-1]}"
        if parts[2:3] == ["resolve"]:
            return f"{self.method} resolve"
        if parts[:2] == ["api", "models"]:
            return f"{self.method} {parts[4] if len(parts) > 4 else 'info'}"
        return f"{self.method} {'/'.join(parts[1:])}"


@dataclass
class Fault:
    """An injected fault for the next `times` requests whose method and path match."""

    method: str
    path: re.Pattern[str]
    status: int | None
    times: int
    hold: threading.Event | None
    drop: bool
    drop_response: bool
    retry_after: int | None


class _Dropped(Exception):
    """The connection was closed on purpose (fault injection): no answer is sent."""


class _HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection; `hub` gives handlers the HubServer's state."""

    daemon_threads = True
    hub: HubServer


class Handler(BaseHTTPRequestHandler):
    """Parses, authenticates, records and fault-injects every request; Routes answers it."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects; so every answer has a Content-Length
    disable_nagle_algorithm = True  # otherwise headers and body meet the client's delayed ACK: +40 ms per call
    timeout = 60  # an idle keep-alive connection ends its thread eventually
    server: _HTTPServer
    raw_path: str
    query: str
    params: dict[str, list[str]]
    segments: list[str]
    bytes_received: int
    _consumed: bool

    def setup(self) -> None:
        """Track the connection so stop() can close it (keep-alive threads otherwise idle on until timeout)."""
        super().setup()
        self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        """Forget the connection."""
        self.server.hub._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        """Dispatch GET."""
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default access log (records are in hub.requests; the token is never printed)."""

    # -- request body ---------------------------------------------------------------------------------------

    def body_chunks(self, limit: int | None = None) -> Iterator[bytes]:
        """The request body piece by piece (Content-Length or chunked), at most `limit` bytes."""
        if self._consumed:
            return
        self._consumed = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                data = self.rfile.read(size)
                self.rfile.readline()
                self.bytes_received += len(data)
                yield data
        remaining = int(self.headers.get("Content-Length") or 0)
        if limit is not None:
            remaining = min(remaining, limit)
        while remaining > 0:
            data = self.rfile.read(min(remaining, 1 << 20))
            if not data:
                raise _Dropped("client went away")
            remaining -= len(data)
            self.bytes_received += len(data)
            yield data

    def body(self) -> bytes:
        """The whole request body."""
        return b"".join(self.body_chunks())

    def json_body(self) -> dict:
        """The body as a JSON object ({} when empty)."""
        raw = self.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise HubError(400, "request body is not JSON") from None
        if not isinstance(data, dict):
            raise HubError(400, "request body must be a JSON object")
        return data

    # -- the request cycle ----------------------------------------------------------------------------------

    def _handle(self) -> None:
        """Parse the request, apply faults and auth, route it, record it, answer it."""
        hub = self.server.hub
        split = urlsplit(self.path)
        self.raw_path, self.query = split.path, split.query
        self.params = parse_qs(split.query, keep_blank_values=True)
        self.segments = [unquote(s) for s in split.path.split("/")[1:]]  # split first, then unquote each segment
        self.bytes_received, self._consumed = 0, False
        decoded = unquote(split.path)
        fault = hub._take_fault(self.command, decoded)
        try:
            reply = self._faulty(fault) if fault else None
            if reply is None:
                reply = self._authorized() or self._route()
            if fault and fault.drop_response:
                raise _Dropped("answer dropped")
        except _Dropped:
            self._record(decoded, 0)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self._send(reply, decoded)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (e.g. a cancelled download)
            self.close_connection = True

    def _faulty(self, fault: Fault) -> Reply | None:
        """Apply an injected fault: wait until released, then drop the connection or answer with its status
        (None: go on)."""
        if fault.hold is not None:
            fault.hold.wait(timeout=HOLD_LIMIT)
        if fault.drop:
            length = int(self.headers.get("Content-Length") or 0)
            for _ in self.body_chunks(limit=length // 2):  # read part of the body, as an interrupted upload would
                pass
            raise _Dropped("connection dropped")
        if fault.status is None:
            return None
        self.body()
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return self.error_reply(HubError(fault.status, f"injected fault ({fault.status})"), headers)

    def _authorized(self) -> Reply | None:
        """None when the request may go on; a 401 when the server has a token and the request lacks it."""
        token = self.server.hub.token
        if token is None or self.raw_path in PUBLIC_ROUTES or self.raw_path.startswith("/_lfs/"):
            return None  # LFS upload URLs are capability URLs: the client sends them no Authorization header
        sent = self.headers.get("Authorization", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return None
        refused = self.server.hub.oidc.refusal(self.command, unquote(self.raw_path), sent)  # a Trusted Publisher's?
        if refused is None:
            return None
        self.body()
        return self.error_reply(refused)

    def _route(self) -> Reply:
        """The route's answer; errors become JSON error answers and the body is always drained."""
        try:
            reply = Routes(self, self.server.hub).dispatch()
        except HubError as error:
            reply = self.error_reply(error)
        except _Dropped:
            raise
        except Exception as error:  # noqa: BLE001 - a server bug must still answer, or the client hangs on keep-alive
            print(f"hubserver: {self.command} {self.raw_path}: {error!r}", file=sys.stderr)
            reply = self.error_reply(HubError(500, f"internal error: {type(error).__name__}"))
        if not self._consumed:
            self.body()  # drain, or the next request on this keep-alive connection is garbage
        return reply

    def error_reply(self, error: HubError, headers: dict[str, str] | None = None) -> Reply:
        """An error answer: JSON body plus X-Error-Code/X-Error-Message, which the client types errors by."""
        extra = dict(headers or {})
        extra["X-Error-Message"] = re.sub(r"[^\x20-\x7e]", " ", error.message)
        if error.code:
            extra["X-Error-Code"] = error.code
        return json_reply({"error": error.message}, error.status, extra)

    def _record(self, path: str, status: int) -> None:
        """Append this request to hub.requests."""
        hub = self.server.hub
        hub._record(Request(self.command, path, self.query, status, self.bytes_received, hub.clock()))

    def _send(self, reply: Reply, path: str) -> None:
        """Record first (a test may read the record as soon as the client returns), then answer."""
        self._record(path, reply.status)
        body = reply.body
        length = body[2] if isinstance(body, tuple) else len(body)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        if isinstance(body, tuple):
            file, start, remaining = body
            with file.open("rb") as handle:
                handle.seek(start)
                while remaining > 0:
                    chunk = handle.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        else:
            self.wfile.write(body)


class HubServer:
    """The test Hub: `with HubServer(tmp_path, token="t") as hub:` then point HfApi at `hub.url`."""

    def __init__(self, root: Path, token: str | None = None, *, user: str = "tester", port: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root, self.token, self.user, self.port = Path(root), token, user, port
        self.clock = clock  # stamps each recorded request (a test gives the client's fake clock)
        self.store = Store(self.root, user)
        self.pulls = PullRequests(self.store)
        self.oidc = TrustedPublishing()  # Trusted Publishers and the tokens /oauth/token issued
        self.requests: list[Request] = []
        self.page_size: int | None = None  # override the Hub's page sizes (tree 1000, expanded 50, commits 50)
        self._faults: list[Fault] = []
        self.token_role = "write"  # what whoami says of the token: "write" or "read"
        self.faults_taken = threading.Event()  # set once any injected fault has been applied to a request
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(16)  # signs LFS upload URLs, which carry no Authorization header
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        """The endpoint to give HfApi (http://127.0.0.1:<port>)."""
        if self._httpd is None:
            raise RuntimeError("HubServer is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> Self:
        """Listen on 127.0.0.1 and serve from a daemon thread (polling for stop() every 50 ms, not 500)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._httpd = _HTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.hub = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the git helper processes."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for connection in list(self._connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)  # wakes the handler thread, which then ends
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.store.close()

    def __enter__(self) -> Self:
        """Start serving."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop serving."""
        self.stop()

    # -- records and faults ---------------------------------------------------------------------------------

    def reset_records(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def _record(self, request: Request) -> None:
        """Thread-safe append to `requests`."""
        with self._lock:
            self.requests.append(request)

    def inject(self, method: str, path_regex: str, *, status: int | None = None, times: int = 1,
               hold: threading.Event | None = None, drop: bool = False, retry_after: int | None = None,
               drop_response: bool = False) -> None:
        """Make the next `times` requests matching method ("*" = any) and decoded path (re.search) fail.

        status: answer it (with Retry-After when given); hold: keep the request waiting until the test sets the
        event (never a fixed delay); drop: read half the body and close the connection unanswered; drop_response:
        process the request fully (a commit lands) but close unanswered.
        """
        fault = Fault(method.upper(), re.compile(path_regex), status, times, hold, drop, drop_response, retry_after)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        """The first pending fault matching this request, consumed once."""
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.method in ("*", method) and fault.path.search(path):
                    self.faults_taken.set()  # tests wait on this, not on the clock
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def upload_capability(self, oid: str, size: int) -> str:
        """The unguessable part of an LFS upload URL for (oid, size)."""
        return hmac.new(self._secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()[:32]

    # -- helpers for tests ----------------------------------------------------------------------------------

    def git_path(self, repo_id: str) -> Path:
        """The bare git repository of `repo_id`."""
        return self.store.path(repo_id)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Every file's real content at `revision` (LFS files resolved from the object store)."""
        with self.store.repo(repo_id) as repo:
            commit = self.store.resolve(repo, revision)
            entries = self.store.entries(repo, commit).values()
            return {e.path: self.store.read(repo, e) for e in entries if e.kind == "file"}

    def commit_count(self, repo_id: str, branch: str = "main") -> int:
        """How many commits `branch` has (the initial commit included)."""
        with self.store.repo(repo_id) as repo:
            return int(repo.git.rev_list("--count", f"refs/heads/{branch}"))

    def lfs_objects(self) -> set[str]:
        """The sha256 of every object in the LFS store."""
        return self.store.lfs.all()
