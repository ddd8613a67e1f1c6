"""`hubpub check`: examine each variant's checkpoint (headers only) and report the findings, warning (S1) about
every file a push would refuse (a secret, a token inside, a link out of the folder)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from publish.checkpoint.report import Report, VariantReport, examine
from publish.checkpoint.reportcache import ReportCache
from publish.errors import HubpubError
from publish.manifest.model import Manifest

if TYPE_CHECKING:
    from publish.checkpoint.findings import Finding
    from publish.hub.client import Hub
    from publish.hub.hashcache import HashCache


def check(
    manifest: Manifest, branch: str | None = None, *, hub: Hub | None = None, cache: ReportCache | None = None,
    scans: HashCache | None = None,
) -> Report:
    """Check the selected variants afresh (recording the reports in `cache`). With `hub`, a variant whose folder
    is absent is checked on its Hub revision. Files scanned clean for tokens are remembered in `scans`, which a
    push then trusts."""
    report = examine(manifest, manifest.select(branch), hub=hub, cache=cache)
    shared = _refused_shared_files(manifest, scans)
    checked = Report(tuple(_with_refusals(manifest, _with_evaluation(manifest, v), shared, scans)
                           for v in report.variants))
    if scans is not None:
        scans.save()
    return checked


def _refused_shared_files(manifest: Manifest, scans: HashCache | None) -> tuple[Finding, ...]:
    """S1 for each shared file (quantize.py, log.txt, ...) a push would refuse; every branch carries them."""
    from publish.hub.localfiles import unsafe

    root = manifest.root.resolve()
    found = []
    for name in manifest.files.all():
        problem = unsafe(root / name, root, scans) if (root / name).is_file() else None
        if problem is not None:
            found.append(_refusal(f"files: {name}", problem))
    return tuple(found)


def _with_refusals(
    manifest: Manifest, report: VariantReport, shared: tuple[Finding, ...], scans: HashCache | None
) -> VariantReport:
    """S1 for each file of the variant's folder (but the excluded ones) a push would refuse, and the shared ones."""
    from publish.hub.localfiles import unsafe_files

    found: list[Finding] = []
    if report.source == "local":
        variant = manifest.variant(report.branch)
        folder = manifest.variant_path(variant).resolve()
        found += [_refusal(path.relative_to(folder).as_posix(), problem)
                  for path, problem in unsafe_files(folder, scans, manifest.excludes(variant))]
    found += shared
    return replace(report, findings=report.findings + tuple(found)) if found else report


def _refusal(subject: str, problem: HubpubError) -> Finding:
    from publish.checkpoint.findings import warning

    return warning("S1", subject, f"push would refuse it: {problem.message}", problem.hint or "")


def _with_evaluation(manifest: Manifest, report: VariantReport) -> VariantReport:
    """E1 on each evaluated variant: its kld.json figures were edited, or the manifest contradicts them."""
    if report.branch not in manifest.kld_branches:
        return report
    from publish.checkpoint.findings import error
    from publish.manifest.kldartifact import check_artifact

    found = tuple(error("E1", "evaluation.kld", p.message, p.hint) for p in check_artifact(manifest, report.branch))
    return replace(report, findings=report.findings + found) if found else report
