"""The architecture a checkpoint claims, as transformers builds it from config.json: every module that must be
stored, which of them are not an `nn.Linear`, which weights are tied, and the KV-cache scales compressed-tensors
gives each attention layer.

The model is instantiated on the meta device (`torch.device("meta")`: no weight memory), its state dict is put
back into checkpoint names by transformers' own `revert_weight_conversion` (what `save_pretrained` does: a MoE's
fused experts become one module per expert), and, when the config has a `kv_cache_scheme`, compressed-tensors'
`initialize_attn_qparams` attaches `k_scale`/`v_scale` to every attention layer that keeps a KV cache, exactly as
llm-compressor does before calibrating. What comes out is plain data, remembered per config (`ArchitectureCache`):
importing a model's modeling code costs more than all the checks.

An architecture transformers does not know (or cannot build from this config) gives `unknown`, a sentence saying
why; the checks that need it are skipped with one warning. torch, transformers and compressed-tensors are
imported only here, lazily.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from publish.checkpoint.formats import FLOAT_PRECISIONS, ParamSpec, safetensors_dtype
from publish.util.hashing import key_of
from publish.util.jsonstore import JsonStore

if TYPE_CHECKING:
    import torch

# 1: modules, tied weights and KV-cache scales.
ARCHITECTURE_CACHE_VERSION = 1
MAX_ARCHITECTURES = 16  # configs remembered; the oldest go first
LINEAR = "Linear"  # the class name a Linear-like module (an nn.Linear, or one expert's projection) is given
EMBEDDING = "Embedding"  # the other module class compressed-tensors quantizes
# Parts of config.json that say how the checkpoint is quantized, not what the model is.
QUANTIZATION_KEYS = ("quantization_config", "compression_config")


@dataclass(frozen=True)
class Architecture:
    """What transformers builds for a config.json, in checkpoint module names."""

    name: str  # the class, e.g. "Qwen3_5ForConditionalGeneration"
    modules: Mapping[str, str] = field(default_factory=dict)  # module owning parameters -> class name ("Linear")
    tied: Mapping[str, str] = field(default_factory=dict)  # module -> the module whose weight it shares
    kv_scales: Mapping[str, Mapping[str, ParamSpec]] = field(default_factory=dict)  # attention module -> tensors
    unknown: str | None = None  # why transformers could not build it; then the mappings are empty

    def is_linear(self, module: str) -> bool:
        """Whether compressed-tensors' "Linear" target reaches `module`; a module the architecture does not define
        is given the benefit of the doubt."""
        return self.modules.get(module, LINEAR) == LINEAR

    def quantizable(self, module: str) -> bool:
        """Whether compressed-tensors quantizes `module` when a target names it: Linears and embeddings only."""
        return self.modules.get(module, LINEAR) in (LINEAR, EMBEDDING)

    @property
    def required(self) -> frozenset[str]:
        """Modules whose tensors the checkpoint must store: all but tied ones."""
        return frozenset(self.modules) - frozenset(self.tied)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "modules": dict(self.modules), "tied": dict(self.tied), "unknown": self.unknown,
                "kv_scales": {module: {param: [sorted(spec.dtypes), list(spec.shape)] for param, spec in params.items()}
                              for module, params in self.kv_scales.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        kv = {module: {param: ParamSpec(frozenset(dtypes), tuple(shape)) for param, (dtypes, shape) in params.items()}
              for module, params in data["kv_scales"].items()}
        return cls(data["name"], dict(data["modules"]), dict(data["tied"]), kv, data["unknown"])


class ArchitectureCache:
    """Architectures by `architecture_key`, persisted as JSON at `location` (None: in memory only)."""

    def __init__(self, location: Path | None) -> None:
        self._store = JsonStore(location, ARCHITECTURE_CACHE_VERSION)
        entries = self._store.load().get("entries")
        self._entries: dict[str, Any] = dict(entries) if isinstance(entries, dict) else {}
        self._read: dict[str, Architecture] = {}

    def get(self, key: str) -> Architecture | None:
        if key in self._read:
            return self._read[key]
        found = self._entries.get(key)
        try:
            architecture = Architecture.from_dict(found) if isinstance(found, dict) else None
        except (KeyError, TypeError, ValueError):
            return None  # a damaged entry only costs building the model again
        if architecture is not None:
            self._read[key] = architecture
        return architecture

    def put(self, key: str, architecture: Architecture) -> None:
        self._read[key] = architecture
        self._entries.pop(key, None)
        self._entries[key] = architecture.to_dict()
        while len(self._entries) > MAX_ARCHITECTURES:
            del self._entries[next(iter(self._entries))]
        self._store.save({"entries": self._entries})


def architecture_key(config: Mapping[str, Any], kv_cache_scheme: Mapping[str, Any] | None) -> str:
    """What an architecture depends on: the model's config (not its quantization), the KV-cache scheme, and the
    versions of the libraries that build it."""
    versions = {name: _version(name) for name in ("transformers", "compressed-tensors", "hubpub")}
    return key_of({"config": _model_config(config), "kv": kv_cache_scheme, "versions": versions})


def describe_architecture(
    config: Mapping[str, Any], kv_cache_scheme: Mapping[str, Any] | None, cache: ArchitectureCache | None = None
) -> Architecture:
    """The architecture config.json describes (from `cache` when this config was seen before)."""
    key = architecture_key(config, kv_cache_scheme)
    found = cache.get(key) if cache is not None else None
    if found is None:
        found = _BUILT.get(key) or _build(_model_config(config), kv_cache_scheme)
        if cache is not None:
            cache.put(key, found)
    _BUILT.pop(key, None)
    _BUILT[key] = found
    while len(_BUILT) > MAX_ARCHITECTURES:
        del _BUILT[next(iter(_BUILT))]
    return found


# Architectures this process built or read, by key: a process that examines many checkpoints of one config (a
# library caller, a test suite, a cache that cannot be written) builds the model once. The key names the libraries'
# versions, which cannot change inside one process.
_BUILT: dict[str, Architecture] = {}


# ---------------------------------------------------------------------------------------------------------------
# Building the skeleton


def _build(config: dict[str, Any], kv_cache_scheme: Mapping[str, Any] | None) -> Architecture:
    names = config.get("architectures") or []
    name = str(names[0]) if names else str(config.get("model_type") or "?")
    with _quiet():
        try:
            model = _meta_model(config, name)
            modules, tied = _modules(model)
            kv = _kv_scales(model, kv_cache_scheme) if kv_cache_scheme else {}
        except _Unknown as why:
            return Architecture(name, unknown=str(why))
        except Exception as problem:  # noqa: BLE001 - a model's __init__ may refuse its config with any exception
            return Architecture(name, unknown=f"transformers {_version('transformers')} and compressed-tensors "
                                f"{_version('compressed-tensors')} cannot build {name} from config.json: "
                                f"{type(problem).__name__}: {problem}")
    return Architecture(name, modules, tied, kv)


class _Unknown(Exception):
    """transformers does not know this architecture."""


def _meta_model(config: dict[str, Any], name: str) -> torch.nn.Module:
    import torch
    import transformers

    model_type = config.get("model_type")
    version = f"transformers {_version('transformers')}"
    if not config.get("architectures") or not model_type:
        raise _Unknown("config.json names no architectures and model_type, so the model cannot be built")
    model_class = getattr(transformers, name, None)
    if model_class is None or not hasattr(model_class, "_from_config"):
        raise _Unknown(f"{version} does not know the architecture {name}")
    try:
        hf_config = transformers.AutoConfig.for_model(
            str(model_type), **{k: v for k, v in config.items() if k != "model_type"})
    except (ValueError, KeyError) as problem:
        raise _Unknown(f"{version} does not know model_type {model_type!r}: {problem}") from None
    with torch.device("meta"):
        return model_class._from_config(hf_config)


def _modules(model: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Every module owning a parameter, in checkpoint names, with its class; tied modules."""
    import torch

    state = model.state_dict()
    try:
        from transformers.core_model_loading import revert_weight_conversion

        stored = revert_weight_conversion(model, dict(state))
    except ImportError:  # a transformers without weight conversions stores its state dict as it is
        stored = state
    real = dict(model.named_modules())
    modules: dict[str, str] = {}
    for key in stored:
        module = key.rpartition(".")[0]
        found = real.get(module)
        # A name that is no module of the model came from a conversion: one expert's projection of fused experts.
        modules[module] = LINEAR if found is None or isinstance(found, torch.nn.Linear) else type(found).__name__
    tied_keys = getattr(model, "all_tied_weights_keys", None) or {}
    tied = {target.rpartition(".")[0]: source.rpartition(".")[0] for target, source in dict(tied_keys).items()}
    return modules, tied


