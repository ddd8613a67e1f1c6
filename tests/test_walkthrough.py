"""README.md's walkthrough, run as written: every command of "Publish your own checkpoint" on the tiny
two-variant checkpoint, against the local Hub of "Try it on a local Hub", in-process. Each output block of the
README must match what the command printed (`...` stands for lines left out), so the README cannot drift."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from .conftest import HUB_TOKEN, ROOT
from .hubserver import HubServer

README = ROOT / "README.md"
# The local Hub's endpoint as the README writes it; the test's server listens elsewhere.
README_ENDPOINT = "http://127.0.0.1:8080"
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def section(heading: str) -> str:
    """README.md from `heading` to the next heading of its level, outside code blocks (a YAML comment is no
    heading)."""
    lines, taken, fenced = README.read_text(encoding="utf-8").splitlines(), [], False
    start = lines.index(heading) + 1
    for line in lines[start:]:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            break
        taken.append(line)
    return "\n".join(taken) + "\n"


def code_blocks(markdown: str) -> list[tuple[str, str]]:
    """Each fenced block as (language, body), in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", markdown, re.MULTILINE | re.DOTALL)]


def matches(expected: list[str], actual: list[str]) -> bool:
    """`actual` is `expected` line for line, where an `...` line stands for any run of lines (none included)."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[start:]) for start in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


def normalised(text: str, endpoint: str) -> list[str]:
    """Lines with what differs from run to run replaced: the server's port, commit ids."""
    text = text.replace(endpoint, README_ENDPOINT)
    text = re.sub(r"\b[0-9a-f]{40}\b", "<commit>", text)
    text = re.sub(r"\bverified [0-9a-f]{12}\b", "verified <commit>", text)
    return text.splitlines()


def run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The real CLI in-process, as conftest's `hubpub`, returning what a terminal shows: stdout and stderr
    interleaved."""
    from publish.cli.main import main

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    finally:
        os.chdir(previous)
    return result.exit_code, result.output


def apply_fill_in(manifest: Path, lines: str) -> None:
    """What the README asks a user to do: each line that still says TODO becomes the line shown for its key."""
    values = dict(line.split(": ", 1) for line in lines.splitlines())
    text = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        found = re.match(r"^(\s*(?:- )?)(\w+): (.*)$", line)
        if found and found.group(2) in values and "TODO" in found.group(3):
            line = f"{found.group(1)}{found.group(2)}: {values[found.group(2)]}"
        text.append(line)
    manifest.write_text("\n".join(text) + "\n", encoding="utf-8")
    assert "'TODO" not in manifest.read_text(encoding="utf-8")


def local_hub_environment(hub: HubServer) -> dict[str, str]:
    """The README's `export` line, pointed at this test's server and token."""
    (setup,) = [body for lang, body in code_blocks(section("## Try it on a local Hub"))
                if lang == "bash"]
    server, export = setup.splitlines()
    assert shlex.split(server)[:3] == ["python", "-m", "tests.hubserver"]
    assert {"--port", "--root", "--token"} <= set(shlex.split(server))
    readme = dict(word.split("=", 1) for word in shlex.split(export)[1:])
    assert readme["HF_ENDPOINT"] == README_ENDPOINT and readme["HF_TOKEN"] in server
    return {**readme, "HF_ENDPOINT": hub.url, "HF_TOKEN": HUB_TOKEN}


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path, checkpoints: dict[str, Path], hub: HubServer) -> None:
    env = local_hub_environment(hub)
    tree, *steps = code_blocks(section("## Publish your own checkpoint"))
    # The layout the README starts from: the recipe, its log, and one folder per variant.
    project = tmp_path / "my-model"
    (project / "weights").mkdir(parents=True)
    for name in ("quantize.py", "log.txt", "main/", "gs128/"):
        assert name in tree[1]
    (project / "quantize.py").write_text("# The AutoRound recipe that made both variants\n")
    (project / "log.txt").write_text("quantization finished\n")
    for branch in ("main", "gs128"):  # hard links: the session's checkpoints, without copying their bytes
        shutil.copytree(checkpoints[branch], project / "weights" / branch, copy_function=os.link)

    cwd, printed, manifests, ran = tmp_path, "", 0, []
    for lang, body in steps:
        if lang == "bash":
            for line in body.splitlines():
                command, _, comment = line.partition("#")
                words = shlex.split(command)
                if words[0] == "cd":
                    cwd = cwd / words[1]
                    continue
                assert words[0] == "hubpub", line
                code = re.search(r"exit code (\d)", comment)
                status, printed = run(words[1:], cwd, env)
                assert status == (int(code.group(1)) if code else 0), printed
                ran.append(" ".join(words[1:2]))
        elif lang == "text":
            expected, actual = body.splitlines(), normalised(printed, hub.url)
            assert matches(normalised(body, hub.url), actual), "\n".join(["README:", *expected, "printed:", *actual])
        elif lang == "yaml":
            manifest = cwd / "branches.yaml"
            if manifests == 0:
                assert manifest.read_text(encoding="utf-8") == body  # what `init` writes, exactly
            else:
                apply_fill_in(manifest, body)
            manifests += 1
    assert ran == ["init", "render", "check", "render", "plan", "push"] and manifests == 2

    # The Hub now holds both branches, each with its card, its weights and the shared files.
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    for branch in ("main", "gs128"):
        files = set(api.list_repo_files("your-name/MyModel-INT8", revision=branch))
        assert {"README.md", "quantize.py", "log.txt", "config.json", "model.safetensors.index.json"} <= files


@pytest.mark.parametrize(("expected", "actual", "result"), [
    (["a", "...", "d"], ["a", "b", "c", "d"], True),
    (["a", "...", "d"], ["a", "d"], True),
    (["a", "d"], ["a", "b", "d"], False),
    (["a", "..."], ["a", "b"], True),
    (["a"], ["a", "b"], False),
])
def test_output_blocks_match_line_for_line_with_gaps_only_where_the_readme_says(
    expected: list[str], actual: list[str], result: bool
) -> None:
    assert matches(expected, actual) is result


def test_the_readme_stays_short_and_keeps_the_ci_test_command() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 15 * 1024
    assert "# Run the tests:\npip install -e '.[test]' && python -m pytest -q -n auto --maxprocesses 4 --dist worksteal\n" in text
    for page in ("manifest", "checks", "publishing", "evaluation", "benchmarks", "architecture"):
        assert f"(docs/{page}.md)" in text and (ROOT / "docs" / f"{page}.md").is_file()
