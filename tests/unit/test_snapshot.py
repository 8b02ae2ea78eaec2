"""Snapshots: a restored snapshot folded with the rest of the events is the state of the
whole fold (same hash, same fields), the codec keeps every Decimal exactly, a damaged
snapshot is refused with a reason, and `diff` names the first difference."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.builders import accepted, acknowledged, filled, genesis, submitted
from titan_exec.core.events import Event, IntentDecided, OrderCanceled, StateCompacted
from titan_exec.core.model import ClientOrderId, Side
from titan_exec.core.positions import Position
from titan_exec.core.snapshot import (
    CHUNK,
    SnapshotError,
    capture,
    encode_snapshot,
    hash_lines,
    hash_view,
    iter_hashed_lines,
    restore,
)
from titan_exec.core.state import State, apply, replay, state_hash
from titan_exec.core.statediff import diff


def snap(state: State, nonces: list[tuple[str, str, int]] | None = None) -> bytes:
    _, data = encode_snapshot(
        capture(state), nonces=nonces or [], ns="exec", shard="main", watermark_seq=7
    )
    return data


def cancel(coid: str, ts: int) -> OrderCanceled:
    return OrderCanceled(
        ts_ms=ts,
        client_order_id=ClientOrderId(coid),
        venue="sim",
        account="main",
        symbol="BTC/USDT",
        reason="ttl",
    )


def decided(seq: int, coid: str) -> IntentDecided:
    return IntentDecided(
        ts_ms=seq,
        cmd_seq=seq,
        outcome="accepted",
        reason="",
        signal_id=f"sig-{coid}",
        client_order_ids=(ClientOrderId(coid),),
    )


step_spec = st.tuples(
    st.sampled_from(["fill", "cancel", "open", "partial", "compact"]),
    st.sampled_from([Side.BUY, Side.SELL]),
    st.decimals(min_value="0.001", max_value="5", places=3),
    st.decimals(min_value="1", max_value="1000", places=2),
)


def history(specs: list[tuple[str, Side, Decimal, Decimal]]) -> list[Event]:
    events: list[Event] = [genesis()]
    for i, (kind, side, qty, price) in enumerate(specs):
        coid, ts = f"c{i}", 10 * (i + 1)
        if kind == "compact":
            events.append(
                StateCompacted(
                    ts_ms=ts, cmd_floor=ts - 25, orders_before_ms=ts - 25, fills_before_ms=ts - 35
                )
            )
            continue
        events.append(decided(ts, coid))
        events.append(accepted(coid, side=side, qty=str(qty), ts=ts))
        events.append(submitted(coid))
        events.append(acknowledged(coid))
        if kind == "fill":
            events.append(
                filled(coid, f"t{i}", side=side, qty=str(qty), price=str(price), ts=ts + 1)
            )
        elif kind == "partial":
            half = (qty / 2).quantize(Decimal("0.0001"))
            events.append(
                filled(
                    coid,
                    f"t{i}",
                    side=side,
                    qty=str(half),
                    price=str(price),
                    ts=ts + 1,
                    status="PARTIALLY_FILLED",
                )
            )
        elif kind == "cancel":
            events.append(cancel(coid, ts + 2))
    return events


@settings(max_examples=50, deadline=None)
@given(st.lists(step_spec, max_size=20), st.data())
def test_a_restored_snapshot_folded_with_the_tail_equals_the_whole_fold(specs, data) -> None:  # type: ignore[no-untyped-def]
    events = history(specs)
    whole = replay(events)
    cut = data.draw(st.integers(min_value=0, max_value=len(events)))
    restored = restore(snap(replay(events[:cut]))).state
    for ev in events[cut:]:
        apply(restored, ev)
    assert state_hash(restored) == state_hash(whole)
    assert restored.orders == whole.orders
    assert restored.open_orders == whole.open_orders
    assert restored.positions == whole.positions
    assert restored.decided_cmds == whole.decided_cmds
    assert restored.seen_fills == whole.seen_fills
    assert restored.event_count == whole.event_count
    assert restored.recent_trades == whole.recent_trades


def test_many_entries_span_several_lines_and_round_trip() -> None:
    events: list[Event] = [genesis()]
    for i in range(CHUNK + 5):
        events += [decided(i + 1, f"c{i}"), accepted(f"c{i}", ts=i + 1)]
    s = replay(events)
    lines = list(iter_hashed_lines(capture(s)))
    assert sum(1 for line in lines if line.startswith(b'{"k":"ord"')) == 2
    back = restore(snap(s)).state
    assert back.orders == s.orders and back.open_orders == s.open_orders
    assert hash_lines(lines) == hash_view(capture(s)) == state_hash(s) == state_hash(back)


def test_decimals_keep_their_exponent_and_sign() -> None:
    a, b = State(), State()
    a.positions[("sim", "X")] = Position(
        venue="sim", symbol="X", qty=Decimal("1.0"), avg_entry=Decimal("-0")
    )
    b.positions[("sim", "X")] = Position(
        venue="sim", symbol="X", qty=Decimal("1"), avg_entry=Decimal("0")
    )
    assert state_hash(a) != state_hash(b)
    back = restore(snap(a)).state.positions[("sim", "X")]
    assert str(back.qty) == "1.0" and str(back.avg_entry) == "-0"


def test_nonces_and_recent_trades_travel_but_are_not_hashed() -> None:
    s = replay(
        history(
            [
                ("fill", Side.BUY, Decimal("1"), Decimal("10")),
                ("fill", Side.SELL, Decimal("1"), Decimal("11")),
            ]
        )
    )
    assert s.recent_trades
    nonces = [("default", "n2", 5), ("default", "n1", 4)]
    r = restore(snap(s, nonces))
    assert sorted(r.nonces) == sorted(nonces)
    assert r.state.recent_trades == s.recent_trades
    without = restore(snap(s)).state
    assert state_hash(without) == state_hash(r.state)


def test_a_damaged_snapshot_is_refused_with_a_reason() -> None:
    s = replay(history([("fill", Side.BUY, Decimal("1"), Decimal("10"))]))
    data = snap(s)
    with pytest.raises(SnapshotError, match="hash"):
        restore(data.replace(b'"qty":"1"', b'"qty":"2"', 1))
    with pytest.raises(SnapshotError, match="truncated"):
        restore(data[: data.index(b"\n") + 1])
    with pytest.raises(SnapshotError, match="header"):
        restore(b"not json\n" + data)
    with pytest.raises(SnapshotError, match="version"):
        restore(data.replace(b'"hash_version":2', b'"hash_version":1', 1))


def test_a_changed_policy_is_refused() -> None:
    s = replay([genesis()])
    data = snap(s)
    header, _, rest = data.partition(b"\n")
    # a policy line whose raw document no longer matches its recorded hash: rebuild a
    # snapshot whose lines hash correctly but whose policy hash is wrong
    lines = rest.split(b"\n")
    lines = [
        line.replace(b'"hash":"', b'"hash":"0', 1) if line.startswith(b'{"k":"policy"') else line
        for line in lines
    ]
    hashed = [line + b"\n" for line in lines[:-1]]
    import msgspec

    doc = msgspec.json.decode(header)
    n = doc["hashed_lines"]
    doc["state_hash"] = hash_lines(hashed[:n])
    with pytest.raises(SnapshotError, match="policy hash"):
        restore(msgspec.json.encode(doc) + b"\n" + b"".join(hashed))


def test_diff_names_the_first_differing_position_then_order() -> None:
    events = history(
        [
            ("fill", Side.BUY, Decimal("1"), Decimal("10")),
            ("open", Side.BUY, Decimal("2"), Decimal("10")),
        ]
    )
    mine, theirs = replay(events), replay(events)
    assert diff(capture(mine), capture(theirs)) == []
    key = ("sim", "BTC/USDT")
    p = mine.positions[key]
    mine.positions[key] = Position(**{**{f: getattr(p, f) for f in p.__slots__}, "qty": p.qty + 1})  # type: ignore[arg-type]
    found = diff(capture(mine), capture(theirs))
    assert (
        found[0].section == "position"
        and found[0].key == "sim:BTC/USDT"
        and found[0].field == "qty"
    )
    assert "position sim:BTC/USDT qty mine=2 active=1" in found[0].describe()
    del mine.orders[ClientOrderId("c1")]
    found = diff(capture(mine), capture(theirs))
    assert [(d.section, d.key, d.field) for d in found[:2]] == [
        ("position", "sim:BTC/USDT", "qty"),
        ("order", "c1", "presence"),
    ]
