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

Once the instance leads (`set_epoch`), every event carries the epoch fence headers, and
fenced events cannot be pipelined on a replicated stream (R3): nats-server refuses a write
that checks the epoch subject while an earlier one is still being replicated
(`errors.REFUSED_WHILE_REPLICATING`). How fenced events go out (`fencedwrite`):
- ``is_batched=True``, **group commit**: whenever the previous batch is acknowledged,
  every fenced message queued meanwhile goes out as one atomic batch (stored whole or not
  at all). The events of one `append` are never split across batches unless they exceed
  a batch's limits; a decision appended with its order's write-ahead in one synchronous
  step (the intake) therefore needs one durable round trip.
- ``is_fence_pipelined=True`` (a single server, R1, has no in-flight window): fenced
  messages are pipelined one by one like unfenced ones.
- neither: one fenced message in flight at a time.
Unfenced messages (before leading, and dead letters) are always pipelined. Whatever the
mode, stream order is apply order: a run of fenced messages is stored before the next
unfenced one is sent.

Once leading, every message also names its writer (`Titan-Epoch`, `Titan-Instance`;
`fence.writer_headers`), merged with its `Nats-Msg-Id` and the fence headers.
`is_fencing_disabled=True` is the test-only broken build (`TITAN_UNSAFE_DISABLE_FENCING`):
events are written without the fence headers, so a deposed leader's writes land.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client as NatsClient

from titan_exec.adapters.nats.errors import is_wrong_last_sequence
from titan_exec.adapters.nats.fence import fenced_headers, writer_headers
from titan_exec.adapters.nats.fencedwrite import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    FencedWriter,
)
from titan_exec.adapters.nats.headers import EXPECTED_LAST_SUBJECT_SEQ_SUBJECT, MSG_ID
from titan_exec.adapters.nats.publisher import AckedPublisher, Message
from titan_exec.core.events import Event, Genesis
from titan_exec.core.positions import ClosedTrade
from titan_exec.core.state import State, step
from titan_exec.wire.contract import encode_event

log = logging.getLogger(__name__)


class EventLogBroken(RuntimeError):
    """A publish failed after the state had applied it: the instance must rebuild."""


class EventNotEncodable(ValueError):
    """An event the stream cannot hold (not encodable, or over the size limit): nothing
    was applied; the caller decides something that can be written instead."""


@dataclass(slots=True)
class _Outgoing:
    subject: str
    body: bytes
    headers: dict[str, str] | None


