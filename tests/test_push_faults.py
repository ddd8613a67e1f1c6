"""Pushes under failure: transient errors are retried, a killed push resumes without re-uploading, and the
token never shows up anywhere (a canary token is grepped from every output)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import git
import pytest

from publish.commands.push import push
from publish.errors import HubError
from publish.events import Retrying
from publish.hub.client import Hub
from publish.hub.hashcache import HashCache
from publish.manifest.model import load_manifest
from publish.util.retry import RetryPolicy

from .conftest import HUB_TOKEN, hubpub
from .hubserver import HubServer
from .test_push import REPO, FakeClock, client, commits, run_push, settings, uploads

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
COMMIT = rf"^/api/models/{REPO}/commit/"


def test_a_5xx_on_the_commit_is_retried_and_lands_once(weighed: Path, hub: HubServer) -> None:
    hub.inject("POST", COMMIT, status=503, times=2)
    result = run_push(weighed, hub, "main")
    assert result.variants[0].commit is not None
    assert [r.status for r in hub.requests if r.method == "POST" and "/commit/" in r.path] == [503, 503, 200]
    assert hub.commit_count(REPO, "main") == 2


# Each kind of request a tagged first push of a new branch in a new repository makes, by method and path.
REQUESTS = {
    "whoami": ("GET", r"^/api/whoami-v2$"),
    "refs": ("GET", rf"^/api/models/{REPO}/refs$"),
    "create repo": ("POST", r"^/api/repos/create$"),
    "history": ("GET", rf"^/api/models/{REPO}/commits/"),
    "create branch": ("POST", rf"^/api/models/{REPO}/branch/"),
    "tree": ("GET", rf"^/api/models/{REPO}/tree/"),
    "preupload": ("POST", rf"^/api/models/{REPO}/preupload/"),
    "lfs batch": ("POST", r"/info/lfs/objects/batch$"),
    "lfs upload": ("PUT", r"^/_lfs/"),
    "lfs verify": ("POST", r"/info/lfs/verify$"),
    "validate-yaml": ("POST", r"^/api/validate-yaml$"),
    "commit": ("POST", COMMIT),
    "header read": ("GET", rf"^/{REPO}/resolve/"),
    "tag": ("POST", rf"^/api/models/{REPO}/tag/"),
}


@pytest.mark.parametrize("kind", REQUESTS)
def test_a_429_with_retry_after_on_any_request_is_waited_out(kind: str, weighed: Path, hub: HubServer) -> None:
    clock, events = FakeClock(), []
    hub.clock = clock  # the server stamps each request with the client's (fake) time
    method, path = REQUESTS[kind]
    hub.inject(method, path, status=429, retry_after=5)
    push(load_manifest(weighed), client(hub, clock=clock, emit=events.append), settings("gs128", tag="v1"))
    index = next(i for i, r in enumerate(hub.requests) if r.status == 429)
    refused = hub.requests[index]
    retried = next(r for r in hub.requests[index + 1:]
                   if (r.method, r.path, r.bytes_received) == (refused.method, refused.path, refused.bytes_received))
    assert retried.at - refused.at >= 5, (refused, retried)
    assert [e.wait for e in events if isinstance(e, Retrying)] == [5.0]
    assert hub.commit_count(REPO, "gs128") == 2 and "v1-gs128" in git.Repo(hub.git_path(REPO)).tags


def test_a_connection_dropped_mid_upload_is_retried(weighed: Path, hub: HubServer) -> None:
    hub.inject("PUT", r"^/_lfs/", drop=True)
    run_push(weighed, hub, "main")
    assert [r.status for r in hub.requests if r.path.startswith("/_lfs/")].count(0) == 1
    folder = load_manifest(weighed).variant_path(load_manifest(weighed).variant("main"))
    assert hub.files(REPO, "main")["model-00001-of-00004.safetensors"] == (
        folder / "model-00001-of-00004.safetensors").read_bytes()


def test_a_lost_commit_answer_does_not_commit_twice(weighed: Path, hub: HubServer) -> None:
    hub.inject("POST", COMMIT, drop_response=True)
    result = run_push(weighed, hub, "main")
    assert result.variants[0].commit is not None
    assert hub.commit_count(REPO, "main") == 2  # the commit landed once; its lost answer was recognised


def test_a_killed_push_resumes_without_re_uploading(weighed: Path, hub: HubServer) -> None:
    # The process "dies" after the LFS uploads, before its commit: every commit attempt fails.
    hub.inject("POST", COMMIT, status=500, times=10)
    with pytest.raises(HubError):
        run_push(weighed, hub, "main")
    assert hub.commit_count(REPO, "main") == 1  # the branch holds nothing half-updated: only the first commit
    first_uploads = len(uploads(hub))
    assert first_uploads == 5
    hub.reset_records()
    hub.clear_faults()
    result = run_push(weighed, hub, "main")
    assert result.variants[0].commit is not None
    assert uploads(hub) == []  # the objects were already on the server
    assert len(commits(hub)) == 1


@pytest.mark.slow
def test_a_subprocess_killed_mid_upload_leaves_the_branch_untouched_and_resumes(
    weighed: Path, hub: HubServer, tmp_path: Path
) -> None:
    # The process boundary is the point: a killed hubpub runs no cleanup, and the next push must not care.
    release = threading.Event()
    hub.inject("PUT", r"^/_lfs/", hold=release, times=100)  # uploads hang until released: killed meanwhile
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": HUB_TOKEN, "HF_HUB_DISABLE_XET": "1"}
    process = subprocess.Popen([sys.executable, "-m", "publish.cli", "push", "--manifest", str(weighed),
                                "--branch", "main"], env=env, cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Killed while the server holds its first LFS upload: waits on server state, not the clock.
        assert hub.faults_taken.wait(timeout=120), "the push never started uploading"
        process.kill()
        process.wait()
    finally:
        hub.clear_faults()
        release.set()
    assert not commits(hub) and hub.commit_count(REPO, "main") == 1
    hashed = HashCache(Path(os.environ["HUBPUB_CACHE"]))
    assert hashed.journal is not None and hashed.journal.is_file()  # what it hashed before dying is kept
    result = run_push(weighed, hub, "main")
    assert hub.commit_count(REPO, "main") == 2 and result.hashed_bytes < sum(
        c.size for c in result.variants[0].plan.uploads if c.path != "README.md")


# -- the canary token ---------------------------------------------------------------------------------------------

# Built from parts so that no token-shaped string is committed; at run time it has a real token's shape,
# so the scrubbing is exercised too.
CANARY = "hf_" + "Canary" * 4 + "0123456789"


def test_the_token_never_appears_in_any_output(weighed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Publish with a canary token, succeed and fail in every way we can provoke, grep everything for it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    outputs: list[str] = []
    with HubServer(tmp_path / "hub", token=CANARY) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": CANARY, "HF_HUB_DISABLE_XET": "1",
               "HUBPUB_DEBUG": ""}

        def cli(*args: str, token: str = CANARY) -> None:
            done = hubpub(*args, "--manifest", str(weighed), cwd=tmp_path, env={**env, "HF_TOKEN": token})
            outputs.extend([done.stdout, done.stderr])

        cli("plan", "--branch", "main")
        cli("push", "--branch", "main")
        cli("push", "--branch", "main")  # no-op
        hub.inject("POST", COMMIT, status=422)
        weighed.write_text(weighed.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", "title: Other"))
        cli("push", "--branch", "main")  # the Hub refuses the commit
        cli("push", "--branch", "gs128", token=CANARY + "x")  # refused token: the wrong one must not leak either
        hub.clear_faults()
        cli("check", "--remote", "--branch", "main")
        log = git.Repo(hub.git_path(REPO)).git.log("--all", "--format=%H %an %ae %s%n%b")
        outputs.append(log)
        recorded = repr(hub.requests)
    cache = Path(os.environ["HUBPUB_CACHE"])
    outputs.append(cache.read_text() if cache.exists() else "")
    outputs.append(recorded)
    everything = "\n".join(outputs)
    assert "verified" in everything and "cannot commit" in everything  # both paths ran
    assert CANARY not in everything
    assert "CanaryCanary" not in everything


def test_hub_errors_scrub_the_token_from_messages(hub: HubServer) -> None:
    hub.inject("GET", rf"^/api/models/{REPO}/refs", status=500, times=10)
    with pytest.raises(HubError) as caught:
        Hub(hub.url, HUB_TOKEN, policy=RetryPolicy(retries=1), sleep=lambda _: None).remote_state(REPO, "main")
    assert HUB_TOKEN not in str(caught.value) and HUB_TOKEN not in repr(caught.value)
