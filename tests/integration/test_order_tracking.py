"""Order tracking against venue faults: lost responses, late visibility, failing cancels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import wait_for, world
from titan_exec.adapters.venue.base import VenueUnavailable
from titan_exec.core.model import OrderStatus

pytestmark = pytest.mark.integration

FAST = {"orders.in_doubt_query_after_ms": 100, "orders.in_doubt_absent_after_ms": 3000}


async def test_lost_place_response_is_resolved_by_query_and_never_resent(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, **FAST) as w:
        venue = w.inst.venue
        venue.faults.lose_next = 1
        ack = await w.brain.place(w.brain.intent("lost", "BTC/USDT", "BUY_SETUP", "0.01"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["lost"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.FILLED, "fill")
        assert venue.place_count == 1
        assert len([o for o in venue.all_orders() if o.client_order_id == coid]) == 1
        # a resting order with a lost response is acknowledged through the query
        venue.faults.lose_next = 1
        ack = await w.brain.place(
            w.brain.intent("rest", "ETH/USDT", "BUY_SETUP", "1", entry="2000")
        )
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["rest"][0]
        await wait_for(lambda: w.svc.state.orders[coid].venue_order_id is not None, "query ack")
        assert w.svc.state.orders[coid].status is OrderStatus.ACKNOWLEDGED
        assert venue.place_count == 2


async def test_order_invisible_for_a_while_is_unknown_not_absent(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, **FAST) as w:
        venue = w.inst.venue
        venue.faults.invisible_ms = 1500
        venue.faults.lose_next = 1
        ack = await w.brain.place(
            w.brain.intent("hidden", "ETH/USDT", "BUY_SETUP", "0.1", entry="2000")
        )
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["hidden"][0]
        await wait_for(lambda: w.svc.state.orders[coid].venue_order_id is not None, "visible", 5)
        order = w.svc.state.orders[coid]
        assert order.status is OrderStatus.ACKNOWLEDGED  # found, never declared absent
        assert order.t_ack - order.t_submitted >= 1000
        assert venue.place_count == 1


async def test_in_doubt_order_never_seen_is_declared_absent_after_the_deadline(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, **FAST) as w:
        venue = w.inst.venue
        venue.fail_next_place = TimeoutError("request timed out before the venue saw it")
        ack = await w.brain.place(w.brain.intent("ghost", "SOL/USDT", "BUY_SETUP", "1"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["ghost"][0]
        assert w.svc.state.orders[coid].status is OrderStatus.SUBMITTED
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.REJECTED, "absent", 8)
        assert "absent at venue" in w.svc.state.orders[coid].last_reason
        assert venue.place_count == 0


async def test_failed_cancel_is_retried_until_the_order_expires(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path, **{"orders.ttl_ms": 300}) as w:
        venue = w.inst.venue
        real_cancel = venue.cancel
        failures = {"left": 2}

        async def flaky_cancel(symbol: str, coid: Any) -> Any:
            if failures["left"] > 0:
                failures["left"] -= 1
                raise VenueUnavailable("503 from the venue")
            return await real_cancel(symbol, coid)

        venue.cancel = flaky_cancel  # type: ignore[method-assign]
        ack = await w.brain.place(
            w.brain.intent("rest", "ETH/USDT", "BUY_SETUP", "1", entry="2000")
        )
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["rest"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.EXPIRED, "expiry", 8)
        assert failures["left"] == 0


async def test_closed_venue_writes_send_nothing(service_nats: Any, tmp_path: Path) -> None:
    """A fenced instance (its lease deadline passed) records the write-ahead but never
    reaches the venue; the order stays in doubt for whoever holds the epoch next."""
    async with world(service_nats.url, tmp_path) as w:
        assert w.svc.leader is not None and w.svc.leader.runner is not None
        w.svc.leader.runner.may_write_venue = lambda: False
        ack = await w.brain.place(w.brain.intent("gated", "BTC/USDT", "BUY_SETUP", "0.01"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["gated"][0]
        assert w.svc.state.orders[coid].status is OrderStatus.SUBMITTED
        assert w.inst.venue.place_count == 0
