"""The pair's invariants (ha-protocol.md §10), checked from the raw streams and the venue
simulator, never from the service's own view of itself:

1. every command reaches exactly one decision (decision and control subjects, by `cmdSeq`);
2. every client order id exists at most once at the venue;
3. no event of a deposed epoch is in the stream: every fenced event carries the epoch that
   was the newest marker when it landed, and every state event is fenced;
4. the instances agree: equal state hashes at the same stream position, and net positions
   equal to the venue's (summed from the simulator's own trades).

Plain JSON, no service code: an independent reading of what happened.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext, api

EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"
STATE_KINDS = {"fill", "order", "decision", "control", "genesis"}


@dataclass(frozen=True)
class RawMsg:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes

    def doc(self) -> Any:
        return json.loads(self.data)


async def read_stream(js: JetStreamContext, stream: str, subject: str = ">") -> list[RawMsg]:
    """Every message of `stream` on `subject`, in stream order (an ephemeral consumer)."""
    info = await js.stream_info(stream)
    last = info.state.last_seq
    out: list[RawMsg] = []
    if info.state.messages == 0:
        return out
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL
        ),
    )
    try:
        while not out or out[-1].seq < last:
            try:
                msgs = await sub.fetch(1000, timeout=1.0)
            except TimeoutError:
                break
            for m in msgs:
                out.append(
                    RawMsg(m.metadata.sequence.stream, m.subject, dict(m.headers or {}), m.data)
                )
    finally:
        await sub.unsubscribe()
    return out


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
    f = Findings()
    cmds = [m.seq for m in await read_stream(js, "TITAN_CMD")]
    f.commands = len(cmds)
    events = await read_stream(js, "TITAN_EVT")
    epoch_subject = f"titan.evt.{ns}.epoch.v1.{shard}"
    decided: Counter[int] = Counter()
    newest_marker = 0
    for m in events:
        if m.subject == epoch_subject:
            newest_marker = m.seq
            f.epochs.append(m.seq)
            continue
        parts = m.subject.split(".")
        is_state = len(parts) >= 4 and parts[2] == ns and parts[3] in STATE_KINDS
        if m.headers.get(EXPECTED_SUBJECT) == epoch_subject:
            epoch = int(m.headers.get(EXPECTED_SEQ, "0"))
            f.check(
                epoch == newest_marker,
                f"event seq {m.seq} ({m.subject}) written under epoch {epoch} "
                f"while the newest marker was {newest_marker}",
            )
        elif is_state:
            f.check(False, f"state event seq {m.seq} ({m.subject}) is not fenced")
        if is_state and parts[3] in ("decision", "control"):
            decided[int(m.doc()["payload"]["cmdSeq"])] += 1
    f.decisions = sum(decided.values())
    twice = sorted(s for s, n in decided.items() if n > 1)
    f.check(not twice, f"commands decided more than once: {twice[:20]}")
    expected = set(cmds if sent is None else sent)
    missing = sorted(expected - set(decided))
    f.check(not missing, f"commands without a decision: {missing[:20]}")
    return f


def venue_findings(f: Findings, inspect: dict[str, Any]) -> dict[str, Decimal]:
    """Invariant 2 (no client order id twice at the venue); returns the venue's net
    position per symbol (e.g. `BTCUSDT`), summed from its trades."""
    coids = [o.get("clientOrderId") for o in inspect.get("orders", [])]
    f.venue_orders = len(coids)
    twice = sorted(c for c, n in Counter(coids).items() if n > 1)
    f.check(not twice, f"client order ids placed more than once at the venue: {twice[:20]}")
    net: dict[str, Decimal] = {}
    for t in inspect.get("trades", []):
        qty = Decimal(t["qty"]) * (1 if t["side"] == "BUY" else -1)
        net[t["symbol"]] = net.get(t["symbol"], Decimal(0)) + qty
    return {s: q for s, q in net.items() if q != 0}


def instance_positions(status: dict[str, Any]) -> dict[str, Decimal]:
    """An instance's net positions, keyed like the venue's (`BTC/USDT` → `BTCUSDT`)."""
    out: dict[str, Decimal] = {}
    for symbol, qty in (status.get("net_positions") or {}).items():
        if Decimal(qty) != 0:
            out[symbol.split(":")[-1].replace("/", "")] = Decimal(qty)
    return out


async def wait_agreement(
    statuses: Any, inspect: Any, timeout_s: float = 20
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Poll until every instance reports the same stream position and state hash and its
    positions equal the venue's (open orders settle); returns the last readings."""
    deadline = time.monotonic() + timeout_s
    while True:
        docs = await asyncio.to_thread(statuses)
        venue = await asyncio.to_thread(inspect)
        probe = Findings()
        venue_net = venue_findings(probe, venue)
        if (
            docs
            and all(d for d in docs)
            and len({d["event_seq"] for d in docs}) == 1
            and len({d["state_hash"] for d in docs}) == 1
            and all(instance_positions(d) == venue_net for d in docs)
            and all(d.get("open_orders", 0) == 0 for d in docs)
        ):
            return docs, venue
        if time.monotonic() > deadline:
            return docs, venue
        await asyncio.sleep(0.25)


async def check_pair(
    js: JetStreamContext,
    statuses: Any,
    inspect: Any,
    *,
    sent: list[int] | None = None,
) -> Findings:
    """All four invariants; `statuses()` returns each instance's `/status` document,
    `inspect()` the simulator's `/sim/inspect` (both called in a thread)."""
    docs, venue = await wait_agreement(statuses, inspect)
    f = await check_streams(js, sent=sent)
    venue_net = venue_findings(f, venue)
    f.check(all(d for d in docs), f"an instance did not answer: {docs}")
    if all(d for d in docs):
        hashes = {(d["instance_id"], d["event_seq"], d["state_hash"]) for d in docs}
        f.check(
            len({d["state_hash"] for d in docs}) == 1 and len({d["event_seq"] for d in docs}) == 1,
            f"instances disagree: {sorted(hashes)}",
        )
        for d in docs:
            mine = instance_positions(d)
            f.check(
                mine == venue_net,
                f"{d['instance_id']} positions {mine} differ from the venue's {venue_net}",
            )
    return f
