"""kld.json in the manifest: the card's figures come from it (version 1 or 2, one variant or several), `check`
catches a hand-edited number in either version, and push puts it on each evaluated branch."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from publish.commands.check import check
from publish.commands.push import PushSettings, push
from publish.commands.render import render
from publish.errors import DumpError, FactMismatch, ManifestError
from publish.hub.client import Hub
from publish.manifest.kldartifact import check_artifact, new_artifact, read_artifact
from publish.manifest.model import load_manifest

from .conftest import HUB_TOKEN
from .hubserver import HubServer

REPO = "Minachist/Qwen3.6-27B-INT8-AutoRound"
LINK = "[kld.json](kld.json)"
SEED = {"median": 0.00062131, "p90": 0.0026074, "p99": 0.07, "mean": 0.0091849, "max": 3.2,
        "mean_coverage": 0.9982401, "same_top1": 0.95, "positions": 131008}
CONFIG = {"method": "next-token", "approximation": "top-k-tail-bucket", "top_k": 1000,
          "dataset": {"name": "wikitext-2-raw-v1", "split": "test", "text_sha256": None},
          "sequence_length": 2048, "samples": 64}
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def seed_artifact() -> dict[str, Any]:
    """What `hubpub eval` version 1 would have written for the reference card's evaluation."""
    return {
        "version": 1, "hubpub_version": "0.1.0", "direction": "KL(reference || variant)", "unit": "nats",
        "percentiles": "linear", "config": CONFIG, "metrics": dict(SEED),
        "reference": {"model": "Qwen/Qwen3.6-27B"}, "variant": {"model": "main"}, "tokenizer": {"name": "x"},
    }


def spread(low: float, median: float, p90: float, p99: float, mean: float, high: float) -> dict[str, Any]:
    """A consistent spread: min ≤ percentiles ≤ max, min ≤ mean ≤ max."""
    return {"mean": mean, "se": abs(mean) / 100, "min": low, "max": high, "percentiles": {
        "p0.1": low, "p1": low, "p5": (low + median) / 2, "p10": (low + median) / 2, "p50": median, "p90": p90,
        "p95": (p90 + p99) / 2, "p99": p99, "p99.9": (p99 + high) / 2}}


def statistics(figures: dict[str, float]) -> dict[str, Any]:
    """A version 2 statistics object whose summary is `figures`."""
    positions = int(figures["positions"])
    kl = spread(0.0, figures["median"], figures["p90"], figures["p99"], figures["mean"], figures["max"])
    return {
        "positions": positions, "kl": kl, "kl_reverse": spread(0.0, 0.0007, 0.003, 0.08, 0.0095, 3.5),
        "mean_coverage": figures["mean_coverage"], "same_top1": {"rate": figures["same_top1"], "se": 0.0006},
        "top_k_agreement": {"1": figures["same_top1"], "2": 0.9, "3": 0.85, "4": 0.8, "5": 0.75},
        "kl_by_reference_top1": [
            {"from": 0.0, "to": 0.25, "positions": 1000, "mean_kl": 0.05},
            {"from": 0.25, "to": 0.5, "positions": 8, "mean_kl": 0.02},
            {"from": 0.5, "to": 0.75, "positions": 0, "mean_kl": None},
            {"from": 0.75, "to": 0.95, "positions": 30000, "mean_kl": 0.004},
            {"from": 0.95, "to": 1.0, "positions": positions - 31008, "mean_kl": 0.0001}],
        "token_positions": positions,
        "delta_p": {**spread(-0.9, -0.00001, 0.001, 0.02, -0.0002, 0.8), "rms": 0.031, "rms_se": 0.0002},
        "perplexity": {"reference": 7.1234, "reference_se": 0.05, "variant": 7.1456, "variant_se": 0.05,
                       "ratio": 7.1456 / 7.1234, "ln_ratio": 0.0031, "ln_ratio_se": 0.0002, "correlation": 0.998},
    }


def version2(**figures: dict[str, float]) -> dict[str, Any]:
    """A version 2 artifact with one entry per branch, sealed as `hubpub eval` seals it."""
    shared = {"hubpub_version": "0.2.0", "config": CONFIG, "reference": {"model": "Qwen/Qwen3.6-27B"},
              "tokenizer": {"name": "x"}}
    return new_artifact(shared, [{"branch": branch, "identity": {"model": branch}, "statistics": statistics(f)}
                                 for branch, f in figures.items()])


def with_artifact(manifest: Path, artifact: dict[str, Any] | None = None, keep_numbers: bool = False,
                  **kld: Any) -> Path:
    (manifest.parent / "kld.json").write_text(json.dumps(seed_artifact() if artifact is None else artifact))
    data = yaml.safe_load(manifest.read_text())
    block = data["evaluation"]["kld"]
    if not keep_numbers:
        del block["positions"], block["metrics"]
    block["artifact"] = "kld.json"
    block.update(kld)
    for name, value in kld.items():
        if value is None:
            del block[name]
    manifest.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return manifest


