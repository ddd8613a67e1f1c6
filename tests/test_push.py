"""`hubpub plan` and `hubpub push` against the local Hub server, with the real huggingface_hub client."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest

from publish.commands.push import PushResult, PushSettings, plan, push
from publish.errors import AuthError, ChecksFailed, ConcurrentPushError, HubError, UnsafeFileError
from publish.events import Emit, ignore
from publish.hub.client import Hub
from publish.manifest.model import load_manifest

from .conftest import HUB_TOKEN, hubpub, hubpub_subprocess, point_manifest
from .hubserver import HubServer

REPO = "Minachist/Qwen3.6-27B-INT8-AutoRound"
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


class FakeClock:
    """Time that passes only when it is slept: each sleep is recorded and returns at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


def client(hub: HubServer, token: str | None = HUB_TOKEN, clock: FakeClock | None = None, emit: Emit = ignore) -> Hub:
    """A Hub client for the local server whose retries wait on `clock` (a fresh FakeClock: never for real)."""
    clock = clock or FakeClock()
    return Hub(hub.url, token, sleep=clock.sleep, clock=clock, emit=emit)


def settings(branch: str | None = None, **changes: object) -> PushSettings:
    """Push settings with the test's own hash cache."""
    changes.setdefault("cache", Path(os.environ["HUBPUB_CACHE"]))
    return PushSettings(branch=branch, **changes)  # type: ignore[arg-type]


def run_push(manifest: Path, hub: HubServer, branch: str | None = None, **changes: object) -> PushResult:
    return push(load_manifest(manifest), client(hub), settings(branch, **changes))


def expected_files(manifest: Path, folder: Path) -> dict[str, bytes]:
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for name in ("quantize.py", "log.txt"):
        files[name] = (manifest.parent / name).read_bytes()
    return files


def uploads(hub: HubServer) -> list[str]:
    return [r.path for r in hub.requests if r.method == "PUT" and r.path.startswith("/_lfs/")]


def commits(hub: HubServer) -> list[str]:
    return [r.path for r in hub.requests if r.method == "POST" and "/commit/" in r.path]


