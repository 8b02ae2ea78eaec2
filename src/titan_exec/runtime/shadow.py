"""The standby's own reading of `TITAN_CMD` (ha-protocol.md §5): it knows which commands
are waiting, and its durable consumer keeps pace with the active.

The standby pulls from the durable consumer it will decide with once it leads, and
acknowledges each command as soon as the active's decision for it is in the folded state
(`decided_cmds`). Commands without a decision yet are held, unacknowledged: they are the
commands waiting. At takeover the held ones are handed over with the subscription
(`HeldFirst`: the intake's first fetch returns them without a round trip; a fetch that
finds nothing queued would wait out its expiry, tens of ms, before returning what the
server redelivered), and the intake starts where the standby left off instead of reading
the whole command history again and recognising every old command as decided. A planned
stop hands them back (nak: redelivered at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from titan_exec.config import Config
from titan_exec.core.state import State
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

RECHECK_S = 0.03
"""How often held commands are compared with the decisions folded meanwhile; also how long
a takeover waits, at most, for the standby's last fetch to end (`stop`)."""
STOP_WAIT_S = 2.0


class HeldFirst:
    """A pull subscription handed over with the commands its last reader held: `fetch`
    returns those first, at once, then fetches; `unsubscribe` naks any still held. Every
    other attribute is the subscription's."""

    def __init__(self, psub: Any, held: list[Msg]) -> None:
        self._psub = psub
        self._held = held

    async def fetch(self, batch: int = 1, timeout: float | None = 5.0) -> list[Msg]:  # noqa: ASYNC109 - nats-py's signature
        if self._held:
            out, self._held = self._held[:batch], self._held[batch:]
            return out
        return list(await self._psub.fetch(batch, timeout=timeout))

    async def unsubscribe(self) -> None:
        held, self._held = self._held, []
        for msg in held:
            with contextlib.suppress(Exception):
                await msg.nak()
        await self._psub.unsubscribe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._psub, name)


def command_consumer_config(cfg: Config) -> api.ConsumerConfig:
    """This instance's durable consumer on `TITAN_CMD` (the intake decides from it too): our
    namespace and the upstream control subjects (`Subjects.command_filters`)."""
    return api.ConsumerConfig(
        name=cfg.durable_name,
        durable_name=cfg.durable_name,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=float(cfg.consumer.ack_wait_s),
        max_ack_pending=cfg.consumer.max_ack_pending,
        max_deliver=-1,
        filter_subjects=list(Subjects(cfg.service.namespace).command_filters),
    )


async def bind_command_consumer(
    js: JetStreamContext, cfg: Config, is_stopping: Callable[[], bool] = lambda: False
) -> Any:
    """Bind (or create) the durable pull consumer, retrying until JetStream answers; None
    if `is_stopping()` first."""
    while not is_stopping():
        try:
            # created, or updated in place: a durable consumer of an earlier build reads
            # only `titan.cmd.<ns>.>`; its filters are widened, its position kept
            await js.add_consumer("TITAN_CMD", config=command_consumer_config(cfg))
            return await js.pull_subscribe_bind(durable=cfg.durable_name, stream="TITAN_CMD")
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("command consumer not bound (%r): retrying", err)
            await asyncio.sleep(0.2)
    return None


class CommandShadow:
    def __init__(
        self,
        bind: Callable[[Callable[[], bool]], Awaitable[Any]],
        state: Callable[[], State],
        *,
        fetch_batch: int,
        psub: Any = None,
    ) -> None:
        self._bind = bind
        self._state = state
        self._fetch_batch = fetch_batch
        self._held: dict[int, Msg] = {}
        self._task: asyncio.Task[None] | None = None
        self._psub: Any = psub
        self._is_stopping = False
        self.acked = 0

    @property
    def waiting(self) -> int:
        """Commands delivered to the standby that have no decision in the stream yet."""
        return len(self._held)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="command-shadow")

    async def stop(self, *, hand_over: bool = False) -> Any:
        """Stop pulling and hand every held command back (nak: redelivered at once).

        `hand_over`: return the pull subscription instead of closing it, for the intake to
        go on with. A pull request's last deliveries can arrive after its fetch gave up;
        they wait in the subscription, where the next fetch finds them. Closing it would
        leave them unacknowledged until the consumer's ack wait."""
        self._is_stopping = True
        if self._task is not None:
            # not cancelled: a fetch cut short could leave commands delivered to no one
            # (unacknowledged until ack_wait); the flag ends the loop after the current
            # fetch, within RECHECK_S, and whatever it brought is handed back below
            _, stuck = await asyncio.wait({self._task}, timeout=STOP_WAIT_S)
            if stuck:
                log.warning("standby command reader did not stop in %s s", STOP_WAIT_S)
                self._task.cancel()
            self._task = None
        held, self._held = self._held, {}
        psub, self._psub = self._psub, None
        if hand_over and psub is not None:
            return HeldFirst(psub, [held[seq] for seq in sorted(held)])
        for msg in held.values():
            with contextlib.suppress(Exception):
                await msg.nak()
        if psub is not None:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
        return None

    async def _run(self) -> None:
        if self._psub is None:
            self._psub = await self._bind(lambda: self._is_stopping)
        if self._psub is None:
            return
        while not self._is_stopping:
            try:
                msgs = await self._psub.fetch(self._fetch_batch, timeout=RECHECK_S)
            except TimeoutError:
                msgs = []
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("standby command fetch failed: %r", err)
                await asyncio.sleep(RECHECK_S)
                msgs = []
            for msg in msgs:
                meta: Any = msg.metadata
                self._held[int(meta.sequence.stream)] = msg  # a redelivery replaces it
            await self._ack_decided()

    async def _ack_decided(self) -> None:
        state = self._state()
        for seq in [s for s in self._held if state.is_decided(s)]:
            msg = self._held.pop(seq)
            try:
                await msg.ack()
                self.acked += 1
            except Exception as err:  # redelivered later, and acknowledged then
                log.debug("standby ack of command %d failed: %r", seq, err)
