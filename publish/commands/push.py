"""`hubpub plan` and `hubpub push`: check, render, plan, commit once per variant, verify, tag.

Each variant's revision ends up holding exactly its own files: the checkpoint folder's files, the rendered README
and the manifest's shared files (quantize.py, log.txt). Unchanged files are skipped by content identity, stale
weight files are deleted in the same commit, and the commit is made only if the branch has not moved. Progress is
reported through `emit` as it happens (see events.py): a failure in a later variant never hides an earlier one's
landed commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from publish import __version__
from publish.card.provenance import Provenance, read_provenance
from publish.card.render import make_environment, render_card
from publish.checkpoint.report import Report, agreed_facts, examine
from publish.checkpoint.reportcache import ReportCache
from publish.errors import CheckpointError, ChecksFailed, HubError, TagConflict, TokenRenewalError, UsageError
from publish.events import (
    Authenticated,
    Checked,
    Committed,
    Emit,
    Note,
    Planned,
    Progress,
    PullRequestOpened,
    Tagged,
    Unchanged,
    Verified,
    ignore,
)
from publish.hub.client import Commit, Hub, PullRequest, RemoteState
from publish.hub.hashcache import HashCache, Prefetch
from publish.hub.localfiles import file_set, shared_files, unhashed, walk, with_digest
from publish.hub.plan import LocalFile, Plan, make_plan, push_id
from publish.hub.verify import verify
from publish.manifest.kldartifact import resolve as resolve_kld
from publish.manifest.model import Manifest
from publish.manifest.sharedfiles import unlisted
from publish.manifest.variant import Variant

# LFS uploads in flight at once, as huggingface_hub's own commit does a few at a time.
UPLOAD_WORKERS = 4


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
    create_pr: bool = False


def plan(
    manifest: Manifest, hub: Hub, branch: str | None = None, *, cache: HashCache | None = None, prune: bool = False,
    card_only: bool = False, create_pr: bool = False, report_cache: ReportCache | None = None, emit: Emit = ignore,
) -> PushResult:
    """Compare each selected variant with its remote revision; upload nothing. With `create_pr`, also say whether
    an open pull request already holds the changes."""
    return push(manifest, hub, branch, cache=cache, prune=prune, dry_run=True, card_only=card_only,
                create_pr=create_pr, report_cache=report_cache, emit=emit)


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
    create_pr: bool = False,
    report_cache: ReportCache | None = None,
    emit: Emit = ignore,
) -> PushResult:
    """Publish each selected variant to its own branch in one verified commit (or, with dry_run, only plan).

    Every selected variant's folder must exist. With `card_only`, no weights are sent: the weights already on each
    Hub revision are checked from their headers and left untouched; only the README and the small shared files
    are pushed. `tag` names a release: each variant's resulting commit gets the Hub tag `<tag>-<branch>`. With
    `create_pr`, each changed variant's commit opens a Hub pull request against its branch instead (refs/pr/N,
    verified there), and a re-run finds the pull request its push id already opened instead of opening another.
    """
    if tag and create_pr:
        raise UsageError("--tag cannot be combined with --create-pr: a pull request's commit is on no branch yet",
                         hint="merge the pull requests on the Hub, then tag with `hubpub push --tag RELEASE` (it "
                              "commits nothing when the branch already holds the variant)")
    cache = cache or HashCache(None)
    options = Options(dry_run, prune, card_only, message, tag, create_pr)
    variants = manifest.select(branch)
    for warning in unlisted(manifest.root, manifest.files, manifest.source.name):
        emit(Note(None, warning))
    manifest = resolve_kld(manifest)  # the card's KLD figures come from kld.json, when the manifest names one
    hub.emit = emit
    if not dry_run:
        emit(Authenticated(hub.require_write_token(), hub.endpoint))
    if not card_only:
        _require_folders(manifest, variants)
    # Walked once: unsafe files are refused before any request but the token check, and the same paths are hashed
    # and uploaded.
    walked = {v.branch: [] if card_only else walk(manifest.variant_path(v).resolve(), cache, manifest.excludes(v))
              for v in variants}
    # Hashing runs in the background from here on: during the checks, and later alongside the uploads, which take
    # each file as soon as its digest is known.
    shared = shared_files(manifest, cache)
    hashing = cache.prefetch([*(path for paths in walked.values() for path in paths), *shared.values()],
                             progress=_hash_progress(emit))
    try:
        report = _checked(manifest, variants, hub, report_cache, card_only)
        emit(Checked(report.summary()))
        facts = agreed_facts(manifest, report.facts())
        env = make_environment(manifest.root / "templates")
        provenance = read_provenance(manifest.root)
        results = []
        for variant in variants:
            card = render_card(manifest, variant, env=env, facts=facts, provenance=provenance)
            files = file_set(manifest, variant, card, walked[variant.branch], shared)
            notes = files.notes
            if card_only:
                notes = ("card-only: the weights on the Hub revision were checked and are left as they are", *notes)
            for note in notes:
                emit(Note(variant.branch, note))
            step = _VariantStep(manifest, variant, unhashed(files), hub, options, hashing, emit)
            try:
                results.append(step.run(provenance, report, notes))
            except TokenRenewalError as error:  # say what landed before the token ran out
                raise TokenRenewalError(f"{error.message}\n{_landed(results, variants, step)}",
                                        hint=f"{error.hint}; then push again: what landed is skipped") from None
        # A push has consumed every digest by now; a plan needs only those of files it had to compare.
        if dry_run:
            hashing.cancel()
        else:
            hashing.wait()
    except BaseException:
        hashing.cancel()
        raise
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


@dataclass
class _VariantStep:
    """One variant's push: plan against its revision, upload each file as soon as it is hashed, commit once,
    verify, tag."""

    manifest: Manifest
    variant: Variant
    local: list[LocalFile]
    hub: Hub
    options: Options
    hashing: Prefetch
    emit: Emit
    landed: Commit | None = None  # set as soon as the commit is made, before it is verified

    def digest(self, file: LocalFile) -> LocalFile:
        """`file` with its digest, waiting for the background hashing if it is not done yet."""
        if file.hashed or file.source is None:
            return file
        return with_digest(file, self.hashing.result(file.source))

    def run(self, provenance: Provenance, report: Report, notes: tuple[str, ...]) -> VariantPush:
        repo_id, branch, options, hub = self.manifest.repo_id, self.variant.branch, self.options, self.hub
        state = hub.remote_state(repo_id, branch)
        tag = release_tag(options.tag, branch) if options.tag else None
        if tag:
            _refuse_moving_tag(repo_id, tag, state)  # before a branch is created for a release that cannot be
        if not options.dry_run:
            if not state.repo_exists:
                hub.ensure_repo(repo_id, self.manifest.private)
                state = hub.remote_state(repo_id, branch)
            if not state.branch_exists:
                # Start from the first commit (only .gitattributes): a new branch inherits no other variant's files.
                head = hub.create_branch(repo_id, branch, state.start)
                state = RemoteState(True, True, head, None, hub.files_at(repo_id, head), state.tags)
        planned = make_plan(
            repo_id, branch, self.local, state.files, parent_commit=state.head or state.start,
            repo_exists=state.repo_exists, branch_exists=state.branch_exists, prune=options.prune,
            card_only=options.card_only, digest=self.digest,
        )
        self.emit(Planned(planned))
        if tag:
            _refuse_moving_tag(repo_id, tag, state, planned)
        if options.create_pr and not planned.is_noop:
            existing = self._opened_before(planned)
            if existing is not None:
                return existing
            if options.dry_run:
                self.emit(Note(branch, f"push --create-pr opens a pull request against {branch} with these changes; "
                                       "the branch stays as it is until it is merged"))
        if options.dry_run:
            return VariantPush(branch, planned, tag=tag, notes=notes)
        if planned.is_noop:
            self.emit(Unchanged(branch))
            if tag and state.head:
                _tag(hub, repo_id, branch, tag, state.head, state, self.emit)
            return VariantPush(branch, planned, None, tag, (*notes, "unchanged: nothing to commit"))
        additions = self._upload(planned)
        local = [self.digest(file) for file in self.local]
        commit = hub.commit(
            repo_id, branch, additions=additions, deletions=[c.path for c in planned.deletions],
            parent=planned.parent_commit or "",
            title=options.message or f"Publish {branch} with hubpub {__version__}",
            description=_description(planned, provenance, report.summary(), push_id(planned, additions)),
            create_pr=options.create_pr,
        )
        self.landed = commit
        opened = commit.pull_request
        if opened is not None:
            self.emit(PullRequestOpened(branch, opened.num, opened.url, opened.revision, commit.oid))
        else:
            self.emit(Committed(branch, commit.oid, commit.url))
        verify(hub, planned, opened.revision if opened else commit.oid, local)
        self.emit(Verified(branch, commit.oid))
        if tag:
            _tag(hub, repo_id, branch, tag, commit.oid, state, self.emit)
        return VariantPush(branch, planned, commit, tag, notes)

    def _opened_before(self, planned: Plan) -> VariantPush | None:
        """When an open pull request against the branch records this push's id (an earlier run of the same push
        opened it), report it, verified, instead of opening another. Files are hashed for the id only when some
        pull request is open against the branch."""
        repo_id, branch, hub = planned.repo_id, planned.branch, self.hub
        candidates = [pr for pr in hub.pull_requests(repo_id, branch) if pr.push_id] if planned.branch_exists else []
        if not candidates:
            return None
        wanted = push_id(planned, [self.digest(c.local) for c in planned.uploads if c.local is not None])
        found: PullRequest | None = next((pr for pr in candidates if pr.push_id == wanted), None)
        if found is None:
            return None
        self.emit(PullRequestOpened(branch, found.num, found.url, found.revision, found.head, existing=True))
        commit = Commit(found.head, f"{hub.endpoint}/{repo_id}/commit/{found.head}", found)
        if not self.options.dry_run:
            verify(hub, planned, found.revision, [self.digest(file) for file in self.local])
            self.emit(Verified(branch, found.head))
        return VariantPush(branch, planned, commit, None, (f"pull request #{found.num} already holds these changes",))

    def _upload(self, planned: Plan) -> list[LocalFile]:
        """Upload each file's LFS content as soon as its digest is known (file N uploads while N+1 is hashed), a
        few at a time, reporting each; the commit then sends pointers only. Returns the additions, hashed."""
        pending = [c.local for c in planned.uploads if c.local is not None]
        total, done, lock = sum(f.size for f in pending if f.source is not None), [0], threading.Lock()

        def upload(file: LocalFile) -> LocalFile:
            file = self.digest(file)
            if file.source is not None:
                self.hub.upload_objects(planned.repo_id, planned.branch, [file], create_pr=self.options.create_pr)
                with lock:
                    done[0] += file.size
                    self.emit(Progress("uploading", planned.branch, file.path, done[0], total))
            return file

        with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS, thread_name_prefix="hubpub-upload") as pool:
            return list(pool.map(upload, pending))


def release_tag(tag: str, branch: str) -> str:
    """Hub tags are repository-wide, so each variant's release commit gets its own: v1.0.0-gs128."""
    return f"{tag}-{branch}"


