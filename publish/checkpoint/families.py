"""Module families: the words a card uses for a group of modules, derived from the model's own module names.

Any architecture maps onto one vocabulary (`FAMILIES` in manifest.py): vision and audio towers, MTP heads, attention
(`self_attn`, also a model's `attn`, `attention`, `self_attention`), Qwen3.6's `linear_attn`, the MLP, and for
mixture-of-experts models the routed `experts`, the `shared_experts` and the `router` (the gate that picks experts,
plus a shared expert's own gate), then `embed_tokens` and `lm_head`. What fits none of them is "other".
"""

from __future__ import annotations

import re
from functools import lru_cache

VISION = frozenset({"visual", "vision_tower", "vision_model", "vision", "vision_encoder", "image_encoder"})
AUDIO = frozenset({"audio_tower", "audio_model", "audio_encoder", "audio"})
ATTENTION = frozenset({"self_attn", "attn", "attention", "self_attention"})
MLP = frozenset({"mlp", "feed_forward", "ffn", "block_sparse_moe", "moe"})
EXPERTS = frozenset({"experts"})
SHARED_EXPERTS = frozenset({"shared_expert", "shared_experts", "shared_mlp"})
# The last name of a router: vLLM builds these unquantized whatever the config says.
ROUTER_LEAVES = frozenset({"gate", "router", "shared_expert_gate"})
# 2-D weights that are lookups, not matmuls: compressed-tensors' "Linear" target never covers them.
NOT_LINEAR = re.compile(r"(^|\.)(embed_tokens|pos_embed|position_embeddings|word_embeddings|wte|wpe|embeddings?)$")


@lru_cache(maxsize=1 << 16)
def family_of(module: str) -> str:
    """The family a card talks about for `module` (see the module docstring)."""
    parts = module.split(".")
    if parts[0] == "mtp" or "mtp" in parts:
        return "mtp"
    if VISION & set(parts):
        return "visual"
    if AUDIO & set(parts):
        return "audio"
    if parts[-1] in ROUTER_LEAVES and len(parts) > 1 and (parts[-2] in MLP or parts[-2] in SHARED_EXPERTS):
        return "router"
    if SHARED_EXPERTS & set(parts):
        return "shared_experts"
    if EXPERTS & set(parts):
        return "experts"
    if "linear_attn" in parts:
        return "linear_attn"
    if ATTENTION & set(parts):
        return "self_attn"
    if MLP & set(parts):
        return "mlp"
    if "embed_tokens" in parts or NOT_LINEAR.search(module):
        return "embed_tokens"
    if "lm_head" in parts:
        return "lm_head"
    return "other"
