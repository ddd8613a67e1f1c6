"""What `hubpub push` and `hubpub plan` leave behind and print: the published cards in cards/, one line for the
unchanged files of a branch, and a hash-cache claim only when it is true."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import hubpub
from .hubserver import HubServer
from .test_push import REPO, hubpub_cli

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def test_push_leaves_the_published_cards_so_render_check_passes(weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    for branch in ("main", "gs128"):
        card = weighed.parent / "cards" / branch / "README.md"
        assert f"{branch}: card saved to {card}" in done.stderr.splitlines()
        assert card.read_bytes() == hub.files(REPO, branch)["README.md"]  # the text that was committed
    checked = hubpub("render", "--check", "--manifest", str(weighed), cwd=weighed.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_no_op_push_says_one_line_per_branch_and_v_lists_the_files(weighed: Path, hub: HubServer) -> None:
    first = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert first.returncode == 0, first.stderr
    count = len(hub.files(REPO, "gs128")) - 1  # .gitattributes is not hubpub's
    again = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert again.returncode == 0, again.stderr
    assert f"gs128: {count} files unchanged (-v lists them)" in again.stdout.splitlines()
    assert "  unchanged config.json" not in again.stdout
    verbose = hubpub_cli("push", "-v", "--manifest", str(weighed), "--branch", "gs128", hub=hub,
                         cwd=weighed.parent)
    assert verbose.returncode == 0, verbose.stderr
    assert sum(line.startswith("  unchanged ") for line in verbose.stdout.splitlines()) == count


def test_a_changed_card_lists_the_change_and_collapses_the_rest(weighed: Path, hub: HubServer) -> None:
    hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    count = len(hub.files(REPO, "gs128")) - 2  # neither .gitattributes nor the README
    weighed.write_text(weighed.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", "title: Qwen3.6 27B INT8"))
    planned = hubpub_cli("plan", "--manifest", str(weighed), "--branch", "gs128", hub=hub, cwd=weighed.parent)
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert any(line.split() == ["update", "README.md", *line.split()[2:]] for line in lines)
    assert f"  unchanged {count} files (-v lists them)" in lines


def test_the_hash_cache_is_mentioned_only_when_it_answered(weighed: Path, hub: HubServer) -> None:
    first_plan = hubpub_cli("plan", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert first_plan.returncode == 0, first_plan.stderr
    assert "hash cache" not in first_plan.stderr  # nothing on the Hub to compare: nothing hashed, nothing cached
    pushed = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert pushed.returncode == 0, pushed.stderr
    hashed = [line for line in pushed.stderr.splitlines() if line.startswith("hashed ")]
    assert len(hashed) == 1 and "hash cache" not in hashed[0]  # a first push hashes everything
    again = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert "hashed nothing: every digest came from the hash cache" in again.stderr.splitlines()
