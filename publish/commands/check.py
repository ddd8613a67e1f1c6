"""`hubpub check`: inspect each variant's checkpoint (headers only), run the checks, report findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..checkcache import CheckCache, checkpoint_key
from ..checks import Finding, error, run_checks, summarize
from ..facts import WeightFacts, derive_facts
from ..inspect import Checkpoint, read_checkpoint
from ..manifest import Manifest, Variant

if TYPE_CHECKING:
    from ..hub import Hub

REPORT_VERSION = 1


@dataclass(frozen=True)
class VariantReport:
    branch: str
    location: str
    source: str  # local | remote | missing
    findings: tuple[Finding, ...]
    facts: WeightFacts | None = None

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        facts = None if self.facts is None else {**asdict(self.facts), "unquantized": list(self.facts.unquantized)}
        return {"branch": self.branch, "location": self.location, "source": self.source, "ok": self.ok,
                **summarize(self.findings), "facts": facts, "findings": [f.to_dict() for f in self.findings]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantReport:
        facts = data["facts"]
        return cls(
            data["branch"], data["location"], data["source"],
            tuple(Finding(**f) for f in data["findings"]),
            None if facts is None else WeightFacts(**{**facts, "unquantized": tuple(facts["unquantized"])}),
        )


@dataclass(frozen=True)
class CheckReport:
    variants: tuple[VariantReport, ...]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.variants)

    def summary(self) -> str:
        """One line per report, for commit descriptions: 'main: 0 errors, 1 warning (local)'."""
        parts = []
        for v in self.variants:
            counts = summarize(v.findings)
            parts.append(f"{v.branch}: {counts['errors']} errors, {counts['warnings']} warnings ({v.source})")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A stable, versioned form for scripts: codes and field names do not change without a version bump."""
        return {"version": REPORT_VERSION, "ok": self.ok, "variants": [v.to_dict() for v in self.variants]}

    def format_text(self) -> str:
        lines = []
        for v in self.variants:
            counts = summarize(v.findings)
            status = "ok" if v.ok else "FAILED"
            lines.append(f"{v.branch} ({v.source}: {v.location}): {status}, "
                         f"{counts['errors']} error(s), {counts['warnings']} warning(s)")
            for f in v.findings:
                lines.append(f"  {f.severity:7} {f.code}  {f.subject}: {f.message}")
                if f.hint:
                    lines.append(f"                 fix: {f.hint}")
        return "\n".join(lines)


def check(
    manifest: Manifest, branch: str | None = None, *, hub: Hub | None = None, cache: CheckCache | None = None,
    reuse: bool = False,
) -> CheckReport:
    """Check the selected variants. With `hub`, a variant whose folder is absent is checked on its Hub revision.

    With `cache`, local reports are recorded; with `reuse` too, a report recorded for the same hubpub version,
    manifest entry and unchanged files is returned without checking again.
    """
    reports = tuple(check_variant(manifest, v, hub=hub, cache=cache, reuse=reuse) for v in manifest.select(branch))
    if cache is not None:
        cache.save()
    return CheckReport(reports)


def check_variant(
    manifest: Manifest, variant: Variant, *, hub: Hub | None = None, cache: CheckCache | None = None,
    reuse: bool = False,
) -> VariantReport:
    folder = manifest.variant_path(variant)
    if folder.is_dir():
        key = checkpoint_key(variant.model_dump(mode="json"), folder.resolve()) if cache is not None else ""
        recorded = cache.get(key) if cache is not None and reuse else None
        if recorded is not None:
            return VariantReport.from_dict(recorded)
        report = report_for(read_checkpoint(folder), variant, "local")
        if cache is not None:
            cache.put(key, report.to_dict())
        return report
    if hub is not None:
        from ..remote import read_remote_checkpoint

        checkpoint = read_remote_checkpoint(hub, manifest.repo_id, variant.branch)
        if not checkpoint.files:
            return _missing(variant, checkpoint.location, "the Hub revision holds no files")
        return report_for(checkpoint, variant, "remote")
    return _missing(variant, str(folder), f"checkpoint folder {folder} does not exist",
                    "fix the variant's path, mount the weights, or use --remote to check the Hub revision")


def report_for(checkpoint: Checkpoint, variant: Variant, source: str) -> VariantReport:
    return VariantReport(variant.branch, checkpoint.location, source, run_checks(checkpoint, variant),
                         derive_facts(checkpoint))


def _missing(variant: Variant, location: str, message: str, hint: str = "") -> VariantReport:
    return VariantReport(variant.branch, location, "missing", (error("C0", "path", message, hint),))
