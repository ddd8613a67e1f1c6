"""How a card states a variant's quantization: its scheme (each part's, for mixed precision), per-part values,
block-wise granularity, and the `vllm serve` argument its quantized KV cache needs. Pure: manifest values in, text
out."""

from __future__ import annotations

from collections.abc import Callable

from publish.checkpoint.parts import granularity, part_label
from publish.manifest.model import Manifest
from publish.manifest.variant import Part as QuantPart
from publish.manifest.variant import Variant


def scheme_text(variant: Variant) -> str:
    """The scheme's name; for mixed precision each part with its granularity and families, joined by " · "."""
    if variant.parts is None:
        return str(variant.scheme)
    return " · ".join(part_label(p.scheme, p.group_size, p.block, p.families) for p in variant.parts)


def per_part(variant: Variant, show: Callable[[QuantPart], str]) -> str:
    """One value when every part shares it, else each part's in turn."""
    shown = [show(part) for part in variant.described_parts]
    return shown[0] if len(set(shown)) == 1 else " · ".join(shown)


def group_size_text(group_size: int, style: str = "words") -> str:
    """The group size as the card shows it: per-channel (-1), per-tensor (0) or the group's size; with the
    "number" style, the number the quantization config uses."""
    if style == "words":
        return {-1: "per-channel", 0: "per-tensor"}.get(group_size, str(group_size))
    return str(group_size)


def part_group_size(part: QuantPart, style: str) -> str:
    """The group size in the card's style (group_size_text), or a block-wise scheme's blocks ("128×128 blocks")."""
    if part.block:
        return granularity(part.group_size, part.block)
    return group_size_text(part.group_size, style)


# vLLM's --kv-cache-dtype for a KV-cache format the card states (vllm serve --help: fp8 is FP8 E4M3).
VLLM_KV_CACHE_DTYPES = {"FP8 E4M3": "fp8", "FP8 E5M2": "fp8_e5m2"}


def kv_cache_flag(manifest: Manifest, variant: Variant) -> str | None:
    """The `vllm serve` argument that turns on the variant's quantized KV cache, unless the usage already gives
    one: without it vLLM keeps the cache in the model's precision and ignores the checkpoint's scales."""
    kind = (variant.kv_cache or "").split(",")[0].strip()
    dtype = VLLM_KV_CACHE_DTYPES.get(kind)
    serve = manifest.usage.serve if manifest.usage else None
    if dtype is None or serve is None or any(arg.startswith("--kv-cache-dtype") for arg in serve.args):
        return None
    return f"--kv-cache-dtype {dtype}"
