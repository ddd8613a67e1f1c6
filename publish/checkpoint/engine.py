"""Modules the serving engine builds in full precision, whatever quantization_config says.

vLLM constructs these layers without a quantization method (`quant_config=None`, or a plain `torch.nn.Linear`),
so a checkpoint that stores them quantized fails to load (K5), and leaving them dense without an `ignore` entry only
works in vLLM (K1 warns). Read from vLLM's model code (vllm/model_executor/models/, see docs/checks.md):

- MoE router gates (`mlp.gate`, `router`) and a shared expert's gate (`shared_expert_gate`): `GateLinear` or
  `ReplicatedLinear(..., quant_config=None)` in deepseek_v2.py, qwen2_moe.py, qwen3_next.py and the other MoE models;
- the sparse-attention indexer's `weights_proj` (DeepSeek-V3.2, GLM-5): fused with `wk` into
  `wk_weights_proj = MergedColumnParallelLinear(..., quant_config=None)` in deepseek_v2.py (llm-compressor issue
  2512); the indexer's `wk` joins that fused layer too, and only an FP8 `wk` is dequantized while loading;
- the MTP layer's `eh_proj` (DeepSeek-V3, GLM-4.5 MTP): a plain `nn.Linear` in deepseek_mtp.py and glm4_moe_mtp.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from publish.checkpoint.families import family_of
from publish.checkpoint.model import Tensor


@dataclass(frozen=True)
class FullPrecision:
    """One kind of module vLLM builds unquantized."""

    what: str  # "a MoE router gate"
    why: str  # how vLLM builds it, for the finding's message
    ignore: str  # the ignore entry that covers it, as llm-compressor's recipes write it
    name: str | None = None  # the module's last names ("indexer.weights_proj"); None: the router family
    loads_fp8: bool = False  # vLLM dequantizes an FP8 weight of it while loading

    def matches(self, module: str) -> bool:
        if self.name is None:
            return family_of(module) == "router"
        return module == self.name or module.endswith("." + self.name)


FULL_PRECISION = (
    FullPrecision("a MoE router gate", "vLLM builds router gates unquantized (GateLinear / ReplicatedLinear with "
                  "quant_config=None)", "re:.*mlp.gate$"),
    FullPrecision("the sparse-attention indexer's weights_proj", "vLLM fuses it with wk into wk_weights_proj, "
                  "built with quant_config=None (deepseek_v2.py)", "re:.*indexer.weights_proj$",
                  "indexer.weights_proj"),
    FullPrecision("the sparse-attention indexer's wk", "vLLM fuses it with weights_proj into wk_weights_proj, built "
                  "with quant_config=None; only an FP8 wk is dequantized while loading (deepseek_v2.py)",
                  "re:.*indexer.wk$", "indexer.wk", loads_fp8=True),
    FullPrecision("an MTP layer's eh_proj", "vLLM builds it as a plain torch nn.Linear (deepseek_mtp.py, "
                  "glm4_moe_mtp.py)", "re:.*eh_proj$", "eh_proj"),
)


# The named modules' last names: one endswith rules most modules out (a MoE has tens of thousands).
_NAMES = tuple(rule.name for rule in FULL_PRECISION if rule.name is not None)


def built_full_precision(module: str) -> FullPrecision | None:
    """The rule saying vLLM builds `module` in full precision, if one does."""
    if not module.endswith(_NAMES) and family_of(module) != "router":
        return None
    return next((rule for rule in FULL_PRECISION if rule.matches(module)), None)


def refuses_quantized(module: str, params: Mapping[str, Tensor]) -> FullPrecision | None:
    """The rule by which vLLM cannot load `module` stored quantized with these tensors, if one applies."""
    rule = built_full_precision(module)
    if rule is None:
        return None
    weight = params.get("weight")
    if rule.loads_fp8 and weight is not None and weight.dtype == "F8_E4M3":
        return None
    return rule
