"""Local digests: the Hub's identities (sha256, git blob id), cached by path, size, mtime and inode."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from publish.hub import hashcache
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


def test_a_digest_is_on_disk_before_the_cache_is_saved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"x" * 1000)
    HashCache(tmp_path / "cache.json").digest(path)  # then killed: save() never runs
    monkeypatch.setattr(hashcache, "digest_file", lambda _: pytest.fail("hashed again"))
    assert HashCache(tmp_path / "cache.json").digest(path).sha256 == hashlib.sha256(b"x" * 1000).hexdigest()


def test_save_folds_the_journal_into_the_cache_file(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(b"y")
    cache = HashCache(tmp_path / "cache.json")
    cache.digest(path)
    assert cache.journal is not None and cache.journal.is_file()
    cache.save()
    assert not cache.journal.exists() and str(path.resolve()) in (tmp_path / "cache.json").read_text()
    assert HashCache(tmp_path / "cache.json").digest(path).size == 1


def test_a_journal_line_cut_short_by_a_kill_costs_only_its_digest(tmp_path: Path) -> None:
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"a")
    second.write_bytes(b"b")
    cache = HashCache(tmp_path / "cache.json")
    cache.digest(first)
    cache.digest(second)
    assert cache.journal is not None
    text = cache.journal.read_text()
    cache.journal.write_text(text[: len(text) - 20])  # the second line is torn
    again = HashCache(tmp_path / "cache.json")
    again.digest(first)
    again.digest(second)
    assert again.hashed_bytes == 1  # b.bin only
