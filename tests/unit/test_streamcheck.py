"""The demo's final checks (`titan_exec_lab/demo/streamcheck.py`, the PASS/FAIL view of
`titan_exec_lab.verify`) over hand-made stream contents: a clean run passes every check, and
each broken invariant fails its own check with a sentence naming what was found."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from titan_exec_lab.demo.streamcheck import (
    Check,
    RawMsg,
    instance_net_positions,
    pair_checks,
    single_checks,
    venue_net_positions,
)
from titan_exec_lab.verify.facts import EXPECTED_SEQ, EXPECTED_SUBJECT

EPOCH = "titan.evt.exec.epoch.v1.main"


class Stream:
    """Builds `TITAN_EVT` as the active writes it: epoch markers, fenced events."""

    def __init__(self) -> None:
        self.msgs: list[RawMsg] = []
        self.epoch = 0

    def _add(self, subject: str, doc: Any, headers: dict[str, str]) -> RawMsg:
        msg = RawMsg(len(self.msgs) + 1, subject, headers, json.dumps(doc).encode())
        self.msgs.append(msg)
        return msg

    def new_epoch(self) -> None:
        self.epoch = self._add(EPOCH, {}, {}).seq

    def event(self, kind: str, payload: dict[str, Any], *, epoch: int | None = None) -> None:
        subject = f"titan.evt.exec.{kind}.v1.sim.main.BTC_USDT"
        fence = {EXPECTED_SUBJECT: EPOCH, EXPECTED_SEQ: str(self.epoch if epoch is None else epoch)}
        self._add(subject, {"payload": payload}, fence)

    def decided(self, cmd_seq: int, **kw: Any) -> None:
        self.event("decision", {"cmdSeq": cmd_seq}, **kw)


def commands(*seqs: int) -> list[RawMsg]:
    return [RawMsg(s, "titan.cmd.exec.place.v1.sim.main.BTC_USDT", {}, b"{}") for s in seqs]


def status(name: str, seq: int = 9, digest: str = "abc", **net: str) -> dict[str, Any]:
    return {
        "instance_id": name,
        "event_seq": seq,
        "state_hash": digest,
        "net_positions": {f"sim:{k.replace('_', '/')}": v for k, v in net.items()},
    }


def venue(*trades: tuple[str, str, str], coids: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
    return {
        "orders": [{"clientOrderId": c} for c in coids],
        "trades": [{"symbol": s, "side": side, "qty": q} for s, side, q in trades],
    }


def clean_stream() -> Stream:
    st = Stream()
    st.new_epoch()
    st.decided(1)
    fill = {"event": "order.filled", "symbol": "BTC/USDT", "side": "BUY", "qty": "0.2"}
    st.event("fill", {**fill, "venue": "sim", "executionId": "t1"})
    st.new_epoch()  # failover: the backup's epoch
    st.decided(2)
    return st


def failed(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.ok}


BOTH_LONG = {
    "primary": status("primary", BTC_USDT="0.2"),
    "backup": status("backup", BTC_USDT="0.2"),
}
VENUE_LONG = venue(("BTCUSDT", "BUY", "0.3"), ("BTCUSDT", "SELL", "0.1"))


def test_a_clean_failover_passes_every_check() -> None:
    checks = pair_checks(BOTH_LONG, VENUE_LONG, commands(1, 2), clean_stream().msgs)
    assert failed(checks) == {}
    assert [c.verdict for c in checks] == ["EQUAL", "EQUAL", "PASS", "PASS", "PASS"]


def test_a_command_decided_twice_or_never_fails() -> None:
    st = clean_stream()
    st.decided(2)
    checks = pair_checks(BOTH_LONG, VENUE_LONG, commands(1, 2, 3), st.msgs)
    detail = failed(checks)["every command decided exactly once"]
    assert detail.startswith("3 commands in TITAN_CMD, 3 decisions")
    assert "command 2 (" in detail and "decided 2 times" in detail
    assert "command 3 (" in detail and "has no decision" in detail


def test_a_client_order_id_placed_twice_fails() -> None:
    inspect = {**VENUE_LONG, "orders": [{"clientOrderId": "a"}, {"clientOrderId": "a"}]}
    checks = pair_checks(BOTH_LONG, inspect, commands(1, 2), clean_stream().msgs)
    assert "more than once: ['a']" in failed(checks)["no client order id twice at the venue"]


def test_instances_at_different_hashes_or_positions_fail() -> None:
    statuses = {
        "primary": status("primary", digest="abc"),
        "backup": status("backup", digest="abd"),
    }
    checks = pair_checks(statuses, VENUE_LONG, commands(1, 2), clean_stream().msgs)
    assert set(failed(checks)) == {
        "state hashes of the instances at the same stream position",
        "net positions of every instance vs the venue's trades",
    }
    assert [c.verdict for c in checks[:2]] == ["DIFFERENT", "DIFFERENT"]
    assert "different state hashes: backup abd, primary abc" in failed(checks)[checks[0].name]
    assert "instance backup net positions flat" in failed(checks)[checks[1].name]


def test_instances_at_different_stream_positions_or_deciding_fail() -> None:
    """The demo checks a settled run: both instances at one position, nothing in flight."""
    apart = {**BOTH_LONG, "backup": status("backup", seq=8, BTC_USDT="0.2")}
    checks = pair_checks(apart, VENUE_LONG, commands(1, 2), clean_stream().msgs)
    assert "backup at event_seq 8, primary at event_seq 9" in failed(checks)[checks[0].name]
    deciding = {**BOTH_LONG, "primary": {**BOTH_LONG["primary"], "events_unacked": 2}}
    checks = pair_checks(deciding, VENUE_LONG, commands(1, 2), clean_stream().msgs)
    assert "(2 events in flight)" in failed(checks)[checks[0].name]


def test_an_instance_that_does_not_answer_fails() -> None:
    checks = pair_checks(
        {**BOTH_LONG, "primary": None}, VENUE_LONG, commands(1, 2), clean_stream().msgs
    )
    assert "instance primary did not answer /status" in failed(checks)[checks[0].name]


def test_an_event_of_a_deposed_epoch_or_unfenced_fails() -> None:
    st = clean_stream()
    st.event("fill", {"qty": "0.1"}, epoch=1)  # the old active, after the new marker
    st._add("titan.evt.exec.order.v1.sim.main.BTC_USDT", {"payload": {}}, {})
    checks = pair_checks(BOTH_LONG, VENUE_LONG, commands(1, 2), st.msgs)
    detail = failed(checks)["every state event fenced by the epoch current when it landed"]
    assert detail.startswith("2 epoch markers (stream seq 1, 4); 2 problems")
    assert "written under epoch 1 while the newest marker was 4" in detail


def test_the_stream_against_the_venue_is_checked_too() -> None:
    """What the old view did not read: the fill events net 0.2, the venue's trades 0.3."""
    inspect = venue(("BTCUSDT", "BUY", "0.3"))
    statuses = {n: status(n, BTC_USDT="0.3") for n in ("primary", "backup")}
    checks = pair_checks(statuses, inspect, commands(1, 2), clean_stream().msgs)
    assert set(failed(checks)) == {"net positions of every instance vs the venue's trades"}
    assert "the fill events net +0.2, the venue's trades +0.3" in failed(checks)[checks[1].name]


