"""Benchmark `hubpub push` against `hf upload` (huggingface_hub 2.4) on the local Hub server, ~2 GB of real data.

    python bench/bench_push.py [--runs 3] [--warmup 1] [--work bench/.work] [--size-gb 2] [--file-mb 250]
                               [--servers DIR] [--keep] [--diagnose] [--first-pushes-only]

The model is the two tiny, valid compressed-tensors variants of tests/fixtures (main, gs128), each grown to about
1 GB with incompressible random files `extra/blob-0000k.gguf` of ~250 MB (GGUF magic, then random bytes: weight
data hubpub recognises by content and does not scan for tokens, as real weights are safetensors; not safetensors,
so `hubpub check` and the manifest's size_gb, which count *.safetensors only, are unaffected; plan.py manages
*.gguf as weights).
`hf upload` gets, per variant, a staged folder (hard links) holding exactly what hubpub uploads: the variant's
files, quantize.py, log.txt and the README hubpub renders. Both CLIs run as subprocesses, wall clock, median of
--runs (first pushes after --warmup unmeasured ones), with HF_HUB_DISABLE_XET=1 and progress bars off for both;
the servers run in this process and keep their stores in /dev/shm when it has room.

Cases (targets):
1. first push of both variants, each run against a fresh server (fresh LFS store) and, for hubpub, empty
   caches (hashes and recorded check reports): `hubpub push --all` vs two `hf upload` calls (ratio <= 1.3);
   and hubpub's first push right after `hubpub check` (its report reused, hashes not cached), each run beside
   another `hf upload` first push, so both meet the same load (ratio <= 0.8);
2. no-op re-push: hubpub at least 10x faster than hf, no file content sent (no LFS PUT, no commit);
3. README-only change (the manifest's title): each tool's commit holds README.md only.
Every case also reports, per tool, the requests the server received (by kind), the peak resident memory of
the tool's largest process, and how busy the machine's cores were during the run (near 100%: the push was bound
by the CPU it shares with the server, not by a disk or a link). `--first-pushes-only` runs case 1 alone and drops
each server after its run, so that at 8 GB the servers still fit in /dev/shm. When case 1 misses its target (or
with --diagnose), hubpub's first push is broken down. Writes <work>/bench_push.json; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml

from tests.conftest import HUB_TOKEN, point_manifest
from tests.hubserver import HubServer

BIN = Path(sys.executable).parent
HUBPUB = [str(BIN / "hubpub")] if (BIN / "hubpub").is_file() else [sys.executable, "-m", "publish.cli"]
HF = [str(BIN / "hf")]
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")  # the binary (not the shell keyword) reports peak RSS
BRANCHES = ("main", "gs128")
CHUNK = 16 * 1024 * 1024
FIRST_RATIO_TARGET = 1.3
AFTER_CHECK_RATIO_TARGET = 0.8
NOOP_SPEEDUP_TARGET = 10.0
FIRST_AFTER_CHECK = "first push after `hubpub check` (hf: its first push, run alongside)"


# ---------------------------------------------------------------------------------------------------------------
# The model, the manifest and hf's staged folders


def build_model(data: Path, total_bytes: int, file_bytes: int) -> dict[str, Path]:
    """Both variants under data/<branch>: a valid tiny checkpoint plus random extra/blob-*.gguf files."""
    folders = {b: data / b for b in BRANCHES}
    spec = {"total_bytes": total_bytes, "file_bytes": file_bytes, "layout": 2}
    marker = data / "built.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return folders
    shutil.rmtree(data, ignore_errors=True)
    import numpy as np

    from tests.fixtures.checkpoints import build_checkpoint

    for seed, (branch, folder) in enumerate(folders.items()):
        build_checkpoint(folder, branch, seed=seed)
        rng = np.random.default_rng(1000 + seed)  # a different stream per variant: no shared LFS object
        remaining = total_bytes // len(folders) - sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        (folder / "extra").mkdir()
        number = 0
        while remaining > 0:
            number += 1
            size = min(file_bytes, remaining)
            with (folder / "extra" / f"blob-{number:05d}.gguf").open("wb") as out:
                out.write(b"GGUF")
                left = size - 4
                while left > 0:
                    out.write(rng.bytes(min(CHUNK, left)))
                    left -= min(CHUNK, left)
            remaining -= size
    marker.write_text(json.dumps(spec))
    return folders


def make_project(project: Path, folders: dict[str, Path]) -> Path:
    """The shipped branches.yaml, quantize.py and log.txt in `project`, variants pointed at `folders`."""
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    for name in ("branches.yaml", "quantize.py", "log.txt"):
        shutil.copy(ROOT / name, project / name)
    return point_manifest(project / "branches.yaml", folders)


def set_title(manifest: Path, title: str) -> None:
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    data["title"] = title
    manifest.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def rendered_cards(manifest: Path, out: Path) -> dict[str, str]:
    """The README each branch gets from hubpub (same renderer, facts and provenance as `hubpub push`)."""
    from publish.commands.render import render
    from publish.manifest.model import load_manifest

    return {card.branch: card.text for card in render(load_manifest(manifest), out=out).cards}


def stage_for_hf(stage: Path, manifest: Path, folders: dict[str, Path], cards: dict[str, str]) -> dict[str, Path]:
    """Per variant, a folder with exactly the files hubpub uploads (weights hard-linked, not copied)."""
    shutil.rmtree(stage, ignore_errors=True)
    staged = {}
    for branch, folder in folders.items():
        target = stage / branch
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                link = target / path.relative_to(folder)
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, link)
        for name in ("quantize.py", "log.txt"):
            shutil.copy(manifest.parent / name, target / name)
        (target / "README.md").write_text(cards[branch], encoding="utf-8")
        staged[branch] = target
    return staged


# ---------------------------------------------------------------------------------------------------------------
# Running the CLIs and reading the server's records


@dataclass
class Env:
    """One tool's environment: its own HF_HOME and cache folder (HUBPUB_CACHE and whatever hubpub keeps next to
    it, such as recorded check reports; XDG_CACHE_HOME too)."""

    hf_home: Path
    cache_dir: Path

    @property
    def cache(self) -> Path:
        return self.cache_dir / "hashes.json"

    def clear_cache(self) -> None:
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def for_hub(self, hub: HubServer) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update({
            "HF_ENDPOINT": hub.url, "HF_TOKEN": HUB_TOKEN, "HF_HOME": str(self.hf_home), "HUBPUB_CACHE": str(self.cache),
            "XDG_CACHE_HOME": str(self.cache_dir / "xdg"), "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "COMPRESSED_TENSORS_LOG_DISABLED": "1",
        })
        env.pop("HF_HUB_OFFLINE", None)
        return env


def run(commands: list[list[str]], env: dict[str, str], cwd: Path) -> tuple[float, str, int]:
    """Run the commands one after another; wall seconds for all of them, their combined output, and the peak
    resident memory (bytes) of the largest of them, as GNU time reports it (0 without /usr/bin/time). A child's
    own accounting would not do: the kernel carries this benchmark's memory into the child it forks."""
    output, peak = [], 0
    start = time.perf_counter()
    for command in commands:
        with tempfile.NamedTemporaryFile("r") as rss:
            measured = [GNU_TIME, "-f", "%M", "-o", rss.name, *command] if GNU_TIME else command
            done = subprocess.run(measured, cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
                                  check=False)
            kilobytes = rss.read().strip().splitlines()
        output.append(done.stdout + done.stderr)
        if kilobytes and kilobytes[-1].isdigit():
            peak = max(peak, int(kilobytes[-1]) * 1024)
        if done.returncode != 0:
            raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start, "".join(output), peak


