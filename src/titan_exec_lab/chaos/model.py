"""What a chaos run records and what a scenario's table row says: plain values, no I/O.

Times in a `RunRecord` are seconds since the run's start (`started_at`, Unix time), so that
one run can be drawn on one axis; durations are milliseconds (`_ms`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RoleSample:
    """`instance` reported `role` at `t` (its `/status`; "down" when it did not answer)."""

    t: float
    instance: str
    role: str


def compact_roles(samples: Sequence[RoleSample]) -> list[RoleSample]:
    """The same timeline with repeats dropped: per instance its first sample, each change
    and its last sample (the role is a step function: nothing is lost)."""
    last_index = {s.instance: i for i, s in enumerate(samples)}
    previous: dict[str, str] = {}
    out: list[RoleSample] = []
    for i, s in enumerate(samples):
        if previous.get(s.instance) != s.role or last_index[s.instance] == i:
            out.append(s)
        previous[s.instance] = s.role
    return out


@dataclass(frozen=True, slots=True)
class Transition:
    """A role transition an instance published (`titan.sys.<ns>.role.v1.<id>`), seen by the
    harness at `at` (Unix seconds)."""

    at: float
    instance: str
    before: str
    after: str
    reason: str


PRESENCE_REASON = "presence:"
"""How the reason of a STANDBY → CANDIDATE transition starts when the standby moved on the
active's presence (its responder gone: "no responders") instead of the lease's expiry."""


def is_presence_reason(reason: str) -> bool:
    """`reason` starts with `presence:`, as published or after the role prefix the core's
    decision puts before every summary (`leadership.step`: "standby: presence: ...")."""
    return reason.startswith((PRESENCE_REASON, f"standby: {PRESENCE_REASON}"))


@dataclass(frozen=True, slots=True)
class Takeover:
    """An instance became active while the lead was another's (or no one's)."""

    at: float
    instance: str
    reason: str
    """The reason of its last STANDBY → CANDIDATE transition before that ("": none seen)."""

    @property
    def is_by_presence(self) -> bool:
        return is_presence_reason(self.reason)


def takeovers(
    leader_before: str,
    transitions: Sequence[Transition],
    polled: Sequence[tuple[float, str, str]] = (),
    since: float = 0.0,
) -> list[Takeover]:
    """Each moment from `since` on an instance other than the one leading became active: its
    published transition to `active`, or a `/status` poll (`polled`: (time, instance,
    role)) that saw it active right after a live role other than `active` (a transition
    the harness missed), the earlier of the two. The lead starts with `leader_before`; the
    same instance seen active again (a fenced active winning the lease back) is no
    takeover. A poll that sees an instance active right after "down" does not count: that
    is an old active answering once more on waking from a pause before it fences (its
    own transitions say what it really did), while a real takeover passes through
    standby, candidate and promoting, which the polls see or its transition says."""
    became: list[tuple[float, str]] = [
        (tr.at, tr.instance) for tr in transitions if tr.at >= since and tr.after == "active"
    ]
    last: dict[str, str] = {}
    for at, name, role in sorted(polled):
        if at >= since and role == "active" and last.get(name, "active") not in _NOT_BECOMING:
            became.append((at, name))
        last[name] = role
    out: list[Takeover] = []
    leader, previous_at = leader_before, since
    for at, name in sorted(became):
        if name == leader:
            continue
        out.append(Takeover(at, name, _candidacy_reason(transitions, name, previous_at, at)))
        leader, previous_at = name, at
    return out


_NOT_BECOMING = ("active", "down")


def _candidacy_reason(
    transitions: Sequence[Transition], instance: str, start: float, end: float
) -> str:
    started = [
        tr
        for tr in transitions
        if tr.instance == instance
        and tr.before == "standby"
        and tr.after == "candidate"
        and start <= tr.at <= end
    ]
    return max(started, key=lambda tr: tr.at).reason if started else ""


@dataclass(frozen=True, slots=True)
class LeaseWrite:
    """A write to the lease key the harness saw on its subject at `at` (Unix seconds):
    "put" (an acquire or a renewal, by `holder`) or "del" (a release; no holder)."""

    at: float
    holder: str
    op: str


def lease_expiry(
    writes: Sequence[LeaseWrite], holder: str, before: float, lease_ms: int
) -> float | None:
    """When `holder`'s lease ran out, as seen before `before`: its release, if it released
    after its last write, else that last write (acquire or renewal) + the lease (the
    bucket's TTL: the server expires the entry that long after storing it). None: no
    write of `holder`'s seen before `before`."""
    last: LeaseWrite | None = None
    released: float | None = None
    for w in sorted(writes, key=lambda w: w.at):
        if w.at > before:
            break
        if w.op == "put":
            if w.holder == holder:
                last, released = w, None
            elif last is not None:
                break  # someone else wrote the lease: it was no longer ours
        elif w.op == "del" and last is not None and released is None:
            released = w.at
    if last is None:
        return None
    return released if released is not None else last.at + lease_ms / 1000


@dataclass(slots=True)
class RunRecord:
    scenario: str
    run: int
    started_at: float
    """Unix time of the run's start: t = 0 on its axis."""
    lease_ms: int
    fault: str = ""
    """What was done, in words (`kill -9 primary (active)`)."""
    fault_at: float | None = None
    recovered_at: float | None = None
    """When the fault was undone (SIGCONT, heal, node restarted); None: nothing to undo."""
    takeover_at: float | None = None
    """The new active's intake open (its role telemetry), after the fault."""
    leader_before: str = ""
    leader_after: str = ""
    failover_ms: float | None = None
    """Fault → the other instance active (unplanned faults that moved the lead)."""
    switchover_gap_ms: float | None = None
    """Switchover request → the new active's intake open (planned switchover)."""
    first_decision_ms: float | None = None
    """Fault → the first decision by the new active."""
    lease_expired_at: float | None = None
    """When the old active's lease ran out (`lease_expiry`: its last renewal seen + the
    lease, or its release) before an unplanned takeover; None: not seen."""
    beyond_expiry_ms: float | None = None
    """The lease's expiry → the other instance active (`takeover_at − lease_expired_at`):
    what a takeover through the lease adds to the lease itself. Negative: the takeover
    came before the lease ran out (presence)."""
    commands_sent: int = 0
    """Commands of this run in `TITAN_CMD`: the load's intents and what the fault injected."""
    commands_injected: int = 0
    """Of `commands_sent`, those the fault itself stored (the poison of `poison-burst`)."""
    commands_decided: int = 0
    commands_lost: int = 0
    """Sent in this run and never decided (after the settle wait)."""
    commands_duplicated: int = 0
    """Sent in this run and decided more than once."""
    venue_duplicates: int = 0
    """Client order ids placed more than once at the venue (new in this run)."""
    hash_mismatches: int = 0
    """1 when the instances' state hashes differ at the same stream position after settling."""
    fencings: int = 0
    """Role changes to `fenced` seen in this run."""
    takeovers: int = 0
    """Times an instance other than the one leading became active in this run (`takeovers`):
    0 where the lead must stay, 1 for a crash."""
    presence_takeovers: int = 0
    """Of `takeovers`, those started by presence (a STANDBY → CANDIDATE transition whose
    reason starts `presence:`) rather than by the lease's expiry."""
    takeover_reason: str = ""
    """The reason the run's first takeover started with (its STANDBY → CANDIDATE
    transition); "" without a takeover or when the transition was not seen."""
    loop_stall_max_ms_before: int | None = None
    loop_stall_max_ms: int | None = None
    """The largest event-loop stall the run's first active measured (its `/status`
    `loop_stall_max_ms`: the maximum since its process started), when the run began and
    when it ended; None when it did not say (not answering, or an older build)."""
    violations: list[str] = field(default_factory=list)
    """Every invariant violation the checker reported (new in this run)."""
    violation_kinds: dict[str, int] = field(default_factory=dict)
    """How many of each kind (`<invariant>:<problem>`, e.g. `epochs:deposed_epoch`)."""
    roles: list[RoleSample] = field(default_factory=list)
    decided_at: list[float] = field(default_factory=list)
    """When each decision of the run landed in the stream (server time)."""
    notes: list[str] = field(default_factory=list)

    @property
    def is_presence_takeover(self) -> bool:
        """The run's takeover was started by presence (not by the lease's expiry)."""
        return self.presence_takeovers > 0

    def count_takeovers(self, seen: Sequence[Takeover]) -> None:
        self.takeovers = len(seen)
        self.presence_takeovers = sum(1 for t in seen if t.is_by_presence)
        self.takeover_reason = seen[0].reason if seen else ""

    def first_decision_after_takeover_ms(self) -> float | None:
        """Fault → the first decision stored after the takeover (the new active deciding)."""
        if self.fault_at is None or self.takeover_at is None:
            return None
        after = [t for t in self.decided_at if t >= self.takeover_at]
        return round((min(after) - self.fault_at) * 1000, 1) if after else None

    @property
    def is_clean(self) -> bool:
        return _is_clean(self)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)


