"""What the raw data of a run says, folded without any service code (pure).

The stream messages are read as they are on the wire: a subject `titan.evt.<ns>.<kind>.v1…`,
the JetStream headers, and a JSON envelope whose `payload` is the event (`payload.event`:
`intent.decided`, `order.accepted`, `order.filled`, `position.reconciled`, …, fields in
camelCase). The venue
simulator's `/sim/inspect` document lists every order (`clientOrderId`, `orderId`,
`status`) and trade (`id`, `orderId`, `symbol`, `side`, `qty`) it ever had; an instance's
`/status` has `event_seq`, `state_hash`, `net_positions` (`{"sim:BTC/USDT": "0.2"}`) and
`open_orders`. Symbols are compared in the venue's spelling (`BTCUSDT`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from titan_exec_lab.verify.read import RawMsg

EXPECTED_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_SEQ = "Nats-Expected-Last-Subject-Sequence"
WRITER_EPOCH = "Titan-Epoch"
WRITER_INSTANCE = "Titan-Instance"
STATE_KINDS = frozenset(
    {"fill", "order", "decision", "control", "genesis", "compaction", "position"}
)
DECISION_KINDS = frozenset({"decision", "control"})
CLOSING_ORDER_EVENTS = frozenset({"order.canceled", "order.rejected", "order.expired"})
VENUE_OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})


def event_kind(subject: str, ns: str = "exec") -> str | None:
    """`decision` for `titan.evt.<ns>.decision.v1...`; None for another namespace."""
    parts = subject.split(".")
    if len(parts) >= 4 and parts[:3] == ["titan", "evt", ns]:
        return parts[3]
    return None


def body(msg: RawMsg) -> Any:
    try:
        return msg.doc()
    except ValueError:
        return None


def payload_of(msg: RawMsg) -> dict[str, Any] | None:
    doc = body(msg)
    payload = doc.get("payload") if isinstance(doc, dict) else None
    return payload if isinstance(payload, dict) else None


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def as_decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def venue_symbol(symbol: str) -> str:
    """The venue's spelling: `sim:BTC/USDT`, `BTC/USDT` and `BTCUSDT` → `BTCUSDT`."""
    return symbol.split(":")[-1].replace("/", "").replace("_", "")


def signed(side: Any, qty: Decimal) -> Decimal:
    return qty if str(side).upper() == "BUY" else -qty


