"""The vocabulary of leader election: roles, the inputs the shell steps into the core and
the actions the core asks of the shell. Plain frozen values; the rules that use them live
in `leadership.py` (re-exported there, so `leadership.Tick` and friends keep working)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import get_args


class Role(StrEnum):
    STANDBY = "standby"
    CANDIDATE = "candidate"
    PROMOTING = "promoting"
    ACTIVE = "active"
    DRAINING = "draining"
    FENCED = "fenced"


def role_name(role: Role | None) -> str:
    """A role as `/status`, `/ready` and the tools read it; ``starting`` before there is one."""
    return "starting" if role is None else role.value


class Mode(StrEnum):
    ACTIVE = "active"
    STANDBY = "standby"


class Failure(StrEnum):
    LOST = "lost"  # definitive: someone else holds it / we are deposed
    UNAVAILABLE = "unavailable"  # cannot tell: timeout, no responders, disconnected


class Presence(StrEnum):
    """What a probe of the lease holder's presence subject (core NATS request/reply) got."""

    ANSWERED = "answered"  # its process answered: alive
    NO_RESPONDERS = "no-responders"  # nobody subscribes: its process (or its socket) is gone
    TIMEOUT = "timeout"  # no answer in time (paused, slow, black-holed): cannot tell
    UNHEALTHY = "unhealthy"  # this instance's own connection is in trouble: cannot tell


# ------------------------------------------------------------------------------ inputs
@dataclass(frozen=True, slots=True)
class LeaseSeen:
    """The lease key holds a live entry."""

    holder: str
    revision: int
    epoch: int | None
    now_ms: int


@dataclass(frozen=True, slots=True)
class LeaseEmpty:
    """The lease key is free: a delete/expiry marker at ``revision``, or 0 for no entry."""

    revision: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class LeaseUnavailable:
    """The lease could not be read ("cannot tell", not "lost")."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class AcquireSucceeded:
    revision: int
    sent_at_ms: int  # when the successful call was sent: the lease runs from here
    now_ms: int


@dataclass(frozen=True, slots=True)
class AcquireFailed:
    failure: Failure
    now_ms: int


@dataclass(frozen=True, slots=True)
class RenewSucceeded:
    revision: int
    sent_at_ms: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class RenewFailed:
    failure: Failure
    now_ms: int


@dataclass(frozen=True, slots=True)
class EpochMarkerWritten:
    epoch: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class EpochMarkerFailed:
    """``lost``: a newer marker exists (someone else advanced the epoch)."""

    failure: Failure
    now_ms: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The promoting instance has drained the event stream to its head (takeover done)."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class DrainDone:
    """Switchover: intake stopped, in-flight venue requests finished, hand-off published."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int


@dataclass(frozen=True, slots=True)
class LoopStalled:
    stall_ms: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class WriteRejected:
    """An event write failed after the state applied it. ``is_deposed``: the stream refused
    a fenced write (a newer epoch exists); otherwise its outcome is unknown (timeout, lost
    connection). Either way the local state may be ahead of the stream: fence and rebuild."""

    now_ms: int
    is_deposed: bool = True


@dataclass(frozen=True, slots=True)
class TakeoverFailed:
    """A takeover step could not be carried out (draining the stream, opening intake):
    e.g. JetStream without a meta leader right after a node loss. A leader that cannot
    complete its takeover must not hold the lease: fence, release, rebuild, retry."""

    reason: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class ShadowReported:
    """The shadow state's health: caught up with the stream, drift alarm raised."""

    is_caught_up: bool
    has_drift_alarm: bool
    now_ms: int


@dataclass(frozen=True, slots=True)
class PresenceProbed:
    """A probe of ``holder``'s presence subject, sent while the lease was seen held by it
    at ``revision``."""

    holder: str
    revision: int
    outcome: Presence
    sent_ms: int  # when the probe left: probes overlap, answers come back out of order
    now_ms: int


@dataclass(frozen=True, slots=True)
class Switchover:
    """Operator command or SIGTERM on the active: hand the lease over."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Promote:
    """Operator command (manual failover): campaign now."""

    now_ms: int


Input = (
    LeaseSeen
    | LeaseEmpty
    | LeaseUnavailable
    | AcquireSucceeded
    | AcquireFailed
    | RenewSucceeded
    | RenewFailed
    | EpochMarkerWritten
    | EpochMarkerFailed
    | CaughtUp
    | DrainDone
    | Tick
    | LoopStalled
    | WriteRejected
    | TakeoverFailed
    | ShadowReported
    | PresenceProbed
    | Switchover
    | Promote
)
INPUT_TYPES: tuple[type[Input], ...] = get_args(Input)

# ----------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class ReadLease:
    """Poll the lease (a watch can miss); report LeaseSeen/LeaseEmpty/LeaseUnavailable."""


@dataclass(frozen=True, slots=True)
class Acquire:
    timeout_ms: int
    over_revision: int | None = None
    """Take the lease over from a holder whose process is gone: compare-and-set on this
    revision (its last write) instead of waiting for it to expire. None: only if free."""


@dataclass(frozen=True, slots=True)
class Renew:
    revision: int
    epoch: int | None
    timeout_ms: int  # never past the lease deadline


@dataclass(frozen=True, slots=True)
class Release:
    revision: int  # compare-and-delete: only the holder of this revision can release


@dataclass(frozen=True, slots=True)
class WriteEpochMarker:
    """Write the next epoch marker (compare-and-set on the newest marker)."""


@dataclass(frozen=True, slots=True)
class DrainToHead:
    epoch: int


@dataclass(frozen=True, slots=True)
class OpenIntake:
    epoch: int


@dataclass(frozen=True, slots=True)
class CloseIntake:
    """Switchover: stop intake, let in-flight venue requests finish, publish the hand-off."""


@dataclass(frozen=True, slots=True)
class StopVenueWrites:
    reason: str


Action = (
    ReadLease
    | Acquire
    | Renew
    | Release
    | WriteEpochMarker
    | DrainToHead
    | OpenIntake
    | CloseIntake
    | StopVenueWrites
)
