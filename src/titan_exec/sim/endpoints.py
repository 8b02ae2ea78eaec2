"""The Binance USDⓈ-M `/fapi` endpoints of the venue simulator, as plain handlers.

This module owns what each endpoint does with its parameters: ``(params, now_ms) -> JSON``
over the engine, raising `SimError` for Binance errors (authentication, fault injection
and the HTTP plumbing are `server`'s). It also owns the "not visible for N ms" filter of
order reads (`SimHost.hidden_until`) and Binance's paging of ``allOrders`` / ``userTrades``
(``orderId`` / ``fromId``, ``startTime`` / ``endTime``, ``limit``: from a start the first
``limit``, else the most recent ``limit``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from titan_exec.adapters.venue.exchange.engine import Engine, OrderRequest, SimError
from titan_exec.adapters.venue.exchange.market import fixed
from titan_exec.sim import render
from titan_exec.sim.faults import Faults

Params = dict[str, str]
Handler = Callable[[Params, int], Any]
Route = tuple[str, str, Handler, bool]
"""(method, path, handler, signed)"""
T = TypeVar("T")


class SimHost(Protocol):
    engine: Engine
    faults: Faults
    hidden_until: dict[int, int]
    """Order id -> time before which order reads do not show the order."""


def int_param(params: Params, name: str, *, required: bool = False) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise SimError(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
        return None
    try:
        return int(raw)
    except ValueError:
        raise SimError(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _limit(params: Params, default: int, maximum: int) -> int:
    value = int_param(params, "limit")
    return default if value is None or value <= 0 else min(value, maximum)


def _window(
    items: list[T], key: Callable[[T], int], start: int | None, end: int | None, limit: int
) -> list[T]:
    """Binance paging: from ``start`` the first ``limit``, else the last ``limit``."""
    chosen = [
        x for x in items if (start is None or key(x) >= start) and (end is None or key(x) <= end)
    ]
    return chosen[:limit] if start is not None else chosen[-limit:]


class Fapi:
    """The handlers, bound to the simulator (whose engine may be replaced at start)."""

    def __init__(self, host: SimHost) -> None:
        self.host = host

    def routes(self) -> list[Route]:
        routes: list[Route] = [
            ("GET", "/fapi/v1/ping", lambda p, now: {}, False),
            ("GET", "/fapi/v1/time", lambda p, now: {"serverTime": now}, False),
            ("GET", "/fapi/v1/exchangeInfo", self._exchange_info, False),
            ("GET", "/fapi/v1/ticker/bookTicker", self._ticker(render.book_ticker), False),
            ("GET", "/fapi/v1/ticker/price", self._ticker(render.price_ticker), False),
            ("GET", "/fapi/v2/ticker/price", self._ticker(render.price_ticker), False),
            ("GET", "/fapi/v1/ticker/24hr", self._ticker(render.ticker_24hr), False),
            ("GET", "/fapi/v1/premiumIndex", self._ticker(render.premium_index), False),
            ("GET", "/fapi/v1/depth", self._depth, False),
            ("POST", "/fapi/v1/order", self._place, True),
            ("GET", "/fapi/v1/order", self._query, True),
            ("DELETE", "/fapi/v1/order", self._cancel, True),
            ("GET", "/fapi/v1/openOrder", self._open_order, True),
            ("GET", "/fapi/v1/openOrders", self._open_orders, True),
            ("GET", "/fapi/v1/allOrders", self._all_orders, True),
            ("DELETE", "/fapi/v1/allOpenOrders", self._cancel_all, True),
            ("POST", "/fapi/v1/countdownCancelAll", self._countdown, True),
            ("GET", "/fapi/v1/userTrades", self._user_trades, True),
            ("GET", "/fapi/v1/leverageBracket", self._brackets, True),
        ]
        for version in (2, 3):
            routes += [
                ("GET", f"/fapi/v{version}/positionRisk", self._positions(version), True),
                ("GET", f"/fapi/v{version}/account", self._account(version), True),
                ("GET", f"/fapi/v{version}/balance", self._balance, True),
            ]
        return routes

    def _visible(self, order_id: int, now: int) -> bool:
        until = self.host.hidden_until.get(order_id)
        if until is None:
            return True
        if now >= until:
            del self.host.hidden_until[order_id]
            return True
        return False

    # handlers: (params, now) -> JSON-able; SimError for Binance errors

    def _exchange_info(self, params: Params, now: int) -> Any:
        return render.exchange_info(list(self.host.engine.specs.values()), now)

    def _ticker(self, fn: Callable[..., dict[str, Any]]) -> Handler:
        def handler(params: Params, now: int) -> Any:
            symbol = params.get("symbol")
            if symbol:
                spec = self.host.engine.spec(symbol)
                return fn(spec, self.host.engine.book(spec.symbol, now), now)
            return [
                fn(s, self.host.engine.book(s.symbol, now), now)
                for s in self.host.engine.specs.values()
            ]

        return handler

    def _depth(self, params: Params, now: int) -> Any:
        spec = self.host.engine.spec(params.get("symbol"))
        book = self.host.engine.book(spec.symbol, now)
        levels = min(_limit(params, 5, 1000), 20)
        size = fixed(spec.max_qty.scaleb(-2), spec.qty_decimals)
        p = spec.price_decimals
        return {
            "lastUpdateId": now,
            "E": now,
            "T": now,
            "bids": [[fixed(book.bid - k * spec.tick_size, p), size] for k in range(levels)],
            "asks": [[fixed(book.ask + k * spec.tick_size, p), size] for k in range(levels)],
        }

    def _order_doc(self, order_id: int, *, with_time: bool) -> dict[str, Any]:
        order = self.host.engine.orders[order_id]
        return render.order_json(order, self.host.engine.specs[order.symbol], with_time=with_time)

    def _place(self, params: Params, now: int) -> Any:
        req = OrderRequest(
            symbol=params.get("symbol"),
            side=params.get("side"),
            type=params.get("type"),
            quantity=params.get("quantity"),
            price=params.get("price"),
            client_order_id=params.get("newClientOrderId"),
            reduce_only=params.get("reduceOnly"),
            time_in_force=params.get("timeInForce"),
            position_side=params.get("positionSide"),
        )
        order = self.host.engine.place_order(req, now)
        if self.host.faults.invisible_ms > 0:
            self.host.hidden_until[order.order_id] = now + self.host.faults.invisible_ms
        return self._order_doc(order.order_id, with_time=False)

    def _find_visible(self, params: Params, now: int) -> int:
        order = self.host.engine.find(
            params.get("symbol"), int_param(params, "orderId"), params.get("origClientOrderId")
        )
        if not self._visible(order.order_id, now):
            raise SimError(-2013, "Order does not exist.")
        return order.order_id

    def _query(self, params: Params, now: int) -> Any:
        return self._order_doc(self._find_visible(params, now), with_time=True)

    def _open_order(self, params: Params, now: int) -> Any:
        order_id = self._find_visible(params, now)
        if not self.host.engine.orders[order_id].is_open:
            raise SimError(-2013, "Order does not exist.")
        return self._order_doc(order_id, with_time=True)

    def _cancel(self, params: Params, now: int) -> Any:
        order = self.host.engine.cancel_order(
            params.get("symbol"),
            int_param(params, "orderId"),
            params.get("origClientOrderId"),
            now,
        )
        return self._order_doc(order.order_id, with_time=False)

    def _cancel_all(self, params: Params, now: int) -> Any:
        self.host.engine.cancel_all(params.get("symbol"), now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _countdown(self, params: Params, now: int) -> Any:
        spec = self.host.engine.spec(params.get("symbol"))
        countdown = int_param(params, "countdownTime", required=True)
        assert countdown is not None
        self.host.engine.set_countdown(spec.symbol, countdown, now)
        return {"symbol": spec.symbol, "countdownTime": str(countdown)}

    def _open_orders(self, params: Params, now: int) -> Any:
        orders = self.host.engine.open_orders(params.get("symbol") or None)
        return [
            self._order_doc(o.order_id, with_time=True)
            for o in orders
            if self._visible(o.order_id, now)
        ]

    def _all_orders(self, params: Params, now: int) -> Any:
        symbol = params.get("symbol") or None
        if symbol is not None:
            self.host.engine.spec(symbol)
        from_id = int_param(params, "orderId")
        orders = [
            o
            for o in self.host.engine.orders.values()
            if (symbol is None or o.symbol == symbol)
            and (from_id is None or o.order_id >= from_id)
            and self._visible(o.order_id, now)
        ]
        start = int_param(params, "startTime")
        if from_id is not None and start is None:
            start = 0  # from an id: the first ``limit`` from there
        chosen = _window(
            orders,
            lambda o: o.time_ms,
            start,
            int_param(params, "endTime"),
            _limit(params, 500, 1000),
        )
        return [self._order_doc(o.order_id, with_time=True) for o in chosen]

    def _user_trades(self, params: Params, now: int) -> Any:
        spec = self.host.engine.spec(params.get("symbol"))
        order_id = int_param(params, "orderId")
        from_id = int_param(params, "fromId")
        trades = [
            t
            for t in self.host.engine.trades
            if t.symbol == spec.symbol
            and (order_id is None or t.order_id == order_id)
            and (from_id is None or t.trade_id >= from_id)
            and self._visible(t.order_id, now)
        ]
        start = int_param(params, "startTime")
        if from_id is not None and start is None:
            start = 0
        chosen = _window(
            trades,
            lambda t: t.time_ms,
            start,
            int_param(params, "endTime"),
            _limit(params, 500, 1000),
        )
        return [render.trade_json(t, spec) for t in chosen]

    def _brackets(self, params: Params, now: int) -> Any:
        symbol = params.get("symbol")
        if symbol:
            spec = self.host.engine.spec(symbol)
            return render.leverage_brackets([spec])
        return render.leverage_brackets(list(self.host.engine.specs.values()))

    def _positions(self, version: int) -> Handler:
        def handler(params: Params, now: int) -> Any:
            symbol = params.get("symbol")
            if symbol:
                self.host.engine.spec(symbol)
            account = self.host.engine.account(now)
            shape = render.position_v3 if version == 3 else render.position_v2
            return [
                shape(v, account)
                for v in self.host.engine.position_views(now)
                if (not symbol or v.spec.symbol == symbol) and (version == 2 or v.amount)
            ]

        return handler

    def _account(self, version: int) -> Handler:
        def handler(params: Params, now: int) -> Any:
            account = self.host.engine.account(now)
            return render.account_json(
                account, self.host.engine.position_views(now), version=version
            )

        return handler

    def _balance(self, params: Params, now: int) -> Any:
        return render.balance_json(self.host.engine.account(now))
