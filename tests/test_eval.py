"""`hubpub eval`: dumps from transformers and from an OpenAI-compatible server, every statistic against an
independent key (tests/kldkey.py) computed from the models' full distributions, and `eval run` over two variants.

The models are tiny (tests/kldmodels.py) and built once per session; the text is a small local file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from publish.cli.evaloptions import DumpProgress
from publish.commands.check import check
from publish.commands.eval import DumpSettings, Execution, ModelSource, RunSettings, TextSource, dump, run, score
from publish.commands.render import render
from publish.errors import EvalError, FactMismatch
from publish.eval.dumps import Dump, partial_folder
from publish.manifest.kldartifact import check_artifact
from publish.manifest.model import load_manifest

from . import kldkey, kldmodels
from .conftest import ROOT, hubpub
from .kldserver import CompletionsServer

LENGTH, SAMPLES = 32, 4
FULL = kldmodels.VOCAB  # K = vocabulary: the dumps hold full distributions
ROLES = ("reference", "variant", "variant4")


def settings(k: int, workers: int = 1, sleep: Any = lambda seconds: None) -> DumpSettings:
    return DumpSettings(sequence_length=LENGTH, samples=SAMPLES, top_k=k,
                        execution=Execution(workers=workers, sleep=sleep))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> kldmodels.TinyModels:
    return kldmodels.build(tmp_path_factory.mktemp("kld-models"))


@pytest.fixture(scope="session")
def dumps(tiny: kldmodels.TinyModels, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Transformers dumps of the three models over the same windows, with K = vocabulary and K = 8."""
    folder = tmp_path_factory.mktemp("kld-dumps")
    out = {}
    for k in (FULL, 8):
        ref = dump(ModelSource(str(tiny.reference)), folder / f"reference-{k}.safetensors",
                   text=TextSource(file=tiny.text), settings=settings(k))
        out[f"reference-{k}"] = ref.path
        for role in ROLES[1:]:
            out[f"{role}-{k}"] = dump(ModelSource(str(getattr(tiny, role))), folder / f"{role}-{k}.safetensors",
                                      windows_from=ref.path, settings=settings(k)).path
    return out


