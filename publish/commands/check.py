"""`hubpub check`: examine each variant's checkpoint (headers only) and report the findings."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from publish.checkpoint.report import Report, VariantReport, examine
from publish.checkpoint.reportcache import ReportCache
from publish.manifest.model import Manifest

if TYPE_CHECKING:
    from publish.hub.client import Hub


def check(
    manifest: Manifest, branch: str | None = None, *, hub: Hub | None = None, cache: ReportCache | None = None,
) -> Report:
    """Check the selected variants afresh (recording the reports in `cache`). With `hub`, a variant whose folder
    is absent is checked on its Hub revision."""
    report = examine(manifest, manifest.select(branch), hub=hub, cache=cache)
    return Report(tuple(_with_evaluation(manifest, v) for v in report.variants))


def _with_evaluation(manifest: Manifest, report: VariantReport) -> VariantReport:
    """E1 on each evaluated variant: its kld.json figures were edited, or the manifest contradicts them."""
    if report.branch not in manifest.kld_branches:
        return report
    from publish.checkpoint.findings import error
    from publish.manifest.kldartifact import check_artifact

    found = tuple(error("E1", "evaluation.kld", p.message, p.hint) for p in check_artifact(manifest, report.branch))
    return replace(report, findings=report.findings + found) if found else report
