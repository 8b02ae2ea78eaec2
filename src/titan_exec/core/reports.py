"""What venues tell us (`*Report`) and what we ask of them (requests). Plain values."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from titan_exec.core.model import ClientOrderId, OrderType, Side, VenueOrderId
from titan_exec.core.orders import Order


class VenueOrderStatus(StrEnum):
    """An order's status in the venue's answers (Binance's words), read by each adapter
    from its venue's own vocabulary; the core matches these, never a free string."""

    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    NOT_FOUND = "NOT_FOUND"
    """Only in a cancel's answer: the venue does not know the order."""

    @property
    def is_open(self) -> bool:
        return self in (VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED)


@dataclass(frozen=True, slots=True)
class PlaceRequest:
    client_order_id: ClientOrderId
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    is_reduce_only: bool

    @classmethod
    def of(cls, order: Order) -> PlaceRequest:
        return cls(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.qty,
            limit_price=order.limit_price,
            is_reduce_only=order.is_reduce_only,
        )


@dataclass(frozen=True, slots=True)
class OrderReport:
    """The venue's view of one order."""

    venue: str
    account: str
    """The venue account it is of (the one the adapter trades)."""
    symbol: str
    client_order_id: ClientOrderId
    venue_order_id: VenueOrderId
    status: VenueOrderStatus
    """NEW, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED or EXPIRED (never NOT_FOUND)."""
    qty: Decimal
    filled_qty: Decimal
    ts_ms: int

    @property
    def is_open(self) -> bool:
        return self.status.is_open


@dataclass(frozen=True, slots=True)
class FillReport:
    """One venue trade (execution): of one of our orders, or foreign (another system's,
    or by hand, on the same account)."""

    venue: str
    account: str
    """The venue account it is of (the one the adapter trades)."""
    symbol: str
    client_order_id: ClientOrderId
    venue_order_id: VenueOrderId
    trade_id: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_currency: str
    ts_ms: int


@dataclass(frozen=True, slots=True)
class PositionReport:
    venue: str
    account: str
    """The venue account it is of (the one the adapter trades)."""
    symbol: str
    qty: Decimal
    """Signed: positive long."""
    entry_price: Decimal


@dataclass(frozen=True, slots=True)
class BalanceReport:
    """One currency of the venue account (ccxt `fetch_balance`: free / used / total)."""

    currency: str
    total: Decimal
    free: Decimal | None
    """Available for new orders; None when the venue did not say."""
    used: Decimal | None
    """Locked in orders and margin; None when the venue did not say."""
