"""`hubpub eval`'s command-line pieces: options declared once and folded into the library's settings values,
per-branch option values, and how a dump's progress is shown (the shell: parsing and printing, nothing clever)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from publish.errors import UsageError

if TYPE_CHECKING:
    from publish.commands.eval import DumpSettings, Execution, ModelSource, RunSettings, TextSource
    from publish.manifest.model import Manifest

F = TypeVar("F", bound=Callable[..., Any])


def _folded(options: Sequence[Callable[[F], F]], build: Callable[..., Any], into: str,
            names: Sequence[str]) -> Callable[[F], F]:
    """A decorator adding `options` to a command and passing their values to it as one value, `into`."""

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return command(*args, **{into: build(**values)}, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


def _execution(workers: int, device: str | None) -> Execution:
    from publish.commands.eval import Execution

    return Execution(workers=workers, device=device)


workers_option = click.option("--workers", default=4, show_default=True, type=click.IntRange(min=1),
                              help="Concurrent server requests.")
device_option = click.option("--device", help="torch device for transformers (default: cuda if available, else cpu).")
tokenizer_option = click.option("--tokenizer", metavar="PATH_OR_ID",
                                help="Where the tokenizer is (default: the model's, for run the reference's).")
# --workers and --device, as an `execution` argument (publish.commands.eval.Execution).
execution_options = _folded([workers_option, device_option], _execution, "execution", ("workers", "device"))


def _dump_settings(sequence_length: int, samples: int, top_k: int) -> DumpSettings:
    from publish.commands.eval import DumpSettings

    return DumpSettings(sequence_length=sequence_length, samples=samples, top_k=top_k)


# --sequence-length, --samples and --top-k, as a `settings` argument (publish.commands.eval.DumpSettings).
dump_settings_options = _folded([
    click.option("--sequence-length", default=2048, show_default=True, type=click.IntRange(min=2)),
    click.option("--samples", default=64, show_default=True, type=click.IntRange(min=1), help="Windows to evaluate."),
    click.option("--top-k", default=1000, show_default=True, type=click.IntRange(min=1),
                 help="Log-probs kept per position; at least the vocabulary size keeps full distributions."),
], _dump_settings, "settings", ("sequence_length", "samples", "top_k"))


def _model_source(model: str, server: str | None, served_model: str | None, revision: str | None,
                  tokenizer: str | None) -> ModelSource:
    from publish.commands.eval import ModelSource

    return ModelSource(model, server=server, served_model=served_model, revision=revision, tokenizer=tokenizer)


# --model, --server, --served-model, --revision and --tokenizer, as a `source` argument (ModelSource).
model_source_options = _folded([
    click.option("--model", required=True, metavar="PATH_OR_ID",
                 help="The checkpoint folder or Hub id (with --server: recorded identity, tokenizer and vocabulary)."),
    click.option("--server", metavar="URL", help="An OpenAI-compatible server (vLLM), e.g. http://127.0.0.1:8000/v1."),
    click.option("--served-model", metavar="NAME", help="The model name the server serves (default: --model)."),
    click.option("--revision", help="The model's Hub revision, recorded in the dump."),
    tokenizer_option,
], _model_source, "source", ("model", "server", "served_model", "revision", "tokenizer"))


def _text_source(text_file: Path | None, dataset: str | None, dataset_config: str | None, text_column: str) -> TextSource | None:
    from publish.commands.eval import TextSource

    if text_file is None and dataset is None:
        return None
    name, _, split = (dataset or "").partition(":")
    return TextSource(dataset=name or None, split=split or "test", config=dataset_config, column=text_column,
                      file=text_file)


# --text, --dataset, --dataset-config and --text-column, as a `text` argument (TextSource, or None).
text_options = _folded([
    click.option("--text", "text_file", type=click.Path(dir_okay=False, path_type=Path), help="A local text file."),
    click.option("--dataset", metavar="NAME[:SPLIT]", help="A datasets dataset, e.g. wikitext-2-raw-v1:test."),
    click.option("--dataset-config", metavar="CONFIG", help="The dataset's config, when NAME is not enough."),
    click.option("--text-column", default="text", show_default=True, help="The dataset column holding the text."),
], _text_source, "text", ("text_file", "dataset", "dataset_config", "text_column"))

def _reference_source(reference: str, reference_server: str | None, reference_served_model: str | None,
                      tokenizer: str | None) -> ModelSource:
    from publish.commands.eval import ModelSource

    return ModelSource(reference, server=reference_server, served_model=reference_served_model, tokenizer=tokenizer)


# --reference, --reference-server, --reference-served-model and --tokenizer, as a `reference` argument (ModelSource).
reference_options = _folded([
    click.option("--reference", required=True, metavar="PATH_OR_ID", help="The unquantized base model."),
    click.option("--reference-server", metavar="URL", help="Serve the reference from this OpenAI-compatible server."),
    click.option("--reference-served-model", metavar="NAME",
                 help="The name it serves the reference as (default: --reference)."),
    tokenizer_option,
], _reference_source, "reference", ("reference", "reference_server", "reference_served_model", "tokenizer"))


@dataclass(frozen=True)
class VariantOptions:
    """`eval run`'s --variant, --variant-server and --variant-served-model, as given (each [BRANCH=]VALUE)."""

    paths: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    served: tuple[str, ...] = ()

    def sources(self, manifest: Manifest) -> dict[str, Any]:
        """The ModelSource of each evaluated branch an option names; the others run from their folders."""
        from publish.commands.eval import ModelSource

        branches = manifest.kld_branches
        paths = per_branch(self.paths, branches, "--variant", shared=False)
        servers = per_branch(self.servers, branches, "--variant-server", shared=True)
        served = per_branch(self.served, branches, "--variant-served-model", shared=False)
        return {b: ModelSource(paths.get(b) or str(manifest.variant_path(manifest.variant(b))), server=servers.get(b),
                               served_model=served.get(b))
                for b in branches if b in paths or b in servers or b in served}


