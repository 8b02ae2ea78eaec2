"""Envelopes: the TypeScript vectors parse and verify, any changed byte of what is signed
fails verification, malformed input gets the documented WireError code and names the
field, and money comes out as Decimal from the wire text."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from titan_exec.wire.canonical import canonical_json
from titan_exec.wire.envelope import (
    Envelope,
    Intent,
    parse_envelope,
    parse_intent,
    sign_envelope,
    verify_envelope,
)
from titan_exec.wire.errors import WireError
from titan_exec.wire.signing import Keyring

CONTRACT = Path(__file__).resolve().parents[1] / "fixtures" / "contract"
VECTORS: list[dict[str, Any]] = json.loads((CONTRACT / "hmac-vectors.json").read_text())["vectors"]
SECRET = b"test-secret-123"
KEYRING = Keyring.single(SECRET)
NOW_MS = 1_700_000_000_000
TOLERANCE_MS = 300_000


@pytest.fixture(params=VECTORS, ids=lambda v: v["name"])
def vector(request: pytest.FixtureRequest) -> dict[str, Any]:
    v: dict[str, Any] = request.param
    return v


def intent_payload(**changes: Any) -> dict[str, Any]:
    """A valid BUY intent; `changes` override fields, a value of ... removes one."""
    payload: dict[str, Any] = {
        "schema_version": "1.0.0",
        "signal_id": "sig-1",
        "source": "brain",
        "symbol": "BTC/USDT",
        "direction": 1,
        "type": "BUY_SETUP",
        "entry_zone": [50000, 50500],
        "stop_loss": 49000,
        "take_profits": [52000],
        "size": 0.1,
        "status": "VALIDATED",
        "t_signal": NOW_MS,
        "exchange": "binance",
        "metadata": {"correlation_id": "sig-1"},
    }
    for key, value in changes.items():
        if value is ...:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


def signed(payload: dict[str, Any], **kwargs: Any) -> bytes:
    options: dict[str, Any] = {
        "secret": SECRET,
        "ts_ms": NOW_MS,
        "nonce": "93a787d90c7aed2442efc67846c79baa",
        "type_": "titan.cmd.exec.place.v1",
        "producer": "test",
        "id": "01HTEST",
        "correlation_id": "sig-1",
        "idempotency_key": "sig-1",
    }
    options.update(kwargs)
    return sign_envelope(payload, **options)


def intent_from(payload: dict[str, Any]) -> Intent:
    return parse_intent(parse_envelope(signed(payload)))


def accepted(data: bytes, now_ms: int) -> bool:
    """True only if the bytes parse and the envelope verifies."""
    try:
        envelope = parse_envelope(data)
    except WireError:
        return False
    return verify_envelope(envelope, KEYRING, now_ms=now_ms, tolerance_ms=TOLERANCE_MS) is None


# ---------------------------------------------------------------------------------------
# The TypeScript vectors


def test_vector_parses_and_verifies(vector: dict[str, Any]) -> None:
    envelope = parse_envelope(vector["envelope_wire"].encode())
    assert envelope.ts_ms == vector["ts"]
    assert envelope.nonce == vector["nonce"]
    assert envelope.sig == vector["sig"]
    assert envelope.key_id == "default"
    assert envelope.payload_raw == json.loads(vector["payload_wire"])
    signed_text = f"{envelope.ts_ms}.{envelope.nonce}.{canonical_json(envelope.payload_raw)}"
    assert signed_text == vector["canonical"]
    keyring = Keyring.single(vector["secret"].encode())
    assert verify_envelope(envelope, keyring, now_ms=vector["ts"], tolerance_ms=1) is None


def test_vector_intent_has_exact_decimal_money() -> None:
    basic, trailing_zero, nulls = (
        parse_intent(parse_envelope(v["envelope_wire"].encode())) for v in VECTORS
    )
    assert basic.size == Decimal("0.1")
    assert basic.entry_zone == (Decimal("50000"), Decimal("50500.5"))
    assert basic.stop_loss == Decimal("49000")
    assert basic.take_profits == (Decimal("52000"),)
    assert basic.t_signal_ms == 1_700_000_000_000
    assert (basic.direction, basic.type, basic.status) == (1, "BUY_SETUP", "PENDING")
    # the number the signer's JavaScript holds (the double 2), whatever the wire text
    assert trailing_zero.size == Decimal("2") and str(trailing_zero.size) == "2"
    assert trailing_zero.direction == -1
    assert nulls.stop_loss is None
    assert nulls.entry_zone == ()
    assert nulls.child_fills == []


def test_sign_envelope_reproduces_the_typescript_signature(vector: dict[str, Any]) -> None:
    data = sign_envelope(
        json.loads(vector["payload_wire"]),
        secret=vector["secret"].encode(),
        ts_ms=vector["ts"],
        nonce=vector["nonce"],
        type_="titan.cmd.execution.place.v1",
        producer="vector-gen",
    )
    assert json.loads(data)["sig"] == vector["sig"]


# ---------------------------------------------------------------------------------------
# Any change to what is signed fails

_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false|null|[{}\[\]:,]')


def _payload_value_mutations(envelope_wire: str) -> list[str]:
    """Every envelope obtained by changing one payload value by one character: each
    character of each string value, each digit of each number, and true/false flipped."""
    start = envelope_wire.index('"payload":') + len('"payload":')
    tokens = [(m.start() + start, m.group()) for m in _TOKEN_RE.finditer(envelope_wire[start:])]
    mutations: list[str] = []
    for i, (pos, token) in enumerate(tokens):
        is_key = i + 1 < len(tokens) and tokens[i + 1][1] == ":"
        if token.startswith('"') and not is_key:
            positions = range(pos + 1, pos + len(token) - 1)
            swap = {"Z": "Y"}
        elif token[0] in "-0123456789":
            positions = range(pos, pos + len(token))
            swap = {"1": "2"}
        elif token in ("true", "false"):
            flipped = "false" if token == "true" else "true"
            mutations.append(envelope_wire[:pos] + flipped + envelope_wire[pos + len(token) :])
            continue
        else:
            continue
        for p in positions:
            ch = envelope_wire[p]
            if token[0] != '"' and not ch.isdigit():
                continue
            new = swap.get(ch, "Z" if token.startswith('"') else "1")
            mutations.append(envelope_wire[:p] + new + envelope_wire[p + 1 :])
    return mutations


def test_changing_any_payload_value_character_fails_verification(vector: dict[str, Any]) -> None:
    wire: str = vector["envelope_wire"]
    now = vector["ts"]
    assert accepted(wire.encode(), now)
    mutations = _payload_value_mutations(wire)
    assert len(mutations) > 40
    original = canonical_json(json.loads(wire)["payload"])
    for mutated in mutations:
        envelope = parse_envelope(mutated.encode())  # still valid JSON ...
        assert canonical_json(envelope.payload_raw) != original  # ... with another value
        refusal = verify_envelope(envelope, KEYRING, now_ms=now, tolerance_ms=TOLERANCE_MS)
        assert refusal == WireError("signature", "hmac_signature_mismatch"), mutated


@pytest.mark.parametrize("field", ["sig", "nonce", "ts", "key_id"])
def test_changing_any_signed_envelope_field_character_fails(
    vector: dict[str, Any], field: str
) -> None:
    doc = json.loads(vector["envelope_wire"])
    text = str(doc[field])
    for i, ch in enumerate(text):
        new = "1" if ch != "1" else "2"
        changed = text[:i] + new + text[i + 1 :]
        doc_changed = {**doc, field: int(changed) if field == "ts" else changed}
        data = json.dumps(doc_changed).encode()
        now = doc_changed["ts"]  # so a changed ts fails on the signature, not on staleness
        assert not accepted(data, now), (field, i)


def test_a_stale_or_future_timestamp_is_refused_after_the_signature() -> None:
    envelope = parse_envelope(signed(intent_payload()))
    ok = verify_envelope(envelope, KEYRING, now_ms=NOW_MS + TOLERANCE_MS, tolerance_ms=TOLERANCE_MS)
    assert ok is None
    for now in (NOW_MS + TOLERANCE_MS + 1, NOW_MS - TOLERANCE_MS - 1):
        refusal = verify_envelope(envelope, KEYRING, now_ms=now, tolerance_ms=TOLERANCE_MS)
        assert refusal is not None
        assert refusal.code == "stale_timestamp"
        assert "300000 ms" in refusal.message


def test_unknown_key_id_is_a_signature_failure_naming_the_key() -> None:
    envelope = parse_envelope(signed(intent_payload(), key_id="retired"))
    refusal = verify_envelope(envelope, KEYRING, now_ms=NOW_MS)
    assert refusal == WireError("signature", "hmac_signature_mismatch: unknown key_id 'retired'")


def test_missing_key_id_uses_the_default_secret() -> None:
    data = signed(intent_payload(), key_id=None)
    assert "key_id" not in json.loads(data)
    envelope = parse_envelope(data)
    assert envelope.key_id is None
    assert verify_envelope(envelope, KEYRING, now_ms=NOW_MS) is None


# ---------------------------------------------------------------------------------------
# Malformed envelopes


def _with(**changes: Any) -> bytes:
    doc = json.loads(signed(intent_payload()))
    for key, value in changes.items():
        if value is ...:
            doc.pop(key)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b"hello", "not_json", "not valid JSON"),
        (b'{"type":"x",\xff}', "invalid_utf8", "invalid UTF-8 at byte 12"),
        (b'{"payload":{"size":NaN}}', "not_json", "NaN is not a JSON value"),
        (b'{"payload":{"size":Infinity}}', "not_json", "Infinity is not a JSON value"),
        (b"[1,2]", "envelope", "envelope: expected an object, got array"),
        (_with(payload=...), "envelope", "payload: required field missing"),
        (_with(payload=[1]), "envelope", "payload: expected an object, got array"),
        (_with(type=...), "envelope", "type: required field missing"),
        (_with(version=True), "envelope", "version: expected an integer, got bool"),
        (_with(version="1"), "envelope", "version: expected an integer, got str"),
        (_with(producer=None), "envelope", "producer: expected a string, got null"),
        (_with(ts=...), "envelope", "ts: required field missing"),
        (_with(ts="1700000000000"), "envelope", "ts: expected an integer, got str"),
        (_with(ts=1.7e12), "envelope", "ts: expected an integer, got float"),
        (_with(ts=-1), "envelope", "ts: must be >= 0, got -1"),
        (_with(ts=2**60), "envelope", "ts: integer out of the safe range"),
        (_with(nonce=...), "envelope", "nonce: required field missing"),
        (_with(nonce="has space"), "envelope", "nonce: must be 1 to 128 printable ASCII"),
        (_with(sig=5), "envelope", "sig: expected a string, got int"),
        (_with(key_id=""), "envelope", "key_id: must not be empty"),
        (_with(key_id=7), "envelope", "key_id: expected a string, got int"),
    ],
)
def test_malformed_envelopes_are_refused(data: bytes, code: str, message: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_envelope(data)
    assert caught.value.code == code
    assert caught.value.message.startswith(message), caught.value.message


def test_a_one_mebibyte_message_is_too_large() -> None:
    data = signed(intent_payload(metadata={"blob": "x" * (1 << 20)}))
    with pytest.raises(WireError) as caught:
        parse_envelope(data)
    assert caught.value.code == "too_large"
    assert caught.value.message == f"message is {len(data)} bytes, the limit is 262144 bytes"
    assert parse_envelope(data, max_bytes=2 << 20).payload_raw["metadata"]["blob"] == "x" * (
        1 << 20
    )


def test_ten_thousand_levels_of_nesting_are_refused_before_parsing() -> None:
    nested = b"[" * 10_000 + b"]" * 10_000
    data = signed(intent_payload()).replace(b'"metadata":{', b'"metadata":{"deep":' + nested + b",")
    with pytest.raises(WireError) as caught:
        parse_envelope(data)
    assert caught.value.code == "too_large"  # 10,000 values: over the value bound
    with pytest.raises(WireError) as caught:
        parse_envelope(data, max_values=100_000)
    assert caught.value.code == "too_deep"


def test_more_values_than_the_bound_are_refused_naming_the_limit() -> None:
    payload = intent_payload()
    payload["metadata"] = {"many": list(range(2000))}
    with pytest.raises(WireError) as caught:
        parse_envelope(signed(payload))
    assert caught.value.code == "too_large"
    assert "the limit is 512" in caught.value.message
    payload["metadata"] = {"many": list(range(400))}
    assert parse_envelope(signed(payload)).payload_exact["metadata"]["many"][399] == 399


def test_unknown_envelope_fields_are_allowed_and_optional_ones_read() -> None:
    envelope = parse_envelope(_with(extra={"x": 1}, policy_hash="abc", id=None))
    assert isinstance(envelope, Envelope)
    assert envelope.policy_hash == "abc"
    assert envelope.id is None
    assert (envelope.correlation_id, envelope.idempotency_key) == ("sig-1", "sig-1")
    assert (envelope.type, envelope.version, envelope.producer) == (
        "titan.cmd.exec.place.v1",
        1,
        "test",
    )


# ---------------------------------------------------------------------------------------
# The intent payload


def test_a_full_intent_is_read() -> None:
    intent = intent_from(
        intent_payload(
            leverage=3,
            confidence=0.85,
            position_mode="hedge",
            policy_hash="7ff8",
            max_slippage_bps=50,
            child_fills=[{"qty": 1}],
            custom={"anything": [1, 2]},
        )
    )
    assert intent == Intent(
        signal_id="sig-1",
        symbol="BTC/USDT",
        direction=1,
        type="BUY_SETUP",
        size=Decimal("0.1"),
        status="VALIDATED",
        t_signal_ms=NOW_MS,
        entry_zone=(Decimal(50000), Decimal(50500)),
        stop_loss=Decimal(49000),
        take_profits=(Decimal(52000),),
        exchange="binance",
        position_mode="hedge",
        policy_hash="7ff8",
        leverage=Decimal(3),
        confidence=Decimal("0.85"),
        max_slippage_bps=50,
        source="brain",
        schema_version="1.0.0",
        metadata={"correlation_id": "sig-1"},
        child_fills=[{"qty": 1}],
    )


def test_the_executed_number_is_the_double_the_signature_covers() -> None:
    wire_size = "12345678.123456789012345678"  # more digits than a double holds
    data = signed(intent_payload(size=float(wire_size)))  # what a TS producer signs
    assert b'"size":12345678.12345679,' in data
    data = data.replace(b'"size":12345678.12345679,', b'"size":' + wire_size.encode() + b",")
    envelope = parse_envelope(data)
    assert verify_envelope(envelope, KEYRING, now_ms=NOW_MS) is None
    assert envelope.payload_raw["size"] == float(wire_size)
    # JavaScript holds 12345678.12345679 for that text: that is what was signed, and run
    assert parse_intent(envelope).size == Decimal("12345678.12345679")


@pytest.mark.parametrize(
    ("wire", "executed"),
    [
        (b"1e-400", Decimal(0)),
        (b"-0.0", Decimal(0)),
        (b"0.1", Decimal("0.1")),
        (b"1E2", Decimal(100)),
        (b"9007199254740993", Decimal(9007199254740992)),  # 2**53 + 1: not a double
        (b"0.30000000000000004", Decimal("0.30000000000000004")),
    ],
)
def test_numbers_are_read_as_the_javascript_double(wire: bytes, executed: Decimal) -> None:
    as_signed = json.loads(wire)  # what the producer's JavaScript holds and signs
    data = signed(intent_payload(size=as_signed))
    canonical = b'"size":' + canonical_json(as_signed).encode() + b","
    assert canonical in data
    envelope = parse_envelope(data.replace(canonical, b'"size":' + wire + b","))
    assert verify_envelope(envelope, KEYRING, now_ms=NOW_MS) is None
    assert parse_intent(envelope).size == executed


def test_lone_surrogates_are_kept_as_their_json_escape_and_still_verify() -> None:
    payload = intent_payload(signal_id="sig-\udc00", note="a\ud800b")  # lone surrogates
    data = signed(payload, correlation_id="c\udfff")
    assert b"sig-\\udc00" in data  # as JSON.stringify writes them
    envelope = parse_envelope(data)
    assert verify_envelope(envelope, KEYRING, now_ms=NOW_MS) is None  # over the value as sent
    intent = parse_intent(envelope)
    assert intent.signal_id == "sig-\\udc00"  # the six characters, encodable
    assert envelope.correlation_id == "c\\udfff"
    assert envelope.payload_exact["note"] == "a\\ud800b"
    intent.signal_id.encode("utf-8")


def test_an_integral_float_is_not_an_integer() -> None:
    data = signed(intent_payload()).replace(b'"direction":1,', b'"direction":1.0,')
    with pytest.raises(WireError) as caught:
        parse_intent(parse_envelope(data))
    assert caught.value == WireError("schema", "payload.direction: expected an integer, got float")


def test_minimal_intent_defaults() -> None:
    payload = {
        "signal_id": "s",
        "symbol": "ETH/USDT",
        "direction": 0,
        "type": "CLOSE",
        "size": 1,
        "status": "PENDING",
        "timestamp": NOW_MS,
    }
    intent = intent_from(payload)
    assert intent.t_signal_ms == NOW_MS
    assert intent.size == Decimal(1)
    assert (intent.entry_zone, intent.take_profits, intent.stop_loss) == ((), (), None)
    assert (intent.exchange, intent.metadata, intent.child_fills) == (None, {}, None)


@pytest.mark.parametrize("size", [0, -1, -0.5])
def test_non_positive_size_parses_for_the_risk_guard_to_refuse(size: float) -> None:
    assert intent_from(intent_payload(size=size)).size == Decimal(str(size))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"signal_id": ...}, "payload.signal_id: required field missing"),
        ({"signal_id": ""}, "payload.signal_id: must not be empty"),
        ({"symbol": 5}, "payload.symbol: expected a string, got int"),
        ({"size": ...}, "payload.size: required field missing"),
        ({"size": "0.1"}, "payload.size: expected a number, got str"),
        ({"size": None}, "payload.size: expected a number, got null"),
        ({"size": True}, "payload.size: expected a number, got bool"),
        ({"direction": True}, "payload.direction: expected an integer, got bool"),
        ({"direction": 2}, "payload.direction: expected one of -1, 0, 1, got 2"),
        ({"direction": "1"}, "payload.direction: expected an integer, got str"),
        ({"type": "BUY"}, "payload.type: expected one of BUY_SETUP, SELL_SETUP, CLOSE_LONG"),
        ({"type": ...}, "payload.type: required field missing"),
        ({"status": ""}, "payload.status: must not be empty"),
        ({"status": None}, "payload.status: expected a string, got null"),
        ({"t_signal": ...}, "payload.t_signal: required field missing (or its alias timestamp)"),
        ({"t_signal": "now"}, "payload.t_signal: expected an integer, got str"),
        ({"entry_zone": 50000}, "payload.entry_zone: expected an array of numbers, got int"),
        ({"entry_zone": [1, "2"]}, "payload.entry_zone[1]: expected a number, got str"),
        ({"take_profits": [None]}, "payload.take_profits[0]: expected a number, got null"),
        ({"stop_loss": "49000"}, "payload.stop_loss: expected a number, got str"),
        ({"metadata": []}, "payload.metadata: expected an object, got array"),
        ({"leverage": "10"}, "payload.leverage: expected a number, got str"),
        ({"exchange": 1}, "payload.exchange: expected a string, got int"),
        ({"t_ingress": 1.5}, "payload.t_ingress: expected an integer, got float"),
        ({"velocity": "fast"}, "payload.velocity: expected a number, got str"),
        ({"trap_type": 3}, "payload.trap_type: expected a string, got int"),
    ],
)
def test_schema_violations_name_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(WireError) as caught:
        intent_from(intent_payload(**changes))
    assert caught.value.code == "schema"
    assert caught.value.message.startswith(message), caught.value.message


def test_timestamp_alias_equal_to_t_signal_is_accepted() -> None:
    assert intent_from(intent_payload(timestamp=NOW_MS)).t_signal_ms == NOW_MS


def test_sign_envelope_round_trip_with_decimal_money() -> None:
    data = signed(intent_payload(size=Decimal("0.25"), entry_zone=[Decimal("50000.0")]))
    envelope = parse_envelope(data)
    assert verify_envelope(envelope, KEYRING, now_ms=NOW_MS) is None
    intent = parse_intent(envelope)
    assert intent.size == Decimal("0.25")
    assert intent.entry_zone == (Decimal(50000),)
    assert b'"size":0.25' in data
    assert b'"entry_zone":[50000]' in data
    assert b'"id":"01HTEST"' in data
    assert b"policy_hash" not in data


def test_the_brains_shapes_t_signal_wins_and_zero_means_none() -> None:
    # SignalProcessor.ts (titan-brain) sets timestamp to the publish time, t_signal to the
    # signal's, and writes 0 for "no stop loss / no take profit"
    payload = intent_payload(timestamp=NOW_MS + 750, stop_loss=0, take_profits=[0], status="FAILED")
    intent = parse_intent(parse_envelope(signed(payload)))
    assert intent.t_signal_ms == payload["t_signal"]
    assert intent.stop_loss is None and intent.take_profits == ()
    assert intent.status == "FAILED"  # read; the core refuses it as not executable


def test_an_unsigned_envelope_is_a_signature_failure() -> None:
    doc = json.loads(signed(intent_payload()))
    del doc["sig"], doc["nonce"]  # unsigned: no signature, no nonce
    with pytest.raises(WireError) as caught:
        parse_envelope(json.dumps(doc).encode())
    assert caught.value.code == "signature"
    assert caught.value.message.startswith("hmac_signature_mismatch")
