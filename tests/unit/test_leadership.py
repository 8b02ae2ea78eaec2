"""The leadership state machine: every (role, input) pair, the deadline, timing validation,
and a deterministic simulation of two instances on a fake clock (hypothesis).

The simulation gives each instance its own monotonic clock (drift, forward steps), a lossy
network with delays and late-applied requests, pauses longer than the lease, and a fake
lease store with linearizable compare-and-set and TTL (like a JetStream KV bucket with
history 1 and limit markers). At every fake-clock instant at most one instance may write
to the venue, and that one holds the lease at the store.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from titan_exec.core.leadership import (
    INPUT_TYPES,
    TRANSITIONS,
    Acquire,
    AcquireFailed,
    AcquireSucceeded,
    Action,
    CaughtUp,
    CloseIntake,
    Decision,
    DrainDone,
    DrainToHead,
    EpochMarkerFailed,
    EpochMarkerWritten,
    Failure,
    Input,
    LeaderConfig,
    Leadership,
    LeaseEmpty,
    LeaseSeen,
    LeaseTiming,
    LeaseTimingError,
    LeaseUnavailable,
    LoopStalled,
    Mode,
    OpenIntake,
    Presence,
    PresenceProbed,
    Promote,
    ReadLease,
    Release,
    Renew,
    RenewFailed,
    RenewSucceeded,
    Role,
    ShadowReported,
    StopVenueWrites,
    Switchover,
    TakeoverFailed,
    Tick,
    WriteEpochMarker,
    WriteRejected,
    can_write_venue,
    start,
    step,
)

TIMING = LeaseTiming(lease_ms=1000)  # renew 250, margin 200, stall 50, round trip 50, hold 1000
ME = "primary/s1"
OTHER = "backup/s2"
LOST, UNAVAILABLE = Failure.LOST, Failure.UNAVAILABLE


# ----------------------------------------------------------------------------- builders
def config(mode: Mode = Mode.STANDBY, *, is_manual_failover: bool = False) -> LeaderConfig:
    return LeaderConfig(ME, TIMING, mode, is_manual_failover)


def run(state: Leadership, *inputs: Input) -> tuple[Leadership, Decision]:
    decision = Decision("nothing stepped")
    for inp in inputs:
        state, decision = step(state, inp)
    return state, decision


def a_standby(mode: Mode = Mode.STANDBY, **kw: bool) -> Leadership:
    """Started at 0, caught up, no drift alarm, lease not read yet."""
    state, _ = start(config(mode, **kw), 0)
    state, _ = step(state, ShadowReported(True, False, 0))
    return state


def a_candidate() -> Leadership:
    return run(a_standby(), LeaseEmpty(3, 10))[0]


def promoting() -> Leadership:
    """Acquired revision 4 (sent at 10): deadline 810, next renew at 260; no marker yet."""
    return run(a_candidate(), AcquireSucceeded(4, 10, 20))[0]


def promoting_with_epoch() -> Leadership:
    return run(promoting(), EpochMarkerWritten(7, 30))[0]


def an_active() -> Leadership:
    return run(promoting_with_epoch(), CaughtUp(40))[0]


def a_draining() -> Leadership:
    return run(an_active(), Switchover(50))[0]


def a_fenced() -> Leadership:
    return run(an_active(), WriteRejected(50))[0]


def kinds(decision: Decision) -> str:
    return " ".join(type(a).__name__ for a in decision.actions)


# ---------------------------------------------------------------- every (role, input) pair
BUILDERS: dict[str, Callable[[], Leadership]] = {
    "standby": a_standby,
    "candidate": a_candidate,
    "promoting": promoting,
    "promoting+epoch": promoting_with_epoch,
    "active": an_active,
    "draining": a_draining,
    "fenced": a_fenced,
}
NOW = 100  # before the first renew (260) and the deadline (810)
SAMPLES: dict[type, Input] = {
    LeaseSeen: LeaseSeen(OTHER, 100, 9, NOW),
    LeaseEmpty: LeaseEmpty(100, NOW),
    LeaseUnavailable: LeaseUnavailable(NOW),
    AcquireSucceeded: AcquireSucceeded(100, NOW, NOW),
    AcquireFailed: AcquireFailed(LOST, NOW),
    RenewSucceeded: RenewSucceeded(100, NOW, NOW),
    RenewFailed: RenewFailed(LOST, NOW),
    EpochMarkerWritten: EpochMarkerWritten(9, NOW),
    EpochMarkerFailed: EpochMarkerFailed(LOST, NOW),
    CaughtUp: CaughtUp(NOW),
    DrainDone: DrainDone(NOW),
    Tick: Tick(NOW),
    LoopStalled: LoopStalled(500, NOW),
    WriteRejected: WriteRejected(NOW),
    TakeoverFailed: TakeoverFailed("no JetStream meta leader", NOW),
    ShadowReported: ShadowReported(True, False, NOW),
    PresenceProbed: PresenceProbed(OTHER, 100, Presence.NO_RESPONDERS, NOW, NOW),
    Switchover: Switchover(NOW),
    Promote: Promote(NOW),
}
_ = "-"  # stays in its role, no action
FENCE = "fenced:StopVenueWrites"
FENCE_RELEASE = "fenced:StopVenueWrites Release"
# columns: standby, candidate, promoting, promoting+epoch, active, draining, fenced
TABLE: dict[type, tuple[str, ...]] = {
    LeaseSeen: (_, _, FENCE, FENCE, FENCE, FENCE, _),
    LeaseEmpty: ("candidate:Acquire", _, FENCE, FENCE, FENCE, FENCE, _),
    LeaseUnavailable: (_, _, _, _, _, _, _),
    AcquireSucceeded: (":Release", "promoting:WriteEpochMarker", _, _, _, _, ":Release"),
    AcquireFailed: (_, "standby:", _, _, _, _, _),
    RenewSucceeded: (_, _, _, _, _, _, _),
    RenewFailed: (_, _, FENCE, FENCE, FENCE, FENCE, _),
    EpochMarkerWritten: (_, _, ":DrainToHead", _, _, _, _),
    EpochMarkerFailed: (_, _, FENCE_RELEASE, FENCE_RELEASE, _, _, _),
    CaughtUp: (_, _, _, "active:OpenIntake", _, _, _),
    DrainDone: (_, _, _, _, _, FENCE_RELEASE, _),
    Tick: (_, _, _, _, _, _, _),
    LoopStalled: (_, _, FENCE_RELEASE, FENCE_RELEASE, FENCE_RELEASE, FENCE_RELEASE, _),
    WriteRejected: (_, _, FENCE, FENCE, FENCE, FENCE, _),
    TakeoverFailed: (_, _, FENCE_RELEASE, FENCE_RELEASE, FENCE_RELEASE, FENCE_RELEASE, _),
    ShadowReported: (_, _, _, _, _, _, _),
    PresenceProbed: (_, _, _, _, _, _, _),  # one probe decides nothing (test_presence.py)
    Switchover: (_, _, FENCE_RELEASE, FENCE_RELEASE, "draining:CloseIntake", _, _),
    Promote: ("candidate:Acquire", _, _, _, _, _, _),
}
CASES = [
    pytest.param(column, kind, expected, id=f"{column}-{kind.__name__}")
    for kind, row in TABLE.items()
    for column, expected in zip(BUILDERS, row, strict=True)
]


def test_the_table_covers_every_role_and_input() -> None:
    assert set(TABLE) == set(INPUT_TYPES) == set(SAMPLES)
    roles_built = {builder().role for builder in BUILDERS.values()}
    assert roles_built == set(Role)


@pytest.mark.parametrize(("column", "kind", "expected"), CASES)
def test_every_role_and_input(column: str, kind: type, expected: str) -> None:
    before = BUILDERS[column]()
    after, decision = step(before, SAMPLES[kind])
    role, _sep, actions = expected.partition(":") if expected != _ else ("", "", "")
    assert after.role is (Role(role) if role else before.role), decision.summary
    assert kinds(decision) == actions, decision.summary
    assert decision.summary.startswith(f"{before.role}: ")
    assert "\n" not in decision.summary
    if after.role is not before.role and after.role is not Role.FENCED:
        assert after.role in TRANSITIONS[(before.role, kind)]


# ------------------------------------------------------------------ the lease deadline
def test_active_can_write_until_the_deadline_and_fences_at_it() -> None:
    active = an_active()
    assert active.deadline_ms == 10 + 1000 - 200
    assert can_write_venue(active, 809)
    assert not can_write_venue(active, 810)
    fenced, decision = step(active, Tick(810))
    assert fenced.role is Role.FENCED
    assert decision.actions == (StopVenueWrites(decision.summary[len("active: ") :]), Release(4))
    assert "lease deadline 810 passed" in decision.summary


def test_a_renew_that_succeeds_after_the_deadline_is_too_late() -> None:
    fenced, decision = step(an_active(), RenewSucceeded(5, 700, 815))
    assert fenced.role is Role.FENCED
    assert "deadline" in decision.summary


def test_the_deadline_fences_even_when_nats_says_nothing_and_renewals_hang() -> None:
    active, decision = step(an_active(), Tick(260))
    assert decision.actions == (Renew(4, 7, 250),)
    assert decision.next_timer_ms == 810  # renew in flight: only the deadline wakes us
    active, decision = step(active, Tick(600))
    assert decision.actions == ()
    fenced, _ = step(active, Tick(810))
    assert fenced.role is Role.FENCED


def test_renewal_extends_the_deadline_from_its_send_time() -> None:
    active, _ = run(an_active(), Tick(260))
    active, decision = step(active, RenewSucceeded(5, 260, 300))
    assert active.deadline_ms == 260 + 800
    assert active.revision == 5
    assert decision.next_timer_ms == 510
    assert decision.summary == "active: renewed at revision 5, valid until 1060"


def test_an_unavailable_renew_keeps_the_role_and_retries_before_the_deadline() -> None:
    active, _ = run(an_active(), Tick(260))
    active, decision = step(active, RenewFailed(UNAVAILABLE, 510))
    assert active.role is Role.ACTIVE
    assert decision.next_timer_ms == 510 + 250 // 4
    active, decision = step(active, Tick(572))
    assert decision.actions == (Renew(4, 7, 810 - 572),)
    active, decision = run(active, RenewFailed(UNAVAILABLE, 700), Tick(762))
    assert decision.actions == (Renew(4, 7, 810 - 762),)  # the call never outlives the lease


def test_a_renew_lost_fences_at_once_without_releasing() -> None:
    fenced, decision = step(an_active(), RenewFailed(LOST, 300))
    assert fenced.role is Role.FENCED
    assert kinds(decision) == "StopVenueWrites"
    assert not can_write_venue(fenced, 300)


def test_promoting_and_standby_never_write_to_the_venue() -> None:
    for state in (a_standby(), a_candidate(), promoting(), promoting_with_epoch(), a_fenced()):
        assert not can_write_venue(state, NOW), state.role
    assert can_write_venue(an_active(), NOW)
    assert can_write_venue(a_draining(), NOW)


def test_a_short_loop_stall_is_tolerated_a_long_one_fences() -> None:
    active, decision = step(an_active(), LoopStalled(100, NOW))
    assert active.role is Role.ACTIVE
    assert decision.summary == "active: event loop stalled 100 ms, within the margin"
    fenced, decision = step(active, LoopStalled(101, NOW))
    assert fenced.role is Role.FENCED
    assert decision.actions[-1] == Release(4)


def test_stale_observations_do_not_fence_the_leader() -> None:
    active = an_active()
    for old in (LeaseEmpty(3, NOW), LeaseEmpty(0, NOW), LeaseSeen(OTHER, 2, None, NOW)):
        after, decision = step(active, old)
        assert after.role is Role.ACTIVE, decision.summary
    adopted, decision = step(active, LeaseSeen(ME, 6, 7, NOW))
    assert adopted.revision == 6
    assert decision.summary == "active: our own write seen at revision 6: adopted"


# ----------------------------------------------------------------------- campaigning
def test_full_promotion_path() -> None:
    state, decision = start(config(), 0)
    assert (state.role, decision.actions) == (Role.STANDBY, (ReadLease(),))
    state, decision = step(state, LeaseEmpty(0, 5))
    assert decision.summary == "standby: observed, lease empty (revision 0) but not caught up"
    state, decision = step(state, ShadowReported(True, False, 6))
    assert decision.actions == (Acquire(250),)
    state, decision = step(state, AcquireSucceeded(1, 6, 8))
    assert decision.actions == (WriteEpochMarker(),)
    state, decision = step(state, EpochMarkerWritten(3, 9))
    assert decision.actions == (DrainToHead(3),)
    state, decision = step(state, CaughtUp(12))
    assert (state.role, decision.actions) == (Role.ACTIVE, (OpenIntake(3),))
    assert decision.summary == "promoting: caught up in epoch 3: opening intake"


@pytest.mark.parametrize(
    ("flags", "blocker"),
    [
        ({"is_caught_up": False, "has_drift_alarm": False}, "not caught up"),
        ({"is_caught_up": True, "has_drift_alarm": True}, "a drift alarm is raised"),
    ],
)
def test_a_standby_that_is_behind_or_drifted_does_not_campaign(
    flags: dict[str, bool], blocker: str
) -> None:
    state, _ = start(config(), 0)
    state, _ = step(state, ShadowReported(flags["is_caught_up"], flags["has_drift_alarm"], 1))
    state, decision = step(state, LeaseEmpty(9, 2))
    assert state.role is Role.STANDBY
    assert decision.summary.endswith(blocker)


def test_manual_failover_waits_for_promote() -> None:
    state, decision = step(a_standby(is_manual_failover=True), LeaseEmpty(9, 2))
    assert state.role is Role.STANDBY
    assert "manual failover is on" in decision.summary
    state, decision = step(state, Promote(3))
    assert (state.role, decision.actions) == (Role.CANDIDATE, (Acquire(250),))


def test_promote_is_refused_while_the_lease_is_held() -> None:
    state, _ = step(a_standby(is_manual_failover=True), LeaseSeen(OTHER, 9, 2, 2))
    state, decision = step(state, Promote(3))
    assert state.role is Role.STANDBY
    assert decision.summary == "standby: promote refused: lease held by backup/s2 (revision 9)"


def test_mode_active_campaigns_at_once_without_reading_first() -> None:
    state, decision = start(config(Mode.ACTIVE), 0)
    assert state.role is Role.CANDIDATE
    assert decision.actions == (ReadLease(), Acquire(250))


def test_mode_active_waits_while_someone_else_holds_the_lease() -> None:
    state, _ = start(config(Mode.ACTIVE), 0)
    state, decision = step(state, AcquireFailed(LOST, 5))
    assert state.role is Role.STANDBY
    state, decision = step(state, Tick(1000))
    assert (state.role, decision.actions) == (Role.STANDBY, (ReadLease(),))
    state, decision = step(state, LeaseEmpty(7, 1001))
    assert state.role is Role.CANDIDATE


def test_an_unavailable_acquire_backs_off_one_renew_interval() -> None:
    state, _ = start(config(Mode.ACTIVE), 0)
    state, decision = step(state, AcquireFailed(UNAVAILABLE, 250))
    assert decision.next_timer_ms == 250  # the poll is due at once, the campaign at 500
    state, decision = step(state, Tick(250))
    assert (state.role, decision.actions) == (Role.STANDBY, (ReadLease(),))
    assert decision.next_timer_ms == 500
    state, decision = step(state, Tick(500))
    assert state.role is Role.CANDIDATE


def test_a_lease_acquired_too_late_is_released() -> None:
    state, decision = step(a_candidate(), AcquireSucceeded(4, 10, 810))
    assert state.role is Role.STANDBY
    assert decision.actions == (Release(4),)


def test_a_drift_alarm_raised_during_the_campaign_gives_the_lease_back() -> None:
    state, _ = step(a_candidate(), ShadowReported(True, True, 15))
    state, decision = step(state, AcquireSucceeded(4, 10, 20))
    assert (state.role, decision.actions) == (Role.STANDBY, (Release(4),))


def test_a_standby_releases_a_lease_written_under_its_own_name() -> None:
    state, decision = step(a_standby(), LeaseSeen(ME, 12, None, 5))
    assert decision.actions == (Release(12),)
    assert state.role is Role.STANDBY


# ----------------------------------------------------------- switchover, fencing, rejoin
def test_switchover_drains_then_stops_writes_before_releasing() -> None:
    state, decision = step(an_active(), Switchover(50))
    assert (state.role, decision.actions) == (Role.DRAINING, (CloseIntake(),))
    state, decision = step(state, DrainDone(60))
    assert state.role is Role.FENCED
    assert kinds(decision) == "StopVenueWrites Release"
    assert decision.summary == "draining: drained: handing the lease over"


def test_a_fenced_instance_rejoins_as_standby_after_the_hold() -> None:
    fenced = a_fenced()
    assert fenced.fenced_until_ms == 50 + 1000
    assert not fenced.is_caught_up
    state, decision = step(fenced, Tick(1049))
    assert state.role is Role.FENCED
    state, decision = step(state, Tick(1050))
    assert (state.role, decision.actions) == (Role.STANDBY, (ReadLease(),))
    state, decision = step(state, LeaseEmpty(20, 1060))
    assert decision.summary.endswith("not caught up")  # the deposed state is rebuilt first
    state, decision = step(state, ShadowReported(True, False, 1100))
    assert state.role is Role.CANDIDATE


def test_every_decision_names_one_next_wakeup_that_makes_progress() -> None:
    for build in BUILDERS.values():
        state = build()
        _, decision = step(state, Tick(NOW))
        if state.role is Role.CANDIDATE:
            assert decision.next_timer_ms is None
        else:
            assert decision.next_timer_ms is not None
            assert decision.next_timer_ms > NOW


# --------------------------------------------------------------------- timing settings
def test_timing_defaults_derive_from_the_lease() -> None:
    timing = LeaseTiming()
    assert (timing.lease_ms, timing.renew_interval_ms, timing.safety_margin_ms) == (
        5000,
        1250,
        1000,
    )
    assert (timing.max_loop_stall_ms, timing.max_round_trip_ms) == (500, 250)
    assert LeaseTiming(lease_ms=2000).renew_interval_ms == 500


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"lease_ms": 999}, "lease_ms=999 is below the minimum of 1000"),
        ({"lease_ms": -5}, "lease_ms must be a positive integer"),
        ({"lease_ms": 1000, "renew_interval_ms": 400}, "renew_interval_ms=400 is too long"),
        ({"lease_ms": 1000, "safety_margin_ms": 100}, "safety_margin_ms=100 is too small"),
        (
            {"lease_ms": 1000, "max_loop_stall_ms": 150},
            "safety_margin_ms=200 is too small: it must exceed max_loop_stall_ms=150",
        ),
        ({"lease_ms": 1000, "safety_margin_ms": 600}, "safety_margin_ms=600 is too large"),
        ({"fenced_hold_ms": -1}, "fenced_hold_ms must be a positive integer"),
    ],
)
def test_bad_timing_is_refused_naming_the_setting(settings_: dict[str, int], message: str) -> None:
    with pytest.raises(LeaseTimingError, match=message):
        LeaseTiming(**settings_)


# ======================================================================== simulation
HOLDERS = ("A/1", "B/1")
MAX_DELAY_MS = 40
REBUILD_MS = 200


@dataclass
class Entry:
    holder: str | None  # None: a delete or expiry marker
    revision: int
    written_at: int
    epoch: int | None = None


@dataclass
class Node:
    holder: str
    state: Leadership
    ppm: int = 0  # clock rate error
    offset_ms: int = 0  # forward clock steps so far
    paused_until: int = -1
    held: list[Callable[[int], Input]] = field(default_factory=list)
    is_crashed: bool = False
    timer_gen: int = 0


@dataclass(frozen=True)
class Scenario:
    seed: int
    loss: float
    late_rate: float  # requests applied after the caller gave up; slow responses
    has_watchdog: bool  # a resumed instance steps LoopStalled (else only the deadline)
    ppm: tuple[int, int]
    modes: tuple[Mode, Mode]
    pauses: tuple[tuple[int, int, int], ...]  # (node, at_ms, duration_ms)
    clock_steps: tuple[tuple[int, int, int], ...]  # (node, at_ms, jump_ms)
    switchovers: tuple[int, ...]  # at_ms, sent to whichever node is active


class Sim:
    """Two instances, a lease store (CAS + TTL + markers), an epoch store, a lossy network."""

    def __init__(self, scenario: Scenario, *, faults_until: int) -> None:
        self.rng = random.Random(scenario.seed)
        self.scenario = scenario
        self.faults_until = faults_until
        self.t = 0
        self.queue: list[tuple[int, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.revision = 0
        self.entry: Entry | None = None
        self.epoch = 0
        self.log: list[str] = []
        self.nodes = [
            Node(h, Leadership(LeaderConfig(h, TIMING, m)), ppm)
            for h, m, ppm in zip(HOLDERS, scenario.modes, scenario.ppm, strict=True)
        ]
        for node in self.nodes:
            self.at(0, partial(self.boot, node))
        for i, at, duration in scenario.pauses:
            self.at(at, partial(self.pause, self.nodes[i], duration))
        for i, at, jump in scenario.clock_steps:
            self.at(at, partial(self.clock_step, self.nodes[i], jump))
        for at in scenario.switchovers:
            self.at(at, self.switchover)

    # ---------------------------------------------------------------- scheduling, clocks
    def at(self, t: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (t, next(self.seq), fn))

    def run_until(self, t_end: int) -> None:
        while self.queue and self.queue[0][0] <= t_end:
            t, _, fn = heapq.heappop(self.queue)
            self.t = t
            fn()
            self.check()
        self.t = t_end

    def local(self, node: Node, t: int | None = None) -> int:
        t = self.t if t is None else t
        return t + node.offset_ms + t * node.ppm // 1_000_000

    def global_time(self, node: Node, local_ms: int) -> int:
        guess = (local_ms - node.offset_ms) * 1_000_000 // (1_000_000 + node.ppm) - 2
        t = max(self.t, guess)
        while self.local(node, t) < local_ms:
            t += 1
        return t

    @property
    def is_faulty(self) -> bool:
        return self.t < self.faults_until

    # -------------------------------------------------------------------- the invariant
    def holds_lease(self, node: Node) -> bool:
        e = self.entry
        return e is not None and e.holder == node.holder and self.t < e.written_at + TIMING.lease_ms

    def check(self) -> None:
        writers = [
            n for n in self.nodes if not n.is_crashed and can_write_venue(n.state, self.local(n))
        ]
        trace = "\n".join(self.log[-30:])
        assert len(writers) <= 1, f"two writers at {self.t}:\n{trace}"
        for n in writers:
            assert self.holds_lease(n), f"{n.holder} writes without the lease at {self.t}:\n{trace}"
            assert n.state.epoch == self.epoch, f"{n.holder} writes in a deposed epoch:\n{trace}"

    # --------------------------------------------------------------- instance and shell
    def boot(self, node: Node) -> None:
        self.deliver(node, Tick)
        self.after(self.rng.randint(0, 100), node, lambda now: ShadowReported(True, False, now))

    def deliver(self, node: Node, make: Callable[[int], Input]) -> None:
        if node.is_crashed:
            return
        if self.t < node.paused_until:
            node.held.append(make)
            return
        inp = make(self.local(node))
        node.state, decision = step(node.state, inp)
        self.log.append(f"{self.t} {node.holder} {type(inp).__name__}: {decision.summary}")
        for action in decision.actions:
            self.perform(node, action)
        if decision.next_timer_ms is not None:
            node.timer_gen += 1
            self.at(self.global_time(node, decision.next_timer_ms), self.timer(node))

    def timer(self, node: Node) -> Callable[[], None]:
        gen = node.timer_gen
        return lambda: self.deliver(node, Tick) if node.timer_gen == gen else None

    def after(self, delay: int, node: Node, make: Callable[[int], Input]) -> None:
        self.at(self.t + delay, lambda: self.deliver(node, make))

    def pause(self, node: Node, duration: int) -> None:
        node.paused_until = self.t + duration
        self.at(node.paused_until, lambda: self.resume(node, duration))

    def resume(self, node: Node, duration: int) -> None:
        held, node.held = node.held, []
        if self.scenario.has_watchdog:
            stalled = lambda now: LoopStalled(duration, now)  # noqa: E731
            held.insert(self.rng.randint(0, len(held)), stalled)
        held.append(Tick)
        for make in held:
            self.deliver(node, make)

    def clock_step(self, node: Node, jump: int) -> None:
        node.offset_ms += jump  # monotonic clocks only ever jump forward
        self.deliver(node, Tick)

    def switchover(self) -> None:
        for node in self.nodes:
            if node.state.role is Role.ACTIVE:
                self.deliver(node, Switchover)

    def call(
        self,
        node: Node,
        apply: Callable[[], Callable[[int], Input]],
        timeout: int,
        unavailable: Callable[[int], Input],
    ) -> None:
        """One request/response: delayed, lost, or applied after the caller gave up."""
        loss = self.scenario.loss if self.is_faulty else 0.0
        is_late = self.is_faulty and self.rng.random() < self.scenario.late_rate
        is_slow = self.is_faulty and self.rng.random() < self.scenario.late_rate
        d_req = self.rng.randint(timeout, 4 * timeout) if is_late else self.rng.randint(0, 20)
        d_resp = self.rng.randint(0, timeout if is_slow else MAX_DELAY_MS)
        if self.rng.random() < loss:
            self.after(timeout, node, unavailable)
            return
        answered = d_req + d_resp <= timeout and self.rng.random() >= loss
        sent = self.t

        def on_server() -> None:
            result = apply()
            if answered:
                self.at(sent + d_req + d_resp, lambda: self.deliver(node, result))

        self.at(sent + d_req, on_server)
        if not answered:
            self.after(timeout, node, unavailable)

    def perform(self, node: Node, action: Action) -> None:
        sent_at = self.local(node)
        interval = TIMING.renew_interval_ms
        match action:
            case ReadLease():
                self.call(node, self.observe, interval, LeaseUnavailable)
            case Acquire(timeout_ms=timeout):
                self.call(
                    node,
                    lambda: self.cas(node.holder, None, sent_at, AcquireSucceeded, AcquireFailed),
                    timeout,
                    lambda now: AcquireFailed(UNAVAILABLE, now),
                )
            case Renew(epoch=epoch, timeout_ms=timeout):
                self.call(
                    node,
                    lambda: self.cas(node.holder, epoch, sent_at, RenewSucceeded, RenewFailed),
                    timeout,
                    lambda now: RenewFailed(UNAVAILABLE, now),
                )
            case Release(revision=rev):
                self.call(node, lambda: self.release(node.holder, rev), interval, Tick)
            case WriteEpochMarker():
                expected = self.epoch
                self.call(
                    node,
                    lambda: self.write_marker(expected),
                    interval,
                    lambda now: EpochMarkerFailed(UNAVAILABLE, now),
                )
            case DrainToHead():
                self.after(self.rng.randint(0, MAX_DELAY_MS), node, CaughtUp)
            case CloseIntake():
                self.after(self.rng.randint(0, MAX_DELAY_MS), node, DrainDone)
            case StopVenueWrites():
                rebuilt = self.rng.randint(0, REBUILD_MS)
                self.after(rebuilt, node, lambda now: ShadowReported(True, False, now))
            case OpenIntake():
                pass

    # ------------------------------------------------------------------- the lease store
    def observe(self) -> Callable[[int], Input]:
        e = self.entry
        if e is None:
            return lambda now: LeaseEmpty(0, now)
        if e.holder is None:
            return lambda now: LeaseEmpty(e.revision, now)
        return lambda now: LeaseSeen(e.holder or "", e.revision, e.epoch, now)

    def write(self, holder: str | None) -> int:
        self.revision += 1
        self.entry = Entry(holder, self.revision, self.t)
        rev = self.revision
        self.at(self.t + TIMING.lease_ms, lambda: self.expire(rev))
        for node in self.nodes:  # the watchers
            if self.is_faulty and self.rng.random() < self.scenario.loss:
                continue
            self.after(self.rng.randint(0, MAX_DELAY_MS), node, self.observe())
        return rev

    def expire(self, revision: int) -> None:
        e = self.entry
        if e is not None and e.revision == revision:
            if e.holder is None:
                self.entry = None  # the marker itself ages out, silently
            else:
                self.write(None)  # limit marker: watchers are told

    def cas(
        self,
        holder: str,
        epoch: int | None,
        sent_at: int,
        ok: Callable[[int, int, int], Input],
        failed: Callable[[Failure, int], Input],
    ) -> Callable[[int], Input]:
        """Acquire (over nothing, a marker or our own entry) or renew (our own entry).

        Like the NATS adapter: a compare-and-set that finds our own entry (a timed-out call
        applied late) retries on its revision, so success proves the write left after
        ``sent_at``."""
        e = self.entry
        is_free = e is None or e.holder is None
        if (ok is AcquireSucceeded and is_free) or (e is not None and e.holder == holder):
            rev = self.write(holder)
            assert self.entry is not None
            self.entry.epoch = epoch
            return lambda now: ok(rev, sent_at, now)
        return lambda now: failed(LOST, now)

    def release(self, holder: str, revision: int) -> Callable[[int], Input]:
        e = self.entry
        if e is not None and e.holder == holder and e.revision == revision:
            self.write(None)
        return Tick

    def write_marker(self, expected: int) -> Callable[[int], Input]:
        if self.epoch != expected:
            return lambda now: EpochMarkerFailed(LOST, now)
        self.epoch += 1
        epoch = self.epoch
        return lambda now: EpochMarkerWritten(epoch, now)


# ------------------------------------------------------------------ simulation tests
FAULTS_UNTIL = 12_000
SETTLE_MS = 6_000
TAKEOVER_BOUND_MS = TIMING.lease_ms + 2 * TIMING.renew_interval_ms + 10 * MAX_DELAY_MS


def active_nodes(sim: Sim) -> list[Node]:
    return [n for n in sim.nodes if not n.is_crashed and n.state.role is Role.ACTIVE]


def crash_the_active_and_time_the_takeover(sim: Sim) -> int:
    (leader,) = active_nodes(sim)
    leader.is_crashed = True
    crashed_at = sim.t
    while sim.t < crashed_at + TAKEOVER_BOUND_MS:
        sim.run_until(sim.t + 10)
        if active_nodes(sim):
            return sim.t - crashed_at
    trace = "\n".join(sim.log[-40:])
    raise AssertionError(f"no takeover within {TAKEOVER_BOUND_MS} ms:\n{trace}")


scenarios = st.builds(
    Scenario,
    seed=st.integers(0, 2**32),
    loss=st.sampled_from([0.0, 0.05, 0.3]),
    late_rate=st.sampled_from([0.0, 0.1, 0.3]),
    has_watchdog=st.booleans(),
    ppm=st.tuples(st.integers(-1000, 1000), st.integers(-1000, 1000)),
    modes=st.sampled_from(
        [(Mode.ACTIVE, Mode.STANDBY), (Mode.STANDBY, Mode.STANDBY), (Mode.ACTIVE, Mode.ACTIVE)]
    ),
    pauses=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 9000), st.integers(10, 3000)), max_size=4
    ).map(tuple),
    clock_steps=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 9000), st.integers(1, 2000)), max_size=3
    ).map(tuple),
    switchovers=st.lists(st.integers(0, 9000), max_size=2).map(tuple),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios)
def test_two_instances_never_both_write_and_the_standby_takes_over(scenario: Scenario) -> None:
    sim = Sim(scenario, faults_until=FAULTS_UNTIL)
    sim.run_until(FAULTS_UNTIL + SETTLE_MS)  # check() runs after every event
    assert len(active_nodes(sim)) == 1, "\n".join(sim.log[-40:])
    takeover_ms = crash_the_active_and_time_the_takeover(sim)
    assert takeover_ms <= TAKEOVER_BOUND_MS


def quiet(
    *, pauses: tuple[tuple[int, int, int], ...] = (), switchovers: tuple[int, ...] = ()
) -> Scenario:
    """No loss, no drift: A in mode active, B a standby."""
    return Scenario(1, 0.0, 0.0, True, (0, 0), (Mode.ACTIVE, Mode.STANDBY), pauses, (), switchovers)


def roles(sim: Sim) -> list[Role]:
    return [n.state.role for n in sim.nodes]


def test_the_active_mode_instance_leads_and_the_standby_takes_over_after_a_kill() -> None:
    sim = Sim(quiet(), faults_until=0)
    sim.run_until(2000)
    assert roles(sim) == [Role.ACTIVE, Role.STANDBY]
    takeover_ms = crash_the_active_and_time_the_takeover(sim)
    lease, renew = TIMING.lease_ms, TIMING.renew_interval_ms
    assert lease - renew <= takeover_ms <= lease + 4 * MAX_DELAY_MS


def test_an_active_paused_longer_than_the_lease_is_deposed_and_rejoins() -> None:
    sim = Sim(quiet(pauses=((0, 2000, 3000),)), faults_until=6000)
    sim.run_until(4500)
    a = sim.nodes[0]
    assert roles(sim) == [Role.ACTIVE, Role.ACTIVE]  # B took over; A has not run since ...
    assert not can_write_venue(a.state, sim.local(a))  # ... but its deadline has passed
    sim.run_until(5010)
    assert roles(sim) == [Role.FENCED, Role.ACTIVE]
    sim.run_until(9000)
    assert roles(sim) == [Role.STANDBY, Role.ACTIVE]


def test_a_switchover_hands_the_lease_to_the_standby() -> None:
    sim = Sim(quiet(switchovers=(2000,)), faults_until=0)
    # drain, release, watch, acquire, epoch marker, drain to head: nine one-way delays
    sim.run_until(2000 + 9 * MAX_DELAY_MS)
    assert roles(sim) == [Role.FENCED, Role.ACTIVE]


def test_a_write_of_unknown_outcome_fences_and_hands_the_lease_over() -> None:
    """A timed-out event publish leaves the state ahead of the stream: the active fences
    to rebuild, and (unlike a deposed one) releases the lease it still holds."""
    state, decision = step(an_active(), WriteRejected(50, is_deposed=False))
    assert state.role is Role.FENCED
    assert "outcome unknown" in decision.summary
    assert kinds(decision) == "StopVenueWrites Release"
    _, deposed = step(an_active(), WriteRejected(50))
    assert kinds(deposed) == "StopVenueWrites"


def test_a_fenced_active_rejoins_in_standby_mode_and_waits_to_be_caught_up() -> None:
    """Started with mode=active, fenced, held over: it is a standby now, and campaigns only
    once its rebuilt state is reported caught up (never on a bare tick)."""
    started, _ = start(config(Mode.ACTIVE), 0)
    promoting, _ = step(started, AcquireSucceeded(4, 0, 10))
    fenced, _ = step(promoting, WriteRejected(20))
    assert (fenced.role, fenced.config.mode) == (Role.FENCED, Mode.ACTIVE)
    standby, _ = step(fenced, Tick(fenced.fenced_until_ms))
    assert (standby.role, standby.config.mode) == (Role.STANDBY, Mode.STANDBY)
    empty, decision = step(standby, LeaseEmpty(30, fenced.fenced_until_ms + 1))
    assert empty.role is Role.STANDBY and "not caught up" in decision.summary
    caught_up, _ = step(empty, ShadowReported(True, False, fenced.fenced_until_ms + 2))
    campaigning, _ = step(caught_up, Tick(caught_up.next_poll_at_ms))
    assert campaigning.role is Role.CANDIDATE
