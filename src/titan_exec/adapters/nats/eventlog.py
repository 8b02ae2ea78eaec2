"""The one writer of the service's events, and the replay that rebuilds state from them.

`EventLog.append(events)` applies the events to the state *synchronously* (so the next
decision, made on the same event loop, already sees them) and queues them for publishing;
the returned future resolves once JetStream has acknowledged every one of them. One task
publishes the queue in order (pipelined `publish_async`), so stream order is apply order.
Each message carries the event's deterministic id as `Nats-Msg-Id`: a retried publish is
dropped by the stream's duplicate window instead of being applied twice.

A publish that fails leaves the local state ahead of the stream: the log then declares
itself broken (`is_broken`) and every later append fails. The service stops and a restart
rebuilds the state from the stream (the hot-standby issue turns this into fencing).
This is also where the epoch fence headers will be added.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient

from titan_exec.adapters.nats.fence import WRONG_LAST_SEQUENCE_ERR_CODE, fenced_headers
from titan_exec.adapters.nats.publisher import AckedPublisher, PublishRejected
from titan_exec.core.events import Event, Genesis
from titan_exec.core.positions import ClosedTrade
from titan_exec.core.state import State, step
from titan_exec.wire.contract import encode_event

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"


class EventLogBroken(RuntimeError):
    """A publish failed after the state had applied it: the instance must rebuild."""


@dataclass(slots=True)
class _Outgoing:
    subject: str
    body: bytes
    headers: dict[str, str] | None


@dataclass(slots=True)
class _Batch:
    messages: list[_Outgoing]
    done: asyncio.Future[None]


class EventLog:
    def __init__(
        self,
        nc: NatsClient,
        state: State,
        *,
        ns: str,
        producer: str,
        on_closed_trade: Callable[[ClosedTrade, Event], list[tuple[str, bytes]]] | None = None,
        ack_timeout_s: float = 5.0,
        max_batch: int = 512,
    ) -> None:
        self._publisher = AckedPublisher(nc)
        self.state = state
        self._ns = ns
        self._producer = producer
        self._on_closed_trade = on_closed_trade
        self._ack_timeout_s = ack_timeout_s
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: asyncio.Queue[tuple[list[_Batch], list[asyncio.Future[int]]]] = (
            asyncio.Queue()
        )
        self._fence: dict[str, str] | None = None
        self.is_deposed = False
        self._failure = EventLogBroken("event log is broken")
        self.is_broken = False
        self.last_seq = 0
        self.published = 0

    async def start(self) -> None:
        await self._publisher.start()
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="event-log-publisher"),
            asyncio.create_task(self._complete_loop(), name="event-log-completer"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._publisher.stop()
        stopped = EventLogBroken("event log stopped")
        while not self._queue.empty():
            batch = self._queue.get_nowait()
            if not batch.done.done():
                batch.done.set_exception(stopped)
        while not self._inflight.empty():
            batches, _ = self._inflight.get_nowait()
            for batch in batches:
                if not batch.done.done():
                    batch.done.set_exception(stopped)

    def append(self, events: Sequence[Event]) -> asyncio.Future[None]:
        """Apply now, publish in order; await the result for durability."""
        if self.is_broken:
            raise EventLogBroken("event log is broken: the instance must restart and rebuild")
        messages: list[_Outgoing] = []
        for ev in events:
            _, closed = step(self.state, ev)
            subject, msg_id, body = encode_event(ev, ns=self._ns, producer=self._producer)
            messages.append(_Outgoing(subject, body, {MSG_ID: msg_id}))
            if closed is not None and self._on_closed_trade is not None:
                for subj, data in self._on_closed_trade(closed, ev):
                    messages.append(_Outgoing(subj, data, None))
        return self._enqueue(messages)

    def publish(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[None]:
        """Publish a non-state message (telemetry, dead letter, snapshot) in order."""
        return self._enqueue([_Outgoing(subject, body, headers)])

    def _enqueue(self, messages: list[_Outgoing]) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.is_broken or not self._tasks:
            done.set_exception(self._failure if self.is_broken else EventLogBroken("stopped"))
            return done
        self._queue.put_nowait(_Batch(messages, done))
        return done

    async def _publish_loop(self) -> None:
        """Publish queued batches as they come, without waiting for earlier acks
        (pipelined); the completer resolves them in order."""
        while True:
            batches = [await self._queue.get()]
            while not self._queue.empty() and len(batches) < self._max_batch:
                batches.append(self._queue.get_nowait())
            futures: list[asyncio.Future[int]] = []
            try:
                if not self.is_broken:
                    for batch in batches:
                        for m in batch.messages:
                            futures.append(
                                await self._publisher.publish(m.subject, m.body, self._headers(m))
                            )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._break(err)
            self._inflight.put_nowait((batches, futures))

    async def _complete_loop(self) -> None:
        while True:
            batches, futures = await self._inflight.get()
            if self.is_broken:
                self._fail(batches)
                continue
            try:
                acks = await asyncio.wait_for(asyncio.gather(*futures), self._ack_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._break(err)
                self._fail(batches)
                continue
            if acks:
                self.last_seq = max(self.last_seq, max(acks))
            self.published += len(acks)
            for batch in batches:
                if not batch.done.done():
                    batch.done.set_result(None)

    def set_epoch(self, epoch_subject: str, epoch: int) -> None:
        """From now on every event carries the epoch fence: the server refuses it once a
        newer epoch marker exists (ha-protocol.md §4)."""
        self._fence = fenced_headers(epoch_subject, epoch)

    def _headers(self, m: _Outgoing) -> dict[str, str] | None:
        if self._fence is None or not m.subject.startswith("titan.evt."):
            return m.headers  # the dead-letter stream has no epoch subject to check
        return {**(m.headers or {}), **self._fence}

    def _break(self, err: BaseException) -> None:
        if isinstance(err, PublishRejected) and err.code == WRONG_LAST_SEQUENCE_ERR_CODE:
            self.is_deposed = True
        if not self.is_broken:
            log.error("event publish failed, state is ahead of the stream: %r", err)
            self._failure = EventLogBroken(f"event publish failed: {err!r}")
        self.is_broken = True

    def _fail(self, batches: list[_Batch]) -> None:
        for batch in batches:
            if not batch.done.done():
                batch.done.set_exception(self._failure)

    async def drain(self) -> None:
        """Wait until everything queued so far is acknowledged (or failed)."""
        await self._enqueue([])


def genesis_event(policy: dict[str, Any], *, is_armed: bool, ts_ms: int) -> Genesis:
    return Genesis(ts_ms=ts_ms, policy=policy, is_armed=is_armed, is_halted=False)
