"""The venue interface: what the service needs from an exchange.

Outcomes are explicit. `place` returns `Placed` or raises `VenueRejected` (definitive: the
venue refused it) or `VenueUnknownOutcome` (the request may or may not have reached the
venue: the order is *in doubt* and must be resolved by querying its client order id; it is
never re-sent blindly). `VenueUnavailable` means the request certainly did not reach the
venue (for example a connection refused before sending). Fills are never returned by
`place`: they are learned from `fills_since`, because venues fill asynchronously.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from titan_exec.core.model import ClientOrderId, VenueOrderId
from titan_exec.core.reports import (
    BalanceReport,
    FillReport,
    OrderReport,
    PlaceRequest,
    PositionReport,
    VenueOrderStatus,
)


class VenueError(Exception):
    """Base of venue outcomes that are not a normal answer."""


class VenueRejected(VenueError):
    """Definitive refusal (insufficient margin, invalid size, duplicate client order id...)."""

    def __init__(self, reason: str, *, is_duplicate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.is_duplicate = is_duplicate


class VenueUnknownOutcome(VenueError):
    """The request may have been executed (timeout, lost response): resolve by query."""


class VenueUnavailable(VenueError):
    """The request certainly did not reach the venue; safe to retry later."""


@dataclass(frozen=True, slots=True)
class Placed:
    venue_order_id: VenueOrderId
    status: VenueOrderStatus
    """Venue status at acknowledgement (NEW, PARTIALLY_FILLED, FILLED...)."""


@dataclass(frozen=True, slots=True)
class CancelResult:
    status: VenueOrderStatus
    """CANCELED, or the order's terminal status when it could not be canceled (FILLED...);
    NOT_FOUND when the venue does not know the order."""


class Venue(Protocol):
    name: str
    account: str
    """The account it trades (the service's `service.account`): every report it returns
    names it, so a fill that matches no order of ours is still on the right account."""

    async def place(self, req: PlaceRequest) -> Placed: ...

    async def cancel(self, symbol: str, coid: ClientOrderId) -> CancelResult: ...

    async def query_order(self, symbol: str, coid: ClientOrderId) -> OrderReport | None:
        """The order by client order id, or None when the venue does not (yet) show it."""
        ...

    async def open_orders(self, symbol: str | None = None) -> list[OrderReport]: ...

    async def fills_since(
        self, cursor: str | None, symbols: frozenset[str] | None = None
    ) -> tuple[list[FillReport], str | None]:
        """Fills after `cursor` (None: from the start of this session) and the new cursor.
        `symbols`: only these need looking at (a venue that polls per symbol spends its
        rate limit on them alone; fills elsewhere are found by a later call)."""
        ...

    async def wait_activity(self, timeout_s: float) -> None:
        """Return when fills may be available, or after `timeout_s` (a polling venue sleeps)."""
        ...

    async def positions(self, symbols: frozenset[str] = frozenset()) -> list[PositionReport]:
        """The venue's positions: every non-flat one, and an explicit report (qty 0 when
        flat) for each of `symbols` that the venue's answer covers. A symbol left out is
        *unknown* to the caller, never flat: only report 0 when the venue said so."""
        ...

    async def balances(self) -> list[BalanceReport]:
        """The account's currencies, each with its total and, where the venue says,
        what is free and what is used."""
        ...

    async def equity(self) -> Decimal | None:
        """Account equity in quote currency, for the leverage check."""
        ...

    def on_ticker(self, symbol: str, bid: Decimal, ask: Decimal, ts_ms: int) -> None:
        """Market data seen by the service (a simulated venue prices from it)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class PushesFills(Protocol):
    """A venue whose fills can be pushed (a user-data stream): the listener is called,
    synchronously and without I/O, when fills are waiting; it takes them with
    `take_pushed_fills` (what it does not take comes with the next `fills_since`)."""

    def set_fill_listener(self, listener: Callable[[], None] | None) -> None: ...

    def take_pushed_fills(self) -> list[FillReport]: ...


@runtime_checkable
class KnowsRecordedFills(Protocol):
    """A venue that can skip the trades already recorded as fills (by trade id and time,
    `State.is_fill_seen`): it reads them, reports none of them, and spends no request on
    them (a trade of an order placed by an earlier active would otherwise be looked up by
    its order id: one REST call each, after a takeover hundreds in the lookback window)."""

    def set_recorded_fills(self, is_recorded: Callable[[str, int], bool] | None) -> None: ...
