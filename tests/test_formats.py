"""Every compressed-tensors format: true facts or a clear refusal, never a wrong card.

The checkpoints are written by compressed-tensors' own compressors (tests/fixtures/formats.py): pack-quantized
(int4/int8; group, channel, tensor; sym/asym), int-quantized, naive-quantized, float-quantized (FP8 per tensor with
a static input scale, per channel dynamic, block), NVFP4, NVFP4A16, MXFP4 and legacy GPTQ activation ordering;
then a mixture of experts, a tied-embedding model, a three-variant repository and unsupported formats. The CLI runs
in-process through click's CliRunner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from publish.checkpoint.build import build_checkpoint
from publish.checkpoint.facts import derive_facts
from publish.checkpoint.findings import collect_findings
from publish.checkpoint.read import read_checkpoint
from publish.manifest.variant import Variant

from .fixtures.formats import CASE_DEFECTS, CASES, EXPECTED, Case, build, plan, write
from .fixtures.manifests import invoke, manifest_from_init

PAIRS = [(case, defect) for case, defects in CASE_DEFECTS.items() for defect in defects]
UNQUANTIZED = {"llama": ("embed_tokens", "lm_head"), "tied": ("embed_tokens", "lm_head"),
               "moe": ("router", "embed_tokens", "lm_head")}


@pytest.fixture(scope="session")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One good Llama-shaped checkpoint per format case, built once. Do not modify them."""
    root = tmp_path_factory.mktemp("formats")
    return {name: build(root / name, name) for name in CASES}


def variant_for(folder: Path, case: Case, arch: str = "llama", **changes: Any) -> Variant:
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e9
    return Variant.model_validate({
        "branch": "main", "path": str(folder), "method": {"name": "llm-compressor"}, "scheme": case.scheme,
        "bits": case.bits, "group_size": case.group_size, "symmetric": case.symmetric, "block": case.block,
        "activations": case.activations, "unquantized": UNQUANTIZED[arch], "calibration": {"samples": 1},
        "size_gb": size, **changes,
    })


# --- Each format: a good checkpoint passes with the right facts; realistic mistakes are named ------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_good_checkpoint_passes_with_the_configs_facts(name: str, good: dict[str, Path]) -> None:
    case, checkpoint = CASES[name], read_checkpoint(good[name])
    assert collect_findings(checkpoint, variant_for(good[name], case)) == ()
    facts = derive_facts(checkpoint)
    assert (facts.scheme, facts.bits, facts.group_size, facts.symmetric, facts.weight_type, facts.format) == (
        case.scheme, case.bits, case.group_size, case.symmetric, case.weight_type, case.format)
    assert facts.scale_dtype == case.scale_dtype and facts.refusal is None
    assert facts.unquantized == ("embed_tokens", "lm_head")


@pytest.mark.parametrize(("name", "defect"), PAIRS, ids=[f"{c}-{d}" for c, d in PAIRS])
def test_each_mistake_is_found_and_the_facts_are_refused(name: str, defect: str, tmp_path: Path) -> None:
    code, subject = EXPECTED[defect]
    folder = build(tmp_path / name, name, defect=defect)
    checkpoint = read_checkpoint(folder)
    findings = collect_findings(checkpoint, variant_for(folder, CASES[name]))
    assert any(f.code == code and f.severity == "error" and subject in f.subject for f in findings), findings
    assert len(findings) <= 12, "one mistake, a handful of findings: not hundreds"
    if code.startswith("T"):
        assert derive_facts(checkpoint).refusal is not None


@pytest.mark.parametrize("name", sorted(CASES))
def test_headers_alone_suffice_as_on_a_hub_revision(name: str, good: dict[str, Path]) -> None:
    """`check --remote` has the headers but not the weight_shape values: in_features comes from the packing."""
    local = read_checkpoint(good[name])
    headers: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    for tensor in local.tensors.values():
        headers.setdefault(tensor.shard, {})[tensor.name] = (tensor.dtype, tensor.shape)
    remote = build_checkpoint(location="remote", files=local.files, headers=headers, unreadable={},
                              index=local.index, index_error=None, config=local.config, config_error=None,
                              quantization_raw=local.quantization_raw, sidecar=None, weight_shapes={})
    assert collect_findings(remote, variant_for(good[name], CASES[name])) == ()
    assert derive_facts(remote) == derive_facts(local)


