"""Order execution and tracking: the shell around `core.tracking`.

`OrderRunner.submit` performs the persist-before-side-effect sequence for one order
(write-ahead `OrderSubmitted`, awaited; then the venue call; then the outcome as events).
`OrderRunner.track` is the long-running loop that learns fills from the venue, resolves
in-doubt orders by client order id and cancels orders past their time-to-live; open orders
and positions are compared with the venue's reports by `runtime/reconcile.py`, which writes
through this runner. Nothing here assumes a synchronous fill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.adapters.venue.base import (
    Placed,
    Venue,
    VenueError,
    VenueRejected,
    VenueUnavailable,
    VenueUnknownOutcome,
)
from titan_exec.api.metrics import Metrics
from titan_exec.config import OrdersConfig
from titan_exec.core import tracking
from titan_exec.core.events import (
    OrderAcknowledged,
    OrderCanceled,
    OrderCancelRequested,
    OrderEvent,
    OrderExpired,
    OrderRejected,
    OrderSubmitted,
)
from titan_exec.core.model import ClientOrderId, OrderStatus
from titan_exec.core.orders import can_apply, lifecycle
from titan_exec.core.reports import PlaceRequest
from titan_exec.core.state import State
from titan_exec.runtime.market import MarketData

log = logging.getLogger(__name__)
T = TypeVar("T")


LATE_FILL_WINDOW_MS = 10_000
"""A symbol's trades are still polled this long after its last order closed."""


