"""A versioned JSON document on disk, for caches: what cannot be read back as this version reads as empty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from publish.util.atomic import atomic_write


class JsonStore:
    """`{"version": N, ...payload}` at `location` (None: nothing is read or written).

    A missing file, a corrupt one or one of another version loads as `{}`: a cache that cannot be trusted only
    costs the work it would have saved.
    """

    def __init__(self, location: Path | None, version: int) -> None:
        self.location = location
        self.version = version

    def load(self) -> dict[str, Any]:
        if self.location is None or not self.location.is_file():
            return {}
        try:
            data = json.loads(self.location.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != self.version:
            return {}
        return {key: value for key, value in data.items() if key != "version"}

    def save(self, payload: dict[str, Any]) -> None:
        if self.location is not None:
            atomic_write(self.location, json.dumps({"version": self.version, **payload}))
