"""The ccxt venue's request-weight budget against the simulator (in process, free port):
it counts what it sends as the venue does, reads the venue's own count, stretches its
reads under the share, waits out a 429 and refuses order writes during a ban, unsent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from titan_exec.adapters.venue.base import VenueUnavailable
from titan_exec.adapters.venue.ccxt_venue import CcxtSettings, CcxtVenue
from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.core.model import ClientOrderId, OrderType, Side
from titan_exec.core.reports import PlaceRequest
from titan_exec_lab.sim.server import DEV_API_KEY, DEV_API_SECRET, SimSettings, VenueSim

pytestmark = pytest.mark.integration


def minute_now_ms() -> int:
    return time.time_ns() // 1_000_000


async def clear_of_the_minutes_end(needed_ms: int = 10_000) -> None:
    """The sim and the budget count by the clock's minute: start where `needed_ms` fit."""
    into = minute_now_ms() % 60_000
    if into > 60_000 - needed_ms:
        await asyncio.sleep((60_500 - into) / 1000)


async def started(settings: SimSettings) -> VenueSim:
    sim = VenueSim(settings, EngineConfig(initial_balance=Decimal(100_000)))
    sim.engine.pin_mid("BTCUSDT", Decimal(60000))
    await sim.start()
    return sim


def venue_for(sim: VenueSim, **kw: object) -> CcxtVenue:
    """REST polling (the fill source whose weight these tests count; the stream's own
    calls are counted too, but run beside the test's and would race its reads)."""
    kw.setdefault("user_stream", False)
    settings = CcxtSettings(
        exchange_id="binanceusdm",
        name="sim",
        base_url=sim.url,
        api_key=DEV_API_KEY,
        api_secret=DEV_API_SECRET,
        enable_rate_limit=False,
        **kw,  # type: ignore[arg-type]
    )
    return CcxtVenue(settings)


@pytest.fixture
async def sim() -> AsyncIterator[VenueSim]:
    server = await started(SimSettings(port=0))
    try:
        yield server
    finally:
        await server.stop()


def sim_used(sim: VenueSim) -> int:
    now = sim.clock()
    return sim.weights.used(DEV_API_KEY, now) + sim.weights.used("ip:127.0.0.1", now)


async def test_the_budget_counts_what_the_venue_counts(sim: VenueSim) -> None:
    venue = venue_for(sim)
    try:
        assert venue.budget.limit_1m == 2400  # binanceusdm's published limit
        await clear_of_the_minutes_end()
        await venue.open_orders("BTC/USDT")  # exchangeInfo 1 + openOrders 1
        await venue.fills_since(None, frozenset({"BTC/USDT"}))  # userTrades 5
        await venue.positions()  # positionRisk 5
        await venue.balances()  # balance / account 5
        now = minute_now_ms()
        assert venue.budget.sent == sim_used(sim)
        assert venue.budget.venue_used == sim.weights.used(DEV_API_KEY, sim.clock())
        assert venue.budget.used(now) == venue.budget.sent
    finally:
        await venue.close()


async def test_heavy_reads_stretch_their_intervals(sim: VenueSim) -> None:
    venue = venue_for(sim, weight_limit_1m=100, weight_share=Decimal("0.5"))
    try:
        for _ in range(8):
            await venue.fills_since(None, frozenset({"BTC/USDT"}))  # 5 each
        assert venue.budget.interval_ms(250, minute_now_ms() + 1000) > 250
    finally:
        await venue.close()


async def test_a_429_is_not_retried_and_the_next_reads_wait() -> None:
    sim = await started(SimSettings(port=0, weight_limit_1m=10, ban_after_429=100))
    venue = venue_for(sim, weight_limit_1m=0)  # the service does not know the limit
    try:
        await clear_of_the_minutes_end()
        await venue.open_orders("BTC/USDT")  # 2 of 10
        await venue.fills_since(None, frozenset({"BTC/USDT"}))  # 7 of 10
        with pytest.raises(VenueUnavailable, match="rate limited"):
            await venue.fills_since(None, frozenset({"BTC/USDT"}))  # 12 > 10: 429
        refused = [f for f in sim.faults.log if f["fault"] == "weight_429"]
        assert len(refused) == 1  # not retried
        assert venue.budget.throttled["429"] == 1
        assert venue.budget.read_wait_ms(minute_now_ms()) > 0  # Retry-After: to the minute
    finally:
        await venue.close()
        await sim.stop()


