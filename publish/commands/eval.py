"""`hubpub eval`: logprob dumps of a reference and its variants, then KL divergence statistics into kld.json.

`dump` runs one model (transformers, or an OpenAI-compatible server) over fixed token windows; `score` compares
variants' dumps with the reference's; `run` does both for every branch a manifest's `evaluation.kld` names, dumping
the reference once, with the manifest's configuration.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from publish import __version__
from publish.errors import DumpError, UsageError
from publish.eval.dumps import Dump, DumpInfo, assemble, make_windows, partial_folder
from publish.manifest.kldartifact import artifact_path, new_artifact, read_artifact, weights_sha256, write_artifact
from publish.manifest.model import Manifest
from publish.util.hashing import sha256_file

if TYPE_CHECKING:
    from publish.eval.backends import WindowProgress

DEFAULT_WORKDIR = ".hubpub-eval"
DEFAULT_TOP_K = 1000
# A K above any vocabulary: the backends keep min(K, vocabulary), so the dump holds full distributions.
WHOLE_VOCABULARY = 1 << 30
# Called with (dump label, windows done, windows in all) by `run`.
RunProgress = Callable[[str, int, int], None]


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
class ModelSource:
    """Which model a dump is of: a checkpoint run with transformers, or, with `server`, a model an
    OpenAI-compatible server serves as `served_model` (default: `model`). `model` is recorded as the identity (and,
    when it is a local folder, gives the weights digest and vocabulary); `tokenizer` defaults to `model`."""

    model: str
    server: str | None = None
    served_model: str | None = None
    revision: str | None = None
    tokenizer: str | None = None


@dataclass(frozen=True)
class Execution:
    """How models run: concurrent server requests, the torch device, and the wait between retries."""

    workers: int = 4
    device: str | None = None
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class DumpSettings:
    """What a dump measures (the windows, unless they come from an earlier dump, and K) and how models run."""

    sequence_length: int = 2048
    samples: int = 64
    top_k: int = DEFAULT_TOP_K
    execution: Execution = field(default_factory=Execution)


@dataclass(frozen=True)
class RunSettings:
    """`run`: where dumps (default .hubpub-eval/ next to the manifest) and kld.json (default evaluation.kld.artifact,
    else kld.json next to the manifest) go, and how models run. The windows and K come from the manifest."""

    workdir: Path | None = None
    out: Path | None = None
    execution: Execution = field(default_factory=Execution)


@dataclass(frozen=True)
class DumpResult:
    path: Path
    sha256: str
    info: DumpInfo
    reused: bool = False


def dump(source: ModelSource, out: Path, *, text: TextSource | None = None, windows_from: Path | None = None,
         settings: DumpSettings | None = None, progress: WindowProgress | None = None) -> DumpResult:
    """Dump the model's top-K log-probs (and the correct token's) over the windows of `text`, or over the same
    windows as the dump `windows_from`.

    Finished windows are kept in `<out>.partial/`, so the same call after a failure resumes; a finished dump of the
    same model, windows and K is reused without loading the model. Raises DumpError (bad input: exit 2) or
    EvalError (the model or server failed: exit 1).
    """
    import numpy as np

    from publish.eval import backends as eb

    settings = settings or DumpSettings()
    tokenizer_name = source.tokenizer or source.model
    loaded_tokenizer: Any = None
    if windows_from is not None:
        earlier = Dump(windows_from)
        windows = earlier.token_ids()
        name, split, text_sha = earlier.info.dataset, earlier.info.split, earlier.info.text_sha256
    else:
        if text is None:
            raise UsageError("give --text FILE, --dataset NAME[:SPLIT] or --windows-from DUMP")
        body, name, split = text.read()
        loaded_tokenizer = eb.load_tokenizer(tokenizer_name, source.revision if source.tokenizer is None else None)
        text_sha = hashlib.sha256(body.encode("utf-8")).hexdigest()
        windows = make_windows(eb.tokenize(loaded_tokenizer, body), settings.sequence_length, settings.samples, name)
    info = DumpInfo(
        model=source.model, backend="server" if source.server else "transformers", dataset=name, split=split,
        text_sha256=text_sha, sequence_length=int(windows.shape[1]), samples=int(windows.shape[0]),
        top_k=settings.top_k, vocab_size=0, revision=source.revision, weights_sha256=weights_sha256(Path(source.model)),
        tokenizer=tokenizer_name, tokenizer_sha256=eb.tokenizer_sha256(tokenizer_name),
    )
    # A finished dump of the same model, text and K is kept, before paying for loading the model.
    finished = _finished_dump(out, info, windows)
    if finished is not None:
        return DumpResult(out, sha256_file(out), finished, reused=True)
    run = settings.execution
    backend: Any
    workers = run.workers
    if source.server is not None:
        loaded_tokenizer = loaded_tokenizer or eb.load_tokenizer(tokenizer_name)
        vocab = eb.vocab_size(source.model, loaded_tokenizer)
        backend = eb.ServerBackend(source.server, source.served_model or source.model, settings.top_k, vocab,
                                   sleep=run.sleep)
    else:
        backend = eb.TransformersBackend(source.model, settings.top_k, revision=source.revision, device=run.device)
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


def score(reference: Path, variants: Mapping[str, Path], method: str, approximation: str,
          out: Path | None = None) -> dict[str, Any]:
    """Compare each variant's dump (by branch name) with the reference's dump of the same windows; return (and
    write to `out`) the kld.json artifact, version 2. Raises DumpError or UsageError for unusable input (exit 2)."""
    from publish.eval.scoring import check_settings, compare

    check_settings(method, approximation)
    ref = Dump(reference)
    opened = {branch: Dump(path) for branch, path in variants.items()}
    # Hashing the dumps for their identities reads them whole: do it beside the scoring (hashlib and numpy both
    # release the GIL).
    with ThreadPoolExecutor(max_workers=1) as hasher:
        digests = {dump.path: hasher.submit(sha256_file, dump.path) for dump in (ref, *opened.values())}
        statistics = compare(ref, opened, method, approximation)

    def identity(dump: Dump) -> dict[str, Any]:
        info = dump.info
        return {"model": info.model, "revision": info.revision, "weights_sha256": info.weights_sha256,
                "backend": info.backend, "top_k": dump.top_k, "tokenizer_sha256": info.tokenizer_sha256,
                "dump_sha256": digests[dump.path].result()}

    shared = {
        "hubpub_version": __version__,
        "config": {
            "method": method, "approximation": approximation, "top_k": ref.top_k,
            "dataset": {"name": ref.info.dataset, "split": ref.info.split, "text_sha256": ref.info.text_sha256},
            "sequence_length": ref.info.sequence_length, "samples": ref.info.samples,
        },
        "reference": identity(ref),
        "tokenizer": {"name": ref.info.tokenizer, "sha256": ref.info.tokenizer_sha256},
    }
    artifact = new_artifact(shared, [{"branch": branch, "identity": identity(opened[branch]),
                                      "statistics": statistics[branch].to_json()} for branch in opened])
    if out is not None:
        write_artifact(out, artifact)
    return artifact


def run(manifest: Manifest, reference: ModelSource, variants: Mapping[str, ModelSource] | None = None, *,
        settings: RunSettings | None = None, progress: RunProgress | None = None) -> tuple[Path, dict[str, Any]]:
    """Evaluate every branch `evaluation.kld` names against `reference`, as configured there; write kld.json.

    The reference is dumped once and each variant's dump is scored against it. `variants` overrides where a
    branch's model comes from (default: its folder, run with transformers). The configuration comes from the
    manifest, or, for what it leaves out, from the kld.json it names; the dataset is a local text file when
    `dataset.name` names a file next to the manifest. Finished dumps are reused and unfinished ones resumed when
    the call is repeated. Raises UsageError (exit 2) when the manifest cannot say what to run.
    """
    settings = settings or RunSettings()
    kld = manifest.evaluation.kld
    if kld is None:
        raise UsageError("the manifest has no evaluation.kld to run", file=manifest.source,
                         hint="add evaluation.kld (branches, method, dataset, sequence_length, samples)")
    branches = manifest.kld_branches
    unknown = sorted(set(variants or {}) - set(branches))
    if unknown:
        raise UsageError(f"branch {unknown[0]!r} is not one evaluation.kld evaluates ({', '.join(branches)})",
                         file=manifest.source, field="evaluation.kld")
    sources = {branch: (variants or {}).get(branch) or _folder_source(manifest, branch) for branch in branches}
    config = _configuration(manifest)
    workdir = settings.workdir or manifest.root / DEFAULT_WORKDIR
    out = settings.out or artifact_path(manifest) or manifest.root / "kld.json"
    dump_settings = DumpSettings(config["sequence_length"], config["samples"], config["top_k"], settings.execution)

    def step(label: str) -> WindowProgress | None:
        return (lambda done, total: progress(label, done, total)) if progress else None

    ref = dump(reference, workdir / "reference.safetensors", text=config["text"], settings=dump_settings,
               progress=step("reference"))
    dumps = {}
    for branch, source in sources.items():
        # The variants share the reference's vocabulary; one served from elsewhere may have no local tokenizer.
        if not source.tokenizer and (reference.tokenizer or not Path(source.model).is_dir()):
            source = replace(source, tokenizer=reference.tokenizer or reference.model)
        done = dump(source, workdir / f"variant-{branch.replace('/', '--')}.safetensors", windows_from=ref.path,
                    settings=dump_settings, progress=step(f"variant {branch}"))
        dumps[branch] = done.path
    return out, score(ref.path, dumps, config["method"], config["approximation"], out)


def _folder_source(manifest: Manifest, branch: str) -> ModelSource:
    """A branch's checkpoint folder from the manifest; missing, it fails now, not after the reference's dump."""
    folder = manifest.variant_path(manifest.variant(branch))
    if not folder.is_dir():
        raise UsageError(f"variant {branch!r} has no checkpoint folder at {folder}", file=manifest.source,
                         hint=f"fix its `path:`, or pass --variant {branch}=PATH_OR_ID (or a server)")
    return ModelSource(str(folder))


def _configuration(manifest: Manifest) -> dict[str, Any]:
    """Method, approximation, K, text and window for `run`: the manifest's, else its artifact's, else defaults."""
    kld = manifest.evaluation.kld
    assert kld is not None
    path = artifact_path(manifest)
    earlier = read_artifact(path).config if path is not None and path.is_file() else {}
    recorded = earlier.get("dataset")
    dataset: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    name = kld.dataset.name if kld.dataset else dataset.get("name")
    split = kld.dataset.split if kld.dataset else dataset.get("split")
    sequence_length = kld.sequence_length or earlier.get("sequence_length")
    samples = kld.samples or earlier.get("samples")
    if not name or not sequence_length or not samples:
        missing = [key for key, value in (("dataset", name), ("sequence_length", sequence_length),
                                          ("samples", samples)) if not value]
        raise UsageError(f"evaluation.kld does not say the {', '.join(missing)} to evaluate on", file=manifest.source,
                         field="evaluation.kld", hint="add them, or name an `artifact:` that records them")
    local = manifest.root / name
    text = (TextSource(file=local, label=name) if local.is_file() and split is None
            else TextSource(dataset=name, split=split or "test"))
    approximation = kld.approximation or earlier.get("approximation") or "top-k-tail-bucket"
    # full-vocab needs K ≥ the vocabulary, which is known once the model loads: ask for all of it.
    whole = WHOLE_VOCABULARY if approximation == "full-vocab" else DEFAULT_TOP_K
    return {
        "method": kld.method if kld.given("method") or "method" not in earlier else earlier["method"],
        "approximation": approximation, "top_k": kld.reference_top_k or earlier.get("top_k") or whole,
        "text": text, "sequence_length": int(sequence_length), "samples": int(samples),
    }
