"""Checks: does a checkpoint agree with itself, with its quantization_config, with the architecture it claims,
with what vLLM can load, and with the manifest?

Pure: a `Checkpoint` and a `Variant` in, `Finding`s out. Codes are stable (scripts may match on them):
C = config, I = index and shards, T = tensors, K = which modules are (not) quantized, A = the architecture
(architecture_checks.py). Matching of `targets` and `ignore` follows compressed-tensors' own `match_name` (exact
name, or `re:` anchored at the start only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from publish.checkpoint.architecture_checks import check_architecture, check_kv_cache, few_of_each
from publish.checkpoint.engine import built_full_precision, refuses_quantized
from publish.checkpoint.facts import SIZE_TOLERANCE, WeightFacts, derive_facts, kv_cache_differs, size_matches
from publish.checkpoint.families import family_of
from publish.checkpoint.formats import supported_formats
from publish.checkpoint.model import (
    CONFIG_FILE,
    INDEX_FILE,
    NO_QUANTIZATION_CONFIG,
    SIDECAR_FILE,
    Checkpoint,
    Finding,
    QuantizedModule,
    error,
    refused_config,
    warning,
)
from publish.checkpoint.naming import text
from publish.checkpoint.parts import PartFacts, granularity, pair_parts, part_differences
from publish.checkpoint.quantconfig import Matcher
from publish.manifest.variant import FAMILIES, Variant
from publish.util.modelconfig import text_setting

# Shards that vLLM fuses into one layer must share precision and scheme (its packed_modules_mapping).
FUSED_GROUPS = (
    ("q_proj", "k_proj", "v_proj"),
    ("gate_proj", "up_proj"),
    ("in_proj_qkv", "in_proj_z"),
    ("in_proj_b", "in_proj_a"),
)


def collect_findings(checkpoint: Checkpoint, variant: Variant, facts: WeightFacts | None = None
                     ) -> tuple[Finding, ...]:
    """Every finding for one variant, errors and warnings, in check order (`facts`: derive_facts(checkpoint),
    when the caller has them already)."""
    if checkpoint.config is None:
        return (error("C1", CONFIG_FILE, checkpoint.config_error or f"{CONFIG_FILE} is missing",
                      "a checkpoint needs the config.json its exporter wrote"),
                *check_index(checkpoint))
    if checkpoint.unsupported is not None:
        return (unsupported(checkpoint),)
    facts = facts if facts is not None else derive_facts(checkpoint)
    findings = [*check_config(checkpoint, variant, facts), *check_index(checkpoint), *check_architecture(checkpoint)]
    if checkpoint.quantization is not None:
        findings += [*check_tensors(checkpoint), *check_kv_cache(checkpoint), *check_ignore(checkpoint),
                     *check_fused(checkpoint)]
    findings += [*check_families(checkpoint, variant), *check_size(checkpoint, variant)]
    return tuple(findings)


def unsupported(checkpoint: Checkpoint) -> Finding:
    """The one finding for a checkpoint whose format or method hubpub does not understand."""
    return error("C6", f"{CONFIG_FILE}: quantization_config", f"{checkpoint.unsupported}; hubpub checks nothing else",
                 f"hubpub supports compressed-tensors checkpoints in {', '.join(supported_formats())}")


# ---------------------------------------------------------------------------------------------------------------
# C: config.json and quantization_config


def check_config(checkpoint: Checkpoint, variant: Variant, facts: WeightFacts) -> Iterator[Finding]:
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
    yield from _check_status(checkpoint, where)
    for group, ct_scheme in config.config_groups.items():
        if ct_scheme.weights is None or group not in checkpoint.schemes:
            yield error("C2", f"{where}.config_groups.{group}", "the group quantizes no weights")
    yield from _compare_schemes(facts, variant, where)
    yield from _check_sidecar(checkpoint)
    yield from _check_mtp_declared(checkpoint)


def _check_status(checkpoint: Checkpoint, where: str) -> Iterator[Finding]:
    """'compressed' is what loaders expect; 'frozen' with weights stored compressed is an older export that vLLM
    still loads (its own test set has such checkpoints), so it is only a warning."""
    status = text(checkpoint.quantization.quantization_status)
    if status == "compressed":
        return
    if status == "frozen" and checkpoint.quantized:
        yield warning("C2", f"{where}.quantization_status",
                      "quantization_status is 'frozen' while the weights are stored compressed; vLLM loads it, "
                      "other loaders may treat the weights as already decompressed",
                      "set it to 'compressed' at the next export")
        return
    yield error("C2", f"{where}.quantization_status",
                f"quantization_status is {status!r}, but the weights are stored compressed",
                "set it to 'compressed' (loaders decompress only then)")


# Where each compared fact sits in a config group.
_CONFIG_FIELD = {"scheme": "", "bits": ".weights.num_bits", "group_size": ".weights.group_size",
                 "symmetric": ".weights.symmetric", "block": ".weights.block_structure",
                 "activations": ".input_activations"}


def _compare_schemes(facts: WeightFacts, variant: Variant, where: str) -> Iterator[Finding]:
    """The manifest's scheme (or each of its parts) against the config groups of the modules it describes."""
    hint = f"fix the manifest's variant {variant.branch!r} or re-export the checkpoint"
    if kv_cache_differs(variant, facts):
        yield error("C3", f"{where}.kv_cache_scheme", f"the config's KV cache is {facts.kv_cache}, the manifest says "
                    f"{variant.kv_cache or 'none'}", f"set the variant's kv_cache to {facts.kv_cache!r}"
                    if facts.kv_cache != "none" else "remove kv_cache from the variant")
    pairing = pair_parts(variant.described_parts, facts.parts)
    for problem in pairing.problems:
        yield error("C3", f"{where}.config_groups", problem,
                    "describe each scheme under `parts:` with the families it covers (`hubpub init` writes them)")
    for declared, found in pairing.pairs:
        for field, said, weighs in part_differences(declared, found):
            for group in found.groups:
                subject = f"{where}.config_groups.{group}{_CONFIG_FIELD[field]}"
                if field == "group_size" and declared.group_size == -1:
                    subject = subject.replace(".group_size", ".strategy")
                yield error("C3", subject, _difference(field, said, weighs, found), hint if field != "scheme" else
                            f"set the manifest's scheme to {found.scheme}")


