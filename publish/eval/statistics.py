"""The statistics `hubpub eval` reports, from per-position scores (metrics.py). Pure: arrays in, numbers out.

What llama.cpp's `llama-perplexity --kl-divergence` and exllamav3's model diff report, with the same
uncertainties:

- KL(reference ‖ variant) and KL(variant ‖ reference): mean ± standard error, min, max and the percentiles
  0.1, 1, 5, 10, 50, 90, 95, 99, 99.9 (linear interpolation between order statistics, numpy's default and
  llama.cpp's rule);
- Δp = p_variant(token) − p_reference(token) for the correct next token: mean ± se, the same percentiles, and
  RMS Δp ± se (the se of the mean square, carried through the square root);
- same top-1: the rate ± its binomial standard error sqrt(r (1 − r) / (n − 1));
- top-K agreement, K = 1 … 5: the share of positions where both models' K most likely tokens are one set;
- perplexity of both, exp(mean −log p(token)) ± se, their ratio, mean ln(PPL_variant / PPL_reference) ± se (the se
  of the per-position difference, so the correlation of the two is accounted for) and the Pearson correlation of
  the per-position −log p;
- mean KL(reference ‖ variant) by the reference's top-1 probability, in the buckets [0, .25), [.25, .5),
  [.5, .75), [.75, .95), [.95, 1].

A standard error is sample standard deviation / sqrt(n), None with fewer than two positions. Token statistics
(Δp, perplexity) cover the scored positions that have a correct next token: under `all-logits`, the last row of
each window has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from publish.eval.metrics import Floats, PositionScores
from publish.manifest.artifactschema import PERCENTILES, percentile_key

TOP1_EDGES = (0.0, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass(frozen=True)
class Spread:
    """Mean ± standard error, extremes and percentiles of one per-position quantity."""

    mean: float
    se: float | None
    min: float
    max: float
    percentiles: dict[str, float]

    @classmethod
    def of(cls, values: Floats) -> Spread:
        found = np.percentile(values, PERCENTILES)
        return cls(float(values.mean()), standard_error(values), float(values.min()), float(values.max()),
                   {percentile_key(q): float(v) for q, v in zip(PERCENTILES, found, strict=True)})

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "se": self.se, "min": self.min, "max": self.max, "percentiles": self.percentiles}


@dataclass(frozen=True)
class Perplexity:
    """Both models' perplexity over the correct next tokens, and how they compare."""

    reference: float
    reference_se: float | None
    variant: float
    variant_se: float | None
    ratio: float
    ln_ratio: float  # mean ln(PPL_variant / PPL_reference)
    ln_ratio_se: float | None
    correlation: float | None  # Pearson, of the per-position −log p

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TokenStatistics:
    """What the correct next token's probability under both models says: Δp and perplexity."""

    positions: int
    delta_p: Spread
    rms_delta_p: float
    rms_delta_p_se: float | None
    perplexity: Perplexity

    @classmethod
    def of(cls, ref_lp: Floats, var_lp: Floats) -> TokenStatistics:
        delta = np.exp(var_lp) - np.exp(ref_lp)
        square = delta * delta
        rms = float(np.sqrt(square.mean()))
        square_se = standard_error(square)
        rms_se = None if square_se is None or rms == 0 else 0.5 / rms * square_se
        return cls(int(delta.size), Spread.of(delta), rms, rms_se, perplexity(ref_lp, var_lp))


@dataclass(frozen=True)
class Bucket:
    """Positions whose reference top-1 probability falls in [low, high) ([low, 1] for the last bucket)."""

    low: float
    high: float
    positions: int
    mean_kl: float | None

    def to_json(self) -> dict[str, Any]:
        return {"from": self.low, "to": self.high, "positions": self.positions, "mean_kl": self.mean_kl}


