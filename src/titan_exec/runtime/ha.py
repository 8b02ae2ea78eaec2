"""The hot-standby driver: runs the pure leadership core against the KV lease and the service.

One task owns the `Leadership` state. Inputs (lease observations from the watch and the
poll, outcomes of our own calls, the stream's verdicts, timer ticks, the standby's
catch-up reports) go through one queue; each is stepped through `leadership.step`, the
decision's sentence is logged, and its actions are carried out here:

    ReadLease / Acquire / Renew / Release  →  `adapters/nats/lease.NatsLease`
    WriteEpochMarker / DrainToHead / OpenIntake / CloseIntake  →  the `Takeover` steps
    StopVenueWrites  →  `Takeover.stand_down`: leader tasks end, the state is rebuilt from
                        the stream and the instance follows as a hot standby (a planned
                        stop of the process, SIGTERM, just ends instead)

The driver knows the rest of the instance only through two narrow protocols: `Takeover`
(the steps it asks for) and `Observed` (what it watches: the standby's catch-up, the drift
alarm, a broken event writer). The composition root (`runtime/node.py`) provides both.

`can_write_venue` (the lease's local monotonic deadline) is what the order runner checks
right before every venue write. A loop-lag watchdog steps `LoopStalled` when the event
loop stalled longer than the core tolerates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient

from titan_exec.adapters.nats.fence import is_fence_rejection
from titan_exec.adapters.nats.lease import NatsLease, acquire_outcome, renew_outcome
from titan_exec.api.metrics import Metrics
from titan_exec.clock import monotonic_ms
from titan_exec.config import Config
from titan_exec.config.checks import presence_timing
from titan_exec.core import leadership as ld
from titan_exec.runtime.ha_watch import LeaseAge, Watchers
from titan_exec.runtime.presence import start_presence, stop_answering
from titan_exec.wire.subjects import Subjects

log = logging.getLogger(__name__)

MARKER_RETRY_S = 0.05


class Takeover(Protocol):
    """The steps of a takeover and of a stand-down, carried out for the driver."""

    async def write_epoch_marker(self, *, token: str, timeout_s: float) -> int: ...

    async def drain_to_head(self) -> None: ...

    async def open_intake(self, epoch: int) -> None: ...

    async def close_intake(self) -> None: ...

    async def stand_down(self, reason: str) -> None: ...

    def finish(self, reason: str) -> None: ...


class Observed(Protocol):
    """What the driver watches besides the lease."""

    async def is_caught_up(self) -> bool: ...

    def drift_alarm(self) -> dict[str, Any] | None:
        """The last drift alarm while it is up; None when there is none."""

    def writer_broken(self) -> bool | None:
        """None: the event writer works; else whether it was deposed (refused by the fence)."""


def lease_timing(cfg: Config) -> ld.LeaseTiming:
    ha = cfg.ha
    return ld.LeaseTiming(
        lease_ms=ha.lease_ms,
        renew_interval_ms=ha.renew_interval_ms,
        safety_margin_ms=ha.safety_margin_ms,
    )


def holder_of(state: ld.Leadership | None) -> str | None:
    """Who holds the lease as `state` last saw it (None: free or unknown)."""
    if state is None:
        return None
    return state.config.holder if state.role in ld.LEADING else state.view.holder


def reconnects(nc: NatsClient) -> int:
    """How many times `nc` reconnected (nats-py's count)."""
    return int(nc.stats.get("reconnects", 0))


def promote_answer(alarm: dict[str, Any] | None) -> str:
    """What an accepted promote request answers (the drift alarm named when there is one)."""
    if alarm is None:
        return "promote requested: campaigning for the lease"
    return (
        "promote requested despite the drift alarm (this standby's state differed from the "
        f"active's at checkpoint seq {alarm.get('watermark_seq')}): campaigning for the lease"
    )


def transition_doc(
    instance_id: str, before: str, after: str, summary: str, epoch: int | None, ts: int
) -> bytes:
    """A role transition as published on the role subject (telemetry)."""
    doc = {
        "instance_id": instance_id,
        "from": before,
        "to": after,
        "reason": summary,
        "epoch": epoch,
        "ts": ts,
    }
    return json.dumps(doc).encode()


def entered_since(transitions: list[tuple[int, str, str]], role: ld.Role) -> int | None:
    """When the last stretch of `role` in `transitions` began (None: not in it)."""
    entered: int | None = None
    for at, name, _ in reversed(transitions):
        if name == role.value:
            entered = at
        elif entered is not None:
            break
    return entered


def _is_news(inp: ld.Input) -> bool:
    """Worth a log line without a role change: not a tick, a lease seen again, or a
    presence probe other than "no responders" (a standby probes every few tens of ms)."""
    if isinstance(inp, ld.PresenceProbed):
        return inp.outcome is ld.Presence.NO_RESPONDERS
    return not isinstance(inp, ld.Tick | ld.LeaseSeen)


class HaDriver:
    def __init__(
        self,
        takeover: Takeover,
        observed: Observed,
        *,
        nc: NatsClient,
        cfg: Config,
        metrics: Metrics,
        clock: Callable[[], int],
        say: Callable[[str], None],
    ) -> None:
        self.takeover = takeover
        self.observed = observed
        self._nc = nc
        self._cfg = cfg
        self._metrics = metrics
        self._clock = clock
        self._subjects = Subjects(cfg.service.namespace)
        self._role_subject = self._subjects.role(cfg.service.instance_id)
        self.say = say
        self.timing = lease_timing(cfg)
        self.presence = presence_timing(cfg.ha)
        self._presence_sub: Any = None  # this process's presence answers
        self.lease: NatsLease | None = None
        self.state: ld.Leadership | None = None
        self._inputs: asyncio.Queue[ld.Input] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._renewals: set[asyncio.Task[None]] = set()
        self._actions: set[asyncio.Task[None]] = set()
        self.transitions: list[tuple[int, str, str]] = []
        """(monotonic ms, role, decision sentence): what `status` and tests read."""
        self.lease_age = LeaseAge()
        self.last_takeover: dict[str, object] | None = None
        self.last_fencing: dict[str, object] | None = None
        self.watchers: Watchers | None = None
        self.is_stopping_for_good = False
        """SIGTERM / shutdown: a fence then ends the process instead of rejoining."""
        self._marker_token: str | None = None
        self._proven_on = reconnects(nc)  # the connection a lease write last succeeded on

    # --- the check before every venue write ------------------------------------------------

    def can_write_venue(self) -> bool:
        """The lease's deadline, and a connection not new since the last lease write that
        succeeded (a lease may be taken over while we reconnect: the next renew tells)."""
        if self.state is None or not ld.can_write_venue(self.state, monotonic_ms()):
            return False
        return self._nc.is_connected and self._proven_on == reconnects(self._nc)

    @property
    def role(self) -> str:
        return self.state.role.value if self.state is not None else "starting"

    @property
    def leadership_role(self) -> ld.Role | None:
        """The leadership core's role (None before the start): the instance's role."""
        return self.state.role if self.state is not None else None

    @property
    def largest_stall_ms(self) -> int:
        """The longest event-loop stall the watchdog measured since the start."""
        return self.watchers.largest_stall_ms if self.watchers is not None else 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self._cfg
        self.lease = await NatsLease.open(
            self._nc,
            instance_id=cfg.service.instance_id,
            timing=self.timing,
            shard=None if cfg.service.shard == "main" else cfg.service.shard,
            replicas=cfg.nats.replicas,
        )
        mode = ld.Mode.STANDBY if cfg.is_standby else ld.Mode.ACTIVE
        config = ld.LeaderConfig(
            holder=self.lease.holder,
            timing=self.timing,
            mode=mode,
            is_manual_failover=cfg.ha.manual_failover,
            is_unsafe_fencing_disabled=cfg.is_unsafe_fencing_disabled,
            presence=self.presence,
        )
        self.state = ld.initial(config, monotonic_ms())
        self.watchers = w = Watchers(self, self.lease, self.observed, metrics=self._metrics)
        self._tasks = [
            asyncio.create_task(self._loop(), name="ha-loop"),
            asyncio.create_task(w.watch_lease(), name="ha-watch"),
            asyncio.create_task(w.watchdog(), name="ha-watchdog"),
            asyncio.create_task(w.report_shadow(), name="ha-shadow"),
        ]
        self._presence_sub, prober = await start_presence(
            self._nc, self._subjects, self.presence, config.holder, self._present, self
        )
        if prober is not None:
            self._tasks.append(asyncio.create_task(prober.run(), name="ha-presence"))
        self.put(ld.Tick(monotonic_ms()))

    def _present(self) -> dict[str, Any]:
        """What this process's presence answer says besides its name."""
        return {"role": self.role, "epoch": self.state.epoch if self.state else None}

    async def stop(self) -> None:
        state, lease = self.state, self.lease
        tasks, self._tasks = self._tasks, []
        tasks += [*self._actions, *self._renewals]
        for task in tasks:
            task.cancel()
        await stop_answering(self._presence_sub)
        self._presence_sub = None
        is_leader = state is not None and state.role in ld.LEADING
        if is_leader and lease is not None and state is not None and state.revision is not None:
            # a planned stop of the leader hands the lease over at once, before waiting for
            # its own tasks to end (a renewal still in flight fails its compare-and-set)
            with contextlib.suppress(Exception):
                await lease.release(state.revision)
        await asyncio.gather(*tasks, return_exceptions=True)

    def request_switchover(self) -> bool:
        """Planned hand-over (deploys): close intake, finish in-flight work, release."""
        if self.state is None or self.state.role is not ld.Role.ACTIVE:
            return False
        self.put(ld.Switchover(monotonic_ms()))
        return True

    def transitions_since(self, role: ld.Role) -> int | None:
        """Monotonic time this instance last entered `role` (None: never)."""
        return entered_since(self.transitions, role)

    def request_promote(self) -> tuple[bool, str]:
        """Manual failover (operator): campaign now, unless someone holds the lease. The
        answer is what can be told at once; the election decides."""
        state = self.state
        if state is None or state.role is not ld.Role.STANDBY:
            return False, f"not a standby (role {self.role})"
        if state.view.kind is ld.ViewKind.HELD:
            holder = state.view.holder or "another instance"
            return False, f"the lease is held by {holder}: use switchover on the active"
        self.put(ld.Promote(monotonic_ms()))
        return True, promote_answer(self.observed.drift_alarm())

    def put(self, inp: ld.Input) -> None:
        self._inputs.put_nowait(inp)

    # --- the loop ------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            assert self.state is not None
            now = monotonic_ms()
            wake = ld.next_timer_ms(self.state, now)
            timeout = None if wake is None else max(0, wake - now) / 1000
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                async with asyncio.timeout(timeout):
                    inp = await self._inputs.get()
            except TimeoutError:
                inp = ld.Tick(monotonic_ms())
            before = self.state.role
            self.state, decision = ld.step(self.state, inp)
            self.lease_age.note(inp)
            if self.state.role is not before:
                role = self.state.role.value
                self._metrics.role_changes.labels(role).inc()
                self._metrics.set_role(role)
                level = logging.WARNING if self.state.role is ld.Role.FENCED else logging.INFO
                log.log(level, "ha: %s → %s: %s", before.value, role, decision.summary)
                self._publish_transition(before.value, role, decision.summary)
            elif _is_news(inp) and decision.summary:
                log.info("ha[%s]: %s", self.state.role.value, decision.summary)
            if self.state.role is not before or not isinstance(inp, ld.PresenceProbed):
                self.transitions.append((monotonic_ms(), self.state.role.value, decision.summary))
            del self.transitions[:-200]
            for action in decision.actions:
                if isinstance(action, ld.Release):
                    await self._act(action)  # hand the lease over before anything else
                    continue
                # every action runs on its own: a long drain or a slow call never holds
                # back the next renewal (the loop keeps stepping ticks)
                task = asyncio.create_task(self._act(action), name=f"ha-{type(action).__name__}")
                self._actions.add(task)
                task.add_done_callback(self._actions.discard)

    def _publish_transition(self, before: str, after: str, summary: str) -> None:
        if not self._nc.is_connected:
            return  # telemetry only: the log and the metrics have it
        epoch = self.state.epoch if self.state is not None else None
        me = self._cfg.service.instance_id
        body = transition_doc(me, before, after, summary, epoch, self._clock())
        task = asyncio.create_task(self._nc.publish(self._role_subject, body))
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    def lease_holder(self) -> str | None:
        """Who holds the lease as this instance last saw it (None: free or unknown)."""
        return holder_of(self.state)

    def lease_age_ms(self) -> int | None:
        return self.lease_age.age_ms(monotonic_ms())

    async def _act(self, action: ld.Action) -> None:
        lease = self.lease
        assert lease is not None
        match action:
            case ld.ReadLease():
                self.put(await lease.read())
            case ld.Acquire(timeout_ms=timeout_ms, over_revision=over):
                sent, self._proven_on = monotonic_ms(), reconnects(self._nc)
                if over is None:
                    result = await lease.acquire(timeout_ms=timeout_ms)
                else:  # its holder's process is gone (presence): no waiting for the expiry
                    result = await lease.take_over(over, timeout_ms=timeout_ms)
                self.put(acquire_outcome(result, sent, monotonic_ms()))
            case ld.Renew(revision=revision, epoch=epoch, timeout_ms=timeout_ms):
                # in flight while the loop goes on: the deadline, not the call, bounds it
                renew = asyncio.create_task(self._renew(revision, epoch, timeout_ms))
                self._renewals.add(renew)
                renew.add_done_callback(self._renewals.discard)
            case ld.Release(revision=revision):
                await lease.release(revision)
            case ld.WriteEpochMarker():
                await self._write_marker()
            case ld.DrainToHead():
                try:
                    await self.takeover.drain_to_head()
                except Exception as err:  # e.g. no JetStream meta leader after a node loss
                    log.warning("draining to the head failed: %r", err)
                    self.put(ld.TakeoverFailed(f"drain: {err!r}", monotonic_ms()))
                else:
                    self.put(ld.CaughtUp(monotonic_ms()))
            case ld.OpenIntake(epoch=epoch):
                await self._open_intake(epoch)
            case ld.CloseIntake():
                await self.takeover.close_intake()
                self.put(ld.DrainDone(monotonic_ms()))
            case ld.StopVenueWrites(reason=reason):
                await self._stop_venue_writes(reason)

    async def _write_marker(self) -> None:
        # one token per takeover: a retry adopts a marker whose answer was lost
        self._marker_token = self._marker_token or secrets.token_hex(8)
        try:
            epoch = await self.takeover.write_epoch_marker(
                token=self._marker_token, timeout_s=self.timing.renew_interval_ms / 1000
            )
        except Exception as err:
            # only a refused compare-and-set means a newer epoch exists; a timeout, no
            # responders or a leader election is retried (the deadline bounds it)
            lost = is_fence_rejection(err)
            log.warning("epoch marker not written (%r): %s", err, "lost" if lost else "retry")
            if not lost:
                await asyncio.sleep(MARKER_RETRY_S)
            failure = ld.Failure.LOST if lost else ld.Failure.UNAVAILABLE
            self.put(ld.EpochMarkerFailed(failure, monotonic_ms()))
        else:
            self.put(ld.EpochMarkerWritten(epoch, monotonic_ms()))

    async def _open_intake(self, epoch: int) -> None:
        won = self.transitions_since(ld.Role.PROMOTING)
        self._marker_token = None
        try:
            await self.takeover.open_intake(epoch)
        except Exception as err:
            log.warning("opening intake failed: %r", err)
            self.put(ld.TakeoverFailed(f"open intake: {err!r}", monotonic_ms()))
            return
        self._metrics.takeovers.inc()
        self.last_takeover = {
            "epoch": epoch,
            "at_ms": self._clock(),
            "lease_won_to_intake_ms": None if won is None else monotonic_ms() - won,
        }
        self.say(f"leadership: active with epoch {epoch}")

    async def _stop_venue_writes(self, reason: str) -> None:
        self._marker_token = None
        self.last_fencing = {"reason": reason, "at_ms": self._clock()}
        if self.is_stopping_for_good:
            self.takeover.finish(f"stopping: {reason}")
            return
        # the takeover steps still running (drain, recovery) end here
        me = asyncio.current_task()
        others = [t for t in self._actions if t is not me]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.takeover.stand_down(reason)

    async def _renew(self, revision: int, epoch: int | None, timeout_ms: int) -> None:
        assert self.lease is not None
        sent, on = monotonic_ms(), reconnects(self._nc)
        result = await self.lease.renew(revision, epoch=epoch, timeout_ms=timeout_ms)
        outcome = renew_outcome(result, sent, monotonic_ms())
        if isinstance(outcome, ld.RenewSucceeded):
            self._proven_on = max(self._proven_on, on)
        elapsed = (monotonic_ms() - sent) / 1000
        ok = isinstance(outcome, ld.RenewSucceeded)
        self._metrics.lease_renew.labels("ok" if ok else "failed").observe(elapsed)
        self.put(outcome)
