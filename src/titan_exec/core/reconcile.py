"""Venue reconciliation decisions: our state against the venue's own reports. Pure.

Everything that decides what a difference with the venue means lives here; the active's
loops (`runtime/reconcile.py`) fetch the reports, call these functions with the time, and do
what they say. Nothing here edits the state: a correction is an event (`PositionReconciled`)
written through the event log like every other, and an order's end is the lifecycle event of
`tracking.report_event`.

Positions (one venue, one pass):

- A symbol the venue reports is known (an explicit 0 is flat). A symbol it does not report
  is *unknown*: never read as flat, never corrected (`unreported`).
- A difference is the pair (ours, venue's). It is the same difference while neither side
  changes; a change on either side starts it anew (fills on their way move ours).
- It is reported when first seen (`is_new`), and `confirming` until it has persisted
  `confirm_ms`. Then: an order of ours open on the symbol defers the correction
  (`deferred_open_order`: its fills would move the position again); with
  `is_authoritative` off (an account shared with other systems) it is only reported
  (`report_only`); else it is corrected (`correct`, one `PositionReconciled`).

Open orders (one venue; the symbols the shell listed):

- Ours open and listed open at the venue: nothing (fills come through tracking).
- Ours sent and acknowledged, not listed: query it by client order id (`to_query`). ACCEPTED
  (not sent) and SUBMITTED (in doubt) orders are left to the submit and in-doubt paths.
- Listed at the venue but not an open order of ours: an order we closed → query it first
  (a listing can be older than our last fill); one with our client id prefix that we do not
  know → critical; anything else is foreign → reported.
- A query's answer (`query_outcome`): not found → unknown, reported, never failed; a terminal
  status → the lifecycle event (once our fills match the venue's); past its time-to-live and
  closed at the venue without a cancel of ours → ask for the TTL cancel; open → nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from titan_exec.core import tracking
from titan_exec.core.events import OrderEvent, PositionReconciled
from titan_exec.core.model import CLIENT_ORDER_ID_PREFIX, ZERO, ClientOrderId, OrderStatus
from titan_exec.core.orders import Order
from titan_exec.core.reports import OrderReport, PositionReport, VenueOrderStatus

# --- positions ------------------------------------------------------------------------------

PositionAction = Literal[
    "unreported", "confirming", "deferred_open_order", "report_only", "correct"
]


@dataclass(frozen=True, slots=True)
class Difference:
    """A difference being watched: both sides as first seen, and when."""

    ours: Decimal
    venue_qty: Decimal | None
    """None: the venue did not report the symbol."""
    first_seen_ms: int


@dataclass(frozen=True, slots=True)
class PositionFinding:
    symbol: str
    ours: Decimal
    venue_qty: Decimal | None
    first_seen_ms: int
    action: PositionAction
    is_new: bool
    """First seen in this pass (report it)."""
    reason: str


@dataclass(frozen=True, slots=True)
class PositionPass:
    findings: tuple[PositionFinding, ...]
    pending: dict[str, Difference]
    """The differences to carry into the next pass."""
    corrections: tuple[PositionReconciled, ...]
    next_check_ms: int | None
    """When a difference is due for confirmation (None: at the regular interval)."""
    matched: tuple[str, ...]
    """Symbols on which ours and the venue's agree."""


@dataclass(frozen=True, slots=True)
class PositionRules:
    confirm_ms: int
    is_authoritative: bool


