"""Release on tag, end to end: the workflow's shell steps run against the local Hub server, card-only.

The runner has the manifest, templates, quantize.py and log.txt but not the weights, which are already on the
Hub from an earlier push. A tag must check those weights remotely, publish only the cards and small files,
leave every weight byte alone, and tag each variant's new commit. Without a secret, the job's OIDC ID token
(a stub of GitHub's endpoint answers it) is exchanged for a Hub token; with HUBPUB_CREATE_PR, the tag opens
pull requests for review instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import git
import pytest
import yaml

from publish.commands.check import check
from publish.commands.push import push
from publish.hub.client import Hub
from publish.manifest.model import load_manifest

from . import ghactions
from .conftest import HUB_TOKEN, ROOT
from .hubserver import HubServer
from .hubserver.oidc import GitHubIdTokens

REPO = "Minachist/Qwen3.6-27B-INT8-AutoRound"
WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture
def published(weighed: Path, hub: HubServer, tmp_path: Path) -> Path:
    """Both variants pushed with their weights; returns a runner checkout whose manifest points at no weights."""
    push(load_manifest(weighed), Hub(hub.url, HUB_TOKEN))
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("quantize.py", "log.txt"):
        shutil.copy(weighed.parent / name, checkout / name)
    data = yaml.safe_load(weighed.read_text())
    for variant in data["variants"]:
        variant["path"] = f"../weights/{variant['branch']}"  # not on this runner
    data["title"] = "Qwen3.6-27B INT8 AutoRound (release)"
    (checkout / "branches.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return checkout / "branches.yaml"


def weights(hub: HubServer, branch: str) -> dict[str, bytes]:
    return {p: c for p, c in hub.files(REPO, branch).items() if p.endswith((".safetensors", ".json"))}


def hubpub_folder() -> Path:
    found = shutil.which("hubpub", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found is not None, "the `hubpub` command is not installed (pip install -e .)"
    return Path(found).parent


def run_release(checkout: Path, hub: HubServer, ref: str, *, secrets: Mapping[str, str] | None = None,
                variables: Mapping[str, str] | None = None, runner: Mapping[str, str] | None = None) -> ghactions.Run:
    """Run the workflow for a push of `ref`; by default with the HF_TOKEN secret and no repository variables.
    `runner` adds what the runner itself provides (the ID-token request variables of `id-token: write`)."""
    env = ghactions.runner_env({
        # The folder holding the installed `hubpub` command (where ever pip put it) leads the runner's PATH.
        "PATH": f"{hubpub_folder()}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REF": ref, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": os.environ["HF_HOME"],
        "HUBPUB_CACHE": os.environ["HUBPUB_CACHE"], "COMPRESSED_TENSORS_LOG_DISABLED": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1", **(runner or {}),
    })
    secrets = {"HF_TOKEN": HUB_TOKEN} if secrets is None else secrets
    return ghactions.run_workflow(WORKFLOW, "publish", env=env, secrets=secrets, variables=variables or {},
                                  workdir=checkout.parent, skip=("Install hubpub",))


@pytest.fixture
def github(hub: HubServer) -> Iterator[GitHubIdTokens]:
    """GitHub's ID-token endpoint for this repository's release workflow, trusted by the Hub repo."""
    with GitHubIdTokens(repository="acme/qwen-quants", ref="refs/tags/v1.0.0") as stub:
        hub.oidc.trust(REPO, stub, repository="acme/qwen-quants", workflow="publish.yml")
        yield stub


def test_check_remote_verifies_weights_that_are_only_on_the_hub(published: Path, hub: HubServer) -> None:
    report = check(load_manifest(published), hub=Hub(hub.url, HUB_TOKEN))
    assert report.ok, report.format_text()
    assert [v.source for v in report.variants] == ["remote", "remote"]
    assert report.variants[1].facts is not None and report.variants[1].facts.group_size == 128


def test_a_card_only_push_reuses_the_remote_check_until_the_branch_moves(
    published: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release's publish step after its check step: the Hub revisions are not read again (so no torch)."""
    from publish.checkpoint import remote
    from publish.commands.push import PushSettings

    settings = PushSettings(card_only=True, cache=tmp_path / "cache" / "hashes.json")
    assert check(load_manifest(published), hub=Hub(hub.url, HUB_TOKEN), cache=settings.report_cache()).ok
    read: list[str] = []
    real = remote.read_remote_checkpoint
    monkeypatch.setattr(remote, "read_remote_checkpoint",
                        lambda hub_, repo, revision, *rest: read.append(revision) or real(hub_, repo, revision, *rest))
    first = push(load_manifest(published), Hub(hub.url, HUB_TOKEN), settings)
    assert read == [] and [v.commit is not None for v in first.variants] == [True, True]
    # Both branches moved (the new cards): their new commits were never checked, so they are read again.
    push(load_manifest(published), Hub(hub.url, HUB_TOKEN), settings)
    assert read == ["main", "gs128"]


