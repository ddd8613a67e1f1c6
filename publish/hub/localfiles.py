"""The local side of a push: every file a variant's revision must hold, each checked safe to upload.

The variant's folder is listed once (publish/util/listing.py, tooling folders skipped) and the manifest's
`exclude:` globs select from that listing, reading nothing. Of what is kept, a symlink out of the folder, a file
named like a credential, or any non-weight file holding something that looks like a Hub token is refused before any
request but the token check, naming the token's line (or byte offset). The manifest's shared files (quantize.py,
log.txt) and the rendered card complete the set. `unsafe_files` lists, without raising, every file a push would
refuse, for `hubpub check`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from publish.errors import TOKEN_PATTERN, ManifestError, UnsafeFileError
from publish.hub.hashcache import Digest, HashCache, Prefetch, digest_bytes
from publish.hub.plan import LocalFile
from publish.manifest.kldartifact import KLD_ARTIFACT, artifact_path
from publish.manifest.model import Manifest
from publish.manifest.sharedfiles import collision, excluded
from publish.manifest.variant import Variant
from publish.util.listing import Listing, list_folder

# Never uploaded: they look like credentials. Matched against each file's name.
SECRET_PATTERNS = (
    ".env", ".env.*", "*.env", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*", "id_ecdsa*",
    ".netrc", ".git-credentials", ".npmrc", ".pypirc", "token", "*.token", "hf_token*", ".hf_token",
    "credentials", "credentials.json", "secrets.*",
)
SCAN_CHUNK = 4 * 1024 * 1024
# A token split across two chunks is still found: each chunk is searched together with this much of the last one.
SCAN_OVERLAP = 256
TOKEN_BYTES = re.compile(TOKEN_PATTERN.pattern.encode("ascii"))
GGUF_MAGIC = b"GGUF"
# A file with a NUL byte in its first 8000 bytes is binary (git's own test): a token in it is placed by byte offset.
BINARY_SNIFF = 8000


@dataclass(frozen=True)
class TokenFound:
    """Where a token-shaped string starts in a file: its byte offset, and its line when the file is text."""

    offset: int
    line: int | None

    def place(self, path: Path) -> str:
        """`file:line` for text, the file and the byte offset otherwise."""
        return f"{path}:{self.line}" if self.line is not None else f"{path} (at byte offset {self.offset:,})"


@dataclass(frozen=True)
class FileSet:
    """What a variant's revision must hold: (repository path → source file), the card, and notes for the user."""

    files: dict[str, Path]
    card: bytes
    notes: tuple[str, ...]


def kept(listing: Listing, exclude: Sequence[str] = ()) -> tuple[Listing, list[tuple[str, str]]]:
    """The listed files the `exclude:` globs keep, and the (path in the folder, glob) of those they leave out."""
    keep, left_out = [], []
    for file in listing.files:
        pattern = excluded(file.rel, exclude) if exclude else None
        if pattern is None:
            keep.append(file)
        else:
            left_out.append((file.rel, pattern))
    return Listing(listing.folder, tuple(keep)), left_out


def refuse_unsafe_files(listing: Listing, cache: HashCache | None = None) -> None:
    """Refuse the first unsafe file of a listing (`cache` remembers the files scanned clean)."""
    for file in listing.files:
        refuse_unsafe(file.path, listing.folder, cache)


def unsafe_files(
    folder: Path, cache: HashCache | None = None, exclude: Sequence[str] = ()
) -> list[tuple[Path, UnsafeFileError]]:
    """Every file of the folder (but the excluded ones) that a push would refuse, with the reason, in path order."""
    found = []
    listing = kept(list_folder(folder), exclude)[0]
    for file in listing.files:
        problem = unsafe(file.path, listing.folder, cache)
        if problem is not None:
            found.append((file.path, problem))
    return found


def refuse_unsafe(path: Path, folder: Path, cache: HashCache | None = None) -> None:
    problem = unsafe(path, folder, cache)
    if problem is not None:
        raise problem


def unsafe(path: Path, folder: Path, cache: HashCache | None = None) -> UnsafeFileError | None:
    """Why `path` must never be uploaded, or None when it is safe (a clean scan is remembered in `cache`)."""
    if path.is_symlink() and not path.resolve().is_relative_to(folder):
        return UnsafeFileError(
            f"{path} is a symlink to {path.resolve()}, outside the variant's folder {folder}",
            hint="copy the file into the folder, or remove the link",
        )
    if any(fnmatch.fnmatch(path.name.lower(), pattern) for pattern in SECRET_PATTERNS):
        return UnsafeFileError(
            f"{path} looks like a secret ({path.name}); hubpub never uploads it",
            hint="move it out of the checkpoint folder, or list it in the variant's `exclude:`",
        )
    if is_weight_file(path) or (cache is not None and cache.known_clean(path)):
        return None
    found = find_token(path)
    if found is not None:
        return UnsafeFileError(
            f"{found.place(path)}: contains something that looks like a Hugging Face token; hubpub never uploads it",
            hint="remove the token from the file (and revoke it if it was ever shared), or list the file in the "
                 "variant's `exclude:`",
        )
    if cache is not None:
        cache.mark_clean(path)
    return None


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
    return find_token(path) is not None


def find_token(path: Path) -> TokenFound | None:
    """Where the first Hub token in the file starts, streaming it in chunks whatever its size; None if none."""
    tail, start, newlines, binary = b"", 0, 0, None
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_CHUNK):
            if binary is None:
                binary = b"\0" in chunk[:BINARY_SNIFF]
            window = tail + chunk
            match = TOKEN_BYTES.search(window)
            if match:
                before = newlines - tail.count(b"\n") + window.count(b"\n", 0, match.start())
                return TokenFound(start - len(tail) + match.start(), None if binary else before + 1)
            newlines += chunk.count(b"\n")
            start += len(chunk)
            tail = window[-SCAN_OVERLAP:]
    return None


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
    manifest: Manifest, variant: Variant, card: str, listing: Listing | None, left_out: Sequence[tuple[str, str]],
    shared: Mapping[str, Path],
) -> FileSet:
    """The revision's files: the `listing` of the folder's files `exclude:` keeps (None when the weights are not
    here), the manifest's `shared` files (from `shared_files`) and the card, which replaces the folder's README.md
    (noted). The files `left_out` by the globs are noted; a shared file on a folder file's path is a ManifestError
    naming both."""
    folder = manifest.variant_path(variant).resolve()
    notes = [f"{folder / rel} is left out by `exclude: {pattern}`" for rel, pattern in left_out]
    files: dict[str, Path] = {}
    for rel, path in ((f.rel, f.path) for f in (listing.files if listing is not None else ())):
        if rel == "README.md":
            notes.append(f"{folder / rel} is replaced by the rendered card")
        elif rel in shared:
            raise collision(manifest, str(shared[rel]), path, variant.branch, rel)
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


def digested(file: LocalFile, hashing: Prefetch) -> LocalFile:
    """`file` with its digest, waiting for the background hashing if it is not done yet."""
    if file.hashed or file.source is None:
        return file
    return with_digest(file, hashing.result(file.source))
