"""`hubpub init`: write a starting branches.yaml from checkpoint folders, with what the weights tell filled in.

What the weights cannot tell (base model, license, calibration) is written as a "TODO: ..." string; the manifest
loader refuses any TODO left in place, naming its line, so nothing half-filled is ever published.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from publish.checkpoint.facts import WeightFacts, derive_facts
from publish.checkpoint.model import Checkpoint
from publish.checkpoint.parts import PartFacts
from publish.checkpoint.read import read_checkpoint
from publish.errors import UsageError
from publish.manifest.model import SharedFiles, check_repo_id
from publish.manifest.sharedfiles import WELL_KNOWN, unlisted
from publish.manifest.variant import check_branch_name
from publish.manifest.yamlsource import TODO
from publish.util.atomic import atomic_write

# What a Hub model page should say for each architecture suffix transformers uses.
PIPELINE_BY_ARCHITECTURE = {
    "ForConditionalGeneration": "image-text-to-text",
    "ForCausalLM": "text-generation",
}


def init(
    folders: list[Path], *, repo_id: str | None = None, out: Path, force: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Inspect each folder and write a manifest describing one variant per folder; returns the path written.

    Files beside the manifest that look like a recipe or a log but are not quantize.py and log.txt (which become
    `files:`) are passed to `warn`, naming each: no branch carries them unless they are added to `files:`.
    """
    if out.exists() and not force:
        raise UsageError(f"{out} already exists", hint="pass --force to overwrite it, or --out to write elsewhere")
    if repo_id is not None:
        try:
            check_repo_id(repo_id)
        except ValueError as error:
            raise UsageError(f"--repo-id: {error}", hint=getattr(error, "hint", None)) from None
    checkpoints = [read_checkpoint(folder.resolve()) for folder in folders]
    document = manifest_document(checkpoints, repo_id=repo_id, base=out.resolve().parent)
    header = "# Written by `hubpub init`. Replace every TODO, then run `hubpub check` and `hubpub render`.\n"
    # Flow style for short lists and mappings (`unquantized: [visual, mtp]`), as a person writes a manifest.
    atomic_write(out, header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120,
                                              default_flow_style=None))
    for warning in unlisted(out.parent, SharedFiles(**document.get("files", {})), out.name):
        if warn is not None:
            warn(warning)
    return out


def manifest_document(checkpoints: list[Checkpoint], *, repo_id: str | None, base: Path) -> dict[str, Any]:
    """The manifest as data: one variant per checkpoint, facts from its weights, TODO where they cannot tell."""
    first = checkpoints[0]
    name = Path(first.location).name
    variants = []
    branches: set[str] = set()
    for position, checkpoint in enumerate(checkpoints):
        facts = derive_facts(checkpoint)
        branch = _branch_name(position, facts, Path(checkpoint.location).name, branches)
        branches.add(branch)
        variants.append(_variant(checkpoint, facts, branch, base))
    architectures = (first.config or {}).get("architectures") or []
    pipeline = next((tag for suffix, tag in PIPELINE_BY_ARCHITECTURE.items()
                     if any(str(a).endswith(suffix) for a in architectures)), None)
    title = repo_id.split("/")[-1] if repo_id else f"{TODO}: the card's title, e.g. {name}"
    document: dict[str, Any] = {
        "repo_id": repo_id or f"{TODO}: your-namespace/{name}",
        "title": title,
        "base_model": f"{TODO}: the Hub id of the model you quantized, e.g. Qwen/Qwen3.6-27B",
        "base_model_relation": "quantized",
        "license": f"{TODO}: the base model's license id, e.g. apache-2.0",
        "pipeline_tag": pipeline or f"{TODO}: e.g. text-generation",
        "library_name": "transformers",
        "tags": ["compressed-tensors"] + sorted({_tag(part["scheme"], part["bits"]) for v in variants
                                                for part in v.get("parts", [v])}),
    }
    shared = {key: name for key, name in WELL_KNOWN.items() if (base / name).is_file()}
    if shared:
        document["files"] = shared
    document["variants"] = variants
    return document


def _variant(checkpoint: Checkpoint, facts: WeightFacts, branch: str, base: Path) -> dict[str, Any]:
    if facts.refusal is not None:
        raise UsageError(f"{checkpoint.location}: {facts.refusal}",
                         hint="run `hubpub check` on a manifest for this folder to see every finding")
    if len(facts.parts) == 1:
        scheme: dict[str, Any] = _scheme_fields(facts.parts[0])
    else:  # mixed precision: each scheme with the families it covers
        scheme = {"parts": [{**_scheme_fields(part), "families": list(part.families)} for part in facts.parts]}
    kv_cache = {"kv_cache": facts.kv_cache} if facts.kv_cache not in (None, "none") else {}
    return {
        "branch": branch,
        "path": _relative(Path(checkpoint.location), base),
        "method": {"name": f"{TODO}: e.g. AutoRound"},
        **scheme,
        **kv_cache,
        "unquantized": list(facts.unquantized),
        "calibration": {"samples": f"{TODO}: the number of calibration samples (data-free: `calibration: none`)"},
        "size_gb": float(f"{facts.size_gb:.3g}"),
    }


def _scheme_fields(part: PartFacts) -> dict[str, Any]:
    """One scheme as the manifest states it; a block-wise scheme by its block (its group size follows)."""
    fields: dict[str, Any] = {"scheme": part.scheme, "bits": part.bits}
    fields.update({"block": list(part.block)} if part.block else {"group_size": part.group_size})
    fields["symmetric"] = part.symmetric
    if part.activations != "none":
        fields["activations"] = part.activations
    return fields


def _tag(scheme: str, bits: int) -> str:
    """int8, int4 for integer schemes; the scheme's own name (fp8, nvfp4) otherwise."""
    name = scheme.lower()
    if name.startswith("w"):
        return f"int{bits}"
    return name.split("-")[0].removesuffix("a16")


def _branch_name(position: int, facts: WeightFacts, folder: str, taken: set[str]) -> str:
    """main for the first folder; then gs<N> for integer schemes in groups, else the scheme's name (fp8-dynamic,
    nvfp4; "mixed" for mixed precision), else the folder name, when git accepts it."""
    candidates = ["main"] if position == 0 else []
    integer = (facts.scheme or "").startswith("W")
    if integer and facts.group_size and facts.group_size > 0:
        candidates.append(f"gs{facts.group_size}")
    elif facts.scheme:
        candidates.append(facts.scheme.lower())
    elif facts.mixed:
        candidates.append("mixed")
    candidates += [folder, f"variant-{position + 1}"]
    for candidate in candidates:
        try:
            check_branch_name(candidate)
        except ValueError:
            continue
        if candidate not in taken:
            return candidate
    return f"variant-{position + 1}-{len(taken)}"


def _relative(folder: Path, base: Path) -> str:
    try:
        return os.path.relpath(folder, base)
    except ValueError:  # another drive on Windows
        return str(folder)
