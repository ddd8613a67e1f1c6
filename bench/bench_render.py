"""Benchmark `hubpub render` on the shipped branches.yaml: the wall clock of the whole command (interpreter,
imports, rendering, writing), median of N runs in a fresh copy of the manifest outside git, and in this checkout.

Warm runs keep render's cache (compiled templates, front matter already read back through huggingface_hub's
ModelCard) in a scratch HUBPUB_CACHE; cold runs start each time with an empty one, as a first render does.

    python bench/bench_render.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], cwd: Path, runs: int, cache: Path | None = None, cold: bool = False) -> list[float]:
    samples = []
    env = dict(os.environ)
    for _ in range(runs):
        if cache is not None:
            if cold:
                shutil.rmtree(cache.parent, ignore_errors=True)
            env["HUBPUB_CACHE"] = str(cache)
        start = time.perf_counter()
        subprocess.run(args, cwd=cwd, check=True, capture_output=True, env=env)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    command = [sys.executable, "-m", "publish.cli", "render", "-q"]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name in ("branches.yaml", "quantize.py", "log.txt"):
            shutil.copy(ROOT / name, folder / name)
        cache = folder / "cache" / "hashes.json"
        timed(command, folder, 2, cache)  # warm the file cache and render's own
        outside = timed(command, folder, options.runs, cache)
        inside = timed([*command, "--out", str(folder / "cards")], ROOT, options.runs, cache)
        cold = timed(command, folder, options.runs, cache, cold=True)
    baseline = timed([sys.executable, "-c", "pass"], ROOT, options.runs)
    for label, samples in (("render, manifest outside git", outside), ("render, in this git checkout", inside),
                           ("render, outside git, empty cache", cold),
                           ("python -c pass (interpreter alone)", baseline)):
        print(f"{label:40} median {statistics.median(samples) * 1000:6.0f} ms  "
              f"min {min(samples) * 1000:6.0f} ms  ({len(samples)} runs)")


if __name__ == "__main__":
    main()
