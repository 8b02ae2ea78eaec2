"""The venue simulator's exchange core, with exact numbers: errors, fills, fees, PnL, time."""

from __future__ import annotations

from decimal import Decimal as D  # noqa: N817
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_purity import impurities
from titan_exec.adapters.venue.exchange.engine import Engine, EngineConfig, OrderRequest, SimError

T0 = 1_700_000_000_000
SRC = Path(__file__).resolve().parents[2] / "src" / "titan_exec"
EXCHANGE = "titan_exec.adapters.venue.exchange"
EXCHANGE_SRC = SRC / "adapters" / "venue" / "exchange"


def make(**config: object) -> Engine:
    """An engine whose BTC mid is pinned at 60000: bid 59997.0 / ask 60003.0 (1 bp spread)."""
    defaults: dict[str, object] = {"seed": 1, "origin_ms": T0, "fill_slices": 1}
    defaults.update(config)
    engine = Engine(EngineConfig(**defaults))  # type: ignore[arg-type]
    engine.pin_mid("BTCUSDT", D(60000))
    return engine


def market(side: str, qty: str | None, coid: str | None = None, **kw: str) -> OrderRequest:
    return OrderRequest("BTCUSDT", side, "MARKET", qty, client_order_id=coid, **kw)


def limit(side: str, qty: str, price: str, coid: str | None = None, **kw: str) -> OrderRequest:
    return OrderRequest(
        "BTCUSDT", side, "LIMIT", qty, price, client_order_id=coid, time_in_force="GTC", **kw
    )


def refused(engine: Engine, req: OrderRequest, now: int = T0) -> tuple[int, str, int]:
    with pytest.raises(SimError) as info:
        engine.place_order(req, now)
    return info.value.code, info.value.msg, info.value.http_status


# --- refusals --------------------------------------------------------------------------


def test_a_used_client_order_id_is_refused_as_binance_does() -> None:
    engine = make()
    first = engine.place_order(market("BUY", "0.010", "cid-1"), T0)
    assert refused(engine, limit("BUY", "0.010", "50000", "cid-1"), T0 + 5) == (
        -4116,
        "ClientOrderId is duplicated.",
        400,
    )
    # the refusal is recorded, the first order is untouched, nothing else was created
    assert [o.order_id for o in engine.orders.values()] == [first.order_id]
    assert engine.rejections[-1].client_order_id == "cid-1"
    assert engine.rejections[-1].code == -4116
    assert engine.positions["BTCUSDT"].amount == D("0.010")


def test_a_refused_order_does_not_use_up_its_client_order_id() -> None:
    engine = make()
    assert refused(engine, market("BUY", "0.001", "cid-2"))[0] == -4164  # 60 USDT < 100
    assert engine.place_order(market("BUY", "0.002", "cid-2"), T0).status == "FILLED"


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (market("BUY", "0.0101"), -1111),  # more decimals than the step (0.001)
        (limit("BUY", "0.010", "60000.155"), -1111),  # more decimals than pricePrecision (2)
        (limit("BUY", "0.010", "60000.05"), -4014),  # two decimals, but not on the 0.10 tick
        (market("BUY", "0"), -4003),
        (market("BUY", "1e3"), -1100),
        (market("BUY", None), -1102),
        (OrderRequest("BTCUSDT", "BUY", "STOP", "0.010"), -1116),
        (OrderRequest("BTCUSDT", "HOLD", "MARKET", "0.010"), -1117),
        (OrderRequest("XYZUSDT", "BUY", "MARKET", "0.010"), -1121),
        (OrderRequest("BTCUSDT", "BUY", "LIMIT", "0.010", "59000"), -1102),  # no timeInForce
        (market("BUY", "0.010", "bad id with spaces"), -4015),
        (market("BUY", "0.010", position_side="LONG"), -4061),  # one-way mode only
        (market("BUY", "0.001"), -4164),
        (limit("BUY", "0.001", "60000.00"), -4164),
    ],
)
def test_filters_refuse_with_binance_codes(req: OrderRequest, code: int) -> None:
    engine = make()
    assert refused(engine, req)[0] == code
    assert not engine.orders


