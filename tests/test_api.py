"""The public surface: `publish` exports the library entry points, lazily, and each is the real function."""

from __future__ import annotations

import subprocess
import sys

import pytest

import publish


@pytest.mark.parametrize("name", [n for n in publish.__all__ if n != "__version__"])
def test_every_public_name_resolves_to_a_documented_object(name: str) -> None:
    value = getattr(publish, name)
    assert value.__doc__, f"publish.{name} has no docstring"


def test_the_entry_points_are_the_commands_themselves() -> None:
    from publish.commands.check import check
    from publish.commands.push import push
    from publish.manifest.model import load_manifest

    assert publish.check is check and publish.push is push and publish.load_manifest is load_manifest


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        publish.nonesuch  # noqa: B018


@pytest.mark.slow
def test_importing_publish_loads_no_dependency() -> None:
    probe = ("import sys, publish; heavy = [m for m in ('huggingface_hub', 'torch', 'pydantic', 'jinja2') "
             "if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_all_lists_exactly_the_exports() -> None:
    assert set(publish.__all__) == {"__version__", *publish._EXPORTS}
