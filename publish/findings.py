"""Checks: does a checkpoint agree with itself, with its quantization_config, and with the manifest?

Pure: a `Checkpoint` and a `Variant` in, `Finding`s out. Codes are stable (scripts may match on them):
C = config, I = index and shards, T = tensors, K = which modules are (not) quantized. Matching of `targets` and
`ignore` follows compressed-tensors' own `match_name` (exact name, or `re:` anchored at the start only).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .checkpoint import (
    CONFIG_FILE,
    INDEX_FILE,
    INT_DTYPE_BITS,
    SIDECAR_FILE,
    Checkpoint,
    QuantizedModule,
    family_of,
)
from .facts import SIZE_TOLERANCE, size_matches
from .manifest import FAMILIES, Variant

Severity = Literal["error", "warning"]
SCALE_DTYPES = ("F16", "BF16", "F32")
# Shards that vLLM fuses into one layer must share precision and scheme (its packed_modules_mapping).
FUSED_GROUPS = (
    ("q_proj", "k_proj", "v_proj"),
    ("gate_proj", "up_proj"),
    ("in_proj_qkv", "in_proj_z"),
    ("in_proj_b", "in_proj_a"),
)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    subject: str  # the file, tensor, module or config field concerned
    message: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def error(code: str, subject: str, message: str, hint: str = "") -> Finding:
    return Finding(code, "error", subject, message, hint)


def warning(code: str, subject: str, message: str, hint: str = "") -> Finding:
    return Finding(code, "warning", subject, message, hint)


class Matcher:
    """compressed-tensors' `match_name` over a list of targets; exact names go through a set, for speed."""

    def __init__(self, entries: tuple[str, ...] | list[str]) -> None:
        from compressed_tensors.utils.match import match_name

        self._match_name = match_name
        self.entries = tuple(entries)
        self.exact = {e for e in self.entries if not e.startswith("re:")}
        self.patterns = tuple(e for e in self.entries if e.startswith("re:"))

    def first(self, name: str) -> str | None:
        if name in self.exact:
            return name
        return next((p for p in self.patterns if self._match_name(name, p)), None)


def collect_findings(checkpoint: Checkpoint, variant: Variant) -> tuple[Finding, ...]:
    """Every finding for one variant, errors and warnings, in check order."""
    if checkpoint.config is None:
        return (error("C1", CONFIG_FILE, checkpoint.config_error or f"{CONFIG_FILE} is missing",
                      "a checkpoint needs the config.json its exporter wrote"),
                *check_index(checkpoint))
    findings = [*check_config(checkpoint, variant), *check_index(checkpoint)]
    if checkpoint.quantization is not None:
        findings += [*check_tensors(checkpoint), *check_ignore(checkpoint), *check_fused(checkpoint)]
    findings += [*check_families(checkpoint, variant), *check_size(checkpoint, variant)]
    return tuple(findings)


# ---------------------------------------------------------------------------------------------------------------
# C: config.json and quantization_config


def check_config(checkpoint: Checkpoint, variant: Variant) -> Iterator[Finding]:
    raw, config = checkpoint.quantization_raw, checkpoint.quantization
    if raw is None:
        yield error("C1", f"{CONFIG_FILE}: quantization_config",
                    "no quantization_config (also looked in text_config and compression_config, as vLLM does)",
                    "export with a compressed-tensors format (AutoRound format='llm_compressor')")
        return
    if config is None:
        yield error("C1", f"{CONFIG_FILE}: quantization_config",
                    f"compressed-tensors refuses the quantization_config: {checkpoint.quantization_error}",
                    "fix the config so QuantizationConfig.model_validate accepts it")
        return
    where = f"{CONFIG_FILE}: quantization_config"
    if config.quant_method != "compressed-tensors":
        yield error("C2", f"{where}.quant_method", f"quant_method is {config.quant_method!r}",
                    "hubpub checks compressed-tensors checkpoints")
    status = _text(config.quantization_status)
    if status != "compressed":
        yield error("C2", f"{where}.quantization_status",
                    f"quantization_status is {status!r}, but the weights are stored "
                    "compressed", "set it to 'compressed' (loaders decompress only then)")
    schemes = list(config.config_groups.items())
    for group, scheme in schemes:
        weights = scheme.weights
        subject = f"{where}.config_groups.{group}"
        if weights is None:
            yield error("C2", subject, "the group quantizes no weights")
            continue
        activation_bits = _activation_bits(variant.scheme)
        if activation_bits is not None and activation_bits >= 16 and scheme.input_activations is not None:
            yield error("C2", f"{subject}.input_activations",
                        f"the manifest's scheme {variant.scheme} keeps activations unquantized, but "
                        "input_activations is set", "remove input_activations or fix the manifest's scheme")
        yield from _compare_with_manifest(subject, weights, variant)
    yield from _check_sidecar(checkpoint)
    yield from _check_mtp_declared(checkpoint)