def test_min_notional_message_names_the_symbols_minimum() -> None:
    msg = refused(make(), market("BUY", "0.001"))[1]
    assert msg == "Order's notional must be no smaller than 100 (unless you choose reduce only)."


def test_insufficient_margin_is_refused() -> None:
    engine = make(initial_balance=D(100))
    # 0.1 BTC at 60003 = 6000.3 USDT notional, / 20x leverage = 300.015 > 100 available
    assert refused(engine, market("BUY", "0.100")) == (-2019, "Margin is insufficient.", 400)
    assert engine.place_order(market("BUY", "0.030"), T0).status == "FILLED"  # 90.009 needed


def test_a_sell_limit_below_the_book_needs_the_margin_of_the_bid_it_fills_at() -> None:
    engine = make(initial_balance=D(100))
    # 0.1 BTC at the bid 59997 = 5999.7 USDT, / 20x = 299.985 > 100, although at its
    # limit (0.1 * 1000 / 20 = 5) it would pass: it fills at the bid, not at 1000
    assert refused(engine, limit("SELL", "0.100", "1000.0")) == (
        -2019,
        "Margin is insufficient.",
        400,
    )
    # a resting sell (above the bid) is priced at its limit: 0.03 * 61000 / 20 = 91.5
    assert engine.place_order(limit("SELL", "0.030", "61000.0"), T0).status == "NEW"


def test_cancel_and_query_of_unknown_orders() -> None:
    engine = make()
    with pytest.raises(SimError) as info:
        engine.cancel_order("BTCUSDT", 12345, None, T0)
    assert (info.value.code, info.value.msg) == (-2011, "Unknown order sent.")
    with pytest.raises(SimError) as info:
        engine.find("BTCUSDT", None, "nope")
    assert (info.value.code, info.value.msg) == (-2013, "Order does not exist.")
    filled = engine.place_order(market("BUY", "0.010", "f1"), T0)
    with pytest.raises(SimError) as info:
        engine.cancel_order("BTCUSDT", None, "f1", T0 + 1)
    assert info.value.code == -2011  # a filled order cannot be canceled
    assert engine.find("BTCUSDT", filled.order_id, None) is filled
    with pytest.raises(SimError) as info:
        engine.find("ETHUSDT", filled.order_id, None)  # right id, wrong symbol
    assert info.value.code == -2013


# --- fills, fees and PnL ------------------------------------------------------------------


def test_market_round_trip_with_exact_fees_and_pnl() -> None:
    engine = make()
    buy = engine.place_order(market("BUY", "0.010", "open"), T0)
    assert buy.status == "FILLED"
    [t1] = engine.trades
    assert (t1.price, t1.qty, t1.quote_qty, t1.maker) == (
        D("60003.0"),
        D("0.010"),
        D("600.030"),
        False,
    )
    assert t1.commission == D("0.30001500")  # 600.03 * 0.0005
    assert t1.realized_pnl == 0
    pos = engine.positions["BTCUSDT"]
    assert (pos.amount, pos.entry_price) == (D("0.010"), D("60003.0"))

    engine.pin_mid("BTCUSDT", D(61000))  # half spread 3.05 -> rounded up to the tick: 3.1
    assert engine.book("BTCUSDT", T0).bid == D("60996.9")
    engine.place_order(market("SELL", "0.010", "close"), T0 + 1000)
    t2 = engine.trades[-1]
    assert t2.price == D("60996.9")
    assert t2.realized_pnl == D("9.93900000")  # (60996.9 - 60003.0) * 0.010
    assert t2.commission == D("0.30498450")  # 609.969 * 0.0005 = 0.3049845
    assert engine.positions["BTCUSDT"].amount == 0
    assert engine.wallet == D("10000") - D("0.300015") + D("9.939") - D("0.3049845")
    account = engine.account(T0 + 1000)
    assert account.available_balance == engine.wallet == D("10009.3340005")
    assert account.unrealized_pnl == 0


