"""Every validation pass over branches.yaml, each problem reported in one run.

The passes: YAML (duplicate keys), the schema (pydantic), the Hub's model-card metadata rules (license, pipeline
tag, base model, tags), the TODOs `hubpub init` left, and the paths (shared files that must exist, a shared file
that would land on a checkpoint file's path). Their problems are raised together as one `ManifestProblems`, in line
order, each naming the file, line and field with its own hint beneath it. Only YAML that does not parse at all
stops before the other passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from publish.errors import ManifestError, ManifestProblems
from publish.manifest.hubmeta import metadata_problems
from publish.manifest.model import Manifest
from publish.manifest.schemaerrors import schema_problems
from publish.manifest.sharedfiles import collision_problems, missing_shared_files
from publish.manifest.yamlsource import dotted, line_of, parse_yaml

# (path in the document, line, value) of a field still saying TODO.
Todo = tuple[tuple[Any, ...], int, str]

# What a TODO stands in for while `hubpub check` validates a manifest `hubpub init` just wrote.
TODO_STAND_INS: dict[str, Any] = {"int_type": 1, "float_type": 1.0, "bool_type": False}
TODO_REPO_ID = "todo/todo"
# The top-level keys that become the card's front matter, checked against the Hub's rules.
METADATA_KEYS = ("library_name", "license", "license_name", "license_link", "pipeline_tag", "base_model",
                 "base_model_relation", "tags")


def load(path: Path, *, allow_todo: bool = False) -> Manifest:
    """Read and validate a manifest; every problem of every pass in one ManifestProblems (see the module)."""
    text = _read(path)
    todos: list[Todo] = []
    problems: list[ManifestError] = []
    data, lines = parse_yaml(text, path, todos, problems)
    if not isinstance(data, dict):
        raise ManifestError("the manifest must be a YAML mapping (key: value pairs)", file=path, line=1,
                            hint="start from `hubpub init FOLDER...`, or see docs/manifest.md")
    manifest, schema, failed = _schema(data, todos, path, lines, allow_todo)
    problems += schema
    todo_keys = {loc[0] for loc, _, _ in todos}
    problems += _metadata(data, failed | todo_keys, path, lines)
    if not allow_todo:
        problems += [_todo_problem(todo, path) for todo in todos]
    problems += missing_shared_files(data, path, lines)
    if manifest is not None:
        problems += collision_problems(manifest, lines)
    if problems:
        raise ManifestProblems(problems)
    assert manifest is not None  # no problem means the schema accepted the document
    return manifest.model_copy(update={"todos": tuple(f"{dotted(loc)} (line {line})" for loc, line, _ in todos)})


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(
            "manifest not found",
            file=path,
            hint="run in the folder holding branches.yaml, pass --manifest FILE, or start one with `hubpub init`",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"cannot read the manifest: {error}", file=path) from None


def _schema(
    data: dict[str, Any], todos: list[Todo], source: Path, lines: dict[tuple[Any, ...], int], allow_todo: bool
) -> tuple[Manifest | None, list[ManifestError], set[Any]]:
    """The validated manifest, or the schema's problems and the top-level keys they are about.

    A TODO the schema refuses (`samples: TODO`) is replaced by a valid stand-in and the document validated again,
    so the problems elsewhere are still found; the TODO itself is the TODO pass's to report.
    """
    todo_paths = {loc for loc, _, _ in todos}
    for _ in range(3):  # each pass replaces the TODOs the schema refused by valid stand-ins
        try:
            return Manifest.model_validate({**data, "source": source}), [], set()
        except ValidationError as error:
            details = error.errors(include_url=False)
        refused = [d for d in details if tuple(d["loc"]) in todo_paths]
        # A list whose item was refused is refused too ("at least 1 item"): that follows from the TODO.
        follows = [d for d in details if any(p[: len(d["loc"])] == tuple(d["loc"]) for p in todo_paths)]
        stand_ins = [(tuple(d["loc"]), _stand_in(d)) for d in refused]
        if not refused or any(value is None for _, value in stand_ins):
            unstandable = [d for d in refused if _stand_in(d) is None] if allow_todo else []
            real = [d for d in details if d not in follows] + unstandable
            return None, schema_problems(real, source, lines, Manifest), {d["loc"][0] for d in real if d["loc"]}
        for loc, value in stand_ins:
            data = _replace(data, loc, value)
    problem = ManifestError("the TODO placeholders cannot be validated", file=source,
                            hint="replace the TODOs with real values")
    return None, [problem], set()


def _metadata(data: dict[str, Any], skip: set[Any], source: Path, lines: dict[tuple[Any, ...], int]) -> list[ManifestError]:
    """The Hub's metadata rules on the front-matter keys the schema accepted and that no longer say TODO."""
    if "base_model" in skip:
        skip = skip | {"base_model_relation"}  # the relation is judged with its base model
    meta = {key: data[key] for key in METADATA_KEYS if key in data and key not in skip}
    return [ManifestError(message, file=source, line=line_of((field,), lines), field=field, hint=hint)
            for field, message, hint in metadata_problems(meta) if field not in skip]


def _todo_problem(todo: Todo, source: Path) -> ManifestError:
    loc, line, value = todo
    return ManifestError(f"still says {value!r}", file=source, line=line, field=dotted(loc),
                         hint="replace the TODO with the real value")


def _stand_in(detail: Any) -> Any:
    if detail["loc"] == ("repo_id",):
        return TODO_REPO_ID
    return TODO_STAND_INS.get(detail["type"])


def _replace(data: Any, loc: tuple[Any, ...], value: Any) -> Any:
    """`data` with the node at `loc` replaced (the parsed YAML is immutable tuples and dicts)."""
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(data, tuple):
        return tuple(_replace(item, rest, value) if index == head else item for index, item in enumerate(data))
    return {**data, head: _replace(data[head], rest, value)}
