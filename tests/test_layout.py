"""The code's layout is a pipeline: each stage's folder imports only the stages below it, and nothing cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "publish"
# Lower layers first. A module may import its own layer and the ones before it, never a later one.
LAYERS = [
    {"publish", "publish.errors", "publish.util"},
    {"publish.manifest"},
    {"publish.checkpoint"},
    {"publish.card"},
    {"publish.hub", "publish.eval", "publish.events"},
    {"publish.commands"},
    {"publish.cli"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer unit a module belongs to: its stage folder (publish.hub), or a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer(module: str) -> int:
    found = [i for i, units in enumerate(LAYERS) if unit(module) in units]
    assert found, f"{module} belongs to no layer: add its folder to LAYERS"
    return found[0]


def runtime_imports(path: Path) -> set[str]:
    """hubpub modules imported at run time (module level or inside functions), TYPE_CHECKING blocks excluded."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("publish"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("publish")}
    return found


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def test_every_import_points_down_the_pipeline() -> None:
    upward = [f"{name} imports {target}" for name, path in modules().items() if name != "publish"
              for target in runtime_imports(path) if layer(target) > layer(name)]
    assert upward == []


def test_publishing_never_imports_the_evaluation_package() -> None:
    publishing = ("publish.manifest", "publish.checkpoint", "publish.card", "publish.hub")
    crossing = [f"{name} imports {target}" for name, path in modules().items() if name.startswith(publishing)
                for target in runtime_imports(path) if target.startswith("publish.eval")]
    assert crossing == []


def test_no_module_level_import_cycle() -> None:
    graph = {}
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        graph[name] = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)
                       and node.module and node.module.startswith("publish.") and node.module in modules()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    assert cycles == []
