"""Identifiers, enums and value types shared by the pure core.

Everything here is a plain value: no I/O, no clock. Money and sizes are `Decimal`.
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum
from typing import NewType

ClientOrderId = NewType("ClientOrderId", str)
VenueOrderId = NewType("VenueOrderId", str)
SignalId = NewType("SignalId", str)
TradeId = NewType("TradeId", str)
StreamSeq = NewType("StreamSeq", int)
"""Sequence of a message in a JetStream stream."""

ZERO = Decimal(0)
DECIMAL_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN, Emin=-999999, Emax=999999)
"""The one arithmetic context of the core (IEEE decimal128 precision). Every fold and
decision runs in it, so a process that changes the global decimal context cannot make two
instances compute different states from the same events."""
MS_PER_DAY = 86_400_000
CLIENT_ORDER_ID_MAX_LEN = 32
CLIENT_ORDER_ID_PREFIX = "tx"
"""Every client order id this service makes starts with it (`client_order_id`)."""


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"


class OrderStatus(StrEnum):
    ACCEPTED = "ACCEPTED"
    SUBMITTED = "SUBMITTED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class IntentType(StrEnum):
    BUY_SETUP = "BUY_SETUP"
    SELL_SETUP = "SELL_SETUP"
    CLOSE_LONG = "CLOSE_LONG"
    CLOSE_SHORT = "CLOSE_SHORT"
    CLOSE = "CLOSE"

    @property
    def is_close(self) -> bool:
        return self in (IntentType.CLOSE_LONG, IntentType.CLOSE_SHORT, IntentType.CLOSE)


class ControlAction(StrEnum):
    HALT = "halt"
    OPEN = "open"
    ARM = "arm"
    DISARM = "disarm"
    FLATTEN = "flatten"
    POLICY = "policy"


def day_of(ts_ms: int) -> int:
    """UTC day number (days since 1970-01-01) of a millisecond timestamp."""
    return ts_ms // MS_PER_DAY


def client_order_id(signal_id: str, venue: str, child_index: int) -> ClientOrderId:
    """Deterministic client order id for child `child_index` of a signal at a venue.

    The same (signal, venue, child) always gives the same id, so a re-send after a
    failover is recognisable (the venue rejects it as a duplicate). Format:
    ``tx`` + 24 hex digits of SHA-256 + ``c`` + child index: at most 32 characters, within
    every major venue's alphabet (``[A-Za-z0-9]``).
    """
    if child_index < 0 or child_index >= 100_000:
        raise ValueError(f"child index out of range: {child_index}")
    digest = hashlib.sha256(f"{venue}\x1f{signal_id}\x1f{child_index}".encode()).hexdigest()
    coid = f"{CLIENT_ORDER_ID_PREFIX}{digest[:24]}c{child_index}"
    assert len(coid) <= CLIENT_ORDER_ID_MAX_LEN
    return ClientOrderId(coid)
