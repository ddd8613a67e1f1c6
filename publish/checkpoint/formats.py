"""The format model: what compressed-tensors writes for one quantized Linear, asked of compressed-tensors itself.

hubpub keeps no table of tensor names, dtypes or shapes per format. For a module of shape [out, in] under a
config group's scheme, `expected_params` builds an `nn.Linear` on the meta device (no data), lets
compressed-tensors attach its quantization parameters (`initialize_module_for_quantization`, as llm-compressor
does) and compresses it with the format's own compressor (`BaseCompressor.get_value_from_registry(format)`).
What comes out is the tensor set the checkpoint must hold.

compressed-tensors' meta path is a shortcut: pack-quantized leaves an asymmetric zero point unpacked there. So
each scheme is first compressed for real on a tiny module and compared with its meta result; a parameter where the
two disagree takes its shape from real compressions with the module's own rows (see `_real_dims`). Which
parameters follow the model's precision (scales: F16 from AutoRound, BF16 from llm-compressor) is learnt the same
way, by compressing a BF16 and an F32 module. Results are cached per scheme and shape.

A format is supported when compressed-tensors registers a compressor for it (dense and the legacy sparse formats
excepted). Legacy GPTQ activation ordering ("group"), which compressed-tensors 0.20 no longer parses, is accepted:
it is read as no reordering plus a `weight_g_idx` I32 [in] per module, what older compressed-tensors wrote.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from publish.checkpoint.naming import describe_activations, scheme_name, text, type_name

if TYPE_CHECKING:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

# compressed-tensors' own format names for the sparse family it no longer registers (0.20 dropped them).
SPARSE_FORMATS = ("sparse-bitmask", "sparse-24-bitmask", "marlin-24")
LEGACY_ACTORDER = ("group", "dynamic")
FLOAT_PRECISIONS = frozenset({"F16", "BF16", "F32"})
# torch dtype name -> safetensors dtype name
_ST_NAMES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL", "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2", "float8_e8m0fnu": "F8_E8M0",
}


class UnsupportedScheme(Exception):
    """compressed-tensors cannot describe this format or scheme; the message says why."""


@dataclass(frozen=True)
class ParamSpec:
    """One tensor a quantized module must store: the dtypes accepted and its exact shape."""

    dtypes: frozenset[str]
    shape: tuple[int, ...]

    def describe(self) -> str:
        dtype = "F16/BF16/F32" if self.dtypes == FLOAT_PRECISIONS else "/".join(sorted(self.dtypes))
        return f"{dtype} {list(self.shape)}"


@dataclass(frozen=True, eq=False)
class Scheme:
    """One config group as hubpub uses it: compressed-tensors' scheme and the format its modules are stored in.

    Compared and hashed by identity: one object per config group, so caches key on it cheaply."""

    group: str
    format: str
    ct: QuantizationScheme  # targets, weights, input_activations
    legacy_actorder: bool = False
    _cache: dict[tuple[int, int], Mapping[str, ParamSpec]] = field(default_factory=dict, repr=False)

    @property
    def weights(self) -> QuantizationArgs:
        assert self.ct.weights is not None  # a Scheme is made only for a group that quantizes weights
        return self.ct.weights

    @property
    def inputs(self) -> QuantizationArgs | None:
        return self.ct.input_activations

    @cached_property
    def bits(self) -> int:
        return int(self.weights.num_bits)

    @cached_property
    def strategy(self) -> str:
        return text(self.weights.strategy)

    @cached_property
    def group_size(self) -> int:
        """-1 per channel, as the manifest writes it; 0 per tensor; the block's columns for block scales."""
        if self.strategy == "channel":
            return -1
        if self.strategy in ("group", "tensor_group"):
            return int(self.weights.group_size)
        if self.strategy == "block":
            return int(self.weights.block_structure[1])
        return 0

    @cached_property
    def symmetric(self) -> bool:
        return bool(self.weights.symmetric)

    @cached_property
    def weight_type(self) -> str:
        return type_name(self.weights)

    @cached_property
    def activations(self) -> str:
        """How activations are quantized at inference ("dynamic per-token INT8"), "none" when they are not."""
        return describe_activations(self.inputs)

    @cached_property
    def block(self) -> tuple[int, int] | None:
        """[rows, columns] of a block-wise scheme's scale blocks."""
        if self.strategy != "block":
            return None
        rows, columns = self.weights.block_structure
        return int(rows), int(columns)

    @cached_property
    def name(self) -> str:
        return scheme_name(self.weights, self.inputs, self.format)

    def expected(self, out_features: int, in_features: int) -> Mapping[str, ParamSpec]:
        """The tensor set a module of shape [out, in] stores under this scheme (UnsupportedScheme if none)."""
        key = (out_features, in_features)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = expected_params(self, out_features, in_features)
        return found


