"""The words a push leaves behind: each commit's description, and what landed when a push stops midway. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from publish.card.provenance import Provenance
    from publish.hub.client import Commit
    from publish.hub.plan import Plan


def commit_description(planned: Plan, provenance: Provenance, checks: str, push_id: str) -> str:
    """The commit's description: hubpub's version, the manifest's git state, the checks, the files, the push id."""
    source = "not in git"
    if provenance.commit:
        source = provenance.commit
        if provenance.tag:
            source += f" (tag {provenance.tag})"
        source += ", uncommitted changes" if provenance.dirty else ", clean"
    return "\n".join([
        f"Published by hubpub {provenance.version}.",
        f"Source: {source}",
        f"Checks: {checks}",
        f"Files: {planned.summary()}",
        f"hubpub-push-id: {push_id}",
    ])


def what_landed(done: Sequence[tuple[str, Commit | None]], stopped: tuple[str, Commit | None],
                rest: Sequence[str]) -> str:
    """Variant by variant, what a push that stopped left on the Hub: the variants it finished (their commit or pull
    request, or nothing when unchanged), the one it stopped in (committed but not verified, or no commit), and those
    it had not committed yet."""
    lines = [f"  {branch}: {_landed(commit, 'verified')}" for branch, commit in done]
    branch, commit = stopped
    if commit is not None:
        lines.append(f"  {branch}: {_landed(commit, 'NOT verified (run `hubpub plan` to compare)')}")
    else:
        lines.append(f"  {branch}: no commit made (LFS objects uploaded so far stay on the Hub unreferenced, and the "
                     "next run does not upload them again)")
    lines += [f"  {branch}: not committed" for branch in rest]
    return "what landed:\n" + "\n".join(lines)


def _landed(commit: Commit | None, verified: str) -> str:
    if commit is None:
        return "unchanged, nothing to land"
    if commit.pull_request is not None:
        return f"landed as pull request #{commit.pull_request.num} ({commit.pull_request.url}), {verified}"
    return f"landed, commit {commit.oid[:12]} ({commit.url}), {verified}"
