"""Checks: does a checkpoint agree with itself, with its quantization_config, and with the manifest?

Pure: a `Checkpoint` and a `Variant` in, `Finding`s out. Codes are stable (scripts may match on them):
C = config, I = index and shards, T = tensors, K = which modules are (not) quantized. Matching of `targets` and
`ignore` follows compressed-tensors' own `match_name` (exact name, or `re:` anchored at the start only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Literal

from publish.checkpoint.facts import SIZE_TOLERANCE, same_scheme_name, size_matches
from publish.checkpoint.families import family_of
from publish.checkpoint.formats import Scheme, supported_formats, text
from publish.checkpoint.model import (
    CONFIG_FILE,
    INDEX_FILE,
    NO_QUANTIZATION_CONFIG,
    SIDECAR_FILE,
    Checkpoint,
    QuantizedModule,
    refused_config,
)
from publish.checkpoint.quantconfig import Matcher
from publish.manifest.model import FAMILIES, Variant
from publish.util.modelconfig import text_setting

Severity = Literal["error", "warning"]
REPEATS_SHOWN = 3  # findings shown per (code, parameter) before the rest are counted in one
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


def collect_findings(checkpoint: Checkpoint, variant: Variant) -> tuple[Finding, ...]:
    """Every finding for one variant, errors and warnings, in check order."""
    if checkpoint.config is None:
        return (error("C1", CONFIG_FILE, checkpoint.config_error or f"{CONFIG_FILE} is missing",
                      "a checkpoint needs the config.json its exporter wrote"),
                *check_index(checkpoint))
    if checkpoint.unsupported is not None:
        return (unsupported(checkpoint),)
    findings = [*check_config(checkpoint, variant), *check_index(checkpoint)]
    if checkpoint.quantization is not None:
        findings += [*check_tensors(checkpoint), *check_ignore(checkpoint), *check_fused(checkpoint)]
    findings += [*check_families(checkpoint, variant), *check_size(checkpoint, variant)]
    return tuple(findings)


def unsupported(checkpoint: Checkpoint) -> Finding:
    """The one finding for a checkpoint whose format or method hubpub does not understand."""
    return error("C6", f"{CONFIG_FILE}: quantization_config", f"{checkpoint.unsupported}; hubpub checks nothing else",
                 f"hubpub supports compressed-tensors checkpoints in {', '.join(supported_formats())}")


# ---------------------------------------------------------------------------------------------------------------
# C: config.json and quantization_config


def check_config(checkpoint: Checkpoint, variant: Variant) -> Iterator[Finding]:
    raw, config = checkpoint.quantization_raw, checkpoint.quantization
    if raw is None:
        yield error("C1", f"{CONFIG_FILE}: quantization_config",
                    NO_QUANTIZATION_CONFIG,
                    "export with a compressed-tensors format (AutoRound format='llm_compressor')")
        return
    if config is None:
        yield error("C1", f"{CONFIG_FILE}: quantization_config",
                    refused_config(checkpoint),
                    "fix the config so QuantizationConfig.model_validate accepts it")
        return
    where = f"{CONFIG_FILE}: quantization_config"
    status = text(config.quantization_status)
    if status != "compressed":
        yield error("C2", f"{where}.quantization_status",
                    f"quantization_status is {status!r}, but the weights are stored "
                    "compressed", "set it to 'compressed' (loaders decompress only then)")
    for group, ct_scheme in config.config_groups.items():
        subject = f"{where}.config_groups.{group}"
        scheme = checkpoint.schemes.get(group)
        if ct_scheme.weights is None or scheme is None:
            yield error("C2", subject, "the group quantizes no weights")
            continue
        activation_bits = _activation_bits(variant.scheme)
        if activation_bits is not None and activation_bits >= 16 and scheme.inputs is not None:
            yield error("C2", f"{subject}.input_activations",
                        f"the manifest's scheme {variant.scheme} keeps activations unquantized, but "
                        "input_activations is set", "remove input_activations or fix the manifest's scheme")
        elif not same_scheme_name(variant.scheme, scheme.name):
            yield error("C3", f"{subject}", f"the config's scheme is {scheme.name} ({scheme.weight_type} weights, "
                        f"{scheme.activation_type} activations), the manifest says {variant.scheme}",
                        f"set the manifest's scheme to {scheme.name}")
        yield from _compare_with_manifest(subject, scheme, variant)
    yield from _check_sidecar(checkpoint)
    yield from _check_mtp_declared(checkpoint)


def _activation_bits(scheme: str) -> int | None:
    found = re.search(r"A(\d+)", scheme)
    return int(found.group(1)) if found else None


def _granularity(group_size: int) -> str:
    return {-1: "per channel (-1)", 0: "per tensor (0)"}.get(group_size, f"group size {group_size}")


def _compare_with_manifest(subject: str, scheme: Scheme, variant: Variant) -> Iterator[Finding]:
    hint = f"fix the manifest's variant {variant.branch!r} or re-export the checkpoint"
    if scheme.bits != variant.bits:
        yield error("C3", f"{subject}.weights.num_bits",
                    f"config says {scheme.bits} bits, the manifest says {variant.bits}", hint)
    if scheme.group_size != variant.group_size:
        field = "strategy" if variant.per_channel else "group_size"
        yield error("C3", f"{subject}.weights.{field}",
                    f"the manifest says {_granularity(variant.group_size)}, the config says strategy "
                    f"{scheme.strategy!r} with group_size {scheme.weights.group_size}", hint)
    if scheme.symmetric != variant.symmetric:
        yield error("C3", f"{subject}.weights.symmetric",
                    f"config says symmetric={scheme.symmetric}, the manifest says {variant.symmetric}", hint)


def _check_sidecar(checkpoint: Checkpoint) -> Iterator[Finding]:
    sidecar = checkpoint.sidecar
    if sidecar is not None and dict(sidecar) != dict(checkpoint.quantization_raw or {}):
        keys = sorted(k for k in set(sidecar) | set(checkpoint.quantization_raw or {})
                      if sidecar.get(k) != (checkpoint.quantization_raw or {}).get(k))
        yield error("C4", SIDECAR_FILE, f"differs from config.json's quantization_config (keys: {', '.join(keys)})",
                    "regenerate the sidecar from config.json, or delete it")


def _check_mtp_declared(checkpoint: Checkpoint) -> Iterator[Finding]:
    declared = text_setting(checkpoint.config, "mtp_num_hidden_layers") or 0
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
    tensors = checkpoint.tensors
    # Sorted only where something is wrong: a 56k-entry weight_map is mostly right.
    misplaced = [(name, shard) for name, shard in weight_map.items()
                 if (tensors[name].shard != shard if name in tensors else shard in checkpoint.files)]
    for name, shard in sorted(misplaced):
        tensor = tensors.get(name)
        if tensor is None and shard not in checkpoint.unreadable:
            yield error("I2", name, f"the index maps it to {shard}, which does not hold it", "fix the index")
        elif tensor is not None and name not in checkpoint.duplicates:
            yield error("I2", name, f"the index maps it to {shard} but it is in {tensor.shard}", "fix the index")
    for name in sorted(set(checkpoint.tensors) - set(weight_map)):
        yield error("I2", name, f"stored in {checkpoint.tensors[name].shard} but missing from the index",
                    "add it to weight_map, or loaders will not load it")
    declared = (checkpoint.index.get("metadata") or {}).get("total_size")
    actual = sum(t.nbytes for t in checkpoint.tensors.values())
    if declared is not None and declared != actual:
        mtp = any(family_of(m) == "mtp" for m in checkpoint.modules)
        yield warning("I3", f"{INDEX_FILE}: metadata.total_size",
                      f"says {declared} bytes, the tensors hold {actual}",
                      ("AutoRound's MTP copy leaves it stale; " if mtp else "")
                      + "set it to the sum of tensor bytes")


# ---------------------------------------------------------------------------------------------------------------
# T: the tensors of each quantized module


def check_tensors(checkpoint: Checkpoint) -> Iterator[Finding]:
    # One wrong config repeats the same problem on every module: name a few, then count the rest.
    repeated: dict[tuple[str, str], list[str]] = {}
    for problems in checkpoint.problems.values():
        for problem in problems:
            same = repeated.setdefault((problem.code, problem.subject.rpartition(".")[2]), [])
            same.append(problem.subject)
            if len(same) <= REPEATS_SHOWN:
                yield error(problem.code, problem.subject, problem.message, problem.hint)
    for (code, param), subjects in repeated.items():
        if len(subjects) > REPEATS_SHOWN:
            yield error(code, f"{param} of {len(subjects) - REPEATS_SHOWN} more modules",
                        f"the same problem as above in {len(subjects) - REPEATS_SHOWN} more modules "
                        f"(e.g. {subjects[REPEATS_SHOWN]})", "fix the cause once: usually the config or the export")
    dtypes = [t.dtype for t in checkpoint.tensors.values() if t.param in ("weight", "bias")
              and t.module not in checkpoint.quantized and t.dtype in ("F32", "F16", "BF16")]
    usual = max(set(dtypes), key=dtypes.count) if dtypes else None
    for name, tensor in sorted(checkpoint.tensors.items()):
        if tensor.module in checkpoint.quantized:
            continue
        if tensor.param == "weight_scale" and f"{tensor.module}.weight" in checkpoint.tensors:
            yield error("T4", name, "a scale next to a dense weight", "remove it, or store the module compressed")
        elif tensor.param in ("weight", "bias") and tensor.dtype in ("F32", "F16") and tensor.dtype != usual:
            yield warning("T4", name, f"stored as {tensor.dtype} while dense tensors are {usual}",
                          "check it against the base checkpoint: exports silently cast dtypes")


# ---------------------------------------------------------------------------------------------------------------
# K: what is quantized and what is not


def check_ignore(checkpoint: Checkpoint) -> Iterator[Finding]:
    config = checkpoint.quantization
    ignore = Matcher(list(config.ignore or []))
    for pattern in ignore.patterns:
        try:
            re.compile(pattern.removeprefix("re:"))
        except re.error as problem:
            yield error("K2", f"ignore: {pattern}", f"the regex does not compile: {problem}")
    for module in checkpoint.dense:
        if module in checkpoint.ignored or module not in checkpoint.targeted:
            continue
        if family_of(module) == "router":
            yield warning("K1", module, "a dense MoE router that quantization_config.ignore does not cover; vLLM "
                          "builds routers unquantized, other loaders may try to load it quantized",
                          "add it to ignore (llm-compressor's recipes use 're:.*mlp.gate$')")
            continue
        hint = f"add {module!r} to ignore" + (" (for MTP layers, 're:^mtp.*')" if family_of(module) == "mtp" else "")
        yield error("K1", module, "a dense Linear that quantization_config.ignore does not cover; vLLM and "
                    "SGLang build it quantized and fail to load it", hint)
    for module in checkpoint.quantized:
        entry = checkpoint.ignored.get(module)
        if entry is not None:
            yield error("K2", module, f"stored quantized but ignore entry {entry!r} matches it",
                        "remove the entry or store the module dense")
        elif module not in checkpoint.targeted:
            yield error("K2", module, "stored quantized but no config group targets it",
                        "add it to a config group's targets, or store it dense and add it to ignore")
        elif family_of(module) == "router":
            yield error("K5", module, "a quantized MoE router: vLLM builds router gates unquantized and cannot load "
                        "it", "leave the router dense and ignore it ('re:.*mlp.gate$'), as llm-compressor's MoE "
                        "recipes do")
    used = set(checkpoint.ignored.values())
    for entry in (e for e in ignore.entries if e not in used):
        if entry == "lm_head" and checkpoint.tied_embeddings:
            continue  # tied: lm_head is the embedding matrix, and recipes list it in ignore anyway
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
    if module.scheme is None:
        return "quantized, untargeted"
    return f"{module.scheme.name} {module.strategy}" + (f"/{module.group_size}" if module.group_size else "")


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
