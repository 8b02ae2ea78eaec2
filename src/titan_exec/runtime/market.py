"""Market data and brain liveness as the shell sees them (tickers, heartbeats, equity)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from titan_exec.core.risk import MarketView, Ticker
from titan_exec.core.state import PositionKey
from titan_exec.wire.canonical import js_decimal, parse_json_strict
from titan_exec.wire.errors import WireError
from titan_exec.wire.subjects import symbol_from_token
from titan_exec.wire.text import has_raw_bytes, has_surrogates, printable_subject

log = logging.getLogger(__name__)

TICKER_MAX_BYTES = 16 * 1024
TICKER_MAX_VALUES = 64
"""A ticker is a few fields: anything larger is refused before it is parsed."""


def _price(value: object) -> Decimal:
    """A price as a JSON string or number (a number as the double JavaScript holds)."""
    if isinstance(value, str) and len(value) <= 64:
        return Decimal(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return js_decimal(value)
    raise TypeError("a price is a string or a number")


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
        self.heartbeat_source = printable_subject(subject)[:200]

    def on_ticker(self, subject: str, data: bytes) -> tuple[str, str, Ticker] | None:
        """``titan.data.market.ticker.v1.<venue>.<symbol>`` with ``{"bid","ask","ts"}``.

        Venue and symbol are tokens 5 and 6 (the old service read the wrong tokens).
        A ticker that cannot be read is counted and ignored (market data is not a command).
        """
        parts = subject.split(".")
        if len(parts) != 7 or has_raw_bytes(subject) or has_surrogates(subject):
            self.bad_tickers += 1
            return None
        venue, symbol = parts[5], symbol_from_token(parts[6])
        try:
            doc = parse_json_strict(
                data, max_bytes=TICKER_MAX_BYTES, max_depth=4, max_values=TICKER_MAX_VALUES
            )
            if not isinstance(doc, dict):
                raise TypeError("a ticker is an object")
            bid = _price(doc["bid"])
            ask = _price(doc["ask"])
            ts_raw = doc.get("ts") or doc.get("timestamp") or self._clock()
            if isinstance(ts_raw, bool) or not isinstance(ts_raw, int):
                raise TypeError("ts is an integer")
            ts = ts_raw
        except (WireError, ValueError, KeyError, TypeError, InvalidOperation):
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
