"""Per-position comparison of a variant with its reference, from two logprob dumps. Pure: arrays in, arrays out.

Per scored position t, with p the reference's and q the variant's next-token distribution:
`KL(p ‖ q)_t = Σ_v p_t(v) · (log p_t(v) − log q_t(v))` in nats, and KL(q ‖ p) the other way round. A dump usually
keeps only each model's top-K log-probabilities (S_t, coverage c_t = Σ_{S_t} p), so each sum is approximated over
the first distribution's top-K (docs/evaluation.md):

- ``full-vocab``: exact; needs both full distributions (a dump made with K ≥ vocab).
- ``top-k-tail-bucket``: S_t plus one bucket for everything else, as vLLM's ``compare_kl_api.py`` does:
  `Σ_{S_t} p log(p/q) + (1 − c_t) log((1 − c_t)/(1 − Q_t))`, with `Q_t = Σ_{S_t} q`. A coarse-graining of the true
  KL, so never above it when q is exact on S_t.
- ``top-k-renormalized``: both distributions renormalized over S_t (brevitas' default).

KL(q ‖ p) uses the same rule with the roles swapped: the variant's top-K and its tail bucket. The second dump is
top-K too; a token of S_t outside its top-K gets its tail mass spread evenly over the missing tokens, capped at its
K-th probability (it cannot be more likely than that). With K ≥ vocab nothing is missing and there is no tail, so
every approximation equals the exact KL.

Besides the divergences, each position yields what the statistics need: the reference's top-K coverage and top-1
probability, whether both models' k most likely tokens are the same set (k = 1 … 5; tokens of equal probability
ordered by id), and both models' log-probability of the correct next token (NaN on a row that has none: the last
row of a window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

KldMethod = Literal["next-token", "second-half", "all-logits"]
Approximation = Literal["full-vocab", "top-k-tail-bucket", "top-k-renormalized"]
METHODS: tuple[KldMethod, ...] = ("next-token", "second-half", "all-logits")
APPROXIMATIONS: tuple[Approximation, ...] = ("full-vocab", "top-k-tail-bucket", "top-k-renormalized")
# Top-K agreement is reported for K = 1 … AGREEMENT_K (exllamav3's model_diff).
AGREEMENT_K = 5
# Columns re-sorted to break ties by token id; a tie reaching past them sends its row to a whole-row sort.
HEAD_COLUMNS = 32

# Probability floor for a bucket the other model gives (next to) no mass: keeps logs finite.
EPS = 1e-30
LOG_EPS = float(np.log(EPS))
# How far a row's probabilities may sum above 1 (float32 rounding of K log-probs) before the dump is refused:
# more than that is not a distribution (logits, or log-probs after a sampling transform).
NORMALIZATION_TOLERANCE = 1e-4
# Elements scored at once: rows × K float64 temporaries of 512 kB stay in the CPU's cache (twice as fast as a
# whole 2048-token window at K = 1000).
BLOCK_ELEMENTS = 65_536
# Elements of the scratch table that maps token ids to columns of the other model's list (int32: 8 MB). The rows
# of a group share it; a larger table spreads each group's random writes beyond the cache and is slower.
LOOKUP_ELEMENTS = 2_000_000

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.integer]


class NotADistribution(ValueError):
    """A row's probabilities sum to more than 1: the dump does not hold log-probabilities."""

    def __init__(self, which: str, total: float) -> None:
        self.which = which
        self.total = total
        super().__init__(f"the {which}'s probabilities sum to {total:.6f} on a row, more than 1")


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
    """Aligned rows of both dumps: top-K ids and log-probs sorted by descending probability, [rows, K], and each
    model's log-probability of the correct next token, [rows] (NaN where a row has no next token).

    `ref_full`/`var_full` are full log-probability rows [rows, vocab], present only for full-vocab scoring.
    """

    ref_ids: Ints
    ref_logprobs: npt.NDArray[np.floating]
    var_ids: Ints
    var_logprobs: npt.NDArray[np.floating]
    ref_target: npt.NDArray[np.floating] | None = None
    var_target: npt.NDArray[np.floating] | None = None
    ref_full: npt.NDArray[np.floating] | None = None
    var_full: npt.NDArray[np.floating] | None = None

    def rows(self, which: slice) -> Chunk:
        """These rows of every array."""
        def cut(values: npt.NDArray[np.floating] | None) -> npt.NDArray[np.floating] | None:
            return None if values is None else values[which]

        return Chunk(self.ref_ids[which], self.ref_logprobs[which], self.var_ids[which], self.var_logprobs[which],
                     cut(self.ref_target), cut(self.var_target), cut(self.ref_full), cut(self.var_full))


