"""`titan-exec verify`: check a run's invariants (design/ha-protocol.md §10) from the raw
data, after the run, independently of the service's own state.

    titan-exec verify --nats nats://127.0.0.1:4222 [--venue http://127.0.0.1:8765]
                      [--url http://127.0.0.1:3002 --url http://127.0.0.1:3003]
                      [--ns exec] [--shard main] [--json]

It reads every command in `TITAN_CMD` and every event of the namespace in `TITAN_EVT`
(an ephemeral consumer that acknowledges nothing), the venue simulator's own record
(`GET <venue>/sim/inspect`) and each instance's `GET <url>/status`, and checks
(`titan_exec_lab.verify.invariants`):

- decisions: every command decided exactly once (undecided commands with their stream seq
  and signal id, commands decided twice with the event seqs, decisions of unknown commands);
- coids: no client order id placed twice at the venue (with the venue order ids);
- epochs: every state event fenced by the epoch marker that was the newest when it landed,
  and no event written under a deposed epoch (with the writer, from the `Titan-Epoch` and
  `Titan-Instance` headers when present, and the owner of the newer marker);
- venue: the net positions folded from the fill events, and the orders open according to
  the order events, equal the venue's own (with `--venue`);
- instances: instances at the same `event_seq` have the same `state_hash`, and each has the
  venue's net positions and number of open orders (with `--url`).

It prints every violation, one line each, then a summary line (`--json`: one JSON
document). Exit 0: no violation; 1: at least one; 2: something could not be read (NATS
unreachable, a stream missing, the venue not answering). An instance that does not answer
is a violation (`instances`), not a reading error: after a chaos run it is a finding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from titan_exec_lab.verify.invariants import check
from titan_exec_lab.verify.read import CannotRead, read_inspect, read_statuses, read_streams_at
from titan_exec_lab.verify.report import Report

EXIT_CLEAN = 0
EXIT_VIOLATIONS = 1
EXIT_CANNOT_READ = 2


async def read_and_check(args: argparse.Namespace) -> Report:
    """Read the streams, then the venue and the instances; check. Raises `CannotRead`."""
    commands, events = await read_streams_at(args.nats, args.ns)
    inspect = await asyncio.to_thread(read_inspect, args.venue) if args.venue else None
    statuses = await asyncio.to_thread(read_statuses, args.url) if args.url else {}
    return check(commands, events, inspect, statuses, ns=args.ns, shard=args.shard)


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        report = asyncio.run(read_and_check(args))
    except CannotRead as err:
        print(f"titan-exec verify: cannot read the run: {err}", file=sys.stderr)
        return EXIT_CANNOT_READ
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(report.lines()))
    return EXIT_CLEAN if report.ok else EXIT_VIOLATIONS


def add_parser(sub: Any) -> None:
    """`titan-exec verify` on the subcommands of `titan-exec`."""
    summary = (
        "check a run's invariants from the raw streams and the venue simulator's record "
        "(exit 0 clean, 1 on any violation, 2 when something cannot be read)"
    )
    p = sub.add_parser("verify", help=summary, description=summary)
    p.add_argument(
        "--nats",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="NATS server (default: NATS_URL or nats://127.0.0.1:4222)",
    )
    p.add_argument("--venue", default=None, help="the venue simulator's URL (/sim/inspect)")
    p.add_argument(
        "--url", action="append", default=[], help="an instance's admin URL (repeatable)"
    )
    p.add_argument("--ns", default=os.environ.get("TITAN_NAMESPACE", "exec"))
    p.add_argument("--shard", default="main", help="the epoch subject's shard")
    p.add_argument("--json", action="store_true", help="the report as one JSON document")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_verify)
