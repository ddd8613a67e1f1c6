"""Keyless publishing on the test Hub: GitHub's ID-token endpoint (a stub) and the Hub's token exchange.

GitHub Actions gives a job with `permissions: id-token: write` two variables: ACTIONS_ID_TOKEN_REQUEST_URL and
ACTIONS_ID_TOKEN_REQUEST_TOKEN. `GET $URL&audience=A` with `Authorization: bearer $TOKEN` answers `{"value": JWT}`.
The Hub's `POST /oauth/token` (RFC 8693, what huggingface_hub's `_oidc.exchange_oidc_token` sends) checks the JWT's
signature, audience, expiry and claims against the Trusted Publishers configured for `resource`, and answers a
repo-scoped token that lasts `lifetime` seconds (3600 on the Hub) and cannot be refreshed: a long job exchanges
again. Both sides read an injectable clock, so a test makes a token expire without waiting.

JWTs here are HS256, signed with a key the stub and the Hub share (the real Hub fetches GitHub's public keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from ..cannedserver import serving
from .store import HubError

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
# The Hub's trusted-publisher tokens: hf_jwt_ and a JWT of its own (here an opaque random string).
ISSUED_PREFIX = "hf_jwt_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jwt(claims: Mapping[str, Any], key: bytes) -> str:
    """A compact HS256 JWT."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(dict(claims)).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def read_jwt(token: str, key: bytes) -> dict[str, Any] | None:
    """The claims of an HS256 JWT signed with `key`, or None (malformed or a bad signature)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    expected = hmac.new(key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(parts[2])):
            return None
        claims = json.loads(_unb64(parts[1]))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


# -- GitHub's side ----------------------------------------------------------------------------------------------


class GitHubIdTokens:
    """A stub of the Actions runtime's ID-token endpoint on 127.0.0.1, minting JWTs about one workflow run.

    `env()` is what a runner adds to a job with `id-token: write`. `refuse` makes it answer 403 (as GitHub does when
    the job lacks the permission), and so does a `budget` of tokens once spent; `minted` records the audience of
    each token handed out.
    """

    def __init__(self, *, repository: str = "acme/model-release", ref: str = "refs/tags/v1.0.0",
                 workflow: str = "publish.yml", lifetime: int = 300, clock: Callable[[], float] = time.time) -> None:
        self.key = secrets.token_bytes(32)
        self.request_token = secrets.token_urlsafe(24)
        self.claims = {
            "repository": repository, "repository_owner": repository.split("/")[0], "ref": ref,
            "ref_type": "tag" if ref.startswith("refs/tags/") else "branch", "event_name": "push",
            "sub": f"repo:{repository}:ref:{ref}", "workflow": workflow,
            "workflow_ref": f"{repository}/.github/workflows/{workflow}@{ref}",
            "job_workflow_ref": f"{repository}/.github/workflows/{workflow}@{ref}",
        }
        self.lifetime, self.clock = lifetime, clock
        self.refuse = False
        self.budget: int | None = None  # how many tokens it hands out in all (None: any number)
        self.minted: list[str] = []
        self._lock = threading.Lock()
        self._serving: AbstractContextManager[str] | None = None
        self._base: str | None = None

    def mint(self, audience: str) -> str:
        """One ID token for `audience`, valid from now for `lifetime` seconds."""
        now = int(self.clock())
        with self._lock:
            self.minted.append(audience)
        return sign_jwt({**self.claims, "iss": GITHUB_ISSUER, "aud": audience, "iat": now, "nbf": now,
                         "exp": now + self.lifetime, "jti": secrets.token_hex(8)}, self.key)

    @property
    def url(self) -> str:
        """ACTIONS_ID_TOKEN_REQUEST_URL: like GitHub's, it already has a query; the audience is appended."""
        if self._base is None:
            raise RuntimeError("GitHubIdTokens is not running")
        return f"{self._base}/_apis/idtoken?api-version=2.0"

    def env(self) -> dict[str, str]:
        """The two variables a runner sets for a job with `permissions: id-token: write`."""
        return {"ACTIONS_ID_TOKEN_REQUEST_URL": self.url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token}

    def answer(self, method: str, path: str, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """GitHub's answer: an ID token for the audience asked, to a bearer of the request token."""
        split = urlsplit(path)
        audience = parse_qs(split.query).get("audience", [""])[0]
        sent = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if method != "GET" or split.path != "/_apis/idtoken" or not audience:
            status, data = 400, {"message": "audience is required"}
        elif not hmac.compare_digest(sent.lower().encode(), f"bearer {self.request_token}".lower().encode()):
            status, data = 401, {"message": "Unauthorized"}
        elif self.refuse or self.budget == len(self.minted):
            status, data = 403, {"message": "Forbidden: no ID token for this job"}
        else:
            status, data = 200, {"count": 1, "value": self.mint(audience)}
        return status, {"Content-Type": "application/json"}, json.dumps(data).encode()

    def __enter__(self) -> Self:
        self._serving = serving(self.answer, with_headers=True)
        self._base = self._serving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._serving is not None:
            self._serving.__exit__(None, None, None)
        self._serving, self._base = None, None


# -- the Hub's side ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publisher:
    """A Trusted Publisher configured on a Hub repo: the issuer's key and the claims that must match exactly."""

    resource: str
    key: bytes
    claims: Mapping[str, str]
    issuer: str = GITHUB_ISSUER


@dataclass
class Issued:
    """A token the exchange handed out."""

    resource: str
    subject: str
    expires_at: float


@dataclass
class TrustedPublishing:
    """The Hub's `/oauth/token` and the tokens it issued. `clock` and `lifetime` decide expiry."""

    clock: Callable[[], float] = time.time
    lifetime: int = 3600
    publishers: list[Publisher] = field(default_factory=list)
    issued: dict[str, Issued] = field(default_factory=dict)
    exchanges: list[str] = field(default_factory=list)  # "granted" or "refused: <why>", one per exchange request
    _expire_on: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def trust(self, resource: str, github: GitHubIdTokens, **claims: str) -> None:
        """Configure the stub's workflow as a Trusted Publisher of `resource` (claims default to its repository)."""
        wanted = claims or {"repository": str(github.claims["repository"])}
        self.publishers.append(Publisher(resource, github.key, wanted))

    def expire_all(self) -> None:
        """Every token issued so far expires now (as if its hour had passed)."""
        with self._lock:
            for token in self.issued.values():
                token.expires_at = float("-inf")

    def expire_when(self, method: str, path_regex: str) -> None:
        """When the next request matching method and decoded path arrives, every token issued so far expires first,
        so that very request is refused (401) unless it carries a token exchanged since."""
        with self._lock:
            self._expire_on.append((method.upper(), re.compile(path_regex)))

    def grants(self) -> int:
        """How many exchanges succeeded."""
        return self.exchanges.count("granted")

    # -- the exchange -----------------------------------------------------------------------------------------

    def exchange(self, body: Mapping[str, Any], audience: str) -> tuple[int, dict[str, Any]]:
        """RFC 8693: (status, answer). Refusals are 400 invalid_grant without saying which check failed, as on the
        Hub; the reason is kept in `exchanges` for the test to read."""
        if body.get("grant_type") != GRANT_TYPE or body.get("subject_token_type") != ID_TOKEN_TYPE \
                or not body.get("subject_token") or not body.get("resource"):
            return self._refuse("invalid_request", "missing or malformed parameter")
        resource, subject_token = str(body["resource"]), str(body["subject_token"])
        why = "no publisher configured for this resource"
        for publisher in (p for p in self.publishers if p.resource == resource):
            claims = read_jwt(subject_token, publisher.key)
            if claims is None:
                why = "bad signature"
            elif claims.get("iss") != publisher.issuer or claims.get("aud") != audience:
                why = f"issuer or audience mismatch (aud {claims.get('aud')!r}, expected {audience!r})"
            elif not float(claims.get("nbf", 0)) <= self.clock() < float(claims.get("exp", 0)):
                why = "the ID token expired"
            elif any(claims.get(k) != v for k, v in publisher.claims.items()):
                why = "claims do not match"
            else:
                token = ISSUED_PREFIX + secrets.token_hex(24)
                with self._lock:
                    self.issued[token] = Issued(resource, str(claims.get("sub")), self.clock() + self.lifetime)
                    self.exchanges.append("granted")
                return 200, {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime,
                             "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}
        return self._refuse("invalid_grant", why)

    def _refuse(self, error: str, why: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.exchanges.append(f"refused: {why}")
        return 400, {"error": error, "error_description": "The token exchange was refused"}

    # -- requests made with an issued token -------------------------------------------------------------------

    def identity(self, authorization: str) -> Issued | None:
        """The issued token in an Authorization header, if it is one and has not expired."""
        token = authorization.removeprefix("Bearer ").strip()
        with self._lock:
            issued = self.issued.get(token)
        return issued if issued is not None and self.clock() < issued.expires_at else None

    def refusal(self, method: str, path: str, authorization: str) -> HubError | None:
        """None when an issued token may make this request; else the error to answer (401 unknown or expired,
        403 outside the token's repository)."""
        with self._lock:
            for trigger in list(self._expire_on):
                if trigger[0] in ("*", method) and trigger[1].search(path):
                    self._expire_on.remove(trigger)
                    for token in self.issued.values():
                        token.expires_at = float("-inf")
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.issued:
            return HubError(401, "Invalid credentials in Authorization header")
        issued = self.identity(authorization)
        if issued is None:
            return HubError(401, "Expired token in Authorization header: exchange a new one")
        target = _repository(path)
        if target == "" or (target is not None and target != issued.resource):
            return HubError(403, f"This token is scoped to {issued.resource}")
        return None

    def whoami(self, issued: Issued) -> dict[str, Any]:
        """What whoami-v2 says of an issued token: the synthetic [OIDC] user, write access to one repository."""
        return {
            "type": "user", "id": "oidc", "name": "[OIDC]", "fullname": f"Trusted Publisher ({issued.subject})",
            "orgs": [], "auth": {"type": "access_token", "accessToken": {
                "displayName": f"trusted publisher for {issued.resource}", "role": "fineGrained",
                "fineGrained": {"scoped": [{"entity": {"type": "model", "name": issued.resource},
                                            "permissions": ["repo.content.read", "repo.write"]}]}}},
        }


def _repository(path: str) -> str | None:
    """The repository a request is about; "" for account-level writes an issued token may not make; None when
    the request concerns no repository."""
    if path.startswith("/api/repos/"):
        return ""
    for pattern in (r"^/api/models/([^/]+/[^/]+)", r"^/([^/]+/[^/]+)\.git/", r"^/([^/]+/[^/]+)/resolve/"):
        match = re.match(pattern, path)
        if match:
            return match[1]
    return None
