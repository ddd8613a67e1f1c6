"""The checkpoint's value types: what hubpub knows about a checkpoint, read from headers and configs only.

Reading (read.py, remote.py) and classifying (build.py) produce these; the checks (tensorset.py, findings.py)
and the facts (facts.py) consume them. Nothing here reads a file or imports compressed-tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

from publish.checkpoint.architecture import Architecture
from publish.checkpoint.families import family_of
from publish.checkpoint.formats import Scheme
from publish.util.modelconfig import text_setting

INDEX_FILE = "model.safetensors.index.json"
CONFIG_FILE = "config.json"
SIDECAR_FILE = "quantization_config.json"
DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
    "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
}
# A `weight` in one of these is stored in full precision; in any other dtype (I8, F8_E4M3, …) it is compressed.
DENSE_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One thing a check found: a stable code (scripts match on it), the file, tensor, module or config field it is
    about, what is wrong, and what to do."""

    code: str
    severity: Severity
    subject: str
    message: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def error(code: str, subject: str, message: str, hint: str = "") -> Finding:
    return Finding(code, "error", subject, message, hint)


def warning(code: str, subject: str, message: str, hint: str = "") -> Finding:
    return Finding(code, "warning", subject, message, hint)


@dataclass(frozen=True)
class TensorProblem:
    """One way a quantized module's stored tensors differ from what its scheme's format writes."""

    code: str  # T1 tensor set and dtypes, T2 scale shapes, T3 zero points
    subject: str
    message: str
    hint: str = ""


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
    # What transformers builds from config.json (None without a config): the modules that must be stored.
    architecture: Architecture | None = None
    # Each quantized module's disagreements with its scheme's tensor set (tensorset.py), found once at build time
    # for both the checks and the facts.
    problems: Mapping[str, tuple[TensorProblem, ...]] = field(default_factory=dict)

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

    @property
    def tied_embeddings(self) -> bool:
        """tie_word_embeddings is set (top level or text_config) and no lm_head tensor is stored."""
        return ties_embeddings(self.config) and not any(family_of(m) == "lm_head" for m in self.modules)



# Why a checkpoint cannot be understood, worded once for the findings (C1) and the facts' refusal.
NO_QUANTIZATION_CONFIG = "no quantization_config (also looked in text_config and compression_config, as vLLM does)"


def refused_config(checkpoint: Checkpoint) -> str:
    return f"compressed-tensors refuses the quantization_config: {checkpoint.quantization_error}"


def ties_embeddings(config: Mapping[str, Any] | None) -> bool:
    """config.json's tie_word_embeddings, from text_config where a multimodal model keeps it."""
    return bool(text_setting(config, "tie_word_embeddings"))
