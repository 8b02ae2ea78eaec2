"""The pair view of `titan-exec status --url A --url B`: its verdicts and its table."""

from __future__ import annotations

from typing import Any

from titan_exec_lab.cli.status import Reading, is_healthy, render, verdicts


def doc(name: str, role: str, seq: int = 10, state_hash: str = "h" * 64, **kw: Any) -> Any:
    return {
        "instance_id": name,
        "role": role,
        "lease_role": role,
        "epoch": 7 if role == "active" else 0,
        "event_seq": seq,
        "state_hash": state_hash,
        "standby_lag": 0 if role == "standby" else None,
        "lease_age_ms": 120,
        **kw,
    }


def test_a_healthy_pair_has_one_active_and_agreeing_hashes() -> None:
    readings = [
        Reading("a", doc("primary", "active", last_takeover={"epoch": 7, "at_ms": 1000})),
        Reading("b", doc("backup", "standby")),
    ]
    assert is_healthy(readings)
    text = render(readings, now_ms=3500)
    assert "ok  one active: primary" in text
    assert "ok  state hashes agree at stream position 10" in text
    assert "epoch 7, 2.5 s ago" in text
    assert "primary" in text.splitlines()[0] and "backup" in text.splitlines()[0]


def test_no_active_two_actives_and_drift_are_called_out() -> None:
    none = [Reading("a", doc("primary", "standby")), Reading("b", doc("backup", "fenced"))]
    assert (False, "no active instance: trading is stopped") in verdicts(none)
    two = [Reading("a", doc("primary", "active")), Reading("b", doc("backup", "active"))]
    assert not is_healthy(two)
    assert any("more than one" in s for _, s in verdicts(two))
    drift = [
        Reading("a", doc("primary", "active")),
        Reading("b", doc("backup", "standby", state_hash="x" * 64)),
    ]
    assert (False, "state hashes DIFFER at stream position 10: drift") in verdicts(drift)


def test_different_positions_are_not_compared_and_an_unreachable_one_fails() -> None:
    moving = [Reading("a", doc("primary", "active", 12)), Reading("b", doc("backup", "standby"))]
    assert is_healthy(moving)
    assert any("not comparable" in s for _, s in verdicts(moving))
    gone = [Reading("a", doc("primary", "active")), Reading("b", None, "cannot reach b")]
    assert not is_healthy(gone)
    assert "!!  cannot reach b" in render(gone)


def test_a_standby_without_lease_election_is_called_out() -> None:
    """It follows the stream but would never take over: not a working pair."""
    readings = [
        Reading("a", doc("primary", "active")),
        Reading("b", doc("backup", "standby", lease_role=None)),
    ]
    assert not is_healthy(readings)
    assert any("never take over" in s for ok, s in verdicts(readings) if not ok)


def test_an_active_with_events_in_flight_is_not_compared_by_hash() -> None:
    """Its state is ahead of its acknowledged event_seq: a hash compare there would cry
    drift where there is none (seen once in the long chaos run)."""
    deciding = [
        Reading("a", doc("primary", "active", state_hash="x" * 64, events_unacked=2)),
        Reading("b", doc("backup", "standby")),
    ]
    assert is_healthy(deciding)
    assert (True, "primary deciding (events in flight): not compared") in verdicts(deciding)


def test_every_venue_of_every_instance_has_a_line() -> None:
    venues = {
        "binance": {
            "account": "main",
            "is_default": True,
            "open_orders": 1,
            "positions": {"BTC/USDT": "0.05"},
        },
        "bybit": {"account": "sub1", "is_default": False, "open_orders": 0, "positions": {}},
    }
    old = doc("backup", "standby", venue="sim")  # a build without the venues section
    readings = [Reading("a", doc("primary", "active", venues=venues)), Reading("b", old)]
    lines = {line.split("  ")[0]: line for line in render(readings, now_ms=0).splitlines()}
    assert "account main (default): 1 open, BTC/USDT 0.05" in lines["venue binance"]
    assert "account sub1: 0 open, flat" in lines["venue bybit"]
    assert lines["venue sim"].split()[-1] == "-"  # shown, nothing known of it
