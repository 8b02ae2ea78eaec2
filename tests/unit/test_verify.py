"""`titan-exec verify`'s checker (`titan_exec_lab.verify`) over hand-made raw data: a clean
failover run has no violation, and each broken invariant is reported as its own violation
naming the ids involved."""

from __future__ import annotations

import ast
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from titan_exec_lab.verify.facts import (
    EXPECTED_SEQ,
    EXPECTED_SUBJECT,
    WRITER_EPOCH,
    WRITER_INSTANCE,
    stream_net_positions,
    stream_orders,
)
from titan_exec_lab.verify.invariants import (
    Problem,
    Report,
    check,
    coid_counts,
    decision_counts,
    decisions_per_command,
)
from titan_exec_lab.verify.read import RawMsg

EPOCH = "titan.evt.exec.epoch.v1.main"
BTC = "sim.main.BTC_USDT"


class Run:
    """A run as the pair writes it: `TITAN_CMD`, `TITAN_EVT` (epoch markers, fenced events
    in the wire shape), the venue's record and the instances' `/status`."""

    def __init__(self) -> None:
        self.commands: list[RawMsg] = []
        self.events: list[RawMsg] = []
        self.orders: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []
        self.epoch = 0
        self.leader = ""
        self._next_order = 4_000_000_001
        self._next_trade = 900_000_001

    # --- streams --------------------------------------------------------------------------

    def command(self, signal_id: str | None = None) -> int:
        payload = {"signal_id": signal_id, "symbol": "BTC/USDT"} if signal_id else {}
        subject = f"titan.cmd.exec.place.v1.{BTC}" if signal_id else "titan.cmd.exec.control.v1"
        msg = RawMsg(len(self.commands) + 1, subject, {}, json.dumps({"payload": payload}).encode())
        self.commands.append(msg)
        return msg.seq

    def raw_event(self, subject: str, doc: Any, headers: dict[str, str]) -> int:
        msg = RawMsg(len(self.events) + 1, subject, headers, json.dumps(doc).encode())
        self.events.append(msg)
        return msg.seq

    def new_epoch(self, instance: str) -> int:
        self.epoch = self.raw_event(EPOCH, {"instance_id": instance}, {})
        self.leader = instance
        return self.epoch

    def fence(self, epoch: int | None = None) -> dict[str, str]:
        return {EXPECTED_SUBJECT: EPOCH, EXPECTED_SEQ: str(self.epoch if epoch is None else epoch)}

    def event(
        self, kind: str, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> int:
        subject = f"titan.evt.exec.{kind}.v1" + ("" if kind == "control" else f".{BTC}")
        return self.raw_event(
            subject, {"payload": payload}, self.fence() if headers is None else headers
        )

    def decided(self, cmd_seq: int, **kw: Any) -> int:
        return self.event("decision", {"event": "intent.decided", "cmdSeq": cmd_seq}, **kw)

    def order_event(self, coid: str, what: str) -> int:
        payload = {"event": f"order.{what}", "clientOrderId": coid, "symbol": "BTC/USDT"}
        return self.event("order", payload)

    def fill(self, coid: str, side: str, qty: str, status: str, *, at_venue: bool = True) -> int:
        trade_id = str(self._next_trade)
        self._next_trade += 1
        if at_venue:
            order = next(o for o in self.orders if o["clientOrderId"] == coid)
            order["status"] = status
            self.trades.append(
                {
                    "id": int(trade_id),
                    "orderId": order["orderId"],
                    "symbol": "BTCUSDT",
                    "side": side,
                    "qty": qty,
                }
            )
        payload = {
            "event": "order.filled",
            "clientOrderId": coid,
            "symbol": "BTC/USDT",
            "side": side,
            "qty": qty,
            "status": status,
            "executionId": trade_id,
            "venue": "sim",
        }
        return self.event("fill", payload)

    # --- the venue ------------------------------------------------------------------------

    def venue_order(self, coid: str, status: str = "NEW") -> int:
        order_id = self._next_order
        self._next_order += 1
        self.orders.append({"orderId": order_id, "clientOrderId": coid, "status": status})
        return order_id

    def place(self, signal_id: str, coid: str, side: str, qty: str) -> int:
        """A place command decided, its order sent and filled in full."""
        seq = self.command(signal_id)
        self.decided(seq)
        self.order_event(coid, "accepted")
        self.order_event(coid, "submitted")
        self.venue_order(coid)
        self.order_event(coid, "acknowledged")
        self.fill(coid, side, qty, "FILLED")
        return seq

    @property
    def inspect(self) -> dict[str, Any]:
        return {"orders": self.orders, "trades": self.trades, "rejected": [], "faults": []}

    def status(self, name: str, **over: Any) -> dict[str, Any]:
        doc = {
            "instance_id": name,
            "event_seq": self.events[-1].seq,
            "state_hash": "abc123",
            "net_positions": {"sim:BTC/USDT": "0.2"},
            "open_orders": 0,
        }
        return {**doc, **over}

    def check(self, statuses: dict[str, Any] | None = None, **kw: Any) -> Report:
        if statuses is None:
            statuses = {"primary": self.status("primary"), "backup": self.status("backup")}
        return check(self.commands, self.events, self.inspect, statuses, **kw)


def failover_run() -> Run:
    """arm → open 0.3 → failover (primary → backup) → reduce 0.1: net long 0.2."""
    run = Run()
    run.new_epoch("primary")
    run.event("genesis", {"event": "genesis"})
    arm = run.command()
    run.event("control", {"event": "control.decided", "cmdSeq": arm})
    run.place("s-open", "tx-open", "BUY", "0.3")
    run.new_epoch("backup")
    run.place("s-reduce", "tx-reduce", "SELL", "0.1")
    return run


def only(report: Report) -> Any:
    assert len(report.violations) == 1, report.lines()
    return report.violations[0]


# --- a clean run ---------------------------------------------------------------------------


def test_a_clean_failover_run_has_no_violation() -> None:
    run = failover_run()
    report = run.check()
    assert report.ok, report.lines()
    assert report.lines() == [report.summary()]
    c = report.counts
    assert (c.commands, c.decisions, c.epoch_markers, c.fills) == (3, 3, (1, 9), 2)
    assert (c.venue_orders, c.venue_trades, c.venue_open_orders, c.instances) == (2, 2, 0, 2)
    assert report.summary().endswith("OK: no violation")
    assert stream_net_positions(run.events) == {"BTCUSDT": Decimal("0.2")}
    json.dumps(report.to_json())  # --json


def test_decisions_per_command_names_the_decision_events() -> None:
    run = failover_run()
    again = run.decided(2)
    assert decisions_per_command(run.events) == {1: [3], 2: [4, again], 3: [10]}
    assert decision_counts(run.events)[2] == 2
    assert coid_counts(run.inspect) == {"tx-open": 1, "tx-reduce": 1}


# --- decisions -----------------------------------------------------------------------------


def test_an_undecided_command_is_named_with_its_signal_id() -> None:
    run = failover_run()
    seq = run.command("s-lost")
    v = only(run.check())
    assert (v.invariant, v.problem) == ("decisions", Problem.UNDECIDED)
    assert v.ids == (f"cmd:{seq}", "signal:s-lost")
    assert f"command {seq} (titan.cmd.exec.place.v1.{BTC}, signal:s-lost) has no decision" in (
        v.text
    )
    assert v.may_settle


def test_a_command_decided_twice_names_both_decision_events() -> None:
    run = failover_run()
    again = run.decided(2)
    v = only(run.check())
    assert v.problem is Problem.DECIDED_TWICE
    assert v.ids == ("cmd:2", "signal:s-open", "evt:4", f"evt:{again}")
    assert f"decided 2 times: events 4, {again}" in v.text
    assert not v.may_settle


def test_a_decision_of_an_unknown_command_or_without_cmd_seq() -> None:
    run = failover_run()
    stray = run.decided(99)
    blank = run.event("decision", {"event": "intent.decided"})
    report = run.check()
    assert [(v.problem, v.ids) for v in report.violations] == [
        (Problem.NO_CMD_SEQ, (f"evt:{blank}",)),
        (Problem.UNKNOWN_COMMAND, ("cmd:99", f"evt:{stray}")),
    ]


# --- client order ids ----------------------------------------------------------------------


def test_a_client_order_id_twice_at_the_venue_names_both_venue_orders() -> None:
    run = failover_run()
    twice = run.venue_order("tx-open", status="CANCELED")
    v = only(run.check())
    assert (v.invariant, v.problem) == ("coids", Problem.COID_TWICE)
    assert v.ids == ("coid:tx-open", "order:4000000001", f"order:{twice}")
    assert "client order id tx-open placed 2 times" in v.text


# --- epochs ----------------------------------------------------------------------------------


def test_an_unfenced_event_is_named_with_its_writer_from_the_titan_headers() -> None:
    run = failover_run()
    seq = run.decided(3, headers={WRITER_EPOCH: "1", WRITER_INSTANCE: "primary"})
    report = run.check()
    fencing = [v for v in report.violations if v.invariant == "epochs"]
    assert len(fencing) == 1
    v = fencing[0]
    assert v.problem is Problem.UNFENCED
    assert v.ids == (f"evt:{seq}", "epoch:1", "marker:9", "instance:backup", "instance:primary")
    assert "is not fenced, written by primary under epoch 1" in v.text
    assert "deposed, written under epoch 1 while the newest marker was 9 (of instance backup)" in (
        v.text
    )
    # the same command decided twice: its own violation
    assert {v.problem for v in report.violations} == {Problem.UNFENCED, Problem.DECIDED_TWICE}


def test_an_unfenced_event_without_any_header_is_named() -> None:
    run = failover_run()
    seq = run.event("order", {"event": "order.canceled", "clientOrderId": "tx-x"}, headers={})
    report = run.check()
    v = next(v for v in report.violations if v.invariant == "epochs")
    assert v.ids == (f"evt:{seq}",)
    assert v.text == f"state event {seq} (titan.evt.exec.order.v1.{BTC}) is not fenced"


def test_an_event_of_a_deposed_epoch_names_epoch_marker_and_instances() -> None:
    run = failover_run()
    headers = {**run.fence(epoch=1), WRITER_EPOCH: "1", WRITER_INSTANCE: "primary"}
    seq = run.raw_event("titan.evt.exec.truth.v1", {"meta": {}}, headers)  # any kind
    v = only(run.check())
    assert (v.invariant, v.problem) == ("epochs", Problem.DEPOSED_EPOCH)
    assert v.ids == (f"evt:{seq}", "epoch:1", "marker:9", "instance:backup", "instance:primary")
    assert v.text == (
        f"event {seq} (titan.evt.exec.truth.v1) written under epoch 1 while the newest marker "
        "was 9 (of instance backup), by instance primary: epoch 1 is deposed"
    )


# --- agreement with the venue ------------------------------------------------------------------


def test_a_venue_trade_without_a_fill_event_breaks_the_positions() -> None:
    run = failover_run()
    run.venue_order("tx-ghost", status="FILLED")
    run.trades.append(
        {"id": 900000077, "orderId": 4000000003, "symbol": "BTCUSDT", "side": "BUY", "qty": "0.5"}
    )
    report = run.check()
    position = next(v for v in report.violations if v.problem is Problem.POSITION)
    assert position.ids == ("symbol:BTCUSDT", "trade:900000077")
    assert "the fill events net +0.2, the venue's trades +0.7" in position.text
    assert "venue trades without a fill event: 900000077 (coid tx-ghost)" in position.text
    # the instances say 0.2 too: each differs from the venue
    assert [v.ids for v in report.violations if v.problem is Problem.INSTANCE_POSITION] == [
        ("instance:backup", "symbol:BTCUSDT"),
        ("instance:primary", "symbol:BTCUSDT"),
    ]


def test_a_fill_event_of_no_venue_trade_breaks_the_positions() -> None:
    run = failover_run()
    seq = run.fill("tx-reduce", "SELL", "0.1", "FILLED", at_venue=False)
    v = next(v for v in run.check().violations if v.problem is Problem.POSITION)
    assert v.ids == ("symbol:BTCUSDT", f"evt:{seq}")
    assert "fill events of no venue trade: execution 900000003" in v.text


def test_a_fill_recorded_twice_moves_the_position_once() -> None:
    run = failover_run()
    first = run.events[-1]
    run.raw_event(first.subject, first.doc(), dict(first.headers))
    assert run.check().ok
    assert stream_net_positions(run.events) == {"BTCUSDT": Decimal("0.2")}


def test_open_orders_differ_between_the_stream_and_the_venue() -> None:
    run = failover_run()
    run.order_event("tx-limit", "accepted")
    run.order_event("tx-limit", "submitted")
    limit = run.venue_order("tx-limit", status="FILLED")  # the fill never recorded
    acked = run.order_event("tx-limit", "acknowledged")
    run.order_event("tx-rest", "accepted")
    rest = run.venue_order("tx-rest")  # open at the venue
    canceled = run.order_event("tx-rest", "canceled")
    report = run.check(statuses={})
    assert [(v.problem, v.ids) for v in report.violations] == [
        (Problem.OPEN_IN_STREAM_ONLY, ("coid:tx-limit", f"evt:{acked}", f"order:{limit}")),
        (Problem.OPEN_AT_VENUE_ONLY, ("coid:tx-rest", f"evt:{canceled}", f"order:{rest}")),
    ]
    assert [v.text for v in report.violations] == [
        f"order tx-limit is open in the stream (last: order.acknowledged, evt {acked}), "
        f"FILLED at the venue (order {limit})",
        f"order tx-rest is closed in the stream (order.canceled, evt {canceled}), "
        f"NEW at the venue (order {rest})",
    ]
    assert stream_orders(run.events)["tx-limit"].is_open


def test_an_order_never_sent_or_never_recorded_is_named() -> None:
    run = failover_run()
    accepted = run.order_event("tx-stuck", "accepted")  # recorded, never sent
    ghost = run.venue_order("tx-ghost")  # at the venue, never recorded
    report = run.check(statuses={})
    assert [v.text for v in report.violations] == [
        f"order tx-ghost has no order event in the stream, NEW at the venue (order {ghost})",
        f"order tx-stuck is open in the stream (last: order.accepted, evt {accepted}), "
        "unknown to the venue",
    ]


# --- instances ---------------------------------------------------------------------------------


def test_instances_at_the_same_position_with_different_hashes() -> None:
    run = failover_run()
    statuses = {"primary": run.status("primary"), "backup": run.status("backup", state_hash="f")}
    report = run.check(statuses)
    v = only(report)
    assert (v.invariant, v.problem, v.ids) == (
        "instances",
        Problem.HASH_MISMATCH,
        ("instance:backup", "instance:primary"),
    )
    assert report.has_hash_mismatch and not report.unsettled()


def test_an_instance_with_events_in_flight_is_not_compared_by_hash() -> None:
    run = failover_run()
    ahead = run.status("backup", state_hash="ahead", events_unacked=1)
    assert run.check({"primary": run.status("primary"), "backup": ahead}).ok
    settled = run.status("backup", state_hash="ahead", events_unacked=0)
    assert not run.check({"primary": run.status("primary"), "backup": settled}).ok


def test_a_standby_that_drifted_at_a_checkpoint_is_a_violation() -> None:
    run = failover_run()
    clean = {"alarm": False, "mismatched": 0, "last": None}
    drifted = {
        "alarm": False,
        "mismatched": 1,
        "last": {
            "watermark_seq": 9,
            "differences": [{"section": "position", "key": "sim:BTC/USDT", "field": "qty"}],
        },
    }
    statuses = {"primary": run.status("primary", drift=clean), "backup": run.status("backup")}
    assert run.check(statuses).ok
    statuses["backup"] = run.status("backup", drift=drifted)
    v = only(run.check(statuses))
    assert (v.problem, v.ids) == (Problem.DRIFT_ALARM, ("instance:backup",))
    assert "seq 9: position sim:BTC/USDT qty" in v.text


def test_instances_at_different_positions_are_not_compared_by_hash() -> None:
    run = failover_run()
    behind = run.status("backup", event_seq=3, state_hash="older")
    assert run.check({"primary": run.status("primary"), "backup": behind}).ok


def test_a_silent_instance_and_wrong_open_orders_are_violations() -> None:
    run = failover_run()
    statuses = {"primary": None, "backup": run.status("backup", open_orders=1)}
    report = run.check(statuses)
    assert [(v.problem, v.ids) for v in report.violations] == [
        (Problem.SILENT_INSTANCE, ("instance:primary",)),
        (Problem.INSTANCE_OPEN_ORDERS, ("instance:backup",)),
    ]
    assert report.unsettled() == list(report.violations)
    assert report.lines()[-1].endswith("FAIL: 2 violations (instances 2)")
    assert report.lines()[0] == "VIOLATION instances: instance primary did not answer /status"


def test_without_venue_or_instances_only_the_streams_are_checked() -> None:
    run = failover_run()
    run.venue_order("tx-open")  # would be a violation if the venue were read
    report = check(run.commands, run.events)
    assert report.ok and report.counts.venue_orders is None


# --- independence ------------------------------------------------------------------------------

VERIFY = Path(__file__).resolve().parents[2] / "src" / "titan_exec_lab" / "verify"


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("path", sorted(VERIFY.glob("*.py")), ids=lambda p: p.name)
def test_the_checker_imports_no_service_code(path: Path) -> None:
    allowed_roots = set(sys.stdlib_module_names) | {"nats", "__future__"}
    foreign = {
        m
        for m in imports(path)
        if not m.startswith("titan_exec_lab.verify") and m.split(".")[0] not in allowed_roots
    }
    assert not foreign, f"{path.name} imports {foreign}"
    if path.name != "read.py" and path.name != "__init__.py":  # the checks themselves: pure
        io = {m for m in imports(path) if m.split(".")[0] in {"nats", "asyncio", "urllib"}}
        assert not io, f"{path.name} is not pure: {io}"


def test_a_position_correction_sets_the_stream_net_and_agrees_with_the_venue() -> None:
    """A trade behind the service's back (a foreign order at the venue), then the service's
    `position.reconciled` event: the stream's net equals the venue's again."""
    run = failover_run()
    foreign = run.venue_order("web-manual-1", status="FILLED")
    run.trades.append(
        {"id": 900_000_500, "orderId": foreign, "symbol": "BTCUSDT", "side": "BUY", "qty": "0.05"}
    )
    assert not run.check().ok  # the venue says 0.25, the stream 0.2
    run.raw_event(
        f"titan.evt.exec.position.v1.{BTC}",
        {
            "payload": {
                "event": "position.reconciled",
                "symbol": "BTC/USDT",
                "venue": "sim",
                "qtyBefore": "0.2",
                "qtyAfter": "0.25",
            }
        },
        run.fence(),
    )
    assert stream_net_positions(run.events) == {"BTCUSDT": Decimal("0.25")}
    status = run.status("primary", net_positions={"sim:BTC/USDT": "0.25"})
    assert run.check({"primary": status}).ok
    # a later fill moves the corrected net on
    run.place("s-more", "tx-more", "BUY", "0.1")
    assert stream_net_positions(run.events) == {"BTCUSDT": Decimal("0.35")}


def test_an_unfenced_position_correction_is_a_violation() -> None:
    run = failover_run()
    seq = run.raw_event(
        f"titan.evt.exec.position.v1.{BTC}",
        {"payload": {"event": "position.reconciled", "symbol": "BTC/USDT", "qtyAfter": "0.2"}},
        {},
    )
    assert any(f"evt:{seq}" in v.ids for v in run.check().violations)


def test_verify_never_prints_a_nats_password_or_token() -> None:
    from titan_exec_lab.verify.read import _redacted

    shown = _redacted("nats://user:PASS@h:4222,nats://s3cr3t@h2:1,nats://h3:2")
    assert "PASS" not in shown and "s3cr3t" not in shown
    assert shown == "nats://user:***@h:4222,nats://***@h2:1,nats://h3:2"


def test_every_risk_state_message_after_the_first_decided_has_one_decision() -> None:
    from titan_exec_lab.verify.invariants import decision_violations
    from titan_exec_lab.verify.read import RawMsg

    def risk(seq: int) -> RawMsg:
        return RawMsg(seq, "titan.evt.risk.state.v1", {}, b'"Defensive"')

    def decided(seq: int, src: int) -> RawMsg:
        doc = {"payload": {"event": "risk_state.decided", "srcSeq": src, "outcome": "accepted"}}
        return RawMsg(seq, "titan.evt.exec.control.v1", {}, json.dumps(doc).encode())

    history_then_decided = [risk(1), risk(2), decided(3, 2), risk(4), decided(5, 4)]
    assert decision_violations([], history_then_decided) == []
    missing = [risk(1), decided(2, 1), risk(3)]
    (v,) = decision_violations([], missing)
    assert "risk state message 3" in v.text and "no decision" in v.text
    twice = [risk(1), decided(2, 1), decided(3, 1)]
    (v,) = decision_violations([], twice)
    assert "decided 2 times" in v.text


def test_instances_at_one_position_must_agree_on_halt_risk_state_and_control_outcomes() -> None:
    from titan_exec_lab.verify.invariants import instance_violations
    from titan_exec_lab.verify.report import Problem

    def status(risk: str, counts: dict[str, int]) -> dict[str, object]:
        return {
            "event_seq": 40,
            "state_hash": "h",
            "is_halted": False,
            "is_armed": True,
            "risk_state": risk,
            "control_outcomes": counts,
        }

    same = {
        "a": status("Cautious", {"halt:accepted:unsigned": 1}),
        "b": status("Cautious", {"halt:accepted:unsigned": 1}),
    }
    assert instance_violations(same, None) == []
    differ = {"a": status("Cautious", {"halt:accepted:unsigned": 1}), "b": status("Normal", {})}
    (v,) = instance_violations(differ, None)
    assert v.problem is Problem.CONTROL_MISMATCH
    assert "risk_state" in v.text and "control_outcomes" in v.text


# --- what the demo, the tests and `titan-exec status` ask for beyond `check` ------------------


def _doc(name: str, role: str = "standby", seq: int = 9, **kw: object) -> dict[str, object]:
    return {"instance_id": name, "role": role, "lease_role": role, "event_seq": seq, **kw}


def test_a_settled_run_has_its_instances_at_one_position_with_nothing_in_flight() -> None:
    from titan_exec_lab.verify.invariants import instance_violations

    apart = {"a": _doc("a", "active", 10, state_hash="h"), "b": _doc("b", seq=9, state_hash="h")}
    assert instance_violations(apart, None) == []  # a standby behind is no fault in itself
    (v,) = instance_violations(apart, None, same_position=True)
    assert (v.problem, v.ids) == (Problem.APART, ("instance:a", "instance:b"))
    assert v.may_settle and "a at event_seq 10, b at event_seq 9" in v.text
    deciding = {"a": _doc("a", "active", 9, events_unacked=1), "b": _doc("b", seq=9)}
    (v,) = instance_violations(deciding, None, same_position=True)
    assert "a at event_seq 9 (1 events in flight)" in v.text
    run = failover_run()
    statuses = {"primary": _doc("primary", "active", 10), "backup": _doc("backup", seq=9)}
    report = check(run.commands, run.events, None, statuses, same_position=True)
    assert [v.problem for v in report.violations] == [Problem.APART]


def test_roles_one_active_and_every_standby_able_to_take_over() -> None:
    from titan_exec_lab.verify.invariants import role_violations

    assert role_violations({"a": _doc("a", "active"), "b": _doc("b")}) == []
    (v,) = role_violations({"a": _doc("a"), "b": _doc("b", "fenced"), "c": None})
    assert (v.invariant, v.problem, v.text) == (
        "roles",
        Problem.NO_ACTIVE,
        "no active instance: trading is stopped",
    )
    (v,) = role_violations({"a": _doc("a", "active"), "b": _doc("b", "active")})
    assert v.problem is Problem.TWO_ACTIVES and v.ids == ("instance:a", "instance:b")
    (v,) = role_violations({"a": _doc("a", "active"), "b": _doc("b", lease_role=None)})
    assert v.problem is Problem.STANDBY_WITHOUT_ELECTION and "never take over" in v.text


def test_status_violations_compare_full_documents_and_leave_drift_history_out() -> None:
    from titan_exec_lab.verify import status_violations

    public = {"view": "public"}
    assert status_violations({"a": _doc("a", "active", **public), "b": _doc("b", **public)}) == []
    full = {"a": _doc("a", "active", state_hash="x"), "b": _doc("b", state_hash="y")}
    assert [v.problem for v in status_violations(full)] == [Problem.HASH_MISMATCH]
    drifted = {"mismatched": 1, "last": {"watermark_seq": 5}}
    cured = {
        "a": _doc("a", "active", state_hash="x"),
        "b": _doc("b", state_hash="x", drift=drifted),
    }
    assert status_violations(cured) == []
    assert [v.problem for v in status_violations({"a": _doc("a", "active"), "b": None})] == [
        Problem.SILENT_INSTANCE
    ]