def test_flip_realises_the_closed_part_and_opens_the_rest_at_the_fill_price() -> None:
    engine = make()
    engine.place_order(market("BUY", "0.010"), T0)
    engine.pin_mid("BTCUSDT", D(59000))  # bid 59000 - 3.0 (2.95 rounded up)
    engine.place_order(market("SELL", "0.030"), T0 + 1)
    flip = engine.trades[-1]
    assert flip.price == D("58997.0")
    assert flip.realized_pnl == D("-10.06000000")  # (58997.0 - 60003.0) * 0.010
    pos = engine.positions["BTCUSDT"]
    assert (pos.amount, pos.entry_price) == (D("-0.020"), D("58997.0"))
    [view] = [v for v in engine.position_views(T0 + 1) if v.spec.symbol == "BTCUSDT"]
    assert view.mark_price == D(59000)
    assert view.unrealized_pnl == D("-0.06000000")  # (59000 - 58997) * -0.020


def test_pyramid_averages_the_entry_price() -> None:
    engine = make()
    engine.place_order(market("BUY", "0.010"), T0)  # at 60003.0
    engine.pin_mid("BTCUSDT", D(60100))  # ask 60103.1 (3.005 rounded up to 3.1)
    engine.place_order(market("BUY", "0.030"), T0 + 1)
    pos = engine.positions["BTCUSDT"]
    # (60003.0 * 0.010 + 60103.1 * 0.030) / 0.040 = 60078.075
    assert (pos.amount, pos.entry_price) == (D("0.040"), D("60078.07500000"))


def test_marketable_limit_fills_as_taker_at_the_better_price() -> None:
    engine = make()
    order = engine.place_order(limit("BUY", "0.010", "60100.0"), T0)
    assert order.status == "FILLED"
    assert (engine.trades[0].price, engine.trades[0].maker) == (D("60003.0"), False)


def test_marketable_sell_limit_fills_as_taker_at_the_bid_not_its_limit() -> None:
    engine = make()
    order = engine.place_order(limit("SELL", "0.100", "1000.0"), T0)
    assert order.status == "FILLED"
    assert (engine.trades[0].price, engine.trades[0].maker) == (D("59997.0"), False)
    assert engine.positions["BTCUSDT"].amount == D("-0.100")


def test_resting_limit_fills_as_maker_when_the_book_crosses_it_in_slices() -> None:
    engine = make(fill_slices=2, slice_interval_ms=100)
    order = engine.place_order(limit("BUY", "0.010", "59000.0", "rest"), T0)
    assert (order.status, order.executed_qty) == ("NEW", D(0))
    engine.tick(T0 + 500)
    assert order.status == "NEW"  # ask 60003 > 59000: nothing
    engine.pin_mid("BTCUSDT", D("58995.0"))  # ask 58998.0 <= 59000
    engine.tick(T0 + 1000)
    assert (order.status, order.executed_qty) == ("PARTIALLY_FILLED", D("0.005"))
    first = engine.trades[-1]
    assert (first.price, first.maker, first.time_ms) == (D("59000.0"), True, T0 + 1000)
    assert first.commission == D("0.05900000")  # 295 * 0.0002
    engine.tick(T0 + 1099)
    assert order.executed_qty == D("0.005")  # the next slice is due at +100 ms
    engine.tick(T0 + 1100)
    assert (order.status, order.executed_qty) == ("FILLED", D("0.010"))
    assert engine.trades[-1].time_ms == T0 + 1100