def compare_positions(
    *,
    venue: str,
    ours: Mapping[str, Decimal],
    reports: Sequence[PositionReport],
    open_symbols: frozenset[str],
    pending: Mapping[str, Difference],
    now_ms: int,
    rules: PositionRules,
) -> PositionPass:
    """One positions pass: `ours` is our net quantity per symbol of `venue`, `reports` the
    venue's explicit reports, `open_symbols` the symbols with an open order of ours."""
    reported = _net_reports(venue, reports)
    findings: list[PositionFinding] = []
    corrections: list[PositionReconciled] = []
    carried: dict[str, Difference] = {}
    matched: list[str] = []
    due: list[int] = []
    for symbol in sorted(set(ours) | set(reported)):
        mine = ours.get(symbol, ZERO)
        report = reported.get(symbol)
        theirs = report.qty if report is not None else None
        if theirs is None and mine == ZERO:
            continue  # unknown at the venue, nothing of ours: nothing to compare
        if theirs is not None and theirs == mine:
            matched.append(symbol)
            continue
        before = pending.get(symbol)
        is_same = before is not None and before.ours == mine and before.venue_qty == theirs
        first_seen = before.first_seen_ms if before is not None and is_same else now_ms
        age = now_ms - first_seen
        action, reason = _position_action(
            symbol, mine, theirs, age, is_open=symbol in open_symbols, rules=rules
        )
        if action == "confirming":
            due.append(first_seen + rules.confirm_ms)
        finding = PositionFinding(
            symbol=symbol,
            ours=mine,
            venue_qty=theirs,
            first_seen_ms=first_seen,
            action=action,
            is_new=not is_same,
            reason=reason,
        )
        findings.append(finding)
        if action == "correct":
            assert report is not None and theirs is not None
            corrections.append(
                PositionReconciled(
                    ts_ms=now_ms,
                    venue=venue,
                    account=report.account,
                    symbol=symbol,
                    qty_before=mine,
                    qty_after=theirs,
                    venue_entry_price=(
                        report.entry_price if theirs != ZERO and report.entry_price > 0 else None
                    ),
                    reason=reason,
                )
            )
        else:
            carried[symbol] = Difference(ours=mine, venue_qty=theirs, first_seen_ms=first_seen)
    return PositionPass(
        findings=tuple(findings),
        pending=carried,
        corrections=tuple(corrections),
        next_check_ms=min(due) if due else None,
        matched=tuple(matched),
    )


def _position_action(
    symbol: str,
    mine: Decimal,
    theirs: Decimal | None,
    age: int,
    *,
    is_open: bool,
    rules: PositionRules,
) -> tuple[PositionAction, str]:
    """What a difference seen for `age` ms calls for, and why."""
    if theirs is None:
        return "unreported", f"ours {mine}, the venue does not report {symbol}: unknown, not flat"
    if age < rules.confirm_ms:
        return "confirming", f"venue {theirs}, ours {mine}: confirming for {rules.confirm_ms} ms"
    if is_open:
        return (
            "deferred_open_order",
            f"venue {theirs}, ours {mine} for {age} ms; an order of ours is open",
        )
    if not rules.is_authoritative:
        return (
            "report_only",
            f"venue {theirs}, ours {mine} for {age} ms; positions not authoritative",
        )
    return "correct", f"venue {theirs}, ours {mine} for {age} ms: set from the venue's report"


def differing_symbols(first: PositionPass) -> frozenset[str]:
    """The symbols the venue reports differently from us: their trades are polled before the
    pass is decided again (ours in flight, or someone else's)."""
    return frozenset(f.symbol for f in first.findings if f.venue_qty is not None)


def explained_by_fills(
    first: PositionPass, again: PositionPass, polled: frozenset[str]
) -> tuple[str, ...]:
    """Differences a forced fill poll closed on symbols whose trades we were not polling:
    trades behind our back (now recorded as fills). On a polled symbol it was ours in
    flight, and nothing to report."""
    return tuple(sorted((differing_symbols(first) - polled) & set(again.matched)))


def _net_reports(venue: str, reports: Sequence[PositionReport]) -> dict[str, PositionReport]:
    """The venue's report per symbol; several of one symbol (hedge-mode legs) are netted,
    keeping the entry price of the largest leg."""
    out: dict[str, PositionReport] = {}
    for r in reports:
        if r.venue != venue:
            continue
        prev = out.get(r.symbol)
        if prev is None:
            out[r.symbol] = r
            continue
        entry = r.entry_price if abs(r.qty) > abs(prev.qty) else prev.entry_price
        out[r.symbol] = replace(prev, qty=prev.qty + r.qty, entry_price=entry)
    return out


# --- open orders ----------------------------------------------------------------------------

OrderFindingKind = Literal["not_listed", "foreign_order", "unknown_own_order", "closed_but_open"]


@dataclass(frozen=True, slots=True)
class OrderFinding:
    kind: OrderFindingKind
    symbol: str
    client_order_id: ClientOrderId
    venue_status: VenueOrderStatus | None
    is_critical: bool
    reason: str


