"""Facts a card can take from the weights, and how they compare with what the manifest claims.

Pure: a `Checkpoint` in, a `WeightFacts` out. The scheme's facts (scheme name, bits, granularity, symmetry,
weight type, activations) come from the config groups of the quantized modules, one `PartFacts` per distinct
scheme (parts.py), and count only once every quantized module's tensors prove them (tensorset.py); the scale
dtype is read from the tensors, the KV-cache format from `kv_cache_scheme`. A variant-wide fact the parts disagree
on is None. When the format is unsupported or the tensors contradict the config, `refusal` says why and no card
or manifest may be written from these facts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from publish.checkpoint.model import CONFIG_FILE, NO_QUANTIZATION_CONFIG, Checkpoint, refused_config
from publish.checkpoint.naming import describe_kv_cache
from publish.checkpoint.parts import PartFacts, derive_parts, pair_parts, part_differences
from publish.manifest.variant import FAMILIES, Variant

# Sizes on cards are rounded (36.78 GB shows as 36.8); an accidentally quantized or dropped family moves the
# size by several percent, so 1% tells rounding apart from a wrong checkpoint.
SIZE_TOLERANCE = 0.01
T = TypeVar("T")
SCALE_DTYPE_NAMES = {"F16": "FP16", "BF16": "BF16", "F32": "FP32", "F8_E4M3": "FP8 E4M3", "F8_E8M0": "FP8 E8M0",
                     "U8": "E8M0 (as U8)"}


@dataclass(frozen=True)
class WeightFacts:
    bits: int | None
    group_size: int | None  # -1 per channel, as the manifest writes it
    symmetric: bool | None
    scale_dtype: str | None  # one name, or each part's joined by " · " when they differ
    unquantized: tuple[str, ...]  # families, in the manifest's order
    total_bytes: int
    scheme: str | None = None  # W8A16, FP8-dynamic, NVFP4, …
    weight_type: str | None = None  # INT8, FP8 E4M3, FP4 E2M1
    activations: str | None = None  # "none", or e.g. "dynamic per-token FP8 E4M3"
    format: str | None = None  # the compressed-tensors format
    refusal: str | None = None  # why these weights cannot back a card, if they cannot
    parts: tuple[PartFacts, ...] = ()  # one per scheme; two or more for a mixed-precision checkpoint
    kv_cache: str | None = None  # "FP8 E4M3, per-tensor scales", or "none"
    block: tuple[int, int] | None = None  # a block-wise scheme's [rows, columns]

    @property
    def size_gb(self) -> float:
        return self.total_bytes / 1e9

    @property
    def mixed(self) -> bool:
        return len(self.parts) > 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightFacts:
        """The inverse of `dataclasses.asdict`, for facts recorded in a report cache."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["unquantized"] = tuple(data["unquantized"])
        values["parts"] = tuple(PartFacts.from_dict(p) for p in data.get("parts") or ())
        values["block"] = tuple(data["block"]) if data.get("block") else None
        return cls(**values)


def _only(values: Iterable[T]) -> T | None:
    """The one value all modules share, or None when they disagree (or there are none)."""
    distinct = set(values)
    return next(iter(distinct)) if len(distinct) == 1 else None


def derive_facts(checkpoint: Checkpoint) -> WeightFacts:
    """The config's schemes, as far as every quantized module's tensors prove them; the scale dtype as stored."""
    modules = list(checkpoint.quantized.values())
    used = [m for m in modules if m.scheme is not None]
    parts = derive_parts(checkpoint, SCALE_DTYPE_NAMES)
    scale = _only(m.scale_dtype for m in modules)
    config = checkpoint.quantization
    return WeightFacts(
        bits=_only(p.bits for p in parts),
        group_size=_only(p.group_size for p in parts),
        symmetric=_only(p.symmetric for p in parts),
        scale_dtype=_scale_dtype(scale, parts),
        unquantized=tuple(f for f in FAMILIES if f in checkpoint.families and checkpoint.families[f].unquantized),
        total_bytes=checkpoint.total_bytes,
        scheme=_only(p.scheme for p in parts),
        weight_type=_only(p.weight_type for p in parts),
        activations=_only(p.activations for p in parts),
        format=_only(p.format for p in parts),
        refusal=_refusal(checkpoint, len(used), len(modules)),
        parts=parts,
        kv_cache=describe_kv_cache(config.kv_cache_scheme) if config is not None else None,
        block=_only(p.block for p in parts),
    )


def _scale_dtype(shared: str | None, parts: tuple[PartFacts, ...]) -> str | None:
    """The scale dtype every quantized module stores; for mixed precision, each part's in turn."""
    if shared:
        return SCALE_DTYPE_NAMES.get(shared, shared)
    if len(parts) > 1:
        return " · ".join(p.scale_dtype or "-" for p in parts)
    return None


def _refusal(checkpoint: Checkpoint, targeted: int, quantized: int) -> str | None:
    """Why the weights cannot back a card, or None."""
    if checkpoint.unsupported:
        return f"{CONFIG_FILE}: {checkpoint.unsupported}"
    if checkpoint.quantization_error:
        return refused_config(checkpoint)
    if checkpoint.quantization_raw is None:
        return f"{CONFIG_FILE} has {NO_QUANTIZATION_CONFIG}"
    if not quantized:
        return "no module is stored quantized"
    if targeted < quantized:
        untargeted = sorted(m.name for m in checkpoint.quantized.values() if m.scheme is None)
        return f"{len(untargeted)} quantized module(s) have no config group (e.g. {untargeted[0]})"
    problem = next((found[0] for found in checkpoint.problems.values() if found), None)
    if problem is not None:
        return f"the tensors do not prove the config's scheme: {problem.subject}: {problem.message}"
    return None


def size_matches(actual_gb: float, declared_gb: float) -> bool:
    return abs(actual_gb - declared_gb) <= SIZE_TOLERANCE * declared_gb


def compare_facts(variant: Variant, facts: WeightFacts) -> list[str]:
    """Each way the manifest's variant disagrees with its weights, as a readable line; empty when they agree."""
    pairing = pair_parts(variant.described_parts, facts.parts)
    differences = [f"parts: {problem}" for problem in pairing.problems]
    for declared, found in pairing.pairs:
        where = f" of part ({', '.join(found.families)})" if declared.families else ""
        differences += [f"{field}{where}: manifest {said}, weights {weighs}"
                        for field, said, weighs in part_differences(declared, found)]
    if kv_cache_differs(variant, facts):
        differences.append(f"kv_cache: manifest {variant.kv_cache or 'none'}, weights {facts.kv_cache}")
    if set(facts.unquantized) != set(variant.unquantized):
        differences.append(
            f"unquantized: manifest [{', '.join(variant.unquantized)}], weights [{', '.join(facts.unquantized)}]"
        )
    if not size_matches(facts.size_gb, variant.size_gb):
        differences.append(f"size_gb: manifest {variant.size_gb}, weights {facts.size_gb:.2f}")
    return differences


def kv_cache_differs(variant: Variant, facts: WeightFacts) -> bool:
    """The manifest's kv_cache (absent: not quantized) is not what kv_cache_scheme says."""
    return facts.kv_cache is not None and (variant.kv_cache or "none").lower() != facts.kv_cache.lower()