def card(manifest: Path, branch: str = "main") -> str:
    result = render(load_manifest(manifest), out=manifest.parent / "cards")
    return next(c.text for c in result.cards if c.branch == branch)


def e1(manifest: Path, branch: str = "main") -> list[Any]:
    report = check(load_manifest(manifest), branch)
    return [f for f in report.variants[0].findings if f.code == "E1"]


def test_the_card_from_a_version_1_artifact_is_the_hand_written_card_plus_a_link(project: Path,
                                                                                 tmp_path: Path) -> None:
    by_hand = render(load_manifest(project), out=tmp_path / "by-hand").cards[0].text
    from_artifact = card(with_artifact(project))
    assert LINK not in by_hand
    without_link = "\n".join(line for line in from_artifact.splitlines() if LINK not in line)
    assert " ".join(without_link.split()) == " ".join(by_hand.split())


def test_a_version_2_artifact_adds_all_statistics_to_the_same_card(project: Path, tmp_path: Path) -> None:
    by_hand = render(load_manifest(project), out=tmp_path / "by-hand").cards[0].text
    from_artifact = card(with_artifact(project, version2(main=SEED)))
    details = re.search(r"\n<details>\n.*?</details>\n", from_artifact, re.DOTALL)
    assert details is not None and "<summary>All statistics: Main branch</summary>" in details.group(0)
    assert "| KL(reference ‖ variant) | 0.009185 ± 0.000092 | 0.000000 |" in details.group(0)
    assert "| Perplexity, reference | 7.1234 ± 0.0500 |" in details.group(0)
    assert "| Top-K agreement, K = 1, 2, 3, 4, 5 | 95.00%, 90.00%, 85.00%, 80.00%, 75.00% |" in details.group(0)
    assert "| [0.95, 1] | 100,000 | 0.000100 |" in details.group(0)
    rest = from_artifact.replace(details.group(0), "\n")
    without_link = "\n".join(line for line in rest.splitlines() if LINK not in line)
    assert " ".join(without_link.split()) == " ".join(by_hand.split())


def test_hand_written_numbers_that_agree_at_six_decimals_are_accepted(project: Path) -> None:
    for artifact in (seed_artifact(), version2(main=SEED)):
        text = card(with_artifact(project, artifact, keep_numbers=True))
        assert "| **Median KLD** | 0.000621 |" in text


def test_two_evaluated_variants_are_compared_side_by_side(project: Path) -> None:
    gs128 = {**SEED, "median": 0.0004, "p90": 0.0019, "mean": 0.0071}
    manifest = with_artifact(project, version2(main=SEED, gs128=gs128), branch=None, branches=["main", "gs128"],
                             dataset_label=None)
    text = card(manifest, "gs128")
    assert "The Main and gs128 branches are used for the evaluation." in text
    assert "| Metric | Main | gs128 | Description |" in text
    assert "| **Median KLD** | 0.000621 | 0.000400 | Median divergence |" in text
    assert "| KLD median | 0.000621 | 0.000400 |" in text  # the comparison table
    assert "| KLD mean | 0.009185 | 0.007100 |" in text
    assert text.count("<summary>All statistics:") == 2
    assert "| **Evaluation Dataset** | wikitext-2-raw-v1 (test) |" in text


def test_one_evaluated_variant_adds_no_comparison_rows(project: Path) -> None:
    text = card(with_artifact(project, version2(main=SEED)))
    assert "| KLD median |" not in text


def test_a_branch_without_a_capitalised_label_gets_an_article(project: Path) -> None:
    manifest = with_artifact(project, version2(gs128=SEED), branch="gs128")
    assert "\nThe gs128 branch is used for the evaluation.\n" in card(manifest)


def test_branch_and_artifact_alone_take_the_configuration_from_the_artifact(project: Path) -> None:
    gs128 = {**SEED, "positions": 65472}
    config = {**CONFIG, "method": "second-half", "sequence_length": 2048, "samples": 64}
    data = yaml.safe_load(project.read_text())
    data["evaluation"] = {"kld": {"branch": "gs128", "artifact": "kld.json"}}
    project.write_text(yaml.safe_dump(data, sort_keys=False))
    shared = {"hubpub_version": "0.2.0", "config": config, "reference": {}, "tokenizer": {}}
    (project.parent / "kld.json").write_text(json.dumps(new_artifact(
        shared, [{"branch": "gs128", "identity": {}, "statistics": statistics(gs128)}])))
    text = card(project)
    assert "| **Num Samples** | 64 |" in text and "| **Total Positions** | 65,472 |" in text
    assert "over the second half of each window" in text
    assert "| **Top-K Reference** | 1000 |" in text
    assert not check_artifact(load_manifest(project))


