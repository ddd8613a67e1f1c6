"""Inspect a compressed-tensors checkpoint from its safetensors headers and config.json, never its tensor data.

The reading (`read_checkpoint`, `read_remote_checkpoint`) is I/O; turning what was read into a `Checkpoint`
(`build_checkpoint`) is pure, so a local folder and a Hub revision become the same value and go through the same
checks. Headers are parsed by huggingface_hub (`parse_local_safetensors_file_metadata` locally,
`get_safetensors_metadata` remotely) and each local shard is opened with safetensors' `safe_open`, which refuses a
file whose size does not match its header. The quantization config is found and parsed by compressed-tensors
(`get_quantization_config`, `QuantizationConfig`), imported only here, lazily, because it pulls in torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import CheckpointError

INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
SIDECAR_FILE = "quantization_config.json"
# Parameters a compressed-tensors compressor writes next to (or instead of) a Linear's `weight`.
QPARAMS = ("weight_packed", "weight_scale", "weight_shape", "weight_zero_point", "weight_g_idx")
DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}
INT_DTYPE_BITS = {"I8": 8, "U8": 8, "I16": 16, "I32": 32}
# 2-D weights that are lookups, not matmuls: compressed-tensors' "Linear" target never covers them.
NOT_LINEAR = re.compile(r"(^|\.)(embed_tokens|pos_embed|position_embeddings|word_embeddings|wte|wpe|embeddings?)$")


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    shard: str

    @property
    def module(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def param(self) -> str:
        return self.name.rpartition(".")[2]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES.get(self.dtype, 0)


@dataclass(frozen=True)
class QuantizedModule:
    """A Linear stored compressed, with what its tensors say about the scheme (None where they cannot tell)."""

    name: str
    family: str
    format: str  # pack-quantized | int-quantized
    params: Mapping[str, Tensor]
    out_features: int | None
    in_features: int | None
    bits: int | None
    strategy: str | None  # channel | group | tensor
    group_size: int | None
    scale_dtype: str | None
    symmetric: bool


@dataclass(frozen=True)
class Family:
    name: str
    quantized: int = 0
    dense: int = 0
    tensors: int = 0
    bytes: int = 0

    @property
    def unquantized(self) -> bool:
        return self.quantized == 0 and self.dense > 0


@dataclass(frozen=True)
class Checkpoint:
    """Everything hubpub knows about one checkpoint, read from headers and configs only."""

    location: str
    files: Mapping[str, int]  # relative path -> size in bytes
    tensors: Mapping[str, Tensor]
    duplicates: Mapping[str, tuple[str, ...]]  # tensor -> every shard holding it
    unreadable: Mapping[str, str]  # shard -> why its header could not be read
    index: Mapping[str, Any] | None
    index_error: str | None
    config: Mapping[str, Any] | None
    config_error: str | None
    quantization: Any  # compressed_tensors QuantizationConfig, or None
    quantization_raw: Mapping[str, Any] | None
    quantization_error: str | None
    sidecar: Mapping[str, Any] | None
    weight_shapes: Mapping[str, tuple[int, ...]]  # module -> value of its weight_shape tensor, when read
    quantized: Mapping[str, QuantizedModule] = field(default_factory=dict)
    dense: tuple[str, ...] = ()  # Linear modules stored as a plain weight
    families: Mapping[str, Family] = field(default_factory=dict)

    @cached_property
    def modules(self) -> frozenset[str]:
        """Every module name that owns a tensor."""
        return frozenset(t.module for t in self.tensors.values())

    @property
    def shards(self) -> tuple[str, ...]:
        return tuple(sorted(name for name in self.files if name.endswith(".safetensors")))

    @property
    def total_bytes(self) -> int:
        """Bytes of all safetensors files: what the weights weigh on disk and on the Hub."""
        return sum(self.files[name] for name in self.shards)


def family_of(module: str) -> str:
    """The module family a card talks about (visual, mtp, self_attn, linear_attn, mlp, embed_tokens, lm_head)."""
    parts = module.split(".")
    if parts[0] == "mtp" or ".mtp." in f".{module}.":
        return "mtp"
    if {"visual", "vision_tower", "vision_model"} & set(parts):
        return "visual"
    for name in ("self_attn", "linear_attn", "mlp", "embed_tokens", "lm_head"):
        if name in parts:
            return name
    return "other"


# ---------------------------------------------------------------------------------------------------------------
# Pure: from what was read to a Checkpoint


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
) -> Checkpoint:
    """Classify every module as quantized or dense and summarise by family."""
    tensors: dict[str, Tensor] = {}
    holders: dict[str, list[str]] = {}
    for shard in sorted(headers):
        for name, (dtype, shape) in headers[shard].items():
            holders.setdefault(name, []).append(shard)
            tensors.setdefault(name, Tensor(name, dtype, tuple(shape), shard))
    quantization, quantization_error = _parse_quantization(quantization_raw)
    by_module: dict[str, dict[str, Tensor]] = {}
    for tensor in tensors.values():
        by_module.setdefault(tensor.module, {})[tensor.param] = tensor

    bits_hint = _declared_bits(quantization)
    quantized: dict[str, QuantizedModule] = {}
    dense: list[str] = []
    for module, params in by_module.items():
        if _is_quantized(params):
            quantized[module] = _quantized_module(module, params, weight_shapes.get(module), bits_hint)
        elif "weight" in params and len(params["weight"].shape) == 2 and not NOT_LINEAR.search(module):
            dense.append(module)
    return Checkpoint(
        location=location, files=dict(files), tensors=tensors,
        duplicates={name: tuple(shards) for name, shards in holders.items() if len(shards) > 1},
        unreadable=dict(unreadable), index=index, index_error=index_error, config=config,
        config_error=config_error, quantization=quantization, quantization_raw=quantization_raw,
        quantization_error=quantization_error, sidecar=sidecar, weight_shapes=dict(weight_shapes),
        quantized=quantized, dense=tuple(sorted(dense)), families=_families(tensors, quantized, dense),
    )


def _parse_quantization(raw: Mapping[str, Any] | None) -> tuple[Any, str | None]:
    if raw is None:
        return None, None
    from compressed_tensors.quantization import QuantizationConfig
    from pydantic import ValidationError

    try:
        return QuantizationConfig.model_validate(dict(raw)), None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'quantization_config'}: {e['msg']}" for e in error.errors()
        )
        return None, problems


def _declared_bits(quantization: Any) -> int | None:
    if quantization is None:
        return None
    bits = {s.weights.num_bits for s in quantization.config_groups.values() if getattr(s, "weights", None)}
    return bits.pop() if len(bits) == 1 else None


def _is_quantized(params: Mapping[str, Tensor]) -> bool:
    if "weight_packed" in params:
        return True
    weight = params.get("weight")
    return "weight_scale" in params and weight is not None and weight.dtype in INT_DTYPE_BITS


def _quantized_module(
    name: str, params: Mapping[str, Tensor], shape_value: tuple[int, ...] | None, bits_hint: int | None
) -> QuantizedModule:
    packed = params.get("weight_packed")
    weight = packed or params["weight"]
    scale = params.get("weight_scale")
    out_features: int | None = weight.shape[0] if weight.shape else None
    in_features: int | None = None
    bits: int | None = None
    if packed is not None:
        if shape_value is not None and len(shape_value) == 2:
            out_features, in_features = shape_value
        cols = packed.shape[1] if len(packed.shape) == 2 else None
        if in_features and cols:
            # pack_to_int32 stores ceil(in·bits/32) int32 columns: solve for bits.
            bits = next((b for b in range(1, 9) if math.ceil(in_features * b / 32) == cols), None)
        elif cols and bits_hint:
            bits, in_features = bits_hint, cols * 32 // bits_hint
    else:
        in_features = weight.shape[1] if len(weight.shape) == 2 else None
        bits = INT_DTYPE_BITS.get(weight.dtype)
    strategy, group_size = _strategy(scale, in_features)
    return QuantizedModule(
        name=name, family=family_of(name), format="pack-quantized" if packed is not None else "int-quantized",
        params=dict(params), out_features=out_features, in_features=in_features, bits=bits, strategy=strategy,
        group_size=group_size, scale_dtype=scale.dtype if scale else None,
        symmetric="weight_zero_point" not in params,
    )


def _strategy(scale: Tensor | None, in_features: int | None) -> tuple[str | None, int | None]:
    """What the scale's shape says: [out, 1] is per channel, [out, in/g] is groups of g, one value per tensor."""
    if scale is None:
        return None, None
    if math.prod(scale.shape) == 1:
        return "tensor", None
    if len(scale.shape) != 2:
        return None, None
    groups = scale.shape[1]
    if groups == 1:
        return "channel", None
    if in_features and in_features % groups == 0:
        return "group", in_features // groups
    return "group", None