def test_nvfp4_facts_say_group_16_with_fp8_scales_not_int32_arithmetic(good: dict[str, Path]) -> None:
    modules = read_checkpoint(good["nvfp4"]).quantized.values()
    assert {(m.params["weight_packed"].dtype, m.params["weight_scale"].dtype) for m in modules} == {("U8", "F8_E4M3")}
    assert {m.group_size for m in modules} == {16}
    assert "weight_shape" not in next(iter(modules)).params  # nvfp4 stores none; in_features comes from the packing
    assert all(m.in_features in (64, 128) for m in modules)


def test_legacy_gptq_actorder_group_is_read_not_refused(good: dict[str, Path]) -> None:
    checkpoint = read_checkpoint(good["gptq-actorder-group"])
    assert checkpoint.quantization_error is None and checkpoint.unsupported is None
    assert all("weight_g_idx" in m.params for m in checkpoint.quantized.values())


def test_a_g_idx_the_config_does_not_declare_is_an_error(tmp_path: Path) -> None:
    case = CASES["gptq-actorder-group"]
    folder = build(tmp_path / "gptq", case)
    config = json.loads((folder / "config.json").read_text())
    del config["quantization_config"]["config_groups"]["group_0"]["weights"]["actorder"]
    (folder / "config.json").write_text(json.dumps(config))
    findings = collect_findings(read_checkpoint(folder), variant_for(folder, case))
    assert {f.code for f in findings} == {"T1"} and all("weight_g_idx" in f.subject for f in findings)


def test_manifest_scheme_must_match_the_config(good: dict[str, Path]) -> None:
    folder, case = good["fp8-dynamic"], CASES["fp8-dynamic"]
    findings = collect_findings(read_checkpoint(folder), variant_for(folder, case, scheme="FP8"))
    assert [(f.code, "FP8-dynamic" in f.message) for f in findings] == [("C3", True)]


# --- Mixture of experts, tied embeddings -----------------------------------------------------------------------


def test_moe_with_experts_quantized_and_routers_ignored_is_clean(tmp_path: Path) -> None:
    folder = build(tmp_path / "moe", "w4a16-group", "moe")
    checkpoint = read_checkpoint(folder)
    assert collect_findings(checkpoint, variant_for(folder, CASES["w4a16-group"], "moe")) == ()
    families = checkpoint.families
    assert families["experts"].quantized == 12 and families["shared_experts"].quantized == 3
    assert (families["router"].quantized, families["router"].dense) == (0, 2)
    assert derive_facts(checkpoint).unquantized == ("router", "embed_tokens", "lm_head")


def test_a_quantized_router_is_an_error(tmp_path: Path) -> None:
    folder = build(tmp_path / "moe", "fp8-dynamic", "moe", defect="quantized-router")
    findings = collect_findings(read_checkpoint(folder), variant_for(folder, CASES["fp8-dynamic"], "moe"))
    assert [f.subject for f in findings if f.code == "K5"] == ["model.layers.0.mlp.gate"]


def test_tied_embeddings_make_ignore_lm_head_normal(tmp_path: Path) -> None:
    folder = build(tmp_path / "tied", "nvfp4", "tied")
    checkpoint = read_checkpoint(folder)
    assert "lm_head" not in {t.module for t in checkpoint.tensors.values()}
    assert checkpoint.quantization.ignore == ["lm_head"]
    assert collect_findings(checkpoint, variant_for(folder, CASES["nvfp4"], "tied")) == ()


def test_hints_do_not_talk_about_mtp_on_a_model_without_it(tmp_path: Path) -> None:
    folder = build(tmp_path / "fp8", "fp8-static")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"]["ignore"] = []  # lm_head dense but not ignored: K1
    (folder / "config.json").write_text(json.dumps(config))
    findings = collect_findings(read_checkpoint(folder), variant_for(folder, CASES["fp8-static"]))
    assert [f.code for f in findings] == ["K1"]
    assert "mtp" not in (findings[0].message + findings[0].hint).lower()


# --- Unsupported: one finding, no card, no manifest ------------------------------------------------------------


