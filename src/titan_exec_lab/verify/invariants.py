"""The invariants of design/ha-protocol.md §10, checked from the raw data of a run.

Inputs are what `read.py` read, never an instance's view of itself: the commands in
`TITAN_CMD` and the events of one namespace in `TITAN_EVT` (as `RawMsg`s: subject, headers,
bytes), the venue simulator's own record (`GET /sim/inspect`: every order and trade it
ever received) and, when given, each instance's `/status`. Every function here is pure.

The invariants, each a name used in `Violation.invariant`:

- `decisions`: every command in `TITAN_CMD` has exactly one decision: a decision or control
  event whose `payload.cmdSeq` is the command's stream sequence. Undecided commands,
  commands decided more than once and decisions of commands that do not exist are each a
  violation.
- `coids`: every client order id exists at most once at the venue.
- `epochs`: no event from a deposed epoch is in the stream. Every state event (fill, order,
  decision, control, genesis) is fenced by the epoch marker (`titan.evt.<ns>.epoch.v1.
  <shard>`; its stream sequence is the epoch) that was the newest when it landed: headers
  `Nats-Expected-Last-Subject-Sequence-Subject` = the marker subject and
  `Nats-Expected-Last-Subject-Sequence` = the epoch. The informational headers
  `Titan-Epoch` and `Titan-Instance` (the writer's epoch and instance id) name the writer
  of an event that is not fenced; an event of any kind whose epoch (the fence's, else
  `Titan-Epoch`) is not the newest marker is from a deposed epoch.
- `venue`: the stream agrees with the venue: net positions folded from the fill events
  (each venue execution counted once, signed quantities summed with `Decimal`) equal the
  venue's net positions from its own trades; the orders open according to the order and
  fill events (a client order id is open until canceled, rejected, expired or filled) are
  the orders open at the venue.
- `instances`: instances at the same stream position (`event_seq`) have the same state
  hash; each instance's net positions and open order count equal the venue's; an instance
  that does not answer is a violation too. Asked for (`same_position`: a run that has
  settled, as the demo's and the tests' end), the instances are at one stream position
  with no event in flight.
- `roles` (`role_violations`, from the `/status` documents alone, what `titan-exec status`
  judges; not part of `check`): exactly one instance says it is active, and every standby
  has lease election (one without would never take over).

Symbols are compared in the venue's spelling: `sim:BTC/USDT` and `BTC/USDT` → `BTCUSDT`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from titan_exec_lab.verify.facts import (
    DECISION_KINDS,
    EXPECTED_SEQ,
    EXPECTED_SUBJECT,
    STATE_KINDS,
    WRITER_EPOCH,
    WRITER_INSTANCE,
    as_int,
    body,
    coid_counts,
    decision_counts,
    decisions_per_command,
    epoch_markers,
    event_kind,
    fill_events,
    instance_net_positions,
    payload_of,
    positions_text,
    stream_net_positions,
    stream_orders,
    venue_net_positions,
    venue_open_orders,
    venue_symbol,
)
from titan_exec_lab.verify.read import RawMsg
from titan_exec_lab.verify.report import (
    COIDS,
    DECISIONS,
    EPOCHS,
    INSTANCES,
    INVARIANTS,
    ROLES,
    VENUE,
    Counts,
    Problem,
    Report,
    Violation,
)

__all__ = [
    "STATUS_PROBLEMS",
    "Counts",
    "Problem",
    "Report",
    "Violation",
    "check",
    "coid_counts",
    "coid_violations",
    "decision_counts",
    "decision_violations",
    "decisions_per_command",
    "epoch_violations",
    "instance_violations",
    "role_violations",
    "status_violations",
    "venue_violations",
]

# --- the invariants -----------------------------------------------------------------------


def _command_ids(cmd: RawMsg) -> tuple[str, ...]:
    payload = payload_of(cmd) or {}
    signal = payload.get("signal_id") or payload.get("signalId")
    return (f"cmd:{cmd.seq}",) + ((f"signal:{signal}",) if signal else ())


def _seqs(seqs: Sequence[int]) -> str:
    return ", ".join(map(str, seqs))


def decision_violations(
    commands: Sequence[RawMsg], events: Sequence[RawMsg], ns: str = "exec"
) -> list[Violation]:
    """Invariant `decisions`: every command in `TITAN_CMD` has exactly one decision."""
    decided = decisions_per_command(events, ns)
    out = [
        Violation(
            DECISIONS,
            (f"evt:{m.seq}",),
            f"decision event {m.seq} ({m.subject}) has no payload.cmdSeq",
            Problem.NO_CMD_SEQ,
        )
        for m in events
        if event_kind(m.subject, ns) in DECISION_KINDS
        and not _is_risk_state_decision(m)
        and as_int((payload_of(m) or {}).get("cmdSeq")) is None
    ]
    out += risk_state_violations(events, ns)
    for cmd in commands:
        ids = _command_ids(cmd)
        what = f"command {cmd.seq} ({cmd.subject}{''.join(', ' + i for i in ids[1:])})"
        seqs = decided.get(cmd.seq, [])
        if not seqs:
            out.append(Violation(DECISIONS, ids, f"{what} has no decision", Problem.UNDECIDED))
        elif len(seqs) > 1:
            out.append(
                Violation(
                    DECISIONS,
                    ids + tuple(f"evt:{s}" for s in seqs),
                    f"{what} decided {len(seqs)} times: events {_seqs(seqs)}",
                    Problem.DECIDED_TWICE,
                )
            )
    known = {c.seq for c in commands}
    out += [
        Violation(
            DECISIONS,
            (f"cmd:{cmd_seq}", *(f"evt:{s}" for s in seqs)),
            f"decision of command {cmd_seq}, which is not in TITAN_CMD: events {_seqs(seqs)}",
            Problem.UNKNOWN_COMMAND,
        )
        for cmd_seq, seqs in sorted(decided.items())
        if cmd_seq not in known
    ]
    return out


RISK_STATE_SUBJECT = "titan.evt.risk.state.v1"


def _is_risk_state_decision(m: RawMsg) -> bool:
    return (payload_of(m) or {}).get("event") == "risk_state.decided"


def risk_state_violations(events: Sequence[RawMsg], ns: str = "exec") -> list[Violation]:
    """Part of `decisions`: every RiskGuardian message at or after the first one decided
    (the service starts at the newest one of a namespace's first run, not at the history
    before it) has exactly one `risk_state.decided`, and no decision names a message that
    is not there."""
    messages = [m.seq for m in events if m.subject == RISK_STATE_SUBJECT]
    decided: dict[int, list[int]] = {}
    for m in events:
        if event_kind(m.subject, ns) in DECISION_KINDS and _is_risk_state_decision(m):
            src = as_int((payload_of(m) or {}).get("srcSeq"))
            if src is None:
                return [
                    Violation(
                        DECISIONS,
                        (f"evt:{m.seq}",),
                        f"risk state decision {m.seq} has no payload.srcSeq",
                        Problem.NO_CMD_SEQ,
                    )
                ]
            decided.setdefault(src, []).append(m.seq)
    if not decided:
        return []
    first = min(decided)
    out: list[Violation] = []
    for seq in messages:
        seqs = decided.get(seq, [])
        what = f"risk state message {seq} ({RISK_STATE_SUBJECT})"
        if seq >= first and not seqs:
            out.append(
                Violation(DECISIONS, (f"evt:{seq}",), f"{what} has no decision", Problem.UNDECIDED)
            )
        elif len(seqs) > 1:
            out.append(
                Violation(
                    DECISIONS,
                    (f"evt:{seq}", *(f"evt:{s}" for s in seqs)),
                    f"{what} decided {len(seqs)} times: events {_seqs(seqs)}",
                    Problem.DECIDED_TWICE,
                )
            )
    known = set(messages)
    out += [
        Violation(
            DECISIONS,
            tuple(f"evt:{s}" for s in seqs),
            f"decision of risk state message {src}, which is not in TITAN_EVT",
            Problem.UNKNOWN_COMMAND,
        )
        for src, seqs in sorted(decided.items())
        if src not in known
    ]
    return out


def coid_violations(inspect: Mapping[str, Any]) -> list[Violation]:
    """Invariant `coids`: every client order id at most once at the venue."""
    orders: dict[str, list[str]] = {}
    for o in inspect.get("orders", []):
        orders.setdefault(str(o.get("clientOrderId")), []).append(str(o.get("orderId")))
    return [
        Violation(
            COIDS,
            (f"coid:{coid}", *(f"order:{i}" for i in ids)),
            f"client order id {coid} placed {len(ids)} times at the venue: "
            f"venue orders {', '.join(ids)}",
            Problem.COID_TWICE,
        )
        for coid, ids in sorted(orders.items())
        if len(ids) > 1
    ]


def epoch_violations(
    events: Sequence[RawMsg], ns: str = "exec", shard: str = "main"
) -> list[Violation]:
    """Invariant `epochs`: every state event fenced, by the epoch whose marker was the
    newest when it landed, and no event of any kind written under a deposed epoch."""
    epoch_subject = f"titan.evt.{ns}.epoch.v1.{shard}"
    owner: dict[int, str] = {}
    newest = 0
    out: list[Violation] = []
    for m in events:
        if m.subject == epoch_subject:
            newest = m.seq
            doc = body(m)
            if isinstance(doc, dict) and doc.get("instance_id"):
                owner[m.seq] = str(doc["instance_id"])
            continue
        writer = m.headers.get(WRITER_INSTANCE)
        fence = m.headers.get(EXPECTED_SUBJECT)
        is_fenced = fence == epoch_subject
        epoch = as_int(m.headers.get(EXPECTED_SEQ if is_fenced else WRITER_EPOCH))
        is_deposed = epoch is not None and epoch != newest
        is_unfenced = not is_fenced and event_kind(m.subject, ns) in STATE_KINDS
        if not (is_deposed or is_unfenced):
            continue
        ids = [f"evt:{m.seq}"] + ([f"epoch:{epoch}"] if epoch is not None else [])
        deposed = ""
        if is_deposed:
            ids.append(f"marker:{newest}")
            ids += [f"instance:{owner[newest]}"] if newest in owner else []
            deposed = f"written under epoch {epoch} while the newest marker was {newest}" + (
                f" (of instance {owner[newest]})" if newest in owner else ""
            )
            if epoch not in owner and epoch != 0:
                deposed += f" (no marker of ours at seq {epoch})"
        ids += [f"instance:{writer}"] if writer else []
        if is_unfenced:
            text = f"state event {m.seq} ({m.subject}) is not fenced" + (
                f" (its fence is on {fence})" if fence else ""
            )
            if epoch is not None:
                text += f", written by {writer or 'an unnamed instance'} under epoch {epoch}"
            text += f": deposed, {deposed}" if is_deposed else ""
            problem = Problem.UNFENCED
        else:
            by = f", by instance {writer}" if writer else ""
            text = f"event {m.seq} ({m.subject}) {deposed}{by}: epoch {epoch} is deposed"
            problem = Problem.DEPOSED_EPOCH
        out.append(Violation(EPOCHS, tuple(dict.fromkeys(ids)), text, problem))
    return out


def _position_violations(
    events: Sequence[RawMsg], inspect: Mapping[str, Any], ns: str
) -> list[Violation]:
    stream_net = stream_net_positions(events, ns)
    venue_net = venue_net_positions(inspect)
    coid_of_order = {
        str(o.get("orderId")): str(o.get("clientOrderId")) for o in inspect.get("orders", [])
    }
    fills = fill_events(events, ns)
    recorded = {exec_id for _venue, exec_id in fills}
    out: list[Violation] = []
    for symbol in differing(stream_net, venue_net):
        trades = {
            str(t.get("id")): str(t.get("orderId"))
            for t in inspect.get("trades", [])
            if venue_symbol(str(t.get("symbol", ""))) == symbol
        }
        unrecorded = [t for t in trades if t not in recorded]
        unknown = [
            (exec_id, m.seq)
            for (_venue, exec_id), (m, p) in fills.items()
            if venue_symbol(str(p.get("symbol", ""))) == symbol and exec_id not in trades
        ]
        s, v = stream_net.get(symbol, Decimal(0)), venue_net.get(symbol, Decimal(0))
        text = (
            f"position {symbol}: the fill events net {s.normalize():+f}, "
            f"the venue's trades {v.normalize():+f}"
        )
        if unrecorded:
            text += "; venue trades without a fill event: " + ", ".join(
                f"{t} (coid {coid_of_order.get(trades[t], '?')})" for t in unrecorded
            )
        if unknown:
            text += "; fill events of no venue trade: " + ", ".join(
                f"execution {e} (evt {seq})" for e, seq in unknown
            )
        ids = (
            f"symbol:{symbol}",
            *(f"trade:{t}" for t in unrecorded),
            *(f"evt:{seq}" for _e, seq in unknown),
        )
        out.append(Violation(VENUE, ids, text, Problem.POSITION))
    return out


def _open_order_violations(
    events: Sequence[RawMsg], inspect: Mapping[str, Any], ns: str
) -> list[Violation]:
    in_stream = stream_orders(events, ns)
    open_in_stream = {coid for coid, o in in_stream.items() if o.is_open}
    at_venue = {str(o.get("clientOrderId")): o for o in inspect.get("orders", [])}
    open_at_venue = set(venue_open_orders(inspect))
    out: list[Violation] = []
    for coid in sorted(open_in_stream ^ open_at_venue):
        known, there = in_stream.get(coid), at_venue.get(coid)
        stream_says = "has no order event in the stream"
        if known is not None:
            how = f"last: {known.last_event}" if known.is_open else known.last_event
            state = "open" if known.is_open else "closed"
            stream_says = f"is {state} in the stream ({how}, evt {known.last_seq})"
        venue_says = (
            f"{there.get('status')} at the venue (order {there.get('orderId')})"
            if there is not None
            else "unknown to the venue"
        )
        ids = (
            (f"coid:{coid}",)
            + ((f"evt:{known.last_seq}",) if known else ())
            + ((f"order:{there.get('orderId')}",) if there else ())
        )
        problem = (
            Problem.OPEN_IN_STREAM_ONLY if coid in open_in_stream else Problem.OPEN_AT_VENUE_ONLY
        )
        out.append(Violation(VENUE, ids, f"order {coid} {stream_says}, {venue_says}", problem))
    return out


def venue_violations(
    events: Sequence[RawMsg], inspect: Mapping[str, Any], ns: str = "exec"
) -> list[Violation]:
    """Invariant `venue`: the positions folded from the fill events and the orders open
    according to the stream equal the venue's own."""
    return _position_violations(events, inspect, ns) + _open_order_violations(events, inspect, ns)


