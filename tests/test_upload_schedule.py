"""hub/upload.py's scheduler, on a fake Hub and hashing it controls: which files go up together, and when.

Each group costs a preupload and an LFS batch request, so while an upload is running and more of the plan is still
being hashed, a group that would not fill the free streams waits; the link is never left idle for it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from publish.hub.hashcache import Digest
from publish.hub.plan import ADD, Change, LocalFile, Plan
from publish.hub.upload import Uploads

TIMEOUT = 30  # seconds; only a broken scheduler waits this long


class FakeHub:
    """Records each `upload_objects` group; the first upload is held until `release_first` is set."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.started = threading.Event()
        self.release_first = threading.Event()
        self._grouped = threading.Condition()

    def upload_objects(self, repo_id: str, revision: str, files: Sequence[LocalFile]) -> None:
        with self._grouped:
            self.groups.append([f.path for f in files])
            first = len(self.groups) == 1
            self._grouped.notify_all()
        if first:
            self.started.set()
            assert self.release_first.wait(TIMEOUT)

    def wait_for_groups(self, count: int) -> None:
        with self._grouped:
            assert self._grouped.wait_for(lambda: len(self.groups) >= count, TIMEOUT), self.groups


class FakeHashing:
    """One future per file, completed by the test."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.jobs: dict[Path, Future[Digest]] = {path: Future() for path in paths}

    def future(self, path: Path) -> Future[Digest] | None:
        return self.jobs.get(path)

    def finish(self, path: Path) -> None:
        self.jobs[path].set_result(Digest(1 << 20, path.name.encode().hex().ljust(64, "0")[:64], None))


def plan_of(paths: Sequence[Path]) -> Plan:
    changes = tuple(Change(p.name, ADD, 1 << 20, LocalFile(p.name, 1 << 20, None, None, source=p)) for p in paths)
    return Plan("acme/model", "main", None, False, False, changes)


def start(paths: Sequence[Path]) -> tuple[FakeHub, FakeHashing, Uploads, Plan]:
    hub, hashing = FakeHub(), FakeHashing(paths)
    plan = plan_of(paths)

    def digest(file: LocalFile) -> LocalFile:
        assert file.source is not None
        found = hashing.jobs[file.source].result()
        return LocalFile(file.path, file.size, found.sha256, None, source=file.source)

    uploads = Uploads(hub, hashing, digest, lambda event: None)  # type: ignore[arg-type]
    return hub, hashing, uploads.start([plan]), plan


class Looks:
    """Counts the scheduler's looks for a group to send: two more looks after a change mean it acted on it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._changed = threading.Condition()
        real = Uploads._ready_group

        def counted(uploads: Uploads, *args: Any) -> Any:
            found = real(uploads, *args)
            with self._changed:
                self.count += 1
                self._changed.notify_all()
            return found

        monkeypatch.setattr(Uploads, "_ready_group", counted)

    def two_more(self) -> None:
        with self._changed:
            seen = self.count
            assert self._changed.wait_for(lambda: self.count >= seen + 2, TIMEOUT)


def test_files_hashed_while_an_upload_runs_go_up_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    looks = Looks(monkeypatch)
    paths = [tmp_path / f"shard-{n}.safetensors" for n in range(5)]
    hub, hashing, uploads, plan = start(paths)
    hashing.finish(paths[0])
    assert hub.started.wait(TIMEOUT)  # nothing was running: the first file went up alone at once
    for path in paths[1:4]:
        hashing.finish(path)  # hashed while the first is uploading, with one file still hashing: they wait
        looks.two_more()
        assert len(hub.groups) == 1, hub.groups
    hashing.finish(paths[4])
    hub.release_first.set()
    uploads.wait(plan)
    assert hub.groups == [["shard-0.safetensors"], [p.name for p in paths[1:]]]


def test_a_group_that_fills_the_free_streams_is_not_held_back(tmp_path: Path) -> None:
    paths = [tmp_path / f"shard-{n}.safetensors" for n in range(6)]
    hub, hashing, uploads, plan = start(paths)
    hashing.finish(paths[0])
    assert hub.started.wait(TIMEOUT)
    for path in paths[1:5]:
        hashing.finish(path)  # four streams are free: four hashed files fill them, though one is still hashing
    hub.wait_for_groups(2)
    assert hub.groups[1] == [p.name for p in paths[1:5]]
    hashing.finish(paths[5])
    hub.release_first.set()
    uploads.wait(plan)
    assert hub.groups[2:] == [["shard-5.safetensors"]]
