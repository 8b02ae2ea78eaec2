"""An active and a hot standby on one stream and one venue: shadow state, takeover, fence.

The election (the lease) decides *when* the standby takes over; these tests call the
takeover directly and check *what* it guarantees: the standby's state equals the active's,
the new active continues without losing or repeating anything, and the deposed active's
writes are refused by the server (the epoch fence) so it stops.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import make_config, wait_for, world
from tests.paper import InstrumentedPaper
from titan_exec.core.model import OrderStatus
from titan_exec.core.state import state_hash
from titan_exec.runtime.app import RunningInstance

pytestmark = pytest.mark.integration


async def test_standby_shadows_the_active_then_takes_over(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path / "a", **{"service.instance_id": "primary"}) as w:
        venue = w.inst.venue
        assert isinstance(venue, InstrumentedPaper)
        standby_cfg = make_config(
            service_nats.url,
            tmp_path / "b",
            **{"service.instance_id": "backup", "service.mode": "standby"},
        )
        async with RunningInstance(standby_cfg, venue=venue) as b:
            assert b.service is not None
            standby = b.service
            assert standby.role == "standby" and standby.leader is None
            for i, (symbol, size) in enumerate([("BTC/USDT", "0.1"), ("ETH/USDT", "1")]):
                ack = await w.brain.place(w.brain.intent(f"p{i}", symbol, "BUY_SETUP", size))
                await w.decided(ack.seq)
            await wait_for(
                lambda: all(o.status is OrderStatus.FILLED for o in w.svc.state.orders.values()),
                "fills",
            )
            await w.svc.events.drain()  # type: ignore[union-attr]
            await wait_for(
                lambda: (
                    standby.standby is not None
                    and standby.standby.last_seq >= w.svc.events.last_seq
                ),  # type: ignore[union-attr]
                "standby caught up",
            )
            assert state_hash(standby.state) == state_hash(w.svc.state)
            assert venue.place_count == 2  # the standby never wrote to the venue

            # a hot standby keeps market data and brain liveness current
            await wait_for(lambda: len(standby.market.tickers) == 3, "standby tickers")
            await wait_for(lambda: standby.market.last_heartbeat_ms is not None, "heartbeat")
            # the active dies (stops consuming); the standby takes over
            await w.svc.stop()
            epoch = await standby.take_over()
            assert standby.role == "active" and epoch > 0
            ack = await w.brain.place(w.brain.intent("after", "SOL/USDT", "BUY_SETUP", "2"))
            await wait_for(lambda: ack.seq in standby.state.decided_cmds, "decided by backup")
            assert "after" in standby.state.accepted_signals, standby.status_doc()["recent_rejects"]
            coid = standby.state.accepted_signals["after"][0]
            await wait_for(
                lambda: standby.state.orders[coid].status is OrderStatus.FILLED, "fill by backup"
            )
            assert venue.place_count == 3
            coids = [o.client_order_id for o in venue.all_orders()]
            assert len(coids) == len(set(coids))  # no client order id twice at the venue
            # earlier commands were redelivered to the backup's consumer and not re-decided
            decisions = [
                json.loads(m.data)["payload"]["cmdSeq"]
                for m in await w.stream_messages("TITAN_EVT", "titan.evt.exec.decision.v1.>")
            ]
            assert len(decisions) == len(set(decisions))


async def test_a_deposed_active_is_fenced_by_the_server(service_nats: Any, tmp_path: Path) -> None:
    async with world(service_nats.url, tmp_path / "a", **{"service.instance_id": "primary"}) as w:
        venue = w.inst.venue
        standby_cfg = make_config(
            service_nats.url,
            tmp_path / "b",
            **{"service.instance_id": "backup", "service.mode": "standby"},
        )
        async with RunningInstance(standby_cfg, venue=venue) as b:
            assert b.service is not None
            old_epoch = w.svc.epoch
            new_epoch = await b.service.take_over()  # e.g. the old active was paused
            assert new_epoch > old_epoch
            # the old active still believes it leads: its next write is refused
            ack = await w.brain.control("halt", reason="written by whom?")
            await wait_for(lambda: w.svc.health.fatal is not None, "old active fenced", 15)
            assert w.svc.events is not None and w.svc.events.is_deposed
            await wait_for(lambda: ack.seq in b.service.state.decided_cmds, "new active decides")
            # no event of the deposed epoch after the new marker
            msgs = await w.stream_messages("TITAN_EVT", "titan.evt.exec.>")
            marker_at = next(
                m.metadata.sequence.stream
                for m in msgs
                if m.subject.startswith("titan.evt.exec.epoch.v1.")
                and json.loads(m.data)["instance_id"] == "backup"
            )
            # the halt was decided exactly once, after the new epoch began, by the new active
            decisions = [
                m
                for m in msgs
                if m.subject == "titan.evt.exec.control.v1"
                and json.loads(m.data)["payload"]["cmdSeq"] == ack.seq
            ]
            assert len(decisions) == 1
            assert decisions[0].metadata.sequence.stream > marker_at
            assert b.service.state.is_halted
