"""The fold: apply(state, event) over the service's events, its hash and its properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import accepted, acknowledged, filled, genesis, submitted
from titan_exec.core.events import Event, OrderCanceled, PositionReconciled
from titan_exec.core.model import ClientOrderId, OrderStatus, Side
from titan_exec.core.orders import IllegalTransition
from titan_exec.core.state import State, apply, replay, state_hash, step

MS_DAY = 86_400_000


def test_lifecycle_through_the_fold() -> None:
    s = replay([genesis(), accepted("c1", qty="1"), submitted("c1"), acknowledged("c1")])
    assert s.orders[ClientOrderId("c1")].status is OrderStatus.ACKNOWLEDGED
    assert s.open_order_count("sim", "BTC/USDT") == 1
    apply(s, filled("c1", "t1", qty="1", price="100"))
    assert s.orders[ClientOrderId("c1")].status is OrderStatus.FILLED
    assert s.open_order_count("sim", "BTC/USDT") == 0
    assert s.position("sim", "BTC/USDT").qty == Decimal("1")


def test_duplicate_fill_is_ignored() -> None:
    s = replay([genesis(), accepted("c1", qty="2"), submitted("c1")])
    apply(s, filled("c1", "t1", qty="1"))
    before = state_hash(s)
    apply(s, filled("c1", "t1", qty="1"))
    assert s.position("sim", "BTC/USDT").qty == Decimal("1")
    assert state_hash(s) == before


def test_illegal_lifecycle_event_raises() -> None:
    s = replay([genesis(), accepted("c1")])
    bad = OrderCanceled(
        ts_ms=1,
        client_order_id=ClientOrderId("c1"),
        venue="sim",
        account="main",
        symbol="BTC/USDT",
        reason="x",
    )
    apply(s, bad)
    with pytest.raises(IllegalTransition):
        apply(s, submitted("c1"))


def test_fill_for_unknown_order_still_moves_the_position() -> None:
    s = replay([genesis()])
    apply(s, filled("ghost", "t9", qty="0.5", price="10"))
    assert s.position("sim", "BTC/USDT").qty == Decimal("0.5")
    assert s.anomalies == 1


def test_round_trip_records_trade_and_daily_pnl() -> None:
    s = replay(
        [
            genesis(),
            accepted("c1"),
            submitted("c1"),
            accepted("c2", side=Side.SELL, ts=7),
            submitted("c2"),
        ]
    )
    _, closed = step(s, filled("c1", "t1", price="100", ts=MS_DAY * 3 + 5))
    assert closed is None
    _, closed = step(s, filled("c2", "t2", side=Side.SELL, price="90", ts=MS_DAY * 3 + 9))
    assert closed is not None
    assert closed.pnl == Decimal("-10")
    assert s.realized_on(3) == Decimal("-10")
    assert s.trade_count == 1


# --- properties -------------------------------------------------------------------------

fill_spec = st.tuples(
    st.sampled_from(["BTC/USDT", "ETH/USDT"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal("5"), places=3),
    st.decimals(min_value=Decimal("1"), max_value=Decimal("1000"), places=2),
    st.decimals(min_value=Decimal("0"), max_value=Decimal("1"), places=4),
    st.booleans(),
)


def events_from(specs: list[tuple[str, Side, Decimal, Decimal, Decimal, bool]]) -> list[Event]:
    events: list[Event] = [genesis()]
    for i, (symbol, side, qty, price, fee, dup) in enumerate(specs):
        coid = f"c{i}"
        events.append(accepted(coid, side=side, qty=str(qty), symbol=symbol, ts=i + 1))
        events.append(submitted(coid))
        events.append(
            filled(
                coid,
                f"t{i}",
                side=side,
                qty=str(qty),
                price=str(price),
                fee=str(fee),
                symbol=symbol,
                ts=i + 10,
            )
        )
        if dup:
            events.append(
                filled(coid, f"t{i}", side=side, qty=str(qty), price=str(price), symbol=symbol)
            )
    return events


@settings(max_examples=60, deadline=None)
@given(st.lists(fill_spec, max_size=25))
def test_replaying_the_same_events_gives_the_same_state_and_hash(specs) -> None:  # type: ignore[no-untyped-def]
    events = events_from(specs)
    a, b = replay(events), replay(list(events))
    assert state_hash(a) == state_hash(b)
    assert a.positions == b.positions
    assert a.daily_realized == b.daily_realized


@settings(max_examples=60, deadline=None)
@given(st.lists(fill_spec, max_size=25))
def test_position_equals_the_signed_sum_of_its_distinct_fills(specs) -> None:  # type: ignore[no-untyped-def]
    s = replay(events_from(specs))
    for symbol in ("BTC/USDT", "ETH/USDT"):
        expected = sum(
            (q * side.sign for (sym, side, q, _p, _f, _d) in specs if sym == symbol), Decimal(0)
        )
        assert s.position("sim", symbol).qty == expected


@settings(max_examples=40, deadline=None)
@given(st.lists(fill_spec, min_size=1, max_size=20))
def test_realised_pnl_plus_fees_is_conserved(specs) -> None:  # type: ignore[no-untyped-def]
    """Cash realised + open fees accounts for every fee exactly once (no fee lost or doubled)."""
    s = replay(events_from(specs))
    total_fees = sum((f for (*_x, f, _d) in specs), Decimal(0))
    paid = sum((p.fees_paid for p in s.positions.values()), Decimal(0))
    assert paid == total_fees


def test_hash_changes_when_state_changes() -> None:
    s = replay([genesis(), accepted("c1")])
    h1 = state_hash(s)
    apply(s, submitted("c1"))
    assert state_hash(s) != h1
    assert State().policy is None


def test_the_global_decimal_context_does_not_change_the_fold() -> None:
    import decimal

    events = events_from(
        [
            ("BTC/USDT", Side.BUY, Decimal("0.3"), Decimal("100.01"), Decimal("0.07"), False),
            ("BTC/USDT", Side.BUY, Decimal("0.7"), Decimal("333.33"), Decimal("0.01"), False),
            ("BTC/USDT", Side.SELL, Decimal("0.9"), Decimal("250"), Decimal("0.03"), False),
        ]
    )
    expected = state_hash(replay(events))
    with decimal.localcontext() as ctx:
        ctx.prec = 5
        ctx.rounding = decimal.ROUND_FLOOR
        assert state_hash(replay(events)) == expected


def reconciled(qty: str, entry: str | None = None, ts: int = 50) -> Event:
    return PositionReconciled(
        ts_ms=ts,
        venue="sim",
        account="main",
        symbol="BTC/USDT",
        qty_before=Decimal(0),
        qty_after=Decimal(qty),
        venue_entry_price=None if entry is None else Decimal(entry),
        reason="test",
    )


def test_a_position_correction_sets_qty_and_entry_and_keeps_realised_pnl() -> None:
    s = replay([genesis(), accepted("c1", qty="2"), submitted("c1")])
    apply(s, filled("c1", "t1", qty="1", price="100"))
    apply(s, filled("c1", "t2", qty="1", price="100", side=Side.SELL))  # round trip, fee 0
    realized = s.position("sim", "BTC/USDT").realized_pnl
    apply(s, reconciled("0.5", "110"))
    pos = s.position("sim", "BTC/USDT")
    assert (pos.qty, pos.avg_entry, pos.realized_pnl) == (Decimal("0.5"), Decimal(110), realized)
    assert (pos.opened_at_ms, pos.last_update_ms) == (50, 50)
    assert s.reconciliations == 1
    # same side without an entry price: the entry stays
    apply(s, reconciled("0.7", ts=60))
    assert s.position("sim", "BTC/USDT").avg_entry == Decimal(110)
    assert s.position("sim", "BTC/USDT").opened_at_ms == 50
    # to flat: no trade record, the round trip's fields are cleared
    trades = s.trade_count
    apply(s, reconciled("0", ts=70))
    pos = s.position("sim", "BTC/USDT")
    assert pos.is_flat and pos.avg_entry == 0 and pos.opened_at_ms == 0
    assert s.trade_count == trades and s.reconciliations == 3


def test_a_position_correction_changes_the_state_hash_and_replays_identically() -> None:
    events = [genesis(), accepted("c1", qty="1"), submitted("c1")]
    base = replay(events)
    corrected = replay([*events, reconciled("-0.3", "99")])
    assert state_hash(corrected) != state_hash(base)
    assert state_hash(corrected) == state_hash(replay([*events, reconciled("-0.3", "99")]))
    assert corrected.position("sim", "BTC/USDT").qty == Decimal("-0.3")
