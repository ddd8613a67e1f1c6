"""Mixed precision: the parts of a checkpoint (one scheme each, and the module families it covers), and how they
pair with the parts a manifest states.

Pure. A part is what a card can say about one scheme: config groups whose schemes read the same (name, bits,
granularity, symmetry, activations) form one part, and its families are those of the quantized modules the groups
target. A single-scheme checkpoint has one part. A manifest's variant states one scheme (a part covering every
quantized family) or `parts:`; a single scheme for a mixed checkpoint, or parts for a single scheme, is a
mismatch naming both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from publish.checkpoint.formats import Scheme
from publish.checkpoint.model import Checkpoint
from publish.manifest.variant import FAMILIES, Part

# Fields a manifest part states, as the difference lines and C3 findings name them.
PART_FIELDS = ("scheme", "bits", "group_size", "symmetric", "block", "activations")


@dataclass(frozen=True)
class PartFacts:
    """One scheme of a checkpoint and where it is used."""

    scheme: str  # W4A16, FP8-block, …
    bits: int
    group_size: int  # -1 per channel, 0 per tensor, the block's columns for block scales
    symmetric: bool
    block: tuple[int, int] | None
    activations: str  # "dynamic per-token INT8", or "none"
    weight_type: str  # INT4, FP8 E4M3, …
    format: str
    families: tuple[str, ...]  # in FAMILIES order
    groups: tuple[str, ...]  # the config groups it comes from
    scale_dtype: str | None = None  # as stored, when every module agrees

    @property
    def label(self) -> str:
        return part_label(self.scheme, self.group_size, self.block, self.families)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartFacts:
        block = data.get("block")
        return cls(**{**data, "block": tuple(block) if block else None, "families": tuple(data["families"]),
                      "groups": tuple(data["groups"])})


def granularity(group_size: int | None, block: Sequence[int] | None) -> str:
    """How a card says a scheme's scale granularity: "group 64", "per-channel", "per-tensor", "128×128 blocks"."""
    if block:
        return f"{block[0]}×{block[1]} blocks"
    return {-1: "per-channel", 0: "per-tensor", None: "?"}.get(group_size, f"group {group_size}")


def part_label(scheme: str | None, group_size: int | None, block: Sequence[int] | None,
               families: Sequence[str]) -> str:
    """ "W4A16, group 64 (mlp, experts)", "W8A16 per-channel (self_attn)": a part as a card names it."""
    amount = granularity(group_size, block)
    text = f"{scheme}, {amount}" if amount.startswith("group") or block else f"{scheme} {amount}"
    return text + (f" ({', '.join(families)})" if families else "")


def derive_parts(checkpoint: Checkpoint, scale_names: Mapping[str, str]) -> tuple[PartFacts, ...]:
    """The checkpoint's parts, in config-group order (empty when no quantized module has a scheme)."""
    families: dict[str, set[str]] = {}
    scales: dict[str, set[str]] = {}
    for module in checkpoint.quantized.values():
        if module.scheme is None:
            continue
        families.setdefault(module.scheme.group, set()).add(module.family)
        if module.scale_dtype:
            scales.setdefault(module.scheme.group, set()).add(module.scale_dtype)
    merged: dict[tuple[Any, ...], list[Scheme]] = {}
    for group, scheme in checkpoint.schemes.items():
        if group in families:
            merged.setdefault(_key(scheme), []).append(scheme)
    parts = []
    for schemes in merged.values():
        first = schemes[0]
        covered = set().union(*(families[s.group] for s in schemes))
        stored = set().union(*(scales.get(s.group, set()) for s in schemes))
        parts.append(PartFacts(
            scheme=first.name, bits=first.bits, group_size=first.group_size, symmetric=first.symmetric,
            block=first.block, activations=first.activations, weight_type=first.weight_type, format=first.format,
            families=_ordered(covered), groups=tuple(s.group for s in schemes),
            scale_dtype=scale_names.get(next(iter(stored)), next(iter(stored))) if len(stored) == 1 else None,
        ))
    return tuple(parts)


def _key(scheme: Scheme) -> tuple[Any, ...]:
    return (scheme.name, scheme.bits, scheme.group_size, scheme.symmetric, scheme.block, scheme.activations,
            scheme.format)


def _ordered(families: set[str]) -> tuple[str, ...]:
    return tuple(f for f in FAMILIES if f in families) + tuple(sorted(families - set(FAMILIES)))


# ---------------------------------------------------------------------------------------------------------------
# Pairing a manifest's parts with the checkpoint's


@dataclass(frozen=True)
class Pairing:
    """Which manifest part describes which checkpoint part, and what is left over."""

    pairs: tuple[tuple[Part, PartFacts], ...]
    problems: tuple[str, ...]  # a manifest and a checkpoint that are not shaped alike, as readable sentences


def pair_parts(declared: Sequence[Part], found: Sequence[PartFacts]) -> Pairing:
    """A single scheme pairs with a single-scheme checkpoint; parts pair by the families they cover."""
    if not found:
        return Pairing((), ())
    single = len(declared) == 1 and not declared[0].families
    if single and len(found) > 1:
        labels = " · ".join(p.label for p in found)
        return Pairing((), ((f"the weights are mixed precision: {labels}; the manifest states one scheme, "
                            f"{declared[0].scheme}"),))
    if single:
        return Pairing(((declared[0], found[0]),), ())
    if len(found) == 1:
        one = part_label(found[0].scheme, found[0].group_size, found[0].block, found[0].families)
        return Pairing((), ((f"the manifest states {len(declared)} parts, but the weights use one scheme for every "
                            f"quantized module: {one}"),))
    pairs, problems = [], []
    unmatched = list(declared)
    for part in found:
        match = next((d for d in unmatched if set(d.families) == set(part.families)), None)
        if match is None:
            problems.append(f"the weights' part {part.label} is not among the manifest's parts")
            continue
        unmatched.remove(match)
        pairs.append((match, part))
    problems += [f"the manifest's part {part_label(d.scheme, d.group_size, d.block, d.families)} matches no part of "
                 "the weights (parts pair by the families they cover)" for d in unmatched]
    return Pairing(tuple(pairs), tuple(problems))


def part_differences(declared: Part, found: PartFacts) -> list[tuple[str, str, str]]:
    """(field, what the manifest says, what the weights say) for each fact the manifest's part gets wrong. A wrong
    scheme name already says the activations are wrong, so they are not repeated then."""
    differences = []
    name_differs = not same_scheme_name(declared.scheme, found.scheme)
    if name_differs:
        differences.append(("scheme", declared.scheme, found.scheme))
    for field in ("bits", "group_size", "symmetric", "block"):
        if getattr(declared, field) != getattr(found, field):
            differences.append((field, _shown(getattr(declared, field)), _shown(getattr(found, field))))
    if not name_differs and _words(declared.activations or "none") != _words(found.activations):
        differences.append(("activations", declared.activations or "none", found.activations))
    return differences


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "×".join(map(str, value))
    return "none" if value is None else str(value)


def _words(text: str) -> str:
    return " ".join(text.lower().replace(",", " ").split())


def same_scheme_name(declared: str, derived: str) -> bool:
    """W8A16 = w8a16 = W8-A16: case, dashes, underscores and spaces aside, the names must agree."""
    def norm(name: str) -> str:
        return "".join(c for c in name if c not in "-_ ").upper()

    return norm(declared) == norm(derived)