def test_a_market_order_fills_in_slices_over_time() -> None:
    engine = make(fill_slices=3, slice_interval_ms=200)
    order = engine.place_order(market("BUY", "0.010", "sliced"), T0)
    assert (order.status, order.executed_qty) == ("PARTIALLY_FILLED", D("0.003"))
    engine.tick(T0 + 199)
    assert order.executed_qty == D("0.003")
    # one coarse tick processes every slice that fell due, each at its own time
    engine.tick(T0 + 1000)
    assert order.status == "FILLED"
    slices = [(t.qty, t.time_ms) for t in engine.trades if t.order_id == order.order_id]
    assert slices == [(D("0.003"), T0), (D("0.003"), T0 + 200), (D("0.004"), T0 + 400)]
    assert order.cum_quote == D("600.030")
    assert order.avg_price == D("60003.0")


def test_a_limit_that_stops_being_marketable_rests_the_rest() -> None:
    engine = make(fill_slices=2, slice_interval_ms=100)
    order = engine.place_order(limit("BUY", "0.010", "60005.0"), T0)
    assert order.executed_qty == D("0.005")
    engine.pin_mid("BTCUSDT", D(60100))  # ask 60103.1 > 60005: not marketable any more
    engine.tick(T0 + 100)
    assert (order.status, order.executed_qty, order.resting) == (
        "PARTIALLY_FILLED",
        D("0.005"),
        True,
    )
    engine.pin_mid("BTCUSDT", D(60000))
    engine.tick(T0 + 300)
    assert order.status == "FILLED"
    assert (engine.trades[-1].price, engine.trades[-1].maker) == (D("60005.0"), True)


# --- reduce-only ----------------------------------------------------------------------------


def test_reduce_only_is_refused_without_a_position_to_reduce() -> None:
    engine = make()
    code = refused(engine, market("SELL", "0.010", reduce_only="true"))
    assert code == (-2022, "ReduceOnly Order is rejected.", 400)
    engine.place_order(market("BUY", "0.010"), T0)
    assert refused(engine, market("BUY", "0.010", reduce_only="true"))[0] == -2022


def test_reduce_only_fills_at_most_the_position_and_is_exempt_from_min_notional() -> None:
    engine = make()
    engine.place_order(market("BUY", "0.010"), T0)
    closing = engine.place_order(market("SELL", "0.020", reduce_only="true"), T0 + 1)
    assert (closing.status, closing.executed_qty) == ("EXPIRED", D("0.010"))
    assert engine.positions["BTCUSDT"].amount == 0
    engine.place_order(market("BUY", "0.002"), T0 + 2)
    tiny = engine.place_order(market("SELL", "0.001", reduce_only="true"), T0 + 3)  # 60 USDT
    assert tiny.status == "FILLED"
    assert engine.positions["BTCUSDT"].amount == D("0.001")


# --- time: dead-man switch, determinism, persistence ----------------------------------------


def test_countdown_cancel_all_cancels_the_symbols_open_orders_when_it_expires() -> None:
    engine = make()
    engine.pin_mid("ETHUSDT", D(3000))
    btc = engine.place_order(limit("BUY", "0.010", "50000.0"), T0)
    eth = engine.place_order(
        OrderRequest("ETHUSDT", "BUY", "LIMIT", "0.010", "2500", time_in_force="GTC"), T0
    )
    engine.set_countdown("BTCUSDT", 1000, T0)
    engine.tick(T0 + 999)
    assert btc.status == "NEW"
    engine.set_countdown("BTCUSDT", 1000, T0 + 999)  # a heartbeat pushes the deadline
    engine.tick(T0 + 1500)
    assert btc.status == "NEW"
    engine.tick(T0 + 1999)
    assert (btc.status, btc.update_time_ms) == ("CANCELED", T0 + 1999)
    assert eth.status == "NEW"  # other symbols are not touched
    assert not engine.countdowns
    later = engine.place_order(limit("BUY", "0.010", "50000.0"), T0 + 2000)
    engine.set_countdown("BTCUSDT", 1000, T0 + 2000)
    engine.set_countdown("BTCUSDT", 0, T0 + 2500)  # 0 stops the timer
    engine.tick(T0 + 10_000)
    assert later.status == "NEW"