def _kv_scales(model: Any, kv_cache_scheme: Mapping[str, Any]) -> dict[str, dict[str, ParamSpec]]:
    """The tensors compressed-tensors attaches to each attention layer that keeps a KV cache, as
    `apply_quantization_config` does for `kv_cache_scheme`."""
    from compressed_tensors.modeling import initialize_hooked_kv_cache
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from compressed_tensors.quantization.lifecycle.initialize import initialize_attn_qparams
    from compressed_tensors.quantization.utils import KV_CACHE_TARGETS

    scheme = QuantizationScheme(targets=list(KV_CACHE_TARGETS),
                                input_activations=QuantizationArgs.model_validate(dict(kv_cache_scheme)))
    found: dict[str, dict[str, ParamSpec]] = {}
    follows: bool | None = None
    for name, module in model.named_modules():
        if not _caches_kv(module):
            continue
        before = set(dict(module.named_parameters(recurse=False)))
        initialize_hooked_kv_cache(model, module)
        initialize_attn_qparams(module, scheme, force_zero_point=False)
        added = {p: (t.dtype, tuple(t.shape)) for p, t in module.named_parameters(recurse=False) if p not in before}
        if follows is None:
            follows = _follows_precision(module, scheme, added)
        found[name] = {p: ParamSpec(FLOAT_PRECISIONS if follows and safetensors_dtype(dtype) in FLOAT_PRECISIONS
                                    else frozenset({safetensors_dtype(dtype)}), shape)
                       for p, (dtype, shape) in added.items()}
    return found


