"""The checkpoint against the architecture transformers builds from its config.json, and against what vLLM loads:
every module present (A1), an unknown architecture (A2), KV-cache scales (T5), modules vLLM builds in full
precision (K5, K1), and `render` refusing what `check` finds false. Through the CLI, on checkpoints written by
compressed-tensors' own compressors (tests/fixtures/architectures.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from publish.checkpoint.architecture import ArchitectureCache, architecture_key, describe_architecture
from publish.checkpoint.read import read_checkpoint

from .fixtures.architectures import FP8_KV, INT8_CHANNEL, MOE_IGNORE, Build, Group, plan, write
from .fixtures.manifests import edit_manifest, invoke, manifest_from_init

INT8 = {"group_0": Group(INT8_CHANNEL)}
INDEXER_IGNORE = [*MOE_IGNORE, "re:.*indexer.wk$", "re:.*indexer.weights_proj$"]  # a GLM-5 recipe


def checked(folder: Path, tmp_path: Path, **manifest_changes: Any) -> tuple[Any, Path]:
    """`hubpub init` on `folder` (with the variant's fields changed as given), then `hubpub check`."""
    manifest = manifest_from_init([folder], tmp_path / "branches.yaml")
    if manifest_changes:
        edit_manifest(manifest, lambda data: data["variants"][0].update(manifest_changes))
    return invoke("check", "--manifest", str(manifest)), manifest


def finding_lines(output: str, code: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if f" {code}  " in line]


def subjects(output: str, code: str) -> list[str]:
    return [line.split(f" {code}  ", 1)[1].split(": ", 1)[0] for line in finding_lines(output, code)]


# --- A1, A2: completeness against the architecture ------------------------------------------------------------


def test_a_module_removed_entirely_is_named(tmp_path: Path) -> None:
    good = plan("llama", INT8, ["lm_head"])
    manifest = manifest_from_init([write(good, tmp_path / "good")], tmp_path / "branches.yaml")
    broken = plan("llama", INT8, ["lm_head"])
    broken.drop_module("model.layers.1.mlp.down_proj")  # tensors gone, and so are their index entries
    edit_manifest(manifest, lambda data: data["variants"][0].update(path=str(write(broken, tmp_path / "broken"))))
    done = invoke("check", "--manifest", str(manifest), "--branch", "main")
    assert done.exit_code == 1
    assert subjects(done.output, "A1") == ["model.layers.1.mlp.down_proj"]
    assert "LlamaForCausalLM (Linear) defines this module" in done.output
    rendered = invoke("render", "--manifest", str(manifest))
    assert rendered.exit_code == 1 and "A1  model.layers.1.mlp.down_proj" in rendered.output
    assert not (tmp_path / "cards").exists()


def test_tied_weights_and_mtp_layers_are_known_exceptions(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    from .fixtures.formats import build

    tied = read_checkpoint(build(tmp_path / "tied", "fp8-dynamic", "tied"))
    assert tied.architecture is not None and tied.architecture.tied == {"lm_head": "model.embed_tokens"}
    assert "lm_head" not in tied.architecture.required and "lm_head" not in tied.modules
    qwen = read_checkpoint(checkpoints["main"])  # Qwen3.6 with an MTP layer transformers does not build
    assert qwen.architecture is not None and qwen.architecture.unknown is None
    assert any(m.startswith("mtp.") for m in qwen.modules)
    assert not any(m.startswith("mtp.") for m in qwen.architecture.modules)
    assert qwen.architecture.required <= qwen.modules


def test_an_unknown_architecture_warns_once_and_the_other_checks_run(tmp_path: Path) -> None:
    made = plan("llama", INT8, ["lm_head"])
    made.config["architectures"] = ["SomeNewModelForCausalLM"]
    done, manifest = checked(write(made, tmp_path / "new"), tmp_path)
    assert done.exit_code == 0, done.output
    assert subjects(done.output, "A2") == ["config.json"] and "1 warning(s)" in done.output
    assert "does not know the architecture SomeNewModelForCausalLM" in done.output
    del made.tensors["model.layers.0.self_attn.o_proj.weight_scale"]
    edit_manifest(manifest, lambda data: data["variants"][0].update(path=str(write(made, tmp_path / "broken"))))
    broken = invoke("check", "--manifest", str(manifest))
    assert broken.exit_code == 1 and subjects(broken.output, "T1") == ["model.layers.0.self_attn.o_proj.weight_scale"]


def test_the_architecture_is_remembered_per_config(tmp_path: Path) -> None:
    config = json.loads((write(plan("llama", INT8, ["lm_head"]), tmp_path / "ckpt") / "config.json").read_text())
    cache = ArchitectureCache(tmp_path / "architectures.json")
    built = describe_architecture(config, None, cache)
    again = ArchitectureCache(tmp_path / "architectures.json").get(architecture_key(config, None))
    assert again == built and "model.layers.1.mlp.down_proj" in built.modules
    changed = {**config, "num_hidden_layers": 3}
    assert architecture_key(changed, None) != architecture_key(config, None)
    assert architecture_key({**config, "quantization_config": {}}, None) == architecture_key(config, None)


def test_one_process_builds_each_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publish.checkpoint import architecture

    config = json.loads((write(plan("llama", INT8, ["lm_head"]), tmp_path / "ckpt") / "config.json").read_text())
    config["num_hidden_layers"] = 5  # a config no other test builds
    builds: list[str] = []
    real = architecture._build
    monkeypatch.setattr(architecture, "_build", lambda *args: builds.append("built") or real(*args))
    first = describe_architecture(config, None)  # no cache on disk, as when it cannot be written
    assert describe_architecture(config, None) == first and builds == ["built"]
    assert describe_architecture(config, None, ArchitectureCache(tmp_path / "a.json")) == first and len(builds) == 1
    describe_architecture({**config, "num_hidden_layers": 6}, None)
    assert len(builds) == 2  # another config is built


# --- T5: the KV cache ----------------------------------------------------------------------------------------------


def kv_project(tmp_path: Path, made: Build | None = None) -> Path:
    """A manifest from `hubpub init` on an FP8-KV-cache checkpoint, with the shipped vLLM usage."""
    folder = write(made or plan("llama", INT8, ["lm_head"], kv=FP8_KV), tmp_path / "kv")
    manifest = manifest_from_init([folder], tmp_path / "branches.yaml")
    return edit_manifest(manifest, lambda data: data.update(
        usage={"serve": {"args": ["--tensor-parallel-size 2", "--max-model-len auto"]}}))


def test_the_kv_cache_format_is_on_the_card_and_vllm_gets_the_flag(tmp_path: Path) -> None:
    manifest = kv_project(tmp_path)
    import yaml

    assert yaml.safe_load(manifest.read_text())["variants"][0]["kv_cache"] == "FP8 E4M3, per-tensor scales"
    assert invoke("check", "--manifest", str(manifest)).exit_code == 0
    assert invoke("render", "--manifest", str(manifest)).exit_code == 0
    card = (tmp_path / "cards" / "main" / "README.md").read_text()
    assert "| KV cache | FP8 E4M3, per-tensor scales |" in card
    assert "--max-model-len auto \\\n--kv-cache-dtype fp8\n```" in card


def test_missing_kv_scales_are_named(tmp_path: Path) -> None:
    manifest = kv_project(tmp_path)
    made = plan("llama", INT8, ["lm_head"], kv=FP8_KV)
    del made.tensors["model.layers.1.self_attn.v_scale"]
    edit_manifest(manifest, lambda data: data["variants"][0].update(path=str(write(made, tmp_path / "broken"))))
    done = invoke("check", "--manifest", str(manifest))
    assert done.exit_code == 1 and subjects(done.output, "T5") == ["model.layers.1.self_attn.v_scale"]
    assert "falls back to a scale of 1.0" in done.output


def test_kv_scales_that_do_not_fit_the_scheme_are_named(tmp_path: Path) -> None:
    made = plan("llama", INT8, ["lm_head"], kv=FP8_KV)
    made.quantization["kv_cache_scheme"]["strategy"] = "attn_head"  # per head: [kv_heads, 1, 1], not [1]
    done, _ = checked(write(made, tmp_path / "kv"), tmp_path)
    assert done.exit_code == 1
    assert subjects(done.output, "T5") == [f"model.layers.{n}.self_attn.{s}" for n in (0, 1) for s in ("k_scale",
                                                                                                    "v_scale")]
    assert "expected [2, 1, 1]" in done.output


def test_kv_scales_without_a_kv_cache_scheme_are_a_warning(tmp_path: Path) -> None:
    made = plan("llama", INT8, ["lm_head"], kv=FP8_KV)
    made.quantization["kv_cache_scheme"] = None
    done, _ = checked(write(made, tmp_path / "kv"), tmp_path)
    assert done.exit_code == 0 and [line.split()[0] for line in finding_lines(done.output, "T5")] == ["warning"]


def test_a_manifest_silent_about_a_quantized_kv_cache_is_c3(tmp_path: Path) -> None:
    manifest = kv_project(tmp_path)
    edit_manifest(manifest, lambda data: data["variants"][0].pop("kv_cache"))
    done = invoke("check", "--manifest", str(manifest))
    assert done.exit_code == 1 and subjects(done.output, "C3") == ["config.json"]
    assert "kv_cache_scheme: the config's KV cache is FP8 E4M3, per-tensor scales" in done.output


# --- K5, K1: what vLLM builds in full precision --------------------------------------------------------------------


def test_a_quantized_indexer_weights_proj_is_refused_as_vllm_refuses_it(tmp_path: Path) -> None:
    good = write(plan("deepseek_v32", INT8, INDEXER_IGNORE), tmp_path / "good")
    done, manifest = checked(good, tmp_path)
    assert done.exit_code == 0, done.output
    # llm-compressor issue 2512: the recipe forgot the indexer's weights_proj.
    broken = write(plan("deepseek_v32", INT8, [*MOE_IGNORE, "re:.*indexer.wk$"]), tmp_path / "broken")
    edit_manifest(manifest, lambda data: data["variants"][0].update(path=str(broken)))
    done = invoke("check", "--manifest", str(manifest))
    assert done.exit_code == 1
    assert subjects(done.output, "K5") == [f"model.layers.{n}.self_attn.indexer.weights_proj" for n in (0, 1)]
    assert "wk_weights_proj, built with quant_config=None" in done.output
    assert "re:.*indexer.weights_proj$" in done.output
    rendered = invoke("render", "--manifest", str(manifest))
    assert rendered.exit_code == 1 and "K5" in rendered.output and not (tmp_path / "cards").exists()


def test_a_quantized_mtp_eh_proj_is_refused(tmp_path: Path) -> None:
    import torch

    made = plan("deepseek_v32", INT8, INDEXER_IGNORE)
    made.tensors["model.layers.2.eh_proj.weight"] = torch.zeros(64, 128, dtype=torch.bfloat16)  # DeepSeek's MTP
    made.compress("model.layers.2.eh_proj", INT8_CHANNEL)
    done, _ = checked(write(made, tmp_path / "mtp"), tmp_path)
    assert done.exit_code == 1 and subjects(done.output, "K5") == ["model.layers.2.eh_proj"]
    assert "plain torch nn.Linear" in done.output


def test_a_router_linear_targets_cannot_reach_gives_no_k1(tmp_path: Path) -> None:
    """DeepSeek-V2's mlp.gate is DeepseekV2TopkRouter, not an nn.Linear: targets ["Linear"] never quantize it."""
    made = plan("deepseek_v2", INT8, ["lm_head"])
    assert made.quantization["config_groups"]["group_0"]["targets"] == ["Linear"]
    done, _ = checked(write(made, tmp_path / "v2"), tmp_path)
    assert done.exit_code == 0 and "0 error(s), 0 warning(s)" in done.output, done.output


def test_a_router_an_unknown_architecture_may_build_as_linear_still_warns(tmp_path: Path) -> None:
    made = plan("deepseek_v2", INT8, ["lm_head"])
    made.config["architectures"] = ["DeepseekV2LikeForCausalLM"]
    done, _ = checked(write(made, tmp_path / "v2"), tmp_path)
    assert done.exit_code == 0
    assert subjects(done.output, "K1") == ["model.layers.1.mlp.gate"] and "2 warning(s)" in done.output  # and A2


# --- render refuses what check finds false -------------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "code", "subject"), [
    ("dense-k-proj", "K3", "model.layers.0.self_attn"),
    ("lm-head-not-ignored", "K1", "lm_head"),
])
def test_render_refuses_weights_check_finds_false(edit: str, code: str, subject: str, tmp_path: Path) -> None:
    good = plan("llama", INT8, ["lm_head"])
    manifest = manifest_from_init([write(good, tmp_path / "good")], tmp_path / "branches.yaml")
    made = plan("llama", INT8, ["lm_head"])
    if edit == "dense-k-proj":  # ignored, so the card's "Unquantized layers" stays embed_tokens, lm_head
        made.dense("model.layers.0.self_attn.k_proj", (32, 64))
        made.quantization["ignore"].append("model.layers.0.self_attn.k_proj")
    else:
        made.quantization["ignore"] = []
    edit_manifest(manifest, lambda data: data["variants"][0].update(path=str(write(made, tmp_path / "edited"))))
    done = invoke("render", "--manifest", str(manifest))
    assert done.exit_code == 1
    assert f"error   {code}  {subject}:" in done.output and "no card was written" in done.output
    assert not (tmp_path / "cards").exists()
    assert invoke("check", "--manifest", str(manifest)).exit_code == 1