def safetensors_dtype(dtype: Any) -> str:
    """A torch dtype by its safetensors name (torch.bfloat16 -> BF16)."""
    name = str(dtype).removeprefix("torch.")
    return _ST_NAMES.get(name, name)


def supported_formats() -> tuple[str, ...]:
    """Every format compressed-tensors has a (quantized) compressor for."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.config import CompressionFormat

    found = []
    for fmt in CompressionFormat:
        if fmt.value in ("dense", "mixed-precision"):
            continue
        try:
            BaseCompressor.get_value_from_registry(fmt.value)
        except KeyError:
            continue
        found.append(fmt.value)
    return tuple(found)


def why_unsupported(fmt: str | None) -> str | None:
    """None when `fmt` is a format hubpub checks, else a sentence saying why not."""
    if fmt in supported_formats():
        return None
    if fmt in SPARSE_FORMATS:
        return (f"format {fmt!r} is a sparse format that compressed-tensors no longer registers a compressor for; "
                "hubpub cannot tell what its tensors must be")
    if fmt == "dense":
        return "format 'dense' stores no quantized weights"
    return f"format {fmt!r} is not registered with compressed-tensors"


def check_scheme(scheme: Scheme) -> str | None:
    """None when compressed-tensors can describe this scheme's tensors, else why not."""
    try:
        _probe(scheme)
    except UnsupportedScheme as problem:
        return f"config group {scheme.group!r}: {problem}"
    return None