@dataclass(frozen=True)
class KldStatistics:
    """Everything `hubpub eval score` reports for one variant; KL in nats, probabilities as fractions."""

    positions: int
    kl: Spread
    kl_reverse: Spread
    mean_coverage: float
    same_top1: float
    same_top1_se: float | None
    top_k_agreement: dict[str, float]  # "1" … "5"
    by_reference_top1: tuple[Bucket, ...]
    tokens: TokenStatistics | None  # None when no scored position has a correct next token

    def to_json(self) -> dict[str, Any]:
        """The `statistics` object of kld.json version 2."""
        tokens = self.tokens
        return {
            "positions": self.positions, "kl": self.kl.to_json(), "kl_reverse": self.kl_reverse.to_json(),
            "mean_coverage": self.mean_coverage, "same_top1": {"rate": self.same_top1, "se": self.same_top1_se},
            "top_k_agreement": self.top_k_agreement,
            "kl_by_reference_top1": [bucket.to_json() for bucket in self.by_reference_top1],
            "token_positions": 0 if tokens is None else tokens.positions,
            "delta_p": None if tokens is None else {**tokens.delta_p.to_json(), "rms": tokens.rms_delta_p,
                                                    "rms_se": tokens.rms_delta_p_se},
            "perplexity": None if tokens is None else tokens.perplexity.to_json(),
        }


def kld_statistics(scores: Iterable[PositionScores]) -> KldStatistics:
    """All statistics over the positions of `scores` (the chunks of one variant, in any order)."""
    parts = list(scores)
    if not parts or sum(len(p.kl) for p in parts) == 0:
        raise ValueError("no positions to score")

    def joined(name: str) -> Any:
        return np.concatenate([getattr(p, name) for p in parts])

    kl, reverse, coverage, top1 = joined("kl"), joined("kl_reverse"), joined("coverage"), joined("reference_top1")
    agreement = joined("agreement")
    ref_lp, var_lp = joined("reference_target"), joined("variant_target")
    has_token = ~(np.isnan(ref_lp) | np.isnan(var_lp))
    same = float(agreement[:, 0].mean())
    n = int(kl.size)
    return KldStatistics(
        positions=n, kl=Spread.of(kl), kl_reverse=Spread.of(reverse), mean_coverage=float(coverage.mean()),
        same_top1=same, same_top1_se=float(np.sqrt(same * (1 - same) / (n - 1))) if n > 1 else None,
        top_k_agreement={str(k + 1): float(agreement[:, k].mean()) for k in range(agreement.shape[1])},
        by_reference_top1=buckets(top1, kl),
        tokens=TokenStatistics.of(ref_lp[has_token], var_lp[has_token]) if has_token.any() else None,
    )


def standard_error(values: Floats) -> float | None:
    """Sample standard deviation / sqrt(n); None for fewer than two values."""
    if values.size < 2:
        return None
    return float(values.std(ddof=1) / np.sqrt(values.size))


def perplexity(ref_lp: Floats, var_lp: Floats) -> Perplexity:
    """Both perplexities from the correct tokens' log-probabilities, their ratio and its uncertainty."""
    ref_nll, var_nll = -ref_lp, -var_lp
    ref_ppl, var_ppl = float(np.exp(ref_nll.mean())), float(np.exp(var_nll.mean()))
    ref_se, var_se = standard_error(ref_nll), standard_error(var_nll)
    difference = var_nll - ref_nll
    constant = ref_nll.size < 2 or float(ref_nll.std()) == 0.0 or float(var_nll.std()) == 0.0
    return Perplexity(
        reference=ref_ppl, reference_se=None if ref_se is None else ref_ppl * ref_se,
        variant=var_ppl, variant_se=None if var_se is None else var_ppl * var_se,
        ratio=var_ppl / ref_ppl, ln_ratio=float(difference.mean()), ln_ratio_se=standard_error(difference),
        correlation=None if constant else float(np.corrcoef(ref_nll, var_nll)[0, 1]),
    )


def buckets(top1: Floats, kl: Floats) -> tuple[Bucket, ...]:
    """Mean KL and position count per bucket of the reference's top-1 probability (the last bucket holds 1)."""
    inner = np.asarray(TOP1_EDGES[1:-1])
    index = np.searchsorted(inner, top1, side="right")  # [0, .25) → 0, …, [.95, 1] → 4
    counts = np.bincount(index, minlength=len(TOP1_EDGES) - 1)
    sums = np.bincount(index, weights=kl, minlength=len(TOP1_EDGES) - 1)
    return tuple(
        Bucket(TOP1_EDGES[i], TOP1_EDGES[i + 1], int(counts[i]), float(sums[i] / counts[i]) if counts[i] else None)
        for i in range(len(TOP1_EDGES) - 1)
    )
