"""Checks on real (tiny) compressed-tensors checkpoints: both good variants pass, every defect is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from publish.checkpoint.findings import collect_findings
from publish.checkpoint.read import read_checkpoint
from publish.manifest.model import load_manifest
from publish.manifest.variant import Variant

from .conftest import point_manifest
from .fixtures.checkpoints import DEFECTS, build_checkpoint

# defect -> (variant it is built on, code, severity, a string the finding's subject must contain)
EXPECTED = {
    "mtp-not-ignored": ("main", "K1", "error", "mtp.fc"),
    "config-gs128-tensors-channel": ("main", "T2", "error", "mlp.down_proj.weight_scale"),
    "mixed-fused-qkv": ("main", "K3", "error", "self_attn"),
    "missing-shard": ("main", "I1", "error", ".safetensors"),
    "unreferenced-shard": ("main", "I1", "error", "model-shard-00003.safetensors"),
    "missing-scale": ("main", "T1", "error", ".weight_scale"),
    "stale-total-size": ("main", "I3", "warning", "total_size"),
    "unindexed-tensor": ("main", "I2", "error", "model."),
    "duplicate-tensor": ("main", "I2", "error", "model."),
    "truncated-shard": ("main", "I2", "error", ".safetensors"),
    "visual-quantized": ("main", "K4", "error", "visual"),
    "ignore-regex-misses-visual": ("main", "K1", "error", "model.visual."),
    "stale-ignore-entry": ("main", "K2", "warning", "ignore: "),
    "zero-point-symmetric": ("main", "T3", "error", ".weight_zero_point"),
    "wrong-weight-shape": ("main", "T1", "error", ".weight_packed"),
    "leftover-dense-weight": ("main", "T1", "error", ".weight"),
    "invalid-config": ("main", "C1", "error", "quantization_config"),
    "no-quantization-config": ("main", "C1", "error", "quantization_config"),
    "stale-sidecar": ("main", "C4", "error", "quantization_config.json"),
    "mtp-declared-absent": ("main", "C5", "error", "mtp_num_hidden_layers"),
    "dense-dtype-cast": ("main", "T4", "warning", "."),
}


def findings_for(folder: Path, manifest: Path, branch: str) -> list:
    variant = load_manifest(manifest).variant(branch)
    return list(collect_findings(read_checkpoint(folder), variant))


@pytest.mark.parametrize("branch", ["main", "gs128"])
def test_good_fixture_has_no_findings(weighed: Path, checkpoints: dict[str, Path], branch: str) -> None:
    assert findings_for(checkpoints[branch], weighed, branch) == []


def test_every_defect_has_an_expectation() -> None:
    assert set(EXPECTED) == set(DEFECTS)


@pytest.mark.parametrize("defect", sorted(EXPECTED))
def test_each_defect_is_found_and_named(
    defect: str, project: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    branch, code, severity, subject = EXPECTED[defect]
    folder = build_checkpoint(tmp_path / defect, branch, defect=defect)
    # The manifest describes the good checkpoint: only the defect may be reported as an error.
    manifest = point_manifest(project, {branch: checkpoints[branch]})
    findings = findings_for(folder, manifest, branch)
    matching = [f for f in findings if f.code == code and f.severity == severity and subject in f.subject]
    assert matching, f"expected {code} {severity} naming {subject!r}, got {findings}"
    assert all(f.hint or f.severity == "warning" or f.code in {"I2"} for f in matching)
    if severity == "warning":
        assert not [f for f in findings if f.severity == "error"], findings


def with_changes(manifest: Path, branch: str, **changes: object) -> Variant:
    return load_manifest(manifest).variant(branch).model_copy(update=changes)


def test_manifest_saying_groups_for_channel_weights_fails_c3(weighed: Path, checkpoints: dict[str, Path]) -> None:
    findings = collect_findings(read_checkpoint(checkpoints["main"]), with_changes(weighed, "main", group_size=64))
    assert any(f.code == "C3" and "group_size" in f.subject for f in findings)


def test_manifest_saying_asymmetric_fails_c3(weighed: Path, checkpoints: dict[str, Path]) -> None:
    findings = collect_findings(read_checkpoint(checkpoints["gs128"]), with_changes(weighed, "gs128", symmetric=False))
    assert [(f.code, f.subject.rsplit(".", 1)[-1]) for f in findings] == [("C3", "symmetric")]


def test_manifest_missing_an_unquantized_family_fails_k4(weighed: Path, checkpoints: dict[str, Path]) -> None:
    variant = with_changes(weighed, "gs128", unquantized=("visual", "mtp", "linear_attn", "embed_tokens", "lm_head"))
    findings = collect_findings(read_checkpoint(checkpoints["gs128"]), variant)
    assert [(f.code, f.subject) for f in findings] == [("K4", "self_attn")]


def test_wrong_size_fails_i4(weighed: Path, checkpoints: dict[str, Path]) -> None:
    findings = collect_findings(read_checkpoint(checkpoints["main"]), with_changes(weighed, "main", size_gb=36.8))
    assert [f.code for f in findings] == ["I4"]


def test_read_checkpoint_classifies_modules_and_families(checkpoints: dict[str, Path]) -> None:
    main = read_checkpoint(checkpoints["main"])
    gs128 = read_checkpoint(checkpoints["gs128"])
    assert main.families["self_attn"].quantized and not gs128.families["self_attn"].quantized
    assert all(m.bits == 8 and m.symmetric and m.strategy == "channel" for m in main.quantized.values())
    assert {(m.strategy, m.group_size) for m in gs128.quantized.values()} == {("group", 128)}
    assert {m.scale_dtype for m in main.quantized.values()} == {"F16"}
    for family in ("visual", "mtp", "linear_attn", "embed_tokens", "lm_head"):
        assert main.families[family].unquantized, family
    assert main.total_bytes == sum(p.stat().st_size for p in checkpoints["main"].glob("*.safetensors"))
