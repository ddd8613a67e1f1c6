"""Where the manifest came from: its git commit, tag and dirty state, read with gitpython (I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from publish import __version__


@dataclass(frozen=True)
class Provenance:
    """Where a card came from: the hubpub version and, if the manifest lives in git, its commit and tag."""

    version: str = __version__
    commit: str | None = None
    tag: str | None = None
    dirty: bool = False


def read_provenance(path: Path) -> Provenance:
    """Provenance of the git checkout holding `path`; only the hubpub version when it is not in git."""
    if not any((folder / ".git").exists() for folder in (path.resolve(), *path.resolve().parents)):
        return Provenance(version=__version__)  # not in git: no need to pay for importing gitpython
    import git

    try:
        repo = git.Repo(path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return Provenance(version=__version__)
    with repo:
        try:
            head = repo.head.commit
        except ValueError:  # a repository with no commit yet
            return Provenance(version=__version__, dirty=True)
        tags = sorted(tag.name for tag in repo.tags if tag.commit == head)
        return Provenance(
            version=__version__,
            commit=head.hexsha,
            tag=tags[-1] if tags else None,
            dirty=repo.is_dirty(untracked_files=False),
        )
