"""`hubpub push --create-pr` and `hubpub plan --create-pr`: release through review, on the local Hub's refs/pr/N.

Each changed variant's single commit opens a Hub pull request against its branch; the branch stays where it was.
The checks, plan, provenance and verification are those of a direct push, and verification reads refs/pr/N. A
re-run of the same push finds the pull request its push id opened and opens no second one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import git
import pytest

from publish.commands.push import PushResult, PushSettings, push
from publish.errors import UsageError
from publish.hub.client import Hub
from publish.manifest.model import load_manifest

from .conftest import HUB_TOKEN, hubpub, point_manifest
from .hubserver import HubServer
from .test_push import FakeClock

REPO = "Minachist/Qwen3.6-27B-INT8-AutoRound"
NEW_TITLE = "title: Qwen3.6 27B INT8 (reviewed)"
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def run_push(manifest: Path, hub: HubServer, branch: str | None = None, **changes: object) -> PushResult:
    clock = FakeClock()  # retries wait on it, never for real
    settings = PushSettings(branch=branch, cache=Path(os.environ["HUBPUB_CACHE"]), **changes)  # type: ignore[arg-type]
    return push(load_manifest(manifest), Hub(hub.url, HUB_TOKEN, sleep=clock.sleep, clock=clock), settings)


def cli(*args: str, hub: HubServer, manifest: Path) -> tuple[int, str, str]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": HUB_TOKEN}
    done = hubpub(*args, "--manifest", str(manifest), cwd=manifest.parent, env=env)
    return done.returncode, done.stdout, done.stderr


def heads(hub: HubServer) -> dict[str, str]:
    repo = git.Repo(hub.git_path(REPO))
    return {b: repo.commit(b).hexsha for b in ("main", "gs128")}


def open_pulls(hub: HubServer) -> list[dict]:
    return hub.pulls.listing(REPO, kind="pull_request", status="open", author=None)


def retitle(manifest: Path) -> None:
    """A change both cards show (the title is in every README), weights untouched."""
    manifest.write_text(manifest.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", NEW_TITLE))


@pytest.fixture
def published(weighed: Path, hub: HubServer) -> Path:
    """Both variants on their branches, then a manifest change waiting for review."""
    run_push(weighed, hub)
    retitle(weighed)
    return weighed


def test_each_changed_variant_gets_one_verified_pull_request_and_no_branch_moves(
    published: Path, hub: HubServer
) -> None:
    before = heads(hub)
    hub.reset_records()
    code, out, err = cli("push", "--all", "--create-pr", hub=hub, manifest=published)
    assert code == 0, err
    assert heads(hub) == before  # every branch untouched
    pulls = {p["base"]: p for p in open_pulls(hub)}
    assert set(pulls) == {"main", "gs128"}
    for branch, pull in pulls.items():
        url = f"{hub.url}/{REPO}/discussions/{pull['num']}"
        assert f"{branch}: opened pull request #{pull['num']} against {branch}: {url}" in out
        files = hub.files(REPO, f"refs/pr/{pull['num']}")
        assert "(reviewed)" in files["README.md"].decode()
        assert {p: c for p, c in files.items() if p != "README.md"} == {
            p: c for p, c in hub.files(REPO, branch).items() if p != "README.md"}  # the weights as they were
        message = git.Repo(hub.git_path(REPO)).git.log("-1", "--format=%B", f"refs/pr/{pull['num']}")
        assert "Checks: " in message and "hubpub-push-id: " in message  # the same provenance as a direct push
        # Verification read the pull request's revision.
        assert any(r.path.endswith(f"/tree/refs/pr/{pull['num']}") for r in hub.requests), branch
        assert f"{branch}: verified" in err


def test_a_re_run_with_nothing_new_opens_no_second_pull_request(published: Path, hub: HubServer) -> None:
    first = run_push(published, hub, create_pr=True)
    numbers = {v.branch: v.commit.pull_request.num for v in first.variants if v.commit and v.commit.pull_request}
    hub.reset_records()
    code, out, err = cli("push", "--all", "--create-pr", "--json", hub=hub, manifest=published)
    assert code == 0, err
    report = json.loads(out)
    assert {v["branch"]: v["pull_request"]["num"] for v in report["variants"]} == numbers
    assert all(v["pull_request"]["new"] is False and v["verified"] for v in report["variants"])
    assert len(open_pulls(hub)) == 2
    assert not [r for r in hub.requests if r.method == "POST" and "/commit/" in r.path]
    assert not [r for r in hub.requests if r.method == "PUT"]
    assert "already holds these changes" in err


def test_only_changed_variants_get_a_pull_request(
    weighed: Path, checkpoints: dict[str, Path], hub: HubServer, tmp_path: Path
) -> None:
    folder = shutil.copytree(checkpoints["gs128"], tmp_path / "gs128")
    manifest = point_manifest(weighed, {"gs128": folder})
    run_push(manifest, hub)
    (folder / "NOTICE").write_text("Quantized with AutoRound.\n")  # a change to gs128 only
    result = run_push(manifest, hub, create_pr=True)
    assert [(v.branch, v.commit is not None) for v in result.variants] == [("main", False), ("gs128", True)]
    assert [p["base"] for p in open_pulls(hub)] == ["gs128"]
    assert "NOTICE" in hub.files(REPO, "refs/pr/1") and "NOTICE" not in hub.files(REPO, "gs128")


def test_plan_create_pr_shows_each_pull_request_and_the_one_already_open(published: Path, hub: HubServer) -> None:
    hub.reset_records()
    code, out, err = cli("plan", "--create-pr", hub=hub, manifest=published)
    assert code == 0, err
    assert "update    README.md" in out
    assert "main: push --create-pr opens a pull request against main with these changes" in err
    assert not open_pulls(hub) and not [r for r in hub.requests if r.method == "PUT" or "/commit/" in r.path]
    run_push(published, hub, "gs128", create_pr=True)
    code, out, err = cli("plan", "--branch", "gs128", "--create-pr", "--json", hub=hub, manifest=published)
    report = json.loads(out)
    assert report["variants"][0]["pull_request"] == {"num": 1, "url": f"{hub.url}/{REPO}/discussions/1",
                                                     "revision": "refs/pr/1", "new": False}
    assert len(open_pulls(hub)) == 1


def test_tag_with_create_pr_is_refused(published: Path, hub: HubServer) -> None:
    hub.reset_records()
    code, _, err = cli("push", "--all", "--create-pr", "--tag", "v1.0.0", hub=hub, manifest=published)
    assert code == 2 and "--tag and --create-pr" in err and "merge the pull requests" in err
    with pytest.raises(UsageError, match="--tag and --create-pr"):
        PushSettings(tag="v1.0.0", create_pr=True)
    assert not hub.requests


def test_after_merging_a_re_run_is_unchanged_and_tags_the_merged_heads(published: Path, hub: HubServer) -> None:
    from huggingface_hub import HfApi

    run_push(published, hub, create_pr=True)
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    for pull in open_pulls(hub):
        api.merge_pull_request(REPO, pull["num"])
    merged = heads(hub)
    again = run_push(published, hub, create_pr=True)
    assert all(v.commit is None for v in again.variants) and not open_pulls(hub)
    run_push(published, hub, tag="v1.1.0")
    tags = {t.name: t.target_commit for t in api.list_repo_refs(REPO).tags}
    assert tags == {"v1.1.0-main": merged["main"], "v1.1.0-gs128": merged["gs128"]}


def test_a_new_change_while_a_pull_request_is_open_opens_another(published: Path, hub: HubServer) -> None:
    run_push(published, hub, "gs128", create_pr=True)
    published.write_text(published.read_text().replace(NEW_TITLE, "title: Qwen3.6 27B INT8 (reviewed twice)"))
    result = run_push(published, hub, "gs128", create_pr=True)
    assert result.variants[0].commit is not None and result.variants[0].commit.pull_request is not None
    assert result.variants[0].commit.pull_request.num == 2 and len(open_pulls(hub)) == 2


def test_a_pull_request_whose_answer_was_lost_is_found_not_opened_twice(published: Path, hub: HubServer) -> None:
    hub.inject("POST", r"/commit/gs128$", drop_response=True)
    result = run_push(published, hub, "gs128", create_pr=True)
    assert hub.faults_taken.is_set()
    assert [p["base"] for p in open_pulls(hub)] == ["gs128"]
    assert result.variants[0].commit is not None and result.variants[0].commit.pull_request is not None
    assert result.variants[0].commit.pull_request.revision == "refs/pr/1"


def test_a_first_release_by_review_creates_empty_branches_to_merge_into(weighed: Path, hub: HubServer) -> None:
    result = run_push(weighed, hub, create_pr=True)
    assert [v.commit.pull_request.num for v in result.variants if v.commit and v.commit.pull_request] == [1, 2]
    for branch in ("main", "gs128"):
        assert set(hub.files(REPO, branch)) == {".gitattributes"}  # nothing reaches users before the merge
    assert "model-00001-of-00004.safetensors" in hub.files(REPO, "refs/pr/1")
