"""Score variants' dumps against the reference's: read aligned slices of windows, score each position
(metrics.py), then the statistics (statistics.py). The reference is read once for all variants, and memory stays
bounded by the slice, whatever the dumps' size."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from publish.errors import DumpError, UsageError
from publish.eval.dumps import Dump
from publish.eval.metrics import (
    APPROXIMATIONS,
    METHODS,
    Chunk,
    ColumnMatcher,
    NotADistribution,
    PositionScores,
    score_chunk,
    scored_rows,
)
from publish.eval.statistics import KldStatistics, kld_statistics

# Rows × K elements scored at once: bounds memory (a few hundred MB at most) whatever the dump's size.
CHUNK_ELEMENTS = 2_000_000


def check_settings(method: str, approximation: str) -> None:
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", field="--method")
    if approximation not in APPROXIMATIONS:
        raise UsageError(f"unknown approximation {approximation!r}; use one of {', '.join(APPROXIMATIONS)}",
                         field="--approximation")


def compare(reference: Dump, variants: Mapping[str, Dump], method: str,
            approximation: str) -> dict[str, KldStatistics]:
    """Each variant's statistics against `reference`, over the positions `method` scores."""
    check_settings(method, approximation)
    if not variants:
        raise UsageError("name at least one variant dump to score")
    full = approximation == "full-vocab"
    for dump in (reference, *variants.values()):
        if dump is not reference:
            check_comparable(reference, dump)
        if full and not dump.has_full:
            raise DumpError("full-vocab needs full distributions in every dump", file=dump.path,
                            hint="dump with --top-k at least the vocabulary size, or choose a top-k approximation")
    start, stop = scored_rows(method, reference.info.sequence_length)
    rows = slice(start, stop)
    width = max(reference.top_k, *(v.top_k for v in variants.values()), reference.info.vocab_size if full else 0)
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, (stop - start) * width))
    scores: dict[str, list[PositionScores]] = {name: [] for name in variants}
    matcher = ColumnMatcher(reference.info.vocab_size)
    for first in range(0, reference.info.samples, per_chunk):
        windows = slice(first, min(reference.info.samples, first + per_chunk))
        ref = _side(reference, windows, rows, full)
        for name, dump in variants.items():
            var = _side(dump, windows, rows, full)
            chunk = Chunk(ref[0], ref[1], var[0], var[1], ref[2], var[2], ref[3], var[3])
            try:
                scores[name].append(score_chunk(chunk, approximation, reference.info.vocab_size, matcher))
            except NotADistribution as error:
                culprit = reference if error.which == "reference" else dump
                raise DumpError(f"{error}: these are not log-probabilities", file=culprit.path,
                                hint="dump log-probabilities (vLLM: --logprobs-mode raw_logprobs), not logits") from None
    return {name: kld_statistics(parts) for name, parts in scores.items()}


def _side(dump: Dump, windows: slice, rows: slice, full: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    return (dump.rows("topk_ids", windows, rows), dump.rows("topk_logprobs", windows, rows),
            dump.rows("target_logprobs", windows, rows), dump.rows("logprobs", windows, rows) if full else None)


def check_comparable(ref: Dump, var: Dump) -> None:
    """Both dumps cover the same token windows over the same vocabulary."""
    a, b = ref.info, var.info
    if (a.samples, a.sequence_length) != (b.samples, b.sequence_length):
        raise DumpError(f"the dumps cover different windows: {a.samples}×{a.sequence_length} here, "
                        f"{b.samples}×{b.sequence_length} in {var.path.name}", file=ref.path,
                        hint="dump the variant with --windows-from the reference dump")
    if not np.array_equal(ref.token_ids(), var.token_ids()):
        raise DumpError(f"the dumps are of different tokens than {var.path.name}", file=ref.path,
                        hint="dump the variant with --windows-from the reference dump")
    if a.vocab_size != b.vocab_size:
        # Tokenizer files may differ byte for byte (re-serialized on save) and still agree; the vocabulary may not.
        raise DumpError(f"the models do not share a vocabulary ({a.vocab_size} vs {b.vocab_size} tokens)",
                        file=var.path, hint="KL divergence compares distributions over the same vocabulary")