@pytest.fixture(scope="session")
def exact(tiny: kldmodels.TinyModels, dumps: dict[str, Path]) -> dict[str, Any]:
    """Each model's full log-probabilities over the dumps' windows, computed with torch directly (not through
    hubpub) at the precision the model produces them (float32), and the windows' tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    windows = Dump(dumps[f"reference-{FULL}"]).token_ids()
    out: dict[str, Any] = {"tokens": windows.tolist()}
    for role in ROLES:
        model = AutoModelForCausalLM.from_pretrained(getattr(tiny, role)).eval()
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor(windows)).logits.float()
        out[role] = torch.log_softmax(logits, dim=-1).double().tolist()
    return out


def key(exact: dict[str, Any], variant: str, method: str, k: int) -> dict[str, Any]:
    return kldkey.key(exact["reference"], exact[variant], exact["tokens"], method, k)


def assert_key(found: dict[str, Any], expected: dict[str, Any]) -> None:
    # The same float32 log-probabilities on both sides; the statistics differ only by float64 summation order.
    kldkey.assert_matches(found, expected, rel=1e-7, abs_=1e-12)


@pytest.fixture
def servers(tiny: kldmodels.TinyModels) -> Iterator[dict[str, CompletionsServer]]:
    running = {role: CompletionsServer(getattr(tiny, role), served_model=role).start() for role in ROLES[:2]}
    yield running
    for server in running.values():
        server.stop()


def statistics(artifact: dict[str, Any], branch: str = "variant") -> dict[str, Any]:
    return next(e["statistics"] for e in artifact["variants"] if e["branch"] == branch)


# --- dumps -------------------------------------------------------------------------------------------------------


def test_a_dump_records_what_it_is_of(dumps: dict[str, Path], tiny: kldmodels.TinyModels) -> None:
    opened = Dump(dumps["reference-8"])
    assert opened.info.model == str(tiny.reference)
    assert (opened.info.dataset, opened.info.sequence_length, opened.info.samples, opened.top_k) == (
        "tiny.txt", LENGTH, SAMPLES, 8)
    assert opened.info.weights_sha256 and opened.info.tokenizer_sha256
    assert not opened.has_full and Dump(dumps[f"reference-{FULL}"]).has_full


@pytest.mark.parametrize("k", [FULL, 8])
def test_a_dump_holds_the_correct_tokens_log_probability(dumps: dict[str, Path], exact: dict[str, Any],
                                                         k: int) -> None:
    target = Dump(dumps[f"variant-{k}"]).rows("target_logprobs", slice(0, SAMPLES), slice(0, LENGTH))
    target = target.reshape(SAMPLES, LENGTH)
    tokens = np.array(exact["tokens"])
    full = np.array(exact["variant"])
    wanted = np.take_along_axis(full[:, :-1], tokens[:, 1:, None], axis=2)[..., 0]
    assert target[:, :-1] == pytest.approx(wanted, rel=1e-5)
    assert np.isnan(target[:, -1]).all()  # the last row predicts a token the window does not have


# --- every statistic against the key -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["next-token", "second-half", "all-logits"])
@pytest.mark.parametrize("approximation", ["full-vocab", "top-k-tail-bucket"])
def test_transformers_statistics_equal_the_key(dumps: dict[str, Path], exact: dict[str, Any], method: str,
                                               approximation: str) -> None:
    variants = {role: dumps[f"{role}-{FULL}"] for role in ROLES[1:]}
    artifact = score(dumps[f"reference-{FULL}"], variants, method, approximation)
    for role in variants:
        assert_key(statistics(artifact, role), key(exact, role, method, FULL))
    assert statistics(artifact, "variant4")["kl"]["mean"] > statistics(artifact, "variant")["kl"]["mean"] > 0


def test_transformers_top_k_statistics_equal_the_key(dumps: dict[str, Path], exact: dict[str, Any]) -> None:
    artifact = score(dumps["reference-8"], {"variant": dumps["variant-8"]}, "next-token", "top-k-tail-bucket")
    assert_key(statistics(artifact), key(exact, "variant", "next-token", 8))


@pytest.mark.parametrize("k", [FULL, 8])
def test_server_statistics_equal_the_key(dumps: dict[str, Path], exact: dict[str, Any],
                                         servers: dict[str, CompletionsServer], tiny: kldmodels.TinyModels,
                                         tmp_path: Path, k: int) -> None:
    served = {role: dump(ModelSource(str(getattr(tiny, role)), server=server.url, served_model=role),
                         tmp_path / f"{role}.safetensors", windows_from=dumps[f"reference-{k}"], settings=settings(k))
              for role, server in servers.items()}
    for method in ("next-token", "all-logits"):
        artifact = score(served["reference"].path, {"variant": served["variant"].path}, method, "top-k-tail-bucket")
        assert_key(statistics(artifact), key(exact, "variant", method, k))
    assert [s.requests for s in servers.values()] == [SAMPLES, SAMPLES]


def test_a_server_without_the_prompt_tokens_own_entry_is_refused(
    dumps: dict[str, Path], servers: dict[str, CompletionsServer], tiny: kldmodels.TinyModels, tmp_path: Path
) -> None:
    servers["reference"].omit_own_token = True
    with pytest.raises(EvalError, match="no log-probability for the prompt's own token"):
        dump(ModelSource(str(tiny.reference), server=servers["reference"].url, served_model="reference"),
             tmp_path / "ref.safetensors", windows_from=dumps["reference-8"], settings=settings(8))


# --- the server backend ------------------------------------------------------------------------------------------


def test_an_interrupted_server_dump_resumes_without_redoing_windows(
    dumps: dict[str, Path], tiny: kldmodels.TinyModels, servers: dict[str, CompletionsServer], tmp_path: Path
) -> None:
    server, out = servers["reference"], tmp_path / "ref.safetensors"
    source = ModelSource(str(tiny.reference), server=server.url, served_model="reference")
    server.fail_after = 2  # the server breaks after two windows and stays broken
    with pytest.raises(EvalError, match=r"kept failing .*\n.* of 4 windows are saved"):
        dump(source, out, windows_from=dumps["reference-8"], settings=settings(8, workers=2))
    saved = len(list(partial_folder(out).glob("window-*.safetensors")))
    assert saved == server.answered == 2 and not out.exists()
    server.fail_after, before = None, server.requests
    dump(source, out, windows_from=dumps["reference-8"], settings=settings(8, workers=2))
    assert server.requests - before == SAMPLES - saved  # only the unfinished windows were asked for
    assert server.answered == SAMPLES
    same = score(out, {"reference": dumps["reference-8"]}, "next-token", "top-k-tail-bucket")
    assert statistics(same, "reference")["kl"]["max"] < 1e-6


def test_transient_server_failures_are_retried(dumps: dict[str, Path], tiny: kldmodels.TinyModels,
                                               servers: dict[str, CompletionsServer], tmp_path: Path) -> None:
    server = servers["reference"]
    server.transient = 3
    waits: list[float] = []
    dump(ModelSource(str(tiny.reference), server=server.url, served_model="reference"), tmp_path / "ref.safetensors",
         windows_from=dumps["reference-8"], settings=settings(8, sleep=waits.append))
    assert server.requests == SAMPLES + 3 and len(waits) == 3


def test_a_refused_request_is_not_retried(dumps: dict[str, Path], tiny: kldmodels.TinyModels,
                                          servers: dict[str, CompletionsServer], tmp_path: Path) -> None:
    server = servers["reference"]
    with pytest.raises(EvalError, match="HTTP 404"):
        dump(ModelSource(str(tiny.reference), server=server.url, served_model="not-served"),
             tmp_path / "ref.safetensors", windows_from=dumps["reference-8"], settings=settings(8))
    assert server.requests == 1


# --- eval run over several variants ------------------------------------------------------------------------------


def two_variant_manifest(project: Path, tiny: kldmodels.TinyModels) -> Path:
    """The shipped manifest evaluating both branches on the tiny text, into kld.json, without hand-written numbers;
    main's folder is the W8A16 variant and gs128's the W4A16 one."""
    (project.parent / "tiny.txt").write_text(tiny.text.read_text())
    data = yaml.safe_load(project.read_text())
    data["variants"][0]["path"], data["variants"][1]["path"] = str(tiny.variant), str(tiny.variant4)
    kld = data["evaluation"]["kld"]
    for name in ("positions", "metrics", "branch"):
        del kld[name]
    kld.update(branches="all", dataset={"name": "tiny.txt"}, sequence_length=LENGTH, samples=SAMPLES,
               reference_top_k=8, artifact="kld.json")
    project.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return project


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every model transformers loads for a dump, by path."""
    from publish.eval import backends

    loaded: list[str] = []
    original = backends.TransformersBackend.__init__

    def counting(self: Any, model: str, *args: Any, **kwargs: Any) -> None:
        loaded.append(model)
        original(self, model, *args, **kwargs)

    monkeypatch.setattr(backends.TransformersBackend, "__init__", counting)
    return loaded


