"""The real Titan deployment's messages through one running service: the brain's intents
(SignalProcessor, forwardSignal), its kill switches (the bare halt, flatten), the ops
script's unsigned arm, RiskGuardian's risk states. Every message is the upstream producer's
shape (`tests/fixtures/upstream/producer_*.json`, with the upstream file and line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.harness import wait_for, world
from tests.upstream import message
from titan_exec.core.orders import OrderStatus

BTC = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"


async def _send(w: Any, name: str, **kw: Any) -> int:
    msg = message(name, now=w.svc.clock(), ns="exec", **kw)
    ack = await w.js.publish(msg.subject, msg.data, headers=msg.headers or None)
    return int(ack.seq)


async def _risk_state(w: Any, body: bytes) -> int:
    ack = await w.js.publish("titan.evt.risk.state.v1", body)
    await wait_for(lambda: w.svc.state.risk_state_seq >= ack.seq, f"risk state {body!r}")
    return int(ack.seq)


async def _filled(w: Any, signal: str) -> None:
    coid = w.svc.state.accepted_signals[signal][0]
    await wait_for(lambda: w.svc.state.orders[coid].status is OrderStatus.FILLED, signal)


async def test_brain_signals_the_kill_switches_and_the_risk_states(
    service_nats: Any, tmp_path: Path
) -> None:
    async with world(service_nats.url, tmp_path) as w:
        svc = w.svc
        # SignalProcessor: timestamp (publish time) differs from t_signal; market order
        seq = await _send(w, "producer_intent_signalprocessor", signal="s1", t_signal_ago_ms=800)
        await w.decided(seq)
        assert "s1" in svc.state.accepted_signals, w.svc.status_doc()["recent_rejects"]
        await _filled(w, "s1")
        # TitanBrain.processSignal then forwards the same signal with the same Nats-Msg-Id:
        # JetStream drops it; with another id, it is refused as a duplicate signal
        fwd = message("producer_intent_forwardsignal", now=svc.clock(), ns="exec", signal="s1")
        ack = await w.js.publish(fwd.subject, fwd.data, headers=fwd.headers)
        assert ack.duplicate
        ack = await w.js.publish(fwd.subject, fwd.data, headers={"Nats-Msg-Id": "s1-again"})
        await w.decided(ack.seq)
        assert (await w.dead_letters())[ack.seq]["code"] == "duplicate_signal"
        assert len(svc.state.accepted_signals["s1"]) == 1

        # the brain's bare halt stops the next intent; only a signed open lifts it
        seq = await _send(w, "producer_halt_brain")
        await w.decided(seq)
        assert svc.state.is_halted
        late = await w.brain.place(w.brain.intent("s2", "BTC/USDT", "BUY_SETUP", "0.001"))
        await w.decided(late.seq)
        assert "s2" not in svc.state.accepted_signals
        await w.brain.control("open")
        await wait_for(lambda: not svc.state.is_halted, "open")

        # the ops script's arm is unsigned: refused with a dead letter
        await w.brain.control("disarm")
        await wait_for(lambda: not svc.state.is_armed, "disarm")
        seq = await _send(w, "producer_arm_ops")
        await w.decided(seq)
        assert not svc.state.is_armed
        dead = (await w.dead_letters())[seq]
        assert (
            dead["code"] == "unsigned_control" and "titan-exec send control arm" in dead["reason"]
        )
        await w.brain.control("arm")
        await wait_for(lambda: svc.state.is_armed, "arm")

        # Defensive: an opening is refused, a close passes
        await _risk_state(w, b'"Defensive"')
        opening = await w.brain.place(w.brain.intent("s3", "BTC/USDT", "BUY_SETUP", "0.001"))
        await w.decided(opening.seq)
        assert (await w.dead_letters())[opening.seq]["code"] == "risk_state_defensive"
        close = await w.brain.place(w.brain.intent("s4", "BTC/USDT", "CLOSE", "0.001"))
        await w.decided(close.seq)
        assert "s4" in svc.state.accepted_signals
        await _filled(w, "s4")

        # Emergency: every intent refused, the brain's flatten still works
        await _risk_state(w, b'"Emergency"')
        close = await w.brain.place(w.brain.intent("s5", "BTC/USDT", "CLOSE", "0.001"))
        await w.decided(close.seq)
        assert (await w.dead_letters())[close.seq]["code"] == "risk_state_emergency"
        seq = await _send(w, "producer_flatten_brain")
        await w.decided(seq)
        await wait_for(lambda: svc.state.position("sim", "BTC/USDT").is_flat, "flat")

        # a risk state that is not one of the four: refused, dead-lettered; Normal lifts
        bad = await _risk_state(w, b'"Panic"')
        assert svc.state.risk_state == "Emergency"
        await svc.events.drain()  # type: ignore[union-attr]
        assert (await w.risk_state_dead_letters())[bad]["code"] == "unknown_risk_state"
        await _risk_state(w, b'"Normal"')
        ok = await w.brain.place(w.brain.intent("s6", "BTC/USDT", "BUY_SETUP", "0.001"))
        await w.decided(ok.seq)
        assert "s6" in svc.state.accepted_signals

        counts = svc.state.control_counts
        assert counts["halt:accepted:unsigned"] == 1
        assert counts["arm:rejected:unsigned"] == 1
        assert counts["flatten:accepted:unsigned"] == 1
        assert counts["risk_state:rejected:unsigned"] == 1