def differing(a: Mapping[str, Decimal], b: Mapping[str, Decimal]) -> list[str]:
    """The symbols whose net positions differ."""
    return sorted(s for s in set(a) | set(b) if a.get(s, Decimal(0)) != b.get(s, Decimal(0)))


def _drift_violations(docs: Mapping[str, Mapping[str, Any]]) -> list[Violation]:
    """A standby that found its state different from the active's at a checkpoint (its
    `/status` `drift` counters, since its process started): even when its rebuild cured
    it, a fold that drifted is a fault."""
    out = []
    for name, doc in docs.items():
        drift = doc.get("drift")
        if not isinstance(drift, Mapping) or not drift.get("mismatched"):
            continue
        last = drift.get("last") or {}
        first = (last.get("differences") or [{}])[0]
        what = " ".join(str(first.get(k, "")) for k in ("section", "key", "field")).strip()
        out.append(
            Violation(
                INSTANCES,
                (f"instance:{name}",),
                f"instance {name} drifted at {drift['mismatched']} checkpoint(s), last at "
                f"seq {last.get('watermark_seq')}: {what or 'difference unknown'}",
                Problem.DRIFT_ALARM,
            )
        )
    return out


def instance_violations(
    statuses: Mapping[str, Mapping[str, Any] | None],
    inspect: Mapping[str, Any] | None,
    *,
    same_position: bool = False,
) -> list[Violation]:
    """Invariant `instances`: the same state hash at the same stream position, and (with
    the venue read) the venue's net positions and number of open orders. An instance with
    events applied but not yet acknowledged (`events_unacked`) is ahead of its own
    `event_seq` and is not compared by hash. `same_position`: the run has settled, so the
    instances must also be at one stream position with nothing in flight."""
    out = [
        Violation(
            INSTANCES,
            (f"instance:{name}",),
            f"instance {name} did not answer /status",
            Problem.SILENT_INSTANCE,
        )
        for name, doc in sorted(statuses.items())
        if doc is None
    ]
    docs = {name: doc for name, doc in sorted(statuses.items()) if doc is not None}
    at_seq: dict[str, dict[str, str]] = {}
    for name, doc in docs.items():
        if doc.get("events_unacked"):
            continue  # its state is ahead of its event_seq: not a position to compare at
        at_seq.setdefault(str(doc.get("event_seq")), {})[name] = str(doc.get("state_hash"))
    out += [
        Violation(
            INSTANCES,
            tuple(f"instance:{n}" for n in hashes),
            f"instances at event_seq {seq} have different state hashes: "
            + ", ".join(f"{n} {h[:16]}" for n, h in hashes.items()),
            Problem.HASH_MISMATCH,
        )
        for seq, hashes in sorted(at_seq.items())
        if len(set(hashes.values())) > 1
    ]
    out += _apart_violations(docs) if same_position else []
    out += _control_violations(docs)
    out += _drift_violations(docs)
    if inspect is None:
        return out
    venue_net = venue_net_positions(inspect)
    venue_open = len(venue_open_orders(inspect))
    for name, doc in docs.items():
        net = instance_net_positions(doc)
        if net != venue_net:
            out.append(
                Violation(
                    INSTANCES,
                    (f"instance:{name}", *(f"symbol:{s}" for s in differing(net, venue_net))),
                    f"instance {name} net positions {positions_text(net)}, "
                    f"the venue's {positions_text(venue_net)}",
                    Problem.INSTANCE_POSITION,
                )
            )
        open_orders = doc.get("open_orders")
        if open_orders is not None and open_orders != venue_open:
            out.append(
                Violation(
                    INSTANCES,
                    (f"instance:{name}",),
                    f"instance {name} has {open_orders} open orders, the venue {venue_open}",
                    Problem.INSTANCE_OPEN_ORDERS,
                )
            )
    return out


