"""Per-position scores (publish/eval/metrics.py) and the statistics (publish/eval/statistics.py) on hand-made arrays,
against hand-computed values and the independent key (tests/kldkey.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from publish.eval.metrics import (
    Chunk,
    ColumnMatcher,
    NotADistribution,
    canonical_head,
    score_chunk,
    scored_rows,
    top_k_agreement,
)
from publish.eval.statistics import buckets, kld_statistics
from publish.manifest.evaluation import KLD_METHODS

from . import kldkey


def topk(probs: list[list[float]], ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ids, dtype=np.int32), np.log(np.array(probs, dtype=np.float64))


# Three positions, vocabulary of 10, K = 2. Position 2's reference token 1 is not in the variant's top-K, and
# the variant's token 2 is in the reference's top-K there but its token 7 is not.
REF = topk([[0.5, 0.3], [0.6, 0.2], [0.9, 0.1]], [[3, 5], [1, 2], [0, 9]])
VAR = topk([[0.4, 0.4], [0.5, 0.3], [0.7, 0.2]], [[3, 5], [2, 7], [0, 9]])


def three_positions(approximation: str) -> tuple[np.ndarray, np.ndarray]:
    scores = score_chunk(Chunk(*REF, *VAR), approximation, vocab_size=10)
    return scores.kl, scores.kl_reverse


def test_tail_bucket_matches_a_hand_computed_example() -> None:
    # The variant's missing token 1 gets its tail mass (1 - 0.5 - 0.3 = 0.2), capped at its K-th probability 0.3.
    expected = [
        0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4) + 0.2 * math.log(0.2 / 0.2),
        0.6 * math.log(0.6 / 0.2) + 0.2 * math.log(0.2 / 0.5) + 0.2 * math.log(0.2 / (1 - 0.2 - 0.5)),
        0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.2),  # the reference's top-2 hold all its mass
    ]
    assert three_positions("top-k-tail-bucket")[0] == pytest.approx(expected, abs=1e-9)


def test_reverse_tail_bucket_uses_the_variants_top_k_and_tail() -> None:
    # KL(variant ‖ reference): position 2's variant token 7 is outside the reference's top-2, so it gets the
    # reference's tail 0.2 (capped at its K-th probability 0.2).
    expected = [
        0.4 * math.log(0.4 / 0.5) + 0.4 * math.log(0.4 / 0.3) + 0.2 * math.log(0.2 / 0.2),
        0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.2) + 0.2 * math.log(0.2 / (1 - 0.2 - 0.2)),
        0.7 * math.log(0.7 / 0.9) + 0.2 * math.log(0.2 / 0.1) + 0.1 * math.log(0.1 / 1e-30),
    ]
    assert three_positions("top-k-tail-bucket")[1] == pytest.approx(expected, rel=1e-9)


def test_renormalized_matches_a_hand_computed_example() -> None:
    def kl(p: list[float], q: list[float]) -> float:
        p = [x / sum(p) for x in p]
        q = [x / sum(q) for x in q]
        return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))

    expected = [kl([0.5, 0.3], [0.4, 0.4]), kl([0.6, 0.2], [0.2, 0.5]), kl([0.9, 0.1], [0.7, 0.2])]
    assert three_positions("top-k-renormalized")[0] == pytest.approx(expected, abs=1e-9)


def random_rows(rng: np.random.Generator, rows: int, vocab: int, sharpness: float) -> np.ndarray:
    logits = rng.normal(size=(rows, vocab)) * sharpness
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def sparse(logprobs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.argsort(-logprobs, axis=1, kind="stable")[:, :k]
    return ids.astype(np.int32), np.take_along_axis(logprobs, ids, axis=1)


@pytest.mark.parametrize("approximation", ["top-k-tail-bucket", "top-k-renormalized"])
def test_identical_distributions_give_zero_both_ways(approximation: str) -> None:
    ref = sparse(random_rows(np.random.default_rng(0), 200, 50, 2.0), 10)
    scores = score_chunk(Chunk(*ref, *ref), approximation, vocab_size=50)
    assert np.all(scores.kl == 0.0) and np.all(scores.kl_reverse == 0.0)
    assert np.all(scores.agreement)


def test_nearly_identical_distributions_match_the_exact_kl_closely() -> None:
    # Rounding could push such a KL below zero or hide it; the scores must stay within 1e-12 of the exact values.
    rng = np.random.default_rng(1)
    ref = random_rows(rng, 500, 40, 3.0)
    var = ref + rng.normal(size=ref.shape) * 1e-3
    var -= np.log(np.exp(var).sum(axis=1, keepdims=True))
    scores = score_chunk(Chunk(*sparse(ref, 40), *sparse(var, 40)), "top-k-tail-bucket", vocab_size=40)
    exact = [kldkey.divergence(list(p), list(q), 40) for p, q in zip(ref, var, strict=True)]
    assert scores.kl == pytest.approx(exact, rel=1e-9, abs=1e-12)
    assert 0 < scores.kl.min() < 1e-5


def test_rows_that_are_not_distributions_are_refused() -> None:
    ids, logprobs = REF
    with pytest.raises(NotADistribution, match="variant.s probabilities sum to 1.875"):
        score_chunk(Chunk(ids, logprobs, ids, logprobs + math.log(1.5 / 0.8)), "top-k-tail-bucket", vocab_size=10)


def test_a_token_of_probability_zero_gives_finite_statistics() -> None:
    # A server may send -inf for a token it gives no probability; the statistics stay finite (JSON has no inf).
    ids = np.array([[0, 1, 2], [0, 1, 2]], dtype=np.int32)
    logprobs = np.array([[math.log(0.7), math.log(0.3), -np.inf]] * 2)
    target = np.array([-np.inf, np.nan])
    scores = score_chunk(Chunk(ids, logprobs, ids, logprobs, target, np.log([0.3, 0.3])), "top-k-tail-bucket", 3)
    assert scores.kl.tolist() == [0.0, 0.0] and np.isnan(scores.reference_target[1])
    statistics = kld_statistics([scores])
    assert statistics.tokens is not None and statistics.tokens.positions == 1
    assert math.isfinite(statistics.tokens.perplexity.reference) and statistics.tokens.delta_p.mean == 0.3


def test_top_k_of_the_whole_vocabulary_is_the_exact_kl_both_ways() -> None:
    import torch

    rng = np.random.default_rng(2)
    ref, var = random_rows(rng, 300, 16, 2.0), random_rows(rng, 300, 16, 2.0)

    def exact(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return torch.nn.functional.kl_div(torch.tensor(q), torch.tensor(p), log_target=True,
                                          reduction="none").sum(-1).numpy()

    for approximation in ("top-k-tail-bucket", "top-k-renormalized"):
        scores = score_chunk(Chunk(*sparse(ref, 16), *sparse(var, 16)), approximation, vocab_size=16)
        assert scores.kl == pytest.approx(exact(ref, var), rel=1e-9, abs=1e-12)
        assert scores.kl_reverse == pytest.approx(exact(var, ref), rel=1e-9, abs=1e-12)
    full = score_chunk(Chunk(*sparse(ref, 16), *sparse(var, 16), ref_full=ref, var_full=var), "full-vocab", 16)
    assert full.kl == pytest.approx(exact(ref, var), rel=1e-12, abs=1e-12)
    assert full.kl_reverse == pytest.approx(exact(var, ref), rel=1e-12, abs=1e-12)


def test_top_k_agreement_compares_sets_not_orders() -> None:
    ref = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]], dtype=np.int32)
    var = np.array([[2, 1, 3, 5, 4, 9], [1, 3, 2, 4, 5, 6]], dtype=np.int32)
    descending = np.log(np.array([[0.3, 0.2, 0.15, 0.1, 0.08, 0.07]] * 2))
    found = top_k_agreement(ref, var, descending, descending)
    assert found.tolist() == [[False, True, True, False, True], [True, False, True, True, True]]


def test_tied_tokens_are_ordered_by_id_whatever_order_a_backend_gave() -> None:
    # Tokens 7 and 3 tie for first place, 2 and 4 for fifth.
    ids = np.array([[7, 3, 5, 1, 4, 2]], dtype=np.int32)
    lp = np.log(np.array([[0.3, 0.3, 0.2, 0.1, 0.05, 0.05]]))
    assert canonical_head(ids, lp, 5).tolist() == [[3, 7, 5, 1, 2]]
    swapped = [1, 0, 2, 3, 5, 4]
    assert top_k_agreement(ids, ids[:, swapped], lp, lp[:, swapped]).all()
    # A tie at the fifth place that runs past the re-sorted head columns: the whole row is sorted.
    wide_ids = np.array([[9, 8, 6, 5, *range(40, 0, -1)]], dtype=np.int32)
    wide_lp = np.log(np.array([[0.4, 0.3, 0.2, 0.05, *[0.05 / 40] * 40]]))
    assert canonical_head(wide_ids, wide_lp, 5).tolist() == [[9, 8, 6, 5, 1]]


def test_a_reused_matcher_is_not_misled_by_earlier_lists() -> None:
    rng = np.random.default_rng(5)
    matcher = ColumnMatcher(vocab_size=30)
    for rows, k, other_k in ((7, 6, 6), (5, 3, 6), (9, 6, 2), (7, 6, 6)):
        ids = np.array([rng.permutation(30)[:k] for _ in range(rows)], dtype=np.int32)
        other = np.array([rng.permutation(30)[:other_k] for _ in range(rows)], dtype=np.int32)
        expected = [[list(o).index(t) if t in o else -1 for t in row] for row, o in zip(ids, other, strict=True)]
        assert matcher.columns(ids, other).tolist() == expected


def test_buckets_are_half_open_and_the_last_holds_one() -> None:
    top1 = np.array([0.0, 0.2499, 0.25, 0.5, 0.74, 0.75, 0.95, 0.99, 1.0])
    kl = np.arange(9, dtype=np.float64)
    found = [(b.positions, b.mean_kl) for b in buckets(top1, kl)]
    assert found == [(2, 0.5), (1, 2.0), (2, 3.5), (1, 5.0), (3, 7.0)]


def chunk_from_full(ref: np.ndarray, var: np.ndarray, tokens: np.ndarray, k: int) -> Chunk:
    """Rows of one window as a dump would hold them, with the correct next token's log-prob (NaN on the last row)."""
    def target(lp: np.ndarray) -> np.ndarray:
        out = np.full(len(lp), np.nan)
        out[:-1] = lp[np.arange(len(lp) - 1), tokens[1:]]
        return out

    full = k >= ref.shape[1]
    return Chunk(*sparse(ref, k), *sparse(var, k), target(ref), target(var), ref if full else None,
                 var if full else None)


