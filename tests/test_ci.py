"""The test command a contributor reads in README.md is the one CI runs, locally (.ci/run) and on GitHub."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def readme_test_command() -> str:
    block = re.search(r"# Run the tests:\n(.+)\n", (ROOT / "README.md").read_text())
    assert block, "README.md lost its '# Run the tests:' command"
    return block.group(1).strip()


def test_ci_run_ends_with_the_readme_test_command() -> None:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[-1] == readme_test_command()


def test_ci_run_installs_the_package_once() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert len(re.findall(r"pip install[^\n]*-e ", script)) == 1


def test_the_tests_workflow_runs_the_readme_command_ruff_and_mypy_on_every_pull_request() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "tests.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as a boolean
    assert "pull_request" in triggers and "push" in triggers
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert readme_test_command() in runs
    assert any(run.strip() == "ruff check" for run in runs) and any(run.strip() == "mypy publish" for run in runs)
