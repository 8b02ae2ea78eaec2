"""The execution driver's core (`core/execution.py`), without nats-server or a venue process.

A table of every (order status, input) pair with the driver in the situation that input
answers, its outcome (events, requests, or a raise); then a seeded fake-clock simulation of
many orders against the simulator's exchange engine with lost responses, unknown outcomes,
partial fills, failing calls and cancels, checking the invariants after every run.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from functools import partial
from typing import Any

import pytest

from tests.builders import accepted, acknowledged, filled, genesis, submitted
from titan_exec.adapters.venue.exchange.engine import Engine, EngineConfig, OrderRequest, SimError
from titan_exec.adapters.venue.exchange.market import Book
from titan_exec.adapters.venue.exchange.records import SimOrder
from titan_exec.core import execution as ex
from titan_exec.core.events import (
    Event,
    OrderAccepted,
    OrderCanceled,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderRejected,
)
from titan_exec.core.execution_io import (
    CancelAnswered,
    CancelFailed,
    CancelOrder,
    CancelWanted,
    Driver,
    Durable,
    ExecConfig,
    FillsPushed,
    FillsReported,
    Input,
    OrderQueried,
    PlaceAcked,
    PlaceOrder,
    PlaceRejected,
    PlaceUnknown,
    PollFailed,
    PollFills,
    QueryFailed,
    QueryOrder,
    Recover,
    Request,
    Tick,
    UnexpectedResult,
    WatchSymbol,
    WriteAhead,
)
from titan_exec.core.model import (
    ClientOrderId,
    IntentType,
    OrderStatus,
    OrderType,
    Side,
    VenueOrderId,
)
from titan_exec.core.orders import Order
from titan_exec.core.reports import FillReport, OrderReport, PlaceRequest, VenueOrderStatus
from titan_exec.core.state import State, apply

CFG = ExecConfig(venue="sim")
C = ClientOrderId("c1")
SYM = "BTC/USDT"
S = OrderStatus


def state_with(status: OrderStatus | None, *, reason: str = "", ts: int = 1) -> State:
    """A state holding order c1 (qty 1) in `status`, decided at `ts`."""
    events: list[Event] = [genesis()]
    if status is not None:
        events.append(accepted("c1", ts=ts))
    lo: dict[str, Any] = {
        "ts_ms": ts + 2,
        "client_order_id": C,
        "venue": "sim",
        "account": "main",
        "symbol": SYM,
    }
    match status:
        case S.SUBMITTED:
            events.append(submitted("c1", ts=ts + 1))
        case S.ACKNOWLEDGED:
            events += [submitted("c1", ts=ts + 1), acknowledged("c1", ts=ts + 2)]
        case S.PARTIALLY_FILLED:
            events += [submitted("c1"), acknowledged("c1"), filled("c1", "t0", qty="0.4")]
        case S.FILLED:
            events += [submitted("c1"), acknowledged("c1"), filled("c1", "t0")]
        case S.CANCELED:
            events += [submitted("c1"), OrderCanceled(**lo, reason=reason or "flatten")]
        case S.REJECTED:
            events += [submitted("c1"), OrderRejected(**lo, reason="venue: no")]
        case S.EXPIRED:
            events += [submitted("c1"), acknowledged("c1"), OrderExpired(**lo, reason="ttl")]
    if reason and status is not None and not status.is_terminal:
        events.append(OrderCancelRequested(**lo, reason=reason))
    state = State()
    for ev in events:
        state = apply(state, ev)
    return state


def report(status: str, filled_qty: str = "0") -> OrderReport:
    return OrderReport(
        venue="sim",
        account="main",
        symbol=SYM,
        client_order_id=C,
        venue_order_id=VenueOrderId("v1"),
        status=VenueOrderStatus(status),
        qty=Decimal(1),
        filled_qty=Decimal(filled_qty),
        ts_ms=10,
    )


def fill(trade: str, qty: str, coid: str = "c1") -> FillReport:
    return FillReport(
        venue="sim",
        account="main",
        symbol=SYM,
        client_order_id=ClientOrderId(coid),
        venue_order_id=VenueOrderId("v1"),
        trade_id=trade,
        side=Side.BUY,
        price=Decimal(100),
        qty=Decimal(qty),
        fee=Decimal(0),
        fee_currency="USDT",
        ts_ms=10,
    )


# the driver in the situation each input answers (a result needs its call in flight)
PLACING = Driver(placing=frozenset({C}))
QUERYING = Driver(querying=frozenset({C}))
CANCELLING = Driver(cancelling={C: "flatten"})
CANCELLING_TTL = Driver(cancelling={C: "ttl"})
WRITTEN = Driver(written=frozenset({C}))
CLOSING = Driver(closing={C: "flatten"}, is_polling=True)
POLLING = Driver(is_polling=True)

LATE = 40_000  # past the order's TTL (expires at 60 001) is 70_000; past absent_after is 40 000
INPUTS: dict[str, tuple[Driver, Input]] = {
    "write_ahead": (Driver(), WriteAhead(10, (C,))),
    "durable": (WRITTEN, Durable(10, (C,))),
    "recover_fresh": (Driver(), Recover(1_000)),
    "recover_stale": (Driver(), Recover(10_000)),
    "place_acked": (PLACING, PlaceAcked(10, C, VenueOrderId("v1"))),
    "place_rejected": (PLACING, PlaceRejected(10, C, "margin")),
    "place_unavailable": (PLACING, PlaceRejected(10, C, "down", is_unavailable=True)),
    "place_duplicate": (PLACING, PlaceRejected(10, C, "dup", is_duplicate=True)),
    "place_unknown": (PLACING, PlaceUnknown(10, C, "outcome unknown (timeout)")),
    "queried_found": (QUERYING, OrderQueried(1_000, C, report("NEW"))),
    "queried_absent_young": (QUERYING, OrderQueried(1_000, C, None)),
    "queried_absent_old": (QUERYING, OrderQueried(LATE, C, None)),
    "query_failed": (QUERYING, QueryFailed(1_000, C, "timeout")),
    "cancel_wanted": (Driver(), CancelWanted(10, C, "flatten")),
    "cancel_canceled": (CANCELLING, CancelAnswered(10, C, VenueOrderStatus.CANCELED)),
    "cancel_filled": (CANCELLING, CancelAnswered(10, C, VenueOrderStatus.FILLED)),
    "cancel_failed": (CANCELLING, CancelFailed(10, C, "timeout")),
    "fills_full": (POLLING, FillsReported(10, (fill("t1", "0.6"), fill("t2", "0.4")), "k")),
    "fills_then_close": (CLOSING, FillsReported(10, (fill("t1", "0.3"),), "k")),
    "fills_pushed": (Driver(cursor="k"), FillsPushed(10, (fill("t1", "0.6"), fill("t2", "0.4")))),
    "fills_pushed_closing": (CLOSING, FillsPushed(10, (fill("t1", "0.3"),))),
    "tick_early": (Driver(cursor="k"), Tick(100)),
    "tick_in_doubt": (Driver(cursor="k"), Tick(1_000)),
    "tick_past_ttl": (Driver(cursor="k"), Tick(70_000)),
}


def outcome(status: OrderStatus | None, name: str) -> str:
    driver, inp = INPUTS[name]
    try:
        step = ex.step(state_with(status), driver, inp, CFG)
    except UnexpectedResult:
        return "raises"
    parts = [type(e).__name__.removeprefix("Order") for e in step.decision.events]
    parts += [type(r).__name__ for r in step.decision.requests]
    return " ".join(parts) or "-"


STATUSES = [None, *OrderStatus]

# (input, status) → what the core does: events (without the `Order` prefix), then requests;
# "-" nothing (a log line at most); "raises": `UnexpectedResult`. None: no such order.
TABLE: dict[str, dict[OrderStatus | None, str]] = {
    "write_ahead": {
        None: "raises",
        S.ACCEPTED: "Submitted",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "durable": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "PlaceOrder",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "recover_fresh": {
        None: "-",
        S.ACCEPTED: "Submitted",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "recover_stale": {
        None: "-",
        S.ACCEPTED: "Canceled",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "place_acked": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "Acknowledged",
        S.ACKNOWLEDGED: "raises",
        S.PARTIALLY_FILLED: "Acknowledged",
        S.FILLED: "Acknowledged",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "place_rejected": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "Rejected",
        S.ACKNOWLEDGED: "raises",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "place_unavailable": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "Rejected",
        S.ACKNOWLEDGED: "raises",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "place_duplicate": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "raises",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "place_unknown": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "raises",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "queried_found": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "Acknowledged",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "queried_absent_young": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "queried_absent_old": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "Rejected",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "query_failed": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "cancel_wanted": {
        None: "raises",
        S.ACCEPTED: "Canceled",
        S.SUBMITTED: "CancelRequested CancelOrder",
        S.ACKNOWLEDGED: "CancelRequested CancelOrder",
        S.PARTIALLY_FILLED: "CancelRequested CancelOrder",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "cancel_canceled": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "PollFills",
        S.ACKNOWLEDGED: "PollFills",
        S.PARTIALLY_FILLED: "PollFills",
        S.FILLED: "PollFills",
        S.CANCELED: "PollFills",
        S.REJECTED: "PollFills",
        S.EXPIRED: "PollFills",
    },
    "cancel_filled": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "cancel_failed": {
        None: "raises",
        S.ACCEPTED: "raises",
        S.SUBMITTED: "-",
        S.ACKNOWLEDGED: "-",
        S.PARTIALLY_FILLED: "-",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "fills_full": {
        None: "Filled Filled",
        S.ACCEPTED: "Filled Filled",
        S.SUBMITTED: "Filled Filled",
        S.ACKNOWLEDGED: "Filled Filled",
        S.PARTIALLY_FILLED: "Filled Filled",
        S.FILLED: "Filled Filled",
        S.CANCELED: "Filled Filled",
        S.REJECTED: "Filled Filled",
        S.EXPIRED: "Filled Filled",
    },
    "fills_then_close": {
        None: "raises",
        S.ACCEPTED: "Filled Canceled",
        S.SUBMITTED: "Filled Canceled",
        S.ACKNOWLEDGED: "Filled Canceled",
        S.PARTIALLY_FILLED: "Filled Canceled",
        S.FILLED: "Filled",
        S.CANCELED: "Filled",
        S.REJECTED: "Filled",
        S.EXPIRED: "Filled",
    },
    # pushed by a user-data stream: applied whatever the driver is doing, closing nothing
    "fills_pushed": {
        None: "Filled Filled",
        S.ACCEPTED: "Filled Filled",
        S.SUBMITTED: "Filled Filled",
        S.ACKNOWLEDGED: "Filled Filled",
        S.PARTIALLY_FILLED: "Filled Filled",
        S.FILLED: "Filled Filled",
        S.CANCELED: "Filled Filled",
        S.REJECTED: "Filled Filled",
        S.EXPIRED: "Filled Filled",
    },
    "fills_pushed_closing": {
        None: "Filled",
        S.ACCEPTED: "Filled",
        S.SUBMITTED: "Filled",
        S.ACKNOWLEDGED: "Filled",
        S.PARTIALLY_FILLED: "Filled",
        S.FILLED: "Filled",
        S.CANCELED: "Filled",
        S.REJECTED: "Filled",
        S.EXPIRED: "Filled",
    },
    "tick_early": {
        None: "-",
        S.ACCEPTED: "PollFills",
        S.SUBMITTED: "PollFills",
        S.ACKNOWLEDGED: "PollFills",
        S.PARTIALLY_FILLED: "PollFills",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "tick_in_doubt": {
        None: "-",
        S.ACCEPTED: "PollFills",
        S.SUBMITTED: "PollFills QueryOrder",
        S.ACKNOWLEDGED: "PollFills",
        S.PARTIALLY_FILLED: "PollFills",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
    "tick_past_ttl": {
        None: "-",
        S.ACCEPTED: "Canceled PollFills",
        S.SUBMITTED: "PollFills QueryOrder",
        S.ACKNOWLEDGED: "CancelRequested PollFills CancelOrder",
        S.PARTIALLY_FILLED: "CancelRequested PollFills CancelOrder",
        S.FILLED: "-",
        S.CANCELED: "-",
        S.REJECTED: "-",
        S.EXPIRED: "-",
    },
}


def test_the_table_covers_every_input_and_status() -> None:
    assert set(TABLE) == set(INPUTS)
    assert all(set(row) == set(STATUSES) for row in TABLE.values())


@pytest.mark.parametrize(
    ("name", "status"), [(n, s) for n in INPUTS for s in STATUSES], ids=lambda v: str(v)
)
def test_every_status_and_input(name: str, status: OrderStatus | None) -> None:
    assert outcome(status, name) == TABLE[name][status]


# --- the rules one by one -------------------------------------------------------------------

RESULTS: list[Input] = [
    PlaceAcked(10, C, VenueOrderId("v1")),
    PlaceRejected(10, C, "no"),
    PlaceUnknown(10, C, "timeout"),
    OrderQueried(10, C, None),
    QueryFailed(10, C, "x"),
    CancelAnswered(10, C, VenueOrderStatus.CANCELED),
    CancelFailed(10, C, "x"),
    FillsReported(10, (), None),
    PollFailed(10, "x"),
    Durable(10, (C,)),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_a_result_that_answers_no_request_in_flight_raises(result: Input) -> None:
    with pytest.raises(UnexpectedResult):
        ex.step(state_with(S.SUBMITTED), Driver(), result, CFG)


def test_an_order_found_submitted_after_a_restart_is_queried_never_sent() -> None:
    state = state_with(S.SUBMITTED)
    with pytest.raises(UnexpectedResult, match="not written ahead"):
        ex.step(state, Driver(), Durable(10, (C,)), CFG)
    step = ex.step(state, Driver(), Recover(10), CFG)
    assert step.decision.events == () and step.decision.requests == ()
    tick = ex.step(state, step.driver, Tick(1_000), CFG).decision
    assert [type(r).__name__ for r in tick.requests] == ["PollFills", "QueryOrder"]


def test_write_ahead_then_durable_sends_once_and_the_order_is_not_queried_meanwhile() -> None:
    state = state_with(S.ACCEPTED)
    first = ex.step(state, Driver(), WriteAhead(10, (C,)), CFG)
    for ev in first.decision.events:
        state = apply(state, ev)
    # not durable yet: never queried, however long the write takes
    assert not any(
        type(r).__name__ == "QueryOrder"
        for r in ex.step(state, first.driver, Tick(5_000), CFG).decision.requests
    )
    sent = ex.step(state, first.driver, Durable(5_000, (C,)), CFG)
    assert [type(r).__name__ for r in sent.decision.requests] == ["PlaceOrder"]
    # a place call in flight: not queried either, and not sent again
    tick = ex.step(state, sent.driver, Tick(9_000), CFG)
    assert [type(r).__name__ for r in tick.decision.requests] == ["PollFills"]
    with pytest.raises(UnexpectedResult):
        ex.step(state, sent.driver, Durable(9_000, (C,)), CFG)


def test_in_doubt_back_off_grows_with_age_up_to_its_cap_then_absent_rejects() -> None:
    cfg = replace(CFG, in_doubt_absent_after_ms=20_000)
    state = state_with(S.SUBMITTED)  # submitted at 2
    d = Driver(cursor="k")
    asked_at: list[int] = []
    now = 0
    while len(asked_at) < 20:
        step = ex.step(state, d, Tick(now), cfg)
        d = replace(step.driver, is_polling=False)
        if any(isinstance(r, QueryOrder) for r in step.decision.requests):
            asked_at.append(now)
            answer = ex.step(state, d, OrderQueried(now, C, None), cfg)
            d = answer.driver
            if answer.decision.events:
                break
            step = ex.step(state, d, Tick(now), cfg)  # the wake-up after the back-off
            d = replace(step.driver, is_polling=False)
        assert step.decision.next_timer_ms is not None
        now = step.decision.next_timer_ms
    # the first query at query_after, then half the age (at least query_after), at most 5 s
    assert asked_at == [502, 1002, 1502, 2252, 3377, 5064, 7595, 11391, 16391, 21391]
    assert answer.decision.events == (
        OrderRejected(
            ts_ms=21_391,
            client_order_id=C,
            venue="sim",
            account="main",
            symbol=SYM,
            reason="absent at venue after 21389 ms",
        ),
    )


def test_a_failed_in_doubt_query_is_asked_again_after_the_query_delay_and_never_rejects() -> None:
    """A venue refusing reads (its weight spent, a ban, an outage) is not asked every tick,
    and no number of failed queries declares the order absent: only the venue's word does."""
    state = state_with(S.SUBMITTED)  # submitted at 2
    d = Driver(cursor="k")
    asked_at: list[int] = []
    now = 0
    while now < 60_000:  # past in_doubt_absent_after_ms (30 s)
        step = ex.step(state, d, Tick(now), CFG)
        d = replace(step.driver, is_polling=False)
        if any(isinstance(r, QueryOrder) for r in step.decision.requests):
            asked_at.append(now)
            failed = ex.step(state, d, QueryFailed(now, C, "VenueUnavailable('weight')"), CFG)
            assert failed.decision.events == ()
            d = failed.driver
        now += 100  # a tick every poll interval
    gaps = {b - a for a, b in itertools.pairwise(asked_at)}
    assert gaps == {CFG.in_doubt_query_after_ms}, gaps  # 500 ms: not every 100 ms tick
    assert asked_at[0] == 600 and len(asked_at) == 119
    assert d.in_doubt_next[C] == asked_at[-1] + CFG.in_doubt_query_after_ms
    # the venue answers at last: absent, old enough → rejected
    d = replace(d, querying=frozenset({C}), in_doubt_next={})
    answer = ex.step(state, d, OrderQueried(now, C, None), CFG)
    assert [type(e).__name__ for e in answer.decision.events] == ["OrderRejected"]


