"""The pair's invariants for the chaos tests (ha-protocol.md §10), judged by the one
checker, `titan_exec_lab.verify` (which reads the raw streams and the simulator's record,
never an instance's view of itself, and imports no service code):

1. every command reaches exactly one decision (and every command the test sent is in
   `TITAN_CMD`);
2. every client order id exists at most once at the venue;
3. no event of a deposed epoch is in the stream, and every state event is fenced;
4. the instances agree: the same stream position and state hash, and the venue's net
   positions, once open orders have settled (polled until then, bounded); the stream
   agrees with the venue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext

from titan_exec_lab.verify import Problem, RawMsg, Report, check, read_stream
from titan_exec_lab.verify.invariants import instance_violations
from titan_exec_lab.verify.read import read_streams

__all__ = ["Findings", "check_pair", "check_streams", "read_stream", "settled"]


@dataclass
class Findings:
    commands: int = 0
    decisions: int = 0
    epochs: list[int] = field(default_factory=list)
    venue_orders: int = 0
    problems: list[str] = field(default_factory=list)

    def assert_ok(self) -> None:
        assert not self.problems, "invariants broken:\n- " + "\n- ".join(self.problems)


def findings(report: Report, commands: Sequence[RawMsg], sent: list[int] | None) -> Findings:
    c = report.counts
    f = Findings(c.commands, c.decisions, list(c.epoch_markers), c.venue_orders or 0)
    f.problems = [f"{v.invariant}: {v.text}" for v in report.violations]
    lost = sorted(set(sent or ()) - {m.seq for m in commands})
    if lost:
        f.problems.append(f"commands sent but not in TITAN_CMD: {lost[:20]}")
    return f


def _undecided(report: Report) -> bool:
    return any(v.problem is Problem.UNDECIDED for v in report.violations)


async def check_streams(
    js: JetStreamContext, *, ns: str = "exec", shard: str = "main", sent: list[int] | None = None
) -> Findings:
    """Invariants 1 and 3 from the streams. `sent`: command sequences the test sent (each
    must be in `TITAN_CMD`; every command there must be decided)."""
    commands, events = await read_streams(js, ns)
    return findings(check(commands, events, ns=ns, shard=shard), commands, sent)


def settled(docs: list[Any], venue: dict[str, Any]) -> bool:
    """The instances agree with each other and the venue (`instances`, at one stream
    position) and no order is open."""
    named = {str((d or {}).get("instance_id", i)): d for i, d in enumerate(docs)}
    return (
        bool(docs)
        and not instance_violations(named, venue, same_position=True)
        and all(d.get("open_orders", 0) == 0 for d in docs)
    )


async def check_pair(
    js: JetStreamContext,
    statuses: Callable[[], list[Any]],
    inspect: Callable[[], dict[str, Any]],
    *,
    sent: list[int] | None = None,
    settle_s: float = 20,
) -> Findings:
    """All four invariants; `statuses()` returns each instance's `/status` document,
    `inspect()` the simulator's `/sim/inspect` (both are called in a thread)."""
    started = time.monotonic()
    deadline = started + settle_s
    while True:
        docs = await asyncio.to_thread(statuses)
        venue = await asyncio.to_thread(inspect)
        if settled(docs, venue) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    while True:
        commands, events = await read_streams(js)
        named = {str((d or {}).get("instance_id", i)): d for i, d in enumerate(docs)}
        report = check(commands, events, venue, named, same_position=True)
        # a delivery lost with a fetch is redelivered after the consumer's ack wait
        if not _undecided(report) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
        docs = await asyncio.to_thread(statuses)
        venue = await asyncio.to_thread(inspect)
    waited = time.monotonic() - started
    if waited > 3:
        print(f"invariants: settled after {waited:.1f} s")
    return findings(report, commands, sent)
