"""kld.json: the evaluation artifact `hubpub eval` writes and the card is rendered from.

Reading it needs only the standard library's json, so `render` and `check` stay light (no numpy, torch or
datasets). Version 2, written now:

    {"version": 2, "hubpub_version", "direction": "KL(reference || variant)", "unit": "nats",
     "percentiles": "linear",
     "config": {"method", "approximation", "top_k", "dataset": {"name", "split", "text_sha256"},
                "sequence_length", "samples"},
     "reference": {"model", "revision", "weights_sha256", "backend", "top_k", "tokenizer_sha256", "dump_sha256"},
     "tokenizer": {"name", "sha256"},
     "variants": [{"branch", "identity": {...the reference's keys}, "statistics": {...}, "sha256"}]}

`statistics` is what `publish.eval.statistics.KldStatistics.to_json` writes (the card's summary, median, P90, P99,
mean, max, coverage and same-top-1, is read from it), and `sha256` seals a variant's entry together with the keys
every variant shares: a number edited after `hubpub eval` wrote it no longer matches. Version 1 (still read) holds
one unnamed variant: `"metrics": {"median", "p90", "p99", "mean", "max", "mean_coverage", "same_top1",
"positions"}` and its identity as `"variant"`; it has no seal, so only numbers that contradict each other or the
manifest are caught.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from publish.errors import DumpError, FactMismatch
from publish.manifest.artifactschema import consistency, malformed, seal, summary
from publish.manifest.evaluation import Dataset, Evaluation, Kld, KldMetrics, KldResult
from publish.manifest.model import Manifest
from publish.util.safetensors_header import HeaderError, raw_header

ARTIFACT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# The artifact's name on each evaluated branch; the card links to it.
KLD_ARTIFACT = "kld.json"
# The card prints KLD figures with 6 decimals: hand-written numbers must agree at that precision.
CARD_DECIMALS = 6
SUMMARY = ("median", "p90", "p99", "mean", "max", "mean_coverage", "same_top1", "positions")
_CONFIG = ("method", "approximation", "top_k", "dataset", "sequence_length", "samples")
REWRITE = "never edit kld.json by hand: run `hubpub eval run` (or `hubpub eval score`) again to rewrite it"


@dataclass(frozen=True)
class VariantFigures:
    """One evaluated variant in an artifact: its branch (None in version 1), identity, summary and statistics."""

    branch: str | None
    identity: dict[str, Any]
    summary: dict[str, Any]
    statistics: dict[str, Any] | None
    sealed: bool | None  # None: version 1, which has no seal


@dataclass(frozen=True)
class KldArtifact:
    path: Path
    data: dict[str, Any]

    @property
    def version(self) -> int:
        return int(self.data["version"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.data["config"])

    @property
    def variants(self) -> tuple[VariantFigures, ...]:
        if self.version == 1:
            return (VariantFigures(None, dict(self.data.get("variant") or {}), dict(self.data["metrics"]), None,
                                   None),)
        return tuple(VariantFigures(entry["branch"], dict(entry["identity"]), summary(entry["statistics"]),
                                    entry["statistics"], seal(self.data, entry) == entry["sha256"])
                     for entry in self.data["variants"])

    def figures(self, branch: str) -> VariantFigures | None:
        """The branch's figures; a version 1 artifact's one variant stands for whichever single branch asks."""
        found = self.variants
        if self.version == 1:
            return found[0]
        return next((f for f in found if f.branch == branch), None)


@dataclass(frozen=True)
class KldProblem:
    """Where evaluation.kld and its artifact disagree, or why the artifact cannot be trusted; `branch` None
    concerns every evaluated variant."""

    message: str
    hint: str
    branch: str | None = None


def new_artifact(shared: dict[str, Any], variants: list[dict[str, Any]]) -> dict[str, Any]:
    """A version 2 artifact: `shared` (hubpub_version, config, reference, tokenizer) and the variants' entries
    (branch, identity, statistics), each sealed."""
    data: dict[str, Any] = {"version": ARTIFACT_VERSION, "direction": "KL(reference || variant)", "unit": "nats",
                            "percentiles": "linear", **shared, "variants": []}
    data["variants"] = [{**entry, "sha256": seal(data, entry)} for entry in variants]
    return data


def artifact_path(manifest: Manifest) -> Path | None:
    kld = manifest.evaluation.kld
    if kld is None or kld.artifact is None:
        return None
    path = Path(kld.artifact).expanduser()
    return path if path.is_absolute() else manifest.root / path


def read_artifact(path: Path) -> KldArtifact:
    """Read and validate a kld.json of either version; DumpError names the file and the missing or malformed key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DumpError("KLD artifact not found", file=path,
                        hint="run `hubpub eval run` to produce it, or fix evaluation.kld.artifact") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DumpError(f"KLD artifact is not readable JSON: {error}", file=path) from None
    found = data.get("version") if isinstance(data, dict) else None
    if found not in READABLE_VERSIONS or isinstance(found, bool):
        raise DumpError(f"KLD artifact version {found!r} is not supported (this hubpub reads versions "
                        f"{' and '.join(map(str, READABLE_VERSIONS))})", file=path,
                        hint="produce it again with `hubpub eval`")
    problem = malformed(data)
    if problem is not None:
        field, message = problem
        raise DumpError(message, file=path, field=field, hint="produce the artifact again with `hubpub eval`")
    return KldArtifact(path, data)


