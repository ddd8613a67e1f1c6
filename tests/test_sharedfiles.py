"""The files around a manifest: `exclude:` globs, shared files colliding with a checkpoint's, and the recipe or log
lying beside the manifest that `files:` does not list. Through the real CLI, against the local Hub for `plan`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from publish.errors import ManifestError
from publish.manifest.model import load_manifest
from publish.manifest.sharedfiles import excluded

from .conftest import hubpub
from .hubserver import HubServer
from .test_publishing import edit
from .test_push import hubpub_cli

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


@pytest.fixture
def own_copy(weighed: Path, checkpoints: dict[str, Path]) -> Path:
    """The weighed manifest with main pointed at a copy of its checkpoint that a test may add files to."""
    folder = weighed.parent / "main-copy"
    shutil.copytree(checkpoints["main"], folder)
    return edit(weighed, lambda data: data["variants"][0].update(path=str(folder)))


@pytest.mark.parametrize(("path", "patterns", "expected"), [
    ("optimizer.pt", ["*.pt"], "*.pt"),
    ("runs/events.out", ["runs/"], "runs/"),
    ("deep/runs/x.log", ["*.log"], "*.log"),
    ("model.safetensors", ["*.pt", "*.bin"], None),
])
def test_exclude_globs_follow_huggingface_hubs_ignore_patterns(path: str, patterns: list[str], expected: str | None) -> None:
    assert excluded(path, patterns) == expected


def test_plan_shows_excluded_files_and_leaves_them_out(own_copy: Path, hub: HubServer) -> None:
    folder = Path(yaml.safe_load(own_copy.read_text())["variants"][0]["path"])
    (folder / "optimizer.pt").write_bytes(b"\0" * 64)
    (folder / "runs").mkdir()
    (folder / "runs" / "train.log").write_text("step 1\n")
    (folder / "runs" / ".env").write_text("SECRET=1\n")  # excluded: never read, never refused
    edit(own_copy, lambda data: (data["variants"][0].update(exclude=["runs/"]), data["files"].update(exclude=["*.pt"])))
    done = hubpub_cli("plan", "--manifest", str(own_copy), "--branch", "main", "--json", hub=hub, cwd=own_copy.parent)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if "left out" in line]
    assert notes == [
        f"main: {folder.resolve() / 'optimizer.pt'} is left out by `exclude: *.pt`",
        f"main: {folder.resolve() / 'runs/.env'} is left out by `exclude: runs/`",
        f"main: {folder.resolve() / 'runs/train.log'} is left out by `exclude: runs/`",
    ]
    (variant,) = json.loads(done.stdout)["variants"]
    paths = {action["path"] for action in variant["actions"]}
    assert "config.json" in paths and not paths & {"optimizer.pt", "runs/train.log", "runs/.env"}


def test_a_shared_file_on_a_checkpoint_files_path_is_a_manifest_error(
    own_copy: Path, checkpoints: dict[str, Path]
) -> None:
    folder = Path(yaml.safe_load(own_copy.read_text())["variants"][0]["path"])
    shutil.copy(folder / "tokenizer_config.json", own_copy.parent / "tokenizer_config.json")
    edit(own_copy, lambda data: data["files"].update(other=["tokenizer_config.json"]))
    done = hubpub("plan", "--manifest", str(own_copy), cwd=own_copy.parent)
    assert done.returncode == 2
    at = line_of(own_copy, "- tokenizer_config.json")
    hint = ("    hint: to publish the shared one, add 'tokenizer_config.json' to the variant's `exclude:` (or to "
            "`files.exclude:` for every variant); to keep the checkpoint's, remove it from `files:`")
    assert done.stderr.splitlines() == [
        f"error: {own_copy}: 2 problems, in line order:",
        *[text
          for branch, checkpoint in (("main", folder), ("gs128", checkpoints["gs128"]))
          for text in ((f"  {own_copy}:{at}: files.other[0]: shared file 'tokenizer_config.json' and "
                       f"{checkpoint / 'tokenizer_config.json'} (variant {branch!r}) would both land on "
                       "'tokenizer_config.json'; one of them would silently win"), hint)],
    ]
    # Excluding the checkpoints' own file settles it: the shared one is published.
    edit(own_copy, lambda data: data["files"].update(exclude=["tokenizer_config.json"]))
    assert load_manifest(own_copy).files.exclude == ("tokenizer_config.json",)


def test_a_shared_readme_would_hide_the_card(project: Path) -> None:
    (project.parent / "README.md").write_text("# notes\n")
    edit(project, lambda data: data["files"].update(other=["README.md"]))
    with pytest.raises(ManifestError, match="would land on README.md, the card hubpub renders"):
        load_manifest(project)


def test_plan_warns_about_a_recipe_or_log_that_files_does_not_list(weighed: Path, hub: HubServer) -> None:
    edit(weighed, lambda data: data["files"].pop("log"))
    (weighed.parent / "quantize_gs128.py").write_text("# the gs128 recipe\n")
    done = hubpub_cli("plan", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    warnings = done.stderr.splitlines()
    at = warnings.index(f"warning: {weighed.parent / 'log.txt'} is beside branches.yaml but not in its `files:`, "
                        "so no branch carries it")
    assert warnings[at + 1] == "  hint: to publish it, list it under `files:` as `log: log.txt`"
    assert (f"warning: {weighed.parent / 'quantize_gs128.py'} is beside branches.yaml but not in its `files:`, so no "
            "branch carries it") in warnings
    assert "  hint: to publish it, list it under `files:` as `other: [quantize_gs128.py]`" in warnings


def test_init_warns_about_a_recipe_it_does_not_list(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "quantize.py").write_text("# recipe\n")
    (tmp_path / "quantize-gs128.py").write_text("# the other recipe\n")
    done = hubpub("init", str(checkpoints["main"]), "--repo-id", "me/Tiny-INT8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[:2] == [
        "warning: quantize-gs128.py is beside branches.yaml but not in its `files:`, so no branch carries it",
        "  hint: to publish it, list it under `files:` as `other: [quantize-gs128.py]`",
    ]
    assert yaml.safe_load((tmp_path / "branches.yaml").read_text())["files"] == {"recipe": "quantize.py"}
