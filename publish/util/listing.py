"""A folder's files, listed once: each stage that needs them (the safety scan, the checks, the report cache and the
upload) takes this value instead of walking the folder again.

Tooling folders (.git, caches) are skipped; symlinked folders are not descended into, as `os.walk` and
`Path.rglob` do not either. A file is listed with what a cached fact about it must not see change: size, mtime and
inode (its `stamp`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

# Folders inside a checkpoint that are tooling state, not part of the model.
SKIP_DIRS = frozenset({".git", ".cache", ".hubpub", "__pycache__", ".ipynb_checkpoints", ".huggingface"})


@dataclass(frozen=True)
class ListedFile:
    path: Path  # the folder's path joined with `rel` (a symlink stays a symlink)
    rel: str  # relative to the folder, with forward slashes
    size: int
    mtime_ns: int
    inode: int

    @property
    def stamp(self) -> list[int]:
        """As util.hashing.stamp reads it: what a cached fact about the file must not see change."""
        return [self.size, self.mtime_ns, self.inode]


@dataclass(frozen=True)
class Listing:
    folder: Path
    files: tuple[ListedFile, ...]

    def sizes(self) -> dict[str, int]:
        """Relative path → size, in listing order."""
        return {f.rel: f.size for f in self.files}


def list_folder(folder: Path) -> Listing:
    """Every file below `folder` (sorted as paths sort, tooling folders skipped). A dangling symlink is not a file and is left
    out, as `Path.is_file()` leaves it out."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(root) / name
            try:
                stat = path.stat()
            except OSError:
                continue
            if not S_ISREG(stat.st_mode):
                continue
            rel = path.relative_to(folder).as_posix()
            found.append(ListedFile(path, rel, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return Listing(folder, tuple(sorted(found, key=lambda f: f.rel.split("/"))))
