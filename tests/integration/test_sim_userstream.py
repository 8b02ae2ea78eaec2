"""The user-data stream end to end: the simulator's listen keys and private websocket read by
ccxt.pro's real ``binanceusdm`` client, and the service's `CcxtVenue` learning its fills
from the stream, with REST sweeps only when one is due (connect, drop, silence, expiry)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D  # noqa: N817
from typing import Any

import aiohttp
import ccxt.pro as ccxt_pro  # type: ignore[import-untyped]
import pytest

from titan_exec.adapters.venue import ccxt_userstream as userstream
from titan_exec.adapters.venue.ccxt_setup import CcxtSettings, make_client
from titan_exec.adapters.venue.ccxt_venue import CcxtVenue
from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.core.model import ClientOrderId, OrderType, Side
from titan_exec.core.reports import FillReport, PlaceRequest
from titan_exec_lab.sim.server import SimSettings, VenueSim
from titan_exec_lab.sim.userstream import LISTEN_KEY_VALIDITY_MS

pytestmark = pytest.mark.integration

BTC = "BTC/USDT:USDT"


class MovableClock:
    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def sim(clock: MovableClock) -> AsyncIterator[VenueSim]:
    config = EngineConfig(seed=5, origin_ms=clock(), fill_slices=3, slice_interval_ms=100)
    server = VenueSim(SimSettings(port=0, tick_interval_ms=20), config, clock=clock)
    server.engine.pin_mid("BTCUSDT", D(60000))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def settings(sim: VenueSim, **kw: Any) -> CcxtSettings:
    return CcxtSettings(
        base_url=sim.url,
        api_key=sim.settings.api_key,
        api_secret=sim.settings.api_secret,
        enable_rate_limit=False,
        **kw,
    )


async def key_call(sim: VenueSim, method: str, **params: str) -> tuple[int, Any]:
    headers = {"X-MBX-APIKEY": sim.settings.api_key}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{sim.url}/fapi/v1/listenKey", params=params, headers=headers) as r,
    ):
        return r.status, await r.json()


async def eventually(check: Any, what: str, timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def place_request(coid: str, qty: str = "0.03") -> PlaceRequest:
    return PlaceRequest(
        client_order_id=ClientOrderId(coid),
        symbol="BTC/USDT",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        qty=D(qty),
        limit_price=None,
        is_reduce_only=False,
    )


# --- the simulator's listen keys ------------------------------------------------------------


async def test_listen_key_post_reuses_put_extends_delete_closes(
    sim: VenueSim, clock: MovableClock
) -> None:
    status, first = await key_call(sim, "POST")
    assert status == 200 and len(first["listenKey"]) == 64
    _, again = await key_call(sim, "POST")
    assert again == first  # the account's valid key, extended
    clock.offset_ms += LISTEN_KEY_VALIDITY_MS - 1000
    status, put = await key_call(sim, "PUT")
    assert status == 200 and put == first
    clock.offset_ms += LISTEN_KEY_VALIDITY_MS - 1000  # alive: the PUT extended it
    assert (await key_call(sim, "PUT"))[0] == 200
    assert (await key_call(sim, "DELETE")) == (200, {})
    status, err = await key_call(sim, "PUT")
    assert (status, err["code"], err["msg"]) == (400, -1125, "This listenKey does not exist.")
    _, fresh = await key_call(sim, "POST")
    assert fresh["listenKey"] != first["listenKey"]


async def test_expiry_sends_listen_key_expired_and_closes(
    sim: VenueSim, clock: MovableClock
) -> None:
    _, doc = await key_call(sim, "POST")
    key = doc["listenKey"]
    async with aiohttp.ClientSession() as http:
        ws_url = sim.url.replace("http", "ws") + f"/ws/{key}"
        async with http.ws_connect(ws_url) as ws:
            clock.offset_ms += LISTEN_KEY_VALIDITY_MS
            msg = await asyncio.wait_for(ws.receive_json(), 5)
            assert msg["e"] == "listenKeyExpired" and msg["listenKey"] == key
            closed = await asyncio.wait_for(ws.receive(), 5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(sim.url.replace("http", "ws") + f"/private/ws?listenKey={key}")
    assert sim.inspect()["userStream"]["refusedConnections"] == 1


# --- ccxt.pro's own client ------------------------------------------------------------------


async def test_ccxt_pro_watch_orders_and_my_trades_read_the_stream(sim: VenueSim) -> None:
    s = settings(sim)
    watcher = make_client(ccxt_pro.binanceusdm, s, {"fetchCurrencies": False})
    writer = make_client(ccxt_pro.binanceusdm, s, {"fetchCurrencies": False})
    try:
        await watcher.load_markets()
        await writer.load_markets()
        first = asyncio.ensure_future(watcher.watch_orders())
        await eventually(lambda: sim.user_streams.connections == 1, "the user socket")
        await writer.create_order(BTC, "market", "buy", "0.03", None, {"newClientOrderId": "m1"})
        orders = await asyncio.wait_for(first, 5)
        assert orders[-1]["clientOrderId"] == "m1"
        trades: dict[str, Any] = {}
        while sum(D(t["info"]["l"]) for t in trades.values()) < D("0.03"):
            for t in await asyncio.wait_for(watcher.watch_my_trades(), 5):
                trades[t["id"]] = t
        statuses = [t["info"]["X"] for t in sorted(trades.values(), key=lambda t: t["id"])]
        assert statuses == ["PARTIALLY_FILLED", "PARTIALLY_FILLED", "FILLED"]
        assert {t["info"]["l"] for t in trades.values()} == {"0.010"}  # strings at the precision
        await writer.create_order(BTC, "limit", "buy", "0.01", "50000", {"newClientOrderId": "m2"})
        await writer.cancel_order(None, BTC, {"origClientOrderId": "m2"})

        async def canceled() -> bool:
            for o in await watcher.watch_orders():
                if o["clientOrderId"] == "m2" and o["status"] == "canceled":
                    return True
            return False

        deadline = time.monotonic() + 5
        while not await asyncio.wait_for(canceled(), 5):
            assert time.monotonic() < deadline
        assert sim.inspect()["userStream"]["eventsSent"] >= 9
    finally:
        await watcher.close()
        await writer.close()


# --- the service's venue ----------------------------------------------------------------------


class Trades:
    """Counts the venue's REST trade reads."""

    def __init__(self, venue: CcxtVenue) -> None:
        self.calls = 0
        inner = venue.exchange.fetch_my_trades

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await inner(*args, **kwargs)

        venue.exchange.fetch_my_trades = counted