def hubpub_push(manifest: Path) -> list[list[str]]:
    return [[*HUBPUB, "push", "--all", "--manifest", str(manifest)]]


def hf_upload(repo_id: str, staged: dict[str, Path]) -> list[list[str]]:
    return [[*HF, "upload", repo_id, str(folder), ".", "--revision", branch] for branch, folder in staged.items()]


def traffic(hub: HubServer) -> dict[str, Any]:
    """What the server received: all request bodies, file content (LFS PUTs), LFS PUTs and commits."""
    requests = list(hub.requests)
    lfs = [r for r in requests if r.method == "PUT" and r.path.startswith("/_lfs/")]
    commits = [r for r in requests if r.method == "POST" and "/commit/" in r.path and r.status == 200]
    return {
        "requests": len(requests),
        "bytes_received": sum(r.bytes_received for r in requests),
        "lfs_put_bytes": sum(r.bytes_received for r in lfs),
        "lfs_puts": len(lfs),
        "commit_requests": len(commits),
        "commit_bytes": sum(r.bytes_received for r in commits),
        "by_kind": dict(sorted(Counter(r.kind for r in requests).items())),
    }


def git(hub: HubServer, repo_id: str, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(hub.git_path(repo_id)), *args], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def commit_counts(hub: HubServer, repo_id: str) -> int:
    """Commits on main + gs128 (0 for a branch or repository that does not exist)."""
    if not hub.store.exists(repo_id):
        return 0
    heads = git(hub, repo_id, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()
    return sum(hub.commit_count(repo_id, branch) for branch in BRANCHES if branch in heads)


def last_commit_paths(hub: HubServer, repo_id: str) -> dict[str, list[str]]:
    return {b: git(hub, repo_id, "diff-tree", "--no-commit-id", "--name-only", "-r", b).split() for b in BRANCHES}


def tree(hub: HubServer, repo_id: str, branch: str) -> list[str]:
    return git(hub, repo_id, "ls-tree", "-r", "--name-only", branch).split()


class Servers:
    """Fresh HubServers under one folder; stop() removes their LFS stores too."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, 0

    def fresh(self, name: str) -> HubServer:
        self.count += 1
        folder = self.root / f"{self.count:02d}-{name}"
        shutil.rmtree(folder, ignore_errors=True)
        return HubServer(folder, token=HUB_TOKEN).start()

    @staticmethod
    def stop(hub: HubServer) -> None:
        hub.stop()
        shutil.rmtree(hub.root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# The cases


def measure(tool: str, hub: HubServer, repo_id: str, commands: list[list[str]], env: dict[str, str],
            cwd: Path) -> dict[str, Any]:
    hub.reset_records()
    before = commit_counts(hub, repo_id)
    os.sync()  # no writeback of earlier runs' data competes with this one
    before_cpu = cpu_times()
    seconds, output, peak = run(commands, env, cwd)
    busy = busy_share(before_cpu, cpu_times())
    record: dict[str, Any] = {"tool": tool, "s": seconds, "peak_rss_mb": round(peak / 1e6, 1),
                              "cpu_busy": busy, **traffic(hub)}
    record["commits"] = commit_counts(hub, repo_id) - before if before else record["commit_requests"]
    record["output_tail"] = output.strip().splitlines()[-3:]
    return record


def cpu_times() -> list[int]:
    """The machine's CPU time counters (/proc/stat's first line); [] where there is none."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return []


