"""The `titan-exec` commands this package does not hold, found through entry points: the
laboratory's (demo, bench, feed, venue-sim, verify, chaos, status), declared in
pyproject.toml. Nothing here imports the laboratory: only the entry points name it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from titan_exec.cli.args import EXIT_UNAVAILABLE

COMMAND_GROUP = "titan_exec.commands"
"""The entry-point group of the commands this package does not hold (the laboratory's:
demo, bench, feed, venue-sim, verify, chaos, status). Each entry point names a function
``add_parser(subparsers)`` that registers the command of the entry point's name."""


def command_entry_points() -> list[EntryPoint]:
    return list(entry_points(group=COMMAND_GROUP))


def add_commands(sub: Any, commands: Iterable[EntryPoint]) -> None:
    """Register each entry point's command. One that cannot be loaded stays listed, and
    running it says why in one line (exit 69), so a broken or missing installation never
    takes the service's own commands down with it. A name the service uses is not replaced."""
    for ep in commands:
        if ep.name in sub.choices:
            continue
        try:
            ep.load()(sub)
        except Exception as err:  # whatever the plugin raised: the command is unavailable
            _unavailable(sub, ep, f"{type(err).__name__}: {err}")
            continue
        if ep.name not in sub.choices:
            _unavailable(sub, ep, f"{ep.value} did not register a command {ep.name!r}")


def _unavailable(sub: Any, ep: EntryPoint, why: str) -> None:
    reason = f"cannot load it ({ep.value}, entry point group {COMMAND_GROUP}): {why}"

    def fail(args: argparse.Namespace) -> int:
        print(f"titan-exec {ep.name}: {reason}", file=sys.stderr)
        return EXIT_UNAVAILABLE

    if ep.name in sub.choices:  # registered halfway before it failed: replace it
        del sub.choices[ep.name]
    # no option prefix: whatever follows the command's name is taken, and `fail` says why
    p = sub.add_parser(ep.name, help=f"(unavailable: {why})", add_help=False, prefix_chars="\0")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=fail, log_level="WARNING")
