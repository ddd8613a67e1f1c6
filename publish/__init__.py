"""hubpub: publish quantized model variants to Hugging Face Hub branches, with checked checkpoints and true cards.

The library does everything the command line does; the CLI only parses arguments, prints and picks exit codes.

    from publish import Hub, PushSettings, load_manifest, check, render, plan, push

    manifest = load_manifest("branches.yaml")
    report = check(manifest)              # findings per variant; report.ok
    render(manifest)                      # cards/<branch>/README.md
    hub = Hub.from_environment()          # HF_ENDPOINT, HF_TOKEN; Hub(..., emit=) receives retry events
    plan(manifest, hub, PushSettings(branch="gs128"))   # what a push would change, uploading nothing
    push(manifest, hub, PushSettings(tag="v1.0.0"))     # one verified commit per variant

Every failure is a `HubpubError` (publish.errors); its `exit_code` is what the CLI exits with: 1 when the input
was understood but is not fit to publish (failed checks, a Hub refusal, a concurrent push), 2 when the input or
usage is wrong (a bad manifest, a missing folder, no token). Names are imported on first use, so
`import publish` stays cheap (no torch, no huggingface_hub).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it (setuptools dynamic version), and reading it here
# costs nothing, where importlib.metadata would be paid by every command (see docs/benchmarks.md, render).
__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "load_manifest": "publish.manifest.model",
    "Manifest": "publish.manifest.model",
    "Variant": "publish.manifest.variant",
    "check": "publish.commands.check",
    "render": "publish.commands.render",
    "init": "publish.commands.init",
    "plan": "publish.commands.push",
    "push": "publish.commands.push",
    "PushSettings": "publish.commands.push",
    "Hub": "publish.hub.client",
    "HashCache": "publish.hub.hashcache",
    "ReportCache": "publish.checkpoint.reportcache",
    "eval_dump": "publish.commands.eval",
    "eval_score": "publish.commands.eval",
    "eval_run": "publish.commands.eval",
    "ModelSource": "publish.commands.eval",
    "TextSource": "publish.commands.eval",
    "DumpSettings": "publish.commands.eval",
    "RunSettings": "publish.commands.eval",
    "Execution": "publish.commands.eval",
    "HubpubError": "publish.errors",
}
# Where the public name differs from the defining module's own name.
_RENAMED = {"eval_dump": "dump", "eval_score": "score", "eval_run": "run"}

__all__ = [
    "DumpSettings",
    "Execution",
    "HashCache",
    "Hub",
    "HubpubError",
    "Manifest",
    "ModelSource",
    "PushSettings",
    "ReportCache",
    "RunSettings",
    "TextSource",
    "Variant",
    "__version__",
    "check",
    "eval_dump",
    "eval_run",
    "eval_score",
    "init",
    "load_manifest",
    "plan",
    "push",
    "render",
]

if TYPE_CHECKING:
    from publish.checkpoint.reportcache import ReportCache
    from publish.commands.check import check
    from publish.commands.eval import DumpSettings, Execution, ModelSource, RunSettings, TextSource
    from publish.commands.eval import dump as eval_dump
    from publish.commands.eval import run as eval_run
    from publish.commands.eval import score as eval_score
    from publish.commands.init import init
    from publish.commands.push import PushSettings, plan, push
    from publish.commands.render import render
    from publish.errors import HubpubError
    from publish.hub.client import Hub
    from publish.hub.hashcache import HashCache
    from publish.manifest.model import Manifest, load_manifest
    from publish.manifest.variant import Variant


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'publish' has no attribute {name!r}")
    value = getattr(import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value
