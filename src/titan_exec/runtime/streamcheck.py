"""The pair's invariants (design/ha-protocol.md §10) read from the outside: the raw
JetStream streams and the venue simulator's own record (`GET /sim/inspect`), never an
instance's view of itself.

1. every command in `TITAN_CMD` has exactly one decision in `TITAN_EVT` (the `cmdSeq` of
   the decision and control events);
2. no client order id was placed twice at the venue;
3. every state event is fenced, by the epoch whose marker was the newest when it landed
   (no event of a deposed active is in the stream);
4. the instances agree: the same stream position and state hash, and net positions equal
   to the venue's (summed from the simulator's own trades).

`read_stream` is the only I/O here; `pair_checks` is a pure function of what was read, so
that each failure can be shown by a test. Plain JSON, no service code: an independent
reading of what happened. `titan-exec demo` ends with these checks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from nats.js import JetStreamContext, api

EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"
STATE_KINDS = frozenset({"fill", "order", "decision", "control", "genesis"})
DECISION_KINDS = frozenset({"decision", "control"})


@dataclass(frozen=True, slots=True)
class RawMsg:
    seq: int
    subject: str
    headers: Mapping[str, str]
    data: bytes

    def doc(self) -> Any:
        return json.loads(self.data)


async def read_stream(
    js: JetStreamContext, stream: str, subject: str = ">", *, fetch_timeout_s: float = 1.0
) -> list[RawMsg]:
    """Every message of `stream` on `subject`, in stream order, up to the head as it was
    when the reading started (an ephemeral consumer that acknowledges nothing)."""
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.ALL,
            inactive_threshold=30.0,
        ),
    )
    out: list[RawMsg] = []
    try:
        info = await sub.consumer_info()
        if int(info.num_pending or 0) == 0:
            return out
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=fetch_timeout_s)
            except TimeoutError:
                break
            for m in msgs:
                meta: Any = m.metadata
                out.append(RawMsg(meta.sequence.stream, m.subject, dict(m.headers or {}), m.data))
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return out


SAME = ("EQUAL", "DIFFERENT")


@dataclass(frozen=True, slots=True)
class Check:
    """One invariant: `ok`, and a sentence saying what was found."""

    name: str
    ok: bool
    detail: str
    verdicts: tuple[str, str] = ("PASS", "FAIL")
    """How `ok` reads: (true, false), e.g. ("EQUAL", "DIFFERENT")."""

    @property
    def verdict(self) -> str:
        return self.verdicts[0] if self.ok else self.verdicts[1]


def _kind(subject: str, ns: str) -> str | None:
    """`decision` for `titan.evt.<ns>.decision.v1...`; None for another namespace."""
    parts = subject.split(".")
    if len(parts) >= 4 and parts[:3] == ["titan", "evt", ns]:
        return parts[3]
    return None


def decisions_per_command(events: Sequence[RawMsg], ns: str = "exec") -> Counter[int]:
    """How many decision and control events each command sequence (`payload.cmdSeq`) has."""
    out: Counter[int] = Counter()
    for m in events:
        if _kind(m.subject, ns) in DECISION_KINDS:
            out[int(m.doc()["payload"]["cmdSeq"])] += 1
    return out


def epoch_markers(events: Sequence[RawMsg], ns: str = "exec", shard: str = "main") -> list[int]:
    subject = f"titan.evt.{ns}.epoch.v1.{shard}"
    return [m.seq for m in events if m.subject == subject]


def fencing_problems(events: Sequence[RawMsg], ns: str = "exec", shard: str = "main") -> list[str]:
    """State events that are not fenced, or fenced by an epoch other than the newest marker
    at the time they landed."""
    epoch_subject = f"titan.evt.{ns}.epoch.v1.{shard}"
    newest_marker = 0
    problems: list[str] = []
    for m in events:
        if m.subject == epoch_subject:
            newest_marker = m.seq
            continue
        if m.headers.get(EXPECTED_SUBJECT) == epoch_subject:
            epoch = int(m.headers.get(EXPECTED_SEQ, "0"))
            if epoch != newest_marker:
                problems.append(
                    f"event {m.seq} ({m.subject}) written under epoch {epoch} "
                    f"while the newest marker was {newest_marker}"
                )
        elif _kind(m.subject, ns) in STATE_KINDS:
            problems.append(f"state event {m.seq} ({m.subject}) is not fenced")
    return problems


def venue_client_order_ids(inspect: Mapping[str, Any]) -> list[str]:
    return [str(o.get("clientOrderId")) for o in inspect.get("orders", [])]


def venue_net_positions(inspect: Mapping[str, Any]) -> dict[str, Decimal]:
    """The venue's net position per symbol (`BTCUSDT`), summed from its own trades."""
    net: dict[str, Decimal] = {}
    for t in inspect.get("trades", []):
        qty = Decimal(str(t["qty"])) * (1 if t["side"] == "BUY" else -1)
        net[t["symbol"]] = net.get(t["symbol"], Decimal(0)) + qty
    return {s: q for s, q in sorted(net.items()) if q != 0}


