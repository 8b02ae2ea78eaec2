"""An in-process paper venue: the exchange model behind the `Venue` port, for the demo and tests.

Fills, slices, reduce-only clamping, fees, netting and balances are the exchange model's
(`adapters/venue/exchange/engine.py`, the same engine the venue simulator serves). This
module maps the port onto it and supplies what the engine does not have:

* Prices come only from `on_ticker` (the service forwards its market data): the engine is
  `quoted`, so a MARKET order for a symbol without a quote is refused and a LIMIT order
  rests until one crosses it. BUY fills at the ask, SELL at the bid; a LIMIT marketable on
  arrival fills as taker at the book, a resting one as maker at its limit.
* Time: the engine is ticked at the clock on every call and ticker. With
  ``fill_slices = n > 1`` a match is delivered as n trades (quantities on a 1e-8 step, the
  last taking the remainder); the first at once, the next ones ``slice_interval_ms``
  apart, each at the book of its time, delivered by an event-loop timer (all at once when
  the interval is 0 or no event loop runs). Canceling a partly filled order cancels the
  rest.
* Symbols are listed when first ordered, with the paper filters (`paper_spec`): step and
  tick 1e-8, no minimum notional; the paper venue keeps no margin.
* Client order ids are single use for the venue session: a second use is rejected with
  `is_duplicate=True` (Binance's -4116), even when the first order was refused. A refused
  order is kept as REJECTED (queries and cancels answer it).
* Ids: venue order ids ``{name}-O{n}``, trade ids ``{name}-T{n}``, refused orders
  ``{name}-R{n}``. `fills_since` cursors are the number of trades seen.
* `positions` reports every symbol ever ordered (flat ones as an explicit 0) and 0 for any
  other symbol asked about; `balances` is the USDT wallet (initial balance + realised PnL -
  fees), all of it free; `equity` adds the unrealised PnL at mid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal

from titan_exec.adapters.venue.base import CancelResult, Placed, VenueRejected
from titan_exec.adapters.venue.exchange.engine import Engine, EngineConfig, OrderRequest, SimError
from titan_exec.adapters.venue.exchange.market import SymbolSpec
from titan_exec.adapters.venue.exchange.records import SimOrder, SimTrade
from titan_exec.clock import wall_clock_ms
from titan_exec.core.model import ZERO, ClientOrderId, OrderType, Side, VenueOrderId
from titan_exec.core.reports import (
    BalanceReport,
    FillReport,
    OrderReport,
    PlaceRequest,
    PositionReport,
    VenueOrderStatus,
)

QUOTE = "USDT"
QTY_STEP = Decimal("1E-8")
PAPER_MAX = Decimal("1E+15")
_BPS = Decimal(10_000)


def paper_spec(symbol: str) -> SymbolSpec:
    """The filters of a paper symbol: anything on a 1e-8 grid, no minimum notional."""
    base, _, quote = symbol.partition("/")
    return SymbolSpec(
        symbol=symbol,
        base=base,
        quote=quote or QUOTE,
        tick_size=QTY_STEP,
        step_size=QTY_STEP,
        min_qty=QTY_STEP,
        max_qty=PAPER_MAX,
        min_notional=ZERO,
        start_price=ZERO,
        min_price=QTY_STEP,
        max_price=PAPER_MAX,
    )


def order_request(req: PlaceRequest) -> OrderRequest:
    """The port's place request as the engine's (Binance) parameters."""
    limit = req.order_type is OrderType.LIMIT
    return OrderRequest(
        symbol=req.symbol,
        side=req.side.value,
        type=req.order_type.value,
        quantity=f"{req.qty:f}",
        price=f"{req.limit_price:f}" if limit and req.limit_price is not None else None,
        client_order_id=req.client_order_id,
        reduce_only="true" if req.is_reduce_only else None,
        time_in_force="GTC" if limit else None,
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class PaperVenue:
    """A simulated venue over the exchange model; see the module docstring."""

    def __init__(
        self,
        name: str = "sim",
        *,
        account: str = "main",
        balance_usdt: Decimal = Decimal("100000"),
        taker_fee_bps: Decimal = Decimal("4"),
        maker_fee_bps: Decimal = Decimal("2"),
        fill_slices: int = 1,
        slice_interval_ms: int = 0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if fill_slices < 1:
            raise ValueError(f"fill_slices must be >= 1: {fill_slices}")
        self.name = name
        self.account = account
        self._clock = clock or wall_clock_ms
        self.engine = Engine(
            EngineConfig(
                origin_ms=0,
                symbols=(),
                fill_slices=fill_slices,
                slice_interval_ms=slice_interval_ms,
                maker_fee=maker_fee_bps / _BPS,
                taker_fee=taker_fee_bps / _BPS,
                initial_balance=balance_usdt,
                first_order_id=1,
                first_trade_id=1,
                quoted=True,
                check_margin=False,
            )
        )
        self.refused: dict[ClientOrderId, OrderReport] = {}
        """Refused orders by client order id (their id stays used up)."""
        self._activity = asyncio.Event()
        self._trades_seen = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- Venue protocol ------------------------------------------------------------------

    async def place(self, req: PlaceRequest) -> Placed:
        coid = req.client_order_id
        if coid in self.refused or coid in self.engine.by_client_id:
            raise VenueRejected(f"ClientOrderId is duplicated: {coid}", is_duplicate=True)
        now = self._now()
        self.engine.list_symbol(paper_spec(req.symbol))
        try:
            order = self.engine.place_order(order_request(req), now)
        except SimError as err:
            self.refused[coid] = self._refusal(req, now)
            raise VenueRejected(err.msg, is_duplicate=err.code == -4116) from None
        finally:
            self._settle()
        return Placed(venue_order_id=self._venue_order_id(order), status=_status(order))

    async def cancel(self, symbol: str, coid: ClientOrderId) -> CancelResult:
        now = self._now()
        order = self._order(symbol, coid)
        if order is None:
            refused = self.refused.get(coid)
            known = refused is not None and refused.symbol == symbol
            return CancelResult(VenueOrderStatus.REJECTED if known else VenueOrderStatus.NOT_FOUND)
        if order.is_open:
            self.engine.cancel_order(symbol, order.order_id, None, now)
            self._settle()
        return CancelResult(_status(order))

    async def query_order(self, symbol: str, coid: ClientOrderId) -> OrderReport | None:
        self._now()
        order = self._order(symbol, coid)
        if order is not None:
            return self.report(order)
        refused = self.refused.get(coid)
        return refused if refused is not None and refused.symbol == symbol else None

    async def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        self._now()
        return [
            self.report(order)
            for order in self.engine.open.values()
            if symbol is None or order.symbol == symbol
        ]

    async def fills_since(
        self, cursor: str | None, symbols: frozenset[str] | None = None
    ) -> tuple[list[FillReport], str | None]:
        self._now()
        trades = self.engine.trades
        start = 0 if cursor is None else int(cursor)
        if not 0 <= start <= len(trades):
            raise ValueError(f"bad fill cursor: {cursor!r}")
        return [self.fill(t) for t in trades[start:]], str(len(trades))

    async def wait_activity(self, timeout_s: float) -> None:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            async with asyncio.timeout(timeout_s):
                await self._activity.wait()
        except TimeoutError:
            return
        self._activity.clear()

    async def positions(self, symbols: frozenset[str] = frozenset()) -> list[PositionReport]:
        """Every symbol ever ordered, flat ones as explicit 0, and 0 for the other symbols
        asked about (the paper venue knows its whole book)."""
        self._now()
        held = self.engine.positions
        return [
            PositionReport(self.name, self.account, s, qty=pos.amount, entry_price=pos.entry_price)
            for s, pos in held.items()
        ] + [
            PositionReport(self.name, self.account, s, qty=ZERO, entry_price=ZERO)
            for s in sorted(symbols - set(held))
        ]

    async def balances(self) -> list[BalanceReport]:
        """The quote balance (cash: fills, fees and realised PnL), all of it free: the paper
        venue keeps no margin."""
        self._now()
        wallet = self.engine.wallet
        return [BalanceReport(QUOTE, total=wallet, free=wallet, used=ZERO)]

    async def equity(self) -> Decimal | None:
        account = self.engine.account(self._now())
        return account.wallet_balance + account.unrealized_pnl

    def on_ticker(self, symbol: str, bid: Decimal, ask: Decimal, ts_ms: int) -> None:
        self.engine.set_quote(symbol, bid, ask)
        self._now()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the engine's records as the port's reports ------------------------------------

    def report(self, order: SimOrder) -> OrderReport:
        return OrderReport(
            venue=self.name,
            account=self.account,
            symbol=order.symbol,
            client_order_id=ClientOrderId(order.client_order_id),
            venue_order_id=self._venue_order_id(order),
            status=_status(order),
            qty=order.orig_qty,
            filled_qty=order.executed_qty,
            ts_ms=order.update_time_ms,
        )

    def fill(self, trade: SimTrade) -> FillReport:
        order = self.engine.orders[trade.order_id]
        return FillReport(
            venue=self.name,
            account=self.account,
            symbol=trade.symbol,
            client_order_id=ClientOrderId(order.client_order_id),
            venue_order_id=self._venue_order_id(order),
            trade_id=f"{self.name}-T{trade.trade_id}",
            side=Side(trade.side),
            price=trade.price,
            qty=trade.qty,
            fee=trade.commission,
            fee_currency=trade.commission_asset,
            ts_ms=trade.time_ms,
        )

    def _venue_order_id(self, order: SimOrder) -> VenueOrderId:
        return VenueOrderId(f"{self.name}-O{order.order_id}")

    def _refusal(self, req: PlaceRequest, now: int) -> OrderReport:
        return OrderReport(
            venue=self.name,
            account=self.account,
            symbol=req.symbol,
            client_order_id=req.client_order_id,
            venue_order_id=VenueOrderId(f"{self.name}-R{len(self.refused) + 1}"),
            status=VenueOrderStatus.REJECTED,
            qty=req.qty,
            filled_qty=ZERO,
            ts_ms=now,
        )

    def _order(self, symbol: str, coid: ClientOrderId) -> SimOrder | None:
        order_id = self.engine.by_client_id.get(coid)
        order = self.engine.orders.get(order_id) if order_id is not None else None
        return order if order is not None and order.symbol == symbol else None

    # -- time ----------------------------------------------------------------------------

    def _now(self) -> int:
        """Tick the engine to the clock; the engine's time (never earlier than a slice
        the timer already delivered)."""
        self.engine.tick(self._clock())
        self._settle()
        return self.engine.now_ms

    def _settle(self) -> None:
        """After the engine moved: signal new trades, and deliver or schedule due slices."""
        due = self._next_slice_ms()
        loop = _running_loop()
        while due is not None and (loop is None or self.engine.config.slice_interval_ms == 0):
            self.engine.tick(due)
            due = self._next_slice_ms()
        if len(self.engine.trades) > self._trades_seen:
            self._trades_seen = len(self.engine.trades)
            self._activity.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if due is not None and loop is not None and not self._closed:
            delay = max(0, due - self.engine.now_ms) / 1000
            self._timer = loop.call_later(delay, self._on_timer, due)

    def _on_timer(self, due: int) -> None:
        self._timer = None
        self.engine.tick(max(self._clock(), due))
        self._settle()

    def _next_slice_ms(self) -> int | None:
        return min(
            (o.next_slice_ms for o in self.engine.open.values() if o.next_slice_ms is not None),
            default=None,
        )


def _status(order: SimOrder) -> VenueOrderStatus:
    """The engine's order status, in Binance's words (records.py writes only the six an
    order can have), as the port's value; any other word is an engine bug and raises."""
    return VenueOrderStatus(order.status)
