"""Local digests: the Hub's identities (sha256, git blob id), cached by path, size, mtime and inode."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from publish.hub.hashcache import HashCache, digest_file


def test_git_blob_id_matches_git_hash_object(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"a": 1}\n')
    expected = subprocess.run(["git", "hash-object", str(path)], check=False, capture_output=True, text=True).stdout.strip()
    assert digest_file(path).git_oid == expected


def test_sha256_is_the_content_hash(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    assert digest_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_warm_cache_hashes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 1000)
    first = HashCache(tmp_path / "cache.json")
    digest = first.digest(path)
    first.save()
    second = HashCache(tmp_path / "cache.json")
    assert second.digest(path) == digest
    assert (first.hashed_bytes, second.hashed_bytes) == (1000, 0)


def test_a_touched_file_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 1000)
    cache = HashCache(tmp_path / "cache.json")
    cache.digest(path)
    path.write_bytes(b"y" * 1000)
    os.utime(path, ns=(1, 1))
    assert cache.digest(path).sha256 == hashlib.sha256(b"y" * 1000).hexdigest()
    assert cache.hashed_bytes == 2000


def test_a_corrupt_cache_file_only_costs_a_rehash(tmp_path: Path) -> None:
    (tmp_path / "cache.json").write_text("{not json")
    path = tmp_path / "w.bin"
    path.write_bytes(b"z")
    assert HashCache(tmp_path / "cache.json").digest(path).size == 1
