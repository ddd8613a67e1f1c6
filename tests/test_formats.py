"""The checks are not Qwen- or pack-quantized-specific: int-quantized (W8A8) and naive-quantized checkpoints of a
small Llama-shaped model, written by compressed-tensors' own compressors, pass, and their defects are found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from publish.checkpoint import read_checkpoint
from publish.facts import derive_facts
from publish.findings import collect_findings
from publish.manifest import Variant

LINEARS = {  # module -> (out, in)
    "model.layers.0.self_attn.q_proj": (64, 64), "model.layers.0.self_attn.k_proj": (32, 64),
    "model.layers.0.self_attn.v_proj": (32, 64), "model.layers.0.self_attn.o_proj": (64, 64),
    "model.layers.0.mlp.gate_proj": (128, 64), "model.layers.0.mlp.up_proj": (128, 64),
    "model.layers.0.mlp.down_proj": (64, 128), "lm_head": (256, 64),
}


def build(folder: Path, fmt: str, *, activations: bool, drop: str | None = None) -> Path:
    """A one-layer checkpoint in `fmt`, lm_head left dense, per-channel int8 symmetric weights."""
    import torch
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme
    from safetensors.torch import save_file

    weights = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="channel")
    inputs = QuantizationArgs(num_bits=8, type="int", symmetric=True, strategy="token", dynamic=True)
    scheme = QuantizationScheme(targets=["Linear"], weights=weights,
                                input_activations=inputs if activations else None, format=fmt)
    compressor = BaseCompressor.get_value_from_registry(fmt)
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {
        "model.embed_tokens.weight": torch.randn(256, 64, generator=generator).to(torch.bfloat16),
        "model.norm.weight": torch.ones(64, dtype=torch.bfloat16),
    }
    for module, (out, inp) in LINEARS.items():
        w = torch.randn(out, inp, generator=generator).to(torch.bfloat16)
        if module == "lm_head":
            tensors[f"{module}.weight"] = w
            continue
        scale = (w.float().abs().amax(dim=1, keepdim=True) / 127).to(torch.bfloat16)
        for name, value in compressor.compress({"weight": w, "weight_scale": scale}, scheme).items():
            tensors[f"{module}.{name}"] = value.contiguous()
    if drop:
        del tensors[drop]
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    quantization = QuantizationConfig(config_groups={"group_0": scheme}, format=fmt, ignore=["lm_head"],
                                      quantization_status="compressed").model_dump(mode="json")
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "quantization_config": quantization}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def variant(folder: Path, scheme: str) -> Variant:
    size = (folder / "model.safetensors").stat().st_size / 1e9
    return Variant.model_validate({
        "branch": "main", "path": str(folder), "method": {"name": "compressed-tensors"}, "scheme": scheme,
        "bits": 8, "group_size": -1, "symmetric": True, "unquantized": ("embed_tokens", "lm_head"),
        "calibration": {"samples": 1}, "size_gb": size,
    })


@pytest.mark.parametrize(("fmt", "activations", "scheme"), [
    ("int-quantized", True, "W8A8"), ("naive-quantized", False, "W8A16"),
])
def test_other_formats_pass_and_give_facts(fmt: str, activations: bool, scheme: str, tmp_path: Path) -> None:
    folder = build(tmp_path / fmt, fmt, activations=activations)
    checkpoint = read_checkpoint(folder)
    assert {m.format for m in checkpoint.quantized.values()} == {"int-quantized"}  # weight I8 + weight_scale
    assert collect_findings(checkpoint, variant(folder, scheme)) == ()
    facts = derive_facts(checkpoint)
    assert (facts.bits, facts.group_size, facts.symmetric, facts.scale_dtype) == (8, -1, True, "BF16")
    assert facts.unquantized == ("embed_tokens", "lm_head")


def test_a_missing_scale_is_found_in_an_int_quantized_checkpoint(tmp_path: Path) -> None:
    folder = build(tmp_path / "w8a8", "int-quantized", activations=True,
                   drop="model.layers.0.mlp.up_proj.weight_scale")
    findings = collect_findings(read_checkpoint(folder), variant(folder, "W8A8"))
    assert any(f.code == "T1" and f.subject == "model.layers.0.mlp.up_proj.weight_scale" for f in findings)


def test_w8a16_manifest_for_a_w8a8_config_is_refused(tmp_path: Path) -> None:
    folder = build(tmp_path / "w8a8", "int-quantized", activations=True)
    findings = collect_findings(read_checkpoint(folder), variant(folder, "W8A16"))
    assert [(f.code, f.subject.rsplit(".", 1)[-1]) for f in findings] == [("C2", "input_activations")]
