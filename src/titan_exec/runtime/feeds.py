"""Stand-ins for the rest of Titan, used by the demo, the bench and the tests: a brain that
publishes heartbeats and signed intents, and a market-data feed of book tickers."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import api

from titan_exec.wire.envelope import sign_envelope
from titan_exec.wire.subjects import Subjects

_SUBJECTS = Subjects()
"""Ticker and heartbeat subjects are the same in every namespace."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Brain:
    """Signs and publishes intents and control commands the way the TypeScript brain does."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        secret: bytes,
        ns: str = "exec",
        venue: str = "sim",
        account: str = "main",
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.secret = secret
        self.subjects = Subjects(ns)
        self.ns = ns
        self.venue = venue
        self.account = account
        self.clock = clock
        self._hb_task: asyncio.Task[None] | None = None

    def envelope(
        self,
        payload: dict[str, Any],
        *,
        kind: str = "place",
        nonce: str | None = None,
        ts_ms: int | None = None,
        secret: bytes | None = None,
    ) -> bytes:
        sid = str(payload.get("signal_id", payload.get("action", "")))
        return sign_envelope(
            payload,
            secret=secret or self.secret,
            ts_ms=ts_ms if ts_ms is not None else self.clock(),
            nonce=nonce or os.urandom(16).hex(),
            type_=self.subjects.command_type(kind),
            producer="titan-brain",
            key_id="default",
            id=f"env-{sid}-{os.urandom(4).hex()}",
            correlation_id=sid,
            idempotency_key=sid,
        )

    def intent(
        self,
        signal_id: str,
        symbol: str,
        type_: str,
        size: str,
        *,
        entry: str | None = None,
        t_signal: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema_version": "1.0.0",
            "signal_id": signal_id,
            "source": "brain",
            "symbol": symbol,
            "direction": {"BUY_SETUP": 1, "SELL_SETUP": -1}.get(type_, 0),
            "type": type_,
            "size": float(size),
            "status": "VALIDATED",
            "t_signal": t_signal if t_signal is not None else self.clock(),
            "metadata": {"correlation_id": signal_id},
        }
        if entry is not None:
            doc["entry_zone"] = [float(entry)]
        doc.update(extra)
        return doc

    def place_subject(self, symbol: str) -> str:
        return self.subjects.place(self.venue, self.account, symbol)

    async def publish(self, subject: str, data: bytes, msg_id: str) -> api.PubAck:
        return await self.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})

    async def place(self, payload: dict[str, Any], **kw: Any) -> api.PubAck:
        data = self.envelope(payload, **kw)
        return await self.publish(
            self.place_subject(payload["symbol"]), data, str(payload["signal_id"])
        )

    async def control(self, action: str, **payload: Any) -> api.PubAck:
        body = {"action": action, **payload}
        data = self.envelope(body, kind="control")
        return await self.publish(
            self.subjects.control(action), data, f"control-{action}-{os.urandom(4).hex()}"
        )

    async def heartbeat(self) -> None:
        await self.nc.publish(
            self.subjects.heartbeat("risk-guardian"),
            json.dumps({"ts": self.clock(), "status": "ok"}).encode(),
        )

    def start_heartbeats(self, interval_s: float = 1.0) -> None:
        async def beat() -> None:
            while True:
                await self.heartbeat()
                await asyncio.sleep(interval_s)

        self._hb_task = asyncio.create_task(beat(), name="brain-heartbeat")

    async def stop(self) -> None:
        if self._hb_task is not None:
            await _cancel(self._hb_task)


class TickerFeed:
    """Book tickers on `titan.data.market.ticker.v1.<venue>.<symbol>`, a deterministic path."""

    def __init__(
        self,
        nc: NatsClient,
        prices: dict[str, Decimal],
        *,
        venue: str = "sim",
        spread_bps: Decimal = Decimal("1"),
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.nc = nc
        self.prices = dict(prices)
        self.venue = venue
        self.spread_bps = spread_bps
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._step = 0

    def quote(self, symbol: str) -> tuple[Decimal, Decimal]:
        mid = self.prices[symbol]
        half = (mid * self.spread_bps / Decimal(20000)).quantize(Decimal("0.01"))
        half = max(half, Decimal("0.01"))
        return mid - half, mid + half

    async def publish_all(self) -> None:
        for symbol in self.prices:
            bid, ask = self.quote(symbol)
            doc = {"bid": str(bid), "ask": str(ask), "ts": self.clock()}
            await self.nc.publish(
                _SUBJECTS.ticker(self.venue, symbol),
                json.dumps(doc).encode(),
            )
        await self.nc.flush()

    def move(self, symbol: str, to: Decimal) -> None:
        self.prices[symbol] = to

    def start(self, interval_s: float = 0.25) -> None:
        async def run() -> None:
            while True:
                await self.publish_all()
                await asyncio.sleep(interval_s)

        self._task = asyncio.create_task(run(), name="ticker-feed")

    async def stop(self) -> None:
        if self._task is not None:
            await _cancel(self._task)


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel until it ends: a cancel that lands inside nats-py's own `wait_for` can be
    swallowed (Python 3.11), and the loop then goes on as if nothing happened (it hung a
    test's teardown for ever)."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        task.exception()  # retrieved: an error of a stopping feed is not reported
