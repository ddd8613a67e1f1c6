"""What a push or a plan costs: the requests it makes of the Hub, counted by kind on the local server, and the
files it hashes, counted at `digest_file`. Each count is what a decision needs and no more."""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from pathlib import Path

import pytest

from publish.commands.push import plan, push
from publish.hub import hashcache
from publish.hub.hashcache import HashCache
from publish.hub.upload import UPLOAD_STREAMS, goes_to_lfs
from publish.manifest.model import load_manifest
from publish.util.listing import list_folder

from .conftest import point_manifest
from .hubserver import HubServer
from .test_push import client, settings

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def kinds(hub: HubServer) -> Counter[str]:
    """Requests by kind: 'GET refs', 'POST preupload', 'PUT lfs object'."""
    return Counter(r.kind for r in hub.requests)


@pytest.fixture
def digests(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file hashed (read whole) from now on, in order."""
    hashed: list[Path] = []
    real = hashcache.digest_file
    monkeypatch.setattr(hashcache, "digest_file", lambda path: hashed.append(path) or real(path))
    return hashed


def warm(cache: Path, *folders: Path) -> None:
    """Every file of `folders` already in the hash cache at `cache`."""
    hashes = HashCache(cache)
    for folder in folders:
        for file in list_folder(folder.resolve()).files:
            hashes.digest(file.path)
    hashes.save()


# -- requests ---------------------------------------------------------------------------------------------------


def test_a_first_push_asks_the_hub_only_what_it_needs(
    weighed: Path, checkpoints: dict[str, Path], hub: HubServer, tmp_path: Path
) -> None:
    warm(tmp_path / "hashes.json", *checkpoints.values())  # every upload is ready at once: one group per variant
    result = push(load_manifest(weighed), client(hub), settings(cache=tmp_path / "hashes.json"))
    uploaded_shards = sum(c.path.endswith(".safetensors") for v in result.variants for c in v.plan.uploads)
    objects = len(hub.lfs_objects())
    # Files go up in groups of at most UPLOAD_STREAMS, each group one preupload and one LFS batch request. An
    # object both variants hold goes up once: the second copy waits for the first, then goes up alone (its batch
    # finds it on the server), unless the first was up before the second was ready.
    hashes = HashCache(tmp_path / "hashes.json")
    lfs = [[hashes.digest(c.local.source).sha256 for c in v.plan.uploads if c.local and goes_to_lfs(c.local)]
           for v in result.variants]
    fewest = sum(-(-len(files) // UPLOAD_STREAMS) for files in lfs)
    found = kinds(hub)
    groups = found["POST lfs batch"]
    assert fewest <= groups <= fewest + len(set(lfs[0]) & set(lfs[1])) and found["POST preupload"] == groups + 2
    assert found - Counter({"POST preupload": groups, "POST lfs batch": groups}) == {
        "GET whoami-v2": 1,  # the token, before anything else
        "GET refs": 1, "POST repos/create": 1, "GET commits": 1,  # read once; the new repository's first commit
        "GET tree": 1 + 2,  # the first commit's files to plan against, each new commit's files to verify
        "POST branch": 1,  # gs128 (main comes with the repository)
        "POST preupload": 2,  # and one per variant for the files sent with the commit
        "PUT lfs object": objects, "POST lfs verify": objects,  # one object, one PUT
        "POST validate-yaml": 2, "POST commit": 2,
        "GET resolve": uploaded_shards,  # each uploaded shard's header, as the Hub serves it
    }


def test_a_new_branch_is_planned_from_one_read_of_each_kind(weighed: Path, hub: HubServer) -> None:
    push(load_manifest(weighed), client(hub), settings("main"))
    hub.reset_records()
    plan(load_manifest(weighed), client(hub), settings("gs128"))
    # whoami: a token the Hub refuses must fail the plan, not make the repository look absent.
    assert kinds(hub) == {"GET whoami-v2": 1, "GET refs": 1, "GET commits": 1, "GET tree": 1}


def test_a_new_branch_is_pushed_without_reading_anything_twice(weighed: Path, hub: HubServer) -> None:
    push(load_manifest(weighed), client(hub), settings("main"))
    hub.reset_records()
    push(load_manifest(weighed), client(hub), settings("gs128"))
    found = kinds(hub)
    assert (found["GET refs"], found["GET commits"], found["GET tree"], found["POST branch"]) == (1, 1, 2, 1)


# -- hashing ----------------------------------------------------------------------------------------------------


def test_a_plan_of_a_new_repository_hashes_nothing(weighed: Path, hub: HubServer, digests: list[Path]) -> None:
    result = plan(load_manifest(weighed), client(hub), settings())
    assert digests == [] and result.hashed_bytes == 0
    assert all(c.action == "add" for v in result.variants for c in v.plan.changes)


def test_a_plan_hashes_only_files_the_revision_holds_at_the_same_size(
    project: Path, checkpoints: dict[str, Path], hub: HubServer, tmp_path: Path, digests: list[Path]
) -> None:
    folder = shutil.copytree(checkpoints["main"], tmp_path / "main")
    manifest = point_manifest(project, {"main": folder, "gs128": checkpoints["gs128"]})
    push(load_manifest(manifest), client(hub), settings("main"))
    (folder / "notes.txt").write_text("new\n")  # not on the Hub: an add, whatever it holds
    (folder / "generation_config.json").write_text('{"changed": "size"}\n')  # another size: an update
    digests.clear()
    result = plan(load_manifest(manifest), client(hub), settings("main", cache=tmp_path / "fresh.json"))
    actions = {c.path: c.action for c in result.variants[0].plan.changes}
    assert actions["notes.txt"] == "add" and actions["generation_config.json"] == "update"
    hashed = {p.name for p in digests}
    assert hashed == {p for p, a in actions.items() if a == "unchanged" and p != "README.md"}


def test_an_interrupted_plan_resumes_where_it_stopped(
    weighed: Path, hub: HubServer, tmp_path: Path, digests: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    push(load_manifest(weighed), client(hub), settings("main"))  # the branch holds every file: a plan hashes all
    location = tmp_path / "hashes.json"
    real = hashcache.digest_file
    done: list[Path] = []
    started = itertools.count()  # next() is atomic: exactly three files start, whatever the threads do

    def killed_after_three(path: Path) -> hashcache.Digest:
        if next(started) >= 3:
            raise KeyboardInterrupt
        found = real(path)
        done.append(path)
        return found

    save = HashCache.save
    monkeypatch.setattr(hashcache, "digest_file", killed_after_three)
    monkeypatch.setattr(HashCache, "save", lambda self: None)  # killed: no cleanup runs, nothing is saved
    with pytest.raises(KeyboardInterrupt):
        plan(load_manifest(weighed), client(hub), settings("main", cache=location))
    monkeypatch.setattr(HashCache, "save", save)
    again: list[Path] = []
    monkeypatch.setattr(hashcache, "digest_file", lambda path: again.append(path) or real(path))
    result = plan(load_manifest(weighed), client(hub), settings("main", cache=location))
    compared = {c.local.source for c in result.variants[0].plan.changes if c.local and c.local.source}
    assert len(done) == 3 and not set(done) & set(again)  # the three digests were kept, and only they
    assert set(done) | set(again) == compared
