"""Fuzz (hypothesis, bounded in time) over ingress → decision → event encoding → fold →
dead letter, with lone surrogates (escaped and raw), invalid UTF-8 subjects and
payloads, deep nesting, huge and tiny numbers, NaN/Infinity, duplicate keys and maximum
sizes: no exception escapes, each command gets exactly one decision, its events encode
and fold, a refusal's dead letter and reject telemetry are ASCII-safe JSON that keep
the original, and the state's hash and snapshot can always be computed."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import NOW, control_decision, decide_received, genesis, intent_payload, signed
from tests.unit.test_decide import CFG, market
from titan_exec.core.events import ControlDecided, IntentDecided
from titan_exec.core.snapshot import capture, iter_hashed_lines
from titan_exec.core.state import apply, replay, state_hash
from titan_exec.wire import contract
from titan_exec.wire.envelope import DEFAULT_MAX_BYTES
from titan_exec.wire.ingress import ReceivedCommand

PLACE = "titan.cmd.exec.place.v1.sim.main.BTC_USDT"
CONTROL = "titan.cmd.exec.control.v1.halt"
FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# text with lone surrogates and other awkward code points
awkward_text = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\u2028", "\ufeff", "é", "😀", ".", "*", ">", " "]),
    ),
    max_size=12,
)
odd_numbers = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "1e-400",
        "-0",
        "-0.0",
        "0.1",
        "9007199254740993",
        "1" + "0" * 400,
        "1" + "0" * 5000,
        "NaN",
        "Infinity",
        "-Infinity",
        "1E+2",
        "0.30000000000000004",
    ]
)


def _string(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)  # lone surrogates as \\udxxx, as JS writes them


json_scalars = st.one_of(
    st.just("null"),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    odd_numbers,
    awkward_text.map(_string),
)
json_text = st.recursive(
    json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=5).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(awkward_text, kids), max_size=5).map(
            lambda kv: "{" + ",".join(f"{_string(k)}:{v}" for k, v in kv) + "}"
        ),
        # duplicate keys
        kids.map(lambda v: '{"a":' + v + ',"a":' + v + "}"),
    ),
    max_leaves=20,
)


@st.composite
def envelope_text(draw: st.DrawFn) -> bytes:
    """An envelope whose fields and payload are fuzzed JSON (never signed right)."""
    fields = {
        "type": draw(st.one_of(json_text, st.just('"titan.cmd.exec.place.v1"'))),
        "version": draw(st.one_of(json_text, st.just("1"))),
        "producer": draw(st.one_of(json_text, st.just('"x"'))),
        "ts": draw(st.one_of(json_text, st.just(str(NOW)))),
        "nonce": draw(st.one_of(json_text, st.just('"n' + "0" * 31 + '"'))),
        "sig": draw(st.one_of(json_text, st.just('"' + "0" * 64 + '"'))),
        "correlation_id": draw(json_text),
        "payload": draw(json_text),
    }
    keep = draw(st.lists(st.sampled_from(sorted(fields)), unique=True))
    return ("{" + ",".join(f'"{k}":{fields[k]}' for k in keep) + "}").encode()


@st.composite
def signed_intent(draw: st.DrawFn) -> bytes:
    """A correctly signed intent with fuzzed values in its fields (the signature covers
    them: they reach the schema, routing and risk checks)."""
    payload = intent_payload()
    for field in draw(
        st.lists(
            st.sampled_from(["signal_id", "symbol", "size", "source", "entry_zone", "type"]),
            unique=True,
            max_size=3,
        )
    ):
        payload[field] = draw(
            st.one_of(
                awkward_text,
                st.floats(allow_nan=False, allow_infinity=False),
                st.integers(min_value=-(2**60), max_value=2**60),
                st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=2),
            )
        )
    return signed(payload, correlation_id=draw(awkward_text))


raw_bytes = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"\xed\xb0\x80",  # a raw (CESU) surrogate
            b'{"a":"\\udc00"}',
            b"[" * 40 + b"]" * 40,
            b"[" * 5000 + b"]" * 5000,
            b"x" * DEFAULT_MAX_BYTES,
            b"x" * (DEFAULT_MAX_BYTES + 1),
            b"[" + b"1," * 5000 + b"1]",
        ]
    ),
)
subjects = st.one_of(
    st.just(PLACE),
    st.just(CONTROL),
    st.binary(min_size=1, max_size=6).map(
        lambda b: (PLACE.encode()[:-4] + b).decode("utf-8", "surrogateescape")
    ),
    awkward_text.map(lambda t: PLACE[:-8] + t),
)
commands = st.tuples(
    subjects, st.one_of(envelope_text(), signed_intent(), raw_bytes, json_text.map(str.encode))
)


def _check_one(subject: str, data: bytes, seq: int, state: Any) -> None:
    cmd = ReceivedCommand(seq=seq, subject=subject, data=data, t_ingress_ms=NOW)
    if ".control." in subject:
        decision = control_decision(state, cmd, CFG, NOW)
    else:
        decision = decide_received(state, cmd, CFG, market())
    decided = [e for e in decision.events if isinstance(e, IntentDecided | ControlDecided)]
    assert len(decided) == 1 and decided[0].cmd_seq == seq
    for ev in decision.events:
        _, _, body = contract.encode_event(ev, ns="exec", producer="fuzz")
        assert len(body) < 1_000_000
        apply(state, ev)
    assert (decision.refusal is None) == (decided[0].outcome == "accepted")
    if decision.refusal is not None:
        assert not decision.submit
        r = decision.refusal
        letter = contract.dead_letter(data, reason=r.message, t_ingress_ms=NOW, subject=subject)
        doc = json.loads(letter.decode("utf-8"))
        if doc["payload_encoding"] == "reference":
            assert len(data) > contract.DLQ_INLINE_MAX_BYTES
            assert doc["payload_sha256"] == hashlib.sha256(data).hexdigest()
            assert base64.b64decode(doc["payload_head_b64"]) == data[:1024]
        elif doc["payload_encoding"] == "base64":
            assert base64.b64decode(doc["payload_b64"]) == data
        elif doc["payload_encoding"] == "text":
            assert doc["payload"].encode() == data
        else:
            assert doc["payload_encoding"] == "json"
            assert letter[letter.index(b'"payload":') + 10 : -1] == data
        telemetry = contract.reject_telemetry(
            intent_id=r.intent_id,
            reason=r.code,
            expected_policy_hash=r.expected_policy_hash,
            got_policy_hash=r.got_policy_hash,
            brain_instance_id=r.brain_instance_id,
            timestamp_ms=NOW,
        )
        json.loads(telemetry)
    assert state.is_decided(seq)


@FUZZ
@given(st.lists(commands, min_size=1, max_size=4))
def test_fuzzed_commands_each_get_one_decision_that_encodes(
    batch: list[tuple[str, bytes]],
) -> None:
    state = replay([genesis(armed=True)])
    for seq, (subject, data) in enumerate(batch, start=1):
        _check_one(subject, data, seq, state)
    state_hash(state)
    for line in iter_hashed_lines(capture(state)):
        json.loads(line)  # the snapshot's lines are JSON that encodes