def _text(value: Any) -> str:
    """compressed-tensors enums (QuantizationStatus, QuantizationStrategy) as their plain string values."""
    return str(getattr(value, "value", value))


def _activation_bits(scheme: str) -> int | None:
    found = re.search(r"A(\d+)", scheme)
    return int(found.group(1)) if found else None


def _compare_with_manifest(subject: str, weights: Any, variant: Variant) -> Iterator[Finding]:
    hint = f"fix the manifest's variant {variant.branch!r} or re-export the checkpoint"
    if weights.num_bits != variant.bits:
        yield error("C3", f"{subject}.weights.num_bits",
                    f"config says {weights.num_bits} bits, the manifest says {variant.bits}", hint)
    strategy = _text(weights.strategy)
    if variant.per_channel and strategy != "channel":
        yield error("C3", f"{subject}.weights.strategy",
                    f"the manifest's group_size -1 means per-channel, but the config says strategy {strategy!r}"
                    f" with group_size {weights.group_size}", hint)
    if not variant.per_channel and (strategy != "group" or weights.group_size != variant.group_size):
        yield error("C3", f"{subject}.weights.group_size",
                    f"the manifest says group size {variant.group_size}, the config says strategy {strategy!r} "
                    f"with group_size {weights.group_size}", hint)
    if weights.symmetric != variant.symmetric:
        yield error("C3", f"{subject}.weights.symmetric",
                    f"config says symmetric={weights.symmetric}, the manifest says {variant.symmetric}", hint)


def _check_sidecar(checkpoint: Checkpoint) -> Iterator[Finding]:
    sidecar = checkpoint.sidecar
    if sidecar is not None and dict(sidecar) != dict(checkpoint.quantization_raw or {}):
        keys = sorted(k for k in set(sidecar) | set(checkpoint.quantization_raw or {})
                      if sidecar.get(k) != (checkpoint.quantization_raw or {}).get(k))
        yield error("C4", SIDECAR_FILE, f"differs from config.json's quantization_config (keys: {', '.join(keys)})",
                    "regenerate the sidecar from config.json, or delete it")


def _check_mtp_declared(checkpoint: Checkpoint) -> Iterator[Finding]:
    config = checkpoint.config or {}
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    declared = (text or {}).get("mtp_num_hidden_layers", config.get("mtp_num_hidden_layers")) or 0
    present = any(name.startswith("mtp.") for name in checkpoint.tensors)
    if declared and not present:
        yield error("C5", f"{CONFIG_FILE}: mtp_num_hidden_layers",
                    f"the config declares {declared} MTP layer(s) but no mtp.* tensors exist",
                    "ship the MTP weights (speculative decoding accepts 0% without them) or set it to 0")
    if present and not declared:
        yield warning("C5", f"{CONFIG_FILE}: mtp_num_hidden_layers",
                      "mtp.* tensors exist but the config declares no MTP layers",
                      "set mtp_num_hidden_layers so loaders build the MTP head")


# ---------------------------------------------------------------------------------------------------------------
# I: index and shards


