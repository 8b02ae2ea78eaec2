"""Leader election: the role state machine. Everything that affects a role change lives here.

    STANDBY ──campaign──▶ CANDIDATE ──acquired──▶ PROMOTING ──caught up──▶ ACTIVE
       ▲                     │ failed                │                       │ switchover
       │                     ▼                       │                       ▼
       │                  STANDBY                    │                    DRAINING
       │                                             ▼                       │ drain done
       └────────hold over────────────────────────  FENCED ◀──────────────────┘
                                                (lost, deposed, deadline, stall)

Rules (ha-protocol.md §2–§4):

- **Campaign.** A standby campaigns only when the lease is known to be empty (expired,
  released, never taken), it is caught up, has no drift alarm and manual failover is off.
  ``mode=active`` campaigns at once whenever the lease is not known to be held by someone
  else. ``Promote`` (operator, manual failover) campaigns unless the lease is held.
- **Presence** (`core/presence.py`). A standby that sees the lease held by another process
  and gets a run of "no responders" from that holder's presence subject at the revision it
  saw (its process is gone) takes that revision over at once (``Acquire(over_revision)``,
  compare-and-set), under the campaign rules above (caught up, no drift alarm, no manual
  failover, not backing off). Timeouts and answers decide nothing: the lease does.
- **Lease deadline (self-fence).** The lease is valid until
  ``sent_at(last successful acquire/renew) + lease_ms - safety_margin_ms`` on this
  instance's monotonic clock. A leading role (PROMOTING, ACTIVE, DRAINING) that steps any
  input at or past that deadline becomes FENCED, whatever the input — also when NATS said
  nothing. ``can_write_venue`` checks the same deadline right before every venue write.
- **Lost vs cannot tell.** ``lost`` (someone else holds the lease, a newer entry or epoch,
  a rejected fenced write) fences at once; ``unavailable`` changes nothing and is retried:
  the deadline decides.
- **Loop stalls** longer than ``max_loop_stall_ms`` fence a leading role: a venue write
  may have left after the deadline it was checked against.
- **Release.** A leader that fences itself while it may still hold the lease (deadline,
  stall, switchover, a rejected epoch marker) releases it (compare-and-delete on its
  revision). A non-leader that sees the lease held under its own name (a write of an
  earlier timed-out call, applied late) releases it too.
- **Rejoin.** Fencing resets ``is_caught_up`` (the deposed state must be rebuilt from the
  stream; the shell reports it again with `ShadowReported`). FENCED holds for
  ``fenced_hold_ms`` (the shell cancels leader tasks), then becomes STANDBY in standby
  mode: an instance started with ``mode=active`` no longer campaigns at once.

**The unsafe test build** (``LeaderConfig.is_unsafe_fencing_disabled``, set only by the
environment variable ``TITAN_UNSAFE_DISABLE_FENCING=1``; issue 5): a deliberately broken
leader that never fences itself, so that the chaos checker can prove it catches a split
brain. A leading role then ignores its deadline (in `step`, `can_write_venue` and
`next_timer_ms`) and stays in its role where it would have fenced on a lost renew, the
lease seen taken or gone, a loop stall or a rejected write (`_SELF_FENCES`, one guard in
`step`); it keeps renewing on its timer. Takeover failures, switchover, drain and release
work as always. Never run it with real money.

`TRANSITIONS` lists the (role, input) pairs that may leave the role and where to; every
other pair keeps the role. `step` checks each result against it (a violation is a bug and
raises `IllegalTransition`). The core is pure: time comes in as ``now_ms`` (the driver's
monotonic clock when it steps the input), and every `Decision` carries one sentence (the
log line, what tests assert on), the actions for the shell, and the next wake-up time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import assert_never

from titan_exec.core.leadership_io import (  # the vocabulary, re-exported (see __all__)
    INPUT_TYPES,
    Acquire,
    AcquireFailed,
    AcquireSucceeded,
    Action,
    CaughtUp,
    CloseIntake,
    DrainDone,
    DrainToHead,
    EpochMarkerFailed,
    EpochMarkerWritten,
    Failure,
    Input,
    LeaseEmpty,
    LeaseSeen,
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
)
from titan_exec.core.presence import PresenceRun, PresenceTiming, advance, describe

__all__ = [  # noqa: RUF022 - the vocabulary first, then this module's own names
    "INPUT_TYPES",
    "Acquire",
    "AcquireFailed",
    "AcquireSucceeded",
    "Action",
    "CaughtUp",
    "CloseIntake",
    "DrainDone",
    "DrainToHead",
    "EpochMarkerFailed",
    "EpochMarkerWritten",
    "Failure",
    "Input",
    "LeaseEmpty",
    "LeaseSeen",
    "LeaseUnavailable",
    "LoopStalled",
    "Mode",
    "OpenIntake",
    "Presence",
    "PresenceProbed",
    "PresenceTiming",
    "Promote",
    "ReadLease",
    "Release",
    "Renew",
    "RenewFailed",
    "RenewSucceeded",
    "Role",
    "ShadowReported",
    "StopVenueWrites",
    "Switchover",
    "Tick",
    "WriteEpochMarker",
    "WriteRejected",
    "TakeoverFailed",
    "LEADING",
    "TRANSITIONS",
    "Decision",
    "IllegalTransition",
    "LeaderConfig",
    "LeaseTiming",
    "LeaseTimingError",
    "LeaseView",
    "Leadership",
    "ViewKind",
    "can_write_venue",
    "initial",
    "next_timer_ms",
    "start",
    "step",
]

R = Role
LEADING = frozenset({R.PROMOTING, R.ACTIVE, R.DRAINING})
"""Roles that hold the lease: the deadline applies, renewals run."""

TRANSITIONS: dict[tuple[Role, type[Input]], frozenset[Role]] = {
    **{
        (R.STANDBY, kind): frozenset({R.STANDBY, R.CANDIDATE})
        for kind in (LeaseSeen, LeaseEmpty, LeaseUnavailable)  # campaign rules re-checked
    },
    (R.STANDBY, Tick): frozenset({R.STANDBY, R.CANDIDATE}),
    (R.STANDBY, ShadowReported): frozenset({R.STANDBY, R.CANDIDATE}),
    (R.STANDBY, Promote): frozenset({R.STANDBY, R.CANDIDATE}),
    (R.STANDBY, PresenceProbed): frozenset({R.STANDBY, R.CANDIDATE}),
    (R.CANDIDATE, AcquireSucceeded): frozenset({R.PROMOTING, R.STANDBY}),
    (R.CANDIDATE, AcquireFailed): frozenset({R.STANDBY}),
    (R.PROMOTING, CaughtUp): frozenset({R.ACTIVE, R.PROMOTING}),
    (R.PROMOTING, EpochMarkerFailed): frozenset({R.FENCED, R.PROMOTING}),
    (R.PROMOTING, Switchover): frozenset({R.FENCED}),
    (R.ACTIVE, Switchover): frozenset({R.DRAINING}),
    (R.DRAINING, DrainDone): frozenset({R.FENCED}),
    (R.FENCED, Tick): frozenset({R.FENCED, R.STANDBY}),
    **{
        (role, kind): frozenset({R.FENCED, role})
        for role in LEADING
        for kind in (RenewFailed, LeaseSeen, LeaseEmpty, LoopStalled)
    },
    **{(role, WriteRejected): frozenset({R.FENCED}) for role in LEADING},
    **{(role, TakeoverFailed): frozenset({R.FENCED}) for role in LEADING},
}
"""(role, input type) → roles it may lead to. Unlisted pairs keep the role. On top of the
table, one rule: a LEADING role stepped at or past its lease deadline becomes FENCED."""


class IllegalTransition(Exception):
    """`step` produced a role change that `TRANSITIONS` does not allow (a bug here)."""


class LeaseTimingError(ValueError):
    """The lease timing settings contradict each other (names the setting)."""


# ------------------------------------------------------------------------------ config
@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """Lease timing, validated at construction. 0 means "derived from lease_ms"."""

    lease_ms: int = 5000
    renew_interval_ms: int = 0  # lease / 4
    safety_margin_ms: int = 0  # lease / 5
    max_loop_stall_ms: int = 0  # lease / 10: a longer stall fences a leader
    max_round_trip_ms: int = 0  # lease / 20: a venue write's check-to-send time
    fenced_hold_ms: int = 0  # lease: time in FENCED before rejoining as standby

    def __post_init__(self) -> None:
        derived = {
            "renew_interval_ms": self.lease_ms // 4,
            "safety_margin_ms": self.lease_ms // 5,
            # a stall shorter than margin - round trip cannot carry a write checked before
            # the deadline past the lease's end; lease/10 leaves half the margin unused
            "max_loop_stall_ms": self.lease_ms // 10,
            "max_round_trip_ms": self.lease_ms // 20,
            "fenced_hold_ms": self.lease_ms,
        }
        for name, value in derived.items():
            if getattr(self, name) == 0:
                object.__setattr__(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Raise LeaseTimingError naming the first setting that breaks a constraint."""
        for name in (
            "lease_ms",
            "renew_interval_ms",
            "safety_margin_ms",
            "max_loop_stall_ms",
            "max_round_trip_ms",
            "fenced_hold_ms",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise LeaseTimingError(f"{name} must be a positive integer, got {value!r}")
        if self.lease_ms < 1000:
            raise LeaseTimingError(f"lease_ms={self.lease_ms} is below the minimum of 1000")
        if self.renew_interval_ms * 3 > self.lease_ms:
            raise LeaseTimingError(
                f"renew_interval_ms={self.renew_interval_ms} is too long: "
                f"3 × renew_interval_ms must be ≤ lease_ms={self.lease_ms}"
            )
        if self.safety_margin_ms <= self.max_loop_stall_ms + self.max_round_trip_ms:
            raise LeaseTimingError(
                f"safety_margin_ms={self.safety_margin_ms} is too small: it must exceed "
                f"max_loop_stall_ms={self.max_loop_stall_ms} + "
                f"max_round_trip_ms={self.max_round_trip_ms}"
            )
        if self.lease_ms - self.safety_margin_ms < 2 * self.renew_interval_ms:
            raise LeaseTimingError(
                f"safety_margin_ms={self.safety_margin_ms} is too large: lease_ms - "
                f"safety_margin_ms must leave room for 2 renewals of "
                f"renew_interval_ms={self.renew_interval_ms}"
            )

    @property
    def valid_for_ms(self) -> int:
        """How long after the send time of a successful renew the lease may be used."""
        return self.lease_ms - self.safety_margin_ms


@dataclass(frozen=True, slots=True)
class LeaderConfig:
    holder: str  # unique per process (instance id + session): "is this entry mine?"
    timing: LeaseTiming = LeaseTiming()
    mode: Mode = Mode.STANDBY
    is_manual_failover: bool = False
    is_unsafe_fencing_disabled: bool = False
    """UNSAFE, the broken test build: a leader never fences itself (see the top)."""
    presence: PresenceTiming = field(default_factory=PresenceTiming)


# ------------------------------------------------------------------------------- state
class ViewKind(StrEnum):
    UNKNOWN = "unknown"
    EMPTY = "empty"
    HELD = "held"


@dataclass(frozen=True, slots=True)
class LeaseView:
    """The newest observation of the lease key (revision-ordered)."""

    kind: ViewKind = ViewKind.UNKNOWN
    holder: str | None = None  # None when empty/unknown, or held by someone we could not see
    revision: int = 0
    epoch: int | None = None


@dataclass(frozen=True, slots=True)
class Leadership:
    config: LeaderConfig
    role: Role = R.STANDBY
    since_ms: int = 0  # when the role was entered
    view: LeaseView = LeaseView()
    is_caught_up: bool = False
    has_drift_alarm: bool = False
    is_forced: bool = False  # the campaign was started by Promote
    revision: int | None = None  # our lease revision while leading
    epoch: int | None = None  # our epoch once the marker is written (kept when fenced)
    deadline_ms: int = 0  # lease valid while now_ms < deadline_ms
    next_renew_at_ms: int = 0
    is_renew_in_flight: bool = False
    next_poll_at_ms: int = 0
    next_campaign_at_ms: int = 0
    fenced_until_ms: int = 0
    presence_run: PresenceRun | None = None  # "no responders" from the holder, in a row


@dataclass(frozen=True, slots=True)
class Decision:
    summary: str  # one sentence: the log line
    actions: tuple[Action, ...] = ()
    next_timer_ms: int | None = None


Step = tuple[Leadership, Decision]


def initial(config: LeaderConfig, now_ms: int) -> Leadership:
    """A fresh instance: STANDBY, lease unknown, a poll due now."""
    return Leadership(config=config, since_ms=now_ms, next_poll_at_ms=now_ms)


def start(config: LeaderConfig, now_ms: int) -> Step:
    """`initial` stepped once: reads the lease (and campaigns at once in mode=active)."""
    return step(initial(config, now_ms), Tick(now_ms))


def can_write_venue(state: Leadership, now_ms: int) -> bool:
    """The one check before every venue write: ACTIVE/DRAINING and the lease still valid."""
    is_valid = now_ms < state.deadline_ms or state.config.is_unsafe_fencing_disabled
    return state.role in (R.ACTIVE, R.DRAINING) and is_valid


def next_timer_ms(state: Leadership, now_ms: int) -> int | None:
    """When the shell should step a `Tick` next (None: only other inputs will come)."""
    if state.role in LEADING and state.config.is_unsafe_fencing_disabled:
        # no deadline to wake for: only the renewals (the renew outcome wakes us)
        return None if state.is_renew_in_flight else state.next_renew_at_ms
    if state.role in LEADING:
        if state.is_renew_in_flight:
            return state.deadline_ms
        return min(state.deadline_ms, state.next_renew_at_ms)
    if state.role is R.FENCED:
        return state.fenced_until_ms
    if state.role is R.STANDBY:
        if now_ms < state.next_campaign_at_ms < state.next_poll_at_ms:
            return state.next_campaign_at_ms
        return state.next_poll_at_ms
    return None  # CANDIDATE: the acquire outcome (bounded by its timeout) wakes us


def step(state: Leadership, inp: Input) -> Step:
    """Apply one input. Returns the new state and the decision (sentence, actions, timer)."""
    now = inp.now_ms
    is_unsafe = state.config.is_unsafe_fencing_disabled
    is_past_deadline = state.role in LEADING and now >= state.deadline_ms and not is_unsafe
    if is_past_deadline:
        new, summary, actions = _fence(
            state,
            now,
            f"lease deadline {state.deadline_ms} passed (now {now}): fencing",
            release=True,
        )
    else:
        new, summary, actions = _HANDLERS[state.role](state, inp)
    if (
        is_unsafe
        and state.role in LEADING
        and new.role is R.FENCED
        and isinstance(inp, _SELF_FENCES)
    ):
        # the broken test build: stay leading, keep renewing on the timer (see the top)
        new = state
        if isinstance(inp, RenewFailed):  # that renew is over; the next one in an interval
            retry_at = now + state.config.timing.renew_interval_ms
            new = replace(state, is_renew_in_flight=False, next_renew_at_ms=retry_at)
        summary, actions = f"UNSAFE, fencing disabled: staying {state.role} ({summary})", ()
    if new.role is not state.role:
        allowed = TRANSITIONS.get((state.role, type(inp)), frozenset())
        if new.role not in allowed and not (is_past_deadline and new.role is R.FENCED):
            raise IllegalTransition(f"{state.role} --{type(inp).__name__}--> {new.role}")
        new = replace(new, since_ms=now)
    return new, Decision(f"{state.role}: {summary}", actions, next_timer_ms(new, now))


_Out = tuple[Leadership, str, tuple[Action, ...]]

_SELF_FENCES = (RenewFailed, LeaseSeen, LeaseEmpty, LoopStalled, WriteRejected)
"""Inputs on which a leader fences itself for safety; the unsafe test build ignores them."""

# ----------------------------------------------------------------------------- helpers


def _observe(state: Leadership, inp: LeaseSeen | LeaseEmpty | LeaseUnavailable) -> LeaseView:
    """The lease view after an observation; older revisions are stale and ignored."""
    match inp:
        case LeaseUnavailable():
            return replace(state.view, kind=ViewKind.UNKNOWN)
        case LeaseEmpty(revision=rev) if rev == 0 or rev >= state.view.revision:
            return LeaseView(ViewKind.EMPTY, None, rev, None)
        case LeaseSeen(holder=holder, revision=rev, epoch=epoch) if rev >= state.view.revision:
            return LeaseView(ViewKind.HELD, holder, rev, epoch)
        case _:
            return state.view


def _describe(view: LeaseView) -> str:
    match view.kind:
        case ViewKind.UNKNOWN:
            return "lease state unknown"
        case ViewKind.EMPTY:
            return f"lease empty (revision {view.revision})"
        case ViewKind.HELD:
            return f"lease held by {view.holder or 'another instance'} (revision {view.revision})"
        case _ as unreachable:
            assert_never(unreachable)


def _campaign_blocker(state: Leadership, now: int) -> str | None:
    """Why this standby must not campaign now, or None."""
    cfg = state.config
    view = state.view
    if view.kind is ViewKind.HELD:
        return _describe(view)
    if now < state.next_campaign_at_ms:
        return f"{_describe(view)} but backing off until {state.next_campaign_at_ms}"
    if cfg.mode is Mode.ACTIVE:
        return None
    if view.kind is ViewKind.UNKNOWN:
        return _describe(view)
    if cfg.is_manual_failover:
        return f"{_describe(view)} but manual failover is on: waiting for Promote"
    if state.has_drift_alarm:
        return f"{_describe(view)} but a drift alarm is raised"
    if not state.is_caught_up:
        return f"{_describe(view)} but not caught up"
    return None


def _campaign(state: Leadership, why: str) -> _Out:
    new = replace(state, role=R.CANDIDATE, presence_run=None)
    return new, f"{why}: campaigning", (Acquire(state.config.timing.renew_interval_ms),)


def _presence_blocker(state: Leadership, now: int) -> str | None:
    """Why this standby must not take over a lease whose holder is gone, or None."""
    if now < state.next_campaign_at_ms:
        return f"backing off until {state.next_campaign_at_ms}"
    if state.config.is_manual_failover:
        return "manual failover is on: waiting for Promote"
    if state.has_drift_alarm:
        return "a drift alarm is raised"
    if not state.is_caught_up and state.config.mode is Mode.STANDBY:
        return "not caught up"
    return None


def _on_presence(state: Leadership, inp: PresenceProbed) -> _Out:
    """A probe of the holder (`core/presence.py`): its process known gone while it still
    holds the revision we saw, the standby takes that revision over at once."""
    view = state.view
    if not state.config.presence.is_on:
        return _ignored(state, inp, "ignored: presence is off")
    if (view.kind, view.holder, view.revision) != (ViewKind.HELD, inp.holder, inp.revision):
        new = replace(state, presence_run=None)
        return new, f"presence answer of {inp.holder} is stale ({_describe(view)}): ignored", ()
    if inp.holder == state.config.holder:
        return _ignored(state, inp, "ignored: the lease is under our own name")
    run, gone = advance(state.presence_run, inp, state.config.presence)
    new = replace(state, presence_run=run)
    if not gone:
        return new, describe(run, inp), ()
    assert run is not None
    what = (
        f"presence: {inp.holder} is gone (no responders {run.count} in a row over "
        f"{inp.sent_ms - run.first_sent_ms} ms) while holding revision {inp.revision}"
    )
    blocker = _presence_blocker(new, inp.now_ms)
    if blocker is not None:
        return new, f"{what}, but {blocker}", ()
    new = replace(new, role=R.CANDIDATE, presence_run=None)
    timeout = state.config.timing.renew_interval_ms
    return new, f"{what}: taking it over", (Acquire(timeout, over_revision=inp.revision),)


def _standby_or_campaign(state: Leadership, now: int, what: str) -> _Out:
    blocker = _campaign_blocker(state, now)
    if blocker is None:
        return _campaign(state, f"{what}, {_describe(state.view)}")
    return state, f"{what}, {blocker}", ()


def _release_if_mine(state: Leadership) -> tuple[Action, ...]:
    view = state.view
    if view.kind is ViewKind.HELD and view.holder == state.config.holder:
        return (Release(view.revision),)
    return ()


def _fence(state: Leadership, now: int, summary: str, *, release: bool) -> _Out:
    actions: list[Action] = [StopVenueWrites(summary)]
    if release and state.revision is not None:
        actions.append(Release(state.revision))
    new = replace(
        state,
        role=R.FENCED,
        revision=None,
        is_forced=False,
        is_caught_up=False,
        is_renew_in_flight=False,
        deadline_ms=0,
        fenced_until_ms=now + state.config.timing.fenced_hold_ms,
    )
    return new, summary, tuple(actions)


def _ignored(state: Leadership, inp: Input, why: str = "ignored") -> _Out:
    return state, f"{type(inp).__name__} {why}", ()


# ---------------------------------------------------------------------------- handlers


def _on_standby(state: Leadership, inp: Input) -> _Out:
    now = inp.now_ms
    timing = state.config.timing
    match inp:
        case LeaseSeen() | LeaseEmpty() | LeaseUnavailable():
            view = _observe(state, inp)
            run = state.presence_run
            if run is not None and (run.holder, run.revision) != (view.holder, view.revision):
                run = None  # the holder wrote since (alive), or the lease changed hands
            new = replace(state, view=view, presence_run=run)
            release = _release_if_mine(new)
            if release:
                return new, f"{_describe(new.view)}, a stale lease of ours: releasing", release
            return _standby_or_campaign(new, now, "observed")
        case Tick():
            actions: tuple[Action, ...] = ()
            new = state
            if now >= state.next_poll_at_ms:
                actions = (ReadLease(),)
                new = replace(state, next_poll_at_ms=now + timing.renew_interval_ms)
            new, summary, more = _standby_or_campaign(new, now, "tick")
            return new, summary, actions + more
        case ShadowReported(is_caught_up=caught_up, has_drift_alarm=drift):
            new = replace(state, is_caught_up=caught_up, has_drift_alarm=drift)
            what = f"shadow state {'caught up' if caught_up else 'lagging'}"
            return _standby_or_campaign(new, now, what + (", drift alarm" if drift else ""))
        case PresenceProbed():
            return _on_presence(state, inp)
        case Promote():
            if state.view.kind is ViewKind.HELD:
                return state, f"promote refused: {_describe(state.view)}", ()
            forced = replace(state, is_forced=True, next_campaign_at_ms=0)
            return _campaign(forced, f"operator promote, {_describe(state.view)}")
        case AcquireSucceeded(revision=rev):
            return state, "unexpected acquire outcome: releasing it", (Release(rev),)
        case Switchover():
            return state, "switchover refused: not leading", ()
        case (
            AcquireFailed()
            | RenewSucceeded()
            | RenewFailed()
            | EpochMarkerWritten()
            | EpochMarkerFailed()
            | CaughtUp()
            | DrainDone()
            | LoopStalled()
            | WriteRejected()
            | TakeoverFailed()
        ):
            return _ignored(state, inp, "ignored: not leading")
        case _ as unreachable:
            assert_never(unreachable)


def _on_candidate(state: Leadership, inp: Input) -> _Out:
    now = inp.now_ms
    timing = state.config.timing
    match inp:
        case AcquireSucceeded(revision=rev, sent_at_ms=sent_at):
            deadline = sent_at + timing.valid_for_ms
            back = replace(
                state,
                role=R.STANDBY,
                is_forced=False,
                next_campaign_at_ms=now + timing.renew_interval_ms,
            )
            if now >= deadline:
                return (
                    back,
                    f"acquired revision {rev} too late (valid until {deadline})",
                    (Release(rev),),
                )
            if state.has_drift_alarm and not state.is_forced and state.config.mode is Mode.STANDBY:
                return back, f"acquired revision {rev} but a drift alarm is raised", (Release(rev),)
            new = replace(
                state,
                role=R.PROMOTING,
                revision=rev,
                epoch=None,
                is_forced=False,
                deadline_ms=deadline,
                next_renew_at_ms=sent_at + timing.renew_interval_ms,
                is_renew_in_flight=False,
                view=LeaseView(ViewKind.HELD, state.config.holder, rev, None),
            )
            return (
                new,
                f"acquired the lease at revision {rev}: writing the epoch marker",
                (WriteEpochMarker(),),
            )
        case AcquireFailed(failure=failure):
            view = state.view
            if failure is Failure.LOST:
                view = LeaseView(ViewKind.HELD, None, view.revision, None)
            new = replace(
                state,
                role=R.STANDBY,
                view=view,
                is_forced=False,
                next_campaign_at_ms=now + timing.renew_interval_ms,
            )
            return new, f"acquire failed ({failure}): back to standby", ()
        case LeaseSeen() | LeaseEmpty() | LeaseUnavailable():
            new = replace(state, view=_observe(state, inp))
            return new, f"{_describe(new.view)} while acquiring", ()
        case ShadowReported(is_caught_up=caught_up, has_drift_alarm=drift):
            new = replace(state, is_caught_up=caught_up, has_drift_alarm=drift)
            return new, "shadow state recorded while acquiring", ()
        case (
            RenewSucceeded()
            | RenewFailed()
            | EpochMarkerWritten()
            | EpochMarkerFailed()
            | CaughtUp()
            | DrainDone()
            | Tick()
            | LoopStalled()
            | WriteRejected()
            | TakeoverFailed()
            | Switchover()
            | Promote()
            | PresenceProbed()
        ):
            return _ignored(state, inp, "ignored while acquiring")
        case _ as unreachable:
            assert_never(unreachable)


def _renew_if_due(state: Leadership, now: int) -> _Out:
    if state.is_renew_in_flight or now < state.next_renew_at_ms or state.revision is None:
        return state, f"lease valid until {state.deadline_ms}", ()
    timeout = state.config.timing.renew_interval_ms
    if not state.config.is_unsafe_fencing_disabled:  # the unsafe build has no deadline
        timeout = min(timeout, state.deadline_ms - now)
    new = replace(state, is_renew_in_flight=True)
    return (
        new,
        f"renewing revision {state.revision}",
        (Renew(state.revision, state.epoch, timeout),),
    )


def _on_leading(state: Leadership, inp: Input) -> _Out:
    """PROMOTING, ACTIVE and DRAINING share the lease handling; the role adds its steps."""
    now = inp.now_ms
    timing = state.config.timing
    ours = state.revision or 0
    match inp:
        case Tick():
            return _renew_if_due(state, now)
        case RenewSucceeded(revision=rev, sent_at_ms=sent_at):
            new = replace(
                state,
                revision=max(rev, ours),
                deadline_ms=max(state.deadline_ms, sent_at + timing.valid_for_ms),
                next_renew_at_ms=sent_at + timing.renew_interval_ms,
                is_renew_in_flight=False,
            )
            return new, f"renewed at revision {rev}, valid until {new.deadline_ms}", ()
        case RenewFailed(failure=failure):
            if failure is Failure.LOST:
                return _fence(state, now, "renew failed: the lease was lost", release=False)
            retry_at = now + max(1, timing.renew_interval_ms // 4)
            new = replace(state, is_renew_in_flight=False, next_renew_at_ms=retry_at)
            return new, f"renew unavailable: retrying at {retry_at}", ()
        case LeaseSeen(holder=holder, revision=rev) if rev > ours:
            if holder == state.config.holder:  # a timed-out renew of ours, applied late
                new = replace(state, revision=rev, view=_observe(state, inp))
                return new, f"our own write seen at revision {rev}: adopted", ()
            summary = f"lease taken by {holder} at revision {rev}: fencing"
            return _fence(state, now, summary, release=False)
        case LeaseEmpty(revision=rev) if rev > ours:
            return _fence(state, now, f"lease gone at revision {rev}: fencing", release=False)
        case LeaseSeen() | LeaseEmpty():
            return state, "stale lease observation ignored", ()
        case LeaseUnavailable():
            return state, f"lease unreadable (cannot tell), valid until {state.deadline_ms}", ()
        case LoopStalled(stall_ms=stall) if stall > timing.max_loop_stall_ms:
            summary = f"event loop stalled {stall} ms (max {timing.max_loop_stall_ms}): fencing"
            return _fence(state, now, summary, release=True)
        case LoopStalled(stall_ms=stall):
            return state, f"event loop stalled {stall} ms, within the margin", ()
        case TakeoverFailed(reason=reason):
            summary = f"takeover step failed ({reason}): fencing, to campaign again"
            return _fence(state, now, summary, release=True)
        case WriteRejected(is_deposed=True):
            return _fence(state, now, "a fenced write was rejected: deposed", release=False)
        case WriteRejected():
            # still ours as far as we know: hand the lease over while we rebuild
            summary = "an event write failed (outcome unknown): fencing to rebuild"
            return _fence(state, now, summary, release=True)
        case ShadowReported(is_caught_up=caught_up, has_drift_alarm=drift):
            new = replace(state, is_caught_up=caught_up, has_drift_alarm=drift)
            return new, "shadow state noted", ()
        case PresenceProbed():
            return _ignored(state, inp, "ignored: leading")
        case (
            EpochMarkerWritten()
            | EpochMarkerFailed()
            | CaughtUp()
            | DrainDone()
            | Switchover()
            | Promote()
            | AcquireSucceeded()
            | AcquireFailed()
        ):
            return _on_leading_step(state, inp)
        case _ as unreachable:
            assert_never(unreachable)


_LeadingStep = (
    EpochMarkerWritten
    | EpochMarkerFailed
    | CaughtUp
    | DrainDone
    | Switchover
    | Promote
    | AcquireSucceeded
    | AcquireFailed
)


def _on_leading_step(state: Leadership, inp: _LeadingStep) -> _Out:
    """The takeover's and the switchover's steps, by the leading role they apply in."""
    now = inp.now_ms
    role = state.role
    match inp:
        case EpochMarkerWritten(epoch=epoch) if role is R.PROMOTING and state.epoch is None:
            new = replace(state, epoch=epoch)
            return new, f"epoch {epoch} written: draining to the head", (DrainToHead(epoch),)
        case EpochMarkerFailed(failure=Failure.LOST) if role is R.PROMOTING:
            summary = "epoch marker rejected: a newer epoch exists, fencing"
            return _fence(state, now, summary, release=True)
        case EpochMarkerFailed(failure=Failure.UNAVAILABLE) if role is R.PROMOTING:
            return state, "epoch marker unavailable: retrying", (WriteEpochMarker(),)
        case CaughtUp() if role is R.PROMOTING and state.epoch is not None:
            new = replace(state, role=R.ACTIVE, is_caught_up=True)
            return (
                new,
                f"caught up in epoch {state.epoch}: opening intake",
                (OpenIntake(state.epoch),),
            )
        case Switchover() if role is R.ACTIVE:
            return replace(state, role=R.DRAINING), "switchover: draining", (CloseIntake(),)
        case Switchover() if role is R.PROMOTING:
            summary = "switchover while promoting: releasing the lease"
            return _fence(state, now, summary, release=True)
        case DrainDone() if role is R.DRAINING:
            return _fence(state, now, "drained: handing the lease over", release=True)
        case (
            EpochMarkerWritten()
            | EpochMarkerFailed()
            | CaughtUp()
            | DrainDone()
            | Switchover()
            | Promote()
            | AcquireSucceeded()
            | AcquireFailed()
        ):
            return _ignored(state, inp, f"ignored while {role}")
        case _ as unreachable:
            assert_never(unreachable)


def _on_fenced(state: Leadership, inp: Input) -> _Out:
    now = inp.now_ms
    timing = state.config.timing
    match inp:
        case Tick() if now >= state.fenced_until_ms:
            new = replace(
                state,
                # a deposed active rejoins as a standby: from now on it campaigns only
                # when the lease is free and its rebuilt state is caught up
                config=replace(state.config, mode=Mode.STANDBY),
                role=R.STANDBY,
                view=LeaseView(),
                next_poll_at_ms=now + timing.renew_interval_ms,
                next_campaign_at_ms=0,
            )
            return new, "hold over: rejoining as standby", (ReadLease(),)
        case Tick():
            return state, f"holding until {state.fenced_until_ms}", ()
        case LeaseSeen() | LeaseEmpty() | LeaseUnavailable():
            new = replace(state, view=_observe(state, inp))
            release = _release_if_mine(new)
            what = ", still ours: releasing" if release else ""
            return new, f"{_describe(new.view)}{what}", release
        case AcquireSucceeded(revision=rev):
            return state, "late acquire outcome: releasing it", (Release(rev),)
        case ShadowReported(is_caught_up=caught_up, has_drift_alarm=drift):
            # is_caught_up was reset when fencing: the shell reports it once rebuilt
            new = replace(state, is_caught_up=caught_up, has_drift_alarm=drift)
            return new, "shadow state noted", ()
        case Switchover() | Promote():
            return state, f"{type(inp).__name__} refused: fenced until {state.fenced_until_ms}", ()
        case (
            AcquireFailed()
            | RenewSucceeded()
            | RenewFailed()
            | EpochMarkerWritten()
            | EpochMarkerFailed()
            | CaughtUp()
            | DrainDone()
            | LoopStalled()
            | WriteRejected()
            | TakeoverFailed()
            | PresenceProbed()
        ):
            return _ignored(state, inp, "ignored: fenced")
        case _ as unreachable:
            assert_never(unreachable)


_HANDLERS = {
    R.STANDBY: _on_standby,
    R.CANDIDATE: _on_candidate,
    R.PROMOTING: _on_leading,
    R.ACTIVE: _on_leading,
    R.DRAINING: _on_leading,
    R.FENCED: _on_fenced,
}
