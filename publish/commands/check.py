"""`hubpub check`: examine each variant's checkpoint (headers only) and report the findings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..manifest import Manifest
from ..report import Report, examine
from ..reportcache import ReportCache

if TYPE_CHECKING:
    from ..hub import Hub


def check(
    manifest: Manifest, branch: str | None = None, *, hub: Hub | None = None, cache: ReportCache | None = None,
) -> Report:
    """Check the selected variants afresh (recording the reports in `cache`). With `hub`, a variant whose folder
    is absent is checked on its Hub revision."""
    return examine(manifest, manifest.select(branch), hub=hub, cache=cache)
