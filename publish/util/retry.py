"""One retry policy for every HTTP request hubpub makes: to the Hub (through huggingface_hub) and to an evaluation
server.

What is retried and how long to wait follow huggingface_hub's own `http_backoff`: the statuses 408, 429, 500, 502,
503 and 504 and dropped or timed-out connections are retried; a `Retry-After` header (seconds or a date) or, on a
429, the `RateLimit` header's reset (read by huggingface_hub's `parse_ratelimit_headers`) says how long to wait;
otherwise the wait doubles from `backoff`. Two things `http_backoff` cannot do are done here:

- a wait the server asked for holds *every* request to that host, not only the refused one: concurrent uploads
  pause too, instead of asking again at once;
- each wait is announced (a `RetryNotice`, which publish/events.py turns into a `Retrying` event), and the clock
  and the sleep are injectable, so tests wait for nothing.

`RetryingClient` is an httpx2 client that applies a `Retrier` to what it sends. The Hub client installs one as
huggingface_hub's session, so the requests huggingface_hub makes inside one hubpub call (preupload, LFS batch, the
upload itself, verify) follow that call's policy (`Retrier.scope`); requests made outside any hubpub call pass
through untouched.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import IO, Any

import httpx2

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RETRY_ERRORS = (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError)


class RetriesExhausted(httpx2.HTTPError):
    """The last answer (or connection error) of a request retried as often as the policy allows. Not a transport
    error, so that huggingface_hub's own `http_backoff` does not start over."""

    def __init__(self, message: str, *, response: httpx2.Response | None, attempts: int,
                 asked: float | None = None) -> None:
        super().__init__(message)
        self.response = response
        self.attempts = attempts
        self.asked = asked  # the wait the server asked for, when it was longer than the policy waits


@dataclass(frozen=True)
class RetryNotice:
    """A wait about to happen: what was being done, why it failed, how long, which retry of how many."""

    what: str
    reason: str
    wait: float
    attempt: int
    attempts: int