def _apart_violations(docs: Mapping[str, Mapping[str, Any]]) -> list[Violation]:
    """Part of `instances` when the run has settled: one stream position, none in flight."""
    seqs = {str(doc.get("event_seq")) for doc in docs.values()}
    unacked = {n: d.get("events_unacked") for n, d in docs.items() if d.get("events_unacked")}
    if len(seqs) <= 1 and not unacked:
        return []
    where = ", ".join(
        f"{n} at event_seq {d.get('event_seq')}"
        + (f" ({unacked[n]} events in flight)" if n in unacked else "")
        for n, d in docs.items()
    )
    return [
        Violation(
            INSTANCES,
            tuple(f"instance:{n}" for n in docs),
            f"instances not at one stream position: {where}",
            Problem.APART,
        )
    ]


def role_violations(statuses: Mapping[str, Mapping[str, Any] | None]) -> list[Violation]:
    """Invariant `roles` over the instances that answered: exactly one says it is active,
    and no standby is without lease election (`lease_role` None: it would never take over)."""
    docs = {name: doc for name, doc in statuses.items() if doc is not None}
    out = [
        Violation(
            ROLES,
            (f"instance:{doc.get('instance_id', name)}",),
            f"{doc.get('instance_id', name)} is a standby without lease election: "
            "it will never take over ([ha] enabled = true)",
            Problem.STANDBY_WITHOUT_ELECTION,
        )
        for name, doc in docs.items()
        if doc.get("role") == "standby" and doc.get("lease_role") is None
    ]
    active = [
        str(doc.get("instance_id", n)) for n, doc in docs.items() if doc.get("role") == "active"
    ]
    if not active:
        ids = tuple(f"instance:{doc.get('instance_id', n)}" for n, doc in docs.items())
        out.append(
            Violation(ROLES, ids, "no active instance: trading is stopped", Problem.NO_ACTIVE)
        )
    elif len(active) > 1:
        out.append(
            Violation(
                ROLES,
                tuple(f"instance:{a}" for a in active),
                f"more than one instance says it is active: {', '.join(active)}",
                Problem.TWO_ACTIVES,
            )
        )
    return out


