"""Event messages on the wire: every event round-trips; outgoing JSON matches the contract."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest

from tests.builders import accepted, acknowledged, filled, genesis, submitted
from titan_exec.core.events import (
    EVENT_TYPES,
    ControlDecided,
    Event,
    IntentDecided,
    OrderCanceled,
    OrderCancelRequested,
    OrderExpired,
    OrderRejected,
    PositionReconciled,
    RiskStateDecided,
    SeenNonce,
    StateCompacted,
    event_id,
)
from titan_exec.core.model import ClientOrderId, Side
from titan_exec.core.positions import ClosedTrade
from titan_exec.wire import contract
from titan_exec.wire.subjects import Subjects, token

REF = {
    "ts_ms": 9,
    "client_order_id": ClientOrderId("c1"),
    "venue": "sim",
    "account": "main",
    "symbol": "BTC/USDT",
}
EVERY_EVENT: list[Event] = [
    genesis(),
    IntentDecided(
        ts_ms=1,
        cmd_seq=4,
        outcome="rejected",
        reason="x: y",
        nonce=SeenNonce(key_id="default", nonce="ab", ts_ms=1),
    ),
    ControlDecided(
        ts_ms=1, cmd_seq=5, action="policy", outcome="accepted", reason="", policy={"a": 1.5}
    ),
    accepted("c1", limit="50000.5"),
    submitted("c1"),
    acknowledged("c1"),
    OrderCancelRequested(**REF, reason="ttl"),
    OrderCanceled(**REF, reason="flatten"),
    OrderRejected(**REF, reason="venue: margin"),
    OrderExpired(**REF),
    filled("c1", "t1", qty="0.1", price="50000.5", fee="2.0002"),
    StateCompacted(ts_ms=9, cmd_floor=3, orders_before_ms=5, fills_before_ms=6),
    PositionReconciled(
        ts_ms=12,
        venue="sim",
        account="main",
        symbol="BTC/USDT",
        qty_before=Decimal("0.2"),
        qty_after=Decimal("0.25"),
        venue_entry_price=Decimal("50000.1"),
        reason="venue reports 0.25, ours 0.2",
    ),
    RiskStateDecided(ts_ms=13, src_seq=7, risk_state="Defensive", outcome="accepted", reason=""),
    ControlDecided(
        ts_ms=14,
        cmd_seq=6,
        action="policy",
        outcome="accepted",
        reason="",
        authentication="unsigned",
        form="risk.policy",
        overlay={"maxPositionNotional": "0", "maxOpenOrdersPerSymbol": 0},
        risk_state="Emergency",
    ),
]


def test_the_list_covers_every_event_type() -> None:
    assert {type(e) for e in EVERY_EVENT} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_every_event_round_trips_through_the_wire(event: Event) -> None:
    subject, msg_id, body = contract.encode_event(event, ns="exec", producer="p")
    assert msg_id == event_id(event)
    assert contract.decode_event(subject, body, ns="exec") == event
    doc = json.loads(body)
    assert set(doc) == {"id", "type", "version", "ts", "producer", "correlation_id", "payload"}
    assert doc["version"] == 1 and doc["ts"] == event.ts_ms and doc["id"] == msg_id
    assert subject.startswith("titan.evt.exec.")
    # encoding is deterministic: the same event, the same bytes
    assert contract.encode_event(event, ns="exec", producer="p")[2] == body


def test_fill_event_is_the_contract_fill_report() -> None:
    ev = filled("c1", "t1", qty="0.1", price="50000.5", fee="2.0002", side=Side.SELL)
    subject, _, body = contract.encode_event(ev, ns="execution", producer="p")
    assert subject == "titan.evt.execution.fill.v1.sim.main.BTC_USDT"
    doc = json.loads(body)
    assert doc["type"] == "titan.event.execution.fill.v1"
    p = doc["payload"]
    contract_keys = {
        "fillId",
        "signalId",
        "symbol",
        "side",
        "price",
        "qty",
        "fee",
        "feeCurrency",
        "tSignal",
        "tIngress",
        "tDecision",
        "tAck",
        "tExchange",
        "clientOrderId",
        "executionId",
        "status",
        "timestamp",
        "dexProof",
    }
    assert contract_keys <= set(p)
    assert set(p) - contract_keys == {"event", "tsMs", "venue", "account"}
    assert (p["price"], p["qty"], p["fee"]) == ("50000.5", "0.1", "2.0002")  # strings
    assert p["side"] == "SELL" and p["dexProof"] is None and p["status"] == "FILLED"


def test_order_events_go_to_the_order_subject() -> None:
    subject, _, _ = contract.encode_event(submitted("c1"), ns="exec", producer="p")
    assert subject == "titan.evt.exec.order.v1.sim.main.BTC_USDT"


def test_a_position_correction_is_a_state_event_on_the_position_subject() -> None:
    ev = next(e for e in EVERY_EVENT if isinstance(e, PositionReconciled))
    subject, msg_id, body = contract.encode_event(ev, ns="exec", producer="p")
    assert subject == "titan.evt.exec.position.v1.sim.main.BTC_USDT"
    assert msg_id == "position:sim:main:BTC/USDT:12"
    doc = json.loads(body)
    assert doc["type"] == "titan.event.execution.position.v1"
    p = doc["payload"]
    assert p["event"] == "position.reconciled"
    assert (p["qtyBefore"], p["qtyAfter"], p["venueEntryPrice"]) == ("0.2", "0.25", "50000.1")
    assert contract.is_state_subject(subject, "exec")


def test_non_state_subjects_are_not_folded() -> None:
    assert contract.decode_event("titan.evt.exec.reject.v1", b"{}", ns="exec") is None
    assert contract.decode_event("titan.evt.exec.truth.v1", b"{}", ns="exec") is None
    assert contract.decode_event("titan.evt.other.fill.v1.a.b.c", b"{}", ns="exec") is None


def test_subject_tokens_are_sanitised() -> None:
    assert token("BTC/USDT") == "BTC_USDT"
    assert token("a.b*>c d") == "a-b--c-d"
    assert token("") == "_"
    # an event with an odd route is still publishable
    assert Subjects("exec").fill("bin.ance", "", "BTC USDT") == (
        "titan.evt.exec.fill.v1.bin-ance._.BTC-USDT"
    )


def test_reject_telemetry_has_the_contract_fields() -> None:
    """The contract's fields, and ours beside them: `envelope_id` (intent_id is the
    signal id, as the old service and the upstream harness read it)."""
    doc = json.loads(
        contract.reject_telemetry(
            intent_id="N/A",
            reason="system_disarmed",
            expected_policy_hash="N/A",
            got_policy_hash="N/A",
            brain_instance_id="N/A",
            timestamp_ms=5,
        )
    )
    assert doc == {
        "event_type": "execution.intent.rejected",
        "intent_id": "N/A",
        "reason": "system_disarmed",
        "expected_policy_hash": "N/A",
        "got_policy_hash": "N/A",
        "envelope_id": "N/A",
        "brain_instance_id": "N/A",
        "timestamp": 5,
    }


@pytest.mark.parametrize(
    ("original", "key", "expected"),
    [
        (b'{"a":1}', "payload", {"a": 1}),
        (b'"a string"', "payload", "a string"),
        (b"plain text", "payload", "plain text"),
        (b"\xff\xfe", "payload_b64", base64.b64encode(b"\xff\xfe").decode()),
    ],
    ids=["json", "json-string", "text", "bytes"],
)
def test_dead_letter_keeps_the_original(original: bytes, key: str, expected: object) -> None:
    doc = json.loads(contract.dead_letter(original, reason="why", t_ingress_ms=7, subject="s"))
    assert doc[key] == expected
    # a JSON string and a text that is not JSON are told apart
    encoding = {b'{"a":1}': "json", b'"a string"': "json", b"plain text": "text"}
    assert doc["payload_encoding"] == encoding.get(original, "base64")
    assert doc["reason"] == "why" and doc["t_ingress"] == 7


def test_trade_record_is_snake_case_with_rfc3339_times() -> None:
    trade = ClosedTrade(
        signal_id="s1",
        venue="sim",
        symbol="BTC/USDT",
        side="LONG",
        entry_price=Decimal("100"),
        exit_price=Decimal("110"),
        size=Decimal("2"),
        pnl=Decimal("19"),
        pnl_pct=Decimal("9.5"),
        fee=Decimal("1"),
        opened_at_ms=1_700_000_000_000,
        closed_at_ms=1_700_000_060_500,
    )
    doc = json.loads(contract.trade_record(trade, close_reason="MANUAL", metadata={}))
    p = doc["payload"]
    assert doc["type"] == "titan.event.analysis.trade_completed.v1"
    assert p["opened_at"] == "2023-11-14T22:13:20.000Z"
    assert p["closed_at"] == "2023-11-14T22:14:20.500Z"
    assert (p["entry_price"], p["exit_price"], p["size"], p["pnl"]) == ("100", "110", "2", "19")
    assert p["close_reason"] == "MANUAL" and p["side"] == "LONG"
    assert set(p) == {
        "signal_id",
        "symbol",
        "side",
        "entry_price",
        "exit_price",
        "size",
        "pnl",
        "pnl_pct",
        "fee",
        "fee_asset",
        "opened_at",
        "closed_at",
        "close_reason",
        "metadata",
    }
