"""Content digests of local files, cached on disk so unchanged weights are never hashed twice.

A cache entry is keyed by the file's resolved path and is valid only while its size, mtime (ns) and inode are
unchanged. Each entry holds the sha256 (what the Hub's LFS store keys objects by) and, for files small enough to be
stored as regular git files, the git blob id (what the Hub reports for non-LFS files).

Each digest is recorded the moment it is computed: appended as one line to a journal beside the cache file, which
the next run reads back and `save()` folds into the cache. A plan or push that is interrupted, even killed, resumes
with the files it has not hashed yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from publish.util.hashing import chunks, stamp
from publish.util.jsonstore import JsonStore

# The Hub stores files up to 10 MiB as regular git blobs unless .gitattributes routes them to LFS.
REGULAR_LIMIT = 10 * 1024 * 1024
HASH_CACHE_VERSION = 1
HASH_WORKERS = 2  # hashlib releases the GIL: two files are hashed at once


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: str
    git_oid: str | None  # git blob sha1; None for files too large to be regular


def git_blob_id(data: bytes) -> str:
    """The git blob id of `data`, as `git hash-object` computes it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def digest_bytes(data: bytes) -> Digest:
    return Digest(len(data), hashlib.sha256(data).hexdigest(), git_blob_id(data))


def digest_file(path: Path) -> Digest:
    """Hash a file in one pass: sha256 always, the git blob id too when the file is small."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size) if size <= REGULAR_LIMIT else None
    for chunk in chunks(path):
        sha256.update(chunk)
        if sha1 is not None:
            sha1.update(chunk)
    return Digest(size, sha256.hexdigest(), sha1.hexdigest() if sha1 else None)


class HashCache:
    """Digests by (path, size, mtime, inode), persisted as JSON at `location` (None: in memory only)."""

    def __init__(self, location: Path | None) -> None:
        self.location = location
        self._store = JsonStore(location, HASH_CACHE_VERSION)
        self.hashed_bytes = 0  # bytes actually read this run: 0 on a warm cache
        self.cached_bytes = 0  # bytes whose digest the cache already held this run
        self._entries: dict[str, list[Any]] = {}
        self._clean: dict[str, list[int]] = {}  # files scanned and found free of tokens, by the same identity
        self._dirty = False
        self._lock = threading.Lock()
        self._load()

    @property
    def journal(self) -> Path | None:
        """Where each digest is appended as it is computed, until `save()` folds the journal into the cache."""
        return None if self.location is None else self.location.with_name(self.location.name + ".journal")

    def digest(self, path: Path) -> Digest:
        real = path.resolve()
        key = str(real)
        current = stamp(real)
        entry = self._entries.get(key)
        if entry is not None and entry[:3] == current:
            with self._lock:
                self.cached_bytes += current[0]
            return Digest(current[0], str(entry[3]), entry[4] if entry[4] is None else str(entry[4]))
        found = digest_file(real)
        with self._lock:
            self.hashed_bytes += found.size
            self._entries[key] = [*current, found.sha256, found.git_oid]
            self._record({"entry": key, "value": self._entries[key]})
        return found

    def known_clean(self, path: Path) -> bool:
        """Was this very file (same path, size, mtime, inode) scanned and found free of tokens?"""
        real = path.resolve()
        return self._clean.get(str(real)) == stamp(real)

    def mark_clean(self, path: Path) -> None:
        real = path.resolve()
        with self._lock:
            self._clean[str(real)] = stamp(real)
            self._record({"clean": str(real), "value": self._clean[str(real)]})

    def prefetch(self, progress: Callable[[Path, int, int], None] | None = None) -> Prefetch:
        """Background hashing through this cache; nothing runs until paths are `add`ed."""
        return Prefetch(self, progress)

    def save(self) -> None:
        """Write the cache file whole and drop the journal it now contains."""
        if self.location is None or not self._dirty:
            return
        with self._lock:
            self._store.save({"entries": self._entries, "clean": self._clean})
            if self.journal is not None:
                self.journal.unlink(missing_ok=True)
            self._dirty = False

    def _record(self, line: dict[str, Any]) -> None:
        """Append one fact to the journal at once (the caller holds the lock): a killed run keeps it."""
        self._dirty = True
        if self.journal is None:
            return
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with self.journal.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"version": HASH_CACHE_VERSION, **line}) + "\n")
        except OSError:
            pass  # a cache that cannot be written only costs a re-hash next time

    def _load(self) -> None:
        """The cache file (what cannot be read costs only a re-hash), then the journal of later digests."""
        data = self._store.load()
        if isinstance(data.get("entries"), dict) and isinstance(data.get("clean") or {}, dict):
            self._entries = dict(data["entries"])
            self._clean = dict(data.get("clean") or {})
        journal = self.journal
        if journal is None or not journal.is_file():
            return
        try:
            lines = journal.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        for text in lines:
            try:
                line = json.loads(text)
                if line.get("version") != HASH_CACHE_VERSION:
                    continue
                if "entry" in line:
                    self._entries[str(line["entry"])] = list(line["value"])
                elif "clean" in line:
                    self._clean[str(line["clean"])] = list(line["value"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a line cut short by a kill
        self._dirty = True  # fold the journal into the cache at the next save


@dataclass
class Prefetch:
    """Hashing in background threads, so it overlaps the checks and the uploads. Paths are hashed in the order
    they are `add`ed; `result(path)` waits for one digest (hashing a path never added at once), `wait()` for all
    of them, `cancel()` drops what has not started."""

    cache: HashCache
    progress: Callable[[Path, int, int], None] | None = None  # (path, bytes done, bytes added), from a worker
    jobs: dict[Path, Future[Digest]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="hubpub-hash"))
    _done: int = 0
    _total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, paths: Iterable[Path]) -> None:
        """Start hashing each path not yet added."""
        for path in dict.fromkeys(paths):
            if path in self.jobs:
                continue
            with self._lock:
                self._total += path.stat().st_size
            self.jobs[path] = self._pool.submit(self._digest, path)

    def future(self, path: Path) -> Future[Digest] | None:
        return self.jobs.get(path)

    def result(self, path: Path) -> Digest:
        job = self.jobs.get(path)
        return job.result() if job is not None else self.cache.digest(path)

    def wait(self) -> None:
        for job in list(self.jobs.values()):
            job.result()
        self._pool.shutdown()

    def cancel(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _digest(self, path: Path) -> Digest:
        found = self.cache.digest(path)
        if self.progress is not None:
            with self._lock:
                self._done += found.size
                done, total = self._done, self._total
            self.progress(path, done, total)
        return found


def default_cache_location() -> Path:
    """$HUBPUB_CACHE, else $XDG_CACHE_HOME/hubpub/hashes.json, else ~/.cache/hubpub/hashes.json."""
    explicit = os.environ.get("HUBPUB_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hubpub" / "hashes.json"
