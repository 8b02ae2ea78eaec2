"""The execution driver's shell: one loop around the pure `core/execution.py`.

Inputs (venue answers, ticks) come through one bounded queue; each is stepped, its events
are appended to the event log at once (applied synchronously, so the next step sees them),
and its requests run once those events are durable, as tasks on lanes: one per (kind,
symbol) — the places of one symbol in order, its queries beside them, fill polls on their
own, each cancel on its own — so one slow symbol never holds another. Each answer comes
back as an input.
Inputs from callers in the same event loop (a decision's write-ahead, a cancel, a watched
symbol) are stepped directly: a step has no await, so the write-ahead of a decision lands in
the same writer batch as the decision.

The venue gate (`may_write_venue`) is checked right before every venue write. Metrics and
log lines are the ones `OrderRunner` had (the order counters by event, fills by venue, venue
calls by operation and outcome, intent→ack and intent→fill).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.adapters.venue.base import (
    KnowsRecordedFills,
    PushesFills,
    Venue,
    VenueError,
)
from titan_exec.api.metrics import Metrics
from titan_exec.config import OrdersConfig
from titan_exec.core import execution as ex
from titan_exec.core import execution_io as io
from titan_exec.core.events import Event, OrderAcknowledged, OrderEvent, OrderFilled
from titan_exec.core.model import ClientOrderId
from titan_exec.core.orders import can_apply
from titan_exec.core.state import State
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.venuecalls import VenueRequests

log = logging.getLogger("titan_exec.runtime.orders")
T = TypeVar("T")

INPUT_QUEUE = 4096
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("event append failed: %r", fut.exception())


def _wake(waiter: asyncio.Future[None], _done: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _count(
    metrics: Metrics,
    ingress_perf: dict[ClientOrderId, float],
    events: Sequence[Event],
    inp: io.Input,
) -> None:
    """The order counters by event, fills by venue, and intent→ack of an acknowledged place."""
    for ev in events:
        if isinstance(ev, OrderFilled):
            metrics.fills.labels(ev.venue).inc()
        else:
            metrics.orders.labels(type(ev).__name__).inc()
        if isinstance(ev, OrderAcknowledged) and isinstance(inp, io.PlaceAcked):
            started = ingress_perf.get(ev.client_order_id)
            if started is not None:
                metrics.intent_to_ack.observe(time.perf_counter() - started)


def exec_config(cfg: OrdersConfig, *, venue: str) -> io.ExecConfig:
    return io.ExecConfig(
        venue=venue,
        in_doubt_query_after_ms=cfg.in_doubt_query_after_ms,
        in_doubt_absent_after_ms=cfg.in_doubt_absent_after_ms,
        recovery_send_within_ms=cfg.recovery_send_within_ms,
    )


def _checked_account(venue: Venue, account: str) -> str:
    if venue.account != account:
        raise ValueError(f"venue {venue.name} trades account {venue.account!r}, not {account!r}")
    return account


class ExecutionDriver:
    def __init__(
        self,
        *,
        venue: Venue,
        events: EventLog,
        market: MarketData,
        metrics: Metrics,
        cfg: OrdersConfig,
        account: str,
        clock: Callable[[], int],
        may_write_venue: Callable[[], bool] | None = None,
    ) -> None:
        self.venue = venue
        self.events = events
        self.market = market
        self.metrics = metrics
        self.cfg = cfg
        self.account = _checked_account(venue, account)
        """The configured account; the venue names it on every report it returns."""
        self.clock = clock
        self.xcfg = exec_config(cfg, venue=venue.name)
        self.driver = io.Driver()
        self.may_write_venue: Callable[[], bool] = may_write_venue or (lambda: True)
        """Checked right before every venue write (place, cancel): the hot-standby lease's
        local deadline closes it the moment leadership can no longer be proven."""
        self.calls = VenueRequests(
            venue=venue, metrics=metrics, cfg=cfg, clock=clock, gate=lambda: self.may_write_venue()
        )
        self.ingress_perf: dict[ClientOrderId, float] = {}
        """perf_counter at command ingress, for intent→ack / intent→fill latency."""
        self._inputs: asyncio.Queue[io.Input | Exception] = asyncio.Queue(maxsize=INPUT_QUEUE)
        """Answers and ticks; an exception (not a venue failure) from a lane ends the loop."""
        self._wake_at: int | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._lanes: dict[str, asyncio.Queue[io.Request]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._placed: dict[ClientOrderId, asyncio.Future[None]] = {}
        self._poll_waiting: list[asyncio.Future[None]] = []
        self._poll_inflight: list[asyncio.Future[None]] = []

    @property
    def state(self) -> State:
        return self.events.state

    # --- what callers use -----------------------------------------------------------------

    def write_ahead(self, coids: tuple[ClientOrderId, ...]) -> asyncio.Future[None] | None:
        """Queue the write-ahead `OrderSubmitted` of accepted orders (in the same writer batch
        as their decision when called right after it); await it, then `send_written_ahead`."""
        return self._step(io.WriteAhead(self.clock(), coids))

    def start_written_ahead(self, coids: tuple[ClientOrderId, ...]) -> None:
        """`send_written_ahead` without waiting for the answers (one symbol's in order)."""
        if mine := tuple(c for c in coids if c in self.driver.written):
            self._ensure_loop()
            self._step(io.Durable(self.clock(), mine))

    async def send_written_ahead(self, coid: ClientOrderId) -> None:
        """Send an order whose write-ahead this driver wrote and the caller saw durable;
        return once the venue's answer is recorded. An order found SUBMITTED after a restart
        is never sent (it is in doubt: resolved by query)."""
        if coid in self.driver.written:
            await self._send((coid,))

    async def recover(self) -> None:
        """After a restart: orders recorded but never sent are sent or canceled."""
        fut = self._step(io.Recover(self.clock()))
        if fut is not None:
            await fut
        await self._send(tuple(self.driver.written))

    def request_cancel(self, coid: ClientOrderId, reason: str) -> None:
        self._ensure_loop()
        self._step(io.CancelWanted(self.clock(), coid, reason))

    def watch_symbol(self, symbol: str) -> None:
        """Poll this symbol's trades too for the late-fill window (a position difference:
        trades of this symbol may be on their way, ours or foreign)."""
        self._step(io.WatchSymbol(self.clock(), symbol))

    def polled_symbols(self) -> frozenset[str]:
        """The symbols whose trades are being polled now."""
        return ex.polled_symbols(self.state, self.driver, self.xcfg, self.clock())

    async def poll_fills(self) -> None:
        """Return once a fill poll issued after this call is recorded (raises if it failed)."""
        self._ensure_loop()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._poll_waiting.append(done)
        await self._inputs.put(io.Tick(self.clock()))
        await done

    async def append_lifecycle(self, ev: OrderEvent) -> bool:
        """Append a lifecycle event (reconciliation's findings) if the order allows it."""
        if not can_apply(self.state.orders[ev.client_order_id], ev):
            return False
        self.metrics.orders.labels(type(ev).__name__).inc()
        await self.events.append([ev])
        return True

    async def venue_call(self, op: str, call: Awaitable[T]) -> T:
        """A venue call, timed out after `venue_timeout_ms`, counted and timed by outcome."""
        return await self.calls.call(op, call)

    async def track(self) -> None:
        """The loop, its ticker (venue activity or the poll interval) and the fills a venue
        pushes; ends with a bug or a broken event log (raised), or when cancelled."""
        loop = self._ensure_loop()
        ticker = asyncio.create_task(self._ticker(), name="order-ticker")
        _hook(self.venue, self._on_pushed, partial(_is_recorded, self.events, self.venue.name))
        try:
            done, _ = await asyncio.wait((loop, ticker), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
        finally:
            _hook(self.venue, None, None)
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)

    def _on_pushed(self) -> None:
        """Fills pushed (called from the venue's read loop: no await, never raises): stepped
        now. A failure ends the loop as a lane's does (a restart's sweep finds them again)."""
        assert isinstance(self.venue, PushesFills)
        if fills := self.venue.take_pushed_fills():
            try:
                self._step(io.FillsPushed(self.clock(), tuple(fills)))
            except Exception as err:
                with contextlib.suppress(asyncio.QueueFull):
                    self._inputs.put_nowait(err)

    async def stop(self) -> None:
        _hook(self.venue, None, None)
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for fut in (*self._placed.values(), *self._poll_waiting, *self._poll_inflight):
            fut.cancel()

    # --- the loop -------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.Task[None]:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="order-driver")
        return self._loop_task

    async def _ticker(self) -> None:
        poll_s = self.cfg.poll_interval_ms / 1000
        while True:
            try:
                await self.venue.wait_activity(poll_s)
            except VenueError as err:
                log.warning("order tracking: venue error %r; retrying", err)
                await asyncio.sleep(poll_s)
            await self._inputs.put(io.Tick(self.clock()))

    async def _loop(self) -> None:
        try:
            while True:
                now = self.clock()
                timeout = None if self._wake_at is None else max(0, self._wake_at - now) / 1000
                try:
                    async with asyncio.timeout(timeout):
                        inp = await self._inputs.get()
                except TimeoutError:
                    inp = io.Tick(self.clock())
                if isinstance(inp, Exception):
                    raise inp
                self._step(inp)
        except BaseException as err:
            for fut in (*self._placed.values(), *self._poll_waiting, *self._poll_inflight):
                if fut.done():
                    continue
                if isinstance(err, Exception):
                    fut.set_exception(err)  # a bug or a broken event log: the callers see it
                else:
                    fut.cancel()
            raise

    def _step(self, inp: io.Input) -> asyncio.Future[None] | None:
        """Step, append the events (no await in here), then run the requests once the events
        are durable. The append's future is returned."""
        step = ex.step(self.state, self.driver, inp, self.xcfg)
        d = step.decision
        for note in d.notes:
            log.log(LEVELS[note.level], "%s", note.text)
        fut = self._append(d.events, inp) if d.events else None
        self.driver = step.driver  # after the append: an event that cannot be written raised
        if isinstance(inp, io.Tick):
            self._wake_at = d.next_timer_ms
        if d.requests:
            if fut is None:
                self._dispatch(d.requests)
            else:
                self._spawn(self._after(fut, d.requests, d.events), "order-requests")
        elif fut is not None and any(isinstance(e, OrderFilled) for e in d.events):
            self._spawn(self._after(fut, (), d.events), "order-fills")
        self._settle(inp, fut)
        return fut

    def _append(self, events: Sequence[Event], inp: io.Input) -> asyncio.Future[None]:
        _count(self.metrics, self.ingress_perf, events, inp)
        fut = self.events.append(events)
        fut.add_done_callback(_log_failure)
        return fut

    async def _after(
        self, fut: asyncio.Future[None], requests: Sequence[io.Request], events: Sequence[Event]
    ) -> None:
        try:
            await fut
        except Exception:
            return  # logged by `_log_failure`; the broken log stops the instance
        for ev in events:
            if isinstance(ev, OrderFilled):
                started = self.ingress_perf.pop(ev.client_order_id, None)
                if started is not None:
                    self.metrics.intent_to_fill.observe(time.perf_counter() - started)
        self._dispatch(requests)

    def _settle(self, inp: io.Input, fut: asyncio.Future[None] | None) -> None:
        """Wake the callers waiting for this answer."""
        waiters: list[asyncio.Future[None]] = []
        error: Exception | None = None
        match inp:
            case io.PlaceAcked() | io.PlaceRejected() | io.PlaceUnknown():
                placed = self._placed.pop(inp.coid, None)
                waiters = [placed] if placed is not None else []
            case io.FillsReported() | io.PollFailed():
                waiters, self._poll_inflight = self._poll_inflight, []
                if isinstance(inp, io.PollFailed):
                    error = VenueError(inp.detail)
        for w in waiters:
            if w.done():
                continue
            if error is not None:
                w.set_exception(error)
            elif fut is None:
                w.set_result(None)
            else:
                fut.add_done_callback(partial(_wake, w))
        if isinstance(inp, io.FillsReported | io.PollFailed) and self._poll_waiting:
            with contextlib.suppress(asyncio.QueueFull):
                self._inputs.put_nowait(io.Tick(self.clock()))  # the poll they wait for

    async def _send(self, coids: tuple[ClientOrderId, ...]) -> None:
        if not coids:
            return
        self._ensure_loop()
        loop = asyncio.get_running_loop()
        self._step(io.Durable(self.clock(), coids))
        waiting = []
        for coid in coids:
            if coid in self.driver.placing:
                waiting.append(self._placed.setdefault(coid, loop.create_future()))
        await asyncio.gather(*waiting)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the requests ---------------------------------------------------------------------

    def _dispatch(self, requests: Sequence[io.Request]) -> None:
        """Places of one symbol in order on its lane, its queries on another, fill polls on
        their own; each cancel at once on its own (a slow cancel holds nothing back)."""
        for req in requests:
            if isinstance(req, io.CancelOrder):
                self._spawn(self._answer(req), f"cancel-{req.coid}")
                continue
            if isinstance(req, io.PollFills):
                self._poll_inflight += self._poll_waiting
                self._poll_waiting = []
            kind = "query" if isinstance(req, io.QueryOrder) else "place"
            key = "fills" if isinstance(req, io.PollFills) else f"{kind}:{req.lane}"
            lane = self._lanes.get(key)
            if lane is None:
                lane = self._lanes[key] = asyncio.Queue()
                self._spawn(self._lane(lane), f"lane-{key}")
            lane.put_nowait(req)

    async def _lane(self, lane: asyncio.Queue[io.Request]) -> None:
        while True:
            await self._answer(await lane.get())

    async def _answer(self, req: io.Request) -> None:
        try:
            answer: io.Input | Exception = await self.calls.run(req)
        except Exception as err:  # not a venue failure: a bug, or a broken event log
            answer = err
        await self._inputs.put(answer)


def _hook(
    venue: Venue,
    on_pushed: Callable[[], None] | None,
    is_recorded: Callable[[str, int], bool] | None,
) -> None:
    """While tracking: fills a venue pushes are stepped at once, and a venue that can skip
    the trades already recorded as fills asks the state (None: not tracking)."""
    if isinstance(venue, PushesFills):
        venue.set_fill_listener(on_pushed)
    if isinstance(venue, KnowsRecordedFills):
        venue.set_recorded_fills(is_recorded)


def _is_recorded(events: EventLog, venue: str, trade_id: str, ts_ms: int) -> bool:
    """A trade of `venue` already recorded as a fill (the state as of now)."""
    return events.state.is_fill_seen(venue, trade_id, ts_ms)
