"""Facts a card can take from the weights, and how they compare with what the manifest claims.

Pure: a `Checkpoint` in, a `WeightFacts` out. The scheme's facts (bits, group size, symmetry, weight and
activation types, scheme name) come from the config group of the quantized modules, and count only once every
quantized module's tensors prove it (tensorset.py); the scale dtype is read from the tensors. A fact two groups
disagree on is None. When the format is unsupported or the tensors contradict the config, `refusal` says why and
no card or manifest may be written from these facts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from publish.checkpoint.model import CONFIG_FILE, NO_QUANTIZATION_CONFIG, Checkpoint, refused_config
from publish.manifest.model import FAMILIES, Variant

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
    scale_dtype: str | None
    unquantized: tuple[str, ...]  # families, in the manifest's order
    total_bytes: int
    scheme: str | None = None  # W8A16, FP8-dynamic, NVFP4, …
    weight_type: str | None = None  # INT8, FP8 E4M3, FP4 E2M1
    activations: str | None = None  # 16-bit, or e.g. "FP8 E4M3 (dynamic, per token)"
    format: str | None = None  # the compressed-tensors format
    refusal: str | None = None  # why these weights cannot back a card, if they cannot

    @property
    def size_gb(self) -> float:
        return self.total_bytes / 1e9

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightFacts:
        """The inverse of `dataclasses.asdict`, for facts recorded in a report cache."""
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "unquantized": tuple(data["unquantized"])})


def _only(values: Iterable[T]) -> T | None:
    """The one value all modules share, or None when they disagree (or there are none)."""
    distinct = set(values)
    return next(iter(distinct)) if len(distinct) == 1 else None


def derive_facts(checkpoint: Checkpoint) -> WeightFacts:
    """The config's scheme, as far as every quantized module's tensors prove it; the scale dtype as stored."""
    modules = list(checkpoint.quantized.values())
    used = [m.scheme for m in modules if m.scheme is not None]
    schemes = list({id(s): s for s in used}.values())  # one per config group
    scale = _only(m.scale_dtype for m in modules)
    refusal = f"{CONFIG_FILE}: {checkpoint.unsupported}" if checkpoint.unsupported else None
    if refusal is None and checkpoint.quantization_error:
        refusal = refused_config(checkpoint)
    if refusal is None and checkpoint.quantization_raw is None:
        refusal = f"{CONFIG_FILE} has {NO_QUANTIZATION_CONFIG}"
    if refusal is None and not modules:
        refusal = "no module is stored quantized"
    if refusal is None and len(used) < len(modules):
        untargeted = sorted(m.name for m in modules if m.scheme is None)
        refusal = f"{len(untargeted)} quantized module(s) have no config group (e.g. {untargeted[0]})"
    if refusal is None:
        problem = next((found[0] for found in checkpoint.problems.values() if found), None)
        if problem is not None:
            refusal = f"the tensors do not prove the config's scheme: {problem.subject}: {problem.message}"
    return WeightFacts(
        bits=_only(s.bits for s in schemes),
        group_size=_only(s.group_size for s in schemes),
        symmetric=_only(s.symmetric for s in schemes),
        scale_dtype=SCALE_DTYPE_NAMES.get(scale, scale) if scale else None,
        unquantized=tuple(f for f in FAMILIES if f in checkpoint.families and checkpoint.families[f].unquantized),
        total_bytes=checkpoint.total_bytes,
        scheme=_only(s.name for s in schemes),
        weight_type=_only(s.weight_type for s in schemes),
        activations=_only(s.activation_type for s in schemes),
        format=_only(s.format for s in schemes),
        refusal=refusal,
    )


def size_matches(actual_gb: float, declared_gb: float) -> bool:
    return abs(actual_gb - declared_gb) <= SIZE_TOLERANCE * declared_gb


def compare_facts(variant: Variant, facts: WeightFacts) -> list[str]:
    """Each way the manifest's variant disagrees with its weights, as a readable line; empty when they agree."""
    differences = []
    if facts.scheme is not None and not same_scheme_name(variant.scheme, facts.scheme):
        differences.append(f"scheme: manifest {variant.scheme}, weights {facts.scheme}")
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


def same_scheme_name(declared: str, derived: str) -> bool:
    """W8A16 = w8a16 = W8-A16: case, dashes, underscores and spaces aside, the names must agree."""
    def norm(name: str) -> str:
        return "".join(c for c in name if c not in "-_ ").upper()

    return norm(declared) == norm(derived)
