"""A real venue through ccxt (async REST): Binance USDⓈ-M, Bybit, OKX, ... by ccxt id.

Outcomes (see `base.py`) from ccxt's exception hierarchy:

- `DuplicateOrderId` → `VenueRejected(is_duplicate=True)`: the venue has the id; the order
  is in doubt and is queried.
- `InvalidOrder`, `InsufficientFunds`, `BadRequest`, `BadSymbol` → `VenueRejected`:
  a definitive refusal.
- `AuthenticationError`, `PermissionDenied`, `DDoSProtection` (HTTP 429) →
  `VenueUnavailable`: refused before execution.
- `RequestTimeout`, `NetworkError`, `ExchangeNotAvailable`, `OperationFailed` (-1001),
  any other `ExchangeError` → `VenueUnknownOutcome`: it may have executed; query by client
  order id, never resend.

A place is never retried here: the order runner resolves an unknown outcome by querying the
client order id. Reads (query, open orders, trades, positions, balances) are safe to retry
and are retried a few times on network errors. ccxt's own rate limiter is on, with order
writes (place, cancel) on a second client and so in a queue of their own.

Symbols are canonical inside the service (`BTC/USDT`); the venue market is the linear
swap settled in the quote (`BTC/USDT:USDT` on USDⓈ-M) when the venue has one, else the
spot market. Amounts and prices are rounded to the market's precision with ccxt, and the
minimum amount and notional are checked before sending (a clear `VenueRejected`). Numbers
are read from the venue's raw strings where the venue provides them (never via floats).

Fills come from the venue's user-data stream where ccxt.pro has one that is read here
(`ccxt_userstream.py`, Binance USDⓈ-M), with REST sweeps of the trades for gaps; elsewhere
(or `user_stream = False`) by polling the venue's trades per symbol, by the venue's own
cursor (`ccxt_trades.py`); Binance trades carry the venue order id, mapped back to our client order
id. The settings and the clients are `ccxt_setup.py` (credentials from the environment or
files, Docker secrets, never logged); ccxt's answers are read by `ccxt_answers.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.base import (
    CancelResult,
    Placed,
    VenueRejected,
    VenueUnavailable,
    VenueUnknownOutcome,
)
from titan_exec.adapters.venue.budget import WeightBudget
from titan_exec.adapters.venue.ccxt_answers import (
    dec,
    equity_of,
    is_duplicate_id,
    order_report,
    order_status,
    position_report,
)
from titan_exec.adapters.venue.ccxt_ids import fetch_by_client_id, place_params, rules_for
from titan_exec.adapters.venue.ccxt_setup import (
    CcxtSettings,
    VenueConfigError,
    make_client,
    read_secret,
    settings_from_env,
    tls_context,
)
from titan_exec.adapters.venue.ccxt_trades import TradeCursor
from titan_exec.adapters.venue.ccxt_userstream import STREAM_VENUES, UserStream
from titan_exec.adapters.venue.ccxt_weights import budget_for, wait_for_budget
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

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["CcxtSettings", "CcxtVenue", "VenueConfigError", "read_secret", "settings_from_env"]

READ_RETRIES = 3

COMPLETE_POSITION_LISTS = frozenset({"binanceusdm"})
"""ccxt ids whose all-symbol position answer lists every non-flat position of the account:
Binance USDⓈ-M's positionRisk (v3, ccxt's default) leaves flat symbols out, so a symbol it
omits from a successful answer is flat. Elsewhere an omitted symbol stays unknown."""


class CcxtVenue:
    def __init__(self, settings: CcxtSettings, *, account: str = "main") -> None:
        """`account`: the service's account on this venue (`service.account`), named on
        every report."""
        cls = getattr(ccxt_async, settings.exchange_id, None)
        if cls is None:
            raise VenueConfigError(
                f"venue.exchange_id: ccxt has no exchange {settings.exchange_id!r}"
            )
        self.settings = settings
        self.name = settings.name
        self.account = account
        options = {
            "fetchCurrencies": False,  # a private spot call; never needed here
            "fetchMargins": False,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
            **dict(settings.options),
        }
        self.exchange: Any = make_client(cls, settings, options)
        # Order writes go through their own client, so their own rate-limit queue: a burst
        # of trade polls never delays a place or a cancel. Venues count them apart too
        # (Binance: order-count limits, not request weight).
        self._writer: Any = make_client(cls, settings, options)
        self.budget: WeightBudget = budget_for(settings, account, self.exchange, self._writer)
        """The account's request weight (`budget.py`): every request of both clients."""
        self.client_ids = rules_for(settings.exchange_id)
        """How our client order id travels on this venue (`ccxt_ids.py`)."""
        self.coid_by_order: dict[str, ClientOrderId] = {}
        self.trades = TradeCursor(self, settings, started_ms=wall_clock_ms())
        """Where the trade polls are (the venue's own cursor, `ccxt_trades.py`)."""
        self.stream: UserStream | None = (
            UserStream(self, settings)
            if settings.user_stream and settings.exchange_id in STREAM_VENUES
            else None
        )
        """The user-data stream (`ccxt_userstream.py`): fills pushed, REST sweeps for gaps;
        None: fills by polling. Its `stats` are the stream's counters."""
        self._markets_loaded = False
        self._marks: dict[str, Decimal] = {}

    @property
    def is_streaming(self) -> bool:
        """The user-data stream is running: order updates and fills are pushed."""
        return self.stream is not None and self.stream.is_running

    def set_fill_listener(self, listener: Callable[[], None] | None) -> None:
        if self.stream is not None:  # `base.PushesFills`: called as the stream buffers fills
            self.stream.fill_listener = listener

    def set_recorded_fills(self, is_recorded: Callable[[str, int], bool] | None) -> None:
        self.trades.is_recorded = is_recorded  # `base.KnowsRecordedFills`

    def take_pushed_fills(self) -> list[FillReport]:
        return self.stream.book.take_fills() if self.stream is not None else []

    def __repr__(self) -> str:  # never show credentials
        return f"CcxtVenue({self.settings.exchange_id!r}, name={self.name!r})"

    # --- markets ----------------------------------------------------------------------------

    async def _markets(self) -> None:
        if not self._markets_loaded:
            if getattr(self.exchange, "ssl_context", False) is None:  # one TLS context, off-loop
                tls = await asyncio.to_thread(tls_context, self.exchange)
                self.exchange.ssl_context = self._writer.ssl_context = tls
            await self.read(lambda: self.exchange.load_markets())
            self._writer.set_markets(self.exchange.markets, self.exchange.currencies)
            self._markets_loaded = True

    def market_symbol(self, symbol: str) -> str:
        """Canonical `BTC/USDT` → the venue's market (`BTC/USDT:USDT` for a linear swap)."""
        markets = self.exchange.markets or {}
        base, _, quote = symbol.partition("/")
        swap = f"{symbol}:{quote}"
        if swap in markets:
            return swap
        if symbol in markets:
            return symbol
        raise VenueRejected(f"{symbol} is not listed on {self.name} ({base}/{quote})")

    def canonical(self, market_symbol: str) -> str:
        return market_symbol.split(":", 1)[0]

    def _checked(self, req: PlaceRequest, msym: str) -> tuple[str, str | None]:
        """Amount and price at the market's precision; minimum amount and notional."""
        market = self.exchange.market(msym)
        try:
            amount = self.exchange.amount_to_precision(msym, str(req.qty))
            price = (
                self.exchange.price_to_precision(msym, str(req.limit_price))
                if req.limit_price is not None
                else None
            )
        except (cx.InvalidOrder, cx.BadRequest) as err:
            raise VenueRejected(f"precision: {err}") from None
        qty = Decimal(amount)
        limits = market.get("limits") or {}
        min_amount = (limits.get("amount") or {}).get("min")
        if qty <= ZERO or (min_amount is not None and qty < dec(min_amount)):
            raise VenueRejected(f"amount {req.qty} below the minimum {min_amount} of {msym}")
        min_cost = (limits.get("cost") or {}).get("min")
        ref = Decimal(price) if price is not None else last_price(self.exchange, self._marks, msym)
        if min_cost is not None and ref is not None and qty * ref < dec(min_cost):
            raise VenueRejected(
                f"notional {qty * ref} below the minimum {min_cost} of {msym} (min notional)"
            )
        return amount, price

    def on_ticker(self, symbol: str, bid: Decimal, ask: Decimal, ts_ms: int) -> None:
        """Market data from Titan's feed, used for the min-notional check of market orders."""
        if not self._markets_loaded:
            return
        try:
            self._marks[self.market_symbol(symbol)] = (bid + ask) / 2
        except VenueRejected:
            return

    # --- calls ------------------------------------------------------------------------------

    async def read(self, call: Callable[[], Awaitable[T]], *, is_essential: bool = False) -> T:
        """A read under the account's budget (`read_under_budget`). Essential: it tells
        what became of orders sent (`budget.ESSENTIAL_SHARE`)."""
        return await read_under_budget(self.name, self.budget, call, is_essential=is_essential)

    async def place(self, req: PlaceRequest) -> Placed:
        await self._markets()
        msym = self.market_symbol(req.symbol)
        amount, price = self._checked(req, msym)
        params: dict[str, Any] = place_params(self.client_ids, req.client_order_id)
        if req.is_reduce_only:
            params["reduceOnly"] = True
        kind = "market" if req.order_type is OrderType.MARKET else "limit"
        side = "buy" if req.side is Side.BUY else "sell"
        refusal = self.budget.write_refusal(wall_clock_ms())
        if refusal is not None:
            self.budget.note_waited("refused")
            raise VenueUnavailable(f"not sent: {refusal}")
        self.trades.symbols.add(msym)
        try:
            # amounts and prices go to ccxt as decimal strings, never floats
            order = await self._writer.create_order(msym, kind, side, amount, price, params)
        except cx.DuplicateOrderId as err:
            raise VenueRejected(f"duplicate client order id: {err}", is_duplicate=True) from None
        except (
            cx.AuthenticationError,
            cx.PermissionDenied,
            cx.DDoSProtection,
            cx.RateLimitExceeded,
        ) as err:
            # refused before execution (HTTP 429 surfaces as DDoSProtection in ccxt)
            raise VenueUnavailable(f"{type(err).__name__}: {err}") from None
        except (cx.InvalidOrder, cx.InsufficientFunds, cx.BadRequest, cx.BadSymbol) as err:
            if is_duplicate_id(err):
                raise VenueRejected(
                    f"duplicate client order id: {err}", is_duplicate=True
                ) from None
            raise VenueRejected(f"{type(err).__name__}: {err}") from None
        except (cx.OperationFailed, cx.ExchangeError) as err:
            # network errors, lost responses, -1001 "internal error": it may have executed
            raise VenueUnknownOutcome(f"{type(err).__name__}: {err}") from None
        oid = str(order.get("id"))
        self.coid_by_order[oid] = req.client_order_id
        return Placed(venue_order_id=VenueOrderId(oid), status=order_status(order))

    def report(self, order: Mapping[str, Any]) -> OrderReport:
        """An order as a report; its client order id is remembered for the trades."""
        rep = order_report(order, venue=self.name, account=self.account, canonical=self.canonical)
        if rep.client_order_id:
            self.coid_by_order[str(rep.venue_order_id)] = rep.client_order_id
        if self.stream is not None and self.stream.is_running:
            self.stream.book.check_order(rep)  # filled beyond what the stream said: a sweep
        return rep

    async def cancel(self, symbol: str, coid: ClientOrderId) -> CancelResult:
        await self._markets()
        msym = self.market_symbol(symbol)
        params = self.client_ids.by_id(coid)
        refusal = self.budget.write_refusal(wall_clock_ms())
        if refusal is not None:
            self.budget.note_waited("refused")
            raise VenueUnavailable(f"cancel not sent: {refusal}")
        try:
            order = await self._writer.cancel_order(None, msym, params)
        except cx.OrderNotFound:
            report = await self.query_order(symbol, coid)
            return CancelResult(report.status if report is not None else VenueOrderStatus.NOT_FOUND)
        except (cx.InvalidOrder, cx.BadRequest) as err:
            report = await self.query_order(symbol, coid)
            if report is not None and not report.is_open:
                return CancelResult(report.status)
            raise VenueUnavailable(f"cancel refused: {err}") from None
        except (cx.RateLimitExceeded, cx.DDoSProtection) as err:
            raise VenueUnavailable(f"cancel rate limited: {err}") from None  # not executed
        except (cx.OperationFailed, cx.ExchangeError) as err:
            raise VenueUnknownOutcome(f"{type(err).__name__}: {err}") from None
        status = order_status(order)
        return CancelResult(VenueOrderStatus.CANCELED if status is VenueOrderStatus.NEW else status)

    async def query_order(self, symbol: str, coid: ClientOrderId) -> OrderReport | None:
        await self._markets()
        msym = self.market_symbol(symbol)
        self.client_ids.check(coid)
        try:
            order = await self.read(
                lambda: fetch_by_client_id(self.exchange, self.client_ids, msym, coid),
                is_essential=True,
            )
        except cx.OrderNotFound:
            return None  # not visible: unknown, not absent (the caller decides)
        self.trades.symbols.add(msym)
        return self.report(order)

    async def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        await self._markets()
        msym = self.market_symbol(symbol) if symbol else None
        orders = await self.read(lambda: self.exchange.fetch_open_orders(msym))
        return [self.report(o) for o in orders]

    async def fills_since(
        self, cursor: str | None, symbols: frozenset[str] | None = None
    ) -> tuple[list[FillReport], str | None]:
        await self._markets()
        if self.stream is not None:
            return await self.stream.fills(self.trades, cursor, symbols)
        return await self.trades.fills_since(cursor, symbols)

    async def wait_activity(self, timeout_s: float) -> None:
        """With the user-data stream: as soon as a fill is pushed (or a sweep is due), at
        most `timeout_s`. Polling: the next poll comes after the poll interval."""
        if self.stream is not None:
            await self._markets()
            await self.stream.wait(timeout_s)
            return
        await asyncio.sleep(max(timeout_s, self.settings.poll_interval_ms / 1000))

    async def positions(self, symbols: frozenset[str] = frozenset()) -> list[PositionReport]:
        """The venue's position list; for a venue whose list is complete
        (`COMPLETE_POSITION_LISTS`) each of `symbols` it leaves out is reported flat (0),
        else it stays unreported (unknown)."""
        await self._markets()
        raw = await self.read(lambda: self.exchange.fetch_positions())
        out = [
            position_report(p, venue=self.name, account=self.account, canonical=self.canonical)
            for p in raw
        ]
        self.trades.note_positions(
            frozenset(str(p.get("symbol")) for p, r in zip(raw, out, strict=True) if r.qty)
        )
        if self.stream is not None and self.stream.is_running:
            # a position the stream's ACCOUNT_UPDATE never reached: the stream lost trades
            self.stream.book.check_positions({r.symbol: r.qty for r in out})
        if self.settings.exchange_id in COMPLETE_POSITION_LISTS:
            listed = {r.symbol for r in out}
            for symbol in sorted(symbols - listed):
                try:
                    self.market_symbol(symbol)
                except VenueRejected:
                    continue  # not a market of this venue: unknown, not flat
                out.append(
                    PositionReport(self.name, self.account, symbol, qty=ZERO, entry_price=ZERO)
                )
        return out

    async def balances(self) -> list[BalanceReport]:
        """ccxt's unified balance: per currency `total`, `free` and `used` (a part ccxt
        could not derive is None, and stays None)."""
        raw = await self.read(lambda: self.exchange.fetch_balance())
        totals = raw.get("total") or {}
        free = raw.get("free") or {}
        used = raw.get("used") or {}
        return [
            BalanceReport(
                str(asset),
                total=dec(total),
                free=None if free.get(asset) is None else dec(free[asset]),
                used=None if used.get(asset) is None else dec(used[asset]),
            )
            for asset, total in sorted(totals.items())
            if total is not None
        ]

    async def equity(self) -> Decimal | None:
        return equity_of(await self.read(lambda: self.exchange.fetch_balance()))

    async def close(self) -> None:
        """Closes the clients; the user-data stream's listen key is never deleted (both
        instances of the pair share it)."""
        if self.stream is not None:
            await self.stream.close()
        await asyncio.gather(self.exchange.close(), self._writer.close())


