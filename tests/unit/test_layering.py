"""The service package never imports the laboratory: `titan_exec` holds the service only, and
the `titan-exec` command finds the laboratory's commands through entry points."""

from __future__ import annotations

import ast
import contextlib
import io
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from titan_exec.cli.commands import COMMAND_GROUP, command_entry_points
from titan_exec.cli.main import build_parser, main

SRC = Path(__file__).resolve().parents[2] / "src"
SERVICE = SRC / "titan_exec"
LAB = "titan_exec_lab"
LAB_COMMANDS = {"feed", "venue-sim", "verify", "chaos", "status", "demo", "bench"}
SERVICE_COMMANDS = {"run", "nats", "send", "envelope", "switchover", "promote"}


def _is_lab(name: str) -> bool:
    return name == LAB or name.startswith(LAB + ".")


def lab_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of the laboratory, at any depth (inside functions and
    `if TYPE_CHECKING:` too), and of every `import_module("...")` / `__import__("...")`
    whose argument is a string literal naming it."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_lab(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _is_lab(node.module):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            fn = node.func
            called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            arg = node.args[0]
            if (
                called in {"import_module", "__import__"}
                and isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and _is_lab(arg.value)
            ):
                found.append((node.lineno, arg.value))
    return found


def service_modules() -> list[Path]:
    return sorted(SERVICE.rglob("*.py"))


def test_the_service_package_is_not_empty_and_the_lab_is_apart() -> None:
    assert len(service_modules()) > 50
    assert not (SERVICE / "chaos").exists() and not (SERVICE / "verify").exists()
    assert (SRC / LAB / "__init__.py").exists()


@pytest.mark.parametrize("path", service_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_a_service_module_never_imports_the_lab(path: Path) -> None:
    found = lab_imports(path.read_text())
    where = ", ".join(f"{path.relative_to(SRC)}:{line} imports {mod}" for line, mod in found)
    assert not found, where


@pytest.mark.parametrize(
    "source",
    [
        "import titan_exec_lab\n",
        "import titan_exec_lab.verify.read as r\n",
        "from titan_exec_lab.sim import render\n",
        "def f():\n    from titan_exec_lab.demo.run import run_demo\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import titan_exec_lab.chaos\n",
        "import importlib\nm = importlib.import_module('titan_exec_lab.cli.demo')\n",
        "from importlib import import_module\nm = import_module('titan_exec_lab')\n",
        "m = __import__('titan_exec_lab.bench')\n",
    ],
)
def test_the_check_catches_every_way_of_importing_the_lab(source: str) -> None:
    assert lab_imports(source)


@pytest.mark.parametrize(
    "source",
    [
        "import titan_exec.adapters.venue.exchange.engine\n",
        "from titan_exec.cli.args import EXIT_CONFIG\n",
        "import titan_exec_labs\n",  # another name that starts alike
        "from . import titan_exec_lab\n",  # relative: inside the service package itself
        "x = 'titan_exec_lab.cli.demo'\n",  # a string that is not imported
    ],
)
def test_the_check_passes_what_is_not_the_lab(source: str) -> None:
    assert lab_imports(source) == []


def test_the_check_names_the_line() -> None:
    assert lab_imports("import os\n\n\nfrom titan_exec_lab.verify import check\n") == [
        (4, "titan_exec_lab.verify")
    ]


# --- the command line ------------------------------------------------------------------------


def test_the_lab_commands_are_declared_as_entry_points() -> None:
    declared = {ep.name for ep in command_entry_points()}
    assert declared == LAB_COMMANDS
    assert all(ep.value.startswith(LAB + ".") for ep in command_entry_points())


def test_titan_exec_help_lists_the_service_and_the_lab_commands() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listed = out.getvalue()
    for command in SERVICE_COMMANDS | LAB_COMMANDS:
        assert f"    {command} " in listed, f"{command} missing from --help:\n{listed}"


def test_a_lab_command_keeps_its_flags() -> None:
    args = build_parser().parse_args(["demo", "--venue", "paper", "--single"])
    assert (args.venue, args.single, args.keep_state) == ("paper", True, False)
    args = build_parser().parse_args(["status", "--url", "http://a", "--url", "http://b"])
    assert args.url == ["http://a", "http://b"]
    args = build_parser().parse_args(["bench", "--startup", "--sizes", "1e4"])
    assert (args.startup, args.sizes, args.intents) == (True, "1e4", 2000)


def test_without_entry_points_the_service_commands_remain() -> None:
    parser = build_parser(commands=[])
    assert parser.parse_args(["switchover"]).command == "switchover"
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["demo"])
    assert exited.value.code == 2  # argparse: invalid choice, no traceback


@pytest.mark.parametrize(
    "value",
    [
        "titan_exec_lab.no_such_module:add_parser",  # missing
        "titan_exec_lab.cli.demo:no_such_function",  # broken
        "titan_exec.cli.args:positive_seconds",  # raises when called with the subparsers
        "titan_exec_lab.cli.feed:add_parser",  # registers another name than its own
    ],
)
def test_a_broken_entry_point_is_a_clear_error_and_no_traceback(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ep = EntryPoint(name="demo", value=value, group=COMMAND_GROUP)
    parser = build_parser(commands=[ep])
    assert parser.parse_args(["send", "intent"]).command == "send"  # the service still works
    args = parser.parse_args(["demo", "--venue", "sim"])
    assert args.fn(args) == 69
    err = capsys.readouterr().err
    assert err.startswith("titan-exec demo: cannot load it") and value in err, err
    assert "Traceback" not in err and err.count("\n") == 1


def test_an_entry_point_never_replaces_a_service_command() -> None:
    ep = EntryPoint(name="run", value="titan_exec_lab.cli.demo:add_parser", group=COMMAND_GROUP)
    args = build_parser(commands=[ep]).parse_args(["run", "--mode", "active"])
    assert args.command == "run" and args.fn.__name__ == "cmd_run"
