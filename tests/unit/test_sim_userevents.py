"""The simulator's user-data events, read off the engine's records: what each change of an
order becomes (NEW, TRADE with PARTIALLY_FILLED / FILLED, CANCELED, EXPIRED), in order,
with decimal strings at the symbol's precision."""

from __future__ import annotations

from decimal import Decimal as D  # noqa: N817
from typing import Any

from titan_exec.adapters.venue.exchange.engine import Engine, EngineConfig, OrderRequest
from titan_exec_lab.sim.userevents import EventTracker

T0 = 1_700_000_000_000


def make(**config: Any) -> tuple[Engine, EventTracker]:
    engine = Engine(EngineConfig(seed=1, origin_ms=T0, **config))
    engine.pin_mid("BTCUSDT", D(60000))  # bid 59997.0 / ask 60003.0
    tracker = EventTracker()
    assert tracker.events(engine, T0) == []  # adopted: no events for its history
    return engine, tracker


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (e["e"], e["o"]["x"], e["o"]["X"]) if e["e"] == "ORDER_TRADE_UPDATE" else (e["e"],)
        for e in events
    ]


def test_a_market_order_in_slices_is_new_then_trades_then_filled() -> None:
    engine, tracker = make(fill_slices=2, slice_interval_ms=100)
    engine.place_order(OrderRequest("BTCUSDT", "BUY", "MARKET", "0.020", client_order_id="a"), T0)
    first = tracker.events(engine, T0)
    assert kinds(first) == [
        ("ORDER_TRADE_UPDATE", "NEW", "NEW"),
        ("ORDER_TRADE_UPDATE", "TRADE", "PARTIALLY_FILLED"),
        ("ACCOUNT_UPDATE",),
    ]
    trade = first[1]["o"]
    assert (trade["c"], trade["l"], trade["z"], trade["L"], trade["N"]) == (
        "a",
        "0.010",
        "0.010",
        "60003.00",
        "USDT",
    )
    assert trade["n"] == "0.30001500"  # 60003 * 0.01 * 0.0005, at 8 decimals
    assert first[2]["a"]["P"][0]["pa"] == "0.010"
    engine.tick(T0 + 100)
    second = tracker.events(engine, T0 + 100)
    assert kinds(second) == [("ORDER_TRADE_UPDATE", "TRADE", "FILLED"), ("ACCOUNT_UPDATE",)]
    assert second[0]["o"]["z"] == "0.020" and second[0]["o"]["t"] == engine.trades[-1].trade_id
    assert tracker.events(engine, T0 + 200) == []  # nothing changed: nothing sent


def test_a_canceled_limit_and_an_expired_reduce_only_are_announced() -> None:
    engine, tracker = make(fill_slices=1)
    engine.place_order(
        OrderRequest("BTCUSDT", "BUY", "LIMIT", "0.010", "50000.0", "l", time_in_force="GTC"), T0
    )
    engine.cancel_order("BTCUSDT", None, "l", T0 + 1)
    assert kinds(tracker.events(engine, T0 + 1)) == [
        ("ORDER_TRADE_UPDATE", "NEW", "NEW"),
        ("ORDER_TRADE_UPDATE", "CANCELED", "CANCELED"),
    ]
    engine.place_order(OrderRequest("BTCUSDT", "BUY", "MARKET", "0.010", client_order_id="b"), T0)
    engine.place_order(
        OrderRequest(
            "BTCUSDT", "SELL", "LIMIT", "0.020", "70000.0", "r", "true", time_in_force="GTC"
        ),
        T0 + 2,
    )
    engine.place_order(OrderRequest("BTCUSDT", "SELL", "MARKET", "0.010", client_order_id="c"), T0)
    engine.tick(T0 + 3)  # flat: the resting reduce-only order expires at its next slice
    engine.pin_mid("BTCUSDT", D(80000))
    engine.tick(T0 + 4)
    events = tracker.events(engine, T0 + 4)
    assert ("ORDER_TRADE_UPDATE", "EXPIRED", "EXPIRED") in kinds(events)
    numbers = [e["o"][k] for e in events if "o" in e for k in ("q", "p", "l", "z", "L", "ap")]
    assert all(isinstance(v, str) for v in numbers)  # decimal strings, never floats