def hubpub_cli(*args: str, hub: HubServer, cwd: Path, token: str | None = HUB_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1"}
    env.pop("HF_TOKEN", None)
    if token:
        env["HF_TOKEN"] = token
    return hubpub(*args, cwd=cwd, env=env)


# -- the main path ------------------------------------------------------------------------------------------------


def test_each_branch_holds_exactly_its_own_files(weighed: Path, checkpoints: dict[str, Path], hub: HubServer) -> None:
    run_push(weighed, hub, "main")
    run_push(weighed, hub, "gs128")
    for branch in ("main", "gs128"):
        remote = hub.files(REPO, branch)
        readme = remote.pop("README.md").decode()
        remote.pop(".gitattributes")
        assert remote == expected_files(weighed, checkpoints[branch]), branch
        assert f"This README is on the **{branch}** branch" in readme
    # Each branch is one hubpub commit on top of the repository's first commit: gs128 never saw main's shards.
    assert hub.commit_count(REPO, "main") == 2 and hub.commit_count(REPO, "gs128") == 2
    repo = git.Repo(hub.git_path(REPO))
    assert repo.git.merge_base("main", "gs128") == repo.git.rev_list("--max-parents=0", "main")


def test_a_re_push_makes_no_commit_and_uploads_nothing(weighed: Path, hub: HubServer) -> None:
    run_push(weighed, hub, "main")
    hub.reset_records()
    again = run_push(weighed, hub, "main")
    assert again.variants[0].commit is None and "unchanged: nothing to commit" in again.variants[0].notes
    assert again.hashed_bytes == 0  # every hash came from the cache
    assert uploads(hub) == [] and commits(hub) == []
    assert hub.commit_count(REPO, "main") == 2


def test_a_readme_only_change_is_a_one_file_commit(weighed: Path, hub: HubServer) -> None:
    run_push(weighed, hub, "gs128")
    weighed.write_text(weighed.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", "title: Qwen3.6 27B INT8"))
    hub.reset_records()
    result = run_push(weighed, hub, "gs128")
    assert [(c.path, c.action) for c in result.variants[0].plan.uploads] == [("README.md", "update")]
    assert uploads(hub) == []
    changed = git.Repo(hub.git_path(REPO)).git.diff_tree("--no-commit-id", "--name-only", "-r", "gs128")
    assert changed.split() == ["README.md"]


def test_plan_shows_the_changes_and_sends_nothing(weighed: Path, hub: HubServer) -> None:
    result = plan(load_manifest(weighed), client(hub), settings("main"))
    table = result.variants[0].plan.format_table()
    assert "repository Minachist/Qwen3.6-27B-INT8-AutoRound will be created" in table
    assert "add       model-00001-of-00004.safetensors" in table and "README.md" in table
    assert not [r for r in hub.requests if r.method in ("POST", "PUT") and "/paths-info/" not in r.path]
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", "--dry-run", hub=hub, cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    assert "to upload" in done.stdout and not uploads(hub) and not commits(hub)
    planned = hubpub_cli("plan", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert planned.returncode == 0, planned.stderr
    assert "Minachist/Qwen3.6-27B-INT8-AutoRound@gs128 (new branch)" in planned.stdout
    assert not uploads(hub) and not commits(hub)


def test_stale_weights_are_deleted_and_other_files_kept_unless_pruned(weighed: Path, hub: HubServer) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi

    run_push(weighed, hub, "main")
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    api.create_commit(REPO, [CommitOperationAdd("model-00009-of-00009.safetensors", b"old shard"),
                             CommitOperationAdd("notes.md", b"hand-written notes")],
                      commit_message="by hand", revision="main")
    result = run_push(weighed, hub, "main")
    actions = {c.path: c.action for c in result.variants[0].plan.changes}
    assert actions["model-00009-of-00009.safetensors"] == "delete" and actions["notes.md"] == "keep"
    assert "notes.md" in hub.files(REPO, "main") and "model-00009-of-00009.safetensors" not in hub.files(REPO, "main")
    run_push(weighed, hub, "main", prune=True)
    assert "notes.md" not in hub.files(REPO, "main")


def test_push_tag_tags_each_variant_commit(weighed: Path, hub: HubServer) -> None:
    result = run_push(weighed, hub, None, tag="v1.0.0")
    refs = {t.name: t.target_commit for t in client(hub)._api.list_repo_refs(REPO).tags}
    assert refs == {f"v1.0.0-{v.branch}": v.commit.oid for v in result.variants if v.commit}
    assert set(refs) == {"v1.0.0-main", "v1.0.0-gs128"}


@pytest.mark.slow
def test_push_cli_prints_the_table_and_commit_url(weighed: Path, hub: HubServer) -> None:
    # End to end: the installed CLI in its own process.
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": HUB_TOKEN}
    done = hubpub_subprocess("push", "--manifest", str(weighed), "--branch", "gs128", cwd=weighed.parent, env=env)
    assert done.returncode == 0, done.stderr
    assert f"gs128: committed {hub.url}/{REPO}/commit/" in done.stdout
    assert "gs128: verified" in done.stderr
    again = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert "gs128: unchanged; no commit made" in again.stdout


def test_plan_and_push_share_their_options(tmp_path: Path) -> None:
    def options(command: str) -> dict[str, str]:
        text = hubpub(command, "--help", cwd=tmp_path).stdout
        return {line.split()[0]: " ".join(line.split()) for line in text.splitlines()
                if line.strip().startswith(("--prune", "--card-only", "--json", "-m,", "-q,", "-v,"))}

    shared = options("plan")
    assert set(shared) == {"--prune", "--card-only", "--json", "-m,", "-q,", "-v,"}
    assert {k: v for k, v in options("push").items() if k in shared} == shared


def test_commit_description_carries_provenance_and_checks(weighed: Path, hub: HubServer) -> None:
    run_push(weighed, hub, "main")
    message = git.Repo(hub.git_path(REPO)).git.log("-1", "--format=%B", "main")
    assert message.startswith("Publish main with hubpub")
    assert "Source: not in git" in message and "Checks: main: 0 errors, 0 warnings (local)" in message


# -- refusals -----------------------------------------------------------------------------------------------------


def only_the_token_check(hub: HubServer) -> bool:
    """The requests made are the up-front token check (whoami) and nothing else."""
    return {r.path for r in hub.requests} <= {"/api/whoami-v2"}


def test_failing_checks_stop_the_push_before_anything_is_created(
    project: Path, checkpoints: dict[str, Path], hub: HubServer, tmp_path: Path
) -> None:
    from .fixtures.checkpoints import build_checkpoint

    broken = build_checkpoint(tmp_path / "broken", "main", defect="missing-scale")
    manifest = point_manifest(project, {"main": broken, "gs128": checkpoints["gs128"]})
    with pytest.raises(ChecksFailed, match="nothing was sent"):
        run_push(manifest, hub, "main")
    assert only_the_token_check(hub)
    done = hubpub_cli("push", "--manifest", str(manifest), "--branch", "main", hub=hub, cwd=tmp_path)
    assert done.returncode == 1 and "T1" in done.stderr and only_the_token_check(hub)


@pytest.mark.parametrize("name", [".env", "server.pem", "hf_token"])
def test_secret_looking_files_are_refused(
    name: str, project: Path, checkpoints: dict[str, Path], hub: HubServer, tmp_path: Path
) -> None:
    folder = shutil.copytree(checkpoints["main"], tmp_path / "main")
    (folder / name).write_text("nothing to see\n")
    manifest = point_manifest(project, {"main": folder, "gs128": checkpoints["gs128"]})
    with pytest.raises(UnsafeFileError, match=name.replace(".", r"\.")):
        run_push(manifest, hub, "main")
    assert only_the_token_check(hub)


def test_a_symlink_out_of_the_folder_is_refused(
    project: Path, checkpoints: dict[str, Path], hub: HubServer, tmp_path: Path
) -> None:
    folder = shutil.copytree(checkpoints["main"], tmp_path / "main")
    (tmp_path / "elsewhere.txt").write_text("private\n")
    (folder / "extra.txt").symlink_to(tmp_path / "elsewhere.txt")
    manifest = point_manifest(project, {"main": folder, "gs128": checkpoints["gs128"]})
    done = hubpub_cli("push", "--manifest", str(manifest), "--branch", "main", hub=hub, cwd=tmp_path)
    assert done.returncode == 2 and "outside the variant's folder" in done.stderr
    assert not commits(hub)


def test_no_token_is_a_usage_error(weighed: Path, hub: HubServer) -> None:
    with pytest.raises(AuthError):
        push(load_manifest(weighed), client(hub, token=None), settings("main"))
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent, token=None)
    assert done.returncode == 2 and "HF_TOKEN" in done.stderr


def test_push_needs_exactly_one_of_branch_or_all(weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("push", "--manifest", str(weighed), hub=hub, cwd=weighed.parent)
    assert done.returncode == 2 and "--branch NAME or --all" in done.stderr


def test_a_concurrent_push_is_detected_not_overwritten(
    weighed: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import CommitOperationAdd, HfApi

    run_push(weighed, hub, "main")
    weighed.write_text(weighed.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", "title: Changed"))
    real_commit = Hub.commit

    def someone_else_first(self: Hub, *args: object, **kwargs: object) -> object:
        HfApi(endpoint=hub.url, token=HUB_TOKEN).create_commit(
            REPO, [CommitOperationAdd("other.txt", b"theirs")], commit_message="theirs", revision="main")
        return real_commit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Hub, "commit", someone_else_first)
    with pytest.raises(ConcurrentPushError, match="moved while pushing"):
        run_push(weighed, hub, "main")
    log = git.Repo(hub.git_path(REPO)).git.log("--format=%s", "main").splitlines()
    assert log[0] == "theirs" and len(log) == 3


@pytest.mark.slow
def test_a_no_op_push_of_checked_weights_does_not_import_torch(weighed: Path, hub: HubServer) -> None:
    first = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent)
    assert first.returncode == 0, first.stderr
    probe = (
        "import sys\n"
        "from publish.cli.main import main\n"
        f"sys.argv = ['hubpub', 'push', '--all', '--manifest', {str(weighed)!r}]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    code = done.code\n"
        "print('exit', code, 'heavy', sorted(m for m in ('torch', 'compressed_tensors') if m in sys.modules))\n"
    )
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": HUB_TOKEN}
    done = subprocess.run([sys.executable, "-c", probe], check=False, cwd=weighed.parent, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "exit 0 heavy []" in done.stdout, done.stdout + done.stderr
    assert "unchanged; no commit made" in done.stdout


def test_verification_fails_when_the_remote_headers_differ(
    weighed: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Hub.file_header

    def tampered(self: Hub, repo_id: str, filename: str, revision: str) -> object:
        header = real(self, repo_id, filename, revision)
        name = min(header.tensors)
        header.tensors[name] = dataclasses.replace(header.tensors[name], dtype="F32", shape=[1])
        return header

    monkeypatch.setattr(Hub, "file_header", tampered)
    with pytest.raises(HubError, match="remote safetensors header differs"):
        run_push(weighed, hub, "main")


def test_verification_fails_when_a_file_is_missing(
    weighed: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Hub.files_at

    def lossy(self: Hub, repo_id: str, revision: str) -> tuple:
        return tuple(f for f in real(self, repo_id, revision) if f.path != "config.json")

    monkeypatch.setattr(Hub, "files_at", lossy)
    with pytest.raises(HubError, match="config.json is missing"):
        run_push(weighed, hub, "main")


def test_a_failed_trusted_publisher_login_is_an_auth_error(weighed: Path, hub: HubServer) -> None:
    env = {"HF_OIDC_RESOURCE": "Minachist/Qwen3.6-27B-INT8-AutoRound", "HF_OIDC_ID_TOKEN": ""}
    done = hubpub("push", "--manifest", str(weighed), "--all", cwd=weighed.parent,
                  env={**os.environ, **env, "HF_ENDPOINT": hub.url})
    assert done.returncode == 2 and "Trusted Publisher login failed" in done.stderr
    assert "Traceback" not in done.stderr and not commits(hub)
