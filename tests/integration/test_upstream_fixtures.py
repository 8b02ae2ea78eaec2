"""Every upstream producer's message shape (`tests/fixtures/upstream/producer_*.json`: the
brain's intents from SignalProcessor, forwardSignal and ManualTradeService, every control
form, RiskGuardian's risk state and heartbeat) replayed through one running service, each
with its documented outcome. The BookTicker ticker has its own test (the market data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.harness import wait_for, world
from tests.upstream import UPSTREAM, message, risk_state_bodies
from titan_exec.core.events import ControlDecided, IntentDecided
from titan_exec.wire.contract import decode_event

# (fixture, outcome of its decision, what the state says afterwards)
CONTROLS: list[tuple[str, str, dict[str, Any]]] = [
    ("producer_halt_brain", "accepted", {"is_halted": True}),
    ("producer_halt_riskmanager", "accepted", {"is_halted": True}),
    ("producer_halt_runbook_state", "accepted", {"is_halted": True}),
    ("producer_halt_runbook_operator", "accepted", {"is_halted": True}),
    ("producer_disarm_ops", "accepted", {"is_armed": False}),
    ("producer_arm_ops", "rejected", {"is_armed": False}),
    ("producer_policy_budget_emergency", "accepted", {"risk_state": "Emergency"}),
    ("producer_policy_budget_normal", "accepted", {"risk_state": "Normal"}),
    ("producer_policy_brain", "accepted", {"risk_state": "Normal"}),
    ("producer_risk_control_override", "ignored", {}),
    ("producer_flatten_runbook", "accepted", {}),
    ("producer_flatten_brain", "accepted", {}),
]
INTENTS = [
    "producer_intent_signalprocessor",
    "producer_intent_forwardsignal",
    "producer_intent_manualtrade",
]


def test_every_producer_fixture_is_listed_here_or_in_the_market_data_tests() -> None:
    names = {p.stem for p in UPSTREAM.glob("producer_*.json")}
    covered = {c[0] for c in CONTROLS} | set(INTENTS)
    covered |= {"producer_risk_state", "producer_heartbeat_riskguardian", "producer_bookticker"}
    assert names == covered
    for p in UPSTREAM.glob("producer_*.json"):
        assert "titan-trading-system" in json.loads(p.read_text())["_source"], p.name


async def test_every_upstream_producer_shape_through_the_running_service(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path) as w:
        svc = w.svc

        async def send(name: str, **kw: Any) -> Any:
            msg = message(name, now=svc.clock(), ns="exec", venue="sim", **kw)
            ack = await w.js.publish(msg.subject, msg.data, headers=msg.headers or None)
            await w.decided(ack.seq)
            await svc.events.drain()  # type: ignore[union-attr]
            for m in await w.stream_messages("TITAN_EVT", "titan.evt.exec.>"):
                ev = decode_event(m.subject, m.data, ns="exec")
                if isinstance(ev, IntentDecided | ControlDecided) and ev.cmd_seq == ack.seq:
                    return ev
            raise AssertionError(f"no decision of {name} in TITAN_EVT")

        for i, name in enumerate(INTENTS):
            ev = await send(name, signal=f"up-{i}")
            assert isinstance(ev, IntentDecided) and ev.outcome == "accepted", (name, ev.reason)
        coids = [c for i in range(3) for c in svc.state.accepted_signals[f"up-{i}"]]
        await wait_for(lambda: all(svc.state.orders[c].status.is_terminal for c in coids), "fills")

        hb = message("producer_heartbeat_riskguardian", now=svc.clock() + 1)
        before = svc.market.last_heartbeat_ms or 0
        await w.nc.publish(hb.subject, hb.data)
        await wait_for(lambda: (svc.market.last_heartbeat_ms or 0) > before, "heartbeat")

        for name, outcome, after in CONTROLS:
            ev = await send(name)
            assert isinstance(ev, ControlDecided) and ev.outcome == outcome, (name, ev.reason)
            for field, value in after.items():
                assert getattr(svc.state, field) == value, (name, field)
            if outcome == "rejected":
                assert (await w.dead_letters())[ev.cmd_seq]["code"] == "unsigned_control"
            if svc.state.is_halted:
                await w.brain.control("open")
                await wait_for(lambda: not svc.state.is_halted, "open")
            if name == "producer_arm_ops":  # the ops script could not arm: the signed way
                await w.brain.control("arm")
                await wait_for(lambda: svc.state.is_armed, "arm")
        await wait_for(lambda: not any(not p.is_flat for p in svc.state.positions.values()), "flat")

        for body in risk_state_bodies():
            ack = await w.js.publish("titan.evt.risk.state.v1", body)
            await wait_for(lambda a=ack: svc.state.risk_state_seq >= a.seq, "risk state")
            assert json.dumps(svc.state.risk_state).encode() == body
