"""Pipelined JetStream publishes whose every answer is read, errors included.

nats-py 2.16's `publish_async` never resolves a future whose ack is an error
(nats-io/nats.py#985): a fence rejection (wrong last sequence), a full stream or a missing
stream would look like a timeout. This publisher sends with `nc.publish(reply=<inbox>.<n>)`
on one wildcard inbox subscription and resolves each future itself: a stream sequence, or
a `PublishRejected` carrying the server's error code (the named one for a code `errors`
knows). Wire order is publish-call order.
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
from titan_exec.adapters.nats.headers import STATUS


class AckedPublisher:
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Any = None
        self._futures: dict[str, asyncio.Future[int]] = {}
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
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(NoResponders(NO_RESPONDERS, "publisher stopped"))
        self._futures.clear()

    @property
    def pending(self) -> int:
        return len(self._futures)

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

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        fut = self._futures.pop(token, None)
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
        fut.set_result(int(doc.get("seq", 0)))


__all__: list[str] = ["AckedPublisher", "PublishRejected"]
