"""The execution driver's vocabulary: its settings, inputs, requests and decisions. Plain values.

Every input carries ``now_ms`` (the shell's clock when it steps the input). A result input
(`PlaceAcked`, `OrderQueried`, `CancelAnswered`, `FillsReported`, their failures) answers
exactly one request the core made; one that answers nothing in flight is a shell bug and
`execution.step` raises `UnexpectedResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from titan_exec.core.events import Event
from titan_exec.core.model import ClientOrderId, VenueOrderId
from titan_exec.core.orders import IllegalTransition
from titan_exec.core.reports import FillReport, OrderReport, PlaceRequest, VenueOrderStatus

# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecConfig:
    venue: str
    """The venue this driver executes on (its orders only)."""
    in_doubt_query_after_ms: int = 500
    in_doubt_absent_after_ms: int = 30_000
    in_doubt_max_backoff_ms: int = 5_000
    recovery_send_within_ms: int = 5_000
    """After a restart, an order recorded but never sent is sent if decided this recently
    (and not past its time-to-live), else canceled (`orders.recovery_send_within_ms`)."""
    cancel_retry_ms: int = 1_000
    """A cancel that failed (venue error, timeout) is tried again after this long."""
    late_fill_window_ms: int = 10_000
    """A symbol's trades are still polled this long after its last order closed."""


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteAhead:
    """Orders just accepted by a decision (appended already): write their `OrderSubmitted`."""

    now_ms: int
    coids: tuple[ClientOrderId, ...]


@dataclass(frozen=True, slots=True)
class Durable:
    """The write-ahead of these orders (written by this driver) is durable: send them."""

    now_ms: int
    coids: tuple[ClientOrderId, ...]


@dataclass(frozen=True, slots=True)
class Recover:
    """After a restart or takeover: orders recorded but never sent are sent or canceled."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class PlaceAcked:
    now_ms: int
    coid: ClientOrderId
    venue_order_id: VenueOrderId


@dataclass(frozen=True, slots=True)
class PlaceRejected:
    now_ms: int
    coid: ClientOrderId
    reason: str
    is_duplicate: bool = False
    """The venue knows this client order id already: in doubt, resolved by query."""
    is_unavailable: bool = False
    """Refused before reaching the venue (`VenueUnavailable`): nothing was placed."""


@dataclass(frozen=True, slots=True)
class PlaceUnknown:
    """The place call's outcome is unknown (timeout, lost response, or the gate closed)."""

    now_ms: int
    coid: ClientOrderId
    detail: str


@dataclass(frozen=True, slots=True)
class OrderQueried:
    now_ms: int
    coid: ClientOrderId
    report: OrderReport | None
    """None: the venue does not know the client order id."""


@dataclass(frozen=True, slots=True)
class QueryFailed:
    now_ms: int
    coid: ClientOrderId
    detail: str


@dataclass(frozen=True, slots=True)
class CancelWanted:
    """Cancel this order (flatten, halt, time-to-live found by reconciliation)."""

    now_ms: int
    coid: ClientOrderId
    reason: str


@dataclass(frozen=True, slots=True)
class CancelAnswered:
    now_ms: int
    coid: ClientOrderId
    status: VenueOrderStatus
    """The venue's order status after the cancel (CANCELED when it took, NOT_FOUND when
    the venue does not know the order)."""


@dataclass(frozen=True, slots=True)
class CancelFailed:
    now_ms: int
    coid: ClientOrderId
    detail: str


@dataclass(frozen=True, slots=True)
class FillsReported:
    now_ms: int
    fills: tuple[FillReport, ...]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class FillsPushed:
    """Fills the venue pushed (a user-data stream), not the answer of a poll: applied like
    a poll's (deduplicated by trade id), the poll's cursor and any poll in flight untouched.
    They close no order: a confirmed cancel still waits for a poll issued after it."""

    now_ms: int
    fills: tuple[FillReport, ...]


@dataclass(frozen=True, slots=True)
class PollFailed:
    now_ms: int
    detail: str


@dataclass(frozen=True, slots=True)
class WatchSymbol:
    """Poll this symbol's trades too for the late-fill window (a position difference)."""

    now_ms: int
    symbol: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the poll interval, venue activity): poll, resolve, expire what is due."""

    now_ms: int


Input = (
    WriteAhead
    | Durable
    | Recover
    | PlaceAcked
    | PlaceRejected
    | PlaceUnknown
    | OrderQueried
    | QueryFailed
    | CancelWanted
    | CancelAnswered
    | CancelFailed
    | FillsReported
    | FillsPushed
    | PollFailed
    | WatchSymbol
    | Tick
)

# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    request: PlaceRequest

    @property
    def lane(self) -> str:
        return self.request.symbol


@dataclass(frozen=True, slots=True)
class CancelOrder:
    coid: ClientOrderId
    symbol: str

    @property
    def lane(self) -> str:
        return self.symbol


@dataclass(frozen=True, slots=True)
class QueryOrder:
    coid: ClientOrderId
    symbol: str

    @property
    def lane(self) -> str:
        return self.symbol


@dataclass(frozen=True, slots=True)
class PollFills:
    cursor: str | None
    symbols: frozenset[str]

    @property
    def lane(self) -> str:
        return ""


Request = PlaceOrder | CancelOrder | QueryOrder | PollFills

# --- the driver's own bookkeeping and its decisions -----------------------------------------


@dataclass(frozen=True, slots=True)
class Driver:
    """What the driver keeps beside the folded `State`: volatile, lost on restart (then
    `Recover` and the in-doubt path rebuild what matters)."""

    written: frozenset[ClientOrderId] = frozenset()
    """Write-ahead appended by this driver, not yet durable (never sent after a restart)."""
    placing: frozenset[ClientOrderId] = frozenset()
    querying: frozenset[ClientOrderId] = frozenset()
    cancelling: Mapping[ClientOrderId, str] = field(default_factory=dict)
    """Cancel calls in flight, with their reason."""
    closing: Mapping[ClientOrderId, str] = field(default_factory=dict)
    """Canceled at the venue: closed after a fill poll issued since (fills come first)."""
    closing_after_poll: Mapping[ClientOrderId, str] = field(default_factory=dict)
    """Canceled while a poll was in flight: closed after the poll after that one."""
    in_doubt_next: Mapping[ClientOrderId, int] = field(default_factory=dict)
    cancel_failed_at: Mapping[ClientOrderId, int] = field(default_factory=dict)
    active_symbols: Mapping[str, int] = field(default_factory=dict)
    cursor: str | None = None
    is_polling: bool = False
    scan_at_ms: int = 0
    """When a tick next visits every open order (`execution._tick`): the earliest deadline
    the last visit found (an in-doubt query, a time-to-live, a cancel retry), brought
    forward by every input that makes an earlier one, at most `RESCAN_MS` after it."""


@dataclass(frozen=True, slots=True)
class Note:
    """One log line: `level` is debug, info or warning."""

    level: str
    text: str


@dataclass(frozen=True, slots=True)
class Decision:
    events: tuple[Event, ...] = ()
    """Append in this order; await their durability before running `requests`."""
    requests: tuple[Request, ...] = ()
    next_timer_ms: int | None = None
    """Step a `Tick` at this time at the latest (None: at the poll interval)."""
    notes: tuple[Note, ...] = ()

    @property
    def summary(self) -> str:
        return "; ".join(n.text for n in self.notes)


@dataclass(frozen=True, slots=True)
class Step:
    driver: Driver
    decision: Decision


class UnexpectedResult(IllegalTransition):
    """A result that answers no request in flight, or an input the order cannot take (a bug
    of the shell: it must never be dropped silently)."""