class Driver:
    """What the order driver does with the venue: wait, then poll fills with the cursor."""

    def __init__(self, venue: CcxtVenue) -> None:
        self.venue = venue
        self.cursor: str | None = None
        self.fills: list[FillReport] = []

    async def poll(self, symbols: frozenset[str] = frozenset({"BTC/USDT"})) -> list[FillReport]:
        await self.venue.wait_activity(0.05)
        fills, self.cursor = await self.venue.fills_since(self.cursor, symbols)
        self.fills += fills
        return fills

    async def until_filled(self, qty: D, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while sum(f.qty for f in self.fills) < qty:
            assert time.monotonic() < deadline, f"filled {sum(f.qty for f in self.fills)}"
            await self.poll()

    def assert_once(self, sim: VenueSim) -> None:
        ids = [f.trade_id for f in self.fills]
        assert len(ids) == len(set(ids)), "a fill reported twice"
        assert set(ids) == {str(t["id"]) for t in sim.inspect()["trades"]}, "a fill lost"


@pytest.fixture
async def venue(sim: VenueSim) -> AsyncIterator[CcxtVenue]:
    v = CcxtVenue(settings(sim, stream_silence_ms=1000, sweep_interval_ms=600_000))
    try:
        yield v
    finally:
        await v.close()


async def started(venue: CcxtVenue, sim: VenueSim) -> tuple[Driver, Trades]:
    driver = Driver(venue)
    await driver.poll()  # the session's first sweep, and the stream opens
    await eventually(lambda: venue.stream and venue.stream.is_connected, "connected")
    await driver.poll()  # the connect's sweep
    return driver, Trades(venue)


async def test_a_fill_arrives_through_the_stream_without_a_trade_poll(
    venue: CcxtVenue, sim: VenueSim
) -> None:
    driver, trades = await started(venue, sim)
    await venue.place(place_request("tx" + "a" * 24 + "c0"))
    await driver.until_filled(D("0.03"))
    assert trades.calls == 0  # every fill came by the stream
    driver.assert_once(sim)
    assert venue.stream is not None and venue.stream.stats["fills"] == 3
    assert venue.stream.stats["foreign_order"] == 0
    assert venue.stream.orders[ClientOrderId("tx" + "a" * 24 + "c0")].status == "FILLED"


async def test_a_dropped_socket_reconnects_and_sweeps(venue: CcxtVenue, sim: VenueSim) -> None:
    driver, trades = await started(venue, sim)
    sim.faults.update({"user_drop": True})
    await venue.place(place_request("tx" + "b" * 24 + "c0"))
    await driver.until_filled(D("0.03"))
    await eventually(lambda: venue.stream and venue.stream.stats["connects"] >= 2, "reconnect")
    await driver.poll()
    assert trades.calls >= 1  # the reconnect's sweep
    driver.assert_once(sim)


async def test_a_silent_socket_is_caught_by_the_watchdog_sweep(
    venue: CcxtVenue, sim: VenueSim
) -> None:
    driver, trades = await started(venue, sim)
    sim.faults.update({"user_silent": True})
    await venue.place(place_request("tx" + "c" * 24 + "c0"))
    await driver.until_filled(D("0.03"))
    assert trades.calls >= 1 and venue.stream is not None
    assert venue.stream.stats["gaps"] >= 1  # the sweep proved the stream broken
    sim.faults.update({"user_silent": False})
    await venue.place(place_request("tx" + "c" * 24 + "c1"))
    await driver.until_filled(D("0.06"))
    driver.assert_once(sim)


async def test_an_expired_listen_key_means_a_new_key_and_a_sweep(
    venue: CcxtVenue, sim: VenueSim
) -> None:
    driver, trades = await started(venue, sim)
    first_key = sim.user_streams.current(sim.clock())
    sim.faults.update({"user_expire": True})
    await eventually(lambda: venue.stream and venue.stream.stats["listen_key_expired"], "expiry")
    await venue.place(place_request("tx" + "d" * 24 + "c0"))
    await driver.until_filled(D("0.03"))
    await eventually(lambda: venue.stream and venue.stream.stats["connects"] >= 2, "reconnect")
    await driver.poll()
    assert trades.calls >= 1
    new_key = sim.user_streams.current(sim.clock())
    assert first_key is not None and new_key is not None and new_key.key != first_key.key
    driver.assert_once(sim)


async def test_duplicated_events_are_reported_once(venue: CcxtVenue, sim: VenueSim) -> None:
    driver, _ = await started(venue, sim)
    sim.faults.update({"user_duplicate_next": 20})
    await venue.place(place_request("tx" + "e" * 24 + "c0"))
    await driver.until_filled(D("0.03"))
    await asyncio.sleep(0.2)
    await driver.poll()
    assert venue.stream is not None and venue.stream.stats["duplicate_stream"] >= 3
    driver.assert_once(sim)


async def test_a_takeover_reuses_the_listen_key_and_close_never_deletes_it(
    sim: VenueSim,
) -> None:
    first = CcxtVenue(settings(sim))
    await Driver(first).poll()
    await eventually(lambda: first.stream and first.stream.is_connected, "connected")
    key = sim.user_streams.current(sim.clock())
    await first.close()
    assert sim.user_streams.requests["DELETE"] == 0
    second = CcxtVenue(settings(sim))
    try:
        await Driver(second).poll()
        await eventually(lambda: second.stream and second.stream.is_connected, "connected")
        assert sim.user_streams.current(sim.clock()) == key  # the same stream
    finally:
        await second.close()


async def test_a_refused_keepalive_means_a_new_key_and_a_sweep(sim: VenueSim) -> None:
    v = CcxtVenue(settings(sim, options={"listenKeyRefreshRate": 300}))
    try:
        driver, trades = await started(v, sim)
        old = sim.user_streams.current(sim.clock())
        assert old is not None
        old.closed = True  # the venue forgot the key; the socket stays open
        await eventually(lambda: v.stream and v.stream.stats["keepalive_failed"], "refused")
        await eventually(lambda: v.stream and v.stream.stats["connects"] >= 2, "reconnect")
        await driver.poll()
        assert trades.calls >= 1  # the reconnect's sweep
        new = sim.user_streams.current(sim.clock())
        assert new is not None and new.key != old.key
        await eventually(lambda: sim.user_streams.connections == 1, "the old socket closed")
        await v.place(place_request("tx" + "f" * 24 + "c0"))
        await driver.until_filled(D("0.03"))
        driver.assert_once(sim)
    finally:
        await v.close()


async def test_a_stream_nobody_reads_closes_and_reopens_when_read_again(
    sim: VenueSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stood-down instance's driver stops calling: its stream closes by itself (the key
    is left alone) and opens again, with a sweep, when fills are asked for again."""
    monkeypatch.setattr(userstream, "IDLE_STOP_MS", 400)
    v = CcxtVenue(settings(sim))
    try:
        driver, _ = await started(v, sim)
        await eventually(lambda: sim.user_streams.connections == 0, "closed when idle")
        assert v.stream is not None and v.stream.stats["idle_stops"] == 1
        assert sim.user_streams.requests["DELETE"] == 0
        await v.place(place_request("tx" + "9" * 24 + "c0"))  # its fills while closed
        await driver.poll()
        await eventually(lambda: v.stream and v.stream.is_connected, "reopened")
        await driver.until_filled(D("0.03"))
        driver.assert_once(sim)
    finally:
        await v.close()


async def test_a_listener_takes_each_pushed_fill_as_it_is_read_and_polls_see_none(
    venue: CcxtVenue, sim: VenueSim
) -> None:
    """The leader's driver listens (`base.PushesFills`): every fill reaches it from the read
    loop itself, once; a fill poll finds no buffered fill left; a listener that raises loses
    nothing (the fill stays buffered for the next poll) and the socket stays up."""
    driver, trades = await started(venue, sim)
    pushed: list[tuple[FillReport, float]] = []

    def take() -> None:
        pushed.extend((f, time.monotonic()) for f in venue.take_pushed_fills())

    venue.set_fill_listener(take)
    await venue.place(place_request("tx" + "f" * 24 + "c0"))
    await eventually(lambda: sum(f.qty for f, _ in pushed) >= D("0.03"), "pushed fills")
    assert await driver.poll() == [] and trades.calls == 0
    driver.fills += [f for f, _ in pushed]
    driver.assert_once(sim)

    def broken() -> None:
        raise RuntimeError("listener bug")

    venue.set_fill_listener(broken)
    await venue.place(place_request("tx" + "f" * 24 + "c1"))
    await driver.until_filled(D("0.06"))  # through the buffer, by the poll
    driver.assert_once(sim)
    assert venue.stream is not None and venue.stream.stats["connects"] == 1
    venue.set_fill_listener(None)
