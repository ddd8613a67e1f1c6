"""`hubpub plan` and `hubpub push`: check, render, plan, commit once per variant, verify, tag.

Each variant's revision ends up holding exactly its own files: the checkpoint folder's files, the rendered README
and the manifest's shared files (quantize.py, log.txt). Unchanged files are skipped by content identity, stale
weight files are deleted in the same commit, and the commit is made only if the branch has not moved. Progress is
reported through `emit` as it happens (see events.py): a failure in a later variant never hides an earlier one's
landed commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..card import make_environment, render_card
from ..errors import CheckpointError, ChecksFailed, HubError, TagConflict
from ..events import (
    Authenticated,
    Checked,
    Committed,
    Emit,
    Note,
    Planned,
    Progress,
    Tagged,
    Unchanged,
    Verified,
    ignore,
)
from ..hashcache import HashCache
from ..hub import Commit, Hub, RemoteState
from ..localfiles import file_set, hashed, walk
from ..manifest import Manifest, Variant
from ..plan import LocalFile, Plan, make_plan
from ..provenance import Provenance, read_provenance
from ..report import Report, agreed_facts, examine
from ..reportcache import ReportCache
from ..verify import verify


@dataclass(frozen=True)
class VariantPush:
    branch: str
    plan: Plan
    commit: Commit | None = None
    tag: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushResult:
    variants: tuple[VariantPush, ...]
    hashed_bytes: int = 0


@dataclass(frozen=True)
class Options:
    """How to push, beyond which variants: one value, so the per-variant step takes it whole."""

    dry_run: bool = False
    prune: bool = False
    card_only: bool = False
    message: str | None = None
    tag: str | None = None


def plan(
    manifest: Manifest, hub: Hub, branch: str | None = None, *, cache: HashCache | None = None, prune: bool = False,
    card_only: bool = False, report_cache: ReportCache | None = None, emit: Emit = ignore,
) -> PushResult:
    """Compare each selected variant with its remote revision; upload nothing."""
    return push(manifest, hub, branch, cache=cache, prune=prune, dry_run=True, card_only=card_only,
                report_cache=report_cache, emit=emit)


def push(
    manifest: Manifest,
    hub: Hub,
    branch: str | None = None,
    *,
    cache: HashCache | None = None,
    dry_run: bool = False,
    prune: bool = False,
    card_only: bool = False,
    message: str | None = None,
    tag: str | None = None,
    report_cache: ReportCache | None = None,
    emit: Emit = ignore,
) -> PushResult:
    """Publish each selected variant to its own branch in one verified commit (or, with dry_run, only plan).

    Every selected variant's folder must exist. With `card_only`, no weights are sent: the weights already on each
    Hub revision are checked from their headers and left untouched; only the README and the small shared files
    are pushed. `tag` names a release: each variant's resulting commit gets the Hub tag `<tag>-<branch>`.
    """
    cache = cache or HashCache(None)
    options = Options(dry_run, prune, card_only, message, tag)
    variants = manifest.select(branch)
    hub.emit = emit
    if not dry_run:
        emit(Authenticated(hub.require_write_token(), hub.endpoint))
    if not card_only:
        _require_folders(manifest, variants)
    # Walked once: unsafe files are refused before any request, and the same paths are hashed and uploaded.
    walked = {v.branch: [] if card_only else walk(manifest.variant_path(v).resolve()) for v in variants}
    # Hash while the checks run: both take seconds on real weights, and hashing releases the GIL.
    hashing = cache.prefetch([path for paths in walked.values() for path in paths], progress=_hash_progress(emit))
    try:
        report = _checked(manifest, variants, hub, report_cache, card_only)
    except BaseException:
        hashing.cancel()
        raise
    hashing.wait()
    emit(Checked(report.summary()))
    facts = agreed_facts(manifest, report.facts())
    env = make_environment(manifest.root / "templates")
    provenance = read_provenance(manifest.root)
    results = []
    try:
        for variant in variants:
            card = render_card(manifest, variant, env=env, facts=facts, provenance=provenance)
            files = file_set(manifest, variant, card, walked[variant.branch])
            notes = files.notes
            if card_only:
                notes = ("card-only: the weights on the Hub revision were checked and are left as they are", *notes)
            for note in notes:
                emit(Note(variant.branch, note))
            local = hashed(files, cache)
            results.append(_push_variant(manifest, variant, local, hub, options, provenance, report, notes, emit))
    finally:
        cache.save()
    return PushResult(tuple(results), cache.hashed_bytes)


def _require_folders(manifest: Manifest, variants: Sequence[Variant]) -> None:
    """A missing folder is a mistake (a typo in `path:`), never a silent card-only push."""
    for variant in variants:
        folder = manifest.variant_path(variant)
        if not folder.is_dir():
            raise CheckpointError(
                f"variant {variant.branch!r}: checkpoint folder {folder} does not exist",
                file=manifest.source, field="path",
                hint="fix the variant's `path:`, or mount the weights; to publish only the card (the weights must "
                     "already be on the Hub revision), pass --card-only",
            )


def _hash_progress(emit: Emit) -> Callable[[Path, int, int], None]:
    def report(path: Path, done: int, total: int) -> None:
        emit(Progress("hashing", None, path.name, done, total))

    return report


def _checked(
    manifest: Manifest, variants: tuple[Variant, ...], hub: Hub, report_cache: ReportCache | None, card_only: bool
) -> Report:
    """Examine the variants (reusing reports of unchanged checkpoints; card-only: on their Hub revisions); any
    error-level finding stops the push before anything is created or uploaded."""
    report = examine(manifest, variants, hub=hub, cache=report_cache, reuse=True, remote=card_only)
    for checked in report.variants:
        if card_only and not checked.ok and checked.source == "missing":
            raise HubError(
                f"variant {checked.branch!r}: --card-only, but {manifest.repo_id}@{checked.branch} holds no "
                "weights to describe", hint="push the weights first (without --card-only), from the machine "
                "that has them",
            )
    if not report.ok:
        raise ChecksFailed(
            "checks failed; nothing was sent to the Hub\n" + report.format_text(),
            hint="fix the findings above (run `hubpub check` to see them again)",
        )
    return report


def _push_variant(
    manifest: Manifest,
    variant: Variant,
    local: Sequence[LocalFile],
    hub: Hub,
    options: Options,
    provenance: Provenance,
    report: Report,
    notes: tuple[str, ...],
    emit: Emit,
) -> VariantPush:
    repo_id, branch = manifest.repo_id, variant.branch
    state = hub.remote_state(repo_id, branch)
    if not options.dry_run:
        if not state.repo_exists:
            hub.ensure_repo(repo_id, manifest.private)
            state = hub.remote_state(repo_id, branch)
        if not state.branch_exists:
            # Start from the first commit (only .gitattributes): a new branch inherits no other variant's files.
            head = hub.create_branch(repo_id, branch, state.start)
            state = RemoteState(True, True, head, None, hub.files_at(repo_id, head), state.tags)
    planned = _plan(manifest, variant, local, state, options)
    emit(Planned(planned))
    tag = release_tag(options.tag, branch) if options.tag else None
    if tag:
        _refuse_moving_tag(repo_id, tag, state, planned)
    if options.dry_run:
        return VariantPush(branch, planned, tag=tag, notes=notes)
    if planned.is_noop:
        emit(Unchanged(branch))
        if tag and state.head:
            _tag(hub, repo_id, branch, tag, state.head, state, emit)
        return VariantPush(branch, planned, None, tag, (*notes, "unchanged: nothing to commit"))
    _upload(hub, planned, emit)
    title = options.message or f"Publish {branch} with hubpub {__version__}"
    commit = hub.commit(
        repo_id, branch,
        additions=[c.local for c in planned.uploads if c.local is not None],
        deletions=[c.path for c in planned.deletions],
        parent=planned.parent_commit or "",
        title=title,
        description=_description(planned, provenance, report.summary(), uuid.uuid4().hex),
    )
    emit(Committed(branch, commit.oid, commit.url))
    verify(hub, planned, commit.oid, local)
    emit(Verified(branch, commit.oid))
    if tag:
        _tag(hub, repo_id, branch, tag, commit.oid, state, emit)
    return VariantPush(branch, planned, commit, tag, notes)


def _upload(hub: Hub, planned: Plan, emit: Emit) -> None:
    """Send the LFS content file by file before the commit, reporting each; the commit then sends pointers."""
    uploads = [c.local for c in planned.uploads if c.local is not None and c.local.source is not None]
    total, done = sum(f.size for f in uploads), 0
    for file in uploads:
        hub.upload_objects(planned.repo_id, planned.branch, [file])
        done += file.size
        emit(Progress("uploading", planned.branch, file.path, done, total))


def release_tag(tag: str, branch: str) -> str:
    """Hub tags are repository-wide, so each variant's release commit gets its own: v1.0.0-gs128."""
    return f"{tag}-{branch}"


