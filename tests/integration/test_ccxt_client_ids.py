"""Our client order id reaches the field each venue reads, through ccxt's own clients, with
no network: ccxt's `bybit` and `okx` async clients (inside the service's `CcxtVenue`, the
production path) pointed at a local capture server that records each request and answers
a minimal valid response. A place must carry the id in `orderLinkId` / `clOrdId`; a cancel
and a query by client order id must ask for it the venue's way; an id the venue would
refuse is rejected before anything is sent."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from titan_exec.adapters.venue.base import VenueRejected
from titan_exec.adapters.venue.ccxt_venue import CcxtSettings, CcxtVenue
from titan_exec.core.model import ClientOrderId, OrderType, Side, client_order_id
from titan_exec.core.reports import PlaceRequest, VenueOrderStatus

pytestmark = pytest.mark.integration

COID = client_order_id("sig-capture-1", "bybit", 0)  # the service's own deterministic id


@dataclass
class Captured:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    """The JSON (or form) body: an object, or a list (a batch)."""

    def field(self, name: str) -> Any:
        """A field of the body (the first order of a batch) or of the query string."""
        body = self.body[0] if isinstance(self.body, list) and self.body else self.body
        if isinstance(body, dict) and name in body:
            return body[name]
        return self.query.get(name)


@dataclass
class CaptureServer:
    """Records every request; answers by path with `answer(captured)`."""

    answer: Callable[[Captured], Any]
    requests: list[Captured] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        body: Any = {}
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = dict(parse_qsl(raw))
        got = Captured(request.method, request.path, dict(request.query), body)
        self.requests.append(got)
        return web.json_response(self.answer(got))

    def only(self, method: str, path: str) -> Captured:
        (hit,) = [r for r in self.requests if (r.method, r.path) == (method, path)]
        return hit


def market(exchange_id: str, mid: str, contract_size: str) -> dict[str, Any]:
    """A linear BTC/USDT perpetual as ccxt's `set_markets` takes it."""
    return {
        "id": mid,
        "symbol": "BTC/USDT:USDT",
        "base": "BTC",
        "quote": "USDT",
        "settle": "USDT",
        "baseId": "BTC",
        "quoteId": "USDT",
        "settleId": "USDT",
        "type": "swap",
        "spot": False,
        "margin": False,
        "swap": True,
        "future": False,
        "option": False,
        "active": True,
        "contract": True,
        "linear": True,
        "inverse": False,
        "contractSize": float(contract_size),
        "precision": {"amount": 0.001, "price": 0.1},
        "limits": {
            "amount": {"min": 0.001, "max": None},
            "price": {"min": None, "max": None},
            "cost": {"min": None, "max": None},
            "leverage": {"min": None, "max": None},
        },
        "info": {"instType": "SWAP"} if exchange_id == "okx" else {"category": "linear"},
    }


def order_doc(exchange_id: str, link: str) -> dict[str, Any]:
    now = str(int(time.time() * 1000))
    if exchange_id == "bybit":
        return {
            "orderId": "b-1",
            "orderLinkId": link,
            "symbol": "BTCUSDT",
            "side": "Buy",
            "orderType": "Limit",
            "price": "50000",
            "qty": "0.01",
            "cumExecQty": "0",
            "orderStatus": "New",
            "createdTime": now,
            "updatedTime": now,
            "timeInForce": "GTC",
        }
    return {
        "ordId": "o-1",
        "clOrdId": link,
        "instId": "BTC-USDT-SWAP",
        "side": "buy",
        "ordType": "limit",
        "px": "50000",
        "sz": "1",
        "accFillSz": "0",
        "state": "live",
        "cTime": now,
        "uTime": now,
        "sCode": "0",
        "sMsg": "",
    }


def bybit_answer(got: Captured) -> Any:
    link = got.field("orderLinkId") or ""
    if got.path in ("/v5/order/create", "/v5/order/cancel"):
        result: Any = {"orderId": "b-1", "orderLinkId": link}
    elif got.path == "/v5/order/realtime":
        result = {"category": "linear", "list": []}  # not open: the history has it
    elif got.path == "/v5/order/history":
        result = {"category": "linear", "list": [order_doc("bybit", link)]}
    else:
        result = {}
    return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 1}


def okx_answer(got: Captured) -> Any:
    link = got.field("clOrdId") or ""
    return {"code": "0", "msg": "", "data": [order_doc("okx", link)]}


@dataclass
class Rig:
    server: CaptureServer
    venue: CcxtVenue


