"""Reference prices the service finds itself (issue 13, item 4): with no NATS ticker at all,
an opening intent executes on the venue's own price — through the simulator and ccxt
(websocket book ticker, or REST alone), and on the paper venue priced from the same
source it fills against. The NATS subject stays an input: Binance's BookTicker is read,
a malformed ticker is counted on `/metrics` by reason. Without any price the refusal says
so, as before."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.integration.harness import SECRET, make_config, sim_overrides, wait_for
from titan_exec.adapters.nats.connect import NatsSettings, connect
from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.adapters.venue.paper import PaperVenue
from titan_exec.adapters.venue.quotes import CcxtQuoteFeed, QuoteFeedSettings
from titan_exec.core.model import OrderStatus
from titan_exec.runtime.app import RunningInstance
from titan_exec.runtime.feeds import Brain
from titan_exec.runtime.node import Node
from titan_exec.sim.server import SimSettings, VenueSim

pytestmark = pytest.mark.integration

BTC = ("sim", "BTC/USDT")
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "upstream" / "producer_bookticker.json"


@pytest.fixture
async def quiet_sim() -> AsyncIterator[VenueSim]:
    """The simulator with no NATS URL: it publishes no ticker; BTC pinned at 60000
    (bid 59997.0, ask 60003.0)."""
    sim = VenueSim(
        SimSettings(port=0, tick_interval_ms=20),
        EngineConfig(initial_balance=Decimal(1_000_000), fill_slices=1),
    )
    sim.engine.pin_mid("BTCUSDT", Decimal(60000))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def instance(
    url: str, state_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[Node, Brain]]:
    """One instance and a stand-in brain that beats, and no ticker feed of any kind."""
    cfg = make_config(url, state_dir, **{"market.poll_interval_ms": 200, **overrides})
    async with RunningInstance(cfg) as inst:
        nc = await connect(NatsSettings(urls=(url,), name="pytest-venue-prices"))
        brain = Brain(nc, secret=SECRET.encode())
        try:
            await brain.heartbeat()
            brain.start_heartbeats(0.5)
            assert inst.service is not None
            svc = inst.service
            await wait_for(lambda: svc.market.last_heartbeat_ms is not None, "heartbeat")
            yield svc, brain
        finally:
            await brain.stop()
            await nc.close()


async def buy_filled(svc: Node, brain: Brain, signal: str) -> Any:
    await brain.place(brain.intent(signal, "BTC/USDT", "BUY_SETUP", "0.01"))

    def order() -> Any:
        return next((o for o in svc.state.orders.values() if o.signal_id == signal), None)

    await wait_for(lambda: (o := order()) is not None and o.status is OrderStatus.FILLED, signal)
    return order()


def metric(svc: Node, name: str, **labels: str) -> float:
    value = svc.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


@pytest.mark.parametrize("websocket", [True, False], ids=["websocket", "rest-only"])
async def test_an_opening_executes_on_the_venues_own_price_with_no_nats_ticker(
    service_nats: Any, quiet_sim: VenueSim, tmp_path: Path, websocket: bool
) -> None:
    overrides = {**sim_overrides(quiet_sim), "market.websocket": websocket}
    async with instance(service_nats.url, tmp_path, **overrides) as (svc, brain):
        await wait_for(lambda: BTC in svc.market.tickers, "the venue's own BTC price")
        assert svc.market.tickers[BTC].ask == Decimal("60003.0")
        order = await buy_filled(svc, brain, "sig-venue-price")
        assert order.avg_fill_price == Decimal("60003.0")  # a market buy fills at the ask
        assert svc.market.sources[BTC] in (("ws", "rest") if websocket else ("rest",))
        ws_quotes = metric(svc, "titan_exec_market_quotes_total", source="ws", outcome="current")
        assert (ws_quotes > 0) is websocket
        assert metric(svc, "titan_exec_market_quotes_total", source="nats", outcome="current") == 0
        assert svc.market.refused == {}
        # only the symbols that matter are priced: the whitelist (BNB is listed, not wanted)
        assert {s for v, s in svc.market.tickers if v == "sim"} == {
            "BTC/USDT",
            "ETH/USDT",
            "SOL/USDT",
        }
        status = svc.status_doc()["market"]["tickers"]["sim:BTC/USDT"]
        assert status["source"] == svc.market.sources[BTC] and status["age_ms"] < 2000


async def test_the_paper_venue_fills_against_the_prices_the_guard_used(
    service_nats: Any, quiet_sim: VenueSim, tmp_path: Path
) -> None:
    overrides = {
        "venue.paper.prices_exchange_id": "binanceusdm",
        "venue.paper.prices_base_url": quiet_sim.url,
    }
    async with instance(service_nats.url, tmp_path, **overrides) as (svc, brain):
        assert isinstance(svc.venue, PaperVenue)
        await wait_for(lambda: BTC in svc.market.tickers, "the price source's BTC price")
        order = await buy_filled(svc, brain, "sig-paper-venue-price")
        fills, _ = await svc.venue.fills_since(None)
        assert [f.price for f in fills] == [Decimal("60003.0")] == [order.avg_fill_price]
        assert svc.market.tickers[BTC].ask == Decimal("60003.0")
        assert svc.market.sources[BTC] in ("ws", "rest")


async def test_with_no_price_at_all_the_refusal_says_so(
    service_nats: Any, quiet_sim: VenueSim, tmp_path: Path
) -> None:
    overrides = {**sim_overrides(quiet_sim), "market.venue_prices": False}
    async with instance(service_nats.url, tmp_path, **overrides) as (svc, brain):
        assert svc.prices.feed is None
        await brain.place(brain.intent("sig-no-price", "BTC/USDT", "BUY_SETUP", "0.01"))
        assert svc.leader is not None and svc.leader.intake is not None
        intake = svc.leader.intake
        await wait_for(lambda: bool(intake.recent_rejects), "the refusal")
        assert "no reference price for BTC/USDT on sim" in json.dumps(intake.recent_rejects)
        assert quiet_sim.engine.orders == {}


async def test_a_nats_book_ticker_prices_an_opening_and_a_bad_one_is_on_metrics(
    service_nats: Any, tmp_path: Path
) -> None:
    """The paper venue with no price source of its own: Binance's BookTicker on NATS (the
    shape titan-execution-rs read) is its book and the guard's reference price."""
    async with instance(service_nats.url, tmp_path) as (svc, brain):
        assert svc.prices.feed is None
        doc = json.loads(FIXTURE.read_text())
        subject = doc["subject"].replace("$VENUE", "sim")
        now = svc.clock()
        body = {k: now if v == "$NOW" else v for k, v in doc["body"].items()}
        await brain.nc.publish(subject, json.dumps({**body, "b": "50000.30"}).encode())  # crossed
        await brain.nc.publish(subject, b'{"symbol": "BTC/USDT", "price": 50000}')  # unknown
        await brain.nc.publish(subject, json.dumps(body).encode())
        await wait_for(lambda: BTC in svc.market.tickers, "the BookTicker")
        order = await buy_filled(svc, brain, "sig-bookticker")
        assert order.avg_fill_price == Decimal("50000.20")  # its `a`
        assert svc.market.sources[BTC] == "nats"
        text = generate_latest(svc.metrics.registry).decode()
        refused = "titan_exec_market_tickers_refused_total"
        assert f'{refused}{{reason="crossed",source="nats"}} 1.0' in text
        assert f'{refused}{{reason="unknown_shape",source="nats"}} 1.0' in text


