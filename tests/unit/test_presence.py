"""Presence-based takeover in the leadership core (`core/presence.py`, applied in STANDBY by
`core/leadership.py`): a run of "no responders" from the holder the lease shows takes its
revision over at once; timeouts, answers, our own connection's trouble, a renewal or a stale
answer never do; the campaign rules still apply."""

from __future__ import annotations

from dataclasses import replace

import pytest

from titan_exec.core.leadership import (
    Acquire,
    AcquireFailed,
    AcquireSucceeded,
    Decision,
    Failure,
    LeaderConfig,
    Leadership,
    LeaseSeen,
    LeaseTiming,
    Mode,
    Presence,
    PresenceProbed,
    PresenceTiming,
    Role,
    ShadowReported,
    Tick,
    WriteEpochMarker,
    start,
    step,
)
from titan_exec.core.presence import PresenceTimingError

TIMING = LeaseTiming(lease_ms=5000)  # renew 1250
ME, DEAD = "backup/s2", "primary/s1"
NR, ANSWERED, TIMEOUT, UNHEALTHY = (
    Presence.NO_RESPONDERS,
    Presence.ANSWERED,
    Presence.TIMEOUT,
    Presence.UNHEALTHY,
)
PRESENCE = PresenceTiming(interval_ms=20, confirm_ms=60, window_ms=400)  # 3 in a row


def standby(*, caught_up: bool = True, drift: bool = False, **cfg: object) -> Leadership:
    """A standby that saw the lease held by DEAD at revision 7."""
    config = LeaderConfig(ME, TIMING, Mode.STANDBY, presence=PRESENCE)
    config = replace(config, **cfg)  # type: ignore[arg-type]
    state, _ = start(config, 0)
    state, _ = step(state, ShadowReported(caught_up, drift, 1))
    state, _ = step(state, LeaseSeen(DEAD, 7, 3, 2))
    assert state.role is Role.STANDBY
    return state


def probe(state: Leadership, *answers: tuple[int, Presence], revision: int = 7) -> Decision:
    decision = Decision("nothing")
    for at, outcome in answers:
        state, decision = step(state, PresenceProbed(DEAD, revision, outcome, at, at))
    return decision


def probes(state: Leadership, *answers: tuple[int, Presence]) -> tuple[Leadership, Decision]:
    decision = Decision("nothing")
    for at, outcome in answers:
        state, decision = step(state, PresenceProbed(DEAD, 7, outcome, at, at))
    return state, decision


def test_three_no_responders_over_the_confirm_time_take_the_revision_over() -> None:
    state, decision = probes(standby(), (100, NR), (120, NR), (140, NR))
    assert state.role is Role.STANDBY  # 40 ms: a live holder's node may be reconnecting
    assert "3 in a row over 40 ms" in decision.summary
    state, decision = probes(state, (160, NR))
    assert state.role is Role.CANDIDATE
    assert decision.actions == (Acquire(TIMING.renew_interval_ms, over_revision=7),)
    assert decision.summary.startswith("standby: presence: primary/s1 is gone")
    assert "taking it over" in decision.summary
    # the takeover goes on as any campaign: acquired, then the epoch marker first
    state, decision = step(state, AcquireSucceeded(8, 165, 170))
    assert state.role is Role.PROMOTING and decision.actions == (WriteEpochMarker(),)


@pytest.mark.parametrize("interruption", [ANSWERED, TIMEOUT, UNHEALTHY])
def test_anything_but_no_responders_ends_the_run(interruption: Presence) -> None:
    state, decision = probes(standby(), (100, NR), (120, NR), (140, interruption))
    assert "cannot tell" in decision.summary or "answered" in decision.summary
    state, decision = probes(state, (160, NR), (180, NR))
    assert state.role is Role.STANDBY and "2 in a row over 20 ms" in decision.summary
    state, decision = probes(state, (200, NR), (220, NR))
    assert state.role is Role.CANDIDATE


def test_a_paused_holder_only_times_out_and_the_lease_decides() -> None:
    state = standby()
    for at in range(100, 4000, 20):
        state, decision = step(state, PresenceProbed(DEAD, 7, TIMEOUT, at, at))
        assert state.role is Role.STANDBY and decision.actions == ()
    assert "the lease decides" in decision.summary


def test_a_node_blip_shorter_than_the_confirm_time_is_ridden_out() -> None:
    # the holder's NATS node died: its subscription is gone until it reconnects elsewhere
    state, _ = probes(standby(), (100, NR), (120, NR), (140, NR), (150, ANSWERED))
    assert state.role is Role.STANDBY and state.presence_run is None


def test_a_renewal_restarts_the_run_and_old_answers_are_stale() -> None:
    state, _ = probes(standby(), (100, NR), (120, NR), (140, NR))
    state, _ = step(state, LeaseSeen(DEAD, 8, 3, 150))  # it renewed: alive
    assert state.presence_run is None
    state, decision = step(state, PresenceProbed(DEAD, 7, NR, 160, 160))  # sent before the renew
    assert "stale" in decision.summary and state.presence_run is None
    for at in (170, 190, 210, 230):
        state, decision = step(state, PresenceProbed(DEAD, 8, NR, at, at))
    assert state.role is Role.CANDIDATE
    assert decision.actions == (Acquire(TIMING.renew_interval_ms, over_revision=8),)


def test_answers_for_another_holder_or_an_unknown_lease_are_stale() -> None:
    state = standby()
    state, decision = step(state, PresenceProbed("other/s9", 7, NR, 100, 100))
    assert "stale" in decision.summary and decision.actions == ()
    fresh, _ = start(LeaderConfig(ME, TIMING), 0)  # never saw the lease
    _, decision = step(fresh, PresenceProbed(DEAD, 7, NR, 100, 100))
    assert "stale" in decision.summary


