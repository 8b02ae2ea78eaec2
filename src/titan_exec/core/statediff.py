"""Where two states differ: the first differences between two captured views, in the order
an operator reads them (positions, orders, then the flags, the policy, the risk line and
the sets), for the drift alarm's log line and event (`runtime/drift.py`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from titan_exec.core.snapshot import FlagsLine, RiskLine, StateView, risk_line


@dataclass(frozen=True, slots=True)
class StateDifference:
    section: str
    """`position`, `order`, `flags`, `policy`, `commands`, `signals`, `fills`, `days`."""
    key: str
    field: str
    mine: str
    theirs: str

    def describe(self) -> str:
        what = f"{self.section} {self.key}" if self.key else self.section
        return f"{what} {self.field} mine={self.mine} active={self.theirs}"


def _dataclass_diff(section: str, key: str, a: Any, b: Any) -> StateDifference | None:
    if a is None or b is None:
        return StateDifference(section, key, "presence", _present(a), _present(b))
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x != y or str(x) != str(y):  # str: 1.0 and 1 are equal Decimals, not equal state
            return StateDifference(section, key, f.name, str(x), str(y))
    return None


def _present(x: Any) -> str:
    return "absent" if x is None else "present"


def diff(mine: StateView, theirs: StateView, *, limit: int = 10) -> list[StateDifference]:
    """The first differences between two views: positions first (by venue:symbol), then
    orders (by client order id), then the rest by section; at most `limit`."""
    out: list[StateDifference] = []

    def keyed(section: str, a: dict[Any, Any], b: dict[Any, Any], name: Any) -> None:
        for k in sorted(set(a) | set(b)):
            if len(out) >= limit:
                return
            d = _dataclass_diff(section, name(k), a.get(k), b.get(k))
            if d is not None:
                out.append(d)

    keyed("position", mine.positions, theirs.positions, lambda k: f"{k[0]}:{k[1]}")
    keyed("order", mine.orders, theirs.orders, str)
    for name in FlagsLine.__struct_fields__:
        x, y = getattr(mine, name), getattr(theirs, name)
        if x != y:
            out.append(StateDifference("flags", "", name, str(x), str(y)))
    if mine.policy_hash != theirs.policy_hash:
        out.append(
            StateDifference("policy", "", "hash", str(mine.policy_hash), str(theirs.policy_hash))
        )
    a_risk, b_risk = risk_line(mine), risk_line(theirs)
    if a_risk != b_risk:
        for name in RiskLine.__struct_fields__:
            x, y = getattr(a_risk, name, None), getattr(b_risk, name, None)
            if x != y:
                out.append(StateDifference("risk", "", name, str(x), str(y)))
    sets: list[tuple[str, Any, Any]] = [
        ("commands", mine.decided_cmds, theirs.decided_cmds),
        ("signals", mine.accepted_signals, theirs.accepted_signals),
        ("fills", mine.seen_fills, theirs.seen_fills),
        ("days", mine.daily_realized, theirs.daily_realized),
    ]
    for section, a, b in sets:
        if a != b:
            only_mine, only_theirs = len(set(a) - set(b)), len(set(b) - set(a))
            out.append(
                StateDifference(
                    section, "", "entries", f"{len(a)} (+{only_mine})", f"{len(b)} (+{only_theirs})"
                )
            )
    return out[:limit]
