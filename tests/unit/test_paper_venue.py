"""The paper venue behaves like a futures venue in miniature, with exact numbers.

It is the exchange model (`adapters/venue/exchange`) behind the `Venue` port; the knobs
(faults, inspection, external trades) are the test-side `InstrumentedPaper`'s."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.paper import InstrumentedPaper
from titan_exec.adapters.venue.base import (
    Venue,
    VenueRejected,
    VenueUnavailable,
    VenueUnknownOutcome,
)
from titan_exec.adapters.venue.paper import PaperVenue
from titan_exec.core.model import ClientOrderId, OrderType, Side
from titan_exec.core.reports import BalanceReport, PlaceRequest

D = Decimal
SYM = "BTC/USDT"


class Clock:
    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def req(
    coid: str,
    side: Side = Side.BUY,
    qty: str = "0.1",
    *,
    limit: str | None = None,
    reduce_only: bool = False,
    symbol: str = SYM,
) -> PlaceRequest:
    return PlaceRequest(
        client_order_id=ClientOrderId(coid),
        symbol=symbol,
        side=side,
        order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
        qty=D(qty),
        limit_price=D(limit) if limit is not None else None,
        is_reduce_only=reduce_only,
    )


def venue(
    *,
    fill_slices: int = 1,
    slice_interval_ms: int = 0,
    taker_fee_bps: str = "4",
) -> InstrumentedPaper:
    """A venue with BTC/USDT quoted 50000 / 50010."""
    v = InstrumentedPaper(
        clock=Clock(),
        fill_slices=fill_slices,
        slice_interval_ms=slice_interval_ms,
        taker_fee_bps=D(taker_fee_bps),
    )
    v.on_ticker(SYM, D("50000"), D("50010"), 1_000)
    return v


def test_is_a_venue() -> None:
    v: Venue = PaperVenue()
    assert v.name == "sim"


@pytest.mark.parametrize(
    "knob", ["place_count", "all_orders", "all_fills", "book_external_trade", "faults"]
)
def test_the_test_knobs_are_not_on_the_production_adapter(knob: str) -> None:
    assert not hasattr(PaperVenue(), knob)
    assert hasattr(InstrumentedPaper(), knob)


async def test_slices_are_equal_on_a_1e8_step_the_last_takes_the_remainder() -> None:
    v = venue(fill_slices=3)
    await v.place(req("c1", Side.BUY, "1"))
    assert [f.qty for f in v.all_fills()] == [D("0.33333333"), D("0.33333333"), D("0.33333334")]
    await v.place(req("c2", Side.BUY, "0.00000002"))  # less than a step per slice
    assert [f.qty for f in v.all_fills()[3:]] == [D("0.00000001"), D("0.00000001")]


async def test_a_quantity_finer_than_1e8_is_refused() -> None:
    v = venue()
    with pytest.raises(VenueRejected, match="Precision is over the maximum"):
        await v.place(req("c1", qty="0.000000001"))


async def test_market_buy_fills_at_ask_with_taker_fee() -> None:
    v = venue()
    placed = await v.place(req("c1", Side.BUY, "0.1"))
    assert placed.status == "FILLED"
    assert placed.venue_order_id == "sim-O1"
    fills, cursor = await v.fills_since(None)
    assert cursor == "1"
    [fill] = fills
    assert (fill.price, fill.qty, fill.fee, fill.fee_currency) == (
        D("50010"),
        D("0.1"),
        D("2.0004"),  # 50010 * 0.1 * 4 / 10000
        "USDT",
    )
    assert fill.trade_id == "sim-T1"
    assert fill.client_order_id == "c1"
    assert fill.side is Side.BUY


async def test_market_sell_fills_at_bid_with_taker_fee() -> None:
    v = venue()
    await v.place(req("c1", Side.SELL, "0.2"))
    [fill] = v.all_fills()
    assert (fill.price, fill.qty, fill.fee) == (D("50000"), D("0.2"), D("4"))


async def test_market_order_without_a_price_is_rejected() -> None:
    v = InstrumentedPaper()
    with pytest.raises(VenueRejected, match="no market price for ETH/USDT") as err:
        await v.place(req("c1", symbol="ETH/USDT"))
    assert not err.value.is_duplicate
    [order] = v.all_orders()
    assert order.status == "REJECTED"
    assert v.all_fills() == []


@pytest.mark.parametrize("qty", ["0", "-1"])
async def test_non_positive_quantity_is_rejected(qty: str) -> None:
    v = venue()
    with pytest.raises(VenueRejected, match=r"less than or equal to zero|Illegal characters"):
        await v.place(req("c1", qty=qty))
    assert v.all_fills() == []


async def test_limit_rests_then_fills_at_its_price_as_maker_on_a_cross() -> None:
    v = venue()
    placed = await v.place(req("c1", Side.BUY, "0.02", limit="49900"))
    assert placed.status == "NEW"
    [open_order] = await v.open_orders(SYM)
    assert (open_order.status, open_order.qty, open_order.filled_qty) == ("NEW", D("0.02"), D("0"))

    v.on_ticker(SYM, D("49940"), D("49950"), 2_000)
    assert v.all_fills() == []
    v.on_ticker(SYM, D("49880"), D("49890"), 3_000)  # ask below the limit: fills AT the limit
    [fill] = v.all_fills()
    assert (fill.price, fill.qty, fill.fee) == (D("49900"), D("0.02"), D("0.1996"))
    report = await v.query_order(SYM, ClientOrderId("c1"))
    assert report is not None
    assert (report.status, report.filled_qty) == ("FILLED", D("0.02"))
    assert await v.open_orders() == []


async def test_limit_sell_fills_when_bid_reaches_it() -> None:
    v = venue()
    await v.place(req("c1", Side.SELL, "1", limit="50100"))
    v.on_ticker(SYM, D("50099"), D("50110"), 2_000)
    assert v.all_fills() == []
    v.on_ticker(SYM, D("50100"), D("50110"), 3_000)
    [fill] = v.all_fills()
    assert (fill.price, fill.fee) == (D("50100"), D("10.02"))  # maker, 2 bps


async def test_marketable_buy_limit_fills_at_once_as_taker_at_the_ask() -> None:
    v = venue()
    placed = await v.place(req("c1", Side.BUY, "0.1", limit="50100"))
    assert placed.status == "FILLED"
    [fill] = v.all_fills()
    # the book, not the limit: the limit only bounds the price (price improvement)
    assert (fill.price, fill.fee) == (D("50010"), D("2.0004"))  # taker, 4 bps


async def test_marketable_sell_limit_far_below_the_book_fills_at_the_bid() -> None:
    v = venue()
    placed = await v.place(req("c1", Side.SELL, "100", limit="1"))  # issue 12's short
    assert placed.status == "FILLED"
    [fill] = v.all_fills()
    assert (fill.price, fill.qty, fill.fee) == (D("50000"), D("100"), D("2000"))
    [position] = await v.positions()
    assert (position.qty, position.entry_price) == (D("-100"), D("50000"))


async def test_a_limit_at_the_touch_is_marketable_and_one_inside_it_rests() -> None:
    v = venue()
    assert (await v.place(req("b1", Side.BUY, "0.1", limit="50010"))).status == "FILLED"
    assert (await v.place(req("s1", Side.SELL, "0.1", limit="50000"))).status == "FILLED"
    assert [f.price for f in v.all_fills()] == [D("50010"), D("50000")]
    assert (await v.place(req("b2", Side.BUY, "0.1", limit="50009.9"))).status == "NEW"
    assert (await v.place(req("s2", Side.SELL, "0.1", limit="50000.1"))).status == "NEW"
    assert len(v.all_fills()) == 2


async def test_partial_fills_arrive_in_slices_over_time() -> None:
    v = venue(fill_slices=3, slice_interval_ms=20)
    placed = await v.place(req("c1", Side.BUY, "1"))
    assert placed.status == "PARTIALLY_FILLED"
    fills, cursor = await v.fills_since(None)
    assert [f.qty for f in fills] == [D("0.33333333")]
    report = await v.query_order(SYM, ClientOrderId("c1"))
    assert report is not None
    assert (report.status, report.qty, report.filled_qty) == (
        "PARTIALLY_FILLED",
        D("1"),
        D("0.33333333"),
    )

    got = list(fills)
    while len(got) < 3:
        await asyncio.wait_for(v.wait_activity(5.0), 1.0)
        more, cursor = await v.fills_since(cursor)
        got += more
    assert [f.qty for f in got] == [D("0.33333333"), D("0.33333333"), D("0.33333334")]
    assert [f.trade_id for f in got] == ["sim-T1", "sim-T2", "sim-T3"]
    # 50010 * qty * 4 / 10000 per trade, each rounded half-up to 1e-8 (20.004 unrounded)
    assert [f.fee for f in got] == [D("6.66799993"), D("6.66799993"), D("6.66800013")]
    assert cursor == "3"
    report = await v.query_order(SYM, ClientOrderId("c1"))
    assert report is not None
    assert (report.status, report.filled_qty) == ("FILLED", D("1"))
    assert (await v.positions())[0].qty == 1


async def test_slices_without_interval_arrive_at_once() -> None:
    v = venue(fill_slices=3)
    assert (await v.place(req("c1", Side.SELL, "0.3"))).status == "FILLED"
    assert [f.qty for f in v.all_fills()] == [D("0.1"), D("0.1"), D("0.1")]


async def test_cancel_between_slices_cancels_the_rest() -> None:
    v = venue(fill_slices=2, slice_interval_ms=10)
    await v.place(req("c1", Side.BUY, "0.2"))
    assert (await v.cancel(SYM, ClientOrderId("c1"))).status == "CANCELED"
    await asyncio.sleep(0.05)
    report = await v.query_order(SYM, ClientOrderId("c1"))
    assert report is not None
    assert (report.status, report.qty, report.filled_qty) == ("CANCELED", D("0.2"), D("0.1"))
    assert [f.qty for f in v.all_fills()] == [D("0.1")]


async def test_wait_activity_returns_after_the_timeout_without_fills() -> None:
    v = venue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await v.wait_activity(0.02)
    assert loop.time() - start >= 0.015


async def test_close_cancels_pending_slices() -> None:
    v = venue(fill_slices=2, slice_interval_ms=30)
    await v.place(req("c1", Side.BUY, "0.2"))
    await v.close()
    await asyncio.sleep(0.06)
    assert [f.qty for f in v.all_fills()] == [D("0.1")]


async def test_duplicate_client_order_id_is_rejected_as_duplicate() -> None:
    v = venue()
    await v.place(req("c1"))
    with pytest.raises(VenueRejected) as err:
        await v.place(req("c1"))
    assert err.value.is_duplicate
    assert len(v.all_orders()) == 1
    assert len(v.all_fills()) == 1
    assert v.place_count == 2


async def test_the_id_of_a_rejected_order_is_used_up() -> None:
    v = venue()
    with pytest.raises(VenueRejected):
        await v.place(req("c1", qty="0"))
    with pytest.raises(VenueRejected) as err:
        await v.place(req("c1"))
    assert err.value.is_duplicate


async def test_reduce_only_fills_at_most_the_opposite_position_then_expires() -> None:
    v = venue()
    await v.place(req("open", Side.BUY, "0.01"))
    placed = await v.place(req("close", Side.SELL, "0.05", reduce_only=True))
    assert placed.status == "EXPIRED"
    report = await v.query_order(SYM, ClientOrderId("close"))
    assert report is not None
    assert (report.status, report.qty, report.filled_qty) == ("EXPIRED", D("0.05"), D("0.01"))
    [flat] = await v.positions()  # flat is reported as 0, never left out
    assert (flat.symbol, flat.qty) == (SYM, 0)


async def test_reduce_only_without_an_opposite_position_is_rejected() -> None:
    v = venue()
    with pytest.raises(VenueRejected, match="ReduceOnly Order is rejected") as err:
        await v.place(req("c1", Side.SELL, reduce_only=True))
    assert not err.value.is_duplicate
    await v.place(req("open", Side.BUY, "0.01"))
    with pytest.raises(VenueRejected, match="ReduceOnly Order is rejected"):
        await v.place(req("c2", Side.BUY, reduce_only=True))  # same side as the position


async def test_resting_reduce_only_expires_when_the_position_is_gone() -> None:
    v = venue()
    await v.place(req("open", Side.BUY, "0.1"))
    await v.place(req("tp", Side.SELL, "0.1", limit="51000", reduce_only=True))
    await v.place(req("flat", Side.SELL, "0.1"))
    v.on_ticker(SYM, D("51000"), D("51010"), 2_000)
    report = await v.query_order(SYM, ClientOrderId("tp"))
    assert report is not None
    assert report.status == "EXPIRED"
    assert len(v.all_fills()) == 2


async def test_cancel_a_resting_limit() -> None:
    v = venue()
    await v.place(req("c1", Side.BUY, "0.1", limit="49000"))
    assert (await v.cancel(SYM, ClientOrderId("c1"))).status == "CANCELED"
    report = await v.query_order(SYM, ClientOrderId("c1"))
    assert report is not None
    assert (report.status, report.filled_qty) == ("CANCELED", D("0"))
    assert await v.open_orders() == []
    v.on_ticker(SYM, D("48000"), D("48010"), 2_000)
    assert v.all_fills() == []
    assert (await v.cancel(SYM, ClientOrderId("c1"))).status == "CANCELED"


async def test_cancel_of_a_filled_order_answers_filled() -> None:
    v = venue()
    await v.place(req("c1"))
    assert (await v.cancel(SYM, ClientOrderId("c1"))).status == "FILLED"


async def test_cancel_and_query_of_unknown_orders() -> None:
    v = venue()
    assert (await v.cancel(SYM, ClientOrderId("nope"))).status == "NOT_FOUND"
    assert await v.query_order(SYM, ClientOrderId("nope")) is None
    await v.place(req("c1", limit="49000"))
    assert (await v.cancel("ETH/USDT", ClientOrderId("c1"))).status == "NOT_FOUND"


async def test_lost_response_the_order_exists_at_the_venue() -> None:
    v = venue()
    v.faults.lose_next = 1
    with pytest.raises(VenueUnknownOutcome):
        await v.place(req("c1"))
    report = await v.query_order(SYM, ClientOrderId("c1"))
    assert report is not None
    assert report.status == "FILLED"
    assert v.place_count == 1
    assert len(v.all_orders()) == 1
    assert len(v.all_fills()) == 1
    assert v.faults.lose_next == 0
    assert (await v.place(req("c2"))).status == "FILLED"


async def test_fail_next_place_raises_once_without_placing() -> None:
    v = venue()
    v.fail_next_place = VenueUnavailable("connection refused")
    with pytest.raises(VenueUnavailable):
        await v.place(req("c1"))
    assert v.place_count == 0
    assert v.all_orders() == []
    assert (await v.place(req("c1"))).status == "FILLED"
    assert v.place_count == 1


async def test_hidden_order_is_invisible_until_the_time_passes() -> None:
    clock = Clock(10_000)
    v = InstrumentedPaper(clock=clock)
    v.faults.invisible_ms = 500
    await v.place(req("c1", limit="49000"))
    assert await v.query_order(SYM, ClientOrderId("c1")) is None
    assert await v.open_orders() == []
    clock.now = 10_499
    assert await v.query_order(SYM, ClientOrderId("c1")) is None
    clock.now = 10_500
    report = await v.query_order(SYM, ClientOrderId("c1"))
    assert report is not None
    assert (report.status, report.venue_order_id, report.ts_ms) == ("NEW", "sim-O1", 10_000)
    assert len(await v.open_orders(SYM)) == 1


async def test_latency_delays_each_order_request() -> None:
    v = venue()
    v.faults.latency_ms = 20
    loop = asyncio.get_running_loop()
    start = loop.time()
    await v.open_orders()
    assert loop.time() - start >= 0.015


def usdt(total: str) -> BalanceReport:
    """The paper venue's only balance: cash, all of it free."""
    return BalanceReport("USDT", total=D(total), free=D(total), used=D(0))


