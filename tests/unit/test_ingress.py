"""The ingress edge: one message to one typed command; the nonce window is folded state,
so a replay is refused after a restart, a standby's fold or a snapshot without any shell
cache."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.builders import NOW, SECRET, decide_received, genesis, intent_payload, signed
from tests.unit.test_decide import CFG, SUBJECT, market
from titan_exec.core.commands import ControlCommand, ControlRequest, InvalidInput, PlaceOrder
from titan_exec.core.events import IntentDecided, SeenNonce, StateCompacted
from titan_exec.core.model import ControlAction
from titan_exec.core.snapshot import capture, encode_snapshot, restore
from titan_exec.core.state import State, apply, replay
from titan_exec.wire.ingress import IngressConfig, ReceivedCommand, read_command
from titan_exec.wire.signing import Keyring
from titan_exec.wire.subjects import Subjects

INGRESS = IngressConfig(subjects=Subjects("exec"), keyring=Keyring({"default": SECRET}))
SRC = Path(__file__).resolve().parents[2] / "src" / "titan_exec"


def received(data: bytes, subject: str = SUBJECT, seq: int = 1) -> ReceivedCommand:
    return ReceivedCommand(seq=seq, subject=subject, data=data, t_ingress_ms=NOW)


def test_a_signed_intent_is_a_place_order_with_its_verified_nonce() -> None:
    cmd = read_command(received(signed(intent_payload("sig-1"), nonce="ab" * 16)), INGRESS, NOW)
    assert isinstance(cmd, PlaceOrder)
    assert (cmd.venue, cmd.account, cmd.symbol) == ("sim", "main", "BTC/USDT")
    assert cmd.intent.signal_id == "sig-1" and cmd.signal_hint == "sig-1"
    assert cmd.nonce == SeenNonce(key_id="default", nonce="ab" * 16, ts_ms=NOW)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"not json", "invalid_envelope"),
        (signed(intent_payload("sig-1"), secret=b"wrong"), "hmac_signature_mismatch"),
        (signed(intent_payload("sig-1"), ts=NOW - 10_000_000), "stale_timestamp"),
    ],
)
def test_what_does_not_read_is_invalid_input_with_its_reason(data: bytes, code: str) -> None:
    cmd = read_command(received(data), INGRESS, NOW)
    assert isinstance(cmd, InvalidInput) and cmd.kind == "place"
    assert cmd.code == code and cmd.nonce is None


def test_a_schema_error_after_a_good_signature_carries_the_nonce() -> None:
    payload = intent_payload("sig-1")
    del payload["symbol"]
    cmd = read_command(received(signed(payload, nonce="cd" * 16)), INGRESS, NOW)
    assert isinstance(cmd, InvalidInput) and cmd.code == "schema_invalid"
    assert cmd.nonce is not None and cmd.nonce.nonce == "cd" * 16


def test_subjects_are_read_once_into_kind_and_worker() -> None:
    s = Subjects("exec")
    place = s.command(SUBJECT)
    assert (place.kind, place.key, place.place) == (
        "place",
        "place.sim.BTC_USDT",
        s.parse_place(SUBJECT),
    )
    bad = s.command("titan.cmd.exec.place.v1.sim.main.BTC_USDT.extra")
    assert bad.kind == "place" and bad.place is None and "does not match" in bad.error
    assert s.command("titan.cmd.exec.control.v1.halt").action == "halt"
    assert s.command("titan.cmd.sys.halt.v1").kind == "control"
    assert s.command("titan.cmd.sys.halt.v1").action is None
    assert s.command("titan.cmd.exec.nothing").kind == "other"
    other = read_command(received(b"{}", "titan.cmd.exec.nothing"), INGRESS, NOW)
    assert isinstance(other, InvalidInput) and other.code == "unknown_command"


def test_controls_are_read_into_a_request_and_their_signatures() -> None:
    data = signed({"action": "halt"}, type_="titan.cmd.exec.control.v1")
    cmd = read_command(received(data, "titan.cmd.exec.control.v1.halt"), INGRESS, NOW)
    assert isinstance(cmd, ControlCommand)
    assert cmd.request == ControlRequest(ControlAction.HALT, "control.v1.halt")
    assert isinstance(cmd.body.envelope, SeenNonce) and cmd.body.inner is None
    upstream = read_command(received(b'{"state": "OPEN"}', "titan.cmd.sys.halt.v1"), INGRESS, NOW)
    assert isinstance(upstream, ControlCommand)
    assert upstream.request == ControlRequest(ControlAction.OPEN, "sys.halt")
    assert upstream.body.envelope is None
    raw = "titan.cmd.exec.control.v1.h\udcffalt"
    invalid = read_command(received(b"{}", raw), INGRESS, NOW)
    assert isinstance(invalid, InvalidInput) and invalid.code == "invalid_subject"


def _placed(state: State, data: bytes, seq: int, now: int = NOW) -> IntentDecided:
    d = decide_received(state, received(data, seq=seq), CFG, market(now))
    for ev in d.events:
        apply(state, ev)
    first = d.events[0]
    assert isinstance(first, IntentDecided)
    return first


def test_a_replay_is_refused_from_the_folded_state_alone() -> None:
    """No cache outside the state: a fresh fold of the stream (a restart, a standby) and a
    restored snapshot both refuse the replay."""
    active = replay([genesis(armed=True)])
    events = [genesis(armed=True)]
    first = _placed(active, signed(intent_payload("sig-1"), nonce="ef" * 16), 1)
    assert first.outcome == "accepted" and first.nonce is not None
    events.append(first)
    again = signed(intent_payload("sig-2"), nonce="ef" * 16)
    for state in (
        replay(events),
        restore(
            encode_snapshot(
                capture(active),
                nonces=active.nonces.entries(300_000),
                ns="exec",
                shard="main",
                watermark_seq=3,
            )[1]
        ).state,
    ):
        assert _placed(state, again, 2).reason.startswith("nonce_replayed")
    # once the window has passed, the nonce is fresh again
    later = signed(intent_payload("sig-2"), nonce="ef" * 16, ts=NOW + 700_000)
    decided = _placed(replay(events), later, 2, now=NOW + 700_000)
    assert not decided.reason.startswith("nonce_replayed") and decided.nonce is not None


def test_compaction_drops_the_nonces_decided_before_its_horizon() -> None:
    state = replay([genesis(armed=True)])
    _placed(state, signed(intent_payload("sig-1"), nonce="aa" * 16), 1)
    state.nonces.restore([("default", "old", NOW - 1)])
    assert len(state.nonces) == 2
    apply(
        state, StateCompacted(ts_ms=NOW + 1, cmd_floor=0, orders_before_ms=NOW, fills_before_ms=0)
    )
    assert len(state.nonces) == 1
    apply(
        state,
        StateCompacted(ts_ms=NOW + 2, cmd_floor=0, orders_before_ms=NOW + 1, fills_before_ms=0),
    )
    assert len(state.nonces) == 0


@pytest.mark.parametrize("module", ["core/decide.py", "core/controls.py"])
def test_the_core_decides_without_the_wire(module: str) -> None:
    """The decisions import nothing from `wire` but the canonical codec."""
    tree = ast.parse((SRC / module).read_text())
    wire = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and ".wire" in node.module
    }
    assert wire <= {"titan_exec.wire.canonical"}
