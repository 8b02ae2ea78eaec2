"""The checker's verdict: each `Violation` names its invariant, the ids involved and what
was found; a `Report` has them all, what was read (`Counts`) and the venue's client order
id counts. `Report.lines()` is what `titan-exec verify` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

DECISIONS = "decisions"
COIDS = "coids"
EPOCHS = "epochs"
VENUE = "venue"
INSTANCES = "instances"
ROLES = "roles"
INVARIANTS: dict[str, str] = {
    DECISIONS: "every command decided exactly once",
    COIDS: "every client order id at most once at the venue",
    EPOCHS: "no event from a deposed epoch; every state event fenced",
    VENUE: "the stream's positions and open orders equal the venue's",
    INSTANCES: "the instances agree with each other and with the venue",
    ROLES: "exactly one active, and every standby able to take over",
}


class Problem(StrEnum):
    """What exactly was found; each belongs to one invariant."""

    UNDECIDED = "undecided"
    DECIDED_TWICE = "decided_twice"
    UNKNOWN_COMMAND = "unknown_command"
    NO_CMD_SEQ = "no_cmd_seq"
    COID_TWICE = "coid_twice"
    UNFENCED = "unfenced"
    DEPOSED_EPOCH = "deposed_epoch"
    POSITION = "position"
    OPEN_IN_STREAM_ONLY = "open_in_stream_only"
    OPEN_AT_VENUE_ONLY = "open_at_venue_only"
    SILENT_INSTANCE = "silent_instance"
    HASH_MISMATCH = "hash_mismatch"
    CONTROL_MISMATCH = "control_mismatch"
    INSTANCE_POSITION = "instance_position"
    INSTANCE_OPEN_ORDERS = "instance_open_orders"
    DRIFT_ALARM = "drift_alarm"
    APART = "apart"
    NO_ACTIVE = "no_active"
    TWO_ACTIVES = "two_actives"
    STANDBY_WITHOUT_ELECTION = "standby_without_election"


MAY_SETTLE = frozenset(
    {
        Problem.UNDECIDED,
        Problem.POSITION,
        Problem.OPEN_IN_STREAM_ONLY,
        Problem.OPEN_AT_VENUE_ONLY,
        Problem.SILENT_INSTANCE,
        Problem.INSTANCE_POSITION,
        Problem.INSTANCE_OPEN_ORDERS,
        Problem.APART,
        Problem.NO_ACTIVE,
    }
)
"""Problems that a run still settling shows too (an order in flight, a standby behind or
restarting, a command waiting for its redelivery); the others never go away."""


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    """One of `INVARIANTS`."""
    ids: tuple[str, ...]
    """What is involved, each as `kind:id`: `cmd:12`, `evt:40`, `signal:s-3`, `coid:tx…`,
    `order:4000000002`, `trade:900000007`, `epoch:1`, `marker:22`, `instance:primary`,
    `symbol:BTCUSDT`."""
    text: str
    problem: Problem | None = None

    def line(self) -> str:
        return f"VIOLATION {self.invariant}: {self.text}"

    @property
    def may_settle(self) -> bool:
        return self.problem in MAY_SETTLE


@dataclass(frozen=True, slots=True)
class Counts:
    commands: int = 0
    decisions: int = 0
    events: int = 0
    epoch_markers: tuple[int, ...] = ()
    fills: int = 0
    stream_open_orders: int = 0
    venue_orders: int | None = None
    """None: the venue was not read."""
    venue_trades: int | None = None
    venue_open_orders: int | None = None
    instances: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    counts: Counts
    violations: tuple[Violation, ...] = ()
    coid_counts: Counter[str] = field(default_factory=Counter)
    """How many venue orders each client order id has (empty: the venue was not read)."""

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def has_hash_mismatch(self) -> bool:
        """Instances at the same stream position with different state hashes."""
        return any(v.problem is Problem.HASH_MISMATCH for v in self.violations)

    def unsettled(self) -> list[Violation]:
        """The violations that a run still settling could explain (`Violation.may_settle`):
        a caller may read again before calling them final."""
        return [v for v in self.violations if v.may_settle]

    def by_invariant(self) -> Counter[str]:
        return Counter(v.invariant for v in self.violations)

    def summary(self) -> str:
        c = self.counts
        parts = [
            f"{c.commands} commands",
            f"{c.decisions} decisions",
            f"{c.events} events",
            f"{len(c.epoch_markers)} epoch markers"
            + (f" (seq {', '.join(map(str, c.epoch_markers))})" if c.epoch_markers else ""),
            f"{c.fills} fills",
        ]
        if c.venue_orders is not None:
            parts.append(f"{c.venue_orders} venue orders, {c.venue_trades} venue trades")
        if c.instances:
            parts.append(f"{c.instances} instances")
        verdict = (
            "OK: no violation"
            if self.ok
            else f"FAIL: {len(self.violations)} violations ("
            + ", ".join(f"{k} {n}" for k, n in sorted(self.by_invariant().items()))
            + ")"
        )
        return f"verify: {'; '.join(parts)}: {verdict}"

    def lines(self) -> list[str]:
        """One line per violation, then the summary."""
        return [v.line() for v in self.violations] + [self.summary()]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": asdict(self.counts),
            "violations": [asdict(v) for v in self.violations],
            "summary": self.summary(),
        }