def test_recovery_sends_within_the_configured_window_else_cancels() -> None:
    state = state_with(S.ACCEPTED)  # decided at 1
    assert outcome(S.ACCEPTED, "recover_stale") == "Canceled"  # 10 s later, default 5 s
    wide = replace(CFG, recovery_send_within_ms=20_000)
    step = ex.step(state, Driver(), Recover(10_000), wide)
    assert [type(e).__name__ for e in step.decision.events] == ["OrderSubmitted"]
    assert step.driver.written == {C}
    canceled = ex.step(state, Driver(), Recover(10_000), CFG).decision.events
    assert canceled[0] == OrderCanceled(
        ts_ms=10_000,
        client_order_id=C,
        venue="sim",
        account="main",
        symbol=SYM,
        reason="not sent before restart",
    )


def test_fills_are_deduplicated_and_each_sees_the_ones_before_it() -> None:
    state = state_with(S.ACKNOWLEDGED)
    fills = (fill("t1", "0.6"), fill("t1", "0.6"), fill("t2", "0.4"))
    step = ex.step(state, Driver(is_polling=True), FillsReported(10, fills, "k2"), CFG)
    made = [e for e in step.decision.events if isinstance(e, OrderFilled)]
    assert len(made) == len(step.decision.events)
    assert [(e.fill_id, e.status) for e in made] == [
        ("t1", "PARTIALLY_FILLED"),
        ("t2", "FILLED"),
    ]
    assert step.driver.cursor == "k2" and not step.driver.is_polling
    seen = state_with(S.PARTIALLY_FILLED)  # t0 applied
    again = ex.step(
        seen, Driver(is_polling=True), FillsReported(10, (fill("t0", "0.4"),), None), CFG
    )
    assert again.decision.events == ()


