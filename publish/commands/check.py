"""`hubpub check`: inspect each variant's checkpoint (headers only), run the checks, report findings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
        return {
            "version": REPORT_VERSION,
            "ok": self.ok,
            "variants": [
                {
                    "branch": v.branch, "location": v.location, "source": v.source, "ok": v.ok,
                    **summarize(v.findings),
                    "facts": None if v.facts is None else {
                        "bits": v.facts.bits, "group_size": v.facts.group_size, "symmetric": v.facts.symmetric,
                        "scale_dtype": v.facts.scale_dtype, "unquantized": list(v.facts.unquantized),
                        "total_bytes": v.facts.total_bytes,
                    },
                    "findings": [f.to_dict() for f in v.findings],
                }
                for v in self.variants
            ],
        }

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


def check(manifest: Manifest, branch: str | None = None, *, hub: Hub | None = None) -> CheckReport:
    """Check the selected variants. With `hub`, a variant whose folder is absent is checked on its Hub revision."""
    return CheckReport(tuple(check_variant(manifest, v, hub=hub) for v in manifest.select(branch)))


def check_variant(manifest: Manifest, variant: Variant, *, hub: Hub | None = None) -> VariantReport:
    folder = manifest.variant_path(variant)
    if folder.is_dir():
        checkpoint, source = read_checkpoint(folder), "local"
    elif hub is not None:
        from ..remote import read_remote_checkpoint

        checkpoint, source = read_remote_checkpoint(hub, manifest.repo_id, variant.branch), "remote"
        if not checkpoint.files:
            return _missing(variant, checkpoint.location, "the Hub revision holds no files")
    else:
        return _missing(variant, str(folder), f"checkpoint folder {folder} does not exist",
                        "fix the variant's path, mount the weights, or use --remote to check the Hub revision")
    return report_for(checkpoint, variant, source)


def report_for(checkpoint: Checkpoint, variant: Variant, source: str) -> VariantReport:
    return VariantReport(variant.branch, checkpoint.location, source, run_checks(checkpoint, variant),
                         derive_facts(checkpoint))


def _missing(variant: Variant, location: str, message: str, hint: str = "") -> VariantReport:
    return VariantReport(variant.branch, location, "missing", (error("C0", "path", message, hint),))