@pytest.mark.parametrize(("k", "method"), [(24, "next-token"), (24, "all-logits"), (6, "next-token"),
                                           (6, "second-half")])
def test_every_statistic_equals_the_independent_key(k: int, method: str) -> None:
    rng = np.random.default_rng(3)
    vocab, length, windows = 24, 40, 3
    ref = [random_rows(rng, length, vocab, 2.5) for _ in range(windows)]
    var = [r + rng.normal(size=r.shape) * 0.3 for r in ref]
    var = [v - np.log(np.exp(v).sum(axis=1, keepdims=True)) for v in var]
    tokens = [rng.integers(0, vocab, size=length) for _ in range(windows)]
    start, stop = scored_rows(method, length)
    approximation = "full-vocab" if k >= vocab else "top-k-tail-bucket"
    parts = []
    for r, v, t in zip(ref, var, tokens, strict=True):
        chunk = chunk_from_full(r, v, t, k)
        parts.append(score_chunk(Chunk(*(None if a is None else a[start:stop] for a in chunk.__dict__.values())),
                                 approximation, vocab))
    expected = kldkey.key([r.tolist() for r in ref], [v.tolist() for v in var], [t.tolist() for t in tokens],
                          method, k)
    kldkey.assert_matches(kld_statistics(parts).to_json(), expected, rel=1e-9, abs_=1e-12)