def _unsupported(folder: Path, **quantization: Any) -> Path:
    build(folder, "w4a16-group")
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"].update(quantization)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(("quantization", "named"), [
    ({"format": "marlin-24"}, "marlin-24"),
    ({"format": "sparse-24-bitmask"}, "sparse-24-bitmask"),
    ({"quant_method": "gptq"}, "gptq"),
    ({"sparsity_config": {"format": "sparse-bitmask", "targets": ["Linear"]}}, "sparse-bitmask"),
])
def test_an_unsupported_format_is_one_finding_and_no_card(
    quantization: dict[str, Any], named: str, tmp_path: Path
) -> None:
    folder = _unsupported(tmp_path / "ckpt", **quantization)
    findings = collect_findings(read_checkpoint(folder), variant_for(folder, CASES["w4a16-group"]))
    assert len(findings) == 1
    assert (findings[0].code, findings[0].subject.split(":")[0]) == ("C6", "config.json")
    assert named in findings[0].message and "pack-quantized" in findings[0].hint and "nvfp4" in findings[0].hint
    done = invoke("init", str(folder), "--out", str(tmp_path / "branches.yaml"))
    assert done.exit_code == 2 and named in done.output and "config.json" in done.output
    assert not (tmp_path / "branches.yaml").exists()


def test_render_refuses_a_card_for_an_unsupported_format(tmp_path: Path) -> None:
    manifest = manifest_from_init([build(tmp_path / "w4", "w4a16-group")], tmp_path / "branches.yaml")
    _unsupported(tmp_path / "w4-marlin", format="marlin-24")
    manifest.write_text(manifest.read_text().replace("path: w4\n", "path: w4-marlin\n"))
    done = invoke("render", "--manifest", str(manifest))
    assert done.exit_code == 1 and "marlin-24" in done.output and "config.json" in done.output
    assert not (tmp_path / "cards").exists()
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 1 and checked.output.count(" C6 ") == 1


# --- init and render, per format, through the CLI ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_init_then_render_states_each_formats_facts(name: str, good: dict[str, Path], tmp_path: Path) -> None:
    case = CASES[name]
    manifest = manifest_from_init([good[name]], tmp_path / "branches.yaml")
    variant = yaml.safe_load(manifest.read_text())["variants"][0]
    stated = (variant["scheme"], variant["bits"], variant.get("group_size"), variant.get("block"),
              variant["symmetric"], variant.get("activations"))
    assert stated == (case.scheme, case.bits, None if case.block else case.group_size,
                      list(case.block) if case.block else None, case.symmetric, case.activations)
    assert variant["unquantized"] == ["embed_tokens", "lm_head"]
    assert invoke("check", "--manifest", str(manifest)).exit_code == 0
    done = invoke("render", "--manifest", str(manifest))
    assert done.exit_code == 0, done.output
    card = (tmp_path / "cards" / "main" / "README.md").read_text()
    assert f"| Scheme | {case.scheme} |" in card
    spelled = {-1: "per-channel", 0: "per-tensor"}.get(case.group_size, str(case.group_size))
    blocks = "{}×{} blocks".format(*case.block) if case.block else None
    assert f"| Group size | {blocks or spelled} |" in card
    assert f"| Scale dtype | {case.scale_dtype} |" in card
    if case.activations:
        assert f"| Activations | {case.activations} |" in card
    else:
        assert "| Activations |" not in card  # a W*A16 card does not grow a row of "none"


