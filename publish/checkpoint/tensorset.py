"""Do a quantized module's tensors prove its config group's scheme? Pure: a `QuantizedModule` in, problems out.

The expected tensor set (names, dtypes, shapes) comes from compressed-tensors through formats.py; this module only
compares. `findings.py` turns the problems into T findings; `facts.py` refuses facts the tensors do not prove.
"""

from __future__ import annotations

from collections.abc import Iterator

from publish.checkpoint.formats import ParamSpec, UnsupportedScheme
from publish.checkpoint.model import QuantizedModule, TensorProblem

REEXPORT = "re-export the module: its compressed tensors are incomplete"
CONFIG_OR_TENSORS = "the config and the tensors describe different schemes: re-export, or fix quantization_config"


def module_problems(module: QuantizedModule) -> Iterator[TensorProblem]:
    """Every way `module`'s stored tensors differ from what its scheme's format writes."""
    scheme, name, params = module.scheme, module.name, module.params
    if scheme is None:
        return  # K2 reports a module no config group targets
    if module.out_features is None or module.in_features is None:
        missing = "weight_shape" if "weight_packed" in params and "weight_shape" not in params else "weight"
        yield TensorProblem("T1", f"{name}.{missing}", f"missing: the module's [out, in] shape cannot be told from its "
                      f"tensors ({', '.join(sorted(params))})", REEXPORT)
        return
    try:
        expected = scheme.expected(module.out_features, module.in_features)
    except UnsupportedScheme as problem:
        yield TensorProblem("T2", name, str(problem), CONFIG_OR_TENSORS)
        return
    for param, spec in expected.items():
        tensor = params.get(param)
        if tensor is None:
            yield _missing(name, param, scheme.symmetric)
        elif tensor.dtype not in spec.dtypes:
            yield TensorProblem("T1", tensor.name, f"{param} is {tensor.dtype}, {scheme.format} ({scheme.name}) stores "
                          f"{spec.describe()}", CONFIG_OR_TENSORS)
        elif tensor.shape != spec.shape:
            yield _wrong_shape(module, param, tensor.shape, spec)
    for param in sorted(set(params) - set(expected) - {"bias"}):
        yield _unexpected(module, param)


def _missing(name: str, param: str, symmetric: bool) -> TensorProblem:
    if param.endswith("zero_point"):
        return TensorProblem("T3", f"{name}.{param}", "missing for an asymmetric scheme",
                       "re-export: asymmetric schemes store a zero point")
    return TensorProblem("T1", f"{name}.{param}", "missing; loaders run the module with an uninitialized value", REEXPORT)


def _wrong_shape(module: QuantizedModule, param: str, shape: tuple[int, ...], spec: ParamSpec) -> TensorProblem:
    scheme = module.scheme
    assert scheme is not None
    subject = f"{module.name}.{param}"
    if "scale" in param or param.endswith("zero_point"):
        strategy = scheme.strategy + (f" with group_size {scheme.group_size}" if scheme.group_size > 0 else "")
        return TensorProblem("T2", subject, f"{param} shape {list(shape)} does not fit strategy {strategy!r} "
                       f"(expected {list(spec.shape)})", CONFIG_OR_TENSORS)
    return TensorProblem("T1", subject, f"shape {list(shape)} does not fit [{module.out_features}, {module.in_features}] "
                   f"in {scheme.format} at {scheme.bits} bits (expected {list(spec.shape)})",
                   "weight_shape or the stored weight is wrong: re-export the module")


def _unexpected(module: QuantizedModule, param: str) -> TensorProblem:
    subject = f"{module.name}.{param}"
    scheme = module.scheme
    assert scheme is not None
    if param.endswith("zero_point"):
        return TensorProblem("T3", subject, "a zero point in a symmetric scheme; vLLM does not load it",
                       "drop it, or declare the scheme asymmetric")
    if param == "weight":
        return TensorProblem("T1", subject, f"a leftover dense weight next to {scheme.format}'s tensors",
                       "remove it; the module is stored compressed")
    if param == "weight_g_idx":
        return TensorProblem("T1", subject, "activation-ordering indices, but the config group declares no actorder "
                       "'group'", "declare actorder 'group' in the config group, or re-export without it")
    return TensorProblem("T1", subject, f"{scheme.format} ({scheme.name}) does not store {param}",
                   "remove it, or fix quantization_config to the scheme that wrote it")
