"""Mixed precision part by part, activations and old-but-loadable configs, through the CLI.

The checkpoints are DeepSeek-V2-shaped (a dense first layer, then experts with a shared expert and a router), int4
MLP and experts with int8 attention, written by compressed-tensors' own compressors (tests/fixtures/architectures.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from .fixtures.architectures import MIXED, plan, write
from .fixtures.formats import CASES, build
from .fixtures.manifests import edit_manifest, invoke, manifest_from_init

PARTS = [
    {"scheme": "W4A16", "bits": 4, "group_size": 32, "symmetric": True,
     "families": ["mlp", "experts", "shared_experts"]},
    {"scheme": "W8A16", "bits": 8, "group_size": -1, "symmetric": True, "families": ["self_attn"]},
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """int4 MLP and experts, int8 attention; lm_head ignored, the routers left dense (not nn.Linear)."""
    return write(plan("deepseek_v2", MIXED, ["lm_head"]), tmp_path_factory.mktemp("mixed") / "ckpt")


def findings(output: str, code: str) -> list[str]:
    """The subjects of `code` findings in `hubpub check`'s text report."""
    return [line.split(f" {code}  ", 1)[1].split(":", 1)[0] for line in output.splitlines() if f" {code}  " in line]


def test_init_writes_each_part_and_the_card_shows_them(mixed: Path, tmp_path: Path) -> None:
    manifest = manifest_from_init([mixed], tmp_path / "branches.yaml")
    variant = yaml.safe_load(manifest.read_text())["variants"][0]
    assert variant["parts"] == PARTS
    assert not {"scheme", "bits", "group_size", "symmetric"} & set(variant)
    assert variant["unquantized"] == ["router", "embed_tokens", "lm_head"]
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 0 and "0 error(s), 0 warning(s)" in checked.output, checked.output
    assert invoke("render", "--manifest", str(manifest)).exit_code == 0
    card = (tmp_path / "cards" / "main" / "README.md").read_text()
    assert "| Scheme | W4A16, group 32 (mlp, experts, shared_experts) · W8A16 per-channel (self_attn) |" in card
    assert "| Bits | 4 · 8 |" in card and "| Group size | 32 · per-channel |" in card and "| Symmetric | yes |" in card
    assert "| Activations |" not in card


def test_a_single_scheme_manifest_for_mixed_weights_names_both_schemes(mixed: Path, tmp_path: Path) -> None:
    manifest = manifest_from_init([mixed], tmp_path / "branches.yaml")

    def single(data: dict[str, Any]) -> None:
        variant = data["variants"][0]
        del variant["parts"]
        variant.update(scheme="W4A16", bits=4, group_size=32, symmetric=True)

    edit_manifest(manifest, single)
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 1
    assert findings(checked.output, "C3") == ["config.json"]
    (line,) = [line for line in checked.output.splitlines() if " C3 " in line]
    assert "mixed precision" in line and "W4A16, group 32" in line and "W8A16 per-channel (self_attn)" in line
    rendered = invoke("render", "--manifest", str(manifest))
    assert rendered.exit_code == 1 and "W8A16" in rendered.output
    assert not (tmp_path / "cards").exists()


def test_a_part_that_contradicts_its_weights_is_named(mixed: Path, tmp_path: Path) -> None:
    manifest = manifest_from_init([mixed], tmp_path / "branches.yaml")
    edit_manifest(manifest, lambda data: data["variants"][0]["parts"][1].update(scheme="W4A16", bits=4))
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 1
    assert findings(checked.output, "C3") == ["config.json"] * 2
    assert "config_groups.group_1.weights.num_bits" in checked.output
    assert "the config's scheme is W8A16" in checked.output
    rendered = invoke("render", "--manifest", str(manifest))
    assert rendered.exit_code == 1 and "config_groups.group_1" in rendered.output


def test_parts_for_a_single_scheme_checkpoint_are_an_error(tmp_path: Path) -> None:
    manifest = manifest_from_init([build(tmp_path / "w4", "w4a16-group")], tmp_path / "branches.yaml")

    def parts(data: dict[str, Any]) -> None:
        variant = data["variants"][0]
        for key in ("scheme", "bits", "group_size", "symmetric"):
            del variant[key]
        variant["parts"] = [{**PARTS[0], "families": ["mlp"]}, {**PARTS[1], "scheme": "W4A16", "bits": 4,
                                                                  "group_size": 32}]

    edit_manifest(manifest, parts)
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 1 and "the weights use one scheme for every quantized module" in checked.output


def test_activations_are_a_card_row_and_checked(tmp_path: Path) -> None:
    manifest = manifest_from_init([build(tmp_path / "w8a8", "w8a8-int")], tmp_path / "branches.yaml")
    assert yaml.safe_load(manifest.read_text())["variants"][0]["activations"] == "dynamic per-token INT8"
    assert invoke("render", "--manifest", str(manifest)).exit_code == 0
    assert "| Activations | dynamic per-token INT8 |" in (tmp_path / "cards" / "main" / "README.md").read_text()
    edit_manifest(manifest, lambda data: data["variants"][0].update(activations="static per-tensor INT8"))
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 1
    (line,) = [line for line in checked.output.splitlines() if " C3 " in line]
    assert "config_groups.group_0.input_activations" in line and "dynamic per-token INT8" in line


def test_block_wise_schemes_show_their_blocks(tmp_path: Path) -> None:
    manifest = manifest_from_init([build(tmp_path / "block", "fp8-block")], tmp_path / "branches.yaml")
    assert yaml.safe_load(manifest.read_text())["variants"][0]["block"] == [32, 32]
    assert invoke("render", "--manifest", str(manifest)).exit_code == 0
    card = (tmp_path / "cards" / "main" / "README.md").read_text()
    assert "| Group size | 32×32 blocks |" in card and "Group size | 32 |" not in card
    edit_manifest(manifest, lambda data: data["variants"][0].pop("block") and data["variants"][0].update(
        group_size=32))
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 1 and "config_groups.group_0.weights.block_structure" in checked.output


def test_frozen_status_with_compressed_weights_is_a_warning(tmp_path: Path) -> None:
    folder = build(tmp_path / "fp8", CASES["fp8-naive"])
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"]["quantization_status"] = "frozen"
    (folder / "config.json").write_text(json.dumps(config))
    manifest = manifest_from_init([folder], tmp_path / "branches.yaml")
    checked = invoke("check", "--manifest", str(manifest))
    assert checked.exit_code == 0, checked.output
    assert findings(checked.output, "C2") == ["config.json"] and "warning C2" in checked.output
    assert invoke("render", "--manifest", str(manifest)).exit_code == 0
