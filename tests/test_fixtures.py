"""The checkpoint generators are only useful if they look like real exports: check that against transformers,
compressed-tensors and the published Qwen3.6-27B INT8 sizes, and check that every defect is really there."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Module-scoped fixtures import compressed-tensors before conftest's per-test env is applied; keep it quiet too.
os.environ.setdefault("COMPRESSED_TENSORS_LOG_DISABLED", "1")

from bench.sparse import build_sparse_checkpoint, checkpoint_stats
from tests.fixtures.checkpoints import (
    DEFECTS,
    MTP_REGEX,
    SIDECAR_FILE,
    build_checkpoint,
    model_config,
    tiny_shard_bytes,
)
from tests.fixtures.layout import (
    EXTRA_FILE,
    FULL,
    INDEX_FILE,
    TINY,
    VARIANTS,
    Dims,
    Variant,
    is_mtp,
    layout,
    linear_modules,
    quantized_modules,
    stored_tensors,
    variant_group_size,
)

ROOT = Path(__file__).resolve().parents[1]
MLP0 = "model.language_model.layers.0.mlp"


def headers(folder: Path) -> dict[str, dict]:
    """file name -> parsed safetensors header (without __metadata__), read with the stdlib only."""
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            h = json.loads(f.read(n))
        h.pop("__metadata__", None)
        out[path.name] = h
    return out


def tensor_value(folder: Path, file: str, name: str) -> bytes:
    """Raw bytes of one tensor (used for the 16-byte weight_shape values)."""
    with (folder / file).open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        start, end = json.loads(f.read(n))[name]["data_offsets"]
        f.seek(8 + n + start)
        return f.read(end - start)


def snapshot(folder: Path) -> dict:
    """What a checker can see: file names, sizes and digests, headers, config, sidecar, index."""
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.safetensors")}
    config = json.loads((folder / "config.json").read_text())
    sidecar = json.loads((folder / SIDECAR_FILE).read_text()) if SIDECAR_FILE in files else None
    index = json.loads((folder / INDEX_FILE).read_text())
    return {
        "files": files,
        "digests": digests,
        "headers": headers(folder),
        "config": config,
        "sidecar": sidecar,
        "index": index,
    }


@pytest.fixture(scope="module")
def good(checkpoints: dict[str, Path]) -> dict[str, Path]:
    """Both good variants: the session's own build (conftest.checkpoints), not a second one."""
    return checkpoints


@pytest.fixture(scope="module")
def good_snapshots(good: dict[str, Path]) -> dict[str, dict]:
    """Snapshots of the good variants, the baseline every defect is compared with."""
    return {v: snapshot(p) for v, p in good.items()}


# ------------------------------------------------------------------ layout realism


@pytest.mark.parametrize("dims", [TINY, FULL], ids=["tiny", "full"])
def test_layout_equals_transformers_state_dict(dims: Dims) -> None:
    """Names, shapes and order equal Qwen3_5ForConditionalGeneration's (MTP aside, which it never builds)."""
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3_5ForConditionalGeneration(Qwen3_5Config.from_dict(model_config(dims, None)))
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == [(e.name, e.shape) for e in layout(dims) if not is_mtp(e.name)]
    assert len([e for e in layout(dims) if is_mtp(e.name)]) == 15  # AutoRound log: "copied 15 missing tensors"


def test_quantized_modules_per_variant() -> None:
    main, gs128 = quantized_modules(FULL, "main"), quantized_modules(FULL, "gs128")
    assert (len(main), len(gs128), len(linear_modules(FULL, mtp=False))) == (256, 192, 607)  # AutoRound log: 256/607
    assert main - gs128 == {m for m in main if ".self_attn." in m}
    assert not any(s in m for m in main for s in ("linear_attn", "visual", "embed", "lm_head", "mtp"))


# ------------------------------------------------------------------ tiny fixtures: loadable and consistent