STATUS_PROBLEMS = frozenset(
    {Problem.SILENT_INSTANCE, Problem.HASH_MISMATCH, Problem.CONTROL_MISMATCH}
)
"""The part of `instances` that the `/status` documents alone judge now; a drift alarm is
history (counted since the standby started) and is the run checks' to judge."""


def status_violations(statuses: Mapping[str, Mapping[str, Any] | None]) -> list[Violation]:
    """What the instances' `/status` documents alone show (`titan-exec status`): `roles`
    over every answer, and `instances` (`STATUS_PROBLEMS`, without the venue) over the full
    documents (a public `/status`, read without the API key, has no state hash)."""
    full = {n: d for n, d in statuses.items() if d is None or d.get("view") != "public"}
    same = [v for v in instance_violations(full, None) if v.problem in STATUS_PROBLEMS]
    return role_violations(statuses) + same


_CONTROL_FIELDS = ("is_halted", "is_armed", "risk_state", "control_outcomes")


def _control_violations(docs: Mapping[str, Mapping[str, Any]]) -> list[Violation]:
    """Part of `instances`: at the same stream position the instances hold the same halt,
    armed and risk state and the same count of every control outcome (what `/status` shows;
    not all of it is in the state hash)."""
    at_seq: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, doc in docs.items():
        if doc.get("events_unacked") or "risk_state" not in doc:
            continue
        view = tuple(json.dumps(doc.get(f), sort_keys=True) for f in _CONTROL_FIELDS)
        at_seq.setdefault(str(doc.get("event_seq")), {})[name] = view
    out: list[Violation] = []
    for seq, views in sorted(at_seq.items()):
        if len(set(views.values())) > 1:
            names = list(views)
            a, b = views[names[0]], views[names[1]]
            fields = [f for f, x, y in zip(_CONTROL_FIELDS, a, b, strict=True) if x != y]
            out.append(
                Violation(
                    INSTANCES,
                    tuple(f"instance:{n}" for n in names),
                    f"instances at event_seq {seq} differ in {', '.join(fields)}: "
                    + "; ".join(
                        f"{n} {dict(zip(_CONTROL_FIELDS, v, strict=True))}"
                        for n, v in views.items()
                    )[:600],
                    Problem.CONTROL_MISMATCH,
                )
            )
    return out


