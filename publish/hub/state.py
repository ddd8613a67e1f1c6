"""What a Hub repository holds, read once per push: the value a plan is made against.

`RemoteRepo` reads a repository's branches and tags with one request, its first commit (where new branches start)
with one more only when a branch must be created, and the files at a commit with one request per commit. What the
push changes itself (the repository and branches it creates, its commits and tags) is recorded as it happens, so
nothing is read twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from publish.hub.plan import RemoteFile

if TYPE_CHECKING:
    from publish.hub.client import Hub


@dataclass(frozen=True)
class RemoteState:
    """What a branch holds now, or, for a branch that does not exist yet, what it would start from."""

    repo_exists: bool
    branch_exists: bool
    head: str | None  # the branch head; None if the branch does not exist
    start: str | None  # the commit a new branch starts from: the repository's first commit
    files: tuple[RemoteFile, ...]
    tags: Mapping[str, str] = field(default_factory=dict)  # tag -> the commit it names

    @property
    def parent(self) -> str | None:
        """The commit the branch will be at when the push commits: its head, or the start of a new branch."""
        return self.head or self.start


@dataclass(frozen=True)
class PullRequest:
    """A Hub pull request against a branch; its commits live on `revision` (refs/pr/N)."""

    num: int
    url: str
    revision: str
    head: str = ""  # the newest commit on refs/pr/N, when known
    push_id: str | None = None  # what its newest commit's description records


@dataclass(frozen=True)
class Refs:
    heads: dict[str, str]  # branch -> commit
    tags: dict[str, str]  # tag -> commit


class RemoteRepo:
    """One repository's remote state for the length of a push (see the module docstring)."""

    def __init__(self, hub: Hub, repo_id: str) -> None:
        self.hub, self.repo_id = hub, repo_id
        self._refs: Refs | None = None
        self._read = False
        self._first: str | None = None
        self._files: dict[str, tuple[RemoteFile, ...]] = {}

    def state(self, branch: str) -> RemoteState:
        refs = self.refs()
        if refs is None:
            return RemoteState(False, False, None, None, ())
        head = refs.heads.get(branch)
        if head is not None:
            return RemoteState(True, True, head, None, self.files(head), dict(refs.tags))
        start = self.first_commit()
        return RemoteState(True, False, None, start, self.files(start) if start else (), dict(refs.tags))

    def refs(self) -> Refs | None:
        """The branches and tags; None when the repository does not exist."""
        if not self._read:
            self._refs, self._read = self.hub.refs(self.repo_id), True
        return self._refs

    def first_commit(self) -> str | None:
        """The repository's first commit ("initial commit": only .gitattributes), where new branches start."""
        refs = self.refs()
        if self._first is None and refs is not None and refs.heads:
            branch = "main" if "main" in refs.heads else next(iter(refs.heads))
            history = self.hub.history(self.repo_id, branch)
            self._first = history[-1] if history else None
        return self._first

    def files(self, commit: str) -> tuple[RemoteFile, ...]:
        if commit not in self._files:
            self._files[commit] = self.hub.files_at(self.repo_id, commit)
        return self._files[commit]

    # -- what the push itself changed ---------------------------------------------------------------------------

    def created(self) -> None:
        """The push created the repository: its history is its first commit on main (one request)."""
        history = self.hub.history(self.repo_id, "main")
        self._refs, self._read = Refs({"main": history[0]} if history else {}, {}), True
        self._first = history[-1] if history else None

    def branched(self, branch: str, start: str | None) -> None:
        """The push created `branch` at `start` (None: where the Hub chose, read again when asked)."""
        if start is None:
            self._read = False
        else:
            self._change().heads[branch] = start

    def committed(self, branch: str, commit: str) -> None:
        self._change().heads[branch] = commit

    def tagged(self, tag: str, commit: str) -> None:
        self._change().tags[tag] = commit

    def _change(self) -> Refs:
        refs = self.refs()
        if refs is None:
            raise ValueError(f"{self.repo_id} does not exist: record its creation first")
        return refs
