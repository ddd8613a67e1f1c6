"""YAML with a line number for every node, duplicate keys found, and `hubpub init`'s TODO markers found.

PyYAML's `safe_load` keeps the last of two duplicate keys silently and forgets where each value came from; the
manifest's errors need both. Sequences come back as tuples because the manifest's schema is immutable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from publish.errors import ManifestError

# libyaml's parser when PyYAML was built with it (its nodes carry the same marks), several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# `hubpub init` writes this where the weights cannot tell the value; a manifest still holding it is refused.
TODO = "TODO"


def parse_yaml(
    text: str,
    source: Path,
    todos: list[tuple[tuple[Any, ...], int, str]] | None = None,
    problems: list[ManifestError] | None = None,
) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML into plain data, recording the line of every node by its path (key, index, ...).

    Every scalar still saying TODO is appended to `todos` as (path, line, value); the caller decides. A duplicate
    or non-string key is appended to `problems` (raised at once without it) and parsing goes on, so the other
    passes still run; YAML that does not parse at all is raised.
    """

    def found(error: ManifestError) -> None:
        if problems is None:
            raise error
        problems.append(error)

    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise ManifestError(
            f"not valid YAML: {problem}", file=source, line=mark.line + 1 if mark else None,
            hint="check indentation and quoting around this line",
        ) from None
    finally:
        loader.dispose()
    lines: dict[tuple[Any, ...], int] = {}

    def build(node: yaml.Node, path: tuple[Any, ...]) -> Any:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = build(key_node, (*path, "<key>"))
                if not isinstance(key, str):
                    found(ManifestError(f"keys must be strings, found {key!r}", file=source,
                                        line=key_node.start_mark.line + 1, hint="quote the key"))
                    continue
                if key in out:
                    found(ManifestError(
                        f"duplicate key {key!r} (first on line {lines[(*path, key)]})",
                        file=source, line=key_node.start_mark.line + 1, field=dotted((*path, key)),
                        hint="YAML keeps only the last value; remove one of them",
                    ))
                lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            # Tuples, because the schema is strict and its sequences are immutable.
            return tuple(build(item, (*path, index)) for index, item in enumerate(node.value))
        value = loader.construct_object(node, deep=True)
        if isinstance(value, str) and value.startswith(TODO) and todos is not None:
            # `hubpub init` marks what the weights cannot tell; it must be filled in before anything is published.
            todos.append((path, node.start_mark.line + 1, value))
        return value

    return (build(root, ()) if root is not None else None), lines


def line_of(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    """The line of the deepest node of `loc` that was recorded."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def dotted(loc: tuple[Any, ...]) -> str:
    """A node's path as a user writes it: variants[0].calibration.samples."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
