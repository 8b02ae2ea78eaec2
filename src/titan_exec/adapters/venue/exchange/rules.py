"""The exchange model's order filters (pure): is a new order well formed for its symbol?

This module owns the parameter checks of a new order, in Binance's order and with its
error codes and messages: side, type and time in force; quantity and price as decimal
strings (pattern, precision, step and tick, minimum and maximum); position side,
reduce-only flag and client order id; then, given the position, the book and the
available balance, reduce-only, minimum notional and margin. The engine checks what
needs its records (duplicate client order ids, the open-order limit).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from titan_exec.adapters.venue.exchange.market import (
    ZERO,
    Book,
    SymbolSpec,
    decimals_of,
    is_multiple,
)
from titan_exec.adapters.venue.exchange.records import OrderRequest, SimError, missing_param

_NUMBER = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_PRECISION = "Precision is over the maximum defined for this asset."


@dataclass(frozen=True, slots=True)
class Checked:
    """A new order's parameters once they passed the filters."""

    side: str
    type: str
    qty: Decimal
    price: Decimal
    """The limit price; zero for a MARKET order."""
    reduce_only: bool
    client_id: str | None


def check_request(req: OrderRequest, spec: SymbolSpec) -> Checked:
    """The order's parsed parameters, or `SimError` for the first filter it fails."""
    _check_kind(req)
    qty = _quantity(req, spec)
    price = _price(req, spec)
    if req.position_side not in (None, "BOTH"):
        raise SimError(-4061, "Order's position side does not match user's setting.")
    if req.reduce_only not in (None, "true", "false"):
        raise SimError(-1130, "Data sent for parameter 'reduceOnly' is not valid.")
    client_id = req.client_order_id
    if client_id is not None and not _CLIENT_ID.match(client_id):
        raise SimError(-4015, "Client order id is not valid.")
    return Checked(str(req.side), str(req.type), qty, price, req.reduce_only == "true", client_id)


def check_position(
    c: Checked,
    spec: SymbolSpec,
    amount: Decimal,
    book: Book | None,
    available: Callable[[], Decimal] | None,
) -> None:
    """A price for a MARKET order (``book``: None when there is none yet); reduce-only
    against the position (``amount``, signed); minimum notional and margin (against the
    ``available`` balance; None: no margin check) otherwise."""
    buy = c.side == "BUY"
    limit = c.type == "LIMIT"
    if book is None and not limit:
        raise SimError(-2010, f"no market price for {spec.symbol}")
    if c.reduce_only:
        if amount == ZERO or (amount > ZERO) == buy:
            raise SimError(-2022, "ReduceOnly Order is rejected.")
        return
    ref = c.price if limit or book is None else book.mid
    if c.qty * ref < spec.min_notional:
        raise SimError(
            -4164,
            f"Order's notional must be no smaller than {spec.min_notional} "
            "(unless you choose reduce only).",
        )
    reducing = amount != ZERO and (amount > ZERO) != buy
    opening = max(ZERO, c.qty - abs(amount)) if reducing else c.qty
    if available is None:
        return
    book_ref = c.price if book is None else book.ask if buy else book.bid
    # a BUY limit fills at its price or below; a SELL limit at its price or above
    # (at the bid when marketable): priced at max(limit, bid), as Binance prices
    # a short's cost at the largest of its price, the mark and the last price
    fill_ref = book_ref if not limit else c.price if buy else max(c.price, book_ref)
    if opening * fill_ref / spec.leverage > available():
        raise SimError(-2019, "Margin is insufficient.")


def _check_kind(req: OrderRequest) -> None:
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


def _quantity(req: OrderRequest, spec: SymbolSpec) -> Decimal:
    qty = number("quantity", req.quantity)
    if qty <= ZERO:
        raise SimError(-4003, "Quantity less than or equal to zero.")
    if decimals_of(qty.normalize()) > spec.qty_decimals or not is_multiple(qty, spec.step_size):
        raise SimError(-1111, _PRECISION)
    if qty < spec.min_qty:
        raise SimError(-4004, "Quantity less than min qty.")
    if qty > spec.max_qty:
        raise SimError(-4005, "Quantity greater than max qty.")
    return qty


def _price(req: OrderRequest, spec: SymbolSpec) -> Decimal:
    if req.type != "LIMIT":
        if req.price is not None:
            raise SimError(-1106, "Parameter 'price' sent when not required.")
        return ZERO
    price = number("price", req.price)
    if price <= ZERO:
        raise SimError(-4001, "Price less than 0.")
    if decimals_of(price.normalize()) > spec.price_decimals:
        raise SimError(-1111, _PRECISION)
    if not is_multiple(price, spec.tick_size):
        raise SimError(-4014, "Price not increased by tick size.")
    if price < spec.min_price:
        raise SimError(-4013, "Price less than min price.")
    if price > spec.max_price:
        raise SimError(-4002, "Price greater than max price.")
    return price


def number(name: str, raw: str | None) -> Decimal:
    """A decimal parameter as Binance accepts it (digits, an optional fraction)."""
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
