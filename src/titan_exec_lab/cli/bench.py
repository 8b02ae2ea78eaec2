"""`titan-exec bench`: throughput and latency (`titan_exec_lab.bench.throughput`), start-up
time against the length of history (`--startup`) and hostile bursts (`--poison`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def cmd_bench(args: argparse.Namespace) -> int:
    from titan_exec_lab.bench.throughput import run_bench

    if args.poison:
        from titan_exec_lab.bench.poison import run_poisonbench

        topologies = ["embedded", "cluster"] if args.topology == "both" else [args.topology]
        return asyncio.run(
            run_poisonbench(
                rounds=args.rounds,
                count=args.count,
                topologies=topologies,
                lease_ms=args.lease_ms,
                kinds=tuple(args.kinds.split(",")),
            )
        )
    if args.cluster is not None:
        from titan_exec_lab.bench.cluster import run_clusterbench

        if args.cluster not in (1, 3):
            print(f"titan-exec bench --cluster: 1 or 3 nodes, not {args.cluster}", file=sys.stderr)
            return 2
        return asyncio.run(
            run_clusterbench(
                replicas=args.cluster,
                rounds=args.rounds,
                intents=args.intents,
                paced=args.paced,
                pace_per_s=args.pace,
                baseline=args.baseline,
                profile_path=args.profile,
            )
        )
    if args.startup:
        from titan_exec_lab.bench.startup import SIZES, parse_sizes, run_startbench

        try:
            sizes = parse_sizes(args.sizes) if args.sizes else SIZES
        except ValueError as err:
            print(f"titan-exec bench --sizes: {err}", file=sys.stderr)
            return 2
        return asyncio.run(run_startbench(sizes=sizes, rounds=args.rounds, json_path=args.json))
    code = 0
    if not args.fills_only:
        code = asyncio.run(
            run_bench(
                intents=args.intents,
                paced=args.paced,
                pace_per_s=args.pace,
                rounds=args.rounds,
                venue=args.venue,
                ha=args.ha,
            )
        )
    if args.venue == "sim":
        from titan_exec_lab.bench.venuefills import run_venuebench

        try:
            counts = tuple(int(x) for x in args.symbol_counts.split(","))
        except ValueError:
            print(f"titan-exec bench --symbol-counts: not integers: {args.symbol_counts}")
            return 2
        sources = tuple(x.strip() for x in args.sources.split(",") if x.strip())
        if not sources or any(x not in ("stream", "polling") for x in sources):
            print(f"titan-exec bench --sources: stream and/or polling, not {args.sources!r}")
            return 2
        code = max(
            code,
            asyncio.run(
                run_venuebench(
                    rounds=args.rounds,
                    fills=args.fills,
                    symbol_counts=counts,
                    weight_window_s=args.weight_window_s,
                    sources=sources,
                )
            ),
        )
    return code


def add_parser(sub: Any) -> None:
    """Register ``bench`` on ``titan-exec``'s subparsers (a `titan_exec.commands` entry point)."""
    p = sub.add_parser("bench", help="service throughput and latency vs raw JetStream")
    p.add_argument("--intents", type=int, default=2000, help="intents in the burst")
    p.add_argument(
        "--venue",
        choices=["paper", "sim"],
        default="paper",
        help="paper: in-process; sim: the simulator process through the ccxt venue",
    )
    p.add_argument(
        "--fills", type=int, default=40, help="with --venue sim: fills timed per configuration"
    )
    p.add_argument(
        "--symbol-counts",
        default="1,5,20",
        help="with --venue sim: symbols holding open orders, comma-separated",
    )
    p.add_argument(
        "--weight-window-s",
        type=float,
        default=15.0,
        help="with --venue sim: seconds over which the REST weight is counted",
    )
    p.add_argument(
        "--sources",
        default="stream,polling",
        help="with --venue sim: fill sources measured (stream, polling), comma-separated",
    )
    p.add_argument(
        "--fills-only",
        action="store_true",
        help="with --venue sim: only the venue-fill part (fill source, weight)",
    )
    p.add_argument(
        "--paced", type=int, default=None, help="intents in the paced run (600; --cluster: 300)"
    )
    p.add_argument(
        "--pace",
        type=float,
        default=None,
        help="intents per second when paced (200; --cluster: 100)",
    )
    p.add_argument(
        "--cluster",
        type=int,
        default=None,
        metavar="N",
        help="instead: the production shape, N=3 clustered nats-servers with R3 streams, "
        "alternating with one server (R1), lease and fence on; write-ahead, venue request "
        "and fill latency",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="with --cluster: also R3 with one fenced event at a time (no group commit)",
    )
    p.add_argument(
        "--profile", default=None, metavar="FILE", help="with --cluster: profile one R3 burst"
    )
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--ha",
        action="store_true",
        help="each round also measures the instance with lease election and the epoch fence",
    )
    p.add_argument(
        "--startup",
        action="store_true",
        help="instead: start-up time (newest snapshot + tail) against the length of history",
    )
    p.add_argument(
        "--poison",
        action="store_true",
        help="instead: bursts of hostile messages against the active (loop stall, fencing)",
    )
    p.add_argument("--count", type=int, default=100, help="with --poison: messages a burst")
    p.add_argument("--lease-ms", type=int, default=5000, help="with --poison: the lease")
    p.add_argument(
        "--kinds",
        default="small,max-size,value-bound",
        help="with --poison: burst kinds, comma-separated",
    )
    p.add_argument(
        "--topology",
        choices=["embedded", "cluster", "both"],
        default="both",
        help="with --poison: the embedded server, three clustered nodes (R3), or both",
    )
    p.add_argument("--sizes", default=None, help="with --startup: events, e.g. 1e4,1e5,1e6")
    p.add_argument("--json", default=None, metavar="FILE", help="with --startup: results file")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_bench)
