"""The checking stage: each variant's checkpoint (local folder or Hub revision) → findings and weight facts.

`hubpub check`, `render` and `push` all go through `examine`, so a report recorded by one is reused by the others
while the checkpoint's files and the variant's manifest entry are unchanged (see reportcache.py). A variant whose
folder is absent gets one C0 finding, or, with a Hub, is examined on its revision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from publish.checkpoint.architecture import ArchitectureCache
from publish.checkpoint.facts import WeightFacts, compare_facts, derive_facts
from publish.checkpoint.findings import Finding, collect_findings, error, summarize
from publish.checkpoint.reportcache import ReportCache, checkpoint_key, revision_key
from publish.errors import FactMismatch
from publish.manifest.model import Manifest
from publish.manifest.variant import Variant
from publish.util.listing import Listing, list_folder

if TYPE_CHECKING:
    from publish.checkpoint.model import Checkpoint
    from publish.hub.client import Hub
    from publish.hub.state import RemoteState

REPORT_VERSION = 1
ARCHITECTURES_FILE = "architectures.json"
LOCAL, REMOTE, MISSING = "local", "remote", "missing"


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
            None if facts is None else WeightFacts.from_dict(facts),
        )


@dataclass(frozen=True)
class Report:
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

    def facts(self) -> dict[str, WeightFacts]:
        return {v.branch: v.facts for v in self.variants if v.facts is not None}

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


def examine(
    manifest: Manifest, variants: tuple[Variant, ...], *, hub: Hub | None = None, cache: ReportCache | None = None,
    reuse: bool = False, remote: bool = False, listings: Mapping[str, Listing] | None = None,
    remote_states: Mapping[str, RemoteState] | None = None,
) -> Report:
    """Examine each variant. With `hub`, a variant whose folder is absent (every variant, with `remote`) is
    examined on its Hub revision.

    With `cache`, local reports are recorded; with `reuse` too, a report recorded for the same hubpub version,
    manifest entry and unchanged files is returned without reading the checkpoint again. `listings` (by branch)
    are the variants' folders as the caller listed them, and `remote_states` (by branch) their Hub revisions as the
    caller read them; what is not in them is read here.
    """
    architectures = ArchitectureCache(cache.beside(ARCHITECTURES_FILE) if cache is not None else None)
    reports = tuple(examine_variant(manifest, v, hub=hub, cache=cache, reuse=reuse, remote=remote,
                                    architectures=architectures, listing=(listings or {}).get(v.branch),
                                    remote_state=(remote_states or {}).get(v.branch)) for v in variants)
    if cache is not None:
        cache.save()
    return Report(reports)


def examine_variant(
    manifest: Manifest, variant: Variant, *, hub: Hub | None = None, cache: ReportCache | None = None,
    reuse: bool = False, remote: bool = False, architectures: ArchitectureCache | None = None,
    listing: Listing | None = None, remote_state: RemoteState | None = None,
) -> VariantReport:
    folder = manifest.variant_path(variant)
    if folder.is_dir() and not (remote and hub is not None):
        from publish.checkpoint.read import read_checkpoint

        found = listing or list_folder(folder.resolve())
        key = checkpoint_key(variant.model_dump(mode="json"), found) if cache is not None else None
        return recorded_or(cache, key, reuse,
                           lambda: report_for(read_checkpoint(folder, architectures, found), variant, LOCAL))
    if hub is not None:
        return examine_revision(manifest, variant, hub, cache=cache, reuse=reuse, architectures=architectures,
                                state=remote_state)
    return missing(variant, str(folder), f"checkpoint folder {folder} does not exist",
                   "fix the variant's path, mount the weights, or use --remote to check the Hub revision")


def examine_revision(
    manifest: Manifest, variant: Variant, hub: Hub, *, cache: ReportCache | None, reuse: bool,
    architectures: ArchitectureCache | None, state: RemoteState | None,
) -> VariantReport:
    """The report of the variant's Hub revision, recorded under its head commit (and reused, with `reuse`)."""
    from publish.checkpoint.remote import read_remote_checkpoint

    branch = state or hub.remote_state(manifest.repo_id, variant.branch)

    def examined() -> VariantReport:
        checkpoint = read_remote_checkpoint(hub, manifest.repo_id, variant.branch, architectures, branch)
        if checkpoint is None or not checkpoint.shards:
            return missing(variant, f"{hub.endpoint}/{manifest.repo_id}/tree/{variant.branch}",
                           "the Hub revision holds no weights", "push the weights first")
        return report_for(checkpoint, variant, REMOTE)

    key = None
    if cache is not None and branch.head is not None:
        key = revision_key(variant.model_dump(mode="json"), hub.endpoint, manifest.repo_id, branch.head)
    return recorded_or(cache, key, reuse, examined)


def recorded_or(cache: ReportCache | None, key: str | None, reuse: bool,
                examined: Callable[[], VariantReport]) -> VariantReport:
    """The report recorded under `key` when `reuse` allows it, else `examined()`, recorded under `key` unless it
    found no weights to check."""
    if cache is None or key is None:
        return examined()
    recorded = cache.get(key) if reuse else None
    if recorded is not None:
        return VariantReport.from_dict(recorded)
    report = examined()
    if report.source != MISSING:
        cache.put(key, report.to_dict())
    return report


def report_for(checkpoint: Checkpoint, variant: Variant, source: str) -> VariantReport:
    from publish.checkpoint.read import without_gc

    with without_gc():  # tens of thousands of small objects on a 56k-tensor model; see without_gc
        facts = derive_facts(checkpoint)
        return VariantReport(variant.branch, checkpoint.location, source,
                             collect_findings(checkpoint, variant, facts), facts)


def missing(variant: Variant, location: str, message: str, hint: str = "") -> VariantReport:
    return VariantReport(variant.branch, location, MISSING, (error("C0", "path", message, hint),))


def agreed_facts(manifest: Manifest, found: Mapping[str, WeightFacts]) -> dict[str, WeightFacts]:
    """`found`, once every variant's manifest entry agrees with it; FactMismatch names each difference, or why the
    weights cannot back a card at all (an unsupported format, tensors that contradict the config)."""
    for branch, facts in found.items():
        variant = manifest.variant(branch)
        if facts.refusal is not None:
            raise FactMismatch(
                f"variant {branch!r}: the weights at {variant.path} cannot back a card: {facts.refusal}",
                file=manifest.source,
                hint="run `hubpub check` to see every finding; hubpub never writes a card it cannot prove",
            )
        differences = compare_facts(variant, facts)
        if differences:
            raise FactMismatch(
                f"variant {branch!r}: the weights at {variant.path} disagree with the manifest:\n  - "
                + "\n  - ".join(differences),
                file=manifest.source,
                hint="fix branches.yaml (or the checkpoint); hubpub never overrides the manifest silently",
            )
    return dict(found)


def other_facts(manifest: Manifest, variants: tuple[Variant, ...] | list[Variant],
                cache: ReportCache | None) -> dict[str, WeightFacts]:
    """The facts of the variants other than `variants` whose folders are here, as `hubpub render` takes them, so
    a push of one branch renders the card's shared table as `render` does (recorded reports are reused). A
    variant whose weights fail their checks is left to the manifest: its own push stops on them."""
    others = tuple(v for v in manifest.variants if v not in variants and manifest.variant_path(v).is_dir())
    if not others:
        return {}
    report = examine(manifest, others, cache=cache, reuse=True)
    return {v.branch: v.facts for v in report.variants if v.ok and v.facts is not None}
