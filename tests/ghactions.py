"""Run a workflow's shell steps locally, the way a GitHub runner would, for end-to-end tests.

Only what hubpub's workflow uses: `run:` steps (bash), the local composite action (`uses: ./`) with its inputs,
`env:` at job and step level, GITHUB_ENV between steps, and the few `${{ }}` expressions that appear in `env:` and
`with:` values (secrets.*, vars.*, inputs.*, github.action_path). Remote actions (checkout, setup-python) are
reported as skipped: the test machine already is what they would set up.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


@dataclass
class StepRun:
    name: str
    skipped: bool
    returncode: int = 0
    output: str = ""


@dataclass
class Run:
    steps: list[StepRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps)

    @property
    def output(self) -> str:
        return "\n".join(f"--- {s.name}{' (skipped)' if s.skipped else ''}\n{s.output}" for s in self.steps)


def load(path: Path) -> dict[str, Any]:
    # PyYAML reads the key `on` as True; give it back its name.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


def evaluate(text: str, context: Mapping[str, Mapping[str, str]]) -> str:
    """Substitute `${{ scope.name }}` with values from context (unknown values are empty, as on GitHub)."""

    def value(match: re.Match[str]) -> str:
        scope, _, name = match.group(1).partition(".")
        return str(context.get(scope, {}).get(name, ""))

    return _EXPR.sub(value, str(text))


def run_workflow(
    workflow: Path,
    job: str,
    *,
    env: Mapping[str, str],
    secrets: Mapping[str, str],
    variables: Mapping[str, str],
    workdir: Path,
    skip: tuple[str, ...] = (),
) -> Run:
    """Run `job`'s steps in `workdir`; steps whose name is in `skip` are recorded as skipped."""
    repo = workflow.parents[2]
    spec = load(workflow)["jobs"][job]
    context = {"secrets": dict(secrets), "vars": dict(variables), "github": {"action_path": str(repo)}}
    github_env = workdir / ".github_env"
    base_env = {**env, "GITHUB_ENV": str(github_env), "GITHUB_WORKSPACE": str(workdir), "GITHUB_ACTIONS": "true"}
    base_env.update({k: evaluate(v, context) for k, v in (spec.get("env") or {}).items()})
    run = Run()
    for step in spec["steps"]:
        uses = step.get("uses", "")
        if uses == "./":
            action = load(repo / "action.yml")
            inputs = {k: str(v.get("default", "")) for k, v in action.get("inputs", {}).items()}
            inputs.update({k: evaluate(v, context) for k, v in (step.get("with") or {}).items()})
            inner = {**context, "inputs": inputs}
            for sub in action["runs"]["steps"]:
                run.steps.append(_run_step(sub, inner, base_env, github_env, workdir, skip))
                if not run.ok:  # a failing step ends the composite action, and the job
                    break
        elif uses:
            run.steps.append(StepRun(uses, skipped=True))
        else:
            run.steps.append(_run_step(step, context, base_env, github_env, workdir, skip))
        if not run.ok:
            break
    return run


def _run_step(
    step: Mapping[str, Any],
    context: Mapping[str, Mapping[str, str]],
    base_env: Mapping[str, str],
    github_env: Path,
    workdir: Path,
    skip: tuple[str, ...],
) -> StepRun:
    name = step.get("name", step.get("uses", "step"))
    if "run" not in step or name in skip:
        return StepRun(name, skipped=True)
    env = {**base_env, **_read_github_env(github_env)}
    env.update({k: evaluate(v, context) for k, v in (step.get("env") or {}).items()})
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=600,
    )
    return StepRun(name, False, done.returncode, done.stdout + done.stderr)


def _read_github_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def runner_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A clean environment like a runner's: PATH and HOME from here, plus `extra`."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, **extra}
