"""The order state machine. Everything that affects an order's transitions lives here.

    ACCEPTED ──submitted──▶ SUBMITTED ──acknowledged──▶ ACKNOWLEDGED
        │                      │  │                        │
        │                      │  └──────filled──────┐     │ filled
        ▼                      ▼                     ▼     ▼
    CANCELED / REJECTED    REJECTED / CANCELED    PARTIALLY_FILLED ──filled──▶ FILLED
                           / EXPIRED                  │
                                                      └──▶ CANCELED / EXPIRED

Lifecycle events (submitted, acknowledged, canceled, rejected, expired) follow the
table `TRANSITIONS`; anything else is refused with `IllegalTransition` (a programming error
of the writer: it checks `can_apply` before it appends). Fills are the venue's truth and are
never refused: a fill on a canceled, expired or rejected order (a late fill) updates the
filled quantity and keeps the terminal status; `is_anomalous` records it. An
acknowledgement that arrives after the first fill only records the venue order id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TypeVar

from titan_exec.core.events import (
    OrderAccepted,
    OrderAcknowledged,
    OrderCanceled,
    OrderCancelRequested,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
)
from titan_exec.core.model import (
    ZERO,
    ClientOrderId,
    IntentType,
    OrderStatus,
    OrderType,
    Side,
    VenueOrderId,
)

S = OrderStatus

TRANSITIONS: dict[tuple[OrderStatus, type[OrderEvent]], OrderStatus] = {
    (S.ACCEPTED, OrderSubmitted): S.SUBMITTED,
    (S.ACCEPTED, OrderCanceled): S.CANCELED,
    (S.ACCEPTED, OrderRejected): S.REJECTED,
    (S.ACCEPTED, OrderCancelRequested): S.ACCEPTED,
    (S.SUBMITTED, OrderAcknowledged): S.ACKNOWLEDGED,
    (S.SUBMITTED, OrderRejected): S.REJECTED,
    (S.SUBMITTED, OrderCancelRequested): S.SUBMITTED,
    (S.SUBMITTED, OrderCanceled): S.CANCELED,
    (S.SUBMITTED, OrderExpired): S.EXPIRED,
    (S.ACKNOWLEDGED, OrderCancelRequested): S.ACKNOWLEDGED,
    (S.ACKNOWLEDGED, OrderCanceled): S.CANCELED,
    (S.ACKNOWLEDGED, OrderExpired): S.EXPIRED,
    (S.PARTIALLY_FILLED, OrderAcknowledged): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, OrderCancelRequested): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, OrderCanceled): S.CANCELED,
    (S.PARTIALLY_FILLED, OrderExpired): S.EXPIRED,
    (S.FILLED, OrderAcknowledged): S.FILLED,
}
"""(status, lifecycle event) → next status. Pairs not listed are illegal."""


class IllegalTransition(Exception):
    """A lifecycle event that the order's status does not allow (writer bug)."""


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: ClientOrderId
    signal_id: str
    cmd_seq: int
    venue: str
    account: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    is_reduce_only: bool
    intent_type: IntentType | None
    expires_at_ms: int
    t_signal: int
    t_ingress: int
    t_decision: int
    correlation_id: str
    stop_loss: Decimal | None
    take_profits: tuple[Decimal, ...]
    status: OrderStatus = S.ACCEPTED
    filled_qty: Decimal = ZERO
    filled_value: Decimal = ZERO
    fees: Decimal = ZERO
    venue_order_id: VenueOrderId | None = None
    t_submitted: int = 0
    t_ack: int = 0
    is_cancel_requested: bool = False
    last_reason: str = ""
    is_anomalous: bool = False

    @property
    def remaining_qty(self) -> Decimal:
        return max(self.qty - self.filled_qty, ZERO)

    @property
    def avg_fill_price(self) -> Decimal | None:
        return self.filled_value / self.filled_qty if self.filled_qty else None

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    @property
    def is_in_doubt(self) -> bool:
        """Sent (write-ahead recorded) but the venue has not confirmed it yet."""
        return self.status is S.SUBMITTED


E = TypeVar(
    "E",
    OrderSubmitted,
    OrderAcknowledged,
    OrderCancelRequested,
    OrderCanceled,
    OrderRejected,
    OrderExpired,
)


def lifecycle(kind: type[E], order: Order, ts_ms: int, **extra: Any) -> E:
    """Build a lifecycle event of `kind` for `order` (ids and route copied from it)."""
    return kind(
        ts_ms=ts_ms,
        client_order_id=order.client_order_id,
        venue=order.venue,
        account=order.account,
        symbol=order.symbol,
        **extra,
    )


def new_order(ev: OrderAccepted) -> Order:
    return Order(
        client_order_id=ev.client_order_id,
        signal_id=ev.signal_id,
        cmd_seq=ev.cmd_seq,
        venue=ev.venue,
        account=ev.account,
        symbol=ev.symbol,
        side=ev.side,
        order_type=ev.order_type,
        qty=ev.qty,
        limit_price=ev.limit_price,
        is_reduce_only=ev.is_reduce_only,
        intent_type=ev.intent_type,
        expires_at_ms=ev.expires_at_ms,
        t_signal=ev.t_signal,
        t_ingress=ev.t_ingress,
        t_decision=ev.ts_ms,
        correlation_id=ev.correlation_id,
        stop_loss=ev.stop_loss,
        take_profits=ev.take_profits,
    )


def can_apply(order: Order, event: OrderEvent) -> bool:
    return (order.status, type(event)) in TRANSITIONS


def apply_lifecycle(order: Order, event: OrderEvent) -> Order:
    """Apply a lifecycle event (not a fill) or raise `IllegalTransition`."""
    nxt = TRANSITIONS.get((order.status, type(event)))
    if nxt is None:
        raise IllegalTransition(
            f"order {order.client_order_id}: {type(event).__name__} not allowed in {order.status}"
        )
    match event:
        case OrderSubmitted():
            return replace(order, status=nxt, t_submitted=event.ts_ms)
        case OrderAcknowledged():
            return replace(
                order, status=nxt, venue_order_id=event.venue_order_id, t_ack=event.ts_ms
            )
        case OrderCancelRequested():
            return replace(order, status=nxt, is_cancel_requested=True, last_reason=event.reason)
        case OrderCanceled() | OrderRejected() | OrderExpired():
            return replace(order, status=nxt, last_reason=event.reason)
        case OrderAccepted():
            raise IllegalTransition(f"order {order.client_order_id} accepted twice")


def fill_status(order: Order, fill_qty: Decimal) -> OrderStatus:
    """Status of an order after a new fill of `fill_qty` (terminal statuses stay)."""
    if order.status in (S.CANCELED, S.EXPIRED, S.REJECTED):
        return order.status
    return S.FILLED if order.filled_qty + fill_qty >= order.qty else S.PARTIALLY_FILLED


def apply_fill(order: Order, fill: OrderFilled) -> Order:
    status = fill_status(order, fill.qty)
    is_late = order.status in (S.CANCELED, S.EXPIRED, S.REJECTED)
    is_over = order.filled_qty + fill.qty > order.qty
    return replace(
        order,
        status=status,
        filled_qty=order.filled_qty + fill.qty,
        filled_value=order.filled_value + fill.qty * fill.price,
        fees=order.fees + fill.fee,
        t_ack=order.t_ack or fill.t_ack,
        is_anomalous=order.is_anomalous or is_late or is_over,
    )