def test_a_router_no_target_can_reach_gives_no_k1_even_when_named(tmp_path: Path) -> None:
    """compressed-tensors quantizes Linears and embeddings only: a target naming the router cannot reach it."""
    made = plan("deepseek_v2", {"group_0": Group(INT8_CHANNEL, ("Linear", "re:.*mlp.gate$"))}, ["lm_head"])
    done, _ = checked(write(made, tmp_path / "v2"), tmp_path)
    assert done.exit_code == 0 and "0 error(s), 0 warning(s)" in done.output, done.output


@pytest.mark.parametrize(("case", "refused"), [("fp8-dynamic", False), ("w8a16-channel", True)])
def test_the_indexer_wk_loads_only_in_fp8(case: str, refused: bool, tmp_path: Path) -> None:
    """vLLM dequantizes an FP8 wk into its unquantized wk_weights_proj while loading; nothing else."""
    from .fixtures.formats import CASES

    made = plan("deepseek_v32", {"group_0": Group(CASES[case])}, [*MOE_IGNORE, "re:.*indexer.weights_proj$"])
    done, _ = checked(write(made, tmp_path / case), tmp_path)
    assert done.exit_code == int(refused), done.output
    assert subjects(done.output, "K5") == ([f"model.layers.{n}.self_attn.indexer.wk" for n in (0, 1)] if refused
                                           else [])
