"""The demo's part with the real Titan deployment's own messages (`upstream_brain`): a
SignalProcessor intent and its forwardSignal copy, the ops script's unsigned arm, and
RiskGuardian's Defensive and Normal. The brain's bare halt ends the flow (`flow`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from titan_exec_lab.demo.flow import expect, say, say_decision, wait_for
from titan_exec_lab.demo.upstream_brain import UpstreamBrain

if TYPE_CHECKING:
    from titan_exec_lab.demo.flow import DemoFlow


async def upstream_part(flow: DemoFlow, up: UpstreamBrain) -> None:
    say("the real brain's own messages (upstream shapes)")
    sp = up.signal_processor("demo-brain-sp", "BTC/USDT", "BUY", "0.02")
    ack = await up.place(sp)
    flow.sent.append((ack.seq, "SignalProcessor intent"))
    decision = await flow.decisions.wait(ack.seq, "the SignalProcessor intent")
    await flow.report_trade(
        "SignalProcessor intent (timestamp != t_signal, entry_zone [0,0]: market)", decision, sp
    )
    fwd = up.forward_signal(sp, flow.brain.venue)
    dup = await up.place(fwd, venue=flow.brain.venue)
    if dup.duplicate:
        say("  forwardSignal of the same signal, same Nats-Msg-Id: dropped by JetStream")
    else:
        flow.sent.append((dup.seq, "forwardSignal copy"))
        d = await flow.decisions.wait(dup.seq, "the forwardSignal copy")
        say_decision("forwardSignal copy", d)
        expect(d, "rejected", "the forwardSignal copy")

    ack = await up.ops_arm()
    flow.sent.append((ack.seq, "ops script arm"))
    d = await flow.decisions.wait(ack.seq, "the ops script's arm")
    say_decision("ops script's unsigned arm", d)
    expect(d, "rejected", "the ops script's unsigned arm")

    await _risk_state(flow, up, "Defensive")
    b = flow.brain
    await flow.reject(
        "opening while Defensive", b.intent("demo-def-open", "ETH/USDT", "BUY_SETUP", "1")
    )
    await flow.trade(
        "close while Defensive", b.intent("demo-def-close", "BTC/USDT", "CLOSE", "0.02")
    )
    await _risk_state(flow, up, "Normal")


async def _risk_state(flow: DemoFlow, up: UpstreamBrain, name: str) -> None:
    await up.risk_state(name)

    async def applied() -> bool:
        return (await flow.status()).get("risk_state") == name

    await wait_for(applied, f"risk state {name}", 20)
    say(f"  RiskGuardian: {name} (titan.evt.risk.state.v1) → risk state {name}")
