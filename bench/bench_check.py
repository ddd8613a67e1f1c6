"""Benchmark `hubpub check` on full-size Qwen3.6-27B checkpoints (sparse files) against the tiny fixture.

    python bench/bench_check.py [--runs 5] [--work bench/.work]

Two measurements:
1. wall clock of the real CLI (`hubpub check --manifest ...`, interpreter and imports included), full-size vs tiny:
   the cost must not grow with weight bytes (target ratio <= 1.5), both cold (empty caches: the architecture is
   built from config.json by transformers) and warm (the architecture read back from hubpub's cache);
2. in-process, after imports: reading the headers and configs, and running the checks alone on ~1,700 tensors
   (target <= 100 ms for the checks).
The full-size checkpoints are 36.8 GB and 38.7 GB of apparent size but about a megabyte on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml

from bench.sparse import build_sparse_checkpoint, checkpoint_stats


def manifest_for(folders: dict[str, Path], out: Path, *, exact_size: bool) -> Path:
    """The shipped branches.yaml pointed at `folders`; tiny checkpoints get their own size."""
    data = yaml.safe_load((ROOT / "branches.yaml").read_text())
    for variant in data["variants"]:
        folder = folders[variant["branch"]]
        variant["path"] = str(folder)
        if exact_size:
            size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            variant["size_gb"] = float(f"{size / 1e9:.3g}")
    out.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    for name in ("quantize.py", "log.txt"):
        (out.parent / name).write_text((ROOT / name).read_text())
    return out


def time_cli(manifest: Path, runs: int, cache: Path | None = None) -> list[float]:
    """Wall clock of `hubpub check` in a fresh interpreter, `runs` times. With `cache`, hubpub's caches (the check
    reports, which `check` never reuses, and the architectures built from config.json) live in that folder."""
    env = {**os.environ, "COMPRESSED_TENSORS_LOG_DISABLED": "1"}
    if cache is not None:
        env["HUBPUB_CACHE"] = str(cache / "hashes.json")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "publish.cli.main", "check", "--manifest", str(manifest)],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"hubpub check failed on {manifest}:\n{done.stdout}{done.stderr}")
    return times


def cold_and_warm(manifest: Path, runs: int, cache: Path) -> tuple[float, float]:
    """Medians of `runs` `hubpub check` runs with empty caches (the architecture is built from config.json), and of
    `runs` more with the cache the last of them left (the architecture is read back)."""
    import shutil

    cold = []
    for _ in range(runs):
        shutil.rmtree(cache, ignore_errors=True)
        cold += time_cli(manifest, 1, cache)
    return statistics.median(cold), statistics.median(time_cli(manifest, runs, cache))


def architecture_ms(folder: Path) -> float:
    """Building the architecture from config.json once more, imports done: what the architecture cache saves
    besides the import of the model's modeling code."""
    from publish.checkpoint.architecture import describe_architecture

    config = json.loads((folder / "config.json").read_text())
    start = time.perf_counter()
    describe_architecture(config, config["quantization_config"].get("kv_cache_scheme"))
    return (time.perf_counter() - start) * 1000


def time_stages(manifest_path: Path, runs: int) -> dict[str, float]:
    """Median milliseconds of reading (headers, index, configs) and of the checks, per variant, imports excluded."""
    from publish.checkpoint.architecture import ArchitectureCache
    from publish.checkpoint.findings import collect_findings
    from publish.checkpoint.read import read_checkpoint
    from publish.manifest.model import load_manifest

    manifest = load_manifest(manifest_path)
    result: dict[str, float] = {}
    for variant in manifest.variants:
        folder = manifest.variant_path(variant)
        architectures = ArchitectureCache(None)  # in memory, as `hubpub check` reads it from disk
        read_checkpoint(folder, architectures)  # warm: imports, page cache, the architecture built once
        result[f"{variant.branch} architecture ms"] = architecture_ms(folder)
        reads, checks = [], []
        for _ in range(runs):
            start = time.perf_counter()
            checkpoint = read_checkpoint(folder, architectures)
            middle = time.perf_counter()
            findings = collect_findings(checkpoint, variant)
            checks.append(time.perf_counter() - middle)
            reads.append(middle - start)
            assert not [f for f in findings if f.severity == "error"], findings
        result[f"{variant.branch} read ms"] = statistics.median(reads) * 1000
        result[f"{variant.branch} checks ms"] = statistics.median(checks) * 1000
        result[f"{variant.branch} tensors"] = len(checkpoint.tensors)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    args = parser.parse_args()
    os.environ.setdefault("COMPRESSED_TENSORS_LOG_DISABLED", "1")
    work: Path = args.work.resolve()
    full = {v: work / "full" / v for v in ("main", "gs128")}
    for variant, folder in full.items():
        if not (folder / "config.json").is_file():
            build_sparse_checkpoint(folder, variant)  # type: ignore[arg-type]
    from tests.fixtures.checkpoints import build_pair

    tiny = build_pair(work / "tiny") if not (work / "tiny" / "gs128" / "config.json").is_file() else {
        v: work / "tiny" / v for v in ("main", "gs128")}
    (work / "full-project").mkdir(parents=True, exist_ok=True)
    (work / "tiny-project").mkdir(parents=True, exist_ok=True)
    # Full size: the shipped manifest as it is (36.8 / 38.8 GB), only the paths changed.
    full_manifest = manifest_for(full, work / "full-project" / "branches.yaml", exact_size=False)
    tiny_manifest = manifest_for(tiny, work / "tiny-project" / "branches.yaml", exact_size=True)

    stats = {v: checkpoint_stats(f) for v, f in full.items()}
    cold_full, cli_full = cold_and_warm(full_manifest, args.runs, work / "cache-full")
    cold_tiny, cli_tiny = cold_and_warm(tiny_manifest, args.runs, work / "cache-tiny")
    stages = time_stages(full_manifest, args.runs * 4)
    results = {
        "full apparent GB": {v: round(s.apparent_bytes / 1e9, 2) for v, s in stats.items()},
        "full tensors": {v: s.tensors for v, s in stats.items()},
        "full on-disk MB": {v: round(s.disk_bytes / 1e6, 1) for v, s in stats.items()},
        "cli full s": round(cli_full, 3),
        "cli tiny s": round(cli_tiny, 3),
        "ratio full/tiny": round(cli_full / cli_tiny, 3),
        "cli full cold s": round(cold_full, 3),
        "cli tiny cold s": round(cold_tiny, 3),
        "ratio full/tiny cold": round(cold_full / cold_tiny, 3),
        **{k: round(v, 2) for k, v in stages.items()},
    }
    print(json.dumps(results, indent=2))
    (work / "bench_check.json").write_text(json.dumps(results, indent=2))
    ok = (results["ratio full/tiny"] <= 1.5 and results["ratio full/tiny cold"] <= 1.5
          and all(v <= 100 for k, v in stages.items() if k.endswith("checks ms")))
    print("targets met" if ok else "TARGETS MISSED: ratio <= 1.5 and checks <= 100 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