SYMBOLS = frozenset({"BTC/USDT", "ETH/USDT", "SOL/USDT"})


async def test_a_dropped_websocket_leaves_rest_to_keep_the_price_fresh(quiet_sim: VenueSim) -> None:
    """The feed against the simulator: every symbol quoted over the websocket (ccxt's watch
    returns one message; the others of the moment come from its cache), the connection
    dropped (counted), REST quotes meanwhile, then the stream again."""
    quiet_sim.engine.pin_mid("BTCUSDT", None)  # the paths move: the stream pushes
    feed = CcxtQuoteFeed(
        QuoteFeedSettings(
            "binanceusdm", base_url=quiet_sim.url, poll_interval_ms=200, enable_rate_limit=False
        )
    )
    quotes: list[tuple[str, float, str]] = []

    def on_quote(symbol: str, bid: object, ask: object, transport: str) -> None:
        quotes.append((symbol, time.monotonic(), transport))

    def quoted(transport: str, after: float = 0.0) -> set[str]:
        return {s for s, at, t in quotes if t == transport and at > after}

    task = asyncio.create_task(feed.run(lambda: SYMBOLS, on_quote))
    try:
        await wait_for(lambda: quoted("ws") == SYMBOLS, "websocket quotes of every symbol")
        await wait_for(lambda: feed.is_ws_connected, "the stream")
        settled = time.monotonic() + 0.5
        await asyncio.sleep(1.0)
        assert quoted("rest", settled) == set()  # a moving book needs no REST poll
        await quiet_sim.streams.close_all()
        await wait_for(lambda: feed.errors["ws"] >= 1, "the dropped stream counted")
        dropped = time.monotonic()
        await wait_for(lambda: quoted("rest", dropped) == SYMBOLS, "REST quotes meanwhile")
        await wait_for(lambda: quoted("ws", dropped) == SYMBOLS, "the stream again")
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=5)
        await feed.close()
