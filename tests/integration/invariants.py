"""The pair's invariants for the chaos tests (ha-protocol.md §10), on top of
`titan_exec_lab.demo.streamcheck` (which reads the raw streams and the simulator's record,
never an instance's view of itself, and imports no service code):

1. every command reaches exactly one decision (here: every command the test sent);
2. every client order id exists at most once at the venue;
3. no event of a deposed epoch is in the stream, and every state event is fenced;
4. the instances agree: the same stream position and state hash, and the venue's net
   positions, once open orders have settled (polled until then, bounded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext

from titan_exec_lab.demo import streamcheck as sc
from titan_exec_lab.demo.streamcheck import read_stream

__all__ = ["Findings", "check_pair", "check_streams", "read_stream"]


@dataclass
class Findings:
    commands: int = 0
    decisions: int = 0
    epochs: list[int] = field(default_factory=list)
    venue_orders: int = 0
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    def assert_ok(self) -> None:
        assert not self.problems, "invariants broken:\n- " + "\n- ".join(self.problems)


async def check_streams(
    js: JetStreamContext, *, ns: str = "exec", shard: str = "main", sent: list[int] | None = None
) -> Findings:
    """Invariants 1 and 3 from the streams. `sent`: command sequences that must be decided
    (default: every command in `TITAN_CMD`)."""
    commands = await read_stream(js, "TITAN_CMD")
    events = await read_stream(js, "TITAN_EVT", f"titan.evt.{ns}.>")
    decided = sc.decisions_per_command(events, ns)
    f = Findings(len(commands), sum(decided.values()), sc.epoch_markers(events, ns, shard))
    twice = sorted(s for s, n in decided.items() if n > 1)
    f.check(not twice, f"commands decided more than once: {twice[:20]}")
    expected = {m.seq for m in commands} if sent is None else set(sent)
    missing = sorted(expected - set(decided))
    f.check(not missing, f"commands without a decision: {missing[:20]}")
    for problem in sc.fencing_problems(events, ns, shard)[:20]:
        f.check(False, problem)
    return f


def _settled(docs: list[Any], venue: dict[str, Any]) -> bool:
    venue_net = sc.venue_net_positions(venue)
    return (
        bool(docs)
        and sc.instances_agree(dict(enumerate(docs)))
        and all(sc.instance_net_positions(d) == venue_net for d in docs)
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
        if _settled(docs, venue) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    f = await check_streams(js, sent=sent)
    while any(p.startswith("commands without a decision") for p in f.problems):
        # a delivery lost with a fetch is redelivered after the consumer's ack wait
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
        f = await check_streams(js, sent=sent)
    waited = time.monotonic() - started
    if waited > 3:
        print(f"invariants: settled after {waited:.1f} s")
    f.venue_orders = len(sc.venue_client_order_ids(venue))
    named = {str((d or {}).get("instance_id", i)): d for i, d in enumerate(docs)}
    for check in (
        sc.check_venue_orders(venue),
        sc.check_instances_agree(named),
        sc.check_positions(named, venue),
    ):
        f.check(check.ok, f"{check.name}: {check.detail}")
    return f