def check_index(checkpoint: Checkpoint) -> Iterator[Finding]:
    for shard, why in sorted(checkpoint.unreadable.items()):
        yield error("I2", shard, f"the shard's header is unreadable or does not match the file: {why}",
                    "the file is truncated or corrupt: copy or download it again")
    for name, shards in sorted(checkpoint.duplicates.items()):
        yield error("I2", name, f"the tensor is stored in several shards: {', '.join(shards)}",
                    "keep it in one shard and fix the index")
    if checkpoint.index_error:
        yield error("I1", INDEX_FILE, checkpoint.index_error, "rewrite the index")
        return
    if checkpoint.index is None:
        if len(checkpoint.shards) > 1:
            yield error("I1", INDEX_FILE, f"{len(checkpoint.shards)} shards but no index",
                        "write model.safetensors.index.json (save_pretrained does)")
        return
    weight_map = checkpoint.index.get("weight_map") or {}
    referenced = set(weight_map.values())
    for shard in sorted(referenced - set(checkpoint.files)):
        yield error("I1", shard, "the index names this shard but the file is missing",
                    "copy the missing shard into the folder")
    for shard in sorted(set(checkpoint.shards) - referenced):
        yield error("I1", shard, "a safetensors file the index does not reference; loaders never read it",
                    "delete the leftover file, or add its tensors to the index")
    for name, shard in sorted(weight_map.items()):
        tensor = checkpoint.tensors.get(name)
        if tensor is None and shard in checkpoint.files and shard not in checkpoint.unreadable:
            yield error("I2", name, f"the index maps it to {shard}, which does not hold it", "fix the index")
        elif tensor is not None and name not in checkpoint.duplicates and tensor.shard != shard:
            yield error("I2", name, f"the index maps it to {shard} but it is in {tensor.shard}", "fix the index")
    for name in sorted(set(checkpoint.tensors) - set(weight_map)):
        yield error("I2", name, f"stored in {checkpoint.tensors[name].shard} but missing from the index",
                    "add it to weight_map, or loaders will not load it")
    declared = (checkpoint.index.get("metadata") or {}).get("total_size")
    actual = sum(t.nbytes for t in checkpoint.tensors.values())
    if declared is not None and declared != actual:
        yield warning("I3", f"{INDEX_FILE}: metadata.total_size",
                      f"says {declared} bytes, the tensors hold {actual}",
                      "AutoRound's MTP copy leaves it stale; set it to the sum of tensor bytes")


# ---------------------------------------------------------------------------------------------------------------
# T: the tensors of each quantized module


def check_tensors(checkpoint: Checkpoint) -> Iterator[Finding]:
    scheme_of = _scheme_lookup(checkpoint.quantization)
    for module in checkpoint.quantized.values():
        weights = scheme_of(module.name)
        yield from _check_module_tensors(module, weights)
    dtypes = [t.dtype for t in checkpoint.tensors.values() if t.param in ("weight", "bias")
              and t.module not in checkpoint.quantized and t.dtype in ("F32", "F16", "BF16")]
    usual = max(set(dtypes), key=dtypes.count) if dtypes else None
    for name, tensor in sorted(checkpoint.tensors.items()):
        if tensor.module in checkpoint.quantized:
            continue
        if tensor.param == "weight_scale":
            yield error("T4", name, "a scale next to a dense weight", "remove it, or store the module packed")
        elif tensor.param == "weight" and tensor.dtype in INT_DTYPE_BITS:
            yield error("T1", f"{tensor.module}.weight_scale",
                        f"missing: {name} is {tensor.dtype} but has no scale to dequantize it",
                        "re-export the module: its compressed tensors are incomplete")
        elif tensor.param in ("weight", "bias") and tensor.dtype in ("F32", "F16") and tensor.dtype != usual:
            yield warning("T4", name, f"stored as {tensor.dtype} while dense tensors are {usual}",
                          "check it against the base checkpoint: exports silently cast dtypes")