@dataclass(slots=True)
class _Batch:
    messages: list[_Outgoing]
    done: asyncio.Future[None]
    seqs: asyncio.Future[list[int]] | None = None
    """Set for a caller that needs the stream sequences its messages were stored at."""


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
        is_fence_pipelined: bool = False,
        is_batched: bool = False,
        resend_after_s: float = 0.5,
        unavailable_retry_s: float = 1.0,
        instance_id: str = "",
        is_fencing_disabled: bool = False,
        max_event_bytes: int = 1_000_000,
    ) -> None:
        self._publisher = AckedPublisher(nc)
        self.max_event_bytes = max_event_bytes
        """The largest event message: the server's max_payload (1 MiB by default) less
        room for the headers."""
        self.state = state
        self._ns = ns
        self._producer = producer
        self._on_closed_trade = on_closed_trade
        self._ack_timeout_s = ack_timeout_s
        self._max_batch = max_batch
        self._is_fence_pipelined = is_fence_pipelined
        self.is_batched = is_batched
        self.writer = FencedWriter(
            self._publisher,
            ack_timeout_s=ack_timeout_s,
            resend_after_s=resend_after_s,
            unavailable_retry_s=unavailable_retry_s,
        )
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: asyncio.Queue[tuple[list[_Batch], list[asyncio.Future[int]]]] = (
            asyncio.Queue()
        )
        self._instance_id = instance_id
        self._is_fencing_disabled = is_fencing_disabled
        """UNSAFE, tests only: events carry no epoch fence (the server checks nothing)."""
        self._fence: dict[str, str] | None = None
        self._writer: dict[str, str] = {}
        self.is_deposed = False
        self._failure = EventLogBroken("event log is broken")
        self.is_broken = False
        self.last_seq = 0
        self.published = 0
        self.unacked = 0
        """Events applied to the state whose publication is not settled yet: while it is not
        0 the state is ahead of `last_seq` (the two do not describe one position)."""

    @property
    def is_running(self) -> bool:
        """Started (this instance led) and not stopped."""
        return bool(self._tasks)

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
            if batch.seqs is not None and not batch.seqs.done():
                batch.seqs.set_exception(stopped)
        while not self._inflight.empty():
            batches, _ = self._inflight.get_nowait()
            for batch in batches:
                if not batch.done.done():
                    batch.done.set_exception(stopped)
                if batch.seqs is not None and not batch.seqs.done():
                    batch.seqs.set_exception(stopped)

    def append(self, events: Sequence[Event]) -> asyncio.Future[None]:
        """Encode, then apply now, publish in order; await the result for durability.

        Every event is encoded (and its size checked) before any is applied: an event the
        stream cannot hold raises `EventNotEncodable` and leaves the state untouched, so
        the state never holds what the stream does not."""
        if self.is_broken:
            raise EventLogBroken("event log is broken: the instance must restart and rebuild")
        encoded = [self._encode(ev) for ev in events]
        messages: list[_Outgoing] = []
        for ev, (subject, msg_id, body) in zip(events, encoded, strict=True):
            _, closed = step(self.state, ev)
            messages.append(_Outgoing(subject, body, {MSG_ID: msg_id}))
            if closed is not None and self._on_closed_trade is not None:
                for k, (subj, data) in enumerate(self._on_closed_trade(closed, ev)):
                    # derived from the event's id, so that a re-send is deduplicated
                    messages.append(_Outgoing(subj, data, {MSG_ID: f"{msg_id}.trade.{k}"}))
        done = self._enqueue(messages)
        if events:
            n = len(events)
            self.unacked += n
            done.add_done_callback(lambda _: self._settled(n))
        return done

    def _encode(self, ev: Event) -> tuple[str, str, bytes]:
        try:
            subject, msg_id, body = encode_event(ev, ns=self._ns, producer=self._producer)
        except (ValueError, TypeError, UnicodeError, msgspec.EncodeError) as err:
            raise EventNotEncodable(f"{type(ev).__name__} cannot be encoded: {err!r}") from err
        if len(body) > self.max_event_bytes:
            raise EventNotEncodable(
                f"{type(ev).__name__} is {len(body)} bytes, the limit is {self.max_event_bytes}"
            )
        return subject, msg_id, body

    def _settled(self, n: int) -> None:
        self.unacked -= n

    def publish(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[None]:
        """Publish a non-state message (telemetry, dead letter, snapshot) in order."""
        return self._enqueue([_Outgoing(subject, body, headers)])

    def publish_acked(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[list[int]]:
        """Publish one message in order with the events, like `publish`; the result is its
        stream sequence (in a list). Every event appended before this call lies below it
        in the stream, every event appended after it above: a checkpoint marker."""
        seqs: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        done = self._enqueue([_Outgoing(subject, body, headers)], seqs=seqs)
        if done.done() and done.exception() is not None:
            seqs.set_exception(done.exception() or EventLogBroken("stopped"))
        return seqs

    def _enqueue(
        self, messages: list[_Outgoing], *, seqs: asyncio.Future[list[int]] | None = None
    ) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.is_broken or not self._tasks:
            done.set_exception(self._failure if self.is_broken else EventLogBroken("stopped"))
            return done
        self._queue.put_nowait(_Batch(messages, done, seqs))
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
                    await self._send(batches, futures)
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
                # asyncio.timeout, not wait_for: a stop cancels this loop, and wait_for (3.11)
                # can swallow that cancel or leave the gathered error unretrieved
                async with asyncio.timeout(self._ack_timeout_s):
                    acks = await asyncio.gather(*futures)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._break(err)
                self._fail(batches)
                continue
            if acks:
                self.last_seq = max(self.last_seq, max(acks))
            self.published += len(acks)
            at = 0
            for batch in batches:
                n = len(batch.messages)
                if batch.seqs is not None and not batch.seqs.done():
                    batch.seqs.set_result([int(a) for a in acks[at : at + n]])
                at += n
                if not batch.done.done():
                    batch.done.set_result(None)

    def set_epoch(self, epoch_subject: str, epoch: int) -> None:
        """From now on every event carries the epoch fence: the server refuses it once a
        newer epoch marker exists (ha-protocol.md §4), and names its writer. Without
        fencing (the test-only broken build) it names its writer only."""
        fence = fenced_headers(epoch_subject, epoch)
        self._fence = None if self._is_fencing_disabled else fence
        self._writer = writer_headers(epoch, self._instance_id)

    def _headers(self, m: _Outgoing) -> dict[str, str] | None:
        if not self._writer:
            return m.headers  # not leading yet
        if self._fence is None or not m.subject.startswith("titan.evt."):
            # the dead-letter stream has no epoch subject to check
            return {**(m.headers or {}), **self._writer}
        return {**(m.headers or {}), **self._writer, **self._fence}

    async def _send(self, batches: list[_Batch], futures: list[asyncio.Future[int]]) -> None:
        """Send every message of ``batches`` in order, one future each (in order)."""
        group: list[Message] = []
        size = 0
        for batch in batches:
            if group and len(group) + len(batch.messages) > MAX_BATCH_MESSAGES:
                futures.extend(await self._commit(group))  # one append stays in one batch
                group, size = [], 0
            for m in batch.messages:
                headers = self._headers(m)
                if not self._is_fenced(headers):
                    if group:
                        futures.extend(await self._commit(group))
                        group, size = [], 0
                    futures.append(await self._publisher.publish(m.subject, m.body, headers))
                elif self.is_batched:
                    if group and (
                        len(group) >= MAX_BATCH_MESSAGES or size + len(m.body) > MAX_BATCH_BYTES
                    ):
                        futures.extend(await self._commit(group))
                        group, size = [], 0
                    group.append((m.subject, m.body, self.writer.with_id(headers)))
                    size += len(m.body)
                elif self._is_fence_pipelined:
                    futures.append(await self._publisher.publish(m.subject, m.body, headers))
                else:
                    assert headers is not None
                    futures.append(
                        _stored(await self.writer.store_alone(m.subject, m.body, headers))
                    )
        if group:
            futures.extend(await self._commit(group))

    async def _commit(self, group: list[Message]) -> list[asyncio.Future[int]]:
        return [_stored(seq) for seq in await self.writer.store_batch(group)]

    def _is_fenced(self, headers: dict[str, str] | None) -> bool:
        return headers is not None and EXPECTED_LAST_SUBJECT_SEQ_SUBJECT in headers

    def _break(self, err: BaseException) -> None:
        if is_wrong_last_sequence(err):
            self.is_deposed = True
        if not self.is_broken:
            log.error("event publish failed, state is ahead of the stream: %r", err)
            self._failure = EventLogBroken(f"event publish failed: {err!r}")
        self.is_broken = True

    def _fail(self, batches: list[_Batch]) -> None:
        for batch in batches:
            if not batch.done.done():
                batch.done.set_exception(self._failure)
            if batch.seqs is not None and not batch.seqs.done():
                batch.seqs.set_exception(self._failure)

    async def drain(self) -> None:
        """Wait until everything queued so far is acknowledged (or failed)."""
        await self._enqueue([])


def _stored(seq: int) -> asyncio.Future[int]:
    """An acknowledgement already received, for the completer's in-order settling."""
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    fut.set_result(seq)
    return fut


def genesis_event(policy: dict[str, Any], *, is_armed: bool, ts_ms: int) -> Genesis:
    return Genesis(ts_ms=ts_ms, policy=policy, is_armed=is_armed, is_halted=False)
