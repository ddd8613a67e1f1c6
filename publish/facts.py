"""Facts a card can take from the weights, and how they compare with what the manifest claims.

Pure: a `Checkpoint` in, a `WeightFacts` out. A fact the weights cannot tell unambiguously (two bit widths in one
checkpoint, say) is None; the checks report the inconsistency itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .checkpoint import Checkpoint
from .manifest import FAMILIES, Variant

# Sizes on cards are rounded (36.78 GB shows as 36.8); an accidentally quantized or dropped family moves the
# size by several percent, so 1% tells rounding apart from a wrong checkpoint.
SIZE_TOLERANCE = 0.01
T = TypeVar("T")
SCALE_DTYPE_NAMES = {"F16": "FP16", "BF16": "BF16", "F32": "FP32"}


@dataclass(frozen=True)
class WeightFacts:
    bits: int | None
    group_size: int | None  # -1 per channel, as the manifest writes it
    symmetric: bool | None
    scale_dtype: str | None
    unquantized: tuple[str, ...]  # families, in the manifest's order
    total_bytes: int

    @property
    def size_gb(self) -> float:
        return self.total_bytes / 1e9

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightFacts:
        """The inverse of `dataclasses.asdict`, for facts recorded in a report cache."""
        return cls(**{**data, "unquantized": tuple(data["unquantized"])})


def _only(values: Iterable[T]) -> T | None:
    """The one value all modules share, or None when they disagree (or there are none)."""
    distinct = set(values)
    return next(iter(distinct)) if len(distinct) == 1 else None


def derive_facts(checkpoint: Checkpoint) -> WeightFacts:
    """What the tensors themselves say about the scheme; the config is not consulted."""
    modules = list(checkpoint.quantized.values())
    scale = _only(m.scale_dtype for m in modules)
    return WeightFacts(
        bits=_only(m.bits for m in modules),
        group_size=_only(-1 if m.strategy == "channel" else m.group_size for m in modules),
        symmetric=_only(m.symmetric for m in modules),
        scale_dtype=SCALE_DTYPE_NAMES.get(scale, scale) if scale else None,
        unquantized=tuple(f for f in FAMILIES if f in checkpoint.families and checkpoint.families[f].unquantized),
        total_bytes=checkpoint.total_bytes,
    )


def size_matches(actual_gb: float, declared_gb: float) -> bool:
    return abs(actual_gb - declared_gb) <= SIZE_TOLERANCE * declared_gb


def compare_facts(variant: Variant, facts: WeightFacts) -> list[str]:
    """Each way the manifest's variant disagrees with its weights, as a readable line; empty when they agree."""
    differences = []
    if facts.bits is not None and facts.bits != variant.bits:
        differences.append(f"bits: manifest {variant.bits}, weights {facts.bits}")
    if facts.group_size is not None and facts.group_size != variant.group_size:
        differences.append(f"group_size: manifest {variant.group_size}, weights {facts.group_size}")
    if facts.symmetric is not None and facts.symmetric != variant.symmetric:
        differences.append(f"symmetric: manifest {variant.symmetric}, weights {facts.symmetric}")
    if set(facts.unquantized) != set(variant.unquantized):
        differences.append(
            f"unquantized: manifest [{', '.join(variant.unquantized)}], weights [{', '.join(facts.unquantized)}]"
        )
    if not size_matches(facts.size_gb, variant.size_gb):
        differences.append(f"size_gb: manifest {variant.size_gb}, weights {facts.size_gb:.2f}")
    return differences
