"""An in-process paper venue: a USDⓈ-M futures venue in miniature, for tests and the demo.

Behaviour:

* Prices come only from `on_ticker` (the service forwards its market data). A MARKET order
  fills at once, BUY at the ask and SELL at the bid, as taker; with no price yet for its
  symbol it is rejected. A LIMIT BUY fills when ask <= limit and a LIMIT SELL when
  bid >= limit. Marketable on arrival, it fills at once as taker at the book (the ask for a
  BUY, the bid for a SELL: the limit is a bound, the difference a price improvement, as on
  a real venue); otherwise it rests and fills as maker at its limit price when a later
  `on_ticker` crosses it.
* An order is matched all at once; with `fill_slices = n > 1` the match is delivered as n
  equal trades (the last takes the remainder; quantities rounded down to 1e-8), the first
  at once and the others `slice_interval_ms` apart (all at once when the interval is 0 or
  no event loop runs). Positions, fees and realised PnL change as each trade is delivered.
* Client order ids are single use for the venue session: a second use is rejected with
  `is_duplicate=True` (Binance's -4116), even when the first order was rejected. Refused
  orders are recorded as REJECTED. qty <= 0 and a LIMIT without a positive price are
  rejected.
* A reduce-only order is clamped to the opposite position (counting trades matched but not
  yet delivered), and rejected when there is none. A resting reduce-only order is clamped
  again when it matches, and EXPIRED if the position is gone by then.
* `cancel` cancels a resting order (CANCELED). A matched order cannot be canceled, even if
  some of its slices are still to be delivered: those trades already happened, so the
  answer is FILLED. A terminal order answers its status; an unknown one NOT_FOUND.
* Positions are netted per symbol (signed qty, average entry); realised PnL and fees go to
  the USDT wallet balance; `equity` adds the unrealised PnL at mid. `positions` reports
  flat positions explicitly (qty 0), never by leaving them out.
* Fault injection, settable at run time: `fail_next_place` (raised once, nothing placed),
  `lose_next_response` (the place is executed but `VenueUnknownOutcome` is raised),
  `hidden_for_ms` (a new order is invisible to `query_order` / `open_orders` for that
  long; it still trades and can be canceled), `latency_ms` (a sleep before each request).
* Inspection for tests: `all_orders()`, `all_fills()`, `place_count` (place requests that
  reached the venue, whatever their outcome). `book_external_trade` moves a position behind
  the service's back (as a liquidation or a manual trade on another session would), with no
  fill that `fills_since` shows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from titan_exec.adapters.venue.base import (
    CancelResult,
    Placed,
    VenueRejected,
    VenueUnknownOutcome,
)
from titan_exec.core.model import ZERO, ClientOrderId, OrderType, Side, VenueOrderId
from titan_exec.core.reports import (
    BalanceReport,
    FillReport,
    OrderReport,
    PlaceRequest,
    PositionReport,
)

QUOTE = "USDT"
QTY_STEP = Decimal("1E-8")
_BPS = Decimal(10_000)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@dataclass(slots=True)
class _Order:
    req: PlaceRequest
    venue_order_id: VenueOrderId
    qty: Decimal
    visible_from_ms: int
    updated_ms: int
    matched_qty: Decimal = ZERO
    """Matched by the engine: delivered as trades or still to be delivered."""
    filled_qty: Decimal = ZERO
    """Delivered as trades."""
    final_status: str | None = None
    """CANCELED, REJECTED or EXPIRED; None while the status follows the fills."""

    @property
    def status(self) -> str:
        if self.final_status is not None:
            return self.final_status
        if self.filled_qty >= self.qty:
            return "FILLED"
        return "PARTIALLY_FILLED" if self.filled_qty > ZERO else "NEW"

    @property
    def resting_qty(self) -> Decimal:
        return ZERO if self.final_status is not None else self.qty - self.matched_qty

    def report(self, venue: str) -> OrderReport:
        return OrderReport(
            venue=venue,
            symbol=self.req.symbol,
            client_order_id=self.req.client_order_id,
            venue_order_id=self.venue_order_id,
            status=self.status,
            qty=self.qty,
            filled_qty=self.filled_qty,
            ts_ms=self.updated_ms,
        )


@dataclass(slots=True)
class _Position:
    qty: Decimal = ZERO
    entry: Decimal = ZERO


def split(qty: Decimal, slices: int) -> list[Decimal]:
    """`qty` as `slices` equal parts rounded down to QTY_STEP, the last taking the rest."""
    raw = qty / slices
    part = raw.quantize(QTY_STEP, rounding=ROUND_DOWN)
    if part == raw:
        part = raw
    if slices <= 1 or part <= ZERO:
        return [qty]
    return [part] * (slices - 1) + [qty - part * (slices - 1)]


class PaperVenue:
    """A simulated venue; see the module docstring for its behaviour."""

    def __init__(
        self,
        name: str = "sim",
        *,
        balance_usdt: Decimal = Decimal("100000"),
        taker_fee_bps: Decimal = Decimal("4"),
        maker_fee_bps: Decimal = Decimal("2"),
        fill_slices: int = 1,
        slice_interval_ms: int = 0,
        latency_ms: int = 0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if fill_slices < 1:
            raise ValueError(f"fill_slices must be >= 1: {fill_slices}")
        self.name = name
        self.taker_fee_bps = taker_fee_bps
        self.maker_fee_bps = maker_fee_bps
        self.fill_slices = fill_slices
        self.slice_interval_ms = slice_interval_ms
        self.latency_ms = latency_ms
        self.fail_next_place: Exception | None = None
        self.lose_next_response = False
        self.hidden_for_ms = 0
        self.place_count = 0
        self._clock = clock or (lambda: int(time.time() * 1000))
        self._balance = balance_usdt
        self._quotes: dict[str, tuple[Decimal, Decimal]] = {}
        self._orders: dict[ClientOrderId, _Order] = {}
        self._resting: dict[ClientOrderId, _Order] = {}
        self._positions: dict[str, _Position] = {}
        self._fills: list[FillReport] = []
        self._pending: dict[VenueOrderId, asyncio.TimerHandle] = {}
        self._activity = asyncio.Event()
        self._order_seq = 0
        self._trade_seq = 0

    # -- Venue protocol ------------------------------------------------------------------

    async def place(self, req: PlaceRequest) -> Placed:
        await self._latency()
        if self.fail_next_place is not None:
            exc, self.fail_next_place = self.fail_next_place, None
            raise exc
        self.place_count += 1
        lose, self.lose_next_response = self.lose_next_response, False
        try:
            placed = self._accept(req)
        except VenueRejected as exc:
            if lose:
                raise VenueUnknownOutcome(f"response lost (was: {exc.reason})") from exc
            raise
        if lose:
            raise VenueUnknownOutcome(f"response lost for {req.client_order_id}")
        return placed

    async def cancel(self, symbol: str, coid: ClientOrderId) -> CancelResult:
        await self._latency()
        order = self._orders.get(coid)
        if order is None or order.req.symbol != symbol:
            return CancelResult("NOT_FOUND")
        if order.resting_qty > ZERO:
            self._finish(order, "CANCELED")
            return CancelResult("CANCELED")
        if order.final_status is None:
            return CancelResult("FILLED")  # matched; undelivered slices are past trades
        return CancelResult(order.status)

    async def query_order(self, symbol: str, coid: ClientOrderId) -> OrderReport | None:
        await self._latency()
        order = self._orders.get(coid)
        if order is None or order.req.symbol != symbol or not self._visible(order):
            return None
        return order.report(self.name)

    async def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        await self._latency()
        return [
            report
            for order in self._orders.values()
            if (symbol is None or order.req.symbol == symbol) and self._visible(order)
            if (report := order.report(self.name)).is_open
        ]

    async def fills_since(
        self, cursor: str | None, symbols: frozenset[str] | None = None
    ) -> tuple[list[FillReport], str | None]:
        await self._latency()
        start = 0 if cursor is None else int(cursor)
        if not 0 <= start <= len(self._fills):
            raise ValueError(f"bad fill cursor: {cursor!r}")
        return self._fills[start:], str(len(self._fills))

    async def wait_activity(self, timeout_s: float) -> None:
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            async with asyncio.timeout(timeout_s):
                await self._activity.wait()
        except TimeoutError:
            return
        self._activity.clear()

    async def positions(self, symbols: frozenset[str] = frozenset()) -> list[PositionReport]:
        """Every symbol it ever held, flat ones as explicit 0, and 0 for the other symbols
        asked about (the paper venue knows its whole book)."""
        await self._latency()
        return [
            PositionReport(venue=self.name, symbol=symbol, qty=pos.qty, entry_price=pos.entry)
            for symbol, pos in self._positions.items()
        ] + [
            PositionReport(venue=self.name, symbol=symbol, qty=ZERO, entry_price=ZERO)
            for symbol in sorted(symbols - set(self._positions))
        ]

    async def balances(self) -> list[BalanceReport]:
        """The quote balance (cash: fills, fees and realised PnL), all of it free: the paper
        venue keeps no margin."""
        await self._latency()
        return [BalanceReport(QUOTE, total=self._balance, free=self._balance, used=ZERO)]

    async def equity(self) -> Decimal | None:
        await self._latency()
        unrealised = ZERO
        for symbol, pos in self._positions.items():
            quote = self._quotes.get(symbol)
            if pos.qty != ZERO and quote is not None:
                unrealised += ((quote[0] + quote[1]) / 2 - pos.entry) * pos.qty
        return self._balance + unrealised

    def on_ticker(self, symbol: str, bid: Decimal, ask: Decimal, ts_ms: int) -> None:
        self._quotes[symbol] = (bid, ask)
        for order in list(self._resting.values()):
            if order.req.symbol == symbol and self._crosses(order.req):
                assert order.req.limit_price is not None
                self._match(order, order.req.limit_price, is_maker=True)

    async def close(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()

    # -- inspection for tests ------------------------------------------------------------

    def all_orders(self) -> list[OrderReport]:
        """Every order the venue ever received (REJECTED included, hidden ones too)."""
        return [order.report(self.name) for order in self._orders.values()]

    def all_fills(self) -> list[FillReport]:
        """Every trade the venue ever delivered, in order."""
        return list(self._fills)

    def book_external_trade(self, symbol: str, side: Side, qty: Decimal, price: Decimal) -> None:
        """A trade the service never sees as a fill: only the position and balance move."""
        self._book(symbol, side, qty, price, ZERO)

    # -- matching engine -----------------------------------------------------------------

    def _accept(self, req: PlaceRequest) -> Placed:
        coid = req.client_order_id
        if coid in self._orders:
            raise VenueRejected(f"ClientOrderId is duplicated: {coid}", is_duplicate=True)
        now = self._clock()
        self._order_seq += 1
        order = _Order(
            req=req,
            venue_order_id=VenueOrderId(f"{self.name}-O{self._order_seq}"),
            qty=req.qty,
            visible_from_ms=now + self.hidden_for_ms,
            updated_ms=now,
        )
        self._orders[coid] = order
        reason = self._refusal(req)
        if reason is not None:
            order.final_status = "REJECTED"
            raise VenueRejected(reason)
        if req.is_reduce_only:
            order.qty = min(order.qty, self._reducible(req.symbol, req.side))
        if req.order_type is OrderType.MARKET or self._crosses(req):
            bid, ask = self._quotes[req.symbol]  # a marketable limit fills at the book too
            self._match(order, ask if req.side is Side.BUY else bid, is_maker=False)
        else:
            self._resting[coid] = order
        return Placed(venue_order_id=order.venue_order_id, status=order.status)

    def _refusal(self, req: PlaceRequest) -> str | None:
        if req.qty <= ZERO:
            return f"invalid quantity {req.qty}"
        if req.order_type is OrderType.LIMIT:
            if req.limit_price is None or req.limit_price <= ZERO:
                return f"invalid limit price {req.limit_price}"
        elif req.symbol not in self._quotes:
            return f"no market price for {req.symbol}"
        if req.is_reduce_only and self._reducible(req.symbol, req.side) <= ZERO:
            return "ReduceOnly Order is rejected"
        return None

    def _crosses(self, req: PlaceRequest) -> bool:
        quote = self._quotes.get(req.symbol)
        if quote is None or req.limit_price is None:
            return False
        bid, ask = quote
        return ask <= req.limit_price if req.side is Side.BUY else bid >= req.limit_price

    def _reducible(self, symbol: str, side: Side) -> Decimal:
        """How much a `side` order can reduce the position, counting undelivered trades."""
        pos = self._positions.get(symbol)
        projected = pos.qty if pos is not None else ZERO
        for order in self._orders.values():
            if order.req.symbol == symbol:
                projected += (order.matched_qty - order.filled_qty) * order.req.side.sign
        return max(-projected * side.sign, ZERO)

    def _match(self, order: _Order, price: Decimal, *, is_maker: bool) -> None:
        self._resting.pop(order.req.client_order_id, None)
        qty = order.resting_qty
        if order.req.is_reduce_only:
            allowed = self._reducible(order.req.symbol, order.req.side)
            if allowed <= ZERO:
                self._finish(order, "EXPIRED")
                return
            if qty > allowed:
                order.qty -= qty - allowed
                qty = allowed
        order.matched_qty += qty
        fee_bps = self.maker_fee_bps if is_maker else self.taker_fee_bps
        self._deliver(order, price, fee_bps, split(qty, self.fill_slices))

    def _deliver(self, order: _Order, price: Decimal, bps: Decimal, rest: list[Decimal]) -> None:
        """Deliver the next slice now and schedule the others (or deliver them all now)."""
        self._pending.pop(order.venue_order_id, None)
        loop = _running_loop()
        while rest:
            self._trade(order, price, bps, rest.pop(0))
            if rest and self.slice_interval_ms > 0 and loop is not None:
                self._pending[order.venue_order_id] = loop.call_later(
                    self.slice_interval_ms / 1000, self._deliver, order, price, bps, rest
                )
                return

    def _trade(self, order: _Order, price: Decimal, fee_bps: Decimal, qty: Decimal) -> None:
        now = self._clock()
        self._trade_seq += 1
        req = order.req
        fee = price * qty * fee_bps / _BPS
        order.filled_qty += qty
        order.updated_ms = now
        self._book(req.symbol, req.side, qty, price, fee)
        self._fills.append(
            FillReport(
                venue=self.name,
                symbol=req.symbol,
                client_order_id=req.client_order_id,
                venue_order_id=order.venue_order_id,
                trade_id=f"{self.name}-T{self._trade_seq}",
                side=req.side,
                price=price,
                qty=qty,
                fee=fee,
                fee_currency=QUOTE,
                ts_ms=now,
            )
        )
        self._activity.set()

    def _book(self, symbol: str, side: Side, qty: Decimal, price: Decimal, fee: Decimal) -> None:
        """Net a trade into the position; realised PnL and the fee go to the balance."""
        pos = self._positions.setdefault(symbol, _Position())
        signed = qty * side.sign
        new_qty = pos.qty + signed
        if pos.qty == ZERO or (pos.qty > ZERO) == (signed > ZERO):
            pos.entry = (abs(pos.qty) * pos.entry + qty * price) / abs(new_qty)
        else:
            closed = min(abs(pos.qty), qty)
            direction = 1 if pos.qty > ZERO else -1
            self._balance += closed * (price - pos.entry) * direction
            if new_qty == ZERO:
                pos.entry = ZERO
            elif (new_qty > ZERO) != (pos.qty > ZERO):
                pos.entry = price
        pos.qty = new_qty
        self._balance -= fee

    def _finish(self, order: _Order, status: str) -> None:
        self._resting.pop(order.req.client_order_id, None)
        order.final_status = status
        order.updated_ms = self._clock()

    def _visible(self, order: _Order) -> bool:
        return self._clock() >= order.visible_from_ms

    async def _latency(self) -> None:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