@dataclass(frozen=True, slots=True)
class OpenOrdersPass:
    to_query: tuple[ClientOrderId, ...]
    """Orders whose state differs: ask the venue about each one."""
    findings: tuple[OrderFinding, ...]


def is_own_id(coid: str) -> bool:
    return coid.startswith(CLIENT_ORDER_ID_PREFIX)


def compare_open_orders(
    *,
    orders: Mapping[ClientOrderId, Order],
    ours_open: Sequence[Order],
    listed: Sequence[OrderReport],
) -> OpenOrdersPass:
    """`ours_open`: our open orders on the listed symbols; `listed`: the venue's open orders
    on the same symbols; `orders`: every order we know (open and closed)."""
    listed_ids = {r.client_order_id for r in listed if r.is_open}
    open_ids = {o.client_order_id for o in ours_open}
    to_query = [
        o.client_order_id
        for o in ours_open
        if o.status not in (OrderStatus.ACCEPTED, OrderStatus.SUBMITTED)
        and o.client_order_id not in listed_ids
    ]
    findings: list[OrderFinding] = []
    for r in listed:
        coid = r.client_order_id
        if not r.is_open or coid in open_ids:
            continue
        known = orders.get(coid)
        if known is not None:
            to_query.append(coid)  # closed here: ask again before calling it a difference
        else:
            own = is_own_id(coid)
            findings.append(
                OrderFinding(
                    kind="unknown_own_order" if own else "foreign_order",
                    symbol=r.symbol,
                    client_order_id=coid,
                    venue_status=r.status,
                    is_critical=own,
                    reason=(
                        f"order {coid} has our id prefix, is {r.status} at the venue, "
                        "and is not in our state"
                        if own
                        else f"foreign order {coid or r.venue_order_id} is {r.status} "
                        f"at the venue ({r.filled_qty}/{r.qty} filled)"
                    ),
                )
            )
    return OpenOrdersPass(to_query=tuple(to_query), findings=tuple(findings))


@dataclass(frozen=True, slots=True)
class AppendLifecycle:
    event: OrderEvent


@dataclass(frozen=True, slots=True)
class RequestTtlCancel:
    pass


@dataclass(frozen=True, slots=True)
class ReportFinding:
    finding: OrderFinding


@dataclass(frozen=True, slots=True)
class NoChange:
    reason: str


QueryOutcome = AppendLifecycle | RequestTtlCancel | ReportFinding | NoChange


def query_outcome(order: Order, report: OrderReport | None, now_ms: int) -> QueryOutcome:
    """What a venue answer about one of our orders means. Never a failure from silence."""
    coid = order.client_order_id
    if report is None:
        return ReportFinding(
            OrderFinding(
                kind="not_listed",
                symbol=order.symbol,
                client_order_id=coid,
                venue_status=None,
                is_critical=False,
                reason=f"order {coid} is {order.status} here, and the venue does not show "
                "it: unknown, left open",
            )
        )
    if not order.is_open:
        if report.is_open:
            return ReportFinding(
                OrderFinding(
                    kind="closed_but_open",
                    symbol=order.symbol,
                    client_order_id=coid,
                    venue_status=report.status,
                    is_critical=True,
                    reason=f"order {coid} is {order.status} here and {report.status} at the venue",
                )
            )
        return NoChange(f"order {coid}: {order.status} here, {report.status} at the venue")
    if report.is_open:
        return NoChange(f"order {coid} is {report.status} at the venue")
    ev = tracking.report_event(order, report, now_ms)
    if ev is not None:
        return AppendLifecycle(ev)
    if report.status is VenueOrderStatus.CANCELED and order.is_cancel_requested:
        return NoChange(f"order {coid}: our cancel is being recorded")
    if order.expires_at_ms <= now_ms and not order.is_cancel_requested:
        return RequestTtlCancel()
    if report.filled_qty > order.filled_qty:
        return NoChange(
            f"order {coid} is {report.status} at the venue; waiting for its fills "
            f"({order.filled_qty} of {report.filled_qty} seen)"
        )
    return NoChange(f"order {coid} is {report.status} at the venue, {order.status} here")
