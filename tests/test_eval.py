"""`hubpub eval`: dumps from transformers and from an OpenAI-compatible server, scores, kld.json, and the card.

The models are tiny (tests/kldmodels.py) and built once per session; the text is a small local file.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from publish.commands.check import check
from publish.commands.eval import TextSource, dump, score
from publish.commands.render import render
from publish.errors import DumpError, EvalError, FactMismatch, ManifestError
from publish.eval.dumps import Dump, partial_folder
from publish.manifest.model import KLD_METHODS, load_manifest

from . import kldmodels
from .conftest import ROOT, hubpub
from .kldserver import CompletionsServer

LENGTH, SAMPLES = 32, 4
FULL = kldmodels.VOCAB  # K = vocabulary: the dumps hold full distributions
NO_WAIT = {"sleep": lambda seconds: None}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> kldmodels.TinyModels:
    return kldmodels.build(tmp_path_factory.mktemp("kld-models"))


@pytest.fixture(scope="session")
def dumps(tiny: kldmodels.TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Transformers dumps of both models over the same windows, with K = vocabulary and K = 8."""
    folder = tmp_path_factory.mktemp("kld-dumps")
    out = {}
    for k in (FULL, 8):
        ref = dump(str(tiny.reference), folder / f"ref-{k}.safetensors", text=TextSource(file=tiny.text),
                   sequence_length=LENGTH, samples=SAMPLES, top_k=k)
        var = dump(str(tiny.variant), folder / f"var-{k}.safetensors", windows_from=ref.path, top_k=k)
        out[f"ref-{k}"], out[f"var-{k}"] = ref.path, var.path
    return out


@pytest.fixture
def server(tiny: kldmodels.TinyModels) -> Iterator[CompletionsServer]:
    running = CompletionsServer(tiny.reference).start()
    yield running
    running.stop()


def exact_kl(tiny: kldmodels.TinyModels, windows: np.ndarray) -> np.ndarray:
    """KL(reference ‖ variant) per next-token position from the full logits, computed with torch directly."""
    import torch
    from transformers import AutoModelForCausalLM

    logprobs = []
    for folder in (tiny.reference, tiny.variant):
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor(windows)).logits.float()
        logprobs.append(torch.log_softmax(logits[:, :-1], dim=-1))
    ref, var = logprobs
    return torch.nn.functional.kl_div(var, ref, log_target=True, reduction="none").sum(-1).flatten().numpy()


# --- dumps and scores --------------------------------------------------------------------------------------------


def test_a_dump_records_what_it_is_of(dumps: dict[str, Path], tiny: kldmodels.TinyModels) -> None:
    opened = Dump(dumps["ref-8"])
    assert opened.info.model == str(tiny.reference)
    assert (opened.info.dataset, opened.info.sequence_length, opened.info.samples, opened.top_k) == (
        "tiny.txt", LENGTH, SAMPLES, 8)
    assert opened.info.weights_sha256 and opened.info.tokenizer_sha256
    assert not opened.has_full and Dump(dumps[f"ref-{FULL}"]).has_full


def test_top_k_of_the_whole_vocabulary_equals_the_exact_kl(dumps: dict[str, Path], tiny: kldmodels.TinyModels) -> None:
    exact = exact_kl(tiny, Dump(dumps[f"ref-{FULL}"]).token_ids())
    for approximation in ("top-k-tail-bucket", "full-vocab"):
        metrics = score(dumps[f"ref-{FULL}"], dumps[f"var-{FULL}"], "next-token", approximation)["metrics"]
        assert metrics["positions"] == exact.size == SAMPLES * (LENGTH - 1)
        assert metrics["mean"] == pytest.approx(float(exact.mean()), rel=1e-5)
        assert metrics["median"] == pytest.approx(float(np.median(exact)), rel=1e-5)
        assert metrics["max"] == pytest.approx(float(exact.max()), rel=1e-5)
        assert metrics["mean"] > 0  # the quantized variant does differ


def test_identical_models_score_zero(dumps: dict[str, Path]) -> None:
    metrics = score(dumps["ref-8"], dumps["ref-8"], "next-token", "top-k-tail-bucket")["metrics"]
    assert (metrics["mean"], metrics["max"], metrics["same_top1"]) == (0.0, 0.0, 1.0)


