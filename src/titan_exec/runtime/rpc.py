"""The contract's request/reply subjects, answered by the active only (one answer per
request): positions, balances and the policy hash (also on the brain's hard-coded
`titan.req.exec.policy_hash.v1`). The shapes are in `wire/replies.py`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from titan_exec.adapters.venue.base import Venue
from titan_exec.core.state import State
from titan_exec.runtime.market import MarketData
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
        venue: Venue,
        market: MarketData,
        subjects: Subjects,
        clock: Callable[[], int],
    ) -> None:
        self._state = state
        self._venue = venue
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
        """`get_balances.v1.<venue>`: the venue account's balances; this instance has one
        venue, so a token naming another gets no balances and an error."""
        asked = self._subjects.rpc_venue(msg.subject)
        name, now = self._venue.name, self._clock()
        if not replies.is_venue(asked, name):
            error = f"unknown venue {asked!r}: this instance trades {name!r}"
            await reply(msg, replies.balances_error_reply(error, venue=asked, ts_ms=now))
            return
        try:
            reports = await asyncio.wait_for(self._venue.balances(), BALANCES_TIMEOUT_S)
            doc = replies.balances_reply(reports, venue=name, ts_ms=self._clock())
        except Exception as err:
            error = f"balances unavailable: {err!r}"
            doc = replies.balances_error_reply(error, venue=name, ts_ms=self._clock())
        await reply(msg, doc)

    async def policy_hash(self, msg: Msg) -> None:
        await reply(msg, replies.policy_hash_reply(self._state().policy, ts_ms=self._clock()))
