"""Stage 2, the checkpoint: a variant's folder or Hub revision → tensors and quantization config (headers only),
then findings (does it agree with itself and the manifest?) and facts (what the card may say about it)."""
