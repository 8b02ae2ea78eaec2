"""The ccxt venue's fills: its trades polled per symbol, by a cursor of its own.

The trades of a symbol are read by time from the newest trade seen minus a rescan window
(a trade id cursor would step over a trade shown late), page by page; a trade already
reported is skipped by id, and so is a trade the service already recorded as a fill
(`is_recorded`, the state's seen fills: after a takeover the lookback window holds the
earlier active's trades). A trade carries the venue order id, mapped back to our client
order id (from the place's answer, a query, or the order itself — one REST call — for an
order the previous active placed). The cursor travels as an opaque JSON text; `None`
means "from the start of this session".
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.base import VenueRejected
from titan_exec.adapters.venue.ccxt_answers import dec
from titan_exec.adapters.venue.ccxt_setup import CcxtSettings
from titan_exec.core.model import ClientOrderId, Side, VenueOrderId
from titan_exec.core.reports import FillReport

if TYPE_CHECKING:
    from titan_exec.adapters.venue.ccxt_venue import CcxtVenue

log = logging.getLogger(__name__)
T = TypeVar("T")

TRADES_PAGE = 1000
"""Trades per `userTrades` call (Binance's maximum)."""


class TradeCursor:
    def __init__(self, venue: CcxtVenue, settings: CcxtSettings, *, started_ms: int) -> None:
        self._venue = venue
        self._settings = settings
        self._started_ms = started_ms
        self.newest_trade_ms: dict[str, int] = {}
        self.reported: dict[str, dict[str, int]] = {}
        """Per market symbol: trade id → trade time of the trades reported as fills (those
        within two rescan windows of the newest: older ones are never read again)."""
        self.symbols: set[str] = set()
        """The market symbols known: every one ordered, queried or named (polled when the
        caller names no symbols)."""
        self.nonflat: frozenset[str] = frozenset()
        """The market symbols of the venue's last position answer that were not flat:
        swept beside the symbols asked for (a trade behind our back moves them)."""
        self.skipped: list[str] = []
        """The trade ids the last `fills_since` read and skipped as already reported (the
        user-data stream counts those it had delivered)."""
        self.is_recorded: Callable[[str, int], bool] | None = None
        """(trade id, trade time) → already recorded as a fill: read, never reported."""

    def note_positions(self, nonflat: frozenset[str]) -> None:
        """The venue's last position answer: its non-flat market symbols."""
        self.nonflat = nonflat

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        return await self._venue.read(call, is_essential=True)  # fills: orders' outcomes

    async def fills_since(
        self, cursor: str | None, symbols: frozenset[str] | None = None
    ) -> tuple[list[FillReport], str | None]:
        venue = self._venue
        self.skipped = []
        if cursor is None:
            # None: from the start of this session (the Venue contract), not from where an
            # earlier runner of this process left off. A fenced active that rejoins in
            # process keeps this object; trades it read but could not record as fills
            # (fenced meanwhile) must be read again when it leads again. The fold drops
            # the fills it already has (`seen_fills`).
            self.newest_trade_ms = {}
            self.reported = {}
        elif cursor:
            for sym, newest in json.loads(cursor).items():
                self.newest_trade_ms[sym] = max(self.newest_trade_ms.get(sym, 0), int(newest))
                self.symbols.add(sym)
        for symbol in symbols or ():
            # orders another instance placed (before a takeover) are polled too
            with contextlib.suppress(VenueRejected):
                self.symbols.add(venue.market_symbol(symbol))
        fills: list[FillReport] = []
        for msym in sorted(self.swept(symbols)):
            fills += await self._new_fills(msym)
        return fills, json.dumps(self.newest_trade_ms, sort_keys=True)

    def swept(self, symbols: frozenset[str] | None) -> set[str]:
        """The market symbols a poll reads: those asked for (canonical; None: every one
        known) and the non-flat positions. Another keeps its cursor: nothing is skipped,
        only read later."""
        if symbols is None:
            return self.symbols | self.nonflat
        venue = self._venue
        return {m for m in self.symbols if venue.canonical(m) in symbols} | self.nonflat

    async def _new_fills(self, msym: str) -> list[FillReport]:
        """The trades of `msym` not reported yet, read by time from the newest trade seen
        minus the rescan window (a trade id cursor would step over a trade shown late),
        page by page."""
        newest = self.newest_trade_ms.get(msym)
        if newest is None:
            since = self._started_ms - self._settings.fill_lookback_ms
        else:
            since = newest - self._settings.fill_rescan_ms
        reported = self.reported.setdefault(msym, {})
        fills: list[FillReport] = []
        while True:
            trades: list[Any] = await self._read(
                partial(self._venue.exchange.fetch_my_trades, msym, since, TRADES_PAGE, {})
            )
            for trade in trades:
                tid = str(trade.get("id"))
                if tid in reported:
                    self.skipped.append(tid)
                    continue
                ts_ms = int(trade.get("timestamp") or 0)
                if self.is_recorded is not None and self.is_recorded(tid, ts_ms):
                    reported[tid] = ts_ms  # recorded before (an earlier active, a sweep)
                    continue
                fill = await self._fill(msym, trade)
                if fill is not None:
                    fills.append(fill)
                reported[tid] = int(trade.get("timestamp") or 0)
            if len(trades) < TRADES_PAGE:
                break
            last_ms = max(int(t.get("timestamp") or 0) for t in trades)
            if last_ms <= since:
                # a whole page in one millisecond: the next poll goes on (ids dedupe)
                log.warning("%s: %d trades in one millisecond at %d", msym, len(trades), since)
                break
            since = last_ms  # the same millisecond again: its trades are skipped by id
        if reported:
            newest = max(reported.values())
            self.newest_trade_ms[msym] = newest
            horizon = newest - 2 * self._settings.fill_rescan_ms
            for tid in [t for t, ms in reported.items() if ms < horizon]:
                del reported[tid]
        return fills

    async def _fill(self, msym: str, trade: Mapping[str, Any]) -> FillReport | None:
        info = trade.get("info") or {}
        oid = str(trade.get("order"))
        coid = self._venue.coid_by_order.get(oid)
        if coid is None:
            try:
                order = await self._read(lambda: self._venue.exchange.fetch_order(oid, msym))
                coid = self._venue.report(order).client_order_id
                self._venue.coid_by_order[oid] = coid  # an order placed by the previous active
            except cx.OrderNotFound:
                coid = ClientOrderId(f"venue-{oid}")
        fee = trade.get("fee") or {}
        return FillReport(
            venue=self._venue.name,
            account=self._venue.account,
            symbol=self._venue.canonical(msym),
            client_order_id=coid,
            venue_order_id=VenueOrderId(oid),
            trade_id=str(trade.get("id")),
            side=Side.BUY if trade.get("side") == "buy" else Side.SELL,
            price=dec(info.get("price"), trade.get("price")),
            qty=dec(info.get("qty"), trade.get("amount")),
            fee=dec(info.get("commission"), fee.get("cost")),
            fee_currency=str(info.get("commissionAsset") or fee.get("currency") or "USDT"),
            ts_ms=int(trade.get("timestamp") or 0),
        )
