"""Content digests of local files, cached on disk so unchanged weights are never hashed twice.

A cache entry is keyed by the file's resolved path and is valid only while its size, mtime (ns) and inode are
unchanged. Each entry holds the sha256 (what the Hub's LFS store keys objects by) and, for files small enough to be
stored as regular git files, the git blob id (what the Hub reports for non-LFS files).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from publish.util.hashing import chunks, stamp
from publish.util.jsonstore import JsonStore

# The Hub stores files up to 10 MiB as regular git blobs unless .gitattributes routes them to LFS.
REGULAR_LIMIT = 10 * 1024 * 1024
HASH_CACHE_VERSION = 1


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


@dataclass
class Prefetch:
    """Hashing running in the background: take one file's digest with `result(path)`, `wait()` for all of it
    (raising what it raised), or `cancel()` it."""

    pool: ThreadPoolExecutor
    jobs: dict[Path, Future[Digest]]
    cache: HashCache

    def result(self, path: Path) -> Digest:
        """The digest of a file, waiting for it if it is still being hashed (a file not prefetched is hashed
        now, through the cache)."""
        job = self.jobs.get(path)
        return job.result() if job is not None else self.cache.digest(path)

    def wait(self) -> None:
        for job in self.jobs.values():
            job.result()
        self.pool.shutdown()

    def cancel(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class HashCache:
    """Digests by (path, size, mtime, inode), persisted as JSON at `location`."""

    def __init__(self, location: Path | None) -> None:
        self.location = location
        self._store = JsonStore(location, HASH_CACHE_VERSION)
        self.hashed_bytes = 0  # bytes actually read this run: 0 on a warm cache
        self._entries: dict[str, list[object]] = {}
        self._clean: dict[str, list[int]] = {}  # files scanned and found free of tokens, by the same identity
        self._dirty = False
        self._lock = threading.Lock()
        data = self._store.load()
        if isinstance(data.get("entries"), dict):
            self._entries = data["entries"]
            self._clean = dict(data.get("clean") or {})

    def digest(self, path: Path) -> Digest:
        real = path.resolve()
        key = str(real)
        current = stamp(real)
        entry = self._entries.get(key)
        if entry is not None and entry[:3] == current:
            return Digest(current[0], str(entry[3]), entry[4] if entry[4] is None else str(entry[4]))
        found = digest_file(real)
        with self._lock:
            self.hashed_bytes += found.size
            self._entries[key] = [*current, found.sha256, found.git_oid]
            self._dirty = True
        return found

    def known_clean(self, path: Path) -> bool:
        """Was this very file (same path, size, mtime, inode) scanned and found free of tokens?"""
        real = path.resolve()
        return self._clean.get(str(real)) == stamp(real)

    def mark_clean(self, path: Path) -> None:
        real = path.resolve()
        with self._lock:
            self._clean[str(real)] = stamp(real)
            self._dirty = True

    def prefetch(
        self, paths: Iterable[Path], workers: int = 2, progress: Callable[[Path, int, int], None] | None = None
    ) -> Prefetch:
        """Start hashing `paths` in background threads (hashlib releases the GIL) so it overlaps other work.

        `progress(path, done_bytes, total_bytes)` is called (from a worker thread) as each file is done.
        """
        paths = list(dict.fromkeys(paths))
        total = sum(path.stat().st_size for path in paths)
        done = [0]
        lock = threading.Lock()

        def digest(path: Path) -> Digest:
            found = self.digest(path)
            if progress is not None:
                with lock:
                    done[0] += found.size
                    progress(path, done[0], total)
            return found

        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hubpub-hash")
        return Prefetch(pool, {path: pool.submit(digest, path) for path in paths}, self)

    def save(self) -> None:
        if self.location is None or not self._dirty:
            return
        self._store.save({"entries": self._entries, "clean": self._clean})
        self._dirty = False


def default_cache_location() -> Path:
    """$HUBPUB_CACHE, else $XDG_CACHE_HOME/hubpub/hashes.json, else ~/.cache/hubpub/hashes.json."""
    explicit = os.environ.get("HUBPUB_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hubpub" / "hashes.json"