def quiet(notice: RetryNotice) -> None:
    """The default `announce`: nobody is told."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5  # after the first attempt
    backoff: float = 1.0  # the first wait when the server names none; doubles with each retry
    max_backoff: float = 30.0
    jitter: float = 0.25  # backoff waits are stretched by up to this fraction, so clients do not retry in step
    max_wait: float = 600.0  # a server asking for a longer wait is not waited for: the request fails, saying so
    statuses: frozenset[int] = RETRY_STATUSES
    # A host that refuses the connection before it ever answered is most likely the wrong address (HF_ENDPOINT),
    # not a busy server: it gets this many retries (one short wait) instead of `retries`.
    unreached_retries: int = 1

    def backoff_wait(self, attempt: int, draw: float) -> float:
        """The wait before retry `attempt` (1 for the first) when the server named none; `draw` is in [0, 1)."""
        return min(self.backoff * 2 ** (attempt - 1), self.max_backoff) * (1 + self.jitter * draw)


def asked_wait(response: httpx2.Response, now: float | None = None) -> float | None:
    """How long the server asked us to wait, in seconds: `Retry-After` (seconds or an HTTP date, measured against
    the answer's own `Date` when it has one) and, on a 429 with no requests left, the `RateLimit` reset. None when
    it named no wait."""
    from huggingface_hub.utils import parse_ratelimit_headers

    waits = []
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        waits.append(float(value))
    elif value:
        try:
            moment = parsedate_to_datetime(value).timestamp()
            sent = response.headers.get("Date")
            reference = parsedate_to_datetime(sent).timestamp() if sent else (now if now is not None else time.time())
            waits.append(max(0.0, moment - reference))
        except (TypeError, ValueError, IndexError, OverflowError):
            pass  # not a date either: no wait named
    limit = parse_ratelimit_headers(response.headers) if response.status_code == 429 else None
    if limit is not None and limit.remaining == 0:
        waits.append(float(limit.reset_in_seconds))
    return max(waits) if waits else None


@dataclass(frozen=True)
class Scope:
    """What the requests sent inside `Retrier.scope` are for, and which of them may be sent again."""

    retrier: Retrier
    what: str  # "upload model-00001.safetensors to org/model@main": completes "while trying to …"
    replay: Callable[[httpx2.Request], bool]


_SCOPE: ContextVar[Scope | None] = ContextVar("hubpub_retry_scope", default=None)
# Scopes open right now in any thread. huggingface_hub runs some requests of one call in its own worker threads,
# which do not inherit the caller's context: those requests follow the latest open scope.
_OPEN: list[Scope] = []
_OPEN_LOCK = threading.Lock()


def current_scope() -> Scope | None:
    scope = _SCOPE.get()
    if scope is not None:
        return scope
    with _OPEN_LOCK:
        return _OPEN[-1] if _OPEN else None


def always(request: httpx2.Request) -> bool:
    return True


@dataclass
class Retrier:
    """A RetryPolicy at work: it waits (through `sleep`, measured on `clock`), tells `announce` about each wait
    first, and holds requests to a host that asked for a pause until the pause is over."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    announce: Callable[[RetryNotice], None] = quiet
    draw: Callable[[], float] = random.random
    _paused_until: dict[str, float] = field(default_factory=dict)  # host -> clock time
    _answered: set[str] = field(default_factory=set)  # hosts that were reached at least once
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.sleep is not time.sleep and self.clock is time.monotonic:
            # An injected sleep lets no real time pass: measure pauses by what was slept, or each would be waited
            # again in full when the request is retried.
            slept = _SleptTime(self.sleep)
            self.sleep, self.clock = slept.sleep, slept

    @contextmanager
    def scope(self, what: str, replay: Callable[[httpx2.Request], bool] = always) -> Iterator[Scope]:
        """Requests sent by a RetryingClient inside this block, in this thread or in huggingface_hub's worker
        threads, follow this retrier; `replay(request)` False leaves a request's retries to the caller."""
        scope = Scope(self, what, replay)
        token = _SCOPE.set(scope)
        with _OPEN_LOCK:
            _OPEN.append(scope)
        try:
            yield scope
        finally:
            with _OPEN_LOCK:
                _OPEN.remove(scope)
            _SCOPE.reset(token)

    def hold(self, host: str) -> None:
        """Wait out a pause a server asked for, before sending it anything else."""
        with self._lock:
            until = self._paused_until.get(host, 0.0)
        remaining = until - self.clock()
        if remaining > 0:
            self.sleep(remaining)

    def pause(self, what: str, attempt: int, host: str, reason: str, response: httpx2.Response | None,
              attempts: int | None = None) -> None:
        """Wait before retry `attempt` of a request that failed for `reason`, announcing it first. A wait the
        server asked for pauses every request to `host`; one longer than the policy allows is not waited for."""
        asked = asked_wait(response) if response is not None else None
        if asked is not None and asked > self.policy.max_wait:
            raise RetriesExhausted(
                f"{reason}; the server asks to wait {asked:g} s before trying again", response=response,
                attempts=attempt, asked=asked)
        wait = asked if asked is not None else self.policy.backoff_wait(attempt, self.draw())
        if asked is not None:
            with self._lock:
                until = self.clock() + asked
                self._paused_until[host] = max(self._paused_until.get(host, 0.0), until)
        self.announce(RetryNotice(what, reason, wait, attempt, attempts or self.policy.retries))
        self.sleep(wait)

    def send(self, send: Callable[[], httpx2.Response], request: httpx2.Request, scope: Scope) -> httpx2.Response:
        """Send `request` through `send`, retrying what the policy retries. A request whose body cannot be sent
        again, or that `scope.replay` keeps for the caller, is sent once (after any pause)."""
        host = request.url.host
        rewind = _rewinder(request) if scope.replay(request) else None
        for attempt in itertools.count():
            self.hold(host)
            failure: Exception | None = None
            response: httpx2.Response | None = None
            try:
                response = send()
            except RETRY_ERRORS as error:
                if rewind is None:
                    raise
                failure, reason = error, f"{type(error).__name__} talking to {host}"
            if not isinstance(failure, httpx2.ConnectError):  # an answer, or a connection that was made
                self._answered.add(host)
            if response is not None:
                if response.status_code not in self.policy.statuses or rewind is None:
                    return response
                response.read()  # an error's body is small, and the server's message is in it
                response.close()
                reason = f"{response.status_code} from {host}"
            retries = self.policy.retries
            if isinstance(failure, httpx2.ConnectError) and host not in self._answered:
                retries = min(retries, self.policy.unreached_retries)
            if attempt >= retries:
                detail = f" ({failure})" if failure is not None else ""
                raise RetriesExhausted(reason + detail, response=response, attempts=attempt + 1) from failure
            self.pause(scope.what, attempt + 1, host, reason, response, retries)
            assert rewind is not None
            rewind()
        raise AssertionError("unreachable")


class _SleptTime:
    """A clock that moves only by what `sleep` was asked to sleep."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self._sleep, self._now, self._lock = sleep, 0.0, threading.Lock()

    def __call__(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
        self._sleep(seconds)


def _rewinder(request: httpx2.Request) -> Callable[[], None] | None:
    """How to send `request`'s body again: nothing to do for a body held in memory; seek back for a file (an LFS
    upload); None when it cannot be sent again (a generator)."""
    stream = request.stream
    if isinstance(stream, httpx2.ByteStream):
        return lambda: None
    # httpx2 wraps a file-like body, as huggingface_hub passes for uploads, and reads it with `.read()`.
    body: IO[bytes] | Any = getattr(stream, "_stream", None)
    if body is not None and hasattr(body, "seek") and hasattr(body, "tell"):
        try:
            start = body.tell()
        except (OSError, ValueError):
            return None

        def seek_back() -> None:
            body.seek(start)

        return seek_back
    return None


class RetryingClient(httpx2.Client):
    """An httpx2 client whose requests follow a Retrier: the one given, or else the scope open where the request
    is sent (none: the request is sent as it is)."""

    def __init__(self, *args: Any, retrier: Retrier | None = None, what: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scope = Scope(retrier, what, always) if retrier is not None else None

    def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        scope = self._scope or current_scope()
        if scope is None:
            return super().send(request, **kwargs)
        return scope.retrier.send(lambda: super(RetryingClient, self).send(request, **kwargs), request, scope)