def write_artifact(path: Path, data: dict[str, Any]) -> None:
    from publish.util.atomic import atomic_write

    atomic_write(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def check_artifact(manifest: Manifest, branch: str | None = None) -> list[KldProblem]:
    """`hubpub check`'s view: every way evaluation.kld contradicts its artifact, or why the artifact cannot be used
    (for `branch`: the problems that concern it)."""
    path = artifact_path(manifest)
    if path is None or manifest.evaluation.kld is None:
        return []
    try:
        found = problems(manifest, read_artifact(path))
    except DumpError as error:
        found = [KldProblem(str(error).partition("\n  hint: ")[0], error.hint or "run `hubpub eval run` to produce "
                                                                             "it again")]
    return [p for p in found if branch is None or p.branch in (None, branch)]


def problems(manifest: Manifest, artifact: KldArtifact) -> list[KldProblem]:
    """The artifact's own inconsistencies, the manifest's differences from it, and evaluated variants whose local
    weights are not the measured ones (compared by the index's or the single header's sha256: cheap, no tensors)."""
    kld = manifest.evaluation.kld
    assert kld is not None
    name = artifact.path.name
    found = [KldProblem(f"{name}: {message}", REWRITE, branch) for branch, message in consistency(artifact.data)]
    found += differences(kld, artifact, manifest.kld_branches)
    for branch in manifest.kld_branches:
        figures = artifact.figures(branch)
        if figures is None:
            continue
        folder = manifest.variant_path(manifest.variant(branch))
        measured, current = figures.identity.get("weights_sha256"), weights_sha256(folder)
        if measured and current and measured != current:
            found.append(KldProblem(
                f"{name} was measured on other weights than those at {folder} (weights sha256 {measured[:12]}…, "
                f"found {current[:12]}…)", f"run `hubpub eval run` again on these weights, or point variant "
                                          f"{branch!r}'s `path:` at the weights that were measured", branch))
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


def differences(kld: Kld, artifact: KldArtifact, branches: tuple[str, ...]) -> list[KldProblem]:
    """Where evaluation.kld contradicts the artifact: configuration, positions, evaluated branches, and hand-written
    metrics. Only what the manifest sets is compared; the rest is taken from the artifact."""
    name = artifact.path.name
    config = artifact.config
    dataset = config["dataset"] if isinstance(config["dataset"], dict) else {"name": config["dataset"]}
    pairs: list[tuple[str, Any, Any]] = []
    if kld.given("method"):
        pairs.append(("method", kld.method, config["method"]))
    if kld.dataset is not None:
        pairs += [("dataset.name", kld.dataset.name, dataset.get("name")),
                  ("dataset.split", kld.dataset.split, dataset.get("split"))]
    for field, key in (("sequence_length", "sequence_length"), ("samples", "samples"),
                       ("approximation", "approximation"), ("reference_top_k", "top_k")):
        if getattr(kld, field) is not None:
            pairs.append((field, getattr(kld, field), config[key]))
    if kld.positions is not None:
        pairs.append(("positions", kld.positions, artifact.variants[0].summary["positions"]))
    found = [KldProblem(f"{field}: manifest says {mine!r}, {name} says {theirs!r}",
                        f"write what {name} says in evaluation.kld.{field}, or run `hubpub eval run` again if the "
                        "manifest is right")
             for field, mine, theirs in pairs if mine != theirs]
    if artifact.version == 1 and len(branches) > 1:
        found.append(KldProblem(f"{name} is version 1, which holds one variant; evaluation.kld names "
                                f"{len(branches)}", "run `hubpub eval run` to measure every branch into a "
                                                    "version 2 kld.json"))
    for branch in branches:
        if artifact.figures(branch) is None:
            measured = ", ".join(str(f.branch) for f in artifact.variants)
            found.append(KldProblem(f"{name} has no figures for branch {branch!r} (it has {measured})",
                                    "run `hubpub eval run` to evaluate it", branch))
    figures = artifact.figures(kld.branch) if kld.metrics is not None and kld.branch is not None else None
    for field in ("median", "p90", "mean", "mean_coverage"):
        mine = None if figures is None or kld.metrics is None else getattr(kld.metrics, field)
        if figures is not None and mine is not None and _printed(mine) != _printed(figures.summary[field]):
            found.append(KldProblem(
                f"metrics.{field}: manifest says {_printed(mine)}, {name} says {_printed(figures.summary[field])} "
                "(compared as the card prints them)",
                f"remove the hand-written evaluation.kld.metrics.{field} (the card takes it from {name}), or run "
                "`hubpub eval run` again",
                kld.branch))
    return found


def _printed(value: Any) -> str:
    return f"{float(value):.{CARD_DECIMALS}f}"


def filled(kld: Kld, artifact: KldArtifact, branches: tuple[str, ...]) -> Kld:
    """The evaluation with the artifact's configuration where the manifest leaves it out, its positions, and each
    evaluated branch's figures."""
    config = artifact.config
    approximation = kld.approximation or config["approximation"]
    top_k = kld.reference_top_k if kld.reference_top_k is not None else (
        None if approximation == "full-vocab" else config["top_k"])
    dataset = config["dataset"] if isinstance(config["dataset"], dict) else {"name": config["dataset"]}
    results = []
    for branch in branches:
        figures = artifact.figures(branch)
        assert figures is not None, "differences() reports a branch the artifact lacks"
        values = figures.summary
        metrics = KldMetrics(median=values["median"], p90=values["p90"], mean=values["mean"],
                             mean_coverage=values["mean_coverage"] if top_k is not None else None)
        results.append(KldResult(branch=branch, metrics=metrics, statistics=figures.statistics))
    update: dict[str, Any] = {
        "positions": artifact.variants[0].summary["positions"], "reference_top_k": top_k,
        "approximation": approximation, "dataset": kld.dataset or Dataset(name=dataset["name"],
                                                                          split=dataset.get("split")),
        "sequence_length": kld.sequence_length or config["sequence_length"],
        "samples": kld.samples or config["samples"], "results": tuple(results),
        "metrics": results[0].metrics if kld.branch is not None else None,
    }
    if not kld.given("method"):
        update["method"] = config["method"]
    return kld.model_copy(update=update)


def resolve(manifest: Manifest) -> Manifest:
    """The manifest with evaluation.kld filled from its artifact (unchanged when it names none).

    A hand-written number or setting that contradicts the artifact, an artifact edited by hand, or local weights
    other than the measured ones, is a FactMismatch: the card never shows a figure the evaluation did not produce,
    and the manifest is never silently overridden.
    """
    path = artifact_path(manifest)
    kld = manifest.evaluation.kld
    if path is None or kld is None:
        return manifest
    artifact = read_artifact(path)
    found = problems(manifest, artifact)
    if found:
        hints = list(dict.fromkeys(p.hint for p in found))
        raise FactMismatch(
            "evaluation.kld disagrees with its artifact:\n  - " + "\n  - ".join(p.message for p in found),
            file=manifest.source, field="evaluation.kld", hint="; ".join(hints),
        )
    return manifest.model_copy(
        update={"evaluation": Evaluation(kld=filled(kld, artifact, manifest.kld_branches))})