def test_check_remote_finds_defects_in_hub_weights(
    project: Path, checkpoints: dict[str, Path], hub: HubServer, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi

    from .fixtures.checkpoints import build_checkpoint

    broken = build_checkpoint(tmp_path / "broken", "main", defect="mtp-not-ignored")
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    api.create_repo(REPO)
    api.upload_folder(repo_id=REPO, folder_path=broken, revision="main")
    data = yaml.safe_load(project.read_text())
    size = sum(p.stat().st_size for p in broken.glob("*.safetensors"))
    data["variants"][0].update(path=str(tmp_path / "absent"), size_gb=float(f"{size / 1e9:.3g}"))
    project.write_text(yaml.safe_dump(data, sort_keys=False))
    report = check(load_manifest(project), "main", hub=Hub(hub.url, HUB_TOKEN))
    assert not report.ok and any(f.code == "K1" and f.subject == "mtp.fc" for f in report.variants[0].findings)


@pytest.mark.slow
def test_a_tag_publishes_cards_only_and_tags_both_revisions(published: Path, hub: HubServer) -> None:
    before = {b: weights(hub, b) for b in ("main", "gs128")}
    lfs_before = hub.lfs_objects()
    hub.reset_records()
    run = run_release(published, hub, "refs/tags/v1.0.0")
    print(run.output)  # the closing note quotes this run
    assert run.ok, run.output
    assert [s.name for s in run.steps if s.skipped] == ["actions/checkout@v5", "actions/setup-python@v6",
                                                        "Install hubpub"]
    repo = git.Repo(hub.git_path(REPO))
    for branch in ("main", "gs128"):
        assert weights(hub, branch) == before[branch], branch  # not one weight byte touched
        changed = repo.git.diff_tree("--no-commit-id", "--name-only", "-r", branch).split()
        assert changed == ["README.md"], branch
        assert "(release)" in hub.files(REPO, branch)["README.md"].decode()
    assert hub.lfs_objects() == lfs_before
    assert not [r for r in hub.requests if r.path.startswith("/_lfs/")]
    tags = {t.name: t.target_commit for t in Hub(hub.url, HUB_TOKEN)._api.list_repo_refs(REPO).tags}
    assert tags == {"v1.0.0-main": repo.commit("main").hexsha, "v1.0.0-gs128": repo.commit("gs128").hexsha}
    assert "card-only: the weights on the Hub revision were checked" in run.output and HUB_TOKEN not in run.output


@pytest.mark.slow
def test_a_branch_tag_publishes_that_variant_only(published: Path, hub: HubServer) -> None:
    main_head = git.Repo(hub.git_path(REPO)).commit("main").hexsha
    run = run_release(published, hub, "refs/tags/gs128/v1.1.0")
    assert run.ok, run.output
    assert "branches: gs128; release: v1.1.0" in run.output
    repo = git.Repo(hub.git_path(REPO))
    assert repo.commit("main").hexsha == main_head
    tags = {t.name for t in Hub(hub.url, HUB_TOKEN)._api.list_repo_refs(REPO).tags}
    assert tags == {"v1.1.0-gs128"}


@pytest.mark.slow
def test_a_failing_remote_check_stops_the_release(published: Path, hub: HubServer) -> None:
    data = yaml.safe_load(published.read_text())
    data["variants"][1]["symmetric"] = False
    published.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    heads = {b: git.Repo(hub.git_path(REPO)).commit(b).hexsha for b in ("main", "gs128")}
    run = run_release(published, hub, "refs/tags/v2.0.0")
    assert not run.ok and run.steps[-1].name == "Check every variant", run.output
    assert "C3" in run.output
    assert {b: git.Repo(hub.git_path(REPO)).commit(b).hexsha for b in heads} == heads


@pytest.mark.slow
def test_a_keyless_release_publishes_both_variants_and_survives_the_token_expiring(
    published: Path, hub: HubServer, github: GitHubIdTokens
) -> None:
    before = {b: weights(hub, b) for b in ("main", "gs128")}
    hub.reset_records()
    hub.oidc.expire_when("POST", r"/commit/main$")  # the hour runs out after the uploads, as the commit is sent
    run = run_release(published, hub, "refs/tags/v1.0.0", secrets={},  # no HF_TOKEN secret at all
                      variables={"HF_OIDC_RESOURCE": REPO}, runner=github.env())
    assert run.ok, run.output
    repo = git.Repo(hub.git_path(REPO))
    for branch in ("main", "gs128"):
        assert weights(hub, branch) == before[branch], branch
        assert "(release)" in hub.files(REPO, branch)["README.md"].decode()
    tags = {t.name: t.target_commit for t in Hub(hub.url, HUB_TOKEN)._api.list_repo_refs(REPO).tags}
    assert tags == {"v1.0.0-main": repo.commit("main").hexsha, "v1.0.0-gs128": repo.commit("gs128").hexsha}
    # One exchange for the check step, one for the publish step, one more after the Hub refused the expired token.
    assert hub.oidc.exchanges == ["granted"] * 3 and github.minted == [hub.url] * 3
    assert [r.path for r in hub.requests if r.status == 401] == [f"/api/models/{REPO}/commit/main"]
    assert "exchanged a new one before trying to commit to" in run.output and "authenticated as [OIDC]" in run.output
    assert HUB_TOKEN not in run.output and "hf_jwt_" not in run.output


@pytest.mark.slow
def test_a_keyless_release_without_a_trusted_publisher_fails_clearly(
    published: Path, hub: HubServer, github: GitHubIdTokens
) -> None:
    hub.oidc.publishers.clear()
    heads = {b: git.Repo(hub.git_path(REPO)).commit(b).hexsha for b in ("main", "gs128")}
    run = run_release(published, hub, "refs/tags/v1.0.0", secrets={}, variables={"HF_OIDC_RESOURCE": REPO},
                      runner=github.env())
    assert not run.ok and run.steps[-1].name == "Check every variant", run.output
    assert "Trusted Publisher login failed" in run.output and "Traceback" not in run.output
    assert {b: git.Repo(hub.git_path(REPO)).commit(b).hexsha for b in heads} == heads


@pytest.mark.slow
def test_a_release_for_review_opens_pull_requests_and_no_tags(published: Path, hub: HubServer) -> None:
    heads = {b: git.Repo(hub.git_path(REPO)).commit(b).hexsha for b in ("main", "gs128")}
    variables = {"HUBPUB_CREATE_PR": "true"}
    run = run_release(published, hub, "refs/tags/v1.0.0", variables=variables)
    assert run.ok, run.output
    assert {b: git.Repo(hub.git_path(REPO)).commit(b).hexsha for b in heads} == heads  # no branch moved
    pulls = hub.pulls.listing(REPO, kind="pull_request", status="open", author=None)
    assert sorted(p["base"] for p in pulls) == ["gs128", "main"]
    for pull in pulls:
        assert f"opened pull request #{pull['num']} against {pull['base']}" in run.output
        assert "(release)" in hub.files(REPO, f"refs/pr/{pull['num']}")["README.md"].decode()
    assert not Hub(hub.url, HUB_TOKEN)._api.list_repo_refs(REPO).tags
    assert "create-pr: no Hub tag now; merge the pull requests, then: hubpub push --all --tag v1.0.0" in run.output
    again = run_release(published, hub, "refs/tags/v1.0.0", variables=variables)  # the job re-run
    assert again.ok, again.output
    assert len(hub.pulls.listing(REPO, kind="pull_request", status="open", author=None)) == 2
    assert "already holds these changes" in again.output
