"""Module families come from the model's own names, for any architecture."""

from __future__ import annotations

import pytest

from publish.checkpoint.families import family_of
from publish.manifest.variant import FAMILIES


@pytest.mark.parametrize(("module", "family"), [
    # Qwen3.6 (the reference card's families)
    ("model.visual.blocks.0.attn.qkv", "visual"),
    ("mtp.layers.0.mlp.gate_proj", "mtp"),
    ("mtp.fc", "mtp"),
    ("model.language_model.layers.3.self_attn.q_proj", "self_attn"),
    ("model.language_model.layers.0.linear_attn.in_proj_qkv", "linear_attn"),
    ("model.language_model.layers.0.mlp.down_proj", "mlp"),
    ("model.language_model.embed_tokens", "embed_tokens"),
    ("lm_head", "lm_head"),
    # Llama, GPT-2, Falcon
    ("model.layers.0.self_attn.o_proj", "self_attn"),
    ("transformer.h.0.attn.c_attn", "self_attn"),
    ("transformer.h.0.self_attention.query_key_value", "self_attn"),
    ("transformer.wte", "embed_tokens"),
    # Qwen3-MoE / Qwen2-MoE, DeepSeek, Mixtral, gpt-oss
    ("model.layers.0.mlp.experts.17.gate_proj", "experts"),
    ("model.layers.0.mlp.gate", "router"),
    ("model.layers.0.mlp.shared_expert.up_proj", "shared_experts"),
    ("model.layers.0.mlp.shared_expert_gate", "router"),
    ("model.layers.3.mlp.shared_experts.down_proj", "shared_experts"),
    ("model.layers.0.block_sparse_moe.gate", "router"),
    ("model.layers.0.block_sparse_moe.experts.3.w1", "experts"),
    ("model.layers.0.mlp.router", "router"),
    # Omni: an audio tower
    ("thinker.audio_tower.layers.0.self_attn.k_proj", "audio"),
    # norms and the like belong to no family a card names
    ("model.layers.0.input_layernorm", "other"),
])
def test_family_of(module: str, family: str) -> None:
    assert family_of(module) == family
    assert family in FAMILIES or family == "other"
