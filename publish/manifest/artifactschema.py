"""kld.json's format: the shape of each version, the seal of a version 2 entry, and the relations its numbers
always satisfy when `hubpub eval` wrote them. Standard library only (render and check read kld.json)."""

from __future__ import annotations

import hashlib
import json
from itertools import pairwise
from typing import Any

from publish.manifest.evaluation import KLD_METHODS

# The percentiles kld.json reports, named p0.1 … p99.9 (`percentile_key`).
PERCENTILES = (0.1, 1, 5, 10, 50, 90, 95, 99, 99.9)
# A row's probabilities may sum this far above 1 (float32 rounding) and still count as a distribution.
PROBABILITY_SLACK = 1e-4


def percentile_key(q: float) -> str:
    return f"p{q:g}"


def _above(value: float, limit: float) -> bool:
    """value > limit by more than float rounding (a mean can come out a few ulps above equal values)."""
    return value > limit + 1e-9 * max(1.0, abs(limit))


NUMBER, OPTIONAL, INTEGER = "number", "number or null", "integer"
_SPREAD = {"mean": NUMBER, "se": OPTIONAL, "min": NUMBER, "max": NUMBER,
           "percentiles": {percentile_key(q): NUMBER for q in PERCENTILES}}
# The statistics object of version 2 (publish.eval.statistics.KldStatistics.to_json); a tuple marks a list of items,
# a None-able mapping a value that may be null.
STATISTICS: dict[str, Any] = {
    "positions": INTEGER, "kl": _SPREAD, "kl_reverse": _SPREAD, "mean_coverage": NUMBER,
    "same_top1": {"rate": NUMBER, "se": OPTIONAL},
    "top_k_agreement": "numbers",
    "kl_by_reference_top1": ({"from": NUMBER, "to": NUMBER, "positions": INTEGER, "mean_kl": OPTIONAL},),
    "token_positions": INTEGER,
    "delta_p": ("nullable", {**_SPREAD, "rms": NUMBER, "rms_se": OPTIONAL}),
    "perplexity": ("nullable", {"reference": NUMBER, "reference_se": OPTIONAL, "variant": NUMBER,
                                "variant_se": OPTIONAL, "ratio": NUMBER, "ln_ratio": NUMBER, "ln_ratio_se": OPTIONAL,
                                "correlation": OPTIONAL}),
}
_V1_METRICS = {name: NUMBER for name in ("median", "p90", "p99", "mean", "max", "mean_coverage", "same_top1")}
_CONFIG = {"method": "text", "approximation": "text", "top_k": INTEGER, "dataset": "any",
           "sequence_length": INTEGER, "samples": INTEGER}
_ENTRY = {"branch": "text", "identity": "mapping", "statistics": STATISTICS, "sha256": "text"}


def summary(statistics: dict[str, Any]) -> dict[str, Any]:
    """The version 1 metrics, read from a version 2 statistics object."""
    kl = statistics["kl"]
    return {"median": kl["percentiles"]["p50"], "p90": kl["percentiles"]["p90"], "p99": kl["percentiles"]["p99"],
            "mean": kl["mean"], "max": kl["max"], "mean_coverage": statistics["mean_coverage"],
            "same_top1": statistics["same_top1"]["rate"], "positions": statistics["positions"]}


def seal(data: dict[str, Any], entry: dict[str, Any]) -> str:
    """sha256 of a variant's entry (without its seal) and the keys every variant shares, as canonical JSON."""
    shared = {key: value for key, value in data.items() if key not in ("variants", "hubpub_version")}
    body = {**shared, "variant": {key: value for key, value in entry.items() if key != "sha256"}}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def malformed(data: dict[str, Any]) -> tuple[str, str] | None:
    """(dotted field, what is wrong) for the first key that is missing or of the wrong type, else None."""
    schema: dict[str, Any] = {"config": _CONFIG}
    if data["version"] == 1:
        schema.update(metrics={**_V1_METRICS, "positions": INTEGER})
    else:
        schema.update(reference="mapping", variants=(_ENTRY,))
    problem = _shape(data, schema, "")
    if problem is None and data["version"] == 2:
        branches = [entry["branch"] for entry in data["variants"]]
        if not branches:
            return "variants", "no variant was evaluated"
        twice = sorted({b for b in branches if branches.count(b) > 1})
        if twice:
            return "variants", f"branch {twice[0]!r} appears twice"
    return problem


