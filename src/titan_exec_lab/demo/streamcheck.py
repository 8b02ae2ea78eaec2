"""The demo's PASS/FAIL view of the checker in `titan_exec_lab.verify`: nothing is checked
here. `check` reads the raw JetStream streams and the venue simulator's own record (`GET
/sim/inspect`), never an instance's view of itself, and names every violation with its ids;
each violation of its `Report` lands on one of these lines:

1. the instances agree (`instances`: answered, at one stream position, same state hash
   and control state);
2. net positions and open orders of every instance and of the stream equal the venue's
   (`venue`, and the `instances` problems against the venue);
3. no client order id twice at the venue (`coids`);
4. every command decided exactly once (`decisions`);
5. every state event fenced by the epoch current when it landed (`epochs`).

A line also fails when there was nothing to judge (no command, no epoch marker, no
instance answered): a demo that did nothing passes nothing. `titan-exec demo` ends with
these lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext

from titan_exec_lab.verify import Problem, Report, Violation, check
from titan_exec_lab.verify.facts import (
    instance_net_positions,
    merged_inspect,
    positions_text,
    venue_net_positions,
    venue_open_orders,
)
from titan_exec_lab.verify.read import RawMsg, read_stream, read_streams
from titan_exec_lab.verify.report import COIDS, DECISIONS, EPOCHS, INSTANCES, VENUE

__all__ = [  # the names the demo and the tests import, some of them from titan_exec_lab.verify
    "SAME",
    "Check",
    "RawMsg",
    "instance_net_positions",
    "merged_inspect",
    "pair_checks",
    "positions_text",
    "read_pair_checks",
    "read_stream",
    "read_streams",
    "report_checks",
    "single_checks",
    "venue_checks",
    "venue_client_order_ids",
    "venue_net_positions",
]

SAME = ("EQUAL", "DIFFERENT")
AGAINST_THE_VENUE = frozenset({Problem.INSTANCE_POSITION, Problem.INSTANCE_OPEN_ORDERS})
SHOWN = 3
"""Violations quoted on a line (the rest are counted)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One line: `ok`, and a sentence saying what was found."""

    name: str
    ok: bool
    detail: str
    verdicts: tuple[str, str] = ("PASS", "FAIL")
    """How `ok` reads: (true, false), e.g. ("EQUAL", "DIFFERENT")."""

    @property
    def verdict(self) -> str:
        return self.verdicts[0] if self.ok else self.verdicts[1]


def venue_client_order_ids(inspect: Mapping[str, Any]) -> list[str]:
    return [str(o.get("clientOrderId")) for o in inspect.get("orders", [])]


def _line(v: Violation) -> int:
    """Which of the five lines a violation fails."""
    if v.invariant == INSTANCES:
        return 1 if v.problem in AGAINST_THE_VENUE else 0
    return {VENUE: 1, COIDS: 2, DECISIONS: 3, EPOCHS: 4}.get(v.invariant, 0)


def _found(violations: Sequence[Violation]) -> str:
    more = len(violations) - SHOWN
    return "".join(f"; {v.text}" for v in violations[:SHOWN]) + (
        f"; and {more} more" if more > 0 else ""
    )


def report_checks(
    report: Report,
    statuses: Mapping[str, Mapping[str, Any] | None] | None,
    inspect: Mapping[str, Any] | None,
) -> list[Check]:
    """The lines of what was read: the instances' two with `statuses`, the venue's with
    `inspect`, the streams' two always (in the order of the module docstring)."""
    by_line: list[list[Violation]] = [[] for _ in range(5)]
    for v in report.violations:
        by_line[_line(v)].append(v)
    c = report.counts
    checks: list[Check] = []
    if statuses is not None:
        docs = [d for d in statuses.values() if d is not None]
        agree = (
            f"{len(docs)} instances at event_seq {docs[0].get('event_seq')}: "
            f"{docs[0].get('state_hash')}"
            if docs
            else "no /status from any instance"
        )
        checks.append(
            Check(
                "state hashes of the instances at the same stream position",
                bool(docs) and not by_line[0],
                _found(by_line[0]).removeprefix("; ") if by_line[0] else agree,
                SAME,
            )
        )
    if inspect is not None:
        if statuses is not None:
            checks.append(
                Check(
                    "net positions of every instance vs the venue's trades",
                    bool(statuses) and not by_line[1],
                    f"venue: {positions_text(venue_net_positions(inspect))}" + _found(by_line[1]),
                    SAME,
                )
            )
        twice = sorted(coid for coid, n in report.coid_counts.items() if n > 1)
        checks.append(
            Check(
                "no client order id twice at the venue",
                not by_line[2],
                f"{c.venue_orders} orders, {len(report.coid_counts)} distinct client order ids"
                + (f"; more than once: {twice[:10]}" if twice else ""),
            )
        )
    checks.append(
        Check(
            "every command decided exactly once",
            c.commands > 0 and not by_line[3],
            f"{c.commands} commands in TITAN_CMD, {c.decisions} decisions" + _found(by_line[3]),
        )
    )
    markers = ", ".join(map(str, c.epoch_markers)) or "-"
    checks.append(
        Check(
            "every state event fenced by the epoch current when it landed",
            bool(c.epoch_markers) and not by_line[4],
            f"{len(c.epoch_markers)} epoch markers (stream seq {markers})"
            + (f"; {len(by_line[4])} problems" if by_line[4] else "")
            + _found(by_line[4]),
        )
    )
    return checks


