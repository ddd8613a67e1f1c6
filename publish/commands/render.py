"""`hubpub render`: write each variant's README.md, or (`check=True`) report the ones that are out of date."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..card import PROVENANCE_MARK, make_environment, render_card
from ..errors import FactMismatch
from ..files import atomic_write
from ..manifest import Manifest
from ..provenance import read_provenance

if TYPE_CHECKING:
    from ..facts import WeightFacts

DEFAULT_OUT = "cards"


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


def gather_facts(manifest: Manifest) -> tuple[dict[str, WeightFacts], tuple[str, ...]]:
    """Facts from the weights of every variant whose folder is present; the manifest must agree with them."""
    found: dict[str, WeightFacts] = {}
    notes: list[str] = []
    for variant in manifest.variants:
        folder = manifest.variant_path(variant)
        if not folder.is_dir():
            notes.append(f"{variant.branch}: no weights at {folder}; the card uses the manifest's values")
            continue
        from ..facts import derive_facts
        from ..inspect import read_checkpoint

        found[variant.branch] = derive_facts(read_checkpoint(folder))
        notes.append(f"{variant.branch}: facts taken from the weights in {folder}")
    return agreed_facts(manifest, found), tuple(notes)


def agreed_facts(manifest: Manifest, found: Mapping[str, WeightFacts]) -> dict[str, WeightFacts]:
    """`found`, once every variant's manifest entry agrees with it; FactMismatch names each difference."""
    from ..facts import compare_facts

    for branch, facts in found.items():
        variant = manifest.variant(branch)
        differences = compare_facts(variant, facts)
        if differences:
            raise FactMismatch(
                f"variant {branch!r}: the weights at {variant.path} disagree with the manifest:\n  - "
                + "\n  - ".join(differences),
                file=manifest.source,
                hint="fix branches.yaml (or the checkpoint); hubpub never overrides the manifest silently",
            )
    return dict(found)


def render(
    manifest: Manifest, branch: str | None = None, out: Path | None = None, check: bool = False
) -> RenderResult:
    """Render the README of each selected variant into `<out>/<branch>/README.md`; with `check`, write nothing."""
    selected = manifest.select(branch)
    out = out if out is not None else manifest.root / DEFAULT_OUT
    facts, notes = gather_facts(manifest)
    env = make_environment(manifest.root / "templates")
    provenance = read_provenance(manifest.root)
    cards = []
    for variant in selected:
        text = render_card(manifest, variant, env=env, facts=facts, provenance=provenance)
        path = out / variant.branch / "README.md"
        cards.append(_compare(variant.branch, path, text) if check else _write(variant.branch, path, text))
    return RenderResult(tuple(cards), notes)


def _write(branch: str, path: Path, text: str) -> RenderedCard:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return RenderedCard(branch, path, text, "unchanged")
    atomic_write(path, text)
    return RenderedCard(branch, path, text, "written")


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
    head, mark, _ = text.partition(PROVENANCE_MARK)
    return head if mark else text
