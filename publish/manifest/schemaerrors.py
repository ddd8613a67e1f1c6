"""pydantic's validation errors as ManifestErrors a person can act on: each names the file, the line and the
dotted field, says what was found, and has its own hint (the key that was meant, what to add)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from publish.errors import ManifestError
from publish.manifest.yamlsource import dotted, line_of
from publish.util.suggest import closest


class Hinted(ValueError):
    """A validator's error with the fix kept apart from the message, so it is printed beneath it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class Located(Hinted):
    """A cross-field error that knows which field of the document it is about."""

    def __init__(self, loc: tuple[str | int, ...], message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.loc = loc


def schema_problems(
    details: list[Any], source: Path, lines: dict[tuple[Any, ...], int], root: type[BaseModel]
) -> list[ManifestError]:
    """Every useful pydantic error as a ManifestError naming the file, line and field, with its own hint."""
    return [_one_error(detail, source, lines, root) for detail in _useful(details, root)]


def _useful(details: list[Any], root: type[BaseModel]) -> list[Any]:
    """A misspelt key shows up twice, as an unknown key and as a missing one; the unknown key is the useful
    report, so a missing key with a misspelt sibling is dropped. A list whose items were refused is reported
    "too short" too; its items' errors say why, so that echo is dropped."""
    unknown = [d for d in details if d["type"] == "extra_forbidden"]
    misspelt = {(tuple(d["loc"][:-1]), close) for d in unknown
                for close in closest(str(d["loc"][-1]), _known_keys(tuple(d["loc"][:-1]), root))}
    inside = {tuple(d["loc"][:n]) for d in details for n in range(len(d["loc"]))}
    return [d for d in details
            if not (d["type"] == "missing" and (tuple(d["loc"][:-1]), d["loc"][-1]) in misspelt)
            and not (d["type"] == "too_short" and tuple(d["loc"]) in inside)]


def _one_error(detail: Any, source: Path, lines: dict[tuple[Any, ...], int], root: type[BaseModel]) -> ManifestError:
    """One pydantic error as a ManifestError with the file, line and dotted field name."""
    loc = tuple(part for part in detail["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    ctx_error = detail.get("ctx", {}).get("error")
    hint = _hint(detail, loc, root)
    if isinstance(ctx_error, Located):
        loc = ctx_error.loc
    if isinstance(ctx_error, Hinted):
        hint = ctx_error.hint or hint
    message = _message(detail, loc)
    return ManifestError(message, file=source, line=line_of(loc, lines), field=dotted(loc) or None, hint=hint)


def _message(detail: Any, loc: tuple[Any, ...]) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}"
    if kind == "missing":
        return "required field is missing"
    text = str(detail["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    if kind.endswith("_type") or kind in {"bool_parsing", "int_parsing", "float_parsing", "int_from_float"}:
        return f"{text}, found {type(detail['input']).__name__} {detail['input']!r}"
    return text


def _hint(detail: Any, loc: tuple[Any, ...], root: type[BaseModel]) -> str | None:
    kind = detail["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1], root)
        close = closest(str(loc[-1]), known)
        if close:
            return f"did you mean {close[0]!r}?"
        return f"allowed keys here: {', '.join(known)}" if known else "remove it"
    if kind == "missing":
        return f"add `{loc[-1]}:` here" if loc else None
    if kind == "string_type":
        return "quote the value to make it a string"
    return None


def _known_keys(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    """The keys the schema allows at a location, for 'did you mean' hints."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _model_of(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [name for name, f in model.model_fields.items() if not f.exclude]
    return []


def _model_of(annotation: Any) -> Any:
    for candidate in _walk_annotation(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _walk_annotation(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        yield from _walk_annotation(arg)
    yield from getattr(annotation, "__metadata__", ()) or ()
    origin = getattr(annotation, "__origin__", None)
    if origin is not None:
        yield origin


def suggestion(word: str, choices: Any) -> str | None:
    """"did you mean 'x'?" as a hint beneath an error, or None when no choice is close."""
    close = closest(word, choices, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else None