def busy_share(before: list[int], after: list[int]) -> float | None:
    """The share of all cores' time spent busy between two readings (tool, server and anything else running):
    near 1.0 means the run was bound by the CPU, not by a disk or a link."""
    if not before or len(before) != len(after):
        return None
    spent = [b - a for a, b in zip(before, after)]
    idle = spent[3] + (spent[4] if len(spent) > 4 else 0)  # idle and iowait
    return round(1 - idle / sum(spent), 3) if sum(spent) else None


def label(number: int, warmup: int, runs: int) -> str:
    return f"warm-up {number + 1}/{warmup}" if number < warmup else f"run {number - warmup + 1}/{runs}"


def first_push(args: argparse.Namespace, servers: Servers, envs: dict[str, Env], repo_id: str, manifest: Path,
               staged: dict[str, Path], cwd: Path) -> tuple[list[dict[str, Any]], dict[str, HubServer]]:
    """Each run, each tool: a fresh server and empty caches (hashes, check reports). The last run's servers are
    kept for the next cases."""
    records: list[dict[str, Any]] = []
    kept: dict[str, HubServer] = {}
    for number in range(args.warmup + args.runs):
        order = ("hubpub", "hf") if number % 2 == 0 else ("hf", "hubpub")  # alternate: no tool always goes first
        for tool in order:
            for previous in [kept.pop(tool)] if tool in kept else []:
                servers.stop(previous)
            hub = servers.fresh(f"{tool}-first-{number}")
            envs[tool].clear_cache()
            commands = hubpub_push(manifest) if tool == "hubpub" else hf_upload(repo_id, staged)
            record = measure(tool, hub, repo_id, commands, envs[tool].for_hub(hub), cwd)
            record["run"], record["warmup"] = number, number < args.warmup
            records.append(record)
            if args.first_pushes_only:
                servers.stop(hub)  # no later case needs it: tmpfs holds one model at a time
            else:
                kept[tool] = hub
            print(f"  first push {label(number, args.warmup, args.runs)} {tool}: {record['s']:.2f} s", flush=True)
    return records, kept