def _refuse_moving_tag(repo_id: str, tag: str, state: RemoteState, planned: Plan | None = None) -> None:
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


def _tag(hub: Hub, repo_id: str, branch: str, tag: str, commit: str, state: RemoteState, emit: Emit) -> None:
    created = tag not in state.tags
    if created:
        hub.create_tag(repo_id, tag, commit, f"hubpub release {tag}")
    emit(Tagged(branch, tag, commit, created))


def _landed(results: Sequence[VariantPush], variants: Sequence[Variant], failed: _VariantStep) -> str:
    """What a push that stopped during `failed` left on the Hub, variant by variant."""
    lines = [f"  {done.branch}: {_where(done.commit, 'verified')}" for done in results]
    if failed.landed is not None:
        lines.append(f"  {failed.variant.branch}: {_where(failed.landed, 'NOT verified (run `hubpub plan` to compare)')}")
    else:
        lines.append(f"  {failed.variant.branch}: no commit made (LFS objects uploaded so far stay on the Hub "
                     "unreferenced, and the next run does not upload them again)")
    lines += [f"  {v.branch}: not started" for v in variants[len(results) + 1 :]]
    return "what landed:\n" + "\n".join(lines)


def _where(commit: Commit | None, verified: str) -> str:
    if commit is None:
        return "unchanged, nothing to land"
    if commit.pull_request is not None:
        return f"landed as pull request #{commit.pull_request.num} ({commit.pull_request.url}), {verified}"
    return f"landed, commit {commit.oid[:12]} ({commit.url}), {verified}"


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
