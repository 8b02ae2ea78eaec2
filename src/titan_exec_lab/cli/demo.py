"""`titan-exec demo`: the scripted end-to-end demo (`make demo`, see `titan_exec_lab.demo`)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    from titan_exec_lab.demo.run import run_demo

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the children like Ctrl-C
    try:
        return asyncio.run(
            run_demo(keep_state=args.keep_state, venue=args.venue, single=args.single)
        )
    except KeyboardInterrupt:
        print("\ndemo interrupted: its child processes were stopped", file=sys.stderr)
        return 130


def add_parser(sub: Any) -> None:
    """Register ``demo`` on ``titan-exec``'s subparsers (a `titan_exec.commands` entry point)."""
    demo_help = (
        "scripted end-to-end demo: the hot-standby pair (two titan-exec run processes, lease "
        "1000 ms) and the venue simulator on an embedded NATS, kill -9 of the active mid-flow, "
        "restart as standby, final invariant checks (exit 1 if one fails)"
    )
    p = sub.add_parser("demo", help=demo_help, description=demo_help)
    p.add_argument("--keep-state", action="store_true", help="keep the state and logs directory")
    p.add_argument(
        "--venue",
        choices=["sim", "paper"],
        default="sim",
        help="sim: the venue simulator as a child process, reached through ccxt (default; the "
        "pair needs it); paper: the in-process paper venue, one instance only (its state lives "
        "in its process, so a pair cannot share it; implies --single)",
    )
    p.add_argument(
        "--single",
        action="store_true",
        help="one in-process instance instead of the pair (no failover)",
    )
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_demo)
