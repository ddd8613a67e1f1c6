"""Check reports remembered by what they were computed from, so a push of unchanged weights does not re-check.

Checking needs compressed-tensors, whose import (it loads torch) costs far more than the checks themselves. A
report is reused only when the hubpub version, the variant's manifest entry and every file of the checkpoint
folder (path, size, mtime, inode: the hash cache's own validity rule) are unchanged; for a Hub revision, when the
version, the entry and the revision's commit are unchanged. `hubpub check` always checks afresh and records its
reports; `hubpub push` reuses them (so a release's card-only push after `hubpub check --remote` loads no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from publish import __version__
from publish.util.hashing import key_of
from publish.util.jsonstore import JsonStore
from publish.util.listing import Listing

# 2: facts carry the format, scheme and any refusal; a report without them could back a wrong card.
# 3: facts carry parts, block and KV cache; findings cover the architecture (A1, A2), KV scales (T5), wider K5.
REPORT_CACHE_VERSION = 3
MAX_REPORTS = 64  # reports kept; the oldest go first
FRONT_MATTER = "front-matter"  # the entry holding verified front matter keys


def beside(hash_cache: Path) -> Path:
    """Where reports are recorded: checks.json beside the hash cache."""
    return hash_cache.with_name("checks.json")


def checkpoint_key(variant: dict[str, Any], listing: Listing) -> str:
    """A digest of everything a local check report depends on: the variant's entry and the listed files."""
    files = sorted((f.rel, f.stamp) for f in listing.files)
    return key_of({"hubpub": __version__, "variant": variant, "folder": str(listing.folder), "files": files})


def revision_key(variant: dict[str, Any], endpoint: str, repo_id: str, commit: str) -> str:
    """A digest of everything a Hub revision's check report depends on: the variant's entry and the commit, which
    names the revision's every file and byte (so a report is never reused for a branch that has moved)."""
    return key_of({"hubpub": __version__, "variant": variant, "endpoint": endpoint.rstrip("/"), "repo": repo_id,
                   "commit": commit})


class ReportCache:
    """Reports by checkpoint key, persisted as JSON at `location` (None: in memory only)."""

    def __init__(self, location: Path | None) -> None:
        self.location = location
        self._store = JsonStore(location, REPORT_CACHE_VERSION)
        entries = self._store.load().get("entries")
        self._entries: dict[str, dict[str, Any]] = dict(entries) if isinstance(entries, dict) else {}
        self._dirty = False

    def beside(self, name: str) -> Path | None:
        """A path next to this cache's file, for what else a command keeps between runs; None in memory only."""
        return self.location.parent / name if self.location is not None else None

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put(self, key: str, report: dict[str, Any]) -> None:
        self._entries.pop(key, None)
        self._entries[key] = report
        while len(self._entries) > MAX_REPORTS:
            del self._entries[next(iter(self._entries))]
        self._dirty = True

    def front_matter(self) -> set[str]:
        """Keys of card front matter that read back exactly through huggingface_hub (see card.front_matter_key)."""
        return set(self._entries.get(FRONT_MATTER, {}).get("keys", []))

    def put_front_matter(self, keys: set[str]) -> None:
        if keys != self.front_matter():
            self.put(FRONT_MATTER, {"keys": sorted(keys)[-MAX_REPORTS:]})

    def save(self) -> None:
        if self.location is None or not self._dirty:
            return
        self._store.save({"entries": self._entries})
        self._dirty = False
