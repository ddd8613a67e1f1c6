"""Keyless publishing: a Trusted Publisher's token, exchanged for GitHub's OIDC ID token, kept valid through a push.

The local Hub answers `/oauth/token` and a stub answers GitHub's ID-token request on 127.0.0.1. The Hub's tokens
last an hour and cannot be refreshed; a clock shared by the stub, the Hub and hubpub makes one expire between the
uploads and the commit without waiting for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from huggingface_hub.errors import HfHubHTTPError

from publish.commands.push import PushResult, PushSettings, push
from publish.errors import AuthError, TokenRenewalError, scrub
from publish.events import Committed, Event, Progress, TokenRenewed, Verified
from publish.hub.auth import TrustedPublisher
from publish.hub.client import Hub
from publish.manifest.model import load_manifest

from .conftest import HUB_TOKEN, hubpub
from .hubserver import HubServer
from .hubserver.oidc import GitHubIdTokens

REPO = "Minachist/Qwen3.6-27B-INT8-AutoRound"
HOUR = 3600
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


class Clock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github(clock: Clock) -> Iterator[GitHubIdTokens]:
    with GitHubIdTokens(clock=clock) as stub:
        yield stub


@pytest.fixture
def trusted(hub: HubServer, github: GitHubIdTokens, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The Hub repo exists with the stub's workflow as its Trusted Publisher; the environment of a GitHub job with
    `id-token: write` and HF_OIDC_RESOURCE, and no HF_TOKEN. Returns that environment."""
    from huggingface_hub import HfApi, constants

    HfApi(endpoint=hub.url, token=HUB_TOKEN).create_repo(REPO)  # a publisher is configured on an existing repo
    # hubpub switches huggingface_hub's implicit tokens off for the process; give later tests the setting back.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", constants.HF_HUB_DISABLE_IMPLICIT_TOKEN)
    hub.oidc.clock = clock
    hub.oidc.trust(REPO, github)
    env = {"GITHUB_ACTIONS": "true", **github.env(), "HF_OIDC_RESOURCE": REPO, "HF_ENDPOINT": hub.url}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def keyless(hub: HubServer, clock: Clock, emit: Callable[[Event], None]) -> Hub:
    """A client whose token is a Trusted Publisher's, on the test's clock; its events (renewals) go to `emit`."""
    publisher = TrustedPublisher(REPO, hub.url, clock=clock)
    return Hub(hub.url, publisher=publisher, sleep=clock.advance, clock=clock, emit=emit)


def run_push(manifest: Path, client: Hub, branch: str | None, on: Callable[[Event], None]) -> PushResult:
    """A push whose events go to `on` as they happen (a test's hook into the push's timeline)."""
    settings = PushSettings(branch=branch, cache=Path(os.environ["HUBPUB_CACHE"]))
    return push(load_manifest(manifest), client, settings, emit=on)


def cli(*args: str, manifest: Path) -> tuple[int, str, str]:
    done = hubpub(*args, "--manifest", str(manifest), cwd=manifest.parent, env=dict(os.environ))
    return done.returncode, done.stdout, done.stderr


def unauthorized(hub: HubServer) -> list[str]:
    return [r.path for r in hub.requests if r.status == 401]


def test_a_keyless_push_publishes_both_variants(weighed: Path, hub: HubServer, github: GitHubIdTokens,
                                                trusted: dict[str, str]) -> None:
    assert "HF_TOKEN" not in os.environ
    code, out, err = cli("push", "--all", manifest=weighed)
    assert code == 0, err
    assert "authenticated as [OIDC]" in err
    for branch in ("main", "gs128"):
        assert "model-00001-of-00004.safetensors" in hub.files(REPO, branch), branch
    assert hub.oidc.exchanges == ["granted"] and github.minted == [hub.url]  # the audience is the Hub
    assert not unauthorized(hub) and "hf_jwt_" not in out + err


def test_a_token_expiring_between_the_uploads_and_the_commit_is_exchanged_again_first(
    weighed: Path, hub: HubServer, github: GitHubIdTokens, trusted: dict[str, str], clock: Clock
) -> None:
    from huggingface_hub import HfApi

    events: list[Event] = []
    tokens: list[str | None] = []

    def an_hour_passes_once_uploaded(event: Event) -> None:
        events.append(event)
        if isinstance(event, Progress) and event.stage == "uploading" and event.done == event.total:
            tokens.append(client._token)
            clock.advance(HOUR + 1)  # the Hub now refuses that token

    client = keyless(hub, clock, an_hour_passes_once_uploaded)
    result = run_push(weighed, client, "main", an_hour_passes_once_uploaded)
    renewed = [e for e in events if isinstance(e, TokenRenewed)]
    assert [e.before for e in renewed] == [f"commit to {REPO}@main"]
    assert "has expired (it lasts 60 minutes and is not refreshed)" in renewed[0].text()
    assert result.variants[0].commit is not None and hub.commit_count(REPO, "main") == 2
    assert hub.oidc.grants() == 2 and len(github.minted) == 2
    assert not unauthorized(hub)  # renewed before the commit, not after a refusal
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=hub.url, token=tokens[0]).whoami()  # the commit would have been refused with it
    assert refused.value.response.status_code == 401


