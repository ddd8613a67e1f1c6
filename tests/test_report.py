"""report.py: a report recorded by `hubpub check` is reused by render and push only while nothing it depends on
changed (the hubpub version, the variant's manifest entry, every file's size, mtime and inode)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from publish.checkpoint.report import Report, examine
from publish.checkpoint.reportcache import ReportCache
from publish.commands.check import check
from publish.manifest.model import Manifest, load_manifest


def reused(manifest: Manifest, cache: ReportCache) -> Report:
    """What push and render do: examine main, taking a recorded report when nothing changed."""
    return examine(manifest, manifest.select("main"), cache=cache, reuse=True)


def test_a_recorded_report_is_reused_only_while_nothing_changed(
    weighed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publish.checkpoint import read as checkpoint_module

    cache = ReportCache(tmp_path / "checks.json")
    first = check(load_manifest(weighed), "main", cache=cache)
    calls: list[Path] = []
    real = checkpoint_module.read_checkpoint
    monkeypatch.setattr(checkpoint_module, "read_checkpoint", lambda folder, *rest: calls.append(folder) or real(folder, *rest))

    again = reused(load_manifest(weighed), ReportCache(tmp_path / "checks.json"))
    assert again == first and calls == []  # read back from disk, nothing inspected

    changed = load_manifest(weighed).variant("main").model_copy(update={"size_gb": 1.0})
    manifest = load_manifest(weighed).model_copy(update={"variants": (changed,)})
    assert not reused(manifest, cache).ok and len(calls) == 1  # the manifest changed

    folder = load_manifest(weighed).variant_path(load_manifest(weighed).variant("main"))
    config = folder / "config.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    try:
        reused(load_manifest(weighed), cache)
        assert len(calls) == 2  # a file changed
    finally:
        os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_check_without_reuse_always_inspects(weighed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publish.checkpoint import read as checkpoint_module

    cache = ReportCache(tmp_path / "checks.json")
    check(load_manifest(weighed), "gs128", cache=cache)
    calls: list[Path] = []
    real = checkpoint_module.read_checkpoint
    monkeypatch.setattr(checkpoint_module, "read_checkpoint", lambda folder, *rest: calls.append(folder) or real(folder, *rest))
    check(load_manifest(weighed), "gs128", cache=cache)
    assert len(calls) == 1
