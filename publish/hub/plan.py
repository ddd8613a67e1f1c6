"""Plan a push: compare the files a variant should have with what its Hub revision holds. Pure.

A `Plan` is a value like huggingface_hub's commit operations: printable for `hubpub plan` / `push --dry-run`,
executable by `hubpub push`. It never talks to the network; the caller supplies both sides.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Weight files hubpub manages: a remote one that is not in the variant's folder is stale and is deleted.
MANAGED_PATTERNS = (
    "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.gguf",
)
# Never deleted, even with --prune: the Hub's LFS routing lives there.
PROTECTED = frozenset({".gitattributes"})

ADD, UPDATE, DELETE, UNCHANGED, KEEP = "add", "update", "delete", "unchanged", "keep"


@dataclass(frozen=True)
class LocalFile:
    """A file the revision must hold: from disk (`source`) or generated (`content`, e.g. the README).

    `sha256` is None while the file is still being hashed: a plan needs a file's digest only when the revision
    holds a file of the same path and size, so a first push is planned (and printed) before hashing finishes.
    """

    path: str
    size: int
    sha256: str | None
    git_oid: str | None
    source: Path | None = None
    content: bytes | None = None

    @property
    def hashed(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None


@dataclass(frozen=True)
class Change:
    path: str
    action: str
    size: int
    local: LocalFile | None = None
    remote: RemoteFile | None = None


@dataclass(frozen=True)
class Plan:
    repo_id: str
    branch: str
    parent_commit: str | None  # the branch head the plan was made against; None if the branch does not exist yet
    repo_exists: bool
    branch_exists: bool
    changes: tuple[Change, ...]
    card_only: bool = False  # the weights are not here: remote files missing locally are kept

    def having(self, *actions: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action in actions)

    @property
    def uploads(self) -> tuple[Change, ...]:
        return self.having(ADD, UPDATE)

    @property
    def deletions(self) -> tuple[Change, ...]:
        return self.having(DELETE)

    @property
    def upload_bytes(self) -> int:
        return sum(c.size for c in self.uploads)

    @property
    def is_noop(self) -> bool:
        return not self.uploads and not self.deletions

    def summary(self) -> str:
        counts = ", ".join(f"{len(self.having(a))} {a}" for a in (ADD, UPDATE, DELETE, UNCHANGED, KEEP))
        return f"{counts}; {human_bytes(self.upload_bytes)} to upload"

    def format_table(self, verbose: bool = False) -> str:
        """The plan as a table: one row per file, then the totals. Unchanged files collapse into one line unless
        `verbose`; a plan with nothing but unchanged files is that one line."""
        unchanged = self.having(UNCHANGED)
        shown = self.changes if verbose else tuple(c for c in self.changes if c.action != UNCHANGED)
        if unchanged and not shown and self.branch_exists:
            return f"{self.branch}: {_files(len(unchanged))} unchanged (-v lists them)"
        where = self.branch if self.branch_exists else f"{self.branch} (new branch)"
        if not self.repo_exists:
            where += f"; repository {self.repo_id} will be created"
        lines = [f"{self.repo_id}@{where}"]
        width = max([len(c.path) for c in shown] + [4])
        lines.append(f"  {'action':<9} {'file':<{width}} {'size':>10}")
        for change in sorted(shown, key=lambda c: (_ORDER[c.action], c.path)):
            lines.append(f"  {change.action:<9} {change.path:<{width}} {human_bytes(change.size):>10}")
        if unchanged and not verbose:
            lines.append(f"  {UNCHANGED:<9} {_files(len(unchanged))} (-v lists them)")
        lines.append(f"  {self.summary()}")
        if self.having(KEEP) and self.card_only:
            lines.append("  card-only: the weights are not on this machine; the Hub's files are kept as they are")
        elif self.having(KEEP):
            lines.append("  kept files are on the Hub but not in the variant's folder; --prune deletes them")
        return "\n".join(lines)


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


_ORDER = {ADD: 0, UPDATE: 1, DELETE: 2, KEEP: 3, UNCHANGED: 4}


def is_managed(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in MANAGED_PATTERNS)


def same_content(local: LocalFile, remote: RemoteFile) -> bool:
    """Equal by the Hub's own identity: LFS sha256 for LFS files, git blob id for regular ones."""
    if local.size != remote.size:
        return False
    if not local.hashed:
        raise ValueError(f"{local.path}: its digest is needed to compare it with the remote file of equal size")
    if remote.lfs_sha256 is not None:
        return local.sha256 == remote.lfs_sha256
    return local.git_oid is not None and local.git_oid == remote.blob_id


def needs_digest(local: Iterable[LocalFile], remote: Iterable[RemoteFile]) -> list[LocalFile]:
    """The files a plan must hash to decide: those not hashed yet that the revision holds at the same path and
    size (any other file is an add or an update whatever its content)."""
    sizes = {r.path: r.size for r in remote}
    return [f for f in local if not f.hashed and sizes.get(f.path) == f.size]


def make_plan(
    repo_id: str,
    branch: str,
    local: Sequence[LocalFile],
    remote: Iterable[RemoteFile],
    *,
    parent_commit: str | None,
    repo_exists: bool,
    branch_exists: bool,
    prune: bool = False,
    card_only: bool = False,
    digest: Callable[[LocalFile], LocalFile] | None = None,
) -> Plan:
    """Decide, file by file, what the commit must do.

    `card_only`: the weights are not here (a CI runner), so remote files missing locally are kept, never deleted.
    `digest` completes a file not hashed yet; it is asked only for files the revision holds at the same size.
    """
    remote_by_path = {r.path: r for r in remote}
    changes: list[Change] = []
    for file in local:
        existing = remote_by_path.pop(file.path, None)
        if existing is not None and existing.size == file.size and not file.hashed:
            if digest is None:
                raise ValueError(f"{file.path} must be hashed to be compared with the remote file")
            file = digest(file)
        if existing is None:
            changes.append(Change(file.path, ADD, file.size, local=file))
        elif same_content(file, existing):
            changes.append(Change(file.path, UNCHANGED, file.size, local=file, remote=existing))
        else:
            changes.append(Change(file.path, UPDATE, file.size, local=file, remote=existing))
    for path, existing in remote_by_path.items():
        if path in PROTECTED:
            continue
        stale = not card_only and (prune or is_managed(path))
        changes.append(Change(path, DELETE if stale else KEEP, existing.size, remote=existing))
    return Plan(repo_id, branch, parent_commit, repo_exists, branch_exists, tuple(changes), card_only)


def push_id(plan: Plan, additions: Sequence[LocalFile]) -> str:
    """What a push of `plan` changes, as a digest: repository, branch, each addition's path and sha256 (`additions`
    are the plan's uploads, hashed) and each deletion. A re-run of the same push carries the same id, so a commit
    whose answer was lost, or a pull request an earlier run opened, is recognised; any new content gives a new id."""
    digest = hashlib.sha256(f"{plan.repo_id}\0{plan.branch}\0".encode())
    for file in sorted(additions, key=lambda f: f.path):
        if file.sha256 is None:
            raise ValueError(f"{file.path} must be hashed to compute the push id")
        digest.update(f"add\0{file.path}\0{file.sha256}\0".encode())
    for change in sorted(plan.deletions, key=lambda c: c.path):
        digest.update(f"delete\0{change.path}\0".encode())
    return digest.hexdigest()[:32]


def push_id_in(message: str) -> str | None:
    """The push id a hubpub commit description records (`hubpub-push-id: ...`), if any."""
    match = re.search(r"^hubpub-push-id: (\S+)$", message, re.MULTILINE)
    return match[1] if match else None


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
