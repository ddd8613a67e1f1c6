"""Shared fixtures. Tests never reach beyond 127.0.0.1 and never write into the checkout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MANIFEST = ROOT / "branches.yaml"
REFERENCE_CARD = Path(__file__).parent / "data" / "reference-card-Qwen3.6-27B-INT8-AutoRound.md"


@pytest.fixture(autouse=True)
def _isolated_hub_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's token, cache or endpoint, or phones home."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    for name in ("HF_TOKEN", "HF_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_UPDATE_CHECK", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("COMPRESSED_TENSORS_LOG_DISABLED", "1")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped manifest and its shared files in a temporary folder; returns the manifest path."""
    for name in ("branches.yaml", "quantize.py", "log.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path / "branches.yaml"
