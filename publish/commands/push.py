"""`hubpub plan` and `hubpub push`: check, render, plan, commit once per variant, verify.

Each variant's revision ends up holding exactly its own files: the checkpoint folder's files, the rendered README
and the manifest's shared files (quantize.py, log.txt). Unchanged files are skipped by content identity, stale
weight files are deleted in the same commit, and the commit is made only if the branch has not moved.
"""

from __future__ import annotations

import fnmatch
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import __version__
from ..card import Provenance, make_environment, render_card
from ..checkcache import CheckCache
from ..errors import TOKEN_PATTERN, ChecksFailed, HubError, ManifestError, UnsafeFileError
from ..hashcache import HashCache, digest_bytes
from ..hub import Commit, Hub, RemoteState
from ..manifest import Manifest, Variant
from ..plan import DELETE, KEEP, LocalFile, Plan, make_plan, same_content
from ..provenance import read_provenance
from .check import CheckReport, check
from .render import agreed_facts

# Never uploaded: they look like credentials. Matched against each file's name.
SECRET_PATTERNS = (
    ".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*", "id_ecdsa*",
    ".netrc", ".git-credentials", ".npmrc", ".pypirc", "token", "*.token", "hf_token*", ".hf_token",
    "credentials", "credentials.json", "secrets.*",
)
# Folders inside a checkpoint that are tooling state, not part of the model.
SKIP_DIRS = frozenset({".git", ".cache", ".hubpub", "__pycache__", ".ipynb_checkpoints", ".huggingface"})
# Small text files are scanned for tokens before upload; larger ones are weights.
SCAN_LIMIT = 1024 * 1024


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
    checks_cache: CheckCache | None = None,
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
    checks_cache: CheckCache | None = None,
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
    walked = {branch: _walk(folder) if folder.is_dir() else [] for branch, folder in folders.items()}
    # Hash while the checks run: both take seconds on real weights, and hashing releases the GIL.
    hashing = cache.prefetch([path for paths in walked.values() for path in paths])
    try:
        report = _checked(manifest, branch, hub, checks_cache)
    except BaseException:
        hashing.cancel()
        raise
    hashing.wait()
    facts = agreed_facts(manifest, {v.branch: v.facts for v in report.variants if v.facts is not None})
    env = make_environment(manifest.root / "templates")
    provenance = read_provenance(manifest.root)
    summary = report.summary()
    results = []
    try:
        for variant, checked in zip(variants, report.variants, strict=True):
            card = render_card(manifest, variant, env=env, facts=facts, provenance=provenance)
            card_only = checked.source == "remote"
            local, file_notes = local_files(manifest, variant, card, cache, walked[variant.branch])
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


def _checked(manifest: Manifest, branch: str | None, hub: Hub, checks_cache: CheckCache | None) -> CheckReport:
    """Run `hubpub check` (reusing reports of unchanged checkpoints); any error-level finding stops the push
    before a single byte is uploaded."""
    report = check(manifest, branch=branch, hub=hub, cache=checks_cache, reuse=True)
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


# ---------------------------------------------------------------------------------------------------------------
# The local side


def local_files(
    manifest: Manifest, variant: Variant, card: str, cache: HashCache, walked: Sequence[Path]
) -> tuple[list[LocalFile], tuple[str, ...]]:
    """Every file the variant's revision must hold, hashed (through the cache): the `walked` folder's files (none
    when the weights are not here), the manifest's shared files and the card."""
    folder = manifest.variant_path(variant).resolve()
    shared = _shared_files(manifest)
    notes: list[str] = []
    files: dict[str, LocalFile] = {}
    for path in walked:
        rel = path.relative_to(folder).as_posix()
        if rel == "README.md":
            notes.append(f"{folder / rel} is replaced by the rendered card")
            continue
        if rel in shared:
            notes.append(f"{folder / rel} is replaced by the manifest's {shared[rel]}")
            continue
        files[rel] = _hashed(rel, path, cache)
    for rel, source in shared.items():
        files[rel] = _hashed(rel, source, cache)
    data = card.encode("utf-8")
    readme = digest_bytes(data)
    files["README.md"] = LocalFile("README.md", readme.size, readme.sha256, readme.git_oid, content=data)
    return [files[k] for k in sorted(files)], tuple(notes)


def _walk(folder: Path) -> list[Path]:
    """The folder's files, tooling folders skipped, refusing anything unsafe."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            _refuse_unsafe(path, folder)
            found.append(path)
    return found


def _refuse_unsafe(path: Path, folder: Path) -> None:
    if path.is_symlink() and not path.resolve().is_relative_to(folder):
        raise UnsafeFileError(
            f"{path} is a symlink to {path.resolve()}, outside the variant's folder {folder}",
            hint="copy the file into the folder, or remove the link",
        )
    if any(fnmatch.fnmatch(path.name.lower(), pattern) for pattern in SECRET_PATTERNS):
        raise UnsafeFileError(
            f"{path} looks like a secret ({path.name}); hubpub never uploads it",
            hint="move it out of the checkpoint folder",
        )
    if path.stat().st_size <= SCAN_LIMIT and TOKEN_PATTERN.search(path.read_bytes().decode("latin-1")):
        raise UnsafeFileError(
            f"{path} contains something that looks like a Hugging Face token; hubpub never uploads it",
            hint="remove the token from the file (and revoke it if it was ever shared)",
        )


def _shared_files(manifest: Manifest) -> dict[str, Path]:
    """The manifest's shared files by their path in the repository."""
    root = manifest.root.resolve()
    shared: dict[str, Path] = {}
    for name in manifest.files.all():
        source = (root / name).resolve()
        if not source.is_file():
            raise ManifestError(
                f"shared file {name!r} not found at {source}", file=manifest.source, field="files",
                hint="paths in `files:` are relative to the manifest",
            )
        _refuse_unsafe(source, root)
        rel = PurePosixPath(Path(name).as_posix())
        shared[rel.name if ".." in rel.parts or rel.is_absolute() else str(rel)] = source
    return shared


def _hashed(rel: str, path: Path, cache: HashCache) -> LocalFile:
    digest = cache.digest(path)
    return LocalFile(rel, digest.size, digest.sha256, digest.git_oid, source=path)


# ---------------------------------------------------------------------------------------------------------------
# Verification


def verify(hub: Hub, planned: Plan, commit: str, local: Sequence[LocalFile]) -> None:
    """The new revision must hold exactly the planned files, byte-identical, with the same safetensors headers."""
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
    # Equal sha256s already prove unchanged shards identical; re-read the headers when a shard was uploaded.
    if not problems and any(c.path.endswith(".safetensors") for c in planned.uploads):
        problems += _header_problems(hub, planned.repo_id, commit, local)
    if problems:
        raise HubError(
            f"{planned.repo_id}@{planned.branch} (commit {commit[:12]}) does not match what was pushed:\n  - "
            + "\n  - ".join(problems),
            hint="run `hubpub plan` to see the difference, then push again",
        )


def _header_problems(hub: Hub, repo_id: str, commit: str, local: Sequence[LocalFile]) -> list[str]:
    from huggingface_hub import parse_local_safetensors_file_metadata

    from ..inspect import tensor_table

    remote = hub.safetensors_headers(repo_id, commit)
    problems = []
    for file in local:
        if not file.path.endswith(".safetensors") or file.source is None:
            continue
        if remote.get(file.path) != tensor_table(parse_local_safetensors_file_metadata(file.source)):
            problems.append(f"{file.path}: the remote safetensors header differs from the local one")
    return problems
