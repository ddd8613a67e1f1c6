"""How the CLI shows push and plan events: text lines as they happen, progress bars in a terminal, or a JSON
report built from the same events (the shell: printing, nothing clever).

Progress bars follow huggingface_hub's conventions: none when HF_HUB_DISABLE_PROGRESS_BARS is set or when
standard error is not a terminal.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from publish.events import Committed, Event, Planned, Progress, PullRequestOpened, Tagged, Unchanged, Verified

if TYPE_CHECKING:
    from huggingface_hub.utils import tqdm

PUSH_REPORT_VERSION = 1
QUIET, NORMAL, VERBOSE = -1, 0, 1


def bars_enabled() -> bool:
    from huggingface_hub.utils import are_progress_bars_disabled

    return sys.stderr.isatty() and not are_progress_bars_disabled()


class Console:
    """An `emit` callback for the CLI. Results (plan tables, commit URLs) go to standard output, everything else
    to standard error; with `as_json`, standard output gets only the final JSON report."""

    def __init__(self, verbosity: int = NORMAL, *, as_json: bool = False, bars: bool | None = None) -> None:
        self.verbosity = verbosity
        self.as_json = as_json
        self.bars = bars_enabled() if bars is None else bars
        self._bars: dict[str, tqdm] = {}
        self.variants: dict[str, dict[str, Any]] = {}
        # huggingface_hub draws its own bars (per LFS upload, header parsing); they follow ours.
        self._silenced = False
        if not self.bars or verbosity <= QUIET:
            from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

            self._silenced = not are_progress_bars_disabled()
            disable_progress_bars()

    def __call__(self, event: Event) -> None:
        self._record(event)
        if isinstance(event, Progress):
            self._progress(event)
            return
        if self.verbosity <= QUIET:
            return
        self._close_bars()
        result = isinstance(event, Planned | Committed | PullRequestOpened | Unchanged | Tagged)
        text = event.text(self.verbosity >= VERBOSE) if isinstance(event, Planned) else event.text()
        click.echo(text, err=self.as_json or not result)

    def _progress(self, event: Progress) -> None:
        if self.bars and self.verbosity > QUIET:
            from huggingface_hub.utils import tqdm

            bar = self._bars.get(event.stage)
            if bar is None:
                bar = self._bars[event.stage] = tqdm(total=event.total, unit="B", unit_scale=True,
                                                     desc=event.stage, leave=False)
            bar.set_postfix_str(event.path, refresh=False)
            bar.update(event.done - bar.n)
        elif self.verbosity >= VERBOSE:
            click.echo(event.text(), err=True)

    def _close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def close(self) -> None:
        self._close_bars()
        if self._silenced:
            from huggingface_hub.utils import enable_progress_bars

            enable_progress_bars()
            self._silenced = False

    # -- the JSON report ------------------------------------------------------------------------------------

    def _record(self, event: Event) -> None:
        if isinstance(event, Planned):
            plan = event.plan
            self.variants[plan.branch] = {
                "branch": plan.branch, "repo_id": plan.repo_id, "repo_exists": plan.repo_exists,
                "branch_exists": plan.branch_exists, "parent_commit": plan.parent_commit,
                "card_only": plan.card_only, "upload_bytes": plan.upload_bytes,
                "actions": [{"path": c.path, "action": c.action, "size": c.size} for c in plan.changes],
                "commit": None, "url": None, "verified": False, "tag": None, "pull_request": None,
            }
        elif isinstance(event, Committed):
            self.variants[event.branch].update(commit=event.commit, url=event.url)
        elif isinstance(event, PullRequestOpened):
            self.variants[event.branch].update(
                commit=event.commit, url=event.url,
                pull_request={"num": event.num, "url": event.url, "revision": event.revision, "new": not event.existing},
            )
        elif isinstance(event, Verified):
            self.variants[event.branch]["verified"] = True
        elif isinstance(event, Unchanged) and event.verified:
            self.variants[event.branch].update(commit=event.verified, verified=True)
        elif isinstance(event, Tagged):
            self.variants[event.branch]["tag"] = event.tag

    def report(self, *, dry_run: bool, error: str | None = None) -> dict[str, Any]:
        """The versioned report `plan --json` and `push --json` print; stable keys."""
        return {"version": PUSH_REPORT_VERSION, "ok": error is None, "dry_run": dry_run,
                "variants": list(self.variants.values()), "error": error}
