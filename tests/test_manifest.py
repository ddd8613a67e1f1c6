"""branches.yaml: the schema, its error messages (file, line, field, hint) and its consistency rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from publish.errors import ManifestError, ManifestProblems
from publish.manifest.model import load_manifest

from .conftest import ROOT, SHIPPED_MANIFEST, hubpub

SHIPPED = SHIPPED_MANIFEST.read_text(encoding="utf-8")


def write(tmp_path: Path, text: str) -> Path:
    """The manifest `text` in `tmp_path`, beside the shared files the shipped manifest lists."""
    for name in ("quantize.py", "log.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    path = tmp_path / "branches.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def edited(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    assert SHIPPED.count(old) >= count, f"fixture text {old!r} not in branches.yaml"
    return write(tmp_path, SHIPPED.replace(old, new, count))


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not found")


def load_error(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return caught.value


def load_error_allowing_todo(path: Path) -> ManifestProblems:
    with pytest.raises(ManifestProblems) as caught:
        load_manifest(path, allow_todo=True)
    return caught.value


def test_shipped_manifest_describes_both_variants() -> None:
    manifest = load_manifest(SHIPPED_MANIFEST)
    assert manifest.repo_id == "Minachist/Qwen3.6-27B-INT8-AutoRound"
    assert [v.branch for v in manifest.variants] == ["main", "gs128"]
    main, gs128 = manifest.variants
    assert (main.group_size, gs128.group_size) == (-1, 128)
    assert "self_attn" in gs128.unquantized and "self_attn" not in main.unquantized
    assert manifest.evaluation.kld is not None and manifest.evaluation.kld.positions == 64 * 2047
    assert manifest.files.all() == ("quantize.py", "log.txt")


def test_relative_variant_path_is_relative_to_the_manifest(tmp_path: Path) -> None:
    manifest = load_manifest(write(tmp_path, SHIPPED))
    assert manifest.variant_path(manifest.variants[0]) == tmp_path / "../weights/Qwen3.6-27B-INT8-AutoRound-main"


def test_absolute_variant_path_is_kept(tmp_path: Path) -> None:
    path = edited(tmp_path, "path: ../weights/Qwen3.6-27B-INT8-AutoRound-main", "path: /disk2/main")
    manifest = load_manifest(path)
    assert manifest.variant_path(manifest.variants[0]) == Path("/disk2/main")


def test_unknown_key_names_file_line_and_suggests_the_right_one(tmp_path: Path) -> None:
    path = edited(tmp_path, "    scheme: W8A16\n", "    schema: W8A16\n")
    error = load_error(path)
    assert error.file == str(path)
    assert error.line == line_of(path, "schema: W8A16")
    assert error.field == "variants[0].schema"
    assert "unknown key 'schema'" in str(error)
    assert "did you mean 'scheme'" in str(error)


def test_wrong_type_names_the_field_and_what_was_found(tmp_path: Path) -> None:
    path = edited(tmp_path, "    bits: 8\n", '    bits: "8"\n')
    error = load_error(path)
    assert (error.field, error.line) == ("variants[0].bits", line_of(path, 'bits: "8"'))
    assert "found str '8'" in str(error)


def test_missing_required_field_says_what_to_add(tmp_path: Path) -> None:
    path = edited(tmp_path, "    symmetric: true\n", "")
    error = load_error(path)
    assert error.field == "variants[0].symmetric"
    assert "required field is missing" in str(error)
    assert "add `symmetric:`" in str(error)
    assert error.line == line_of(path, "- branch: main")


def test_duplicate_variant_is_reported_at_the_second_definition(tmp_path: Path) -> None:
    path = edited(tmp_path, "  - branch: gs128\n", "  - branch: main\n")
    error = load_error(path)
    assert error.field == "variants[1].branch"
    assert error.line == line_of(path, "- branch: main", occurrence=2)
    assert "duplicate variant" in str(error)


@pytest.mark.parametrize("name", ["gs 128", "gs..128", "refs/pr/5", ".hidden", "gs128.lock", "a~1", "x:y", "end/"])
def test_branch_must_be_a_valid_git_ref_name(tmp_path: Path, name: str) -> None:
    path = edited(tmp_path, "  - branch: gs128\n", f"  - branch: {name!r}\n")
    error = load_error(path)
    assert error.field == "variants[1].branch"
    assert error.line == line_of(path, f"- branch: {name!r}")


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "bad name/x", "ns/--x", "ns/x..y"])
def test_repo_id_must_be_a_hub_model_id(tmp_path: Path, repo_id: str) -> None:
    path = edited(tmp_path, "repo_id: Minachist/Qwen3.6-27B-INT8-AutoRound", f"repo_id: {repo_id!r}")
    error = load_error(path)
    assert (error.field, error.line) == ("repo_id", line_of(path, "repo_id:"))


def test_kld_positions_must_match_samples_times_sequence_length_minus_one(tmp_path: Path) -> None:
    path = edited(tmp_path, "    positions: 131008\n", "    positions: 131072\n")
    error = load_error(path)
    assert error.field == "evaluation.kld"
    assert "131,072" in str(error) and "131,008" in str(error)


def test_kld_positions_follow_the_declared_method(tmp_path: Path) -> None:
    text = SHIPPED.replace("method: next-token", "method: second-half").replace("positions: 131008", "positions: 65472")
    manifest = load_manifest(write(tmp_path, text))
    assert manifest.evaluation.kld is not None and manifest.evaluation.kld.method == "second-half"


def test_kld_median_above_p90_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, "      median: 0.000621\n", "      median: 0.003\n")
    error = load_error(path)
    assert "median 0.003 > p90 0.002607" in str(error)


def test_kld_branch_must_be_a_variant(tmp_path: Path) -> None:
    path = edited(tmp_path, "    branch: main\n    # positions", "    branch: gs64\n    # positions")
    error = load_error(path)
    assert error.field == "evaluation.kld.branch"
    assert "'gs64'" in str(error)


def test_duplicate_yaml_key_is_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    path = edited(tmp_path, "title: Qwen3.6-27B INT8 AutoRound\n", "title: A\ntitle: B\n")
    error = load_error(path)
    assert error.line == line_of(path, "title: B")
    assert "duplicate key 'title'" in str(error)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = edited(tmp_path, "    bits: 8\n", "    bits: [8\n")
    error = load_error(path)
    assert error.file == str(path) and error.line is not None
    assert "not valid YAML" in str(error)


def test_missing_manifest_says_how_to_start_one(tmp_path: Path) -> None:
    error = load_error(tmp_path / "nope.yaml")
    assert "manifest not found" in str(error) and "hubpub init" in str(error)


def test_unknown_module_family_suggests_a_known_one(tmp_path: Path) -> None:
    path = edited(tmp_path, "unquantized: [visual, mtp, linear_attn", "unquantized: [vision, mtp, linear_attn")
    error = load_error(path)
    assert error.field == "variants[0].unquantized"
    assert "'vision'" in str(error) and "did you mean 'visual'" in str(error)


def test_single_line_fields_refuse_newlines(tmp_path: Path) -> None:
    path = edited(tmp_path, "title: Qwen3.6-27B INT8 AutoRound", 'title: "X\\n---\\nlicense: mit"')
    error = load_error(path)
    assert error.field == "title" and "single line" in str(error)


def test_unknown_variant_branch_lists_the_known_ones() -> None:
    manifest = load_manifest(SHIPPED_MANIFEST)
    with pytest.raises(ManifestError, match="main, gs128"):
        manifest.variant("gs32")


def test_every_error_is_listed_once_in_one_run(tmp_path: Path) -> None:
    text = SHIPPED.replace("size_gb: 36.8", "size_gb: -1").replace("size_gb: 38.8", "size_gb: 0")
    text = text.replace("pipeline_tag: image-text-to-text", "pipeline_tag: [a]")
    with pytest.raises(ManifestError) as caught:
        load_manifest(write(tmp_path, text))
    message = str(caught.value)
    assert "variants[0].size_gb" in message and "variants[1].size_gb" in message and "pipeline_tag" in message
    assert "at least 1 item" not in message  # the list's echo of its items' errors is not repeated


# -- every problem of every pass in one run, in line order, each hint beneath its own error ----------------------


def test_misspelt_keys_are_listed_in_line_order_each_with_its_own_hint(project: Path) -> None:
    text = project.read_text().replace("summary: |-", "sumary: |-").replace("    group_size: 128\n", "    grop_size: 128\n")
    project.write_text(text)
    done = hubpub("render", cwd=project.parent)
    assert done.returncode == 2
    sumary, grop = line_of(project, "sumary:"), line_of(project, "grop_size:")
    assert sumary < grop
    assert done.stderr == (
        "error: branches.yaml: 2 problems, in line order:\n"
        f"  branches.yaml:{sumary}: sumary: unknown key 'sumary'\n"
        "    hint: did you mean 'summary'?\n"
        f"  branches.yaml:{grop}: variants[1].grop_size: unknown key 'grop_size'\n"
        "    hint: did you mean 'group_size'?\n"
    )


def test_every_pass_reports_in_one_run(project: Path) -> None:
    # Schema (repo id, branch), Hub metadata (license, pipeline tag, base model), paths (a missing shared file)
    # and a TODO, all in one run.
    text = (project.read_text()
            .replace("repo_id: Minachist/", "repo_id: Mina chist/")
            .replace("license: apache-2.0", "license: Apache 2.0")
            .replace("pipeline_tag: image-text-to-text", "pipeline_tag: text-generaton")
            .replace("base_model: Qwen/Qwen3.6-27B", "base_model: Qwen3.6-27B")
            .replace("  log: log.txt", "  log: logs.txt")
            .replace("  - branch: gs128", "  - branch: gs 128")
            .replace("gpu: 2× RTX 3090\n    size_gb: 38.8", "gpu: 'TODO: the GPU'\n    size_gb: 38.8"))
    project.write_text(text)
    done = hubpub("render", cwd=project.parent)
    assert done.returncode == 2
    expected = [  # field, the text on its line, the start of its hint
        ("repo_id", "repo_id: Mina chist/", "e.g. 'your-name/Model-INT8'"),
        ("base_model", "base_model: Qwen3.6-27B", "give the id from the base model's Hub page"),
        ("license", "license: Apache 2.0", "did you mean 'apache-2.0'?"),
        ("pipeline_tag", "pipeline_tag: text-generaton", "did you mean 'text-generation'"),
        ("files.log", "log: logs.txt", "paths in `files:` are relative to the manifest"),
        ("variants[1].branch", "- branch: gs 128", "give a plain branch name such as 'gs128'"),
        ("variants[1].gpu", "gpu: 'TODO", "replace the TODO with the real value"),
    ]
    lines = done.stderr.splitlines()
    assert lines[0] == f"error: branches.yaml: {len(expected)} problems, in line order:"
    assert len(lines) == 1 + 2 * len(expected)
    for n, (field, needle, hint) in enumerate(sorted(expected, key=lambda e: line_of(project, e[1]))):
        located, hinted = lines[1 + 2 * n], lines[2 + 2 * n]
        assert located.startswith(f"  branches.yaml:{line_of(project, needle)}: {field}: "), located
        assert hinted.startswith(f"    hint: {hint}"), (field, hinted)
    assert "'Apache 2.0' is not a license identifier the Hub knows" in done.stderr


def test_todos_and_schema_errors_come_together(tmp_path: Path) -> None:
    path = edited(tmp_path, "base_model: Qwen/Qwen3.6-27B", "base_model: 'TODO: the base model'")
    path.write_text(path.read_text().replace("    bits: 8\n", '    bits: "8"\n', 1))
    error = load_error(path)
    assert isinstance(error, ManifestProblems)
    assert [(p.field, p.line) for p in error.problems] == [
        ("base_model", line_of(path, "base_model: 'TODO")), ("variants[0].bits", line_of(path, 'bits: "8"'))]
    assert error.problems[0].message == "still says 'TODO: the base model'"


def test_check_accepts_todos_but_not_other_problems(tmp_path: Path) -> None:
    path = edited(tmp_path, "license: apache-2.0", "license: 'TODO: the license'")
    assert load_manifest(path, allow_todo=True).todos == (f"license (line {line_of(path, 'license: ')})",)
    path.write_text(path.read_text().replace("pipeline_tag: image-text-to-text", "pipeline_tag: chat"))
    error = load_error_allowing_todo(path)
    assert [p.field for p in error.problems] == ["pipeline_tag"]


def test_duplicate_yaml_keys_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    path = edited(tmp_path, "title: Qwen3.6-27B INT8 AutoRound\n", "title: A\ntitle: B\n")
    path.write_text(path.read_text().replace("license: apache-2.0", "license: apache2"))
    error = load_error(path)
    assert isinstance(error, ManifestProblems)
    assert [p.field for p in error.problems] == ["title", "license"]


def test_zero_calibration_samples_points_to_data_free(tmp_path: Path) -> None:
    path = edited(tmp_path, "calibration: {samples: 128, iterations: 1000", "calibration: {samples: 0, iterations: 1000")
    error = load_error(path)
    assert error.field == "variants[0].calibration.samples"
    assert error.message == "0 calibration samples: a calibrated quantization uses at least one"
    assert error.hint == "for data-free quantization (RTN, min-max) write `calibration: none` instead of the mapping"


def test_calibration_none_means_data_free(tmp_path: Path) -> None:
    path = edited(tmp_path, "calibration: {samples: 128, iterations: 1000, batch_size: 8}", "calibration: none")
    manifest = load_manifest(path)
    assert manifest.variants[0].calibration is None and manifest.variants[1].calibration is not None


def test_a_missing_shared_file_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, SHIPPED)
    (tmp_path / "log.txt").unlink()
    error = load_error(path)
    assert (error.field, error.line) == ("files.log", line_of(path, "log: log.txt"))
    assert error.message == f"shared file 'log.txt' not found at {tmp_path / 'log.txt'}"
