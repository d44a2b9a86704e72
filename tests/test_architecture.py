"""The package's structure: layers import only downwards, no cycles, small modules and functions.

These are the rules of docs/architecture.md, checked on the source (AST, lazy imports included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "scssl"
#: Layer of each top-level part of the package; a module may import its own layer and below.
LAYERS = {
    "_version": 0,
    "_json": 0,
    "metrics": 0,
    "nn": 0,
    "data": 0,
    "checkpoints": 0,
    "datasets": 0,
    "module": 1,
    "train": 1,
    "model": 2,
    "io": 3,
    "tl": 3,
    "benchmark": 4,
    "pl": 4,
    "cli": 5,
}
#: Same-layer imports that are not allowed either.
FORBIDDEN = {("pl", "benchmark"), ("nn", "data"), ("tl", "io")}
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 90


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """scssl modules ``name`` imports (the longest existing module of each import)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_package else name.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_part_has_a_layer(graph):
    parts = {_part(m) for m in graph} - {None}
    assert parts <= set(LAYERS), f"parts without a layer: {parts - set(LAYERS)}"


def test_imports_only_go_down(graph):
    wrong = []
    for module, targets in graph.items():
        source = _part(module)
        if source is None:  # the root package exposes everything
            continue
        for target in targets:
            part = _part(target)
            if part is None:
                wrong.append(f"{module} imports the root package")
            elif part != source and (LAYERS[part] > LAYERS[source] or (source, part) in FORBIDDEN):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles(graph):
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_files_and_functions_stay_small():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(SRC)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {length}")
    assert not too_long, "\n".join(too_long)
