"""The release workflow and the reusable action: lint, schema, triggers, and no secret on a command line."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT
from .ghactions import load

WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"
ACTION = ROOT / "action.yml"


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is not installed (pip install -e '.[test]')"
    return found


def run_steps() -> list[dict[str, Any]]:
    steps = list(load(WORKFLOW)["jobs"]["publish"]["steps"]) + list(load(ACTION)["runs"]["steps"])
    return [s for s in steps if "run" in s]


def test_actionlint_passes_the_workflow_and_the_local_action() -> None:
    done = subprocess.run([tool("actionlint"), str(WORKFLOW)], cwd=ROOT, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("schema", "path"), [("vendor.github-workflows", WORKFLOW), ("vendor.github-actions", ACTION)])
def test_github_json_schema_accepts_it(schema: str, path: Path) -> None:
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflow_runs_on_release_tags_only() -> None:
    on = load(WORKFLOW)["on"]
    assert set(on) == {"push"}
    assert set(on["push"]) == {"tags"}
    assert on["push"]["tags"] == ["v*", "*/v*"]


def test_workflow_can_use_a_trusted_publisher() -> None:
    workflow = load(WORKFLOW)
    assert workflow["permissions"]["id-token"] == "write"
    assert "HF_OIDC_RESOURCE" in workflow["jobs"]["publish"]["env"]


def test_two_tags_never_publish_at_once() -> None:
    concurrency = load(WORKFLOW)["concurrency"]
    assert concurrency["group"] and concurrency["cancel-in-progress"] is False


def test_no_expression_is_interpolated_into_a_script() -> None:
    for step in run_steps():
        assert "${{" not in step["run"], step.get("name")


def test_secrets_reach_steps_only_through_the_environment() -> None:
    text = WORKFLOW.read_text() + ACTION.read_text()
    for line in text.splitlines():
        if "secrets." in line:
            assert re.match(r"\s*HF_TOKEN: \$\{\{ secrets\.HF_TOKEN \}\}$", line), line
    for step in run_steps():
        assert "--token" not in step["run"] and "HF_TOKEN" not in step["run"], step.get("name")


def test_action_inputs_are_the_documented_ones() -> None:
    assert set(load(ACTION)["inputs"]) == {"manifest", "branches", "dry-run", "card-only", "hubpub-version", "release",
                                           "create-pr"}
