"""State snapshots: capture, the canonical line codec, the state hash, restore and diff. Pure.

A snapshot is UTF-8 JSON lines:

    {"snapshot":1,"hash_version":2,...,"state_hash":h,"hashed_lines":n}   header (not hashed)
    {"k":"flags",...} {"k":"policy",...} {"k":"pos","v":[...]}...          n hashed lines
    {"k":"ord","v":[...]} {"k":"cmds",...} {"k":"sig",...} {"k":"fill",...}
    {"k":"day",...} {"k":"risk",...} {"k":"end"}
    {"k":"trade","v":[...]} {"k":"nonce","v":[...]} {"k":"ctl",...}        not hashed

The `risk` line (the brain's risk posture, the limits overlay, the reference prices of open
orders) is written only when one of them is not at its default, so that the hash of a state
without them is the hash earlier builds computed for it.

The hashed lines hold everything the fold decides, in a canonical order (positions by
(venue, symbol), orders by client order id, sets sorted), at most `CHUNK` entries per line.
`state_hash` is the SHA-256 over them (hash version 2): hashing and encoding a snapshot are
one pass, the shell can feed the lines to the hash one at a time and give the event loop a
turn between them, and a snapshot is checked on load against its own recorded hash without
being encoded again. The recent closed trades (a display buffer), the nonce window
(`State.nonces`, written as `(key id, nonce, expiry)` by `state.nonces.entries(tolerance)`;
read back into the restored state) and the count of events folded (in the header; compared
on its own) travel in the snapshot but are not hashed, as before.

Decimals are written in their string form, which keeps the exponent (``1.0`` is not ``1``)
and the sign of zero, and read back exactly into typed fields.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from titan_exec.core.model import ClientOrderId
from titan_exec.core.orders import Order
from titan_exec.core.overlay import LimitsOverlay, overlay_from_doc
from titan_exec.core.policy import parse_policy
from titan_exec.core.positions import ClosedTrade, Position
from titan_exec.core.state import PositionKey, State

HASH_VERSION = 2
SNAPSHOT_FORMAT = 1
CHUNK = 1000
"""Entries per line: one line is a few milliseconds of encoding at most."""

Nonce = tuple[str, str, int]
"""(key id, nonce, expiry ms) of a replay-cache entry."""


class SnapshotError(ValueError):
    """A snapshot cannot be used: malformed, or its lines do not match its hash."""


@dataclass(frozen=True, slots=True)
class StateView:
    """A state frozen at one stream position: shallow copies of its collections (the
    entries themselves are immutable and shared), taken synchronously in O(n) C-level
    copies, so the live state may move on while the view is hashed and written."""

    policy_raw: dict[str, Any] | None
    policy_hash: str | None
    is_armed: bool
    is_halted: bool
    orders: dict[ClientOrderId, Order]
    positions: dict[PositionKey, Position]
    decided_cmds: frozenset[int]
    cmd_floor: int
    accepted_signals: dict[str, tuple[ClientOrderId, ...]]
    seen_fills: dict[tuple[str, str], int]
    fills_floor_ms: int
    orders_floor_ms: int
    daily_realized: dict[int, Decimal]
    recent_trades: tuple[ClosedTrade, ...]
    trade_count: int
    event_count: int
    anomalies: int
    reconciliations: int
    risk_state: str = "Normal"
    risk_state_source: str = ""
    risk_state_seq: int = 0
    overlay: LimitsOverlay | None = None
    ref_prices: dict[ClientOrderId, Decimal] | None = None
    slippage_breaches: int = 0
    control_counts: dict[str, int] | None = None


def capture(state: State) -> StateView:
    return StateView(
        policy_raw=state.policy.raw if state.policy else None,
        policy_hash=state.policy.hash if state.policy else None,
        is_armed=state.is_armed,
        is_halted=state.is_halted,
        orders=dict(state.orders),
        positions=dict(state.positions),
        decided_cmds=frozenset(state.decided_cmds),
        cmd_floor=state.cmd_floor,
        accepted_signals=dict(state.accepted_signals),
        seen_fills=dict(state.seen_fills),
        fills_floor_ms=state.fills_floor_ms,
        orders_floor_ms=state.orders_floor_ms,
        daily_realized=dict(state.daily_realized),
        recent_trades=tuple(state.recent_trades),
        trade_count=state.trade_count,
        event_count=state.event_count,
        anomalies=state.anomalies,
        reconciliations=state.reconciliations,
        risk_state=state.risk_state,
        risk_state_source=state.risk_state_source,
        risk_state_seq=state.risk_state_seq,
        overlay=state.overlay,
        ref_prices=dict(state.ref_prices),
        slippage_breaches=state.slippage_breaches,
        control_counts=dict(state.control_counts),
    )


# --- the lines ----------------------------------------------------------------------------


class _Line(msgspec.Struct, frozen=True, tag_field="k"):
    pass


class FlagsLine(_Line, frozen=True, tag="flags"):
    is_armed: bool
    is_halted: bool
    cmd_floor: int
    fills_floor_ms: int
    orders_floor_ms: int
    trade_count: int
    anomalies: int
    reconciliations: int


class PolicyLine(_Line, frozen=True, tag="policy"):
    raw: dict[str, Any] | None
    hash: str | None


class PositionsLine(_Line, frozen=True, tag="pos"):
    v: list[Position]


class OrdersLine(_Line, frozen=True, tag="ord"):
    v: list[Order]


class CommandsLine(_Line, frozen=True, tag="cmds"):
    v: list[int]


class SignalsLine(_Line, frozen=True, tag="sig"):
    v: list[tuple[str, tuple[ClientOrderId, ...]]]


class FillsLine(_Line, frozen=True, tag="fill"):
    v: list[tuple[str, str, int]]


class DaysLine(_Line, frozen=True, tag="day"):
    v: list[tuple[int, Decimal]]


class RiskLine(_Line, frozen=True, tag="risk"):
    risk_state: str
    source: str
    seq: int
    overlay: dict[str, Any] | None
    refs: list[tuple[str, Decimal]]
    breaches: int


class EndLine(_Line, frozen=True, tag="end"):
    pass


class ControlsLine(_Line, frozen=True, tag="ctl"):
    v: list[tuple[str, int]]


class TradesLine(_Line, frozen=True, tag="trade"):
    v: list[ClosedTrade]


class NoncesLine(_Line, frozen=True, tag="nonce"):
    v: list[tuple[str, str, int]]


AnyLine = (
    FlagsLine
    | PolicyLine
    | PositionsLine
    | OrdersLine
    | CommandsLine
    | SignalsLine
    | FillsLine
    | DaysLine
    | RiskLine
    | EndLine
    | TradesLine
    | NoncesLine
    | ControlsLine
)


class SnapshotHeader(msgspec.Struct, frozen=True, kw_only=True):
    snapshot: int = SNAPSHOT_FORMAT
    hash_version: int = HASH_VERSION
    ns: str
    shard: str
    watermark_seq: int
    """The state is the fold of every event of the namespace before this stream sequence
    (the checkpoint marker's); a restart replays from it."""
    event_count: int
    epoch: int
    instance_id: str
    created_ms: int
    state_hash: str
    hashed_lines: int
    purged_below: int = 0
    """The stream's own subjects were purged below this sequence (retention)."""


_encoder = msgspec.json.Encoder(decimal_format="string", order="deterministic")
_line_decoder = msgspec.json.Decoder(AnyLine)
_header_decoder = msgspec.json.Decoder(SnapshotHeader)


def _line(obj: Any) -> bytes:
    return _encoder.encode(obj) + b"\n"


def _chunks(items: Sequence[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), CHUNK):
        yield list(items[i : i + CHUNK])


def iter_hashed_lines(view: StateView) -> Iterator[bytes]:
    """The canonical lines of a view, in order; `state_hash` is their SHA-256."""
    yield _line(
        FlagsLine(
            is_armed=view.is_armed,
            is_halted=view.is_halted,
            cmd_floor=view.cmd_floor,
            fills_floor_ms=view.fills_floor_ms,
            orders_floor_ms=view.orders_floor_ms,
            trade_count=view.trade_count,
            anomalies=view.anomalies,
            reconciliations=view.reconciliations,
        )
    )
    yield _line(PolicyLine(raw=view.policy_raw, hash=view.policy_hash))
    for part in _chunks([view.positions[k] for k in sorted(view.positions)]):
        yield _line(PositionsLine(part))
    for part in _chunks(sorted(view.orders)):
        yield _line(OrdersLine([view.orders[c] for c in part]))
    for cmds in _chunks(sorted(view.decided_cmds)):
        yield _line(CommandsLine(cmds))
    for sigs in _chunks(sorted(view.accepted_signals)):
        yield _line(SignalsLine([(s, view.accepted_signals[s]) for s in sigs]))
    for keys in _chunks(sorted(view.seen_fills)):
        yield _line(FillsLine([(v, x, view.seen_fills[(v, x)]) for v, x in keys]))
    for days in _chunks(sorted(view.daily_realized)):
        yield _line(DaysLine([(d, view.daily_realized[d]) for d in days]))
    risk = risk_line(view)
    if risk is not None:
        yield _line(risk)
    yield _line(EndLine())


def risk_line(view: StateView) -> RiskLine | None:
    refs = view.ref_prices or {}
    if (
        view.risk_state == "Normal"
        and not view.risk_state_source
        and not view.risk_state_seq
        and view.overlay is None
        and not refs
        and not view.slippage_breaches
    ):
        return None
    return RiskLine(
        risk_state=view.risk_state,
        source=view.risk_state_source,
        seq=view.risk_state_seq,
        overlay=view.overlay.to_doc() if view.overlay is not None else None,
        refs=[(str(c), refs[c]) for c in sorted(refs)],
        breaches=view.slippage_breaches,
    )


def iter_extra_lines(view: StateView, nonces: Iterable[Nonce] = ()) -> Iterator[bytes]:
    """The lines a snapshot carries beside the hashed ones (not part of the hash)."""
    yield _line(TradesLine(list(view.recent_trades)))
    for part in _chunks(sorted(nonces)):
        yield _line(NoncesLine(part))
    if view.control_counts:
        yield _line(ControlsLine(sorted(view.control_counts.items())))


def hash_lines(lines: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line)
    return h.hexdigest()


def hash_view(view: StateView) -> str:
    return hash_lines(iter_hashed_lines(view))


def hash_state(state: State) -> str:
    return hash_view(capture(state))


def encode_header(header: SnapshotHeader) -> bytes:
    return _encoder.encode(header) + b"\n"


def snapshot_bytes(
    header: SnapshotHeader, hashed: Sequence[bytes], extra: Iterable[bytes]
) -> bytes:
    return b"".join([encode_header(header), *hashed, *extra])


def encode_snapshot(
    view: StateView,
    *,
    nonces: Iterable[Nonce] = (),
    ns: str,
    shard: str,
    watermark_seq: int,
    epoch: int = 0,
    instance_id: str = "",
    created_ms: int = 0,
    purged_below: int = 0,
) -> tuple[SnapshotHeader, bytes]:
    """A whole snapshot in one call (the shell hashes in slices instead; same bytes)."""
    hashed = list(iter_hashed_lines(view))
    header = SnapshotHeader(
        ns=ns,
        shard=shard,
        watermark_seq=watermark_seq,
        event_count=view.event_count,
        epoch=epoch,
        instance_id=instance_id,
        created_ms=created_ms,
        state_hash=hash_lines(hashed),
        hashed_lines=len(hashed),
        purged_below=purged_below,
    )
    return header, snapshot_bytes(header, hashed, iter_extra_lines(view, nonces))


# --- reading a snapshot back --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Restored:
    header: SnapshotHeader
    state: State
    nonces: list[Nonce]


def read_header(data: bytes) -> SnapshotHeader:
    first = data.split(b"\n", 1)[0]
    try:
        header = _header_decoder.decode(first)
    except msgspec.MsgspecError as err:
        raise SnapshotError(f"snapshot header unreadable: {err}") from err
    if header.snapshot != SNAPSHOT_FORMAT or header.hash_version != HASH_VERSION:
        raise SnapshotError(
            f"snapshot format {header.snapshot}/hash version {header.hash_version} "
            f"is not {SNAPSHOT_FORMAT}/{HASH_VERSION}"
        )
    return header


def restore(data: bytes) -> Restored:
    """The state a snapshot holds, checked against its recorded hash (and the policy
    against its recorded policy hash). Raises `SnapshotError` naming what is wrong."""
    header = read_header(data)
    lines = data.split(b"\n")[1:]
    if lines and lines[-1] == b"":
        lines.pop()
    n = header.hashed_lines
    if len(lines) < n:
        raise SnapshotError(f"snapshot truncated: {len(lines)} lines, {n} hashed expected")
    actual = hash_lines(line + b"\n" for line in lines[:n])
    if actual != header.state_hash:
        raise SnapshotError(
            f"snapshot lines hash to {actual[:16]}…, header says {header.state_hash[:16]}…"
        )
    state = State(event_count=header.event_count)
    nonces: list[Nonce] = []
    try:
        for raw in lines:
            _restore_line(state, nonces, _line_decoder.decode(raw))
    except msgspec.MsgspecError as err:
        raise SnapshotError(f"snapshot line unreadable: {err}") from err
    state.nonces.restore(nonces)
    for order in state.orders.values():
        if not order.status.is_terminal:
            key = (order.venue, order.symbol)
            state.open_orders.setdefault(key, set()).add(order.client_order_id)
    return Restored(header=header, state=state, nonces=nonces)


def _restore_line(state: State, nonces: list[Nonce], line: AnyLine) -> None:
    match line:
        case FlagsLine():
            state.is_armed = line.is_armed
            state.is_halted = line.is_halted
            state.cmd_floor = line.cmd_floor
            state.fills_floor_ms = line.fills_floor_ms
            state.orders_floor_ms = line.orders_floor_ms
            state.trade_count = line.trade_count
            state.anomalies = line.anomalies
            state.reconciliations = line.reconciliations
        case PolicyLine():
            if line.raw is not None:
                state.policy = parse_policy(line.raw)
                if state.policy.hash != line.hash:
                    raise SnapshotError(
                        f"policy hash {state.policy.hash[:16]}… is not the recorded "
                        f"{str(line.hash)[:16]}…"
                    )
        case PositionsLine():
            state.positions.update(((p.venue, p.symbol), p) for p in line.v)
        case OrdersLine():
            state.orders.update((o.client_order_id, o) for o in line.v)
        case CommandsLine():
            state.decided_cmds.update(line.v)
        case SignalsLine():
            state.accepted_signals.update(line.v)
        case FillsLine():
            state.seen_fills.update(((v, x), t) for v, x, t in line.v)
        case DaysLine():
            state.daily_realized.update(line.v)
        case TradesLine():
            state.recent_trades.extend(line.v)
        case NoncesLine():
            nonces.extend(line.v)
        case RiskLine():
            state.risk_state = line.risk_state
            state.risk_state_source = line.source
            state.risk_state_seq = line.seq
            state.overlay = overlay_from_doc(line.overlay) if line.overlay is not None else None
            state.ref_prices.update((ClientOrderId(c), p) for c, p in line.refs)
            state.slippage_breaches = line.breaches
        case ControlsLine():
            state.control_counts.update(line.v)
        case EndLine():
            pass