def _families(
    tensors: Mapping[str, Tensor], quantized: Mapping[str, QuantizedModule], dense: list[str]
) -> dict[str, Family]:
    counts: dict[str, dict[str, int]] = {}
    for tensor in tensors.values():
        entry = counts.setdefault(family_of(tensor.module), {"quantized": 0, "dense": 0, "tensors": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["bytes"] += tensor.nbytes
        if tensor.param == "weight" and NOT_LINEAR.search(tensor.module):
            entry["dense"] += 1  # an embedding is a dense module too, even though it is not a Linear
    for module in quantized:
        counts[family_of(module)]["quantized"] += 1
    for module in dense:
        counts[family_of(module)]["dense"] += 1
    return {name: Family(name, **values) for name, values in sorted(counts.items())}


# ---------------------------------------------------------------------------------------------------------------
# I/O: reading a local folder


def read_checkpoint(folder: Path) -> Checkpoint:
    """Read a local checkpoint folder (headers, index, config.json, sidecar) into a Checkpoint."""
    from huggingface_hub import parse_local_safetensors_file_metadata
    from huggingface_hub.errors import SafetensorsParsingError
    from safetensors import SafetensorError, safe_open

    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist",
                              hint="fix the variant's path: in the manifest, or mount the disk holding the weights")
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    headers: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    unreadable: dict[str, str] = {}
    weight_shapes: dict[str, tuple[int, ...]] = {}
    for shard in (name for name in files if name.endswith(".safetensors")):
        path = folder / shard
        try:
            meta = parse_local_safetensors_file_metadata(path)
            # safe_open validates what the header promises against the file: offsets, coverage, size.
            with safe_open(str(path), framework="numpy") as handle:
                for name in meta.tensors:
                    if name.endswith(".weight_shape"):
                        weight_shapes[name.rpartition(".")[0]] = tuple(int(v) for v in handle.get_tensor(name))
        except (SafetensorsParsingError, SafetensorError, OSError) as error:
            unreadable[shard] = str(error)
            continue
        headers[shard] = tensor_table(meta)
    index, index_error = _read_json(folder / INDEX_FILE)
    config, config_error = _read_json(folder / CONFIG_FILE)
    if config is None and config_error is None:
        config_error = f"{CONFIG_FILE} is missing"
    sidecar, sidecar_error = _read_json(folder / SIDECAR_FILE)
    quantization_raw = find_quantization(folder / CONFIG_FILE) if config is not None else None
    return build_checkpoint(
        location=str(folder), files=files, headers=headers, unreadable=unreadable, index=index,
        index_error=index_error, config=config, config_error=config_error, quantization_raw=quantization_raw,
        sidecar=sidecar if sidecar_error is None else {"<unreadable>": sidecar_error}, weight_shapes=weight_shapes,
    )


def tensor_table(meta: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each tensor's dtype and shape, from a huggingface_hub `SafetensorsFileMetadata` (local or remote)."""
    return {name: (info.dtype, tuple(info.shape)) for name, info in meta.tensors.items()}


def find_quantization(config_path: Path | str) -> Mapping[str, Any] | None:
    """Where vLLM looks: quantization_config, then text_config.quantization_config, then compression_config."""
    from compressed_tensors.utils.safetensors_load import get_quantization_config

    found = get_quantization_config(str(config_path))
    return found if isinstance(found, Mapping) else None


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        return parse_json_object(path.read_bytes(), path.name)
    except OSError as error:
        return None, f"{path.name} does not parse: {error}"


def parse_json_object(data: bytes, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object, or why `name` is not one; a broken file is a finding, not a crash."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{name} does not parse: {error}"
    return (parsed, None) if isinstance(parsed, dict) else (None, f"{name} is not a JSON object")
