"""Reading the service's own events back: replay at start-up, and the standby's follower.

`replay_stream` folds the namespace's events from a sequence to the head of `TITAN_EVT`
(start-up, and the drain of a takeover). `EventFollower` is a standby's shadow state: an
ordered consumer that applies every new event as it lands, with the same `step` the
active uses, so both hold the same state and can compare hashes at a stream position.
Both skip (and log, and count) a state message the fold cannot take (`fold_message`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from titan_exec.core.events import Event
from titan_exec.core.foldcheck import fold_checked
from titan_exec.core.state import State
from titan_exec.wire.contract import decode_event
from titan_exec.wire.subjects import Subjects
from titan_exec.wire.text import printable_subject

log = logging.getLogger(__name__)

FOLLOWER_IDLE_HEARTBEAT_S = 1.0


async def replay_stream(
    js: JetStreamContext,
    *,
    stream: str,
    ns: str,
    state: State | None = None,
    start_seq: int = 1,
    batch: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> tuple[State, int]:
    """Fold the state events of namespace `ns` in `stream` from `start_seq` to the head;
    returns (state, the last sequence read, or `start_seq - 1` when there was none)."""
    state = state or State()
    info = await js.stream_info(stream)
    last = info.state.last_seq
    if info.state.messages == 0 or last < start_seq:
        return state, max(start_seq - 1, 0)
    sub = await js.pull_subscribe(
        Subjects(ns).events,
        stream=stream,
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=start_seq,
            inactive_threshold=30.0,
        ),
    )
    seen = 0
    last_seq = start_seq - 1
    try:
        consumer = await sub.consumer_info()
        if int(consumer.num_pending or 0) == 0:
            return state, last_seq  # nothing of ours past start_seq: no fetch to wait out
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except TimeoutError:
                break
            for msg in msgs:
                meta: Any = msg.metadata
                last_seq = meta.sequence.stream
                ev = fold_message(state, msg.subject, msg.data, ns=ns, seq=last_seq)
                if ev is not None:
                    seen += 1
                    if on_event is not None:
                        on_event(ev)
            if progress is not None:
                progress(seen, last)
            if msgs and msgs[-1].metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return state, max(last_seq, 0)


def fold_message(state: State, subject: str, data: bytes, *, ns: str, seq: int) -> Event | None:
    """Fold one message of the event stream; the event, or None for what the fold does not
    read (telemetry, markers) *and* for a state message it cannot take: one that does not
    decode or that the fold would refuse (`core.foldcheck`). Such a message was not
    written by an active (which applied every event before writing it): it is skipped,
    as the active skipped it, logged and counted, so that no message on the bus can stop
    a replay or a standby."""
    try:
        ev = decode_event(subject, data, ns=ns)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeError, ValueError) as err:
        _skipped(subject, seq, f"does not decode: {err}")
        return None
    if ev is None:
        return None
    problem = fold_checked(state, ev)
    if problem is not None:
        _skipped(subject, seq, problem)
        return None
    return ev


SKIPPED_EVENTS = [0]
"""State messages skipped in this process (a foreign writer on the event subjects)."""


def _skipped(subject: str, seq: int, why: str) -> None:
    SKIPPED_EVENTS[0] += 1
    log.error(
        "event stream message %d on %s skipped, not written by an active: %s",
        seq,
        printable_subject(subject)[:200],
        why[:300],
    )


class EventFollower:
    """Applies new events of `ns` to `state` as they arrive (a standby's shadow state)."""

    def __init__(
        self,
        js: JetStreamContext,
        state: State,
        *,
        ns: str,
        after_seq: int,
        on_event: Callable[[Event], None] | None = None,
        on_other: Callable[[str, bytes, int], None] | None = None,
    ) -> None:
        self._js = js
        self._on_other = on_other
        """Called with (subject, data, seq) for the namespace's other messages (checkpoint
        markers, truth events) before the follower moves past them: the state is then the
        fold of every event below `seq`."""
        self.state = state
        self._ns = ns
        self.last_seq = after_seq
        self._on_event = on_event
        self._epoch_prefix = Subjects(ns).epoch_prefix
        self._sub: Any = None
        self.applied = 0
        self.caught_up = asyncio.Event()
        self.lag = 0
        """Messages the server still has for this follower (its last report)."""
        self.newest_epoch = 0
        """Stream sequence of the newest epoch marker seen (the epoch the active writes in)."""

    async def start(self) -> None:
        # The ordered consumer is a single replica on one NATS node; nats-py replaces it
        # after two missed idle heartbeats (default 5 s each), and again every two if the
        # replacement fails (no JetStream meta leader yet, after a node loss): at 1 s a
        # standby resumes following within seconds instead of tens of seconds.
        self._sub = await self._js.subscribe(
            Subjects(self._ns).events,
            ordered_consumer=True,
            idle_heartbeat=FOLLOWER_IDLE_HEARTBEAT_S,
            cb=self._on_msg,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.last_seq + 1,
            ),
        )

    async def _on_msg(self, msg: Msg) -> None:
        meta: Any = msg.metadata
        seq = meta.sequence.stream
        if seq <= self.last_seq:
            return
        ev = fold_message(self.state, msg.subject, msg.data, ns=self._ns, seq=seq)
        if ev is not None:
            self.applied += 1
            if self._on_event is not None:
                self._on_event(ev)
        elif self._on_other is not None:
            self._on_other(msg.subject, msg.data, seq)
        self.last_seq = seq
        if msg.subject.startswith(self._epoch_prefix):
            self.newest_epoch = seq
        self.lag = int(meta.num_pending or 0)
        if meta.num_pending == 0:
            self.caught_up.set()

    async def is_at_head(self) -> bool:
        """True when the server has nothing more for this follower (caught up)."""
        if self.caught_up.is_set():
            return True
        if self._sub is None:
            return False
        try:
            info = await self._sub.consumer_info()
        except Exception:
            return False
        self.lag = int(info.num_pending or 0)
        return self.lag == 0 and int(info.num_ack_pending or 0) == 0

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                log.debug("follower unsubscribe failed", exc_info=True)
            self._sub = None
