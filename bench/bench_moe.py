"""Benchmark `hubpub check` on a full-size mixture-of-experts header set (~56k tensors) against a tiny one.

    python bench/bench_moe.py [--runs 3] [--work bench/.work-moe]

The full-size model is shaped like Qwen3-30B-A3B (48 layers, 128 experts stored one module per expert, hidden
2048, expert width 768, vocab 151,936) in W4A16 `pack-quantized`, group 128, experts and attention quantized,
routers and lm_head ignored as llm-compressor's MoE recipe does: 55,000+ tensors, 16 GB apparent, a few MB on
disk (bench/sparse.py writes exact headers and leaves the data as holes; each weight_shape value is real). The
tiny model has the same structure with 2 layers and 4 experts. The tensors each module stores come from
compressed-tensors' own compressor on a meta module, per distinct shape.

Measured: the wall clock of the real CLI (`hubpub check`, interpreter and imports included), full vs tiny (target
ratio <= 1.5), and in-process, after imports, reading and the checks alone (target <= 300 ms for the checks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_check import architecture_ms, cold_and_warm
from bench.sparse import checkpoint_stats, write_sparse_safetensors
from tests.fixtures.layout import StoredTensor, index_json, plan_shards

GROUP = 128


@dataclass(frozen=True)
class MoeDims:
    layers: int
    hidden: int
    experts: int
    expert_width: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


FULL = MoeDims(layers=48, hidden=2048, experts=128, expert_width=768, heads=32, kv_heads=4, head_dim=128,
               vocab=151_936)
TINY = MoeDims(layers=2, hidden=128, experts=4, expert_width=128, heads=2, kv_heads=1, head_dim=64, vocab=512)


def modules(d: MoeDims) -> list[tuple[str, int, int, bool]]:
    """(module, out, in, quantized) for every Linear, in checkpoint order."""
    found = []
    for layer in range(d.layers):
        attn, mlp = f"model.layers.{layer}.self_attn", f"model.layers.{layer}.mlp"
        found += [(f"{attn}.q_proj", d.heads * d.head_dim, d.hidden, True),
                  (f"{attn}.k_proj", d.kv_heads * d.head_dim, d.hidden, True),
                  (f"{attn}.v_proj", d.kv_heads * d.head_dim, d.hidden, True),
                  (f"{attn}.o_proj", d.hidden, d.heads * d.head_dim, True),
                  (f"{mlp}.gate", d.experts, d.hidden, False)]
        for e in range(d.experts):
            found += [(f"{mlp}.experts.{e}.gate_proj", d.expert_width, d.hidden, True),
                      (f"{mlp}.experts.{e}.up_proj", d.expert_width, d.hidden, True),
                      (f"{mlp}.experts.{e}.down_proj", d.hidden, d.expert_width, True)]
    found.append(("lm_head", d.vocab, d.hidden, False))
    return found


def _scheme() -> Any:
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    return QuantizationScheme(targets=["Linear"], format="pack-quantized",
                              weights=QuantizationArgs(num_bits=4, type="int", strategy="group", group_size=GROUP))


def compressed_layout(out: int, inp: int, cache: dict[tuple[int, int], list[tuple[str, str, tuple[int, ...]]]]
                      ) -> list[tuple[str, str, tuple[int, ...]]]:
    """(param, dtype, shape) compressed-tensors writes for one [out, in] Linear, from a meta compression."""
    if (out, inp) not in cache:
        import torch
        from compressed_tensors.compressors import BaseCompressor
        from compressed_tensors.quantization.lifecycle.initialize import initialize_module_for_quantization

        names = {torch.int32: "I32", torch.int64: "I64", torch.bfloat16: "BF16", torch.int8: "I8"}
        linear = torch.nn.Linear(inp, out, bias=False, device="meta", dtype=torch.bfloat16)
        initialize_module_for_quantization(linear, _scheme())
        state = BaseCompressor.get_value_from_registry("pack-quantized").compress(dict(linear.state_dict()),
                                                                                  _scheme())
        cache[(out, inp)] = sorted((k, names[v.dtype], tuple(v.shape)) for k, v in state.items())
    return cache[(out, inp)]


def build(folder: Path, d: MoeDims, max_shard_bytes: int) -> Path:
    """Sparse safetensors shards, index and config.json of a W4A16 MoE checkpoint."""
    from compressed_tensors.quantization import QuantizationConfig

    folder.mkdir(parents=True, exist_ok=True)
    tensors = [StoredTensor("model.embed_tokens.weight", "BF16", (d.vocab, d.hidden))]
    shapes: dict[str, tuple[int, int]] = {}
    cache: dict[tuple[int, int], list[tuple[str, str, tuple[int, ...]]]] = {}
    for module, out, inp, quantized in modules(d):
        if module.endswith("q_proj"):
            layer = module.rsplit(".", 2)[0]
            tensors += [StoredTensor(f"{layer}.input_layernorm.weight", "BF16", (d.hidden,)),
                        StoredTensor(f"{layer}.post_attention_layernorm.weight", "BF16", (d.hidden,)),
                        StoredTensor(f"{layer}.self_attn.q_norm.weight", "BF16", (d.head_dim,)),
                        StoredTensor(f"{layer}.self_attn.k_norm.weight", "BF16", (d.head_dim,))]
        if not quantized:
            tensors.append(StoredTensor(f"{module}.weight", "BF16", (out, inp)))
            continue
        shapes[f"{module}.weight_shape"] = (out, inp)
        tensors += [StoredTensor(f"{module}.{p}", dtype, shape) for p, dtype, shape in compressed_layout(out, inp, cache)]
    tensors.append(StoredTensor("model.norm.weight", "BF16", (d.hidden,)))
    files = plan_shards(tensors, max_shard_bytes)
    for file, stored in files.items():
        values = {t.name: struct.pack("<2q", *shapes[t.name]) for t in stored if t.name in shapes}
        write_sparse_safetensors(folder / file, stored, values)
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_json(files), indent=2))
    quantization = QuantizationConfig(config_groups={"group_0": _scheme()}, format="pack-quantized",
                                      ignore=["lm_head", "re:.*mlp.gate$"],
                                      quantization_status="compressed").model_dump(mode="json")
    config = {**model_config(d), "quantization_config": quantization}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def model_config(d: MoeDims) -> dict[str, Any]:
    """config.json as transformers' Qwen3MoeConfig writes it for these dimensions."""
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        hidden_size=d.hidden, num_hidden_layers=d.layers, num_experts=d.experts, moe_intermediate_size=d.expert_width,
        num_attention_heads=d.heads, num_key_value_heads=d.kv_heads, head_dim=d.head_dim, vocab_size=d.vocab,
        num_experts_per_tok=min(8, d.experts), tie_word_embeddings=False, architectures=["Qwen3MoeForCausalLM"],
    ).to_diff_dict()


