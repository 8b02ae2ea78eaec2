"""The ccxt venue's user-data stream without a network: an event read into reports, the
sweep timer on a hand-driven clock, and the stream's bookkeeping — deduplication across
stream and REST, out-of-order statuses, foreign orders, malformed events, expiry."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D  # noqa: N817
from typing import Any

import pytest

from tests.unit.test_ccxt_fill_cursor import TradesExchange
from titan_exec.adapters.venue.ccxt_userevents import (
    MalformedEvent,
    SweepTimer,
    read_order_update,
    read_positions,
)
from titan_exec.adapters.venue.ccxt_venue import CcxtSettings, CcxtVenue
from titan_exec.clock import wall_clock_ms
from titan_exec.core.model import ClientOrderId, Side

OURS = "tx" + "0" * 24 + "c0"


def update(x: str = "TRADE", status: str = "PARTIALLY_FILLED", **o: Any) -> dict[str, Any]:
    body = {
        "s": "BTCUSDT",
        "c": OURS,
        "S": "BUY",
        "o": "MARKET",
        "q": "0.030",
        "p": "0",
        "x": x,
        "X": status,
        "i": 4000000001,
        "l": "0.010",
        "z": "0.010",
        "L": "60003.00",
        "n": "0.30001500",
        "N": "USDT",
        "T": 1_700_000_000_000,
        "t": 900000001,
    }
    body.update(o)
    return {"e": "ORDER_TRADE_UPDATE", "E": body["T"], "T": body["T"], "o": body}


def symbol_of(market_id: str) -> str | None:
    return {"BTCUSDT": "BTC/USDT"}.get(market_id)


# --- an event read ----------------------------------------------------------------------------


def test_a_trade_event_is_an_order_report_and_a_fill_in_decimals() -> None:
    read = read_order_update(update(), venue="binance", account="main", symbol_of=symbol_of)
    assert read.order.status == "PARTIALLY_FILLED" and read.order.filled_qty == D("0.010")
    fill = read.fill
    assert fill is not None
    assert (fill.symbol, fill.client_order_id, fill.venue_order_id, fill.trade_id) == (
        "BTC/USDT",
        OURS,
        "4000000001",
        "900000001",
    )
    assert (fill.side, fill.price, fill.qty, fill.fee) == (
        Side.BUY,
        D("60003.00"),
        D("0.010"),
        D("0.30001500"),
    )


def test_an_update_without_a_trade_carries_no_fill() -> None:
    read = read_order_update(
        update("CANCELED", "CANCELED"), venue="b", account="a", symbol_of=symbol_of
    )
    assert read.fill is None and read.order.status == "CANCELED"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"L": 60003.0}, "not a decimal string"),
        ({"l": "abc"}, "not a number"),
        ({"s": "XYZUSDT"}, "unknown symbol"),
        ({"X": "HALF_DONE"}, "unknown order status"),
        ({"c": ""}, "'c' missing"),
        ({"S": "HOLD"}, "unknown side"),
    ],
)
def test_a_malformed_event_names_what_is_wrong(change: dict[str, Any], why: str) -> None:
    with pytest.raises(MalformedEvent, match=why):
        read_order_update(update(**change), venue="b", account="a", symbol_of=symbol_of)


def test_positions_of_an_account_update() -> None:
    doc = {"e": "ACCOUNT_UPDATE", "a": {"P": [{"s": "BTCUSDT", "pa": "-0.010"}]}}
    assert read_positions(doc) == {"BTCUSDT": D("-0.010")}
    with pytest.raises(MalformedEvent):
        read_positions({"e": "ACCOUNT_UPDATE"})


# --- the sweep timer ------------------------------------------------------------------------


def test_the_first_sweep_is_due_at_once_then_only_by_reason_silence_or_interval() -> None:
    t = SweepTimer(silence_ms=1000, interval_ms=10_000)
    assert t.due(0, has_open_orders=False) == "start"
    t.swept(0, "start")
    assert t.due(500, has_open_orders=True) is None
    t.on_event(800)
    assert t.due(1500, has_open_orders=True) is None  # an event 700 ms ago
    assert t.due(1800, has_open_orders=True) == "silent"
    assert t.due(1800, has_open_orders=False) is None  # a quiet account is no alarm
    assert t.due(10_000, has_open_orders=False) == "interval"
    t.request("connect")
    t.request("expired")
    assert t.due(2000, has_open_orders=False) == "connect,expired"


def test_a_reason_requested_during_a_sweep_stays_pending() -> None:
    t = SweepTimer(silence_ms=1000, interval_ms=10_000)
    reason = t.due(0, has_open_orders=False)
    assert reason == "start"
    t.request("connect")  # while the sweep ran
    t.swept(100, reason)
    assert t.due(100, has_open_orders=False) == "connect"


# --- the stream's bookkeeping ---------------------------------------------------------------


class Markets(TradesExchange):
    def __init__(self) -> None:
        super().__init__()
        self.markets_by_id = {"BTCUSDT": [{"symbol": "BTC/USDT:USDT", "swap": True}]}


def stream_venue() -> tuple[CcxtVenue, Markets]:
    fake = Markets()
    v = CcxtVenue(CcxtSettings(exchange_id="binanceusdm", name="sim"))
    v.exchange = v._writer = fake
    assert v.stream is not None
    v.stream.start = lambda: None  # type: ignore[method-assign]  # no socket in a unit test
    v.stream._activity = asyncio.Event()
    return v, fake


async def test_a_trade_sent_twice_is_reported_once() -> None:
    v, _ = stream_venue()
    assert v.stream is not None
    v.stream.timer.swept(wall_clock_ms(), "start")
    v.stream.on_message(update())
    v.stream.on_message(update())
    fills, cursor = await v.fills_since("{}", frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000001"]
    assert v.stream.stats["duplicate_stream"] == 1 and cursor == "{}"  # no sweep was due


async def test_a_trade_the_sweep_also_returns_is_reported_once() -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    fake.trade(900000001, "4000000001")
    v.stream.on_message(update())  # buffered; then a new session sweeps the same trade
    fills, _ = await v.fills_since(None, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000001"]
    assert v.stream.stats["duplicate_rest"] == 1 and v.stream.stats["sweeps"] == 1
    v.stream.on_message(update(t=900000002))  # the stream goes on; the REST cursor too
    fills, _ = await v.fills_since(_, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000002"]


async def test_a_late_stream_event_of_a_swept_trade_is_skipped() -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    fake.trade(900000001, "4000000001")
    fills, cursor = await v.fills_since(None, frozenset({"BTC/USDT"}))
    assert len(fills) == 1
    v.stream.on_message(update())
    again, _ = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert again == [] and v.stream.stats["duplicate_rest"] == 1


async def test_partially_filled_after_filled_is_counted_and_its_trade_still_reported() -> None:
    v, _ = stream_venue()
    assert v.stream is not None
    v.stream.timer.swept(wall_clock_ms(), "start")
    v.stream.on_message(update(status="FILLED", z="0.030"))
    v.stream.on_message(update(status="PARTIALLY_FILLED", t=900000002))
    assert v.stream.stats["out_of_order"] == 1
    assert v.stream.orders[ClientOrderId(OURS)].status == "FILLED"  # the final status stands
    fills, _ = await v.fills_since("{}", frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000001", "900000002"]


async def test_a_foreign_order_is_counted_and_reported() -> None:
    v, _ = stream_venue()
    assert v.stream is not None
    v.stream.timer.swept(wall_clock_ms(), "start")
    v.stream.on_message(update(c="by-hand-1"))
    fills, _ = await v.fills_since("{}", frozenset({"BTC/USDT"}))
    assert [f.client_order_id for f in fills] == ["by-hand-1"]
    assert v.stream.stats["foreign_order"] == 1


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        update(L=1.5),
        update(s="XYZUSDT"),
        {"e": "ACCOUNT_UPDATE", "a": {"P": [{"s": "BTCUSDT", "pa": None}]}},
    ],
)
async def test_a_malformed_event_is_counted_and_a_sweep_follows(message: Any) -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    v.stream.timer.swept(wall_clock_ms(), "start")
    v.stream.on_message(message)
    assert v.stream.stats["malformed"] == 1
    fake.trade(900000001, "4000000001")  # the trade the event carried is found by REST
    fills, _ = await v.fills_since("{}", frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000001"] and v.stream.stats["sweeps"] == 1


async def test_listen_key_expired_asks_for_a_sweep() -> None:
    v, _ = stream_venue()
    assert v.stream is not None
    v.stream.timer.swept(wall_clock_ms(), "start")
    v.stream.on_message({"e": "listenKeyExpired", "E": 1, "listenKey": "k"})
    assert v.stream.stats["listen_key_expired"] == 1
    assert v.stream.sweep_due(has_open_orders=False) == "expired"


async def test_non_flat_positions_are_swept_too() -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    v.stream.on_message({"e": "ACCOUNT_UPDATE", "a": {"P": [{"s": "BTCUSDT", "pa": "0.010"}]}})
    assert v.stream.position_symbols() == frozenset({"BTC/USDT"})
    await v.fills_since(None, frozenset())  # no open order, but a position
    assert len(fake.calls) == 1


def test_polling_when_the_stream_is_off_or_the_venue_has_none() -> None:
    assert CcxtVenue(CcxtSettings(user_stream=False)).stream is None
    assert CcxtVenue(CcxtSettings(exchange_id="bybit")).stream is None


async def test_a_symbol_new_since_the_last_sweep_is_swept_alone() -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    _, cursor = await v.fills_since(None, frozenset())  # the session's sweep: nothing open
    assert fake.calls == []  # no symbol to sweep
    fake.trade(900000001, "4000000001")  # before the stream was there
    fills, cursor = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000001"]
    assert v.stream.stats["symbol_sweeps"] == 1 and len(fake.calls) == 1
    await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert len(fake.calls) == 1  # covered now: no more REST


async def test_pushed_fills_go_first_and_the_new_symbol_is_swept_at_the_next_call() -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    _, cursor = await v.fills_since(None, frozenset())
    v.stream.on_message(update())
    fills, cursor = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000001"] and fake.calls == []
    await v.wait_activity(5.0)  # returns at once: the deferred sweep is due
    await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert len(fake.calls) == 1


async def test_waiting_is_edge_triggered_a_buffered_fill_wakes_once() -> None:
    """A fill pushed while the driver's poll is in flight wakes the driver once; waiting
    again blocks (never a busy loop that starves the event loop)."""
    v, _ = stream_venue()
    assert v.stream is not None
    await v.fills_since(None, frozenset({"BTC/USDT"}))  # the first sweeps are done
    v.stream.on_message(update())
    loop = asyncio.get_running_loop()
    started = loop.time()
    await v.wait_activity(5.0)
    assert loop.time() - started < 0.5  # woken at once
    started = loop.time()
    await v.wait_activity(0.3)
    assert loop.time() - started >= 0.25  # the same fill does not wake it again


def test_an_event_after_a_long_silence_asks_for_a_sweep() -> None:
    t = SweepTimer(silence_ms=1000, interval_ms=10_000)
    t.swept(0, "start")
    t.on_event(500)
    assert t.due(600, has_open_orders=False) is None
    t.on_event(2000)  # silent for 1.5 s, then back: what came meanwhile may be lost
    assert t.due(2000, has_open_orders=False) == "resumed"


async def test_an_order_filled_beyond_what_the_stream_said_is_swept_once() -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    _, cursor = await v.fills_since(None, frozenset({"BTC/USDT"}))
    fake.trade(900000001, "4000000001")  # the stream lost it
    order = {
        "id": "4000000001",
        "clientOrderId": OURS,
        "symbol": "BTC/USDT:USDT",
        "status": "closed",
        "amount": 0.01,
        "filled": 0.01,
        "info": {"status": "FILLED", "origQty": "0.010", "executedQty": "0.010"},
    }
    running = v.stream._task = asyncio.create_task(asyncio.sleep(60))  # for the check
    v.report(order)
    fills, cursor = await v.fills_since(cursor, frozenset({"BTC/USDT"}))
    assert [f.trade_id for f in fills] == ["900000001"]
    assert v.stream.stats["order_gaps"] == 1
    v.report(order)  # the same answer again: already swept for, no second sweep
    assert v.stream.stats["order_gaps"] == 1
    running.cancel()


async def test_a_position_the_stream_never_reported_is_swept() -> None:
    v, fake = stream_venue()
    assert v.stream is not None
    _, cursor = await v.fills_since(None, frozenset())
    running = v.stream._task = asyncio.create_task(asyncio.sleep(60))
    fake.trade(900000001, "4000000001")
    v.stream.book.check_positions({"BTC/USDT": D("0.010")})
    v.stream.book.check_positions({"BTC/USDT": D("0.010")})  # once per quantity
    assert v.stream.stats["position_gaps"] == 1
    fills, _ = await v.fills_since(cursor, frozenset())
    assert [f.trade_id for f in fills] == ["900000001"]  # its symbol swept, no order open
    running.cancel()