def test_pushed_fills_leave_the_poll_its_cursor_and_the_closing_orders_alone() -> None:
    state = state_with(S.ACKNOWLEDGED)
    d = Driver(cursor="k1", is_polling=True, closing={C: "flatten"})
    pushed = ex.step(state, d, FillsPushed(10, (fill("t1", "0.6"), fill("t1", "0.6"))), CFG)
    assert [(type(e).__name__, e.fill_id) for e in pushed.decision.events] == [
        ("OrderFilled", "t1")
    ]
    assert pushed.driver == d and pushed.decision.requests == ()
    applied = apply(state, pushed.decision.events[0])
    # the poll in flight returns the same trade: not applied twice; it closes the order
    polled = ex.step(applied, d, FillsReported(20, (fill("t1", "0.6"),), "k2"), CFG)
    assert [type(e).__name__ for e in polled.decision.events] == ["OrderCanceled"]
    assert polled.driver.cursor == "k2" and not polled.driver.is_polling
    # and the stream sending it again is nothing
    assert ex.step(applied, Driver(), FillsPushed(30, (fill("t1", "0.6"),)), CFG).decision == (
        ex.step(applied, Driver(), FillsPushed(30, ()), CFG).decision
    )


def test_a_foreign_fill_is_on_the_account_its_report_names() -> None:
    foreign = replace(fill("t7", "0.3", coid="web-manual-1"), account="desk")
    step = ex.step(
        state_with(S.ACKNOWLEDGED), Driver(is_polling=True), FillsReported(10, (foreign,), "k"), CFG
    )
    [ev] = step.decision.events
    assert isinstance(ev, OrderFilled)
    assert (ev.client_order_id, ev.venue, ev.account, ev.signal_id) == (
        "web-manual-1",
        "sim",
        "desk",
        "",
    )


