"""The one retry policy (publish/util/retry.py), against httpx2's mock transport: what is retried, how long each
wait is, that a pause the server asks for holds every request to it, and that nothing waits for real."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import httpx2
import pytest

from publish.events import Event, Retrying, ignore, retries_to
from publish.util.retry import Retrier, RetriesExhausted, RetryingClient, RetryPolicy, asked_wait

from .cannedserver import serving
from .test_push import FakeClock

URL = "http://hub.test/api/models/o/m/preupload/main"


def answers(*replies: int | tuple[int, dict[str, str]] | Exception) -> tuple[list[bytes], httpx2.MockTransport]:
    """A transport answering with `replies` in turn (a status, a status with headers, or an exception to raise);
    the list records each request's body."""
    bodies: list[bytes] = []
    queue = list(replies)

    def handle(request: httpx2.Request) -> httpx2.Response:
        bodies.append(request.read())
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        status, headers = reply if isinstance(reply, tuple) else (reply, {})
        return httpx2.Response(status, headers=headers, json={"error": f"status {status}"})

    return bodies, httpx2.MockTransport(handle)


def client(transport: httpx2.MockTransport, clock: FakeClock, events: list[Event] | None = None,
           policy: RetryPolicy | None = None) -> RetryingClient:
    retrier = Retrier(policy or RetryPolicy(jitter=0), sleep=clock.sleep, clock=clock,
                      announce=retries_to(events.append if events is not None else ignore))
    return RetryingClient(transport=transport, retrier=retrier, what="upload a file")


def response(status: int, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, headers=headers)


# -- how long the server asks us to wait --------------------------------------------------------------------------


def test_retry_after_in_seconds_is_the_wait() -> None:
    assert asked_wait(response(429, **{"Retry-After": "2"})) == 2.0


def test_retry_after_as_a_date_is_measured_against_the_answers_own_date() -> None:
    found = response(503, **{"Retry-After": "Wed, 21 Oct 2026 07:28:30 GMT", "Date": "Wed, 21 Oct 2026 07:28:00 GMT"})
    assert asked_wait(found) == 30.0


