"""The venue's own prices: the reference prices of the risk guard, the marks of `/status`
and, for the paper venue, the book it fills against.

Where they come from (`quote_feed_for`, config ``[market]`` and each venue's ``paper``
table; one feed per venue, each from its own entry of ``[venue]`` / ``[venues.<name>]``):

- ``venue.kind = "ccxt"``: the venue itself, public endpoints of ``venue.exchange_id`` at
  ``venue.base_url`` (`adapters/venue/quotes.CcxtQuoteFeed`: websocket book ticker where
  ccxt.pro has one, REST every ``market.poll_interval_ms`` for the books it has not heard
  of for that long; ccxt's rate limiter per ``venue.enable_rate_limit`` / ``rate_limit_ms``).
- ``venue.kind = "paper"``: the public market data of ``venue.paper.prices_exchange_id``
  (at ``prices_base_url``) when set, and the paper venue fills against the same quotes the
  risk guard prices with; unset, NATS tickers only (as before).
- ``market.venue_prices = false``: NATS tickers only, whatever the venue.

A quote is stamped with the time it arrived (the venue's own book is current when it
answers; its clock is not ours) and goes into `MarketData` (`runtime/market.py`) beside the
NATS tickers; one that became current is also handed to the venue (`Venue.on_ticker`).

Symbols: the policy's whitelist (the configured policy file's until the stream holds a
policy) and every symbol with a position or an open order on the venue, re-read at every
poll (`symbols_to_price`).

Roles: both run it. The active decides with these prices; a standby keeps them current as
it keeps its NATS tickers and equity (hot: its first decision after a takeover has a
price, and its `/status` has marks). The feed only reads public market data.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from titan_exec.adapters.venue.base import Venue
from titan_exec.adapters.venue.quotes import CcxtQuoteFeed, QuoteFeedSettings
from titan_exec.config import BUNDLED_POLICY_FILE, Config, VenueConfig
from titan_exec.core.policy import parse_policy
from titan_exec.core.state import State
from titan_exec.runtime.market import BoundedLog, MarketData

if TYPE_CHECKING:
    from titan_exec.api.metrics import Metrics

log = logging.getLogger(__name__)

RESTART_S = 5.0
"""A feed that ended with an unexpected error is started again after this long."""


def quote_feed_for(cfg: Config, venue: VenueConfig | None = None) -> CcxtQuoteFeed | None:
    """The configured source of one venue's own prices (module docstring; `venue`: that
    venue's entry, the default's when None), or None."""
    m, v = cfg.market, venue or cfg.venue
    if not m.venue_prices:
        return None
    if v.kind == "ccxt":
        settings = QuoteFeedSettings(
            exchange_id=v.exchange_id,
            is_testnet=v.testnet,
            base_url=v.base_url,
            timeout_ms=v.timeout_ms,
            enable_rate_limit=v.enable_rate_limit,
            rate_limit_ms=v.rate_limit_ms,
            poll_interval_ms=m.poll_interval_ms,
            use_websocket=m.websocket,
        )
    elif v.paper.prices_exchange_id:
        settings = QuoteFeedSettings(
            exchange_id=v.paper.prices_exchange_id,
            is_testnet=v.paper.prices_testnet,
            base_url=v.paper.prices_base_url,
            poll_interval_ms=m.poll_interval_ms,
            use_websocket=m.websocket,
        )
    else:
        return None
    return CcxtQuoteFeed(settings)


def policy_whitelist(path: str) -> frozenset[str]:
    """The whitelist of the configured policy file (checked at load: it parses)."""
    doc = json.loads(Path(path or BUNDLED_POLICY_FILE).read_text())
    return parse_policy(doc).symbol_whitelist


def symbols_to_price(state: State, venue: str, whitelist: frozenset[str]) -> frozenset[str]:
    """The whitelist of the state's policy (`whitelist` before there is one), and the
    symbols with a position or an open order on `venue`."""
    wanted = set(state.policy.symbol_whitelist if state.policy is not None else whitelist)
    wanted.update(s for (v, s), pos in state.positions.items() if v == venue and not pos.is_flat)
    wanted.update(s for (v, s), coids in state.open_orders.items() if v == venue and coids)
    return frozenset(wanted)


class VenuePrices:
    """Runs one venue's feed (if any) as one task in every role and routes what it reads
    (one per venue: `runtime/venues.py`)."""

    def __init__(
        self,
        cfg: Config,
        *,
        market: MarketData,
        venue: Venue,
        state: Callable[[], State],
        metrics: Metrics,
        venue_cfg: VenueConfig | None = None,
    ) -> None:
        self.feed = quote_feed_for(cfg, venue_cfg)
        self._market = market
        self._venue = venue
        self._state = state
        self._metrics = metrics
        self._whitelist = policy_whitelist(cfg.risk.policy_file) if self.feed else frozenset()
        self._warn = BoundedLog(log)
        self._task: asyncio.Task[None] | None = None

    def symbols(self) -> frozenset[str]:
        return symbols_to_price(self._state(), self._venue.name, self._whitelist)

    def describe(self) -> str:
        if self.feed is None:
            return f"reference prices for {self._venue.name}: NATS tickers only"
        return f"reference prices for {self._venue.name}: {self.feed.describe()}; NATS tickers too"

    def start(self) -> None:
        log.info("%s", self.describe())
        if self.feed is not None and self._task is None:
            name = f"venue-prices:{self._venue.name}"
            self._task = asyncio.create_task(self._run(self.feed), name=name)

    async def _run(self, feed: CcxtQuoteFeed) -> None:
        while True:
            try:
                await feed.run(self.symbols, self._on_quote, on_error=self._on_error)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("venue prices: the feed failed; starting it again in %s s", RESTART_S)
                self._metrics.market_feed_errors.labels("feed").inc()
            await asyncio.sleep(RESTART_S)

    def _on_quote(self, symbol: str, bid: object, ask: object, transport: str) -> None:
        name = self._venue.name
        ticker = self._market.on_venue_quote(name, symbol, bid, ask, transport)
        if ticker is not None:
            self._venue.on_ticker(symbol, ticker.bid, ticker.ask, ticker.ts_ms)

    def _on_error(self, transport: str, err: BaseException) -> None:
        self._metrics.market_feed_errors.labels(transport).inc()
        self._warn.warning(
            transport, "venue prices (%s) unavailable: %s: %s", transport, type(err).__name__, err
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=5.0)
        if self.feed is not None:
            await self.feed.close()


def venue_prices(
    cfg: Config,
    venues: Iterable[Venue],
    *,
    market: MarketData,
    state: Callable[[], State],
    metrics: Metrics,
) -> list[VenuePrices]:
    """One `VenuePrices` per venue, each from its own configuration entry."""
    entries = {v.name: v for v in cfg.venue_list}
    return [
        VenuePrices(
            cfg,
            market=market,
            venue=venue,
            state=state,
            metrics=metrics,
            venue_cfg=entries.get(venue.name),
        )
        for venue in venues
    ]