def test_a_two_variant_run_computes_the_reference_once(project: Path, tiny: kldmodels.TinyModels,
                                                       servers: dict[str, CompletionsServer],
                                                       loads: list[str]) -> None:
    manifest = load_manifest(two_variant_manifest(project, tiny))
    server = servers["reference"]
    reference = ModelSource(str(tiny.reference), server=server.url, served_model="reference")
    quiet = RunSettings(execution=Execution(sleep=lambda seconds: None))
    written, artifact = run(manifest, reference, settings=quiet)
    assert server.requests == SAMPLES  # one request per window, for both variants
    assert loads == [str(tiny.variant), str(tiny.variant4)]
    assert [e["branch"] for e in artifact["variants"]] == ["main", "gs128"]
    assert json.loads(written.read_text()) == artifact
    # Again: every dump is complete, so nothing is computed and no model is loaded.
    assert run(manifest, reference, settings=quiet)[1]["variants"] == artifact["variants"]
    assert server.requests == SAMPLES and len(loads) == 2


def test_a_variant_served_from_elsewhere_uses_the_references_tokenizer(
    project: Path, tiny: kldmodels.TinyModels, servers: dict[str, CompletionsServer], tmp_path: Path
) -> None:
    manifest = load_manifest(two_variant_manifest(project, tiny))
    served = ModelSource(str(tmp_path / "on-the-server"), server=servers["variant"].url, served_model="variant")
    _, artifact = run(manifest, ModelSource(str(tiny.reference)), {"main": served, "gs128": served},
                      settings=RunSettings(execution=Execution(sleep=lambda seconds: None)))
    assert servers["variant"].requests == 2 * SAMPLES
    assert artifact["variants"][0]["identity"]["tokenizer_sha256"] == artifact["reference"]["tokenizer_sha256"]
    assert statistics(artifact, "main")["kl"]["mean"] > 0