@dataclass(frozen=True)
class PositionScores:
    """Everything the statistics need, one entry per scored position."""

    kl: Floats  # KL(reference ‖ variant)
    kl_reverse: Floats  # KL(variant ‖ reference)
    coverage: Floats  # the reference's top-K probability mass
    reference_top1: Floats  # the reference's probability of its most likely token
    agreement: npt.NDArray[np.bool_]  # [positions, min(K, 5)]: column k − 1 says the top-k sets are equal
    reference_target: Floats  # log p_reference(correct next token), NaN where there is none
    variant_target: Floats

    @property
    def same_top1(self) -> npt.NDArray[np.bool_]:
        return self.agreement[:, 0]


def score_chunk(chunk: Chunk, approximation: str, vocab_size: int,
                matcher: ColumnMatcher | None = None) -> PositionScores:
    """Per-position divergences both ways, coverage, agreement and the correct token's log-probabilities.

    Rows are scored a block at a time, so the temporaries stay in the CPU's cache. Pass one `matcher` for all
    chunks to reuse its scratch table. Raises NotADistribution when a row of either dump sums to more than 1.
    """
    if approximation not in APPROXIMATIONS:
        raise ValueError(f"unknown approximation {approximation!r}; use one of {', '.join(APPROXIMATIONS)}")
    if approximation == "full-vocab" and (chunk.ref_full is None or chunk.var_full is None):
        raise ValueError("full-vocab needs both dumps' full distributions (dumps made with top-K ≥ vocab)")
    matcher = matcher or ColumnMatcher(vocab_size)
    rows = len(chunk.ref_ids)
    width = max(chunk.ref_ids.shape[1], vocab_size if approximation == "full-vocab" else 0)
    block = max(1, BLOCK_ELEMENTS // max(1, width))
    parts = [_score_rows(chunk.rows(slice(start, start + block)), approximation, vocab_size, matcher)
             for start in range(0, rows, block)]
    if len(parts) == 1:
        return parts[0]
    return PositionScores(**{name: np.concatenate([getattr(p, name) for p in parts])
                             for name in PositionScores.__dataclass_fields__})


def _score_rows(chunk: Chunk, approximation: str, vocab_size: int, matcher: ColumnMatcher) -> PositionScores:
    ref_lp, var_lp = floored(chunk.ref_logprobs), floored(chunk.var_logprobs)
    ref_p, var_p = np.exp(ref_lp), np.exp(var_lp)
    coverage, var_mass = ref_p.sum(axis=1), var_p.sum(axis=1)
    _check_normalized(coverage, "reference")
    _check_normalized(var_mass, "variant")
    if chunk.ref_full is not None and chunk.var_full is not None and approximation == "full-vocab":
        full_ref, full_var = floored(chunk.ref_full), floored(chunk.var_full)
        kl = (np.exp(full_ref) * (full_ref - full_var)).sum(axis=1)
        reverse = (np.exp(full_var) * (full_var - full_ref)).sum(axis=1)
    else:
        if chunk.ref_ids.shape == chunk.var_ids.shape and np.array_equal(chunk.ref_ids, chunk.var_ids):
            var_at_ref, ref_at_var = var_lp, ref_lp
        else:
            forward, backward = matcher.both_ways(chunk.ref_ids, chunk.var_ids)
            var_at_ref, ref_at_var = logprobs_at(forward, var_lp, var_mass), logprobs_at(backward, ref_lp, coverage)
        complete = chunk.ref_ids.shape[1] >= vocab_size  # the top-K is the whole vocabulary: no tail
        kl = _divergence(ref_p, ref_lp, coverage, var_at_ref, approximation, complete)
        reverse = _divergence(var_p, var_lp, var_mass, ref_at_var, approximation, complete)
    missing = np.full(len(ref_lp), np.nan)
    return PositionScores(
        # Both are KLs of normalized distributions (checked above), so a value below zero is float rounding.
        kl=np.maximum(kl, 0.0), kl_reverse=np.maximum(reverse, 0.0), coverage=coverage,
        reference_top1=ref_p[:, 0].copy(),  # a view would keep the whole [rows, K] array alive
        agreement=top_k_agreement(chunk.ref_ids, chunk.var_ids, ref_lp, var_lp),
        reference_target=missing if chunk.ref_target is None else floored(chunk.ref_target),
        variant_target=missing if chunk.var_target is None else floored(chunk.var_target),
    )


def floored(logprobs: npt.ArrayLike) -> Floats:
    """Log-probabilities as float64, none below log(EPS): a server may send −inf for a token of probability 0,
    which would turn 0 · log 0 into NaN and a perplexity into infinity (NaN, the missing-token mark, stays)."""
    values = np.array(logprobs, dtype=np.float64)
    return np.maximum(values, LOG_EPS, out=values)  # maximum keeps NaN


def _check_normalized(totals: Floats, which: str) -> None:
    worst = float(totals.max(initial=0.0))
    if worst > 1.0 + NORMALIZATION_TOLERANCE:
        raise NotADistribution(which, worst)


def _divergence(p: Floats, p_lp: Floats, coverage: Floats, q_lp: Floats, approximation: str,
                complete: bool) -> Floats:
    """KL(P ‖ Q) per row from P's top-K (probabilities, log-probs, coverage) and Q's log-probs of those tokens."""
    inside = (p * (p_lp - q_lp)).sum(axis=1)
    if complete:
        return inside
    q_mass = np.exp(q_lp).sum(axis=1)
    if approximation == "top-k-tail-bucket":
        p_tail = np.clip(1.0 - coverage, 0.0, 1.0)
        q_tail = np.clip(1.0 - q_mass, EPS, 1.0)
        bucket = np.where(p_tail > 0, p_tail * (np.log(np.maximum(p_tail, EPS)) - np.log(q_tail)), 0.0)
        return inside + bucket
    return inside / coverage - np.log(coverage) + np.log(np.maximum(q_mass, EPS))


class ColumnMatcher:
    """Finds, row by row, where each token of one top-K list sits in another: [rows, K] column indices, −1 where
    it is absent. A scratch table maps (row, token id) to a column of the other list; it is filled for a group of
    rows at a time, cleared again, and reused from call to call."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self._table = np.zeros(0, dtype=np.int32)

    def columns(self, ids: Ints, other_ids: Ints) -> npt.NDArray[np.int32]:
        """For each entry of `ids`, its column in the same row of `other_ids`, or −1."""
        rows, width = ids.shape[0], other_ids.shape[1]
        span = int(max(self.vocab_size, int(ids.max(initial=0)) + 1, int(other_ids.max(initial=0)) + 1))
        group = max(1, min(rows, LOOKUP_ELEMENTS // span))
        if self._table.size < group * span:
            self._table = np.zeros(group * span, dtype=np.int32)
        table = self._table  # all zeros between calls: 0 means "not in the other list", c + 1 column c
        numbered = np.broadcast_to(np.arange(1, width + 1, dtype=np.int32), (group, width))
        out = np.empty(ids.shape, dtype=np.int32)
        for start in range(0, rows, group):
            count = min(rows, start + group) - start
            offsets = (np.arange(count, dtype=np.int32) * span)[:, None]  # < LOOKUP_ELEMENTS: int32 is enough
            keys = other_ids[start:start + count] + offsets
            table[keys] = numbered[:count]
            try:
                np.subtract(table[ids[start:start + count] + offsets], 1, out=out[start:start + count])
            finally:
                table[keys] = 0
        return out

    def both_ways(self, ref_ids: Ints, var_ids: Ints) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """(each reference token's column in the variant's list, each variant token's column in the reference's)."""
        forward = self.columns(ref_ids, var_ids)
        rows, width = var_ids.shape
        size = rows * width
        # Scatter each match back to the variant's position; misses all land on one spare slot at the end.
        backward = np.full(size + 1, -1, dtype=np.int32)
        where = np.where(forward >= 0, forward + (np.arange(rows, dtype=np.int32) * width)[:, None], size)
        backward[where.ravel()] = np.broadcast_to(np.arange(forward.shape[1], dtype=np.int32), forward.shape).ravel()
        return forward, backward[:size].reshape(rows, width)


def logprobs_at(columns: npt.NDArray[np.int32], other_logprobs: Floats, other_mass: Floats) -> Floats:
    """The other model's log-probability at `columns` (from ColumnMatcher), [rows, K]; a token it does not list
    gets min(its K-th probability, its tail mass 1 − `other_mass` / the number of such tokens)."""
    rows, width = other_logprobs.shape
    flat = columns + (np.arange(rows, dtype=np.int32) * width)[:, None]
    missing = columns < 0
    out = other_logprobs.ravel()[np.maximum(flat, 0, out=flat)]
    if missing.any():
        count = missing.sum(axis=1)
        tail = np.clip(1.0 - other_mass, EPS, 1.0)
        imputed = np.minimum(other_logprobs.min(axis=1), np.log(tail) - np.log(np.maximum(count, 1)))
        np.copyto(out, np.broadcast_to(imputed[:, None], out.shape), where=missing)
    return out


def top_k_agreement(ref_ids: Ints, var_ids: Ints, ref_logprobs: npt.ArrayLike,
                    var_logprobs: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """[rows, min(K, AGREEMENT_K)]: column k − 1 is True where both models' k most likely tokens are one set.

    Tokens of equal probability (frequent when logits are bf16) are ordered by token id, so the sets do not depend
    on how a backend happened to order a tie.
    """
    width = min(AGREEMENT_K, ref_ids.shape[1], var_ids.shape[1])
    ref_head = canonical_head(ref_ids, np.asarray(ref_logprobs), width)
    var_head = canonical_head(var_ids, np.asarray(var_logprobs), width)
    agree = np.empty((ref_ids.shape[0], width), dtype=bool)
    for k in range(1, width + 1):
        agree[:, k - 1] = (np.sort(ref_head[:, :k], axis=1) == np.sort(var_head[:, :k], axis=1)).all(axis=1)
    return agree


def canonical_head(ids: Ints, logprobs: npt.NDArray[np.floating], width: int) -> Ints:
    """Each row's `width` most likely tokens, most likely first, ties broken by the lower token id.

    Rows come sorted by descending probability, so only their first HEAD_COLUMNS are sorted again; a row whose tie
    at position `width` continues past them is sorted whole.
    """
    span = min(ids.shape[1], HEAD_COLUMNS)
    head_ids, head_lp = ids[:, :span], logprobs[:, :span]
    order = np.lexsort((head_ids, -head_lp), axis=-1)
    out = np.take_along_axis(head_ids, order, axis=1)[:, :width]
    if span < ids.shape[1]:
        boundary = np.take_along_axis(head_lp, order[:, width - 1: width], axis=1)[:, 0]
        for row in np.flatnonzero(head_lp[:, -1] == boundary):
            whole = np.lexsort((ids[row], -logprobs[row]))
            out[row] = ids[row][whole][:width]
    return out
