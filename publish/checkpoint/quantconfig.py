"""The quantization_config as hubpub uses it: parsed by compressed-tensors, one `Scheme` per config group, and
`targets`/`ignore` matched the way compressed-tensors matches them.

Pure (compressed-tensors is imported lazily, because it pulls in torch). A config hubpub cannot check (another
quant_method, a sparse or unregistered format, a scheme compressed-tensors cannot compress) comes back as one
sentence saying why, which `findings.py` turns into the single C6 finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from publish.checkpoint.architecture import Architecture
from publish.checkpoint.formats import Scheme, check_scheme, resolve_format, strip_legacy_actorder, why_unsupported


class Matcher:
    """compressed-tensors' `match_name` over a list of targets; exact names go through a set, for speed."""

    def __init__(self, entries: tuple[str, ...] | list[str]) -> None:
        from compressed_tensors.utils.match import match_name

        self._match_name = match_name
        self.entries = tuple(entries)
        self.exact = {e for e in self.entries if not e.startswith("re:")}
        self.patterns = tuple(e for e in self.entries if e.startswith("re:"))

    def first(self, name: str) -> str | None:
        if name in self.exact:
            return name
        return next((p for p in self.patterns if self._match_name(name, p)), None)


def parse_quantization(
    raw: Mapping[str, Any] | None,
) -> tuple[Any, str | None, dict[str, Scheme], str | None]:
    """(QuantizationConfig, why compressed-tensors refuses it, a Scheme per config group, why hubpub cannot
    check it)."""
    if raw is None:
        return None, None, {}, None
    method = raw.get("quant_method")
    if method != "compressed-tensors":
        return None, None, {}, f"quant_method is {method!r}; hubpub checks compressed-tensors checkpoints only"
    sparsity = raw.get("sparsity_config") or {}
    sparse_format = sparsity.get("format") if isinstance(sparsity, Mapping) else None
    if sparse_format not in (None, "dense"):
        return None, None, {}, f"sparsity_config.format is {sparse_format!r}: " + (why_unsupported(sparse_format) or "")
    from compressed_tensors.quantization import QuantizationConfig
    from pydantic import ValidationError

    top = raw.get("format")
    if isinstance(top, str) and top not in ("mixed-precision", "dense", "fakequant") and why_unsupported(top):
        return None, None, {}, why_unsupported(top)
    cleaned, legacy = strip_legacy_actorder(raw)
    try:
        config = QuantizationConfig.model_validate(cleaned)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'quantization_config'}: {e['msg']}" for e in error.errors()
        )
        return None, problems, {}, None
    schemes: dict[str, Scheme] = {}
    for group, ct_scheme in config.config_groups.items():
        if ct_scheme.weights is None:
            continue
        try:
            fmt = resolve_format(config, ct_scheme)
        except StopIteration:  # compressed-tensors' infer_module_format finds no compressor for the scheme
            return config, None, {}, f"config group {group!r}: no compressed-tensors format fits its scheme"
        why = why_unsupported(fmt) or check_scheme(scheme := Scheme(group, fmt, ct_scheme, group in legacy))
        if why:
            return config, None, {}, why
        schemes[group] = scheme
    return config, None, schemes, None


def match_config(
    config: Any, schemes: Mapping[str, Scheme], modules: list[str], architecture: Architecture | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """For each Linear module: the first config group targeting it, and the ignore entry matching it, with
    compressed-tensors' own name matching. The class target "Linear" reaches every module the architecture
    builds as an `nn.Linear` (all of them, when the architecture is unknown); no target reaches a module it builds
    as anything compressed-tensors does not quantize (a MoE's TopkRouter), whatever its name."""
    if config is None:
        return {}, {}
    groups = [(name, Matcher([t for t in s.targets if t != "Linear"]), "Linear" in s.targets)
              for name, s in config.config_groups.items() if name in schemes]
    ignore = Matcher(list(config.ignore or []))
    targeted: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for module in modules:
        linear = architecture is None or architecture.is_linear(module)
        reachable = architecture is None or architecture.quantizable(module)
        group = next((name for name, matcher, by_class in groups
                      if reachable and ((by_class and linear) or matcher.first(module))), None)
        if group is not None:
            targeted[module] = group
        entry = ignore.first(module)
        if entry is not None:
            ignored[module] = entry
    return targeted, ignored
