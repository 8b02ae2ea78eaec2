"""What every role keeps current, standby included (a standby is hot): the brain's
heartbeats, the market tickers on NATS and each venue account's equity (the risk guard's
sizing reads it; a standby's is current at takeover). A ticker is handed to the venue it
names (a paper venue fills against it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from titan_exec.adapters.venue.base import Venue
from titan_exec.runtime.leader import cancel_all
from titan_exec.runtime.market import MarketData
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

EQUITY_REFRESH_S = 5.0
"""Account equity (for the risk guard's sizing) is read this often, in every role."""
EQUITY_TIMEOUT_S = 5.0


class MarketInputs:
    def __init__(self, market: MarketData, venues: Iterable[Venue], subjects: Subjects) -> None:
        self._market = market
        self._subjects = subjects
        self._venues = {v.name: v for v in venues}
        self._subs: list[Any] = []
        self._equity: asyncio.Task[None] | None = None

    async def start(self, nc: NatsClient) -> None:
        s = self._subjects
        self._subs.append(await nc.subscribe(s.heartbeat_wildcard, cb=self._on_heartbeat))
        self._subs.append(await nc.subscribe(s.ticker_wildcard, cb=self._on_ticker))
        await self.refresh_equity()
        self._equity = asyncio.create_task(self._equity_loop(), name="equity")

    async def stop(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):  # closing: the connection may be gone
                await sub.unsubscribe()
        if self._equity is not None:
            await cancel_all([self._equity])
            self._equity = None

    async def refresh_equity(self) -> None:
        """Every venue's equity, read side by side (a slow venue delays no other's)."""
        await asyncio.gather(*(self._refresh(v) for v in self._venues.values()))

    async def _refresh(self, venue: Venue) -> None:
        try:
            async with asyncio.timeout(EQUITY_TIMEOUT_S):  # not wait_for: cancelled at stop
                equity = await venue.equity()
        except Exception as err:
            log.warning("equity of %s unavailable: %r", venue.name, err)
            return
        if equity is not None:
            self._market.equity[venue.name] = equity

    async def _equity_loop(self) -> None:
        while True:
            await asyncio.sleep(EQUITY_REFRESH_S)
            await self.refresh_equity()

    async def _on_heartbeat(self, msg: Msg) -> None:
        self._market.on_heartbeat(msg.subject)

    async def _on_ticker(self, msg: Msg) -> None:
        seen = self._market.on_ticker(msg.subject, msg.data)
        venue = self._venues.get(seen[0]) if seen is not None else None
        if seen is not None and venue is not None:
            venue.on_ticker(seen[1], seen[2].bid, seen[2].ask, seen[2].ts_ms)