def first_push_after_check(runs: int, warmup: int, servers: Servers, envs: dict[str, Env], repo_id: str,
                           manifest: Path, staged: dict[str, Path], cwd: Path) -> list[dict[str, Any]]:
    """hubpub's first push when `hubpub check` ran just before (untimed): its report is reused, so the push
    does not import compressed-tensors; the hash cache is still empty. Each run, `hf upload`'s first push runs
    beside it (alternating which goes first), so the two are compared under the same load. A fresh server each."""
    records = []
    for number in range(warmup + runs):
        for tool in ("hubpub", "hf") if number % 2 == 0 else ("hf", "hubpub"):
            hub = servers.fresh(f"{tool}-checked-{number}")
            try:
                envs[tool].clear_cache()
                if tool == "hubpub":
                    run([[*HUBPUB, "check", "--manifest", str(manifest)]], envs[tool].for_hub(hub), cwd)
                commands = hubpub_push(manifest) if tool == "hubpub" else hf_upload(repo_id, staged)
                record = measure(tool, hub, repo_id, commands, envs[tool].for_hub(hub), cwd)
            finally:
                servers.stop(hub)
            record["run"], record["warmup"] = number, number < warmup
            records.append(record)
            print(f"  first push after hubpub check, {label(number, warmup, runs)} {tool}: {record['s']:.2f} s",
                  flush=True)
    return records


def repeat(case: str, runs: int, tools: dict[str, Callable[[int], tuple[list[list[str]], HubServer]]],
           envs: dict[str, Env], repo_id: str, cwd: Path) -> list[dict[str, Any]]:
    records = []
    for number in range(runs):
        order = list(tools) if number % 2 == 0 else list(reversed(tools))
        for tool in order:
            commands, hub = tools[tool](number)
            record = measure(tool, hub, repo_id, commands, envs[tool].for_hub(hub), cwd)
            record["run"] = number
            if case == "readme":
                record["committed_paths"] = last_commit_paths(hub, repo_id)
            records.append(record)
            print(f"  {case} run {number + 1}/{runs} {tool}: {record['s']:.2f} s", flush=True)
    return records


def summarize(records: list[dict[str, Any]], tool: str) -> dict[str, Any]:
    mine = [r for r in records if r["tool"] == tool and not r.get("warmup")]
    out: dict[str, Any] = {"median_s": round(statistics.median(float(r["s"]) for r in mine), 3),
                           "runs_s": [round(float(r["s"]), 3) for r in mine]}
    warmups = [round(float(r["s"]), 3) for r in records if r["tool"] == tool and r.get("warmup")]
    if warmups:
        out["warmup_s (not counted)"] = warmups
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in mine)
    shares = [r["cpu_busy"] for r in mine if r.get("cpu_busy") is not None]
    if shares:
        out["cpu_busy_median"] = round(statistics.median(shares), 3)
    last = mine[-1]
    for key in ("bytes_received", "lfs_put_bytes", "lfs_puts", "commits", "commit_bytes", "requests", "by_kind"):
        out[key] = last[key]
    if "committed_paths" in last:
        out["committed_paths"] = last["committed_paths"]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Where hubpub's first push spends its time