async def rig(exchange_id: str, answer: Callable[[Captured], Any]) -> Rig:
    server = CaptureServer(answer)
    await server.start()
    options = {"enableUnifiedAccount": True, "enableUnifiedMargin": False}
    venue = CcxtVenue(
        CcxtSettings(
            exchange_id=exchange_id,
            name=exchange_id,
            base_url=server.url,
            api_key="capture-key",
            api_secret="capture-secret",
            api_password="capture-pass",
            enable_rate_limit=False,
            options=options if exchange_id == "bybit" else {},
        )
    )
    mid = "BTCUSDT" if exchange_id == "bybit" else "BTC-USDT-SWAP"
    markets = [market(exchange_id, mid, "1" if exchange_id == "bybit" else "0.01")]
    for client in (venue.exchange, venue._writer):
        client.set_markets(markets)
    venue._markets_loaded = True
    return Rig(server, venue)


@pytest.fixture
async def bybit() -> AsyncIterator[Rig]:
    r = await rig("bybit", bybit_answer)
    try:
        yield r
    finally:
        await r.venue.close()
        await r.server.stop()


@pytest.fixture
async def okx() -> AsyncIterator[Rig]:
    r = await rig("okx", okx_answer)
    try:
        yield r
    finally:
        await r.venue.close()
        await r.server.stop()


def limit_buy(coid: str) -> PlaceRequest:
    return PlaceRequest(
        client_order_id=ClientOrderId(coid),
        symbol="BTC/USDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        qty=Decimal("0.01"),
        limit_price=Decimal("50000"),
        is_reduce_only=False,
    )


async def test_bybit_place_carries_the_id_in_order_link_id(bybit: Rig) -> None:
    placed = await bybit.venue.place(limit_buy(COID))
    sent = bybit.server.only("POST", "/v5/order/create")
    assert sent.field("orderLinkId") == COID
    assert sent.field("clientOrderId") is None and sent.field("newClientOrderId") is None
    assert placed.venue_order_id == "b-1"


async def test_bybit_cancel_and_query_ask_by_order_link_id(bybit: Rig) -> None:
    result = await bybit.venue.cancel("BTC/USDT", COID)
    sent = bybit.server.only("POST", "/v5/order/cancel")
    assert sent.field("orderLinkId") == COID
    assert sent.field("orderId") is None and sent.field("clientOrderId") is None
    assert result.status is VenueOrderStatus.CANCELED
    report = await bybit.venue.query_order("BTC/USDT", COID)
    for path in ("/v5/order/realtime", "/v5/order/history"):  # open, then closed
        asked = bybit.server.only("GET", path)
        assert asked.query["orderLinkId"] == COID
        assert "orderId" not in asked.query  # never "None": the venue would look for it
    assert report is not None and report.client_order_id == COID


async def test_okx_place_carries_the_id_in_cl_ord_id(okx: Rig) -> None:
    await okx.venue.place(limit_buy(COID))
    # ccxt's okx places through the batch endpoint, one order in the list
    sent = okx.server.only("POST", "/api/v5/trade/batch-orders")
    assert sent.field("clOrdId") == COID
    assert sent.field("clientOrderId") is None


async def test_okx_cancel_and_query_ask_by_cl_ord_id(okx: Rig) -> None:
    await okx.venue.cancel("BTC/USDT", COID)
    sent = okx.server.only("POST", "/api/v5/trade/cancel-order")
    assert sent.field("clOrdId") == COID and sent.field("ordId") is None
    report = await okx.venue.query_order("BTC/USDT", COID)
    asked = okx.server.only("GET", "/api/v5/trade/order")
    assert asked.query["clOrdId"] == COID and "ordId" not in asked.query
    assert report is not None and report.client_order_id == COID


@pytest.mark.parametrize(
    ("exchange_id", "coid"),
    [
        ("okx", "tx-with-dash"),  # OKX: alphanumerics only
        ("okx", "t" * 33),  # OKX: at most 32
        ("bybit", "t" * 37),  # Bybit: at most 36
        ("bybit", "tx.dot"),
    ],
)
async def test_an_id_the_venue_would_refuse_is_rejected_before_sending(
    exchange_id: str, coid: str
) -> None:
    r = await rig(exchange_id, bybit_answer if exchange_id == "bybit" else okx_answer)
    try:
        with pytest.raises(VenueRejected, match="client order id"):
            await r.venue.place(limit_buy(coid))
        with pytest.raises(VenueRejected, match="client order id"):
            await r.venue.cancel("BTC/USDT", ClientOrderId(coid))
        with pytest.raises(VenueRejected, match="client order id"):
            await r.venue.query_order("BTC/USDT", ClientOrderId(coid))
        assert r.server.requests == []
    finally:
        await r.venue.close()
        await r.server.stop()


def test_the_services_ids_fit_every_venue_listed() -> None:
    from titan_exec.adapters.venue.ccxt_ids import DEFAULT_RULES, RULES

    for child in (0, 7, 99_999):
        coid = client_order_id("a-signal-id-of-any-length" * 4, "okx", child)
        for rules in (*RULES.values(), DEFAULT_RULES):
            rules.check(coid)
