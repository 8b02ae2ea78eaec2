"""ccxt's answers read into the service's values: numbers from the venue's raw strings
where it gives them (never via floats), the order status read from the venue's own words
into a `VenueOrderStatus`, and an order as an `OrderReport`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from titan_exec.core.model import ZERO, ClientOrderId, VenueOrderId
from titan_exec.core.reports import OrderReport, PositionReport, VenueOrderStatus

_V = VenueOrderStatus
VENUE_STATUSES: dict[str, VenueOrderStatus] = {
    s.value: s
    for s in (_V.NEW, _V.PARTIALLY_FILLED, _V.FILLED, _V.CANCELED, _V.REJECTED, _V.EXPIRED)
}
"""Binance's own words (the raw `info.status`), read as they are."""
_STATUS = {
    "closed": _V.FILLED,
    "canceled": _V.CANCELED,
    "expired": _V.EXPIRED,
    "rejected": _V.REJECTED,
}
"""ccxt's unified words for a closed order."""
UNKNOWN_STATUS = _V.NEW
"""A word neither vocabulary has is read as an open order: it is queried again and never
closed on a guess."""


def is_duplicate_id(err: Exception) -> bool:
    """Binance answers a reused client order id with -4116, which ccxt maps to InvalidOrder."""
    text = str(err)
    return "-4116" in text or "ClientOrderId is duplicated" in text


def dec(raw: Any, fallback: Any = None) -> Decimal:
    """The first of the two that reads as a finite Decimal; zero when neither does."""
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


def equity_of(balance: Mapping[str, Any]) -> Decimal | None:
    """Account equity from ccxt's balance: Binance's ``totalMarginBalance`` where the raw
    answer has it, else the USDT total; None when neither is there."""
    info = balance.get("info") or {}
    if isinstance(info, dict) and info.get("totalMarginBalance") is not None:
        return dec(info["totalMarginBalance"])
    total = (balance.get("total") or {}).get("USDT")
    return None if total is None else dec(total)


def order_status(order: Mapping[str, Any]) -> VenueOrderStatus:
    raw = (order.get("info") or {}).get("status")
    if isinstance(raw, str) and raw in VENUE_STATUSES:
        return VENUE_STATUSES[raw]
    st = order.get("status")
    if st == "open":
        return _V.PARTIALLY_FILLED if (order.get("filled") or 0) > 0 else _V.NEW
    return _STATUS.get(str(st), UNKNOWN_STATUS)


def order_report(
    order: Mapping[str, Any], *, venue: str, account: str, canonical: Callable[[str], str]
) -> OrderReport:
    info = order.get("info") or {}
    coid = ClientOrderId(str(order.get("clientOrderId") or info.get("clientOrderId") or ""))
    return OrderReport(
        venue=venue,
        account=account,
        symbol=canonical(str(order.get("symbol"))),
        client_order_id=coid,
        venue_order_id=VenueOrderId(str(order.get("id"))),
        status=order_status(order),
        qty=dec(info.get("origQty"), order.get("amount")),
        filled_qty=dec(info.get("executedQty"), order.get("filled")),
        ts_ms=int(order.get("timestamp") or 0),
    )


def position_report(
    p: Mapping[str, Any], *, venue: str, account: str, canonical: Callable[[str], str]
) -> PositionReport:
    """One entry of ccxt's `fetch_positions`: the venue's signed amount (`positionAmt`)
    where it gives one, else ccxt's contracts signed by side."""
    info = p.get("info") or {}
    qty = dec(info.get("positionAmt"))
    if qty == ZERO and p.get("contracts"):
        qty = dec(p.get("contracts")) * (-1 if p.get("side") == "short" else 1)
    return PositionReport(
        venue=venue,
        account=account,
        symbol=canonical(str(p.get("symbol"))),
        qty=qty,
        entry_price=dec(info.get("entryPrice"), p.get("entryPrice")),
    )
