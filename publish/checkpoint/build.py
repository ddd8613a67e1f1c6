"""Pure: from what was read (headers, index, configs) to a `Checkpoint`.

A local folder (read.py) and a Hub revision (remote.py) are read differently and built here the same way, so both
go through the same checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from publish.checkpoint.architecture import Architecture
from publish.checkpoint.families import NOT_LINEAR, family_of
from publish.checkpoint.formats import Scheme, solve_in_features
from publish.checkpoint.model import DENSE_DTYPES, Checkpoint, Family, QuantizedModule, Tensor, ties_embeddings
from publish.checkpoint.quantconfig import match_config, parse_quantization
from publish.checkpoint.tensorset import module_problems


def build_checkpoint(
    *,
    location: str,
    files: Mapping[str, int],
    headers: Mapping[str, Mapping[str, tuple[str, tuple[int, ...]]]],
    unreadable: Mapping[str, str],
    index: Mapping[str, Any] | None,
    index_error: str | None,
    config: Mapping[str, Any] | None,
    config_error: str | None,
    quantization_raw: Mapping[str, Any] | None,
    sidecar: Mapping[str, Any] | None,
    weight_shapes: Mapping[str, tuple[int, ...]],
    architecture: Architecture | None = None,
) -> Checkpoint:
    """Classify every module as quantized or dense, give each its config group, and summarise by family."""
    tensors: dict[str, Tensor] = {}
    holders: dict[str, list[str]] = {}
    for shard in sorted(headers):
        for name, (dtype, shape) in headers[shard].items():
            holders.setdefault(name, []).append(shard)
            tensors.setdefault(name, Tensor(name, dtype, tuple(shape), shard))
    quantization, quantization_error, schemes, unsupported = parse_quantization(quantization_raw)
    by_module: dict[str, dict[str, Tensor]] = {}
    for tensor in tensors.values():
        by_module.setdefault(tensor.module, {})[tensor.param] = tensor

    stored_quantized = {m for m, params in by_module.items() if _is_quantized(params)}
    dense = sorted(m for m, params in by_module.items() if m not in stored_quantized and "weight" in params
                   and len(params["weight"].shape) == 2 and not NOT_LINEAR.search(m))
    targeted, ignored = match_config(quantization, schemes, [*stored_quantized, *dense], architecture)
    quantized: dict[str, QuantizedModule] = {}
    for module in sorted(stored_quantized):
        scheme = schemes.get(targeted.get(module, ""))
        quantized[module] = _quantized_module(module, by_module[module], scheme, weight_shapes.get(module))
    problems = {name: tuple(module_problems(module)) for name, module in quantized.items()}
    return Checkpoint(
        location=location, files=dict(files), tensors=tensors,
        duplicates={name: tuple(shards) for name, shards in holders.items() if len(shards) > 1},
        unreadable=dict(unreadable), index=index, index_error=index_error, config=config,
        config_error=config_error, quantization=quantization, quantization_raw=quantization_raw,
        quantization_error=quantization_error, sidecar=sidecar, weight_shapes=dict(weight_shapes),
        quantized=quantized, dense=tuple(dense), families=_families(tensors, quantized, dense, config),
        schemes=schemes, targeted=targeted, ignored=ignored, unsupported=unsupported, problems=problems,
        architecture=architecture,
    )


def _is_quantized(params: Mapping[str, Tensor]) -> bool:
    """Stored compressed: packed, or a weight in a dtype no model computes in (I8, F8_E4M3, …)."""
    if "weight_packed" in params:
        return True
    weight = params.get("weight")
    return weight is not None and weight.dtype not in DENSE_DTYPES


def _quantized_module(
    name: str, params: Mapping[str, Tensor], scheme: Scheme | None, shape_value: tuple[int, ...] | None
) -> QuantizedModule:
    """[out, in] from weight_shape's value, else the stored weight, else solved from the packed width."""
    out_features: int | None = None
    in_features: int | None = None
    stored = params.get("weight_packed") or params.get("weight")
    if shape_value is not None and len(shape_value) == 2:
        out_features, in_features = shape_value
    elif stored is not None and stored.param == "weight" and len(stored.shape) == 2:
        out_features, in_features = stored.shape
    elif stored is not None and len(stored.shape) == 2:
        out_features = stored.shape[0]
        if scheme is not None:
            in_features = solve_in_features(scheme, out_features, stored.param, stored.shape)
    return QuantizedModule(name=name, family=family_of(name), params=dict(params), scheme=scheme,
                           out_features=out_features, in_features=in_features)


def _families(
    tensors: Mapping[str, Tensor], quantized: Mapping[str, QuantizedModule], dense: list[str],
    config: Mapping[str, Any] | None,
) -> dict[str, Family]:
    counts: dict[str, dict[str, int]] = {}

    def entry(family: str) -> dict[str, int]:
        return counts.setdefault(family, {"quantized": 0, "dense": 0, "tensors": 0, "bytes": 0})

    for tensor in tensors.values():
        family = entry(family_of(tensor.module))
        family["tensors"] += 1
        family["bytes"] += tensor.nbytes
        if tensor.param == "weight" and NOT_LINEAR.search(tensor.module) and tensor.module not in quantized:
            family["dense"] += 1  # an embedding is a dense module too, even though it is not a Linear
    for module in quantized:
        entry(family_of(module))["quantized"] += 1
    for module in dense:
        entry(family_of(module))["dense"] += 1
    embeddings = counts.get("embed_tokens")
    if ties_embeddings(config) and "lm_head" not in counts and embeddings and embeddings["dense"]:
        # Tied: the output projection is the (dense) embedding matrix, stored once under embed_tokens.
        entry("lm_head")["dense"] = 1
    return {name: Family(name, **values) for name, values in sorted(counts.items())}