async def test_a_ban_refuses_a_place_before_sending() -> None:
    sim = await started(SimSettings(port=0, weight_limit_1m=8, ban_after_429=0))
    venue = venue_for(sim)
    try:
        await clear_of_the_minutes_end()
        await venue.open_orders("BTC/USDT")  # 2 of 8
        await venue.fills_since(None, frozenset({"BTC/USDT"}))  # 7 of 8
        with pytest.raises(VenueUnavailable):
            await venue.fills_since(None, frozenset({"BTC/USDT"}))  # over: banned at once
        assert venue.budget.throttled["418"] == 1
        requests_before = len(sim.faults.log)
        req = PlaceRequest(
            client_order_id=ClientOrderId("txban0c0"),
            symbol="BTC/USDT",
            side=Side.BUY,
            order_type=OrderType.MARKET,
            qty=Decimal("0.01"),
            limit_price=None,
            is_reduce_only=False,
        )
        with pytest.raises(VenueUnavailable, match="not sent"):
            await venue.place(req)
        assert len(sim.faults.log) == requests_before  # nothing reached the venue
        assert not sim.engine.orders
        assert venue.budget.throttled["refused"] == 1
    finally:
        await venue.close()
        await sim.stop()


async def test_a_place_carries_the_client_order_id_to_binance(sim: VenueSim) -> None:
    venue = venue_for(sim)
    try:
        req = PlaceRequest(
            client_order_id=ClientOrderId("txabc0c0"),
            symbol="BTC/USDT",
            side=Side.BUY,
            order_type=OrderType.LIMIT,
            qty=Decimal("0.01"),
            limit_price=Decimal("50000"),
            is_reduce_only=False,
        )
        await venue.place(req)
        (order,) = sim.engine.orders.values()
        assert order.client_order_id == "txabc0c0"
        report = await venue.query_order("BTC/USDT", ClientOrderId("txabc0c0"))
        assert report is not None and report.client_order_id == "txabc0c0"
        await venue.cancel("BTC/USDT", ClientOrderId("txabc0c0"))
        assert not order.is_open
    finally:
        await venue.close()


async def test_a_busy_fill_poll_loop_keeps_the_account_under_its_share() -> None:
    """The driver's fill polls (through `VenueRequests`, as often as it lets them, four
    symbols of userTrades at 5 each: 4800 a minute at the venue's 250 ms poll interval)
    against an account of 600 a minute with a 50 % share: within the minute the account
    stays under 300, the venue never answers 429 (unstretched, 600 would be spent in 8 s)."""
    from titan_exec.api.metrics import Metrics
    from titan_exec.config import OrdersConfig
    from titan_exec.core import execution_io as io
    from titan_exec.runtime.venuecalls import VenueRequests

    sim = await started(SimSettings(port=0, weight_limit_1m=600))
    venue = venue_for(sim, weight_limit_1m=600, weight_share=Decimal("0.5"))
    symbols = frozenset(s.canonical for s in list(sim.engine.specs.values())[:4])
    calls = VenueRequests(
        venue=venue,
        metrics=Metrics(),
        cfg=OrdersConfig(poll_interval_ms=50),
        clock=minute_now_ms,
        gate=lambda: True,
    )
    try:
        await clear_of_the_minutes_end(20_000)
        await venue.open_orders("BTC/USDT")  # markets loaded
        cursor: str | None = None
        started_ms = minute_now_ms()
        polls = 0
        while minute_now_ms() - started_ms < 12_000:
            answer = await calls.run(io.PollFills(cursor, symbols))
            assert isinstance(answer, io.FillsReported), answer
            cursor = answer.cursor
            polls += 1
            await asyncio.sleep(0.05)
        assert not [f for f in sim.faults.log if f["fault"].startswith("weight_")]
        used = sum(sim.weights.used(c, minute_now_ms()) for c in sim.weights.clients)
        assert used <= 300, (used, polls)  # the share of this minute
        assert polls <= 15, polls  # unstretched: about 48 in 12 s
        assert venue.budget.stretch > 2
        assert venue.budget.throttled["stretched"] > 0
    finally:
        await venue.close()
        await sim.stop()


async def test_the_user_streams_rest_calls_are_the_accounts_weight_too(sim: VenueSim) -> None:
    """The stream's own client (its listen key, its markets) is counted by the budget as
    the venue counts it: nothing the account spends is invisible to the budget."""
    venue = venue_for(sim, user_stream=True)
    try:
        await clear_of_the_minutes_end()
        await venue.fills_since(None, frozenset({"BTC/USDT"}))  # opens the stream
        deadline = asyncio.get_running_loop().time() + 10
        while sim.user_streams.requests["POST"] == 0:
            assert asyncio.get_running_loop().time() < deadline, "no listen key asked for"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the stream's start-up calls are answered
        assert sim.user_streams.requests["POST"] >= 1
        assert venue.budget.sent == sim_used(sim)
    finally:
        await venue.close()