def pair_checks(
    statuses: Mapping[str, Mapping[str, Any] | None],
    inspect: Mapping[str, Any],
    commands: Sequence[RawMsg],
    events: Sequence[RawMsg],
    *,
    ns: str = "exec",
    shard: str = "main",
) -> list[Check]:
    """The five lines over what was read once the run settled: each instance's `/status`
    (None: it did not answer), the simulator's `/sim/inspect`, the raw `TITAN_CMD` and
    `TITAN_EVT`."""
    report = check(commands, events, inspect, statuses, ns=ns, shard=shard, same_position=True)
    return report_checks(report, statuses, inspect)


def single_checks(
    commands: Sequence[RawMsg],
    events: Sequence[RawMsg],
    inspect: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
    *,
    ns: str = "exec",
) -> list[Check]:
    """One instance: the streams' lines, and with the venue read (`inspect`, and the
    instance's `status`: None, it did not answer) the instance's and the venue's."""
    statuses = None if inspect is None else {"primary": status}
    report = check(commands, events, inspect, statuses, ns=ns)
    return report_checks(report, statuses, inspect)


async def read_pair_checks(
    js: JetStreamContext,
    statuses: Mapping[str, Mapping[str, Any] | None],
    inspect: Mapping[str, Any],
    *,
    ns: str = "exec",
    shard: str = "main",
) -> list[Check]:
    """Read `TITAN_CMD` and `TITAN_EVT` raw (`read_streams`: the namespace's events and
    RiskGuardian's messages) and check the invariants (`pair_checks`)."""
    commands, events = await read_streams(js, ns)
    return pair_checks(statuses, inspect, commands, events, ns=ns, shard=shard)


# --- several venues (the pair demo trades on two simulators) -------------------------------


def venue_checks(
    statuses: Mapping[str, Mapping[str, Any] | None], inspects: Mapping[str, Mapping[str, Any]]
) -> list[Check]:
    """One line per venue: every instance's positions and open orders at that venue (its
    `/status` `venues` section) equal that venue's own record."""
    checks: list[Check] = []
    docs = {n: d for n, d in statuses.items() if d is not None}
    for venue, inspect in inspects.items():
        venue_net = venue_net_positions(inspect)
        venue_open = len(venue_open_orders(inspect))
        problems: list[str] = []
        for name, doc in docs.items():
            mine = (doc.get("venues") or {}).get(venue)
            if not isinstance(mine, Mapping):
                problems.append(f"{name}'s /status does not show venue {venue}")
                continue
            net = instance_net_positions({"net_positions": mine.get("positions") or {}})
            if net != venue_net:
                problems.append(f"{name}: {positions_text(net)}")
            if mine.get("open_orders") != venue_open:
                problems.append(f"{name}: {mine.get('open_orders')} open orders")
        checks.append(
            Check(
                f"positions and open orders on venue {venue} vs its own trades",
                bool(docs) and bool(inspect.get("orders")) and not problems,
                f"{venue}: {positions_text(venue_net)}, {venue_open} open, "
                f"{len(inspect.get('orders', []))} orders"
                + "".join(f"; {p}" for p in problems[:SHOWN]),
                SAME,
            )
        )
    return checks
