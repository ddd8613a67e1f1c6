"""kld.json: the evaluation artifact `hubpub eval` writes and the card is rendered from.

Reading it needs only the standard library's json, so `render` and `check` stay light (no numpy, torch or
datasets). Schema, version 1:

    {"version": 1, "hubpub_version", "direction": "KL(reference || variant)", "unit": "nats",
     "percentiles": "linear",
     "config": {"method", "approximation", "top_k", "dataset": {"name", "split", "text_sha256"},
                "sequence_length", "samples"},
     "metrics": {"median", "p90", "p99", "mean", "max", "mean_coverage", "same_top1", "positions"},
     "reference": {"model", "revision", "weights_sha256", "backend", "top_k", "tokenizer_sha256", "dump_sha256"},
     "variant": {...the same keys}, "tokenizer": {"name", "sha256"}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from publish.errors import DumpError, FactMismatch
from publish.manifest.model import Evaluation, Kld, KldMetrics, Manifest
from publish.util.safetensors_header import HeaderError, raw_header

ARTIFACT_VERSION = 1
# The artifact's name on the evaluated branch; the card links to it.
KLD_ARTIFACT = "kld.json"
# The card prints KLD figures with 6 decimals: hand-written numbers must agree at that precision.
CARD_DECIMALS = 6
_METRICS = ("median", "p90", "p99", "mean", "max", "mean_coverage", "same_top1", "positions")
_CONFIG = ("method", "approximation", "top_k", "dataset", "sequence_length", "samples")


@dataclass(frozen=True)
class KldArtifact:
    path: Path
    data: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.data["metrics"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.data["config"])


def artifact_path(manifest: Manifest) -> Path | None:
    kld = manifest.evaluation.kld
    if kld is None or kld.artifact is None:
        return None
    path = Path(kld.artifact).expanduser()
    return path if path.is_absolute() else manifest.root / path


def read_artifact(path: Path) -> KldArtifact:
    """Read and validate a kld.json; DumpError names the file and the missing or malformed key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DumpError("KLD artifact not found", file=path,
                        hint="run `hubpub eval run` to produce it, or fix evaluation.kld.artifact") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DumpError(f"KLD artifact is not readable JSON: {error}", file=path) from None
    if not isinstance(data, dict) or data.get("version") != ARTIFACT_VERSION:
        found = data.get("version") if isinstance(data, dict) else None
        raise DumpError(f"KLD artifact version {found!r} is not supported (this hubpub reads {ARTIFACT_VERSION})",
                        file=path, hint="produce it again with `hubpub eval`")
    for section, keys in (("metrics", _METRICS), ("config", _CONFIG)):
        block = data.get(section)
        if not isinstance(block, dict):
            raise DumpError(f"KLD artifact has no {section!r} object", file=path, field=section)
        for key in keys:
            if key not in block:
                raise DumpError("missing key", file=path, field=f"{section}.{key}",
                                hint="produce the artifact again with `hubpub eval`")
            if section == "metrics" and (isinstance(block[key], bool) or not isinstance(block[key], int | float)):
                raise DumpError(f"expected a number, found {block[key]!r}", file=path, field=f"metrics.{key}",
                                hint="produce the artifact again with `hubpub eval`")
    return KldArtifact(path, data)


def write_artifact(path: Path, data: dict[str, Any]) -> None:
    from publish.util.atomic import atomic_write

    atomic_write(path, json.dumps(data, indent=2) + "\n")


# (message, hint): each problem with the fix that fits its cause.
Problem = tuple[str, str]
# Settings the manifest must state (the rest, and every number, the card can take from the artifact alone).
_STATED = ("method", "dataset.name", "dataset.split", "sequence_length", "samples")


def check_artifact(manifest: Manifest) -> list[str]:
    """`hubpub check`'s view: every way evaluation.kld contradicts its artifact, or why the artifact is unusable."""
    return [message for message, _ in artifact_problems(manifest)]


def artifact_problems(manifest: Manifest) -> list[Problem]:
    """`check_artifact`, each problem with its own hint."""
    path = artifact_path(manifest)
    kld = manifest.evaluation.kld
    if path is None or kld is None:
        return []
    try:
        return problems(manifest, kld, read_artifact(path))
    except DumpError as error:
        return [(str(error).partition("\n  hint: ")[0], error.hint or "run `hubpub eval run` to produce it again")]


def problems(manifest: Manifest, kld: Kld, artifact: KldArtifact) -> list[Problem]:
    """The manifest's differences from the artifact and, when the evaluated variant's folder is here, weights other
    than the ones that were measured (compared by the index's or the single header's sha256: cheap, no tensors)."""
    found = differences(kld, artifact)
    folder = manifest.variant_path(manifest.variant(kld.branch))
    measured = (artifact.data.get("variant") or {}).get("weights_sha256")
    current = weights_sha256(folder)
    if measured and current and measured != current:
        found.append(((f"{artifact.path.name} was measured on other weights than those at {folder} (weights sha256 "
                      f"{measured[:12]}…, found {current[:12]}…)"),
                      (f"run `hubpub eval run` again on these weights, or point variant {kld.branch!r}'s `path:` at "
                      "the weights that were measured")))
    return found


