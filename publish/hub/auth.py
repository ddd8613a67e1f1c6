"""A Trusted Publisher's Hub token, kept valid through a push that outlasts it.

With `HF_OIDC_RESOURCE` set (GitHub Actions with `permissions: id-token: write`), the Hub token is not a secret but
the answer of an exchange: GitHub mints an OIDC ID token for the run, and the Hub's `/oauth/token` trades it for a
token scoped to one repository that lasts 60 minutes and cannot be refreshed. A first push of 40 GB on a slow runner
outlasts that, and the commit, sent after every byte is uploaded, would be refused. `TrustedPublisher` remembers when
its token expires, and the Hub client exchanges again before a request that would come too late.

The exchange itself is huggingface_hub's (`_oidc.get_oidc_token` and `exchange_oidc_token`, what its `get_token()`
runs); hubpub calls them directly because `get_token()` hides when the token expires.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from publish.errors import AuthError, TokenRenewalError, scrub

RENEW_MARGIN = 300.0  # seconds before expiry: as huggingface_hub's own cache, renew 5 minutes early
DEFAULT_LIFETIME = 3600  # what the Hub grants when an answer leaves out expires_in


@dataclass(frozen=True)
class Renewed:
    """A token just obtained, and why (empty for the first exchange: the login)."""

    token: str
    why: str


class TrustedPublisher:
    """Exchanges GitHub's ID token for a Hub token scoped to `resource`, and again whenever asked to.

    `clock` (seconds, monotonic) decides when the token is `expiring`: tests inject one instead of waiting an hour.
    An `id_token` given up front (HF_OIDC_ID_TOKEN, from a CI that is not GitHub) cannot be minted again; it is
    reused for every exchange.
    """

    def __init__(self, resource: str, endpoint: str, *, id_token: str | None = None,
                 clock: Callable[[], float] = time.monotonic, margin: float = RENEW_MARGIN) -> None:
        self.resource = resource
        self.endpoint = endpoint.rstrip("/")
        self._id_token = id_token or None
        self._clock = clock
        self._margin = margin
        self.token: str | None = None
        self.expires_at: float | None = None
        self.lifetime: int = DEFAULT_LIFETIME
        self.exchanges = 0  # how many tokens this publisher obtained
        self._lock = threading.Lock()  # one exchange at a time, however many upload threads find the token stale

    @classmethod
    def from_environment(cls, endpoint: str) -> TrustedPublisher | None:
        """The publisher HF_OIDC_RESOURCE asks for (huggingface_hub's variable), or None when it is unset or empty."""
        resource = os.environ.get("HF_OIDC_RESOURCE", "").strip()
        if not resource:
            return None
        return cls(resource, endpoint, id_token=os.environ.get("HF_OIDC_ID_TOKEN"))

    @property
    def expiring(self) -> bool:
        """Whether the token is missing, or expires within the margin (the next request could be refused)."""
        return self.expires_at is None or self._clock() >= self.expires_at - self._margin

    def seconds_left(self) -> float:
        """Seconds until the token expires (negative once it has)."""
        return (self.expires_at if self.expires_at is not None else self._clock()) - self._clock()

    def renew(self, what: str, *, refused: str | None = None) -> Renewed | None:
        """Exchange again when there is no token yet, when it expires within the margin, or when the Hub refused
        `refused` and no other thread has renewed it since; None when the current token will do.

        The first exchange failing is a failed login (AuthError); a later one is a TokenRenewalError naming what
        hubpub was about to do (`what`) and why the token had to go."""
        if refused is None and not self.expiring:
            return None
        with self._lock:
            if refused is not None and refused != self.token:
                return Renewed(self.token, "") if self.token else None  # another thread renewed it meanwhile
            if refused is None and not self.expiring:
                return None
            first, left = self.token is None, self.seconds_left()
            why = "was refused by the Hub (401)" if refused is not None else (
                f"expires in {left:.0f} s" if left > 0 else "has expired")
            why += f" (it lasts {self.lifetime // 60} minutes and is not refreshed)"
            try:
                return Renewed(self.exchange(), "" if first else why)
            except AuthError as error:
                if first:
                    raise AuthError(f"Trusted Publisher login failed: {error.message}", hint=error.hint) from None
                raise TokenRenewalError(
                    f"cannot {what}: the Trusted Publisher's Hub token {why}, and a new exchange failed: "
                    f"{error.message}", hint=error.hint,
                ) from None

    def exchange(self) -> str:
        """Mint an ID token and exchange it for a Hub token; the new token. AuthError, without a token in its text,
        when GitHub or the Hub refuses."""
        from huggingface_hub import _oidc
        from huggingface_hub.errors import OIDCError

        try:
            subject = self._id_token or _oidc.get_oidc_token(audience=self.endpoint)
        except OIDCError as error:
            raise AuthError(
                f"no OIDC ID token for the Trusted Publisher of {self.resource}: {scrub(str(error))}",
                hint="run in GitHub Actions with `permissions: id-token: write`, or unset HF_OIDC_RESOURCE and "
                     "provide HF_TOKEN",
            ) from None
        except Exception as error:  # noqa: BLE001 - any answer from GitHub's endpoint but a token
            raise AuthError(
                f"GitHub did not issue an OIDC ID token ({_reason(error)})",
                hint="the job needs `permissions: id-token: write`; ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN come "
                     "from the runner",
            ) from None
        try:
            answer = _oidc.exchange_oidc_token(subject_token=subject, resource=self.resource, endpoint=self.endpoint)
            token = str(answer["access_token"])
            lifetime = int(answer.get("expires_in") or DEFAULT_LIFETIME)
        except Exception as error:  # noqa: BLE001 - a refusal, a dropped connection or an answer that is no token
            hint = (f"check the Trusted Publisher configured in {self.resource}'s settings on the Hub: its claims "
                    "(repository, ref, workflow) must match this run exactly")
            if self._id_token:
                hint = "HF_OIDC_ID_TOKEN is used as given and cannot be minted again; it may have expired"
            raise AuthError(f"the Hub refused to exchange the OIDC ID token for a token to {self.resource} "
                            f"({_reason(error)})", hint=hint) from None
        self.token, self.lifetime = token, lifetime
        self.expires_at = self._clock() + lifetime
        self.exchanges += 1
        return token


def keep_huggingface_hub_from_exchanging() -> None:
    """Stop huggingface_hub from running a hidden exchange of its own next to this one.

    A few of its requests resolve a token implicitly even when the caller gave one: the LFS verify request after
    each upload is built with `build_hf_headers(token=None, headers=...)`, which calls `get_token()`, and with
    HF_OIDC_RESOURCE set that exchanges GitHub's ID token again, against `constants.ENDPOINT`, on a clock of its
    own. hubpub gives its token explicitly to every call, so implicit tokens are switched off for the process; the
    verify request still carries the Authorization header of the call it belongs to.
    """
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_IMPLICIT_TOKEN = True


def _reason(error: BaseException) -> str:
    """What refused, in one line and without a token: the status and the server's words, or the failure's type."""
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    said = " ".join(str(getattr(error, "server_message", None) or "").split())
    if status is not None:
        return scrub(f"{status}" + (f": {said}" if said else ""))[:300]
    return scrub(f"{type(error).__name__}: {error}")[:300]


def may_write(access: dict[str, object]) -> bool:
    """Does whoami's `auth.accessToken` allow writing? A "read" token never does; a fine-grained one when a
    global or a repository scope grants `repo.write`."""
    role = access.get("role")
    if role == "read":
        return False
    if role != "fineGrained":
        return True
    grained = access.get("fineGrained")
    scopes = grained.get("scoped", []) if isinstance(grained, dict) else []
    granted = [*(grained.get("global", []) if isinstance(grained, dict) else []),
               *(p for scope in scopes if isinstance(scope, dict) for p in scope.get("permissions", []))]
    return "repo.write" in granted
