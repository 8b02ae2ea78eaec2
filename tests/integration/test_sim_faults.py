"""The service through the ccxt venue against the simulator's faults: a lost response is
resolved by querying the client order id (never placed twice); an order not yet visible is
unknown, not absent, until it appears."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import wait_for, world
from titan_exec.core.model import OrderStatus

pytestmark = pytest.mark.integration

FAST = {"orders.in_doubt_query_after_ms": 100, "orders.in_doubt_absent_after_ms": 5000}


def placements(sim: Any, coid: str) -> int:
    return sum(1 for o in sim.inspect()["orders"] if o.get("clientOrderId") == coid)


@pytest.mark.parametrize("mode", ["disconnect", "504"])
async def test_executed_but_response_lost_is_resolved_without_a_second_order(
    service_nats: Any, tmp_path: Path, venue_sim: Any, mode: str
) -> None:
    async with world(service_nats.url, tmp_path, sim=venue_sim, **FAST) as w:
        venue_sim.faults.update({"lose_next": 1, "lose_scope": "place", "lose_mode": mode})
        ack = await w.brain.place(w.brain.intent("lost", "BTC/USDT", "BUY_SETUP", "0.01"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["lost"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.FILLED, "fill", 15)
        assert placements(venue_sim, coid) == 1
        assert any(f["fault"].startswith("lose") for f in venue_sim.faults.log)


async def test_order_invisible_for_seconds_is_unknown_until_it_appears(
    service_nats: Any, tmp_path: Path, venue_sim: Any
) -> None:
    async with world(service_nats.url, tmp_path, sim=venue_sim, **FAST) as w:
        venue_sim.faults.update(
            {"invisible_ms": 2000, "lose_next": 1, "lose_scope": "place", "lose_mode": "504"}
        )
        ack = await w.brain.place(
            w.brain.intent("hidden", "ETH/USDT", "BUY_SETUP", "0.1", entry="2000")
        )
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["hidden"][0]
        await wait_for(lambda: w.svc.state.orders[coid].venue_order_id is not None, "found", 10)
        order = w.svc.state.orders[coid]
        assert order.status is OrderStatus.ACKNOWLEDGED  # never declared absent meanwhile
        assert order.t_ack - order.t_submitted >= 1500
        assert placements(venue_sim, coid) == 1


async def test_rate_limited_and_erroring_places_are_rejected_not_duplicated(
    service_nats: Any, tmp_path: Path, venue_sim: Any
) -> None:
    async with world(service_nats.url, tmp_path, sim=venue_sim, **FAST) as w:
        venue_sim.faults.update({"rate_limit_next": 1, "rate_limit_scope": "place"})
        ack = await w.brain.place(w.brain.intent("limited", "BTC/USDT", "BUY_SETUP", "0.01"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["limited"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.REJECTED, "reject")
        assert "venue unavailable" in w.svc.state.orders[coid].last_reason
        assert placements(venue_sim, coid) == 0
        # a 503 "unknown" answer that was not executed: in doubt, then absent, never resent
        venue_sim.faults.update({"error_next": 1, "error_scope": "place"})
        ack = await w.brain.place(w.brain.intent("erroring", "BTC/USDT", "BUY_SETUP", "0.01"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["erroring"][0]
        await wait_for(
            lambda: w.svc.state.orders[coid].status is OrderStatus.REJECTED, "absent", 10
        )
        assert "absent at venue" in w.svc.state.orders[coid].last_reason
        assert placements(venue_sim, coid) == 0


async def test_min_notional_is_refused_before_sending(
    service_nats: Any, tmp_path: Path, venue_sim: Any
) -> None:
    async with world(service_nats.url, tmp_path, sim=venue_sim) as w:
        ack = await w.brain.place(
            w.brain.intent("tiny", "BTC/USDT", "BUY_SETUP", "0.001", entry="1000")
        )
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["tiny"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.REJECTED, "reject")
        assert "min notional" in w.svc.state.orders[coid].last_reason
        assert placements(venue_sim, coid) == 0