def test_eval_run_through_the_cli_loads_the_reference_once(project: Path, tiny: kldmodels.TinyModels,
                                                           loads: list[str]) -> None:
    manifest = two_variant_manifest(project, tiny)
    done = hubpub("eval", "run", "--manifest", str(manifest), "--reference", str(tiny.reference),
                  "--variant", f"gs128={tiny.variant}", cwd=manifest.parent)
    assert done.returncode == 0, done.stderr
    assert loads == [str(tiny.reference), str(tiny.variant), str(tiny.variant)]
    assert "reference: 4/4 windows (100%)" in done.stderr and "variant gs128: 4/4 windows (100%)" in done.stderr
    assert "Loading" not in done.stderr and "it/s" not in done.stderr  # transformers' own bars are hidden
    assert done.stdout.count("KLD median") == 2
    artifact = json.loads((manifest.parent / "kld.json").read_text())
    assert artifact["version"] == 2 and artifact["config"]["top_k"] == 8
    main, gs128 = (e["statistics"] for e in artifact["variants"])
    assert main == gs128  # both branches measured the same W8A16 weights


# --- the manifest, the card and check ----------------------------------------------------------------------------


@pytest.fixture
def evaluated(project: Path, tiny: kldmodels.TinyModels) -> Path:
    """The shipped manifest, its evaluation.kld pointed at the tiny text and a kld.json artifact, numbers removed."""
    (project.parent / "tiny.txt").write_text(tiny.text.read_text())
    data = yaml.safe_load(project.read_text())
    kld = data["evaluation"]["kld"]
    for name in ("positions", "metrics"):
        del kld[name]
    kld.update(dataset={"name": "tiny.txt"}, sequence_length=LENGTH, samples=SAMPLES, reference_top_k=8,
               artifact="kld.json")
    project.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return project


def test_eval_run_writes_kld_json_and_the_card_shows_it(evaluated: Path, tiny: kldmodels.TinyModels) -> None:
    done = hubpub("eval", "run", "--manifest", str(evaluated), "--reference", str(tiny.reference),
                  "--variant", str(tiny.variant), cwd=evaluated.parent)
    assert done.returncode == 0, done.stderr
    artifact = json.loads((evaluated.parent / "kld.json").read_text())
    assert artifact["config"] == {"method": "next-token", "approximation": "top-k-tail-bucket", "top_k": 8,
                                  "dataset": artifact["config"]["dataset"], "sequence_length": LENGTH,
                                  "samples": SAMPLES}
    assert artifact["config"]["dataset"]["name"] == "tiny.txt"
    figures = statistics(artifact, "main")
    assert figures["positions"] == SAMPLES * (LENGTH - 1)
    assert len(artifact["reference"]["dump_sha256"]) == len(artifact["variants"][0]["identity"]["dump_sha256"]) == 64

    text = render(load_manifest(evaluated)).cards[0].text
    assert f"| **Median KLD** | {figures['kl']['percentiles']['p50']:.6f} |" in text
    assert f"| **Mean Coverage** | {figures['mean_coverage']:.6f} |" in text
    assert f"| **Total Positions** | {figures['positions']:,} |" in text
    assert f"| Perplexity, variant | {figures['perplexity']['variant']:.4f} ±" in text
    assert "[kld.json](kld.json)" in text
    assert all(f.code != "E1" for f in check(load_manifest(evaluated)).variants[0].findings)

    # A hand-written number that disagrees with the artifact: check reports E1 and render refuses.
    data = yaml.safe_load(evaluated.read_text())
    median, p90, mean = (round(v, 6) for v in (figures["kl"]["percentiles"]["p50"],
                                               figures["kl"]["percentiles"]["p90"], figures["kl"]["mean"]))
    data["evaluation"]["kld"]["metrics"] = {"median": median + 1e-6, "p90": p90, "mean": mean}
    evaluated.write_text(yaml.safe_dump(data, sort_keys=False))
    findings = [f for f in check(load_manifest(evaluated)).variants[0].findings if f.code == "E1"]
    assert len(findings) == 1 and "metrics.median" in findings[0].message
    with pytest.raises(FactMismatch, match="metrics.median"):
        render(load_manifest(evaluated))
    checked = hubpub("check", "--manifest", str(evaluated), cwd=evaluated.parent)
    assert checked.returncode == 1 and "E1" in checked.stdout


