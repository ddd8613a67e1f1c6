"""The local Hub server (tests/hubserver) against the real huggingface_hub 2.4.0 client, over 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import git
import pytest

from tests.conftest import HUB_TOKEN as TOKEN
from tests.hubserver import HubServer

REPO = "org/model"
BIG = 10 * 1024 * 1024 + 1  # one byte over the Hub's limit for regular files
ROOT = Path(__file__).resolve().parents[1]
# The 2.4.0 client itself passes raw bytes as `data=` to httpx2 for LFS PUTs; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture
def api(hub: HubServer):
    """The real client, with the endpoint passed explicitly (HF_ENDPOINT is only read at import)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=TOKEN)


def add(path: str, content: bytes):
    """A CommitOperationAdd from bytes."""
    from huggingface_hub import CommitOperationAdd

    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=content)


def tiny_safetensors(tmp_path: Path) -> bytes:
    """A real two-tensor .safetensors file."""
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "tiny.safetensors"
    save_file({"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(4, dtype=np.int8)}, str(path))
    return path.read_bytes()


def puts(hub: HubServer) -> list:
    """The LFS uploads (PUTs of content) the server received."""
    return [r for r in hub.requests if r.method == "PUT"]


def test_create_repo_is_a_bare_git_repo_and_exist_ok_works(hub: HubServer, api) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    url = api.create_repo(REPO, private=True)
    assert url == f"{hub.url}/{REPO}"
    assert api.create_repo(REPO, exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_repo(REPO)
    assert raised.value.response.status_code == 409
    assert api.model_info(REPO).private is True
    repo = git.Repo(hub.git_path(REPO))
    assert repo.bare
    assert [c.summary for c in repo.iter_commits("main")] == ["initial commit"]
    assert "*.safetensors filter=lfs" in hub.files(REPO)[".gitattributes"].decode()
    assert api.repo_exists(REPO) and not api.repo_exists("org/missing")


def test_commit_on_a_new_branch_with_regular_and_lfs_files(hub: HubServer, api, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils.sha import git_hash

    api.create_repo(REPO)
    main_head = api.list_repo_refs(REPO).branches[0].target_commit
    api.create_branch(REPO, branch="gs/128")
    api.create_branch(REPO, branch="gs/128", exist_ok=True)
    big, weights = b"a" * BIG, tiny_safetensors(tmp_path)
    files = {
        "README.md": b"---\nlicense: mit\nbase_model_relation: quantized\n---\n# card\n",
        "notes/big.txt": big,  # LFS by size alone: text, and no .gitattributes pattern matches
        "model.safetensors": weights,  # LFS by the .gitattributes pattern
        "blob.dat": b"\x00\x01binary",  # LFS because it looks binary (a NUL byte)
    }
    info = api.create_commit(REPO, [add(p, c) for p, c in files.items()], commit_message="Add gs128",
                             commit_description="quantized", revision="gs/128")

    assert info.commit_url == f"{hub.url}/{REPO}/commit/{info.oid}"
    assert {b.name: b.target_commit for b in api.list_repo_refs(REPO).branches} == {"main": main_head,
                                                                                   "gs/128": info.oid}
    tree = {f.path: f for f in api.list_repo_tree(REPO, revision="gs/128", recursive=True)}
    assert tree["notes"].tree_id  # a RepoFolder
    assert tree["notes/big.txt"].size == BIG and tree["notes/big.txt"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert tree["model.safetensors"].lfs.size == len(weights)
    assert tree["blob.dat"].lfs is not None and tree["README.md"].lfs is None
    [readme, big_info] = api.get_paths_info(REPO, ["README.md", "notes/big.txt", "absent"], revision="gs/128")
    assert readme.blob_id == git_hash(files["README.md"])  # what the client compares a regular file against
    assert (big_info.size, big_info.lfs.sha256) == (BIG, hashlib.sha256(big).hexdigest())
    assert hub.files(REPO, "gs/128") == {**files, ".gitattributes": hub.files(REPO)[".gitattributes"]}
    assert hub.lfs_objects() == {hashlib.sha256(files[p]).hexdigest() for p in ("notes/big.txt",
                                                                                 "model.safetensors", "blob.dat")}

    path = hf_hub_download(REPO, "notes/big.txt", revision="gs/128", endpoint=hub.url, token=TOKEN)
    assert Path(path).read_bytes() == big
    meta = api.get_safetensors_metadata(REPO, revision="gs/128")
    tensors = meta.files_metadata["model.safetensors"].tensors
    assert (tensors["w"].dtype, tensors["w"].shape, tensors["b"].dtype) == ("F32", [3, 4], "I8")
    assert any(r.status == 206 for r in hub.requests if "/resolve/" in r.path)  # read by Range, not whole

    siblings = {s.rfilename: s for s in api.model_info(REPO, revision="gs/128", files_metadata=True).siblings}
    assert siblings["notes/big.txt"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert siblings["notes/big.txt"].size == BIG
    assert api.model_info(REPO).sha == main_head  # main did not move
    assert [c.title for c in api.list_repo_commits(REPO, revision="gs/128")] == ["Add gs128", "initial commit"]


def test_git_history_and_lfs_pointers_are_real_git(hub: HubServer, api, tmp_path: Path) -> None:
    api.create_repo(REPO)
    api.create_branch(REPO, branch="gs128")
    weights = tiny_safetensors(tmp_path)
    api.create_commit(REPO, [add("model.safetensors", weights)], commit_message="one", revision="gs128")
    api.create_commit(REPO, [add("README.md", b"hi\n")], commit_message="two", commit_description="body",
                      revision="gs128")
    repo = git.Repo(hub.git_path(REPO))
    assert [c.summary for c in repo.iter_commits("gs128")] == ["two", "one", "initial commit"]
    assert repo.commit("gs128").message == "two\n\nbody\n"
    assert repo.git.log("main", "--format=%s") == "initial commit"
    pointer = repo.git.show("gs128:model.safetensors")
    sha = hashlib.sha256(weights).hexdigest()
    assert pointer == f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(weights)}"
    assert (hub.root / "lfs" / sha[:2] / sha[2:4] / sha).read_bytes() == weights
    assert "README.md" in repo.git.ls_tree("-r", "--name-only", "gs128").split()
    assert repo.git.fsck("--strict") == ""
    assert hub.commit_count(REPO, "gs128") == 3


def test_stale_parent_commit_gets_412_and_the_branch_stays(hub: HubServer, api) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    api.create_repo(REPO)
    initial = api.model_info(REPO).sha
    head = api.create_commit(REPO, [add("a.txt", b"1")], commit_message="a", parent_commit=initial).oid
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_commit(REPO, [add("b.txt", b"2")], commit_message="b", parent_commit=initial)
    assert raised.value.response.status_code == 412
    assert api.model_info(REPO).sha == head
    assert "b.txt" not in hub.files(REPO)
    assert hub.commit_count(REPO) == 2


def test_deletes_and_missing_files(hub: HubServer, api) -> None:
    from huggingface_hub import CommitOperationDelete
    from huggingface_hub.errors import EntryNotFoundError

    api.create_repo(REPO)
    api.create_commit(REPO, [add("keep.txt", b"k"), add("old.txt", b"o"), add("dir/x.txt", b"x"),
                             add("dir/sub/y.txt", b"y")], commit_message="add")
    api.create_commit(REPO, [CommitOperationDelete("old.txt"), CommitOperationDelete("dir/")], commit_message="rm")
    assert set(hub.files(REPO)) == {".gitattributes", "keep.txt"}
    with pytest.raises(EntryNotFoundError):
        api.create_commit(REPO, [CommitOperationDelete("old.txt")], commit_message="again")
    assert not api.file_exists(REPO, "old.txt")
    assert api.file_exists(REPO, "keep.txt")
    with pytest.raises(EntryNotFoundError):
        api.hf_hub_download(REPO, "old.txt")


def test_tags_and_refs(hub: HubServer, api) -> None:
    from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

    api.create_repo(REPO)
    api.create_branch(REPO, branch="gs128")
    head = api.create_commit(REPO, [add("a.txt", b"1")], commit_message="a", revision="gs128").oid
    api.create_tag(REPO, tag="v1-gs128", revision="gs128", tag_message="release")
    api.create_tag(REPO, tag="v1-gs128", revision="gs128", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_tag(REPO, tag="v1-gs128", revision="gs128")
    assert raised.value.response.status_code == 409
    refs = api.list_repo_refs(REPO)
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1-gs128", "refs/tags/v1-gs128", head)]
    assert git.Repo(hub.git_path(REPO)).git.cat_file("-t", "v1-gs128") == "tag"  # annotated, with the message
    assert api.model_info(REPO, revision="v1-gs128").sha == head
    assert api.model_info(REPO, revision=head[:7]).sha == head  # short commit ids resolve too
    api.create_branch(REPO, branch="from-tag", revision="v1-gs128")
    api.create_branch(REPO, branch="from-sha", revision=head)
    assert {b.name for b in api.list_repo_refs(REPO).branches} == {"main", "gs128", "from-tag", "from-sha"}
    api.delete_tag(REPO, tag="v1-gs128")
    api.delete_branch(REPO, branch="from-sha")
    assert api.list_repo_refs(REPO).tags == []
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="from-sha")


def test_identical_lfs_content_is_never_uploaded_twice(hub: HubServer, api, tmp_path: Path) -> None:
    api.create_repo(REPO)
    weights = tiny_safetensors(tmp_path)
    api.create_commit(REPO, [add("model.safetensors", weights)], commit_message="first")
    assert len(puts(hub)) == 1
    hub.reset_records()

    api.create_branch(REPO, branch="gs128")  # a new branch starts from main: same path, same content
    api.create_branch(REPO, branch="other", revision=api.list_repo_commits(REPO)[-1].commit_id)
    api.create_commit(REPO, [add("copy.safetensors", weights)], commit_message="same bytes", revision="other")
    assert puts(hub) == []  # the batch answered "already stored": no upload action
    assert any(r.path.endswith("/objects/batch") for r in hub.requests)
    before = hub.commit_count(REPO, "gs128")
    info = api.create_commit(REPO, [add("model.safetensors", weights)], commit_message="noop", revision="gs128")
    assert hub.commit_count(REPO, "gs128") == before  # the preupload oid matched: the client skipped the commit
    assert info.oid == api.model_info(REPO, revision="gs128").sha
    assert not any("/commit/" in r.path for r in hub.requests if r.method == "POST" and "gs128" in r.path)
    assert len(hub.lfs_objects()) == 1


def test_5xx_and_429_are_retried_where_the_client_uses_backoff(hub: HubServer, api, sleeps: list[float]) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    api.create_repo(REPO)
    hub.inject("POST", r"/preupload/", status=500)
    hub.inject("GET", r"/tree/", status=429, retry_after=3)
    api.create_commit(REPO, [add("a.txt", b"1")], commit_message="a")  # preupload goes through http_backoff
    assert [f.path for f in api.list_repo_tree(REPO)] == [".gitattributes", "a.txt"]
    assert sleeps == [1, 4]  # 1 s first backoff; Retry-After 3 + 1 s
    statuses = [(r.method, r.status) for r in hub.requests if "/preupload/" in r.path or "/tree/" in r.path]
    assert statuses == [("POST", 500), ("POST", 200), ("GET", 429), ("GET", 200)]

    hub.inject("POST", r"/commit/main$", status=503)  # create_commit does not retry the commit itself
    with pytest.raises(HfHubHTTPError) as raised:
        api.create_commit(REPO, [add("b.txt", b"2")], commit_message="b")
    assert raised.value.response.status_code == 503
    assert raised.value.response.headers.get("Retry-After") is None
    assert "b.txt" not in hub.files(REPO)

    sleeps.clear()
    hub.inject("GET", r"/tree/", status=429, retry_after=0, times=6)  # 1 try + 5 retries, then it gives up
    with pytest.raises(HfHubHTTPError) as raised:
        list(api.list_repo_tree(REPO))  # a lazy generator: list() makes the requests
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "0"
    assert sleeps == [1, 1, 1, 1, 1]  # Retry-After 0 + 1 s each time

    hub.inject("GET", r"/refs$", status=500)  # a plain GET (no http_backoff): the first 5xx surfaces at once
    with pytest.raises(HfHubHTTPError) as raised:
        api.list_repo_refs(REPO)
    assert raised.value.response.status_code == 500
    assert len(sleeps) == 5


def test_dropped_connections_and_delays(hub: HubServer, api, sleeps: list[float], tmp_path: Path) -> None:
    import httpx2

    api.create_repo(REPO)
    weights = tiny_safetensors(tmp_path)
    hub.inject("PUT", r"^/_lfs/", drop=True)  # the upload dies mid-body; http_backoff retries the PUT
    api.create_commit(REPO, [add("model.safetensors", weights)], commit_message="w")
    assert [r.status for r in puts(hub)] == [0, 200]
    assert hub.files(REPO)["model.safetensors"] == weights

    hub.inject("POST", r"/commit/main$", drop_response=True)  # the commit lands, its answer is lost
    with pytest.raises(httpx2.TransportError):
        api.create_commit(REPO, [add("a.txt", b"1")], commit_message="lost answer")
    assert hub.files(REPO)["a.txt"] == b"1"

    release = threading.Event()
    hub.inject("GET", r"/refs$", hold=release)
    answered = threading.Event()
    caller = threading.Thread(target=lambda: (api.list_repo_refs(REPO), answered.set()))
    caller.start()
    assert hub.faults_taken.wait(timeout=30)  # the request reached the server and is held there
    assert not answered.is_set()
    release.set()
    caller.join(timeout=30)
    assert answered.is_set()


def test_token_is_required(hub: HubServer, api) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api.create_repo(REPO)
    for token in (False, "wrong-token"):
        with pytest.raises(HfHubHTTPError) as raised:
            HfApi(endpoint=hub.url, token=token).list_repo_refs(REPO)
        assert raised.value.response.status_code == 401
    assert api.whoami()["name"] == "tester"
    assert TOKEN not in repr(hub.requests)
    with pytest.raises(urllib.error.HTTPError) as forged:  # upload URLs carry no token: they must be signed
        urllib.request.urlopen(urllib.request.Request(f"{hub.url}/_lfs/{'0' * 64}/1/forged", b"x", method="PUT"))
    assert forged.value.code == 403


def test_commit_rejects_an_lfs_file_that_was_never_uploaded(hub: HubServer, api) -> None:
    api.create_repo(REPO)
    lines = [{"key": "header", "value": {"summary": "sneaky", "description": ""}},
             {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": "ab" * 32, "size": 3}}]
    request = urllib.request.Request(
        f"{hub.url}/api/models/{REPO}/commit/main", method="POST",
        data=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request)
    assert raised.value.code == 422
    assert hub.commit_count(REPO) == 1


def test_readme_metadata_is_validated(hub: HubServer, api) -> None:
    api.create_repo(REPO)
    with pytest.raises(ValueError, match="base_model_relation"):
        api.create_commit(REPO, [add("README.md", b"---\nbase_model_relation: distilled\n---\n")],
                          commit_message="card")
    api.create_commit(REPO, [add("README.md", b"---\ntags: [int8]\nlibrary_name: transformers\n---\n")],
                      commit_message="card")
    info = api.model_info(REPO)
    assert (info.tags, info.library_name, info.card_data.library_name) == (["int8"], "transformers", "transformers")


def test_listings_follow_link_pagination(hub: HubServer, api) -> None:
    api.create_repo(REPO)
    for i in range(3):
        api.create_commit(REPO, [add(f"d/f{i}.txt", b"%d" % i)], commit_message=f"c{i}")
    hub.page_size = 2
    hub.reset_records()
    files = api.list_repo_tree(REPO, path_in_repo="d", expand=True)
    assert [(f.path, f.last_commit.title) for f in files] == [("d/f0.txt", "c0"), ("d/f1.txt", "c1"),
                                                              ("d/f2.txt", "c2")]
    assert sorted(api.list_repo_files(REPO)) == [".gitattributes", "d/f0.txt", "d/f1.txt", "d/f2.txt"]
    assert len(api.list_repo_commits(REPO)) == 4
    assert sum("cursor=" in r.query for r in hub.requests) >= 4


@pytest.mark.slow
def test_hf_cli_upload_to_a_branch(hub: HubServer, tmp_path: Path) -> None:
    folder = tmp_path / "variant"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}\n')
    (folder / "sub" / "model.safetensors").write_bytes(tiny_safetensors(tmp_path))
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1",
           "HF_HOME": str(tmp_path / "cli_home"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
    hf = shutil.which("hf", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert hf is not None, "huggingface_hub's `hf` command is not installed"
    run = subprocess.run([hf, "upload", "tester/cli", str(folder), "--revision", "gs128", "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    head = git.Repo(hub.git_path("tester/cli")).commit("gs128")
    assert json.loads(run.stdout)["url"] == f"{hub.url}/tester/cli/commit/{head.hexsha}"
    files = hub.files("tester/cli", "gs128")
    assert files["config.json"] == b'{"a": 1}\n'
    assert files["sub/model.safetensors"] == (folder / "sub" / "model.safetensors").read_bytes()
    assert hub.files("tester/cli", "main").keys() == {".gitattributes"}
    assert TOKEN not in run.stdout + run.stderr


@pytest.mark.slow
def test_module_runs_in_the_foreground(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.hubserver", "--root", str(tmp_path), "--token", TOKEN],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()  # type: ignore[union-attr]
        request = urllib.request.Request(f"{url}/api/whoami-v2", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["name"] == "tester"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
