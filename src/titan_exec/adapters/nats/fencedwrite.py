"""How a fenced write is stored: one message at a time, or a group as one atomic batch.

The event log (`eventlog.EventLog`) decides what to write and in which order; this module
owns getting fenced messages stored exactly once, in that order, and reading the answers.

**One at a time** (`store_alone`): one fenced message in flight. On a replicated stream
(R3) nats-server 2.15.1 refuses a write that checks the last sequence of a subject (the
epoch subject) while an earlier write checking the same subject is still being
replicated (`errors.REFUSED_WHILE_REPLICATING`), so fenced writes cannot be pipelined there.

**Group commit** (`store_batch`): everything queued goes out as one atomic batch
(nats-server 2.12+, the stream's ``allow_atomic``; headers set by
`publisher.AckedPublisher.publish_batch`), every message with the fence headers. The
server stores the whole batch or nothing of it: a stale epoch refuses it whole (10071), so
a deposed leader's batch leaves nothing in the stream. One batch is in flight at a time
(a second one checking the epoch subject would be refused with 10164 like a single
write); it carries up to `MAX_BATCH_MESSAGES` messages. Measured on a local three-node
cluster (2.15.1): 5 events in 0.9 ms, 20 in 1.4 ms, 100 in 4.3 ms, where one at a time
costs about 1 ms each.

Every message here has a ``Nats-Msg-Id`` (a message without one gets a unique one:
`with_id`), so that re-sending is always safe: the stream stores one message per id.

Answers that decide nothing are asked again (the same message ids):
- no answer within ``resend_after_s``: the message, the batch or its answer was lost with
  a dying connection. A single message is sent again. A batch is *resolved message by
  message* (`store_alone` for each): a batch re-sent whole after it was stored is refused
  with 10201 and would tell us nothing more, while a stored message re-sent alone is
  acknowledged with its sequence (a duplicate) and an unstored one is stored now, in
  order, under the same fence;
- 10201, the batch holds a message id stored before: resolved message by message too;
- 10164 refused while replicating (our previous write's in-flight mark, or a new leader's
  epoch marker in flight: the next answer tells), 10158 duplicate in process (our previous
  send of this message is still being stored): sent again after a short pause;
- no responders for at most ``unavailable_retry_s``: a replicated stream's leader handing
  over (milliseconds). A lost leader is replaced only after a raft election, seconds: fail.
Anything else raises (10071: deposed), as does no answer within ``ack_timeout_s``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets

from titan_exec.adapters.nats.errors import (
    PublishRejected,
    is_batch_with_duplicate,
    is_duplicate_in_process,
    is_no_responders,
    is_refused_while_replicating,
)
from titan_exec.adapters.nats.headers import MSG_ID
from titan_exec.adapters.nats.publisher import AckedPublisher, Message

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.01
MAX_BATCH_MESSAGES = 500
"""Messages per atomic batch; the server's default limit is 1000 (10199 above it)."""
MAX_BATCH_BYTES = 4 * 1024 * 1024
"""Bytes of bodies per atomic batch: bounds one batch's time on the wire."""