def check(
    commands: Sequence[RawMsg],
    events: Sequence[RawMsg],
    inspect: Mapping[str, Any] | None = None,
    statuses: Mapping[str, Mapping[str, Any] | None] | None = None,
    *,
    ns: str = "exec",
    shard: str = "main",
    same_position: bool = False,
) -> Report:
    """Every invariant over what was read: the raw `TITAN_CMD` and `TITAN_EVT` (events of
    namespace `ns`), the simulator's `/sim/inspect` (None: not read, so `coids` and `venue`
    are not checked) and each instance's `/status` (None for one that did not answer; an
    empty or absent mapping: `instances` is not checked). `same_position`: the run has
    settled (`instance_violations`)."""
    statuses = statuses or {}
    violations = decision_violations(commands, events, ns) + epoch_violations(events, ns, shard)
    if inspect is not None:
        violations += coid_violations(inspect) + venue_violations(events, inspect, ns)
    if statuses:
        violations += instance_violations(statuses, inspect, same_position=same_position)
    order = list(INVARIANTS)
    violations.sort(key=lambda v: order.index(v.invariant))
    counts = Counts(
        commands=len(commands),
        decisions=sum(len(s) for s in decisions_per_command(events, ns).values()),
        events=len(events),
        epoch_markers=tuple(epoch_markers(events, ns, shard)),
        fills=len(fill_events(events, ns)),
        stream_open_orders=sum(o.is_open for o in stream_orders(events, ns).values()),
        venue_orders=None if inspect is None else len(inspect.get("orders", [])),
        venue_trades=None if inspect is None else len(inspect.get("trades", [])),
        venue_open_orders=None if inspect is None else len(venue_open_orders(inspect)),
        instances=len(statuses),
    )
    return Report(counts, tuple(violations), coid_counts(inspect or {}))
