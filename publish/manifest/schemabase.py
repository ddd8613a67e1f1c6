"""The building blocks of the manifest's schema modules: a strict, frozen model and one-line text."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def single_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be a single line (it lands in a heading, a table cell or a command line)")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


# Text that lands in a heading, a table cell or a shell command: one line, never empty.
Line = Annotated[str, AfterValidator(single_line)]


class StrictModel(BaseModel):
    # strict: YAML `bits: "8"` is a string, and saying so beats guessing; frozen: stages never mutate their input.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
