"""Several venues in one instance: the venue objects by name, and the order runners by venue.

`VenueSet` holds one `Venue` per configured venue (`[venues.<name>]`, or the single
`[venue]`), each trading its own account, and the default `auto` routes to. Everything
that reaches a venue by name (market inputs, quotes, the RPC answers, `/status`) asks it.

`Drivers` is what the intake, the risk-state reader and recovery use to reach the
execution driver of an order's venue: the core decided the venue (`core/decide.py`:
the intent's `exchange`, else the subject's token, `auto` → the default) and wrote it on
the order; a decision's write-ahead, send and cancels go to that venue's driver. A flatten
spans venues: its write-ahead is one per venue, awaited together. The venue gate
(`may_write_venue`) is the session's, shared by every driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping

from titan_exec.adapters.venue.base import Venue
from titan_exec.core.model import ClientOrderId
from titan_exec.core.state import State
from titan_exec.runtime.orders import OrderRunner

log = logging.getLogger(__name__)


class VenueSet:
    """The venues by name, the default first."""

    def __init__(self, venues: Mapping[str, Venue], default: str) -> None:
        if not venues:
            raise ValueError("no venue")
        if default not in venues:
            raise ValueError(f"the default venue {default!r} is not among {sorted(venues)}")
        for name, venue in venues.items():
            if venue.name != name:
                raise ValueError(f"venue {name!r} calls itself {venue.name!r}")
        self.default = default
        self._venues = {default: venues[default]} | dict(sorted(venues.items()))

    @classmethod
    def one(cls, venue: Venue) -> VenueSet:
        return cls({venue.name: venue}, venue.name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._venues)

    @property
    def default_venue(self) -> Venue:
        return self._venues[self.default]

    def get(self, name: str) -> Venue | None:
        """The venue of this name; the brain's tokens are lower case, so is the lookup."""
        return self._venues.get(name) or self._venues.get(name.lower())

    def __iter__(self) -> Iterator[Venue]:
        return iter(self._venues.values())

    def __len__(self) -> int:
        return len(self._venues)

    async def close(self) -> None:
        for venue in self:
            try:
                await venue.close()
            except Exception as err:  # closing: the next venue still closes
                log.warning("venue %s did not close cleanly: %r", venue.name, err)


class Drivers:
    """The execution drivers by venue, with the calls the intake and the risk-state reader
    make of one (`OrderRunner`'s), each routed by the order's venue."""

    def __init__(self, runners: Mapping[str, OrderRunner], state: Callable[[], State]) -> None:
        self.runners = dict(runners)
        self._state = state
        self.ingress_perf: dict[ClientOrderId, float] = {}
        """Shared by every driver (client order ids name their venue: never two alike)."""
        self.orphans = 0
        """Orders asked of a venue not configured here (`of`)."""
        for runner in self.runners.values():
            runner.ingress_perf = self.ingress_perf

    def of(self, coid: ClientOrderId) -> OrderRunner | None:
        """The driver of the order's venue; None for a venue no longer configured (an order
        of the stream from before a venue was renamed or removed: logged, left alone, as
        one driver left another venue's orders alone)."""
        venue = self._state().orders[coid].venue
        runner = self.runners.get(venue)
        if runner is None:
            self.orphans += 1
            log.warning("order %s is on venue %r, which is not configured: left alone", coid, venue)
        return runner

    def write_ahead(self, coids: tuple[ClientOrderId, ...]) -> asyncio.Future[None] | None:
        """Each venue's driver queues the write-ahead of its orders; one future for all."""
        by_venue: dict[OrderRunner, list[ClientOrderId]] = {}
        for coid in coids:
            runner = self.of(coid)
            if runner is not None:
                by_venue.setdefault(runner, []).append(coid)
        futures = [
            fut
            for runner, mine in by_venue.items()
            if (fut := runner.write_ahead(tuple(mine))) is not None
        ]
        if not futures:
            return None
        if len(futures) == 1:
            return futures[0]
        return asyncio.ensure_future(_all(futures))

    def start_written_ahead(self, coids: tuple[ClientOrderId, ...]) -> None:
        """Each venue's driver sends its orders; nothing waits for the answers."""
        by_venue: dict[OrderRunner, list[ClientOrderId]] = {}
        for coid in coids:
            runner = self.of(coid)
            if runner is not None:
                by_venue.setdefault(runner, []).append(coid)
        for runner, mine in by_venue.items():
            runner.start_written_ahead(tuple(mine))

    async def send_written_ahead(self, coid: ClientOrderId) -> None:
        runner = self.of(coid)
        if runner is not None:
            await runner.send_written_ahead(coid)

    def request_cancel(self, coid: ClientOrderId, reason: str) -> None:
        runner = self.of(coid)
        if runner is not None:
            runner.request_cancel(coid, reason)

    async def recover(self) -> None:
        for runner in self.runners.values():
            await runner.recover()

    async def stop(self) -> None:
        for runner in self.runners.values():
            await runner.stop()


async def _all(futures: list[asyncio.Future[None]]) -> None:
    for result in await asyncio.gather(*futures, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result