def diagnose(servers: Servers, envs: dict[str, Env], manifest: Path, folders: dict[str, Path], cwd: Path,
             first_hubpub_s: float, pushed: HubServer) -> dict[str, Any]:
    """Break hubpub's first push down: startup, check, plan, hashing (one thread, vs as many as cores), and what
    a no-op push costs in-process once compressed-tensors is imported (`pushed` holds the pushed state)."""
    from publish.commands.check import check as check_variants
    from publish.commands.push import PushSettings, push
    from publish.hub.client import Hub
    from publish.hub.hashcache import digest_file
    from publish.manifest.model import load_manifest

    result: dict[str, Any] = {}
    hub = servers.fresh("diagnose")
    try:
        env = envs["hubpub"].for_hub(hub)
        result["hubpub --version s"] = round(run([[*HUBPUB, "--version"]], env, cwd)[0], 3)
        result["hf version s"] = round(run([[*HF, "version"]], env, cwd)[0], 3)
        result["python -c 'import compressed_tensors' s"] = round(
            run([[sys.executable, "-c", "import compressed_tensors"]], env, cwd)[0], 3)
        result["hubpub check s"] = round(run([[*HUBPUB, "check", "--manifest", str(manifest)]], env, cwd)[0], 3)
        envs["hubpub"].clear_cache()
        # A plan of a new repository hashes nothing: the dry runs time the checks, the render and the plan.
        dry = run([[*HUBPUB, "push", "--all", "--dry-run", "--manifest", str(manifest)]], env, cwd)[0]
        result["hubpub push --dry-run, empty caches s (check+render+plan)"] = round(dry, 3)
        warm = run([[*HUBPUB, "push", "--all", "--dry-run", "--manifest", str(manifest)]], env, cwd)[0]
        result["hubpub push --dry-run, check report recorded s (render+plan)"] = round(warm, 3)
        result["hash + upload + commit + verify s (first push - dry run, empty caches)"] = round(
            first_hubpub_s - dry, 3)
        files = [p for folder in folders.values() for p in sorted(folder.rglob("*")) if p.is_file()]
        start = time.perf_counter()
        for path in files:
            digest_file(path)
        result["in-process digest_file, sequential s"] = round(time.perf_counter() - start, 3)

        def sha256(path: Path) -> str:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
            return digest.hexdigest()

        start = time.perf_counter()
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            list(pool.map(sha256, files))
        result[f"in-process sha256, {os.cpu_count()} threads s"] = round(time.perf_counter() - start, 3)
        # `hubpub check` always checks afresh, so it imports what a first push (cold caches) imports.
        imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "publish.cli", "check", "--manifest",
                                  str(manifest)], cwd=cwd, env=env, capture_output=True, text=True, check=False)
        result["slowest top-level imports of hubpub check (ms, cumulative)"] = top_imports(imports.stderr)
    finally:
        servers.stop(hub)
    # In this process compressed-tensors is already imported (the cards were rendered here): what is left.
    loaded = load_manifest(manifest)
    checks, noops = [], []
    for _ in range(3):
        start = time.perf_counter()
        check_variants(loaded)
        checks.append(time.perf_counter() - start)
        start = time.perf_counter()
        done = push(loaded, Hub(pushed.url, HUB_TOKEN), PushSettings(cache=envs["hubpub"].cache))
        noops.append(time.perf_counter() - start)
        assert all(v.commit is None for v in done.variants), "the in-process no-op push committed"
    result["in-process check, compressed-tensors already imported s"] = round(statistics.median(checks), 3)
    result["in-process no-op push --all, compressed-tensors already imported s"] = round(statistics.median(noops), 3)
    return result


def top_imports(stderr: str, count: int = 6) -> dict[str, float]:
    found = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if cumulative.isdigit() and not name.startswith(" ") and "." not in name:
            found.append((int(cumulative) / 1000, name))
    return {name: round(ms, 1) for ms, name in sorted(found, reverse=True)[:count]}


# ---------------------------------------------------------------------------------------------------------------


