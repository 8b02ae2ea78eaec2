"""The fold's own refusals, decided before anything is applied (core/foldcheck.py)."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from tests.builders import accepted, default_policy, filled, genesis, submitted
from titan_exec.core.events import ControlDecided, Event, OrderCanceled
from titan_exec.core.foldcheck import fold_checked, why_unfoldable
from titan_exec.core.model import ClientOrderId
from titan_exec.core.state import replay, state_hash


def _state():  # type: ignore[no-untyped-def]
    return replay([genesis(), accepted("o1"), submitted("o1")])


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (accepted("o1"), "accepted twice"),
        (submitted("zz"), "unknown order"),
        (submitted("o1"), "not allowed"),
        (msgspec.structs.replace(filled("o1", "t1"), qty=Decimal("-1")), "fill of -1"),
        (msgspec.structs.replace(filled("o1", "t1"), price=Decimal("NaN")), "price is NaN"),
        (
            ControlDecided(ts_ms=1, cmd_seq=9, action="", outcome="accepted", reason=""),
            "unknown control action",
        ),
        (
            ControlDecided(ts_ms=1, cmd_seq=9, action="policy", outcome="accepted", reason=""),
            "without a policy",
        ),
        (
            ControlDecided(
                ts_ms=1,
                cmd_seq=9,
                action="policy",
                outcome="accepted",
                reason="",
                policy={"nonsense": 1},
            ),
            "policy does not parse",
        ),
        (
            OrderCanceled(
                ts_ms=1,
                client_order_id=ClientOrderId("nope"),
                venue="sim",
                account="main",
                symbol="BTC/USDT",
                reason="x",
            ),
            "unknown order",
        ),
    ],
)
def test_an_event_the_fold_cannot_take_is_named_and_changes_nothing(event: Event, why: str) -> None:
    state = _state()
    before = state_hash(state)
    problem = fold_checked(state, event)
    assert problem is not None and why in problem
    assert state_hash(state) == before


def test_the_events_the_service_writes_fold_as_before() -> None:
    events: list[Event] = [genesis(), accepted("o1"), submitted("o1"), filled("o1", "t1")]
    checked = replay([])
    for ev in events:
        assert why_unfoldable(checked, ev) is None
        assert fold_checked(checked, ev) is None
    assert state_hash(checked) == state_hash(replay(events))
    policy = ControlDecided(
        ts_ms=5, cmd_seq=3, action="policy", outcome="accepted", reason="", policy=default_policy()
    )
    assert why_unfoldable(checked, policy) is None
