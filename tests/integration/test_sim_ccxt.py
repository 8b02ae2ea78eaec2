"""ccxt's real `binanceusdm` client against the venue simulator (in process, free port).

Only the client's base URLs differ from production (`sim.ccxt_client.ccxt_config`). The
tests cover the calls the ccxt venue makes — load markets, place, query, cancel, list
orders and trades, positions, balance — and how errors and injected faults surface as ccxt
exceptions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D  # noqa: N817
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
import pytest
from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.sim.ccxt_client import ccxt_config, sim_urls
from titan_exec.sim.server import SimSettings, VenueSim

pytestmark = pytest.mark.integration

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


class MovableClock:
    """Wall clock plus an offset the test moves (kept within ccxt's 10 s recvWindow)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, ms: int) -> None:
        self.offset_ms += ms


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def sim(clock: MovableClock) -> AsyncIterator[VenueSim]:
    config = EngineConfig(seed=5, origin_ms=clock(), fill_slices=2, slice_interval_ms=100)
    server = VenueSim(SimSettings(port=0, tick_interval_ms=20), config, clock=clock)
    server.engine.pin_mid("BTCUSDT", D(60000))  # bid 59997.0 / ask 60003.0
    server.engine.pin_mid("ETHUSDT", D(3000))  # bid 2999.85 / ask 3000.15
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def client_for(sim: VenueSim, **overrides: Any) -> Any:
    overrides.setdefault("enableRateLimit", False)  # ccxt's throttle only slows the tests down
    key = overrides.pop("apiKey", sim.settings.api_key)
    secret = overrides.pop("secret", sim.settings.api_secret)
    return ccxt_async.binanceusdm(ccxt_config(sim.url, key, secret, **overrides))


@pytest.fixture
async def client(sim: VenueSim) -> AsyncIterator[Any]:
    exchange = client_for(sim)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


async def inspect(sim: VenueSim) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{sim.url}/sim/inspect") as resp:
        assert resp.status == 200
        doc: dict[str, Any] = await resp.json()
        return doc


async def eventually(check: Any, timeout_s: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


# --- the happy paths ----------------------------------------------------------------------


async def test_load_markets_reads_the_exchange_info(sim: VenueSim, client: Any) -> None:
    assert set(client.markets) == {BTC, ETH, "SOL/USDT:USDT", "BNB/USDT:USDT"}
    btc = client.market(BTC)
    assert (btc["id"], btc["type"], btc["linear"], btc["settle"]) == (
        "BTCUSDT",
        "swap",
        True,
        "USDT",
    )
    assert btc["precision"]["amount"] == 0.001
    assert btc["precision"]["price"] == 0.1
    assert btc["limits"]["cost"]["min"] == 100
    assert client.market("SOL/USDT:USDT")["precision"]["amount"] == 1
    server_time = await client.fetch_time()
    assert abs(server_time - sim.clock()) < 1000
    assert client.amount_to_precision(BTC, 0.0123) == "0.012"


async def test_market_order_fills_in_slices_and_shows_in_trades_positions_balance(
    sim: VenueSim, client: Any
) -> None:
    order = await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "m-1"})
    assert (order["clientOrderId"], order["status"], order["filled"]) == ("m-1", "open", 0.005)
    assert order["info"]["status"] == "PARTIALLY_FILLED"

    async def filled() -> Any:
        got = await client.fetch_order(None, BTC, {"origClientOrderId": "m-1"})
        return got if got["status"] == "closed" else None

    done = await eventually(filled)
    assert done["id"] == order["id"]
    assert (done["filled"], done["amount"], done["average"]) == (0.01, 0.01, 60003.0)
    assert done["info"]["cumQuote"] == "600.03000"

    trades = await client.fetch_my_trades(BTC)
    assert [t["order"] for t in trades] == [order["id"], order["id"]]
    assert [(t["price"], t["amount"], t["side"], t["takerOrMaker"]) for t in trades] == [
        (60003.0, 0.005, "buy", "taker"),
        (60003.0, 0.005, "buy", "taker"),
    ]
    assert [t["info"]["commission"] for t in trades] == ["0.15000750", "0.15000750"]
    assert {t["fee"]["currency"] for t in trades} == {"USDT"}

    [position] = await client.fetch_positions()
    assert (position["symbol"], position["side"], position["contracts"]) == (BTC, "long", 0.01)
    assert position["entryPrice"] == 60003.0
    assert position["info"]["unRealizedProfit"] == "-0.03000000"  # mark 60000
    assert position["info"]["positionAmt"] == "0.010"

    balance = await client.fetch_balance()
    assert balance["info"]["totalWalletBalance"] == "9999.69998500"  # 10000 - 2 * 0.1500075
    assert D(str(balance["USDT"]["total"])) == D("9999.669985")  # + unrealised PnL


