"""Hostile input through the decision, the event encoder and the dead letter: each case
ends in exactly one decision whose events encode, and a dead letter that is valid JSON
keeping the original. The hypothesis fuzz over the same path is test_fuzz_ingress.py."""

from __future__ import annotations

import base64
import hashlib
import json
from decimal import Decimal

import pytest

from tests.builders import INGRESS, NOW, decide_received, intent_payload, signed
from tests.unit.test_decide import CFG, Harness, market
from titan_exec.core.events import IntentDecided
from titan_exec.wire import contract
from titan_exec.wire.ingress import ReceivedCommand
from titan_exec.wire.text import js_view, printable_subject

SUBJECT = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"
RAW_SUBJECT = b"titan.cmd.exec.place.v1.sim.main.BTC_\xff\xfe".decode("utf-8", "surrogateescape")


def encodes(decision_events: tuple[object, ...]) -> None:
    for ev in decision_events:
        contract.encode_event(ev, ns="exec", producer="t")  # type: ignore[arg-type]


def test_a_subject_that_is_not_utf8_is_refused_by_its_bytes() -> None:
    h = Harness()
    d = h.place(signed(intent_payload()), subject=RAW_SUBJECT)
    assert d.refusal is not None and d.refusal.code == "invalid_subject"
    assert "BTC_\\xff\\xfe" in d.refusal.message
    assert not d.submit
    encodes(d.events)
    letter = json.loads(
        contract.dead_letter(b"{}", reason=d.refusal.message, t_ingress_ms=1, subject=RAW_SUBJECT)
    )
    assert letter["subject"] == "titan.cmd.exec.place.v1.sim.main.BTC_\\xff\\xfe"
    assert base64.b64decode(letter["subject_b64"]).endswith(b"BTC_\xff\xfe")


def test_a_signed_intent_with_a_lone_surrogate_in_an_unsigned_field_encodes() -> None:
    # the case: it was folded, could not be encoded, and stopped both instances
    h = Harness()
    d = h.place(signed(intent_payload(), correlation_id="\udc00"))
    assert d.is_accepted
    encodes(d.events)
    accepted = d.events[1]
    assert getattr(accepted, "correlation_id", None) == "\\udc00"


@pytest.mark.parametrize("field", ["signal_id", "source", "schema_version"])
def test_a_lone_surrogate_in_a_signed_field_is_data_that_encodes(field: str) -> None:
    h = Harness()
    payload = intent_payload(**{} if field == "signal_id" else {field: "x\ud800"})
    if field == "signal_id":
        payload["signal_id"] = "sig-\udc00"
    d = h.place(signed(payload))
    assert d.is_accepted, d.refusal
    encodes(d.events)
    # not refused as a replay when seen once: the nonce is recorded with the decision
    decided = d.events[0]
    assert isinstance(decided, IntentDecided) and decided.nonce is not None


def test_a_signature_that_is_not_hex_is_a_signature_mismatch() -> None:
    data = signed(intent_payload())
    env = json.loads(data)
    env["sig"] = "z" * 10
    d = Harness().place(json.dumps(env).encode())
    assert d.refusal is not None and d.refusal.code == "hmac_signature_mismatch"


def test_a_size_that_is_zero_as_a_double_is_refused() -> None:
    data = signed(intent_payload(size=0.0))  # what JavaScript holds for 1e-400, signed
    assert b'"size":0,' in data
    data = data.replace(b'"size":0,', b'"size":1e-400,')
    d = Harness().place(data)
    # the signature covers the double 0 (what JavaScript signed): verified, then refused
    assert d.refusal is not None and d.refusal.code == "risk_rejection"
    assert "size must be > 0, got 0" in d.refusal.message


def test_control_reason_with_a_lone_surrogate_encodes() -> None:
    h = Harness()
    d = h.control("disarm", {"reason": "why\udc00"})
    assert d.is_accepted
    encodes(d.events)
    assert getattr(d.events[0], "reason", None) == "why\\udc00"


def test_a_policy_with_text_that_is_not_well_formed_is_refused() -> None:
    from tests.builders import default_policy

    policy = default_policy()
    policy["note"] = "\udc00"
    d = Harness().control("policy", {"policy": policy})
    assert d.refusal is not None and d.refusal.code == "schema_invalid"
    encodes(d.events)


@pytest.mark.parametrize(
    "original",
    [
        b'{"a":"\\udc00"}',  # a lone surrogate escape: kept byte for byte
        b'{"a":1,"a":2}',  # duplicate keys: as text, both kept
        b'{"a":NaN}',  # not JSON: as text
        b"[" * 5000 + b"]" * 5000,  # deep: as text
        b"\xed\xb0\x80",  # a raw (CESU) surrogate: not UTF-8, as base64
        b"",
        b"x" * 256 * 1024,
    ],
)
def test_every_dead_letter_is_json_and_keeps_the_original(original: bytes) -> None:
    body = contract.dead_letter(original, reason="r\udc00", t_ingress_ms=7, subject=RAW_SUBJECT)
    body.decode("utf-8")  # always UTF-8: escapes, never raw surrogates
    doc = json.loads(body)
    assert doc["reason"] == "r\\udc00"
    if doc["payload_encoding"] == "reference":
        assert len(original) > contract.DLQ_INLINE_MAX_BYTES
        assert doc["payload_bytes"] == len(original)
        assert doc["payload_sha256"] == hashlib.sha256(original).hexdigest()
    elif doc["payload_encoding"] == "base64":
        assert base64.b64decode(doc["payload_b64"]) == original
    elif doc["payload_encoding"] == "text":
        assert doc["payload"].encode() == original
    else:
        assert doc["payload_encoding"] == "json"
        start = body.index(b'"payload":') + len(b'"payload":')
        assert body[start:-1] == original


def test_js_view_and_printable_subject_always_encode() -> None:
    assert js_view("a\udc00b\ud83d") == "a\\udc00b\\ud83d"
    assert js_view("é😀") == "é😀"
    assert printable_subject(RAW_SUBJECT).encode("ascii")


def test_a_maximum_size_garbage_intent_is_refused_cheaply() -> None:
    h = Harness()
    data = b"[" + b"1," * (128 * 1024 - 2) + b"1]"
    cmd = ReceivedCommand(seq=99, subject=SUBJECT, data=data, t_ingress_ms=NOW)
    d = decide_received(h.state, cmd, CFG, market())
    assert d.refusal is not None and d.refusal.code == "invalid_envelope"
    assert "the limit is 512" in d.refusal.message
    assert Decimal(len(data)) <= INGRESS.max_payload_bytes
