"""Market data and brain liveness as the shell sees them (tickers, heartbeats, equity)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from titan_exec.core.risk import MarketView, Ticker
from titan_exec.core.state import PositionKey
from titan_exec.wire.subjects import symbol_from_token

log = logging.getLogger(__name__)


class MarketData:
    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self.tickers: dict[PositionKey, Ticker] = {}
        self.equity: dict[str, Decimal] = {}
        self.last_heartbeat_ms: int | None = None
        self.heartbeat_source = ""
        self.bad_tickers = 0

    def on_heartbeat(self, subject: str) -> None:
        self.last_heartbeat_ms = self._clock()
        self.heartbeat_source = subject

    def on_ticker(self, subject: str, data: bytes) -> tuple[str, str, Ticker] | None:
        """``titan.data.market.ticker.v1.<venue>.<symbol>`` with ``{"bid","ask","ts"}``.

        Venue and symbol are tokens 5 and 6 (the old service read the wrong tokens).
        A ticker that cannot be read is counted and ignored (market data is not a command).
        """
        parts = subject.split(".")
        if len(parts) != 7:
            self.bad_tickers += 1
            return None
        venue, symbol = parts[5], symbol_from_token(parts[6])
        try:
            doc = json.loads(data)
            bid = Decimal(str(doc["bid"]))
            ask = Decimal(str(doc["ask"]))
            ts = int(doc.get("ts") or doc.get("timestamp") or self._clock())
        except (ValueError, KeyError, TypeError, InvalidOperation):
            self.bad_tickers += 1
            return None
        if not (bid.is_finite() and ask.is_finite()) or bid <= 0 or ask < bid:
            self.bad_tickers += 1
            return None
        ticker = Ticker(bid=bid, ask=ask, ts_ms=ts)
        self.tickers[(venue, symbol)] = ticker
        return venue, symbol, ticker

    def view(self) -> MarketView:
        return MarketView(
            now_ms=self._clock(),
            last_heartbeat_ms=self.last_heartbeat_ms,
            tickers=self.tickers,
            equity=self.equity,
        )

    def mark(self, venue: str, symbol: str) -> Decimal | None:
        t = self.tickers.get((venue, symbol))
        return t.mid if t is not None else None
