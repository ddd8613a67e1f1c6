"""`hubpub eval`: logprob dumps of a reference and a variant, then KL divergence metrics into kld.json.

`dump` runs one model (transformers, or an OpenAI-compatible server) over fixed token windows; `score` compares
two dumps; `run` does both for the variant a manifest's `evaluation.kld` names, with its configuration.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from publish import __version__
from publish.errors import DumpError, UsageError
from publish.eval.backends import Progress
from publish.eval.dumps import Dump, DumpInfo, assemble, make_windows, partial_folder
from publish.manifest.kldartifact import weights_sha256
from publish.manifest.model import Manifest
from publish.util.hashing import sha256_file

# Rows × K elements scored at once: bounds memory (a few hundred MB at most) whatever the dump's size.
CHUNK_ELEMENTS = 2_000_000
DEFAULT_WORKDIR = ".hubpub-eval"


@dataclass(frozen=True)
class TextSource:
    """Where the evaluation text comes from: a local file, or a `datasets` dataset by name and split."""

    dataset: str | None = None
    split: str = "test"
    config: str | None = None
    column: str = "text"
    file: Path | None = None
    label: str | None = None  # the name recorded for a file (default: its file name)

    def read(self) -> tuple[str, str, str | None]:
        """(text, name recorded in the dump, split or None)."""
        if self.file is not None:
            try:
                return self.file.read_text(encoding="utf-8"), self.label or self.file.name, None
            except (OSError, UnicodeDecodeError) as error:
                raise DumpError(f"cannot read the text: {error}", file=self.file) from None
        if not self.dataset:
            raise UsageError("give --text FILE or --dataset NAME[:SPLIT]")
        from publish.eval.backends import WIKITEXT, dataset_text, resolve_dataset

        path, config = resolve_dataset(self.dataset, self.config)
        # `wikitext` and `wikitext-2-raw-v1` are one dataset; record it as the manifest (and the seed's card) names it.
        name = config if path == WIKITEXT and config else self.dataset
        return dataset_text(self.dataset, self.split, self.config, self.column), name, self.split


@dataclass(frozen=True)
class DumpResult:
    path: Path
    sha256: str
    info: DumpInfo
    reused: bool = False


def dump(
    model: str,
    out: Path,
    *,
    text: TextSource | None = None,
    windows_from: Path | None = None,
    sequence_length: int = 2048,
    samples: int = 64,
    top_k: int = 1000,
    server: str | None = None,
    served_model: str | None = None,
    tokenizer: str | None = None,
    revision: str | None = None,
    workers: int = 4,
    device: str | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DumpResult:
    """Dump `model`'s top-K log-probs over the windows of `text` (or the same windows as the dump `windows_from`).

    With `server`, the model is queried on an OpenAI-compatible server; otherwise transformers runs it. Finished
    windows are kept in `<out>.partial/`, so running the same command again after a failure resumes.
    """
    import numpy as np

    from publish.eval import backends as eb

    tokenizer_name = tokenizer or model
    loaded_tokenizer: Any = None
    if windows_from is not None:
        source = Dump(windows_from)
        windows = source.token_ids()
        name, split, text_sha = source.info.dataset, source.info.split, source.info.text_sha256
    else:
        if text is None:
            raise UsageError("give --text FILE, --dataset NAME[:SPLIT] or --windows-from DUMP")
        body, name, split = text.read()
        loaded_tokenizer = eb.load_tokenizer(tokenizer_name, revision if tokenizer is None else None)
        import hashlib

        text_sha = hashlib.sha256(body.encode("utf-8")).hexdigest()
        windows = make_windows(eb.tokenize(loaded_tokenizer, body), sequence_length, samples, name)
    samples, sequence_length = int(windows.shape[0]), int(windows.shape[1])
    info = DumpInfo(
        model=model, backend="server" if server else "transformers", dataset=name, split=split,
        text_sha256=text_sha, sequence_length=sequence_length, samples=samples, top_k=top_k, vocab_size=0,
        revision=revision, weights_sha256=weights_sha256(Path(model)), tokenizer=tokenizer_name,
        tokenizer_sha256=eb.tokenizer_sha256(tokenizer_name),
    )
    # A finished dump of the same model, text and K is kept, before paying for loading the model.
    finished = _finished_dump(out, info, windows)
    if finished is not None:
        return DumpResult(out, sha256_file(out), finished, reused=True)
    backend: Any
    if server is not None:
        loaded_tokenizer = loaded_tokenizer or eb.load_tokenizer(tokenizer_name)
        vocab = eb.vocab_size(model, loaded_tokenizer)
        backend = eb.ServerBackend(server, served_model or model, top_k, vocab, sleep=sleep)
    else:
        backend = eb.TransformersBackend(model, top_k, revision=revision, device=device)
        workers = 1  # one model, one forward pass at a time
    info = replace(info, top_k=backend.top_k, vocab_size=backend.vocab_size)
    try:
        eb.run_windows(backend, np.asarray(windows), partial_folder(out), info, workers=workers, progress=progress)
    finally:
        if isinstance(backend, eb.ServerBackend):
            backend.close()
    return DumpResult(out, assemble(partial_folder(out), out, info), info)


def _finished_dump(path: Path, wanted: DumpInfo, windows: Any) -> DumpInfo | None:
    """The existing dump at `path` if it is of the same model, text and windows, with K as asked (or the whole
    vocabulary when K exceeds it)."""
    import numpy as np

    if not path.is_file():
        return None
    try:
        existing = Dump(path)
    except DumpError:
        return None
    found = existing.info
    same_k = found.top_k == min(wanted.top_k, found.vocab_size)
    if replace(found, top_k=wanted.top_k, vocab_size=0) != wanted or not same_k:
        return None
    return found if np.array_equal(existing.token_ids(), windows) else None


def score(reference: Path, variant: Path, method: str, approximation: str, out: Path | None = None) -> dict[str, Any]:
    """Compare two dumps of the same windows; return (and write to `out`) the kld.json artifact."""
    from publish.eval.metrics import APPROXIMATIONS, METHODS, Chunk, score_chunk, scored_rows, summarize

    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; use one of {', '.join(METHODS)}", field="--method")
    if approximation not in APPROXIMATIONS:
        raise UsageError(f"unknown approximation {approximation!r}; use one of {', '.join(APPROXIMATIONS)}",
                         field="--approximation")
    ref, var = Dump(reference), Dump(variant)
    _check_comparable(ref, var)
    full = approximation == "full-vocab"
    if full and not (ref.has_full and var.has_full):
        raise DumpError("full-vocab needs full distributions in both dumps", file=reference if not ref.has_full
                        else variant, hint="dump with --top-k at least the vocabulary size, or choose a top-k "
                                           "approximation")
    start, stop = scored_rows(method, ref.info.sequence_length)
    rows = slice(start, stop)
    width = max(ref.top_k, var.top_k, ref.info.vocab_size if full else 0)
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, (stop - start) * width))
    scores = []
    for first in range(0, ref.info.samples, per_chunk):
        windows = slice(first, min(ref.info.samples, first + per_chunk))
        chunk = Chunk(
            ref.rows("topk_ids", windows, rows), ref.rows("topk_logprobs", windows, rows),
            var.rows("topk_ids", windows, rows), var.rows("topk_logprobs", windows, rows),
            ref.rows("logprobs", windows, rows) if full else None,
            var.rows("logprobs", windows, rows) if full else None,
        )
        scores.append(score_chunk(chunk, approximation, ref.info.vocab_size))
    metrics = summarize(scores)
    artifact = {
        "version": 1,
        "hubpub_version": __version__,
        "direction": "KL(reference || variant)",
        "unit": "nats",
        "percentiles": "linear",
        "config": {
            "method": method, "approximation": approximation, "top_k": ref.top_k,
            "dataset": {"name": ref.info.dataset, "split": ref.info.split, "text_sha256": ref.info.text_sha256},
            "sequence_length": ref.info.sequence_length, "samples": ref.info.samples,
        },
        "metrics": {
            "median": metrics.median, "p90": metrics.p90, "p99": metrics.p99, "mean": metrics.mean,
            "max": metrics.max, "mean_coverage": metrics.mean_coverage, "same_top1": metrics.same_top1,
            "positions": metrics.positions,
        },
        "reference": _identity(ref),
        "variant": _identity(var),
        "tokenizer": {"name": ref.info.tokenizer, "sha256": ref.info.tokenizer_sha256},
    }
    if out is not None:
        from publish.manifest.kldartifact import write_artifact

        write_artifact(out, artifact)
    return artifact


def _identity(dump: Dump) -> dict[str, Any]:
    info = dump.info
    return {"model": info.model, "revision": info.revision, "weights_sha256": info.weights_sha256,
            "backend": info.backend, "top_k": dump.top_k, "tokenizer_sha256": info.tokenizer_sha256,
            "dump_sha256": sha256_file(dump.path)}


def _check_comparable(ref: Dump, var: Dump) -> None:
    a, b = ref.info, var.info
    if (a.samples, a.sequence_length) != (b.samples, b.sequence_length):
        raise DumpError(f"the dumps cover different windows: {a.samples}×{a.sequence_length} here, "
                        f"{b.samples}×{b.sequence_length} in {var.path.name}", file=ref.path,
                        hint="dump the variant with --windows-from the reference dump")
    import numpy as np

    if not np.array_equal(ref.token_ids(), var.token_ids()):
        raise DumpError(f"the dumps are of different tokens than {var.path.name}", file=ref.path,
                        hint="dump the variant with --windows-from the reference dump")
    if a.vocab_size != b.vocab_size:
        # Tokenizer files may differ byte for byte (re-serialized on save) and still agree; the vocabulary may not.
        raise DumpError(f"the models do not share a vocabulary ({a.vocab_size} vs {b.vocab_size} tokens)",
                        file=var.path, hint="KL divergence compares distributions over the same vocabulary")


def run(
    manifest: Manifest,
    reference: str,
    *,
    variant: str | None = None,
    reference_server: str | None = None,
    reference_served_model: str | None = None,
    variant_server: str | None = None,
    variant_served_model: str | None = None,
    tokenizer: str | None = None,
    workdir: Path | None = None,
    out: Path | None = None,
    workers: int = 4,
    device: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Path, dict[str, Any]]:
    """Evaluate the variant `evaluation.kld` names against `reference`, as configured there; write kld.json.

    The dataset is a local text file when `dataset.name` names a file next to the manifest, else a `datasets`
    dataset. Dumps are kept in `workdir` (default .hubpub-eval/ next to the manifest): a finished dump is reused
    and an unfinished one resumed when the command runs again.
    """
    from publish.manifest.kldartifact import artifact_path

    kld = manifest.evaluation.kld
    if kld is None:
        raise UsageError("the manifest has no evaluation.kld to run", file=manifest.source,
                         hint="add evaluation.kld (branch, method, dataset, sequence_length, samples)")
    local = manifest.root / kld.dataset.name
    text = (TextSource(file=local, label=kld.dataset.name) if local.is_file() and kld.dataset.split is None
            else TextSource(dataset=kld.dataset.name, split=kld.dataset.split or "test"))
    target = variant or str(manifest.variant_path(manifest.variant(kld.branch)))
    workdir = workdir or manifest.root / DEFAULT_WORKDIR
    out = out or artifact_path(manifest) or manifest.root / "kld.json"
    top_k = kld.reference_top_k or 1000
    approximation = kld.approximation or "top-k-tail-bucket"

    def step(label: str) -> Progress | None:
        return (lambda done, total: progress(label, done, total)) if progress else None

    common: dict[str, Any] = {"sequence_length": kld.sequence_length, "samples": kld.samples, "top_k": top_k,
                              "tokenizer": tokenizer, "workers": workers, "device": device, "sleep": sleep}
    ref = dump(reference, workdir / "reference.safetensors", text=text, server=reference_server,
               served_model=reference_served_model, progress=step("reference"), **common)
    var = dump(target, workdir / f"variant-{kld.branch}.safetensors", windows_from=ref.path, server=variant_server,
               served_model=variant_served_model, progress=step(f"variant {kld.branch}"), **common)
    return out, score(ref.path, var.path, kld.method, approximation, out)
