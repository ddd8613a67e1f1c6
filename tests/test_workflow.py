"""The release workflow and the reusable action, by what they do: which pushes start a release, what hubpub is
asked to do for each tag, where the token travels, and that the documentation describes the action's real inputs.

The workflow's shell steps run for real (bash, the local action's scripts) against a stand-in `hubpub` that records
how it was called; tests/test_release.py runs the same steps against the real hubpub and the local Hub server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from . import ghactions
from .conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"
ACTION = ROOT / "action.yml"
TOKEN = "hf_" + "Workflow" * 3 + "0123456789"  # built from parts: no token-shaped string is committed
# Records each call: its arguments on one line, then whether a token and an OIDC resource reached its environment.
STAND_IN = """#!/usr/bin/env bash
{ printf '%s\\n' "$*"; printf 'env token=%s oidc=%s\\n' "${HF_TOKEN:+set}" "${HF_OIDC_RESOURCE:-}"; } >> "$HUBPUB_CALLS"
"""


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is not installed (pip install -e '.[test]')"
    return found


def release(tmp_path: Path, ref: str, *, secrets: dict[str, str] | None = None,
            variables: dict[str, str] | None = None) -> tuple[ghactions.Run, list[str]]:
    """Run the publish job for `ref` with a stand-in hubpub; the run and the calls hubpub received."""
    stand_in = tmp_path / "bin" / "hubpub"
    stand_in.parent.mkdir(exist_ok=True)
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    workdir = tmp_path / "checkout"
    workdir.mkdir(exist_ok=True)
    env = ghactions.runner_env({"PATH": f"{stand_in.parent}:/usr/bin:/bin", "GITHUB_REF": ref,
                                "HUBPUB_CALLS": str(calls)})
    run = ghactions.run_workflow(WORKFLOW, "publish", env=env, secrets=secrets or {}, variables=variables or {},
                                 workdir=workdir, skip=("Install hubpub",))
    return run, calls.read_text().splitlines()


def triggers(ref: str) -> bool:
    """Does a push of `ref` start the workflow? GitHub's filter patterns: `*` matches anything but `/`, `**`
    anything; a workflow with only tag filters ignores branch pushes."""
    on = ghactions.load(WORKFLOW)["on"]["push"]
    kind, _, name = ref.removeprefix("refs/").partition("/")
    patterns = on.get("tags" if kind == "tags" else "branches")
    if patterns is None:
        return kind == "tags" and "branches" not in on and "tags" not in on
    regexes = [re.escape(p).replace(r"\*\*", ".*").replace(r"\*", "[^/]*") for p in patterns]
    return any(re.fullmatch(r, name) for r in regexes)


# -- which pushes release ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "releases"), [
    ("refs/tags/v1.2.0", True), ("refs/tags/gs128/v1.2.0", True), ("refs/tags/latest", False),
    ("refs/tags/gs128/latest", False), ("refs/tags/a/b/v1", False), ("refs/heads/main", False),
    ("refs/heads/v1", False),
])
def test_only_release_tags_start_the_workflow(ref: str, releases: bool) -> None:
    assert triggers(ref) is releases


def test_two_releases_queue_in_one_concurrency_group() -> None:
    concurrency = ghactions.load(WORKFLOW)["concurrency"]
    groups = {ghactions.evaluate(concurrency["group"], {"github": {"repository": "o/r", "ref": ref}})
              for ref in ("refs/tags/v1.0.0", "refs/tags/gs128/v1.1.0")}
    assert len(groups) == 1 and concurrency["cancel-in-progress"] is False  # the second waits, neither is cut


# -- what hubpub is asked to do ---------------------------------------------------------------------------------


def test_a_version_tag_checks_and_publishes_every_variant_card_only(tmp_path: Path) -> None:
    run, calls = release(tmp_path, "refs/tags/v1.2.0", secrets={"HF_TOKEN": TOKEN})
    assert run.ok, run.output
    commands = calls[0::2]
    assert commands == ["check --remote --manifest branches.yaml",
                        "push --all --manifest branches.yaml --card-only --tag v1.2.0"]


def test_a_branch_tag_publishes_that_branch_under_the_version(tmp_path: Path) -> None:
    run, calls = release(tmp_path, "refs/tags/gs128/v1.2.0", secrets={"HF_TOKEN": TOKEN})
    assert run.ok, run.output
    assert calls[0::2] == ["check --remote --manifest branches.yaml --branch gs128",
                           "push --branch gs128 --manifest branches.yaml --card-only --tag v1.2.0"]


def test_a_release_name_that_is_not_a_tag_name_stops_before_hubpub_runs(tmp_path: Path) -> None:
    run, calls = release(tmp_path, "refs/tags/v1;echo")
    assert not run.ok and calls == []
    assert "is not a valid tag name" in run.output


def test_the_token_reaches_hubpub_through_its_environment_only(tmp_path: Path) -> None:
    run, calls = release(tmp_path, "refs/tags/v1.0.0", secrets={"HF_TOKEN": TOKEN})
    assert run.ok, run.output
    assert calls[1::2] == ["env token=set oidc="] * 2
    assert TOKEN not in "\n".join(calls[0::2]) and TOKEN not in run.output


def test_a_trusted_publisher_needs_no_secret(tmp_path: Path) -> None:
    run, calls = release(tmp_path, "refs/tags/v1.0.0", variables={"HF_OIDC_RESOURCE": "org/model"})
    assert run.ok, run.output
    assert calls[1::2] == ["env token= oidc=org/model"] * 2
    # huggingface_hub exchanges the job's OIDC token, which GitHub mints only with this permission.
    assert ghactions.load(WORKFLOW)["permissions"]["id-token"] == "write"


def test_a_release_for_review_opens_pull_requests_and_makes_no_tag(tmp_path: Path) -> None:
    run, calls = release(tmp_path, "refs/tags/v1.2.0", secrets={"HF_TOKEN": TOKEN},
                         variables={"HUBPUB_CREATE_PR": "true"})
    assert run.ok, run.output
    assert calls[0::2] == ["check --remote --manifest branches.yaml",
                           "push --all --manifest branches.yaml --card-only --create-pr"]
    assert "merge the pull requests, then: hubpub push --all --tag v1.2.0" in run.output


# -- rules no run can show ---------------------------------------------------------------------------------------


def test_no_expression_is_interpolated_into_a_script() -> None:
    steps = list(ghactions.load(WORKFLOW)["jobs"]["publish"]["steps"]) + list(ghactions.load(ACTION)["runs"]["steps"])
    for step in (s for s in steps if "run" in s):
        assert "${{" not in step["run"], step.get("name")  # GitHub's guidance against script injection


def test_the_documented_action_inputs_are_the_real_ones() -> None:
    docs = (ROOT / "docs" / "publishing.md").read_text(encoding="utf-8")
    snippet = next(block for block in re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL) if "uses:" in block)
    documented = yaml.safe_load(snippet)[0]["with"]
    inputs = ghactions.load(ACTION)["inputs"]
    assert set(documented) == set(inputs)
    assert {k: str(v) for k, v in documented.items()} == {k: str(v["default"]) for k, v in inputs.items()}


@pytest.mark.slow
def test_actionlint_passes_the_workflow_and_the_local_action() -> None:
    done = subprocess.run([tool("actionlint"), str(WORKFLOW)], cwd=ROOT, check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("schema", "path"), [("vendor.github-workflows", WORKFLOW), ("vendor.github-actions", ACTION)])
def test_github_json_schema_accepts_it(schema: str, path: Path) -> None:
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
                          check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
