"""Checks against the architecture config.json claims (architecture.py): is every module transformers builds
stored (A1), does transformers know the architecture at all (A2, a warning), and does every attention layer store
the KV-cache scales its `kv_cache_scheme` implies (T5)?

Pure: a `Checkpoint` in, `Finding`s out. Known exceptions to A1, named as such: a tied module (`lm_head` with
`tie_word_embeddings`) shares another module's weight and stores none; MTP layers are no module transformers
builds, so the checkpoint may hold them beyond the architecture (C5 checks them against the config).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from publish.checkpoint.formats import ParamSpec
from publish.checkpoint.model import CONFIG_FILE, Checkpoint, Finding, Tensor, error, warning
from publish.checkpoint.naming import describe_kv_cache

REPEATS_SHOWN = 3  # findings shown per (code, parameter) before the rest are counted in one
# What compressed-tensors names a KV cache's scales on an attention module (its KVCacheScaleType).
KV_SCALES = ("k_scale", "v_scale")


def few_of_each(findings: Iterable[Finding], kind: Callable[[Finding], str]) -> Iterator[Finding]:
    """One wrong config or export repeats the same problem on every module: name a few of each kind, then count
    the rest in one finding."""
    repeated: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        same = repeated.setdefault((finding.code, kind(finding)), [])
        same.append(finding)
        if len(same) <= REPEATS_SHOWN:
            yield finding
    for (code, what), found in repeated.items():
        if len(found) > REPEATS_SHOWN:
            rest = len(found) - REPEATS_SHOWN
            first = found[REPEATS_SHOWN]
            yield Finding(code, first.severity, f"{what} of {rest} more modules",
                          f"the same problem as above in {rest} more modules (e.g. {first.subject})",
                          "fix the cause once: usually the config or the export")


def check_architecture(checkpoint: Checkpoint) -> Iterator[Finding]:
    architecture = checkpoint.architecture
    if architecture is None:
        return
    if architecture.unknown is not None:
        yield warning("A2", f"{CONFIG_FILE}: architectures", f"{architecture.unknown}; the modules and KV-cache "
                      "scales the architecture defines are not checked (A1, T5), every other check runs",
                      "install a transformers that knows the architecture to check them")
        return
    stored = checkpoint.modules
    missing = (error("A1", module, f"{architecture.name} ({architecture.modules[module]}) defines this module, "
                     "but no tensor of it is stored; loaders fail, or run it uninitialized",
                     "re-export the checkpoint: the module's tensors and their index entries are gone")
               for module in sorted(architecture.required - stored))
    yield from few_of_each(missing, lambda f: "missing " + f.subject.rpartition(".")[2])


def check_kv_cache(checkpoint: Checkpoint) -> Iterator[Finding]:
    """Each attention layer's k_scale/v_scale against what compressed-tensors attaches for `kv_cache_scheme`."""
    scheme = checkpoint.quantization.kv_cache_scheme
    scales = sorted(name for name, t in checkpoint.tensors.items() if t.param in KV_SCALES)
    if scheme is None:
        if scales:
            yield warning("T5", scales[0], f"{len(scales)} KV-cache scale tensor(s) but quantization_config has no "
                          "kv_cache_scheme; loaders ignore them and keep the KV cache in 16 bits",
                          "add the kv_cache_scheme they were calibrated for, or remove them")
        return
    architecture = checkpoint.architecture
    if architecture is None or architecture.unknown is not None:
        return  # A2 says the layers cannot be told
    kind = describe_kv_cache(scheme)
    problems = (problem for module, params in sorted(architecture.kv_scales.items())
                for param, spec in params.items()
                for problem in _kv_problem(checkpoint.tensors.get(f"{module}.{param}"), f"{module}.{param}", spec,
                                           kind))
    yield from few_of_each(problems, lambda f: f.subject.rpartition(".")[2])


def _kv_problem(tensor: Tensor | None, name: str, spec: ParamSpec, kind: str) -> Iterator[Finding]:
    if tensor is None:
        yield error("T5", name, f"missing for the KV cache ({kind}); vLLM falls back to a scale of 1.0 and the "
                    "quantized cache loses accuracy", "re-export with the KV-cache scales calibrated")
    elif tensor.dtype not in spec.dtypes:
        yield error("T5", name, f"stored as {tensor.dtype}, kv_cache_scheme ({kind}) stores {spec.describe()}",
                    "re-export the KV-cache scales, or fix kv_cache_scheme")
    elif tensor.shape != spec.shape and not (_one_value(tensor.shape) and _one_value(spec.shape)):
        yield error("T5", name, f"shape {list(tensor.shape)} does not fit kv_cache_scheme ({kind}): expected "
                    f"{list(spec.shape)}", "re-export the KV-cache scales, or fix kv_cache_scheme's strategy")


def _one_value(shape: tuple[int, ...]) -> bool:
    """A scalar and a [1] tensor hold the same one value; vLLM loads either as a per-tensor scale."""
    return len(shape) <= 1 and all(d == 1 for d in shape)