def test_a_confirmed_cancel_closes_the_order_after_a_poll_issued_after_the_answer() -> None:
    state = state_with(S.ACKNOWLEDGED, reason="ttl")
    # a poll is in flight when the venue confirms the TTL cancel
    d = Driver(cancelling={C: "ttl"}, is_polling=True)
    answered = ex.step(state, d, CancelAnswered(10, C, VenueOrderStatus.CANCELED), CFG)
    assert answered.decision.requests == ()
    older = ex.step(state, answered.driver, FillsReported(20, (), "k"), CFG)
    assert older.decision.events == ()  # that poll may predate the cancel
    assert [type(r).__name__ for r in older.decision.requests] == ["PollFills"]
    newer = ex.step(state, older.driver, FillsReported(30, (fill("t9", "0.2"),), "k"), CFG)
    assert [type(e).__name__ for e in newer.decision.events] == ["OrderFilled", "OrderExpired"]
    assert newer.driver.closing == {} and not newer.driver.is_polling


def test_a_failed_poll_keeps_the_cancels_waiting_for_the_next_one() -> None:
    d = Driver(closing={C: "flatten"}, closing_after_poll={ClientOrderId("c2"): "ttl"})
    step = ex.step(state_with(S.ACKNOWLEDGED), replace(d, is_polling=True), PollFailed(5, "x"), CFG)
    assert step.driver.closing == {C: "flatten", ClientOrderId("c2"): "ttl"}
    assert not step.driver.is_polling


