"""`hubpub plan` and `hubpub push`: one settings value (PushSettings) built from options declared once, events
printed as they happen (console.py), the JSON report even on failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from publish.cli.common import (
    F,
    branch_option,
    hash_cache_location,
    hub,
    load,
    manifest_option,
    reports_errors,
    verbosity_options,
)
from publish.errors import HubpubError

if TYPE_CHECKING:
    from publish.commands.push import PushResult, PushSettings

# -- plan and push: one settings value (PushSettings), the options they share declared once -----------------------

_prune_option = click.option(
    "--prune", is_flag=True,
    help="Also delete remote files that are not in the variant's folder (stale weight files go either way).")
_card_only_option = click.option(
    "--card-only", is_flag=True,
    help="Only the README and the shared files; the weights already on each Hub revision are checked and kept.")
_create_pr_option = click.option(
    "--create-pr", is_flag=True,
    help="A Hub pull request per changed variant instead of a commit to its branch, for review (plan: what each "
         "would hold, and one already open).")
_json_option = click.option("--json", "as_json", is_flag=True,
                            help="Print a machine-readable report (versioned, stable keys).")


def publishing_options(command: F) -> F:
    """The options `plan` and `push` share: --manifest, --prune, --card-only, --create-pr, --json and -q/-v."""
    for option in (verbosity_options, _json_option, _create_pr_option, _card_only_option, _prune_option,
                   manifest_option):
        command = option(command)
    return command


@click.command()
@branch_option
@publishing_options
@reports_errors
def plan(manifest: str, branch: str | None, prune: bool, card_only: bool, create_pr: bool, as_json: bool,
         verbosity: int) -> None:
    """Show, per variant, the files a push would add, update, delete or leave unchanged. Uploads nothing.

    Files the manifest's `exclude:` globs leave out are listed, and so are a recipe or log beside the manifest
    that `files:` does not list. Unchanged files collapse into one line (-v lists them). Hashes only the files it
    must compare: those the Hub revision holds at the same path and size. Needs only read access: a token the Hub
    refuses fails (exit 2); without a token it warns and reads anonymously.
    """
    from publish.commands.push import PushSettings
    from publish.commands.push import plan as plan_variants

    settings = PushSettings(branch=branch, dry_run=True, prune=prune, card_only=card_only, create_pr=create_pr,
                            cache=hash_cache_location())
    _run_push(plan_variants, manifest, settings, verbosity, as_json)


@click.command()
@click.option("--branch", "-b", metavar="NAME", help="The variant to publish.")
@click.option("--all", "all_", is_flag=True, help="Publish every variant, one commit per branch.")
@click.option("--dry-run", is_flag=True, help="Check, render and plan; upload nothing.")
@click.option("--message", metavar="MSG", help="The commit title (default: 'Publish <branch> with hubpub').")
@click.option("--tag", metavar="RELEASE", help="Also tag each variant's commit on the Hub as RELEASE-<branch>.")
@publishing_options
@reports_errors
def push(
    manifest: str, branch: str | None, all_: bool, dry_run: bool, message: str | None, tag: str | None,
    prune: bool, card_only: bool, create_pr: bool, as_json: bool, verbosity: int,
) -> None:
    """Check, render and publish variants, each to its own branch in one atomic, verified commit.

    The token comes from HF_TOKEN or `hf auth login` and is checked first (whoami): a missing, wrong or read-only
    token fails before anything is hashed or created. HF_ENDPOINT selects a self-hosted Hub. Unchanged files are
    skipped (local hashes are cached by path, size, mtime and inode), stale weight files are deleted in the same
    commit, and a concurrent push to the branch is detected, never overwritten. A variant whose folder is missing
    is an error; --card-only publishes the card of weights already on the Hub. The checks `hubpub check` recorded
    are reused while the folder's files (with --card-only: the branch's commit) and the variant's entry are
    unchanged. A --tag that already names another commit is refused before committing. Each step is reported as it happens; failed requests are retried
    (honouring the Hub's Retry-After) and each retry is reported. Each published card is kept in
    cards/<branch>/README.md, so `hubpub render --check` passes after a push; a commit an earlier push left
    unverified is verified first.

    With --create-pr each changed variant's commit opens a Hub pull request against its branch (refs/pr/N,
    verified there) and the branch stays as it is; a re-run of the same push reports the open pull request instead
    of opening another. Tag after merging. A Trusted Publisher's token (HF_OIDC_RESOURCE) is exchanged again when it
    expires during the push.
    """
    from publish.commands.push import PushSettings
    from publish.commands.push import push as push_variants
    from publish.errors import UsageError

    if bool(branch) == all_:
        raise UsageError("give exactly one of --branch NAME or --all")
    settings = PushSettings(branch=branch, dry_run=dry_run, prune=prune, card_only=card_only, message=message,
                            tag=tag, create_pr=create_pr, cache=hash_cache_location())
    _run_push(push_variants, manifest, settings, verbosity, as_json)


def _run_push(command: Callable[..., PushResult], manifest: str, settings: PushSettings, verbosity: int,
             as_json: bool) -> None:
    """Run plan or push with events printed as they happen; with --json, print the report even on failure."""
    from publish.cli.console import Console

    console = Console(verbosity, as_json=as_json)
    try:
        result = command(load(manifest), hub(console), settings, emit=console)
    except HubpubError as error:
        console.close()
        if as_json:
            click.echo(json.dumps(console.report(dry_run=settings.dry_run, error=str(error)), indent=2))
        raise
    console.close()
    if as_json:
        click.echo(json.dumps(console.report(dry_run=settings.dry_run), indent=2))
    elif verbosity >= 0 and (hashing := hashing_summary(result)) is not None:
        click.echo(hashing, err=True)


def hashing_summary(result: PushResult) -> str | None:
    """One true line about what was hashed; None when no file needed its digest."""
    if result.hashed_bytes and result.cached_bytes:
        return f"hashed {result.hashed_bytes:,} bytes (the rest came from the hash cache)"
    if result.hashed_bytes:
        return f"hashed {result.hashed_bytes:,} bytes"
    if result.cached_bytes:
        return "hashed nothing: every digest came from the hash cache"
    return None