async def test_limit_order_lists_and_cancels(sim: VenueSim, client: Any) -> None:
    order = await client.create_order(
        ETH, "limit", "buy", 0.01 * 3, 2500, {"newClientOrderId": "l-1"}
    )
    assert (order["status"], order["price"], order["amount"]) == ("open", 2500.0, 0.03)
    open_orders = await client.fetch_open_orders(ETH)
    assert [o["clientOrderId"] for o in open_orders] == ["l-1"]
    assert [o["clientOrderId"] for o in await client.fetch_open_orders()] == ["l-1"]
    assert [o["id"] for o in await client.fetch_orders(ETH)] == [order["id"]]
    canceled = await client.cancel_order(order["id"], ETH)
    assert (canceled["status"], canceled["clientOrderId"]) == ("canceled", "l-1")
    assert await client.fetch_open_orders(ETH) == []
    with pytest.raises(cx.OrderNotFound, match="-2011"):
        await client.cancel_order(order["id"], ETH)
    with pytest.raises(cx.OrderNotFound, match="-2013"):
        await client.fetch_order(None, ETH, {"origClientOrderId": "never-sent"})
    # cancel by client order id works too
    second = await client.create_order(ETH, "limit", "buy", 0.03, 2500, {"newClientOrderId": "l-2"})
    by_coid = await client.cancel_order(None, ETH, {"origClientOrderId": "l-2"})
    assert (by_coid["id"], by_coid["status"]) == (second["id"], "canceled")


async def test_resting_limit_fills_when_the_price_crosses_it(sim: VenueSim, client: Any) -> None:
    order = await client.create_order(BTC, "limit", "buy", 0.01, 59000, {"newClientOrderId": "r-1"})
    assert order["status"] == "open"
    sim.engine.pin_mid("BTCUSDT", D(58990))  # ask 58993.0 <= 59000

    async def closed() -> Any:
        got = await client.fetch_order(order["id"], BTC)
        return got if got["status"] == "closed" else None

    assert (await eventually(closed))["average"] == 59000.0
    trades = await client.fetch_my_trades(BTC)
    assert {(t["takerOrMaker"], t["info"]["commission"]) for t in trades} == {
        ("maker", "0.05900000")
    }


async def test_reduce_only_and_min_notional_errors(sim: VenueSim, client: Any) -> None:
    with pytest.raises(cx.InvalidOrder, match="-2022"):
        await client.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})
    with pytest.raises(cx.InvalidOrder, match="-4164"):
        await client.create_order(BTC, "market", "buy", 0.001)
    await client.create_order(BTC, "market", "buy", 0.002, None, {"newClientOrderId": "o"})
    close = await client.create_order(
        BTC, "market", "sell", 0.002, None, {"newClientOrderId": "c", "reduceOnly": True}
    )
    assert close["reduceOnly"] is True

    async def flat() -> bool:
        positions: list[Any] = await client.fetch_positions()
        return positions == []

    assert await eventually(flat)


async def test_countdown_cancel_all_through_the_implicit_api(
    sim: VenueSim, clock: MovableClock, client: Any
) -> None:
    order = await client.create_order(BTC, "limit", "buy", 0.01, 50000, {"newClientOrderId": "d"})
    answer = await client.fapiPrivatePostCountdownCancelAll(
        {"symbol": "BTCUSDT", "countdownTime": 2000}
    )
    assert answer == {"symbol": "BTCUSDT", "countdownTime": "2000"}
    assert (await client.fetch_order(order["id"], BTC))["status"] == "open"
    clock.advance(2000)
    assert (await client.fetch_order(order["id"], BTC))["status"] == "canceled"


# --- errors as ccxt sees them -----------------------------------------------------------------