def _check_module_tensors(module: QuantizedModule, weights: Any) -> Iterator[Finding]:
    params, name = module.params, module.name
    required = ["weight_scale"] + (["weight_packed", "weight_shape"] if module.format == "pack-quantized" else [])
    for param in required:
        if param not in params:
            yield error("T1", f"{name}.{param}", "missing; loaders run the module with an uninitialized value",
                        "re-export the module: its compressed tensors are incomplete")
    if module.format == "pack-quantized" and "weight" in params:
        yield error("T1", f"{name}.weight", "a leftover dense weight next to weight_packed",
                    "remove it; the module is stored packed")
    if "weight_g_idx" in params:
        yield error("T1", f"{name}.weight_g_idx", "activation ordering is not supported by the scheme")
    packed, shape = params.get("weight_packed"), params.get("weight_shape")
    if packed is not None and packed.dtype != "I32":
        yield error("T1", packed.name, f"weight_packed is {packed.dtype}, expected I32")
    if shape is not None and (shape.dtype != "I64" or shape.shape != (2,)):
        yield error("T1", shape.name, f"weight_shape is {shape.dtype} {list(shape.shape)}, expected I64 [2]")
    if weights is None:
        return  # K2 reports a module no config group targets
    bits = weights.num_bits
    if packed is not None and module.in_features and len(packed.shape) == 2:
        expected = (module.out_features, math.ceil(module.in_features * bits / 32))
        if packed.shape != expected:
            yield error("T1", packed.name, f"shape {list(packed.shape)} does not fit weight_shape "
                        f"[{module.out_features}, {module.in_features}] at {bits} bits (expected {list(expected)})",
                        "weight_shape or weight_packed is wrong: re-export the module")
    scale = params.get("weight_scale")
    if scale is not None:
        if scale.dtype not in SCALE_DTYPES:
            yield error("T1", scale.name, f"scale dtype {scale.dtype}; expected one of {', '.join(SCALE_DTYPES)}")
        yield from _check_scale_shape(module, scale.name, scale.shape, weights)
    zero_point = params.get("weight_zero_point")
    if weights.symmetric and zero_point is not None:
        yield error("T3", zero_point.name, "a zero point in a symmetric scheme; vLLM does not load it",
                    "drop weight_zero_point, or declare the scheme asymmetric")
    if not weights.symmetric and zero_point is None:
        yield error("T3", f"{name}.weight_zero_point", "missing for an asymmetric scheme",
                    "re-export: asymmetric schemes store a zero point")


