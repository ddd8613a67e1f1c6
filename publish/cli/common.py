"""What every `hubpub` command shares: the error-to-exit-code wrapper, -q/-v, --manifest and --branch, the
manifest loader and the Hub client from the environment."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from publish.errors import EXIT_FAILED, HubpubError, scrub
from publish.events import Emit, ignore

if TYPE_CHECKING:
    from publish.hub.client import Hub
    from publish.manifest.model import Manifest

F = TypeVar("F", bound=Callable[..., Any])

MANIFEST_HELP = "The manifest to read (default: ./branches.yaml)."


def reports_errors(command: F) -> F:
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


def load(manifest: str, allow_todo: bool = False) -> Manifest:
    from publish.manifest.model import load_manifest

    return load_manifest(Path(manifest), allow_todo=allow_todo)


def verbosity_options(command: F) -> F:
    """-q/--quiet and -v/--verbose, folded into one `verbosity` argument: -1 quiet, 0 normal, 1 verbose."""

    @functools.wraps(command)
    def wrapper(*args: Any, quiet: bool, verbose: int, **kwargs: Any) -> Any:
        if quiet and verbose:
            from publish.errors import UsageError

            raise UsageError("give at most one of -q/--quiet and -v/--verbose")
        return command(*args, verbosity=-1 if quiet else min(verbose, 1), **kwargs)

    wrapper = click.option("--verbose", "-v", count=True, help="Say more (progress lines without a terminal).")(wrapper)
    wrapper = click.option("--quiet", "-q", is_flag=True, help="Print only errors (and reports asked for: --json, check findings, diffs).")(wrapper)
    return wrapper  # type: ignore[return-value]


manifest_option = click.option(
    "--manifest", "-m", default="branches.yaml", show_default=True, metavar="FILE", help=MANIFEST_HELP
)
branch_option = click.option("--branch", "-b", metavar="NAME", help="Only this variant's branch (default: all).")



def hub(emit: Emit = ignore) -> Hub:
    """The Hub client HF_ENDPOINT and the token select, reporting its retries to `emit`."""
    from publish.hub.client import Hub

    return Hub.from_environment(emit=emit)


def hash_cache_location() -> Path:
    from publish.hub.hashcache import default_cache_location

    return default_cache_location()
