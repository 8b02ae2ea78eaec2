"""Routing between several venues: the core picks the venue (the intent's `exchange`, its
subject's token, `auto` → the default), and the shell's `Drivers` sends each order to its
venue's execution driver; a venue the instance does not have is the core's refusal."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest

from tests.builders import (
    NOW,
    accepted,
    acknowledged,
    decide_received,
    filled,
    genesis,
    intent_payload,
    signed,
    submitted,
)
from tests.unit.test_driver import Log, ScriptedVenue, clock
from titan_exec.adapters.nats.eventlog import EventLog
from titan_exec.adapters.venue.base import Venue
from titan_exec.api.metrics import Metrics
from titan_exec.config import OrdersConfig, load
from titan_exec.core.decide import DecisionConfig, route_venue
from titan_exec.core.events import OrderAccepted
from titan_exec.core.model import ClientOrderId, OrderStatus, client_order_id
from titan_exec.core.risk import MarketView, Ticker
from titan_exec.core.snapshot import capture, encode_snapshot, restore
from titan_exec.core.state import State, apply, replay, state_hash
from titan_exec.runtime.driver import ExecutionDriver
from titan_exec.runtime.market import MarketData
from titan_exec.runtime.nodeparts import decision_config
from titan_exec.runtime.venues import Drivers, VenueSet
from titan_exec.wire.ingress import ReceivedCommand

CFG = DecisionConfig(venues=frozenset({"binance", "bybit"}), default_venue="binance")


def view() -> MarketView:
    tickers = {
        (v, "BTC/USDT"): Ticker(Decimal("50000"), Decimal("50001"), NOW)
        for v in ("binance", "bybit")
    }
    equity = {"binance": Decimal(100_000), "bybit": Decimal(100_000)}
    return MarketView(now_ms=NOW, last_heartbeat_ms=NOW, tickers=tickers, equity=equity)


def decide(token: str, **payload: Any) -> Any:
    state = replay([genesis(armed=True)])
    subject = f"titan.cmd.exec.place.v1.{token}.main.BTC_USDT"
    data = signed(intent_payload("sig-1", **payload))
    cmd = ReceivedCommand(seq=1, subject=subject, data=data, t_ingress_ms=NOW)
    return decide_received(state, cmd, CFG, view())


def venue_of(decision: Any) -> str:
    assert decision.refusal is None, decision.refusal
    orders = [e for e in decision.events if isinstance(e, OrderAccepted)]
    assert len(orders) == 1
    return orders[0].venue


@pytest.mark.parametrize(
    ("token", "payload", "venue"),
    [
        ("auto", {"exchange": "bybit"}, "bybit"),  # the brain's forwardSignal
        ("auto", {"exchange": "BYBIT"}, "bybit"),  # lower-cased, as the brain means it
        ("bybit", {}, "bybit"),  # the subject's token
        ("auto", {}, "binance"),  # auto: the default
        ("auto", {"exchange": "auto"}, "binance"),
        ("bybit", {"exchange": "binance"}, "binance"),  # the payload wins, as before
    ],
)
def test_an_intent_goes_to_the_venue_it_names(
    token: str, payload: dict[str, str], venue: str
) -> None:
    decision = decide(token, **payload)
    assert venue_of(decision) == venue
    assert decision.submit == (client_order_id("sig-1", venue, 0),)


def test_an_exchange_no_venue_has_is_refused_with_its_reason() -> None:
    decision = decide("auto", exchange="okx")
    assert decision.refusal is not None and decision.refusal.code == "unknown_venue"
    assert decision.refusal.message == "venue 'okx' is not configured"
    assert decision.submit == ()


def test_route_venue_keeps_a_configured_name_as_it_is() -> None:
    cfg = DecisionConfig(venues=frozenset({"Sim"}), default_venue="Sim")  # an old name
    assert route_venue("Sim", "auto", cfg) == "Sim"
    assert route_venue(None, "auto", cfg) == "Sim"


def test_an_order_carries_the_account_its_venue_trades() -> None:
    state = replay([genesis(armed=True)])
    cfg = DecisionConfig(venues=CFG.venues, default_venue="binance", accounts={"bybit": "sub1"})
    subject = "titan.cmd.exec.place.v1.auto.main.BTC_USDT"
    data = signed(intent_payload("sig-1", exchange="bybit"))
    cmd = ReceivedCommand(seq=1, subject=subject, data=data, t_ingress_ms=NOW)
    decision = decide_received(state, cmd, cfg, view())
    assert {e.account for e in decision.events} == {"sub1"}  # the decision and the order
    data = signed(intent_payload("sig-2"))
    cmd = ReceivedCommand(seq=2, subject=subject, data=data, t_ingress_ms=NOW)
    assert {e.account for e in decide_received(state, cmd, cfg, view()).events} == {"main"}


def test_the_decision_config_of_several_venues(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[routing]\ndefault = "b"\n[venues.a]\naccount = "x"\n[venues.b]\n')
    dcfg = decision_config(load(f, env={}, require_secret=False), ["a", "b"], "b")
    assert (dcfg.venues, dcfg.default_venue) == (frozenset({"a", "b"}), "b")
    assert dcfg.accounts == {"a": "x", "b": "main"}
    with pytest.raises(ValueError, match="not among"):
        decision_config(load(None, env={}, require_secret=False), ["a"], "b")


class NamedVenue(ScriptedVenue):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def runner(log: Log, venue: NamedVenue) -> ExecutionDriver:
    return ExecutionDriver(
        venue=cast(Venue, venue),
        events=cast(EventLog, log),
        market=MarketData(clock),
        metrics=Metrics(),
        cfg=OrdersConfig(poll_interval_ms=5, in_doubt_query_after_ms=10),
        account="main",
        clock=clock,
    )


async def test_each_order_is_written_ahead_and_sent_by_its_venue_driver() -> None:
    a, b = ClientOrderId("ca"), ClientOrderId("cb")
    log = Log([genesis(), accepted(a, venue="binance"), accepted(b, venue="bybit")])
    binance, bybit = NamedVenue("binance"), NamedVenue("bybit")
    drivers = Drivers(
        {"binance": runner(log, binance), "bybit": runner(log, bybit)}, lambda: log.state
    )
    fut = drivers.write_ahead((a, b))  # a flatten's orders span venues: one future for all
    assert fut is not None
    await fut
    assert {log.state.orders[c].status for c in (a, b)} == {OrderStatus.SUBMITTED}
    await asyncio.gather(drivers.send_written_ahead(a), drivers.send_written_ahead(b))
    assert [r.client_order_id for r in binance.placed] == [a]
    assert [r.client_order_id for r in bybit.placed] == [b]
    drivers.request_cancel(b, "flatten")
    await asyncio.sleep(0.05)
    assert bybit.canceled == [b] and binance.canceled == []
    drivers.ingress_perf[a] = 1.0
    assert drivers.runners["binance"].ingress_perf is drivers.ingress_perf
    await drivers.stop()


async def test_an_order_of_a_venue_no_longer_configured_is_left_alone_and_counted() -> None:
    cx = ClientOrderId("cx")
    log = Log([genesis(), accepted(cx, venue="okx")])  # the stream's, from an old config
    binance = NamedVenue("binance")
    drivers = Drivers({"binance": runner(log, binance)}, lambda: log.state)
    drivers.request_cancel(cx, "flatten")
    assert drivers.write_ahead((cx,)) is None
    await drivers.send_written_ahead(cx)
    assert drivers.orphans == 3 and log.written == [] and binance.placed == []
    assert log.state.orders[cx].status is OrderStatus.ACCEPTED
    await drivers.stop()


def test_the_venue_set_puts_the_default_first_and_checks_names() -> None:
    a, b = NamedVenue("a"), NamedVenue("b")
    venues = VenueSet({"a": cast(Venue, a), "b": cast(Venue, b)}, "b")
    assert venues.names == ("b", "a") and venues.default_venue is b
    assert venues.get("A") is a and venues.get("c") is None
    with pytest.raises(ValueError, match="default"):
        VenueSet({"a": cast(Venue, a)}, "b")
    with pytest.raises(ValueError, match="calls itself"):
        VenueSet({"x": cast(Venue, a)}, "x")


def test_positions_are_kept_per_venue() -> None:
    state: State = replay([genesis()])
    for coid, venue in (("ca", "binance"), ("cb", "bybit")):
        for ev in (accepted(coid, venue=venue, qty="2"), submitted(coid), acknowledged(coid)):
            state = apply(state, ev)
    state = apply(state, filled("ca", "t1", qty="2", venue="binance"))
    state = apply(state, filled("cb", "t1", qty="1", venue="bybit"))  # trade ids per venue
    assert state.position("binance", "BTC/USDT").qty == Decimal(2)
    assert state.position("bybit", "BTC/USDT").qty == Decimal(1)


def two_venue_state(second: str = "bybit") -> State:
    state: State = replay([genesis()])
    for coid, venue, qty in (("ca", "binance", "2"), ("cb", second, "1"), ("cc", second, "3")):
        for ev in (accepted(coid, venue=venue, qty=qty), submitted(coid), acknowledged(coid)):
            state = apply(state, ev)
    state = apply(state, filled("ca", "t1", qty="2", venue="binance"))
    return apply(state, filled("cb", "t1", qty="1", venue=second))  # cc stays open


def test_the_state_hash_and_a_snapshot_cover_every_venue() -> None:
    state = two_venue_state()
    _, data = encode_snapshot(capture(state), nonces=[], ns="exec", shard="main", watermark_seq=9)
    restored = restore(data).state
    assert state_hash(restored) == state_hash(state)
    assert restored.position("bybit", "BTC/USDT").qty == Decimal(1)
    assert restored.open_orders == state.open_orders  # bybit's resting order
    # the same orders and fills on another venue name are another state
    assert state_hash(two_venue_state("okx")) != state_hash(state)
