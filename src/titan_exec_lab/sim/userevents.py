"""The user-data stream's events, read off the engine's own records (pure: no I/O, no clock).

This module owns `EventTracker`, which turns what changed in an `Engine` since its last
call into Binance USDⓈ-M user-data events, in the order they happened:

- ``ORDER_TRADE_UPDATE`` with ``x`` (execution type) / ``X`` (order status):
  NEW / NEW when an order is accepted; TRADE / PARTIALLY_FILLED or FILLED for each trade
  (``l``, ``L``, ``t``, ``n``, ``N``, ``m``, ``rp`` are the trade's; ``z``, ``ap`` the
  order's totals *after* that trade); CANCELED / CANCELED and EXPIRED / EXPIRED when an
  order leaves the book without filling out;
- ``ACCOUNT_UPDATE`` (reason ``ORDER``) after each trade: the USDT wallet and the traded
  symbol's position.

Numbers are decimal strings at the symbol's precision (prices, quantities) or at 8
decimals (fees, PnL, balances), never floats. The engine itself is not touched: the
tracker remembers the next order id, the number of trades and the status of each order it
announced, and diffs (the engine stays the one exchange model of the service, with no
listener inside). A different engine object (a state file loaded at start) is adopted
without events for its history.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from titan_exec.adapters.venue.exchange.engine import Engine, SimOrder, SimTrade
from titan_exec.adapters.venue.exchange.market import ZERO, SymbolSpec, fixed

TERMINAL = ("CANCELED", "EXPIRED")


def _e8(value: Decimal) -> str:
    return fixed(value, 8)


def order_update(
    order: SimOrder,
    spec: SymbolSpec,
    *,
    execution: str,
    status: str,
    filled: Decimal,
    cum_quote: Decimal,
    trade: SimTrade | None,
    now_ms: int,
) -> dict[str, Any]:
    """One ``ORDER_TRADE_UPDATE`` (Binance's field names)."""
    price, qty = spec.price_decimals, spec.qty_decimals
    avg = cum_quote / filled if filled else ZERO
    event_ms = trade.time_ms if trade is not None else now_ms
    o: dict[str, Any] = {
        "s": order.symbol,
        "c": order.client_order_id,
        "S": order.side,
        "o": order.type,
        "f": order.time_in_force if order.type == "LIMIT" else "GTC",
        "q": fixed(order.orig_qty, qty),
        "p": fixed(order.price, price),
        "ap": fixed(avg, price + 2),
        "sp": fixed(ZERO, price),
        "x": execution,
        "X": status,
        "i": order.order_id,
        "l": fixed(trade.qty, qty) if trade else fixed(ZERO, qty),
        "z": fixed(filled, qty),
        "L": fixed(trade.price, price) if trade else fixed(ZERO, price),
        "T": event_ms,
        "t": trade.trade_id if trade else 0,
        "b": "0",
        "a": "0",
        "m": trade.maker if trade else False,
        "R": order.reduce_only,
        "wt": "CONTRACT_PRICE",
        "ot": order.type,
        "ps": "BOTH",
        "cp": False,
        "rp": _e8(trade.realized_pnl) if trade else _e8(ZERO),
        "pP": False,
        "si": 0,
        "ss": 0,
        "V": "NONE",
        "pm": "NONE",
        "gtd": 0,
    }
    if trade is not None:
        o["N"] = trade.commission_asset
        o["n"] = _e8(trade.commission)
    return {"e": "ORDER_TRADE_UPDATE", "E": event_ms, "T": event_ms, "o": o}


def account_update(engine: Engine, symbol: str, now_ms: int) -> dict[str, Any]:
    """One ``ACCOUNT_UPDATE`` after a trade of ``symbol``: the wallet and that position."""
    spec = engine.specs[symbol]
    pos = engine.positions[symbol]
    book = engine.quote(symbol, now_ms)
    mid = (book.bid + book.ask) / 2 if book is not None else pos.entry_price
    unrealized = (mid - pos.entry_price) * pos.amount if pos.amount else ZERO
    wallet = _e8(engine.wallet)
    return {
        "e": "ACCOUNT_UPDATE",
        "E": now_ms,
        "T": now_ms,
        "a": {
            "m": "ORDER",
            "B": [{"a": "USDT", "wb": wallet, "cw": wallet, "bc": "0"}],
            "P": [
                {
                    "s": symbol,
                    "pa": fixed(pos.amount, spec.qty_decimals),
                    "ep": _e8(pos.entry_price),
                    "bep": _e8(pos.entry_price),
                    "cr": _e8(ZERO),
                    "up": _e8(unrealized),
                    "mt": "cross",
                    "iw": _e8(ZERO),
                    "ps": "BOTH",
                }
            ],
        },
    }


class EventTracker:
    """What changed in the engine since the last `events` call, as user-data events."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._next_order_id = 0
        self._trade_count = 0
        self._announced: dict[int, str] = {}
        """Open orders announced: order id → the status last sent."""
        self._filled: dict[int, tuple[Decimal, Decimal]] = {}
        """Order id → (quantity, quote) filled as sent so far."""

    def _adopt(self, engine: Engine) -> None:
        self._engine = engine
        self._next_order_id = engine.next_order_id
        self._trade_count = len(engine.trades)
        self._announced = {oid: o.status for oid, o in engine.open.items()}
        self._filled = {oid: (o.executed_qty, o.cum_quote) for oid, o in engine.open.items()}

    def events(self, engine: Engine, now_ms: int) -> list[dict[str, Any]]:
        if engine is not self._engine:
            self._adopt(engine)
            return []
        out: list[dict[str, Any]] = []
        for oid in range(self._next_order_id, engine.next_order_id):
            order = engine.orders.get(oid)
            if order is None:
                continue
            spec = engine.specs[order.symbol]
            out.append(
                order_update(
                    order,
                    spec,
                    execution="NEW",
                    status="NEW",
                    filled=ZERO,
                    cum_quote=ZERO,
                    trade=None,
                    now_ms=order.time_ms,
                )
            )
            self._announced[oid] = "NEW"
            self._filled[oid] = (ZERO, ZERO)
        self._next_order_id = engine.next_order_id
        for trade in engine.trades[self._trade_count :]:
            out += self._trade_events(engine, trade)
        self._trade_count = len(engine.trades)
        for oid, sent in list(self._announced.items()):
            order = engine.orders[oid]
            if order.status in TERMINAL and sent != order.status:
                filled, quote = self._filled.get(oid, (ZERO, ZERO))
                out.append(
                    order_update(
                        order,
                        engine.specs[order.symbol],
                        execution=order.status,
                        status=order.status,
                        filled=filled,
                        cum_quote=quote,
                        trade=None,
                        now_ms=order.update_time_ms,
                    )
                )
            if not order.is_open:
                self._announced.pop(oid, None)
                self._filled.pop(oid, None)
        return out

    def _trade_events(self, engine: Engine, trade: SimTrade) -> list[dict[str, Any]]:
        order = engine.orders[trade.order_id]
        filled, quote = self._filled.get(order.order_id, (ZERO, ZERO))
        filled, quote = filled + trade.qty, quote + trade.quote_qty
        status = "FILLED" if filled >= order.orig_qty else "PARTIALLY_FILLED"
        if order.order_id in self._announced:
            self._filled[order.order_id] = (filled, quote)
            self._announced[order.order_id] = status
        return [
            order_update(
                order,
                engine.specs[order.symbol],
                execution="TRADE",
                status=status,
                filled=filled,
                cum_quote=quote,
                trade=trade,
                now_ms=trade.time_ms,
            ),
            account_update(engine, order.symbol, trade.time_ms),
        ]
