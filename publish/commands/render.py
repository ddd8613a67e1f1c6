"""`hubpub render`: write each variant's README.md, or (`check=True`) report the ones that are out of date."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from publish.card.provenance import read_provenance
from publish.card.render import CARDS_FOLDER, PROVENANCE_MARK, make_environment, render_card
from publish.checkpoint.report import Report, agreed_facts, examine
from publish.checkpoint.reportcache import ReportCache
from publish.errors import ChecksFailed
from publish.manifest.kldartifact import resolve as resolve_kld
from publish.manifest.model import Manifest
from publish.util.atomic import write_if_changed

if TYPE_CHECKING:
    from publish.checkpoint.facts import WeightFacts

DEFAULT_OUT = CARDS_FOLDER


@dataclass(frozen=True)
class RenderedCard:
    branch: str
    path: Path
    text: str
    # written | unchanged | out-of-date | missing
    status: str
    diff: str = ""


@dataclass(frozen=True)
class RenderResult:
    cards: tuple[RenderedCard, ...]
    notes: tuple[str, ...]

    @property
    def drift(self) -> tuple[RenderedCard, ...]:
        return tuple(c for c in self.cards if c.status in ("out-of-date", "missing"))


def gather_facts(
    manifest: Manifest, cache: ReportCache | None = None
) -> tuple[dict[str, WeightFacts], tuple[str, ...]]:
    """Facts from the weights of every variant whose folder is present; the manifest must agree with them, and
    an error-level finding on the weights stops the render (ChecksFailed), as it stops a push.

    A report recorded by `hubpub check` for unchanged files is reused, so rendering checked weights reads no
    header and imports neither torch nor compressed-tensors.
    """
    present = tuple(v for v in manifest.variants if manifest.variant_path(v).is_dir())
    notes = [f"{v.branch}: no weights at {manifest.variant_path(v)}; the card uses the manifest's values"
             for v in manifest.variants if v not in present]
    report = examine(manifest, present, cache=cache, reuse=True)
    failed = Report(tuple(v for v in report.variants if not v.ok))
    if failed.variants:
        # A card must not state what `hubpub check` finds false, even when the manifest matches the facts.
        raise ChecksFailed("checks failed; no card was written\n" + failed.format_text(),
                           hint="fix the findings above (`hubpub check` shows them again)")
    notes += [f"{v.branch}: facts taken from the weights in {v.location}" for v in report.variants]
    return agreed_facts(manifest, report.facts()), tuple(notes)


def render(
    manifest: Manifest, branch: str | None = None, out: Path | None = None, check: bool = False,
    cache: ReportCache | None = None,
) -> RenderResult:
    """Render the README of each selected variant into `<out>/<branch>/README.md`; with `check`, write nothing
    and report the cards on disk that differ from what would be written."""
    selected = manifest.select(branch)
    manifest = resolve_kld(manifest)
    out = out if out is not None else manifest.root / DEFAULT_OUT
    facts, notes = gather_facts(manifest, cache)
    env = make_environment(manifest.root / "templates", cache.beside("templates") if cache is not None else None)
    verified = cache.front_matter() if cache is not None else None
    provenance = read_provenance(manifest.root)
    cards = []
    for variant in selected:
        text = render_card(manifest, variant, env=env, facts=facts, provenance=provenance, verified=verified)
        path = out / variant.branch / "README.md"
        cards.append(_compare(variant.branch, path, text) if check else _write(variant.branch, path, text))
    if cache is not None and verified is not None:
        cache.put_front_matter(verified)
        cache.save()
    return RenderResult(tuple(cards), notes)


def _write(branch: str, path: Path, text: str) -> RenderedCard:
    return RenderedCard(branch, path, text, "written" if write_if_changed(path, text) else "unchanged")


def _compare(branch: str, path: Path, text: str) -> RenderedCard:
    if not path.is_file():
        return RenderedCard(branch, path, text, "missing", f"{path} does not exist\n")
    old = path.read_text(encoding="utf-8")
    # The provenance line names the commit, which changes with every commit; it is not drift.
    if _without_provenance(old) == _without_provenance(text):
        return RenderedCard(branch, path, text, "unchanged")
    diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), text.splitlines(keepends=True), f"{path} (on disk)", f"{path} (rendered)"
        )
    )
    return RenderedCard(branch, path, text, "out-of-date", diff)


def _without_provenance(text: str) -> str:
    """The card without the one line after the provenance mark (it names the commit, which changes with every
    commit); everything else, text after it included, is compared."""
    head, mark, tail = text.partition(PROVENANCE_MARK + "\n")
    return head + mark + tail.partition("\n")[2] if mark else text
