"""`titan-exec chaos`: the chaos matrix (see `titan_exec_lab.chaos`).

    titan-exec chaos                         # every scenario, 3 runs each
    titan-exec chaos kill-active --runs 20   # one scenario
    titan-exec chaos --runs 20 --report docs/chaos   # the long run, with its report
    titan-exec chaos --list                  # the scenarios

Prints a line per run and the table per scenario: runs, failovers, failover time and
switchover gap (min / p50 / p99 / max ms), intents sent / decided / lost / decided twice,
client order ids twice at the venue, state-hash mismatches, fencings, takeovers (and how
many were started by presence), violations; then the takeover counts per kind of scenario
and the targets (`chaos.targets`: MET / MISSED / NOT MEASURED). Exit 0 when every run of
every scenario is clean, 1 when any invariant was violated (each violation is printed
with its ids), 2 on bad arguments. A missed target does not change the exit code.

`make chaos` runs at the production lease (`LEASE_MS ?= 5000`); the default here is 2 s.

`--unsafe-disable-fencing` runs the deliberately broken build (both instances with
`TITAN_UNSAFE_DISABLE_FENCING=1`): the checker must then report violations. Test only.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from titan_exec_lab.chaos.model import RunRecord
from titan_exec_lab.chaos.scenarios import SCENARIOS

EXIT_BAD_ARGS = 2


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "chaos",
        help="the chaos matrix: faults injected into the pair under load, invariants checked",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", nargs="*", help="scenarios to run (default: all; see --list)")
    p.add_argument("--runs", type=int, default=3, help="runs per scenario (default 3)")
    p.add_argument("--rate", type=float, default=20.0, help="intents per second (default 20)")
    p.add_argument(
        "--controls-every",
        type=int,
        default=10,
        help="a bare halt, a signed open and a RiskGuardian risk state after every N intents "
        "(default 10; 0: intents only)",
    )
    p.add_argument("--lease-ms", type=int, default=2000, help="the pair's lease (default 2000)")
    p.add_argument("--report", type=Path, default=None, help="write chaos.md/.json and plots here")
    p.add_argument("--work-dir", type=Path, default=None, help="keep state and logs here")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument(
        "--unsafe-disable-fencing",
        action="store_true",
        help="TEST ONLY: run the broken build without epoch fencing (the checker must fail)",
    )
    p.add_argument(
        "--venue",
        action="append",
        default=None,
        help="a venue of the pair, each its own simulator (repeatable, the default first; "
        "default: one venue, sim); with several, the intents name them in turn",
    )
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(fn=cmd_chaos)


_UNSAFE_WAITS: dict[str, Any] = {"ready_timeout_s": 15.0, "settle_s": 10.0}


def cmd_chaos(args: argparse.Namespace) -> int:
    from titan_exec_lab.chaos.report import render_table, takeover_summary, write_report
    from titan_exec_lab.chaos.runner import ChaosSettings, all_runs, main_exit_code, run_matrix

    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:22} {s.summary} (expects: {s.expects})")
        return 0
    try:
        settings = ChaosSettings(
            scenarios=tuple(args.scenario) or tuple(SCENARIOS),
            runs=args.runs,
            rate_per_s=args.rate,
            controls_every=args.controls_every,
            lease_ms=args.lease_ms,
            is_fencing_disabled=args.unsafe_disable_fencing,
            venues=tuple(args.venue or ("sim",)),
            work_dir=args.work_dir,
            # the broken build never converges (two actives): do not wait long for it
            **(_UNSAFE_WAITS if args.unsafe_disable_fencing else {}),
        )
    except ValueError as err:
        print(f"titan-exec chaos: {err}", file=sys.stderr)
        return EXIT_BAD_ARGS
    if settings.is_fencing_disabled:
        print("UNSAFE: the broken build, epoch fencing disabled in both instances (test only)")
    started = time.monotonic()
    results = asyncio.run(run_matrix(settings))
    took = time.monotonic() - started
    rows = [r.row for r in results]
    print()
    print(render_table(rows))
    expects = {name: s.expects for name, s in SCENARIOS.items()}
    for line in takeover_summary(rows, expects):
        print(line)
    targets = _targets(all_runs(results), settings.lease_ms)
    print("\n".join(targets))
    print(f"chaos matrix: {sum(r.runs for r in rows)} runs in {took / 60:.1f} min")
    if args.report is not None:
        meta = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.node()}: {platform.machine()}, {_cpus()} CPUs, "
            f"Python {platform.python_version()}",
            "command": "titan-exec chaos " + shlex.join(sys.argv[2:]),
            "lease_ms": settings.lease_ms,
            "intent_rate": f"{settings.rate_per_s:g} intents/s",
            "controls": (
                f"halt + open + risk state every {settings.controls_every} intents"
                if settings.controls_every
                else "none"
            ),
            "runs_per_scenario": settings.runs,
            "total_s": round(took),
            "unsafe_fencing_disabled": settings.is_fencing_disabled,
        }
        written = write_report(
            args.report, rows, all_runs(results), meta, targets=targets, expects=expects
        )
        for path in written:
            print(f"wrote {path}")
    return main_exit_code(results)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _targets(runs: list[RunRecord], lease_ms: int) -> list[str]:
    """The targets over the runs that measured them (`chaos.targets`), one line each."""
    from titan_exec_lab.chaos.targets import evaluate

    return [t.text() for t in evaluate(runs, lease_ms)]
