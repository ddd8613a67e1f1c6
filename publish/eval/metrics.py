"""KL divergence of a variant against its reference, from two logprob dumps. Pure: arrays in, numbers out.

Per scored position t, with p the reference's and q the variant's next-token distribution:
`D_t = Σ_v p_t(v) · (log p_t(v) − log q_t(v))` in nats, KL(reference ‖ variant). The reference usually keeps only
its top-K log-probabilities (S_t, coverage c_t = Σ_{S_t} p), so the sum is approximated (README, "Evaluation"):

- ``full-vocab``: exact; needs both full distributions (a dump made with K ≥ vocab).
- ``top-k-tail-bucket``: S_t plus one bucket for everything else, as vLLM's ``compare_kl_api.py`` does:
  `Σ_{S_t} p log(p/q) + (1 − c_t) log((1 − c_t)/(1 − Q_t))`, with `Q_t = Σ_{S_t} q`. A coarse-graining of the true
  KL, so never above it when q is exact on S_t.
- ``top-k-renormalized``: both distributions renormalized over S_t (brevitas' default).

The variant's dump is top-K too; a reference token outside the variant's top-K gets the variant's tail mass spread
evenly over the missing tokens, capped at its K-th probability (it cannot be more likely than that). With
K ≥ vocab nothing is missing and there is no tail, so every approximation equals the exact KL.
Percentiles use linear interpolation between order statistics (numpy's default, llama.cpp's rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Method = Literal["next-token", "second-half", "all-logits"]
Approximation = Literal["full-vocab", "top-k-tail-bucket", "top-k-renormalized"]
METHODS: tuple[Method, ...] = ("next-token", "second-half", "all-logits")
APPROXIMATIONS: tuple[Approximation, ...] = ("full-vocab", "top-k-tail-bucket", "top-k-renormalized")

# Probability floor for a bucket the variant gives (next to) no mass: keeps logs finite.
EPS = 1e-30
# Elements of the scratch table that maps token ids to the variant's log-probs (float64: 64 MB).
LOOKUP_ELEMENTS = 8_000_000

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.integer]


def scored_rows(method: str, sequence_length: int) -> tuple[int, int]:
    """Which rows of a window's logprobs a method scores, as [start, stop); row t predicts token t + 1.

    next-token: every token that has a next token (L − 1 rows); second-half: llama.cpp's rows L/2 … L − 2
    (L/2 − 1 rows); all-logits: every row of logits, the last included (L rows, exllama's model_diff).
    """
    length = sequence_length
    if method == "next-token":
        return 0, length - 1
    if method == "second-half":
        return length // 2, length - 1
    if method == "all-logits":
        return 0, length
    raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")


@dataclass(frozen=True)
class Chunk:
    """Aligned rows of both dumps: top-K ids and log-probs sorted by descending probability, [rows, K].

    `ref_full`/`var_full` are full log-probability rows [rows, vocab], present only for full-vocab scoring.
    """

    ref_ids: Ints
    ref_logprobs: npt.NDArray[np.floating]
    var_ids: Ints
    var_logprobs: npt.NDArray[np.floating]
    ref_full: npt.NDArray[np.floating] | None = None
    var_full: npt.NDArray[np.floating] | None = None


@dataclass(frozen=True)
class PositionScores:
    kl: Floats
    coverage: Floats
    same_top1: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class KldMetrics:
    """What `hubpub eval score` reports; KL values in nats."""

    median: float
    p90: float
    p99: float
    mean: float
    max: float
    mean_coverage: float
    same_top1: float
    positions: int


def score_chunk(chunk: Chunk, approximation: str, vocab_size: int) -> PositionScores:
    """Per-position KL(reference ‖ variant), reference top-K coverage and whether both rank the same token first."""
    ref_lp = np.asarray(chunk.ref_logprobs, dtype=np.float64)
    ref_p = np.exp(ref_lp)
    coverage = ref_p.sum(axis=1)
    same = np.asarray(chunk.ref_ids[:, 0] == chunk.var_ids[:, 0])
    if approximation == "full-vocab":
        if chunk.ref_full is None or chunk.var_full is None:
            raise ValueError("full-vocab needs both dumps' full distributions (dumps made with top-K ≥ vocab)")
        full_ref = np.asarray(chunk.ref_full, dtype=np.float64)
        full_var = np.asarray(chunk.var_full, dtype=np.float64)
        kl = (np.exp(full_ref) * (full_ref - full_var)).sum(axis=1)
        return PositionScores(np.maximum(kl, 0.0), coverage, same)
    var_lp = variant_logprobs_at(chunk.ref_ids, chunk.var_ids, chunk.var_logprobs, vocab_size)
    complete = chunk.ref_ids.shape[1] >= vocab_size  # the top-K is the whole vocabulary: no tail, nothing missing
    inside = (ref_p * (ref_lp - var_lp)).sum(axis=1)
    var_mass = np.exp(var_lp).sum(axis=1)
    if approximation not in ("top-k-tail-bucket", "top-k-renormalized"):
        raise ValueError(f"unknown approximation {approximation!r}; use one of {', '.join(APPROXIMATIONS)}")
    if complete:
        kl = inside
    elif approximation == "top-k-tail-bucket":
        ref_tail = np.clip(1.0 - coverage, 0.0, 1.0)
        var_tail = np.clip(1.0 - var_mass, EPS, 1.0)
        kl = inside + np.where(ref_tail > 0, ref_tail * (np.log(np.maximum(ref_tail, EPS)) - np.log(var_tail)), 0.0)
    else:
        kl = inside / coverage - np.log(coverage) + np.log(np.maximum(var_mass, EPS))
    # Rounding can make a zero divergence come out as -1e-17; KL is never negative.
    return PositionScores(np.maximum(kl, 0.0), coverage, same)


def variant_logprobs_at(ref_ids: Ints, var_ids: Ints, var_logprobs: npt.ArrayLike, vocab_size: int) -> Floats:
    """The variant's log-probability of each reference top-K token, [rows, K_ref], missing ones imputed.

    A token outside the variant's top-K gets min(the variant's K-th probability, its tail mass / missing count).
    """
    var_lp = np.asarray(var_logprobs, dtype=np.float64)
    rows = ref_ids.shape[0]
    if ref_ids.shape == var_ids.shape and np.array_equal(ref_ids, var_ids):
        return var_lp
    width = int(max(vocab_size, int(ref_ids.max(initial=0)) + 1, int(var_ids.max(initial=0)) + 1))
    group = max(1, min(rows, LOOKUP_ELEMENTS // width))
    table = np.full(group * width, np.nan)
    out = np.empty(ref_ids.shape, dtype=np.float64)
    for start in range(0, rows, group):
        stop = min(rows, start + group)
        offsets = (np.arange(stop - start, dtype=np.int64) * width)[:, None]
        var_keys = (var_ids[start:stop].astype(np.int64) + offsets).ravel()
        table[var_keys] = var_lp[start:stop].ravel()
        out[start:stop] = table[(ref_ids[start:stop].astype(np.int64) + offsets).ravel()].reshape(stop - start, -1)
        table[var_keys] = np.nan
    missing = np.isnan(out)
    if missing.any():
        count = missing.sum(axis=1)
        tail = np.clip(1.0 - np.exp(var_lp).sum(axis=1), EPS, 1.0)
        spread = np.log(tail) - np.log(np.maximum(count, 1))
        imputed = np.minimum(var_lp.min(axis=1), spread)
        out = np.where(missing, imputed[:, None], out)
    return out


def summarize(scores: Iterable[PositionScores]) -> KldMetrics:
    """Median, P90, P99, mean and max of the per-position KL; mean coverage; same-top-1 rate; positions."""
    parts = list(scores)
    if not parts or sum(len(p.kl) for p in parts) == 0:
        raise ValueError("no positions to score")
    kl = np.concatenate([p.kl for p in parts])
    coverage = np.concatenate([p.coverage for p in parts])
    same = np.concatenate([p.same_top1 for p in parts])
    median, p90, p99 = (float(v) for v in np.percentile(kl, [50, 90, 99]))
    return KldMetrics(
        median=median, p90=p90, p99=p99, mean=float(kl.mean()), max=float(kl.max()),
        mean_coverage=float(coverage.mean()), same_top1=float(same.mean()), positions=int(kl.size),
    )