def test_a_run_with_nothing_to_judge_passes_nothing() -> None:
    checks = pair_checks({}, venue(coids=()), [], [])
    assert set(failed(checks)) == {
        "state hashes of the instances at the same stream position",
        "net positions of every instance vs the venue's trades",
        "every command decided exactly once",
        "every state event fenced by the epoch current when it landed",
    }


def test_one_instance_without_the_venue_has_the_streams_checks_only() -> None:
    checks = single_checks(commands(1, 2), clean_stream().msgs)
    assert [(c.name, c.verdict) for c in checks] == [
        ("every command decided exactly once", "PASS"),
        ("every state event fenced by the epoch current when it landed", "PASS"),
    ]
    with_venue = single_checks(
        commands(1, 2), clean_stream().msgs, VENUE_LONG, BOTH_LONG["primary"]
    )
    assert failed(with_venue) == {} and len(with_venue) == 5


def test_positions_are_netted_and_keyed_alike() -> None:
    assert venue_net_positions(VENUE_LONG) == {"BTCUSDT": Decimal("0.2")}
    flat = venue(("ETHUSDT", "SELL", "2"), ("ETHUSDT", "BUY", "2"))
    assert venue_net_positions(flat) == {}
    assert instance_net_positions(status("x", BTC_USDT="0.20", ETH_USDT="0")) == {
        "BTCUSDT": Decimal("0.2")
    }
