"""What push and plan report while they work, as values: the CLI renders them as text, progress bars or JSON,
and library callers receive the same stream through an `emit` callback.

Events are facts about progress, never instructions: a caller may ignore all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publish.hub.plan import Plan
    from publish.util.retry import RetryNotice


@dataclass(frozen=True)
class Event:
    """Base class; `text()` is the line the CLI prints for it."""

    def text(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Authenticated(Event):
    user: str
    endpoint: str

    def text(self) -> str:
        return f"authenticated as {self.user} on {self.endpoint}"


@dataclass(frozen=True)
class Checked(Event):
    summary: str

    def text(self) -> str:
        return f"checks passed: {self.summary}"


@dataclass(frozen=True)
class Planned(Event):
    plan: Plan

    def text(self, verbose: bool = False) -> str:
        return self.plan.format_table(verbose)


@dataclass(frozen=True)
class Progress(Event):
    """Bytes done of a stage ("hashing" or "uploading"), after each file."""

    stage: str
    branch: str | None
    path: str
    done: int
    total: int

    def text(self) -> str:
        from publish.hub.plan import human_bytes

        where = f"{self.branch}: " if self.branch else ""
        return f"{where}{self.stage} {self.path} ({human_bytes(self.done)} of {human_bytes(self.total)})"


@dataclass(frozen=True)
class Retrying(Event):
    """A failed request is sent again after `wait` seconds (publish/util/retry.py's policy)."""

    what: str
    reason: str
    wait: float
    attempt: int
    attempts: int

    def text(self) -> str:
        return f"retrying in {self.wait:g} s ({self.attempt}/{self.attempts}): {self.reason} while trying to {self.what}"


def retries_to(emit: Emit) -> Callable[[RetryNotice], None]:
    """A Retrier's `announce` that emits each wait as a Retrying event."""

    def announce(notice: RetryNotice) -> None:
        emit(Retrying(notice.what, notice.reason, notice.wait, notice.attempt, notice.attempts))

    return announce


@dataclass(frozen=True)
class Committed(Event):
    branch: str
    commit: str
    url: str

    def text(self) -> str:
        return f"{self.branch}: committed {self.url}"


@dataclass(frozen=True)
class PullRequestOpened(Event):
    """A variant's commit went to a Hub pull request against its branch (`existing`: opened by an earlier run of
    the same push, so no new one was opened)."""

    branch: str
    num: int
    url: str
    revision: str  # refs/pr/N
    commit: str
    existing: bool = False

    def text(self) -> str:
        if self.existing:
            return f"{self.branch}: pull request #{self.num} already holds these changes: {self.url} (no new one opened)"
        return f"{self.branch}: opened pull request #{self.num} against {self.branch}: {self.url}"


@dataclass(frozen=True)
class TokenRenewed(Event):
    """A Trusted Publisher's Hub token ran out (or was about to) and a new one was exchanged."""

    before: str  # what hubpub was about to do
    why: str

    def text(self) -> str:
        return f"the Trusted Publisher's Hub token {self.why}; exchanged a new one before trying to {self.before}"


@dataclass(frozen=True)
class Unchanged(Event):
    branch: str
    verified: str | None = None  # the branch's commit, when an earlier push left it unverified and this one did

    def text(self) -> str:
        if self.verified:
            return f"{self.branch}: unchanged, verified {self.verified[:12]} (an earlier push left it unverified)"
        return f"{self.branch}: unchanged; no commit made"


@dataclass(frozen=True)
class Verified(Event):
    branch: str
    commit: str

    def text(self) -> str:
        return f"{self.branch}: verified {self.commit[:12]}: files, sizes, sha256s and safetensors headers match"


@dataclass(frozen=True)
class Tagged(Event):
    branch: str
    tag: str
    commit: str
    created: bool

    def text(self) -> str:
        done = "tagged" if self.created else "already tagged"
        return f"{self.branch}: {done} {self.commit[:12]} as {self.tag}"


@dataclass(frozen=True)
class Note(Event):
    branch: str | None
    message: str

    def text(self) -> str:
        return f"{self.branch}: {self.message}" if self.branch else self.message


Emit = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default `emit`: library callers that want no events get none."""