def _follows_precision(module: Any, scheme: Any, added: Mapping[str, tuple[Any, tuple[int, ...]]]) -> bool:
    """Whether the scales take the model's precision (BF16 from a BF16 model, F32 from an F32 one): the same
    module initialised once more in the other precision tells."""
    import torch
    from compressed_tensors.quantization.lifecycle.initialize import initialize_attn_qparams

    if not added:
        return False
    param, (dtype, _) = next(iter(added.items()))
    module.to(torch.float32 if dtype != torch.float32 else torch.bfloat16)
    initialize_attn_qparams(module, scheme, force_zero_point=False)
    return bool(getattr(module, param).dtype != dtype)


def _caches_kv(module: Any) -> bool:
    """compressed-tensors' `is_cached_attention_module`. It also asks that `forward` take `past_key_values`,
    which transformers 5.2x renamed `cache`; such a module is asked again with the old argument name."""
    from compressed_tensors.quantization.lifecycle.initialize import is_cached_attention_module

    if is_cached_attention_module(module):
        return True
    try:
        renamed = "cache" in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    if not renamed:
        return False
    module.forward = _with_past_key_values
    try:
        return bool(is_cached_attention_module(module))
    finally:
        del module.forward


def _with_past_key_values(*args: Any, past_key_values: Any = None, **kwargs: Any) -> Any:
    """A stand-in forward with the argument name compressed-tensors looks for; never called."""
    raise NotImplementedError


@contextmanager
def _quiet() -> Iterator[None]:
    """transformers and torch warn while building some models (deprecated options, meta tensors); none of it
    concerns the checkpoint."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """config.json without its quantization blocks (also inside text_config)."""
    cleaned = {k: v for k, v in config.items() if k not in QUANTIZATION_KEYS}
    text = cleaned.get("text_config")
    if isinstance(text, Mapping):
        cleaned["text_config"] = {k: v for k, v in text.items() if k not in QUANTIZATION_KEYS}
    return cleaned


@cache
def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"
