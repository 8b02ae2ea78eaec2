"""Messages on the event subjects that no active wrote (anyone with publish rights on
`titan.evt.<ns>.>` can put them there) never stop a replay: a restart skips what the fold
cannot take, counts it, and rebuilds the same state the active had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import wait_for, world
from titan_exec.adapters.nats import follow
from titan_exec.core.model import OrderStatus
from titan_exec.core.state import state_hash

pytestmark = pytest.mark.integration


async def test_a_restart_skips_event_messages_the_fold_cannot_take(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path) as w:
        ack = await w.brain.place(w.brain.intent("keep", "SOL/USDT", "BUY_SETUP", "2"))
        await w.decided(ack.seq)
        coid = w.svc.state.accepted_signals["keep"][0]
        await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.FILLED, "fill")
        await w.svc.events.drain()  # type: ignore[union-attr]
        accepted = [
            m
            for m in await w.stream_messages("TITAN_EVT", "titan.evt.exec.order.v1.>")
            if b'"order.accepted"' in m.data
        ]
        assert accepted
        forged = [
            ("titan.evt.exec.fill.v1.sim.main.SOL_USDT", b"not an event"),
            ("titan.evt.exec.fill.v1.sim.main.SOL_USDT", b'{"payload":{"event":"nope"}}'),
            ("titan.evt.exec.order.v1.sim.main.SOL_USDT", accepted[0].data),  # accepted twice
            (
                "titan.evt.exec.order.v1.sim.main.SOL_USDT",
                accepted[0]
                .data.replace(b'"order.accepted"', b'"order.canceled"')
                .replace(coid.encode(), b"unknown-coid"),
            ),
        ]
        for i, (subject, data) in enumerate(forged):
            await w.js.publish(subject, data, headers={"Nats-Msg-Id": f"forged-{i}"})
        before = state_hash(w.svc.state)
        skipped_before = follow.SKIPPED_EVENTS[0]
    async with world(service_nats.url, tmp_path) as w2:
        assert state_hash(w2.svc.state) == before
        assert follow.SKIPPED_EVENTS[0] - skipped_before >= len(forged)
        ack = await w2.brain.place(w2.brain.intent("after", "SOL/USDT", "BUY_SETUP", "1"))
        await w2.decided(ack.seq)
        assert "after" in w2.svc.state.accepted_signals
