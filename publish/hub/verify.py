"""After a commit: does the new revision hold exactly what was planned, byte for byte and header for header?"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from publish.checkpoint.read import tensor_table
from publish.errors import HubError
from publish.hub.plan import DELETE, KEEP, LocalFile, Plan, push_id_in, same_content
from publish.util.jsonstore import JsonStore

if TYPE_CHECKING:
    from publish.hub.client import Commit, Hub


class VerifiedCommits:
    """The commits this machine has verified, kept beside the hash cache (None: in memory only), so that a push
    finding its branch at a hubpub commit nobody verified (the verification failed after it landed) verifies it."""

    def __init__(self, location: Path | None) -> None:
        self._store = JsonStore(location, 1)
        self._commits: set[str] = set(self._store.load().get("commits", []))

    def __contains__(self, commit: object) -> bool:
        return commit in self._commits

    def unverified(self, hub: Hub, repo_id: str, commit: str) -> bool:
        """Is `commit` one hubpub made (its description carries a push id) that was never verified?"""
        return commit not in self._commits and push_id_in(hub.commit_message(repo_id, commit)) is not None

    def add(self, commit: str) -> None:
        self._commits.add(commit)
        self._store.save({"commits": sorted(self._commits)})


def verify(hub: Hub, planned: Plan, commit: str, local: Sequence[LocalFile], *, every_header: bool = False) -> None:
    """The new revision (a commit, or a pull request's refs/pr/N) must hold exactly the planned files,
    byte-identical, with the same safetensors headers (of the uploaded files; `every_header`: of every file, for a
    commit this push did not make)."""
    remote = {f.path: f for f in hub.files_at(planned.repo_id, commit)}
    kept = {c.path for c in planned.changes if c.action == KEEP}
    problems = []
    for file in local:
        found = remote.get(file.path)
        if found is None:
            problems.append(f"{file.path} is missing")
        elif not same_content(file, found):
            problems.append(f"{file.path} differs (size {found.size}, expected {file.size})")
    expected = {f.path for f in local} | kept | {".gitattributes"}
    problems += [f"{path} should not be there" for path in sorted(set(remote) - expected)]
    problems += [f"{c.path} was not deleted" for c in planned.changes if c.action == DELETE and c.path in remote]
    # Equal sha256s already prove unchanged shards identical; the Hub's reading of each uploaded shard's header
    # is checked too (one Range request per shard).
    uploaded = {f.path for f in local} if every_header else {c.path for c in planned.uploads}
    if not problems:
        problems += header_problems(hub, planned.repo_id, commit, [f for f in local if f.path in uploaded])
    if problems:
        where = commit if commit.startswith("refs/") else f"commit {commit[:12]}"
        raise HubError(
            f"{planned.repo_id}@{planned.branch} ({where}) does not match what was pushed:\n  - "
            + "\n  - ".join(problems),
            hint="run `hubpub plan` to see the difference, then push again",
        )


def header_problems(hub: Hub, repo_id: str, commit: str, files: Sequence[LocalFile]) -> list[str]:
    """Each safetensors file of `files` whose header, as the Hub serves it, differs from the local one."""
    from huggingface_hub import parse_local_safetensors_file_metadata

    problems = []
    for file in files:
        if not file.path.endswith(".safetensors") or file.source is None:
            continue
        remote = tensor_table(hub.file_header(repo_id, file.path, commit))
        if remote != tensor_table(parse_local_safetensors_file_metadata(file.source)):
            problems.append(f"{file.path}: the remote safetensors header differs from the local one")
    return problems


def verify_landed(hub: Hub, planned: Plan, commit: Commit, local: Sequence[LocalFile], verified: VerifiedCommits, *,
                  revision: str | None = None, every_header: bool = False) -> None:
    """`verify` a commit that has landed (at `revision`: a pull request's refs/pr/N) and record it in `verified`.
    A Hub failure while reading it back names the commit and says it is not verified yet."""
    try:
        verify(hub, planned, revision or commit.oid, local, every_header=every_header)
    except HubError as error:
        if error.__cause__ is None:  # verification ran and found a difference: that message says so
            raise
        raise HubError(
            f"{planned.branch}: commit {commit.oid[:12]} is on the branch ({commit.url}) but is not verified yet: "
            f"{error.message}",
            hint=f"push again later (`hubpub push --branch {planned.branch}`): it verifies that commit first and "
                 "uploads nothing twice",
        ) from error
    verified.add(commit.oid)