@pytest.mark.parametrize("method", ["next-token", "second-half", "all-logits"])
def test_positions_follow_the_declared_method(dumps: dict[str, Path], method: str) -> None:
    metrics = score(dumps["ref-8"], dumps["var-8"], method, "top-k-renormalized")["metrics"]
    assert metrics["positions"] == SAMPLES * KLD_METHODS[method][1](LENGTH)
    assert metrics["median"] >= 0 and 0 < metrics["mean_coverage"] < 1


def test_dumps_of_different_windows_are_refused(dumps: dict[str, Path], tiny: kldmodels.TinyModels,
                                                tmp_path: Path) -> None:
    other = dump(str(tiny.variant), tmp_path / "other.safetensors", text=TextSource(file=tiny.text),
                 sequence_length=LENGTH // 2, samples=SAMPLES, top_k=8)
    with pytest.raises(DumpError, match="different windows"):
        score(dumps["ref-8"], other.path, "next-token", "top-k-tail-bucket")


def test_full_vocab_needs_full_dumps(dumps: dict[str, Path]) -> None:
    with pytest.raises(DumpError, match="full distributions"):
        score(dumps["ref-8"], dumps["var-8"], "next-token", "full-vocab")


def test_too_short_a_text_says_what_to_do(tiny: kldmodels.TinyModels, tmp_path: Path) -> None:
    with pytest.raises(DumpError, match="fewer than the 1000 asked for") as caught:
        dump(str(tiny.reference), tmp_path / "x.safetensors", text=TextSource(file=tiny.text),
             sequence_length=LENGTH, samples=1000, top_k=8)
    assert "lower --samples" in str(caught.value)


def test_the_datasets_path_resolves_wikitext_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    from publish.eval.backends import dataset_text

    calls: list[tuple[str, str | None, str]] = []

    class Rows(SimpleNamespace):
        def __getitem__(self, key: str) -> list[str]:
            return ["first", "second"]

    def load_dataset(path: str, config: str | None, split: str) -> Rows:
        calls.append((path, config, split))
        return Rows(column_names=["text"])

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load_dataset))
    assert dataset_text("wikitext-2-raw-v1", "test") == "first\n\nsecond"
    assert dataset_text("wikitext", "validation") == "first\n\nsecond"
    assert calls == [("Salesforce/wikitext", "wikitext-2-raw-v1", "test"),
                     ("Salesforce/wikitext", "wikitext-2-raw-v1", "validation")]
    # Either spelling is recorded the way the manifest names the dataset.
    assert TextSource(dataset="wikitext", split="test").read()[1:] == ("wikitext-2-raw-v1", "test")


# --- the server backend ------------------------------------------------------------------------------------------


def test_server_and_transformers_give_the_same_metrics(dumps: dict[str, Path], tiny: kldmodels.TinyModels,
                                                       server: CompletionsServer, tmp_path: Path) -> None:
    for k in (FULL, 8):
        served = dump(str(tiny.reference), tmp_path / f"served-{k}.safetensors", windows_from=dumps[f"ref-{k}"],
                      top_k=k, server=server.url, served_model="tiny", **NO_WAIT)
        for method in ("next-token", "all-logits"):
            via_server = score(served.path, dumps[f"var-{k}"], method, "top-k-tail-bucket")["metrics"]
            local = score(dumps[f"ref-{k}"], dumps[f"var-{k}"], method, "top-k-tail-bucket")["metrics"]
            for name in ("median", "p90", "mean", "max", "mean_coverage"):
                assert via_server[name] == pytest.approx(local[name], rel=1e-4, abs=1e-7), (k, method, name)
    assert server.requests == 2 * SAMPLES


