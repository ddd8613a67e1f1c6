"""The local side of a push: every file a variant's revision must hold, each checked safe to upload.

The variant's folder is walked once (tooling folders skipped); a symlink out of the folder, a file named like a
credential, or any non-weight file holding something that looks like a Hub token is refused before any request
but the token check. The manifest's shared files (quantize.py, log.txt) and the rendered card complete the set.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from publish.errors import TOKEN_PATTERN, ManifestError, UnsafeFileError
from publish.hub.hashcache import Digest, HashCache, digest_bytes
from publish.hub.plan import LocalFile
from publish.manifest.kldartifact import KLD_ARTIFACT, artifact_path
from publish.manifest.model import Manifest, Variant

# Never uploaded: they look like credentials. Matched against each file's name.
SECRET_PATTERNS = (
    ".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*", "id_ecdsa*",
    ".netrc", ".git-credentials", ".npmrc", ".pypirc", "token", "*.token", "hf_token*", ".hf_token",
    "credentials", "credentials.json", "secrets.*",
)
# Folders inside a checkpoint that are tooling state, not part of the model.
SKIP_DIRS = frozenset({".git", ".cache", ".hubpub", "__pycache__", ".ipynb_checkpoints", ".huggingface"})
SCAN_CHUNK = 4 * 1024 * 1024
# A token split across two chunks is still found: each chunk is searched together with this much of the last one.
SCAN_OVERLAP = 256
TOKEN_BYTES = re.compile(TOKEN_PATTERN.pattern.encode("ascii"))
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class FileSet:
    """What a variant's revision must hold: (repository path → source file), the card, and notes for the user."""

    files: dict[str, Path]
    card: bytes
    notes: tuple[str, ...]


def walk(folder: Path, cache: HashCache | None = None) -> list[Path]:
    """The folder's files, tooling folders skipped, refusing anything unsafe (`cache` remembers clean scans)."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            refuse_unsafe(path, folder, cache)
            found.append(path)
    return found


def refuse_unsafe(path: Path, folder: Path, cache: HashCache | None = None) -> None:
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
    if is_weight_file(path) or (cache is not None and cache.known_clean(path)):
        return
    if contains_token(path):
        raise UnsafeFileError(
            f"{path} contains something that looks like a Hugging Face token; hubpub never uploads it",
            hint="remove the token from the file (and revoke it if it was ever shared)",
        )
    if cache is not None:
        cache.mark_clean(path)


def is_weight_file(path: Path) -> bool:
    """A recognised weight format, decided by content, not by size or name alone (a renamed log is scanned like
    any other file): a safetensors file (an 8-byte little-endian header length, then the JSON header's opening
    brace) or a GGUF file (its magic). Pickled `.bin` files are scanned: they can hold a training run's token."""
    try:
        with path.open("rb") as handle:
            head = handle.read(9)
    except OSError:
        return False
    if head[:4] == GGUF_MAGIC:
        return True
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def contains_token(path: Path) -> bool:
    """Stream the file in chunks, whatever its size, looking for a Hub token."""
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_CHUNK):
            window = tail + chunk
            if TOKEN_BYTES.search(window):
                return True
            tail = window[-SCAN_OVERLAP:]
    return False


def shared_files(manifest: Manifest, cache: HashCache | None = None) -> dict[str, Path]:
    """The manifest's shared files by their path in the repository."""
    root = manifest.root.resolve()
    shared: dict[str, Path] = {}
    for path_in_repo, name in manifest.files.in_repo().items():
        source = (root / name).resolve()
        if not source.is_file():
            raise ManifestError(
                f"shared file {name!r} not found at {source}", file=manifest.source, field="files",
                hint="paths in `files:` are relative to the manifest",
            )
        refuse_unsafe(source, root, cache)
        shared[path_in_repo] = source
    return shared


def file_set(
    manifest: Manifest, variant: Variant, card: str, walked: Sequence[Path], shared: Mapping[str, Path]
) -> FileSet:
    """The revision's files: the `walked` folder's (none when the weights are not here), the manifest's `shared`
    files (from `shared_files`) and the card, which replace same-named files of the folder (each replacement
    noted)."""
    folder = manifest.variant_path(variant).resolve()
    notes: list[str] = []
    files: dict[str, Path] = {}
    for path in walked:
        rel = path.relative_to(folder).as_posix()
        if rel == "README.md":
            notes.append(f"{folder / rel} is replaced by the rendered card")
        elif rel in shared:
            notes.append(f"{folder / rel} is replaced by the manifest's {shared[rel]}")
        else:
            files[rel] = path
    files.update(shared)
    evaluation = artifact_path(manifest)
    if evaluation is not None and variant.branch in manifest.kld_branches:
        # The evaluated branch carries the artifact its card's KLD figures come from; the card links to it.
        if KLD_ARTIFACT in files:
            notes.append(f"{files[KLD_ARTIFACT]} is replaced by the manifest's KLD artifact {evaluation}")
        refuse_unsafe(evaluation.resolve(), manifest.root.resolve())
        files[KLD_ARTIFACT] = evaluation.resolve()
    return FileSet(dict(sorted(files.items())), card.encode("utf-8"), tuple(notes))


def unhashed(files: FileSet) -> list[LocalFile]:
    """Every file of the set, sorted by path; the card is hashed (it is in memory), the files on disk not yet."""
    local = [LocalFile(rel, path.stat().st_size, None, None, source=path) for rel, path in files.files.items()]
    readme = digest_bytes(files.card)
    local.append(LocalFile("README.md", readme.size, readme.sha256, readme.git_oid, content=files.card))
    return sorted(local, key=lambda f: f.path)


def with_digest(file: LocalFile, digest: Digest) -> LocalFile:
    return replace(file, size=digest.size, sha256=digest.sha256, git_oid=digest.git_oid)
