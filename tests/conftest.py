"""Shared fixtures. Tests never reach beyond 127.0.0.1 and never write into the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.hubserver import HubServer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MANIFEST = ROOT / "branches.yaml"
# The local Hub server's token.
# Built from parts so that no token-shaped string is committed; at run time it has a real token's shape,
# so the scrubbing is exercised too.
HUB_TOKEN = "hf_" + "hubserverTestToken" + "0123456789abcdef"
REFERENCE_CARD = Path(__file__).parent / "data" / "reference-card-Qwen3.6-27B-INT8-AutoRound.md"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests (each starts processes that import torch) go first, so that with several workers
    (`-n auto --dist worksteal`) none of them is left to run alone at the end; the order is otherwise kept."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def hubpub(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in-process through click's CliRunner (the code path `hubpub` takes, without paying an
    interpreter and a torch import per call), in `cwd`, with `env` as the whole environment when given."""
    from click.testing import CliRunner

    from publish.cli.main import main

    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {name: None for name in os.environ if name not in env}
        overrides.update(env)
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), env=overrides, catch_exceptions=False)
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["hubpub", *args], result.exit_code, result.stdout, result.stderr)


def hubpub_subprocess(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI end to end in a subprocess (`python -m publish.cli`), capturing its output."""
    return subprocess.run([sys.executable, "-m", "publish.cli", *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


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
    monkeypatch.setenv("HUBPUB_CACHE", str(home / "hubpub-hashes.json"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped manifest and its shared files in a temporary folder; returns the manifest path."""
    for name in ("branches.yaml", "quantize.py", "log.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path / "branches.yaml"


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny but structurally real checkpoints of both variants, built once per session. Do not modify them."""
    from .fixtures.checkpoints import build_pair

    return build_pair(tmp_path_factory.mktemp("checkpoints"))


def point_manifest(manifest: Path, folders: dict[str, Path]) -> Path:
    """Point the manifest's variants at checkpoint folders, with the size the card would round them to."""
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    for variant in data["variants"]:
        folder = folders.get(variant["branch"])
        if folder is not None:
            variant["path"] = str(folder)
            size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            variant["size_gb"] = float(f"{size / 1e9:.3g}")
    manifest.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return manifest


@pytest.fixture
def weighed(project: Path, checkpoints: dict[str, Path]) -> Path:
    """The shipped manifest pointed at the tiny checkpoints; returns the manifest path."""
    return point_manifest(project, checkpoints)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A running server plus a client environment pointed away from the developer's cache and from Xet."""
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    # huggingface_hub reads these when it is imported, which test collection may already have done, so the
    # environment alone is not enough: is_xet_available() and the cache lookups read the constants on each call.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    server = HubServer(tmp_path / "hub", token=HUB_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's backoff waits, recorded instead of slept (its first retry waits 1 s)."""
    from huggingface_hub.utils import _http

    recorded: list[float] = []
    monkeypatch.setattr(_http, "time", SimpleNamespace(sleep=recorded.append))
    return recorded