def test_an_interrupted_server_dump_resumes_without_redoing_windows(
    dumps: dict[str, Path], tiny: kldmodels.TinyModels, server: CompletionsServer, tmp_path: Path
) -> None:
    out = tmp_path / "ref.safetensors"
    server.fail_after = 2  # the server breaks after two windows and stays broken
    with pytest.raises(EvalError, match=r"kept failing .*\n.* of 4 windows are saved"):
        dump(str(tiny.reference), out, windows_from=dumps["ref-8"], top_k=8, server=server.url,
             served_model="tiny", workers=2, **NO_WAIT)
    saved = len(list(partial_folder(out).glob("window-*.safetensors")))
    assert saved == server.answered == 2 and not out.exists()
    server.fail_after, before = None, server.requests
    dump(str(tiny.reference), out, windows_from=dumps["ref-8"], top_k=8, server=server.url, served_model="tiny",
         workers=2, **NO_WAIT)
    assert server.requests - before == SAMPLES - saved  # only the unfinished windows were asked for
    assert server.answered == SAMPLES
    assert score(out, dumps["ref-8"], "next-token", "top-k-tail-bucket")["metrics"]["max"] < 1e-6


def test_transient_server_failures_are_retried(dumps: dict[str, Path], tiny: kldmodels.TinyModels,
                                               server: CompletionsServer, tmp_path: Path) -> None:
    server.transient = 3
    waits: list[float] = []
    dump(str(tiny.reference), tmp_path / "ref.safetensors", windows_from=dumps["ref-8"], top_k=8,
         server=server.url, served_model="tiny", workers=1, sleep=waits.append)
    assert server.requests == SAMPLES + 3 and len(waits) == 3


def test_a_refused_request_is_not_retried(dumps: dict[str, Path], tiny: kldmodels.TinyModels,
                                          server: CompletionsServer, tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="HTTP 404"):
        dump(str(tiny.reference), tmp_path / "ref.safetensors", windows_from=dumps["ref-8"], top_k=8,
             server=server.url, served_model="not-served", workers=1, **NO_WAIT)
    assert server.requests == 1


# --- the manifest, the CLI, the card and check -------------------------------------------------------------------


@pytest.fixture
def evaluated(project: Path, tiny: kldmodels.TinyModels) -> Path:
    """The shipped manifest, its evaluation.kld pointed at the tiny text and a kld.json artifact, numbers removed."""
    (project.parent / "tiny.txt").write_text(tiny.text.read_text())
    data = yaml.safe_load(project.read_text())
    kld = data["evaluation"]["kld"]
    for key in ("positions", "metrics"):
        del kld[key]
    kld.update(dataset={"name": "tiny.txt"}, sequence_length=LENGTH, samples=SAMPLES, reference_top_k=8,
               artifact="kld.json")
    project.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return project


def test_eval_run_writes_kld_json_and_the_card_shows_it(evaluated: Path, tiny: kldmodels.TinyModels) -> None:
    done = hubpub("eval", "run", "--manifest", str(evaluated), "--reference", str(tiny.reference),
               "--variant", str(tiny.variant), cwd=evaluated.parent)
    assert done.returncode == 0, done.stderr
    assert "reference: 4/4 windows" in done.stderr
    artifact = json.loads((evaluated.parent / "kld.json").read_text())
    assert artifact["version"] == 1
    assert artifact["config"] == {"method": "next-token", "approximation": "top-k-tail-bucket", "top_k": 8,
                                  "dataset": artifact["config"]["dataset"], "sequence_length": LENGTH,
                                  "samples": SAMPLES}
    assert artifact["config"]["dataset"]["name"] == "tiny.txt"
    assert artifact["metrics"]["positions"] == SAMPLES * (LENGTH - 1)
    assert len(artifact["reference"]["dump_sha256"]) == len(artifact["variant"]["weights_sha256"]) == 64

    card = render(load_manifest(evaluated)).cards[0].text
    metrics = artifact["metrics"]
    assert f"| **Median KLD** | {metrics['median']:.6f} |" in card
    assert f"| **Mean Coverage** | {metrics['mean_coverage']:.6f} |" in card
    assert f"| **Total Positions** | {metrics['positions']:,} |" in card
    assert "[kld.json](kld.json)" in card
    assert all(f.code != "E1" for f in check(load_manifest(evaluated)).variants[0].findings)

    # A hand-edited number that disagrees with the artifact: check reports E1 and render refuses.
    data = yaml.safe_load(evaluated.read_text())
    data["evaluation"]["kld"]["metrics"] = {"median": round(metrics["median"], 6) + 1e-6,
                                            "p90": round(metrics["p90"], 6), "mean": round(metrics["mean"], 6)}
    evaluated.write_text(yaml.safe_dump(data, sort_keys=False))
    findings = [f for f in check(load_manifest(evaluated)).variants[0].findings if f.code == "E1"]
    assert len(findings) == 1 and "metrics.median" in findings[0].message
    with pytest.raises(FactMismatch, match="metrics.median"):
        render(load_manifest(evaluated))
    checked = hubpub("check", "--manifest", str(evaluated), cwd=evaluated.parent)
    assert checked.returncode == 1 and "E1" in checked.stdout


