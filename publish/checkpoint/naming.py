"""What a scheme is called on the card and in findings: its name (W4A16, FP8-dynamic, NVFP4 …), weight type,
activations and KV-cache format, from compressed-tensors' QuantizationArgs. Pure: no tensor is built here."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """compressed-tensors enums as their plain string values."""
    return str(getattr(value, "value", value))


def type_name(args: Any) -> str:
    """INT8, INT4, FP8 E4M3, FP4 E2M1: what a card calls the numbers a tensor holds."""
    bits = int(args.num_bits)
    if text(args.type) == "int":
        return f"INT{bits}"
    return {8: "FP8 E4M3", 4: "FP4 E2M1", 6: "FP6 E2M3"}.get(bits, f"FP{bits}")


def _granularity(args: Any) -> str:
    strategy = text(args.strategy)
    if strategy in ("group", "tensor_group"):
        return f"per-group ({args.group_size})"
    if strategy == "block":
        return "per-block ({}×{})".format(*args.block_structure)
    return {"attn_head": "per-head"}.get(strategy, f"per-{strategy}")


def describe_activations(args: Any | None) -> str:
    """A card's words for a config group's `input_activations`: "dynamic per-token INT8", "static per-tensor
    FP8 E4M3", "dynamic per-group (16) FP4 E2M1, static global scale"; "none" when activations stay 16-bit."""
    if args is None:
        return "none"
    dynamic = text(args.dynamic)
    words = f"{'static' if dynamic == 'False' else 'dynamic'} {_granularity(args)} {type_name(args)}"
    return words + (", static global scale" if dynamic == "local" else "")


def describe_kv_cache(args: Any | None) -> str:
    """A card's words for `kv_cache_scheme`: "FP8 E4M3, per-tensor scales" ("none" when the cache is not
    quantized); asymmetric caches say so (vLLM does not support them)."""
    if args is None:
        return "none"
    scales = "dynamic scales" if text(args.dynamic) != "False" else f"{_granularity(args)} scales"
    return f"{type_name(args)}, {scales}" + ("" if args.symmetric else ", asymmetric")


def scheme_name(weights: Any, inputs: Any | None, fmt: str = "") -> str:
    """The name publishers use: W4A16, W8A8, FP8, FP8-dynamic, FP8-block, NVFP4, NVFP4A16, MXFP4, W4AFP8, …"""
    bits, kind = int(weights.num_bits), text(weights.type)
    strategy = text(weights.strategy)
    if kind == "float" and (fmt.startswith(("mx", "nv")) or bits < 8):
        family = ("NV" if strategy == "tensor_group" else "MX" if fmt.startswith("mx") else "") + f"FP{bits}"
        return family if inputs is not None else f"{family}A16"
    if kind == "float":
        base = f"FP{bits}" + ("-block" if strategy == "block" else "")
        if inputs is None:
            return f"{base}A16"
        return base + ("-dynamic" if inputs.dynamic and strategy != "block" else "")
    suffix = "" if weights.symmetric else "-asym"
    if inputs is None:
        return f"W{bits}A16{suffix}"
    activations = f"FP{inputs.num_bits}" if text(inputs.type) == "float" else str(inputs.num_bits)
    return f"W{bits}A{activations}{suffix}"


# ---------------------------------------------------------------------------------------------------------------
# Which formats hubpub understands
