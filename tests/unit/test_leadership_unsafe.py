"""The unsafe test build (`LeaderConfig.is_unsafe_fencing_disabled`, issue 5): a leader that
never fences itself, so that the chaos checker can prove it sees a split brain.

Each case steps the same input with and without the flag: with it the leader stays in its
role (and keeps renewing, without spinning), without it the leader fences as always.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from titan_exec.core.leadership import (
    AcquireSucceeded,
    CaughtUp,
    DrainDone,
    EpochMarkerWritten,
    Failure,
    Input,
    LeaderConfig,
    Leadership,
    LeaseEmpty,
    LeaseSeen,
    LeaseTiming,
    LoopStalled,
    Mode,
    Release,
    Renew,
    RenewFailed,
    Role,
    ShadowReported,
    StopVenueWrites,
    Switchover,
    Tick,
    WriteRejected,
    can_write_venue,
    next_timer_ms,
    start,
    step,
)

TIMING = LeaseTiming(lease_ms=1000)  # renew 250, margin 200, stall 50
ME = "primary/s1"
OTHER = "backup/s2"
DEADLINE = 810  # acquired at 10: valid for 800 ms


def an_active(*, is_unsafe: bool) -> Leadership:
    """Acquired revision 4 (sent at 10), epoch 7, intake open at 40."""
    config = LeaderConfig(ME, TIMING, Mode.STANDBY, is_unsafe_fencing_disabled=is_unsafe)
    state, _ = start(config, 0)
    for inp in (
        ShadowReported(True, False, 0),
        LeaseEmpty(3, 10),
        AcquireSucceeded(4, 10, 20),
        EpochMarkerWritten(7, 30),
        CaughtUp(40),
    ):
        state, _ = step(state, inp)
    assert state.role is Role.ACTIVE and state.deadline_ms == DEADLINE
    return state


SELF_FENCES: dict[str, Callable[[], Input]] = {
    "past the deadline": lambda: Tick(DEADLINE + 5_000),
    "a long loop stall": lambda: LoopStalled(5_000, 100),
    "a lost renew": lambda: RenewFailed(Failure.LOST, 100),
    "the lease seen taken": lambda: LeaseSeen(OTHER, 9, 12, 100),
    "the lease seen gone": lambda: LeaseEmpty(9, 100),
    "a write rejected as deposed": lambda: WriteRejected(100, is_deposed=True),
    "a write of unknown outcome": lambda: WriteRejected(100),
}


@pytest.mark.parametrize("inp", SELF_FENCES.values(), ids=SELF_FENCES.keys())
def test_the_unsafe_build_stays_active_where_a_safe_one_fences(inp: Callable[[], Input]) -> None:
    safe, decision = step(an_active(is_unsafe=False), inp())
    assert safe.role is Role.FENCED, decision.summary
    assert any(isinstance(a, StopVenueWrites) for a in decision.actions)

    unsafe, decision = step(an_active(is_unsafe=True), inp())
    assert unsafe.role is Role.ACTIVE, decision.summary
    assert not any(isinstance(a, StopVenueWrites | Release) for a in decision.actions)
    if not isinstance(inp(), Tick):  # past the deadline, a tick simply renews
        assert "UNSAFE, fencing disabled" in decision.summary
    assert can_write_venue(unsafe, inp().now_ms)


def test_the_unsafe_build_writes_to_the_venue_past_its_deadline() -> None:
    assert not can_write_venue(an_active(is_unsafe=False), DEADLINE)
    assert can_write_venue(an_active(is_unsafe=True), DEADLINE + 60_000)


def test_a_paused_unsafe_leader_keeps_renewing_on_its_timer_without_spinning() -> None:
    """SIGSTOP past the lease, SIGCONT: the deadline is long gone, renewals are lost."""
    state = an_active(is_unsafe=True)
    now = DEADLINE + 10_000
    for _ in range(5):
        state, decision = step(state, Tick(now))
        assert state.role is Role.ACTIVE
        assert [type(a) for a in decision.actions] == [Renew]
        (renew,) = decision.actions
        assert isinstance(renew, Renew) and renew.timeout_ms == TIMING.renew_interval_ms
        assert decision.next_timer_ms is None  # the renew outcome wakes the loop
        state, decision = step(state, RenewFailed(Failure.LOST, now + 3))
        assert state.role is Role.ACTIVE and not state.is_renew_in_flight
        wake = decision.next_timer_ms
        assert wake is not None and wake >= now + 3 + TIMING.renew_interval_ms
        # a tick before the timer does nothing and names the same wake-up: no busy loop
        _, early = step(state, Tick(now + 10))
        assert early.actions == () and early.next_timer_ms == wake
        now = wake


def test_an_unsafe_leader_never_wakes_for_its_deadline() -> None:
    state = an_active(is_unsafe=True)
    assert next_timer_ms(state, 100) == state.next_renew_at_ms
    safe = an_active(is_unsafe=False)
    assert next_timer_ms(safe, 100) == min(safe.deadline_ms, safe.next_renew_at_ms)


def test_switchover_still_drains_and_releases_in_the_unsafe_build() -> None:
    state, decision = step(an_active(is_unsafe=True), Switchover(100))
    assert state.role is Role.DRAINING
    state, decision = step(state, DrainDone(120))
    assert state.role is Role.FENCED
    assert [type(a) for a in decision.actions] == [StopVenueWrites, Release]
    assert not can_write_venue(state, 130)


def test_without_the_flag_nothing_changes() -> None:
    assert LeaderConfig(ME).is_unsafe_fencing_disabled is False


def test_the_two_instance_simulation_catches_the_unsafe_build_in_the_pause_scenario() -> None:
    """Proof that the simulation's check can fail: the active paused longer than the lease
    still counts itself a venue writer once its lease has expired, and the standby takes
    over beside it. The safe build passes the same scenario (test_leadership.py)."""
    from tests.unit.test_leadership import Sim, quiet

    sim = Sim(quiet(pauses=((0, 2000, 3000),)), faults_until=6000)
    for node in sim.nodes:
        config = replace(node.state.config, is_unsafe_fencing_disabled=True)
        node.state = replace(node.state, config=config)
    sim.run_until(1900)  # A leads, B follows: no violation before the pause
    with pytest.raises(AssertionError, match=r"without the lease|two writers|deposed epoch"):
        sim.run_until(6000)
    assert sim.nodes[0].state.role is Role.ACTIVE