def _difference(field: str, said: str, weighs: str, found: PartFacts) -> str:
    if field == "scheme":
        return (f"the config's scheme is {found.scheme} ({found.weight_type} weights, activations "
                f"{found.activations}), the manifest says {said}")
    if field == "group_size":
        return (f"the manifest says {granularity(int(said), None)}, the config says "
                f"{granularity(found.group_size, found.block)}")
    return f"the config says {field} {weighs}, the manifest says {said}"


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
    problems = (error(problem.code, problem.subject, problem.message, problem.hint)
                for found in checkpoint.problems.values() for problem in found)
    yield from few_of_each(problems, lambda f: f.subject.rpartition(".")[2])
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
        # Untargeted: no group names it, and "Linear" does not reach it (not an nn.Linear in the architecture).
        if module in checkpoint.ignored or module not in checkpoint.targeted:
            continue
        rule = built_full_precision(module)
        if rule is not None:
            yield warning("K1", module, f"{rule.what} left dense but not covered by quantization_config.ignore; "
                          f"{rule.why}, other loaders may build it quantized", f"add {rule.ignore!r} to ignore")
            continue
        hint = f"add {module!r} to ignore" + (" (for MTP layers, 're:^mtp.*')" if family_of(module) == "mtp" else "")
        yield error("K1", module, "a dense Linear that quantization_config.ignore does not cover; vLLM and "
                    "SGLang build it quantized and fail to load it", hint)
    for module, stored in checkpoint.quantized.items():
        entry = checkpoint.ignored.get(module)
        refusing = refuses_quantized(module, stored.params)
        if entry is not None:
            yield error("K2", module, f"stored quantized but ignore entry {entry!r} matches it",
                        "remove the entry or store the module dense")
        elif refusing is not None:
            yield error("K5", module, f"{refusing.what} stored quantized: {refusing.why}, so vLLM cannot load it",
                        f"leave it dense and add {refusing.ignore!r} to ignore, as llm-compressor's recipes do")
        elif module not in checkpoint.targeted:
            yield error("K2", module, "stored quantized but no config group targets it",
                        "add it to a config group's targets, or store it dense and add it to ignore")
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
