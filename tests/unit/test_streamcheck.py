"""The demo's final checks (`titan_exec_lab/demo/streamcheck.py`) over hand-made stream
contents: a clean run passes every check, and each broken invariant fails its own check with a
sentence naming what was found."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from titan_exec_lab.demo.streamcheck import (
    EXPECTED_SEQ,
    EXPECTED_SUBJECT,
    Check,
    RawMsg,
    instance_net_positions,
    pair_checks,
    venue_net_positions,
)

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
    st.event("fill", {"qty": "0.2"})
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
    assert "more than once: [2]" in detail and "undecided: [3]" in detail


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


def test_an_instance_that_does_not_answer_fails() -> None:
    checks = pair_checks(
        {**BOTH_LONG, "primary": None}, VENUE_LONG, commands(1, 2), clean_stream().msgs
    )
    assert "no /status from ['primary']" in failed(checks)[checks[0].name]


def test_an_event_of_a_deposed_epoch_or_unfenced_fails() -> None:
    st = clean_stream()
    st.event("fill", {"qty": "0.1"}, epoch=1)  # the old active, after the new marker
    st._add("titan.evt.exec.order.v1.sim.main.BTC_USDT", {"payload": {}}, {})
    checks = pair_checks(BOTH_LONG, VENUE_LONG, commands(1, 2), st.msgs)
    detail = failed(checks)["every state event fenced by the epoch current when it landed"]
    assert (
        "2 problems" in detail and "written under epoch 1 while the newest marker was 4" in detail
    )


def test_positions_are_netted_and_keyed_alike() -> None:
    assert venue_net_positions(VENUE_LONG) == {"BTCUSDT": Decimal("0.2")}
    flat = venue(("ETHUSDT", "SELL", "2"), ("ETHUSDT", "BUY", "2"))
    assert venue_net_positions(flat) == {}
    assert instance_net_positions(status("x", BTC_USDT="0.20", ETH_USDT="0")) == {
        "BTCUSDT": Decimal("0.2")
    }
