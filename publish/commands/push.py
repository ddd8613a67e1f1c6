"""`hubpub plan` and `hubpub push`: check, render, plan, commit once per variant, verify, tag.

Each variant's revision ends up holding exactly its own files: the checkpoint folder's files, the rendered README
and the manifest's shared files (quantize.py, log.txt). Unchanged files are skipped by content identity, stale
weight files are deleted in the same commit, and the commit is made only if the branch has not moved.

Data walks one way. Each variant's folder is listed once, and the safety scan, the checks and the upload all read
that listing; the repository's remote state is read once (hub/state.py). A file is hashed only when a decision
needs its digest: a plan hashes the files the revision holds at the same path and size; a push needs every digest
(to compare or to upload) and starts hashing in the background while the checks run. Each digest is recorded in
the hash cache as soon as it is computed. Progress is reported through `emit` as it happens (see events.py): a
failure in a later variant never hides an earlier one's landed commit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from publish import __version__
from publish.card.provenance import Provenance, read_provenance
from publish.card.render import CARDS_FOLDER, make_environment, render_card
from publish.checkpoint.report import Report, agreed_facts, examine, other_facts
from publish.checkpoint.reportcache import ReportCache, beside
from publish.errors import CheckpointError, ChecksFailed, HubError, TokenRenewalError, UsageError
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
from publish.hub.client import Commit, Hub
from publish.hub.describe import commit_description, what_landed
from publish.hub.hashcache import HashCache, Prefetch
from publish.hub.localfiles import digested, file_set, kept, refuse_unsafe_files, shared_files, unhashed
from publish.hub.plan import LocalFile, Plan, make_plan, needs_digest, push_id
from publish.hub.state import PullRequest, RemoteRepo, RemoteState
from publish.hub.tags import refuse_moving_tag, release_tag
from publish.hub.upload import Uploads
from publish.hub.verify import VerifiedCommits, verify, verify_landed
from publish.manifest.kldartifact import resolve as resolve_kld
from publish.manifest.model import Manifest
from publish.manifest.sharedfiles import unlisted
from publish.manifest.variant import Variant
from publish.util.atomic import write_if_changed
from publish.util.listing import Listing, list_folder


@dataclass(frozen=True)
class PushSettings:
    """How to push, as one value shared by `plan` and `push` (twine's Settings): the CLI builds it from its
    options, a library caller writes it out."""

    branch: str | None = None  # one variant's branch; None: every variant
    dry_run: bool = False  # check, render and plan; create and upload nothing
    prune: bool = False  # also delete remote files hubpub does not manage (stale weights are deleted anyway)
    card_only: bool = False  # the weights are on the Hub, not here: push the README and the shared files only
    message: str | None = None  # the commit title (default "Publish <branch> with hubpub <version>")
    tag: str | None = None  # a release: each variant's resulting commit is tagged <tag>-<branch>
    create_pr: bool = False  # a pull request per changed variant (refs/pr/N) instead of a commit to its branch
    cache: Path | None = None  # the hash cache file (recorded check reports beside it); None: remember nothing

    def __post_init__(self) -> None:
        if self.tag and self.create_pr:
            raise UsageError("give at most one of --tag and --create-pr: a pull request is on no branch until it is "
                             "merged", hint="merge the pull requests on the Hub, then run `hubpub push --tag "
                                            "RELEASE` (it commits nothing and tags each branch's head)")

    def hash_cache(self) -> HashCache:
        return HashCache(self.cache)

    def verified_commits(self) -> VerifiedCommits:
        return VerifiedCommits(self.cache.with_name("verified.json") if self.cache is not None else None)

    def report_cache(self) -> ReportCache | None:
        return ReportCache(beside(self.cache)) if self.cache is not None else None


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
    hashed_bytes: int = 0  # bytes read to hash them this run (0 when every digest came from the cache)
    cached_bytes: int = 0  # bytes whose digest came from the hash cache instead


def plan(manifest: Manifest, hub: Hub, settings: PushSettings = PushSettings(), *, emit: Emit = ignore) -> PushResult:
    """Compare each selected variant with its Hub revision and report the plan; create and upload nothing.

    Raises what `push` raises before its first write: exit code 2 for bad input or a token the Hub refuses (a
    plan needs only read access; without a token it warns and reads anonymously), 1 for failed checks or a Hub
    failure.
    """
    return push(manifest, hub, replace(settings, dry_run=True), emit=emit)


def push(manifest: Manifest, hub: Hub, settings: PushSettings = PushSettings(), *, emit: Emit = ignore) -> PushResult:
    """Publish each selected variant to its own branch in one verified commit (with `settings.dry_run`, only plan).

    Every selected variant's folder must exist. With `card_only`, no weights are sent: the weights already on each
    Hub revision are checked from their headers and left untouched; only the README and the small shared files
    are pushed. Events (checks passed, the plan, progress, retries through the Hub's own `emit`, commits) go to
    `emit` as they happen.

    Raises, with the CLI's exit code: AuthError (2) for a missing, refused or read-only token; CheckpointError,
    UnsafeFileError, ManifestError (2) for a missing folder, a file that must not be uploaded or a bad shared file;
    ChecksFailed, FactMismatch (1) when the weights fail the checks or contradict the manifest; TagConflict,
    ConcurrentPushError, HubError (1) when the Hub refuses, fails, or the pushed revision does not verify;
    TokenRenewalError (1), naming what landed, when a Trusted Publisher's token expired and could not be exchanged
    again. Nothing is created or uploaded before the checks pass.

    With `create_pr`, each changed variant's commit opens a Hub pull request against its branch instead (verified
    on refs/pr/N; the branch stays as it is), and a re-run finds the pull request its push id already opened
    instead of opening another (`tag` and `create_pr` together are a UsageError: tag after merging).
    """
    variants = manifest.select(settings.branch)
    for warning in unlisted(manifest.root, manifest.files, manifest.source.name):
        emit(Note(None, warning))
    manifest = resolve_kld(manifest)  # the card's KLD figures come from kld.json, when the manifest names one
    cache = settings.hash_cache()
    if not settings.dry_run:
        emit(Authenticated(hub.require_write_token(), hub.endpoint))
    elif hub.check_read_token() is None:
        emit(Note(None, "warning: no Hub token (HF_TOKEN or `hf auth login`): planning with anonymous access, "
                        "so a private repository looks absent"))
    if not settings.card_only:
        _require_folders(manifest, variants)
    # Listed once: the checks read the whole listing; the files `exclude:` keeps are refused if unsafe before any
    # request but the token check, and are what is hashed and uploaded.
    listings = {} if settings.card_only else {
        v.branch: list_folder(manifest.variant_path(v).resolve()) for v in variants}
    uploads = {v.branch: kept(listings[v.branch], manifest.excludes(v)) for v in variants if v.branch in listings}
    for listing, _ in uploads.values():
        refuse_unsafe_files(listing, cache)
    shared = shared_files(manifest, cache)
    hashing = cache.prefetch(progress=_hash_progress(emit))
    if not settings.dry_run:  # a push needs every digest: hashing runs during the checks and the uploads
        hashing.add([*(f.path for listing, _ in uploads.values() for f in listing.files), *shared.values()])
    remote = RemoteRepo(hub, manifest.repo_id)
    verified = settings.verified_commits()
    try:
        report = _checked(manifest, variants, hub, settings, listings, remote)
        emit(Checked(report.summary()))
        facts = agreed_facts(manifest, {**({} if settings.card_only else other_facts(manifest, variants, settings.report_cache())),
                                         **report.facts()})
        env = make_environment(manifest.root / "templates")
        provenance = read_provenance(manifest.root)
        steps = []
        for variant in variants:
            card = render_card(manifest, variant, env=env, facts=facts, provenance=provenance)
            folder, left_out = uploads.get(variant.branch, (None, []))
            files = file_set(manifest, variant, card, folder, left_out, shared)
            notes = files.notes
            if settings.card_only:
                notes = ("card-only: the weights on the Hub revision were checked and are left as they are", *notes)
            for note in notes:
                emit(Note(variant.branch, note))
            step = _VariantStep(manifest, variant, unhashed(files), notes, hub, remote, settings, hashing, emit, card,
                                verified)
            step.plan()
            steps.append(step)
        results = _publish(steps, hub, hashing, emit, provenance, report) if not settings.dry_run else [
            s.opened_before or VariantPush(s.variant.branch, s.planned, tag=s.tag, notes=s.notes) for s in steps]
        hashing.wait()
    except BaseException:
        hashing.cancel()
        raise
    finally:
        cache.save()
    return PushResult(tuple(results), cache.hashed_bytes, cache.cached_bytes)


def _publish(steps: list[_VariantStep], hub: Hub, hashing: Prefetch, emit: Emit, provenance: Provenance,
             report: Report) -> list[VariantPush]:
    """Every plan's uploads start at once; each variant then commits, verifies and tags in turn, as soon as its
    own files are up."""
    uploads = Uploads(hub, hashing, lambda file: digested(file, hashing), emit)
    uploads.start([s.planned for s in steps if not s.planned.is_noop and s.opened_before is None])
    results: list[VariantPush] = []
    try:
        for step in steps:
            try:
                results.append(step.publish(uploads, provenance, report))
            except TokenRenewalError as error:  # say what landed before the token ran out
                landed = what_landed([(r.branch, r.commit) for r in results], (step.variant.branch, step.landed),
                                     [s.variant.branch for s in steps[len(results) + 1 :]])
                raise TokenRenewalError(f"{error.message}\n{landed}",
                                        hint=f"{error.hint}; then push again: what landed is skipped") from None
        return results
    finally:
        uploads.stop()


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


def _checked(manifest: Manifest, variants: tuple[Variant, ...], hub: Hub, settings: PushSettings,
             listings: Mapping[str, Listing], remote: RemoteRepo) -> Report:
    """Examine the variants (reusing reports of unchanged checkpoints; card-only: on their Hub revisions, read
    through `remote`, which the plan then reuses); any error-level finding stops the push before anything is
    created or uploaded."""
    states = {v.branch: remote.state(v.branch) for v in variants} if settings.card_only else None
    report = examine(manifest, variants, hub=hub, cache=settings.report_cache(), reuse=True,
                     remote=settings.card_only, listings=listings, remote_states=states)
    for checked in report.variants:
        if settings.card_only and not checked.ok and checked.source == "missing":
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
    """One variant's push: `plan` against its revision (creating repository and branch when pushing), then
    `publish`: commit once when its uploads are done, verify, tag."""

    manifest: Manifest
    variant: Variant
    local: list[LocalFile]
    notes: tuple[str, ...]
    hub: Hub
    remote: RemoteRepo
    settings: PushSettings
    hashing: Prefetch
    emit: Emit
    card: str  # the README this push publishes; kept in cards/<branch>/ once the revision holds it
    verified: VerifiedCommits
    state: RemoteState = field(init=False)
    planned: Plan = field(init=False)
    tag: str | None = field(init=False)
    opened_before: VariantPush | None = None  # --create-pr: an open pull request already holds these changes
    landed: Commit | None = None  # set as soon as the commit is made, before it is verified

    def digest(self, file: LocalFile) -> LocalFile:
        return digested(file, self.hashing)

    def plan(self) -> Plan:
        repo_id, branch, settings = self.manifest.repo_id, self.variant.branch, self.settings
        state = self.remote.state(branch)
        self.tag = release_tag(settings.tag, branch) if settings.tag else None
        if self.tag:
            refuse_moving_tag(repo_id, self.tag, state)  # before a branch is created for a release that cannot be
        if settings.dry_run:
            # A plan hashes only the files it must compare: those the revision holds at the same path and size.
            self.hashing.add(f.source for f in needs_digest(self.local, state.files) if f.source is not None)
        else:
            state = self._prepare(state)
        self.state = state
        self.planned = make_plan(
            repo_id, branch, self.local, state.files, parent_commit=state.parent, repo_exists=state.repo_exists,
            branch_exists=state.branch_exists, prune=settings.prune, card_only=settings.card_only,
            digest=self.digest,
        )
        self.emit(Planned(self.planned))
        if self.tag:
            refuse_moving_tag(repo_id, self.tag, state, self.planned)
        if settings.create_pr and not self.planned.is_noop:
            self.opened_before = self._opened_before()
            if self.opened_before is None and settings.dry_run:
                self.emit(Note(branch, f"push --create-pr opens a pull request against {branch} with these changes; "
                                       "the branch stays as it is until it is merged"))
        return self.planned

    def _opened_before(self) -> VariantPush | None:
        """The open pull request against the branch whose commit records this push's id (an earlier run of the
        same push opened it), reported; None when there is none. Files are hashed for the id only when some pull
        request is open against the branch."""
        planned, hub = self.planned, self.hub
        if not planned.branch_exists:
            return None
        candidates = [pr for pr in hub.pull_requests(planned.repo_id, planned.branch) if pr.push_id]
        if not candidates:
            return None
        added = [c.local for c in planned.uploads if c.local is not None]
        self.hashing.add(f.source for f in added if f.source is not None and not f.hashed)
        wanted = push_id(planned, [self.digest(f) for f in added])
        found: PullRequest | None = next((pr for pr in candidates if pr.push_id == wanted), None)
        if found is None:
            return None
        self.emit(PullRequestOpened(planned.branch, found.num, found.url, found.revision, found.head, existing=True))
        commit = Commit(found.head, f"{hub.endpoint}/{planned.repo_id}/commit/{found.head}", found)
        return VariantPush(planned.branch, planned, commit, None,
                           (*self.notes, f"pull request #{found.num} already holds these changes"))

    def publish(self, uploads: Uploads, provenance: Provenance, report: Report) -> VariantPush:
        repo_id, branch, hub, planned, tag, state = (
            self.manifest.repo_id, self.variant.branch, self.hub, self.planned, self.tag, self.state)
        if planned.is_noop:
            if state.head and self.verified.unverified(hub, repo_id, state.head):
                # A commit of an earlier push that landed but was never verified: verify it now.
                verify_landed(hub, planned, Commit(state.head, f"{hub.endpoint}/{repo_id}/commit/{state.head}"),
                              [self.digest(file) for file in self.local], self.verified, every_header=True)
                self.emit(Unchanged(branch, verified=state.head))
            else:
                self.emit(Unchanged(branch))
            self._keep_card()
            if tag and state.head:
                self._tag(tag, state.head, state)
            return VariantPush(branch, planned, None, tag, (*self.notes, "unchanged: nothing to commit"))
        earlier = self.opened_before.commit if self.opened_before is not None else None
        if self.opened_before is not None and earlier is not None and earlier.pull_request is not None:
            # Verified again: it must still hold exactly these changes.
            verify(hub, planned, earlier.pull_request.revision, [self.digest(file) for file in self.local])
            self.emit(Verified(branch, earlier.oid))
            return self.opened_before
        uploads.wait(planned)
        local = [self.digest(file) for file in self.local]
        additions = [self.digest(c.local) for c in planned.uploads if c.local is not None]
        commit = hub.commit(
            repo_id, branch, additions=additions,
            deletions=[c.path for c in planned.deletions], parent=planned.parent_commit or "",
            title=self.settings.message or f"Publish {branch} with hubpub {__version__}",
            description=commit_description(planned, provenance, report.summary(), push_id(planned, additions)),
            create_pr=self.settings.create_pr,
        )
        self.landed, opened = commit, commit.pull_request
        if opened is not None:  # the branch did not move
            self.emit(PullRequestOpened(branch, opened.num, opened.url, opened.revision, commit.oid))
        else:
            self.remote.committed(branch, commit.oid)
            self.emit(Committed(branch, commit.oid, commit.url))
        verify_landed(hub, planned, commit, local, self.verified, revision=opened.revision if opened else None)
        self.emit(Verified(branch, commit.oid))
        if opened is None:  # a pull request leaves the branch, and so its card, as they were
            self._keep_card()
        if tag:
            self._tag(tag, commit.oid, state)
        return VariantPush(branch, planned, commit, tag, self.notes)

    def _keep_card(self) -> None:
        """Leave the card the revision holds in cards/<branch>/README.md, so `hubpub render --check` passes."""
        path = self.manifest.root / CARDS_FOLDER / self.variant.branch / "README.md"
        if write_if_changed(path, self.card):
            self.emit(Note(self.variant.branch, f"card saved to {path}"))

    def _prepare(self, state: RemoteState) -> RemoteState:
        """Create the repository and the branch when they do not exist yet; the branch's state then."""
        repo_id, branch = self.manifest.repo_id, self.variant.branch
        if not state.repo_exists:
            self.hub.ensure_repo(repo_id, self.manifest.private)
            self.remote.created()
            state = self.remote.state(branch)
        if not state.branch_exists:
            # Start from the first commit (only .gitattributes): a new branch inherits no other variant's files.
            self.hub.create_branch(repo_id, branch, state.start)
            self.remote.branched(branch, state.start)
            state = self.remote.state(branch)
        return state

    def _tag(self, tag: str, commit: str, state: RemoteState) -> None:
        created = tag not in state.tags
        if created:
            self.hub.create_tag(self.manifest.repo_id, tag, commit, f"hubpub release {tag}")
            self.remote.tagged(tag, commit)
        self.emit(Tagged(self.variant.branch, tag, commit, created))
