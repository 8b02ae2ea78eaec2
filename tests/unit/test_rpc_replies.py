"""The request/reply answers and the published decimals, read the way the brain reads them
(`tests/upstream_readers.py`: `handshake`, `reconcile`, `equity`, `truth_snapshot` restate
the upstream TypeScript with its file and line)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.builders import FIXTURES, filled
from tests.upstream_readers import (
    BRAIN_HASH,
    equity,
    fixture,
    handshake,
    reconcile,
    truth_snapshot,
    wire,
)
from titan_exec.adapters.venue.ccxt_venue import CcxtSettings, CcxtVenue
from titan_exec.core.model import Side
from titan_exec.core.policy import parse_policy
from titan_exec.core.positions import Opening, Position, apply_fill
from titan_exec.core.reports import BalanceReport
from titan_exec.wire import contract, replies
from titan_exec.wire.decimals import plain, rounded
from titan_exec.wire.subjects import Subjects

D = Decimal
LONG_AVG = "49999.09092190070999354551322260707"
BIG = "123456789012345678901234567890.5"


# --- decimals on the published contract -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "exact", "computed"),
    [
        ("0E-7", "0", "0"),
        ("0.0000000", "0", "0"),
        ("-0.000", "0", "0"),
        ("1E+2", "100", "100"),
        ("1.500", "1.5", "1.5"),
        ("-2.50", "-2.5", "-2.5"),
        (LONG_AVG, LONG_AVG, "49999.09092190071"),
        ("5E-324", "0." + "0" * 323 + "5", "0"),
        ("-1E-20", "-0.00000000000000000001", "0"),
        ("0.0000000000005", "0.0000000000005", "0"),  # half-even: to the even 0
        ("0.0000000000015", "0.0000000000015", "0.000000000002"),
        ("9.9999999999999999", "9.9999999999999999", "10"),
        (BIG, BIG, BIG),
    ],
)  # fmt: skip
def test_decimals_are_plain_text_and_computed_ones_have_at_most_12_places(
    value: str, exact: str, computed: str
) -> None:
    assert plain(D(value)) == exact
    assert rounded(D(value)) == computed
    assert "E" not in exact + computed and "e" not in exact + computed


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_a_value_that_is_no_number_is_a_programming_error(bad: str) -> None:
    with pytest.raises(ValueError, match="no decimal text"):
        plain(D(bad))
    with pytest.raises(ValueError, match="no decimal text"):
        rounded(D(bad))


def test_the_event_log_keeps_the_venues_decimals_as_they_were_encoded() -> None:
    """Fill reports on the wire *are* the stored events: their encoding is not normalised,
    so streams written by earlier builds re-encode and replay unchanged."""
    fill = filled("a", "t1", qty="0.100", price="50000.10", fee="0E-8")
    _, _, body = contract.encode_event(fill, ns="exec", producer="titan-execution")
    payload = json.loads(body)["payload"]
    assert (payload["qty"], payload["price"], payload["fee"]) == ("0.100", "50000.10", "0E-8")


def long_position() -> Position:
    """0.3 @ 50000.1 then 0.4 @ 49998.33: the average entry has no finite decimal."""
    pos = Position(venue="sim", symbol="BTC/USDT")
    for qty, price, ts in (("0.3", "50000.1", 1), ("0.4", "49998.33", 2)):
        pos = apply_fill(
            pos,
            side=Side.BUY,
            qty=D(qty),
            price=D(price),
            fee=D("0.0000000"),
            ts_ms=ts,
            opening=Opening(signal_id="s1", stop_loss=D("49000.00")),
        ).position
    return pos


def test_a_position_shows_quantities_exact_and_computed_values_rounded() -> None:
    pos = long_position()
    assert len(str(pos.avg_entry)) > 25  # what `format(d, "f")` used to publish
    doc = contract.position_doc(pos, mark=D("50000.015"))
    assert doc["size"] == "0.7" and doc["stop_loss"] == "49000" and doc["fees_paid"] == "0"
    assert doc["entry_price"] == "49999.088571428571"
    assert D(doc["entry_price"]) == pos.avg_entry.quantize(D("1E-12"))
    assert doc["last_mark_price"] == "50000.015"
    assert doc["unrealized_pnl"] == "0.6485"  # (50000.015 - avg) * 0.7, rounded
    assert doc["realized_pnl"] == "0"


# --- policy hash ------------------------------------------------------------------------


def test_the_policy_hash_reply_passes_the_brains_handshake() -> None:
    policy = parse_policy(json.loads((FIXTURES / "contract" / "risk_policy.json").read_text()))
    reply = wire(replies.policy_hash_reply(policy, ts_ms=1_700_000_000_000))
    assert handshake(reply, BRAIN_HASH)
    assert isinstance(reply["policy_hash"], str) and isinstance(reply["timestamp"], int)
    recorded = fixture("policy_hash_reply")
    assert set(recorded["example_reply"]) - {"_source"} <= set(reply)
    assert handshake(recorded["example_reply"], BRAIN_HASH)


def test_no_policy_fails_the_handshake_instead_of_matching() -> None:
    with pytest.raises(ValueError, match="missing policy_hash"):
        handshake(wire(replies.policy_hash_reply(None, ts_ms=1)), BRAIN_HASH)


@pytest.mark.parametrize(
    ("ns", "subjects"),
    [
        ("exec", ("titan.req.exec.policy_hash.v1",)),
        ("execution", ("titan.req.exec.policy_hash.v1", "titan.req.execution.policy_hash.v1")),
    ],
)
def test_the_policy_hash_is_answered_where_the_brain_asks(
    ns: str, subjects: tuple[str, ...]
) -> None:
    assert Subjects(ns).policy_hash_subjects == subjects
    assert fixture("policy_hash_reply")["subject"] in subjects


# --- positions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "venue"),
    [
        ("titan.rpc.execution.get_positions.v1.binance", "binance"),
        ("titan.rpc.execution.get_positions.v1.auto", None),
        ("titan.rpc.execution.get_positions.v1.main", None),
        ("titan.rpc.execution.get_positions.v1", None),
        ("titan.rpc.execution.get_balances.v1.main", None),
        ("titan.rpc.execution.get_positions.v1.a.b", "a.b"),
    ],
)
def test_the_rpc_subject_names_the_venue(subject: str, venue: str | None) -> None:
    assert Subjects("execution").rpc_venue(subject) == venue


def book() -> list[Position]:
    short = Position(venue="sim", symbol="ETH/USDT", qty=D("-2.000"), avg_entry=D("3000"))
    flat = Position(venue="sim", symbol="SOL/USDT", realized_pnl=D("12.5"))
    elsewhere = Position(venue="bybit", symbol="BTC/USDT", qty=D("1"), avg_entry=D("50000"))
    return [short, long_position(), flat, elsewhere]


def positions(venue: str | None) -> dict[str, Any]:
    def mark(v: str, s: str) -> Decimal | None:
        return D("50010") if s == "BTC/USDT" else None

    return wire(replies.positions_reply(book(), venue=venue, mark_of=mark, ts_ms=7))


def test_positions_are_an_array_of_the_named_venues_open_positions() -> None:
    sim = positions("sim")
    assert [(p["exchange"], p["symbol"], p["side"], p["size"]) for p in sim["positions"]] == [
        ("sim", "BTC/USDT", "LONG", "0.7"),
        ("sim", "ETH/USDT", "SHORT", "2"),
    ]
    assert sim["timestamp"] == 7
    assert positions("SIM") == sim  # the brain lower-cases; our venue names may not be
    assert [p["exchange"] for p in positions(None)["positions"]] == ["bybit", "sim", "sim"]
    assert positions("okx")["positions"] == []
    first = sim["positions"][0]
    assert set(first) == set(contract.position_doc(long_position(), mark=None))


def test_the_brains_reconciliation_finds_our_positions_equal_to_its_own() -> None:
    """The brain's own positions carry the fill report's symbol (`BTC/USDT`) and LONG /
    SHORT (StateRecoveryService.ts:559-561); sizes compared within 0.1 %."""
    brain = [
        {"symbol": "BTC/USDT", "side": "LONG", "size": 0.7, "exchange": "BINANCE"},
        {"symbol": "ETH/USDT", "side": "SHORT", "size": 2.0, "exchange": "BINANCE"},
    ]
    assert reconcile(brain, positions("sim")) == []
    assert reconcile(brain[:1], positions("sim")) == [("ETH/USDT", "UNTRACKED_POSITION")]
    assert reconcile([{**brain[0], "size": 0.8}], positions("sim")) == [
        ("BTC/USDT", "SIZE_MISMATCH"),
        ("ETH/USDT", "UNTRACKED_POSITION"),
    ]


def test_the_recorded_shapes_show_what_the_array_and_the_symbol_change() -> None:
    recorded = fixture("get_positions_reply")
    brain = [recorded["brain_position_example"]]
    # Rust's venue symbol never matched the brain's key: a ghost and an untracked position
    assert sorted(reason for _, reason in reconcile(brain, recorded["example_reply"])) == [
        "GHOST_POSITION",
        "UNTRACKED_POSITION",
    ]
    # our reply before this change: an object keyed by symbol
    with pytest.raises(TypeError, match=r"external\.map is not a function"):
        reconcile(brain, {"positions": {"BTC/USDT": {"symbol": "BTC/USDT"}}})
    assert reconcile([], {}) == []  # no positions field: `|| []`


# --- balances ---------------------------------------------------------------------------


def test_balances_are_an_array_whose_usdt_total_is_the_brains_equity() -> None:
    reports = [
        BalanceReport("USDT", total=D("10000.50000000"), free=D("9000.5"), used=D("1000.0")),
        BalanceReport("BNB", total=D("0E-8"), free=None, used=None),
    ]
    reply = wire(replies.balances_reply(reports, venue="sim", ts_ms=9))
    assert reply["balances"] == [
        {"currency": "BNB", "total": "0", "available": None, "locked": None},
        {"currency": "USDT", "total": "10000.5", "available": "9000.5", "locked": "1000"},
    ]
    assert equity(reply) == "10000.5" and D(equity(reply)) == D("10000.5")
    assert set(fixture("get_balances_reply")["declared"]) <= set(reply["balances"][1])
    assert equity(fixture("get_balances_reply")["example_reply"]) == "1000"


def test_a_venue_that_cannot_answer_gives_an_empty_array_and_says_why() -> None:
    reply = wire(
        replies.balances_error_reply("balances unavailable: timeout", venue="sim", ts_ms=9)
    )
    assert reply["balances"] == [] and reply["error"] == "balances unavailable: timeout"
    assert equity(reply) == 0  # as without the field: the brain cannot tell them apart
    assert equity({}) == 0


class BalanceExchange:
    """A ccxt exchange object's `fetch_balance` (unified: free / used / total per currency)."""

    async def fetch_balance(self) -> dict[str, Any]:
        return {
            "info": {},
            "free": {"USDT": 9000.25, "BNB": None},
            "used": {"USDT": 1000, "BNB": None},
            "total": {"USDT": 10000.25, "BNB": 0.5, "ETH": None},
        }


async def test_the_ccxt_venue_reports_free_used_and_total_as_decimals() -> None:
    v = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", name="binance"))
    v.exchange = BalanceExchange()
    assert await v.balances() == [
        BalanceReport("BNB", total=D("0.5"), free=None, used=None),
        BalanceReport("USDT", total=D("10000.25"), free=D("9000.25"), used=D("1000")),
    ]


# --- the truth snapshot keeps its shape -------------------------------------------------


def test_the_truth_snapshots_shape_is_the_one_the_brain_accepts() -> None:
    recorded = fixture("truth_snapshot")
    assert truth_snapshot(recorded["example"], BRAIN_HASH) == "ok"
    assert truth_snapshot({**recorded["example"], "policy_hash": "x"}, BRAIN_HASH) == "drift"
    assert truth_snapshot({"timestamp": 1}, BRAIN_HASH) == "ignored"
