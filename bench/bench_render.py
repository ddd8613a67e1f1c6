"""Benchmark `hubpub render` on the shipped branches.yaml: the wall clock of the whole command (interpreter,
imports, rendering, writing), median of N runs in a fresh copy of the manifest outside git, and in this checkout.

    python bench/bench_render.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], cwd: Path, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(args, cwd=cwd, check=True, capture_output=True)
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
        timed(command, folder, 2)  # warm the file cache
        outside = timed(command, folder, options.runs)
        inside = timed([*command, "--out", str(folder / "cards")], ROOT, options.runs)
    baseline = timed([sys.executable, "-c", "pass"], ROOT, options.runs)
    for label, samples in (("render, manifest outside git", outside), ("render, in this git checkout", inside),
                           ("python -c pass (interpreter alone)", baseline)):
        print(f"{label:40} median {statistics.median(samples) * 1000:6.0f} ms  "
              f"min {min(samples) * 1000:6.0f} ms  ({len(samples)} runs)")


if __name__ == "__main__":
    main()
