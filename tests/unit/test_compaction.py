"""Compaction: the fold forgets closed history below explicit bounds, never an open order,
never a position, and never lets an old command or venue trade count twice."""

from __future__ import annotations

from decimal import Decimal

from tests.builders import accepted, acknowledged, filled, genesis, submitted
from tests.unit.test_snapshot import cancel, decided
from titan_exec.core.events import StateCompacted
from titan_exec.core.model import ClientOrderId
from titan_exec.core.state import apply, replay, state_hash


def compacted(floor: int, orders_before: int, fills_before: int) -> StateCompacted:
    return StateCompacted(
        ts_ms=1000, cmd_floor=floor, orders_before_ms=orders_before, fills_before_ms=fills_before
    )


def base() -> list:  # type: ignore[type-arg]
    # c1 filled (decided at 1), c2 canceled (decided at 2), c3 still open (decided at 3)
    return [
        genesis(),
        decided(1, "c1"),
        accepted("c1", ts=1),
        submitted("c1"),
        acknowledged("c1"),
        filled("c1", "t1", qty="1", ts=5),
        decided(2, "c2"),
        accepted("c2", ts=2),
        submitted("c2"),
        cancel("c2", 6),
        decided(3, "c3"),
        accepted("c3", ts=3),
        submitted("c3"),
    ]


def test_commands_below_the_floor_count_as_decided_and_leave_the_set() -> None:
    s = replay([*base(), compacted(3, 0, 0)])
    assert s.decided_cmds == {3}
    assert s.is_decided(1) and s.is_decided(2) and s.is_decided(3)
    assert not s.is_decided(4)


def test_closed_orders_before_the_bound_go_open_orders_and_positions_stay() -> None:
    before = replay(base())
    s = replay([*base(), compacted(0, 10, 0)])
    assert set(s.orders) == {ClientOrderId("c3")}
    assert s.open_orders == before.open_orders
    assert s.positions == before.positions
    assert set(s.accepted_signals) == {"sig-c3"}


def test_old_venue_trades_are_forgotten_and_never_applied_again() -> None:
    s = replay([*base(), compacted(0, 0, 6)])
    assert s.seen_fills == {} and s.fills_floor_ms == 6
    qty = s.position("sim", "BTC/USDT").qty
    apply(s, filled("c1", "t1", qty="1", ts=5))  # the venue re-reports it: ignored
    apply(s, filled("c3", "t-old", qty="1", ts=4))  # older than the bound: ignored
    assert s.position("sim", "BTC/USDT").qty == qty == Decimal("1")
    apply(s, filled("c3", "t3", qty="1", ts=7))
    assert s.position("sim", "BTC/USDT").qty == Decimal("2")


def test_compaction_is_deterministic_and_idempotent() -> None:
    events = [*base(), compacted(3, 10, 6)]
    a, b = replay(events), replay(events)
    assert state_hash(a) == state_hash(b)
    again = replay([*events, compacted(2, 5, 1)])  # lower bounds change nothing
    assert state_hash(again) == state_hash(a)


def test_the_active_compacts_only_when_a_bound_moves() -> None:
    from titan_exec.core.state import compaction

    s = replay(base())
    ev = compaction(s, acked_cmd_seq=2, now_ms=100, horizon_ms=90)
    assert ev == StateCompacted(ts_ms=100, cmd_floor=3, orders_before_ms=10, fills_before_ms=10)
    apply(s, ev)
    assert compaction(s, acked_cmd_seq=2, now_ms=100, horizon_ms=90) is None
    assert compaction(s, acked_cmd_seq=1, now_ms=95, horizon_ms=90) is None  # never back
    assert compaction(s, acked_cmd_seq=0, now_ms=101, horizon_ms=90) == StateCompacted(
        ts_ms=101, cmd_floor=3, orders_before_ms=11, fills_before_ms=11
    )


def test_realised_pnl_of_days_before_the_bound_leaves_the_state() -> None:
    day = 86_400_000
    s = replay(base())
    s.daily_realized = {0: Decimal("1"), 1: Decimal("2"), 2: Decimal("3")}
    apply(s, compacted(0, day + 5, 0))
    assert s.daily_realized == {1: Decimal("2"), 2: Decimal("3")}
