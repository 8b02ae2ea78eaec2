"""The venue calls of the execution driver: each request of `core/execution` run against the
venue, timed out, counted and timed, its outcome turned into the input that answers it.

A fill poll waits for the venue account's request-weight budget first (when the venue keeps
one, `adapters/venue/budget.py`): its interval stretched to keep the account under its
share, a 429's Retry-After, the minute past the essential reads' ceiling. Places and
cancels never wait for it.

A venue failure (`VenueError`, a timeout) is an answer (`QueryFailed`, `PollFailed`,
`CancelFailed`; a place whose outcome is unknown is `PlaceUnknown`); anything else raises
(a bug, a broken event log: the driver's loop ends with it). The venue gate is checked right
before every write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from titan_exec.adapters.venue.base import (
    Venue,
    VenueError,
    VenueRejected,
    VenueUnavailable,
    VenueUnknownOutcome,
)
from titan_exec.adapters.venue.budget import budget_of
from titan_exec.api.metrics import Metrics
from titan_exec.config import OrdersConfig
from titan_exec.core import execution_io as io

log = logging.getLogger("titan_exec.runtime.orders")
T = TypeVar("T")


class VenueRequests:
    def __init__(
        self,
        *,
        venue: Venue,
        metrics: Metrics,
        cfg: OrdersConfig,
        clock: Callable[[], int],
        gate: Callable[[], bool],
    ) -> None:
        self.venue = venue
        self.metrics = metrics
        self.cfg = cfg
        self.clock = clock
        self.gate = gate
        self._last_poll_ms: int | None = None

    def poll_wait_ms(self) -> int:
        """How long the next fill poll waits for the weight budget (0: poll now). A venue
        whose user-data stream runs never waits here: its fills are pushed, and the REST
        sweeps it makes now and then wait for the budget inside each read."""
        budget = budget_of(self.venue)
        if budget is None or getattr(self.venue, "is_streaming", False):
            return 0
        now = self.clock()
        wait = budget.read_wait_ms(now, is_essential=True)
        if self._last_poll_ms is not None:
            # never closer than the (stretched) poll interval: what the budget counts on
            base = max(self.cfg.poll_interval_ms, budget.poll_interval_ms)
            wait = max(wait, self._last_poll_ms + budget.interval_ms(base, now) - now)
        return max(wait, 0)

    async def _budget_wait(self) -> None:
        wait_ms = self.poll_wait_ms()
        if wait_ms > 0:
            budget = budget_of(self.venue)
            if budget is not None and budget.stretch > 1:
                budget.note_waited("stretched")
            await asyncio.sleep(wait_ms / 1000)
        self._last_poll_ms = self.clock()

    async def call(self, op: str, call: Awaitable[T]) -> T:
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

    async def run(self, req: io.Request) -> io.Input:
        match req:
            case io.PlaceOrder():
                return await self._place(req)
            case io.CancelOrder():
                return await self._cancel(req)
            case io.QueryOrder(coid=coid, symbol=symbol):
                try:
                    report = await self.call("query", self.venue.query_order(symbol, coid))
                except (VenueError, TimeoutError) as err:
                    return io.QueryFailed(self.clock(), coid, repr(err))
                return io.OrderQueried(self.clock(), coid, report)
            case io.PollFills(cursor=cursor, symbols=symbols):
                await self._budget_wait()
                try:
                    fills, new = await self.call("fills", self.venue.fills_since(cursor, symbols))
                except (VenueError, TimeoutError) as err:
                    return io.PollFailed(self.clock(), repr(err))
                return io.FillsReported(self.clock(), tuple(fills), new)

    async def _place(self, req: io.PlaceOrder) -> io.Input:
        coid = req.request.client_order_id
        if not self.gate():
            log.warning("order %s not sent: venue writes are closed (fenced)", coid)
            return io.PlaceUnknown(self.clock(), coid, "not sent (venue writes closed)")
        try:
            placed = await self.call("place", self.venue.place(req.request))
        except VenueRejected as rej:
            return io.PlaceRejected(self.clock(), coid, rej.reason, is_duplicate=rej.is_duplicate)
        except VenueUnavailable as err:
            return io.PlaceRejected(self.clock(), coid, str(err), is_unavailable=True)
        except Exception as err:
            # VenueUnknownOutcome, a timeout, or anything unexpected: the request may have
            # reached the venue, so the order is in doubt and is resolved by query, never resent
            return io.PlaceUnknown(self.clock(), coid, f"outcome unknown ({err!r})")
        return io.PlaceAcked(self.clock(), coid, placed.venue_order_id)

    async def _cancel(self, req: io.CancelOrder) -> io.Input:
        if not self.gate():
            log.warning("cancel of %s not sent: venue writes are closed (fenced)", req.coid)
            return io.CancelFailed(self.clock(), req.coid, "venue writes are closed")
        try:
            result = await self.call("cancel", self.venue.cancel(req.symbol, req.coid))
        except (VenueError, TimeoutError) as err:
            return io.CancelFailed(self.clock(), req.coid, repr(err))
        except Exception as err:  # unexpected: logged with its trace, retried like a failure
            log.exception("cancel of %s failed unexpectedly", req.coid)
            return io.CancelFailed(self.clock(), req.coid, repr(err))
        return io.CancelAnswered(self.clock(), req.coid, result.status)