def server_root(base: Path, model_bytes: int, copies: int = 3) -> Path:
    """A tmpfs folder when it has room for `copies` copies of the model (the servers alive at once), else
    `base/servers`."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > copies * model_bytes + 1e9:
        return shm / f"bench-push-{os.getpid()}"
    return base / "servers"


def source_state() -> dict[str, Any]:
    """The checkout measured: commit and uncommitted files (numbers are only comparable at the same state)."""
    def out(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False).stdout

    return {"commit": out("rev-parse", "--short", "HEAD").strip(),
            "uncommitted": [line[3:] for line in out("status", "--porcelain").splitlines()]}


def busy_text(summary: dict[str, Any]) -> str:
    share = summary.get("cpu_busy_median")
    return "-" if share is None else f"{share:.0%}"


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [("| case | hubpub s | hf upload s | ratio | requests hubpub/hf | peak RSS MB hubpub/hf "
             "| CPU busy hubpub/hf | bytes sent hubpub/hf | commits hubpub/hf |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for case, data in results.items():
        h, f = data["hubpub"], data["hf"]
        lines.append(f"| {case} | {h['median_s']:.2f} | {f['median_s']:.2f} | {h['median_s'] / f['median_s']:.3f} | "
                     f"{h['requests']} / {f['requests']} | {h['peak_rss_mb']:.0f} / {f['peak_rss_mb']:.0f} | "
                     f"{busy_text(h)} / {busy_text(f)} | "
                     f"{h['bytes_received']:,} / {f['bytes_received']:,} | {h['commits']} / {f['commits']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1,
                        help="unmeasured first pushes per tool before the runs (default 1): on this VM the first run "
                             "that touches new memory is 1.5-2 s slower for either tool")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    parser.add_argument("--size-gb", type=float, default=2.0, help="total bytes of both variants (default 2)")
    parser.add_argument("--file-mb", type=float, default=250, help="size of each extra random file (default 250)")
    parser.add_argument("--keep", action="store_true", help="keep the model data and staged folders")
    parser.add_argument("--diagnose", action="store_true", help="break down hubpub's first push even if on target")
    parser.add_argument("--first-pushes-only", action="store_true",
                        help="only case 1 (cold, and after hubpub check), each server dropped after its run, so the "
                             "servers fit in /dev/shm at sizes where three copies of the model would not")
    parser.add_argument("--servers", type=Path, default=None,
                        help="where the servers keep their repos and LFS objects (default: a folder in /dev/shm when "
                             "it has room, so disk writeback does not add noise; else under --work)")
    args = parser.parse_args()
    work: Path = args.work.resolve()
    base = work / "push"
    # What this process and the setup commands cache goes here, never into the measured tools' caches or ~/.cache.
    os.environ.update({"COMPRESSED_TENSORS_LOG_DISABLED": "1", "HUBPUB_CACHE": str(base / "setup-cache" / "hashes.json"),
                       "XDG_CACHE_HOME": str(base / "setup-cache" / "xdg")})
    load_before = os.getloadavg()
    started = time.perf_counter()

    print("building the model ...", flush=True)
    folders = build_model(base / "data", int(args.size_gb * 1e9), int(args.file_mb * 1e6))
    manifest = make_project(base / "project", folders)
    repo_id = str(yaml.safe_load(manifest.read_text())["repo_id"])
    title = str(yaml.safe_load(manifest.read_text())["title"])
    cards = rendered_cards(manifest, base / "cards")
    staged = stage_for_hf(base / "stage", manifest, folders, cards)
    check = subprocess.run([*HUBPUB, "check", "--manifest", str(manifest)], capture_output=True, text=True,
                           check=False)
    if check.returncode != 0:
        raise SystemExit(f"hubpub check refuses the benchmark model:\n{check.stdout}{check.stderr}")
    data_bytes = sum(p.stat().st_size for f in folders.values() for p in f.rglob("*") if p.is_file())
    os.sync()  # the data's writeback must not land in the first measured run
    print(f"model: {data_bytes / 1e9:.2f} GB in {time.perf_counter() - started:.1f} s; repo {repo_id}", flush=True)

    envs = {"hubpub": Env(base / "hf_home-hubpub", base / "cache-hubpub"),
            "hf": Env(base / "hf_home-hf", base / "cache-hf")}
    copies = 1 if args.first_pushes_only else 3
    servers = Servers(args.servers.resolve() / f"bench-push-{os.getpid()}" if args.servers
                      else server_root(base, data_bytes, copies))
    results: dict[str, dict[str, Any]] = {}
    raw: dict[str, list[dict[str, Any]]] = {}
    kept: dict[str, HubServer] = {}
    try:
        print("1. first push", flush=True)
        raw["first push"], kept = first_push(args, servers, envs, repo_id, manifest, staged, base)
        same_files = {b: tree(kept["hubpub"], repo_id, b) == tree(kept["hf"], repo_id, b)
                      for b in BRANCHES} if kept else None
        same_readme = {b: git(kept["hubpub"], repo_id, "rev-parse", f"{b}:README.md")
                       == git(kept["hf"], repo_id, "rev-parse", f"{b}:README.md") for b in BRANCHES} if kept else None

        print("1b. first push after `hubpub check`, beside hf's first push", flush=True)
        raw["first push after check"] = first_push_after_check(args.runs, args.warmup, servers, envs, repo_id, manifest,
                                                               staged,
                                                               base)

        if not args.first_pushes_only:
            print("2. no-op re-push", flush=True)
            raw["no-op re-push"] = repeat("no-op", args.runs, {
                "hubpub": lambda _: (hubpub_push(manifest), kept["hubpub"]),
                "hf": lambda _: (hf_upload(repo_id, staged), kept["hf"]),
            }, envs, repo_id, base)

            print("3. README-only change", flush=True)

            def hubpub_readme(number: int) -> tuple[list[list[str]], HubServer]:
                set_title(manifest, f"{title} (bench {number + 1})")
                return hubpub_push(manifest), kept["hubpub"]

            def hf_readme(number: int) -> tuple[list[list[str]], HubServer]:
                set_title(manifest, f"{title} (bench {number + 1})")
                for branch, text in rendered_cards(manifest, base / "cards").items():
                    (staged[branch] / "README.md").write_text(text, encoding="utf-8")
                return hf_upload(repo_id, staged), kept["hf"]

            raw["README-only change"] = repeat("readme", args.runs, {"hubpub": hubpub_readme, "hf": hf_readme},
                                               envs, repo_id, base)
        for case, records in raw.items():
            results[FIRST_AFTER_CHECK if case == "first push after check" else case] = {
                tool: summarize(records, tool) for tool in ("hubpub", "hf")}

        first = results["first push"]
        ratio = float(first["hubpub"]["median_s"]) / float(first["hf"]["median_s"])
        checked = results[FIRST_AFTER_CHECK]
        checked_ratio = float(checked["hubpub"]["median_s"]) / float(checked["hf"]["median_s"])
        targets = {
            f"first push ratio <= {FIRST_RATIO_TARGET}": ratio <= FIRST_RATIO_TARGET,
            f"first push after check ratio <= {AFTER_CHECK_RATIO_TARGET}": checked_ratio <= AFTER_CHECK_RATIO_TARGET,
        }
        speedup = None
        if "no-op re-push" in results:
            noop = results["no-op re-push"]
            speedup = round(float(noop["hf"]["median_s"]) / float(noop["hubpub"]["median_s"]), 2)
            h_noop = noop["hubpub"]
            h_readme = results["README-only change"]["hubpub"]
            targets.update({
                f"no-op hubpub >= {NOOP_SPEEDUP_TARGET:g}x faster": speedup >= NOOP_SPEEDUP_TARGET,
                "no-op: no file content sent (no LFS PUT, no commit)": h_noop["lfs_puts"] == 0
                and h_noop["lfs_put_bytes"] == 0 and h_noop["commits"] == 0,
                "README change: each hubpub commit holds README.md only": h_readme.get("committed_paths")
                == {b: ["README.md"] for b in BRANCHES} and h_readme["lfs_puts"] == 0,
            })
        report: dict[str, Any] = {
            "model": {"bytes": data_bytes, "files_per_variant": {b: sum(1 for p in f.rglob("*") if p.is_file())
                                                                  for b, f in folders.items()},
                      "repo_id": repo_id},
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "load average before (1, 5, 15 min)": [round(x, 2) for x in load_before],
                        "load average after the cases": [round(x, 2) for x in os.getloadavg()]},
            "source": source_state(),
            "runs": args.runs,
            "warm-up first pushes per tool": args.warmup,
            "server storage": str(servers.root),
            "results": results,
            "first push ratio hubpub/hf": round(ratio, 3),
            "first push after check ratio hubpub/hf": round(checked_ratio, 3),
            "no-op speedup hf/hubpub": speedup,
            "same files on each branch (hubpub vs hf)": same_files,
            "same README (hubpub vs hf)": same_readme,
            "targets": targets,
        }
        if kept and (not targets[f"first push ratio <= {FIRST_RATIO_TARGET}"] or args.diagnose):
            print("diagnosing hubpub's first push ...", flush=True)
            servers.stop(kept.pop("hf"))
            report["hubpub breakdown"] = diagnose(servers, envs, manifest, folders, base,
                                                  float(first["hubpub"]["median_s"]), kept["hubpub"])
    finally:
        for hub in kept.values():
            servers.stop(hub)
        shutil.rmtree(servers.root, ignore_errors=True)
        if not args.keep:
            for name in ("data", "stage", "cards", "project", "hf_home-hubpub", "hf_home-hf", "cache-hubpub",
                         "cache-hf", "setup-cache"):
                shutil.rmtree(base / name, ignore_errors=True)
            if base.is_dir() and not any(base.iterdir()):
                base.rmdir()
    report["total_s"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    print()
    print(table(results))
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_push.json").write_text(text + "\n")
    ok = all(targets.values())
    print()
    print("targets met" if ok else "TARGETS MISSED: " + "; ".join(k for k, v in targets.items() if not v))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
