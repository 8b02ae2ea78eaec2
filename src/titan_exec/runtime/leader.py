"""One leader session: what only the active runs, from the takeover's `open` to `stop`.

`open(epoch)` writes under the epoch (genesis first on a new namespace), recovers the
orders the stream left in flight, answers the request/reply subjects and starts the
session's tasks: order tracking, checkpoints, venue reconciliation, truth snapshots, the
risk-state reader and the command intake. The tasks are one group: they end together
(`stop`, on fencing or at the end of the process), and a task that fails ends the session
through `on_failure` (the event log broken: the fencing path; anything else: fatal).

`stop` ends them in the order that loses nothing: venue writes first, then the intake's
reader (left to finish its fetch, whose deliveries are handed back), the RPC answers,
every task, the event writer, the intake's workers and the order runner's cancels.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from titan_exec.adapters.nats.eventlog import EventLog, EventLogBroken, genesis_event
from titan_exec.adapters.nats.snapshots import SnapshotStore
from titan_exec.adapters.venue.base import Venue
from titan_exec.api.metrics import Metrics
from titan_exec.config import Config
from titan_exec.core.decide import DecisionConfig
from titan_exec.runtime import views
from titan_exec.runtime.checkpoint import CheckpointSettings, CheckpointWriter
from titan_exec.runtime.intake import CommandIntake
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.orders import OrderRunner
from titan_exec.runtime.reconcile import VenueReconciler
from titan_exec.runtime.riskstate import RiskStateReader
from titan_exec.runtime.rpc import RpcAnswers
from titan_exec.runtime.venues import Drivers, VenueSet
from titan_exec.wire.ingress import IngressConfig
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "data" / "risk_policy.json"

STOP_STEP_S = 5.0
"""Each step of a stop waits at most this long."""


def load_policy(path: str) -> dict[str, Any]:
    """The risk policy a new namespace's genesis carries (the packaged one by default)."""
    doc: dict[str, Any] = json.loads(Path(path or DEFAULT_POLICY).read_text())
    return doc


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        # nats-py can swallow a cancel inside its own wait_for: never wait forever
        _, stuck = await asyncio.wait(tasks, timeout=STOP_STEP_S)
        for task in stuck:
            log.warning("task %s did not stop in %s s; leaving it", task.get_name(), STOP_STEP_S)


@dataclass(frozen=True, slots=True)
class Parts:
    """The long-lived collaborators the composition root builds once."""

    cfg: Config
    venues: VenueSet
    clock: Callable[[], int]
    subjects: Subjects
    metrics: Metrics
    market: MarketData
    dcfg: DecisionConfig
    ingress: IngressConfig
    nc: NatsClient
    js: JetStreamContext
    store: SnapshotStore | None
    say: Callable[[str], None]

    @property
    def venue(self) -> Venue:
        """The default venue."""
        return self.venues.default_venue


