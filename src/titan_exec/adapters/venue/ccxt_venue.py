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

Fills are learned by polling the venue's trades per symbol (`fetch_my_trades` from the last
trade id seen); Binance trades carry the venue order id, mapped back to our client order id.
Credentials come from the environment or files (Docker secrets) and are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]
from ccxt.base import errors as cx  # type: ignore[import-untyped]

from titan_exec.adapters.venue.base import (
    CancelResult,
    Placed,
    VenueRejected,
    VenueUnavailable,
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

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_RETRIES = 3


class VenueConfigError(ValueError):
    """The venue configuration cannot work (names the setting)."""


COMPLETE_POSITION_LISTS = frozenset({"binanceusdm"})
"""ccxt ids whose all-symbol position answer lists every non-flat position of the account:
Binance USDⓈ-M's positionRisk (v3, ccxt's default) leaves flat symbols out, so a symbol it
omits from a successful answer is flat. Elsewhere an omitted symbol stays unknown."""

TRADES_PAGE = 1000
"""Trades per `userTrades` call (Binance's maximum)."""


@dataclass(frozen=True)
class CcxtSettings:
    exchange_id: str = "binanceusdm"
    name: str = "binance"
    """The venue's name inside Titan (subjects, events)."""
    is_testnet: bool = False
    base_url: str = ""
    """Override of every API host (the simulator, a proxy); empty: the venue's own."""
    api_key: str = field(default="", repr=False)
    api_secret: str = field(default="", repr=False)
    timeout_ms: int = 5000
    enable_rate_limit: bool = True
    rate_limit_ms: int = 0
    """ccxt's `rateLimit` (ms per unit of request cost); 0: ccxt's value for the venue."""
    poll_interval_ms: int = 250
    fill_lookback_ms: int = 3_600_000
    """How far back the first trade poll of a symbol looks after a start."""
    fill_rescan_ms: int = 10_000
    """Each trade poll reads again this much of the past (by trade time), so that a trade
    the venue shows late — behind later ones, as with an order not yet visible to queries —
    is still found; trades already reported are skipped."""
    options: Mapping[str, Any] = field(default_factory=dict)


def read_secret(value: str, env: Mapping[str, str], var: str) -> str:
    """A secret from the setting, else `$VAR`, else the file named by `$VAR_FILE`."""
    if value:
        return value
    if env.get(var):
        return env[var]
    path = env.get(f"{var}_FILE")
    if path:
        p = Path(path)
        if not p.is_file():
            raise VenueConfigError(f"{var}_FILE: {path} does not exist")
        return p.read_text().strip()
    return ""


def _rebase(url: str, base: str) -> str:
    b = urlsplit(base)
    u = urlsplit(url)
    path = b.path.rstrip("/") + u.path
    return urlunsplit((b.scheme, b.netloc, path, u.query, u.fragment))


def _rebase_tree(node: Any, base: str) -> Any:
    if isinstance(node, str) and node.startswith(("http://", "https://")):
        return _rebase(node, base)
    if isinstance(node, dict):
        return {k: _rebase_tree(v, base) for k, v in node.items()}
    return node


def _keep_market_error_codes(exchange: Any) -> None:
    """ccxt's Binance picks per-market error tables by the request's *host*; behind another
    host (a proxy, the simulator) -4116, -2019, -2022, -4164 would all become a bare
    ExchangeError. Merge the linear table into the generic one so they map as at Binance."""
    per_market = (
        exchange.exceptions.get("linear") if isinstance(exchange.exceptions, dict) else None
    )
    if not per_market:
        return
    for kind in ("exact", "broad"):
        merged = dict(exchange.exceptions.get(kind, {}))
        merged.update(per_market.get(kind, {}))
        exchange.exceptions[kind] = merged


def _is_duplicate_id(err: Exception) -> bool:
    """Binance answers a reused client order id with -4116, which ccxt maps to InvalidOrder."""
    text = str(err)
    return "-4116" in text or "ClientOrderId is duplicated" in text


def _dec(raw: Any, fallback: Any = None) -> Decimal:
    for value in (raw, fallback):
        if value is None or value == "":
            continue
        try:
            d = Decimal(str(value))
        except InvalidOperation:
            continue
        if d.is_finite():
            return d
    return ZERO


_STATUS = {"closed": "FILLED", "canceled": "CANCELED", "expired": "EXPIRED", "rejected": "REJECTED"}


def _client(cls: Any, settings: CcxtSettings, options: dict[str, Any]) -> Any:
    config: dict[str, Any] = {
        "apiKey": settings.api_key,
        "secret": settings.api_secret,
        "enableRateLimit": settings.enable_rate_limit,
        "timeout": settings.timeout_ms,
        "options": dict(options),
    }
    if settings.rate_limit_ms:
        config["rateLimit"] = settings.rate_limit_ms
    exchange = cls(config)
    if settings.is_testnet:
        exchange.set_sandbox_mode(True)
    if settings.base_url:
        exchange.urls["api"] = _rebase_tree(exchange.urls["api"], settings.base_url)
        _keep_market_error_codes(exchange)
    return exchange


class CcxtVenue:
    def __init__(self, settings: CcxtSettings) -> None:
        cls = getattr(ccxt_async, settings.exchange_id, None)
        if cls is None:
            raise VenueConfigError(
                f"venue.exchange_id: ccxt has no exchange {settings.exchange_id!r}"
            )
        self.settings = settings
        self.name = settings.name
        options = {
            "fetchCurrencies": False,  # a private spot call; never needed here
            "fetchMargins": False,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
            **dict(settings.options),
        }
        self.exchange: Any = _client(cls, settings, options)
        # Order writes go through their own client, so their own rate-limit queue: a burst
        # of trade polls never delays a place or a cancel. Venues count them apart too
        # (Binance: order-count limits, not request weight).
        self._writer: Any = _client(cls, settings, options)
        self._coid_by_order: dict[str, ClientOrderId] = {}
        self._newest_trade_ms: dict[str, int] = {}
        self._reported: dict[str, dict[str, int]] = {}
        """Per market symbol: trade id → trade time of the trades reported as fills (those
        within two rescan windows of the newest: older ones are never read again)."""
        self._symbols: set[str] = set()
        self._started_ms = int(time.time() * 1000)
        self._markets_loaded = False
        self._marks: dict[str, Decimal] = {}

    def __repr__(self) -> str:  # never show credentials
        return f"CcxtVenue({self.settings.exchange_id!r}, name={self.name!r})"

    # --- markets ----------------------------------------------------------------------------

    async def _markets(self) -> None:
        if not self._markets_loaded:
            await self._read(lambda: self.exchange.load_markets())
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
        if qty <= ZERO or (min_amount is not None and qty < _dec(min_amount)):
            raise VenueRejected(f"amount {req.qty} below the minimum {min_amount} of {msym}")
        min_cost = (limits.get("cost") or {}).get("min")
        ref = Decimal(price) if price is not None else self._last_price(msym)
        if min_cost is not None and ref is not None and qty * ref < _dec(min_cost):
            raise VenueRejected(
                f"notional {qty * ref} below the minimum {min_cost} of {msym} (min notional)"
            )
        return amount, price

    def _last_price(self, msym: str) -> Decimal | None:
        ticker = (
            (self.exchange.tickers or {}).get(msym) if hasattr(self.exchange, "tickers") else None
        )
        if ticker and ticker.get("last"):
            return _dec(ticker["last"])
        return self._marks.get(msym)

    def on_ticker(self, symbol: str, bid: Decimal, ask: Decimal, ts_ms: int) -> None:
        """Market data from Titan's feed, used for the min-notional check of market orders."""
        if not self._markets_loaded:
            return
        try:
            self._marks[self.market_symbol(symbol)] = (bid + ask) / 2
        except VenueRejected:
            return

    # --- calls ------------------------------------------------------------------------------

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        """A read: retried on network errors (safe), mapped to VenueUnavailable at the end."""
        delay = 0.1
        for attempt in range(READ_RETRIES):
            try:
                return await call()
            except (cx.OperationFailed, cx.ExchangeNotAvailable) as err:
                if attempt == READ_RETRIES - 1:
                    raise VenueUnavailable(f"{self.name}: {type(err).__name__}: {err}") from None
                await asyncio.sleep(delay)
                delay *= 2
            except (cx.AuthenticationError, cx.PermissionDenied) as err:
                raise VenueUnavailable(f"{self.name}: authentication: {err}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def place(self, req: PlaceRequest) -> Placed:
        await self._markets()
        msym = self.market_symbol(req.symbol)
        amount, price = self._checked(req, msym)
        params: dict[str, Any] = {"newClientOrderId": req.client_order_id}
        if req.is_reduce_only:
            params["reduceOnly"] = True
        kind = "market" if req.order_type is OrderType.MARKET else "limit"
        side = "buy" if req.side is Side.BUY else "sell"
        self._symbols.add(msym)
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
            if _is_duplicate_id(err):
                raise VenueRejected(
                    f"duplicate client order id: {err}", is_duplicate=True
                ) from None
            raise VenueRejected(f"{type(err).__name__}: {err}") from None
        except (cx.OperationFailed, cx.ExchangeError) as err:
            # network errors, lost responses, -1001 "internal error": it may have executed
            raise VenueUnknownOutcome(f"{type(err).__name__}: {err}") from None
        oid = str(order.get("id"))
        self._coid_by_order[oid] = req.client_order_id
        return Placed(venue_order_id=VenueOrderId(oid), status=self._status(order))

    def _status(self, order: Mapping[str, Any]) -> str:
        raw = (order.get("info") or {}).get("status")
        if isinstance(raw, str) and raw in (
            "NEW",
            "PARTIALLY_FILLED",
            "FILLED",
            "CANCELED",
            "REJECTED",
            "EXPIRED",
        ):
            return raw
        st = order.get("status")
        if st == "open":
            return "PARTIALLY_FILLED" if (order.get("filled") or 0) > 0 else "NEW"
        return _STATUS.get(str(st), "NEW")

    def _report(self, order: Mapping[str, Any]) -> OrderReport:
        info = order.get("info") or {}
        coid = ClientOrderId(str(order.get("clientOrderId") or info.get("clientOrderId") or ""))
        oid = str(order.get("id"))
        if coid:
            self._coid_by_order[oid] = coid
        return OrderReport(
            venue=self.name,
            symbol=self.canonical(str(order.get("symbol"))),
            client_order_id=coid,
            venue_order_id=VenueOrderId(oid),
            status=self._status(order),
            qty=_dec(info.get("origQty"), order.get("amount")),
            filled_qty=_dec(info.get("executedQty"), order.get("filled")),
            ts_ms=int(order.get("timestamp") or 0),
        )

    async def cancel(self, symbol: str, coid: ClientOrderId) -> CancelResult:
        await self._markets()
        msym = self.market_symbol(symbol)
        try:
            order = await self._writer.cancel_order(None, msym, {"origClientOrderId": coid})
        except cx.OrderNotFound:
            report = await self.query_order(symbol, coid)
            return CancelResult(report.status if report is not None else "NOT_FOUND")
        except (cx.InvalidOrder, cx.BadRequest) as err:
            report = await self.query_order(symbol, coid)
            if report is not None and not report.is_open:
                return CancelResult(report.status)
            raise VenueUnavailable(f"cancel refused: {err}") from None
        except (cx.OperationFailed, cx.ExchangeError) as err:
            raise VenueUnknownOutcome(f"{type(err).__name__}: {err}") from None
        return CancelResult(self._status(order) if self._status(order) != "NEW" else "CANCELED")

    async def query_order(self, symbol: str, coid: ClientOrderId) -> OrderReport | None:
        await self._markets()
        msym = self.market_symbol(symbol)
        try:
            order = await self._read(
                lambda: self.exchange.fetch_order(None, msym, {"origClientOrderId": coid})
            )
        except cx.OrderNotFound:
            return None  # not visible: unknown, not absent (the caller decides)
        self._symbols.add(msym)
        return self._report(order)

    async def open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        await self._markets()
        msym = self.market_symbol(symbol) if symbol else None
        orders = await self._read(lambda: self.exchange.fetch_open_orders(msym))
        return [self._report(o) for o in orders]

    async def fills_since(
        self, cursor: str | None, symbols: frozenset[str] | None = None
    ) -> tuple[list[FillReport], str | None]:
        await self._markets()
        if cursor is None:
            # None: from the start of this session (the Venue contract), not from where an
            # earlier runner of this process left off. A fenced active that rejoins in
            # process keeps this object; trades it read but could not record as fills
            # (fenced meanwhile) must be read again when it leads again. The fold drops
            # the fills it already has (`seen_fills`).
            self._newest_trade_ms = {}
            self._reported = {}
        elif cursor:
            for sym, newest in json.loads(cursor).items():
                self._newest_trade_ms[sym] = max(self._newest_trade_ms.get(sym, 0), int(newest))
                self._symbols.add(sym)
        for symbol in symbols or ():
            # orders another instance placed (before a takeover) are polled too
            with contextlib.suppress(VenueRejected):
                self._symbols.add(self.market_symbol(symbol))
        fills: list[FillReport] = []
        for msym in sorted(self._symbols):
            if symbols is not None and self.canonical(msym) not in symbols:
                continue  # its cursor stays: nothing is skipped, only later
            fills += await self._new_fills(msym)
        return fills, json.dumps(self._newest_trade_ms, sort_keys=True)

    async def _new_fills(self, msym: str) -> list[FillReport]:
        """The trades of `msym` not reported yet, read by time from the newest trade seen
        minus the rescan window (a trade id cursor would step over a trade shown late),
        page by page."""
        newest = self._newest_trade_ms.get(msym)
        if newest is None:
            since = self._started_ms - self.settings.fill_lookback_ms
        else:
            since = newest - self.settings.fill_rescan_ms
        reported = self._reported.setdefault(msym, {})
        fills: list[FillReport] = []
        while True:
            trades: list[Any] = await self._read(
                partial(self.exchange.fetch_my_trades, msym, since, TRADES_PAGE, {})
            )
            for trade in trades:
                tid = str(trade.get("id"))
                if tid in reported:
                    continue
                fill = await self._fill(msym, trade)
                if fill is not None:
                    fills.append(fill)
                reported[tid] = int(trade.get("timestamp") or 0)
            if len(trades) < TRADES_PAGE:
                break
            last_ms = max(int(t.get("timestamp") or 0) for t in trades)
            if last_ms <= since:
                # a whole page in one millisecond: the next poll goes on (ids dedupe)
                log.warning("%s: %d trades in one millisecond at %d", msym, len(trades), since)
                break
            since = last_ms  # the same millisecond again: its trades are skipped by id
        if reported:
            newest = max(reported.values())
            self._newest_trade_ms[msym] = newest
            horizon = newest - 2 * self.settings.fill_rescan_ms
            for tid in [t for t, ms in reported.items() if ms < horizon]:
                del reported[tid]
        return fills

    async def _fill(self, msym: str, trade: Mapping[str, Any]) -> FillReport | None:
        info = trade.get("info") or {}
        oid = str(trade.get("order"))
        coid = self._coid_by_order.get(oid)
        if coid is None:
            try:
                order = await self._read(lambda: self.exchange.fetch_order(oid, msym))
                coid = self._report(order).client_order_id
                self._coid_by_order[oid] = coid  # an order placed by the previous active
            except cx.OrderNotFound:
                coid = ClientOrderId(f"venue-{oid}")
        fee = trade.get("fee") or {}
        return FillReport(
            venue=self.name,
            symbol=self.canonical(msym),
            client_order_id=coid,
            venue_order_id=VenueOrderId(oid),
            trade_id=str(trade.get("id")),
            side=Side.BUY if trade.get("side") == "buy" else Side.SELL,
            price=_dec(info.get("price"), trade.get("price")),
            qty=_dec(info.get("qty"), trade.get("amount")),
            fee=_dec(info.get("commission"), fee.get("cost")),
            fee_currency=str(info.get("commissionAsset") or fee.get("currency") or "USDT"),
            ts_ms=int(trade.get("timestamp") or 0),
        )

    async def wait_activity(self, timeout_s: float) -> None:
        """A REST venue has no push here: the next poll comes after the poll interval."""
        await asyncio.sleep(max(timeout_s, self.settings.poll_interval_ms / 1000))

    async def positions(self, symbols: frozenset[str] = frozenset()) -> list[PositionReport]:
        """The venue's position list; for a venue whose list is complete
        (`COMPLETE_POSITION_LISTS`) each of `symbols` it leaves out is reported flat (0),
        else it stays unreported (unknown)."""
        await self._markets()
        raw = await self._read(lambda: self.exchange.fetch_positions())
        out = []
        for p in raw:
            info = p.get("info") or {}
            qty = _dec(info.get("positionAmt"))
            if qty == ZERO and p.get("contracts"):
                qty = _dec(p.get("contracts")) * (-1 if p.get("side") == "short" else 1)
            out.append(
                PositionReport(
                    venue=self.name,
                    symbol=self.canonical(str(p.get("symbol"))),
                    qty=qty,
                    entry_price=_dec(info.get("entryPrice"), p.get("entryPrice")),
                )
            )
        if self.settings.exchange_id in COMPLETE_POSITION_LISTS:
            listed = {r.symbol for r in out}
            for symbol in sorted(symbols - listed):
                try:
                    self.market_symbol(symbol)
                except VenueRejected:
                    continue  # not a market of this venue: unknown, not flat
                out.append(
                    PositionReport(venue=self.name, symbol=symbol, qty=ZERO, entry_price=ZERO)
                )
        return out

    async def balances(self) -> list[BalanceReport]:
        """ccxt's unified balance: per currency `total`, `free` and `used` (a part ccxt
        could not derive is None, and stays None)."""
        raw = await self._read(lambda: self.exchange.fetch_balance())
        totals = raw.get("total") or {}
        free = raw.get("free") or {}
        used = raw.get("used") or {}
        return [
            BalanceReport(
                str(asset),
                total=_dec(total),
                free=None if free.get(asset) is None else _dec(free[asset]),
                used=None if used.get(asset) is None else _dec(used[asset]),
            )
            for asset, total in sorted(totals.items())
            if total is not None
        ]

    async def equity(self) -> Decimal | None:
        raw = await self._read(lambda: self.exchange.fetch_balance())
        info = raw.get("info") or {}
        if isinstance(info, dict) and info.get("totalMarginBalance") is not None:
            return _dec(info["totalMarginBalance"])
        total = (raw.get("total") or {}).get("USDT")
        return None if total is None else _dec(total)

    async def close(self) -> None:
        await asyncio.gather(self.exchange.close(), self._writer.close())


def settings_from_env(
    *,
    exchange_id: str,
    name: str,
    is_testnet: bool,
    base_url: str,
    api_key: str,
    api_secret: str,
    timeout_ms: int,
    poll_interval_ms: int = 250,
    enable_rate_limit: bool = True,
    rate_limit_ms: int = 0,
    env: Mapping[str, str] | None = None,
) -> CcxtSettings:
    e = env if env is not None else os.environ
    return CcxtSettings(
        exchange_id=exchange_id,
        name=name,
        is_testnet=is_testnet,
        base_url=base_url,
        api_key=read_secret(api_key, e, "TITAN_VENUE_API_KEY"),
        api_secret=read_secret(api_secret, e, "TITAN_VENUE_API_SECRET"),
        timeout_ms=timeout_ms,
        poll_interval_ms=poll_interval_ms,
        enable_rate_limit=enable_rate_limit,
        rate_limit_ms=rate_limit_ms,
    )
