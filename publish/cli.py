"""The `hubpub` command line: parse arguments, call the library, print, choose the exit code. Nothing clever.

Exit codes: 0 success; 1 checks failed, cards out of date, or the Hub refused/failed; 2 bad usage or bad input.
Heavy libraries (torch, compressed-tensors) are imported only by the commands that read weights.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .errors import EXIT_FAILED, HubpubError, scrub

F = TypeVar("F", bound=Callable[..., Any])

MANIFEST_HELP = "The manifest to read (default: ./branches.yaml)."


def _reports_errors(command: F) -> F:
    """Turn every HubpubError into its message and exit code; never show a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HubpubError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was half-written", err=True)
            sys.exit(130)
        except Exception as error:  # a bug in hubpub: say so, without a traceback or a token
            if os.environ.get("HUBPUB_DEBUG"):
                raise
            click.echo(f"internal error: {scrub(f'{type(error).__name__}: {error}')}", err=True)
            click.echo("  rerun with HUBPUB_DEBUG=1 for the traceback, and please report it", err=True)
            sys.exit(EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


def _load(manifest: str) -> Any:
    from .manifest import load_manifest

    return load_manifest(Path(manifest))


manifest_option = click.option(
    "--manifest", "-m", default="branches.yaml", show_default=True, metavar="FILE", help=MANIFEST_HELP
)
branch_option = click.option("--branch", "-b", metavar="NAME", help="Only this variant's branch (default: all).")


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

    Exit codes: 0 ok, 1 checks failed / out of date / Hub failure, 2 bad usage or input.
    """


@main.command()
@manifest_option
@branch_option
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Where to write <branch>/README.md (default: cards/ next to the manifest).")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 and print a diff if a card on disk is out of date.")
@_reports_errors
def render(manifest: str, branch: str | None, out: Path | None, check: bool) -> None:
    """Render each variant's README.md from the manifest and the templates.

    Works offline and without weights. When a variant's checkpoint folder is present, the size, bits, group
    size, symmetry, scale dtype and unquantized families come from its weights, and any disagreement with the
    manifest is an error. A templates/ folder next to the manifest overrides the default templates file by file.
    """
    from .commands.render import render as render_cards

    result = render_cards(_load(manifest), branch=branch, out=out, check=check)
    for note in result.notes:
        click.echo(note, err=True)
    for card in result.cards:
        if card.status in ("out-of-date", "missing"):
            click.echo(card.diff, nl=False)
        click.echo(f"{card.branch}: {card.path} {card.status}", err=check)
    if check and result.drift:
        click.echo(f"{len(result.drift)} card(s) out of date; run `hubpub render` to update them", err=True)
        sys.exit(EXIT_FAILED)


@main.command()
@manifest_option
@branch_option
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable report (versioned, stable codes).")
@click.option("--remote", is_flag=True,
              help="For a variant whose folder is absent, check the weights on its Hub revision (headers only).")
@_reports_errors
def check(manifest: str, branch: str | None, as_json: bool, remote: bool) -> None:
    """Verify each variant's checkpoint against its config and the manifest (headers only).

    Checks config (C), index and shards (I), tensors (T) and what is quantized (K). Exits 0 when no
    error-level finding exists, 1 otherwise; a variant whose folder is missing is an error.
    """
    from .commands.check import check as check_variants

    hub = _hub() if remote else None
    report = check_variants(_load(manifest), branch=branch, hub=hub, cache=_checks_cache())
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.format_text())
    if not report.ok:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--repo-id", metavar="ID", help="The Hub repository, namespace/name.")
@click.option("--out", "-o", default="branches.yaml", show_default=True, type=click.Path(path_type=Path),
              help="Where to write the manifest.")
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
@_reports_errors
def init(folders: tuple[Path, ...], repo_id: str | None, out: Path, force: bool) -> None:
    """Write a starting branches.yaml from existing checkpoint FOLDERS, facts filled in from the weights."""
    from .commands.init import init as init_manifest

    written = init_manifest(list(folders), repo_id=repo_id, out=out, force=force)
    click.echo(f"wrote {written}; fill in the fields marked TODO, then run `hubpub check`")


def _hub() -> Any:
    from .hub import Hub

    return Hub.from_environment()


def _hash_cache() -> Any:
    from .hashcache import HashCache, default_cache_location

    return HashCache(default_cache_location())


def _checks_cache() -> Any:
    from .hashcache import default_cache_location
    from .reportcache import ReportCache

    return ReportCache(default_cache_location().with_name("checks.json"))


def _print_push(result: Any, dry_run: bool) -> None:
    for variant in result.variants:
        for note in variant.notes:
            click.echo(f"{variant.branch}: {note}", err=True)
        click.echo(variant.plan.format_table())
        if dry_run:
            continue
        if variant.commit is None:
            click.echo(f"{variant.branch}: unchanged; no commit made")
        else:
            click.echo(f"{variant.branch}: committed and verified {variant.commit.url}")
    click.echo(f"hashed {result.hashed_bytes:,} bytes (the rest came from the hash cache)", err=True)


@main.command()
@manifest_option
@branch_option
@click.option("--prune", is_flag=True, help="Also plan to delete remote files that are not weights hubpub manages.")
@_reports_errors
def plan(manifest: str, branch: str | None, prune: bool) -> None:
    """Show, per variant, the files a push would add, update, delete or leave unchanged. Uploads nothing."""
    from .commands.push import plan as plan_push

    hub, cache = _hub(), _hash_cache()
    result = plan_push(_load(manifest), hub, branch, cache=cache, prune=prune, checks_cache=_checks_cache())
    _print_push(result, dry_run=True)


@main.command()
@manifest_option
@click.option("--branch", "-b", metavar="NAME", help="The variant to publish.")
@click.option("--all", "all_", is_flag=True, help="Publish every variant, one commit per branch.")
@click.option("--dry-run", is_flag=True, help="Check, render and plan; upload nothing.")
@click.option("--prune", is_flag=True, help="Delete remote files that are not in the variant's folder.")
@click.option("--message", metavar="MSG", help="The commit title (default: 'Publish <branch> with hubpub').")
@click.option("--tag", metavar="RELEASE", help="Also tag each variant's commit on the Hub as RELEASE-<branch>.")
@_reports_errors
def push(
    manifest: str, branch: str | None, all_: bool, dry_run: bool, prune: bool, message: str | None, tag: str | None
) -> None:
    """Check, render and publish variants, each to its own branch in one atomic, verified commit.

    The token comes from HF_TOKEN or `hf auth login`; HF_ENDPOINT selects a self-hosted Hub. Unchanged files
    are skipped (local hashes are cached by path, size, mtime and inode), stale weight files are deleted in the
    same commit, and a concurrent push to the branch is detected, never overwritten. A variant whose folder is
    absent is published card-only: its Hub weights are checked and left untouched.
    """
    from .commands.push import push as push_variants
    from .errors import UsageError

    if bool(branch) == all_:
        raise UsageError("give exactly one of --branch NAME or --all")
    hub, cache = _hub(), _hash_cache()
    result = push_variants(
        _load(manifest), hub, branch, cache=cache, dry_run=dry_run, prune=prune, message=message, tag=tag,
        checks_cache=_checks_cache(),
    )
    _print_push(result, dry_run)


if __name__ == "__main__":
    main()
