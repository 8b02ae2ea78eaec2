"""Pipelined JetStream publishes whose every answer is read, errors included.

nats-py 2.16's `publish_async` never resolves a future whose ack is an error
(nats-io/nats.py#985): a fence rejection (wrong last sequence), a full stream or a missing
stream would look like a timeout. This publisher sends with `nc.publish(reply=<inbox>.<n>)`
on one wildcard inbox subscription and resolves each future itself: a stream sequence, or
a `PublishRejected` carrying the server's error code (the named one for a code `errors`
knows). Wire order is publish-call order.

`publish_batch` sends an atomic batch (nats-server 2.12+, ``allow_atomic``): every message
but the last without a reply (no answer is read for them), the last with the commit
header; its future resolves to the last stored sequence and the count the server stored.
nats-py 2.16 has no helper for this: the headers are set here (``headers.BATCH_*``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from titan_exec.adapters.nats.errors import (
    NO_RESPONDERS,
    NoResponders,
    PublishRejected,
    reply_error_code,
)
from titan_exec.adapters.nats.headers import BATCH_COMMIT, BATCH_ID, BATCH_SEQUENCE, STATUS

Message = tuple[str, bytes, dict[str, str]]
"""Subject, body, headers."""


class AckedPublisher:
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Any = None
        self._futures: dict[str, asyncio.Future[int]] = {}
        self._commits: dict[str, asyncio.Future[tuple[int, int]]] = {}
        self._counter = itertools.count(1)

    async def start(self) -> None:
        self._prefix = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
            self._sub = None
        pending: list[asyncio.Future[Any]] = [*self._futures.values(), *self._commits.values()]
        for fut in pending:
            if not fut.done():
                fut.set_exception(NoResponders(NO_RESPONDERS, "publisher stopped"))
        self._futures.clear()
        self._commits.clear()

    @property
    def pending(self) -> int:
        return len(self._futures) + len(self._commits)

    async def publish(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[int]:
        """Send now; the future resolves to the stream sequence or raises PublishRejected."""
        token = str(next(self._counter))
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._futures[token] = fut
        try:
            await self._nc.publish(subject, body, reply=f"{self._prefix}.{token}", headers=headers)
        except BaseException:
            self._futures.pop(token, None)
            raise
        return fut

    async def publish_batch(
        self, messages: list[Message], batch_id: str
    ) -> asyncio.Future[tuple[int, int]]:
        """Send ``messages`` as one atomic batch; the future resolves to (the last stored
        sequence, the count stored) or raises PublishRejected (nothing was stored)."""
        if not messages:
            raise ValueError("an atomic batch needs at least one message")
        token = f"b{next(self._counter)}"
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._commits[token] = fut
        last = len(messages)
        try:
            for n, (subject, body, headers) in enumerate(messages, 1):
                tagged = {**headers, BATCH_ID: batch_id, BATCH_SEQUENCE: str(n)}
                if n < last:
                    await self._nc.publish(subject, body, headers=tagged)
                else:
                    tagged[BATCH_COMMIT] = "1"
                    reply = f"{self._prefix}.{token}"
                    await self._nc.publish(subject, body, reply=reply, headers=tagged)
        except BaseException:
            self._commits.pop(token, None)
            raise
        return fut

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        fut: asyncio.Future[Any] | None = self._futures.pop(token, None) or self._commits.pop(
            token, None
        )
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get(STATUS) == str(NO_RESPONDERS):
            fut.set_exception(NoResponders(NO_RESPONDERS, "no responders: no such stream"))
            return
        try:
            doc = json.loads(msg.data)
        except ValueError:
            fut.set_exception(PublishRejected(0, f"unreadable ack: {msg.data[:200]!r}"))
            return
        error = doc.get("error") if isinstance(doc, dict) else None
        if error:
            fields: dict[str, Any] = error if isinstance(error, dict) else {}
            description = str(fields.get("description", ""))
            fut.set_exception(PublishRejected.of(reply_error_code(fields), description))
            return
        seq = int(doc.get("seq", 0))
        fut.set_result((seq, int(doc.get("count", 0))) if token.startswith("b") else seq)


__all__: list[str] = ["AckedPublisher", "Message", "PublishRejected"]
