"""The order state machine: every (status, lifecycle event) pair, legal or refused."""

from __future__ import annotations

from decimal import Decimal
from itertools import product

import pytest

from tests.builders import accepted, filled
from titan_exec.core import orders as om
from titan_exec.core.events import (
    OrderAcknowledged,
    OrderCanceled,
    OrderCancelRequested,
    OrderEvent,
    OrderExpired,
    OrderRejected,
    OrderSubmitted,
)
from titan_exec.core.model import ClientOrderId, OrderStatus, VenueOrderId

S = OrderStatus
C = ClientOrderId("c1")
BASE = {"ts_ms": 5, "client_order_id": C, "venue": "sim", "account": "main", "symbol": "BTC/USDT"}
LIFECYCLE: list[OrderEvent] = [
    OrderSubmitted(**BASE),
    OrderAcknowledged(**BASE, venue_order_id=VenueOrderId("v1")),
    OrderCancelRequested(**BASE, reason="ttl"),
    OrderCanceled(**BASE, reason="operator"),
    OrderRejected(**BASE, reason="venue said no"),
    OrderExpired(**BASE),
]
EXPECTED = {
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


def _with_status(status: OrderStatus) -> om.Order:
    from dataclasses import replace

    return replace(om.new_order(accepted("c1")), status=status)


@pytest.mark.parametrize(("status", "event"), list(product(list(S), LIFECYCLE)))
def test_every_status_event_pair(status: OrderStatus, event: OrderEvent) -> None:
    order = _with_status(status)
    expected = EXPECTED.get((status, type(event)))
    if expected is None:
        assert not om.can_apply(order, event)
        with pytest.raises(om.IllegalTransition):
            om.apply_lifecycle(order, event)
    else:
        assert om.can_apply(order, event)
        assert om.apply_lifecycle(order, event).status is expected


def test_table_is_exactly_the_documented_one() -> None:
    assert om.TRANSITIONS == EXPECTED


def test_partial_then_full_fill() -> None:
    order = om.apply_lifecycle(om.new_order(accepted("c1", qty="2")), LIFECYCLE[0])
    order = om.apply_fill(order, filled("c1", "t1", qty="0.5", price="100"))
    assert order.status is S.PARTIALLY_FILLED
    order = om.apply_fill(order, filled("c1", "t2", qty="1.5", price="104"))
    assert order.status is S.FILLED
    assert order.filled_qty == Decimal("2")
    assert order.avg_fill_price == Decimal("103")
    assert not order.is_anomalous


def test_late_fill_after_cancel_keeps_status_and_counts_quantity() -> None:
    order = _with_status(S.CANCELED)
    after = om.apply_fill(order, filled("c1", "t1", qty="0.3"))
    assert after.status is S.CANCELED
    assert after.filled_qty == Decimal("0.3")
    assert after.is_anomalous


def test_acknowledgement_after_fill_records_venue_id_only() -> None:
    order = _with_status(S.FILLED)
    after = om.apply_lifecycle(order, LIFECYCLE[1])
    assert after.status is S.FILLED
    assert after.venue_order_id == "v1"