def test_three_variant_repository_checks_and_renders(good: dict[str, Path], tmp_path: Path) -> None:
    names = ["w4a16-group", "fp8-dynamic", "nvfp4"]
    manifest = manifest_from_init([good[n] for n in names], tmp_path / "branches.yaml")
    data = yaml.safe_load(manifest.read_text())
    assert [v["branch"] for v in data["variants"]] == ["main", "fp8-dynamic", "nvfp4"]
    assert data["tags"] == ["compressed-tensors", "fp8", "int4", "nvfp4"]
    checked = invoke("check", "--manifest", str(manifest), "--json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.output)
    assert [v["facts"]["scheme"] for v in report["variants"]] == ["W4A16", "FP8-dynamic", "NVFP4"]
    assert invoke("render", "--manifest", str(manifest)).exit_code == 0
    card = (tmp_path / "cards" / "nvfp4" / "README.md").read_text()
    assert "| Scheme | W4A16 | FP8-dynamic | NVFP4 |" in card
    assert "| Group size | 32 | per-channel | 16 |" in card
    assert "| Scale dtype | BF16 | BF16 | FP8 E4M3 |" in card


def test_render_refuses_a_manifest_that_contradicts_the_weights(good: dict[str, Path], tmp_path: Path) -> None:
    manifest = manifest_from_init([good["nvfp4"]], tmp_path / "branches.yaml")
    manifest.write_text(manifest.read_text().replace("group_size: 16", "group_size: 64"))
    done = invoke("render", "--manifest", str(manifest))
    assert done.exit_code == 1 and "C3  config.json: quantization_config.config_groups.group_0.weights.group_size" in done.output
    assert "the manifest says group 64, the config says group 16" in done.output


@pytest.mark.parametrize(("arch", "name", "unquantized"), [
    ("moe", "w4a16-group", ["router", "embed_tokens", "lm_head"]),
    ("tied", "fp8-dynamic", ["embed_tokens", "lm_head"]),
])
def test_init_and_render_for_moe_and_tied_models(arch: str, name: str, unquantized: list[str], tmp_path: Path) -> None:
    manifest = manifest_from_init([build(tmp_path / arch, name, arch)], tmp_path / "branches.yaml")
    assert yaml.safe_load(manifest.read_text())["variants"][0]["unquantized"] == unquantized
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 0 and "0 warning(s)" in checked.output, checked.output
    assert invoke("render", "--manifest", str(manifest)).exit_code == 0
    card = (tmp_path / "cards" / "main" / "README.md").read_text()
    assert "| Unquantized layers | " + ", ".join(f"`{f}`" for f in unquantized) + " |" in card


def test_facts_recorded_before_the_format_model_still_load() -> None:
    from publish.checkpoint.facts import WeightFacts

    old = {"bits": 8, "group_size": -1, "symmetric": True, "scale_dtype": "FP16",
           "unquantized": ["visual", "lm_head"], "total_bytes": 10}
    facts = WeightFacts.from_dict(old)
    assert (facts.unquantized, facts.scheme, facts.refusal) == (("visual", "lm_head"), None, None)


def test_init_refuses_a_checkpoint_without_quantization_config(tmp_path: Path) -> None:
    folder = build(tmp_path / "plain", "w4a16-group")
    config = json.loads((folder / "config.json").read_text())
    del config["quantization_config"]
    (folder / "config.json").write_text(json.dumps(config))
    done = invoke("init", str(folder), "--out", str(tmp_path / "branches.yaml"))
    assert done.exit_code == 2 and "no quantization_config" in done.output


def test_an_fp8_kv_cache_scheme_and_its_scales_are_not_mistaken_for_weights(tmp_path: Path) -> None:
    import torch

    made = plan(CASES["fp8-static"])
    for name in ("k_scale", "v_scale"):
        made.tensors[f"model.layers.0.self_attn.{name}"] = torch.ones(1, dtype=torch.bfloat16)
    made.quantization["kv_cache_scheme"] = {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "tensor"}
    folder = write(made, tmp_path / "kv")
    variant = variant_for(folder, CASES["fp8-static"], kv_cache="FP8 E4M3, per-tensor scales")
    assert collect_findings(read_checkpoint(folder), variant) == ()


def test_a_report_recorded_before_the_format_model_is_not_reused(
    weighed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publish.checkpoint import read as checkpoint_module
    from publish.checkpoint.report import examine
    from publish.checkpoint.reportcache import ReportCache
    from publish.commands.check import check
    from publish.manifest.model import load_manifest

    store = tmp_path / "checks.json"
    check(load_manifest(weighed), "main", cache=ReportCache(store))
    recorded = json.loads(store.read_text())
    for entry in recorded["entries"].values():
        for key in ("scheme", "weight_type", "activations", "format", "refusal"):
            entry["facts"].pop(key)  # what an earlier hubpub wrote, under its cache version
    recorded["version"] = 1
    store.write_text(json.dumps(recorded))
    calls: list[Path] = []
    real = checkpoint_module.read_checkpoint
    monkeypatch.setattr(checkpoint_module, "read_checkpoint", lambda folder, *rest: calls.append(folder) or real(folder, *rest))
    manifest = load_manifest(weighed)
    report = examine(manifest, manifest.select("main"), cache=ReportCache(store), reuse=True)
    assert len(calls) == 1 and report.variants[0].facts is not None
    assert report.variants[0].facts.format == "pack-quantized"
