"""huggingface_hub's HTTP session, made to retry under hubpub's one policy (publish/util/retry.py)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from publish.util.retry import RetryingClient

if TYPE_CHECKING:
    import httpx2

_SESSION_LOCK = threading.Lock()
_session_installed = False


def use_retrying_session() -> None:
    """Make huggingface_hub send its requests through a RetryingClient (once per process), configured as its own
    default client is, so that retries happen in one place and follow one policy."""
    global _session_installed
    with _SESSION_LOCK:
        if _session_installed:
            return
        from huggingface_hub import set_client_factory
        from huggingface_hub.utils._http import hf_request_event_hook

        set_client_factory(lambda: RetryingClient(event_hooks={"request": [hf_request_event_hook]},
                                                  follow_redirects=True, timeout=None))
        _session_installed = True


def not_a_commit(request: httpx2.Request) -> bool:
    """Every request but the commit itself may be sent again; Hub.commit decides about the commit."""
    return not (request.method == "POST" and "/commit/" in request.url.path)
