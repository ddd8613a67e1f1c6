"""Release tags on the Hub: one per variant (Hub tags are repository-wide), never moved once they name a commit."""

from __future__ import annotations

from publish.errors import TagConflict
from publish.hub.plan import Plan
from publish.hub.state import RemoteState


def release_tag(tag: str, branch: str) -> str:
    """Hub tags are repository-wide, so each variant's release commit gets its own: v1.0.0-gs128."""
    return f"{tag}-{branch}"


def refuse_moving_tag(repo_id: str, tag: str, state: RemoteState, planned: Plan | None = None) -> None:
    """A release tag is created, or accepted when it already names the commit this push leaves the branch at;
    anything else is refused before a commit is made, never silently left pointing elsewhere. Without the plan,
    only what the branch's state already rules out: a tag on another commit than the branch's head."""
    existing = state.tags.get(tag)
    if existing is None or (existing == state.head and (planned is None or planned.is_noop)):
        return
    raise TagConflict(
        f"tag {tag!r} of {repo_id} already names commit {existing[:12]}, not the commit this push makes; "
        "nothing was committed",
        hint="release under a new version, or delete the old tag on the Hub first if it was a mistake",
    )