def weights_sha256(folder: Path) -> str | None:
    """sha256 of the weights' index, or of the single safetensors file's header; None when neither is local."""
    if not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return hashlib.sha256(index.read_bytes()).hexdigest()
    shards = sorted(folder.glob("*.safetensors"))
    if len(shards) != 1:
        return None
    try:
        with open(shards[0], "rb") as handle:
            return hashlib.sha256(raw_header(handle)).hexdigest()
    except (OSError, HeaderError):
        return None


def differences(kld: Kld, artifact: KldArtifact) -> list[Problem]:
    """Where the manifest's evaluation.kld contradicts the artifact: configuration, positions, printed metrics."""
    config, metrics = artifact.config, artifact.metrics
    dataset = config["dataset"] if isinstance(config["dataset"], dict) else {"name": config["dataset"]}
    pairs: list[tuple[str, Any, Any]] = [
        ("method", kld.method, config["method"]),
        ("dataset.name", kld.dataset.name, dataset.get("name")),
        ("dataset.split", kld.dataset.split, dataset.get("split")),
        ("sequence_length", kld.sequence_length, config["sequence_length"]),
        ("samples", kld.samples, config["samples"]),
    ]
    if kld.approximation is not None:
        pairs.append(("approximation", kld.approximation, config["approximation"]))
    if kld.reference_top_k is not None:
        pairs.append(("reference_top_k", kld.reference_top_k, config["top_k"]))
    if kld.positions is not None:
        pairs.append(("positions", kld.positions, metrics["positions"]))
    name = artifact.path.name
    found = [(f"{field}: manifest says {mine!r}, {name} says {theirs!r}", _hint(field, name))
             for field, mine, theirs in pairs if mine != theirs]
    if kld.metrics is not None:
        for metric in ("median", "p90", "mean", "mean_coverage"):
            mine = getattr(kld.metrics, metric)
            if mine is None:
                continue
            if _printed(mine) != _printed(metrics[metric]):
                found.append(((f"metrics.{metric}: manifest says {_printed(mine)}, {name} says "
                              f"{_printed(metrics[metric])} (compared as the card prints them)"),
                              _hint(f"metrics.{metric}", name)))
    return found


def _hint(field: str, artifact: str) -> str:
    """A setting the manifest states is corrected in place; a hand-written copy of a figure is better removed."""
    if field in _STATED:
        return (f"write what {artifact} says in evaluation.kld.{field}, or run `hubpub eval run` again if the "
                "manifest is right")
    return (f"remove the hand-written evaluation.kld.{field} (the card takes it from {artifact}), or run "
            "`hubpub eval run` again")


def _printed(value: Any) -> str:
    return f"{float(value):.{CARD_DECIMALS}f}"


def filled(kld: Kld, artifact: KldArtifact) -> Kld:
    """The evaluation with the artifact's positions, metrics and configuration where the manifest leaves them out."""
    config, metrics = artifact.config, artifact.metrics
    top_k = kld.reference_top_k if kld.reference_top_k is not None else (
        None if config["approximation"] == "full-vocab" else config["top_k"])
    values = KldMetrics(
        median=metrics["median"], p90=metrics["p90"], mean=metrics["mean"],
        mean_coverage=metrics["mean_coverage"] if top_k is not None else None,
    )
    return kld.model_copy(update={
        "positions": metrics["positions"], "metrics": values, "reference_top_k": top_k,
        "approximation": kld.approximation or config["approximation"],
    })


def resolve(manifest: Manifest) -> Manifest:
    """The manifest with evaluation.kld filled from its artifact (unchanged when it names none).

    A hand-written number or setting that contradicts the artifact, or local weights other than the measured ones,
    is a FactMismatch: the card never shows a figure the evaluation did not produce, and the manifest is never
    silently overridden.
    """
    path = artifact_path(manifest)
    kld = manifest.evaluation.kld
    if path is None or kld is None:
        return manifest
    artifact = read_artifact(path)
    found = problems(manifest, kld, artifact)
    if found:
        raise FactMismatch(
            "evaluation.kld disagrees with its artifact:\n  - " + "\n  - ".join(message for message, _ in found),
            file=manifest.source, field="evaluation.kld",
            hint="; ".join(dict.fromkeys(hint for _, hint in found)),
        )
    return manifest.model_copy(update={"evaluation": Evaluation(kld=filled(kld, artifact))})
