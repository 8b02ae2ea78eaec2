"""Netted position accounting per (venue, symbol). Pure.

Rules (the contract's "Position accounting"):
- same side: weighted-average entry (pyramid);
- opposite side: reduce, realising ``(exit - entry) * qty`` (negated for shorts);
- a fill larger than the position closes it and opens the remainder on the other side
  at the fill price (flip);
- every fee is added to ``fees_paid``; fees of closing fills also reduce
  ``realized_pnl`` (cash); a flip's fee is split pro rata between the closing and the
  opening part;
- a full close yields a `ClosedTrade` (the TradeRecord), whose ``pnl`` is the round trip's
  gross PnL minus all its fees (opening and closing).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from titan_exec.core.model import ZERO, Side


@dataclass(frozen=True, slots=True)
class Position:
    venue: str
    symbol: str
    qty: Decimal = ZERO
    """Signed: positive long, negative short."""
    avg_entry: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    opened_at_ms: int = 0
    signal_id: str = ""
    stop_loss: Decimal | None = None
    take_profits: tuple[Decimal, ...] = ()
    trade_fees: Decimal = ZERO
    """Fees of the round trip currently open (for its TradeRecord)."""
    trade_gross: Decimal = ZERO
    """Gross PnL realised so far by partial reduces of the open round trip."""
    trade_exit_qty: Decimal = ZERO
    trade_exit_value: Decimal = ZERO
    """Quantity and value of the closing fills of the open round trip (average exit)."""
    last_update_ms: int = 0

    @property
    def is_flat(self) -> bool:
        return self.qty == ZERO

    @property
    def side(self) -> str:
        if self.qty > ZERO:
            return "LONG"
        if self.qty < ZERO:
            return "SHORT"
        return "FLAT"


@dataclass(frozen=True, slots=True)
class Opening:
    """What an opening fill carries over to a new round trip."""

    signal_id: str
    stop_loss: Decimal | None = None
    take_profits: tuple[Decimal, ...] = ()


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    signal_id: str
    venue: str
    symbol: str
    side: str
    entry_price: Decimal
    exit_price: Decimal
    size: Decimal
    pnl: Decimal
    pnl_pct: Decimal
    fee: Decimal
    opened_at_ms: int
    closed_at_ms: int


@dataclass(frozen=True, slots=True)
class FillOutcome:
    position: Position
    realized_delta: Decimal
    """Change of cash realised PnL (gross of the close, minus closing fees)."""
    closed: ClosedTrade | None


def apply_fill(
    pos: Position,
    *,
    side: Side,
    qty: Decimal,
    price: Decimal,
    fee: Decimal,
    ts_ms: int,
    opening: Opening,
) -> FillOutcome:
    if qty <= ZERO:
        raise ValueError(f"fill quantity must be positive, got {qty}")
    signed = qty * side.sign
    if pos.qty == ZERO or (pos.qty > ZERO) == (signed > ZERO):
        return FillOutcome(_add(pos, signed, price, fee, ts_ms, opening), ZERO, None)

    close_qty = min(qty, abs(pos.qty))
    open_qty = qty - close_qty
    close_fee = fee if open_qty == ZERO else fee * close_qty / qty
    open_fee = fee - close_fee
    direction = 1 if pos.qty > ZERO else -1
    gross = (price - pos.avg_entry) * close_qty * direction
    realized_delta = gross - close_fee
    remaining = pos.qty + close_qty * side.sign
    reduced = replace(
        pos,
        qty=remaining,
        realized_pnl=pos.realized_pnl + realized_delta,
        fees_paid=pos.fees_paid + close_fee,
        trade_fees=pos.trade_fees + close_fee,
        trade_gross=pos.trade_gross + gross,
        trade_exit_qty=pos.trade_exit_qty + close_qty,
        trade_exit_value=pos.trade_exit_value + close_qty * price,
        last_update_ms=ts_ms,
    )
    closed: ClosedTrade | None = None
    if remaining == ZERO:
        closed = _closed_trade(reduced, closed_at_ms=ts_ms, direction=direction)
        reduced = _without_round_trip(reduced)
    if open_qty > ZERO:
        reduced = _add(reduced, open_qty * side.sign, price, open_fee, ts_ms, opening)
    return FillOutcome(reduced, realized_delta, closed)


def _add(
    pos: Position, signed: Decimal, price: Decimal, fee: Decimal, ts_ms: int, opening: Opening
) -> Position:
    new_qty = pos.qty + signed
    if pos.qty == ZERO:
        return replace(
            pos,
            qty=new_qty,
            avg_entry=price,
            fees_paid=pos.fees_paid + fee,
            opened_at_ms=ts_ms,
            signal_id=opening.signal_id,
            stop_loss=opening.stop_loss,
            take_profits=opening.take_profits,
            trade_fees=fee,
            trade_gross=ZERO,
            trade_exit_qty=ZERO,
            trade_exit_value=ZERO,
            last_update_ms=ts_ms,
        )
    avg = (abs(pos.qty) * pos.avg_entry + abs(signed) * price) / abs(new_qty)
    return replace(
        pos,
        qty=new_qty,
        avg_entry=avg,
        fees_paid=pos.fees_paid + fee,
        trade_fees=pos.trade_fees + fee,
        last_update_ms=ts_ms,
    )


def _closed_trade(pos: Position, *, closed_at_ms: int, direction: int) -> ClosedTrade:
    size = pos.trade_exit_qty
    exit_price = pos.trade_exit_value / size
    pnl = pos.trade_gross - pos.trade_fees
    notional = pos.avg_entry * size
    pnl_pct = (pnl / notional * 100) if notional != ZERO else ZERO
    return ClosedTrade(
        signal_id=pos.signal_id,
        venue=pos.venue,
        symbol=pos.symbol,
        side="LONG" if direction > 0 else "SHORT",
        entry_price=pos.avg_entry,
        exit_price=exit_price,
        size=size,
        pnl=pnl,
        pnl_pct=pnl_pct,
        fee=pos.trade_fees,
        opened_at_ms=pos.opened_at_ms,
        closed_at_ms=closed_at_ms,
    )


def set_from_venue(
    pos: Position, *, qty: Decimal, entry_price: Decimal | None, ts_ms: int
) -> Position:
    """The position as the venue reports it (`PositionReconciled`): quantity, and entry price
    when given; realised PnL and fees paid are kept (they are ours, not the venue's).

    Flat: the round trip's fields are cleared, without a TradeRecord (its exit is unknown).
    Opened from flat or flipped: a new round trip starts at `ts_ms`, with no signal.
    Same side: the round trip goes on with the venue's quantity (and entry, when given)."""
    if qty == ZERO:
        return replace(_without_round_trip(pos), qty=ZERO, last_update_ms=ts_ms)
    if pos.qty == ZERO or (pos.qty > ZERO) != (qty > ZERO):
        return replace(
            pos,
            qty=qty,
            avg_entry=entry_price if entry_price is not None else ZERO,
            trade_fees=ZERO,
            trade_gross=ZERO,
            trade_exit_qty=ZERO,
            trade_exit_value=ZERO,
            opened_at_ms=ts_ms,
            signal_id="",
            stop_loss=None,
            take_profits=(),
            last_update_ms=ts_ms,
        )
    return replace(
        pos,
        qty=qty,
        avg_entry=entry_price if entry_price is not None else pos.avg_entry,
        last_update_ms=ts_ms,
    )


def _without_round_trip(pos: Position) -> Position:
    """Flat in all but quantity: no entry, no round trip in progress (fees paid and
    realised PnL stay: they are the position's history)."""
    return replace(
        pos,
        avg_entry=ZERO,
        trade_fees=ZERO,
        trade_gross=ZERO,
        trade_exit_qty=ZERO,
        trade_exit_value=ZERO,
        opened_at_ms=0,
        signal_id="",
        stop_loss=None,
        take_profits=(),
    )
