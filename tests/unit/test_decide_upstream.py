"""Intents exactly as the brain sends them (SignalProcessor, forwardSignal, ManualTradeService;
`tests/fixtures/upstream/producer_intent_*.json`), and the brain's risk posture."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.builders import (
    NOW,
    accepted,
    decide_received,
    filled,
    genesis,
    intent_payload,
    signed,
    submitted,
)
from tests.unit.test_controls import Pair
from tests.unit.test_decide import CFG, market
from tests.upstream import message
from titan_exec.core.decide import Decision
from titan_exec.core.events import OrderAccepted
from titan_exec.core.model import OrderType, Side
from titan_exec.core.state import State, apply, replay
from titan_exec.wire.ingress import ReceivedCommand


def place(state: State, subject: str, data: bytes, seq: int = 1) -> Decision:
    cmd = ReceivedCommand(seq=seq, subject=subject, data=data, t_ingress_ms=NOW)
    d = decide_received(state, cmd, CFG, market())
    for ev in d.events:
        apply(state, ev)
    return d


@pytest.mark.parametrize(
    ("name", "side"),
    [
        ("producer_intent_signalprocessor", Side.BUY),
        ("producer_intent_forwardsignal", Side.BUY),
        ("producer_intent_manualtrade", Side.SELL),
    ],
)
def test_each_brain_intent_shape_becomes_one_market_order(name: str, side: Side) -> None:
    state = replay([genesis()])
    msg = message(name, ns="exec", t_signal_ago_ms=1500)  # timestamp != t_signal upstream
    d = place(state, msg.subject, msg.data)
    assert d.refusal is None, d.refusal
    order = next(e for e in d.events if isinstance(e, OrderAccepted))
    assert order.side is side and order.order_type is OrderType.MARKET
    assert order.limit_price is None and order.stop_loss is None and order.take_profits == ()
    assert order.t_signal == NOW - 1500  # freshness is measured from t_signal
    assert order.reference_price is not None


def test_reject_telemetry_carries_the_signal_id_and_the_envelope_id() -> None:
    state = replay([genesis()])
    data = signed(intent_payload("sig-77", symbol="DOGE/USDT"))
    d = place(state, "titan.cmd.exec.place.v1.sim.main.DOGE_USDT", data)
    assert d.refusal is not None and d.refusal.code == "risk_rejection"
    assert d.refusal.intent_id == "sig-77" and d.refusal.envelope_id.startswith("env-")
    disarmed = replay([genesis(armed=False)])
    d = place(disarmed, "titan.cmd.exec.place.v1.sim.main.BTC_USDT", signed(intent_payload("s8")))
    assert d.refusal is not None and d.refusal.code == "system_disarmed"
    assert d.refusal.intent_id == "s8"


def _long_position() -> State:
    s = replay([genesis(), accepted("a", qty="0.3"), submitted("a")])
    apply(s, filled("a", "t1", qty="0.3", price="50000"))
    return s


def test_defensive_refuses_an_opening_and_passes_a_close() -> None:
    p = Pair(_long_position())
    p.risk_state(b'"Defensive"')
    subject = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"
    d = place(p.state, subject, signed(intent_payload("open-1")), seq=5)
    assert d.refusal is not None and d.refusal.code == "risk_state_defensive"
    d = place(p.state, subject, signed(intent_payload("close-1", type_="CLOSE", size=0.1)), seq=6)
    assert d.refusal is None
    p.risk_state(b'"Cautious"')  # reported only: trading as normal
    assert place(p.state, subject, signed(intent_payload("open-2")), seq=7).refusal is None


def test_emergency_refuses_every_intent() -> None:
    p = Pair(_long_position())
    p.risk_state(b'"Emergency"')
    subject = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"
    for i, payload in enumerate([intent_payload("o"), intent_payload("c", type_="CLOSE")]):
        d = place(p.state, subject, signed(payload), seq=10 + i)
        assert d.refusal is not None and d.refusal.code == "risk_state_emergency"
    p.risk_state(b'"Normal"')
    assert place(p.state, subject, signed(intent_payload("o2")), seq=20).refusal is None


def test_a_fill_past_the_slippage_bound_moves_the_risk_state() -> None:
    state = replay([genesis()])
    subject = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"
    d = place(state, subject, signed(intent_payload("slip", size=0.01)))
    order = next(e for e in d.events if isinstance(e, OrderAccepted))
    ref = order.reference_price
    assert ref is not None
    apply(state, submitted(order.client_order_id))
    worse = ref * Decimal("1.015")  # 150 bps over a 100 bps bound: Cautious
    apply(state, filled(order.client_order_id, "x1", qty="0.005", price=str(worse)))
    assert state.risk_state == "Cautious" and "slippage" in state.risk_state_source
    much_worse = ref * Decimal("1.03")  # 300 bps: more than twice: Defensive
    apply(state, filled(order.client_order_id, "x2", qty="0.005", price=str(much_worse)))
    assert state.risk_state == "Defensive" and state.slippage_breaches == 2
    assert not state.ref_prices  # the order is filled: its reference is gone