class LeaderSession:
    """`may_write_venue` is checked right before every venue write (the lease's deadline);
    `on_failure(task_name, error)` hears a task that ended with an exception."""

    def __init__(
        self,
        parts: Parts,
        events: EventLog,
        *,
        command_sub: Any,
        may_write_venue: Callable[[], bool],
        on_failure: Callable[[str, BaseException], None],
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        self.parts = parts
        self.events = events
        self.epoch = 0
        self._command_sub = command_sub
        self._may_write_venue = may_write_venue
        self._is_writing_venue = True
        """False from `stop_venue_writes` on: the session's own half of the venue gate."""
        self._on_failure = on_failure
        self._on_tick = on_tick
        self._tasks: list[asyncio.Task[None]] = []
        self._is_stopping = False
        self.drivers: Drivers | None = None
        """One execution driver per venue, reached by an order's venue."""
        self.intake: CommandIntake | None = None
        self.checkpoints: CheckpointWriter | None = None
        self.reconcilers: dict[str, VenueReconciler] = {}
        self.rpc = RpcAnswers(
            lambda: events.state,
            venues=parts.venues,
            market=parts.market,
            subjects=parts.subjects,
            clock=parts.clock,
        )

    # --- open -----------------------------------------------------------------------------

    async def open(self, epoch: int) -> None:
        """Publish under `epoch`, recover orders, decide the waiting commands, open intake."""
        p, events = self.parts, self.events
        events.set_epoch(p.subjects.epoch(p.cfg.service.shard), epoch)
        self.epoch = epoch
        await events.start()
        if not events.state.is_initialized:
            policy = load_policy(p.cfg.risk.policy_file)
            genesis = genesis_event(policy, is_armed=p.cfg.risk.arm_on_genesis, ts_ms=p.clock())
            await events.append([genesis])
            p.say("new namespace: genesis written")
        runners = {
            venue.name: OrderRunner(
                venue=venue,
                events=events,
                market=p.market,
                metrics=p.metrics,
                cfg=p.cfg.orders,
                account=venue.account,
                clock=p.clock,
                may_write_venue=self.may_write_venue,  # one gate for every venue
            )
            for venue in p.venues
        }
        self.drivers = drivers = Drivers(runners, lambda: events.state)
        await drivers.recover()
        await self.rpc.subscribe(p.nc)
        for name, runner in runners.items():
            self._spawn(runner.track(), f"order-tracker:{name}")
            self._open_reconciliation(runner)
        self._open_checkpoints(epoch)
        self._spawn(self._truth_loop(), "truth")
        self._open_intake(drivers)

    @property
    def runner(self) -> OrderRunner | None:
        """The default venue's execution driver."""
        if self.drivers is None:
            return None
        return self.drivers.runners[self.parts.venues.default]

    @property
    def reconciler(self) -> VenueReconciler | None:
        """The default venue's reconciler."""
        return self.reconcilers.get(self.parts.venues.default)

    def _open_checkpoints(self, epoch: int) -> None:
        p = self.parts
        self.checkpoints = CheckpointWriter(
            self.events,
            p.store,
            CheckpointSettings.of(p.cfg, epoch),
            js=p.js,
            metrics=p.metrics,
            clock=p.clock,
            nonces=self._nonce_entries,
            ack_floor=self._ack_floor,
            on_written=self.publish_truth,
        )
        self._spawn(self.checkpoints.run(), "checkpoints")

    def _open_reconciliation(self, runner: OrderRunner) -> None:
        """The venue's reconciliation passes (each venue its own, on its own timers)."""
        p, name = self.parts, runner.venue.name
        self.reconcilers[name] = rc = VenueReconciler(
            runner=runner,
            metrics=p.metrics,
            cfg=p.cfg.reconcile,
            subject=p.subjects.reconcile(p.cfg.service.instance_id),
            publish=self._publish_telemetry,
            clock=p.clock,
        )
        self._spawn(rc.run_open_orders(), f"reconcile-open-orders:{name}")
        self._spawn(rc.run_positions(), f"reconcile-positions:{name}")
        self._spawn(rc.run_balances(), f"reconcile-balances:{name}")

    def _open_intake(self, runner: Drivers) -> None:
        p = self.parts
        self.intake = CommandIntake(
            cfg=p.cfg,
            js=p.js,
            log=self.events,
            runner=runner,
            market=p.market,
            metrics=p.metrics,
            dcfg=p.dcfg,
            ingress=p.ingress,
            subjects=p.subjects,
            clock=p.clock,
            on_fatal=lambda reason: self._on_failure("intake", EventLogBroken(reason)),
        )
        self.intake.psub, self._command_sub = self._command_sub, None
        self._spawn(self.intake.run(), "intake")
        reader = RiskStateReader(
            js=p.js,
            log=self.events,
            subjects=p.subjects,
            metrics=p.metrics,
            clock=p.clock,
            runner=runner,
        )
        self._spawn(reader.run(), "risk-state")

    # --- the group --------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(self._on_done)
        self._tasks.append(task)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._is_stopping:
            return
        err = task.exception()
        if err is not None:
            self._on_failure(task.get_name(), err)

    # --- what the session shows and publishes -------------------------------------------------

    def _nonce_entries(self) -> list[tuple[str, str, int]]:
        """The replay window a snapshot carries (its `nonce` lines)."""
        return self.events.state.nonces.entries(self.parts.dcfg.tolerance_ms)

    async def _ack_floor(self) -> int:
        psub = self.intake.psub if self.intake is not None else None
        if psub is None:
            return 0
        info = await psub.consumer_info()
        return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0

    async def _publish_telemetry(self, subject: str, body: bytes) -> None:
        """Core NATS telemetry (not state): dropped while disconnected."""
        nc = self.parts.nc
        if nc.is_connected:
            await nc.publish(subject, body)

    def truth_doc(self) -> dict[str, Any]:
        p = self.parts
        return views.truth_doc(
            self.events.state,
            now_ms=p.clock(),
            instance_id=p.cfg.service.instance_id,
            checkpoint=self.checkpoints.last if self.checkpoints is not None else None,
            venue_name=p.venues.default,
            market=p.market,
        )

    def publish_truth(self) -> None:
        if self.events.is_broken:
            return
        body = json.dumps(self.truth_doc()).encode()
        self.events.publish(self.parts.subjects.truth, body)

    async def _truth_loop(self) -> None:
        while True:
            await asyncio.sleep(self.parts.cfg.truth.interval_ms / 1000)
            self.publish_truth()
            self._on_tick()

    # --- close and stop ---------------------------------------------------------------------

    def may_write_venue(self) -> bool:
        """Checked right before every venue write: the session is not stopping, no event
        write of ours was refused by the fence (deposed) or lost (the log is broken), and
        the lease (in a pair) is still valid by this instance's own clock on a connection
        it was last proven on (`HaDriver.can_write_venue`)."""
        events = self.events
        if not self._is_writing_venue or events.is_deposed or events.is_broken:
            return False
        return self._may_write_venue()

    def stop_venue_writes(self) -> None:
        self._is_writing_venue = False

    async def close_intake(self) -> None:
        """Stop deciding (switchover): in-flight commands finish, then events are drained.
        The reader's last fetch ends later (`stop`): what it brings is handed back, and the
        next active reads its own consumer meanwhile."""
        began = time.perf_counter()
        if self.intake is not None:
            self.intake.is_closing = True
            try:
                await asyncio.wait_for(self.intake.stop(), STOP_STEP_S)
            except TimeoutError:
                log.warning("intake did not close in %s s", STOP_STEP_S)
        closed = time.perf_counter()
        if not self.events.is_broken:
            try:
                await asyncio.wait_for(self.events.drain(), STOP_STEP_S)
            except Exception as err:  # the stream decides what it has; nothing to retry here
                log.warning("events not all acknowledged at intake close: %r", err)
        log.info(
            "intake closed in %.0f ms (in-flight commands finished), events drained in %.0f ms",
            (closed - began) * 1000,
            (time.perf_counter() - closed) * 1000,
        )

    async def stop(self, *, is_final: bool = False) -> Any:
        """End the session (the module's docstring); returns the command subscription for
        the next reader of this instance (the standby's, once rebuilt). Fenced, pending
        appends fail at once; at the end of the process (`is_final`) the workers finish
        what they decided and the events are drained first."""
        self._is_stopping = True
        self.stop_venue_writes()
        if self.intake is not None:
            self.intake.is_closing = True
        await self._close_intake_reader()
        await self.rpc.unsubscribe()
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        if not is_final:
            await self.events.stop()  # pending appends fail: nothing more is published
        await self._stop_workers()
        if is_final:
            await self._drain_and_stop_events()
        psub = self.intake.psub if self.intake is not None else self._command_sub
        self.intake = None
        return psub

    async def _drain_and_stop_events(self) -> None:
        events = self.events
        if events.is_running and not events.is_broken:
            try:
                await asyncio.wait_for(events.drain(), STOP_STEP_S)
            except Exception as err:
                log.warning("events not all acknowledged at stop: %r", err)
        await events.stop()

    async def _close_intake_reader(self) -> None:
        """Let the intake's reader end by itself rather than cancel it in a fetch: a pull
        request cut short could still be served, and its commands would then wait for the
        consumer's ack wait before anyone else gets them."""
        reader = [t for t in self._tasks if t.get_name() == "intake" and not t.done()]
        if reader:
            await asyncio.wait(reader, timeout=STOP_STEP_S)

    async def _stop_workers(self) -> None:
        """The intake's per-key workers finish what they decided; the runner's cancels end."""
        if self.intake is not None:
            try:
                await asyncio.wait_for(self.intake.stop(), STOP_STEP_S)
            except TimeoutError:
                log.warning("intake did not stop in %s s", STOP_STEP_S)
        if self.drivers is not None:
            await self.drivers.stop()
