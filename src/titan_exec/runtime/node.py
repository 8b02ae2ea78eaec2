"""One execution service instance: the composition root. It only wires.

Start-up: connect → ensure streams → load the state (`loading.load`: newest snapshot +
tail) → either take over at once (`service.mode = active` without lease election) or follow
the stream as a hot standby (`standby.Standby`), the election (`ha.HaDriver`) deciding when
to take over. The takeover's steps are `write_epoch_marker` → `drain_to_head` →
`open_intake` (a `leader.LeaderSession`); fenced, `stand_down` ends the session, loads
again and follows. The role is the leadership core's (`core.leadership.Role`): the
driver's in a pair, set here by the same steps without the lease.

What the instance shows is rendered by `views.py` from one `Sources` value (`sources`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from titan_exec.adapters.nats.connect import ConnectionEvent, NatsSettings
from titan_exec.adapters.nats.connect import connect as connect_nats
from titan_exec.adapters.nats.eventlog import EventLog, EventLogBroken
from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.adapters.venue.base import Venue
from titan_exec.api.metrics import Metrics
from titan_exec.clock import monotonic_ms, wall_clock_ms
from titan_exec.config import Config
from titan_exec.core import leadership as ld
from titan_exec.core.leadership import Role
from titan_exec.core.state import State
from titan_exec.runtime import loading, views
from titan_exec.runtime.drift import DriftMonitor
from titan_exec.runtime.epoch import write_epoch_marker
from titan_exec.runtime.ha import HaDriver
from titan_exec.runtime.leader import LeaderSession, Parts
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.marketin import MarketInputs
from titan_exec.runtime.nodeparts import decision_config, event_log
from titan_exec.runtime.quotes import VenuePrices
from titan_exec.runtime.standby import Standby
from titan_exec.wire.replay import NonceCache
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

REBUILD_RETRY_S = 1.0
STOP_STEP_S = 5.0

UNSAFE_BUILD_WARNING = (
    "UNSAFE TEST BUILD: epoch fencing disabled — never run this with real money "
    "(TITAN_UNSAFE_DISABLE_FENCING=1)"
)


class Node:
    def __init__(
        self,
        cfg: Config,
        *,
        venue: Venue,
        nats: NatsSettings,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.cfg, self.venue, self.nats_settings, self.clock = cfg, venue, nats, clock
        self.subjects = Subjects(cfg.service.namespace)
        self.metrics = Metrics()
        self.market = MarketData(clock, metrics=self.metrics)
        self.prices = VenuePrices(
            cfg, market=self.market, venue=venue, state=lambda: self.state, metrics=self.metrics
        )
        """The venue's own book tickers (`runtime/quotes.py`), in every role."""
        self.inputs = MarketInputs(self.market, venue, self.subjects)
        self.health = views.Health()
        self.hashes = views.HashCache()
        self.dcfg = decision_config(cfg, venue.name, self.subjects)
        self.nonces = NonceCache(window_ms=cfg.security.timestamp_tolerance_s * 1000)
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.store: SnapshotStore | None = None
        self.events: EventLog | None = None
        self.standby: Standby | None = None
        self.leader: LeaderSession | None = None
        self.ha: HaDriver | None = None
        self._role: Role | None = None
        """Without the lease election: the role these steps reached (with it: the driver's)."""
        self.epoch = 0
        self._command_sub: Any = None
        """This instance's pull subscription on its durable consumer, between its readers
        (the standby's, the intake's): one subscription, so no delivery falls between."""
        self._say: Callable[[str], None] = lambda m: log.info("%s", m)
        self._stopped = asyncio.Event()
        self._stop_task: asyncio.Future[None] | None = None
        self.drift = DriftMonitor(
            lambda: self.state,
            lambda: self.store,
            publish=self.publish_drift,
            report=self._report_drift,
            rebuild=self.rebuild_standby,
            metrics=self.metrics,
            instance_id=cfg.service.instance_id,
            clock=clock,
        )

    # --- what it holds --------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.events.state if self.events is not None else State()

    @property
    def role(self) -> Role | None:
        return self.ha.leadership_role if self.ha is not None else self._role

    @property
    def stream_seq(self) -> int:
        """The `TITAN_EVT` sequence the state has folded up to (its position)."""
        if self.standby is not None:
            return self.standby.last_seq
        return self.events.last_seq if self.events is not None else 0

    # --- start ------------------------------------------------------------------------------

    async def start(self, *, progress: Callable[[str], None] | None = None) -> None:
        """Connect, load the state, then run as the active (`service.mode = active`: the
        takeover at once) or as a hot standby that follows the event stream."""
        self._say = say = progress or (lambda m: log.info("%s", m))
        self.health.started_at_ms = self.clock()
        if self.cfg.is_unsafe_fencing_disabled:
            log.error(UNSAFE_BUILD_WARNING)
            say(UNSAFE_BUILD_WARNING)
        nc = await self._connect()
        await self._load()
        await self.inputs.start(nc)
        self.prices.start()
        if not (self.cfg.is_standby or self.cfg.ha.enabled):
            await self.take_over()
            return
        await self._follow()  # with the lease on, every instance starts hot
        if not self.cfg.ha.enabled:
            log.warning(
                "standby without lease election: it follows the stream but never takes "
                "over by itself; set [ha] enabled = true (TITAN_HA_ENABLED=true) on both"
            )
            return
        metrics, clock = self.metrics, self.clock
        self.ha = HaDriver(self, self, nc=nc, cfg=self.cfg, metrics=metrics, clock=clock, say=say)
        await self.ha.start()

    async def _connect(self) -> NatsClient:
        cfg = self.cfg
        self.nc = nc = await connect_nats(self.nats_settings, on_event=self._on_connection)
        self.js = js = nc.jetstream()
        await ensure_streams(
            js, replicas=cfg.nats.replicas, duplicate_window_s=cfg.nats.duplicate_window_s
        )
        if cfg.snapshots.enabled:
            svc = cfg.service
            self.store = store = SnapshotStore(
                js, ns=svc.namespace, shard=svc.shard, bucket=cfg.snapshots.bucket
            )
            await store.ensure(replicas=cfg.nats.replicas, max_bytes=cfg.snapshots.max_bucket_bytes)
        return nc

    def _on_connection(self, event: ConnectionEvent) -> None:
        log.info("NATS connection: %s", event)

    async def _load(self, *, prefer: str | None = None) -> None:
        """The state and its writer (idle until an epoch is set), `loading.load`."""
        assert self.js is not None and self.nc is not None
        cfg = self.cfg
        loaded = await loading.load(
            self.js,
            self.store,
            ns=cfg.service.namespace,
            bucket=cfg.snapshots.bucket,
            window_ms=cfg.security.timestamp_tolerance_s * 1000,
            clock=self.clock,
            say=self._say,
            prefer=prefer,
        )
        if loaded.snapshot_bytes is not None:
            self.metrics.snapshot_bytes.set(loaded.snapshot_bytes)
        for phase, ms in loaded.startup_ms.items():
            self.metrics.startup_seconds.labels(phase).set(ms / 1000)
        h = self.health
        h.replayed_events, h.snapshot_seq = loaded.replayed, loaded.snapshot_seq
        h.startup_ms = loaded.startup_ms
        self.nonces = loaded.nonces
        self.events = event_log(self.nc, loaded.state, cfg, self.subjects)
        self.events.last_seq = loaded.last_seq

    async def _follow(self) -> None:
        """Hot standby: fold new events as they land; no venue writes."""
        assert self.js is not None and self.events is not None
        last = self.events.last_seq
        self.standby = Standby(
            self.js,
            self.cfg,
            self.events.state,
            after_seq=last,
            on_event=loading.nonce_recorder(self.nonces, self.clock),
            drift=self.drift,
            command_sub=self._take_command_sub(),
        )
        await self.standby.start()
        self._role, self.epoch = Role.STANDBY, 0
        self._set_ready(True)
        self._say(f"hot standby: following the event stream from seq {last}; no venue writes")

    async def _load_and_follow(self, why: str, *, prefer: str | None = None) -> None:
        """Load again and follow; NATS may be out of reach (often the reason): retry."""
        while True:
            try:
                await self._load(prefer=prefer)
                await self._follow()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("%s failed (%r); retrying", why, err)
                await asyncio.sleep(REBUILD_RETRY_S)

    async def _end_standby(self) -> None:
        if self.standby is not None:
            standby, self.standby = self.standby, None
            self._command_sub = await standby.stop()

    def _take_command_sub(self) -> Any:
        sub, self._command_sub = self._command_sub, None
        return sub

    def _set_ready(self, is_ready: bool) -> None:
        self.health.is_ready = is_ready
        self.metrics.ready.set(1 if is_ready else 0)

    # --- the takeover (`ha.Takeover`) ---------------------------------------------------------

    async def take_over(self) -> int:
        """Become the active without the election (ha-protocol.md §6), the same three steps
        the driver runs one by one: epoch marker, drain to the head, open intake."""
        self._role = Role.PROMOTING
        epoch = await self.write_epoch_marker(token="", timeout_s=5.0)
        await self.drain_to_head()
        await self.open_intake(epoch)
        return epoch

    async def write_epoch_marker(self, *, token: str, timeout_s: float) -> int:
        assert self.js is not None
        subject = self.subjects.epoch(self.cfg.service.shard)
        return await write_epoch_marker(
            self.js,
            subject,
            instance_id=self.cfg.service.instance_id,
            ts_ms=self.clock(),
            token=token,
            timeout_s=timeout_s,
        )

    async def drain_to_head(self) -> None:
        """Stop following and fold the rest of the stream: the state is now complete."""
        assert self.js is not None and self.events is not None
        standby = self.standby
        await self._end_standby()
        if standby is None:
            return
        last = await loading.catch_up(
            self.js,
            self.events.state,
            ns=self.cfg.service.namespace,
            after_seq=standby.last_seq,
            on_event=loading.nonce_recorder(self.nonces, self.clock),
        )
        self.events.last_seq = max(self.events.last_seq, last)

    async def open_intake(self, epoch: int) -> None:
        assert self.nc is not None and self.js is not None and self.events is not None
        parts = Parts(
            cfg=self.cfg,
            venue=self.venue,
            clock=self.clock,
            subjects=self.subjects,
            metrics=self.metrics,
            market=self.market,
            dcfg=self.dcfg,
            nc=self.nc,
            js=self.js,
            store=self.store,
            say=self._say,
        )
        self.leader = LeaderSession(
            parts,
            self.events,
            nonces=self.nonces,
            command_sub=self._take_command_sub(),
            may_write_venue=self.ha.can_write_venue if self.ha is not None else lambda: True,
            on_failure=self._on_leader_failure,
            on_tick=self.refresh_metrics,
        )
        await self.leader.open(epoch)
        self._role, self.epoch = Role.ACTIVE, epoch
        self._set_ready(True)
        self._say(f"active with epoch {epoch}: intake open")

    async def close_intake(self) -> None:
        if self.leader is not None:
            await self.leader.close_intake()

    async def stand_down(self, reason: str) -> None:
        """FENCED → STANDBY without leaving the process (ha-protocol.md §2, §9): venue
        writes stop at once, the session ends, the local state is thrown away (events it
        applied may have been refused by the stream), loaded again, and followed."""
        self._role = Role.FENCED
        self._set_ready(False)
        self.metrics.fencings.inc()
        log.warning("fenced (%s): stopping venue writes and leader tasks", reason)
        await self._end_leading()
        await self._load_and_follow("rebuild after fencing")
        self._say(f"rejoined as hot standby after: {reason}")

    async def _end_leading(self, *, is_final: bool = False) -> None:
        if self.leader is not None:
            leader, self.leader = self.leader, None
            self._command_sub = await leader.stop(is_final=is_final)

    def finish(self, reason: str) -> None:
        """A planned end (switchover, SIGTERM while fenced): stop, not a failure."""
        log.info("stopping: %s", reason)
        self.health.is_ready = False
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())

    # --- what the driver and the drift monitor watch (`ha.Observed`) -------------------------

    async def is_caught_up(self) -> bool:
        return self.standby is not None and await self.standby.is_caught_up()

    def drift_alarm(self) -> dict[str, Any] | None:
        return (self.drift.last_alarm or {}) if self.drift.has_alarm else None

    def writer_broken(self) -> bool | None:
        events = self.events
        return events.is_deposed if events is not None and events.is_broken else None

    def _report_drift(self, has_alarm: bool) -> None:
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
        await self._end_standby()
        await self._load_and_follow("standby rebuild", prefer=snapshot)
        self._say(f"standby rebuilt after: {reason}")

    async def publish_drift(self, doc: dict[str, Any]) -> None:
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        subject = self.subjects.drift(self.cfg.service.instance_id)
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
            self._fatal(reason)
            return
        log.warning("%s", reason)
        if self.ha is not None and self.events is not None:
            self.ha.put(ld.WriteRejected(monotonic_ms(), is_deposed=self.events.is_deposed))
            return
        self._fatal(reason)

    def _fatal(self, reason: str) -> None:
        log.critical("fatal: %s", reason)
        self.health.fatal = reason
        self._set_ready(False)
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())

    # --- stop -------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop everything, bounded in time; safe to call twice (a fatal error and the
        process's own exit may both ask)."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        if self.ha is not None:
            self.ha.is_stopping_for_good = True
        self.health.is_stopping = True
        self._set_ready(False)
        leader = self.leader
        if leader is not None and leader.intake is not None:
            leader.intake.is_closing = True  # nothing more is decided
            if self.ha is not None and self.role is Role.ACTIVE:
                await leader.close_intake()  # planned: finish in-flight work, then hand over
            leader.stop_venue_writes()
        if self.ha is not None:
            await self.ha.stop()  # releases the lease: the standby takes over now
        await self.inputs.stop()
        await self.prices.stop()
        await self.drift.stop()
        await self._end_leading(is_final=True)
        await self._end_standby()
        with contextlib.suppress(Exception):  # the connection may be gone already
            if self._command_sub is not None:
                await self._command_sub.unsubscribe()
        if self.events is not None:
            await self.events.stop()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()  # the event log was drained above; nothing else is pending
        await self.venue.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # --- the admin API's view (`api.http.ServiceView`) --------------------------------------

    def sources(self) -> views.Sources:
        events, leader = self.events, self.leader
        return views.Sources(
            cfg=self.cfg,
            now_ms=self.clock(),
            role=self.role,
            epoch=self.epoch,
            health=self.health,
            state=self.state,
            stream_seq=self.stream_seq,
            written_seq=events.last_seq if events is not None else 0,
            events_unacked=events.unacked if events is not None else 0,
            market=self.market,
            venue_name=self.venue.name,
            drift=self.drift,
            ha=self.ha,
            standby=self.standby,
            intake=leader.intake if leader is not None else None,
            checkpoint=leader.checkpoints.last if leader and leader.checkpoints else None,
        )

    def status_doc(self) -> dict[str, Any]:
        return views.status_doc(self.sources(), self.hashes)

    def public_status_doc(self) -> dict[str, Any]:
        return views.public_status_doc(self.sources())

    async def settled_status_doc(self) -> dict[str, Any]:
        """`/status` once the events applied so far are acknowledged (at most a second), so
        that its state_hash and event_seq describe the same position whenever the active
        is not deciding at that very moment (`events_unacked` says when they do not)."""
        events = self.events
        if events is not None and events.unacked and events.is_running and not events.is_broken:
            with contextlib.suppress(Exception):  # a slow ack: events_unacked tells
                await asyncio.wait_for(events.drain(), 1.0)
        return self.status_doc()

    def positions_doc(self) -> dict[str, Any]:
        return views.positions_doc(self.state, venue_name=self.venue.name, market=self.market)

    def truth_doc(self) -> dict[str, Any]:
        cp = self.leader.checkpoints.last if self.leader and self.leader.checkpoints else None
        return views.truth_doc(
            self.state,
            now_ms=self.clock(),
            instance_id=self.cfg.service.instance_id,
            checkpoint=cp,
            venue_name=self.venue.name,
            market=self.market,
        )

    def refresh_metrics(self) -> None:
        views.refresh_gauges(self.metrics, self.sources())

    def is_ready(self) -> tuple[bool, str]:
        if self.health.fatal:
            return False, self.health.fatal
        if not self.health.is_ready:
            return False, "starting" if not self.health.is_stopping else "stopping"
        if self.nc is None or not self.nc.is_connected:
            return False, "NATS disconnected"
        return True, "ok"

    def nats_health(self) -> tuple[bool, str]:
        """`/health`: (False, why) while the NATS connection is down; before the first
        connection (True, "connecting"): that start-up is bounded and exits 69 on its own."""
        nc = self.nc
        if nc is None:
            return True, "connecting"
        if nc.is_connected:
            return True, "connected"
        if nc.is_closed:
            return False, "closed"
        return False, "reconnecting" if nc.is_reconnecting else "disconnected"

    def request_switchover(self) -> bool:
        return self.ha is not None and self.ha.request_switchover()

    def request_promote(self) -> tuple[bool, str]:
        if self.ha is None:
            return False, "lease election is off (ha.enabled = false)"
        return self.ha.request_promote()
