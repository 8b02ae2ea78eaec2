"""One execution service instance: the composition root. It only wires.

Start-up: connect → ensure streams → load the state (`loading.load`: newest snapshot +
tail) → either take over at once (`service.mode = active` without lease election) or follow
the stream as a hot standby, the election (`ha.HaDriver`) deciding when to take over. The
role changes themselves (follow, take over, stand down) are `roles.Roles`; what only the
active runs is a `leader.LeaderSession`; a stretch of standby is a `standby.Standby`.

What the instance shows is rendered by `views.py` from one `Sources` value (`sources`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client as NatsClient

from titan_exec.adapters.nats.connect import ConnectionEvent, NatsSettings
from titan_exec.adapters.nats.connect import connect as connect_nats
from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.adapters.venue.base import Venue
from titan_exec.adapters.venue.budget import budget_of
from titan_exec.api.metrics import Metrics
from titan_exec.clock import wall_clock_ms
from titan_exec.config import Config
from titan_exec.core.leadership import Role
from titan_exec.core.state import State
from titan_exec.runtime import views
from titan_exec.runtime.drift import DriftMonitor
from titan_exec.runtime.ha import HaDriver
from titan_exec.runtime.leader import LeaderSession, Parts
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.marketin import MarketInputs
from titan_exec.runtime.nodeparts import decision_config, fenced_writes, ingress_config
from titan_exec.runtime.quotes import venue_prices
from titan_exec.runtime.roles import Roles
from titan_exec.runtime.standby import Standby
from titan_exec.runtime.venues import VenueSet
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

UNSAFE_BUILD_WARNING = (
    "UNSAFE TEST BUILD: epoch fencing disabled — never run this with real money "
    "(TITAN_UNSAFE_DISABLE_FENCING=1)"
)


class Node:
    def __init__(
        self,
        cfg: Config,
        *,
        venue: Venue | None = None,
        venues: VenueSet | None = None,
        nats: NatsSettings,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        """`venues`: every venue (`runtime/venues.py`); `venue`: the only one."""
        if venues is None:
            assert venue is not None, "a Node needs its venues"
            venues = VenueSet.one(venue)
        self.cfg, self.venues, self.nats_settings, self.clock = cfg, venues, nats, clock
        self.venue = venues.default_venue
        """The default venue (`auto`), the only one of a single-venue configuration."""
        self.subjects = Subjects(cfg.service.namespace)
        self.metrics = Metrics()
        self.market = MarketData(clock, metrics=self.metrics)
        self.quotes = venue_prices(
            cfg, venues, market=self.market, state=lambda: self.state, metrics=self.metrics
        )
        """Each venue's own book tickers (`runtime/quotes.py`), in every role; the
        default venue's first (`prices`)."""
        self.prices = self.quotes[0]
        self.inputs = MarketInputs(self.market, venues, self.subjects)
        self.health = views.Health()
        self.hashes = views.HashCache()
        self.nc: NatsClient | None = None
        self.store: SnapshotStore | None = None
        self.roles: Roles | None = None
        self.ha: HaDriver | None = None
        self._stopped = asyncio.Event()
        self._stop_task: asyncio.Future[None] | None = None
        self.drift = DriftMonitor(
            lambda: self.state,
            lambda: self.store,
            publish=self._publish_drift,
            report=self._report_drift,
            rebuild=self._rebuild_standby,
            metrics=self.metrics,
            instance_id=cfg.service.instance_id,
            clock=clock,
        )

    # --- what it holds (the parts' own, for tools and tests) ----------------------------------

    @property
    def state(self) -> State:
        return self.roles.state if self.roles is not None else State()

    @property
    def role(self) -> Role | None:
        if self.ha is not None:
            return self.ha.leadership_role
        return self.roles.role if self.roles is not None else None

    @property
    def epoch(self) -> int:
        return self.roles.epoch if self.roles is not None else 0

    @property
    def events(self) -> EventLog | None:
        return self.roles.events if self.roles is not None else None

    @property
    def standby(self) -> Standby | None:
        return self.roles.standby if self.roles is not None else None

    @property
    def leader(self) -> LeaderSession | None:
        return self.roles.leader if self.roles is not None else None

    @property
    def stream_seq(self) -> int:
        """The `TITAN_EVT` sequence the state has folded up to (its position)."""
        if self.standby is not None:
            return self.standby.last_seq
        return self.events.last_seq if self.events is not None else 0

    # --- start and stop ------------------------------------------------------------------------

    async def start(self, *, progress: Callable[[str], None] | None = None) -> None:
        """Connect, load the state, then run as the active (`service.mode = active`: the
        takeover at once) or as a hot standby that follows the event stream."""
        say = progress or (lambda m: log.info("%s", m))
        self.health.started_at_ms = self.clock()
        if self.cfg.is_unsafe_fencing_disabled:
            log.error(UNSAFE_BUILD_WARNING)
            say(UNSAFE_BUILD_WARNING)
        self.roles = roles = Roles(
            await self._connect(say),
            self.health,
            self.drift,
            on_stop=self._end,
            on_tick=self.refresh_metrics,
        )
        await roles.load()
        assert self.nc is not None
        await self.inputs.start(self.nc)
        for prices in self.quotes:
            prices.start()
        if not (self.cfg.is_standby or self.cfg.ha.enabled):
            await roles.take_over()
            return
        await roles.follow()  # with the lease on, every instance starts hot
        if not self.cfg.ha.enabled:
            log.warning(
                "standby without lease election: it follows the stream but never takes "
                "over by itself; set [ha] enabled = true (TITAN_HA_ENABLED=true) on both"
            )
            return
        self.ha = roles.ha = HaDriver(
            roles, roles, nc=self.nc, cfg=self.cfg, metrics=self.metrics, clock=self.clock, say=say
        )
        await self.ha.start()

    async def _connect(self, say: Callable[[str], None]) -> Parts:
        cfg = self.cfg
        self.nc = nc = await connect_nats(self.nats_settings, on_event=self._on_connection)
        js = nc.jetstream()
        await ensure_streams(
            js,
            replicas=cfg.nats.replicas,
            duplicate_window_s=cfg.nats.duplicate_window_s,
            atomic=fenced_writes(cfg) == "batch",
        )
        if cfg.snapshots.enabled:
            svc = cfg.service
            self.store = store = SnapshotStore(
                js, ns=svc.namespace, shard=svc.shard, bucket=cfg.snapshots.bucket
            )
            await store.ensure(replicas=cfg.nats.replicas, max_bytes=cfg.snapshots.max_bucket_bytes)
        return Parts(
            cfg=cfg,
            venues=self.venues,
            clock=self.clock,
            subjects=self.subjects,
            metrics=self.metrics,
            market=self.market,
            dcfg=decision_config(cfg, self.venues.names, self.venues.default),
            ingress=ingress_config(cfg, self.subjects),
            nc=nc,
            js=js,
            store=self.store,
            say=say,
        )

    def _on_connection(self, event: ConnectionEvent) -> None:
        log.info("NATS connection: %s", event)

    async def take_over(self) -> int:
        """The takeover by hand (no election): `Roles.take_over`."""
        assert self.roles is not None
        return await self.roles.take_over()

    def _end(self, reason: str, is_fatal: bool) -> None:
        if is_fatal:
            log.critical("fatal: %s", reason)
            self.health.fatal = reason
            self.metrics.ready.set(0)
        else:
            log.info("stopping: %s", reason)
        self.health.is_ready = False
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())

    async def stop(self) -> None:
        """Stop everything, bounded in time; safe to call twice (a fatal error and the
        process's own exit may both ask)."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        roles, ha = self.roles, self.ha
        if ha is not None:
            ha.is_stopping_for_good = True
        self.health.is_stopping = True
        self.health.is_ready = False
        self.metrics.ready.set(0)
        leader = self.leader
        if leader is not None and leader.intake is not None:
            leader.intake.is_closing = True  # nothing more is decided
            if ha is not None and self.role is Role.ACTIVE:
                await leader.close_intake()  # planned: finish in-flight work, then hand over
            leader.stop_venue_writes()
        if ha is not None:
            await ha.stop()  # releases the lease: the standby takes over now
        await self.inputs.stop()
        for prices in self.quotes:
            await prices.stop()
        await self.drift.stop()
        if roles is not None:
            await roles.end_leading(is_final=True)
            await roles.end_standby()
            await roles.close_command_sub()
            if roles.events is not None:
                await roles.events.stop()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()  # the event log was drained above; nothing else is pending
        await self.venues.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    # --- the drift monitor's hooks (it exists before the first load) ----------------------

    async def _publish_drift(self, doc: dict[str, Any]) -> None:
        if self.roles is not None:
            await self.roles.publish_drift(doc)

    def _report_drift(self, has_alarm: bool) -> None:
        if self.roles is not None:
            self.roles.report_drift(has_alarm)

    async def _rebuild_standby(self, reason: str, snapshot: str | None) -> None:
        if self.roles is not None:
            await self.roles.rebuild_standby(reason, snapshot)

    # --- the admin API's view (`api.http.ServiceView`) --------------------------------------

    def sources(self) -> views.Sources:
        events, leader, now = self.events, self.leader, self.clock()
        return views.Sources(
            cfg=self.cfg,
            now_ms=now,
            role=self.role,
            epoch=self.epoch,
            health=self.health,
            state=self.state,
            stream_seq=self.stream_seq,
            written_seq=events.last_seq if events is not None else 0,
            events_unacked=events.unacked if events is not None else 0,
            market=self.market,
            venue_names=self.venues.names,
            drift=self.drift,
            ha=self.ha,
            standby=self.standby,
            intake=leader.intake if leader is not None else None,
            checkpoint=leader.checkpoints.last if leader and leader.checkpoints else None,
            budgets=tuple(b.view(now) for b in map(budget_of, self.venues) if b is not None),
            streams=tuple(s for s in map(views.stream_of, self.venues) if s is not None),
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
        return views.positions_doc(self.state, venue_name=self.venues.default, market=self.market)

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