def _refuse_moving_tag(repo_id: str, tag: str, state: RemoteState, planned: Plan) -> None:
    """A release tag is created, or accepted when it already names the commit this push leaves the branch at;
    anything else is refused before a commit is made, never silently left pointing elsewhere."""
    existing = state.tags.get(tag)
    if existing is None or (planned.is_noop and existing == state.head):
        return
    raise TagConflict(
        f"tag {tag!r} of {repo_id} already names commit {existing[:12]}, not the commit this push makes; "
        "nothing was committed",
        hint="release under a new version, or delete the old tag on the Hub first if it was a mistake",
    )


def _tag(hub: Hub, repo_id: str, branch: str, tag: str, commit: str, state: RemoteState, emit: Emit) -> None:
    created = tag not in state.tags
    if created:
        hub.create_tag(repo_id, tag, commit, f"hubpub release {tag}")
    emit(Tagged(branch, tag, commit, created))


def _plan(manifest: Manifest, variant: Variant, local: Sequence[LocalFile], state: RemoteState, options: Options
          ) -> Plan:
    return make_plan(
        manifest.repo_id, variant.branch, local, state.files,
        parent_commit=state.head or state.start, repo_exists=state.repo_exists,
        branch_exists=state.branch_exists, prune=options.prune, card_only=options.card_only,
    )


def _description(planned: Plan, provenance: Provenance, checks: str, push_id: str) -> str:
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
