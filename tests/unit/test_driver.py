"""The execution driver's shell (`runtime/driver.py`) with a scripted venue and an in-memory
event log: the loop steps answers, runs requests after durability, honours the venue gate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

import pytest

from tests.builders import accepted, acknowledged, genesis, submitted
from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.adapters.venue.base import CancelResult, Placed, Venue, VenueUnknownOutcome
from titan_exec.api.metrics import Metrics
from titan_exec.config import OrdersConfig
from titan_exec.core.events import Event
from titan_exec.core.model import ClientOrderId, OrderStatus, Side, VenueOrderId
from titan_exec.core.reports import FillReport, OrderReport, PlaceRequest, VenueOrderStatus
from titan_exec.core.state import State, apply
from titan_exec.runtime.driver import ExecutionDriver, exec_config
from titan_exec.runtime.market import MarketData

C = ClientOrderId("c1")
SYM = "BTC/USDT"


class Log:
    """The part of `EventLog` the driver uses: apply now, durable at once."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.state = State()
        self.written: list[Event] = []
        for ev in events:
            self.state = apply(self.state, ev)

    def append(self, events: Sequence[Event]) -> asyncio.Future[None]:
        for ev in events:
            self.state = apply(self.state, ev)
            self.written.append(ev)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


class ScriptedVenue:
    name = "sim"
    account = "main"

    def __init__(self, *, place_fails: bool = False) -> None:
        self.place_fails = place_fails
        self.placed: list[PlaceRequest] = []
        self.canceled: list[str] = []
        self.fills: list[FillReport] = []

    async def place(self, req: PlaceRequest) -> Placed:
        self.placed.append(req)
        if self.place_fails:
            raise VenueUnknownOutcome("response lost")
        return Placed(VenueOrderId("v1"), VenueOrderStatus.NEW)

    async def cancel(self, symbol: str, coid: ClientOrderId) -> CancelResult:
        self.canceled.append(coid)
        return CancelResult(VenueOrderStatus.CANCELED)

    async def query_order(self, symbol: str, coid: ClientOrderId) -> OrderReport | None:
        if not self.placed:
            return None
        return OrderReport(
            "sim", "main", SYM, coid, VenueOrderId("v1"), VenueOrderStatus.NEW, Decimal(1),
            Decimal(0), 5,
        )  # fmt: skip

    async def fills_since(
        self, cursor: str | None, symbols: frozenset[str] | None = None
    ) -> tuple[list[FillReport], str | None]:
        start = int(cursor or 0)
        return self.fills[start:], str(len(self.fills))

    async def wait_activity(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)


class PushingVenue(ScriptedVenue):
    """A venue that pushes fills (`base.PushesFills`), its polls answering nothing new."""

    def __init__(self) -> None:
        super().__init__()
        self.listener: Any = None
        self.buffer: list[FillReport] = []

    def set_fill_listener(self, listener: Any) -> None:
        self.listener = listener

    def take_pushed_fills(self) -> list[FillReport]:
        taken, self.buffer = self.buffer, []
        return taken

    def push(self, *fills: FillReport) -> None:
        self.buffer += fills
        if self.listener is not None:
            self.listener()


def clock() -> int:
    return int(time.monotonic() * 1000)


def driver(log: Log, venue: ScriptedVenue, **kw: Any) -> ExecutionDriver:
    return ExecutionDriver(
        venue=cast(Venue, venue),
        events=cast(EventLog, log),
        market=MarketData(clock),
        metrics=Metrics(),
        cfg=OrdersConfig(poll_interval_ms=5, in_doubt_query_after_ms=10),
        account="main",
        clock=clock,
        **kw,
    )


def fill(qty: str) -> FillReport:
    return FillReport(
        "sim", "main", SYM, C, VenueOrderId("v1"), "t1", Side.BUY, Decimal(100), Decimal(qty),
        Decimal(0), "USDT", 6,
    )  # fmt: skip


async def until(cond: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.005)


async def test_an_order_is_written_ahead_sent_once_and_acknowledged() -> None:
    log, venue = Log([genesis(), accepted("c1", ts=clock())]), ScriptedVenue()
    d = driver(log, venue)
    fut = d.write_ahead((C,))
    assert fut is not None and log.state.orders[C].status is OrderStatus.SUBMITTED
    await fut
    await d.send_written_ahead(C)
    await d.send_written_ahead(C)  # sent already: not again
    assert [r.client_order_id for r in venue.placed] == [C]
    assert log.state.orders[C].status is OrderStatus.ACKNOWLEDGED
    assert d.metrics.orders.labels("OrderAcknowledged")._value.get() == 1
    await d.stop()


async def test_an_order_started_is_sent_once_without_its_caller_waiting() -> None:
    log, venue = Log([genesis(), accepted("c1", ts=clock())]), ScriptedVenue()
    d = driver(log, venue)
    await cast(asyncio.Future[None], d.write_ahead((C,)))
    d.start_written_ahead((C,))  # returns at once: the intake acks the command meanwhile
    assert log.state.orders[C].status is OrderStatus.SUBMITTED
    d.start_written_ahead((C,))  # on its way already: not again
    await until(lambda: log.state.orders[C].status is OrderStatus.ACKNOWLEDGED)
    assert [r.client_order_id for r in venue.placed] == [C]
    await d.stop()


async def test_a_closed_venue_gate_sends_nothing_and_leaves_the_order_in_doubt() -> None:
    log, venue = Log([genesis(), accepted("c1", ts=clock())]), ScriptedVenue()
    d = driver(log, venue, may_write_venue=lambda: False)
    await cast(asyncio.Future[None], d.write_ahead((C,)))
    await d.send_written_ahead(C)
    assert venue.placed == [] and log.state.orders[C].status is OrderStatus.SUBMITTED
    await d.stop()


