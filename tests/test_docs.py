"""The python blocks of the README and docs and the docstrings' examples call scssl as it is.

Every call of a ``scssl.`` name (or of a name imported from scssl) must reach an existing
object and pass only keywords its signature takes, so renaming an argument or a function
breaks this test rather than the docs. Keywords a signature passes on through ``**kwargs``
(``train(**trainer_kwargs)``) are not checked. Running the blocks needs data and minutes of
training; they are run by hand (see the changelog).
"""

import ast
import doctest
import importlib
import inspect
import re
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks():
    for path in DOCS:
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 2
            yield pytest.param(match.group(1), id=f"{path.name}:{line}")
    # the Examples of the docstrings
    for path in sorted((ROOT / "src" / "scssl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
                continue
            examples = doctest.DocTestParser().get_examples(ast.get_docstring(node) or "")
            if examples:
                source = "".join(example.source for example in examples)
                yield pytest.param(source, id=f"{path.name}:{node.name}")


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _resolve(dotted: str, imported: dict[str, str]):
    head, _, rest = dotted.partition(".")
    if head in imported:
        dotted = imported[head] + (f".{rest}" if rest else "")
    elif head != "scssl":
        return None
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for depth, part in enumerate(parts[1:], start=1):
        if not hasattr(obj, part):  # a submodule not imported by its parent
            obj = importlib.import_module(".".join(parts[: depth + 1]))
        else:
            obj = getattr(obj, part)
    return obj


def _returned_class(target):
    """The scssl class a call of ``target`` returns (a class, its classmethods, annotated)."""
    if inspect.isclass(target):
        return target
    owner = getattr(target, "__self__", None)
    if inspect.isclass(owner) and target.__name__ in {"load", "from_encoder", "from_ssl_in_scg"}:
        return owner
    try:
        returned = typing.get_type_hints(target).get("return")
    except Exception:  # annotations that do not evaluate: no type known
        return None
    return returned if inspect.isclass(returned) else None


class _CallChecker(ast.NodeVisitor):
    """Walks a block in execution order, tracking which scssl class each variable holds."""

    def __init__(self):
        self.imported = {}  # local name -> dotted scssl name
        self.instances = {}  # variable -> the scssl class assigned to it

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] == "scssl":
                self.imported[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else "scssl"
                )

    def visit_ImportFrom(self, node):
        if (node.module or "").startswith("scssl"):
            for alias in node.names:
                self.imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def visit_Assign(self, node):
        target = self.visit(node.value)  # runs before the names are bound; a call: what it calls
        for variable in node.targets:
            self.visit(variable)
        cls = None if target is None else _returned_class(target)
        if cls is not None and cls.__module__.startswith("scssl"):
            for variable in node.targets:
                if isinstance(variable, ast.Name):
                    self.instances[variable.id] = cls

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Store):  # rebound to something else (for, with, ...)
            self.instances.pop(node.id, None)

    def _target(self, name: str):
        head, _, method = name.partition(".")
        if head in self.instances and method and "." not in method:
            cls = self.instances[head]
            assert hasattr(cls, method), f"{cls.__name__} has no {method}"
            return getattr(cls, method)
        return _resolve(name, self.imported)

    def visit_Call(self, node):
        """Check the call's keywords; returns the scssl object called (``None``: not scssl)."""
        self.generic_visit(node)
        if (name := _dotted(node.func)) is None or (target := self._target(name)) is None:
            return None
        try:
            parameters = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):  # a builtin or a class without a signature
            return target
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            known = {p.name for p in parameters}
            unknown = [k.arg for k in node.keywords if k.arg is not None and k.arg not in known]
            assert not unknown, f"{name}() takes no {unknown} (line {node.lineno} of the block)"
        return target


@pytest.mark.parametrize("source", _blocks())
def test_doc_block_calls_scssl_as_it_is(source):
    _CallChecker().visit(ast.parse(source))


def test_the_checker_follows_the_blocks_order_and_aliases():
    valid = (
        "import scssl as ss\n"
        "model = ss.model.SSLEncoder(adata)\n"
        "x = model.get_reconstructed_expression(adata)\n"
        "model = ss.model.SSLProteinPredictor.from_encoder(model, mdata)\n"
        "model.predict_protein(mdata)\n"
    )
    _CallChecker().visit(ast.parse(valid))
    with pytest.raises(AssertionError, match="takes no"):
        _CallChecker().visit(ast.parse(valid + "model.predict_protein(mdata, sof=True)\n"))
    with pytest.raises(AssertionError, match="has no get_reconstructed"):
        _CallChecker().visit(ast.parse(valid + "model.get_reconstructed_expression(mdata)\n"))
