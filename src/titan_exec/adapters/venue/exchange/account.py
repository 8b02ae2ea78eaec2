"""The exchange model's account arithmetic (pure): netting, fees and margin, in Decimal.

This module owns how one trade moves a one-way position (weighted-average entry rounded
half-even to 1e-8; realised PnL rounded half-up to 1e-8, fees excluded, as Binance
reports it), the fee of a trade (half-up to 1e-8), and the read-only views of a position
and of the account (unrealised PnL at the mark, initial and maintenance margin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

from titan_exec.adapters.venue.exchange.market import ZERO, Book, SymbolSpec
from titan_exec.adapters.venue.exchange.records import (
    AccountView,
    PositionView,
    SimOrder,
    SimPosition,
)

E8 = Decimal("1e-8")


def q8(value: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    return value.quantize(E8, rounding=rounding)


def fee(notional: Decimal, rate: Decimal) -> Decimal:
    return q8(notional * rate)


def net_trade(pos: SimPosition, signed_qty: Decimal, price: Decimal, ts: int) -> Decimal:
    """Net a trade of ``signed_qty`` (positive: bought) at ``price`` into ``pos``; the
    realised PnL of the part that closed."""
    qty = abs(signed_qty)
    realized = ZERO
    if pos.amount == ZERO or (pos.amount > ZERO) == (signed_qty > ZERO):
        size = abs(pos.amount)
        pos.entry_price = q8((pos.entry_price * size + price * qty) / (size + qty), ROUND_HALF_EVEN)
    else:
        closing = min(qty, abs(pos.amount))
        direction = 1 if pos.amount > ZERO else -1
        realized = q8((price - pos.entry_price) * closing * direction)
        if qty > closing:
            pos.entry_price = price  # flipped: the rest opens at the fill price
        elif closing == abs(pos.amount):
            pos.entry_price = ZERO
    pos.amount += signed_qty
    pos.update_time_ms = ts
    return realized


def position_view(spec: SymbolSpec, pos: SimPosition, mark: Decimal) -> PositionView:
    notional = pos.amount * mark
    return PositionView(
        spec=spec,
        amount=pos.amount,
        entry_price=pos.entry_price,
        mark_price=mark,
        unrealized_pnl=q8((mark - pos.entry_price) * pos.amount),
        notional=notional,
        initial_margin=q8(abs(notional) / spec.leverage),
        maint_margin=q8(abs(notional) * spec.maint_margin_ratio),
        update_time_ms=pos.update_time_ms,
    )


def account_view(
    wallet: Decimal, wallet_update_ms: int, views: Iterable[PositionView], order_im: Decimal
) -> AccountView:
    """The account from its wallet, its position views and the open orders' margin."""
    views = list(views)
    upnl = sum((v.unrealized_pnl for v in views), ZERO)
    pos_im = sum((v.initial_margin for v in views), ZERO)
    order_im = q8(order_im)
    return AccountView(
        wallet_balance=wallet,
        unrealized_pnl=upnl,
        position_initial_margin=pos_im,
        open_order_initial_margin=order_im,
        maint_margin=sum((v.maint_margin for v in views), ZERO),
        available_balance=wallet + upnl - pos_im - order_im,
        update_time_ms=wallet_update_ms,
    )


def position_views(
    specs: Mapping[str, SymbolSpec],
    positions: Mapping[str, SimPosition],
    book: Callable[[str], Book | None],
) -> list[PositionView]:
    """Every listed symbol's position, marked at the mid (at its entry without a book)."""
    views = []
    for symbol, spec in specs.items():
        pos, top = positions[symbol], book(symbol)
        views.append(position_view(spec, pos, top.mid if top else pos.entry_price))
    return views


def orders_margin(
    orders: Iterable[SimOrder],
    specs: Mapping[str, SymbolSpec],
    book: Callable[[str], Book | None],
) -> Decimal:
    """The initial margin of open orders (reduce-only ones need none): what is left of
    each at its limit, or at the mid for a MARKET order, over the symbol's leverage."""
    total = ZERO
    for o in orders:
        if not o.reduce_only:
            top = book(o.symbol)
            ref = o.price if o.type == "LIMIT" else top.mid if top else ZERO
            total += (o.orig_qty - o.executed_qty) * ref / specs[o.symbol].leverage
    return total