async def test_round_trip_positions_balance_and_equity() -> None:
    v = venue()
    await v.place(req("open", Side.BUY, "0.1"))  # at 50010, fee 2.0004
    [pos] = await v.positions()
    assert (pos.symbol, pos.qty, pos.entry_price) == (SYM, D("0.1"), D("50010"))
    assert await v.balances() == [usdt("99997.9996")]

    v.on_ticker(SYM, D("51000"), D("51010"), 2_000)
    assert await v.equity() == D("100097.4996")  # + (51005 - 50010) * 0.1

    await v.place(req("close", Side.SELL, "0.1"))  # at 51000, fee 2.04, realised 99
    assert [(p.symbol, p.qty) for p in await v.positions()] == [(SYM, 0)]
    assert await v.balances() == [usdt("100094.9596")]
    assert await v.equity() == D("100094.9596")


async def test_pyramid_and_flip_keep_a_netted_position() -> None:
    v = venue(taker_fee_bps="0")
    await v.place(req("a", Side.BUY, "0.1"))  # 0.1 @ 50010
    v.on_ticker(SYM, D("49990"), D("50000"), 2_000)
    await v.place(req("b", Side.BUY, "0.3"))  # 0.3 @ 50000
    [pos] = await v.positions()
    assert (pos.qty, pos.entry_price) == (D("0.4"), D("50002.5"))

    v.on_ticker(SYM, D("51002.5"), D("51010"), 3_000)
    await v.place(req("c", Side.SELL, "0.6"))  # closes 0.4 (+400), opens 0.2 short
    [pos] = await v.positions()
    assert (pos.qty, pos.entry_price) == (D("-0.2"), D("51002.5"))
    assert await v.balances() == [usdt("100400")]


