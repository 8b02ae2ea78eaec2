"""Decimals as text on the published contract: the JSON views and replies other services
read (truth snapshot, `get_positions`, `get_balances`, TradeRecord, reconcile telemetry).

Two rules, both plain positional notation (never an exponent, never trailing zeros, never
``-0``):

- `plain(d)`: the exact value. For what the venue or the signer gave us (quantities,
  prices, fees, balances), which carry the venue's precision already: ``0E-7`` → ``"0"``,
  ``1E+2`` → ``"100"``, ``1.500`` → ``"1.5"``.
- `rounded(d)`: at most `COMPUTED_PLACES` (12) decimal places, ROUND_HALF_EVEN, then
  `plain`. For what the service computes by division or multiplication (average entry and
  exit, PnL, pnl_pct, unrealised PnL, mark, pro-rata fees), whose exact value can have
  dozens of digits (``49999.09092190070999354551322260707`` → ``"49999.090921900710"``
  → ``"49999.09092190071"``).

Neither depends on the decimal context (``Decimal.normalize`` rounds to the context's 28
significant digits, so it is not used). The event log is *not* written with these: its
encoding stays as it was (`wire/contract.encode_event`), so streams written by earlier
builds replay unchanged. Pure: no I/O.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Final

__all__ = ["COMPUTED_PLACES", "plain", "plain_or_none", "rounded", "rounded_or_none"]

COMPUTED_PLACES: Final = 12


def plain(value: Decimal) -> str:
    """The exact value in positional notation without trailing zeros (``"0"`` for any
    zero, also ``-0.000``). A NaN or infinity is a programming error: ValueError."""
    if not value.is_finite():
        raise ValueError(f"{value!r} has no decimal text")
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def rounded(value: Decimal, places: int = COMPUTED_PLACES) -> str:
    """`value` rounded half-even to at most `places` decimal places, as `plain` text (a
    value that rounds to zero is ``"0"``)."""
    if not value.is_finite():
        raise ValueError(f"{value!r} has no decimal text")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if exponent < -places:
        # every integer digit, one more for a carry (9.99… → 10.00…) and `places`: enough
        # precision that quantize never raises
        digits = max(value.adjusted(), 0) + 2 + places
        value = value.quantize(
            Decimal(1).scaleb(-places), context=Context(prec=digits, rounding=ROUND_HALF_EVEN)
        )
    return plain(value)


def plain_or_none(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def rounded_or_none(value: Decimal | None) -> str | None:
    return None if value is None else rounded(value)