def test_check_catches_an_artifact_measured_on_other_weights(evaluated: Path, dumps: dict[str, Path],
                                                             tiny: kldmodels.TinyModels) -> None:
    score(dumps["reference-8"], {"main": dumps["variant-8"]}, "next-token", "top-k-tail-bucket",
          evaluated.parent / "kld.json")
    original = evaluated.read_text()
    for folder, problems in ((tiny.variant, 0), (tiny.reference, 1)):
        evaluated.write_text(re.sub(r"path: .*Qwen3.6-27B-INT8-AutoRound-main", f"path: {folder}", original))
        found = check_artifact(load_manifest(evaluated))
        assert len(found) == problems and all("measured on other weights" in p.message for p in found)
    with pytest.raises(FactMismatch, match="measured on other weights"):
        render(load_manifest(evaluated))


def test_check_catches_a_configuration_the_artifact_was_not_made_with(evaluated: Path,
                                                                      dumps: dict[str, Path]) -> None:
    score(dumps["reference-8"], {"main": dumps["variant-8"]}, "next-token", "top-k-tail-bucket",
          evaluated.parent / "kld.json")
    evaluated.write_text(evaluated.read_text().replace(f"samples: {SAMPLES}", "samples: 64"))
    findings = [f for f in check(load_manifest(evaluated)).variants[0].findings if f.code == "E1"]
    assert [f.message for f in findings] == ["samples: manifest says 64, kld.json says 4"]