async def test_positions_report_flat_explicitly_and_every_symbol_asked_about() -> None:
    """A missing report means unknown to the service, so the paper venue, which knows its
    whole book, never leaves a symbol out: flat is an explicit 0."""
    v = venue()
    assert await v.positions() == []  # nothing held, nothing asked
    [eth] = await v.positions(frozenset({"ETH/USDT"}))
    assert (eth.symbol, eth.qty) == ("ETH/USDT", 0)
    await v.place(req("open", Side.BUY, "0.1"))
    got = {p.symbol: p.qty for p in await v.positions(frozenset({SYM, "ETH/USDT"}))}
    assert got == {SYM: D("0.1"), "ETH/USDT": 0}


async def test_an_external_trade_moves_the_position_without_a_fill() -> None:
    v = venue()
    _, cursor = await v.fills_since(None)
    v.book_external_trade(SYM, Side.SELL, D("0.3"), D("50000"))
    [pos] = await v.positions()
    assert (pos.qty, pos.entry_price) == (D("-0.3"), D("50000"))
    assert await v.fills_since(cursor) == ([], cursor)


async def test_every_report_names_the_account_the_venue_trades() -> None:
    v = InstrumentedPaper(account="acct-7", clock=Clock())
    v.on_ticker(SYM, D("50000"), D("50010"), 1_000)
    assert PaperVenue().account == "main"  # the default, as configured by default
    await v.place(req("c1", Side.BUY, "0.1"))
    await v.place(req("c2", Side.BUY, "0.1", limit="40000"))  # rests
    with pytest.raises(VenueRejected):
        await v.place(req("c3", qty="0.000000001"))
    fills, _ = await v.fills_since(None)
    reports = [
        *fills,
        *await v.open_orders(),
        *await v.positions(frozenset({"ETH/USDT"})),
        await v.query_order(SYM, ClientOrderId("c1")),
        await v.query_order(SYM, ClientOrderId("c3")),  # the refusal's report
    ]
    assert len(reports) == 6
    assert {r.account for r in reports if r is not None} == {"acct-7"}
