"""A venue's own book tickers through ccxt: its websocket where ccxt.pro has one, REST else.

`CcxtQuoteFeed.run(symbols, on_quote)` runs until cancelled, with two loops:

- **websocket**: ``watch_bids_asks(symbols)`` (the venue's book-ticker stream; Binance
  USDⓈ-M: ``<symbol>@bookTicker`` on ``/public/ws``) when the exchange ``has`` it, else
  ``watch_tickers(symbols)``, else none. The client is rebuilt when the set of symbols
  changes and after an error (retried after 1 s, doubling to 30 s).
- **REST**: every `poll_interval_ms`, the symbols with no quote for that long — all of
  them without a websocket, the quiet or disconnected ones with one — in one
  ``fetch_bids_asks`` call where the exchange has it (Binance USDⓈ-M: ``GET
  /fapi/v1/ticker/bookTicker``, weight 2 for one symbol, 5 for all), else one
  ``fetch_ticker`` per symbol. ccxt's rate limiter paces the calls (``enableRateLimit``,
  ``rateLimit``), on a client of its own: ticker reads never queue behind order calls.

Only public endpoints are called (no credentials). Quotes are handed over as ccxt gives
them (floats) with the transport that brought them; the caller converts and checks them
(`wire/ticker.venue_quote`). `base_url` moves every REST and websocket host (the
simulator): ``wss://fstream.binance.com/ws`` becomes ``ws://<host>/ws`` for an http base.
Symbols are canonical (``BTC/USDT``) on both sides; a symbol the venue does not list is
skipped (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
import ccxt.pro as ccxt_pro  # type: ignore[import-untyped]

from titan_exec.adapters.venue.ccxt_setup import rebase_tree

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0

OnQuote = Callable[[str, object, object, str], None]
"""(canonical symbol, bid, ask, transport `ws` | `rest`)"""


@dataclass(frozen=True)
class QuoteFeedSettings:
    exchange_id: str
    is_testnet: bool = False
    base_url: str = ""
    """Override of every API host, REST and websocket (the simulator, a proxy)."""
    timeout_ms: int = 5000
    enable_rate_limit: bool = True
    rate_limit_ms: int = 0
    """ccxt's `rateLimit` (ms per unit of request cost); 0: ccxt's value for the venue."""
    poll_interval_ms: int = 1000
    use_websocket: bool = True


rebase_urls = rebase_tree
"""ccxt's ``urls['api']`` with every host replaced by `base`'s (`ccxt_setup.rebase_tree`)."""


def _ssl_context(cafile: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def market_symbol(markets: dict[str, Any], symbol: str) -> str | None:
    """Canonical ``BTC/USDT`` → the venue's linear swap (``BTC/USDT:USDT``) when listed, else
    the spot market, else None (as the ccxt venue maps its orders)."""
    quote = symbol.partition("/")[2]
    for candidate in (f"{symbol}:{quote}", symbol):
        if candidate in markets:
            return candidate
    return None


class CcxtQuoteFeed:
    def __init__(self, settings: QuoteFeedSettings) -> None:
        rest_cls = getattr(ccxt_async, settings.exchange_id, None)
        if rest_cls is None:
            raise ValueError(f"ccxt has no exchange {settings.exchange_id!r}")
        self.settings = settings
        self._pro_cls: Any = getattr(ccxt_pro, settings.exchange_id, None)
        self._rest: Any = self._client(self._pro_cls or rest_cls)
        self._ws: Any = None
        self.ws_method = self._ws_method()
        """The websocket call used (`watch_bids_asks`, `watch_tickers`) or None: REST only."""
        self.last_quote_s: dict[str, float] = {}
        """Canonical symbol → monotonic time of its last quote (either transport)."""
        self.errors: Counter[str] = Counter()
        self.is_ws_connected = False
        self._ssl_context: ssl.SSLContext | None = None
        self._unlisted: set[str] = set()
        self._on_error: Callable[[str, BaseException], None] = lambda transport, err: None

    def __repr__(self) -> str:
        return f"CcxtQuoteFeed({self.settings.exchange_id!r}, ws={self.ws_method})"

    @property
    def poll_s(self) -> float:
        return self.settings.poll_interval_ms / 1000

    def describe(self) -> str:
        """One line: where the prices come from and how often."""
        rest = "fetch_bids_asks" if self._rest.has.get("fetchBidsAsks") else "fetch_ticker"
        ws = f"websocket {self.ws_method}, " if self.ws_method else ""
        quiet = " for books quiet that long" if self.ws_method else ""
        return (
            f"{self.settings.exchange_id}: {ws}REST {rest} every "
            f"{self.settings.poll_interval_ms} ms{quiet}"
        )

    def _client(self, cls: Any) -> Any:
        s = self.settings
        config: dict[str, Any] = {
            "enableRateLimit": s.enable_rate_limit,
            "timeout": s.timeout_ms,
            "options": {"fetchCurrencies": False, "fetchMargins": False},
        }
        if s.rate_limit_ms:
            config["rateLimit"] = s.rate_limit_ms
        exchange = cls(config)
        if s.is_testnet:
            exchange.set_sandbox_mode(True)
        if s.base_url:
            exchange.urls["api"] = rebase_urls(exchange.urls["api"], s.base_url)
        return exchange

    def _ws_method(self) -> str | None:
        if not self.settings.use_websocket or self._pro_cls is None:
            return None
        has = self._rest.has
        if has.get("watchBidsAsks"):
            return "watch_bids_asks"
        if has.get("watchTickers"):
            return "watch_tickers"
        return None

    # --- running --------------------------------------------------------------------------

    async def run(
        self,
        symbols: Callable[[], frozenset[str]],
        on_quote: OnQuote,
        *,
        on_error: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """Both loops until cancelled; `on_error(transport, error)` for each failed read."""
        if on_error is not None:
            self._on_error = on_error
        if self._ssl_context is None:
            # ccxt builds one per client on its first request, on the event loop: loading the
            # CA bundle takes ~30 ms idle, over 100 ms on a busy machine (a lease-watchdog
            # stall in the pair tests); built once, in a thread, and given to every client
            self._ssl_context = await asyncio.to_thread(_ssl_context, self._rest.cafile)
            self._rest.ssl_context = self._ssl_context
        await self._load_markets()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._rest_loop(symbols, on_quote), name="quotes-rest")
            if self.ws_method is not None:
                tg.create_task(self._ws_loop(symbols, on_quote), name="quotes-ws")

    async def _load_markets(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                await self._rest.load_markets()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._failed("markets", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _failed(self, transport: str, err: BaseException) -> None:
        self.errors[transport] += 1
        self._on_error(transport, err)

    def _market_symbols(self, symbols: frozenset[str]) -> dict[str, str]:
        """market symbol → canonical, for the symbols the venue lists."""
        out: dict[str, str] = {}
        for symbol in sorted(symbols):
            msym = market_symbol(self._rest.markets or {}, symbol)
            if msym is not None:
                out[msym] = symbol
            elif symbol not in self._unlisted:
                self._unlisted.add(symbol)
                log.warning(
                    "%s does not list %s: no prices for it", self.settings.exchange_id, symbol
                )
        return out

    def _deliver(
        self,
        tickers: dict[str, Any],
        wanted: dict[str, str],
        on_quote: OnQuote,
        transport: str,
        *,
        asked_s: float | None = None,
    ) -> None:
        """Hand each quote over; its symbol counts as quoted when it was asked for (REST:
        the poll's start, so the next poll finds it due again) or when it arrived (ws)."""
        at = time.monotonic() if asked_s is None else asked_s
        for msym, ticker in tickers.items():
            symbol = wanted.get(msym)
            if symbol is None or not isinstance(ticker, dict):
                continue
            self.last_quote_s[symbol] = max(at, self.last_quote_s.get(symbol, at))
            on_quote(symbol, ticker.get("bid"), ticker.get("ask"), transport)

    async def _rest_loop(self, symbols: Callable[[], frozenset[str]], on_quote: OnQuote) -> None:
        while True:
            began = time.monotonic()
            wanted = self._market_symbols(symbols())
            due = {
                msym: symbol
                for msym, symbol in wanted.items()
                if began - self.last_quote_s.get(symbol, float("-inf")) >= self.poll_s * 0.9
            }
            if due:
                try:
                    await self._poll(due, on_quote)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    self._failed("rest", err)
            await asyncio.sleep(max(0.0, self.poll_s - (time.monotonic() - began)))

    async def _poll(self, due: dict[str, str], on_quote: OnQuote) -> None:
        asked = time.monotonic()
        if self._rest.has.get("fetchBidsAsks"):
            tickers = await self._rest.fetch_bids_asks(sorted(due))
            self._deliver(tickers, due, on_quote, "rest", asked_s=asked)
            return
        for msym in sorted(due):
            asked = time.monotonic()
            ticker = await self._rest.fetch_ticker(msym)
            self._deliver({msym: ticker}, due, on_quote, "rest", asked_s=asked)

    async def _ws_loop(self, symbols: Callable[[], frozenset[str]], on_quote: OnQuote) -> None:
        delay = RETRY_FIRST_S
        while True:
            wanted = self._market_symbols(symbols())
            if not wanted:
                await asyncio.sleep(self.poll_s)
                continue
            try:
                await self._stream(wanted, symbols, on_quote)
                delay = RETRY_FIRST_S  # the set of symbols changed: subscribe again at once
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._failed("ws", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _stream(
        self, wanted: dict[str, str], symbols: Callable[[], frozenset[str]], on_quote: OnQuote
    ) -> None:
        """Watch `wanted` on a fresh client until the set of symbols changes (returns) or
        the stream fails (raises). A watch outlives the periodic check of the symbol set:
        it is never cancelled mid-wait, only when the client goes."""
        assert self.ws_method is not None
        # ~10 ms of Python on an idle machine, several times that on a busy one: built in a
        # thread (it binds no event loop before its first request), never on the loop
        client = await asyncio.to_thread(self._ws_client)
        self._ws = client
        watch = getattr(client, self.ws_method)
        pending: asyncio.Future[Any] | None = None
        delivered: dict[str, Any] = {}
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(watch(sorted(wanted)))
                done, _ = await asyncio.wait({pending}, timeout=self.poll_s)
                if pending in done:
                    tickers = pending.result()
                    pending = None
                    self.is_ws_connected = True
                    self._deliver(
                        self._new_since(client, tickers, delivered), wanted, on_quote, "ws"
                    )
                if self._market_symbols(symbols()) != wanted:
                    return
        finally:
            self.is_ws_connected = False
            self._ws = None
            if pending is not None:
                pending.cancel()  # waited for, never awaited: our own cancel must go on
                await asyncio.wait({pending}, timeout=1.0)
                if pending.done() and not pending.cancelled():
                    pending.exception()  # retrieved: the stream is going anyway
            with contextlib.suppress(Exception):
                await client.close()

    def _ws_client(self) -> Any:
        client = self._client(self._pro_cls)
        client.ssl_context = self._ssl_context
        client.set_markets(self._rest.markets, self._rest.currencies)
        return client

    def _new_since(
        self, client: Any, tickers: dict[str, Any], delivered: dict[str, Any]
    ) -> dict[str, Any]:
        """What the watch returned and every other symbol's ticker that ccxt cached since
        the last delivery. A watch over several symbols returns the first message only
        (``newUpdates``); the others of the same moment are in ccxt's cache
        (``bidsasks`` / ``tickers``), one new object per message."""
        cache = client.bidsasks if self.ws_method == "watch_bids_asks" else client.tickers
        fresh = dict(tickers)
        for msym, ticker in (cache or {}).items():
            if msym not in fresh and delivered.get(msym) is not ticker:
                fresh[msym] = ticker
        for msym, ticker in fresh.items():
            delivered[msym] = cache.get(msym, ticker) if cache else ticker
        return fresh

    async def close(self) -> None:
        for client in (self._ws, self._rest):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
