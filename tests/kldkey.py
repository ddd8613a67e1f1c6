"""An independent key for `hubpub eval`'s statistics: plain Python floats, one position at a time, written from the
definitions (docs/evaluation.md, llama.cpp's and exllamav3's reports), sharing no code with publish/eval.

`key(ref, var, tokens, method, k)` takes both models' full log-probability rows (lists of floats per window and
row), computes each position's quantities exactly (k ≥ vocabulary) or under the top-k tail-bucket rule, and returns
the statistics object kld.json holds.
"""

from __future__ import annotations

import math
import statistics as stats
from itertools import pairwise
from typing import Any

PERCENTILES = (0.1, 1, 5, 10, 50, 90, 95, 99, 99.9)
EDGES = (0.0, 0.25, 0.5, 0.75, 0.95, 1.0)

Rows = list[list[list[float]]]  # [window][row][token] log-probabilities


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics: rank q/100 · (n − 1)."""
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def spread(values: list[float]) -> dict[str, Any]:
    return {"mean": math.fsum(values) / len(values), "se": stats.stdev(values) / math.sqrt(len(values)),
            "min": min(values), "max": max(values),
            "percentiles": {f"p{q:g}": percentile(values, q) for q in PERCENTILES}}


def top(row: list[float], k: int) -> list[int]:
    return sorted(range(len(row)), key=lambda i: -row[i])[:k]


def divergence(p_row: list[float], q_row: list[float], k: int) -> float:
    """KL(P ‖ Q): exact when k covers the vocabulary, else P's top-k plus one tail bucket, Q's probabilities of
    tokens outside its own top-k imputed as min(its k-th probability, its tail / the missing count)."""
    if k >= len(p_row):
        return math.fsum(math.exp(a) * (a - b) for a, b in zip(p_row, q_row, strict=True))
    support, q_top = top(p_row, k), top(q_row, k)
    known = set(q_top)
    missing = [i for i in support if i not in known]
    q_tail = 1 - math.fsum(math.exp(q_row[i]) for i in q_top)
    imputed = min(math.exp(q_row[q_top[-1]]), q_tail / len(missing)) if missing else 0.0
    q = {i: math.exp(q_row[i]) if i in known else imputed for i in support}
    inside = math.fsum(math.exp(p_row[i]) * (p_row[i] - math.log(q[i])) for i in support)
    p_rest = 1 - math.fsum(math.exp(p_row[i]) for i in support)
    q_rest = 1 - math.fsum(q.values())
    return inside + (p_rest * math.log(p_rest / q_rest) if p_rest > 0 else 0.0)


def key(ref: Rows, var: Rows, tokens: list[list[int]], method: str, k: int) -> dict[str, Any]:
    """The statistics object, computed position by position from full log-probability rows."""
    kl, reverse, coverage, top1, same, agree = [], [], [], [], [], {n: [] for n in range(1, 6)}
    ref_lp, var_lp = [], []
    for window, (ref_rows, var_rows) in enumerate(zip(ref, var, strict=True)):
        length = len(ref_rows)
        rows = {"next-token": range(length - 1), "second-half": range(length // 2, length - 1),
                "all-logits": range(length)}[method]
        for t in rows:
            p, q = ref_rows[t], var_rows[t]
            kl.append(max(0.0, divergence(p, q, k)))
            reverse.append(max(0.0, divergence(q, p, k)))
            p_top, q_top = top(p, k), top(q, k)
            coverage.append(math.fsum(math.exp(p[i]) for i in p_top))
            top1.append(math.exp(p[p_top[0]]))
            same.append(p_top[0] == q_top[0])
            for n in range(1, min(5, k) + 1):
                agree[n].append(set(p_top[:n]) == set(q_top[:n]))
            if t + 1 < length:
                token = tokens[window][t + 1]
                ref_lp.append(p[token])
                var_lp.append(q[token])
    n = len(kl)
    rate = sum(same) / n
    delta = [math.exp(b) - math.exp(a) for a, b in zip(ref_lp, var_lp, strict=True)]
    squares = [d * d for d in delta]
    rms = math.sqrt(math.fsum(squares) / len(squares))
    ref_nll, var_nll = [-a for a in ref_lp], [-b for b in var_lp]
    ref_ppl, var_ppl = math.exp(stats.fmean(ref_nll)), math.exp(stats.fmean(var_nll))
    difference = [b - a for a, b in zip(ref_nll, var_nll, strict=True)]
    buckets = []
    for low, high in pairwise(EDGES):
        inside = [d for d, p1 in zip(kl, top1, strict=True) if low <= p1 < high or (high == 1.0 and p1 >= 1.0)]
        buckets.append({"from": low, "to": high, "positions": len(inside),
                        "mean_kl": math.fsum(inside) / len(inside) if inside else None})
    return {
        "positions": n, "kl": spread(kl), "kl_reverse": spread(reverse), "mean_coverage": stats.fmean(coverage),
        "same_top1": {"rate": rate, "se": math.sqrt(rate * (1 - rate) / (n - 1))},
        "top_k_agreement": {str(m): sum(v) / n for m, v in agree.items() if v},
        "kl_by_reference_top1": buckets, "token_positions": len(delta),
        "delta_p": {**spread(delta), "rms": rms,
                    "rms_se": 0.5 / rms * stats.stdev(squares) / math.sqrt(len(squares))},
        "perplexity": {
            "reference": ref_ppl, "reference_se": ref_ppl * stats.stdev(ref_nll) / math.sqrt(len(ref_nll)),
            "variant": var_ppl, "variant_se": var_ppl * stats.stdev(var_nll) / math.sqrt(len(var_nll)),
            "ratio": var_ppl / ref_ppl, "ln_ratio": stats.fmean(difference),
            "ln_ratio_se": stats.stdev(difference) / math.sqrt(len(difference)),
            "correlation": stats.correlation(ref_nll, var_nll),
        },
    }


def assert_matches(found: Any, expected: Any, where: str = "statistics", rel: float = 1e-5,
                   abs_: float = 1e-7) -> None:
    """Every number of `expected` is in `found` at the same place, within the tolerances."""
    if isinstance(expected, dict):
        assert isinstance(found, dict) and set(found) == set(expected), (where, found, expected)
        for name, value in expected.items():
            assert_matches(found[name], value, f"{where}.{name}", rel, abs_)
    elif isinstance(expected, list):
        assert isinstance(found, list) and len(found) == len(expected), (where, found, expected)
        for index, (a, b) in enumerate(zip(found, expected, strict=True)):
            assert_matches(a, b, f"{where}[{index}]", rel, abs_)
    elif expected is None or isinstance(expected, bool | str):
        assert found == expected, (where, found, expected)
    else:
        assert math.isclose(found, expected, rel_tol=rel, abs_tol=abs_), (where, found, expected)
