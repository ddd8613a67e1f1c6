"""What `hubpub push` and `hubpub plan` leave behind and print: the published cards in cards/, one line for the
unchanged files of a branch, and a hash-cache claim only when it is true."""

from __future__ import annotations

import socket
from pathlib import Path

import git
import pytest

from publish.hub.client import Hub

from .conftest import HUB_TOKEN, hubpub
from .hubserver import HubServer
from .test_push import REPO, FakeClock, hubpub_cli

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def test_push_leaves_the_published_cards_so_render_check_passes(weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    for branch in ("main", "gs128"):
        card = weighed.parent / "cards" / branch / "README.md"
        assert f"{branch}: card saved to {card}" in done.stderr.splitlines()
        assert card.read_bytes() == hub.files(REPO, branch)["README.md"]  # the text that was committed
    checked = hubpub("render", "--check", "--manifest", str(weighed), cwd=weighed.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_no_op_push_says_one_line_per_branch_and_v_lists_the_files(weighed: Path, hub: HubServer) -> None:
    first = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert first.returncode == 0, first.stderr
    count = len(hub.files(REPO, "gs128")) - 1  # .gitattributes is not hubpub's
    again = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert again.returncode == 0, again.stderr
    assert f"gs128: {count} files unchanged (-v lists them)" in again.stdout.splitlines()
    assert "  unchanged config.json" not in again.stdout
    verbose = hubpub_cli("push", "-v", "--manifest", str(weighed), "--branch", "gs128", hub=hub,
                         cwd=weighed.parent)
    assert verbose.returncode == 0, verbose.stderr
    assert sum(line.startswith("  unchanged ") for line in verbose.stdout.splitlines()) == count


def test_a_changed_card_lists_the_change_and_collapses_the_rest(weighed: Path, hub: HubServer) -> None:
    hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    count = len(hub.files(REPO, "gs128")) - 2  # neither .gitattributes nor the README
    weighed.write_text(weighed.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", "title: Qwen3.6 27B INT8"))
    planned = hubpub_cli("plan", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert any(line.split() == ["update", "README.md", *line.split()[2:]] for line in lines)
    assert f"  unchanged {count} files (-v lists them)" in lines


def test_the_hash_cache_is_mentioned_only_when_it_answered(weighed: Path, hub: HubServer) -> None:
    first_plan = hubpub_cli("plan", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert first_plan.returncode == 0, first_plan.stderr
    assert "hash cache" not in first_plan.stderr  # nothing on the Hub to compare: nothing hashed, nothing cached
    pushed = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert pushed.returncode == 0, pushed.stderr
    hashed = [line for line in pushed.stderr.splitlines() if line.startswith("hashed ")]
    assert len(hashed) == 1 and "hash cache" not in hashed[0]  # a first push hashes everything
    again = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert "hashed nothing: every digest came from the hash cache" in again.stderr.splitlines()


# -- token errors say which problem it is ---------------------------------------------------------------------


def test_an_invalid_token_and_a_read_only_token_get_different_messages(weighed: Path, hub: HubServer) -> None:
    wrong = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent, token=HUB_TOKEN + "x")
    assert wrong.returncode == 2, wrong.stderr
    lines = wrong.stderr.splitlines()
    assert lines[0].startswith("error: cannot check the token (whoami): the Hub refused the token (401)")
    assert lines[1] == ("  hint: the token is invalid, expired or revoked: create one at "
                        "https://huggingface.co/settings/tokens and set HF_TOKEN (or run `hf auth login`)")
    hub.token_role = "read"
    read_only = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent)
    assert read_only.returncode == 2, read_only.stderr
    assert read_only.stderr.splitlines()[:2] == [
        "error: the token (hubserver) of tester is valid but read-only: it may not create or push to repositories",
        ("  hint: create a token with write access at https://huggingface.co/settings/tokens (a fine-grained token "
         "needs write access to this repository), then set HF_TOKEN"),
    ]


def test_a_fine_grained_token_without_repo_write_is_read_only() -> None:
    from publish.hub.auth import may_write

    assert not may_write({"role": "fineGrained", "fineGrained": {"global": [], "scoped": [
        {"entity": {"type": "user"}, "permissions": ["repo.content.read"]}]}})
    assert may_write({"role": "fineGrained", "fineGrained": {"global": [], "scoped": [
        {"entity": {"type": "user"}, "permissions": ["repo.content.read", "repo.write"]}]}})
    assert may_write({"role": "write"}) and not may_write({"role": "read"})


def test_plan_with_a_wrong_token_fails_instead_of_planning_a_new_repository(weighed: Path, hub: HubServer) -> None:
    hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    done = hubpub_cli("plan", "--manifest", str(weighed), hub=hub, cwd=weighed.parent, token=HUB_TOKEN + "x")
    assert done.returncode == 2, done.stderr
    assert "the Hub refused the token (401)" in done.stderr.splitlines()[0]
    assert "will be created" not in done.stdout


def test_plan_without_a_token_warns_that_it_reads_anonymously(weighed: Path, hub: HubServer) -> None:
    hub.token = None  # a Hub that serves public repositories without a token
    done = hubpub_cli("plan", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent, token=None)
    assert done.returncode == 0, done.stderr
    assert ("warning: no Hub token (HF_TOKEN or `hf auth login`): planning with anonymous access, so a private "
            "repository looks absent") in done.stderr.splitlines()


# -- an endpoint that refuses the connection ----------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_fails_after_one_short_wait_naming_hf_endpoint(
        weighed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, clock = f"http://127.0.0.1:{closed_port()}", FakeClock()
    monkeypatch.setattr(Hub, "from_environment", classmethod(
        lambda cls, emit: Hub(endpoint, HUB_TOKEN, sleep=clock.sleep, clock=clock, emit=emit)))
    done = hubpub("push", "--manifest", str(weighed), "--all", cwd=weighed.parent)
    assert done.returncode == 1, done.stderr
    assert len(clock.sleeps) == 1 and sum(clock.sleeps) < 5  # one short wait, not five doubling ones (31 s)
    lines = done.stderr.splitlines()
    assert lines[0].startswith("retrying in ") and lines[0].endswith(
        " s (1/1): ConnectError talking to 127.0.0.1 while trying to check the token (whoami)")
    assert lines[1].startswith(f"error: cannot check the token (whoami): no answer from {endpoint} (ConnectError")
    assert lines[2] == f"  hint: is {endpoint} reachable? set HF_ENDPOINT to a Hub, or unset it"


# -- a commit that landed but did not verify -----------------------------------------------------------------------


def test_a_landed_commit_that_cannot_be_read_back_is_named_then_verified_by_the_next_push(
        weighed: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(Hub, "from_environment", classmethod(
        lambda cls, emit: Hub(hub.url, HUB_TOKEN, sleep=clock.sleep, clock=clock, emit=emit)))
    hub.inject("GET", rf"^/{REPO}/resolve/", status=502, times=100)  # reading headers back fails, for good
    failed = hubpub("push", "--manifest", str(weighed), "--branch", "gs128", cwd=weighed.parent)
    assert failed.returncode == 1, failed.stderr
    commit = git.Repo(hub.git_path(REPO)).commit("gs128").hexsha
    url = f"{hub.url}/{REPO}/commit/{commit}"
    error = next(line for line in failed.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith(f"error: gs128: commit {commit[:12]} is on the branch ({url}) but is not verified yet: ")
    assert ("  hint: push again later (`hubpub push --branch gs128`): it verifies that commit first and uploads "
            "nothing twice") in failed.stderr.splitlines()
    assert "nothing was overwritten" not in failed.stderr
    hub.clear_faults()
    hub.reset_records()
    again = hubpub("push", "--manifest", str(weighed), "--branch", "gs128", cwd=weighed.parent)
    assert again.returncode == 0, again.stderr
    assert (f"gs128: unchanged, verified {commit[:12]} (an earlier push left it unverified)"
            in again.stdout.splitlines())
    assert [r.path for r in hub.requests if r.path.startswith(f"/{REPO}/resolve/")]  # its headers were read
    assert not [r for r in hub.requests if r.method == "POST" and "/commit/" in r.path]
    third = hubpub("push", "--manifest", str(weighed), "--branch", "gs128", cwd=weighed.parent)
    assert "gs128: unchanged; no commit made" in third.stdout.splitlines()  # verified once is enough


def test_a_push_of_one_branch_takes_the_other_branches_facts_from_their_weights(
        weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    rendered = hubpub("render", "--out", str(weighed.parent / "rendered"), "--manifest", str(weighed),
                      cwd=weighed.parent)
    assert rendered.returncode == 0, rendered.stderr
    assert (weighed.parent / "rendered" / "gs128" / "README.md").read_bytes() == hub.files(REPO, "gs128")["README.md"]
    checked = hubpub("render", "--check", "--branch", "gs128", "--manifest", str(weighed), cwd=weighed.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