def test_same_seed_same_path_whatever_the_order_of_queries() -> None:
    times = [T0 + k * 7_919 for k in range(200)]
    a = Engine(EngineConfig(seed=42, origin_ms=T0))
    b = Engine(EngineConfig(seed=42, origin_ms=T0))
    c = Engine(EngineConfig(seed=43, origin_ms=T0))
    path_a = [a.book(s, t).mid for s in ("BTCUSDT", "SOLUSDT") for t in times]
    path_b = [b.book(s, t).mid for s in ("BTCUSDT", "SOLUSDT") for t in reversed(times)]
    path_c = [c.book(s, t).mid for s in ("BTCUSDT", "SOLUSDT") for t in times]
    assert path_a[:200] == path_b[:200][::-1]
    assert path_a[200:] == path_b[200:][::-1]
    assert path_a != path_c
    assert a.book("BTCUSDT", T0).mid == D(60000)  # step 0 is the start price
    assert len(set(path_a[:200])) > 100  # it moves
    spec = a.specs["BTCUSDT"]
    assert all(p % spec.tick_size == 0 for p in path_a[:200])
    book = a.book("BTCUSDT", times[50])
    assert book.bid < book.mid < book.ask


def test_export_import_continues_the_run_identically() -> None:
    engine = make(fill_slices=3, slice_interval_ms=200)
    engine.place_order(market("BUY", "0.010", "a"), T0)
    engine.place_order(limit("SELL", "0.005", "60500.0", "b"), T0 + 50)
    engine.set_countdown("BTCUSDT", 5000, T0 + 50)
    doc = engine.export_state()
    restored = Engine.from_state(doc)
    assert restored.export_state() == doc
    for e in (engine, restored):
        e.pin_mid("BTCUSDT", D(60600))
        e.tick(T0 + 2000)  # the crossed sell fills its first slice ...
        e.tick(T0 + 3000)  # ... and the rest at +200 and +400 ms
    assert restored.export_state() == engine.export_state()
    assert engine.orders[engine.by_client_id["a"]].status == "FILLED"
    assert engine.orders[engine.by_client_id["b"]].status == "FILLED"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(2, 40), st.integers(-300, 300)),
        min_size=1,
        max_size=12,
    )
)
def test_position_and_wallet_are_the_sum_of_the_trades(
    orders: list[tuple[str, int, int]],
) -> None:
    engine = make(fill_slices=2, slice_interval_ms=100)
    now = T0
    codes: list[int] = []
    for side, lots, move in orders:
        engine.pin_mid("BTCUSDT", D(60000) + move)
        try:
            engine.place_order(market(side, f"{D(lots) / 1000:.3f}"), now)
        except SimError as err:
            codes.append(err.code)
        now += 1000
        engine.tick(now)
    signed = sum((t.qty if t.side == "BUY" else -t.qty for t in engine.trades), D(0))
    assert engine.positions["BTCUSDT"].amount == signed
    pnl = sum((t.realized_pnl - t.commission for t in engine.trades), D(0))
    assert engine.wallet == D(10000) + pnl
    assert all(not o.is_open for o in engine.orders.values())
    assert set(codes) <= {-2019, -4164}


def impure(path: Path) -> list[str]:
    """What the purity check finds in `path`, the exchange model's own modules allowed."""
    own = (f"imports {EXCHANGE}", f"imports {EXCHANGE}.")
    return [p for p in impurities(path.read_text()) if not p.split(": ", 1)[1].startswith(own)]


@pytest.mark.parametrize(
    "path",
    [*sorted(EXCHANGE_SRC.glob("*.py")), SRC / "sim" / "render.py"],
    ids=lambda p: p.name,
)
def test_the_exchange_model_and_its_renderer_are_pure(path: Path) -> None:
    assert len(impure(path)) == 0, impure(path)