def strip_legacy_actorder(raw: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The quantization_config with GPTQ's removed actorder "group" taken out, and the groups that had it.

    compressed-tensors 0.20 refuses actorder "group" (True, "dynamic"), but such checkpoints exist and vLLM loads
    them: the weights are ordinary groups plus a `weight_g_idx` permutation."""
    config = copy.deepcopy(dict(raw))
    legacy: set[str] = set()
    for name, group in (config.get("config_groups") or {}).items():
        weights = group.get("weights") if isinstance(group, dict) else None
        if not isinstance(weights, dict):
            continue
        actorder = weights.get("actorder")
        if actorder is True or (isinstance(actorder, str) and actorder.lower() in LEGACY_ACTORDER):
            weights["actorder"] = None
            legacy.add(name)
    return config, legacy


def resolve_format(config: Any, ct_scheme: Any) -> str:
    """The format a group's modules are stored in: the scheme's own, else the config's, else what
    compressed-tensors infers for a Linear (a mixed-precision config names it per group)."""
    own = text(ct_scheme.format) if ct_scheme.format is not None else None
    if own:
        return own
    top = text(config.format) if config.format is not None else None
    if top and top not in ("mixed-precision",):
        return top
    import torch
    from compressed_tensors.compressors.format import infer_module_format

    return text(infer_module_format(torch.nn.Linear, ct_scheme))


# ---------------------------------------------------------------------------------------------------------------
# The expected tensor set, from compressed-tensors' compressors


def expected_params(scheme: Scheme, out_features: int, in_features: int) -> dict[str, ParamSpec]:
    """What compressed-tensors writes for one [out, in] Linear under `scheme` (UnsupportedScheme if it cannot)."""
    meta = _compress(scheme, out_features, in_features, "bfloat16", "meta")
    wrong, follows = _probe(scheme)
    specs: dict[str, ParamSpec] = {}
    for name, (dtype, shape) in meta.items():
        if name in wrong:
            dtype, shape = _real_param(scheme, name, out_features, in_features, shape)
        specs[name] = ParamSpec(FLOAT_PRECISIONS if name in follows else frozenset({dtype}), shape)
    if scheme.legacy_actorder:
        # Not described by compressed-tensors 0.20 (it removed actorder "group"); older releases wrote this.
        specs["weight_g_idx"] = ParamSpec(frozenset({"I32"}), (in_features,))
    return specs


def solve_in_features(scheme: Scheme, out_features: int, stored: str, shape: tuple[int, ...]) -> int | None:
    """in_features of a module whose stored weight (`weight_packed`) has `shape`, when nothing records it.

    The stored width grows linearly with in_features; two meta compressions give the line, a third confirms."""
    unit = _column_unit(scheme)
    try:
        widths = [_compress(scheme, out_features, n * unit, "bfloat16", "meta")[stored][1][-1] for n in (1, 2)]
    except (UnsupportedScheme, KeyError):
        return None
    slope = (widths[1] - widths[0]) / unit
    if slope <= 0 or not shape:
        return None
    candidate = round((shape[-1] - (widths[0] - slope * unit)) / slope)
    if candidate <= 0:
        return None
    try:
        confirmed = _compress(scheme, out_features, candidate, "bfloat16", "meta")[stored][1]
    except (UnsupportedScheme, KeyError):
        return None
    return candidate if confirmed == tuple(shape) else None


def _compress(scheme: Scheme, out_features: int, in_features: int, dtype: str, device: str
              ) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (safetensors dtype, shape)} of one [out, in] Linear compressed by compressed-tensors."""
    try:
        return _compress_unchecked(scheme, out_features, in_features, dtype, device)
    except UnsupportedScheme:
        raise
    except Exception as problem:  # noqa: BLE001 - compressed-tensors refuses a scheme with any exception type
        raise UnsupportedScheme(f"compressed-tensors cannot compress a [{out_features}, {in_features}] Linear in "
                                f"{scheme.format} with this scheme: {problem}") from None


def _compress_unchecked(scheme: Scheme, out_features: int, in_features: int, dtype: str, device: str
                        ) -> dict[str, tuple[str, tuple[int, ...]]]:
    import torch
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization.lifecycle.initialize import initialize_module_for_quantization

    try:
        compressor = BaseCompressor.get_value_from_registry(scheme.format)
    except KeyError:
        raise UnsupportedScheme(why_unsupported(scheme.format) or scheme.format) from None
    ct = scheme.ct.model_copy(update={"format": None})
    linear = torch.nn.Linear(in_features, out_features, bias=False, device=device, dtype=getattr(torch, dtype))
    initialize_module_for_quantization(linear, ct)  # scales, zero points, global scales, as llm-compressor does
    state = dict(linear.state_dict())
    if device != "meta":
        generator = torch.Generator().manual_seed(0)
        for name, value in state.items():
            if name == "weight":
                value.copy_(torch.randn(value.shape, generator=generator))
            elif name.endswith("scale"):
                value.fill_(0.01 if "global" not in name else 1.0)
    threads = torch.get_num_threads()
    if device != "meta":
        torch.set_num_threads(1)  # a probe is a few thousand values: OpenMP's spinning threads would cost more
    try:
        compressed = compressor.compress(state, ct)
    finally:
        torch.set_num_threads(threads)
    return {name: (safetensors_dtype(t.dtype), tuple(t.shape)) for name, t in compressed.items()}


def _column_unit(scheme: Scheme) -> int:
    """A column count every valid in_features of this scheme is a multiple of (and a pack word divides)."""
    weights = scheme.weights
    unit = weights.group_size if scheme.strategy in ("group", "tensor_group") else 1
    if scheme.strategy == "block":
        unit = weights.block_structure[1]
    return math.lcm(int(unit), 32)


def _probe(scheme: Scheme) -> tuple[frozenset[str], frozenset[str]]:
    """(parameters whose meta shape or dtype differs from a real compression, parameters whose dtype follows the
    model's precision), learnt once per scheme on a tiny module."""
    return _probe_once(scheme.format, scheme.ct.model_dump_json())


@cache
def _probe_once(fmt: str, ct_json: str) -> tuple[frozenset[str], frozenset[str]]:
    from compressed_tensors.quantization import QuantizationScheme

    scheme = Scheme("probe", fmt, QuantizationScheme.model_validate_json(ct_json))
    rows, cols = 2 * (scheme.weights.block_structure[0] if scheme.strategy == "block" else 32), 2 * _column_unit(scheme)
    meta = _compress(scheme, rows, cols, "bfloat16", "meta")
    real = _compress(scheme, rows, cols, "bfloat16", "cpu")
    wide = _compress(scheme, rows, cols, "float32", "meta")
    if set(meta) != set(real):
        raise UnsupportedScheme(f"compressed-tensors' {scheme.format} compressor writes {sorted(real)} but "
                                f"describes {sorted(meta)}")
    wrong = frozenset(name for name in meta if meta[name] != real[name])
    follows = frozenset(name for name in meta if meta[name][0] != wide[name][0] and meta[name][0] in FLOAT_PRECISIONS)
    return wrong, follows


def _real_param(scheme: Scheme, name: str, out_features: int, in_features: int, meta_shape: tuple[int, ...]
                ) -> tuple[str, tuple[int, ...]]:
    """One parameter the meta shortcut gets wrong, from real compressions with the module's own rows and one or
    two column units: a dimension that does not move with the columns is taken as is; one that does must move as
    the meta one does, and then the meta value at full width is right."""
    unit = _column_unit(scheme)
    real = [_compress(scheme, out_features, n * unit, "bfloat16", "cpu")[name] for n in (1, 2)]
    meta = [_compress(scheme, out_features, n * unit, "bfloat16", "meta")[name][1] for n in (1, 2)]
    dims = []
    for axis, (first, second) in enumerate(zip(real[0][1], real[1][1], strict=True)):
        if first == second:
            dims.append(first)
        elif len(meta_shape) == len(real[0][1]) and (meta[0][axis], meta[1][axis]) == (first, second):
            dims.append(meta_shape[axis])
        else:
            raise UnsupportedScheme(f"cannot tell the shape of {name} for {scheme.format} at [{out_features}, "
                                    f"{in_features}] from compressed-tensors")
    return real[0][0], tuple(dims)