def test_a_failed_cancel_is_retried_after_the_retry_delay() -> None:
    state = state_with(S.ACKNOWLEDGED, reason="ttl")  # expires at 60 001
    failed = ex.step(state, CANCELLING_TTL, CancelFailed(61_000, C, "timeout"), CFG)
    soon = ex.step(state, failed.driver, Tick(61_500), CFG)
    assert not any(type(r).__name__ == "CancelOrder" for r in soon.decision.requests)
    assert soon.decision.next_timer_ms == 62_000
    later = ex.step(state, failed.driver, Tick(62_000), CFG)
    assert any(type(r).__name__ == "CancelOrder" for r in later.decision.requests)
    assert later.decision.events == ()  # requested already: not written twice


def test_the_next_wake_up_is_the_earliest_deadline() -> None:
    state = state_with(S.SUBMITTED)  # submitted at 2: first query due at 502
    assert ex.step(state, Driver(cursor="k"), Tick(100), CFG).decision.next_timer_ms == 502
    acked = state_with(S.ACKNOWLEDGED)  # expires at 60 001
    assert ex.step(acked, Driver(cursor="k"), Tick(100), CFG).decision.next_timer_ms == 60_001


def test_late_fill_window_and_watched_symbols_decide_what_is_polled() -> None:
    closed = state_with(S.FILLED)
    watched = ex.step(closed, Driver(cursor="k"), WatchSymbol(1_000, "ETH/USDT"), CFG).driver
    assert ex.polled_symbols(closed, watched, CFG, 5_000) == {"ETH/USDT"}
    assert ex.polled_symbols(closed, watched, CFG, 11_001) == frozenset()
    assert ex.polled_symbols(state_with(S.ACKNOWLEDGED), Driver(), CFG, 0) == {SYM}


# --- a seeded fake-clock simulation against the exchange engine -----------------------------

T0 = 1_700_000_000_000
SIM_CFG = ExecConfig(venue="sim", in_doubt_absent_after_ms=5_000, late_fill_window_ms=2_000)
SIM_SYMBOL = "BTCUSDT"
STEP_MS = 10
POLL_MS = 50


def _accepted(coid: str, now: int, rng: random.Random, book: Book) -> OrderAccepted:
    side = rng.choice([Side.BUY, Side.SELL])
    qty = Decimal(rng.randint(2, 8)) / 1000
    limit: Decimal | None = None
    if rng.random() < 0.5:  # a limit order: marketable, at the touch or resting below it
        away = Decimal(rng.choice([-3, 0, 2, 6])) / 10_000
        ref = book.ask if side is Side.BUY else book.bid
        raw = ref * (1 + away if side is Side.BUY else 1 - away)
        limit = raw.quantize(Decimal("0.1"))
    return OrderAccepted(
        ts_ms=now,
        client_order_id=ClientOrderId(coid),
        venue="sim",
        account="main",
        symbol=SIM_SYMBOL,
        signal_id=f"sig-{coid}",
        cmd_seq=int(coid.removeprefix("o")),
        side=side,
        order_type=OrderType.MARKET if limit is None else OrderType.LIMIT,
        qty=qty,
        limit_price=limit,
        is_reduce_only=False,
        intent_type=IntentType.BUY_SETUP if side is Side.BUY else IntentType.SELL_SETUP,
        expires_at_ms=now + rng.randint(500, 8_000),
        t_signal=now,
        t_ingress=now,
    )


