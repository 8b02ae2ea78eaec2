"""Steady signed intent load for the chaos matrix, the way the brain sends it.

Market intents at a fixed rate, alternating symbols and sides (small sizes, so that
positions stay bounded); the brain's heartbeat beside them. An intent whose publish fails
(no stream leader, a reconnect) is sent again under the same `signal_id`, hence the same
`Nats-Msg-Id`: the stream stores it once, and the ack of a re-send names the stored
sequence. Every stored intent's `TITAN_CMD` sequence is remembered with the run it
belongs to: the checker asks that each of them was decided exactly once.

Controls ride along, as the real deployment sends them (`controls_every`, 0: none): every
so many intents the brain's unsigned bare halt (`titan.cmd.sys.halt.v1`), then a signed open
that lifts it, and RiskGuardian's risk state (`titan.evt.risk.state.v1`, Cautious and
Normal in turn): the intents between a halt and its open are refused, and at the end both
instances must agree on the halt, the risk state and every control outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient

from titan_exec_lab.harness.feeds import Brain

log = logging.getLogger(__name__)

RETRYABLE = (nats.errors.Error, TimeoutError)


class IntentLoad:
    def __init__(
        self,
        nc: NatsClient,
        *,
        secret: bytes,
        rate_per_s: float,
        controls_every: int = 0,
        venues: tuple[str, ...] = (),
    ) -> None:
        """`venues`: more than one, the intents name them in turn as their `exchange` (the
        brain's routing); none or one: every intent to the subject's venue."""
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if controls_every < 0:
            raise ValueError(f"controls_every must be >= 0, got {controls_every}")
        self.brain = Brain(nc, secret=secret, venue=venues[0] if venues else "sim")
        self.venues = venues if len(venues) > 1 else ()
        self.controls_every = controls_every
        self.controls_sent = 0
        self.risk_states_sent = 0
        self.interval_s = 1.0 / rate_per_s
        self.sent: dict[int, list[int]] = {}
        """Run number → `TITAN_CMD` sequences of the intents stored during it."""
        self.failed_attempts = 0
        self._n = 0
        self._run = 0
        self._task: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None

    def start_heartbeats(self) -> None:
        async def beat() -> None:
            while True:
                with contextlib.suppress(*RETRYABLE):
                    await self.brain.heartbeat()
                await asyncio.sleep(0.5)

        self._beat = asyncio.create_task(beat(), name="chaos-heartbeat")

    def start(self, run: int) -> None:
        """Send intents at the rate until `stop`, counting them for `run`."""
        assert self._task is None, "load already running"
        self._run = run
        self.sent.setdefault(run, [])
        self._task = asyncio.create_task(self._send_loop(), name="chaos-load")

    async def stop(self) -> None:
        """Stop after the intent in flight (an intent being re-sent is finished first)."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await self.stop()
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat

    _stopping = False

    async def _send_loop(self) -> None:
        self._stopping = False
        next_at = time.monotonic()
        while not self._stopping:
            await self._send_one()
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _send_one(self) -> None:
        i = self._n
        self._n += 1
        symbol = ("BTC/USDT", "ETH/USDT")[i % 2]
        size = "0.002" if symbol == "BTC/USDT" else "0.01"
        kind = "BUY_SETUP" if (i // 2) % 2 == 0 else "SELL_SETUP"
        signal_id = f"chaos-{i}"
        # every venue sees both symbols and both sides: a venue per four intents
        routed: dict[str, Any] = (
            {"exchange": self.venues[(i // 4) % len(self.venues)]} if self.venues else {}
        )
        while True:
            try:
                # signed anew on each attempt (fresh timestamp and nonce), as the brain would
                intent = self.brain.intent(signal_id, symbol, kind, size, **routed)
                ack = await self.brain.place(intent)
                break
            except RETRYABLE:
                self.failed_attempts += 1
                await asyncio.sleep(self.interval_s)
        self.sent[self._run].append(int(ack.seq))
        if self.controls_every and i % self.controls_every == self.controls_every - 1:
            await self._send_controls(i // self.controls_every)

    async def _send_controls(self, k: int) -> None:
        """The brain's bare halt, then a signed open (both commands: decided exactly once,
        like the intents); then RiskGuardian's risk state, Cautious and Normal in turn."""
        halt = {"state": "HARD_HALT", "reason": "chaos", "timestamp": self.brain.clock()}
        sends = [
            ("titan.cmd.sys.halt.v1", lambda: json.dumps(halt).encode(), f"chaos-halt-{k}"),
            (
                self.brain.subjects.control("open"),
                lambda: self.brain.envelope({"action": "open", "reason": "chaos"}, kind="control"),
                f"chaos-open-{k}",
            ),
        ]
        for subject, body, msg_id in sends:
            self.sent[self._run].append(await self._publish(subject, body, msg_id))
            self.controls_sent += 1
        state = ("Cautious", "Normal")[k % 2]
        await self._publish(
            "titan.evt.risk.state.v1", lambda: json.dumps(state).encode(), f"chaos-risk-{k}"
        )
        self.risk_states_sent += 1

    async def _publish(self, subject: str, body: Callable[[], bytes], msg_id: str) -> int:
        while True:
            try:
                ack = await self.brain.js.publish(
                    subject, body(), headers={"Nats-Msg-Id": f"{msg_id}-{os.getpid()}"}
                )
                return int(ack.seq)
            except RETRYABLE:
                self.failed_attempts += 1
                await asyncio.sleep(self.interval_s)