def _shape(value: Any, schema: Any, where: str) -> tuple[str, str] | None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return where or "(top level)", f"expected an object, found {value!r}"
        for key, inner in schema.items():
            field = f"{where}.{key}" if where else key
            if key not in value:
                return field, "missing key"
            problem = _shape(value[key], inner, field)
            if problem:
                return problem
        return None
    if isinstance(schema, tuple) and schema and schema[0] == "nullable":
        return None if value is None else _shape(value, schema[1], where)
    if isinstance(schema, tuple):
        if not isinstance(value, list):
            return where, f"expected a list, found {value!r}"
        for index, item in enumerate(value):
            problem = _shape(item, schema[0], f"{where}[{index}]")
            if problem:
                return problem
        return None
    return None if _is(value, schema) else (where, f"expected {_article(schema)}, found {value!r}")


def _is(value: Any, kind: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {
        NUMBER: number, OPTIONAL: value is None or number,
        INTEGER: isinstance(value, int) and not isinstance(value, bool),
        "text": isinstance(value, str), "mapping": isinstance(value, dict), "any": True,
        "numbers": isinstance(value, dict) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                   for v in value.values()),
    }[kind]


def _article(kind: str) -> str:
    return {"numbers": "an object of numbers", INTEGER: "an integer", "mapping": "an object"}.get(kind, f"a {kind}")


def consistency(data: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(branch or None, problem) for every number `hubpub eval` cannot have written: a broken seal, figures out of
    order or out of range, positions the configuration does not score."""
    config = data["config"]
    method = KLD_METHODS.get(str(config["method"]))
    expected = None if method is None else config["samples"] * method[1](config["sequence_length"])
    entries: list[tuple[str | None, dict[str, Any], dict[str, Any] | None]] = (
        [(None, data["metrics"], None)] if data["version"] == 1
        else [(e["branch"], summary(e["statistics"]), e) for e in data["variants"]])
    found: list[tuple[str | None, str]] = []
    for branch, figures, entry in entries:
        label = "" if branch is None else f"branch {branch!r}: "
        if entry is not None and seal(data, entry) != entry["sha256"]:
            edited = f"{label}the figures do not match their sha256 seal: they were edited after `hubpub eval` wrote them"
            found.append((branch, edited))
            continue
        problems = _summary_problems(figures, expected)
        if entry is not None:
            problems += _statistics_problems(entry["statistics"])
        found += [(branch, f"{label}{problem}: the file was edited by hand") for problem in problems]
    return found


def _summary_problems(figures: dict[str, Any], expected: int | None) -> list[str]:
    found = []
    order = [(name, figures[name]) for name in ("median", "p90", "p99", "max")]
    for (low_name, low), (high_name, high) in pairwise(order):
        if _above(low, high):
            found.append(f"{low_name} {low} is above {high_name} {high}")
    if _above(figures["mean"], figures["max"]) or figures["median"] < 0:
        found.append(f"mean {figures['mean']} and median {figures['median']} do not fit max {figures['max']}")
    for name in ("mean_coverage", "same_top1"):
        if not 0 <= figures[name] <= 1 + PROBABILITY_SLACK:
            found.append(f"{name} {figures[name]} is not a fraction")
    if expected is not None and figures["positions"] != expected:
        found.append(f"positions {figures['positions']:,} is not the {expected:,} the configuration scores")
    return found


def _statistics_problems(statistics: dict[str, Any]) -> list[str]:
    found = []
    for name in ("kl", "kl_reverse", "delta_p"):
        spread = statistics[name]
        if spread is None:
            continue
        values = [spread["min"], *(spread["percentiles"][percentile_key(q)] for q in PERCENTILES), spread["max"]]
        ordered = not any(_above(a, b) for a, b in pairwise(values))
        if not ordered or _above(spread["min"], spread["mean"]) or _above(spread["mean"], spread["max"]):
            found.append(f"statistics.{name}: min, percentiles, mean and max are out of order")
    buckets = sum(bucket["positions"] for bucket in statistics["kl_by_reference_top1"])
    if buckets != statistics["positions"]:
        found.append(f"statistics.kl_by_reference_top1 counts {buckets:,} positions, not {statistics['positions']:,}")
    if statistics["token_positions"] > statistics["positions"]:
        found.append("statistics.token_positions exceeds positions")
    rates = [statistics["same_top1"]["rate"], *statistics["top_k_agreement"].values()]
    if not all(0 <= rate <= 1 for rate in rates):
        found.append("statistics.same_top1 or top_k_agreement holds a rate outside 0 … 1")
    return found
