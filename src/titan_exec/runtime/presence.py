"""Presence on the wire: every instance answers on its own presence subject, and a standby
probes the lease holder's (`core/presence.py` decides what the answers mean).

- `answer`: one core-NATS subscription on ``titan.sys.<ns>.presence.v1.<instance>.<session>``
  for the life of the process, answering each request at once with its holder name, role
  and epoch. The subscription lives in the server for as long as the process's socket does:
  a process that dies stops answering at once ("no responders"), a paused one times out.
- `Prober.run`: while this instance is a standby and sees the lease held by another process,
  one request to that holder's subject every `PresenceTiming.interval_ms` (overlapping:
  each waits up to its timeout on its own), stepped as
  `PresenceProbed` with what came back: an answer, "no responders", a timeout, or
  ``unhealthy`` when this instance's own connection cannot tell (not connected, or
  reconnected within the last `SETTLE_MS`: the cluster's view of the others' subscriptions
  may not have reached our node yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
)
from nats.errors import TimeoutError as NatsTimeout

from titan_exec.clock import monotonic_ms
from titan_exec.core import leadership as ld
from titan_exec.core.presence import PresenceTiming
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

SETTLE_MS = 1000
"""After our own reconnect, probes count as ``unhealthy`` this long."""

Target = Callable[[], tuple[str, int] | None]
"""(holder, revision) to probe now, or None (not a standby, lease not held by another)."""


def probe_target(state: ld.Leadership | None) -> tuple[str, int] | None:
    """A standby probes the holder it sees in the lease (never itself)."""
    if state is None or state.role is not ld.Role.STANDBY:
        return None
    view = state.view
    if view.kind is ld.ViewKind.HELD and view.holder and view.holder != state.config.holder:
        return view.holder, view.revision
    return None


async def answer(
    nc: NatsClient, subjects: Subjects, holder: str, describe: Callable[[], dict[str, Any]]
) -> Any:
    """Subscribe this process's presence subject; returns the subscription."""

    async def on_request(msg: Msg) -> None:
        if msg.reply:
            try:
                await nc.publish(msg.reply, json.dumps({"holder": holder, **describe()}).encode())
            except Exception as err:  # the prober sees a timeout: the lease decides
                log.debug("presence answer not sent: %r", err)

    return await nc.subscribe(subjects.presence(holder), cb=on_request)


class _Driver(Protocol):
    state: ld.Leadership | None

    def put(self, inp: ld.Input) -> None: ...


async def start_presence(
    nc: NatsClient,
    subjects: Subjects,
    timing: PresenceTiming,
    holder: str,
    describe: Callable[[], dict[str, Any]],
    driver: _Driver,
) -> tuple[Any, Prober | None]:
    """This process answers on its subject; with presence on, a prober for `driver` (its
    `run` is for the caller to start). Returns (the subscription, the prober or None)."""
    sub = await answer(nc, subjects, holder, describe)
    if not timing.is_on:
        return sub, None
    prober = Prober(nc, subjects, timing, target=lambda: probe_target(driver.state), put=driver.put)
    return sub, prober


async def stop_answering(sub: Any) -> None:
    if sub is not None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


class Prober:
    def __init__(
        self,
        nc: NatsClient,
        subjects: Subjects,
        timing: PresenceTiming,
        *,
        target: Target,
        put: Callable[[ld.Input], None],
        clock: Callable[[], int] = monotonic_ms,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._timing = timing
        self._target = target
        self._put = put
        self._clock = clock
        self._reconnects = self._reconnect_count()
        self._settled_at = 0
        self.probes = 0

    def _reconnect_count(self) -> int:
        return int(self._nc.stats.get("reconnects", 0))

    def _is_unsettled(self) -> bool:
        """Our own connection cannot tell now: down, or back within `SETTLE_MS`."""
        now = self._clock()
        count = self._reconnect_count()
        if count != self._reconnects:
            self._reconnects, self._settled_at = count, now + SETTLE_MS
        return not self._nc.is_connected or now < self._settled_at

    async def probe(self, holder: str) -> ld.Presence:
        """One request to `holder`'s presence subject: what it tells."""
        if self._is_unsettled():
            return ld.Presence.UNHEALTHY
        self.probes += 1
        try:
            await self._nc.request(
                self._subjects.presence(holder), b"", timeout=self._timing.timeout_ms / 1000
            )
        except NoRespondersError:
            # only as good as our own connection: lost or renewed meanwhile, cannot tell
            return ld.Presence.UNHEALTHY if self._is_unsettled() else ld.Presence.NO_RESPONDERS
        except (NatsTimeout, TimeoutError):
            return ld.Presence.TIMEOUT
        except (ConnectionClosedError, ConnectionReconnectingError, OutboundBufferLimitError):
            return ld.Presence.UNHEALTHY
        return ld.Presence.ANSWERED

    async def run(self) -> None:
        """One probe every interval, each on its own (they overlap: a probe waiting for its
        timeout never delays the next one), each stepped when it is answered."""
        interval_s = self._timing.interval_ms / 1000
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                await asyncio.sleep(interval_s)
                target = self._target()
                if target is None:
                    continue
                task = asyncio.create_task(self._probe_and_put(*target), name="presence-probe")
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _probe_and_put(self, holder: str, revision: int) -> None:
        sent = self._clock()
        try:
            outcome = await self.probe(holder)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # anything else: cannot tell
            log.warning("presence probe of %s failed: %r", holder, err)
            outcome = ld.Presence.UNHEALTHY
        self._put(ld.PresenceProbed(holder, revision, outcome, sent, self._clock()))
