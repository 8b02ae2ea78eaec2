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

Refusals raise `SimError` with Binance's code, message and HTTP status. The order filters
are in `rules`, the netting and margin arithmetic in `account`, the state file in `state`.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal, localcontext
from typing import Any

from titan_exec.adapters.venue.exchange import state
from titan_exec.adapters.venue.exchange.account import (
    account_view,
    fee,
    net_trade,
    orders_margin,
    position_views,
)
from titan_exec.adapters.venue.exchange.market import (
    ZERO,
    Book,
    SymbolSpec,
    floor_to,
)
from titan_exec.adapters.venue.exchange.prices import Prices
from titan_exec.adapters.venue.exchange.records import (
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
    missing_param,
)
from titan_exec.adapters.venue.exchange.rules import check_position, check_request
from titan_exec.core.model import DECIMAL_CONTEXT

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

MAX_OPEN_ORDERS = 200


class Engine:
    """One simulated account on a set of symbols. Call `tick` as time passes."""

    def __init__(self, config: EngineConfig) -> None:
        if config.origin_ms is None:
            raise ValueError("EngineConfig.origin_ms is required (the engine has no clock)")
        self.config = config
        self.specs: dict[str, SymbolSpec] = {s.symbol: s for s in config.symbols}
        self.prices = Prices.of(config, config.origin_ms)
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
        book = self.quote(symbol, t_ms)
        if book is None:
            raise SimError(-2010, f"no market price for {symbol}")
        return book

    def quote(self, symbol: str, t_ms: int) -> Book | None:
        """The book, or None for a `quoted` engine without a quote for ``symbol`` yet."""
        return self.prices.book(self.spec(symbol), t_ms)

    def set_quote(self, symbol: str, bid: Decimal, ask: Decimal) -> None:
        """The book of ``symbol`` from now on (a `quoted` engine); `tick` fills on it."""
        self.prices.set_quote(symbol, bid, ask)

    def list_symbol(self, spec: SymbolSpec) -> None:
        """Trade ``spec`` from now on (a symbol already listed keeps its spec)."""
        if spec.symbol not in self.specs:
            self.specs[spec.symbol] = spec
            self.positions[spec.symbol] = SimPosition(spec.symbol)

    def pin_mid(self, symbol: str, mid: Decimal | None) -> None:
        """Hold a symbol's mid at ``mid`` (on the tick grid) instead of the path; None: release."""
        self.prices.pin_mid(self.spec(symbol), mid)

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
        book = self.quote(order.symbol, ts)
        buy = order.side == "BUY"
        if book is None:  # no price yet (a quoted engine): wait for one
            order.next_slice_ms = None
            order.resting = True
            return
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
        notional = price * qty
        commission = fee(notional, self.config.maker_fee if maker else self.config.taker_fee)
        signed = qty if order.side == "BUY" else -qty
        realized = net_trade(self.positions[order.symbol], signed, price, ts)
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
        checked = check_request(req, spec)
        if checked.client_id is not None and checked.client_id in self.by_client_id:
            raise SimError(-4116, "ClientOrderId is duplicated.")
        if len(self._open_of(spec.symbol)) >= MAX_OPEN_ORDERS:
            raise SimError(-2025, "Reach max open order limit.")
        check_position(
            checked,
            spec,
            self.positions[spec.symbol].amount,
            self.quote(spec.symbol, now),
            (lambda: self.account(now).available_balance) if self.config.check_margin else None,
        )
        order_id = self.next_order_id
        self.next_order_id += 1
        qty = checked.qty
        order = SimOrder(
            order_id=order_id,
            client_order_id=checked.client_id or f"sim-{order_id}",
            symbol=spec.symbol,
            side=checked.side,
            type=checked.type,
            time_in_force="GTC",
            orig_qty=qty,
            price=checked.price,
            reduce_only=checked.reduce_only,
            status="NEW",
            time_ms=now,
            update_time_ms=now,
            slice_qty=max(spec.step_size, floor_to(qty / self.config.fill_slices, spec.step_size)),
            next_slice_ms=now,
        )
        self.orders[order_id] = order
        self.by_client_id[order.client_order_id] = order_id
        self.open[order_id] = order
        self._slice(order, now)
        return order

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
        """Every listed symbol's position, marked at the mid (at its entry without a book)."""
        with localcontext(DECIMAL_CONTEXT):
            return position_views(self.specs, self.positions, lambda s: self.quote(s, now_ms))

    def account(self, now_ms: int) -> AccountView:
        views = self.position_views(now_ms)
        with localcontext(DECIMAL_CONTEXT):
            order_im = orders_margin(
                self.open.values(), self.specs, lambda s: self.quote(s, now_ms)
            )
            return account_view(self.wallet, self.wallet_update_ms, views, order_im)

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
        return state.export_state(self)

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> Engine:
        state.check_version(doc)
        engine = cls(config_from_doc(doc["config"]))
        state.restore_state(engine, doc)
        return engine