async def test_a_duplicate_client_order_id_maps_as_on_the_real_venue(
    sim: VenueSim, client: Any
) -> None:
    await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "dup"})
    with pytest.raises(cx.InvalidOrder) as info:
        await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "dup"})
    # ccxt maps -4116 to InvalidOrder (its linear table), not to DuplicateOrderId
    assert type(info.value) is cx.InvalidOrder
    assert '"code": -4116' in str(info.value)
    doc = await inspect(sim)
    assert [o["clientOrderId"] for o in doc["orders"]] == ["dup"]
    assert [(r["clientOrderId"], r["code"]) for r in doc["rejected"]] == [("dup", -4116)]


async def test_without_ccxt_config_the_error_table_of_the_real_host_is_skipped(
    sim: VenueSim,
) -> None:
    """Why `ccxt_config` merges the linear table: ccxt picks it by the request's host."""
    bare = ccxt_async.binanceusdm(
        {
            "apiKey": sim.settings.api_key,
            "secret": sim.settings.api_secret,
            "urls": {"api": sim_urls(sim.url)},
            "options": {"fetchCurrencies": False},
        }
    )
    try:
        await bare.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "x"})
        with pytest.raises(cx.ExchangeError) as info:
            await bare.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "x"})
        assert type(info.value) is cx.ExchangeError
    finally:
        await bare.close()


async def test_authentication_errors(sim: VenueSim, clock: MovableClock) -> None:
    wrong_secret = client_for(sim, secret="not-the-secret")
    wrong_key = client_for(sim, apiKey="not-the-key")
    right = client_for(sim)
    try:
        await wrong_secret.load_markets()  # public: no signature needed
        with pytest.raises(cx.AuthenticationError, match="-1022"):
            await wrong_secret.fetch_balance()
        with pytest.raises(cx.AuthenticationError, match="-2015"):
            await wrong_key.fetch_balance()
        clock.advance(-11_000)  # the client's timestamps are now 11 s ahead of the server
        with pytest.raises(cx.InvalidNonce, match="-1021"):
            await right.fetch_balance()
        clock.advance(11_000 + 10_500)  # ... and now 10.5 s behind: outside ccxt's 10 s window
        with pytest.raises(cx.InvalidNonce, match="-1021"):
            await right.fetch_balance()
        clock.advance(-10_500)
        assert (await right.fetch_balance())["USDT"]["total"] == 10000
    finally:
        for exchange in (wrong_secret, wrong_key, right):
            await exchange.close()


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "error"), [("disconnect", cx.ExchangeNotAvailable), ("504", cx.RequestTimeout)]
)
async def test_a_lost_response_is_a_network_error_and_the_order_exists_once(
    sim: VenueSim, client: Any, mode: str, error: type[Exception]
) -> None:
    sim.faults.update({"lose_next": 1, "lose_mode": mode})
    with pytest.raises(error) as info:
        await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "lost"})
    assert isinstance(info.value, cx.NetworkError)
    # resolved by querying the client order id; a blind resend is refused as a duplicate
    found = await client.fetch_order(None, BTC, {"origClientOrderId": "lost"})
    assert found["clientOrderId"] == "lost"
    with pytest.raises(cx.InvalidOrder, match="-4116"):
        await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "lost"})
    doc = await inspect(sim)
    assert [o["clientOrderId"] for o in doc["orders"]] == ["lost"]
    assert [f["fault"] for f in doc["faults"]] == ["lose"]
    assert doc["faults"][0]["clientOrderId"] == "lost"