def _check_scale_shape(module: QuantizedModule, subject: str, shape: tuple[int, ...], weights: Any) -> Iterator[Finding]:
    strategy = _text(weights.strategy)
    out, inp = module.out_features, module.in_features
    if strategy == "channel":
        expected: tuple[int | None, ...] = (out, 1)
    elif strategy == "group" and weights.group_size and inp:
        if inp % weights.group_size:
            yield error("T2", module.name, f"in_features {inp} is not a multiple of group size {weights.group_size}")
            return
        expected = (out, inp // weights.group_size)
    elif strategy == "tensor":
        expected = (1,) if len(shape) == 1 else (1, 1)
    else:
        return
    if tuple(shape) != expected:
        yield error("T2", subject, f"scale shape {list(shape)} does not fit strategy {strategy!r}"
                    + (f" with group_size {weights.group_size}" if strategy == "group" else "")
                    + f" (expected {list(expected)})",
                    "the config and the tensors describe different schemes: re-export, or fix quantization_config")


def _scheme_lookup(config: Any) -> Callable[[str], Any]:
    """module name -> the weights args of the first config group targeting it ("Linear" targets every Linear)."""
    groups = [(Matcher([t for t in s.targets if t != "Linear"]), "Linear" in s.targets, s.weights)
              for s in config.config_groups.values()]

    def lookup(name: str) -> Any:
        for matcher, linear, weights in groups:
            if linear or matcher.first(name):
                return weights
        return None

    return lookup


# ---------------------------------------------------------------------------------------------------------------
# K: what is quantized and what is not


def check_ignore(checkpoint: Checkpoint) -> Iterator[Finding]:
    config = checkpoint.quantization
    ignore = Matcher(list(config.ignore or []))
    scheme_of = _scheme_lookup(config)
    used: set[str] = set()
    for pattern in ignore.patterns:
        try:
            re.compile(pattern.removeprefix("re:"))
        except re.error as problem:
            yield error("K2", f"ignore: {pattern}", f"the regex does not compile: {problem}")
    for module in checkpoint.dense:
        entry = ignore.first(module)
        if entry is not None:
            used.add(entry)
        elif scheme_of(module) is not None:
            yield error("K1", module, "a dense Linear that quantization_config.ignore does not cover; vLLM and "
                        "SGLang build it quantized and fail to load it",
                        f"add {module!r} to ignore (for MTP layers, 're:^mtp.*')")
    for module in checkpoint.quantized:
        entry = ignore.first(module)
        if entry is not None:
            used.add(entry)
            yield error("K2", module, f"stored quantized but ignore entry {entry!r} matches it",
                        "remove the entry or store the module dense")
        elif scheme_of(module) is None:
            yield error("K2", module, "stored quantized but no config group targets it",
                        "add it to a config group's targets")
    for entry in (e for e in ignore.entries if e not in used):
        single = Matcher([entry])
        if not any(single.first(module) for module in checkpoint.modules):
            yield warning("K2", f"ignore: {entry}", "matches no module in the checkpoint",
                          "remove the stale entry (or fix its spelling: entries are module names, no .weight)")


def check_fused(checkpoint: Checkpoint) -> Iterator[Finding]:
    modules = checkpoint.modules
    for group in FUSED_GROUPS:
        for module in sorted(m for m in modules if m.endswith("." + group[0])):
            prefix = module[: -len(group[0])]
            members = [prefix + part for part in group if prefix + part in modules]
            precisions = {m: _precision(checkpoint.quantized.get(m)) for m in members}
            if len(set(precisions.values())) > 1:
                detail = ", ".join(f"{m.rsplit('.', 1)[1]}: {p}" for m, p in precisions.items())
                yield error("K3", prefix.rstrip("."), f"fused group {'/'.join(group)} mixes precisions ({detail}); "
                            "vLLM refuses 'some but not all shards quantized'",
                            "quantize all of them the same way, or leave all of them dense")


def _precision(module: QuantizedModule | None) -> str:
    if module is None:
        return "dense"
    return f"{module.bits}-bit {module.strategy}" + (f"/{module.group_size}" if module.group_size else "")


def check_families(checkpoint: Checkpoint, variant: Variant) -> Iterator[Finding]:
    declared = set(variant.unquantized)
    for name, family in checkpoint.families.items():
        if name not in FAMILIES:
            continue
        if name in declared and family.quantized:
            examples = sorted(m for m in checkpoint.quantized if family_of(m) == name)[:3]
            yield error("K4", name, f"the manifest says {name} is unquantized, but {family.quantized} module(s) "
                        f"are stored quantized (e.g. {', '.join(examples)})",
                        "fix the ignore list and re-export, or remove the family from the manifest's unquantized")
        elif name not in declared and family.unquantized:
            yield error("K4", name, f"{name} is stored unquantized, but the manifest does not list it",
                        f"add {name} to variant {variant.branch!r}'s unquantized list")
        elif family.quantized and family.dense:
            dense = [m for m in checkpoint.dense if family_of(m) == name][:3]
            yield warning("K4", name, f"partly quantized: {family.quantized} quantized, {family.dense} dense "
                          f"(e.g. {', '.join(dense)})", "make sure this is intended")
    for name in sorted(declared - set(checkpoint.families)):
        yield warning("K4", name, f"the manifest lists {name} as unquantized but the checkpoint has no such modules")


def check_size(checkpoint: Checkpoint, variant: Variant) -> Iterator[Finding]:
    size_gb = checkpoint.total_bytes / 1e9
    if not size_matches(size_gb, variant.size_gb):
        yield error("I4", "size_gb", f"the weights weigh {size_gb:.2f} GB, the manifest says {variant.size_gb} GB "
                    f"(tolerance {SIZE_TOLERANCE:.1%})", "wrong folder for this branch? otherwise fix size_gb")


def summarize(findings: tuple[Finding, ...] | list[Finding]) -> Mapping[str, int]:
    return {"errors": sum(f.severity == "error" for f in findings),
            "warnings": sum(f.severity == "warning" for f in findings)}