@pytest.mark.parametrize("variant", VARIANTS)
def test_transformers_loads_tiny_fixture_cleanly(good: dict[str, Path], variant: Variant) -> None:
    import torch
    from transformers import Qwen3_5ForConditionalGeneration

    loaded: Any = Qwen3_5ForConditionalGeneration.from_pretrained(good[variant], output_loading_info=True)
    model, info = loaded
    # transformers 5 reports sets; MTP keys never reach them (filtered by _keys_to_ignore_on_load_unexpected)
    problems = {k: sorted(info[k]) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    assert problems == {key: [] for key in problems}
    # the MTP tensors are on disk and only dropped through _keys_to_ignore_on_load_unexpected
    assert EXTRA_FILE in headers(good[variant])
    params = dict(model.model.language_model.layers[3].self_attn.q_proj.named_parameters())
    assert ("weight_packed" in params) == (variant == "main")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3, 4]])).logits
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_good_fixture_is_consistent(good: dict[str, Path], good_snapshots: dict[str, dict], variant: Variant) -> None:
    from compressed_tensors.quantization import QuantizationConfig
    from transformers import Qwen3_5Config

    snap, group = good_snapshots[variant], variant_group_size(variant)
    shards = [f for f in snap["headers"] if f != EXTRA_FILE]
    assert 3 <= len(shards) <= 4 and all(f.startswith("model-0000") for f in shards)
    union = {n: f for f, h in snap["headers"].items() for n in h}
    assert sum(len(h) for h in snap["headers"].values()) == len(union)  # no duplicates
    assert snap["index"]["weight_map"] == union
    sizes = {n: v["data_offsets"][1] - v["data_offsets"][0] for h in snap["headers"].values() for n, v in h.items()}
    assert snap["index"]["metadata"]["total_size"] == sum(sizes.values())
    for f, h in snap["headers"].items():
        with (good[variant] / f).open("rb") as fh:
            header_len = struct.unpack("<Q", fh.read(8))[0]
        assert snap["files"][f] == 8 + header_len + max(v["data_offsets"][1] for v in h.values())
    expected = stored_tensors(TINY, quantized_modules(TINY, variant), group)
    got = {n: (v["dtype"], tuple(v["shape"])) for h in snap["headers"].values() for n, v in h.items()}
    assert got == {t.name: (t.dtype, t.shape) for t in expected}
    assert set(snap["headers"][EXTRA_FILE]) == {n for n in got if is_mtp(n)}

    config, q = snap["config"], snap["config"]["quantization_config"]
    assert (config["model_type"], config["architectures"]) == ("qwen3_5", ["Qwen3_5ForConditionalGeneration"])
    assert getattr(Qwen3_5Config.from_dict(config).text_config, "mtp_num_hidden_layers", None) == 1
    assert QuantizationConfig.model_validate(q).quantization_status == "compressed"
    weights = q["config_groups"]["group_0"]["weights"]
    assert (weights["strategy"], weights["group_size"], q["format"]) == (
        ("channel", None, "pack-quantized") if variant == "main" else ("group", 128, "pack-quantized")
    )
    quantized = quantized_modules(TINY, variant)
    assert q["ignore"] == [m for m in linear_modules(TINY) if m not in quantized]  # exact names, MTP last
    assert snap["sidecar"] == q
    some = min(quantized)
    value = tensor_value(good[variant], union[f"{some}.weight_shape"], f"{some}.weight_shape")
    assert struct.unpack("<2q", value) == next(e.shape for e in layout(TINY) if e.module == some and e.is_linear)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja"):
        assert name in snap["files"]


def test_tokenizer_json_is_loadable(good: dict[str, Path]) -> None:
    from tokenizers import Tokenizer

    assert Tokenizer.from_file(str(good["main"] / "tokenizer.json")).encode("hello world").ids == [1, 2]


def test_build_is_seeded(tmp_path: Path, good: dict[str, Path]) -> None:
    build_checkpoint(tmp_path / "same", "main")
    build_checkpoint(tmp_path / "other", "main", seed=1)
    first = "model-00001-of-00004.safetensors"
    assert (tmp_path / "same" / first).read_bytes() == (good["main"] / first).read_bytes()
    assert (tmp_path / "other" / first).read_bytes() != (good["main"] / first).read_bytes()