def test_a_429_with_no_requests_left_waits_for_the_ratelimit_reset() -> None:
    limited = response(429, RateLimit='"api";r=0;t=55', **{"RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
    assert asked_wait(limited) == 55.0
    assert asked_wait(response(429, RateLimit='"api";r=3;t=55')) is None  # requests left: no wait named
    assert asked_wait(response(429, RateLimit='"api";r=0;t=5', **{"Retry-After": "9"})) == 9.0  # the longer


def test_an_answer_naming_no_wait_names_none() -> None:
    assert asked_wait(response(503)) is None
    assert asked_wait(response(503, **{"Retry-After": "soon"})) is None


# -- what is retried ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_the_retryable_statuses_are_retried_with_doubling_waits(status: int) -> None:
    clock, events = FakeClock(), []
    bodies, transport = answers(status, status, 200)
    done = client(transport, clock, events).post(URL, json={"files": []})
    assert done.status_code == 200 and len(bodies) == 3
    assert clock.sleeps == [1.0, 2.0]
    assert [(e.attempt, e.wait) for e in events if isinstance(e, Retrying)] == [(1, 1.0), (2, 2.0)]
    assert events[0].text() == f"retrying in 1 s (1/5): {status} from hub.test while trying to upload a file"


@pytest.mark.parametrize("status", [400, 401, 404, 409, 412, 422])
def test_other_statuses_are_answered_at_once(status: int) -> None:
    clock = FakeClock()
    bodies, transport = answers(status)
    assert client(transport, clock).get(URL).status_code == status
    assert len(bodies) == 1 and clock.sleeps == []


def test_a_dropped_connection_is_retried() -> None:
    clock = FakeClock()
    bodies, transport = answers(httpx2.RemoteProtocolError("peer closed"), httpx2.ConnectError("refused"), 200)
    assert client(transport, clock).get(URL).status_code == 200 and len(bodies) == 3


def test_a_host_that_refuses_before_it_ever_answered_gets_one_short_retry() -> None:
    clock = FakeClock()
    bodies, transport = answers(httpx2.ConnectError("refused"), httpx2.ConnectError("refused"), 200)
    with pytest.raises(RetriesExhausted):
        client(transport, clock).get(URL)
    assert len(bodies) == 2 and clock.sleeps == [1.0]


def test_the_wait_the_server_names_is_waited_in_full() -> None:
    clock, events = FakeClock(), []
    _, transport = answers((429, {"Retry-After": "2"}), 200)
    client(transport, clock, events).post(URL, json={})
    assert clock.sleeps == [2.0] and isinstance(events[0], Retrying) and events[0].wait == 2.0


def test_an_uploaded_file_is_sent_whole_again() -> None:
    clock = FakeClock()
    bodies, transport = answers(503, 200)
    body = io.BytesIO(b"weights" * 1000)
    body.seek(7)  # huggingface_hub hands over a file positioned where the object starts
    client(transport, clock).put(URL, content=body)
    assert bodies == [b"weights" * 999, b"weights" * 999]


def test_giving_up_is_not_a_transport_error_so_huggingface_hub_does_not_start_over() -> None:
    clock = FakeClock()
    bodies, transport = answers(*[503] * 3)
    with pytest.raises(RetriesExhausted) as gave_up:
        client(transport, clock, policy=RetryPolicy(retries=2, jitter=0)).get(URL)
    assert len(bodies) == 3 and gave_up.value.response is not None and gave_up.value.response.status_code == 503
    assert not isinstance(gave_up.value, httpx2.TransportError)


def test_a_pause_longer_than_the_policy_allows_fails_at_once_saying_how_long() -> None:
    clock = FakeClock()
    bodies, transport = answers((429, {"Retry-After": "3600"}))
    with pytest.raises(RetriesExhausted, match="asks to wait 3600 s"):
        client(transport, clock).get(URL)
    assert len(bodies) == 1 and clock.sleeps == []


def test_a_request_the_scope_keeps_for_its_caller_is_sent_once() -> None:
    clock = FakeClock()
    bodies, transport = answers(503)
    retrier = Retrier(RetryPolicy(), sleep=clock.sleep, clock=clock)
    with retrier.scope("commit", replay=lambda request: "/commit/" not in request.url.path):
        assert RetryingClient(transport=transport).post("http://hub.test/api/models/o/m/commit/main").status_code == 503
    assert len(bodies) == 1


def test_outside_any_scope_requests_pass_through() -> None:
    bodies, transport = answers(503)
    assert RetryingClient(transport=transport).get(URL).status_code == 503 and len(bodies) == 1


# -- a pause holds every request to that host -----------------------------------------------------------------------


def test_a_pause_the_server_asked_for_holds_other_requests_to_it() -> None:
    slept: list[float] = []
    retrier = Retrier(RetryPolicy(), sleep=slept.append, clock=lambda: 100.0)  # time stands still
    retrier.pause("upload a", 1, "hub.test", "429 from hub.test", response(429, **{"Retry-After": "2"}))
    retrier.hold("hub.test")  # another upload, in another thread, about to send
    retrier.hold("elsewhere.test")
    assert slept == [2.0, 2.0]


def test_a_backoff_wait_holds_nobody_else() -> None:
    slept: list[float] = []
    retrier = Retrier(RetryPolicy(jitter=0), sleep=slept.append, clock=lambda: 100.0)
    retrier.pause("upload a", 1, "hub.test", "503 from hub.test", response(503))
    retrier.hold("hub.test")
    assert slept == [1.0]


def test_backoff_waits_are_capped_and_spread() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=30.0, jitter=0.25)
    waits: Callable[[float], list[float]] = lambda draw: [policy.backoff_wait(a, draw) for a in range(1, 8)]
    assert waits(0.0) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert waits(0.999)[-1] < 30.0 * 1.25 and waits(0.5)[0] == 1.125


# -- the evaluation server follows the same policy ------------------------------------------------------------------


@pytest.fixture
def busy_completions_server() -> Iterator[str]:
    """An OpenAI-compatible completions endpoint that first answers 429 with Retry-After: 3, then a valid answer
    for the prompt [5, 6] with K = 2."""
    answer = {"choices": [{
        "prompt_logprobs": [None, {"6": {"logprob": -0.1}, "1": {"logprob": -2.5}}],
        "logprobs": {"top_logprobs": [{"token_id:1": -0.5, "token_id:2": -1.0}]},
    }]}
    replies = [(429, {"Retry-After": "3"}, {"error": "slow down"}), (200, {}, answer)]

    def reply(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = replies.pop(0)
        return status, {**headers, "Content-Type": "application/json"}, json.dumps(body).encode()

    with serving(reply) as url:
        yield f"{url}/v1"


def test_the_evaluation_server_is_retried_by_the_same_policy(busy_completions_server: str) -> None:
    import numpy as np

    from publish.eval.backends import ServerBackend

    clock, events = FakeClock(), []
    backend = ServerBackend(busy_completions_server, "m", top_k=2, vocab_size=8, sleep=clock.sleep,
                            emit=events.append)
    try:
        window = backend(np.array([5, 6], dtype=np.int64))
    finally:
        backend.close()
    assert window.topk_ids[-1].tolist() == [1, 2] and clock.sleeps == [3.0]
    assert [(type(e).__name__, e.wait) for e in events if isinstance(e, Retrying)] == [("Retrying", 3.0)]
    assert "429 from 127.0.0.1" in events[0].text()


def test_an_injected_sleep_alone_waits_each_pause_once() -> None:
    slept: list[float] = []
    retrier = Retrier(RetryPolicy(), sleep=slept.append)  # the clock is the real one: no time passes in `sleep`
    retrier.pause("upload a", 1, "hub.test", "429 from hub.test", response(429, **{"Retry-After": "4"}))
    retrier.hold("hub.test")  # the retry of the same request
    assert slept == [4.0]
