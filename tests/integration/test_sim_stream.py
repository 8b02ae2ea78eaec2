"""ccxt.pro's real `binanceusdm` client on the simulator's websocket book-ticker stream (and
ccxt's REST book ticker beside it): only the hosts differ from Binance's
(`adapters/venue/quotes.rebase_urls`)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D  # noqa: N817
from typing import Any

import aiohttp
import ccxt.pro as ccxt_pro  # type: ignore[import-untyped]
import pytest
from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.adapters.venue.quotes import rebase_urls
from titan_exec.sim.server import SimSettings, VenueSim

pytestmark = pytest.mark.integration

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


@pytest.fixture
async def sim() -> AsyncIterator[VenueSim]:
    server = VenueSim(SimSettings(port=0, tick_interval_ms=20), EngineConfig(seed=11))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def pro(sim: VenueSim) -> AsyncIterator[Any]:
    exchange = ccxt_pro.binanceusdm(
        {"enableRateLimit": False, "options": {"fetchCurrencies": False}}
    )
    exchange.urls["api"] = rebase_urls(exchange.urls["api"], sim.url)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


async def test_ccxt_pro_watches_the_book_ticker_stream_of_the_symbols_it_names(
    sim: VenueSim, pro: Any
) -> None:
    assert pro.urls["api"]["ws"]["linear"] == sim.url.replace("http://", "ws://") + "/ws"
    seen: dict[str, list[Any]] = {BTC: [], ETH: []}
    deadline = time.monotonic() + 10
    while min(len(v) for v in seen.values()) < 3:  # the first on subscribe, then changes
        assert time.monotonic() < deadline, seen
        for symbol, ticker in (await pro.watch_bids_asks([BTC, ETH])).items():
            seen[symbol].append(ticker)
    now = sim.clock()
    for symbol, tickers in seen.items():
        for t in tickers:
            assert t["symbol"] == symbol
            assert t["bid"] < t["ask"]
            assert abs(t["timestamp"] - now) < 10_000
        # the book moves: successive messages differ (pushed on change only)
        pairs = [(t["bid"], t["ask"]) for t in tickers]
        assert all(a != b for a, b in itertools.pairwise(pairs))
    assert sim.streams.connections == 1


async def test_the_stream_sends_the_books_top_at_the_symbols_precision(
    sim: VenueSim, pro: Any
) -> None:
    sim.engine.pin_mid("BTCUSDT", D(60000))
    ticker = (await pro.watch_bids_asks([BTC]))[BTC]
    assert (ticker["bid"], ticker["ask"]) == (59997.0, 60003.0)
    raw = ticker["info"]
    assert (raw["e"], raw["s"], raw["b"], raw["a"]) == (
        "bookTicker",
        "BTCUSDT",
        "59997.00",  # tick 0.10: two decimals, as Binance writes BTCUSDT
        "60003.00",
    )
    assert set(raw) == {"e", "u", "s", "b", "B", "a", "A", "T", "E"}
    rest = await pro.fetch_bids_asks([BTC])  # the REST book ticker gives the same book
    assert (rest[BTC]["bid"], rest[BTC]["ask"]) == (59997.0, 60003.0)


async def test_a_dropped_connection_fails_the_watch_and_a_new_one_subscribes_again(
    sim: VenueSim, pro: Any
) -> None:
    await pro.watch_bids_asks([BTC])
    pending = asyncio.ensure_future(pro.watch_bids_asks([BTC]))
    await asyncio.sleep(0)
    await sim.streams.close_all()
    with pytest.raises(cx.NetworkError, match="closed by remote server"):
        await pending
    ticker = (await pro.watch_bids_asks([BTC]))[BTC]  # ccxt reconnects on the next watch
    assert ticker["bid"] > 0 and sim.streams.connections == 1


async def test_a_raw_client_gets_answers_errors_and_its_subscriptions(sim: VenueSim) -> None:
    url = sim.url.replace("http://", "ws://") + "/public/ws/0"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@bookTicker"], "id": 1})
        assert await ws.receive_json(timeout=5) == {"result": None, "id": 1}
        first = await ws.receive_json(timeout=5)
        assert first["e"] == "bookTicker" and first["s"] == "ETHUSDT"
        await ws.send_json({"method": "SUBSCRIBE", "params": ["ethusdt@aggTrade"], "id": 2})
        await ws.send_json({"method": "SUBSCRIBE", "params": ["dogeusdt@bookTicker"], "id": 3})
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 4})
        await ws.send_str("not json")
        answers: dict[Any, Any] = {}
        while len(answers) < 4:
            doc = json.loads((await ws.receive(timeout=5)).data)
            if "e" not in doc:
                answers[doc["id"]] = doc
        assert answers[2]["error"]["code"] == 2 and "aggTrade" in answers[2]["error"]["msg"]
        assert "dogeusdt" in answers[3]["error"]["msg"]
        assert answers[4] == {"result": ["ethusdt@bookTicker"], "id": 4}
        assert answers[None]["error"]["msg"] == "Invalid JSON"
    stream = sim.url.replace("http://", "ws://") + "/ws/btcusdt@bookTicker"  # named in the URL
    async with aiohttp.ClientSession() as session, session.ws_connect(stream) as ws:
        assert (await ws.receive_json(timeout=5))["s"] == "BTCUSDT"
