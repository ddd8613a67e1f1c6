"""Inspect a compressed-tensors checkpoint from its safetensors headers and config.json, never its tensor data.

The reading (`read_checkpoint`, `read_remote_checkpoint`) is I/O; turning what was read into a `Checkpoint`
(`build_checkpoint`) is pure, so a local folder and a Hub revision become the same value and go through the same
checks. Headers are parsed by huggingface_hub (`parse_local_safetensors_file_metadata` locally,
`get_safetensors_metadata` remotely) and each local shard is opened with safetensors' `safe_open`, which refuses a
file whose size does not match its header. The quantization config is found by compressed-tensors
(`get_quantization_config`) and understood by quantconfig.py; what each quantized module must store comes from
formats.py. compressed-tensors is imported lazily, because it pulls in torch.
"""

from __future__ import annotations

import gc
import json
import math
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CheckpointError
from .families import NOT_LINEAR, family_of
from .formats import Scheme, solve_in_features
from .quantconfig import match_config, parse_quantization

if TYPE_CHECKING:
    from .tensorset import Problem

INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
SIDECAR_FILE = "quantization_config.json"
DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}
# A `weight` in one of these is stored in full precision; in any other dtype (I8, F8_E4M3, …) it is compressed.
DENSE_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    shard: str
    # Derived once: a 56k-tensor MoE asks for them several times per tensor.
    module: str = field(init=False, compare=False)
    param: str = field(init=False, compare=False)
    nbytes: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        module, _, param = self.name.rpartition(".")
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "param", param)
        object.__setattr__(self, "nbytes", math.prod(self.shape) * DTYPE_BYTES.get(self.dtype, 0))


@dataclass(frozen=True)
class QuantizedModule:
    """A Linear stored compressed. Its scheme comes from the config group targeting it (None when none does);
    the tensors must then prove it (see tensorset.py)."""

    name: str
    family: str
    params: Mapping[str, Tensor]
    scheme: Scheme | None
    out_features: int | None
    in_features: int | None

    @property
    def format(self) -> str | None:
        return self.scheme.format if self.scheme else None

    @property
    def bits(self) -> int | None:
        return self.scheme.bits if self.scheme else None

    @property
    def strategy(self) -> str | None:
        return self.scheme.strategy if self.scheme else None

    @property
    def group_size(self) -> int | None:
        return self.scheme.group_size if self.scheme else None

    @property
    def symmetric(self) -> bool | None:
        return self.scheme.symmetric if self.scheme else None

    @property
    def scale_dtype(self) -> str | None:
        scale = self.params.get("weight_scale")
        return scale.dtype if scale else None


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
    schemes: Mapping[str, Scheme] = field(default_factory=dict)  # config group -> scheme
    targeted: Mapping[str, str] = field(default_factory=dict)  # Linear module -> the config group targeting it
    ignored: Mapping[str, str] = field(default_factory=dict)  # Linear module -> the ignore entry matching it
    unsupported: str | None = None  # why hubpub does not understand this checkpoint's format or method

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

    @cached_property
    def problems(self) -> Mapping[str, tuple[Problem, ...]]:
        """Each quantized module's disagreements with its scheme's tensor set (tensorset.py), computed once for
        the checks and the facts."""
        from .tensorset import module_problems

        return {name: tuple(module_problems(module)) for name, module in self.quantized.items()}

    @property
    def tied_embeddings(self) -> bool:
        """tie_word_embeddings is set (top level or text_config) and no lm_head tensor is stored."""
        return ties_embeddings(self.config) and not any(family_of(m) == "lm_head" for m in self.modules)


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
    targeted, ignored = match_config(quantization, schemes, [*stored_quantized, *dense])
    quantized: dict[str, QuantizedModule] = {}
    for module in sorted(stored_quantized):
        scheme = schemes.get(targeted.get(module, ""))
        quantized[module] = _quantized_module(module, by_module[module], scheme, weight_shapes.get(module))
    return Checkpoint(
        location=location, files=dict(files), tensors=tensors,
        duplicates={name: tuple(shards) for name, shards in holders.items() if len(shards) > 1},
        unreadable=dict(unreadable), index=index, index_error=index_error, config=config,
        config_error=config_error, quantization=quantization, quantization_raw=quantization_raw,
        quantization_error=quantization_error, sidecar=sidecar, weight_shapes=dict(weight_shapes),
        quantized=quantized, dense=tuple(dense), families=_families(tensors, quantized, dense, config),
        schemes=schemes, targeted=targeted, ignored=ignored, unsupported=unsupported,
    )


def ties_embeddings(config: Mapping[str, Any] | None) -> bool:
    """config.json's tie_word_embeddings, from text_config where a multimodal model keeps it."""
    config = config or {}
    text_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return bool((text_config or {}).get("tie_word_embeddings", config.get("tie_word_embeddings")))


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


# ---------------------------------------------------------------------------------------------------------------
# I/O: reading a local folder


def read_checkpoint(folder: Path) -> Checkpoint:
    """Read a local checkpoint folder (headers, index, config.json, sidecar) into a Checkpoint."""
    with without_gc():
        return _read_checkpoint(folder)


@contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a 56k-tensor MoE allocates a few hundred thousand small acyclic objects,
    and with torch's heap loaded each collection they trigger rescans it all (a second of a 1.5 s read)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_checkpoint(folder: Path) -> Checkpoint:
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
                weight_shapes.update(_weight_shapes(path, meta, handle))
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


def _weight_shapes(path: Path, meta: Any, handle: Any) -> dict[str, tuple[int, ...]]:
    """module -> the value of its weight_shape tensor. The usual I64 [2] is read as 16 bytes at its offset (a
    MoE has tens of thousands; safetensors' get_tensor costs ~10 µs each); anything else through safe_open."""
    found: dict[str, tuple[int, ...]] = {}
    with path.open("rb") as raw:
        data_start = 8 + struct.unpack("<Q", raw.read(8))[0]
        for name, info in meta.tensors.items():
            if not name.endswith(".weight_shape"):
                continue
            module = name.rpartition(".")[0]
            if info.dtype == "I64" and list(info.shape) == [2]:
                raw.seek(data_start + info.data_offsets[0])
                found[module] = struct.unpack("<2q", raw.read(16))
            else:
                found[module] = tuple(int(v) for v in handle.get_tensor(name))
    return found


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
