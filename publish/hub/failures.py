"""What a failed Hub request means, in one paragraph: what hubpub was doing, the repository and revision, the
status, the Hub's own words and what to do. Every exception huggingface_hub (or the connection under it) can raise
is translated here, in one place, and no message carries the token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from publish.errors import AuthError, HubError, HubpubError, scrub
from publish.util.retry import RETRY_ERRORS, RetriesExhausted


@contextmanager
def hub_errors(what: str, endpoint: str, token: str | None) -> Iterator[None]:
    """Turn any failure of the block into a HubError (or AuthError) whose `__cause__` is the original."""
    try:
        yield
    except HubpubError:
        raise
    except Exception as error:
        translated = describe(error, what, endpoint, token)
        if translated is None:
            raise
        raise translated from error


def describe(error: Exception, what: str, endpoint: str, token: str | None) -> HubError | None:
    """The HubError for `error` while trying to `what`; None for an exception that is not about the Hub (a bug)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if isinstance(error, RetriesExhausted) and error.asked is not None:
        return HubError(f"cannot {what}: {error}", hint=f"the Hub asks for a pause: try again in {error.asked:g} s")
    if isinstance(error, RetriesExhausted) and error.response is not None:
        from huggingface_hub.utils import hf_raise_for_status

        try:
            hf_raise_for_status(error.response)
        except HfHubHTTPError as answered:  # the Hub's typed error for the last answer, as without retries
            error = answered
    if isinstance(error, RepositoryNotFoundError):
        status = status_of(error)
        cls = AuthError if status in (401, 403) and token else HubError
        return cls(f"cannot {what}: repository not found or not accessible ({status})",
                   hint="check the repo id, and that your token may read and write it")
    if isinstance(error, HfHubHTTPError):
        status = status_of(error)
        said = hub_message(error)
        reply = "the Hub refused the token (401)" if status == 401 else f"the Hub answered {status}"
        text = f"cannot {what}: {reply}" + (f": {said}" if said else "")
        if status == 401:
            return AuthError(text, hint="the token is invalid, expired or revoked: create one at "
                                        "https://huggingface.co/settings/tokens and set HF_TOKEN (or run "
                                        "`hf auth login`)")
        if status == 403:
            return AuthError(text, hint="use a token with write access to this repository (HF_TOKEN)")
        return HubError(scrub(text, token), hint=hint_for(status, endpoint))
    if isinstance(error, RetriesExhausted | httpx2.TransportError):
        return HubError(f"cannot {what}: no answer from {endpoint} ({type(error.__cause__ or error).__name__}: "
                        f"{scrub(str(error), token) or 'connection failed'})",
                        hint=f"is {endpoint} reachable? set HF_ENDPOINT to a Hub, or unset it")
    if isinstance(error, json.JSONDecodeError | KeyError | TypeError):  # an answer that is not what a Hub sends
        return HubError(f"cannot {what}: {endpoint} answered with something that is not the Hub's JSON "
                        f"({type(error).__name__})",
                        hint="HF_ENDPOINT must point at a Hugging Face Hub (or a server speaking its API)")
    if isinstance(error, OSError):
        return HubError(f"cannot {what}: {type(error).__name__}: {scrub(str(error), token)}",
                        hint=f"is {endpoint} reachable?")
    return None


def retryable(error: BaseException | None, statuses: frozenset[int]) -> bool:
    """Did the request fail in a way worth sending it again (a status of `statuses`, a dropped connection)?"""
    return status_of(error) in statuses or isinstance(error, RETRY_ERRORS)


def status_of(error: BaseException | None) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def hub_message(error: BaseException) -> str:
    """The Hub's own words (X-Error-Message or the JSON body's "error"), one line, without a token."""
    said = getattr(error, "server_message", None) or ""
    return scrub(" ".join(str(said).split()))[:300]


def hint_for(status: int | None, endpoint: str) -> str:
    if status == 404:
        return f"the repository, revision or API route does not exist on {endpoint}; check the repo id and " \
               "HF_ENDPOINT"
    if status == 409:
        return "it exists already; run `hubpub plan` to see the Hub's state"
    if status == 429:
        return "rate-limited by the Hub: wait a few minutes, then push again"
    if status is not None and status >= 500:
        return "the Hub is failing; nothing was overwritten: push again later (unchanged files are skipped)"
    return "run `hubpub plan` to see the Hub's state, then push again"


def host_of(endpoint: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(endpoint).hostname or endpoint


def reason_for(error: BaseException | None, endpoint: str) -> str:
    status = status_of(error)
    if status is not None:
        return f"{status} from {host_of(endpoint)}"
    return f"{type(error).__name__} talking to {host_of(endpoint)}"