def instance_net_positions(status: Mapping[str, Any]) -> dict[str, Decimal]:
    """An instance's net positions from its `/status`, keyed like the venue's
    (`sim:BTC/USDT` → `BTCUSDT`)."""
    out: dict[str, Decimal] = {}
    for key, qty in (status.get("net_positions") or {}).items():
        if Decimal(str(qty)) != 0:
            out[key.split(":")[-1].replace("/", "")] = Decimal(str(qty))
    return dict(sorted(out.items()))


def positions_text(net: Mapping[str, Decimal]) -> str:
    return ", ".join(f"{s} {q.normalize():+f}" for s, q in net.items()) or "flat"


def instances_agree(statuses: Mapping[str, Mapping[str, Any] | None]) -> bool:
    docs = list(statuses.values())
    return (
        bool(docs)
        and all(d is not None for d in docs)
        and len({(d or {}).get("event_seq") for d in docs}) == 1
        and len({(d or {}).get("state_hash") for d in docs}) == 1
    )


def check_instances_agree(statuses: Mapping[str, Mapping[str, Any] | None]) -> Check:
    name = "state hashes of the instances at the same stream position"
    silent = sorted(n for n, d in statuses.items() if d is None)
    if silent or not statuses:
        return Check(name, False, f"no /status from {silent or 'any instance'}", SAME)
    docs = {n: d for n, d in statuses.items() if d is not None}
    if instances_agree(statuses):
        first = next(iter(docs.values()))
        return Check(
            name,
            True,
            f"{len(docs)} instances at event_seq {first.get('event_seq')}: "
            f"{first.get('state_hash')}",
            SAME,
        )
    return Check(
        name,
        False,
        "; ".join(
            f"{n} at event_seq {d.get('event_seq')}: {str(d.get('state_hash'))[:16]}…"
            for n, d in sorted(docs.items())
        ),
        SAME,
    )


def check_positions(
    statuses: Mapping[str, Mapping[str, Any] | None], inspect: Mapping[str, Any]
) -> Check:
    venue_net = venue_net_positions(inspect)
    differing = {
        n: instance_net_positions(d or {})
        for n, d in sorted(statuses.items())
        if d is None or instance_net_positions(d) != venue_net
    }
    return Check(
        "net positions of every instance vs the venue's trades",
        bool(statuses) and not differing,
        f"venue: {positions_text(venue_net)}"
        + "".join(f"; {n}: {positions_text(p)}" for n, p in differing.items()),
        SAME,
    )


def check_venue_orders(inspect: Mapping[str, Any]) -> Check:
    coids = venue_client_order_ids(inspect)
    twice = sorted(c for c, n in Counter(coids).items() if n > 1)
    return Check(
        "no client order id twice at the venue",
        not twice,
        f"{len(coids)} orders, {len(set(coids))} distinct client order ids"
        + (f"; more than once: {twice[:10]}" if twice else ""),
    )


def check_decisions(
    commands: Sequence[RawMsg], events: Sequence[RawMsg], ns: str = "exec"
) -> Check:
    decided = decisions_per_command(events, ns)
    cmd_seqs = {m.seq for m in commands}
    twice = sorted(s for s, n in decided.items() if n > 1)
    missing = sorted(cmd_seqs - set(decided))
    stray = sorted(set(decided) - cmd_seqs)
    detail = f"{len(cmd_seqs)} commands in TITAN_CMD, {sum(decided.values())} decisions"
    for what, seqs in (("more than once", twice), ("undecided", missing), ("unknown", stray)):
        if seqs:
            detail += f"; {what}: {seqs[:10]}"
    return Check(
        "every command decided exactly once",
        bool(cmd_seqs) and not (twice or missing or stray),
        detail,
    )


def check_fencing(events: Sequence[RawMsg], ns: str = "exec", shard: str = "main") -> Check:
    problems = fencing_problems(events, ns, shard)
    markers = epoch_markers(events, ns, shard)
    return Check(
        "every state event fenced by the epoch current when it landed",
        bool(markers) and not problems,
        f"{len(markers)} epoch markers (stream seq {', '.join(map(str, markers)) or '-'})"
        + (f"; {len(problems)} problems, first: {problems[0]}" if problems else ""),
    )


def pair_checks(
    statuses: Mapping[str, Mapping[str, Any] | None],
    inspect: Mapping[str, Any],
    commands: Sequence[RawMsg],
    events: Sequence[RawMsg],
    *,
    ns: str = "exec",
    shard: str = "main",
) -> list[Check]:
    """The four invariants over what was read: each instance's `/status` (None: it did not
    answer), the simulator's `/sim/inspect`, and the raw `TITAN_CMD` and `TITAN_EVT`."""
    return [
        check_instances_agree(statuses),
        check_positions(statuses, inspect),
        check_venue_orders(inspect),
        check_decisions(commands, events, ns),
        check_fencing(events, ns, shard),
    ]


async def read_pair_checks(
    js: JetStreamContext,
    statuses: Mapping[str, Mapping[str, Any] | None],
    inspect: Mapping[str, Any],
    *,
    ns: str = "exec",
    shard: str = "main",
) -> list[Check]:
    """Read `TITAN_CMD` and `TITAN_EVT` raw and check the invariants (`pair_checks`)."""
    commands = await read_stream(js, "TITAN_CMD")
    events = await read_stream(js, "TITAN_EVT", f"titan.evt.{ns}.>")
    return pair_checks(statuses, inspect, commands, events, ns=ns, shard=shard)