def last_price(exchange: Any, marks: Mapping[str, Decimal], msym: str) -> Decimal | None:
    """The market's last price from ccxt's tickers, else the mid of Titan's feed."""
    ticker = (exchange.tickers or {}).get(msym) if hasattr(exchange, "tickers") else None
    if ticker and ticker.get("last"):
        return dec(ticker["last"])
    return marks.get(msym)


async def read_under_budget(
    name: str, budget: WeightBudget, call: Callable[[], Awaitable[T]], *, is_essential: bool
) -> T:
    """A read: after the budget's wait, retried on network errors (safe), mapped to
    VenueUnavailable at the end; never retried after a 429 / 418 (the budget holds the next
    reads back)."""
    delay = 0.1
    for attempt in range(READ_RETRIES):
        await wait_for_budget(budget, wall_clock_ms, is_essential=is_essential)
        try:
            return await call()
        except (cx.RateLimitExceeded, cx.DDoSProtection) as err:
            raise VenueUnavailable(f"{name}: rate limited: {err}") from None
        except (cx.OperationFailed, cx.ExchangeNotAvailable) as err:
            if attempt == READ_RETRIES - 1:
                raise VenueUnavailable(f"{name}: {type(err).__name__}: {err}") from None
            await asyncio.sleep(delay)
            delay *= 2
        except (cx.AuthenticationError, cx.PermissionDenied) as err:
            raise VenueUnavailable(f"{name}: authentication: {err}") from None
    raise AssertionError("unreachable")  # pragma: no cover
