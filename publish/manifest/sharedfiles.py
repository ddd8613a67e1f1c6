"""The files around a manifest: the shared files `files:` lists, the `exclude:` globs, and the paths pass.

The paths pass finds, in one run with the other validation passes: a shared file that does not exist, and a shared
file that would land on the repository path of a file in a variant's checkpoint folder (one of the two would
silently win). `unlisted` notices the files a publisher usually shares (quantize.py, log.txt) lying beside the
manifest without `files:` listing them. Reading only: names and `is_file`, never contents.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from publish.errors import ManifestError
from publish.manifest.model import Manifest, SharedFiles, repo_path
from publish.manifest.yamlsource import TODO, dotted, line_of

# The files `hubpub init` lists under `files:` when they sit beside the manifest, by their key.
WELL_KNOWN = {"recipe": "quantize.py", "log": "log.txt"}
# Names beside the manifest that look like a recipe or a log a branch should carry.
LOOKS_SHARED = ("quantize*.py", "log*.txt", "*.log")


def excluded(path_in_folder: str, patterns: Sequence[str]) -> str | None:
    """The first `exclude:` glob matching a file's path in its variant's folder, or None.

    The globs follow huggingface_hub's `upload_folder(ignore_patterns=...)`: fnmatch on the path relative to the
    folder (`*` also crosses `/`), and a pattern ending in `/` takes the whole folder.
    """
    from huggingface_hub.utils import filter_repo_objects

    for pattern in patterns:
        if not list(filter_repo_objects([path_in_folder], ignore_patterns=[pattern])):
            return pattern
    return None


def missing_shared_files(data: dict[str, Any], source: Path, lines: dict[tuple[Any, ...], int]) -> list[ManifestError]:
    """Each `files:` entry that names no file (paths are relative to the manifest); works on the raw document, so
    it runs even when the schema refused something else."""
    files = data.get("files")
    if not isinstance(files, dict):
        return []
    entries: list[tuple[tuple[Any, ...], Any]] = [(("files", key), files.get(key)) for key in WELL_KNOWN]
    other = files.get("other")
    if isinstance(other, tuple):
        entries += [(("files", "other", index), name) for index, name in enumerate(other)]
    problems = []
    for loc, name in entries:
        if not isinstance(name, str) or not name.strip() or name.startswith(TODO):
            continue
        where = Path(name).expanduser()
        where = where if where.is_absolute() else source.parent / where
        if not where.is_file():
            problems.append(ManifestError(
                f"shared file {name!r} not found" + ("" if str(where) == name else f" at {where}"), file=source,
                line=line_of(loc, lines),
                field=dotted(loc),
                hint="paths in `files:` are relative to the manifest: create the file, fix the path, or remove the "
                     "entry"))
    return problems


def collision_problems(manifest: Manifest, lines: dict[tuple[Any, ...], int]) -> list[ManifestError]:
    """A shared file on the repository path of a file in a variant's folder (not excluded), or of the card."""
    problems = []
    for loc, name in _entries(manifest):
        path = repo_path(name)
        line = line_of(loc, lines)
        field = dotted(loc)
        if path == "README.md":
            problems.append(ManifestError(
                f"shared file {name!r} would land on README.md, the card hubpub renders", file=manifest.source,
                line=line, field=field, hint="remove it from `files:`; the card is README.md"))
            continue
        for variant in manifest.variants:
            folder = manifest.variant_path(variant)
            if (folder / path).is_file() and excluded(path, manifest.excludes(variant)) is None:
                problems.append(collision(manifest, name, folder / path, variant.branch, path, line, field))
    return problems


def collision(
    manifest: Manifest, shared: str, checkpoint_file: Path, branch: str, path: str, line: int | None = None,
    field: str = "files",
) -> ManifestError:
    """A shared file and a variant's checkpoint file that would land on one repository path."""
    return ManifestError(
        f"shared file {shared!r} and {checkpoint_file} (variant {branch!r}) would both land on {path!r}; one of "
        "them would silently win", file=manifest.source, line=line, field=field,
        hint=f"to publish the shared one, add {path!r} to the variant's `exclude:` (or to `files.exclude:` for "
             "every variant); to keep the checkpoint's, remove it from `files:`")


def _entries(manifest: Manifest) -> Iterable[tuple[tuple[Any, ...], str]]:
    files = manifest.files
    for key in WELL_KNOWN:
        name = getattr(files, key)
        if name:
            yield ("files", key), name
    for index, name in enumerate(files.other):
        yield ("files", "other", index), name


def unlisted(root: Path, files: SharedFiles, manifest_name: str) -> list[str]:
    """Warnings for files in `root` (the manifest's folder) that look like a recipe or a log but that `files`
    does not list, so no branch would carry them."""
    listed = {(root / name).resolve() for name in files.all()}
    warnings = []
    for path in sorted(p for p in root.iterdir() if p.is_file()):
        if path.resolve() in listed or path.name == manifest_name:
            continue
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in LOOKS_SHARED):
            continue
        if path.name == WELL_KNOWN["recipe"] and files.recipe is None:
            entry = f"recipe: {path.name}"
        elif path.name == WELL_KNOWN["log"] and files.log is None:
            entry = f"log: {path.name}"
        else:
            entry = f"other: [{path.name}]"
        warnings.append(f"warning: {path} is beside {manifest_name} but not in its `files:`, so no branch carries "
                        f"it\n  hint: to publish it, list it under `files:` as `{entry}`")
    return warnings
