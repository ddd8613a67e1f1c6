"""What the card shows of the KLD evaluation: the evaluated variants, their metrics side by side, the rows they add
to the comparison table, and each variant's "All statistics" tables. Pure: a resolved manifest in, values and
formatted numbers out; templates/evaluation.md.j2 lays them out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from publish.manifest.artifactschema import PERCENTILES, percentile_key
from publish.manifest.evaluation import KldResult
from publish.manifest.model import Manifest
from publish.manifest.variant import Variant

# The comparison table's KLD rows: (label, metric), shown once two or more variants were evaluated.
COMPARISON_ROWS = (("KLD median", "median"), ("KLD P90", "p90"), ("KLD mean", "mean"))
# The "All statistics" spread table's percentile columns: (heading, kld.json key).
PERCENTILE_COLUMNS = tuple(("Median" if q == 50 else f"P{q:g}", percentile_key(q)) for q in PERCENTILES)


@dataclass(frozen=True)
class MetricRow:
    label: str
    values: tuple[str, ...]  # one per evaluated variant
    description: str


@dataclass(frozen=True)
class Details:
    """One variant's "All statistics": per-position spreads, single figures, and KLD by reference confidence."""

    title: str
    spreads: tuple[tuple[str, ...], ...]  # label, mean ± se, min, the percentiles, max
    figures: tuple[tuple[str, str], ...]
    buckets: tuple[tuple[str, str, str], ...]  # bucket, positions, mean KLD


def kld_context(manifest: Manifest) -> dict[str, Any]:
    """The templates' KLD variables (all None or empty when the manifest has no evaluation)."""
    kld = manifest.evaluation.kld
    evaluated = tuple(manifest.variant(b) for b in manifest.kld_branches)
    figures = kld.figures() if kld else ()
    return {
        "kld": kld,
        "kld_variant": evaluated[0] if evaluated else None,
        "kld_variants": evaluated,
        "kld_branch_list": _and([v.title for v in evaluated]),
        "kld_columns": ("Value",) if len(figures) == 1 else tuple(manifest.variant(f.branch).title for f in figures),
        "kld_metrics": metric_rows(figures),
        "kld_details": tuple(details(manifest.variant(f.branch), f.statistics) for f in figures if f.statistics),
        "percentile_columns": PERCENTILE_COLUMNS,
    }


def metric_rows(figures: tuple[KldResult, ...]) -> tuple[MetricRow, ...]:
    rows = [
        MetricRow("Median KLD", tuple(_kl(f.metrics.median) for f in figures), "Median divergence"),
        MetricRow("P90 KLD", tuple(_kl(f.metrics.p90) for f in figures), "Divergence at the 90th percentile"),
        MetricRow("Mean KLD", tuple(_kl(f.metrics.mean) for f in figures), "Average divergence"),
    ]
    if any(f.metrics.mean_coverage is not None for f in figures):
        rows.append(MetricRow("Mean Coverage", tuple(_kl(f.metrics.mean_coverage) for f in figures), "-"))
    return tuple(rows)


def comparison_rows(manifest: Manifest) -> list[tuple[str, dict[str, str]]]:
    """(label, value by branch) for the comparison table: median, P90 and mean KLD, when two or more variants were
    evaluated (one evaluated variant has nothing to be compared with; its figures are in the KLD section)."""
    kld = manifest.evaluation.kld
    figures = kld.figures() if kld else ()
    if len(figures) < 2:
        return []
    return [(label, {f.branch: _kl(getattr(f.metrics, name)) for f in figures}) for label, name in COMPARISON_ROWS]


def details(variant: Variant, statistics: dict[str, Any]) -> Details:
    """The formatted tables of kld.json's statistics object (version 2) for one variant."""
    kl, reverse, delta = statistics["kl"], statistics["kl_reverse"], statistics["delta_p"]
    spreads = [_spread("KL(reference ‖ variant)", kl, _kl), _spread("KL(variant ‖ reference)", reverse, _kl)]
    if delta is not None:
        spreads.append(_spread("Δp = p(variant) − p(reference), correct token", delta, _percent))
    same = statistics["same_top1"]
    agreement = statistics["top_k_agreement"]
    figures = [
        ("Same top-1 token", _plus_minus(same["rate"], same["se"], _rate)),
        (f"Top-K agreement, K = {', '.join(agreement)}", ", ".join(_rate(v) for v in agreement.values())),
        ("Mean coverage of the reference's top-K", _kl(statistics["mean_coverage"])),
        ("Positions", f"{statistics['positions']:,}"),
    ]
    ppl = statistics["perplexity"]
    if delta is not None and ppl is not None:
        figures += [
            ("RMS Δp", _plus_minus(delta["rms"], delta["rms_se"], _percent)),
            ("Perplexity, reference", _plus_minus(ppl["reference"], ppl["reference_se"], _ppl)),
            ("Perplexity, variant", _plus_minus(ppl["variant"], ppl["variant_se"], _ppl)),
            ("PPL(variant) / PPL(reference)", f"{ppl['ratio']:.6f}"),
            ("Mean ln(PPL(variant) / PPL(reference))", _plus_minus(ppl["ln_ratio"], ppl["ln_ratio_se"], _kl)),
            ("Correlation of −log p(correct token)", "-" if ppl["correlation"] is None else _rate(ppl["correlation"])),
            ("Positions with a correct token", f"{statistics['token_positions']:,}"),
        ]
    buckets = tuple(
        (f"[{b['from']:g}, {b['to']:g}{']' if b['to'] >= 1 else ')'}", f"{b['positions']:,}",
         "-" if b["mean_kl"] is None else _kl(b["mean_kl"]))
        for b in statistics["kl_by_reference_top1"])
    return Details(variant.title, tuple(spreads), tuple(figures), buckets)


def _spread(label: str, spread: dict[str, Any], show: Any) -> tuple[str, ...]:
    percentiles = spread["percentiles"]
    return (label, _plus_minus(spread["mean"], spread["se"], show), show(spread["min"]),
            *(show(percentiles[key]) for _, key in PERCENTILE_COLUMNS), show(spread["max"]))


def _plus_minus(value: float, se: float | None, show: Any) -> str:
    return show(value) if se is None else f"{show(value)} ± {show(se)}"


def _kl(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def _percent(value: float) -> str:
    return f"{100 * value:.3f}%"


def _rate(value: float) -> str:
    return f"{100 * value:.2f}%"


def _ppl(value: float) -> str:
    return f"{value:.4f}"


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""
