"""Order tracking decisions: venue reports in, events out. Pure.

Fills are learned from the venue (never assumed from a place call), deduplicated by
venue trade id, and become `OrderFilled` events; an order report that shows a terminal
venue status becomes the matching lifecycle event once every fill it counts has been seen;
orders past their time-to-live are due for a cancel (then `OrderExpired`).
"""

from __future__ import annotations

from typing import Literal

from titan_exec.core.events import (
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from titan_exec.core.model import OrderStatus
from titan_exec.core.orders import Order, can_apply, fill_status, lifecycle
from titan_exec.core.reports import FillReport, OrderReport, VenueOrderStatus
from titan_exec.core.state import State


def fill_event(state: State, fill: FillReport, *, now_ms: int) -> OrderFilled | None:
    """The event for a venue fill, or None when that trade was applied already."""
    if state.is_fill_seen(fill.venue, fill.trade_id, fill.ts_ms):
        return None
    return fill_event_of(state.orders.get(fill.client_order_id), fill, now_ms=now_ms)


def fill_event_of(order: Order | None, fill: FillReport, *, now_ms: int) -> OrderFilled:
    """The event for a venue fill not seen before: of `order` (ours), or None (foreign: on
    the venue and account the report names)."""
    if order is not None:
        status = fill_status(order, fill.qty)
        st: Literal["FILLED", "PARTIALLY_FILLED"] = (
            "FILLED" if status is OrderStatus.FILLED else "PARTIALLY_FILLED"
        )
        return OrderFilled(
            ts_ms=now_ms,
            fill_id=fill.trade_id,
            signal_id=order.signal_id,
            symbol=order.symbol,
            side=fill.side,
            price=fill.price,
            qty=fill.qty,
            fee=fill.fee,
            fee_currency=fill.fee_currency,
            t_signal=order.t_signal,
            t_ingress=order.t_ingress,
            t_decision=order.t_decision,
            t_ack=order.t_ack or now_ms,
            t_exchange=fill.ts_ms,
            client_order_id=order.client_order_id,
            execution_id=fill.trade_id,
            status=st,
            timestamp=now_ms,
            venue=order.venue,
            account=order.account,
        )
    return OrderFilled(
        ts_ms=now_ms,
        fill_id=fill.trade_id,
        signal_id="",
        symbol=fill.symbol,
        side=fill.side,
        price=fill.price,
        qty=fill.qty,
        fee=fill.fee,
        fee_currency=fill.fee_currency,
        t_signal=0,
        t_ingress=0,
        t_decision=0,
        t_ack=0,
        t_exchange=fill.ts_ms,
        client_order_id=fill.client_order_id,
        execution_id=fill.trade_id,
        status="FILLED",
        timestamp=now_ms,
        venue=fill.venue,
        account=fill.account,
    )


def report_event(order: Order, report: OrderReport, now_ms: int) -> OrderEvent | None:
    """Lifecycle event implied by a venue order report, if any.

    A terminal venue status is taken only once our filled quantity matches the venue's:
    otherwise fills are still on their way and the order stays open until they arrive.
    """
    if report.filled_qty > order.filled_qty:
        return None
    ev: OrderEvent | None = None
    if report.status is VenueOrderStatus.CANCELED:
        ev = (
            lifecycle(OrderExpired, order, now_ms, reason="ttl")
            if order.is_cancel_requested and order.last_reason == "ttl"
            else lifecycle(
                OrderCanceled, order, now_ms, reason=order.last_reason or "canceled at venue"
            )
        )
    elif report.status is VenueOrderStatus.EXPIRED:
        ev = lifecycle(OrderExpired, order, now_ms, reason="expired at venue")
    elif report.status is VenueOrderStatus.REJECTED:
        ev = lifecycle(OrderRejected, order, now_ms, reason="rejected at venue")
    if ev is not None and can_apply(order, ev):
        return ev
    return None


def due_for_expiry(state: State, now_ms: int, *, retry_after_ms: int | None = None) -> list[Order]:
    """Open orders past their time-to-live whose cancel has not been requested yet, and,
    with `retry_after_ms`, those whose cancel was requested that long ago and still open."""
    out = []
    for o in state.iter_open_orders():
        if o.expires_at_ms > now_ms:
            continue
        if not o.is_cancel_requested or (
            retry_after_ms is not None and now_ms - o.expires_at_ms >= retry_after_ms
        ):
            out.append(o)
    return out
