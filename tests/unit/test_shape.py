"""The service package keeps the shape the house style asks for: small modules, small classes,
small functions, and no part built from the whole instance.

- no module over 500 lines, except `core/leadership.py` (one state machine with its
  table, kept whole on purpose);
- no class over 300 lines;
- no function over 80 lines, except declarations (the metric registry, the argument
  parser), which are long lists of one kind of statement;
- no module reaches into another object's private members through a parameter (`svc._x`),
  and nothing imports the old god object (`runtime.service`).

The laboratory (`titan_exec_lab`) is not held to these limits: it is not the service.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "titan_exec"

MODULE_MAX_LINES = 500
CLASS_MAX_LINES = 300
FUNCTION_MAX_LINES = 80
MODULE_EXCEPTIONS = {"core/leadership.py"}
DECLARATIONS = {
    ("api/metrics.py", "__init__"),  # the Prometheus registry: one metric per statement
    ("cli/main.py", "build_parser"),  # argparse: one option per statement
}


def service_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def spans(path: Path) -> list[tuple[str, str, int, int]]:
    """(kind, name, first line, length) of every class and function in the module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            out.append((kind, node.name, node.lineno, length))
    return out


def test_the_service_package_is_not_empty() -> None:
    assert len(service_files()) > 50


@pytest.mark.parametrize("path", service_files(), ids=rel)
def test_no_module_is_too_long(path: Path) -> None:
    if rel(path) in MODULE_EXCEPTIONS:
        return
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MODULE_MAX_LINES, f"{rel(path)}: {lines} lines (at most {MODULE_MAX_LINES})"


@pytest.mark.parametrize("path", service_files(), ids=rel)
def test_no_class_or_function_is_too_long(path: Path) -> None:
    too_long = []
    for kind, name, line, length in spans(path):
        limit = CLASS_MAX_LINES if kind == "class" else FUNCTION_MAX_LINES
        if length > limit and (rel(path), name) not in DECLARATIONS:
            too_long.append(f"{rel(path)}:{line} {kind} {name}: {length} lines (at most {limit})")
    assert not too_long, "\n".join(too_long)


@pytest.mark.parametrize("path", service_files(), ids=rel)
def test_nothing_is_built_from_the_whole_instance(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "titan_exec.runtime.service":
            found.append(f"{rel(path)}:{node.lineno} imports titan_exec.runtime.service")
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"svc", "service", "node"}
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{rel(path)}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)


def test_the_limits_catch_what_they_say() -> None:
    """The checks above look at real spans: a module of this file's own shape is measured."""
    kinds = {kind for kind, *_ in spans(Path(__file__))}
    assert kinds == {"function"}
    assert max(length for *_, length in spans(Path(__file__))) < FUNCTION_MAX_LINES
