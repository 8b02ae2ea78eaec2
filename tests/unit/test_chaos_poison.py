"""The poison corpus of the chaos matrix (`chaos/poison.py`): every kind of hostile
message is there, the same for the same seed, and each is hostile in the way it says."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, cast

import pytest

from titan_exec.wire.envelope import DEFAULT_MAX_BYTES
from titan_exec.wire.signing import sign
from titan_exec_lab.chaos.model import RoleSample, RunRecord
from titan_exec_lab.chaos.poison import (
    CESU_LONE,
    KINDS,
    MAX_SIZE_KINDS,
    RawRecord,
    build_corpus,
    max_size_burst,
)
from titan_exec_lab.chaos.runner import _injected_outcomes, _quiet_violations, printable
from titan_exec_lab.chaos.topology import Topology
from titan_exec_lab.chaos.watch import RoleWatch, Transition

SECRET = b"chaos-secret"
NOW = 1_700_000_000_000


def corpus(seed: int = 7, **kw: str) -> list[RawRecord]:
    return build_corpus(seed, secret=SECRET, now_ms=NOW, **kw)


def of(kind: str, records: list[RawRecord] | None = None) -> list[RawRecord]:
    found = [r for r in (records if records is not None else corpus()) if r.kind == kind]
    assert found, f"no record of kind {kind}"
    return found


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_every_kind_is_there_and_nothing_else() -> None:
    kinds = Counter(r.kind for r in corpus())
    assert set(kinds) == set(KINDS)
    assert all(n >= 1 for n in kinds.values())


def test_the_same_seed_builds_the_same_corpus_and_another_seed_another() -> None:
    assert corpus(7) == corpus(7)
    assert corpus(7) != corpus(8)
    assert max_size_burst(3, 6, now_ms=NOW) == max_size_burst(3, 6, now_ms=NOW)
    assert max_size_burst(3, 6, now_ms=NOW) != max_size_burst(4, 6, now_ms=NOW)


def test_the_max_size_record_is_exactly_at_the_limit_and_the_next_one_over() -> None:
    assert DEFAULT_MAX_BYTES == 256 * 1024
    (at,) = of("max-size")
    (over,) = of("over-max-size")
    assert len(at.payload) == DEFAULT_MAX_BYTES and at.headers is None
    assert len(over.payload) == DEFAULT_MAX_BYTES + 1


def test_the_burst_is_garbage_and_envelopes_all_exactly_at_the_limit() -> None:
    burst = max_size_burst(1, 100, now_ms=NOW)
    assert len(burst) == 100
    assert {len(r.payload) for r in burst} == {DEFAULT_MAX_BYTES}
    assert [r.kind for r in burst[:4]] == [*MAX_SIZE_KINDS, *MAX_SIZE_KINDS]
    assert {r.subject for r in burst} == {
        b"titan.cmd.exec.place.v1.sim.main.BTC_USDT",
        b"titan.cmd.exec.place.v1.sim.main.ETH_USDT",
    }
    envelope = json.loads(burst[1].payload)  # well-formed: the one that costs parsing
    assert envelope["sig"] == "0" * 64
    assert envelope["ts"] == NOW
    assert len(envelope["payload"]["numbers"]) > 10_000
    assert not is_utf8(burst[0].payload)


def test_subjects_are_command_subjects_of_the_namespace_and_fit_on_a_protocol_line() -> None:
    records = corpus(ns="execution")
    assert all(r.subject.startswith(b"titan.cmd.execution.") for r in records)
    assert not any(set(r.subject) & set(b" \t\r\n") for r in records)
    bad = of("subject-not-utf8", records)
    assert bad[0].subject == b"titan.cmd.execution.place.v1.sim.main.BTC_\xff\xfe"
    assert not any(is_utf8(r.subject) for r in bad)
    assert all(is_utf8(r.subject) for r in records if r.kind != "subject-not-utf8")


def test_each_kind_is_hostile_the_way_it_says() -> None:
    records = corpus()
    assert all(b"\\ud" in r.payload for r in of("surrogate-escaped", records))
    assert all(is_utf8(r.payload) for r in of("surrogate-escaped", records))
    for r in of("surrogate-raw", records):
        assert CESU_LONE in r.payload and not is_utf8(r.payload)
    assert not any(is_utf8(r.payload) for r in of("invalid-utf8", records))
    nesting = of("deep-nesting", records)
    assert nesting[0].payload == b"[" * 10_000
    assert all(r.payload.count(b"[") + r.payload.count(b'{"a":') >= 5_000 for r in nesting)
    huge = b"".join(r.payload for r in of("huge-number", records))
    assert b'"size":1e400' in huge and b'"size":-1e400' in huge
    assert b'"size":1' + b"0" * 5_000 in huge
    tiny = b"".join(r.payload for r in of("tiny-number", records))
    assert b'"size":1e-400' in tiny
    nan = b"".join(r.payload for r in of("nan-infinity", records))
    for literal in (b'"size":NaN', b'"size":Infinity', b'"size":-Infinity'):
        assert literal in nan
    assert b'"payload":{"size":1000,' in of("duplicate-keys", records)[1].payload
    assert {r.payload for r in of("empty", records)} == {b""}


def test_header_blocks_are_complete_and_hostile() -> None:
    records = corpus()
    for r in of("header-not-ascii", records) + of("header-status-line", records):
        assert r.headers is not None
        assert r.headers.startswith(b"NATS/1.0") and r.headers.endswith(b"\r\n\r\n")
    (odd,) = of("header-not-ascii", records)
    assert odd.headers is not None and not odd.headers.isascii()
    status = {(r.headers or b"").split(b"\r\n")[0] for r in of("header-status-line", records)}
    assert {b"NATS/1.0 408", b"NATS/1.0 100 Idle Heartbeat"} <= status
    assert all(r.headers is None for r in records if not r.kind.startswith("header-"))


def _signature_holds(payload: bytes) -> bool:
    doc = json.loads(payload)
    return bool(doc["sig"] == sign(SECRET, doc["ts"], doc["nonce"], doc["payload"]))


def _has_lone_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


@pytest.mark.parametrize(
    ("kind", "fields", "where"),
    [
        (
            "signed-surrogate-unsigned-field",
            ("correlation_id", "id", "idempotency_key"),
            "envelope",
        ),
        ("signed-surrogate-signed-field", ("signal_id", "symbol", "source"), "payload"),
    ],
)
def test_signed_intents_carry_a_lone_surrogate_and_a_signature_that_holds(
    kind: str, fields: tuple[str, ...], where: str
) -> None:
    records = of(kind)
    hit: set[str] = set()
    for r in records:
        assert r.payload.isascii()  # escaped on the wire, as JSON.stringify writes it
        assert _signature_holds(r.payload), r
        doc = json.loads(r.payload)
        holder = doc if where == "envelope" else doc["payload"]
        hit |= {f for f in fields if _has_lone_surrogate(str(holder.get(f, "")))}
        if where == "payload":  # one hostile field at a time: the envelope's are plain
            assert not _has_lone_surrogate(doc.get("correlation_id", ""))
    assert hit == set(fields)


def test_signed_intents_elsewhere_are_valid_and_fresh() -> None:
    """The intents that ride on a hostile subject or header block are themselves valid: a
    receiver that drops the message instead of deciding it is seen by a missing outcome."""
    records = of("subject-not-utf8") + of("header-status-line") + of("header-not-ascii")
    for r in records:
        assert _signature_holds(r.payload)
        doc = json.loads(r.payload)
        assert doc["ts"] == NOW and doc["payload"]["t_signal"] == NOW
    sids = [json.loads(r.payload)["payload"]["signal_id"] for r in records]
    assert len(set(sids)) == len(sids)


# --- what the runner makes of a poison run -------------------------------------------


def test_wire_text_in_a_violation_is_printed_escaped() -> None:
    line = "command 3 (titan.cmd.exec.place.v1.sim.main.BTC_\udcff\udcfe, signal:x\udc00)"
    shown = printable(line)
    assert shown == "command 3 (titan.cmd.exec.place.v1.sim.main.BTC_\\xff\\xfe, signal:x\\udc00)"
    assert shown.encode("utf-8")
    assert printable("plain ascii, café") == "plain ascii, café"


def test_the_injected_commands_line_names_each_kind_without_one_decision() -> None:
    injected = {10: "empty", 11: "deep-nesting", 12: "subject-not-utf8", 13: "subject-not-utf8"}
    decided = {10: [100], 11: [101, 105]}
    assert _injected_outcomes(injected, decided) == (
        "4 injected commands: 1 decided once; no decision: subject-not-utf8 (cmd 12, 13); "
        "decided 2 times: deep-nesting (cmd 11)"
    )
    assert _injected_outcomes({10: "empty"}, decided) == "1 injected commands: 1 decided once"


def _record(**kw: Any) -> RunRecord:
    fields: dict[str, Any] = {"leader_before": "primary", "leader_after": "primary"}
    fields.update(kw)
    return RunRecord("poison-burst", 1, 1000.0, 2000, **fields)


def _watch(polled: list[tuple[float, str, str]], transitions: list[Transition]) -> RoleWatch:
    return RoleWatch(cast(Topology, None), polled=polled, transitions=transitions)


NORMAL = (("primary", "active"), ("backup", "standby"))


def test_a_quiet_run_is_clean_when_nothing_moved() -> None:
    polled = [(1000.0 + t / 10, n, r) for t in range(50) for n, r in NORMAL]
    record = _record()
    assert _quiet_violations(record, _watch(polled, []), {"epoch": 7}, {"epoch": 7}) == []
    assert record.notes == []


def test_a_quiet_run_names_the_fencing_its_reason_and_the_takeover() -> None:
    fenced = Transition(1003.0, "primary", "active", "fenced", "event loop stalled 842 ms")
    polled = [(1001.0, "primary", "active"), (1002.0, "primary", "down")]
    polled += [(1003.5, "primary", "down"), (1004.0, "backup", "active")]
    record = _record(leader_after="backup", fencings=1)
    record.roles = [RoleSample(4.0, "backup", "active")]
    found = _quiet_violations(record, _watch(polled, [fenced]), {"epoch": 7}, {"epoch": 9})
    assert found == [
        "quiet: 1 fencing(s) where none may happen: primary active → fenced at t = 3.0 s "
        "(event loop stalled 842 ms)",
        "quiet: the lead moved: primary (epoch 7) → backup (epoch 9)",
        "quiet: backup was active or promoting at t = 4 s",
    ]
    assert record.notes == ["primary's /status unanswered for up to 2.0 s"]