async def test_an_invisible_order_is_not_found_until_the_time_passes(
    sim: VenueSim, clock: MovableClock, client: Any
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{sim.url}/sim/faults", json={"invisible_ms": 3000}) as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["invisible_ms"] == 3000
    placed = await client.create_order(
        ETH, "limit", "buy", 0.03, 2500, {"newClientOrderId": "ghost"}
    )
    assert placed["status"] == "open"
    sim.faults.reset()
    with pytest.raises(cx.OrderNotFound, match="-2013"):
        await client.fetch_order(None, ETH, {"origClientOrderId": "ghost"})
    with pytest.raises(cx.OrderNotFound):
        await client.fetch_order(placed["id"], ETH)
    assert await client.fetch_open_orders(ETH) == []
    assert await client.fetch_orders(ETH) == []
    clock.advance(3000)
    found = await client.fetch_order(None, ETH, {"origClientOrderId": "ghost"})
    assert (found["id"], found["status"]) == (placed["id"], "open")
    assert [o["id"] for o in await client.fetch_open_orders(ETH)] == [placed["id"]]


async def test_error_and_rate_limit_answers_are_not_executed(sim: VenueSim, client: Any) -> None:
    sim.faults.update({"error_next": 1})
    with pytest.raises(cx.OperationFailed, match="-1001") as info:
        await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "e1"})
    # -1001 maps to OperationFailed: neither a NetworkError nor an ExchangeError
    assert not isinstance(info.value, cx.NetworkError | cx.ExchangeError)
    sim.faults.update({"error_next": 1, "error_body": False})
    with pytest.raises(cx.ExchangeNotAvailable):  # a bare 503
        await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "e2"})
    sim.faults.update({"rate_limit_next": 1})
    with pytest.raises(cx.DDoSProtection, match="429"):  # ccxt: HTTP 429 -> DDoSProtection
        await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": "e3"})
    assert (await inspect(sim))["orders"] == []
    # the faults are used up: the same ids now go through
    for coid in ("e1", "e2", "e3"):
        await client.create_order(BTC, "market", "buy", 0.01, None, {"newClientOrderId": coid})
    assert [o["clientOrderId"] for o in (await inspect(sim))["orders"]] == ["e1", "e2", "e3"]


async def test_latency_is_added_to_every_request(sim: VenueSim, client: Any) -> None:
    sim.faults.update({"latency_ms": 300})
    started = time.monotonic()
    await client.fetch_time()
    assert time.monotonic() - started >= 0.3


# --- NATS book tickers and the state file ------------------------------------------------------


async def test_book_tickers_are_published_on_nats_as_the_service_reads_them(
    nats_server: Any, nats_client: Any, clock: MovableClock
) -> None:
    from titan_exec.runtime.market import MarketData

    got: list[tuple[str, bytes]] = []

    async def on_msg(msg: Any) -> None:
        got.append((msg.subject, msg.data))

    await nats_client.subscribe("titan.data.market.ticker.v1.>", cb=on_msg)
    await nats_client.flush()
    config = EngineConfig(seed=9, origin_ms=clock())
    settings = SimSettings(port=0, nats_url=nats_server.url, venue_name="simx", tick_interval_ms=50)
    async with VenueSim(settings, config, clock=clock) as server:
        server.engine.pin_mid("BTCUSDT", D(60000))

        async def four_symbols() -> bool:
            return {s for s, _ in got} >= {
                f"titan.data.market.ticker.v1.simx.{b}_USDT" for b in ("BTC", "ETH", "SOL", "BNB")
            }

        assert await eventually(four_symbols)
    market = MarketData(clock)
    btc = [market.on_ticker(s, d) for s, d in got if s.endswith(".BTC_USDT")]
    venue, symbol, ticker = btc[-1]  # type: ignore[misc]
    assert (venue, symbol, ticker.bid, ticker.ask) == (
        "simx",
        "BTC/USDT",
        D("59997.0"),
        D("60003.0"),
    )
    assert market.bad_tickers == 0


async def test_the_state_file_carries_orders_across_restarts(
    tmp_path: Any, clock: MovableClock
) -> None:
    state = tmp_path / "sim-state.json"
    settings = SimSettings(port=0, state_file=state)
    config = EngineConfig(seed=2, origin_ms=clock(), fill_slices=1)
    async with VenueSim(settings, config, clock=clock) as first:
        exchange = client_for(first)
        try:
            await exchange.create_order(
                BTC, "market", "buy", 0.01, None, {"newClientOrderId": "keep"}
            )
        finally:
            await exchange.close()
    assert state.exists()
    async with VenueSim(settings, EngineConfig(seed=99, origin_ms=0), clock=clock) as second:
        assert second.engine.config.seed == 2  # the state's run continues
        exchange = client_for(second)
        try:
            found = await exchange.fetch_order(None, BTC, {"origClientOrderId": "keep"})
            assert (found["status"], found["filled"]) == ("closed", 0.01)
            with pytest.raises(cx.InvalidOrder, match="-4116"):
                await exchange.create_order(
                    BTC, "market", "buy", 0.01, None, {"newClientOrderId": "keep"}
                )
            [position] = await exchange.fetch_positions()
            assert position["contracts"] == 0.01
        finally:
            await exchange.close()
