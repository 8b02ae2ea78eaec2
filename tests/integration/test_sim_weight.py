"""The simulator counts request weight as Binance USDⓈ-M does: the used weight of the
minute in ``X-MBX-USED-WEIGHT-1M`` on every `/fapi` answer, 429 -1003 past the limit with
``Retry-After``, 418 for a client that keeps going, and the minutes in ``/sim/inspect``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from titan_exec.adapters.venue.exchange.engine import EngineConfig
from titan_exec.adapters.venue.exchange.market import SIM_SYMBOLS
from titan_exec_lab.sim.server import SimSettings, VenueSim
from titan_exec_lab.sim.weights import MINUTE_MS, WeightCounter

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE_MS + 1_000

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim(clock: Clock) -> AsyncIterator[VenueSim]:
    settings = SimSettings(port=0, weight_limit_1m=20, ban_after_429=2, ban_ms=90_000)
    server = VenueSim(settings, clock=clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def get(url: str, **params: Any) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s, s.get(url, params=params) as r:
        return r.status, dict(r.headers), await r.json()


async def test_the_simulator_lists_twenty_four_perpetuals(sim: VenueSim) -> None:
    status, _, info = await get(f"{sim.url}/fapi/v1/exchangeInfo")
    assert status == 200
    assert len(info["symbols"]) == len(SIM_SYMBOLS) == 24
    assert {s["symbol"] for s in info["symbols"]} >= {"BTCUSDT", "XRPUSDT", "AAVEUSDT"}


async def test_used_weight_is_in_every_answer_and_429_then_418_past_the_limit(
    sim: VenueSim, clock: Clock
) -> None:
    url = f"{sim.url}/fapi/v1/depth"
    # depth weighs 2 up to limit 50, 5 at 100: 2 + 5 + 10 (limit 500) = 17 of 20
    used = []
    for limit in (50, 100, 500):
        status, headers, _ = await get(url, symbol="BTCUSDT", limit=limit)
        assert status == 200
        used.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
    assert used == [2, 7, 17]
    status, headers, body = await get(url, symbol="BTCUSDT", limit=100)
    assert (status, body["code"]) == (429, -1003)
    assert int(headers["Retry-After"]) == 59  # to the next minute
    assert headers["X-MBX-USED-WEIGHT-1M"] == "17"  # a refused request is not counted
    status, _, _ = await get(url, symbol="BTCUSDT", limit=100)
    assert status == 429
    status, headers, body = await get(url, symbol="BTCUSDT", limit=100)  # a third time
    assert (status, body["code"]) == (418, -1003)
    assert int(headers["Retry-After"]) == 90
    clock.now_ms += MINUTE_MS  # a new minute, the ban still on
    status, headers, _ = await get(f"{sim.url}/fapi/v1/time")
    assert status == 418 and int(headers["Retry-After"]) == 30
    clock.now_ms += 30_000
    status, headers, _ = await get(f"{sim.url}/fapi/v1/time")
    assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "1"
    _, _, doc = await get(f"{sim.url}/sim/inspect")
    weight = doc["weight"]
    assert weight["limit_1m"] == 20
    (client,) = weight["clients"].values()
    assert client["used"] == 1 and client["bans"] == 1 and client["banned_until_ms"] is None
    assert [m["used"] for m in client["history"]] == [17]
    assert client["by_request"] == {"GET /fapi/v1/time": 1}  # this minute, by request


def test_the_history_has_the_quiet_minutes_too() -> None:
    counter = WeightCounter(limit_1m=100)
    assert counter.admit("k", 7, 0) is None
    assert counter.admit("k", 3, 3 * MINUTE_MS + 5) is None
    doc = counter.to_doc(3 * MINUTE_MS + 6)["clients"]["k"]
    assert [(m["minute_ms"], m["used"]) for m in doc["history"]] == [
        (0, 7),
        (MINUTE_MS, 0),
        (2 * MINUTE_MS, 0),
    ]
    assert (doc["minute_ms"], doc["used"]) == (3 * MINUTE_MS, 3)


def test_the_minutes_weight_is_shown_by_request_largest_first() -> None:
    counter = WeightCounter(limit_1m=100)
    for weight, request in ((1, "GET /fapi/v1/order"), (5, "GET /fapi/v1/userTrades")) * 3:
        assert counter.admit("k", weight, 1_000, request) is None
    assert counter.admit("k", 0, 1_000, "POST /fapi/v1/order") is None  # weighs nothing
    doc = counter.to_doc(2_000)["clients"]["k"]
    assert list(doc["by_request"].items()) == [
        ("GET /fapi/v1/userTrades", 15),
        ("GET /fapi/v1/order", 3),
    ]
    assert counter.to_doc(MINUTE_MS)["clients"]["k"]["by_request"] == {}  # a new minute


async def test_weights_follow_the_symbol_parameter(sim: VenueSim) -> None:
    _, headers, _ = await get(f"{sim.url}/fapi/v1/ticker/bookTicker", symbol="BTCUSDT")
    assert headers["X-MBX-USED-WEIGHT-1M"] == "2"
    _, headers, _ = await get(f"{sim.url}/fapi/v1/ticker/bookTicker")
    assert headers["X-MBX-USED-WEIGHT-1M"] == "7"  # 5 without a symbol


def test_weights_of_the_calls_the_service_makes() -> None:
    from titan_exec_lab.sim.weights import request_weight

    assert request_weight("POST", "/fapi/v1/order", {}) == 0
    assert request_weight("DELETE", "/fapi/v1/order", {}) == 1
    assert request_weight("GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT"}) == 5
    assert request_weight("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}) == 1
    assert request_weight("GET", "/fapi/v1/openOrders", {}) == 40
    assert request_weight("GET", "/fapi/v3/positionRisk", {}) == 5
    assert request_weight("GET", "/fapi/v2/balance", {}) == 5
    assert request_weight("POST", "/fapi/v1/listenKey", {}) == 1
    assert request_weight("GET", "/fapi/v1/depth", {"limit": "1000"}) == 20
    assert request_weight("GET", "/fapi/v9/unknown", {}) == 1


def test_an_engine_config_still_chooses_the_symbols() -> None:
    sim = VenueSim(SimSettings(port=0), EngineConfig(symbols=SIM_SYMBOLS[:2]))
    assert list(sim.engine.specs) == ["BTCUSDT", "ETHUSDT"]