def test_a_token_the_hub_refuses_mid_push_is_exchanged_again_and_the_request_repeated(
    weighed: Path, hub: HubServer, trusted: dict[str, str]
) -> None:
    hub.oidc.expire_when("POST", r"/commit/main$")  # the hour runs out right as the commit is sent
    code, out, err = cli("push", "--branch", "main", manifest=weighed)
    assert code == 0, err
    assert unauthorized(hub) == [f"/api/models/{REPO}/commit/main"]  # refused once, then made with a new token
    assert hub.commit_count(REPO, "main") == 2 and hub.oidc.grants() == 2
    lines = [line for line in err.splitlines() if "exchanged a new one" in line]
    assert lines == [("the Trusted Publisher's Hub token was refused by the Hub (401) (it lasts 60 minutes and is not "
                      f"refreshed); exchanged a new one before trying to commit to {REPO}@main")]
    assert "hf_jwt_" not in out + err


@pytest.mark.parametrize(("after", "main_state"), [
    (Verified, "verified"),
    (Committed, "NOT verified"),  # the hour ran out between main's commit and its verification
])
def test_a_refused_re_exchange_names_what_landed(
    weighed: Path, hub: HubServer, trusted: dict[str, str], clock: Clock, after: type, main_state: str
) -> None:
    def an_hour_passes_after_main(event: Event) -> None:
        if isinstance(event, after) and getattr(event, "branch", None) == "main":
            clock.advance(HOUR)
            hub.oidc.publishers.clear()  # and the repo's Trusted Publisher was removed meanwhile

    client = keyless(hub, clock, an_hour_passes_after_main)

    with pytest.raises(TokenRenewalError) as raised:
        run_push(weighed, client, None, an_hour_passes_after_main)
    message = str(raised.value)
    assert "the Trusted Publisher's Hub token has expired" in message and "a new exchange failed" in message
    assert "invalid_grant" in message and "Trusted Publisher configured" in message  # what refused, what to do
    main = git_head(hub, "main")
    assert f"main: landed, commit {main[:12]} ({hub.url}/{REPO}/commit/{main}), {main_state}" in message
    assert ("gs128: no commit made" in message) == (after is Verified)
    assert ("gs128: not committed" in message) == (after is Committed)
    assert hub.commit_count(REPO, "main") == 2 and hub.commit_count(REPO, "gs128") == 1  # gs128 as created
    assert "hf_jwt_" not in message


def test_a_refused_re_exchange_through_the_cli_exits_1_naming_what_landed(
    weighed: Path, hub: HubServer, github: GitHubIdTokens, trusted: dict[str, str]
) -> None:
    github.budget = 1  # the login's ID token is the last GitHub hands out
    hub.oidc.expire_when("POST", r"/commit/gs128$")
    code, out, err = cli("push", "--all", manifest=weighed)
    assert code == 1, err
    assert "cannot commit to" in err and "GitHub did not issue an OIDC ID token (403" in err
    assert "main: landed, commit" in err and "gs128: no commit made" in err and "Traceback" not in err
    assert hub.commit_count(REPO, "main") == 2 and hub.commit_count(REPO, "gs128") == 1
    assert "hf_jwt_" not in out + err


def test_a_refused_first_exchange_is_a_failed_login(
    weighed: Path, hub: HubServer, trusted: dict[str, str]
) -> None:
    hub.oidc.publishers.clear()  # no Trusted Publisher configured for the repo
    hub.reset_records()
    code, _, err = cli("push", "--all", manifest=weighed)
    assert code == 2 and "Trusted Publisher login failed" in err and "invalid_grant" in err, err
    assert [r.path for r in hub.requests] == ["/oauth/token"]  # nothing but the exchange was asked
    assert hub.oidc.exchanges == ["refused: no publisher configured for this resource"]


def test_a_job_without_id_token_permission_fails_to_log_in(
    weighed: Path, hub: HubServer, github: GitHubIdTokens, trusted: dict[str, str]
) -> None:
    github.refuse = True
    code, _, err = cli("push", "--all", manifest=weighed)
    assert code == 2 and "GitHub did not issue an OIDC ID token (403" in err and "id-token: write" in err, err
    assert not hub.oidc.exchanges


def test_an_id_token_given_up_front_is_exchanged(
    weighed: Path, hub: HubServer, github: GitHubIdTokens, trusted: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GITHUB_ACTIONS", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_OIDC_ID_TOKEN", github.mint(hub.url))  # another CI minted it (GitLab's id_tokens)
    code, _, err = cli("push", "--branch", "gs128", manifest=weighed)
    assert code == 0, err
    assert hub.oidc.grants() == 1 and hub.commit_count(REPO, "gs128") == 2


def test_a_trusted_publisher_token_is_scoped_to_its_repository(hub: HubServer, trusted: dict[str, str]) -> None:
    client = Hub.from_environment()
    assert client.publisher is not None and client.publisher.resource == REPO
    client.require_write_token()
    with pytest.raises(AuthError, match="403"):
        client.ensure_repo("Minachist/another-model", private=False)


def test_scrub_hides_exchanged_tokens() -> None:
    token = "hf_jwt_" + "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl-_"
    assert token not in scrub(f"refused {token} at commit")


def git_head(hub: HubServer, branch: str) -> str:
    import git

    return git.Repo(hub.git_path(REPO)).commit(branch).hexsha


def test_an_empty_resource_falls_back_to_the_token(hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The workflow passes `${{ vars.HF_OIDC_RESOURCE }}`, empty when the variable is not set: the secret is used.
    monkeypatch.setenv("HF_OIDC_RESOURCE", "")
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    client = Hub.from_environment()
    assert client.publisher is None and client.require_write_token() == "tester"