@pytest.mark.parametrize("mode", ["regex", "none"])
def test_mtp_ignore_modes(tmp_path: Path, mode: str) -> None:
    q = json.loads((build_checkpoint(tmp_path, "main", mtp_ignore=mode) / "config.json").read_text())
    mtp_entries = [n for n in q["quantization_config"]["ignore"] if n.startswith(("mtp", "re:^mtp"))]
    assert mtp_entries == ([MTP_REGEX] if mode == "regex" else [])


# ------------------------------------------------------------------ defects


def _q(s: dict) -> dict:
    return s["config"].get("quantization_config", {})


def _where(s: dict, name: str) -> str | None:
    return next((f for f, h in s["headers"].items() if name in h), None)


FULL0 = "model.language_model.layers.3.self_attn"
NORM0 = "model.language_model.layers.0.input_layernorm.weight"
EXPECT = {
    "mtp-not-ignored": lambda g, b: not any(n.startswith("mtp.") for n in _q(b)["ignore"]),
    "config-gs128-tensors-channel": lambda g, b: (
        _q(b)["config_groups"]["group_0"]["weights"]["group_size"] == 128 and b["headers"] == g["headers"]
    ),
    "mixed-fused-qkv": lambda g, b: (
        _where(b, f"{FULL0}.q_proj.weight_packed")
        and _where(b, f"{FULL0}.k_proj.weight")
        and f"{FULL0}.v_proj" in _q(b)["ignore"]
    ),
    "missing-shard": lambda g, b: set(b["index"]["weight_map"].values()) - set(b["headers"]),
    "unreferenced-shard": lambda g, b: "model-shard-00003.safetensors" in b["files"] and b["index"] == g["index"],
    "missing-scale": lambda g, b: (
        not _where(b, f"{MLP0}.down_proj.weight_scale")
        and f"{MLP0}.down_proj.weight_scale" not in b["index"]["weight_map"]
    ),
    "stale-total-size": lambda g, b: b["index"]["metadata"] != g["index"]["metadata"] and b["headers"] == g["headers"],
    "unindexed-tensor": lambda g, b: (
        b["headers"] == g["headers"] and len(b["index"]["weight_map"]) + 1 == len(g["index"]["weight_map"])
    ),
    "duplicate-tensor": lambda g, b: (
        sum(len(h) for h in b["headers"].values()) == sum(len(h) for h in g["headers"].values()) + 1
    ),
    "truncated-shard": lambda g, b: sum(b["files"].values()) == sum(g["files"].values()) - 4096,
    "visual-quantized": lambda g, b: (
        _where(b, "model.visual.blocks.0.mlp.linear_fc1.weight_packed")
        and "model.visual.blocks.0.mlp.linear_fc1" not in _q(b)["ignore"]
    ),
    "ignore-regex-misses-visual": lambda g, b: (
        "re:visual.*" in _q(b)["ignore"]
        and not any(n.startswith("model.visual") for n in _q(b)["ignore"])
        and b["headers"] == g["headers"]
    ),
    "stale-ignore-entry": lambda g, b: _q(b)["ignore"] == _q(g)["ignore"] + ["model.visual.merger.mlp.0"],
    "zero-point-symmetric": lambda g, b: _where(b, f"{MLP0}.gate_proj.weight_zero_point"),
    "wrong-weight-shape": lambda g, b: b["headers"] == g["headers"],  # only the value differs (checked below)
    "leftover-dense-weight": lambda g, b: (
        _where(b, f"{MLP0}.gate_proj.weight") and _where(b, f"{MLP0}.gate_proj.weight_packed")
    ),
    "invalid-config": lambda g, b: (
        _q(b)["config_groups"]["group_0"]["weights"]["strategy"] == "channel"
        and _q(b)["config_groups"]["group_0"]["weights"]["group_size"] == 128
    ),
    "no-quantization-config": lambda g, b: not _q(b) and b["sidecar"] is None,
    "stale-sidecar": lambda g, b: b["sidecar"] != _q(b) and _q(b) == _q(g),
    "mtp-declared-absent": lambda g, b: (
        EXTRA_FILE not in b["files"] and b["config"]["text_config"]["mtp_num_hidden_layers"] == 1
    ),
    "dense-dtype-cast": lambda g, b: b["headers"][_where(b, NORM0)][NORM0]["dtype"] == "F32",
}


