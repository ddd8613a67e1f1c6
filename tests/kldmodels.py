"""Tiny models for the KLD tests: a dense Llama reference, its W8A16 and W4A16 variants, a word-level tokenizer, a
text.

Everything is built here from random weights; nothing is downloaded. The variant's Linear layers (lm_head aside)
are compressed by compressed-tensors' own pack-quantized compressor, so transformers loads it the way it loads a
real W8A16 export.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = [f"w{i}" for i in range(60)]
SPECIAL = ["[UNK]", "[BOS]", "[EOS]", "[PAD]"]
VOCAB = len(WORDS) + len(SPECIAL)  # 64


@dataclass(frozen=True)
class TinyModels:
    reference: Path
    variant: Path  # W8A16
    text: Path
    variant4: Path  # W4A16: a second, coarser variant
    vocab_size: int = VOCAB


def build_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", pad_token="[PAD]")
    fast.save_pretrained(folder)


def build_reference(folder: Path, seed: int = 0) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         initializer_range=0.3, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    # float32, unlike most real checkpoints: bf16 logits tie often, and which of two tied tokens a top-K keeps is
    # the backend's choice, which an exact-value test cannot pin down.
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    build_tokenizer(folder)


def build_variant(reference: Path, folder: Path, bits: int = 8) -> None:
    """W{bits}A16 per-channel symmetric pack-quantized copy of `reference`, lm_head left dense."""
    import torch
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationArgs, QuantizationConfig, QuantizationScheme
    from safetensors.torch import load_file, save_file

    fmt = "pack-quantized"
    weights = QuantizationArgs(num_bits=bits, type="int", symmetric=True, strategy="channel")
    scheme = QuantizationScheme(targets=["Linear"], weights=weights, format=fmt)
    compressor = BaseCompressor.get_value_from_registry(fmt)
    tensors = load_file(str(reference / "model.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        module = name.removesuffix(".weight")
        if tensor.ndim == 2 and name.endswith("proj.weight"):
            largest = 2 ** (bits - 1) - 1
            scale = (tensor.float().abs().amax(dim=1, keepdim=True) / largest).clamp(min=1e-6)
            for part, value in compressor.compress({"weight": tensor, "weight_scale": scale}, scheme).items():
                out[f"{module}.{part}"] = value.contiguous()
        else:
            out[name] = tensor
    folder.mkdir(parents=True, exist_ok=True)
    save_file(out, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((reference / "config.json").read_text())
    config["quantization_config"] = QuantizationConfig(
        config_groups={"group_0": scheme}, format=fmt, ignore=["lm_head"], quantization_status="compressed",
    ).model_dump(mode="json")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    build_tokenizer(folder)


def write_text(path: Path, words: int = 2000, seed: int = 0) -> Path:
    """Random words with some repetition, so the models' predictions are not all alike."""
    rng = random.Random(seed)
    tokens = [rng.choice(WORDS[: rng.choice((8, 20, 60))]) for _ in range(words)]
    lines = [" ".join(tokens[i: i + 12]) for i in range(0, len(tokens), 12)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build(root: Path) -> TinyModels:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors gain nothing from threads on a busy 2-core box
    try:
        build_reference(root / "reference")
        build_variant(root / "reference", root / "variant")
        build_variant(root / "reference", root / "variant4", bits=4)
    finally:
        torch.set_num_threads(before)
    return TinyModels(root / "reference", root / "variant", write_text(root / "tiny.txt"), root / "variant4")

