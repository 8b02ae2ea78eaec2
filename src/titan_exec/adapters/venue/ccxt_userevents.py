"""The user-data stream's pure parts: an event read into a report, and when to sweep.

This module owns what the ccxt venue's user-data stream (`ccxt_userstream.py`) decides
without I/O, so it is tested on values and a hand-driven clock:

- `read_order_update`: a Binance USDⓈ-M ``ORDER_TRADE_UPDATE`` (its ``o`` object, raw
  strings) → an `OrderReport` and, for execution type ``TRADE``, a `FillReport`. Numbers
  are read from the event's strings as Decimals; a missing or unreadable field raises
  `MalformedEvent` (the caller counts it, logs it and sweeps: the fill is not lost).
- `SweepTimer`: when a REST sweep of the trades is due — a reason was requested ((re)connect,
  ``listenKeyExpired``, a keepalive failure, a malformed event, a new session), the stream
  has been silent for `silence_ms` while orders are open (the watchdog), an event came
  after such a silence, or `interval_ms` passed since the last sweep (the safety net).

The watchdog and a quiet account: Binance sends nothing on a user stream while nothing
happens, and a socket that stopped delivering still answers pings, so neither silence nor
ping/pong tells the two apart. The stream's silence is therefore only *suspicious* while
orders are open, and a suspicious silence is settled by a REST sweep of those symbols: a
sweep that finds trades the stream never delivered proves the stream broken (the shell
reconnects); one that finds nothing was a quiet account. A dead TCP connection is ccxt's
part: its ping/pong keepalive (``streaming.keepAlive``) closes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from titan_exec.core.model import ClientOrderId, Side, VenueOrderId
from titan_exec.core.reports import FillReport, OrderReport, VenueOrderStatus

STATUSES: dict[str, VenueOrderStatus] = {s.value: s for s in VenueOrderStatus}
TERMINAL = frozenset({VenueOrderStatus.FILLED, VenueOrderStatus.CANCELED, VenueOrderStatus.EXPIRED})


class MalformedEvent(ValueError):
    """A stream event that cannot be read (names the field)."""


def _text(o: Mapping[str, Any], key: str) -> str:
    value = o.get(key)
    if value is None or value == "":
        raise MalformedEvent(f"field {key!r} missing")
    return str(value)


def _decimal(o: Mapping[str, Any], key: str) -> Decimal:
    value = o.get(key)
    if not isinstance(value, str):  # Binance sends numbers as strings; a float is refused
        raise MalformedEvent(f"field {key!r} is not a decimal string: {value!r}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise MalformedEvent(f"field {key!r} is not a number: {value!r}") from None
    if not d.is_finite():
        raise MalformedEvent(f"field {key!r} is not finite: {value!r}")
    return d


def _int(o: Mapping[str, Any], key: str) -> int:
    value = o.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedEvent(f"field {key!r} is not an integer: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise MalformedEvent(f"field {key!r} is not an integer: {value!r}") from None


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """One ``ORDER_TRADE_UPDATE`` read: the order's report and the trade it carries."""

    market_id: str
    """The venue's symbol (``BTCUSDT``)."""
    execution: str
    order: OrderReport
    fill: FillReport | None


def read_order_update(
    event: Mapping[str, Any],
    *,
    venue: str,
    account: str,
    symbol_of: Callable[[str], str | None],
) -> OrderUpdate:
    """`event` is the whole message; `symbol_of(market id)` → our canonical symbol, None
    for a market this venue does not list (raises `MalformedEvent`: unknown symbol)."""
    o = event.get("o")
    if not isinstance(o, Mapping):
        raise MalformedEvent("field 'o' missing")
    market_id = _text(o, "s")
    symbol = symbol_of(market_id)
    if symbol is None:
        raise MalformedEvent(f"unknown symbol {market_id!r}")
    status = STATUSES.get(_text(o, "X"))
    if status is None or status is VenueOrderStatus.NOT_FOUND:
        raise MalformedEvent(f"unknown order status {o.get('X')!r}")
    execution = _text(o, "x")
    coid = ClientOrderId(_text(o, "c"))
    oid = VenueOrderId(str(_int(o, "i")))
    ts = _int(o, "T")
    order = OrderReport(
        venue=venue,
        account=account,
        symbol=symbol,
        client_order_id=coid,
        venue_order_id=oid,
        status=status,
        qty=_decimal(o, "q"),
        filled_qty=_decimal(o, "z"),
        ts_ms=ts,
    )
    fill = None
    if execution == "TRADE":
        side = _text(o, "S")
        if side not in ("BUY", "SELL"):
            raise MalformedEvent(f"unknown side {side!r}")
        fill = FillReport(
            venue=venue,
            account=account,
            symbol=symbol,
            client_order_id=coid,
            venue_order_id=oid,
            trade_id=str(_int(o, "t")),
            side=Side.BUY if side == "BUY" else Side.SELL,
            price=_decimal(o, "L"),
            qty=_decimal(o, "l"),
            fee=_decimal(o, "n") if "n" in o else Decimal(0),
            fee_currency=str(o.get("N") or "USDT"),
            ts_ms=ts,
        )
    return OrderUpdate(market_id, execution, order, fill)


def read_positions(event: Mapping[str, Any]) -> dict[str, Decimal]:
    """An ``ACCOUNT_UPDATE``'s positions: market id → signed amount."""
    a = event.get("a")
    if not isinstance(a, Mapping):
        raise MalformedEvent("field 'a' missing")
    out: dict[str, Decimal] = {}
    for p in a.get("P") or ():
        if not isinstance(p, Mapping):
            raise MalformedEvent("a position is not an object")
        out[_text(p, "s")] = _decimal(p, "pa")
    return out


@dataclass(slots=True)
class SweepTimer:
    """When a REST sweep of the trades is due (time comes in as `now_ms`)."""

    silence_ms: int
    interval_ms: int
    pending: set[str] = field(default_factory=lambda: {"start"})
    last_sweep_ms: int | None = None
    last_event_ms: int | None = None

    def request(self, reason: str) -> None:
        self.pending.add(reason)

    def on_event(self, now_ms: int) -> None:
        """An event arrived; after a silence of `silence_ms` or more, a sweep (a stream
        that stopped delivering and came back may have lost what happened meanwhile)."""
        quiet_since = max(self.last_sweep_ms or 0, self.last_event_ms or 0)
        if self.last_event_ms is not None and now_ms - quiet_since >= self.silence_ms:
            self.pending.add("resumed")
        self.last_event_ms = now_ms

    def due(self, now_ms: int, *, has_open_orders: bool) -> str | None:
        """The reason a sweep is due now, or None."""
        if self.pending:
            return ",".join(sorted(self.pending))
        if self.last_sweep_ms is None:
            return "start"
        quiet_since = max(self.last_sweep_ms, self.last_event_ms or 0)
        if has_open_orders and now_ms - quiet_since >= self.silence_ms:
            return "silent"
        if now_ms - self.last_sweep_ms >= self.interval_ms:
            return "interval"
        return None

    def swept(self, now_ms: int, reason: str) -> None:
        """The sweep for `reason` (as `due` gave it) is done; reasons requested while it
        ran stay pending."""
        self.pending.difference_update(reason.split(","))
        self.last_sweep_ms = now_ms
