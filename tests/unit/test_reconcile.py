"""Venue reconciliation decisions (`core/reconcile.py`): tables of our state against the
venue's reports, with the time passed in by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.builders import accepted, acknowledged, filled, genesis, submitted
from titan_exec.core.events import OrderCanceled, OrderExpired
from titan_exec.core.model import ClientOrderId, OrderStatus, VenueOrderId
from titan_exec.core.orders import Order
from titan_exec.core.reconcile import (
    AppendLifecycle,
    Difference,
    NoChange,
    PositionPass,
    PositionRules,
    ReportFinding,
    RequestTtlCancel,
    compare_open_orders,
    compare_positions,
    differing_symbols,
    explained_by_fills,
    query_outcome,
)
from titan_exec.core.reports import OrderReport, PositionReport, VenueOrderStatus
from titan_exec.core.state import State, replay

D = Decimal
BTC, ETH = "BTC/USDT", "ETH/USDT"
RULES = PositionRules(confirm_ms=2000, is_authoritative=True)


def rep(
    symbol: str, qty: str, entry: str = "100", venue: str = "sim", account: str = "main"
) -> PositionReport:
    return PositionReport(
        venue=venue, account=account, symbol=symbol, qty=D(qty), entry_price=D(entry)
    )


def positions(
    ours: dict[str, str],
    reports: list[PositionReport],
    *,
    now: int = 10_000,
    pending: dict[str, Difference] | None = None,
    open_symbols: frozenset[str] = frozenset(),
    rules: PositionRules = RULES,
) -> PositionPass:
    return compare_positions(
        venue="sim",
        ours={s: D(q) for s, q in ours.items()},
        reports=reports,
        open_symbols=open_symbols,
        pending=pending or {},
        now_ms=now,
        rules=rules,
    )


# --- positions: one pass ----------------------------------------------------------------------


def test_a_forced_poll_explains_differences_by_fills_off_polled_symbols() -> None:
    reports = [rep(BTC, "0.5"), rep(ETH, "1"), rep("SOL/USDT", "2")]
    first = positions({BTC: "0", ETH: "0", "SOL/USDT": "0"}, reports)
    assert differing_symbols(first) == {BTC, ETH, "SOL/USDT"}
    # the poll brought BTC's and ETH's trades; SOL's still differs
    again = positions({BTC: "0.5", ETH: "1", "SOL/USDT": "0"}, reports)
    # BTC was being polled: ours in flight; ETH was not: trades behind our back
    assert explained_by_fills(first, again, polled=frozenset({BTC})) == (ETH,)
    unreported = positions({BTC: "0.5"}, [])
    assert differing_symbols(unreported) == frozenset()  # nothing to poll for: unknown


@pytest.mark.parametrize(
    ("ours", "reports", "expected"),
    [
        # equal, flat on both sides (explicit 0), nothing anywhere
        ({BTC: "0.5"}, [rep(BTC, "0.500")], {}),
        ({BTC: "0"}, [rep(BTC, "0")], {}),
        ({}, [rep(BTC, "0")], {}),
        ({}, [], {}),
        # a missing report is unknown, never flat
        ({BTC: "0.5"}, [], {BTC: ("unreported", None)}),
        ({BTC: "0.5"}, [rep(ETH, "1")], {BTC: ("unreported", None), ETH: ("confirming", "1")}),
        # an explicit 0 is flat: a difference
        ({BTC: "0.5"}, [rep(BTC, "0")], {BTC: ("confirming", "0")}),
        # the venue holds what we do not, or more, or the other side
        ({}, [rep(BTC, "0.1")], {BTC: ("confirming", "0.1")}),
        ({BTC: "0.1"}, [rep(BTC, "0.3")], {BTC: ("confirming", "0.3")}),
        ({BTC: "0.1"}, [rep(BTC, "-0.1")], {BTC: ("confirming", "-0.1")}),
        # reports of another venue are not ours to compare
        ({BTC: "0.5"}, [rep(BTC, "0", venue="other")], {BTC: ("unreported", None)}),
    ],
)
def test_first_pass_reports_differences_and_never_reads_a_missing_report_as_flat(
    ours: dict[str, str],
    reports: list[PositionReport],
    expected: dict[str, tuple[str, str | None]],
) -> None:
    out = positions(ours, reports)
    got = {
        f.symbol: (f.action, None if f.venue_qty is None else str(f.venue_qty))
        for f in out.findings
    }
    assert got == expected
    assert all(f.is_new and f.first_seen_ms == 10_000 for f in out.findings)
    assert out.corrections == ()
    assert set(out.pending) == set(expected)


def test_a_difference_is_confirmed_then_corrected_from_the_venue_report() -> None:
    first = positions({BTC: "0.1"}, [rep(BTC, "0.3", entry="101.5")], now=10_000)
    assert first.next_check_ms == 12_000  # wake me when it is due
    early = positions(
        {BTC: "0.1"}, [rep(BTC, "0.3", entry="101.5")], now=11_999, pending=first.pending
    )
    [f] = early.findings
    assert (f.action, f.is_new, f.first_seen_ms) == ("confirming", False, 10_000)
    assert early.corrections == ()
    due = positions(
        {BTC: "0.1"}, [rep(BTC, "0.3", entry="101.5")], now=12_000, pending=early.pending
    )
    [f] = due.findings
    assert (f.action, f.is_new) == ("correct", False)
    [ev] = due.corrections
    assert (ev.venue, ev.account, ev.symbol, ev.ts_ms) == ("sim", "main", BTC, 12_000)
    assert (ev.qty_before, ev.qty_after, ev.venue_entry_price) == (D("0.1"), D("0.3"), D("101.5"))
    assert "venue 0.3, ours 0.1 for 2000 ms" in ev.reason
    assert due.pending == {}  # corrected: nothing left to watch


def test_a_correction_to_flat_carries_no_entry_price() -> None:
    pending = {BTC: Difference(ours=D("0.5"), venue_qty=D("0"), first_seen_ms=0)}
    [ev] = positions({BTC: "0.5"}, [rep(BTC, "0", entry="0")], pending=pending).corrections
    assert (ev.qty_after, ev.venue_entry_price) == (D("0"), None)


@pytest.mark.parametrize(
    ("change", "ours", "venue"),
    [("a fill of ours arrived", "0.2", "0.3"), ("the venue moved again", "0.1", "0.4")],
)
def test_a_difference_that_changes_starts_anew(change: str, ours: str, venue: str) -> None:
    pending = {BTC: Difference(ours=D("0.1"), venue_qty=D("0.3"), first_seen_ms=0)}
    out = positions({BTC: ours}, [rep(BTC, venue)], now=5_000, pending=pending)
    [f] = out.findings
    assert (f.action, f.is_new, f.first_seen_ms) == ("confirming", True, 5_000), change
    assert out.corrections == ()


def test_a_difference_that_closed_is_dropped() -> None:
    pending = {BTC: Difference(ours=D("0.1"), venue_qty=D("0.3"), first_seen_ms=0)}
    out = positions({BTC: "0.3"}, [rep(BTC, "0.3")], now=5_000, pending=pending)
    assert (out.findings, out.pending, out.matched) == ((), {}, (BTC,))


@pytest.mark.parametrize(
    ("open_symbols", "rules", "action"),
    [
        (frozenset({BTC}), RULES, "deferred_open_order"),
        (frozenset({ETH}), RULES, "correct"),
        (frozenset(), PositionRules(confirm_ms=2000, is_authoritative=False), "report_only"),
    ],
)
def test_a_confirmed_difference_waits_for_open_orders_and_the_authoritative_switch(
    open_symbols: frozenset[str], rules: PositionRules, action: str
) -> None:
    pending = {BTC: Difference(ours=D("0.1"), venue_qty=D("0.3"), first_seen_ms=0)}
    out = positions(
        {BTC: "0.1"}, [rep(BTC, "0.3")], pending=pending, open_symbols=open_symbols, rules=rules
    )
    [f] = out.findings
    assert f.action == action and not f.is_new
    assert len(out.corrections) == (1 if action == "correct" else 0)
    assert (BTC in out.pending) == (action != "correct")
    assert out.next_check_ms is None  # due already: the regular interval checks again


def test_an_unreported_position_is_never_corrected_however_long_it_lasts() -> None:
    pending = {BTC: Difference(ours=D("0.5"), venue_qty=None, first_seen_ms=0)}
    out = positions({BTC: "0.5"}, [], now=1_000_000, pending=pending)
    [f] = out.findings
    assert (f.action, f.is_new, f.venue_qty) == ("unreported", False, None)
    assert out.corrections == () and out.next_check_ms is None
    assert "unknown, not flat" in f.reason


def test_hedge_mode_legs_of_one_symbol_are_netted() -> None:
    out = positions(
        {BTC: "0.2"}, [rep(BTC, "0.5", entry="100"), rep(BTC, "-0.3", entry="110")], now=0
    )
    assert out.findings == () and out.matched == (BTC,)


# --- open orders ------------------------------------------------------------------------------


def state_with_orders() -> State:
    """ack: acknowledged, resting; sub: in doubt; acc: not sent; done: filled (closed)."""
    return replay(
        [
            genesis(),
            accepted("tx-ack", limit="100"),
            submitted("tx-ack"),
            acknowledged("tx-ack"),
            accepted("tx-sub", limit="100"),
            submitted("tx-sub"),
            accepted("tx-acc", limit="100"),
            accepted("tx-done", qty="1"),
            submitted("tx-done"),
            acknowledged("tx-done"),
            filled("tx-done", "t1", qty="1"),
        ]
    )


def venue_order(
    coid: str, status: str = "NEW", *, filled_qty: str = "0", symbol: str = BTC
) -> OrderReport:
    return OrderReport(
        venue="sim",
        account="main",
        symbol=symbol,
        client_order_id=ClientOrderId(coid),
        venue_order_id=VenueOrderId(f"v-{coid}"),
        status=VenueOrderStatus(status),
        qty=D(1),
        filled_qty=D(filled_qty),
        ts_ms=0,
    )


def test_our_orders_listed_open_need_nothing() -> None:
    s = state_with_orders()
    listed = [venue_order("tx-ack"), venue_order("tx-sub")]
    out = compare_open_orders(orders=s.orders, ours_open=s.iter_open_orders(), listed=listed)
    assert (out.to_query, out.findings) == ((), ())


def test_an_acknowledged_order_not_listed_is_queried_but_not_the_unsent_or_in_doubt() -> None:
    s = state_with_orders()
    out = compare_open_orders(orders=s.orders, ours_open=s.iter_open_orders(), listed=[])
    assert out.to_query == (ClientOrderId("tx-ack"),)
    assert out.findings == ()


def test_orders_listed_at_the_venue_but_not_open_here() -> None:
    s = state_with_orders()
    listed = [
        venue_order("tx-ack"),
        venue_order("tx-done"),  # closed here: asked again before reporting
        venue_order("tx-stranger"),  # our prefix, not in our state: critical
        venue_order("manual-web-1", "PARTIALLY_FILLED", filled_qty="0.4"),  # foreign
        venue_order("manual-web-2", "FILLED"),  # not open: not a difference
    ]
    out = compare_open_orders(orders=s.orders, ours_open=s.iter_open_orders(), listed=listed)
    assert out.to_query == (ClientOrderId("tx-done"),)
    got = {(f.kind, f.client_order_id, f.is_critical) for f in out.findings}
    assert got == {
        ("unknown_own_order", "tx-stranger", True),
        ("foreign_order", "manual-web-1", False),
    }
    foreign = next(f for f in out.findings if f.kind == "foreign_order")
    assert "0.4/1 filled" in foreign.reason


def order(s: State, coid: str) -> Order:
    return s.orders[ClientOrderId(coid)]


@pytest.mark.parametrize(
    ("coid", "status", "filled_qty", "now", "expected"),
    [
        # silence is never a failure
        ("tx-ack", None, "0", 10, ReportFinding),
        # terminal at the venue → the lifecycle event, once our fills match
        ("tx-ack", "CANCELED", "0", 10, OrderCanceled),
        ("tx-ack", "EXPIRED", "0", 10, OrderExpired),
        ("tx-ack", "REJECTED", "0", 10, NoChange),  # not after an acknowledgement
        ("tx-ack", "CANCELED", "0.5", 10, NoChange),  # fills still on their way
        ("tx-ack", "FILLED", "1", 10, NoChange),  # the fills path closes it
        # past its time-to-live, done at the venue, no cancel of ours yet
        ("tx-ack", "FILLED", "1", 10_000_000, RequestTtlCancel),
        # still open there: the listing raced
        ("tx-ack", "NEW", "0", 10, NoChange),
        # closed here, open there: critical; closed on both sides: nothing
        ("tx-done", "NEW", "0", 10, ReportFinding),
        ("tx-done", "FILLED", "1", 10, NoChange),
    ],
)
def test_the_answer_to_a_query(
    coid: str, status: str | None, filled_qty: str, now: int, expected: type
) -> None:
    s = state_with_orders()
    report = None if status is None else venue_order(coid, status, filled_qty=filled_qty)
    out = query_outcome(order(s, coid), report, now)
    if isinstance(out, AppendLifecycle):
        assert isinstance(out.event, expected)
        assert out.event.client_order_id == coid
    else:
        assert isinstance(out, expected)
    if isinstance(out, ReportFinding):
        is_critical = order(s, coid).status is OrderStatus.FILLED
        assert out.finding.is_critical == is_critical
        assert out.finding.kind == ("closed_but_open" if is_critical else "not_listed")


def test_a_correction_is_on_the_account_the_venue_reports_netted_legs_keep_it() -> None:
    legs = [rep(BTC, "0.5", account="acct-7"), rep(BTC, "-0.2", account="acct-7")]
    first = positions({BTC: "0.1"}, legs, now=10_000)
    due = positions({BTC: "0.1"}, legs, now=12_000, pending=first.pending)
    [ev] = due.corrections
    assert (ev.account, ev.qty_before, ev.qty_after) == ("acct-7", D("0.1"), D("0.3"))
