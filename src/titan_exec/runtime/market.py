"""Market data and brain liveness as the shell sees them (tickers, heartbeats, equity).

Tickers come from two inputs (README "Venues"): the venue's own book ticker
(`runtime/quotes.py`: ccxt websocket or REST, stamped with the time they arrived) and the
optional NATS subject ``titan.data.market.ticker.v1.<venue>.<symbol>`` (our shape or
Binance's BookTicker, `wire/ticker.py`). Per (venue, symbol) one ticker is current: a new
one replaces it when it comes from the same input (arrival order) or is at least as new
(its time). What cannot be used is counted by input and reason
(``titan_exec_market_tickers_refused_total{source,reason}``, `refused`) and logged at most
once per reason per `LOG_EVERY_S`, with the number of refusals that line stands for.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from titan_exec.core.risk import MarketView, Ticker
from titan_exec.core.state import PositionKey
from titan_exec.wire.text import printable_subject
from titan_exec.wire.ticker import (
    TICKER_MAX_BYTES,
    TICKER_MAX_VALUES,
    TickerRefused,
    parse_ticker_message,
    venue_quote,
)

if TYPE_CHECKING:
    from titan_exec.api.metrics import Metrics

__all__ = ["LOG_EVERY_S", "TICKER_MAX_BYTES", "TICKER_MAX_VALUES", "BoundedLog", "MarketData"]

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
"""At most one log line per (input, reason) this often."""

NATS = "nats"
"""The `source` of tickers read from the NATS subject; the venue's own are `ws` / `rest`."""


class BoundedLog:
    """Warnings at a bounded rate: one line per key per `every_s`, the next line saying how
    many were suppressed in between. Nothing is dropped silently: the count is in the line."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every_s: float = LOG_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._every_s = every_s
        self._monotonic = monotonic
        self._last: dict[Any, float] = {}
        self._suppressed: Counter[Any] = Counter()

    def warning(self, key: Any, msg: str, *args: object) -> bool:
        """Log now, or count it for the next line of `key`; True when a line was written."""
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._every_s:
            self._suppressed[key] += 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += " (%d more like it in the last %.0f s)"
            args = (*args, suppressed, now - last if last is not None else 0.0)
        self._log.warning(msg, *args)
        return True


class MarketData:
    def __init__(
        self,
        clock: Callable[[], int],
        *,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._metrics = metrics
        self.tickers: dict[PositionKey, Ticker] = {}
        self.sources: dict[PositionKey, str] = {}
        """The input of each current ticker: `nats`, `ws` or `rest`."""
        self.equity: dict[str, Decimal] = {}
        self.last_heartbeat_ms: int | None = None
        self.heartbeat_source = ""
        self.refused: Counter[tuple[str, str]] = Counter()
        """(source, reason) -> tickers refused."""
        self._warn = BoundedLog(log, monotonic=monotonic)

    @property
    def bad_tickers(self) -> int:
        """NATS ticker messages that could not be read."""
        return sum(n for (source, _), n in self.refused.items() if source == NATS)

    def on_heartbeat(self, subject: str) -> None:
        self.last_heartbeat_ms = self._clock()
        self.heartbeat_source = printable_subject(subject)[:200]

    def on_ticker(self, subject: str, data: bytes) -> tuple[str, str, Ticker] | None:
        """A NATS ticker (`wire/ticker.py`: ``{"bid","ask","ts"}`` or a BookTicker); venue
        and symbol are tokens 5 and 6. Returns it when it became the current ticker; one
        that cannot be read is counted, logged (bounded) and ignored (market data is not a
        command: no dead letter)."""
        seen = parse_ticker_message(subject, data, now_ms=self._clock())
        if isinstance(seen, TickerRefused):
            self._refuse(NATS, seen, printable_subject(subject)[:200])
            return None
        if not self._offer((seen.venue, seen.symbol), seen.ticker, NATS):
            return None
        return seen.venue, seen.symbol, seen.ticker

    def on_venue_quote(
        self, venue: str, symbol: str, bid: object, ask: object, source: str
    ) -> Ticker | None:
        """The venue's own best bid and ask (ccxt's numbers), stamped now; returned when it
        became the current ticker, counted and logged when it cannot be used."""
        quote = venue_quote(bid, ask, self._clock())
        if isinstance(quote, TickerRefused):
            self._refuse(source, quote, f"{venue} {symbol}")
            return None
        return quote if self._offer((venue, symbol), quote, source) else None

    def _offer(self, key: PositionKey, ticker: Ticker, source: str) -> bool:
        current = self.tickers.get(key)
        is_current = (
            current is None or self.sources.get(key) == source or ticker.ts_ms >= current.ts_ms
        )
        if self._metrics is not None:
            self._metrics.market_quotes.labels(source, "current" if is_current else "older").inc()
        if is_current:
            self.tickers[key] = ticker
            self.sources[key] = source
        return is_current

    def _refuse(self, source: str, refused: TickerRefused, where: str) -> None:
        self.refused[(source, refused.reason)] += 1
        if self._metrics is not None:
            self._metrics.market_tickers_refused.labels(source, refused.reason).inc()
        self._warn.warning(
            (source, refused.reason),
            "ticker refused (%s, %s) from %s: %s",
            source,
            refused.reason,
            where,
            refused.detail,
        )

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

    def status_doc(self) -> dict[str, Any]:
        """For `/status`: each current ticker (input, age) and the refusals by reason."""
        now = self._clock()
        return {
            "tickers": {
                f"{venue}:{symbol}": {
                    "bid": str(t.bid),
                    "ask": str(t.ask),
                    "age_ms": now - t.ts_ms,
                    "source": self.sources.get((venue, symbol)),
                }
                for (venue, symbol), t in sorted(self.tickers.items())
            },
            "refused": {f"{s}:{r}": n for (s, r), n in sorted(self.refused.items())},
        }