def _is_clean(r: RunRecord | ScenarioRow) -> bool:
    """Nothing lost, nothing twice, no mismatch, no violation (a run or a scenario's sums)."""
    return not (
        r.commands_lost
        or r.commands_duplicated
        or r.venue_duplicates
        or r.hash_mismatches
        or r.violations
    )


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence: an observed value."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Spread:
    """min / p50 / p99 / max of a set of durations (ms), and how many there were."""

    n: int
    min: float
    p50: float
    p99: float
    max: float

    @staticmethod
    def of(values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return Spread(
            len(values), min(values), percentile(values, 50), percentile(values, 99), max(values)
        )

    def text(self) -> str:
        return f"{self.min:.0f} / {self.p50:.0f} / {self.p99:.0f} / {self.max:.0f}"


@dataclass(frozen=True, slots=True)
class ScenarioRow:
    """One scenario's line of the table, over its runs."""

    scenario: str
    runs: int
    failovers: int
    failover_ms: Spread | None
    switchover_gap_ms: Spread | None
    commands_sent: int
    commands_decided: int
    commands_lost: int
    commands_duplicated: int
    venue_duplicates: int
    hash_mismatches: int
    fencings: int
    violations: int
    takeovers: int = 0
    takeovers_max: int = 0
    """The most takeovers in one run (at most 1 per crash, 0 where the lead stays)."""
    presence_takeovers: int = 0

    @property
    def is_clean(self) -> bool:
        return _is_clean(self)

    @staticmethod
    def of(scenario: str, runs: Sequence[RunRecord]) -> ScenarioRow:
        failovers = [r.failover_ms for r in runs if r.failover_ms is not None]
        gaps = [r.switchover_gap_ms for r in runs if r.switchover_gap_ms is not None]
        return ScenarioRow(
            scenario=scenario,
            runs=len(runs),
            failovers=sum(1 for r in runs if r.leader_after and r.leader_after != r.leader_before),
            failover_ms=Spread.of(failovers),
            switchover_gap_ms=Spread.of(gaps),
            commands_sent=sum(r.commands_sent for r in runs),
            commands_decided=sum(r.commands_decided for r in runs),
            commands_lost=sum(r.commands_lost for r in runs),
            commands_duplicated=sum(r.commands_duplicated for r in runs),
            venue_duplicates=sum(r.venue_duplicates for r in runs),
            hash_mismatches=sum(r.hash_mismatches for r in runs),
            fencings=sum(r.fencings for r in runs),
            violations=sum(len(r.violations) for r in runs),
            takeovers=sum(r.takeovers for r in runs),
            takeovers_max=max((r.takeovers for r in runs), default=0),
            presence_takeovers=sum(r.presence_takeovers for r in runs),
        )

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)