def test_check_catches_an_artifact_measured_on_other_weights(evaluated: Path, tiny: kldmodels.TinyModels) -> None:
    from publish.manifest.kldartifact import check_artifact

    done = hubpub("eval", "run", "--manifest", str(evaluated), "--reference", str(tiny.reference), "--variant",
                  str(tiny.variant), cwd=evaluated.parent)
    assert done.returncode == 0, done.stderr
    original = evaluated.read_text()
    for folder, problems in ((tiny.variant, 0), (tiny.reference, 1)):
        evaluated.write_text(re.sub(r"path: .*Qwen3.6-27B-INT8-AutoRound-main", f"path: {folder}", original))
        found = check_artifact(load_manifest(evaluated))
        assert len(found) == problems and all("measured on other weights" in p for p in found)
    with pytest.raises(FactMismatch, match="measured on other weights"):
        render(load_manifest(evaluated))


def test_check_catches_a_configuration_the_artifact_was_not_made_with(evaluated: Path, dumps: dict[str, Path]) -> None:
    score(dumps["ref-8"], dumps["var-8"], "next-token", "top-k-tail-bucket", evaluated.parent / "kld.json")
    evaluated.write_text(evaluated.read_text().replace(f"samples: {SAMPLES}", "samples: 64"))
    findings = [f for f in check(load_manifest(evaluated)).variants[0].findings if f.code == "E1"]
    assert [f.message for f in findings] == ["samples: manifest says 64, kld.json says 4"]


def test_eval_score_through_the_cli(dumps: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kld.json"
    done = hubpub("eval", "score", str(dumps["ref-8"]), str(dumps["var-8"]), "--method", "second-half",
                  "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"positions {SAMPLES * (LENGTH // 2 - 1)}" in done.stdout
    assert json.loads(out.read_text())["config"]["method"] == "second-half"


def test_eval_dump_through_the_cli_and_again(tiny: kldmodels.TinyModels, tmp_path: Path) -> None:
    args = ("eval", "dump", "--model", str(tiny.reference), "--text", str(tiny.text), "--sequence-length",
            str(LENGTH), "--samples", "2", "--top-k", "8", "--out", str(tmp_path / "ref.safetensors"))
    first = hubpub(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "ref.safetensors: 2/2 windows" in first.stderr and "written, 2 windows × 32 tokens, top-8" in first.stdout
    again = hubpub(*args, cwd=tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout and "windows" not in again.stderr


def test_eval_with_bad_input_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = hubpub("eval", "score", str(tmp_path / "missing.safetensors"), str(tmp_path / "b.safetensors"),
                  cwd=tmp_path)
    assert done.returncode == 2
    assert "dump not found" in done.stderr and "Traceback" not in done.stderr


def test_a_manifest_without_numbers_needs_an_artifact(project: Path) -> None:
    data = yaml.safe_load(project.read_text())
    del data["evaluation"]["kld"]["metrics"]
    project.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ManifestError, match="metrics is required unless `artifact:`"):
        load_manifest(project)


def test_render_with_an_artifact_imports_no_numerics(evaluated: Path, dumps: dict[str, Path], tmp_path: Path) -> None:
    import subprocess

    score(dumps["ref-8"], dumps["var-8"], "next-token", "top-k-tail-bucket", evaluated.parent / "kld.json")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "publish.cli", "render", "--manifest",
                           str(evaluated), "--out", str(tmp_path / "cards")], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "publish" in imported
    assert not imported & {"numpy", "torch", "transformers", "datasets", "safetensors"}
