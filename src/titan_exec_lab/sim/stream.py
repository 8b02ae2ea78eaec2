"""The simulator's websocket market streams: Binance USDⓈ-M's individual book-ticker stream.

This module owns `BookTickerStreams`, the aiohttp websocket endpoint and its subscribers.
What it serves is what ccxt.pro's ``binanceusdm.watch_bids_asks(symbols)`` (ccxt 4.5.90,
``ccxt/pro/binance.py``) asks for:

- the URL: ``urls['api']['ws']['linear']`` is ``wss://fstream.binance.com/ws``;
  ``get_ws_url('linear', 'public')`` makes it ``.../public/ws`` (book tickers are a
  "public" channel) and ``watch_multi_ticker_helper`` appends ``/<stream index>``
  (``/public/ws/0``). Served: ``/ws``, ``/public/ws``, ``/market/ws``, each with any tail;
  a tail naming a stream (``/ws/btcusdt@bookTicker``) subscribes to it as Binance does.
- the requests: ``{"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": ["btcusdt@bookTicker",
  ...], "id": n}`` answered ``{"result": null, "id": n}``; ``LIST_SUBSCRIPTIONS`` answered
  with the list. Anything else (unknown method, a stream other than ``<symbol>@bookTicker``
  of a listed symbol, not JSON) is answered ``{"error": {"code": 2, "msg": ...}, "id": n}``,
  which ccxt raises for the waiting watch.
- the messages: ``{"e": "bookTicker", "u": <update id>, "s": "BTCUSDT", "b", "B", "a", "A"
  (decimal strings at the symbol's precision), "T": <ms>, "E": <ms>}`` — sent on subscribe
  and then whenever the symbol's top of book changes (`publish`, called by the simulator's
  tick loop), like Binance's real-time stream.

A connection naming a listen key (``/ws?listenKey=K``, ``/ws/K``) is the user-data stream:
it is handed to `private` (`userstream.UserStreams.serve`).

`close_all` drops every connection (tests: a venue's websocket going away).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from titan_exec.adapters.venue.exchange.engine import Engine
from titan_exec.adapters.venue.exchange.market import Book, fixed

log = logging.getLogger(__name__)

STREAM_PATHS = ("/ws", "/public/ws", "/market/ws")
CHANNEL = "bookTicker"


@dataclass(eq=False)
class _Subscriber:
    ws: web.WebSocketResponse
    symbols: set[str] = field(default_factory=set)
    """Venue symbols (``BTCUSDT``)."""
    sent: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Symbol → the (bid, ask) last sent."""


class BookTickerStreams:
    def __init__(self, engine: Callable[[], Engine], clock: Callable[[], int]) -> None:
        self._engine = engine
        self._clock = clock
        self._subscribers: set[_Subscriber] = set()
        self._update_id = 0
        self.messages_sent = 0
        self.private: Callable[[web.Request, str], Awaitable[web.StreamResponse]] | None = None
        """Where a user-data connection (``/ws?listenKey=K``, ``/ws/K``) is handed over."""

    def add_routes(self, app: web.Application) -> None:
        for path in STREAM_PATHS:
            app.router.add_get(path, self.handle)
            app.router.add_get(path + "/{tail:.*}", self.handle)

    @property
    def connections(self) -> int:
        return len(self._subscribers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info.get("tail", "")
        key = request.query.get("listenKey") or (
            tail if tail and "@" not in tail and "/" not in tail and not tail.isdigit() else ""
        )
        if key and self.private is not None:
            return await self.private(request, key)
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        sub = _Subscriber(ws)
        self._subscribers.add(sub)
        try:
            if "@" in tail:  # a raw stream named in the URL
                await self._subscribe(sub, tail.split("/"), None)
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_request(sub, msg.data)
                elif msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._subscribers.discard(sub)
        return ws

    async def _on_request(self, sub: _Subscriber, text: str) -> None:
        try:
            doc = json.loads(text)
        except ValueError:
            await self._error(sub, None, "Invalid JSON")
            return
        req_id = doc.get("id") if isinstance(doc, dict) else None
        method = doc.get("method") if isinstance(doc, dict) else None
        params = doc.get("params", []) if isinstance(doc, dict) else None
        if method == "LIST_SUBSCRIPTIONS":
            streams = [f"{s.lower()}@{CHANNEL}" for s in sorted(sub.symbols)]
            await sub.ws.send_json({"result": streams, "id": req_id})
        elif method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list):
            if method == "SUBSCRIBE":
                await self._subscribe(sub, params, req_id)
            else:
                for stream in params:
                    if isinstance(stream, str):
                        symbol = stream.partition("@")[0].upper()
                        sub.symbols.discard(symbol)
                        sub.sent.pop(symbol, None)
                await sub.ws.send_json({"result": None, "id": req_id})
        else:
            await self._error(sub, req_id, f"Invalid request: unknown method {method!r}")

    async def _subscribe(self, sub: _Subscriber, streams: list[Any], req_id: Any) -> None:
        specs = self._engine().specs
        symbols = []
        for stream in streams:
            name, _, channel = stream.partition("@") if isinstance(stream, str) else ("", "", "")
            if channel != CHANNEL or name.upper() not in specs:
                await self._error(sub, req_id, f"Invalid request: unknown stream {stream!r}")
                return
            symbols.append(name.upper())
        sub.symbols.update(symbols)
        if req_id is not None:
            await sub.ws.send_json({"result": None, "id": req_id})
        now = self._clock()
        for symbol in symbols:
            await self._send(sub, symbol, now)

    async def _error(self, sub: _Subscriber, req_id: Any, msg: str) -> None:
        await sub.ws.send_json({"error": {"code": 2, "msg": msg}, "id": req_id})

    def message(self, symbol: str, book: Book, now_ms: int) -> dict[str, Any]:
        spec = self._engine().specs[symbol]
        size = fixed(spec.max_qty.scaleb(-2), spec.qty_decimals)
        self._update_id += 1
        return {
            "e": CHANNEL,
            "u": self._update_id,
            "s": symbol,
            "b": fixed(book.bid, spec.price_decimals),
            "B": size,
            "a": fixed(book.ask, spec.price_decimals),
            "A": size,
            "T": now_ms,
            "E": now_ms,
        }

    async def _send(self, sub: _Subscriber, symbol: str, now_ms: int) -> None:
        doc = self.message(symbol, self._engine().book(symbol, now_ms), now_ms)
        sub.sent[symbol] = (doc["b"], doc["a"])
        if not sub.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sub.ws.send_json(doc)
                self.messages_sent += 1

    async def publish(self, now_ms: int, symbols: frozenset[str] | None = None) -> None:
        """Every subscribed symbol (of `symbols`; None: all) whose top of book changed
        since it was last sent."""
        engine = self._engine()
        books: dict[str, Book] = {}
        for sub in list(self._subscribers):
            for symbol in sorted(sub.symbols):
                if symbols is not None and symbol not in symbols:
                    continue
                if symbol not in books:
                    books[symbol] = engine.book(symbol, now_ms)
                book = books[symbol]
                spec = engine.specs[symbol]
                top = (fixed(book.bid, spec.price_decimals), fixed(book.ask, spec.price_decimals))
                if sub.sent.get(symbol) != top:
                    await self._send(sub, symbol, now_ms)

    async def close_all(self) -> None:
        subs, self._subscribers = list(self._subscribers), set()
        await asyncio.gather(*(s.ws.close() for s in subs), return_exceptions=True)
