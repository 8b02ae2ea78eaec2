"""The execution driver: the order path's decisions. Pure; the shell is `runtime/driver.py`.

    accepted ──WriteAhead──▶ OrderSubmitted ──Durable──▶ PlaceOrder ──PlaceAcked──▶ acknowledged
                                  │                          ├─PlaceRejected──▶ OrderRejected
                                  │                          └─PlaceUnknown───▶ in doubt
    in doubt ──Tick (query_after, back-off)──▶ QueryOrder ──found──▶ OrderAcknowledged
                                                └─absent past absent_after──▶ OrderRejected
    open past its TTL / CancelWanted ──▶ OrderCancelRequested, CancelOrder ──CANCELED──▶
        PollFills (fills first) ──FillsReported──▶ fills, then OrderExpired (ttl) / OrderCanceled

Rules:

- **Write-ahead.** An order is sent only after its `OrderSubmitted`, written by this driver,
  is durable (`Durable`); an order found SUBMITTED after a restart is in doubt and is never
  sent again: it is resolved by querying its client order id.
- **In doubt.** A SUBMITTED order without a place call in flight is queried by its id
  (`core/indoubt`): found → acknowledged; absent at ``in_doubt_absent_after_ms`` → rejected.
- **Recovery.** An ACCEPTED order (recorded, never sent) is sent if it was decided within
  ``recovery_send_within_ms`` and is not past its time-to-live, else canceled.
- **Cancels.** An ACCEPTED order is canceled at once; others get `OrderCancelRequested`
  (once) and a cancel call; a failed call is retried after ``cancel_retry_ms``. A cancel the
  venue confirms closes the order only after a fill poll issued after the answer (fills that
  happened before the cancel come first): `OrderExpired` for a time-to-live cancel, else
  `OrderCanceled`. An order past its time-to-live whose cancel was requested but is not on
  its way (a restart, an answer that did not close it) is tried again, no sooner than
  ``cancel_retry_ms`` after the last answer or failure.
- **Fills** are deduplicated by venue trade id against the state and within one report;
  each sees the quantities of the fills before it. Trades are polled for the symbols with an
  open order, and those whose last order closed (or that were watched) within
  ``late_fill_window_ms``. Fills a venue pushes (`FillsPushed`, a user-data stream) are
  applied the same way the moment they come, beside any poll in flight; they move no cursor
  and close no order (a confirmed cancel waits for a poll issued after it).

**The tick** visits every open order of the venue only when something may be due: at the
earliest deadline its last visit found, sooner when an input makes an earlier one (a new
order's time-to-live, an order turned in doubt, a query's back-off, a cancel to retry, a
restart), and at least every `RESCAN_MS` (an order this driver did not write ahead). In
between it only starts the fill polls (a burst holds hundreds of orders in flight, and a
tick comes with every venue answer).

Every input carries ``now_ms``; a result that answers no request in flight raises
`UnexpectedResult` (a shell bug, never dropped), and so does an input the order's status
cannot take. `step` reads the folded `State` (the durable state, as of the events appended so
far) and returns the driver's new bookkeeping with a `Decision`: events to append, requests
to run once those are durable, the next wake-up (on `Tick`), and the log lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import assert_never

from titan_exec.core import indoubt, tracking
from titan_exec.core.events import (
    OrderAcknowledged,
    OrderCanceled,
    OrderCancelRequested,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
)
from titan_exec.core.execution_io import (
    CancelAnswered,
    CancelFailed,
    CancelOrder,
    CancelWanted,
    Driver,
    Durable,
    ExecConfig,
    FillsPushed,
    FillsReported,
    Input,
    OrderQueried,
    PlaceAcked,
    PlaceOrder,
    PlaceRejected,
    PlaceUnknown,
    PollFailed,
    PollFills,
    QueryFailed,
    QueryOrder,
    Recover,
    Step,
    Tick,
    UnexpectedResult,
    WatchSymbol,
    WriteAhead,
)
from titan_exec.core.execution_out import Out, order_of, with_key, without_key
from titan_exec.core.model import ClientOrderId, OrderStatus
from titan_exec.core.orders import Order, apply_fill, can_apply, lifecycle
from titan_exec.core.reports import FillReport, PlaceRequest, VenueOrderStatus
from titan_exec.core.state import State

S = OrderStatus
RESCAN_MS = 1_000
"""A tick visits every open order at least this often (see the module's rules)."""


def step(state: State, driver: Driver, inp: Input, cfg: ExecConfig) -> Step:
    """Decide on one input. `state` is read, never changed: the shell appends the events."""
    out = Out(driver)
    match inp:
        case WriteAhead():
            _write_ahead(state, out, inp.coids, inp.now_ms)
        case Durable():
            _durable(state, out, inp.coids)
        case Recover():
            _recover(state, out, cfg, inp.now_ms)
        case PlaceAcked() | PlaceRejected() | PlaceUnknown():
            _placed(state, out, inp)
        case OrderQueried() | QueryFailed():
            indoubt.queried(state, out, cfg, inp)
        case CancelWanted():
            _start_cancel(state, out, order_of(state, inp.coid), inp.reason, inp.now_ms)
        case CancelAnswered() | CancelFailed():
            _cancel_answered(state, out, cfg, inp)
        case FillsReported():
            _fills(state, out, cfg, inp)
        case FillsPushed():
            _new_fills(state, out, inp.fills, inp.now_ms)
        case PollFailed():
            _poll_failed(out, inp)
        case WatchSymbol():
            d = out.driver
            out.driver = replace(
                d, active_symbols=with_key(d.active_symbols, inp.symbol, inp.now_ms)
            )
        case Tick():
            _tick(state, out, cfg, inp.now_ms)
        case _:
            assert_never(inp)
    return out.done()


# --- sending ----------------------------------------------------------------------------------


def _write_ahead(state: State, out: Out, coids: Iterable[ClientOrderId], now: int) -> None:
    written = set(out.driver.written)
    scan_at = out.driver.scan_at_ms
    for coid in coids:
        order = order_of(state, coid)
        if order.status is not S.ACCEPTED:
            continue  # canceled before it could be sent (a flatten in the same batch)
        out.event(order, lifecycle(OrderSubmitted, order, now))
        written.add(coid)
        scan_at = min(scan_at, order.expires_at_ms)
    out.driver = replace(out.driver, written=frozenset(written), scan_at_ms=scan_at)


def _durable(state: State, out: Out, coids: Iterable[ClientOrderId]) -> None:
    d = out.driver
    written, placing = set(d.written), set(d.placing)
    for coid in coids:
        if coid not in written:
            raise UnexpectedResult(f"order {coid}: durable, but not written ahead by this driver")
        written.discard(coid)
        order = order_of(state, coid)
        if order.status is S.ACCEPTED:
            raise UnexpectedResult(f"order {coid}: durable, but its write-ahead is not applied")
        if order.status is not S.SUBMITTED:
            out.note("info", f"order {coid} not sent: {order.status} before it could be")
            continue
        placing.add(coid)
        out.requests.append(PlaceOrder(PlaceRequest.of(order)))
    out.driver = replace(d, written=frozenset(written), placing=frozenset(placing))


def _recover(state: State, out: Out, cfg: ExecConfig, now: int) -> None:
    send: list[ClientOrderId] = []
    for order in state.iter_open_orders():
        if order.venue != cfg.venue or order.status is not S.ACCEPTED:
            continue
        if now < order.expires_at_ms and now - order.t_decision < cfg.recovery_send_within_ms:
            send.append(order.client_order_id)
        else:
            out.event(order, lifecycle(OrderCanceled, order, now, reason="not sent before restart"))
            out.note("info", f"order {order.client_order_id} not sent before restart: canceled")
    _write_ahead(state, out, send, now)
    out.driver = replace(out.driver, scan_at_ms=0)  # in-doubt orders to find


def _placed(state: State, out: Out, inp: PlaceAcked | PlaceRejected | PlaceUnknown) -> None:
    coid = inp.coid
    if coid not in out.driver.placing:
        raise UnexpectedResult(f"order {coid}: a place result, but no place call in flight")
    out.driver = replace(out.driver, placing=out.driver.placing - {coid})
    order = order_of(state, coid)
    if order.status in (S.ACCEPTED, S.ACKNOWLEDGED):
        # ACCEPTED is never sent; only the place answer acknowledges an order being placed
        raise UnexpectedResult(f"order {coid}: {type(inp).__name__} in {order.status}")
    match inp:
        case PlaceAcked():
            if order.status.is_terminal and order.status is not S.FILLED:
                out.note("info", f"order {coid}: acknowledged after it became {order.status}")
                return
            ack = lifecycle(OrderAcknowledged, order, inp.now_ms, venue_order_id=inp.venue_order_id)
            out.event(order, ack)
        case PlaceRejected() if inp.is_duplicate:
            out.note("warning", f"order {coid}: venue reports a duplicate id: in doubt, will query")
            out.driver = replace(out.driver, scan_at_ms=0)
        case PlaceRejected():
            if order.status is not S.SUBMITTED:
                out.note("warning", f"order {coid}: rejected by venue while {order.status}")
                return
            why = (
                f"venue unavailable: {inp.reason}" if inp.is_unavailable else f"venue: {inp.reason}"
            )
            if not inp.is_unavailable:
                out.note("info", f"order {coid} rejected by venue: {inp.reason}")
            out.event(order, lifecycle(OrderRejected, order, inp.now_ms, reason=why))
        case PlaceUnknown():
            out.note("warning", f"order {coid}: {inp.detail}: in doubt, will query by id")
            out.driver = replace(out.driver, scan_at_ms=0)


# --- cancels --------------------------------------------------------------------------------


def _start_cancel(state: State, out: Out, order: Order, reason: str, now: int) -> None:
    coid = order.client_order_id
    d = out.driver
    if _is_cancel_on_its_way(d, coid):
        out.note("debug", f"cancel of {coid}: already on its way")
        return
    if not order.is_open:
        return
    if order.status is S.ACCEPTED:
        out.event(order, lifecycle(OrderCanceled, order, now, reason=reason))
        return
    if not order.is_cancel_requested:
        out.event(order, lifecycle(OrderCancelRequested, order, now, reason=reason))
    out.requests.append(CancelOrder(coid, order.symbol))
    out.driver = replace(
        d,
        cancelling=with_key(d.cancelling, coid, reason),
        cancel_failed_at=without_key(d.cancel_failed_at, coid),
    )


def _is_cancel_on_its_way(d: Driver, coid: ClientOrderId) -> bool:
    return coid in d.cancelling or coid in d.closing or coid in d.closing_after_poll


def _cancel_answered(
    state: State, out: Out, cfg: ExecConfig, inp: CancelAnswered | CancelFailed
) -> None:
    coid = inp.coid
    d = out.driver
    reason = d.cancelling.get(coid)
    if reason is None:
        raise UnexpectedResult(f"order {coid}: a cancel result, but no cancel in flight")
    if order_of(state, coid).status is S.ACCEPTED:
        raise UnexpectedResult(f"order {coid}: a cancel result, but it was never sent")
    d = replace(d, cancelling=without_key(d.cancelling, coid))
    if isinstance(inp, CancelFailed):
        wait = cfg.cancel_retry_ms
        out.note("warning", f"cancel of {coid} failed ({inp.detail}): retrying in {wait} ms")
        out.driver = _retry_cancel(d, coid, inp.now_ms, cfg)
        return
    if inp.status is not VenueOrderStatus.CANCELED:
        # FILLED: its fills close it; NOT_FOUND: in doubt, or not there yet. Past its TTL
        # the cancel is tried again (not sooner than the retry delay)
        out.note("info", f"cancel of {coid}: venue says {inp.status}")
        out.driver = _retry_cancel(d, coid, inp.now_ms, cfg)
        return
    if d.is_polling:  # that poll may have been answered before the cancel: one more
        out.driver = replace(d, closing_after_poll=with_key(d.closing_after_poll, coid, reason))
        return
    d, symbols = _polled(state, d, cfg, inp.now_ms)
    out.driver = replace(d, closing=with_key(d.closing, coid, reason), is_polling=True)
    out.requests.append(PollFills(d.cursor, symbols))


def _retry_cancel(d: Driver, coid: ClientOrderId, now: int, cfg: ExecConfig) -> Driver:
    """A cancel that did not close its order: tried again past its TTL, retry delay later."""
    scan_at = min(d.scan_at_ms, now + cfg.cancel_retry_ms)
    return replace(d, cancel_failed_at=with_key(d.cancel_failed_at, coid, now), scan_at_ms=scan_at)


# --- fills ----------------------------------------------------------------------------------


def _fills(state: State, out: Out, cfg: ExecConfig, inp: FillsReported) -> None:
    d = out.driver
    if not d.is_polling:
        raise UnexpectedResult("fills reported, but no poll in flight")
    now = inp.now_ms
    orders = _new_fills(state, out, inp.fills, now)
    for coid, reason in d.closing.items():
        order = orders.get(coid) or order_of(state, coid)
        close = (
            lifecycle(OrderExpired, order, now, reason="ttl")
            if reason == "ttl"
            else lifecycle(OrderCanceled, order, now, reason=reason)
        )
        if can_apply(order, close):
            out.events.append(close)
        else:
            out.note("info", f"order {coid}: canceled at venue, but {order.status} here")
    d = replace(
        d, cursor=inp.cursor, is_polling=False, closing=d.closing_after_poll, closing_after_poll={}
    )
    out.driver = d
    if d.closing:
        d, symbols = _polled(state, d, cfg, now)
        out.driver = replace(d, is_polling=True)
        out.requests.append(PollFills(d.cursor, symbols))


def _new_fills(
    state: State, out: Out, fills: Iterable[FillReport], now: int
) -> dict[ClientOrderId, Order]:
    """A fill event for each report not seen before (by venue trade id, against the state
    and within `fills`), each on the order as the fills before it left it; those orders."""
    seen: set[tuple[str, str]] = set()
    orders: dict[ClientOrderId, Order] = {}
    for f in fills:
        key = (f.venue, f.trade_id)
        if key in seen or state.is_fill_seen(f.venue, f.trade_id, f.ts_ms):
            continue
        seen.add(key)
        order = orders.get(f.client_order_id) or state.orders.get(f.client_order_id)
        ev: OrderFilled = tracking.fill_event_of(order, f, now_ms=now)
        if order is not None:
            orders[order.client_order_id] = apply_fill(order, ev)
        out.events.append(ev)
    return orders


def _poll_failed(out: Out, inp: PollFailed) -> None:
    d = out.driver
    if not d.is_polling:
        raise UnexpectedResult("poll failed, but no poll in flight")
    out.note("warning", f"order tracking: venue error {inp.detail}; retrying")
    out.driver = replace(
        d,
        is_polling=False,
        closing={**d.closing, **d.closing_after_poll},
        closing_after_poll={},
    )


def _polled(state: State, d: Driver, cfg: ExecConfig, now: int) -> tuple[Driver, frozenset[str]]:
    """Symbols with open orders, and those active within the late-fill window."""
    return _active(state.open_symbols(cfg.venue), d, cfg, now)


def _mine(state: State, cfg: ExecConfig) -> list[Order]:
    """This venue's open orders, in the state's (deterministic) order."""
    return [o for o in state.iter_open_orders() if o.venue == cfg.venue]


def _active(
    open_symbols: Iterable[str], d: Driver, cfg: ExecConfig, now: int
) -> tuple[Driver, frozenset[str]]:
    active = dict(d.active_symbols)
    for symbol in open_symbols:
        active[symbol] = now
    cutoff = now - cfg.late_fill_window_ms
    active = {s: at for s, at in active.items() if at >= cutoff}
    return replace(d, active_symbols=active), frozenset(active)


def polled_symbols(state: State, d: Driver, cfg: ExecConfig, now: int) -> frozenset[str]:
    return _polled(state, d, cfg, now)[1]


# --- tick -----------------------------------------------------------------------------------


def _tick(state: State, out: Out, cfg: ExecConfig, now: int) -> None:
    """The fill poll to start, then — when something may be due (`Driver.scan_at_ms`) — one
    pass over this venue's open orders: the in-doubt queries due, the orders past their
    time-to-live, the next timer and the next pass."""
    d, symbols = _polled(state, out.driver, cfg, now)
    if not d.is_polling and (symbols or d.cursor is None or d.closing):
        d = replace(d, is_polling=True)
        out.requests.append(PollFills(d.cursor, symbols))
    out.driver = d
    if now < d.scan_at_ms:
        out.next_timer_ms = d.scan_at_ms  # nothing due before the next pass
        return
    querying = set(d.querying)
    wake: list[int] = []  # deadlines of the next timer and the next pass
    passes: list[int] = [now + RESCAN_MS]  # of the next pass alone
    # in-doubt deadlines of orders whose answer is awaited (a place, a query): the answer
    # brings the next pass; they wake the timer only
    awaited: list[int] = []
    expiring: list[Order] = []
    retry_ms = cfg.cancel_retry_ms
    for order in _mine(state, cfg):
        if order.is_in_doubt:
            if indoubt.is_query_due(order, d, cfg, now):
                querying.add(order.client_order_id)
                out.requests.append(QueryOrder(order.client_order_id, order.symbol))
            else:
                first = order.t_submitted + cfg.in_doubt_query_after_ms
                at = max(first, d.in_doubt_next.get(order.client_order_id, 0))
                (awaited if _is_answer_awaited(d, order.client_order_id) else wake).append(at)
        if not order.is_cancel_requested:
            wake.append(order.expires_at_ms)  # at or before now: dropped below
        elif order.expires_at_ms <= now:
            passes.append(order.expires_at_ms + retry_ms)  # its cancel tried again then
        if order.expires_at_ms <= now and (
            not order.is_cancel_requested or now - order.expires_at_ms >= retry_ms
        ):
            expiring.append(order)  # as `tracking.due_for_expiry`
    out.driver = replace(d, querying=frozenset(querying))
    for order in expiring:
        coid = order.client_order_id
        d = out.driver
        if order.is_in_doubt or _is_cancel_on_its_way(d, coid):
            continue
        failed_at = d.cancel_failed_at.get(coid)
        if failed_at is not None and now - failed_at < retry_ms:
            wake.append(failed_at + retry_ms)
            continue
        # past its TTL, or requested before (a restart, an answer that did not close it)
        _start_cancel(state, out, order, order.last_reason or "ttl", now)
    future = [t for t in (*wake, *awaited) if t > now]
    out.next_timer_ms = min(future) if future else None
    scan_at = min(t for t in (*wake, *passes) if t > now)
    out.driver = replace(out.driver, scan_at_ms=scan_at)


def _is_answer_awaited(d: Driver, coid: ClientOrderId) -> bool:
    return coid in d.placing or coid in d.written or coid in d.querying