variant_options = _folded([
    click.option("--variant", "paths", multiple=True, metavar="[BRANCH=]PATH_OR_ID",
                 help="A branch's model (default: its folder in the manifest); repeat for several branches."),
    click.option("--variant-server", "servers", multiple=True, metavar="[BRANCH=]URL",
                 help="Serve a branch's model (bare URL: every branch's) from this OpenAI-compatible server."),
    click.option("--variant-served-model", "served", multiple=True, metavar="[BRANCH=]NAME",
                 help="The name the server serves a branch's model as (default: its --variant)."),
], VariantOptions, "variant_options", ("paths", "servers", "served"))


def _run_settings(workdir: Path | None, out: Path | None, workers: int, device: str | None) -> RunSettings:
    from publish.commands.eval import RunSettings

    return RunSettings(workdir=workdir, out=out, execution=_execution(workers, device))


# --workdir, --out, --workers and --device, as a `settings` argument (publish.commands.eval.RunSettings).
run_settings_options = _folded([
    click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
                 help="Where the dumps go (default: .hubpub-eval/ next to the manifest)."),
    click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
                 help="kld.json (default: evaluation.kld.artifact, else kld.json next to the manifest)."),
    workers_option, device_option,
], _run_settings, "settings", ("workdir", "out", "workers", "device"))

method_option = click.option("--method", default="next-token", show_default=True,
                             type=click.Choice(["next-token", "second-half", "all-logits"]),
                             help="Positions scored per window: L-1, L/2-1 (llama.cpp) or L.")
approximation_option = click.option("--approximation", default="top-k-tail-bucket", show_default=True,
                                    type=click.Choice(["top-k-tail-bucket", "top-k-renormalized", "full-vocab"]))


def per_branch(values: Sequence[str], branches: Sequence[str], option: str, *,
               shared: bool) -> dict[str, str]:
    """`--option BRANCH=VALUE` (repeatable) as {branch: value}. A bare VALUE applies to the one evaluated branch, or
    with `shared` to every branch."""
    found: dict[str, str] = {}
    for value in values:
        branch, sep, rest = value.partition("=")
        if sep and branch in branches:
            targets, value = [branch], rest
        elif shared or len(branches) == 1:
            targets = list(branches)
        else:
            raise UsageError(f"{option} {value!r} does not say which branch it is for; evaluation.kld evaluates "
                             f"{', '.join(branches)}", field=option, hint=f"write {option} BRANCH={value}")
        for target in targets:
            if found.get(target, value) != value:
                raise UsageError(f"{option} is given twice for branch {target!r}", field=option)
            found[target] = value
    return found


class DumpProgress:
    """How far a dump is: one progress bar in a terminal, otherwise a line each time another tenth of the windows
    is done (and one when a dump resumes with windows already saved)."""

    def __init__(self, label: str, *, bars: bool | None = None, echo: Callable[[str], None] | None = None) -> None:
        from publish.cli.console import bars_enabled

        self.label = label
        self.bars = bars_enabled() if bars is None else bars
        self.echo = echo or (lambda line: click.echo(line, err=True))
        self._bar: Any = None
        self._tenths: int | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.bars:
            self._draw(done, total)
            return
        tenths = done * 10 // max(1, total)
        if self._tenths is None:  # the first report: windows saved by an earlier run
            if done:
                self.echo(f"{self.label}: {done}/{total} windows already saved, resuming")
        elif tenths > self._tenths:
            self.echo(f"{self.label}: {done}/{total} windows ({100 * done // max(1, total)}%)")
        self._tenths = tenths

    def _draw(self, done: int, total: int) -> None:
        from huggingface_hub.utils import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, initial=done, unit="window", desc=self.label)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def print_statistics(artifact: dict[str, Any]) -> None:
    """Each variant's headline figures, one line for KL, one for the correct token (Δp, perplexity)."""
    for entry in artifact["variants"]:
        s = entry["statistics"]
        kl, percentiles, same = s["kl"], s["kl"]["percentiles"], s["same_top1"]
        click.echo(f"{entry['branch']}: KLD median {percentiles['p50']:.6f}  p90 {percentiles['p90']:.6f}  "
                   f"p99 {percentiles['p99']:.6f}  mean {kl['mean']:.6f} ± {kl['se'] or 0:.6f}  max {kl['max']:.6f}  "
                   f"coverage {s['mean_coverage']:.6f}  same top-1 {100 * same['rate']:.2f}%  "
                   f"positions {s['positions']:,}")
        ppl, delta = s["perplexity"], s["delta_p"]
        if ppl is not None and delta is not None:
            click.echo(f"{entry['branch']}: reverse KLD mean {s['kl_reverse']['mean']:.6f}  Δp mean "
                       f"{100 * delta['mean']:.3f}%  RMS Δp {100 * delta['rms']:.3f}%  PPL {ppl['reference']:.4f} → "
                       f"{ppl['variant']:.4f} (ratio {ppl['ratio']:.6f})")
