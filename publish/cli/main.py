"""The `hubpub` command line: parse arguments, call the library, print, choose the exit code. Nothing clever.

Exit codes: 0 success; 1 checks failed, cards out of date, or the Hub refused/failed; 2 bad usage or bad input.
Heavy libraries (torch, compressed-tensors) are imported only by the commands that read weights.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from publish import __version__
from publish.cli import evaloptions as evo
from publish.cli.common import branch_option, hash_cache_location, manifest_option, verbosity_options
from publish.cli.common import hub as _hub
from publish.cli.common import load as _load
from publish.cli.common import reports_errors as _reports_errors
from publish.cli.publishing import plan, push
from publish.errors import EXIT_FAILED

if TYPE_CHECKING:
    from publish.checkpoint.reportcache import ReportCache
    from publish.commands.eval import DumpSettings, Execution, ModelSource, RunSettings, TextSource
    from publish.hub.hashcache import HashCache

# At exit, after every other exit handler, freeze what is left: the interpreter's final collections then skip the
# object graph torch and transformers built (a check or a cold push imports them), whose teardown is slow and
# useless at exit (bench/bench_push.py measures the whole process).
atexit.register(gc.freeze)

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="hubpub")
def main() -> None:
    """Publish quantized model variants to Hugging Face Hub branches, with true model cards.

    One Hub repository; each variant in branches.yaml lives on its own branch (revision).

    \b
      hubpub render                  write cards/<branch>/README.md for every variant (offline)
      hubpub render --check          exit 1 with a diff when a written card is out of date
      hubpub check                   verify each variant's checkpoint from its safetensors headers
      hubpub init FOLDER...          start a branches.yaml from existing checkpoint folders
      hubpub plan --branch gs128     show what a push would add, update, delete or keep
      hubpub push --branch gs128     check, render and publish one variant in one commit
      hubpub push --all --card-only  publish only the cards (the weights are already on the Hub)
      hubpub push --all --create-pr  open a Hub pull request per changed variant, for review
      hubpub eval run --reference B  measure KLD against the base model into kld.json (hubpub[eval])

    Push and plan report each step as it happens (--json for a machine-readable report); every command takes
    -q/--quiet and -v/--verbose.

    Exit codes: 0 ok, 1 checks failed / out of date / Hub failure / tag conflict, 2 bad usage or input (a missing
    folder, a TODO left in the manifest, no or a read-only token).
    """


@main.command("render")
@manifest_option
@branch_option
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Where to write <branch>/README.md (default: cards/ next to the manifest).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 and print a diff if a card on disk is out of date.")
@verbosity_options
@_reports_errors
def render_command(manifest: str, branch: str | None, out: Path | None, check: bool, verbosity: int) -> None:
    """Render each variant's README.md from the manifest and the templates.

    Works offline and without weights. When a variant's checkpoint folder is present, its weights are checked
    as by `hubpub check`: an error-level finding stops the render (exit 1, the findings printed), and the scheme
    (each part's, for mixed precision), activations, KV cache, size, scale dtype and unquantized families must
    agree with the manifest. A report recorded by `hubpub check` for unchanged weights is reused. A templates/
    folder next to the manifest overrides the default templates file by file.
    """
    from publish.commands.render import render as render_cards

    result = render_cards(_load(manifest), branch=branch, out=out, check=check, cache=_report_cache())
    for note in result.notes if verbosity >= 0 else ():
        click.echo(note, err=True)
    for card in result.cards:
        if card.status in ("out-of-date", "missing"):
            click.echo(card.diff, nl=False)
        if verbosity >= 0:
            click.echo(f"{card.branch}: {card.path} {card.status}", err=check)
    if check and result.drift:
        click.echo(f"{len(result.drift)} card(s) out of date; run `hubpub render` to update them", err=True)
        sys.exit(EXIT_FAILED)


@main.command("check")
@manifest_option
@branch_option
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report (versioned, stable codes).")
@click.option("--remote", is_flag=True,
              help="For a variant whose folder is absent, check the weights on its Hub revision (headers only).")
@verbosity_options
@_reports_errors
def check_command(manifest: str, branch: str | None, as_json: bool, remote: bool, verbosity: int) -> None:
    """Verify each variant's checkpoint against its config and the manifest (headers only).

    Checks config (C), index and shards (I), tensors and KV-cache scales (T), what is quantized (K) and the
    architecture transformers builds from config.json (A: every module stored), and warns (S1) about every file
    push would refuse: a secret, a file holding a token, a link out of the folder. Exits 0 when no
    error-level finding exists, 1 otherwise; a variant whose folder is missing is an error. Runs on a manifest
    whose card fields still say TODO (fresh from `hubpub init`), warning about each.
    """
    from publish.commands.check import check as check_variants

    loaded = _load(manifest, allow_todo=True)
    hub = _hub() if remote else None
    report = check_variants(loaded, branch=branch, hub=hub, cache=_report_cache(), scans=_hash_cache())
    if loaded.todos and verbosity >= 0:
        click.echo(f"warning: {len(loaded.todos)} field(s) still say TODO; render and push refuse the manifest "
                   f"until they are filled in: {', '.join(loaded.todos)}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    elif verbosity >= 0 or not report.ok:
        click.echo(report.format_text())
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command("init")
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--repo-id", metavar="ID", help="The Hub repository, namespace/name.")
@click.option("--out", "-o", default="branches.yaml", show_default=True, type=click.Path(path_type=Path),
              help="Where to write the manifest.")
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
@verbosity_options
@_reports_errors
def init_command(folders: tuple[Path, ...], repo_id: str | None, out: Path, force: bool, verbosity: int) -> None:
    """Write a starting branches.yaml from existing checkpoint FOLDERS, facts filled in from the weights.

    The title comes from --repo-id's name; quantize.py and log.txt beside the manifest become `files:` (other
    recipes or logs there get a warning naming them). What the weights cannot tell is written as TODO: `hubpub
    check` runs meanwhile, render and push refuse it.
    """
    from publish.commands.init import init as init_manifest

    written = init_manifest(list(folders), repo_id=repo_id, out=out, force=force,
                            warn=lambda text: click.echo(text, err=True))
    if verbosity >= 0:
        click.echo(f"wrote {written}; fill in the fields marked TODO (`hubpub check` works meanwhile)")


def _hash_cache() -> HashCache:
    from publish.hub.hashcache import HashCache

    return HashCache(hash_cache_location())


def _report_cache() -> ReportCache:
    from publish.checkpoint.reportcache import ReportCache, beside
    from publish.hub.hashcache import default_cache_location

    return ReportCache(beside(default_cache_location()))


# ---------------------------------------------------------------------------------------------------------------
# hubpub eval: numpy, safetensors and (for dumps) torch/transformers are imported only when these commands run.


@main.group(name="eval")
def eval_group() -> None:
    """Measure KL divergence of variants against their unquantized reference; write kld.json.

    \b
      hubpub eval dump --model BASE --text wiki.txt --out ref.safetensors
      hubpub eval dump --model VARIANT --windows-from ref.safetensors --out variant.safetensors
      hubpub eval score ref.safetensors variant.safetensors --branch main --out kld.json
      hubpub eval run --reference BASE     every branch evaluation.kld names, the reference dumped once

    Logprobs come from transformers (local checkpoint, GPU if present) or, with --server, from an
    OpenAI-compatible server (vLLM: start it with --max-logprobs K). Needs `pip install 'hubpub[eval]'`.
    """


@eval_group.command(name="dump")
@evo.model_source_options
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The dump to write (safetensors).")
@evo.text_options
@click.option("--windows-from", type=click.Path(dir_okay=False, path_type=Path), metavar="DUMP",
              help="Use exactly the token windows of an earlier dump (dump the variant this way).")
@evo.dump_settings_options
@evo.execution_options
@verbosity_options
@_reports_errors
def eval_dump(source: ModelSource, out: Path, text: TextSource | None, windows_from: Path | None,
              settings: DumpSettings, execution: Execution, verbosity: int) -> None:
    """Dump one model's top-K log-probs over fixed token windows (resumable: rerun to finish)."""
    from dataclasses import replace

    from publish.commands.eval import dump
    from publish.errors import UsageError

    if (text is not None) + (windows_from is not None) != 1 or (text and text.file and text.dataset):
        raise UsageError("give exactly one of --text FILE, --dataset NAME[:SPLIT] or --windows-from DUMP")
    progress = evo.DumpProgress(out.name) if verbosity >= 0 else None
    try:
        result = dump(source, out, text=text, windows_from=windows_from,
                      settings=replace(settings, execution=execution), progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if verbosity < 0:
        return
    state = "already complete" if result.reused else "written"
    click.echo(f"{result.path}: {state}, {result.info.samples} windows × {result.info.sequence_length} tokens, "
               f"top-{result.info.top_k}, sha256 {result.sha256}")


@eval_group.command(name="score")
@click.argument("reference", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("variants", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--branch", "-b", "branches", multiple=True, metavar="NAME",
              help="Each variant's branch, in order (default: the dump's name without 'variant-').")
@evo.method_option
@evo.approximation_option
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write kld.json here.")
@verbosity_options
@_reports_errors
def eval_score(reference: Path, variants: tuple[Path, ...], branches: tuple[str, ...], method: str,
               approximation: str, out: Path | None, verbosity: int) -> None:
    """KL divergence and the other statistics of each VARIANT dump against the REFERENCE dump (same windows)."""
    from publish.commands.eval import score
    from publish.errors import UsageError

    if branches and len(branches) != len(variants):
        raise UsageError(f"{len(branches)} --branch names for {len(variants)} variant dumps; give one per dump",
                         field="--branch")
    names = branches or tuple(path.stem.removeprefix("variant-") for path in variants)
    if len(set(names)) != len(names):
        raise UsageError(f"two variant dumps would both be called {names[0]!r}", field="--branch",
                         hint="name each with --branch")
    evo.print_statistics(score(reference, dict(zip(names, variants, strict=True)), method, approximation, out))
    if out is not None and verbosity >= 0:
        click.echo(f"wrote {out}", err=True)


@eval_group.command(name="run")
@manifest_option
@evo.reference_options
@evo.variant_options
@evo.run_settings_options
@verbosity_options
@_reports_errors
def eval_run(manifest: str, reference: ModelSource, variant_options: evo.VariantOptions, settings: RunSettings,
             verbosity: int) -> None:
    """Dump the reference once and every branch evaluation.kld names, and score them, as the manifest configures."""
    from publish.commands.eval import run

    loaded = _load(manifest)
    bars: dict[str, evo.DumpProgress] = {}

    def progress(label: str, done: int, total: int) -> None:
        if verbosity >= 0:
            bars.setdefault(label, evo.DumpProgress(label))(done, total)

    try:
        written, artifact = run(loaded, reference, variant_options.sources(loaded), settings=settings,
                                progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    evo.print_statistics(artifact)
    if verbosity >= 0:
        click.echo(f"wrote {written}", err=True)


main.add_command(plan)
main.add_command(push)

if __name__ == "__main__":
    main()