def manifest_for(folder: Path, out: Path) -> Path:
    """`hubpub init`'s manifest for the folder, TODOs filled in."""
    import yaml

    from publish.checkpoint.read import read_checkpoint
    from publish.commands.init import manifest_document

    data = manifest_document([read_checkpoint(folder)], repo_id="org/moe", base=out.parent)
    data.update(base_model="org/moe-base", license="apache-2.0")
    for variant in data["variants"]:
        variant.update(method={"name": "llm-compressor"}, calibration={"samples": 8})
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def time_stages(manifest_path: Path, runs: int) -> dict[str, float]:
    from publish.checkpoint.architecture import ArchitectureCache
    from publish.checkpoint.read import read_checkpoint
    from publish.checkpoint.report import LOCAL, report_for
    from publish.manifest.model import load_manifest

    manifest = load_manifest(manifest_path)
    variant = manifest.variants[0]
    folder = manifest.variant_path(variant)
    architectures = ArchitectureCache(None)  # in memory, as `hubpub check` reads it from disk
    read_checkpoint(folder, architectures)  # warm: imports, page cache, the architecture built once
    reads, checks = [], []
    for _ in range(runs):
        start = time.perf_counter()
        checkpoint = read_checkpoint(folder, architectures)
        middle = time.perf_counter()
        report = report_for(checkpoint, variant, LOCAL)  # the checks and the facts, as `hubpub check` runs them
        checks.append(time.perf_counter() - middle)
        reads.append(middle - start)
        assert not report.findings and report.facts is not None and report.facts.refusal is None, report
    return {"read ms": statistics.median(reads) * 1000, "checks and facts ms": statistics.median(checks) * 1000,
            "architecture ms": architecture_ms(folder), "tensors": len(checkpoint.tensors)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work-moe")
    args = parser.parse_args()
    os.environ.setdefault("COMPRESSED_TENSORS_LOG_DISABLED", "1")
    work: Path = args.work.resolve()
    folders = {"full": work / "full" / "checkpoint", "tiny": work / "tiny" / "checkpoint"}
    for name, dims, shard in (("full", FULL, 5_000_000_000), ("tiny", TINY, 5_000_000)):
        if not (folders[name] / "config.json").is_file():
            build(folders[name], dims, shard)
    manifests = {name: manifest_for(folder, folder.parent / "branches.yaml") for name, folder in folders.items()}
    stats = checkpoint_stats(folders["full"])
    timed = {name: cold_and_warm(manifests[name], args.runs, work / f"cache-{name}") for name in ("full", "tiny")}
    cli = {name: warm for name, (_, warm) in timed.items()}
    cold = {name: first for name, (first, _) in timed.items()}
    stages = time_stages(manifests["full"], args.runs * 4)
    results = {
        "full tensors": stats.tensors, "full apparent GB": round(stats.apparent_bytes / 1e9, 2),
        "full on-disk MB": round(stats.disk_bytes / 1e6, 1), "tiny tensors": checkpoint_stats(folders["tiny"]).tensors,
        "cli full s": round(cli["full"], 3), "cli tiny s": round(cli["tiny"], 3),
        "ratio full/tiny": round(cli["full"] / cli["tiny"], 3),
        "cli full cold s": round(cold["full"], 3), "cli tiny cold s": round(cold["tiny"], 3),
        "ratio full/tiny cold": round(cold["full"] / cold["tiny"], 3),
        **{f"full {k}": round(v, 1) for k, v in stages.items()},
    }
    print(json.dumps(results, indent=2))
    (work / "bench_moe.json").write_text(json.dumps(results, indent=2))
    ok = (results["ratio full/tiny"] <= 1.5 and results["ratio full/tiny cold"] <= 1.5
          and stages["checks and facts ms"] <= 300)
    print("targets met" if ok else "TARGETS MISSED: ratio <= 1.5 and checks <= 300 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
