"""`hubpub check`, `hubpub init` and `hubpub render` with weights present: library functions and the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from publish.commands.check import check
from publish.commands.init import init
from publish.commands.render import render
from publish.errors import ChecksFailed, ManifestError, UsageError
from publish.manifest.model import load_manifest

from .conftest import hubpub, point_manifest
from .fixtures.checkpoints import build_checkpoint

# -- check ---------------------------------------------------------------------------------------------------------


def test_check_passes_both_good_variants(weighed: Path) -> None:
    report = check(load_manifest(weighed))
    assert report.ok
    assert [(v.branch, v.source, v.findings) for v in report.variants] == [("main", "local", ()), ("gs128", "local", ())]


def test_check_cli_exits_0_and_reports_each_variant(weighed: Path) -> None:
    done = hubpub("check", "--manifest", str(weighed), cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    assert "main (local:" in done.stdout and "gs128 (local:" in done.stdout and "FAILED" not in done.stdout


def test_check_cli_exits_1_naming_the_module(project: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    broken = build_checkpoint(tmp_path / "broken", "main", defect="mtp-not-ignored")
    manifest = point_manifest(project, checkpoints)
    data = yaml.safe_load(manifest.read_text())
    data["variants"][0]["path"] = str(broken)
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    done = hubpub("check", "--manifest", str(manifest), "--branch", "main", cwd=tmp_path)
    assert done.returncode == 1
    assert "K1  mtp.fc:" in done.stdout and "re:^mtp" in done.stdout


def test_check_json_is_stable_and_machine_readable(weighed: Path) -> None:
    done = hubpub("check", "--manifest", str(weighed), "--branch", "gs128", "--json", cwd=weighed.parent)
    report = json.loads(done.stdout)
    assert report["version"] == 1 and report["ok"] is True
    (variant,) = report["variants"]
    assert set(variant) == {"branch", "location", "source", "ok", "errors", "warnings", "facts", "findings"}
    assert variant["facts"]["group_size"] == 128 and variant["facts"]["scale_dtype"] == "FP16"
    assert "self_attn" in variant["facts"]["unquantized"]


def test_missing_folder_is_an_error_naming_the_path(project: Path) -> None:
    report = check(load_manifest(project), branch="gs128")
    assert not report.ok
    (finding,) = report.variants[0].findings
    assert finding.code == "C0" and "Qwen3.6-27B-INT8-AutoRound-gs128" in finding.message
    done = hubpub("check", "--manifest", str(project), cwd=project.parent)
    assert done.returncode == 1 and "does not exist" in done.stdout


def test_check_with_a_bad_manifest_exits_2(project: Path) -> None:
    project.write_text(project.read_text().replace("bits: 8", "bits: eight", 1))
    done = hubpub("check", "--manifest", str(project), cwd=project.parent)
    assert done.returncode == 2 and "bits" in done.stderr and "Traceback" not in done.stderr


# -- render with weights --------------------------------------------------------------------------------------------


def test_render_takes_facts_from_the_weights(weighed: Path, checkpoints: dict[str, Path]) -> None:
    result = render(load_manifest(weighed), branch="gs128")
    text = result.cards[0].text
    assert "| Scale dtype | FP16 | FP16 |" in text.replace("**", "")
    size = sum(p.stat().st_size for p in checkpoints["gs128"].glob("*.safetensors")) / 1e9
    assert f" {size * 1000:.1f}MB |\n" in text.replace("**", "")  # the gs128 column, in the unit that fits
    assert any("facts taken from the weights" in note for note in result.notes)


def test_render_without_weights_says_it_uses_the_manifest(project: Path) -> None:
    result = render(load_manifest(project))
    assert any("uses the manifest's values" in note for note in result.notes)


def test_render_refuses_a_manifest_that_contradicts_the_weights(weighed: Path) -> None:
    weighed.write_text(weighed.read_text().replace("symmetric: true", "symmetric: false", 1))
    with pytest.raises(ChecksFailed, match="the config says symmetric True, the manifest says False"):
        render(load_manifest(weighed))
    done = hubpub("render", "--manifest", str(weighed), cwd=weighed.parent)
    assert done.returncode == 1 and "symmetric" in done.stderr and "Traceback" not in done.stderr


# -- init -----------------------------------------------------------------------------------------------------------


def test_init_writes_a_manifest_from_the_weights(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = init([checkpoints["main"], checkpoints["gs128"]], repo_id="me/Tiny-INT8", out=tmp_path / "branches.yaml")
    data = yaml.safe_load(out.read_text())
    main, gs128 = data["variants"]
    assert (main["branch"], main["group_size"], main["bits"], main["symmetric"]) == ("main", -1, 8, True)
    assert (gs128["branch"], gs128["group_size"]) == ("gs128", 128)
    assert "self_attn" in gs128["unquantized"] and "self_attn" not in main["unquantized"]
    assert data["pipeline_tag"] == "image-text-to-text" and main["scheme"] == "W8A16"


def test_init_output_refuses_to_load_until_the_todos_are_filled(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    out = init([checkpoints["main"]], repo_id="me/Tiny-INT8", out=tmp_path / "branches.yaml")
    with pytest.raises(ManifestError, match="still says 'TODO") as caught:
        load_manifest(out)
    assert caught.value.field == "base_model" and caught.value.line is not None
    data = yaml.safe_load(out.read_text())
    data.update(base_model="Qwen/Qwen3.6-27B", license="apache-2.0")
    data["variants"][0].update(method={"name": "AutoRound"}, calibration={"samples": 128})
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    assert check(load_manifest(out)).ok


def test_init_cli_writes_and_refuses_to_overwrite(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    done = hubpub("init", str(checkpoints["main"]), "--repo-id", "me/Tiny-INT8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "branches.yaml").is_file()
    again = hubpub("init", str(checkpoints["main"]), cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr


def test_init_rejects_a_bad_repo_id(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="repo-id"):
        init([checkpoints["main"]], repo_id="no-namespace", out=tmp_path / "branches.yaml")




# -- check warns about every file push would refuse (S1); each E1 hint fits its cause ------------------------------


def test_check_warns_about_every_file_push_would_refuse(weighed: Path, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "main"
    shutil.copytree(checkpoints["main"], folder)
    token = "hf_" + "Leaked" * 5 + "0123456789"  # built from parts: no token-shaped string is committed
    (folder / ".env").write_text("A=1\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "run.log").write_text(f"step 1\nstep 2\nHF_TOKEN={token}\n")
    (folder / "outside.txt").symlink_to(tmp_path / "elsewhere.txt")
    (tmp_path / "elsewhere.txt").write_text("x\n")
    (folder / "scratch.log").write_text(f"{token}\n")  # excluded: never published, so no warning
    (weighed.parent / "log.txt").write_text(f"done\n{token}\n")
    data = yaml.safe_load(weighed.read_text())
    data["variants"][0].update(path=str(folder), exclude=["scratch.log"])
    weighed.write_text(yaml.safe_dump(data, sort_keys=False))
    done = hubpub("check", "--manifest", str(weighed), "--branch", "main", cwd=weighed.parent)
    assert done.returncode == 0, done.stdout  # warnings: the weights are fine
    shared = weighed.parent.resolve() / "log.txt"
    assert done.stdout.splitlines()[1:] == [
        (f"  warning S1  .env: push would refuse it: {folder / '.env'} looks like a secret (.env); hubpub never "
        "uploads it"),
        "                 fix: move it out of the checkpoint folder, or list it in the variant's `exclude:`",
        (f"  warning S1  notes/run.log: push would refuse it: {folder / 'notes/run.log'}:3: contains something that "
        "looks like a Hugging Face token; hubpub never uploads it"),
        ("                 fix: remove the token from the file (and revoke it if it was ever shared), or list the "
        "file in the variant's `exclude:`"),
        (f"  warning S1  outside.txt: push would refuse it: {folder / 'outside.txt'} is a symlink to "
        f"{tmp_path / 'elsewhere.txt'}, outside the variant's folder {folder}"),
        "                 fix: copy the file into the folder, or remove the link",
        (f"  warning S1  files: log.txt: push would refuse it: {shared}:2: contains something that looks like a "
        "Hugging Face token; hubpub never uploads it"),
        ("                 fix: remove the token from the file (and revoke it if it was ever shared), or list the "
        "file in the variant's `exclude:`"),
    ]
    assert token not in done.stdout + done.stderr


def kld_artifact(manifest: Path, weights_sha256: str | None = None) -> Path:
    from .test_kldartifact import seed_artifact, with_artifact

    with_artifact(manifest, keep_numbers=True)
    artifact = seed_artifact()
    artifact["variant"] = {"model": "main", "weights_sha256": weights_sha256}
    (manifest.parent / "kld.json").write_text(json.dumps(artifact))
    return manifest


def e1_lines(done: object) -> list[str]:
    lines = done.stdout.splitlines()  # type: ignore[attr-defined]
    return [text for n, line in enumerate(lines) if " E1 " in line for text in (line.strip(), lines[n + 1].strip())]


def test_e1_for_a_hand_written_figure_says_to_remove_it(weighed: Path) -> None:
    kld_artifact(weighed)
    weighed.write_text(weighed.read_text().replace("median: 0.000621", "median: 0.000622"))
    done = hubpub("check", "--manifest", str(weighed), "--branch", "main", cwd=weighed.parent)
    assert done.returncode == 1
    assert e1_lines(done) == [
        ("error   E1  evaluation.kld: metrics.median: manifest says 0.000622, kld.json says 0.000621 (compared as the "
        "card prints them)"),
        ("fix: remove the hand-written evaluation.kld.metrics.median (the card takes it from kld.json), or run "
        "`hubpub eval run` again"),
    ]


def test_e1_for_other_weights_does_not_mention_hand_written_values(weighed: Path) -> None:
    kld_artifact(weighed, weights_sha256="0" * 64)
    done = hubpub("check", "--manifest", str(weighed), "--branch", "main", cwd=weighed.parent)
    assert done.returncode == 1
    (problem, fix) = e1_lines(done)
    assert problem.startswith("error   E1  evaluation.kld: kld.json was measured on other weights than those at ")
    assert fix == ("fix: run `hubpub eval run` again on these weights, or point variant 'main''s `path:` at the "
                   "weights that were measured")


def test_e1_for_a_missing_artifact_says_how_to_produce_it(weighed: Path) -> None:
    kld_artifact(weighed)
    (weighed.parent / "kld.json").unlink()
    done = hubpub("check", "--manifest", str(weighed), "--branch", "main", cwd=weighed.parent)
    assert done.returncode == 1
    assert e1_lines(done) == [
        f"error   E1  evaluation.kld: {weighed.parent / 'kld.json'}: KLD artifact not found",
        "fix: run `hubpub eval run` to produce it, or fix evaluation.kld.artifact",
    ]


def test_e1_for_a_stated_setting_says_to_correct_it(weighed: Path) -> None:
    kld_artifact(weighed)
    weighed.write_text(weighed.read_text().replace("sequence_length: 2048", "sequence_length: 4096")
                       .replace("positions: 131008", "positions: 262080"))
    done = hubpub("check", "--manifest", str(weighed), "--branch", "main", cwd=weighed.parent)
    assert e1_lines(done)[:2] == [
        "error   E1  evaluation.kld: sequence_length: manifest says 4096, kld.json says 2048",
        ("fix: write what kld.json says in evaluation.kld.sequence_length, or run `hubpub eval run` again if the "
        "manifest is right"),
    ]
