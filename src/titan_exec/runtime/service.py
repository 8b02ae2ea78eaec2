"""One execution service instance: composes the core, the NATS adapters and a venue.

Start-up: connect → ensure streams → rebuild the state by replaying `TITAN_EVT` → then
either take over at once (`service.mode = active` without lease election) or follow the
stream as a hot standby, the election (`runtime/ha.py`) deciding when to take over.

Roles: a standby folds the event stream (`EventFollower`) and tracks `TITAN_CMD`
(`CommandShadow`); `take_over` = epoch marker → drain to the head → `open_intake` (genesis
if the namespace is new, order recovery, RPCs, order tracking, truth snapshots, the
per-symbol decision pipeline of `intake.CommandIntake`); `stand_down` = fenced: every
leader task ends, the state is rebuilt from the stream and the instance follows again.
Decisions, the state and every event go through the single `EventLog` writer; orders
through `orders.OrderRunner`. The documents it shows are in `runtime/views.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from titan_exec.adapters.nats.connect import ConnectionEvent, NatsSettings
from titan_exec.adapters.nats.connect import connect as connect_nats
from titan_exec.adapters.nats.eventlog import EventLog, EventLogBroken, genesis_event
from titan_exec.adapters.nats.fence import last_subject_msg, last_subject_seq, marker_headers
from titan_exec.adapters.nats.follow import EventFollower, replay_stream
from titan_exec.adapters.nats.lease import monotonic_ms
from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.adapters.nats.streams import ensure_streams
from titan_exec.adapters.venue.base import Venue
from titan_exec.api.metrics import Metrics
from titan_exec.config import Config
from titan_exec.core.decide import DecisionConfig
from titan_exec.core.events import RISK_STATES, ControlDecided, Event, IntentDecided
from titan_exec.core.leadership import WriteRejected
from titan_exec.core.positions import ClosedTrade
from titan_exec.core.risk import RiskLimits
from titan_exec.core.state import State
from titan_exec.runtime import views
from titan_exec.runtime.checkpoint import CheckpointWriter
from titan_exec.runtime.drift import DriftMonitor
from titan_exec.runtime.ha import HaDriver
from titan_exec.runtime.intake import CommandIntake
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.orders import OrderRunner
from titan_exec.runtime.quotes import VenuePrices
from titan_exec.runtime.reconcile import VenueReconciler
from titan_exec.runtime.restore import check_history_complete, newest_usable_snapshot
from titan_exec.runtime.riskstate import RiskStateReader
from titan_exec.runtime.shadow import CommandShadow, bind_command_consumer
from titan_exec.wire.replay import NonceCache
from titan_exec.wire.signing import Keyring
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "data" / "risk_policy.json"


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def load_policy(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(Path(path or DEFAULT_POLICY).read_text())
    return doc


EQUITY_REFRESH_S = 5.0
"""Account equity (for the risk guard's sizing) is read this often, in every role."""

REBUILD_RETRY_S = 1.0

STOP_STEP_S = 5.0
"""Each step of a stop waits at most this long."""

UNSAFE_BUILD_WARNING = (
    "UNSAFE TEST BUILD: epoch fencing disabled — never run this with real money "
    "(TITAN_UNSAFE_DISABLE_FENCING=1)"
)


@dataclass
class Health:
    started_at_ms: int = 0
    is_ready: bool = False
    is_stopping: bool = False
    fatal: str | None = None
    replayed_events: int = 0
    snapshot_seq: int = 0
    """The watermark of the snapshot the last start (or rebuild) loaded; 0: none."""
    startup_ms: dict[str, int] = field(default_factory=dict)


def _marker_token(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    token = doc.get("token") if isinstance(doc, dict) else None
    return token if isinstance(token, str) else None


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        # nats-py can swallow a cancel inside its own wait_for: never wait forever
        _, stuck = await asyncio.wait(tasks, timeout=STOP_STEP_S)
        for task in stuck:
            log.warning("task %s did not stop in %s s; leaving it", task.get_name(), STOP_STEP_S)


class Service:
    def __init__(
        self,
        cfg: Config,
        *,
        venue: Venue,
        nats: NatsSettings,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.cfg = cfg
        self.venue = venue
        self.nats_settings = nats
        self.clock = clock
        self.subjects = Subjects(cfg.service.namespace)
        self.metrics = Metrics()
        self.market = MarketData(clock, metrics=self.metrics)
        self.prices = VenuePrices(
            cfg, market=self.market, venue=venue, state=lambda: self.state, metrics=self.metrics
        )
        """The venue's own book tickers (`runtime/quotes.py`), in every role."""
        self.health = Health()
        self.nonces = NonceCache(window_ms=cfg.security.timestamp_tolerance_s * 1000)
        self.dcfg = DecisionConfig(
            subjects=self.subjects,
            keyring=Keyring(cfg.keyring_secrets),
            venues=frozenset({venue.name}),
            default_venue=venue.name,
            tolerance_ms=cfg.security.timestamp_tolerance_s * 1000,
            order_ttl_ms=cfg.orders.ttl_ms,
            max_payload_bytes=cfg.security.max_payload_bytes,
            max_depth=cfg.security.max_json_depth,
            max_values=cfg.security.max_json_values,
            accept_unsigned_risk_reducing=cfg.security.unsigned_risk_reducing == "accept",
            limits=RiskLimits(
                freshness_ms=cfg.risk.freshness_ms,
                heartbeat_stale_ms=cfg.risk.heartbeat_stale_ms,
                require_heartbeat=cfg.risk.require_heartbeat,
            ),
        )
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.events: EventLog | None = None
        self.runner: OrderRunner | None = None
        self.reconciler: VenueReconciler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.intake: CommandIntake | None = None
        self.risk_reader: RiskStateReader | None = None
        self.follower: EventFollower | None = None
        self.shadow: CommandShadow | None = None
        self._command_sub: Any = None
        """This instance's pull subscription on its durable consumer, between its readers
        (the standby's, the intake's): one subscription, so no delivery falls between."""
        self.ha: HaDriver | None = None
        self.venue_gate: Callable[[], bool] | None = None
        self.role = "starting"
        self.epoch = 0
        self._say: Callable[[str], None] = lambda m: log.info("%s", m)
        self._subs: list[Any] = []
        self._rpc_subs: list[Any] = []
        self._equity_task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        self._stop_task: asyncio.Future[None] | None = None
        self.snapshot_store: SnapshotStore | None = None
        self.checkpoints: CheckpointWriter | None = None
        self.drift = DriftMonitor(self)
        self.status_hash: tuple[int, int, str] | None = None
        """(state id, event count, hash) of the last `/status` (`views.current_hash`)."""

    # --- state access -----------------------------------------------------------------

    @property
    def state(self) -> State:
        if self.events is None:
            return State()
        return self.events.state

    @property
    def stream_seq(self) -> int:
        """The `TITAN_EVT` sequence the state has folded up to (its position)."""
        if self.follower is not None:
            return self.follower.last_seq
        return self.events.last_seq if self.events is not None else 0

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, *, progress: Callable[[str], None] | None = None) -> None:
        """Connect, rebuild the state, then run as the active (`service.mode = active`: the
        takeover sequence at once) or as a hot standby that follows the event stream."""
        say = progress or (lambda m: log.info("%s", m))
        self._say = say
        self.health.started_at_ms = self.clock()
        if self.cfg.is_unsafe_fencing_disabled:
            log.error(UNSAFE_BUILD_WARNING)
            say(UNSAFE_BUILD_WARNING)
        self.nc = await connect_nats(self.nats_settings, on_event=self._on_connection_event)
        self.js = self.nc.jetstream()
        await ensure_streams(
            self.js,
            replicas=self.cfg.nats.replicas,
            duplicate_window_s=self.cfg.nats.duplicate_window_s,
        )
        if self.cfg.snapshots.enabled:
            self.snapshot_store = SnapshotStore(
                self.js,
                ns=self.cfg.service.namespace,
                shard=self.cfg.service.shard,
                bucket=self.cfg.snapshots.bucket,
            )
            await self.snapshot_store.ensure(
                replicas=self.cfg.nats.replicas, max_bytes=self.cfg.snapshots.max_bucket_bytes
            )
        await self._rebuild(say)
        await self._subscribe()
        self.prices.start()
        await self._refresh_equity()
        # venue reads are allowed in every role: a standby's equity is current at takeover
        self._equity_task = asyncio.create_task(self._equity_loop(), name="equity")
        if self.cfg.is_standby or self.cfg.ha.enabled:
            # with the lease on, every instance starts hot and the election decides
            await self._follow(say)
            if self.cfg.ha.enabled:
                self.ha = HaDriver(self, say=say)
                self.venue_gate = self.ha.can_write_venue
                await self.ha.start()
            else:
                log.warning(
                    "standby without lease election: it follows the stream but never takes "
                    "over by itself; set [ha] enabled = true (TITAN_HA_ENABLED=true) on both"
                )
            return
        await self.take_over()

    async def _rebuild(self, say: Callable[[str], None], *, snapshot: str | None = None) -> None:
        """The state as the newest usable snapshot (`snapshot` first, when named) plus the
        tail of the event stream after its watermark, or as a fold of the whole stream when
        there is no snapshot; and the writer over it (idle until an epoch is set). The
        replay cache comes back from the snapshot and the decisions of the tail."""
        assert self.js is not None and self.nc is not None
        began = time.perf_counter()
        self.nonces = NonceCache(window_ms=self.cfg.security.timestamp_tolerance_s * 1000)
        found = None
        if self.snapshot_store is not None:
            found = await newest_usable_snapshot(self.snapshot_store, prefer=snapshot, say=say)
        restored = found[0] if found is not None else None
        if found is not None:
            self.metrics.snapshot_bytes.set(found[1])
        loaded = time.perf_counter()
        if restored is not None:
            state, start = restored.state, restored.header.watermark_seq
            now = self.clock()
            for key_id, nonce, expiry in restored.nonces:
                self.nonces.restore(key_id, nonce, expiry, now)
            say(f"snapshot at seq {start} loaded ({state.event_count} events); replaying the tail")
        else:
            await check_history_complete(
                self.js, ns=self.cfg.service.namespace, bucket=self.cfg.snapshots.bucket
            )
            state, start = State(), 1
            say("replaying the event stream")
        counted = state.event_count
        state, last = await replay_stream(
            self.js,
            stream="TITAN_EVT",
            ns=self.cfg.service.namespace,
            state=state,
            start_seq=start,
            on_event=self._remember_nonce,
        )
        done = time.perf_counter()
        self.health.replayed_events = state.event_count - counted
        self.health.snapshot_seq = start if restored is not None else 0
        self.health.startup_ms = {
            "snapshot": round((loaded - began) * 1000),
            "tail": round((done - loaded) * 1000),
            "total": round((done - began) * 1000),
        }
        for phase, ms in self.health.startup_ms.items():
            self.metrics.startup_seconds.labels(phase).set(ms / 1000)
        say(
            f"state rebuilt: {state.event_count} events, {self.health.replayed_events} replayed "
            f"from the stream (seq {start}..{last}) in {self.health.startup_ms['total']} ms"
        )
        self.events = EventLog(
            self.nc,
            state,
            ns=self.cfg.service.namespace,
            producer=self.cfg.service.producer,
            on_closed_trade=self._trade_messages,
            # a replicated stream refuses a second fenced write while the first is in flight
            is_fence_pipelined=self.cfg.nats.replicas == 1,
            instance_id=self.cfg.service.instance_id,
            is_fencing_disabled=self.cfg.is_unsafe_fencing_disabled,
            # the server's limit, less room for the fence and id headers
            max_event_bytes=max(1024, int(self.nc.max_payload) - 4096),
        )
        self.events.last_seq = last

    async def _follow(self, say: Callable[[str], None]) -> None:
        """Hot standby: fold new events as they land; no venue writes."""
        assert self.js is not None and self.events is not None
        last = self.events.last_seq
        self.drift.reset()
        self.follower = EventFollower(
            self.js,
            self.events.state,
            ns=self.cfg.service.namespace,
            after_seq=last,
            on_event=self._remember_nonce,
            on_other=self._on_followed_message,
        )
        with contextlib.suppress(Exception):  # display only: the follower updates it
            self.follower.newest_epoch = await last_subject_seq(
                self.js, "TITAN_EVT", self.subjects.epoch(self.cfg.service.shard)
            )
        await self.follower.start()
        js, cfg = self.js, self.cfg
        self.shadow = CommandShadow(
            lambda is_stopping: bind_command_consumer(js, cfg, is_stopping),
            lambda: self.state,
            fetch_batch=cfg.consumer.fetch_batch,
            psub=self._take_command_sub(),
        )
        self.shadow.start()
        self.role = "standby"
        self.epoch = 0
        self.health.is_ready = True
        self.metrics.ready.set(1)
        say(f"hot standby: following the event stream from seq {last}; no venue writes")

    def _on_followed_message(self, subject: str, data: bytes, seq: int) -> None:
        if subject == self.subjects.checkpoint(self.cfg.service.shard):
            self.drift.on_checkpoint(seq)
        elif subject == self.subjects.truth:
            self.drift.on_truth(data)

    async def rebuild_standby(self, reason: str, *, snapshot: str | None) -> None:
        """Throw the standby's state away and rebuild it (drift): from `snapshot` (one this
        standby matched) or the newest usable one, plus the tail; then follow again. The
        command shadow stops meanwhile (it must not acknowledge by a wrong state)."""
        if self.role != "standby":
            return
        self.health.is_ready = False
        log.warning("rebuilding the standby state (%s)", reason)
        if self.shadow is not None:
            self._command_sub = await self.shadow.stop(hand_over=True)
            self.shadow = None
        if self.follower is not None:
            await self.follower.stop()
            self.follower = None
        while True:
            try:
                await self._rebuild(self._say, snapshot=snapshot)
                await self._follow(self._say)
                break
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("standby rebuild failed (%r); retrying", err)
                await asyncio.sleep(REBUILD_RETRY_S)
        self._say(f"standby rebuilt after: {reason}")

    async def publish_drift(self, doc: dict[str, Any]) -> None:
        if self.nc is None or self.nc.is_closed:
            return
        with contextlib.suppress(Exception):
            await self.nc.publish(
                self.subjects.drift(self.cfg.service.instance_id), json.dumps(doc).encode()
            )

    def publish_truth(self) -> None:
        if self.events is None or self.events.is_broken:
            return
        self.events.publish(self.subjects.truth, json.dumps(self.truth_doc()).encode())

    async def stand_down(self, reason: str) -> None:
        """FENCED → STANDBY without leaving the process (ha-protocol.md §2, §9): every venue
        write stops at once, every leader task ends, the local state is thrown away (events
        it applied may have been refused by the stream) and rebuilt from the stream, then
        the instance follows as a hot standby. The election decides when it may lead again."""
        self.role = "fenced"
        self.health.is_ready = False
        self.metrics.ready.set(0)
        self.metrics.fencings.inc()
        log.warning("fenced (%s): stopping venue writes and leader tasks", reason)
        await self._stop_leading()
        while True:  # NATS may be out of reach (the reason we fenced): retry until back
            try:
                await self._rebuild(self._say)
                await self._follow(self._say)
                break
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("rebuild after fencing failed (%r); retrying", err)
                await asyncio.sleep(REBUILD_RETRY_S)
        self._say(f"rejoined as hot standby after: {reason}")

    async def _stop_leading(self) -> None:
        """End everything only the active runs: venue writes first, then intake, RPC
        answers, order tracking, truth snapshots and the event writer."""
        if self.runner is not None:
            self.runner.may_write_venue = lambda: False
        await self._close_intake_reader()
        subs, self._rpc_subs = self._rpc_subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        tasks, self._tasks = self._tasks, []
        await _cancel_all(tasks)
        if self.events is not None:
            await self.events.stop()  # pending appends fail: nothing more is published
        await self._stop_workers()
        if self.intake is not None:
            self._command_sub = self.intake.psub  # for the standby's reader, once rebuilt
        self.intake = None
        self.runner = None
        self.reconciler = None

    async def take_over(self) -> int:
        """Become the active (ha-protocol.md §6): write the epoch marker (from now on the
        previous active cannot publish), drain the stream to its head, then recover orders
        and open intake. Returns the epoch. The lease (election) decides *when*; this is
        *how* (`runtime/ha.py` runs the same three steps one by one)."""
        self.role = "promoting"
        epoch = await self._write_epoch_marker()
        await self.drain_to_head()
        await self.open_intake(epoch)
        return epoch

    async def drain_to_head(self) -> None:
        """Stop following and fold the rest of the stream: the state is now complete."""
        assert self.js is not None and self.events is not None
        if self.shadow is not None:
            # its undecided commands go back to the consumer; its subscription goes on
            self._command_sub = await self.shadow.stop(hand_over=True)
            self.shadow = None
        if self.follower is None:
            return
        await self.follower.stop()
        after = self.follower.last_seq
        self.follower = None
        _, last = await replay_stream(
            self.js,
            stream="TITAN_EVT",
            ns=self.cfg.service.namespace,
            state=self.events.state,
            start_seq=after + 1,
            on_event=self._remember_nonce,
        )
        self.events.last_seq = max(self.events.last_seq, last)

    async def open_intake(self, epoch: int) -> None:
        """Publish under `epoch`, recover orders, decide the waiting commands, open intake."""
        assert self.js is not None and self.events is not None
        say = self._say
        self.events.set_epoch(self.subjects.epoch(self.cfg.service.shard), epoch)
        self.epoch = epoch
        await self.events.start()
        state = self.events.state
        if not state.is_initialized:
            policy = load_policy(self.cfg.risk.policy_file)
            await self.events.append(
                [genesis_event(policy, is_armed=self.cfg.risk.arm_on_genesis, ts_ms=self.clock())]
            )
            say("new namespace: genesis written")
        self.runner = OrderRunner(
            venue=self.venue,
            events=self.events,
            market=self.market,
            metrics=self.metrics,
            cfg=self.cfg.orders,
            account=self.cfg.service.account,
            clock=self.clock,
        )
        if self.venue_gate is not None:
            self.runner.may_write_venue = self.venue_gate
        await self.runner.recover()
        await self._subscribe_rpcs()
        self._tasks.append(self._leader_task(self.runner.track(), "order-tracker"))
        self.checkpoints = CheckpointWriter(self, self.snapshot_store)
        self._tasks.append(self._leader_task(self.checkpoints.run(), "checkpoints"))
        self._start_reconciliation(self.runner)
        self._tasks.append(self._leader_task(self._truth_loop(), "truth"))
        self.intake = CommandIntake(
            cfg=self.cfg,
            js=self.js,
            log=self.events,
            runner=self.runner,
            market=self.market,
            metrics=self.metrics,
            dcfg=self.dcfg,
            nonces=self.nonces,
            subjects=self.subjects,
            clock=self.clock,
            on_fatal=self._on_log_broken,
        )
        self.intake.psub = self._take_command_sub()
        self._tasks.append(self._leader_task(self.intake.run(), "intake"))
        self.risk_reader = RiskStateReader(
            js=self.js,
            log=self.events,
            subjects=self.subjects,
            metrics=self.metrics,
            clock=self.clock,
            runner=self.runner,
        )
        self._tasks.append(self._leader_task(self.risk_reader.run(), "risk-state"))
        self.role = "active"
        self.health.is_ready = True
        self.metrics.ready.set(1)
        say(f"active with epoch {epoch}: intake open")

    def _start_reconciliation(self, runner: OrderRunner) -> None:
        """The active's venue reconciliation loops (runtime/reconcile.py), leader tasks."""
        self.reconciler = rc = VenueReconciler(
            runner=runner,
            metrics=self.metrics,
            cfg=self.cfg.reconcile,
            subject=self.subjects.reconcile(self.cfg.service.instance_id),
            publish=self._publish_telemetry,
            clock=self.clock,
        )
        self._tasks.append(self._leader_task(rc.run_open_orders(), "reconcile-open-orders"))
        self._tasks.append(self._leader_task(rc.run_positions(), "reconcile-positions"))
        self._tasks.append(self._leader_task(rc.run_balances(), "reconcile-balances"))

    async def _publish_telemetry(self, subject: str, body: bytes) -> None:
        """Core NATS telemetry (not state): dropped while disconnected."""
        if self.nc is not None and self.nc.is_connected:
            await self.nc.publish(subject, body)

    async def _write_epoch_marker(self, *, token: str = "", timeout_s: float = 5.0) -> int:
        """Compare-and-set a new marker on the epoch subject; its sequence is the epoch.

        `token` names one attempt to take over: when a call timed out but its marker
        landed, the retry finds the newest marker carrying the same token and adopts it
        (instead of refusing itself as deposed)."""
        assert self.js is not None and self.nc is not None
        subject = self.subjects.epoch(self.cfg.service.shard)
        newest = await last_subject_msg(self.js, "TITAN_EVT", subject)
        previous = newest[0] if newest is not None else 0
        if token and newest is not None and _marker_token(newest[1]) == token:
            log.info("epoch marker of this takeover found: epoch %d", previous)
            return previous
        body = json.dumps(
            {
                "instance_id": self.cfg.service.instance_id,
                "previous_epoch": previous,
                "token": token,
                "ts": self.clock(),
            }
        ).encode()
        ack = await self.js.publish(
            subject, body, headers=marker_headers(previous), timeout=timeout_s
        )
        log.info("epoch marker written: epoch %d (previous %d)", ack.seq, previous)
        return int(ack.seq)

    async def _subscribe(self) -> None:
        """Market data and heartbeats: both roles keep them current (a standby is hot)."""
        assert self.nc is not None
        self._subs.append(
            await self.nc.subscribe("titan.sys.heartbeat.v1.>", cb=self._on_heartbeat)
        )
        self._subs.append(
            await self.nc.subscribe("titan.data.market.ticker.v1.>", cb=self._on_ticker)
        )

    async def _subscribe_rpcs(self) -> None:
        """Request/reply is answered by the active only (one answer per request). The policy
        hash also on the brain's hard-coded `titan.req.exec.policy_hash.v1`."""
        assert self.nc is not None
        s = self.subjects
        for subjects, cb in (
            (s.rpc_positions_subjects, self._rpc_positions),
            (s.rpc_balances_subjects, self._rpc_balances),
            (s.policy_hash_subjects, self._rpc_policy_hash),
        ):
            for subject in subjects:
                self._rpc_subs.append(await self.nc.subscribe(subject, cb=cb))

    def _remember_nonce(self, ev: Event) -> None:
        """Rebuild the replay cache from the decisions in the stream: a restart must not
        reopen the window for an envelope seen shortly before it."""
        if isinstance(ev, IntentDecided | ControlDecided) and ev.nonce is not None:
            n = ev.nonce
            self.nonces.check_and_remember(n.key_id, n.nonce, n.ts_ms, self.clock())

    def _on_connection_event(self, event: ConnectionEvent) -> None:
        log.info("NATS connection: %s", event)

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
        self.health.is_ready = False
        self.metrics.ready.set(0)
        if self.intake is not None:
            self.intake.is_closing = True  # nothing more is decided
        if self.ha is not None and self.role == "active":
            await self.close_intake()  # a planned stop: finish in-flight work, then hand over
        if self.runner is not None:
            self.runner.may_write_venue = lambda: False
        if self.ha is not None:
            await self.ha.stop()  # releases the lease: the standby takes over now
        for sub in [*self._subs, *self._rpc_subs]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self._close_intake_reader()
        await _cancel_all([*self._tasks, *([self._equity_task] if self._equity_task else [])])
        await self.prices.stop()
        await self.drift.stop()
        if self.shadow is not None:
            await self.shadow.stop()
        if self.follower is not None:
            await self.follower.stop()
        await self._stop_workers()
        if self.events is not None:
            if self.events.is_running and not self.events.is_broken:  # a standby wrote nothing
                try:
                    await asyncio.wait_for(self.events.drain(), 5)
                except Exception:
                    log.warning("events not all acknowledged at stop")
            await self.events.stop()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()  # the event log was drained above; nothing else is pending
        await self.venue.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def _take_command_sub(self) -> Any:
        sub, self._command_sub = self._command_sub, None
        return sub

    async def _stop_workers(self) -> None:
        """The intake's per-key workers finish what they decided; the runner's cancels end."""
        if self.intake is not None:
            try:
                await asyncio.wait_for(self.intake.stop(), STOP_STEP_S)
            except TimeoutError:
                log.warning("intake did not stop in %s s", STOP_STEP_S)
        if self.runner is not None:
            await self.runner.stop()

    async def _close_intake_reader(self) -> None:
        """Let the intake's reader end by itself rather than cancel it in a fetch: a pull
        request cut short could still be served, and its commands would then wait for the
        consumer's ack wait before anyone else gets them."""
        if self.intake is None:
            return
        self.intake.is_closing = True
        reader = [t for t in self._tasks if t.get_name() == "intake" and not t.done()]
        if reader:
            await asyncio.wait(reader, timeout=STOP_STEP_S)

    async def close_intake(self) -> None:
        """Stop deciding (switchover): in-flight commands finish, then events are drained.
        The reader's last fetch ends later (`_close_intake_reader`): what it brings is
        handed back, and the next active reads its own consumer meanwhile."""
        began = time.perf_counter()
        if self.intake is not None:
            self.intake.is_closing = True
            try:
                await asyncio.wait_for(self.intake.stop(), STOP_STEP_S)
            except TimeoutError:
                log.warning("intake did not close in %s s", STOP_STEP_S)
        closed = time.perf_counter()
        if self.events is not None and not self.events.is_broken:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.events.drain(), STOP_STEP_S)
        log.info(
            "intake closed in %.0f ms (in-flight commands finished), events drained in %.0f ms",
            (closed - began) * 1000,
            (time.perf_counter() - closed) * 1000,
        )

    def request_switchover(self) -> bool:
        return self.ha is not None and self.ha.request_switchover()

    def request_promote(self) -> tuple[bool, str]:
        if self.ha is None:
            return False, "lease election is off (ha.enabled = false)"
        return self.ha.request_promote()

    def finish(self, reason: str) -> None:
        """A planned end (switchover): stop, not a failure."""
        log.info("stopping: %s", reason)
        self.health.is_ready = False
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())

    def _leader_task(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """One of the active's tasks (order tracking, truth, intake). It ends when cancelled
        (stand-down, stop) or, for the intake, when closed. Ending with an exception is a
        programming error or a failure nothing handled: an active that silently stopped
        tracking its orders or reading commands is worse than a failover, so the instance
        logs the traceback and stops (fatal: `/ready` fails; in a pair the lease is released
        and the standby takes over; a supervisor restarts this one, which rejoins)."""
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._on_leader_task_done)
        return task

    def _on_leader_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.health.is_stopping:
            return
        err = task.exception()
        if err is None:
            return
        reason = f"leader task {task.get_name()} failed: {err!r}"
        if isinstance(err, EventLogBroken):
            # an event write failed (NATS lost a stream leader, ...): the known path — in a
            # pair fence and rebuild from the stream, alone stop
            log.warning("%s", reason)
            self._on_log_broken(reason)
            return
        log.critical("leader task %s failed", task.get_name(), exc_info=err)
        self._fatal(reason)

    def _on_log_broken(self, reason: str) -> None:
        """An event write failed: the state may be ahead of the stream. In a pair the
        election fences and rebuilds this instance; alone, it stops (a restart rebuilds)."""
        if self.ha is not None and self.events is not None:
            self.ha.put(WriteRejected(monotonic_ms(), is_deposed=self.events.is_deposed))
            return
        self._fatal(reason)

    def _fatal(self, reason: str) -> None:
        log.critical("fatal: %s", reason)
        self.health.fatal = reason
        self.health.is_ready = False
        self.metrics.ready.set(0)
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())

    # --- derived outputs (runtime/views.py) ------------------------------------------------

    def _trade_messages(self, trade: ClosedTrade, ev: Event) -> list[tuple[str, bytes]]:
        return views.trade_messages(self, trade, ev)

    def positions_doc(self) -> dict[str, Any]:
        return views.positions_doc(self)

    def truth_doc(self) -> dict[str, Any]:
        return views.truth_doc(self)

    async def _truth_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.truth.interval_ms / 1000)
            self.publish_truth()
            self.refresh_metrics()

    def refresh_metrics(self) -> None:
        st = self.state
        self.metrics.open_orders.set(sum(len(v) for v in st.open_orders.values()))
        self.metrics.positions.set(sum(1 for p in st.positions.values() if not p.is_flat))
        self.metrics.halted.set(1 if st.is_halted else 0)
        self.metrics.armed.set(1 if st.is_armed else 0)
        for name in RISK_STATES:
            self.metrics.risk_state.labels(name).set(1 if st.risk_state == name else 0)
        for key, count in st.control_counts.items():
            action, outcome, auth = [*key.split(":"), "", ""][:3]
            self.metrics.control_decisions.labels(action, outcome, auth).set(count)
        self.metrics.slippage_breaches.set(st.slippage_breaches)
        self.metrics.anomalies.set(st.anomalies)
        hb = self.market.last_heartbeat_ms
        self.metrics.heartbeat_age.set(-1 if hb is None else (self.clock() - hb) / 1000)
        if self.events is not None:
            self.metrics.last_event_seq.set(self.events.last_seq)
        self.metrics.epoch.set(self.epoch)
        self.metrics.is_active.set(1 if self.role == "active" else 0)
        self.metrics.standby_lag.set(self.follower.lag if self.follower is not None else 0)
        if self.ha is not None:
            age = self.ha.lease_age_ms()
            self.metrics.lease_age.set(-1 if age is None else age / 1000)
        else:
            self.metrics.set_role(self.role)

    async def _refresh_equity(self) -> None:
        try:
            async with asyncio.timeout(5):  # not wait_for: the loop is cancelled at stop
                equity = await self.venue.equity()
        except Exception as err:
            log.warning("equity of %s unavailable: %r", self.venue.name, err)
            return
        if equity is not None:
            self.market.equity[self.venue.name] = equity

    async def _equity_loop(self) -> None:
        while True:
            await asyncio.sleep(EQUITY_REFRESH_S)
            await self._refresh_equity()

    # --- subscriptions ----------------------------------------------------------------------

    async def _on_heartbeat(self, msg: Msg) -> None:
        self.market.on_heartbeat(msg.subject)

    async def _on_ticker(self, msg: Msg) -> None:
        seen = self.market.on_ticker(msg.subject, msg.data)
        if seen is not None and seen[0] == self.venue.name:
            self.venue.on_ticker(seen[1], seen[2].bid, seen[2].ask, seen[2].ts_ms)

    # --- request/reply and the admin API (runtime/views.py) -----------------------------

    async def _rpc_positions(self, msg: Msg) -> None:
        await views.rpc_positions(self, msg)

    async def _rpc_balances(self, msg: Msg) -> None:
        await views.rpc_balances(self, msg)

    async def _rpc_policy_hash(self, msg: Msg) -> None:
        await views.rpc_policy_hash(self, msg)

    def status_doc(self) -> dict[str, Any]:
        return views.status_doc(self)

    def public_status_doc(self) -> dict[str, Any]:
        return views.public_status_doc(self)

    async def settled_status_doc(self) -> dict[str, Any]:
        """`/status` once the events applied so far are acknowledged (at most a second), so
        that its state_hash and event_seq describe the same position whenever the active
        is not deciding at that very moment (`events_unacked` says when they do not)."""
        events = self.events
        if events is not None and events.unacked and events.is_running and not events.is_broken:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(events.drain(), 1.0)
        return views.status_doc(self)

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
