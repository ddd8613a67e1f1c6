"""kld.json in the manifest: the card's figures come from it, and push puts it on the evaluated branch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from publish.commands.push import PushSettings, push
from publish.commands.render import render
from publish.errors import DumpError
from publish.hub.client import Hub
from publish.manifest.kldartifact import read_artifact
from publish.manifest.model import load_manifest

from .conftest import HUB_TOKEN
from .hubserver import HubServer

REPO = "Minachist/Qwen3.6-27B-INT8-AutoRound"
LINK = "[kld.json](kld.json)"
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def seed_artifact() -> dict[str, object]:
    """What `hubpub eval` would have written for the reference card's evaluation."""
    return {
        "version": 1, "hubpub_version": "0.1.0", "direction": "KL(reference || variant)", "unit": "nats",
        "percentiles": "linear",
        "config": {"method": "next-token", "approximation": "top-k-tail-bucket", "top_k": 1000,
                   "dataset": {"name": "wikitext-2-raw-v1", "split": "test", "text_sha256": None},
                   "sequence_length": 2048, "samples": 64},
        "metrics": {"median": 0.00062131, "p90": 0.0026074, "p99": 0.07, "mean": 0.0091849, "max": 3.2,
                    "mean_coverage": 0.9982401, "same_top1": 0.95, "positions": 131008},
        "reference": {"model": "Qwen/Qwen3.6-27B"}, "variant": {"model": "main"}, "tokenizer": {"name": "x"},
    }


def with_artifact(manifest: Path, keep_numbers: bool = False) -> Path:
    (manifest.parent / "kld.json").write_text(json.dumps(seed_artifact()))
    data = yaml.safe_load(manifest.read_text())
    kld = data["evaluation"]["kld"]
    if not keep_numbers:
        del kld["positions"], kld["metrics"]
    kld["artifact"] = "kld.json"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return manifest


def test_the_card_from_an_artifact_is_the_hand_written_card_plus_a_link(project: Path, tmp_path: Path) -> None:
    by_hand = render(load_manifest(project), out=tmp_path / "by-hand").cards[0].text
    from_artifact = render(load_manifest(with_artifact(project)), out=tmp_path / "artifact").cards[0].text
    assert LINK not in by_hand
    without_link = "\n".join(line for line in from_artifact.splitlines() if LINK not in line)
    assert " ".join(without_link.split()) == " ".join(by_hand.split())


def test_hand_written_numbers_that_agree_at_six_decimals_are_accepted(project: Path) -> None:
    result = render(load_manifest(with_artifact(project, keep_numbers=True)))
    assert "| **Median KLD** | 0.000621 |" in result.cards[0].text


def test_a_missing_artifact_names_the_file_and_what_to_do(project: Path) -> None:
    with_artifact(project)
    (project.parent / "kld.json").unlink()
    with pytest.raises(DumpError, match="KLD artifact not found") as caught:
        render(load_manifest(project))
    assert "hubpub eval run" in str(caught.value)


def test_an_artifact_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kld.json"
    path.write_text(json.dumps({**seed_artifact(), "version": 2}))
    with pytest.raises(DumpError, match="version 2 is not supported"):
        read_artifact(path)


def test_an_artifact_with_a_metric_that_is_not_a_number_names_it(tmp_path: Path) -> None:
    data = seed_artifact()
    data["metrics"] = {**data["metrics"], "p90": "0.0026"}  # type: ignore[dict-item]
    path = tmp_path / "kld.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DumpError, match=r"metrics.p90: expected a number, found '0.0026'"):
        read_artifact(path)


def test_push_uploads_the_artifact_to_the_evaluated_branch_only(weighed: Path, hub: HubServer) -> None:
    manifest = with_artifact(weighed)
    client = Hub(hub.url, HUB_TOKEN, sleep=lambda _: None)
    push(load_manifest(manifest), client, PushSettings(cache=Path(os.environ["HUBPUB_CACHE"])))
    assert hub.files(REPO, "main")["kld.json"] == (manifest.parent / "kld.json").read_bytes()
    assert LINK in hub.files(REPO, "main")["README.md"].decode()
    assert "kld.json" not in hub.files(REPO, "gs128")
