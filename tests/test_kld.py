"""The KL divergence metrics (publish/kld.py) on hand-made arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from publish.eval.metrics import Chunk, score_chunk, scored_rows, summarize
from publish.manifest.model import KLD_METHODS


def topk(probs: list[list[float]], ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ids, dtype=np.int32), np.log(np.array(probs, dtype=np.float64))


# Three positions, vocabulary of 10, K = 2. Position 2's reference token 1 is not in the variant's top-K.
REF = topk([[0.5, 0.3], [0.6, 0.2], [0.9, 0.1]], [[3, 5], [1, 2], [0, 9]])
VAR = topk([[0.4, 0.4], [0.5, 0.3], [0.7, 0.2]], [[3, 5], [2, 7], [0, 9]])


def three_positions(approximation: str) -> np.ndarray:
    chunk = Chunk(REF[0], REF[1], VAR[0], VAR[1])
    return score_chunk(chunk, approximation, vocab_size=10).kl


def test_tail_bucket_matches_a_hand_computed_example() -> None:
    # The variant's missing token 1 gets its tail mass (1 - 0.5 - 0.3 = 0.2), capped at its K-th probability 0.3.
    expected = [
        0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4) + 0.2 * math.log(0.2 / 0.2),
        0.6 * math.log(0.6 / 0.2) + 0.2 * math.log(0.2 / 0.5) + 0.2 * math.log(0.2 / (1 - 0.2 - 0.5)),
        0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.2),  # the reference's top-2 hold all its mass
    ]
    assert three_positions("top-k-tail-bucket") == pytest.approx(expected, abs=1e-9)


def test_renormalized_matches_a_hand_computed_example() -> None:
    def kl(p: list[float], q: list[float]) -> float:
        p = [x / sum(p) for x in p]
        q = [x / sum(q) for x in q]
        return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))

    expected = [kl([0.5, 0.3], [0.4, 0.4]), kl([0.6, 0.2], [0.2, 0.5]), kl([0.9, 0.1], [0.7, 0.2])]
    assert three_positions("top-k-renormalized") == pytest.approx(expected, abs=1e-9)


def random_rows(rng: np.random.Generator, rows: int, vocab: int, sharpness: float) -> np.ndarray:
    logits = rng.normal(size=(rows, vocab)) * sharpness
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def sparse(logprobs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.argsort(-logprobs, axis=1)[:, :k]
    return ids.astype(np.int32), np.take_along_axis(logprobs, ids, axis=1).astype(np.float32)


@pytest.mark.parametrize("approximation", ["top-k-tail-bucket", "top-k-renormalized"])
def test_identical_distributions_give_zero(approximation: str) -> None:
    ref = sparse(random_rows(np.random.default_rng(0), 200, 50, 2.0), 10)
    scores = score_chunk(Chunk(*ref, *ref), approximation, vocab_size=50)
    assert np.all(scores.kl == 0.0)
    assert np.all(scores.same_top1)


@pytest.mark.parametrize("approximation", ["top-k-tail-bucket", "top-k-renormalized"])
def test_kl_is_never_negative(approximation: str) -> None:
    rng = np.random.default_rng(1)
    ref = random_rows(rng, 2000, 40, 3.0)
    var = ref + rng.normal(size=ref.shape) * 0.05  # nearly identical: rounding could push a KL below zero
    var -= np.log(np.exp(var).sum(axis=1, keepdims=True))
    scores = score_chunk(Chunk(*sparse(ref, 5), *sparse(var, 5)), approximation, vocab_size=40)
    assert scores.kl.min() >= 0.0


def test_top_k_of_the_whole_vocabulary_is_the_exact_kl() -> None:
    import torch

    rng = np.random.default_rng(2)
    ref, var = random_rows(rng, 300, 16, 2.0), random_rows(rng, 300, 16, 2.0)
    exact = torch.nn.functional.kl_div(torch.tensor(var), torch.tensor(ref), log_target=True, reduction="none").sum(-1)
    for approximation in ("top-k-tail-bucket", "top-k-renormalized"):
        chunk = Chunk(*sparse(ref, 16), *sparse(var, 16))
        assert score_chunk(chunk, approximation, vocab_size=16).kl == pytest.approx(exact.numpy(), rel=1e-5, abs=1e-7)
    full = Chunk(*sparse(ref, 16), *sparse(var, 16), ref_full=ref, var_full=var)
    assert score_chunk(full, "full-vocab", vocab_size=16).kl == pytest.approx(exact.numpy(), rel=1e-12, abs=1e-12)


def test_summary_reports_percentiles_coverage_and_top1_agreement() -> None:
    chunk = Chunk(REF[0], REF[1], VAR[0], VAR[1])
    metrics = summarize([score_chunk(chunk, "top-k-tail-bucket", vocab_size=10)])
    kl = three_positions("top-k-tail-bucket")
    assert metrics.positions == 3
    assert metrics.median == pytest.approx(float(np.median(kl)))
    assert metrics.max == pytest.approx(kl.max())
    assert metrics.mean_coverage == pytest.approx((0.8 + 0.8 + 1.0) / 3)
    assert metrics.same_top1 == pytest.approx(2 / 3)  # position 2: reference says 1, variant says 2


@pytest.mark.parametrize("method", ["next-token", "second-half", "all-logits"])
def test_scored_rows_follow_the_manifest_rule(method: str) -> None:
    start, stop = scored_rows(method, 2048)
    assert 64 * (stop - start) == 64 * KLD_METHODS[method][1](2048)
    assert stop <= 2048
