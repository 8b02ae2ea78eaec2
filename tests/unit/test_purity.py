"""The pure core and the wire codec import no I/O, clocks, randomness or logging."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "titan_exec"
PURE_PACKAGES = ["core", "wire"]
FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "time",
    "random",
    "secrets",
    "uuid",
    "logging",
    "os",
    "subprocess",
    "threading",
    "multiprocessing",
    "selectors",
    "nats",
    "aiohttp",
    "urllib",
    "http",
    "requests",
    "ccxt",
    "prometheus_client",
    "sqlite3",
    "shutil",
    "tempfile",
    "signal",
    "titan_exec.adapters",
    "titan_exec.runtime",
    "titan_exec.api",
    "titan_exec.cli",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "print", "input", "float"}
FLOAT_ALLOWED = {"wire/canonical.py"}
"""The TypeScript-compatible canonical JSON must reason about JS doubles; money never does."""


def pure_files() -> list[Path]:
    return sorted(p for pkg in PURE_PACKAGES for p in (SRC / pkg).rglob("*.py"))


def impurities(source: str, *, allow_float: bool = False) -> list[str]:
    tree = ast.parse(source)
    forbidden_calls = FORBIDDEN_CALLS - ({"float"} if allow_float else set())
    problems: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES):
                problems.append(f"line {node.lineno}: imports {name}")
        if isinstance(node, ast.Call):
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if called in forbidden_calls:
                problems.append(f"line {node.lineno}: calls {called}()")
    return problems


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_has_no_io_clock_or_randomness(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    problems = impurities(path.read_text(), allow_float=rel in FLOAT_ALLOWED)
    assert not problems, f"{rel} is not pure: {problems}"


@pytest.mark.parametrize(
    "source",
    [
        "import time\n",
        "from datetime import datetime\nx = datetime.now()\n",
        "import random\n",
        "from titan_exec.adapters.nats import streams\n",
        "import logging\n",
        "x = float('1.5')\n",
        "import asyncio.tasks\n",
    ],
)
def test_the_check_catches_impure_code(source: str) -> None:
    assert impurities(source)


def test_the_check_passes_pure_code() -> None:
    assert impurities("from decimal import Decimal\nx = Decimal('1') + 2\n") == []
