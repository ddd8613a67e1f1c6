"""`hubpub plan` and `hubpub push`: check, render, plan, commit once per variant, verify.

Each variant's revision ends up holding exactly its own files: the checkpoint folder's files, the rendered README
and the manifest's shared files (quantize.py, log.txt). Unchanged files are skipped by content identity, stale
weight files are deleted in the same commit, and the commit is made only if the branch has not moved.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .. import __version__
from ..card import make_environment, render_card
from ..errors import ChecksFailed
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
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PushResult:
    variants: tuple[VariantPush, ...]
    hashed_bytes: int = 0


def plan(
    manifest: Manifest, hub: Hub, branch: str | None = None, *, cache: HashCache | None = None, prune: bool = False,
    checks_cache: ReportCache | None = None,
) -> PushResult:
    """Compare each selected variant with its remote revision; upload nothing."""
    return push(manifest, hub, branch, cache=cache, prune=prune, dry_run=True, checks_cache=checks_cache)


def push(
    manifest: Manifest,
    hub: Hub,
    branch: str | None = None,
    *,
    cache: HashCache | None = None,
    dry_run: bool = False,
    prune: bool = False,
    message: str | None = None,
    tag: str | None = None,
    checks_cache: ReportCache | None = None,
) -> PushResult:
    """Publish each selected variant to its own branch in one verified commit (or, with dry_run, only plan).

    A variant whose folder is absent is published card-only: its weights are checked on the Hub revision and
    left untouched; only the README and the small shared files are sent. `tag` names a release: each variant's
    resulting commit gets the Hub tag `<tag>-<branch>`.
    """
    cache = cache or HashCache(None)
    variants = manifest.select(branch)
    if not dry_run:
        hub.require_token()
    # Walked once: unsafe files are refused before any request, and the same paths are hashed and uploaded.
    folders = {v.branch: manifest.variant_path(v).resolve() for v in variants}
    walked = {branch: walk(folder) if folder.is_dir() else [] for branch, folder in folders.items()}
    # Hash while the checks run: both take seconds on real weights, and hashing releases the GIL.
    hashing = cache.prefetch([path for paths in walked.values() for path in paths])
    try:
        report = _checked(manifest, branch, hub, checks_cache)
    except BaseException:
        hashing.cancel()
        raise
    hashing.wait()
    facts = agreed_facts(manifest, report.facts())
    env = make_environment(manifest.root / "templates")
    provenance = read_provenance(manifest.root)
    summary = report.summary()
    results = []
    try:
        for variant, checked in zip(variants, report.variants, strict=True):
            card = render_card(manifest, variant, env=env, facts=facts, provenance=provenance)
            card_only = checked.source == "remote"
            files = file_set(manifest, variant, card, walked[variant.branch])
            local, file_notes = hashed(files, cache), files.notes
            if card_only:
                card_note = (f"no weights at {manifest.variant_path(variant)}: card-only push; the weights on "
                             "the Hub revision were checked and are left as they are")
                file_notes = (card_note, *file_notes)
            results.append(
                _push_variant(manifest, variant, local, hub, dry_run=dry_run, prune=prune, message=message,
                              provenance=provenance, checks=summary, notes=file_notes,
                              card_only=card_only, tag=tag)
            )
    finally:
        cache.save()
    return PushResult(tuple(results), cache.hashed_bytes)


def _checked(manifest: Manifest, branch: str | None, hub: Hub, checks_cache: ReportCache | None) -> Report:
    """Examine the variants (reusing reports of unchanged checkpoints); any error-level finding stops the push
    before a single byte is uploaded."""
    report = examine(manifest, manifest.select(branch), hub=hub, cache=checks_cache, reuse=True)
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
    *,
    dry_run: bool,
    prune: bool,
    message: str | None,
    provenance: Provenance,
    checks: str,
    notes: tuple[str, ...],
    card_only: bool = False,
    tag: str | None = None,
) -> VariantPush:
    repo_id = manifest.repo_id
    if dry_run:
        state = hub.remote_state(repo_id, variant.branch)
        return VariantPush(variant.branch, _plan(manifest, variant, local, state, prune, card_only), notes=notes)
    state = hub.remote_state(repo_id, variant.branch)
    if not state.repo_exists:
        hub.ensure_repo(repo_id, manifest.private)
        state = hub.remote_state(repo_id, variant.branch)
    if not state.branch_exists:
        # Start from the first commit (only .gitattributes): a new branch inherits no other variant's files.
        head = hub.create_branch(repo_id, variant.branch, state.start)
        state = RemoteState(True, True, head, None, hub.files_at(repo_id, head))
    planned = _plan(manifest, variant, local, state, prune, card_only)
    if planned.is_noop:
        if tag and state.head:
            notes = (*notes, _tag(hub, repo_id, variant.branch, tag, state.head))
        return VariantPush(variant.branch, planned, None, (*notes, "unchanged: nothing to commit"))
    push_id = uuid.uuid4().hex
    title = message or f"Publish {variant.branch} with hubpub {__version__}"
    commit = hub.commit(
        repo_id, variant.branch,
        additions=[c.local for c in planned.uploads if c.local is not None],
        deletions=[c.path for c in planned.deletions],
        parent=planned.parent_commit or "",
        title=title,
        description=_description(planned, provenance, checks, push_id),
    )
    verify(hub, planned, commit.oid, local)
    if tag:
        notes = (*notes, _tag(hub, repo_id, variant.branch, tag, commit.oid))
    return VariantPush(variant.branch, planned, commit, notes)


def release_tag(tag: str, branch: str) -> str:
    """Hub tags are repository-wide, so each variant's release commit gets its own: v1.0.0-gs128."""
    return f"{tag}-{branch}"


def _tag(hub: Hub, repo_id: str, branch: str, tag: str, commit: str) -> str:
    name = release_tag(tag, branch)
    hub.create_tag(repo_id, name, commit, f"hubpub release {tag} of {branch}")
    return f"tagged {commit[:12]} as {name}"


def _plan(
    manifest: Manifest, variant: Variant, local: Sequence[LocalFile], state: RemoteState, prune: bool,
    card_only: bool,
) -> Plan:
    return make_plan(
        manifest.repo_id, variant.branch, local, state.files,
        parent_commit=state.head or state.start, repo_exists=state.repo_exists,
        branch_exists=state.branch_exists, prune=prune, card_only=card_only,
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