def _log_failure(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("event append failed: %r", fut.exception())


CANCEL_RETRY_MS = 1000
"""A cancel that failed (venue error, timeout) is tried again after this long."""


class OrderRunner:
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
    ) -> None:
        self.venue = venue
        self.events = events
        self.market = market
        self.metrics = metrics
        self.cfg = cfg
        self.account = account
        self.clock = clock
        self._cursor: str | None = None
        self._active_symbols: dict[str, int] = {}
        self._cancels: dict[ClientOrderId, asyncio.Task[None]] = {}
        self._in_doubt_next: dict[ClientOrderId, int] = {}
        self._cancel_failed_at: dict[ClientOrderId, int] = {}
        self.may_write_venue: Callable[[], bool] = lambda: True
        """Checked right before every venue write (place, cancel): the hot-standby lease's
        local deadline closes it the moment leadership can no longer be proven."""
        self.ingress_perf: dict[ClientOrderId, float] = {}
        """perf_counter at command ingress, for intent→ack / intent→fill latency."""

    @property
    def state(self) -> State:
        return self.events.state

    def _append(self, ev: OrderEvent) -> asyncio.Future[None] | None:
        """Append a lifecycle event if the order's state machine allows it (else None)."""
        if not can_apply(self.state.orders[ev.client_order_id], ev):
            return None
        self.metrics.orders.labels(type(ev).__name__).inc()
        return self.events.append([ev])

    async def append_lifecycle(self, ev: OrderEvent) -> bool:
        """Append a lifecycle event if the order's state machine allows it; await it."""
        fut = self._append(ev)
        if fut is None:
            return False
        await fut
        return True

    def _append_nowait(self, ev: OrderEvent) -> bool:
        fut = self._append(ev)
        if fut is None:
            return False
        fut.add_done_callback(_log_failure)
        return True

    async def venue_call(self, op: str, call: Awaitable[T]) -> T:
        """A venue call, timed out after `venue_timeout_ms`, counted and timed by outcome."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            async with asyncio.timeout(self.cfg.venue_timeout_ms / 1000):
                return await call
        except VenueRejected:
            outcome = "rejected"
            raise
        except (VenueUnknownOutcome, TimeoutError):
            outcome = "unknown"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.venue_calls.labels(op, outcome).inc()
            self.metrics.venue_latency.labels(op, outcome).observe(elapsed)

    # --- submit -------------------------------------------------------------------------

    def write_ahead(self, coids: tuple[ClientOrderId, ...]) -> asyncio.Future[None] | None:
        """Queue the write-ahead `OrderSubmitted` of accepted orders (in the same writer batch
        as their decision when called right after it); await the result before `submit`."""
        now = self.clock()
        events = [
            lifecycle(OrderSubmitted, self.state.orders[c], now)
            for c in coids
            if self.state.orders[c].status is OrderStatus.ACCEPTED
        ]
        if not events:
            return None
        self.metrics.orders.labels("OrderSubmitted").inc(len(events))
        return self.events.append(events)

    async def submit(self, coid: ClientOrderId) -> None:
        """Send an accepted order: its write-ahead event durable first, then the venue call."""
        order = self.state.orders[coid]
        if order.status is not OrderStatus.ACCEPTED:
            return
        if await self.append_lifecycle(lifecycle(OrderSubmitted, order, self.clock())):
            await self.send_written_ahead(coid)

    async def send_written_ahead(self, coid: ClientOrderId) -> None:
        """The venue call for an order whose `OrderSubmitted` this caller just made durable.

        Never call it for an order found SUBMITTED after a restart: that order is in doubt
        and is resolved by querying its client order id, never by sending it again."""
        order = self.state.orders[coid]
        if order.status is not OrderStatus.SUBMITTED:
            return
        if not self.may_write_venue():
            log.warning("order %s not sent: venue writes are closed (fenced)", coid)
            return
        try:
            placed: Placed = await self.venue_call(
                "place", self.venue.place(PlaceRequest.of(order))
            )
        except VenueRejected as rej:
            if rej.is_duplicate:
                log.warning("order %s: venue reports a duplicate id: in doubt, will query", coid)
                return
            log.info("order %s rejected by venue: %s", coid, rej.reason)
            await self.append_lifecycle(
                lifecycle(OrderRejected, order, self.clock(), reason=f"venue: {rej.reason}")
            )
            return
        except VenueUnavailable as err:
            await self.append_lifecycle(
                lifecycle(OrderRejected, order, self.clock(), reason=f"venue unavailable: {err}")
            )
            return
        except Exception as err:
            # VenueUnknownOutcome, a timeout, or anything unexpected: the request may have
            # reached the venue, so the order is in doubt and is resolved by query, never resent
            log.warning("order %s: outcome unknown (%r): in doubt, will query by id", coid, err)
            return
        ack = lifecycle(
            OrderAcknowledged, order, self.clock(), venue_order_id=placed.venue_order_id
        )
        # not awaited: the next order of this symbol need not wait for this record to be
        # durable (a failed publish breaks the event log and stops the instance anyway)
        if self._append_nowait(ack):
            started = self.ingress_perf.get(coid)
            if started is not None:
                self.metrics.intent_to_ack.observe(time.perf_counter() - started)

    # --- tracking loop ------------------------------------------------------------------

    async def track(self) -> None:
        poll_s = self.cfg.poll_interval_ms / 1000
        while True:
            try:
                await self.venue.wait_activity(poll_s)
                await self.poll_fills()
                now = self.clock()
                await self.resolve_in_doubt(now)
                self.expire_due(now)
            except asyncio.CancelledError:
                raise
            except VenueError as err:
                log.warning("order tracking: venue error %r; retrying", err)
                await asyncio.sleep(poll_s)
            except TimeoutError:
                log.warning("order tracking: venue timeout; retrying")

    def watch_symbol(self, symbol: str) -> None:
        """Poll this symbol's trades too for the late-fill window (a position difference:
        trades of this symbol may be on their way, ours or foreign)."""
        self._active_symbols[symbol] = self.clock()

    def polled_symbols(self) -> frozenset[str]:
        """The symbols whose trades are being polled now."""
        return self._symbols_to_poll(self.clock())

    def _symbols_to_poll(self, now: int) -> frozenset[str]:
        """Symbols with open orders, and those whose last order closed within the late-fill
        window: trade polling is per symbol and spends the venue's rate limit."""
        for order in self.state.iter_open_orders():
            if order.venue == self.venue.name:
                self._active_symbols[order.symbol] = now
        cutoff = now - LATE_FILL_WINDOW_MS
        for symbol in [s for s, at in self._active_symbols.items() if at < cutoff]:
            del self._active_symbols[symbol]
        return frozenset(self._active_symbols)

    async def poll_fills(self) -> None:
        symbols = self._symbols_to_poll(self.clock())
        if not symbols and self._cursor is not None:
            return
        fills, cursor = await self.venue_call(
            "fills", self.venue.fills_since(self._cursor, symbols)
        )
        now = self.clock()
        pending: list[tuple[asyncio.Future[None], ClientOrderId]] = []
        for f in fills:
            ev = tracking.fill_event(self.state, f, account=self.account, now_ms=now)
            if ev is None:
                continue
            # appended one by one: the next fill of the same order sees the new quantity
            pending.append((self.events.append([ev]), ev.client_order_id))
            self.metrics.fills.labels(ev.venue).inc()
        self._cursor = cursor
        for fut, coid in pending:
            await fut
            started = self.ingress_perf.pop(coid, None)
            if started is not None:
                self.metrics.intent_to_fill.observe(time.perf_counter() - started)

    async def resolve_in_doubt(self, now: int) -> None:
        for order in list(self.state.iter_open_orders()):
            if not order.is_in_doubt or now - order.t_submitted < self.cfg.in_doubt_query_after_ms:
                continue
            coid = order.client_order_id
            if self._in_doubt_next.get(coid, 0) > now:
                continue
            report = await self.venue_call(
                "query", self.venue.query_order(order.symbol, order.client_order_id)
            )
            current = self.state.orders[coid]
            if not current.is_in_doubt:
                continue
            if report is not None:
                log.info("in-doubt order %s found at venue (%s)", coid, report.status)
                await self.append_lifecycle(
                    lifecycle(
                        OrderAcknowledged,
                        current,
                        self.clock(),
                        venue_order_id=report.venue_order_id,
                    )
                )
                self._in_doubt_next.pop(coid, None)
                continue
            age = now - current.t_submitted
            if age >= self.cfg.in_doubt_absent_after_ms:
                log.warning("in-doubt order %s not at venue after %d ms: absent", coid, age)
                await self.append_lifecycle(
                    lifecycle(
                        OrderRejected,
                        current,
                        self.clock(),
                        reason=f"absent at venue after {age} ms",
                    )
                )
                self._in_doubt_next.pop(coid, None)
            else:
                backoff = min(max(age // 2, self.cfg.in_doubt_query_after_ms), 5000)
                self._in_doubt_next[coid] = now + backoff

    def expire_due(self, now: int) -> None:
        for order in tracking.due_for_expiry(self.state, now, retry_after_ms=CANCEL_RETRY_MS):
            coid = order.client_order_id
            if order.is_in_doubt or coid in self._cancels:
                continue
            if order.is_cancel_requested:
                failed_at = self._cancel_failed_at.get(coid)
                if failed_at is None or now - failed_at < CANCEL_RETRY_MS:
                    continue  # a cancel is on its way, or failed too recently to retry
            self._spawn_cancel(coid, order.last_reason or "ttl")

    def request_cancel(self, coid: ClientOrderId, reason: str) -> None:
        if coid not in self._cancels:
            self._spawn_cancel(coid, reason)

    def _spawn_cancel(self, coid: ClientOrderId, reason: str) -> None:
        task = asyncio.create_task(self._cancel(coid, reason), name=f"cancel-{coid}")
        self._cancels[coid] = task
        task.add_done_callback(partial(self._forget_cancel, coid))

    def _forget_cancel(self, coid: ClientOrderId, _task: asyncio.Task[None]) -> None:
        self._cancels.pop(coid, None)

    async def _cancel(self, coid: ClientOrderId, reason: str) -> None:
        order = self.state.orders[coid]
        if not order.is_open:
            return
        if order.status is OrderStatus.ACCEPTED:
            await self.append_lifecycle(
                lifecycle(OrderCanceled, order, self.clock(), reason=reason)
            )
            return
        if not order.is_cancel_requested:
            await self.append_lifecycle(
                lifecycle(OrderCancelRequested, order, self.clock(), reason=reason)
            )
        if not self.may_write_venue():
            log.warning("cancel of %s not sent: venue writes are closed (fenced)", coid)
            return
        try:
            result = await self.venue_call(
                "cancel", self.venue.cancel(order.symbol, order.client_order_id)
            )
        except (VenueError, TimeoutError) as err:
            log.warning("cancel of %s failed (%r): retrying in %d ms", coid, err, CANCEL_RETRY_MS)
            self._cancel_failed_at[coid] = self.clock()
            return
        self._cancel_failed_at.pop(coid, None)
        if result.status == "CANCELED":
            await self.poll_fills()  # fills that happened before the cancel come first
            current = self.state.orders[coid]
            ev = (
                lifecycle(OrderExpired, current, self.clock(), reason="ttl")
                if reason == "ttl"
                else lifecycle(OrderCanceled, current, self.clock(), reason=reason)
            )
            await self.append_lifecycle(ev)
        else:
            log.info("cancel of %s: venue says %s", coid, result.status)

    async def recover(self) -> None:
        """After a restart: orders recorded but never sent are sent or canceled."""
        now = self.clock()
        for order in list(self.state.iter_open_orders()):
            if order.status is OrderStatus.ACCEPTED:
                if now < order.expires_at_ms and now - order.t_decision < 5_000:
                    await self.submit(order.client_order_id)
                else:
                    await self.append_lifecycle(
                        lifecycle(
                            OrderCanceled, order, self.clock(), reason="not sent before restart"
                        )
                    )

    async def stop(self) -> None:
        for task in list(self._cancels.values()):
            task.cancel()
        await asyncio.gather(*self._cancels.values(), return_exceptions=True)