@pytest.mark.parametrize("approximation", ["full-vocab", "top-k-tail-bucket"])
def test_scoring_in_blocks_of_rows_changes_nothing(monkeypatch: pytest.MonkeyPatch, approximation: str) -> None:
    from publish.eval import metrics

    rng = np.random.default_rng(6)
    ref, var = random_rows(rng, 90, 24, 2.0), random_rows(rng, 90, 24, 2.0)
    k = 24 if approximation == "full-vocab" else 6
    chunk = chunk_from_full(ref, var, rng.integers(0, 24, size=90), k)
    whole = score_chunk(chunk, approximation, 24)
    monkeypatch.setattr(metrics, "BLOCK_ELEMENTS", 7 * 24)  # blocks of 7 rows (full rows are 24 wide)
    blocks = score_chunk(chunk, approximation, 24)
    for name, value in whole.__dict__.items():
        np.testing.assert_array_equal(getattr(blocks, name), value, err_msg=name)


def test_a_single_position_has_no_uncertainty() -> None:
    ref = random_rows(np.random.default_rng(4), 2, 8, 1.0)
    scores = score_chunk(chunk_from_full(ref, ref, np.array([0, 1]), 8), "top-k-tail-bucket", 8)
    single = scores.__class__(**{name: value[:1] for name, value in scores.__dict__.items()})
    found = kld_statistics([single])
    assert (found.kl.se, found.same_top1_se, found.tokens and found.tokens.perplexity.ln_ratio_se) == (None, None, None)


@pytest.mark.parametrize("method", ["next-token", "second-half", "all-logits"])
def test_scored_rows_follow_the_manifest_rule(method: str) -> None:
    start, stop = scored_rows(method, 2048)
    assert 64 * (stop - start) == 64 * KLD_METHODS[method][1](2048)
    assert stop <= 2048
