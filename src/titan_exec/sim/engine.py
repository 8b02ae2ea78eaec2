"""The venue simulator's exchange core (pure: no I/O, clock or randomness; Decimal money).

This module owns the simulated Binance USDⓈ-M account: orders (MARKET and LIMIT GTC,
reduce-only, unique client order ids), their fills, fees, one-way positions, the USDT
wallet, the `countdownCancelAll` dead-man switch per symbol, the record of every order,
trade and refused order, and the state export/import. Time is always an argument
(``now_ms``); prices come from the seeded path of `market.PricePath`.

Fill model:

- A MARKET order, or a LIMIT order that is marketable when placed, fills as taker in
  ``fill_slices`` trades: the first when placed, the next ones every ``slice_interval_ms``
  (processed by `tick`, each at the book of its own due time); the order is
  PARTIALLY_FILLED in between. A LIMIT slice that is no longer marketable leaves the rest
  resting.
- A resting LIMIT order fills as maker at its price when the book crosses it at a tick
  (buy: ask <= price, sell: bid >= price), again in slices while the cross lasts.
- Reduce-only orders are refused (-2022) unless they reduce the position, fill at most
  the position, and expire when the position is flat.
- Fees: price * qty * rate, rounded half-up to 1e-8 USDT. Entry prices are weighted
  averages rounded half-even to 1e-8; realised PnL (fees excluded, as Binance reports it)
  is rounded half-up to 1e-8. The wallet is initial balance + realised PnL - fees.
- Margin (cross): available = wallet + unrealised PnL - position margin - open-order margin
  (notional / leverage); an order whose opening part needs more is refused (-2019). The
  opening part is priced at the ask (BUY) or bid (SELL) for a MARKET order, at the limit
  for a LIMIT BUY and at max(limit, bid) for a LIMIT SELL, so a sell limit far below the
  book (which fills at the bid) needs the margin of what it fills at.

Refusals raise `SimError` with Binance's code, message and HTTP status.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any

from titan_exec.core.model import DECIMAL_CONTEXT
from titan_exec.sim.market import (
    ZERO,
    Book,
    PathParams,
    PricePath,
    SymbolSpec,
    decimals_of,
    floor_to,
    is_multiple,
)
from titan_exec.sim.records import (
    AccountView,
    EngineConfig,
    OrderRequest,
    PositionView,
    Rejection,
    SimError,
    SimOrder,
    SimPosition,
    SimTrade,
    config_from_doc,
    config_to_doc,
    missing_param,
    order_from_doc,
    order_to_doc,
    trade_from_doc,
    trade_to_doc,
)

__all__ = [
    "AccountView",
    "Engine",
    "EngineConfig",
    "OrderRequest",
    "PositionView",
    "SimError",
    "SimOrder",
    "SimTrade",
]

E8 = Decimal("1e-8")
MAX_OPEN_ORDERS = 200
_NUMBER = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})


def _q8(value: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    return value.quantize(E8, rounding=rounding)


class Engine:
    """One simulated account on a set of symbols. Call `tick` as time passes."""

    def __init__(self, config: EngineConfig) -> None:
        if config.origin_ms is None:
            raise ValueError("EngineConfig.origin_ms is required (the engine has no clock)")
        self.config = config
        self.specs: dict[str, SymbolSpec] = {s.symbol: s for s in config.symbols}
        self.path = PricePath(
            PathParams(
                seed=config.seed,
                origin_ms=config.origin_ms,
                step_ms=config.step_ms,
                volatility=config.volatility,
                spread_bps=config.spread_bps,
            )
        )
        self.now_ms: int = config.origin_ms
        self.wallet = config.initial_balance
        self.wallet_update_ms = 0
        self.orders: dict[int, SimOrder] = {}
        self.by_client_id: dict[str, int] = {}
        self.open: dict[int, SimOrder] = {}
        self.trades: list[SimTrade] = []
        self.rejections: list[Rejection] = []
        self.positions: dict[str, SimPosition] = {s: SimPosition(s) for s in self.specs}
        self.countdowns: dict[str, int] = {}
        self.pins: dict[str, Decimal] = {}
        self.next_order_id = config.first_order_id
        self.next_trade_id = config.first_trade_id

    # --- prices -----------------------------------------------------------------------

    def spec(self, symbol: str | None) -> SymbolSpec:
        if not symbol:
            raise missing_param("symbol")
        spec = self.specs.get(symbol)
        if spec is None:
            raise SimError(-1121, "Invalid symbol.")
        return spec

    def book(self, symbol: str, t_ms: int) -> Book:
        return self.path.book(self.spec(symbol), t_ms, self.pins.get(symbol))

    def pin_mid(self, symbol: str, mid: Decimal | None) -> None:
        """Hold a symbol's mid at ``mid`` (on the tick grid) instead of the path; None: release."""
        spec = self.spec(symbol)
        if mid is None:
            self.pins.pop(symbol, None)
            return
        with localcontext(DECIMAL_CONTEXT):
            self.pins[symbol] = floor_to(mid, spec.tick_size)

    # --- time ---------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Advance to ``now_ms``: due slices, crossed resting orders, expired countdowns."""
        now = max(now_ms, self.now_ms)
        with localcontext(DECIMAL_CONTEXT):
            for symbol in self.specs:
                deadline = self.countdowns.get(symbol)
                if deadline is not None and deadline <= now:
                    self._advance(symbol, deadline)
                    for order in self._open_of(symbol):
                        self._close(order, "CANCELED", deadline)
                    del self.countdowns[symbol]
                self._advance(symbol, now)
        self.now_ms = now

    def _open_of(self, symbol: str | None) -> list[SimOrder]:
        return [o for o in self.open.values() if symbol is None or o.symbol == symbol]

    def _advance(self, symbol: str, t: int) -> None:
        for order in self._open_of(symbol):
            while order.order_id in self.open and order.next_slice_ms is not None:
                if order.next_slice_ms > t:
                    break
                self._slice(order, order.next_slice_ms)
            if order.order_id in self.open and order.next_slice_ms is None:
                self._slice(order, t)

    def _slice(self, order: SimOrder, ts: int) -> None:
        """Fill one slice of ``order`` at ``ts`` if the book allows it."""
        book = self.book(order.symbol, ts)
        buy = order.side == "BUY"
        if order.type == "MARKET":
            price, maker = (book.ask if buy else book.bid), False
        else:
            crossed = book.ask <= order.price if buy else book.bid >= order.price
            if not crossed:
                order.next_slice_ms = None  # rests until the book crosses it
                order.resting = True
                return
            if order.resting:
                price, maker = order.price, True
            else:
                price, maker = (book.ask if buy else book.bid), False
        remaining = order.orig_qty - order.executed_qty
        last = order.slices_done + 1 >= self.config.fill_slices
        qty = remaining if last else min(order.slice_qty, remaining)
        if order.reduce_only:
            amount = self.positions[order.symbol].amount
            if amount == ZERO or (amount > ZERO) == buy:
                self._close(order, "EXPIRED", ts)
                return
            qty = min(qty, abs(amount))
        self._fill(order, price, qty, maker, ts)
        if order.executed_qty == order.orig_qty:
            self._close(order, "FILLED", ts)
            return
        order.status = "PARTIALLY_FILLED"
        if order.reduce_only and self.positions[order.symbol].amount == ZERO:
            self._close(order, "EXPIRED", ts)
            return
        order.next_slice_ms = ts + self.config.slice_interval_ms

    def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, maker: bool, ts: int) -> None:
        pos = self.positions[order.symbol]
        notional = price * qty
        rate = self.config.maker_fee if maker else self.config.taker_fee
        commission = _q8(notional * rate)
        signed = qty if order.side == "BUY" else -qty
        realized = ZERO
        if pos.amount == ZERO or (pos.amount > ZERO) == (signed > ZERO):
            size = abs(pos.amount)
            pos.entry_price = _q8(
                (pos.entry_price * size + notional) / (size + qty), ROUND_HALF_EVEN
            )
        else:
            closing = min(qty, abs(pos.amount))
            direction = 1 if pos.amount > ZERO else -1
            realized = _q8((price - pos.entry_price) * closing * direction)
            if qty > closing:
                pos.entry_price = price  # flipped: the rest opens at the fill price
            elif closing == abs(pos.amount):
                pos.entry_price = ZERO
        pos.amount += signed
        pos.update_time_ms = ts
        self.wallet += realized - commission
        self.wallet_update_ms = ts
        order.executed_qty += qty
        order.cum_quote += notional
        order.slices_done += 1
        order.update_time_ms = ts
        self.trades.append(
            SimTrade(
                trade_id=self.next_trade_id,
                order_id=order.order_id,
                symbol=order.symbol,
                side=order.side,
                price=price,
                qty=qty,
                quote_qty=notional,
                commission=commission,
                realized_pnl=realized,
                time_ms=ts,
                maker=maker,
            )
        )
        self.next_trade_id += 1

    def _close(self, order: SimOrder, status: str, ts: int) -> None:
        order.status = status
        order.next_slice_ms = None
        order.update_time_ms = ts
        self.open.pop(order.order_id, None)

    # --- orders -------------------------------------------------------------------------

    def place_order(self, req: OrderRequest, now_ms: int) -> SimOrder:
        """Validate and accept an order (its first slice may fill at once) or raise."""
        self.tick(now_ms)
        now = self.now_ms
        try:
            with localcontext(DECIMAL_CONTEXT):
                order = self._accept(req, now)
        except SimError as err:
            self.rejections.append(Rejection.of(req, err.code, err.msg, now))
            raise
        return order

    def _accept(self, req: OrderRequest, now: int) -> SimOrder:
        spec = self.spec(req.symbol)
        if not req.side:
            raise missing_param("side")
        if req.side not in ("BUY", "SELL"):
            raise SimError(-1117, "Invalid side.")
        if not req.type:
            raise missing_param("type")
        if req.type not in ("MARKET", "LIMIT"):
            raise SimError(-1116, "Invalid orderType.")
        tif = req.time_in_force
        if req.type == "LIMIT" and not tif:
            raise missing_param("timeInForce")
        if tif is not None and tif != "GTC":
            raise SimError(-1115, "Invalid timeInForce.")
        qty = self._number("quantity", req.quantity)
        if qty <= ZERO:
            raise SimError(-4003, "Quantity less than or equal to zero.")
        if decimals_of(qty.normalize()) > spec.qty_decimals or not is_multiple(qty, spec.step_size):
            raise SimError(-1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty:
            raise SimError(-4004, "Quantity less than min qty.")
        if qty > spec.max_qty:
            raise SimError(-4005, "Quantity greater than max qty.")
        price = ZERO
        if req.type == "LIMIT":
            price = self._number("price", req.price)
            if price <= ZERO:
                raise SimError(-4001, "Price less than 0.")
            if decimals_of(price.normalize()) > spec.price_decimals:
                raise SimError(-1111, "Precision is over the maximum defined for this asset.")
            if not is_multiple(price, spec.tick_size):
                raise SimError(-4014, "Price not increased by tick size.")
            if price < spec.min_price:
                raise SimError(-4013, "Price less than min price.")
            if price > spec.max_price:
                raise SimError(-4002, "Price greater than max price.")
        elif req.price is not None:
            raise SimError(-1106, "Parameter 'price' sent when not required.")
        if req.position_side not in (None, "BOTH"):
            raise SimError(-4061, "Order's position side does not match user's setting.")
        if req.reduce_only not in (None, "true", "false"):
            raise SimError(-1130, "Data sent for parameter 'reduceOnly' is not valid.")
        reduce_only = req.reduce_only == "true"
        client_id = req.client_order_id
        if client_id is not None:
            if not _CLIENT_ID.match(client_id):
                raise SimError(-4015, "Client order id is not valid.")
            if client_id in self.by_client_id:
                raise SimError(-4116, "ClientOrderId is duplicated.")
        if len(self._open_of(spec.symbol)) >= MAX_OPEN_ORDERS:
            raise SimError(-2025, "Reach max open order limit.")
        buy = req.side == "BUY"
        amount = self.positions[spec.symbol].amount
        book = self.book(spec.symbol, now)
        if reduce_only:
            if amount == ZERO or (amount > ZERO) == buy:
                raise SimError(-2022, "ReduceOnly Order is rejected.")
        else:
            ref = price if req.type == "LIMIT" else book.mid
            if qty * ref < spec.min_notional:
                raise SimError(
                    -4164,
                    f"Order's notional must be no smaller than {spec.min_notional} "
                    "(unless you choose reduce only).",
                )
            reducing = amount != ZERO and (amount > ZERO) != buy
            opening = max(ZERO, qty - abs(amount)) if reducing else qty
            book_ref = book.ask if buy else book.bid
            # a BUY limit fills at its price or below; a SELL limit at its price or above
            # (at the bid when marketable): priced at max(limit, bid), as Binance prices
            # a short's cost at the largest of its price, the mark and the last price
            fill_ref = book_ref if req.type != "LIMIT" else price if buy else max(price, book_ref)
            if opening * fill_ref / spec.leverage > self.account(now).available_balance:
                raise SimError(-2019, "Margin is insufficient.")
        order_id = self.next_order_id
        self.next_order_id += 1
        slice_qty = max(spec.step_size, floor_to(qty / self.config.fill_slices, spec.step_size))
        order = SimOrder(
            order_id=order_id,
            client_order_id=client_id if client_id is not None else f"sim-{order_id}",
            symbol=spec.symbol,
            side=req.side,
            type=req.type,
            time_in_force="GTC",
            orig_qty=qty,
            price=price,
            reduce_only=reduce_only,
            status="NEW",
            time_ms=now,
            update_time_ms=now,
            slice_qty=slice_qty,
            next_slice_ms=now,
        )
        self.orders[order_id] = order
        self.by_client_id[order.client_order_id] = order_id
        self.open[order_id] = order
        self._slice(order, now)
        return order

    @staticmethod
    def _number(name: str, raw: str | None) -> Decimal:
        if raw is None or raw == "":
            raise missing_param(name)
        if not _NUMBER.match(raw):
            raise SimError(
                -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            )
        try:
            return Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            raise SimError(-1100, f"Illegal characters found in parameter '{name}'.") from None

    def find(self, symbol: str | None, order_id: int | None, client_id: str | None) -> SimOrder:
        """The order by id or client id (-2013 when unknown)."""
        spec = self.spec(symbol)
        if order_id is None and not client_id:
            raise SimError(-1102, "Either orderId or origClientOrderId must be sent.")
        if order_id is None and client_id is not None:
            order_id = self.by_client_id.get(client_id)
        order = self.orders.get(order_id) if order_id is not None else None
        if order is None or order.symbol != spec.symbol:
            raise SimError(-2013, "Order does not exist.")
        if client_id and order.client_order_id != client_id:
            raise SimError(-2013, "Order does not exist.")
        return order

    def cancel_order(
        self, symbol: str | None, order_id: int | None, client_id: str | None, now_ms: int
    ) -> SimOrder:
        self.tick(now_ms)
        try:
            order = self.find(symbol, order_id, client_id)
        except SimError as err:
            if err.code == -2013:
                raise SimError(-2011, "Unknown order sent.") from None
            raise
        if order.order_id not in self.open:
            raise SimError(-2011, "Unknown order sent.")
        self._close(order, "CANCELED", self.now_ms)
        return order

    def cancel_all(self, symbol: str | None, now_ms: int) -> list[SimOrder]:
        spec = self.spec(symbol)
        self.tick(now_ms)
        orders = self._open_of(spec.symbol)
        for order in orders:
            self._close(order, "CANCELED", self.now_ms)
        return orders

    def set_countdown(self, symbol: str | None, countdown_ms: int, now_ms: int) -> None:
        """Cancel all open orders of ``symbol`` at ``now + countdown_ms``; 0 stops the timer."""
        spec = self.spec(symbol)
        self.tick(now_ms)
        if countdown_ms <= 0:
            self.countdowns.pop(spec.symbol, None)
        else:
            self.countdowns[spec.symbol] = self.now_ms + countdown_ms

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        if symbol is not None:
            self.spec(symbol)
        return self._open_of(symbol)

    # --- account ------------------------------------------------------------------------

    def position_views(self, now_ms: int) -> list[PositionView]:
        views = []
        with localcontext(DECIMAL_CONTEXT):
            for symbol, spec in self.specs.items():
                pos = self.positions[symbol]
                mark = self.book(symbol, now_ms).mid
                notional = pos.amount * mark
                views.append(
                    PositionView(
                        spec=spec,
                        amount=pos.amount,
                        entry_price=pos.entry_price,
                        mark_price=mark,
                        unrealized_pnl=_q8((mark - pos.entry_price) * pos.amount),
                        notional=notional,
                        initial_margin=_q8(abs(notional) / spec.leverage),
                        maint_margin=_q8(abs(notional) * spec.maint_margin_ratio),
                        update_time_ms=pos.update_time_ms,
                    )
                )
        return views

    def account(self, now_ms: int) -> AccountView:
        views = self.position_views(now_ms)
        with localcontext(DECIMAL_CONTEXT):
            upnl = sum((v.unrealized_pnl for v in views), ZERO)
            pos_im = sum((v.initial_margin for v in views), ZERO)
            maint = sum((v.maint_margin for v in views), ZERO)
            order_im = ZERO
            for o in self.open.values():
                if o.reduce_only:
                    continue
                spec = self.specs[o.symbol]
                ref = o.price if o.type == "LIMIT" else self.book(o.symbol, now_ms).mid
                order_im += (o.orig_qty - o.executed_qty) * ref / spec.leverage
            order_im = _q8(order_im)
            return AccountView(
                wallet_balance=self.wallet,
                unrealized_pnl=upnl,
                position_initial_margin=pos_im,
                open_order_initial_margin=order_im,
                maint_margin=maint,
                available_balance=self.wallet + upnl - pos_im - order_im,
                update_time_ms=self.wallet_update_ms,
            )

    # --- persistence --------------------------------------------------------------------

    def reconfigure(self, **changes: Any) -> None:
        """Change fill parameters (``fill_slices``, ``slice_interval_ms``, fees) of a run."""
        allowed = {"fill_slices", "slice_interval_ms", "maker_fee", "taker_fee"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot reconfigure {sorted(unknown)}")
        self.config = replace(self.config, **changes)

    def export_state(self) -> dict[str, Any]:
        """Everything needed to continue the run, as a JSON-able dict (Decimals as strings)."""
        return {
            "version": 1,
            "config": config_to_doc(self.config),
            "now_ms": self.now_ms,
            "wallet": str(self.wallet),
            "wallet_update_ms": self.wallet_update_ms,
            "next_order_id": self.next_order_id,
            "next_trade_id": self.next_trade_id,
            "orders": [order_to_doc(o) for o in self.orders.values()],
            "trades": [trade_to_doc(t) for t in self.trades],
            "rejections": [r.to_doc() for r in self.rejections],
            "positions": {s: p.to_doc() for s, p in self.positions.items()},
            "countdowns": dict(self.countdowns),
            "pins": {s: str(p) for s, p in self.pins.items()},
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> Engine:
        if doc.get("version") != 1:
            raise ValueError(f"unsupported simulator state version {doc.get('version')!r}")
        engine = cls(config_from_doc(doc["config"]))
        engine.now_ms = int(doc["now_ms"])
        engine.wallet = Decimal(doc["wallet"])
        engine.wallet_update_ms = int(doc["wallet_update_ms"])
        engine.next_order_id = int(doc["next_order_id"])
        engine.next_trade_id = int(doc["next_trade_id"])
        for raw in doc["orders"]:
            order = order_from_doc(raw)
            engine.orders[order.order_id] = order
            engine.by_client_id[order.client_order_id] = order.order_id
            if order.status in OPEN_STATUSES:
                engine.open[order.order_id] = order
        engine.trades = [trade_from_doc(t) for t in doc["trades"]]
        engine.rejections = [Rejection.from_doc(r) for r in doc["rejections"]]
        for symbol, raw in doc["positions"].items():
            engine.positions[symbol] = SimPosition.from_doc(symbol, raw)
        engine.countdowns = {s: int(v) for s, v in doc["countdowns"].items()}
        engine.pins = {s: Decimal(v) for s, v in doc["pins"].items()}
        return engine