def _nonzero_sorted(net: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {s: q for s, q in sorted(net.items()) if q != 0}


def positions_text(net: Mapping[str, Decimal]) -> str:
    return ", ".join(f"{s} {q.normalize():+f}" for s, q in net.items()) or "flat"


def decisions_per_command(events: Iterable[RawMsg], ns: str = "exec") -> dict[int, list[int]]:
    """The event seqs of the decisions of each command: `{cmdSeq: [evt seq, ...]}`.
    Decision events without a readable `payload.cmdSeq` are left out (see
    `decision_violations`)."""
    out: dict[int, list[int]] = {}
    for m in events:
        if event_kind(m.subject, ns) in DECISION_KINDS:
            payload = payload_of(m) or {}
            if payload.get("event") == "risk_state.decided":
                continue  # decides a RiskGuardian message (`srcSeq`), not a command
            cmd_seq = as_int(payload.get("cmdSeq"))
            if cmd_seq is not None:
                out.setdefault(cmd_seq, []).append(m.seq)
    return out


def decision_counts(events: Iterable[RawMsg], ns: str = "exec") -> Counter[int]:
    """How many decisions each command (by its `TITAN_CMD` sequence) has."""
    return Counter({cmd: len(seqs) for cmd, seqs in decisions_per_command(events, ns).items()})


def epoch_markers(events: Iterable[RawMsg], ns: str = "exec", shard: str = "main") -> list[int]:
    subject = f"titan.evt.{ns}.epoch.v1.{shard}"
    return [m.seq for m in events if m.subject == subject]


def coid_counts(inspect: Mapping[str, Any]) -> Counter[str]:
    """How many venue orders each client order id has."""
    return Counter(str(o.get("clientOrderId")) for o in inspect.get("orders", []))


def merged_inspect(inspects: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The simulators' `/sim/inspect` as one venue's: every order and trade (the venue
    order ids prefixed with the venue's name, each simulator counting its own from 1),
    so that the checks above compare the streams and the instances with all venues at
    once (client order ids name their venue: never two alike across venues)."""
    orders: list[dict[str, Any]] = []
    trades: list[dict[str, Any]] = []
    for name, doc in inspects.items():
        for o in doc.get("orders", []):
            orders.append({**o, "orderId": f"{name}-{o.get('orderId')}"})
        for t in doc.get("trades", []):
            trades.append({**t, "orderId": f"{name}-{t.get('orderId')}"})
    return {"orders": orders, "trades": trades}


def venue_net_positions(inspect: Mapping[str, Any]) -> dict[str, Decimal]:
    """The venue's net position per symbol (`BTCUSDT`), summed from its own trades."""
    net: dict[str, Decimal] = {}
    for t in inspect.get("trades", []):
        symbol = venue_symbol(str(t["symbol"]))
        net[symbol] = net.get(symbol, Decimal(0)) + signed(t["side"], Decimal(str(t["qty"])))
    return _nonzero_sorted(net)


Fills = dict[tuple[str, str], tuple[RawMsg, dict[str, Any]]]


def fill_events(events: Iterable[RawMsg], ns: str = "exec") -> Fills:
    """The first fill event of each venue execution `(venue, executionId)`: a repeated
    record of one venue trade does not move a position twice."""
    out: Fills = {}
    for m in events:
        if event_kind(m.subject, ns) != "fill":
            continue
        p = payload_of(m)
        if p is None or p.get("event") != "order.filled":
            continue
        key = (str(p.get("venue", "")), str(p.get("executionId") or p.get("fillId")))
        out.setdefault(key, (m, p))
    return out


def stream_net_positions(events: Iterable[RawMsg], ns: str = "exec") -> dict[str, Decimal]:
    """Net position per symbol (`BTCUSDT`) folded in stream order from the fill events (the
    first record of each venue execution) and the position corrections
    (`position.reconciled`: the symbol's net becomes `qtyAfter`, as in the service's fold)."""
    net: dict[str, Decimal] = {}
    seen: set[tuple[str, str]] = set()
    for m in events:
        kind = event_kind(m.subject, ns)
        if kind not in ("fill", "position"):
            continue
        p = payload_of(m)
        if p is None:
            continue
        symbol = venue_symbol(str(p.get("symbol", "")))
        if kind == "position":
            after = as_decimal(p.get("qtyAfter"))
            if p.get("event") == "position.reconciled" and after is not None:
                net[symbol] = after
            continue
        key = (str(p.get("venue", "")), str(p.get("executionId") or p.get("fillId")))
        if p.get("event") != "order.filled" or key in seen:
            continue
        seen.add(key)
        qty = as_decimal(p.get("qty"))
        if qty is None:
            continue
        net[symbol] = net.get(symbol, Decimal(0)) + signed(p.get("side"), qty)
    return _nonzero_sorted(net)


def instance_net_positions(status: Mapping[str, Any]) -> dict[str, Decimal]:
    """An instance's net positions from its `/status`, keyed like the venue's."""
    net: dict[str, Decimal] = {}
    for key, qty in (status.get("net_positions") or {}).items():
        symbol = venue_symbol(str(key))
        net[symbol] = net.get(symbol, Decimal(0)) + Decimal(str(qty))
    return _nonzero_sorted(net)


@dataclass(frozen=True, slots=True)
class StreamOrder:
    """The last word of the stream about one client order id."""

    coid: str
    is_open: bool
    last_event: str
    last_seq: int


def stream_orders(events: Iterable[RawMsg], ns: str = "exec") -> dict[str, StreamOrder]:
    """Each client order id of the order and fill events, open until an event closes it
    (canceled, rejected, expired, or a fill with status FILLED; closed stays closed)."""
    out: dict[str, StreamOrder] = {}
    for m in events:
        kind = event_kind(m.subject, ns)
        if kind not in ("order", "fill"):
            continue
        p = payload_of(m)
        if p is None or not p.get("clientOrderId"):
            continue
        coid = str(p["clientOrderId"])
        name = str(p.get("event"))
        if name == "order.filled":
            name = f"order.filled {p.get('status')}"
        closes = name in CLOSING_ORDER_EVENTS or name == "order.filled FILLED"
        before = out.get(coid)
        is_open = (before is None or before.is_open) and not closes
        out[coid] = StreamOrder(coid, is_open, name, m.seq)
    return out


def venue_open_orders(inspect: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The venue's open orders by client order id."""
    return {
        str(o.get("clientOrderId")): o
        for o in inspect.get("orders", [])
        if o.get("status") in VENUE_OPEN_STATUSES
    }
