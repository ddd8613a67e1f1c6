"""Hashing a file, the identity under which a fact about a file may be remembered, and the key a cached fact is
stored under."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK = 8 * 1024 * 1024


def chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    """The file's bytes in blocks of `size` (hashlib releases the GIL on large blocks, so threads overlap)."""
    with path.open("rb") as handle:
        while block := handle.read(size):
            yield block


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    for block in chunks(path):
        digest.update(block)
    return digest.hexdigest()


def stamp(path: Path) -> list[int]:
    """What must not change for a cached fact about a file to stay true: size, mtime (ns), inode."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def key_of(material: Any) -> str:
    """The SHA-256 of `material` as JSON with sorted keys (values JSON cannot hold as their str): what a cached
    fact is keyed by, so that any change to what it was computed from gives another key."""
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()
