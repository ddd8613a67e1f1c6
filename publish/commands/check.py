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
    """E1 on the evaluated variant: the manifest's KLD numbers or settings contradict its kld.json artifact."""
    kld = manifest.evaluation.kld
    if kld is None or kld.branch != report.branch:
        return report
    from publish.checkpoint.findings import error
    from publish.manifest.kldartifact import check_artifact

    found = tuple(error("E1", "evaluation.kld", problem, "remove the hand-written value (the card takes it from "
                        "the artifact) or run `hubpub eval run` again") for problem in check_artifact(manifest))
    return replace(report, findings=report.findings + found) if found else report
