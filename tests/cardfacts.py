"""Read the facts a model card states, ignoring markup and whitespace, so two cards can be compared fact by fact."""

from __future__ import annotations

import re
from typing import Any

import yaml

_MARKUP = re.compile(r"</?(code|strong)>|\*\*|`")


def plain(cell: str) -> str:
    return _MARKUP.sub("", cell).strip()


def front_matter(text: str) -> dict[str, Any]:
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "card has no front matter"
    return yaml.safe_load(match.group(1))


def section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE)
    match = following.search(text, start)
    return text[start : match.start() if match else len(text)]


def table(text: str) -> list[list[str]]:
    """Rows of the first markdown table in `text`, cells stripped of markup; the separator row is dropped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [plain(c) for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            break
    return rows


def vllm_args(text: str) -> list[str]:
    block = re.search(r"```\nvllm serve \S+ \\\n(.*?)```", text, re.DOTALL)
    assert block, "card has no vllm serve example"
    return [line.rstrip(" \\") for line in block.group(1).splitlines() if line.strip()]


def facts(text: str) -> dict[str, Any]:
    return {
        "front_matter": front_matter(text),
        "title": re.search(r"^# (.+)$", text, re.MULTILINE).group(1),  # type: ignore[union-attr]
        "quantization": table(section(text, "## Quantization details")),
        "kld_metrics": table(section(text, "### KLD Metrics")),
        "evaluation": table(section(text, "### Evaluation Configuration")),
        "evaluated_branch": re.search(r"^(\S+) branch is used for the evaluation\.$", text, re.MULTILINE).group(1),  # type: ignore[union-attr]
        "vllm_args": vllm_args(text),
    }
