"""The Hub's model-card metadata rules, checked offline.

The Hub validates a README's front matter when it is pushed (`/api/validate-yaml`) and silently drops or refuses
what it does not know. hubpub checks the same rules before anything is sent, so a typo in `branches.yaml` fails
at render time, naming the field. The lists follow the Hub's documentation: license identifiers from
"Licenses" (docs/hub/repositories-licenses.md) and pipeline tags from huggingface.js `tasks` (PIPELINE_DATA).
Pure: a dict in, a list of (field, message, hint) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from publish.util.repoid import repo_id_problem
from publish.util.suggest import closest

LICENSES = frozenset(
    ["apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0", "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause", "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "h-research", "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr", "mpl-2.0", "odc-by", "odbl", "openmdw-1.0", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "fair-noncommercial-research-license", "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "unknown", "other"]
)

PIPELINE_TAGS = frozenset(
    ["text-classification", "token-classification", "table-question-answering", "question-answering", "zero-shot-classification", "translation", "summarization", "feature-extraction", "text-generation", "fill-mask", "sentence-similarity", "text-to-speech", "text-to-audio", "automatic-speech-recognition", "audio-to-audio", "audio-classification", "audio-text-to-text", "voice-activity-detection", "depth-estimation", "image-classification", "object-detection", "image-segmentation", "text-to-image", "image-to-text", "image-to-image", "image-to-video", "unconditional-image-generation", "video-classification", "reinforcement-learning", "robotics", "tabular-classification", "tabular-regression", "tabular-to-text", "table-to-text", "multiple-choice", "text-ranking", "text-retrieval", "time-series-forecasting", "text-to-video", "image-text-to-text", "image-text-to-image", "image-text-to-video", "visual-question-answering", "document-question-answering", "zero-shot-image-classification", "graph-ml", "mask-generation", "zero-shot-object-detection", "text-to-3d", "image-to-3d", "image-feature-extraction", "video-text-to-text", "keypoint-detection", "visual-document-retrieval", "any-to-any", "video-to-video", "other"]
)

BASE_MODEL_RELATIONS = ("adapter", "merge", "quantized", "finetune")

# (field, message, hint): the fix is kept apart from the message so it can be printed beneath it.
Problem = tuple[str, str, str | None]


def _suggest(value: str, choices: frozenset[str] | tuple[str, ...]) -> str | None:
    close = closest(value.lower(), sorted(choices), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None


def _check_license(meta: Mapping[str, Any]) -> list[Problem]:
    license_id = meta.get("license")
    if license_id is None:
        return []
    if not isinstance(license_id, str) or license_id not in LICENSES:
        hint = _suggest(str(license_id), LICENSES) or "use 'other', with license_name and license_link"
        return [("license", f"{license_id!r} is not a license identifier the Hub knows", hint)]
    if license_id == "other" and not (meta.get("license_name") and meta.get("license_link")):
        return [("license", "license 'other' needs license_name and license_link so the Hub can show it",
                 "add `license_name:` and `license_link:`")]
    return []


def _check_pipeline_tag(meta: Mapping[str, Any]) -> list[Problem]:
    tag = meta.get("pipeline_tag")
    if tag is None or (isinstance(tag, str) and tag in PIPELINE_TAGS):
        return []
    hint = _suggest(str(tag), PIPELINE_TAGS) or "use a task id from huggingface.co/tasks, e.g. text-generation"
    return [("pipeline_tag", f"{tag!r} is not a Hub pipeline tag", hint)]


def _check_base_model(meta: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    base = meta.get("base_model")
    bases = base if isinstance(base, list) else [base] if base is not None else []
    for entry in bases:
        why = "expected 'namespace/name'" if not isinstance(entry, str) or "/" not in entry else repo_id_problem(
            entry, namespaced=False)
        if why is not None:
            problems.append(("base_model", f"{entry!r} is not a Hub model id (namespace/name): {why}",
                             "give the id from the base model's Hub page, e.g. Qwen/Qwen3.6-27B"))
    relation = meta.get("base_model_relation")
    if relation is not None:
        if relation not in BASE_MODEL_RELATIONS:
            allowed = ", ".join(BASE_MODEL_RELATIONS)
            problems.append(("base_model_relation", f"{relation!r} is not a base model relation",
                             f"use one of {allowed} (a quantized variant is 'quantized')"))
        elif not bases:
            problems.append(("base_model_relation", "base_model_relation needs a base_model", "add `base_model:`"))
    return problems


def _check_strings(meta: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    tags = meta.get("tags", [])
    if not isinstance(tags, list | tuple) or not all(isinstance(tag, str) and tag for tag in tags):
        problems.append(("tags", "tags must be a list of non-empty strings", "e.g. tags: [compressed-tensors, int8]"))
    for field in ("library_name", "license_name", "license_link"):
        value = meta.get(field)
        if value is not None and not (isinstance(value, str) and value.strip()):
            problems.append((field, f"{field} must be a non-empty string", "write it as text, or remove the key"))
    return problems


def metadata_problems(meta: Mapping[str, Any]) -> list[Problem]:
    """Every rule the front matter breaks, as (field, message, hint), in a stable order; empty when it is valid."""
    return [
        *_check_license(meta),
        *_check_pipeline_tag(meta),
        *_check_base_model(meta),
        *_check_strings(meta),
    ]