class Sim:
    """The driver's core, the folded state and the engine on one fake clock. Every request
    is answered after a random latency; with `fault` > 0 some answers are lost (the call took
    effect or not), some calls fail, some places reach the venue late, some polls repeat
    trades already reported."""

    def __init__(self, seed: int, fault: float) -> None:
        self.rng = random.Random(seed)
        self.fault = fault
        self.engine = Engine(
            EngineConfig(seed=seed, origin_ms=T0, fill_slices=3, slice_interval_ms=200)
        )
        self.state = apply(State(), genesis(ts=T0))
        self.driver = Driver()
        self.now = T0
        self.queue: list[tuple[int, int, int, Callable[[], Input | None]]] = []
        self.gen = 0
        """The instance's life: answers to an earlier one are lost (a restart)."""
        self.n = 0
        self.placed: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()
        self.next_tick = T0

    # the shell's part: step, fold the events, run the requests
    def feed(self, inp: Input) -> None:
        self.seen[type(inp).__name__] += 1
        step = ex.step(self.state, self.driver, inp, SIM_CFG)
        written = step.driver.written - self.driver.written
        self.driver = step.driver
        for ev in step.decision.events:
            self.state = apply(self.state, ev)  # an illegal lifecycle event raises here
        if written:  # the write-ahead becomes durable a little later
            self.later(self.rng.randint(1, 20), partial(Durable, self.now, tuple(written)))
        for req in step.decision.requests:
            self.run(req)
        if isinstance(inp, Tick):
            nxt = step.decision.next_timer_ms
            self.next_tick = self.now + POLL_MS if nxt is None else min(nxt, self.now + POLL_MS)

    def later(self, delay: int, answer: Callable[[], Input | None], gen: int | None = None) -> None:
        life = self.gen if gen is None else gen
        heapq.heappush(self.queue, (self.now + delay, self.n, life, answer))
        self.n += 1

    def lost(self) -> bool:
        return self.rng.random() < self.fault

    def run(self, req: Request) -> None:
        slow = self.rng.random() < 0.1  # a slow answer: past the in-doubt query delay
        delay = self.rng.randint(300, 1_500) if slow else self.rng.randint(1, 150)
        match req:
            case PlaceOrder(request=r):
                self.placed[r.client_order_id] += 1
                # the venue takes it halfway; the answer arrives at the end
                self.later(delay // 2, partial(self.answer_later, delay - delay // 2, r, self.gen))
            case QueryOrder(coid=coid):
                self.later(delay, partial(self.query, coid))
            case CancelOrder(coid=coid):
                self.later(delay, partial(self.cancel, coid))
            case PollFills(cursor=cursor):
                self.later(delay, partial(self.poll, cursor))

    # the venue's part
    def engine_place(self, r: PlaceRequest) -> SimOrder:
        is_limit = r.limit_price is not None
        return self.engine.place_order(
            OrderRequest(
                SIM_SYMBOL,
                r.side.value,
                r.order_type.value,
                str(r.qty),
                str(r.limit_price) if is_limit else None,
                client_order_id=r.client_order_id,
                time_in_force="GTC" if is_limit else None,
            ),
            self.now,
        )

    def answer_later(self, delay: int, r: PlaceRequest, gen: int) -> None:
        answer = self.place(r)
        self.later(delay, lambda: answer, gen)

    def place(self, r: PlaceRequest) -> Input:
        coid = r.client_order_id
        if self.lost():  # timed out before it was sent, or the answer was lost
            if self.rng.random() < 0.5:
                with contextlib.suppress(SimError):
                    self.engine_place(r)
            return PlaceUnknown(self.now, coid, "outcome unknown (timeout)")
        if self.lost():  # still on its way when we gave up: it reaches the venue later
            self.later(self.rng.randint(1, 2_000), partial(self.arrives_late, r))
            return PlaceUnknown(self.now, coid, "outcome unknown (timeout)")
        if self.lost():
            return PlaceRejected(self.now, coid, "connection refused", is_unavailable=True)
        try:
            order = self.engine_place(r)
        except SimError as err:
            return PlaceRejected(self.now, coid, err.msg, is_duplicate=err.code == -4116)
        return PlaceAcked(self.now, coid, VenueOrderId(str(order.order_id)))

    def arrives_late(self, r: PlaceRequest) -> None:
        with contextlib.suppress(SimError):
            self.engine_place(r)

    def venue_order(self, coid: str) -> SimOrder | None:
        oid = self.engine.by_client_id.get(coid)
        return None if oid is None else self.engine.orders[oid]

    def query(self, coid: ClientOrderId) -> Input:
        if self.lost():
            return QueryFailed(self.now, coid, "timeout")
        o = self.venue_order(coid)
        if o is None:
            return OrderQueried(self.now, coid, None)
        rep = OrderReport(
            venue="sim",
            account="main",
            symbol=SIM_SYMBOL,
            client_order_id=coid,
            venue_order_id=VenueOrderId(str(o.order_id)),
            status=VenueOrderStatus(o.status),
            qty=o.orig_qty,
            filled_qty=o.executed_qty,
            ts_ms=o.update_time_ms,
        )
        return OrderQueried(self.now, coid, rep)

    def cancel(self, coid: ClientOrderId) -> Input:
        if self.lost():
            return CancelFailed(self.now, coid, "timeout")
        try:
            self.engine.cancel_order(SIM_SYMBOL, None, coid, self.now)
            status = VenueOrderStatus.CANCELED
        except SimError:
            o = self.venue_order(coid)
            status = VenueOrderStatus.NOT_FOUND if o is None else VenueOrderStatus(o.status)
        if self.lost():
            return CancelFailed(self.now, coid, "answer lost")
        return CancelAnswered(self.now, coid, status)

    def poll(self, cursor: str | None) -> Input:
        if self.lost():
            return PollFailed(self.now, "timeout")
        start = int(cursor or 0)
        if self.lost():
            start = max(0, start - 3)  # trades reported again
        trades = self.engine.trades[start:]
        fills = tuple(
            FillReport(
                venue="sim",
                account="main",
                symbol=SIM_SYMBOL,
                client_order_id=ClientOrderId(self.engine.orders[t.order_id].client_order_id),
                venue_order_id=VenueOrderId(str(t.order_id)),
                trade_id=str(t.trade_id),
                side=Side(t.side),
                price=t.price,
                qty=t.qty,
                fee=t.commission,
                fee_currency=t.commission_asset,
                ts_ms=t.time_ms,
            )
            for t in trades
        )
        return FillsReported(self.now, fills, str(len(self.engine.trades)))

    def restart(self, unsent: int) -> None:
        """The instance dies and a new one leads from the folded state alone: answers in
        flight are lost (what they did at the venue stays done); `unsent` orders had been
        accepted, their write-ahead never written."""
        book = self.engine.book(SIM_SYMBOL, self.now)
        for _ in range(unsent):
            coid = f"o{self.n}"
            self.n += 1
            self.state = apply(self.state, _accepted(coid, self.now, self.rng, book))
        self.gen += 1
        self.driver = Driver()
        self.feed(Recover(self.now))

    # the clock
    def advance(self, until: int, *, orders_per_s: float, cancels_per_s: float) -> None:
        while self.now < until:
            self.now += STEP_MS
            self.engine.tick(self.now)
            while self.queue and self.queue[0][0] <= self.now:
                _, _, gen, answer = heapq.heappop(self.queue)
                inp = answer()  # the venue does what it was asked, whoever asked
                if inp is not None and gen == self.gen:
                    self.feed(inp)
            if self.rng.random() < orders_per_s * STEP_MS / 1000:
                coid = f"o{self.n}"
                book = self.engine.book(SIM_SYMBOL, self.now)
                self.state = apply(self.state, _accepted(coid, self.now, self.rng, book))
                self.feed(WriteAhead(self.now, (ClientOrderId(coid),)))
            open_now = [o.client_order_id for o in self.state.iter_open_orders()]
            if open_now and self.rng.random() < cancels_per_s * STEP_MS / 1000:
                self.feed(CancelWanted(self.now, self.rng.choice(open_now), "flatten"))
            if self.now >= self.next_tick:
                self.feed(Tick(self.now))


def check_invariants(sim: Sim) -> None:
    state, engine, d = sim.state, sim.engine, sim.driver
    assert max(sim.placed.values()) == 1, "an order was sent twice"
    assert not [r for r in engine.rejections if r.code == -4116], "a client id reached twice"
    assert not d.written and not d.placing and not d.querying and not d.cancelling
    assert not d.closing and not d.closing_after_poll
    assert not engine.open, "an order of ours is still open at the venue past its TTL"
    for coid, order in state.orders.items():
        assert order.status not in (S.ACCEPTED, S.SUBMITTED), f"{coid} never resolved"
        venue = sim.venue_order(coid)
        if venue is None:
            assert order.status in (S.REJECTED, S.CANCELED) and order.filled_qty == 0, coid
            continue
        assert order.filled_qty == venue.executed_qty, coid
        expected = {"FILLED": {S.FILLED}, "CANCELED": {S.CANCELED, S.EXPIRED}}
        assert order.status in expected[venue.status], (coid, order.status, venue.status)
    assert len(state.seen_fills) == len(engine.trades), "a trade missed or applied twice"
    assert state.anomalies == 0, "a fill came after its order was closed here"
    ours = state.position("sim", SIM_SYMBOL).qty
    assert ours == engine.positions[SIM_SYMBOL].amount, "positions differ from the fills"


def simulate(seed: int, fault: float, restarts: int = 0) -> Sim:
    sim = Sim(seed, fault)
    at = sorted(sim.rng.randint(T0 + 2_000, T0 + 28_000) for _ in range(restarts))
    for t in at:
        sim.advance(t, orders_per_s=3, cancels_per_s=0.5)
        sim.restart(unsent=sim.rng.randint(0, 2))
    sim.advance(T0 + 30_000, orders_per_s=3, cancels_per_s=0.5)
    sim.fault = 0.0  # calls succeed from now on: everything in doubt must resolve
    sim.advance(T0 + 50_000, orders_per_s=0, cancels_per_s=0)
    return sim


@pytest.mark.parametrize("seed", range(6))
def test_simulated_orders_without_faults_match_the_venue(seed: int) -> None:
    sim = simulate(seed, fault=0.0)
    check_invariants(sim)
    assert sim.seen["PlaceUnknown"] == 0 and len(sim.state.orders) > 50


@pytest.mark.parametrize("seed", range(12))
def test_simulated_orders_with_lost_answers_and_failures_match_the_venue(seed: int) -> None:
    sim = simulate(seed, fault=0.08)
    check_invariants(sim)
    assert sim.seen["PlaceUnknown"] > 0 and sim.seen["QueryFailed"] + sim.seen["PollFailed"] > 0


@pytest.mark.parametrize("seed", range(8))
def test_simulated_restarts_never_send_an_order_twice(seed: int) -> None:
    """Restarts mid-flight: orders sent or not, answers lost, write-aheads not yet durable;
    the next driver resolves what is in doubt by query and sends only what was never sent."""
    sim = simulate(seed, fault=0.05, restarts=3)
    check_invariants(sim)
    assert sim.seen["Recover"] == 3


def test_the_simulation_reaches_every_outcome() -> None:
    """Across seeds: partial fills, TTL expiries, cancels, in-doubt found and absent orders."""
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for seed in range(6):
        sim = simulate(seed, fault=0.08)
        for o in sim.state.orders.values():
            statuses[o.status.name + ("_partly" if 0 < o.filled_qty < o.qty else "")] += 1
            reasons[o.last_reason.split(" ")[0]] += 1
    assert {"FILLED", "EXPIRED", "CANCELED", "REJECTED"} <= set(statuses)
    assert statuses["CANCELED_partly"] + statuses["EXPIRED_partly"] > 0
    assert reasons["absent"] > 0 and reasons["venue"] + reasons["venue:"] > 0


# --- the tick's pass over the open orders ---------------------------------------------------


def test_a_tick_visits_the_open_orders_only_when_something_may_be_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst holds hundreds of orders in flight and a tick comes with every venue answer:
    between the deadlines the last pass found, a tick only starts the fill poll. An order
    turned in doubt brings the pass forward; an order this driver never wrote ahead is
    still found within `RESCAN_MS`."""
    passes: list[int] = []
    mine = ex._mine

    def counted(state: State, cfg: ExecConfig) -> list[Order]:
        passes.append(len(mine(state, cfg)))
        return mine(state, cfg)

    monkeypatch.setattr(ex, "_mine", counted)
    acked = state_with(S.ACKNOWLEDGED)  # expires at 60 001
    first = ex.step(acked, Driver(cursor="k"), Tick(100), CFG)
    assert passes == [1] and first.driver.scan_at_ms == 100 + ex.RESCAN_MS
    d = replace(first.driver, is_polling=False)
    quiet = ex.step(acked, d, Tick(200), CFG)
    assert passes == [1]  # nothing due before 1 100: no pass
    assert [type(r).__name__ for r in quiet.decision.requests] == ["PollFills"]
    assert quiet.decision.next_timer_ms == 100 + ex.RESCAN_MS
    ex.step(acked, d, Tick(100 + ex.RESCAN_MS), CFG)
    assert passes == [1, 1]  # the pass at least every RESCAN_MS

    # a place whose outcome is unknown: the next tick passes and queries it when due
    placing = replace(d, placing=frozenset({C}))
    submitted = state_with(S.SUBMITTED)  # submitted at 2
    unknown = ex.step(submitted, placing, PlaceUnknown(600, C, "timeout"), CFG)
    assert unknown.driver.scan_at_ms == 0
    asked = ex.step(submitted, unknown.driver, Tick(601), CFG)
    assert QueryOrder(C, SYM) in asked.decision.requests

    # an in-doubt order this driver knew nothing of (no write-ahead, no answer): found by
    # the pass that comes at the latest RESCAN_MS after the last one
    stale = ex.step(submitted, d, Tick(700), CFG)
    assert not any(isinstance(r, QueryOrder) for r in stale.decision.requests)
    found = ex.step(submitted, d, Tick(100 + ex.RESCAN_MS), CFG)
    assert QueryOrder(C, SYM) in found.decision.requests


def test_a_write_ahead_brings_the_pass_forward_to_the_orders_time_to_live() -> None:
    accepted_state = state_with(S.ACCEPTED)  # expires at 60 001
    d = Driver(cursor="k", scan_at_ms=90_000)
    step = ex.step(accepted_state, d, WriteAhead(10, (C,)), CFG)
    assert step.driver.scan_at_ms == 60_001
    failed = ex.step(
        state_with(S.SUBMITTED), replace(d, cancelling={C: "ttl"}), CancelFailed(70, C, "x"), CFG
    )
    assert failed.driver.scan_at_ms == 70 + CFG.cancel_retry_ms  # the retry's pass


def test_an_order_whose_place_answer_is_awaited_wakes_the_timer_not_the_next_pass() -> None:
    submitted = state_with(S.SUBMITTED)  # submitted at 2: first query at 502 if in doubt
    step = ex.step(submitted, Driver(cursor="k", placing=frozenset({C})), Tick(100), CFG)
    assert step.decision.next_timer_ms == 502
    assert step.driver.scan_at_ms == 100 + ex.RESCAN_MS  # its answer brings the pass
