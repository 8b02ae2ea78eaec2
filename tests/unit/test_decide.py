"""Deciding commands: the gate order, every refusal reason, and what an acceptance creates."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import (
    NOW,
    accepted,
    control_decision,
    decide_received,
    filled,
    genesis,
    intent_payload,
    signed,
    submitted,
)
from titan_exec.core.decide import (
    DecisionConfig,
)
from titan_exec.core.events import ControlDecided, IntentDecided, OrderAccepted
from titan_exec.core.model import ControlAction, OrderType, Side, client_order_id
from titan_exec.core.risk import MarketView, Ticker
from titan_exec.core.state import State, apply, replay
from titan_exec.wire.envelope import parse_envelope
from titan_exec.wire.ingress import ReceivedCommand

SUBJECT = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"
CFG = DecisionConfig(
    venues=frozenset({"sim"}),
    default_venue="sim",
)
TICKERS = {
    ("sim", "BTC/USDT"): Ticker(Decimal("50000"), Decimal("50001"), NOW),
    ("sim", "ETH/USDT"): Ticker(Decimal("3000"), Decimal("3001"), NOW),
}


def market(now: int = NOW, heartbeat: int | None = NOW, equity: str = "100000") -> MarketView:
    return MarketView(
        now_ms=now, last_heartbeat_ms=heartbeat, tickers=TICKERS, equity={"sim": Decimal(equity)}
    )


class Harness:
    def __init__(self, state: State | None = None) -> None:
        self.state = state or replay([genesis(armed=True)])
        self.seq = 0

    def place(self, data: bytes, *, subject: str = SUBJECT, view: MarketView | None = None):  # type: ignore[no-untyped-def]
        self.seq += 1
        cmd = ReceivedCommand(seq=self.seq, subject=subject, data=data, t_ingress_ms=NOW)
        decision = decide_received(self.state, cmd, CFG, view or market())
        for ev in decision.events:
            apply(self.state, ev)
        return decision

    def control(self, action: str, payload: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
        self.seq += 1
        body = {"action": action, **(payload or {})}
        data = signed(body, type_="titan.cmd.exec.control.v1")
        cmd = ReceivedCommand(
            seq=self.seq, subject=f"titan.cmd.exec.control.v1.{action}", data=data, t_ingress_ms=NOW
        )
        decision = control_decision(self.state, cmd, CFG, NOW)
        for ev in decision.events:
            apply(self.state, ev)
        return decision


def test_a_valid_intent_becomes_one_decision_and_one_order() -> None:
    h = Harness()
    d = h.place(signed(intent_payload("sig-1", entry=[50000, 50500])))
    assert d.refusal is None
    decided, order = d.events
    assert isinstance(decided, IntentDecided) and decided.outcome == "accepted"
    assert isinstance(order, OrderAccepted)
    assert order.client_order_id == client_order_id("sig-1", "sim", 0)
    assert order.side is Side.BUY
    assert order.order_type is OrderType.LIMIT
    assert order.limit_price == Decimal("50000")
    assert order.qty == Decimal("0.1")
    assert d.submit == (order.client_order_id,)


def test_client_order_id_is_deterministic_and_short() -> None:
    a = client_order_id("sig-1", "sim", 0)
    assert a == client_order_id("sig-1", "sim", 0)
    assert a != client_order_id("sig-1", "sim", 1)
    assert a != client_order_id("sig-1", "binance", 0)
    assert len(client_order_id("x" * 500, "v" * 50, 99_999)) <= 32


def test_a_redelivered_command_is_a_duplicate() -> None:
    h = Harness()
    data = signed(intent_payload("sig-1"))
    h.place(data)
    cmd = ReceivedCommand(seq=1, subject=SUBJECT, data=data, t_ingress_ms=NOW)
    again = decide_received(h.state, cmd, CFG, market())
    assert again.is_duplicate
    assert again.events == ()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"not json", "invalid_envelope"),
        (b"\xff\xfe\xfa", "invalid_envelope"),
        (b"{}", "invalid_envelope"),
        (b"[" * 10_000 + b"]" * 10_000, "invalid_envelope"),
        (b'{"a": "' + b"x" * (1024 * 1024) + b'"}', "invalid_envelope"),
        (b'{"type":"x","version":1,"producer":"p","payload":{},"ts":NaN}', "invalid_envelope"),
    ],
    ids=["not-json", "invalid-utf8", "missing-fields", "deep", "one-mib", "nan"],
)
def test_malformed_envelopes_are_refused_with_a_reason(data: bytes, code: str) -> None:
    d = Harness().place(data)
    assert d.refusal is not None
    assert d.refusal.code == code
    assert d.refusal.message
    assert d.submit == ()
    assert [type(e) for e in d.events] == [IntentDecided]


def test_wrong_signature_is_hmac_signature_mismatch() -> None:
    d = Harness().place(signed(intent_payload(), secret=b"wrong"))
    assert d.refusal is not None
    assert d.refusal.code == "hmac_signature_mismatch"


def test_tampered_payload_fails_the_signature() -> None:
    data = signed(intent_payload(size=0.1))
    tampered = data.replace(b'"size":0.1', b'"size":0.2')
    assert tampered != data
    d = Harness().place(tampered)
    assert d.refusal is not None and d.refusal.code == "hmac_signature_mismatch"


def test_replayed_nonce_is_refused() -> None:
    h = Harness()
    h.place(signed(intent_payload("sig-1"), nonce="ab" * 16))
    d = h.place(signed(intent_payload("sig-2"), nonce="ab" * 16))
    assert d.refusal is not None and d.refusal.code == "nonce_replayed"


def test_timestamp_outside_tolerance_is_refused() -> None:
    d = Harness().place(signed(intent_payload(), ts=NOW - 301_000))
    assert d.refusal is not None and d.refusal.code == "stale_timestamp"


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        (intent_payload(size="0.1"), "schema_invalid", "payload.size"),
        ({k: v for k, v in intent_payload().items() if k != "symbol"}, "schema_invalid", "symbol"),
        (intent_payload(direction=True), "schema_invalid", "direction"),
        (intent_payload(size=0), "risk_rejection", "size must be > 0"),
        (intent_payload(size=-1), "risk_rejection", "size must be > 0"),
        (intent_payload(symbol="DOGE/USDT"), "risk_rejection", "not in whitelist"),
        (intent_payload(status="REJECTED"), "intent_not_executable", "REJECTED"),
        (intent_payload(direction=-1), "schema_invalid", "contradicts"),
        (intent_payload(exchange="nowhere"), "unknown_venue", "nowhere"),
        (intent_payload(t_signal=NOW - 6123), "intent_expired", "Intent EXPIRED: 6123 ms latency"),
        (intent_payload(type_="CLOSE_LONG"), "risk_rejection", "no open position"),
    ],
    ids=[
        "size-string",
        "missing-symbol",
        "bool-direction",
        "size-zero",
        "size-negative",
        "not-whitelisted",
        "status",
        "direction-contradicts",
        "unknown-venue",
        "expired",
        "close-nothing",
    ],
)
def test_bad_intents_are_refused_with_a_readable_reason(
    payload: dict[str, object], code: str, fragment: str
) -> None:
    subject = SUBJECT if payload.get("symbol") != "DOGE/USDT" else SUBJECT.replace("BTC", "DOGE")
    d = Harness().place(signed(payload), subject=subject)
    assert d.refusal is not None, d.summary
    assert d.refusal.code == code
    assert fragment in d.refusal.message
    assert d.submit == ()


def test_nan_and_infinity_literals_are_refused() -> None:
    body = signed(intent_payload()).replace(b'"size":0.1', b'"size":NaN')
    assert Harness().place(body).refusal is not None
    body = signed(intent_payload()).replace(b'"size":0.1', b'"size":Infinity')
    assert Harness().place(body).refusal is not None


def test_halt_drops_before_anything_else_and_disarm_refuses() -> None:
    h = Harness(replay([genesis(armed=True, halted=True)]))
    d = h.place(b"garbage")
    assert d.refusal is not None and d.refusal.code == "system_halted"
    h = Harness(replay([genesis(armed=False)]))
    d = h.place(signed(intent_payload(), secret=b"wrong"))
    assert d.refusal is not None and d.refusal.code == "system_disarmed"


def test_policy_hash_mismatch_reports_both_hashes() -> None:
    h = Harness()
    d = h.place(signed(intent_payload(policy_hash="deadbeef")))
    assert d.refusal is not None and d.refusal.code == "policy_hash_mismatch"
    assert d.refusal.got_policy_hash == "deadbeef"
    assert d.refusal.expected_policy_hash == h.state.policy.hash  # type: ignore[union-attr]


def test_duplicate_signal_is_not_executed_twice() -> None:
    h = Harness()
    assert h.place(signed(intent_payload("sig-1"))).refusal is None
    d = h.place(signed(intent_payload("sig-1")))
    assert d.refusal is not None and d.refusal.code == "duplicate_signal"


def test_risk_order_notional_then_heartbeat_then_staleness() -> None:
    # notional 2 BTC * 50001 > 50000 cap
    d = Harness().place(signed(intent_payload(size=2)))
    assert d.refusal is not None and "notional" in d.refusal.message
    d = Harness().place(signed(intent_payload()), view=market(heartbeat=NOW - 6000))
    assert d.refusal is not None and d.refusal.code == "brain_heartbeat_stale"
    stale = MarketView(
        now_ms=NOW + 6000,
        last_heartbeat_ms=NOW + 6000,
        tickers=TICKERS,
        equity={"sim": Decimal(100000)},
    )
    d = Harness().place(signed(intent_payload(t_signal=NOW + 6000), ts=NOW + 6000), view=stale)
    assert d.refusal is not None and "market data" in d.refusal.message


def test_leverage_uses_equity() -> None:
    d = Harness().place(signed(intent_payload(size=0.5)), view=market(equity="2000"))
    assert d.refusal is not None and "leverage" in d.refusal.message


def test_open_orders_per_symbol_limit() -> None:
    h = Harness()
    for i in range(5):
        assert h.place(signed(intent_payload(f"s{i}", size=0.01, entry=[40000]))).refusal is None
    d = h.place(signed(intent_payload("s5", size=0.01, entry=[40000])))
    assert d.refusal is not None and "open orders" in d.refusal.message


def test_daily_loss_blocks_new_risk_but_not_reduce_only() -> None:
    day = NOW // 86_400_000
    s = replay(
        [
            genesis(),
            accepted("a"),
            submitted("a"),
            accepted("b", side=Side.SELL, ts=2),
            submitted("b"),
        ]
    )
    apply(s, filled("a", "t1", qty="1", price="3000", ts=day * 86_400_000 + 1))
    apply(s, filled("b", "t2", side=Side.SELL, qty="0.5", price="1000", ts=day * 86_400_000 + 2))
    assert s.realized_on(day) == Decimal("-1000")
    h = Harness(s)
    d = h.place(signed(intent_payload("new", size=0.01)))
    assert d.refusal is not None and "daily realised PnL" in d.refusal.message
    d = h.place(signed(intent_payload("close", type_="CLOSE_LONG", size=5)))
    assert d.refusal is None, d.summary
    order = d.events[1]
    assert isinstance(order, OrderAccepted)
    assert order.is_reduce_only and order.side is Side.SELL and order.qty == Decimal("0.5")


def test_stale_heartbeat_still_allows_closing() -> None:
    s = replay([genesis(), accepted("a"), submitted("a")])
    apply(s, filled("a", "t1", qty="0.2", price="50000"))
    h = Harness(s)
    d = h.place(signed(intent_payload("c", type_="CLOSE", size=0.2)), view=market(heartbeat=None))
    assert d.refusal is None


def test_control_commands_change_state_through_events() -> None:
    h = Harness()
    d = h.control("halt", {"reason": "ops"})
    assert isinstance(d.events[0], ControlDecided) and h.state.is_halted
    h.control("open")
    assert not h.state.is_halted
    h.control("disarm")
    assert not h.state.is_armed
    h.control("arm")
    assert h.state.is_armed


def test_policy_update_is_validated_and_changes_the_hash() -> None:
    h = Harness()
    old = h.state.policy.hash  # type: ignore[union-attr]
    policy = json.loads(json.dumps(h.state.policy.raw))  # type: ignore[union-attr]
    policy["maxPositionNotional"] = 1000.0
    d = h.control("policy", {"policy": policy})
    assert d.refusal is None
    assert h.state.policy is not None and h.state.policy.hash != old
    assert h.state.policy.max_position_notional == Decimal("1000.0")
    bad = h.control("policy", {"policy": {"maxAccountLeverage": "x"}})
    assert bad.refusal is not None and bad.refusal.code == "schema_invalid"


def test_an_unsigned_control_may_only_reduce_risk() -> None:
    h = Harness()
    h.control("disarm")
    arm = ReceivedCommand(
        seq=98, subject="titan.cmd.exec.control.v1.arm", data=b'{"action":"arm"}', t_ingress_ms=NOW
    )
    d = control_decision(h.state, arm, CFG, NOW)
    assert d.refusal is not None and d.refusal.code == "unsigned_control"
    assert "titan-exec send control arm" in d.refusal.message
    for ev in d.events:
        apply(h.state, ev)
    assert not h.state.is_armed
    cmd = ReceivedCommand(
        seq=99,
        subject="titan.cmd.exec.control.v1.halt",
        data=b'{"action":"halt"}',
        t_ingress_ms=NOW,
    )
    d = control_decision(h.state, cmd, CFG, NOW)
    assert d.refusal is None
    (ev,) = d.events
    assert isinstance(ev, ControlDecided) and ev.authentication == "unsigned"
    apply(h.state, ev)
    assert h.state.is_halted


def test_flatten_creates_reduce_only_market_orders_for_every_position() -> None:
    s = replay(
        [
            genesis(),
            accepted("a"),
            submitted("a"),
            accepted("b", side=Side.SELL, symbol="ETH/USDT", ts=2),
            submitted("b"),
        ]
    )
    apply(s, filled("a", "t1", qty="0.3", price="50000"))
    apply(s, filled("b", "t2", side=Side.SELL, qty="2", price="3000", symbol="ETH/USDT"))
    h = Harness(s)
    d = h.control(ControlAction.FLATTEN.value)
    orders = [e for e in d.events if isinstance(e, OrderAccepted)]
    assert {(o.symbol, o.side, o.qty) for o in orders} == {
        ("BTC/USDT", Side.SELL, Decimal("0.3")),
        ("ETH/USDT", Side.BUY, Decimal("2")),
    }
    assert all(o.is_reduce_only and o.order_type is OrderType.MARKET for o in orders)
    assert len(d.submit) == 2


# --- properties: bad input never becomes an order --------------------------------------


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _one_decision(d: Any) -> None:
    assert d.events, "every command gets a decision"
    assert isinstance(d.events[0], IntentDecided)
    assert sum(isinstance(e, IntentDecided) for e in d.events) == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_become_an_order(data: bytes) -> None:
    d = Harness().place(data)
    _one_decision(d)
    assert d.refusal is not None and d.submit == ()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_signed_json_payloads_never_crash_and_never_trade_unless_valid(
    payload: Any,
) -> None:
    doc = payload if isinstance(payload, dict) else {"value": payload}
    d = Harness().place(signed(doc))
    _one_decision(d)
    assert d.refusal is not None  # no random document is a whitelisted, fresh, valid intent


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_flipped_byte_never_executes_different_signed_content(data: st.DataObject) -> None:
    original = signed(intent_payload("sig-flip", entry=[50000]))
    pos = data.draw(st.integers(0, len(original) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[pos]))
    mutated = original[:pos] + bytes([new]) + original[pos + 1 :]
    d = Harness().place(mutated)
    _one_decision(d)
    if d.refusal is None:
        a, b = parse_envelope(original), parse_envelope(mutated)
        assert (a.payload_raw, a.ts_ms, a.nonce) == (b.payload_raw, b.ts_ms, b.nonce)


def test_the_brains_intents_execute_as_meant() -> None:
    """SignalProcessor.ts: `entry_zone: [0, 0]` when there is no entry price (a market
    order, as the old service sent), `status: FAILED` is not executable, an envelope
    without `sig` is `hmac_signature_mismatch`."""
    h = Harness()
    d = h.place(signed(intent_payload("zero-zone", entry=[0, 0], timestamp=NOW + 900)))
    assert d.is_accepted, d.refusal
    order = next(e for e in d.events if isinstance(e, OrderAccepted))
    assert order.order_type is OrderType.MARKET and order.limit_price is None
    d = h.place(signed(intent_payload("failed", status="FAILED")))
    assert d.refusal is not None and d.refusal.code == "intent_not_executable"
    unsigned = json.loads(signed(intent_payload("unsigned")))
    del unsigned["sig"]
    d = h.place(json.dumps(unsigned).encode())
    assert d.refusal is not None and d.refusal.code == "hmac_signature_mismatch"