class FencedWriter:
    def __init__(
        self,
        publisher: AckedPublisher,
        *,
        ack_timeout_s: float,
        resend_after_s: float,
        unavailable_retry_s: float,
    ) -> None:
        self._publisher = publisher
        self._ack_timeout_s = ack_timeout_s
        self._resend_after_s = resend_after_s
        self._unavailable_retry_s = unavailable_retry_s
        self._prefix = secrets.token_hex(6)
        """Unique to this writer: batch ids and generated message ids never repeat."""
        self._batches = itertools.count(1)
        self._ids = itertools.count(1)
        self.batches_sent = 0
        self.batches_resolved = 0
        """Batches whose answer was lost or 10201, resolved message by message."""

    def with_id(self, headers: dict[str, str] | None) -> dict[str, str]:
        """``headers`` with a ``Nats-Msg-Id`` (a generated, never repeated one if absent)."""
        if headers and headers.get(MSG_ID):
            return headers
        return {**(headers or {}), MSG_ID: f"w.{self._prefix}.{next(self._ids)}"}

    async def store_alone(self, subject: str, body: bytes, headers: dict[str, str]) -> int:
        """Publish one fenced message and wait until it is stored (nothing else in flight
        meanwhile); its stream sequence. Without a ``Nats-Msg-Id`` it is sent once."""
        loop = asyncio.get_running_loop()
        has_id = bool(headers.get(MSG_ID))
        deadline = loop.time() + self._ack_timeout_s
        retry = _Retry(loop, self._unavailable_retry_s)
        while True:
            ack = await self._publisher.publish(subject, body, headers)
            left = deadline - loop.time()
            # asyncio.wait, not wait_for: it never swallows a cancellation (Python 3.11)
            await asyncio.wait({ack}, timeout=min(left, self._resend_after_s) if has_id else left)
            if not ack.done():
                ack.cancel()  # a late answer is ignored
                if not has_id or loop.time() >= deadline:
                    raise TimeoutError(f"no acknowledgement for {subject}")
                log.warning("event %s not acknowledged yet: sending it again", subject)
                continue
            err = ack.exception()
            if err is None:
                return ack.result()
            if not has_id or loop.time() >= deadline:
                raise err
            retry.check(err)
            await asyncio.sleep(RETRY_PAUSE_S)

    async def store_batch(self, messages: list[Message]) -> list[int]:
        """Store ``messages`` (each with a ``Nats-Msg-Id``) in order, as one atomic batch
        when nothing goes wrong; their stream sequences."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ack_timeout_s
        retry = _Retry(loop, self._unavailable_retry_s)
        while True:
            batch_id = f"{self._prefix}.{next(self._batches)}"
            ack = await self._publisher.publish_batch(messages, batch_id)
            self.batches_sent += 1
            left = deadline - loop.time()
            await asyncio.wait({ack}, timeout=min(left, self._resend_after_s))
            if not ack.done():
                ack.cancel()
                log.warning(
                    "batch %s (%d events) not acknowledged yet: resolving it event by event",
                    batch_id,
                    len(messages),
                )
                return await self._one_by_one(messages)
            err = ack.exception()
            if err is None:
                last, count = ack.result()
                if count != len(messages):
                    raise PublishRejected(0, f"batch {batch_id}: {count} of {len(messages)} stored")
                return list(range(last - count + 1, last + 1))
            if is_batch_with_duplicate(err):
                log.warning("batch %s holds an event stored before: resolving it", batch_id)
                return await self._one_by_one(messages)
            if loop.time() >= deadline:
                raise err
            retry.check(err)
            await asyncio.sleep(RETRY_PAUSE_S)

    async def _one_by_one(self, messages: list[Message]) -> list[int]:
        self.batches_resolved += 1
        return [await self.store_alone(s, b, h) for s, b, h in messages]


class _Retry:
    """Which refusals are asked again: 10164 and 10158 always, no responders for a while."""

    def __init__(self, loop: asyncio.AbstractEventLoop, unavailable_retry_s: float) -> None:
        self._loop = loop
        self._unavailable_retry_s = unavailable_retry_s
        self._unavailable_until: float | None = None

    def check(self, err: BaseException) -> None:
        """Return to ask again; raise ``err`` when it decides."""
        if not isinstance(err, PublishRejected):
            raise err
        if is_no_responders(err):
            now = self._loop.time()
            if self._unavailable_until is None:
                self._unavailable_until = now + self._unavailable_retry_s
            if now >= self._unavailable_until:
                raise err
        elif not (is_refused_while_replicating(err) or is_duplicate_in_process(err)):
            raise err


__all__: list[str] = ["MAX_BATCH_BYTES", "MAX_BATCH_MESSAGES", "FencedWriter"]
