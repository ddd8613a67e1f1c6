"""Card rendering: the reference card fact for fact, front-matter safety, templates and provenance."""

from __future__ import annotations

import os
from pathlib import Path

import git
import pytest
from huggingface_hub import ModelCard

from publish.card.provenance import read_provenance
from publish.card.render import Provenance, make_environment, render_card
from publish.errors import ManifestError, MetadataError, TemplateError
from publish.manifest.model import load_manifest

from . import cardfacts
from .conftest import REFERENCE_CARD, SHIPPED_MANIFEST, hubpub

REFERENCE = cardfacts.facts(REFERENCE_CARD.read_text(encoding="utf-8"))


def render(manifest_path: Path = SHIPPED_MANIFEST, branch: str = "main", **kwargs: object) -> str:
    manifest = load_manifest(manifest_path)
    env = make_environment(manifest.root / "templates")
    return render_card(manifest, manifest.variant(branch), env=env, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module", params=["main", "gs128"])
def rendered(request: pytest.FixtureRequest) -> dict[str, object]:
    return cardfacts.facts(render(branch=request.param))


def test_front_matter_equals_the_reference_key_for_key(rendered: dict[str, object]) -> None:
    assert rendered["front_matter"] == REFERENCE["front_matter"]


def test_title_equals_the_reference(rendered: dict[str, object]) -> None:
    assert rendered["title"] == REFERENCE["title"]


def test_quantization_table_equals_the_reference_cell_for_cell(rendered: dict[str, object]) -> None:
    assert rendered["quantization"] == REFERENCE["quantization"]


def test_kld_metrics_equal_the_reference(rendered: dict[str, object]) -> None:
    assert rendered["kld_metrics"] == REFERENCE["kld_metrics"]
    assert rendered["evaluated_branch"] == REFERENCE["evaluated_branch"] == "Main"


def test_evaluation_configuration_equals_the_reference(rendered: dict[str, object]) -> None:
    assert rendered["evaluation"] == REFERENCE["evaluation"]


def test_vllm_arguments_equal_the_reference(rendered: dict[str, object]) -> None:
    assert rendered["vllm_args"] == REFERENCE["vllm_args"]


def test_reference_prose_survives() -> None:
    text = render()
    reference = REFERENCE_CARD.read_text(encoding="utf-8")
    for line in reference.splitlines():
        if line.startswith(("* ", "- ")) and "two versions" not in line:
            assert line in text, line


def test_emphasis_marks_what_sets_variants_apart() -> None:
    text = render()
    assert "| Group size | **-1** | 128 |" in text
    assert "<code><strong>self_attn</strong></code>" in text
    assert "| Size | **36.8GB** | **38.8GB** |" in text


@pytest.mark.parametrize("branch", ["main", "gs128"])
def test_card_says_which_branch_it_is_on(branch: str) -> None:
    assert f"This README is on the **{branch}** branch" in render(branch=branch)


@pytest.mark.parametrize("branch", ["main", "gs128"])
def test_card_tells_how_to_download_every_branch(branch: str) -> None:
    text = render(branch=branch)
    for other in ("main", "gs128"):
        assert f"hf download Minachist/Qwen3.6-27B-INT8-AutoRound --revision {other} " in text
        assert f'from_pretrained("Minachist/Qwen3.6-27B-INT8-AutoRound", revision="{other}")' in text
        assert f"vllm serve Minachist/Qwen3.6-27B-INT8-AutoRound --revision {other}\n" in text


def test_front_matter_round_trips_through_modelcard() -> None:
    card = ModelCard(render())
    assert card.data.to_dict() == REFERENCE["front_matter"]


def test_manifest_strings_cannot_inject_front_matter(project: Path) -> None:
    text = project.read_text().replace(
        "tags: [compressed-tensors, qwen3_6, int8, autoround]",
        'tags: [compressed-tensors, "x\\n---\\nlicense: mit\\npipeline_tag: text-generation\\n---"]',
    )
    project.write_text(text)
    card = render(project)
    meta = ModelCard(card).data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["pipeline_tag"] == "image-text-to-text"
    assert meta["tags"] == ["compressed-tensors", "x\n---\nlicense: mit\npipeline_tag: text-generation\n---"]


def test_summary_with_a_dashed_line_stays_in_the_body(project: Path) -> None:
    project.write_text(project.read_text().replace("summary: |-\n", "summary: |-\n  ---\n  license: mit\n  ---\n"))
    meta = ModelCard(render(project)).data.to_dict()
    assert meta["license"] == "apache-2.0"


def test_unknown_license_is_refused_at_load_with_its_line_and_hint(project: Path) -> None:
    project.write_text(project.read_text().replace("license: apache-2.0", "license: apache2"))
    with pytest.raises(ManifestError) as caught:
        load_manifest(project)
    assert (caught.value.field, caught.value.line) == ("license", 12)
    assert caught.value.hint == "did you mean 'apache-2.0'?"


def test_unknown_pipeline_tag_is_refused_at_load(project: Path) -> None:
    project.write_text(project.read_text().replace("pipeline_tag: image-text-to-text", "pipeline_tag: chat"))
    with pytest.raises(ManifestError) as caught:
        load_manifest(project)
    assert (caught.value.field, caught.value.line) == ("pipeline_tag", 14)


def test_base_model_relation_must_be_one_of_the_four(project: Path) -> None:
    project.write_text(project.read_text().replace("base_model_relation: quantized", "base_model_relation: distilled"))
    with pytest.raises(ManifestError) as caught:
        load_manifest(project)
    assert caught.value.field == "base_model_relation"
    assert caught.value.hint == "use one of adapter, merge, quantized, finetune (a quantized variant is 'quantized')"


def test_render_refuses_front_matter_the_hub_would_refuse_from_a_manifest_built_in_code() -> None:
    # A library caller can build a Manifest without load_manifest; the card still never carries bad metadata.
    manifest = load_manifest(SHIPPED_MANIFEST).model_copy(update={"license": "Apache 2.0"})
    with pytest.raises(MetadataError) as caught:
        render_card(manifest, manifest.variants[0], env=make_environment())
    assert caught.value.field == "license" and caught.value.hint == "did you mean 'apache-2.0'?"


def test_templates_next_to_the_manifest_override_one_file(project: Path) -> None:
    override_template(project, "log.md.j2", "## Logs\n\nSee {{ manifest.files.log }} on each branch.\n")
    text = render(project)
    assert "See log.txt on each branch." in text
    assert "## Quantization log" not in text
    assert "## Quantization details" in text  # the other templates are still the defaults


def test_one_process_sees_an_override_added_or_edited_after_its_first_render(project: Path) -> None:
    """Environments are kept per process (each template compiled once), never at the cost of a stale card."""
    assert "## Quantization log" in render(project)
    override = override_template(project, "log.md.j2", "## Logs, first\n")
    assert "## Logs, first" in render(project)  # a new override file
    override.write_text("## Logs, second\n")
    stat = override.stat()
    os.utime(override, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    text = render(project)
    assert "## Logs, second" in text and "## Logs, first" not in text  # an edited one


def override_template(project: Path, name: str, text: str) -> Path:
    """Write one template into the override folder next to the manifest."""
    folder = project.parent / "templates"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_undefined_variable_names_template_and_line(project: Path) -> None:
    override = override_template(project, "log.md.j2", "## Logs\n\n{{ manifest.log_file }}\n")
    with pytest.raises(TemplateError) as caught:
        render(project)
    assert caught.value.file == str(override) and caught.value.line == 3
    assert "log_file" in str(caught.value)


def test_template_syntax_error_names_template_and_line(project: Path) -> None:
    override = override_template(project, "log.md.j2", "ok\n{% if %}\n")
    with pytest.raises(TemplateError) as caught:
        render(project)
    assert caught.value.line == 2 and str(override) in str(caught.value)


def test_template_writing_its_own_front_matter_is_caught(project: Path) -> None:
    override_template(project, "card.md.j2", "---\nlicense: mit\n---\n# x\n")
    with pytest.raises(MetadataError, match="does not read back"):
        render(project)


def test_provenance_names_version_commit_and_tag(project: Path) -> None:
    repo = git.Repo.init(project.parent)
    repo.index.add(["branches.yaml"])
    commit = repo.index.commit("manifest", author=git.Actor("t", "t@example.com"))
    repo.create_tag("v1.0.0")
    provenance = read_provenance(project.parent)
    assert (provenance.commit, provenance.tag, provenance.dirty) == (commit.hexsha, "v1.0.0", False)
    text = render(project, provenance=provenance)
    assert f"from commit `{commit.hexsha[:12]}` (tag `v1.0.0`)" in text


def test_provenance_marks_uncommitted_changes(project: Path) -> None:
    repo = git.Repo.init(project.parent)
    repo.index.add(["branches.yaml"])
    repo.index.commit("manifest", author=git.Actor("t", "t@example.com"))
    project.write_text(project.read_text() + "\n")
    assert read_provenance(project.parent).dirty is True
    assert "with uncommitted changes" in render(project, provenance=read_provenance(project.parent))


def test_provenance_outside_git_has_only_the_version(tmp_path: Path) -> None:
    provenance = read_provenance(tmp_path)
    assert provenance.commit is None and provenance.version
    assert render(provenance=Provenance(version="9.9")).count("Card generated by hubpub 9.9.") == 1


def test_card_says_facts_come_from_the_manifest_without_weights() -> None:
    assert "main from the manifest; gs128 from the manifest." in render()


# -- wording a newcomer reads right ----------------------------------------------------------------------------


def newcomer_card(project: Path, *edits: tuple[str, str]) -> str:
    """The card `hubpub render` writes for main after `edits` to the shipped manifest, without its `card:` style
    (which keeps the reference card's wording)."""
    text = project.read_text()
    text = text[: text.index("\n# How the card words the facts.")] + "\n"
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    project.write_text(text)
    done = hubpub("render", "--branch", "main", cwd=project.parent)
    assert done.returncode == 0, done.stderr
    return (project.parent / "cards" / "main" / "README.md").read_text(encoding="utf-8")


def test_group_size_is_spelled_out_by_default(project: Path) -> None:
    text = newcomer_card(project, ("    group_size: 128\n", "    group_size: 0\n"))
    assert "| Group size | **per-channel** | per-tensor |" in text


def test_the_shipped_card_style_keeps_the_configs_numbers(project: Path) -> None:
    assert hubpub("render", "--branch", "main", cwd=project.parent).returncode == 0
    assert "| Group size | **-1** | 128 |" in (project.parent / "cards" / "main" / "README.md").read_text()


def test_size_under_a_gigabyte_is_in_megabytes(project: Path) -> None:
    text = newcomer_card(project, ("size_gb: 36.8", "size_gb: 0.0113"), ("size_gb: 38.8", "size_gb: 0.00005"))
    assert "| Size | **11.3MB** | **50.0KB** |" in text
    assert "0.0GB" not in text


def test_a_sentence_starting_with_a_branch_name_is_capitalised(project: Path) -> None:
    text = newcomer_card(project, ("    label: Main\n", ""))
    assert "\nThe main branch is used for the evaluation.\n" in text
    assert "| Field | main branch | gs128 branch |" in text  # a table header is not a sentence


def test_data_free_calibration_reads_none_data_free(project: Path) -> None:
    text = newcomer_card(project, ("calibration: {samples: 128, iterations: 1000, batch_size: 8}", "calibration: none"))
    assert "| Calibration samples | none (data-free) | 128 |" in text
    assert "| Iterations | **-** | 200 |" in text and "| Batch size | - | 8 |" in text


def test_group_size_style_must_be_words_or_number(project: Path) -> None:
    project.write_text(project.read_text().replace("  group_size: number", "  group_size: digits"))
    done = hubpub("render", cwd=project.parent)
    assert done.returncode == 2
    assert f"branches.yaml:{project.read_text().splitlines().index('  group_size: digits') + 1}: card.group_size: " \
           "Input should be 'words' or 'number'" in done.stderr