def test_a_setting_given_in_both_places_must_agree(project: Path) -> None:
    manifest = with_artifact(project, version2(main=SEED), sequence_length=4096)
    found = e1(manifest)
    assert [f.message for f in found] == ["sequence_length: manifest says 4096, kld.json says 2048"]
    assert "write what kld.json says in evaluation.kld.sequence_length" in found[0].hint
    with pytest.raises(FactMismatch, match="sequence_length"):
        render(load_manifest(manifest))


def test_a_hand_edited_version_2_number_is_caught(project: Path) -> None:
    artifact = version2(main=SEED, gs128=SEED)
    artifact["variants"][1]["statistics"]["kl"]["mean"] = 0.0081  # still in order: only the seal can tell
    manifest = with_artifact(project, artifact, branch=None, branches="all")
    assert e1(manifest, "main") == []
    found = e1(manifest, "gs128")
    assert len(found) == 1 and "branch 'gs128': the figures do not match their sha256 seal" in found[0].message
    assert "never edit kld.json by hand" in found[0].hint
    with pytest.raises(FactMismatch, match="sha256 seal"):
        render(load_manifest(manifest))


def test_a_hand_edited_version_1_number_is_caught_when_it_contradicts_the_others(project: Path) -> None:
    artifact = seed_artifact()
    artifact["metrics"]["p90"] = 0.0001  # below the median
    found = e1(with_artifact(project, artifact))
    assert [f.message for f in found] == [
        "kld.json: median 0.00062131 is above p90 0.0001: the file was edited by hand"]


def test_positions_the_configuration_cannot_score_are_caught(project: Path) -> None:
    artifact = version2(main={**SEED, "positions": 131072})
    found = e1(with_artifact(project, artifact))
    assert any("positions 131,072 is not the 131,008 the configuration scores" in f.message for f in found)


def test_an_evaluated_branch_missing_from_the_artifact_is_caught(project: Path) -> None:
    manifest = with_artifact(project, version2(main=SEED), branch=None, branches=["main", "gs128"])
    assert [f.message for f in e1(manifest, "gs128")] == [
        "kld.json has no figures for branch 'gs128' (it has main)"]
    assert e1(manifest, "main") == []


def test_a_version_1_artifact_cannot_stand_for_two_branches(project: Path) -> None:
    manifest = with_artifact(project, branch=None, branches="all")
    assert any("version 1, which holds one variant" in f.message for f in e1(manifest))


def test_a_missing_artifact_names_the_file_and_what_to_do(project: Path) -> None:
    with_artifact(project)
    (project.parent / "kld.json").unlink()
    with pytest.raises(DumpError, match="KLD artifact not found") as caught:
        render(load_manifest(project))
    assert "hubpub eval run" in str(caught.value)


def test_an_artifact_of_another_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kld.json"
    path.write_text(json.dumps({**seed_artifact(), "version": 3}))
    with pytest.raises(DumpError, match="version 3 is not supported"):
        read_artifact(path)


def test_an_artifact_with_a_metric_that_is_not_a_number_names_it(tmp_path: Path) -> None:
    data = seed_artifact()
    data["metrics"] = {**data["metrics"], "p90": "0.0026"}
    path = tmp_path / "kld.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DumpError, match=r"metrics.p90: expected a number, found '0.0026'"):
        read_artifact(path)
    broken = version2(main=SEED)
    del broken["variants"][0]["statistics"]["perplexity"]["ratio"]
    path.write_text(json.dumps(broken))
    with pytest.raises(DumpError, match=r"variants\[0\].statistics.perplexity.ratio: missing key"):
        read_artifact(path)


@pytest.mark.parametrize(("edit", "message"), [
    ({"branches": ["main"]}, "give exactly one of `branch: NAME`"),
    ({"branch": None, "branches": ["main", "main"]}, "branch 'main' is listed twice"),
    ({"branch": None, "branches": ["main", "gs64"]}, "'gs64', which no variant defines"),
    ({"branch": None, "branches": "all", "metrics": {"median": 0.1, "p90": 0.2, "mean": 0.1}},
     "hand-written metrics describe one variant"),
    ({"results": []}, "results are read from the kld.json artifact"),
])
def test_the_manifest_names_evaluated_branches_clearly(project: Path, edit: dict[str, Any], message: str) -> None:
    with_artifact(project, version2(main=SEED), **edit)
    with pytest.raises(ManifestError, match=re.escape(message)):
        load_manifest(project)


def test_push_uploads_the_artifact_to_every_evaluated_branch(weighed: Path, hub: HubServer) -> None:
    manifest = with_artifact(weighed, version2(main=SEED, gs128=SEED), branch=None, branches=["gs128"])
    client = Hub(hub.url, HUB_TOKEN, sleep=lambda _: None)
    push(load_manifest(manifest), client, PushSettings(cache=Path(os.environ["HUBPUB_CACHE"])))
    assert hub.files(REPO, "gs128")["kld.json"] == (manifest.parent / "kld.json").read_bytes()
    assert LINK in hub.files(REPO, "gs128")["README.md"].decode()
    assert "kld.json" not in hub.files(REPO, "main")
