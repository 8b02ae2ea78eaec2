"""The instance's role changes, carried out: the steps the election asks for (`ha.Takeover`)
and what it watches (`ha.Observed`), also run by hand without the lease.

    load ─▶ follow (Standby) ─▶ take over: epoch marker ─▶ drain to the head ─▶ open intake
                  ▲                                                       (LeaderSession)
                  └──────── stand down: the session ends, load again ◀── fenced

The role is the leadership core's (`core.leadership.Role`): the driver's in a pair (the
composition root reads it there), and the one these steps reach without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from titan_exec.adapters.nats.eventlog import EventLog, EventLogBroken
from titan_exec.clock import monotonic_ms
from titan_exec.core import leadership as ld
from titan_exec.core.leadership import Role
from titan_exec.core.state import State
from titan_exec.runtime import loading, views
from titan_exec.runtime.drift import DriftMonitor
from titan_exec.runtime.epoch import write_epoch_marker
from titan_exec.runtime.leader import LeaderSession, Parts
from titan_exec.runtime.nodeparts import event_log
from titan_exec.runtime.standby import Standby

if TYPE_CHECKING:
    from titan_exec.runtime.ha import HaDriver

log = logging.getLogger(__name__)

REBUILD_RETRY_S = 1.0


class Roles:
    """`on_stop(reason, is_fatal)` ends the process: a planned end, or a fatal one;
    `on_tick` runs with each truth snapshot of the active (the gauges)."""

    def __init__(
        self,
        parts: Parts,
        health: views.Health,
        drift: DriftMonitor,
        *,
        on_stop: Callable[[str, bool], None],
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        self.p = parts
        self._on_tick = on_tick
        self.health = health
        self.drift = drift
        self._on_stop = on_stop
        self.events: EventLog | None = None
        self.standby: Standby | None = None
        self.leader: LeaderSession | None = None
        self.ha: HaDriver | None = None
        """The election, once started (None without the lease)."""
        self.role: Role | None = None
        self.epoch = 0
        self._command_sub: Any = None
        """This instance's pull subscription on its durable consumer, between its readers
        (the standby's, the intake's): one subscription, so no delivery falls between."""

    @property
    def state(self) -> State:
        return self.events.state if self.events is not None else State()

    # --- load and follow -----------------------------------------------------------------------

    async def load(self, *, prefer: str | None = None) -> None:
        """The state and its writer (idle until an epoch is set), `loading.load`."""
        p, cfg = self.p, self.p.cfg
        loaded = await loading.load(
            p.js,
            p.store,
            ns=cfg.service.namespace,
            bucket=cfg.snapshots.bucket,
            say=p.say,
            prefer=prefer,
        )
        if loaded.snapshot_bytes is not None:
            p.metrics.snapshot_bytes.set(loaded.snapshot_bytes)
        for phase, ms in loaded.startup_ms.items():
            p.metrics.startup_seconds.labels(phase).set(ms / 1000)
        h = self.health
        h.replayed_events, h.snapshot_seq = loaded.replayed, loaded.snapshot_seq
        h.startup_ms = loaded.startup_ms
        self.events = event_log(p.nc, loaded.state, cfg, p.subjects)
        self.events.last_seq = loaded.last_seq

    async def follow(self) -> None:
        """Hot standby: fold new events as they land; no venue writes."""
        assert self.events is not None
        last = self.events.last_seq
        self.standby = Standby(
            self.p.js,
            self.p.cfg,
            self.events.state,
            after_seq=last,
            drift=self.drift,
            command_sub=self._take_command_sub(),
        )
        await self.standby.start()
        self.role, self.epoch = Role.STANDBY, 0
        self._set_ready(True)
        self.p.say(f"hot standby: following the event stream from seq {last}; no venue writes")

    async def _load_and_follow(self, why: str, *, prefer: str | None = None) -> None:
        """Load again and follow; NATS may be out of reach (often the reason): retry."""
        while True:
            try:
                await self.load(prefer=prefer)
                await self.follow()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("%s failed (%r); retrying", why, err)
                await asyncio.sleep(REBUILD_RETRY_S)

    async def end_standby(self) -> None:
        if self.standby is not None:
            standby, self.standby = self.standby, None
            self._command_sub = await standby.stop()

    def _take_command_sub(self) -> Any:
        sub, self._command_sub = self._command_sub, None
        return sub

    async def close_command_sub(self) -> None:
        sub = self._take_command_sub()
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as err:  # closing: the connection may be gone already
                log.debug("command subscription not closed: %r", err)

    def _set_ready(self, is_ready: bool) -> None:
        self.health.is_ready = is_ready
        self.p.metrics.ready.set(1 if is_ready else 0)

    # --- the takeover (`ha.Takeover`) -----------------------------------------------------------

    async def take_over(self) -> int:
        """Become the active without the election (ha-protocol.md §6), the same three steps
        the driver runs one by one: epoch marker, drain to the head, open intake."""
        self.role = Role.PROMOTING
        epoch = await self.write_epoch_marker(token="", timeout_s=5.0)
        await self.drain_to_head()
        await self.open_intake(epoch)
        return epoch

    async def write_epoch_marker(self, *, token: str, timeout_s: float) -> int:
        svc = self.p.cfg.service
        return await write_epoch_marker(
            self.p.js,
            self.p.subjects.epoch(svc.shard),
            instance_id=svc.instance_id,
            ts_ms=self.p.clock(),
            token=token,
            timeout_s=timeout_s,
        )

    async def drain_to_head(self) -> None:
        """Stop following and fold the rest of the stream: the state is now complete."""
        assert self.events is not None
        standby = self.standby
        await self.end_standby()
        if standby is None:
            return
        last = await loading.catch_up(
            self.p.js,
            self.events.state,
            ns=self.p.cfg.service.namespace,
            after_seq=standby.last_seq,
        )
        self.events.last_seq = max(self.events.last_seq, last)

    async def open_intake(self, epoch: int) -> None:
        assert self.events is not None
        self.leader = LeaderSession(
            self.p,
            self.events,
            command_sub=self._take_command_sub(),
            may_write_venue=self.ha.can_write_venue if self.ha is not None else lambda: True,
            on_failure=self._on_leader_failure,
            on_tick=self._on_tick,
        )
        await self.leader.open(epoch)
        self.role, self.epoch = Role.ACTIVE, epoch
        self._set_ready(True)
        self.p.say(f"active with epoch {epoch}: intake open")

    async def close_intake(self) -> None:
        if self.leader is not None:
            await self.leader.close_intake()

    async def stand_down(self, reason: str) -> None:
        """FENCED → STANDBY without leaving the process (ha-protocol.md §2, §9): venue
        writes stop at once, the session ends, the local state is thrown away (events it
        applied may have been refused by the stream), loaded again, and followed."""
        self.role = Role.FENCED
        self._set_ready(False)
        self.p.metrics.fencings.inc()
        log.warning("fenced (%s): stopping venue writes and leader tasks", reason)
        await self.end_leading()
        await self._load_and_follow("rebuild after fencing")
        self.p.say(f"rejoined as hot standby after: {reason}")

    async def end_leading(self, *, is_final: bool = False) -> None:
        if self.leader is not None:
            leader, self.leader = self.leader, None
            self._command_sub = await leader.stop(is_final=is_final)

    def finish(self, reason: str) -> None:
        """A planned end (switchover, SIGTERM while fenced): stop, not a failure."""
        self._on_stop(reason, False)

    # --- what the driver and the drift monitor watch (`ha.Observed`) ----------------------------

    async def is_caught_up(self) -> bool:
        return self.standby is not None and await self.standby.is_caught_up()

    def drift_alarm(self) -> dict[str, Any] | None:
        return (self.drift.last_alarm or {}) if self.drift.has_alarm else None

    def writer_broken(self) -> bool | None:
        events = self.events
        return events.is_deposed if events is not None and events.is_broken else None

    def report_drift(self, has_alarm: bool) -> None:
        """The drift alarm reaches the election at once (no promotion from here on)."""
        if self.ha is not None:
            follower = self.standby.follower if self.standby is not None else None
            is_caught_up = follower is not None and follower.caught_up.is_set()
            self.ha.put(ld.ShadowReported(is_caught_up, has_alarm, monotonic_ms()))

    async def rebuild_standby(self, reason: str, snapshot: str | None) -> None:
        """Throw the standby's state away and load it again (drift): from `snapshot` (one
        this standby matched) or the newest usable one, plus the tail; then follow again.
        The command shadow stops meanwhile (it must not acknowledge by a wrong state)."""
        if self.standby is None:
            return
        self.health.is_ready = False
        log.warning("rebuilding the standby state (%s)", reason)
        await self.end_standby()
        await self._load_and_follow("standby rebuild", prefer=snapshot)
        self.p.say(f"standby rebuilt after: {reason}")

    async def publish_drift(self, doc: dict[str, Any]) -> None:
        nc = self.p.nc
        if nc.is_closed:
            return
        subject = self.p.subjects.drift(self.p.cfg.service.instance_id)
        try:
            await nc.publish(subject, json.dumps(doc).encode())
        except Exception as err:  # telemetry: the log line and the metrics have it
            log.warning("drift event not published: %r", err)

    def _on_leader_failure(self, name: str, err: BaseException) -> None:
        """A leader task failed. An event write failed (NATS lost a stream leader, ...):
        the state may be ahead of the stream; in a pair the election fences and rebuilds,
        alone the instance stops (a restart rebuilds). Anything else is a programming error
        or a failure nothing handled: an active that silently stopped tracking its orders
        or reading commands is worse than a failover, so it stops (fatal: `/ready` fails;
        in a pair the lease is released and the standby takes over)."""
        if self.health.is_stopping:
            return
        reason = f"leader task {name} failed: {err!r}"
        if not isinstance(err, EventLogBroken):
            log.critical("leader task %s failed", name, exc_info=err)
            self._on_stop(reason, True)
            return
        log.warning("%s", reason)
        if self.ha is not None and self.events is not None:
            self.ha.put(ld.WriteRejected(monotonic_ms(), is_deposed=self.events.is_deposed))
            return
        self._on_stop(reason, True)
