"""Scale benchmark for `hubpub eval score`: synthetic dumps the size of the seed's evaluation, all statistics.

64 windows × 2048 tokens, K = 1000, a 151,936-token vocabulary (Qwen's): next-token scores 131,008 positions.
The variant's top-K misses some of the reference's tokens (so the lookup and imputation paths run, both ways) and
its probabilities are perturbed; the correct token is drawn from the reference's top ranks. The dumps are made
once (about 1 GB each) in bench/.work/kld/; scoring then runs in a fresh process that reports its wall clock, CPU
time and peak resident memory (getrusage), the dumps' hashing and the kld.json statistics included.

    python bench/bench_kld.py [--windows 64] [--length 2048] [--top-k 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "kld"
VOCAB = 151_936


def make_dumps(folder: Path, windows: int, length: int, k: int, seed: int = 0) -> tuple[Path, Path]:
    import numpy as np

    from publish.eval.dumps import DumpInfo, WindowLogprobs, assemble, partial_folder, write_partial

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    paths = []
    for role in ("reference", "variant"):
        out = folder / f"{role}.safetensors"
        info = DumpInfo(model=f"synthetic-{role}", backend="transformers", dataset="synthetic", split=None,
                        text_sha256=None, sequence_length=length, samples=windows, top_k=k, vocab_size=VOCAB)
        if out.is_file():
            paths.append(out)
            continue
        gen = np.random.default_rng(seed)  # both roles draw the same reference rows
        for w in range(windows):
            tokens = gen.integers(0, VOCAB, size=length)
            # The reference's top-K ids lie in the vocabulary's first half, so the variant's replacements (from the
            # second half) never repeat an id within a row.
            half = VOCAB // 2
            base = gen.permutation(half)[:k]
            shift = gen.integers(0, half, size=(length, 1))
            ids = (base[None, :] + shift) % half
            # Zipf-like: the top-K holds ~99.8% of the mass, as in the seed's coverage.
            logits = -1.1 * np.log(ranks)[None, :] + gen.normal(0, 0.05, size=(length, k))
            logits = np.sort(logits, axis=1)[:, ::-1]
            logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)) + np.log(0.998)
            # The correct next token: mostly a top rank, as for a real text; the last row has none.
            rank = np.minimum(gen.geometric(0.3, size=length) - 1, k - 1)
            target = logprobs[np.arange(length), rank]
            target[-1] = np.nan
            if role == "variant":
                target = target + rng.normal(0, 0.05, size=length)
                logprobs = logprobs + rng.normal(0, 0.05, size=logprobs.shape)
                # Still a distribution: its top-K holds the same 99.8% of the mass.
                logprobs -= np.log(np.exp(logprobs).sum(axis=1, keepdims=True)) - np.log(0.998)
                # 2% of the variant's lower half of the top-K are tokens outside the reference's top-K.
                swap = (rng.random(ids.shape) < 0.02) & (np.arange(k) >= k // 2)[None, :]
                ids = np.where(swap, ids + half, ids)
                order = np.argsort(-logprobs, axis=1)
                ids, logprobs = np.take_along_axis(ids, order, 1), np.take_along_axis(logprobs, order, 1)
            window = WindowLogprobs(tokens, ids.astype(np.int32), logprobs.astype(np.float32),
                                    target.astype(np.float32))
            write_partial(partial_folder(out), w, window, info)
        assemble(partial_folder(out), out, info)
        paths.append(out)
    return paths[0], paths[1]


def score_once(reference: Path, variant: Path) -> None:
    """Run in a fresh process: score, then print wall clock, CPU time and peak RSS as JSON."""
    from publish.commands.eval import score

    start = time.perf_counter()
    artifact = score(reference, {"variant": variant}, "next-token", "top-k-tail-bucket")
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    found = artifact["variants"][0]["statistics"]
    print(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                      "peak_rss": usage.ru_maxrss * 1024, "positions": found["positions"],
                      "mean": found["kl"]["mean"], "reverse_mean": found["kl_reverse"]["mean"],
                      "ppl_ratio": found["perplexity"]["ratio"], "mean_coverage": found["mean_coverage"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--top-k", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--score", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score:
        score_once(*args.score)
        return
    from publish.eval.dumps import DUMP_VERSION

    folder = WORK / f"v{DUMP_VERSION}-{args.windows}x{args.length}x{args.top_k}"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    reference, variant = make_dumps(folder, args.windows, args.length, args.top_k)
    print(f"dumps ready in {time.perf_counter() - start:.1f} s: {reference.stat().st_size / 1e9:.2f} GB each")
    results = []
    for _ in range(args.runs):
        done = subprocess.run([sys.executable, __file__, "--score", str(reference), str(variant)],
                              capture_output=True, text=True, check=True, cwd=ROOT)
        results.append(json.loads(done.stdout))
        print(results[-1])
    print(f"median of {args.runs}: {statistics.median(r['seconds'] for r in results):.2f} s "
          f"({statistics.median(r['cpu_seconds'] for r in results):.2f} s of CPU, the import included), "
          f"peak RSS {max(r['peak_rss'] for r in results) / 2**20:.0f} MiB, positions {results[0]['positions']:,}")


if __name__ == "__main__":
    main()
