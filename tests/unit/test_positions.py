"""Position accounting with exact numbers: pyramid, reduce, flip, fees, realised PnL."""

from decimal import Decimal as D  # noqa: N817

import pytest

from titan_exec.core.model import Side
from titan_exec.core.positions import Opening, Position, apply_fill

OPEN = Opening(signal_id="sig-open")


def fill(pos: Position, side: Side, qty: str, price: str, fee: str = "0", ts: int = 1):  # type: ignore[no-untyped-def]
    return apply_fill(
        pos, side=side, qty=D(qty), price=D(price), fee=D(fee), ts_ms=ts, opening=OPEN
    )


def flat() -> Position:
    return Position(venue="sim", symbol="BTC/USDT")


def test_open_long_sets_entry_and_fees() -> None:
    out = fill(flat(), Side.BUY, "0.1", "50000", fee="2")
    assert out.position.qty == D("0.1")
    assert out.position.avg_entry == D("50000")
    assert out.position.fees_paid == D("2")
    assert out.realized_delta == 0
    assert out.closed is None
    assert out.position.signal_id == "sig-open"


def test_pyramid_weights_the_entry() -> None:
    pos = fill(flat(), Side.BUY, "1", "100").position
    out = fill(pos, Side.BUY, "3", "200")
    assert out.position.qty == D("4")
    assert out.position.avg_entry == D("175")  # (1*100 + 3*200) / 4


def test_partial_reduce_of_a_long_realises_pnl_minus_closing_fee() -> None:
    pos = fill(flat(), Side.BUY, "2", "100", fee="1").position
    out = fill(pos, Side.SELL, "0.5", "120", fee="0.25")
    assert out.position.qty == D("1.5")
    assert out.position.avg_entry == D("100")
    assert out.realized_delta == D("9.75")  # (120-100)*0.5 - 0.25
    assert out.position.realized_pnl == D("9.75")
    assert out.position.fees_paid == D("1.25")
    assert out.closed is None


def test_short_reduce_negates_pnl() -> None:
    pos = fill(flat(), Side.SELL, "1", "100").position
    out = fill(pos, Side.BUY, "1", "90")
    assert out.realized_delta == D("10")
    assert out.position.is_flat


def test_full_close_publishes_a_trade_record_with_round_trip_fees() -> None:
    pos = fill(flat(), Side.BUY, "1", "100", fee="1", ts=10).position
    pos = fill(pos, Side.SELL, "0.5", "110", fee="0.5", ts=20).position
    out = fill(pos, Side.SELL, "0.5", "130", fee="0.5", ts=30)
    assert out.position.is_flat
    trade = out.closed
    assert trade is not None
    assert trade.side == "LONG"
    assert trade.entry_price == D("100")
    assert trade.exit_price == D("120")  # (0.5*110 + 0.5*130) / 1
    assert trade.size == D("1")
    assert trade.fee == D("2")
    assert trade.pnl == D("18")  # gross 5 + 15 = 20, minus all fees 2
    assert trade.pnl_pct == D("18")  # 18 / (100 * 1) * 100
    assert trade.opened_at_ms == 10
    assert trade.closed_at_ms == 30
    assert out.position.realized_pnl == D("19")  # gross 20 minus closing fees 1
    assert out.position.avg_entry == 0


def test_flip_closes_then_opens_the_remainder_at_the_fill_price() -> None:
    pos = fill(flat(), Side.BUY, "1", "100").position
    out = fill(pos, Side.SELL, "3", "90", fee="3")
    assert out.position.qty == D("-2")
    assert out.position.avg_entry == D("90")
    assert out.realized_delta == D("-11")  # (90-100)*1 - fee share 1
    assert out.closed is not None
    assert out.closed.pnl == D("-11")
    assert out.position.fees_paid == D("3")
    assert out.position.trade_fees == D("2")  # the opening share of the flip's fee


def test_zero_quantity_fill_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        fill(flat(), Side.BUY, "0", "1")
