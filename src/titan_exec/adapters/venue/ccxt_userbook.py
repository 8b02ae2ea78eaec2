"""The user-data stream's book: what the events said, kept for the venue to take.

This module owns `StreamBook`, the part of `ccxt_userstream.UserStream` that files each
read event (`ccxt_userevents`): the buffered fills (deduplicated by trade id against the
stream itself and against the REST trade cursor's reported ids), each order's latest
report (an open status after a final one is counted and ignored), the non-flat positions,
and the counters of bad input. It is called from ccxt's read loop: synchronous, no I/O
but logging.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from titan_exec.adapters.venue.ccxt_userevents import TERMINAL, read_order_update, read_positions
from titan_exec.core.model import ZERO, ClientOrderId
from titan_exec.core.reports import FillReport, OrderReport

if TYPE_CHECKING:
    from titan_exec.adapters.venue.ccxt_venue import CcxtVenue

log = logging.getLogger(__name__)

OWN_COID = re.compile(r"^tx[0-9a-f]{24}c\d+$")
"""The service's client order ids (`core.model.client_order_id`)."""
SEEN_TRADES = 20_000
KEPT_ORDERS = 10_000


class StreamBook:
    def __init__(
        self,
        venue: CcxtVenue,
        stats: Counter[str],
        wake: Callable[[], None],
        suspect: Callable[[str, str], None],
    ) -> None:
        """`wake()`: a fill is buffered; `suspect(symbol, reason)`: a REST answer shows the
        stream lost trades of `symbol`."""
        self._venue = venue
        self.stats = stats
        self._wake = wake
        self._suspect = suspect
        self._checked_orders: OrderedDict[ClientOrderId, Decimal] = OrderedDict()
        self._checked_positions: dict[str, Decimal] = {}
        self.orders: OrderedDict[ClientOrderId, OrderReport] = OrderedDict()
        """The latest update of each order seen on the stream (for later use)."""
        self.buffer: list[FillReport] = []
        self.seen: OrderedDict[str, None] = OrderedDict()
        """Trade ids delivered by the stream (the newest `SEEN_TRADES`)."""
        self.positions: dict[str, Decimal] = {}
        """Market id → signed amount, from ``ACCOUNT_UPDATE``."""

    def check_order(self, report: OrderReport) -> None:
        """An order as REST shows it: filled beyond what the stream delivered for it (and
        beyond what was suspected of it before), the stream lost its trades: its symbol is
        swept."""
        seen = self.orders.get(report.client_order_id)
        known = max(
            seen.filled_qty if seen is not None else ZERO,
            self._checked_orders.get(report.client_order_id, ZERO),
        )
        if report.filled_qty > known:
            self._checked_orders[report.client_order_id] = report.filled_qty
            while len(self._checked_orders) > 10_000:
                self._checked_orders.popitem(last=False)
            self._suspect(report.symbol, "order-gap")

    def check_positions(self, reports: Mapping[str, Decimal]) -> None:
        """Positions as REST shows them (canonical symbol → quantity): one the stream's
        ``ACCOUNT_UPDATE`` never reached (and not suspected at that quantity before), the
        stream lost its trades: it is swept."""
        streamed = self.streamed_positions()
        for symbol, qty in reports.items():
            if qty != streamed.get(symbol, ZERO) and self._checked_positions.get(symbol) != qty:
                self._checked_positions[symbol] = qty
                self._suspect(symbol, "position-gap")

    def streamed_positions(self) -> dict[str, Decimal]:
        """Canonical symbol → the quantity the last ``ACCOUNT_UPDATE`` of it said."""
        out = {}
        for market_id, qty in self.positions.items():
            symbol = self.symbol_of(market_id)
            if symbol is not None:
                out[symbol] = qty
        return out

    def on_positions(self, message: Mapping[str, Any]) -> None:
        for market_id, qty in read_positions(message).items():
            self.positions[market_id] = qty

    def symbol_of(self, market_id: str) -> str | None:
        markets = (self._venue.exchange.markets_by_id or {}).get(market_id) or []
        for market in markets:
            if market.get("swap") or market.get("spot"):
                return self._venue.canonical(str(market["symbol"]))
        self.stats["unknown_symbol"] += 1
        return None

    def on_order_update(self, message: Mapping[str, Any]) -> None:
        update = read_order_update(
            message, venue=self._venue.name, account=self._venue.account, symbol_of=self.symbol_of
        )
        self.stats["order_updates"] += 1
        rep = update.order
        before = self.orders.get(rep.client_order_id)
        if before is not None and before.status in TERMINAL and rep.status.is_open:
            self.stats["out_of_order"] += 1
            log.warning(
                "%s user stream: %s %s after %s: status ignored",
                self._venue.name,
                rep.client_order_id,
                rep.status,
                before.status,
            )
        else:
            self.orders[rep.client_order_id] = rep
            self.orders.move_to_end(rep.client_order_id)
            while len(self.orders) > KEPT_ORDERS:
                self.orders.popitem(last=False)
        if update.fill is not None:
            self._on_fill(update.market_id, update.fill)

    def _on_fill(self, market_id: str, fill: FillReport) -> None:
        tid = fill.trade_id
        if tid in self.seen:
            self.stats["duplicate_stream"] += 1
            log.info("%s user stream: trade %s sent again: skipped", self._venue.name, tid)
            return
        self.seen[tid] = None
        while len(self.seen) > SEEN_TRADES:
            self.seen.popitem(last=False)
        msym = self._venue.market_symbol(fill.symbol)
        reported = self._venue.trades.reported.setdefault(msym, {})
        if tid in reported:
            self.stats["duplicate_rest"] += 1
            log.info(
                "%s user stream: trade %s already swept by REST: skipped", self._venue.name, tid
            )
            return
        reported[tid] = fill.ts_ms
        known = self._venue.coid_by_order.get(str(fill.venue_order_id))
        if known is None and not OWN_COID.match(fill.client_order_id):
            self.stats["foreign_order"] += 1
            log.warning(
                "%s user stream: fill %s of order %s (%s) not ours: reported, the core decides",
                self._venue.name,
                tid,
                fill.venue_order_id,
                fill.client_order_id,
            )
        self.stats["fills"] += 1
        self.buffer.append(fill)
        self._wake()

    def position_symbols(self) -> frozenset[str]:
        """Canonical symbols of the non-flat positions the stream reported."""
        out = set()
        for market_id, qty in self.positions.items():
            if qty != ZERO:
                symbol = self.symbol_of(market_id)
                if symbol is not None:
                    out.add(symbol)
        return frozenset(out)

    def take_fills(self) -> list[FillReport]:
        fills, self.buffer = self.buffer, []
        return fills