def test_a_run_takes_what_the_manifest_leaves_out_from_the_artifact(evaluated: Path, dumps: dict[str, Path],
                                                                    tiny: kldmodels.TinyModels) -> None:
    score(dumps["reference-8"], {"main": dumps["variant-8"]}, "second-half", "top-k-tail-bucket",
          evaluated.parent / "kld.json")
    data = yaml.safe_load(evaluated.read_text())
    data["evaluation"]["kld"] = {"branch": "main", "artifact": "kld.json"}
    evaluated.write_text(yaml.safe_dump(data, sort_keys=False))
    _, artifact = run(load_manifest(evaluated), ModelSource(str(tiny.reference)),
                      {"main": ModelSource(str(tiny.variant))})
    assert artifact["config"]["method"] == "second-half" and artifact["config"]["top_k"] == 8
    assert statistics(artifact, "main")["positions"] == SAMPLES * (LENGTH // 2 - 1)


# --- the command line --------------------------------------------------------------------------------------------


def test_eval_score_through_the_cli_names_each_variant(dumps: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "kld.json"
    done = hubpub("eval", "score", str(dumps["reference-8"]), str(dumps["variant-8"]), str(dumps["variant4-8"]),
                  "--branch", "main", "--branch", "gs128", "--method", "second-half", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "main: KLD median" in done.stdout and f"positions {SAMPLES * (LENGTH // 2 - 1)}" in done.stdout
    assert "gs128: reverse KLD mean" in done.stdout
    artifact = json.loads(out.read_text())
    assert artifact["config"]["method"] == "second-half"
    assert [e["branch"] for e in artifact["variants"]] == ["main", "gs128"]


def test_eval_score_needs_one_branch_name_per_variant(dumps: dict[str, Path], tmp_path: Path) -> None:
    done = hubpub("eval", "score", str(dumps["reference-8"]), str(dumps["variant-8"]), str(dumps["variant4-8"]),
                  "--branch", "main", cwd=tmp_path)
    assert done.returncode == 2 and "1 --branch names for 2 variant dumps" in done.stderr


def test_eval_dump_through_the_cli_and_again(tiny: kldmodels.TinyModels, tmp_path: Path) -> None:
    args = ("eval", "dump", "--model", str(tiny.reference), "--text", str(tiny.text), "--sequence-length",
            str(LENGTH), "--samples", "20", "--top-k", "8", "--out", str(tmp_path / "ref.safetensors"))
    first = hubpub(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stderr.splitlines() if line.startswith("ref.safetensors:")]
    assert lines == [f"ref.safetensors: {2 * i}/20 windows ({10 * i}%)" for i in range(1, 11)]
    assert "written, 20 windows × 32 tokens, top-8" in first.stdout
    again = hubpub(*args, cwd=tmp_path)
    assert again.returncode == 0 and "already complete" in again.stdout and "windows" not in again.stderr


def test_progress_without_a_terminal_is_a_line_per_tenth() -> None:
    lines: list[str] = []
    progress = DumpProgress("ref", bars=False, echo=lines.append)
    for done in range(12, 65):
        progress(done, 64)
    assert lines[0] == "ref: 12/64 windows already saved, resuming"
    assert lines[1:] == [f"ref: {d}/64 windows ({100 * d // 64}%)" for d in (13, 20, 26, 32, 39, 45, 52, 58, 64)]


def test_progress_in_a_terminal_is_one_bar_per_dump(capsys: pytest.CaptureFixture[str]) -> None:
    progress = DumpProgress("variant main", bars=True)
    for done in range(5):
        progress(done, 4)
    err = capsys.readouterr().err
    assert err.count("variant main") >= 1 and "4/4" in err and "\n" not in err.rstrip("\n")


def test_a_bare_variant_path_is_refused_when_several_branches_are_evaluated(project: Path,
                                                                           tiny: kldmodels.TinyModels) -> None:
    manifest = two_variant_manifest(project, tiny)
    done = hubpub("eval", "run", "--manifest", str(manifest), "--reference", str(tiny.reference), "--variant",
                  str(tiny.variant), cwd=manifest.parent)
    assert done.returncode == 2
    assert "does not say which branch it is for" in done.stderr and "--variant BRANCH=" in done.stderr


def test_a_missing_variant_folder_is_refused_before_the_reference_is_dumped(project: Path,
                                                                           tiny: kldmodels.TinyModels,
                                                                           loads: list[str]) -> None:
    manifest = two_variant_manifest(project, tiny)
    manifest.write_text(manifest.read_text().replace(str(tiny.variant4), str(project.parent / "missing")))
    done = hubpub("eval", "run", "--manifest", str(manifest), "--reference", str(tiny.reference),
                  cwd=manifest.parent)
    assert done.returncode == 2 and "variant 'gs128' has no checkpoint folder" in done.stderr
    assert "--variant gs128=PATH_OR_ID" in done.stderr and loads == []


def test_eval_with_bad_input_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = hubpub("eval", "score", str(tmp_path / "missing.safetensors"), str(tmp_path / "b.safetensors"),
                  cwd=tmp_path)
    assert done.returncode == 2
    assert "dump not found" in done.stderr and "Traceback" not in done.stderr


def test_render_with_an_artifact_imports_no_numerics(evaluated: Path, dumps: dict[str, Path], tmp_path: Path) -> None:
    import subprocess
    import sys

    score(dumps["reference-8"], {"main": dumps["variant-8"]}, "next-token", "top-k-tail-bucket",
          evaluated.parent / "kld.json")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "publish.cli", "render", "--manifest",
                           str(evaluated), "--out", str(tmp_path / "cards")], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "publish" in imported
    assert not imported & {"numpy", "torch", "transformers", "datasets", "safetensors"}
