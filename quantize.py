"""Quantize Qwen/Qwen3.6-27B to INT8 (W8A16) with AutoRound and export compressed-tensors checkpoints.

Two variants, one per Hub branch (see branches.yaml):
  main   custom recipe: per-channel (group_size -1), 1000 iterations, self_attn quantized
  gs128  default recipe: group_size 128, 200 iterations, self_attn kept in BF16

Usage: python quantize.py --variant main|gs128 --out DIR
Requires auto-round==0.16.1, transformers>=5.24, 2x 24 GB GPUs (device_map="auto").
"""

import argparse

import torch
from auto_round import AutoRound
from transformers import AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

BASE = "Qwen/Qwen3.6-27B"

# Modules left in BF16 in both variants. AutoRound writes every non-quantized nn.Linear into the
# compressed-tensors `ignore` list; MTP layers are not instantiated by transformers, so they are added by name.
COMMON_FP_LAYERS = ["visual", "linear_attn", "lm_head", "mtp"]

VARIANTS = {
    "main": {"group_size": -1, "iters": 1000, "fp_layers": COMMON_FP_LAYERS},
    "gs128": {"group_size": 128, "iters": 200, "fp_layers": COMMON_FP_LAYERS + ["self_attn"]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--nsamples", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    recipe = VARIANTS[args.variant]

    model = AutoModelForImageTextToText.from_pretrained(BASE, dtype=torch.bfloat16, device_map="auto")
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    processor = AutoProcessor.from_pretrained(BASE)

    layer_config = {name: {"bits": 16} for name in recipe["fp_layers"]}
    autoround = AutoRound(
        model,
        tokenizer,
        processor=processor,
        scheme="W8A16",
        bits=8,
        group_size=recipe["group_size"],
        sym=True,
        iters=recipe["iters"],
        nsamples=args.nsamples,
        batch_size=args.batch_size,
        layer_config=layer_config,
        enable_torch_compile=True,
        quant_nontext_module=False,
    )
    autoround.quantize_and_save(args.out, format="llm_compressor")


if __name__ == "__main__":
    main()