def test_every_defect_has_an_expectation() -> None:
    assert EXPECT.keys() == DEFECTS.keys() and all(DEFECTS.values())


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_defect_builds_and_differs(tmp_path: Path, good_snapshots: dict[str, dict], defect: str) -> None:
    bad_dir = build_checkpoint(tmp_path / defect, "main", defect=defect)
    good_snap, bad = good_snapshots["main"], snapshot(bad_dir)
    assert bad != good_snap
    assert EXPECT[defect](good_snap, bad)
    if defect == "invalid-config":
        from compressed_tensors.quantization import QuantizationConfig
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            QuantizationConfig.model_validate(_q(bad))
    if defect == "wrong-weight-shape":
        name = f"{MLP0}.up_proj.weight_shape"
        value = tensor_value(bad_dir, str(_where(bad, name)), name)
        assert struct.unpack("<2q", value) == (TINY.hidden, TINY.intermediate)  # [in, out]


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_defects_build_for_gs128(tmp_path: Path, good_snapshots: dict[str, dict], defect: str) -> None:
    assert snapshot(build_checkpoint(tmp_path, "gs128", defect=defect)) != good_snapshots["gs128"]


# ------------------------------------------------------------------ full-size sparse generator


def test_sparse_full_size(tmp_path: Path) -> None:
    # tensor count, GB, ignore entries: checkpoint-format.md §3.1 and the model card
    expected: dict[Variant, tuple[int, float, int]] = {"main": (1711, 36.78, 359), "gs128": (1583, 38.72, 423)}
    for variant, (count, gb, n_ignore) in expected.items():
        folder = build_sparse_checkpoint(tmp_path / variant, variant)
        if variant == "main":
            main_map = json.loads((folder / INDEX_FILE).read_text())["weight_map"]
        s = checkpoint_stats(folder)
        index = json.loads((folder / INDEX_FILE).read_text())
        assert (s.tensors, len(index["weight_map"]), s.files) == (count, count, 9)
        assert round(s.apparent_bytes / 1e9, 2) == gb and round(s.tensor_bytes / 1e9, 2) == gb
        assert index["metadata"]["total_size"] == s.tensor_bytes
        assert s.disk_bytes < 50e6
        assert len(json.loads((folder / "config.json").read_text())["quantization_config"]["ignore"]) == n_ignore
    name = "model.language_model.layers.63.mlp.down_proj.weight_shape"
    value = tensor_value(tmp_path / "main", main_map[name], name)
    assert struct.unpack("<2q", value) == (FULL.hidden, FULL.intermediate)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sparse_tiny_matches_real_tiny_byte_for_byte(tmp_path: Path, good: dict[str, Path], variant: Variant) -> None:
    """Hand-written headers equal safetensors' own, and the metadata files are shared, not re-implemented."""
    sparse = build_sparse_checkpoint(tmp_path, variant, TINY, max_shard_bytes=tiny_shard_bytes(TINY, variant))
    real = good[variant]
    assert sorted(p.name for p in sparse.iterdir()) == sorted(p.name for p in real.iterdir())
    for path in real.iterdir():
        a, b = path.read_bytes(), (sparse / path.name).read_bytes()
        if path.suffix == ".safetensors":
            n = struct.unpack("<Q", a[:8])[0]
            assert (a[: 8 + n], len(a)) == (b[: 8 + n], len(b))
            for name in (k for k in headers(real)[path.name] if k.endswith("weight_shape")):
                assert tensor_value(real, path.name, name) == tensor_value(sparse, path.name, name)
        else:
            assert a == b, path.name


@pytest.mark.slow
def test_sparse_module_does_not_import_torch() -> None:
    code = "import sys, bench.sparse; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, timeout=60).returncode == 0
