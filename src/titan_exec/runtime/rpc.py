"""The contract's request/reply subjects, answered by the active only (one answer per
request): positions, balances and the policy hash (also on the brain's hard-coded
`titan.req.exec.policy_hash.v1`). The shapes are in `wire/replies.py`.

The venue token of a positions or balances request names one of the instance's venues
(`runtime/venues.py`); no token, `auto` or `main` mean every venue: positions of all, the
balances of the default venue (the brain's equity request, `get_balances.v1.main`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from titan_exec.core.state import State
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.venues import VenueSet
from titan_exec.wire import replies
from titan_exec.wire.subjects import Subjects

BALANCES_TIMEOUT_S = 5.0


async def reply(msg: Msg, doc: Any) -> None:
    if msg.reply:
        await msg.respond(json.dumps(doc, default=str).encode())


class RpcAnswers:
    def __init__(
        self,
        state: Callable[[], State],
        *,
        venues: VenueSet,
        market: MarketData,
        subjects: Subjects,
        clock: Callable[[], int],
    ) -> None:
        self._state = state
        self._venues = venues
        self._market = market
        self._subjects = subjects
        self._clock = clock
        self._subs: list[Any] = []

    async def subscribe(self, nc: NatsClient) -> None:
        s = self._subjects
        for subjects, cb in (
            (s.rpc_positions_subjects, self.positions),
            (s.rpc_balances_subjects, self.balances),
            (s.policy_hash_subjects, self.policy_hash),
        ):
            for subject in subjects:
                self._subs.append(await nc.subscribe(subject, cb=cb))

    async def unsubscribe(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):  # closing: the connection may be gone
                await sub.unsubscribe()

    async def positions(self, msg: Msg) -> None:
        """`get_positions.v1.<venue>`: our open positions at that venue."""
        doc = replies.positions_reply(
            self._state().positions.values(),
            venue=self._subjects.rpc_venue(msg.subject),
            mark_of=self._market.mark,
            ts_ms=self._clock(),
        )
        await reply(msg, doc)

    async def balances(self, msg: Msg) -> None:
        """`get_balances.v1.<venue>`: that venue account's balances (every venue's token:
        the default's); a token naming no venue of this instance gets an error."""
        asked = self._subjects.rpc_venue(msg.subject)
        now = self._clock()
        venue = self._venues.default_venue if asked is None else self._venues.get(asked)
        if venue is None:
            names = ", ".join(repr(n) for n in self._venues.names)
            error = f"unknown venue {asked!r}: this instance trades {names}"
            await reply(msg, replies.balances_error_reply(error, venue=asked, ts_ms=now))
            return
        name = venue.name
        try:
            reports = await asyncio.wait_for(venue.balances(), BALANCES_TIMEOUT_S)
            doc = replies.balances_reply(reports, venue=name, ts_ms=self._clock())
        except Exception as err:
            error = f"balances unavailable: {err!r}"
            doc = replies.balances_error_reply(error, venue=name, ts_ms=self._clock())
        await reply(msg, doc)

    async def policy_hash(self, msg: Msg) -> None:
        await reply(msg, replies.policy_hash_reply(self._state().policy, ts_ms=self._clock()))