async def test_an_order_found_submitted_after_a_restart_is_resolved_by_query() -> None:
    log = Log([genesis(), accepted("c1", ts=clock()), submitted("c1", ts=clock())])
    venue = ScriptedVenue()
    d = driver(log, venue)
    await d.recover()
    await d.send_written_ahead(C)
    assert venue.placed == []
    tracker = asyncio.create_task(d.track())
    await asyncio.sleep(0.05)
    assert log.state.orders[C].status is OrderStatus.SUBMITTED  # the venue does not know it
    venue.placed.append(cast(PlaceRequest, None))  # now it does
    await until(lambda: log.state.orders[C].status is OrderStatus.ACKNOWLEDGED)
    venue.fills.append(fill("1"))
    await until(lambda: log.state.orders[C].status is OrderStatus.FILLED)
    tracker.cancel()
    await d.stop()


async def test_an_unknown_outcome_is_queried_and_a_cancel_closes_after_the_fills() -> None:
    log, venue = Log([genesis(), accepted("c1", ts=clock())]), ScriptedVenue(place_fails=True)
    d = driver(log, venue)
    tracker = asyncio.create_task(d.track())
    await cast(asyncio.Future[None], d.write_ahead((C,)))
    await d.send_written_ahead(C)
    assert log.state.orders[C].status is OrderStatus.SUBMITTED
    await until(lambda: log.state.orders[C].status is OrderStatus.ACKNOWLEDGED)
    venue.fills.append(fill("0.4"))
    d.request_cancel(C, "flatten")
    await until(lambda: log.state.orders[C].status is OrderStatus.CANCELED)
    assert venue.canceled == [C] and log.state.orders[C].filled_qty == Decimal("0.4")
    names = [type(e).__name__ for e in log.written]
    assert names.index("OrderFilled") < names.index("OrderCanceled")
    await d.poll_fills()  # a forced poll returns once recorded
    tracker.cancel()
    await d.stop()


async def test_a_pushed_fill_is_appended_inside_the_venues_call_once() -> None:
    log = Log([genesis(), accepted("c1", ts=clock()), submitted("c1", ts=clock())])
    log.append([acknowledged("c1", ts=clock())])
    venue = PushingVenue()
    d = driver(log, venue)
    tracking = asyncio.ensure_future(d.track())
    try:
        await until(lambda: venue.listener is not None)
        before = len(log.written)
        venue.push(fill("0.4"))  # no await: appended before push returns
        assert [type(e).__name__ for e in log.written[before:]] == ["OrderFilled"]
        assert log.state.orders[C].filled_qty == Decimal("0.4")
        venue.push(fill("0.4"))  # the stream sends it again: nothing
        assert len(log.written) == before + 1
        await d.poll_fills()  # a poll beside it changes nothing
        assert len(log.written) == before + 1
    finally:
        tracking.cancel()
        await asyncio.gather(tracking, return_exceptions=True)
    assert venue.listener is None  # a stopped driver no longer listens


class RecordedFillsVenue(ScriptedVenue):
    """A venue that skips trades recorded as fills (`base.KnowsRecordedFills`)."""

    def __init__(self) -> None:
        super().__init__()
        self.is_recorded: Any = None

    def set_recorded_fills(self, is_recorded: Any) -> None:
        self.is_recorded = is_recorded


async def test_a_tracking_driver_tells_the_venue_which_trades_are_recorded_fills() -> None:
    log = Log([genesis(), accepted("c1", ts=clock()), submitted("c1", ts=clock())])
    log.append([acknowledged("c1", ts=clock())])
    venue = RecordedFillsVenue()
    d = driver(log, venue)
    tracking = asyncio.ensure_future(d.track())
    try:
        await until(lambda: venue.is_recorded is not None)
        assert not venue.is_recorded("t1", 6)
        venue.fills.append(fill("0.4"))  # trade t1
        await until(lambda: log.state.orders[C].filled_qty == Decimal("0.4"))
        assert venue.is_recorded("t1", 6)  # the state as of now
        assert not venue.is_recorded("t2", 6)
    finally:
        tracking.cancel()
        await asyncio.gather(tracking, return_exceptions=True)
    assert venue.is_recorded is None  # not tracking: nothing to skip by


async def test_a_pushed_fill_that_cannot_be_appended_ends_the_loop_with_the_error() -> None:
    log = Log([genesis(), accepted("c1", ts=clock())])
    venue = PushingVenue()
    d = driver(log, venue)

    def broken(events: Sequence[Event]) -> asyncio.Future[None]:
        raise RuntimeError("event log is broken")

    tracking = asyncio.ensure_future(d.track())
    await until(lambda: venue.listener is not None)
    log.append = broken  # type: ignore[method-assign]
    venue.push(fill("0.4"))  # the venue's read loop sees no exception
    with pytest.raises(RuntimeError, match="event log is broken"):
        await asyncio.wait_for(tracking, 5)
    assert venue.listener is None


def test_the_core_takes_its_timings_from_the_orders_settings() -> None:
    cfg = OrdersConfig(
        in_doubt_query_after_ms=7, in_doubt_absent_after_ms=70, recovery_send_within_ms=700
    )
    x = exec_config(cfg, venue="sim")
    assert (x.in_doubt_query_after_ms, x.in_doubt_absent_after_ms) == (7, 70)
    assert x.recovery_send_within_ms == 700 and x.venue == "sim"


def test_the_driver_refuses_a_venue_trading_another_account() -> None:
    venue = ScriptedVenue()
    venue.account = "other"
    with pytest.raises(ValueError, match="trades account 'other', not 'main'"):
        driver(Log([genesis()]), venue)
