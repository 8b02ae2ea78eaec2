"""What the hot-standby driver watches besides its own calls, each a task of its own:

- the lease key (a KV watch; the driver's poll covers a watch that fails);
- the event loop's own stalls (GC, SIGSTOP, an overloaded machine): a stall longer than
  the core tolerates is stepped as `LoopStalled`; a broken event writer as `WriteRejected`;
- the standby's catch-up and drift alarm, reported every renew interval.

`LeaseAge` keeps, for the operator view, when the lease was last seen written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from titan_exec.adapters.nats.lease import NatsLease
from titan_exec.api.metrics import Metrics
from titan_exec.clock import monotonic_ms
from titan_exec.core import leadership as ld

if TYPE_CHECKING:
    from titan_exec.runtime.ha import HaDriver, Observed

log = logging.getLogger(__name__)

WATCHDOG_PERIOD_MS = 50
LEADING_NAMES = frozenset(role.value for role in ld.LEADING)


class LeaseAge:
    """When the lease was last seen written (acquired or renewed), in monotonic ms."""

    def __init__(self) -> None:
        self.written_at_ms: int | None = None
        self._revision = 0

    def note(self, inp: ld.Input) -> None:
        match inp:
            case ld.LeaseSeen(revision=rev, now_ms=now) if rev > self._revision:
                self._revision, self.written_at_ms = rev, now
            case ld.LeaseEmpty(revision=rev) if rev > self._revision:
                self._revision, self.written_at_ms = rev, None
            case (
                ld.AcquireSucceeded(revision=rev, sent_at_ms=sent)
                | ld.RenewSucceeded(revision=rev, sent_at_ms=sent)
            ) if rev >= self._revision:
                self._revision, self.written_at_ms = rev, sent
            case _:
                pass

    def age_ms(self, now_ms: int) -> int | None:
        at = self.written_at_ms
        return None if at is None else now_ms - at


class Watchers:
    def __init__(
        self, driver: HaDriver, lease: NatsLease, observed: Observed, *, metrics: Metrics
    ) -> None:
        self._driver = driver
        self._lease = lease
        self._observed = observed
        self._metrics = metrics
        self.largest_stall_ms = 0

    async def watch_lease(self) -> None:
        interval_s = self._driver.timing.renew_interval_ms / 1000
        while True:
            try:
                async for observation in self._lease.watch():
                    self._driver.put(observation)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("lease watch failed (%r); the poll covers it", err)
                await asyncio.sleep(interval_s)

    async def watchdog(self) -> None:
        period = WATCHDOG_PERIOD_MS / 1000
        driver = self._driver
        while True:
            before = time.monotonic()
            await asyncio.sleep(period)
            stall_ms = int((time.monotonic() - before - period) * 1000)
            if stall_ms > self.largest_stall_ms:
                self.largest_stall_ms = stall_ms
                self._metrics.loop_stall_max.set(stall_ms / 1000)
            if stall_ms > driver.timing.max_loop_stall_ms:
                driver.put(ld.LoopStalled(stall_ms, monotonic_ms()))
            deposed = self._observed.writer_broken()
            if deposed is not None and driver.role in LEADING_NAMES:
                driver.put(ld.WriteRejected(monotonic_ms(), is_deposed=deposed))

    async def report_shadow(self) -> None:
        """Whether the standby is caught up and whether a drift alarm is up."""
        while True:
            is_caught_up = await self._observed.is_caught_up()
            has_alarm = self._observed.drift_alarm() is not None
            self._driver.put(ld.ShadowReported(is_caught_up, has_alarm, monotonic_ms()))
            await asyncio.sleep(self._driver.timing.renew_interval_ms / 1000)
