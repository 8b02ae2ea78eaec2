"""The chaos matrix's targets, evaluated over the runs that measured them: plain values, no
I/O (the CLI prints them under the table, the report lists them).

What each one reads from a `RunRecord` (nothing else is measured):

- failover p99 after kill -9 ≤ lease + 1 s (`kill-active`: `failover_ms`, fault → the other
  instance's intake open);
- switchover gap p99 ≤ 250 ms (`switchover_gap_ms`);
- the new active's first decision after a kill, p99 ≤ 300 ms and median ≤ 150 ms
  (`kill-active`, `kill-during-catchup`: `first_decision_ms`, the kill → the first decision
  stored after the takeover);
- the failover time beyond the lease, p99 ≤ 0.3 s, where the takeover can only come
  through the lease's expiry (`pause-long`, `partition-active`, `kill-active-host`):
  `failover_ms − lease_ms`, and, since the lease runs from the last renewal before the
  fault (up to a renew interval earlier, so that the first is often negative),
  `beyond_expiry_ms` (the last renewal the harness saw + the lease → the takeover);
- no takeover where the lead stays (`standby-restart`, the venue scenarios: `takeovers`);
- no takeover started by presence where the active is only paused (`pause-short`,
  `pause-long`: `presence_takeovers`) — a paused process still holds its connection.

A target none of whose scenarios ran is left out; one whose scenarios ran but measured
nothing says so (neither met nor missed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from titan_exec_lab.chaos.model import RunRecord, percentile

KILLS = ("kill-active", "kill-during-catchup")
LEASE_BOUND = ("pause-long", "partition-active", "kill-active-host")
PAUSES = ("pause-short", "pause-long")
STAY_NAMED = ("standby-restart", "listen-key-expired")
"""With every `venue-*` scenario: where no takeover may happen."""

FIRST_DECISION_P99_MS = 300.0
FIRST_DECISION_P50_MS = 150.0
BEYOND_LEASE_P99_MS = 300.0
SWITCHOVER_GAP_P99_MS = 250.0
KILL_FAILOVER_SLACK_MS = 1000.0


@dataclass(frozen=True, slots=True)
class Target:
    goal: str
    measured: str
    """What the runs gave ("p50 120 ms, p99 280 ms over 20 runs"), or why nothing."""
    is_met: bool | None
    """None: nothing measured."""

    def text(self) -> str:
        verdict = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[self.is_met]
        return f"target: {self.goal}: {self.measured} — {verdict}"


def _is_stay(scenario: str) -> bool:
    return scenario in STAY_NAMED or scenario.startswith("venue-")


def _values(
    runs: Sequence[RunRecord], key: Callable[[RunRecord], float | None]
) -> tuple[list[float], int]:
    """The measured values and how many runs measured nothing."""
    values = [v for r in runs if (v := key(r)) is not None]
    return values, len(runs) - len(values)


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def _unmeasured(missing: int) -> str:
    return f" ({_runs(missing)} without a measurement)" if missing else ""


def _p99_target(
    goal: str,
    runs: Sequence[RunRecord],
    key: Callable[[RunRecord], float | None],
    bound_ms: float,
    *,
    p50_bound_ms: float | None = None,
) -> Target:
    values, missing = _values(runs, key)
    if not values:
        return Target(goal, f"no run measured it ({_runs(len(runs))})", None)
    p50, p99 = percentile(values, 50), percentile(values, 99)
    is_met = p99 <= bound_ms and (p50_bound_ms is None or p50 <= p50_bound_ms)
    measured = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms over {_runs(len(values))}"
    measured += _unmeasured(missing)
    return Target(goal, measured, is_met)


def _count_target(goal: str, runs: Sequence[RunRecord], key: Callable[[RunRecord], int]) -> Target:
    total = sum(key(r) for r in runs)
    where = sorted({f"{r.scenario} run {r.run}" for r in runs if key(r)})
    measured = f"{total} in {_runs(len(runs))}" + (f" ({', '.join(where[:5])})" if where else "")
    return Target(goal, measured, total == 0)


def _of(runs: Sequence[RunRecord], names: Sequence[str]) -> list[RunRecord]:
    return [r for r in runs if r.scenario in names]


def _beyond_lease(r: RunRecord) -> float | None:
    return r.failover_ms - r.lease_ms if r.failover_ms is not None else None


def evaluate(runs: Sequence[RunRecord], lease_ms: int) -> list[Target]:
    """Every target whose scenarios are among `runs`, in a fixed order."""
    out: list[Target] = []
    kills = _of(runs, ["kill-active"])
    if kills:
        bound = lease_ms + KILL_FAILOVER_SLACK_MS
        out.append(
            _p99_target(
                f"failover p99 after kill -9 ≤ lease + 1 s ({bound:.0f} ms)",
                kills,
                lambda r: r.failover_ms,
                bound,
            )
        )
    planned = [r for r in runs if r.switchover_gap_ms is not None]
    if planned:
        out.append(
            _p99_target(
                f"switchover gap p99 ≤ {SWITCHOVER_GAP_P99_MS:.0f} ms",
                planned,
                lambda r: r.switchover_gap_ms,
                SWITCHOVER_GAP_P99_MS,
            )
        )
    for name in KILLS:
        chosen = _of(runs, [name])
        if chosen:
            out.append(
                _p99_target(
                    f"{name}: the kill → the new active's first decision, "
                    f"p99 ≤ {FIRST_DECISION_P99_MS:.0f} ms, median ≤ "
                    f"{FIRST_DECISION_P50_MS:.0f} ms",
                    chosen,
                    lambda r: r.first_decision_ms,
                    FIRST_DECISION_P99_MS,
                    p50_bound_ms=FIRST_DECISION_P50_MS,
                )
            )
    for name in LEASE_BOUND:
        chosen = _of(runs, [name])
        if chosen:
            bound_s = f"{BEYOND_LEASE_P99_MS / 1000:g} s"
            out.append(
                _p99_target(
                    f"{name}: failover time − the lease, p99 ≤ {bound_s}",
                    chosen,
                    _beyond_lease,
                    BEYOND_LEASE_P99_MS,
                )
            )
            out.append(
                _p99_target(
                    f"{name}: the lease's expiry (last renewal seen + the lease) → the "
                    f"other instance active, p99 ≤ {bound_s}",
                    chosen,
                    lambda r: r.beyond_expiry_ms,
                    BEYOND_LEASE_P99_MS,
                )
            )
    stays = [r for r in runs if _is_stay(r.scenario)]
    if stays:
        names = ", ".join(dict.fromkeys(r.scenario for r in stays))
        out.append(_count_target(f"takeovers where the lead stays ({names}) = 0", stays,
                                 lambda r: r.takeovers))  # fmt: skip
    pauses = _of(runs, PAUSES)
    if pauses:
        names = ", ".join(dict.fromkeys(r.scenario for r in pauses))
        out.append(_count_target(f"takeovers started by presence ({names}) = 0", pauses,
                                 lambda r: r.presence_takeovers))  # fmt: skip
    return out