def test_a_run_spread_wider_than_the_window_starts_again() -> None:
    # the standby's own probes were late (a stall): old evidence is not added up
    state, decision = probes(standby(), (100, NR), (300, NR), (520, NR))
    assert state.role is Role.STANDBY and "1 in a row" in decision.summary


@pytest.mark.parametrize(
    ("kw", "blocker"),
    [
        ({"caught_up": False}, "not caught up"),
        ({"drift": True}, "a drift alarm is raised"),
        ({"is_manual_failover": True}, "manual failover is on"),
    ],
)
def test_the_campaign_rules_still_hold(kw: dict[str, bool], blocker: str) -> None:
    state, decision = probes(standby(**kw), (100, NR), (120, NR), (140, NR), (160, NR))
    assert state.role is Role.STANDBY and decision.actions == ()
    assert f"but {blocker}" in decision.summary


def test_a_failed_takeover_backs_off_and_one_crash_makes_one_attempt() -> None:
    state, _ = probes(standby(), (100, NR), (120, NR), (140, NR), (160, NR))
    state, _ = step(state, AcquireFailed(Failure.LOST, 170))  # it renewed first: alive
    assert state.role is Role.STANDBY
    state, _ = step(state, LeaseSeen(DEAD, 8, 3, 175))
    state, decision = probes(state, *((at, NR) for at in range(180, 400, 20)))
    # ... the answers were for revision 7, stale now; for 8, the back-off holds
    for at in range(400, 1400, 20):
        state, decision = step(state, PresenceProbed(DEAD, 8, NR, at, at))
    assert state.role is Role.STANDBY and "backing off" in decision.summary
    state, decision = step(state, PresenceProbed(DEAD, 8, NR, 1440, 1440))
    assert state.role is Role.CANDIDATE


def test_presence_off_and_our_own_name_decide_nothing() -> None:
    off = standby(presence=PresenceTiming(interval_ms=0))
    state, decision = probes(off, (100, NR), (120, NR), (140, NR), (160, NR))
    assert state.role is Role.STANDBY and "presence is off" in decision.summary
    mine, _ = step(standby(), LeaseSeen(ME, 9, 3, 50))  # a stale lease of ours: released
    _, decision = step(replace(mine, role=Role.STANDBY), PresenceProbed(ME, 9, NR, 100, 100))
    assert decision.actions == ()


def test_leading_fenced_and_candidate_roles_ignore_presence() -> None:
    state, _ = probes(standby(), (100, NR), (120, NR), (140, NR), (160, NR))
    assert state.role is Role.CANDIDATE
    again, decision = step(state, PresenceProbed(DEAD, 7, NR, 180, 180))
    assert again.role is Role.CANDIDATE and "ignored" in decision.summary
    leading, _ = step(state, AcquireSucceeded(8, 165, 170))
    after, decision = step(leading, PresenceProbed(DEAD, 7, NR, 190, 190))
    assert after == leading and "ignored" in decision.summary


def test_presence_answers_do_not_move_the_timer() -> None:
    state = standby()
    _, tick = step(state, Tick(100))
    _, probed = step(state, PresenceProbed(DEAD, 7, ANSWERED, 100, 100))
    assert probed.next_timer_ms == tick.next_timer_ms


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"confirm_count": 1}, "confirm_count"),
        ({"confirm_ms": 300}, "window_ms=300 must exceed"),
        ({"interval_ms": 20, "confirm_ms": 10, "window_ms": 40}, "cannot hold"),
        ({"timeout_ms": -1}, "timeout_ms"),
        ({"interval_ms": True}, "interval_ms"),
    ],
)
def test_bad_presence_timing_is_refused_naming_the_setting(
    kw: dict[str, int], message: str
) -> None:
    with pytest.raises(PresenceTimingError, match=message):
        PresenceTiming(**kw)


def test_the_timeout_of_a_probe_sent_before_the_death_leaves_the_run_alone() -> None:
    """Probes overlap: the one in flight when the process died times out 100 ms later,
    in the middle of the run of "no responders" that the later probes get."""
    state = standby()
    state, _ = step(state, PresenceProbed(DEAD, 7, NR, 120, 121))
    state, _ = step(state, PresenceProbed(DEAD, 7, NR, 140, 141))
    state, decision = step(state, PresenceProbed(DEAD, 7, TIMEOUT, 100, 200))  # sent at 100
    assert state.presence_run is not None and state.presence_run.count == 2
    state, decision = step(state, PresenceProbed(DEAD, 7, NR, 160, 201))
    state, decision = step(state, PresenceProbed(DEAD, 7, NR, 180, 202))
    assert state.role is Role.CANDIDATE, decision.summary
    # a timeout of a probe sent after the run began ends it
    fresh, _ = probes(standby(), (120, NR), (140, NR))
    fresh, _ = step(fresh, PresenceProbed(DEAD, 7, TIMEOUT, 130, 230))
    assert fresh.presence_run is None


def test_answers_coming_back_out_of_order_count_by_when_they_were_sent() -> None:
    state = standby()
    for sent, got in ((160, 161), (120, 162), (140, 163)):
        state, decision = step(state, PresenceProbed(DEAD, 7, NR, sent, got))
    assert state.presence_run is not None and state.presence_run.first_sent_ms == 120
    assert state.role is Role.STANDBY  # 3 in a row, but sent over 40 ms only
    state, decision = step(state, PresenceProbed(DEAD, 7, NR, 180, 181))
    assert state.role is Role.CANDIDATE, decision.summary
